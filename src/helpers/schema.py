"""The canonical long schema: one row per patient-session.

Every input, whatever its layout and column names, is mapped by the study
config (:mod:`helpers.config`) onto these names.  Later stages (scoring,
cleaning, features, models, plots) only ever use the names defined here.

Column families
---------------
Identifiers
    ``therapist_id``, ``patient_id`` (strings) and ``session`` (positive integer,
    1 = first treatment session).  ``source_row`` is the 1-based data row of the
    input file the record came from (header excluded), kept so every row can be
    traced to the exclusion ledger.
Alliance items, per rater (``client``, ``therapist``, ``observer``)
    ``alliance_<rater>_item01`` … ``alliance_<rater>_itemNN`` before scoring.
Alliance scores
    ``alliance_<rater>`` (instrument total) and, where the instrument has them,
    ``alliance_<rater>_<subscale>`` (e.g. ``alliance_client_goal``).
    ``alliance`` is a copy of the primary rater's total (config key
    ``primary_alliance``), the column the models use.
Outcome
    ``outcome_item01`` … before scoring; ``outcome`` (instrument total, higher =
    more symptoms for every supported instrument) and ``outcome_intake`` (the
    patient's intake total, repeated on each of the patient's rows).
Other
    ``modality`` and any covariates named in the config's ``covariates`` block.
"""

from __future__ import annotations

RATERS: tuple[str, ...] = ("client", "therapist", "observer")

THERAPIST_ID = "therapist_id"
PATIENT_ID = "patient_id"
SESSION = "session"
SOURCE_ROW = "source_row"
MODALITY = "modality"
ALLIANCE = "alliance"
OUTCOME = "outcome"
OUTCOME_INTAKE = "outcome_intake"

ID_COLUMNS: tuple[str, ...] = (THERAPIST_ID, PATIENT_ID, SESSION)


def alliance_item_column(rater: str, item: int) -> str:
    """Canonical name of alliance item ``item`` (1-based) rated by ``rater``.

    >>> alliance_item_column("client", 3)
    'alliance_client_item03'
    """
    return f"alliance_{rater}_item{item:02d}"


def alliance_total_column(rater: str) -> str:
    """Canonical name of the alliance total rated by ``rater``.

    >>> alliance_total_column("therapist")
    'alliance_therapist'
    """
    return f"alliance_{rater}"


def outcome_item_column(item: int) -> str:
    """Canonical name of outcome item ``item`` (1-based).

    >>> outcome_item_column(9)
    'outcome_item09'
    """
    return f"outcome_item{item:02d}"
