"""What a study has: raters, instruments, levels, sessions, modality, intake, truth.

The notebooks run on any study a clinic could export, so before a section
uses something — therapist ids, a therapist rating, modality, an intake score,
a simulated truth — it asks the study's :class:`StudyProfile`.  A section
whose needs are not met is skipped with one sentence saying why and which
config key would enable it (:meth:`StudyProfile.skip_note`); it never raises
and never shows an empty table.

The profile is built from the cleaning step's outputs only
(:func:`load_profile`): the processed sessions, and the study config recorded
in the processed folder's ``manifest.json``.  So a notebook needs no path to
the config, and the profile describes the data as cleaned, not as configured
(a rater named in the config whose column is empty counts as absent).

Examples
--------
>>> import pandas as pd
>>> sessions = pd.DataFrame(
...     {"patient_id": ["P1", "P1", "P2"], "session": [1, 2, 1],
...      "alliance_client": [40.0, 42.0, 50.0], "outcome": [10.0, 8.0, 5.0]}
... )
>>> config = {"alliance": {"client": {"instrument": "wai_sr"}},
...           "primary_alliance": "client", "outcome": {"instrument": "phq9"}}
>>> profile = build_profile(sessions, config)
>>> profile.levels, profile.has("therapists")
(2, False)
>>> profile.formula("outcome ~ x", "(1 | patient_id)")
'outcome ~ x + (1 | patient_id)'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from helpers import schema
from helpers.narrative import Sentence
from helpers.scoring import SHORT_NAMES, get_instrument
from helpers.style import make_labels, make_term_labels

#: Minimum number of patients with enough sessions for within-patient models.
MIN_WITHIN_PATIENTS = 5


@dataclass(frozen=True)
class Need:
    """Something a notebook section may need, and what to say when a study lacks it.

    Attributes
    ----------
    what : str
        What the study lacks, as the end of "this study has …"/"… is missing".
    key : str
        The config key (or file) that would provide it.
    """

    what: str
    key: str


#: Every need a notebook section can declare (:meth:`StudyProfile.has`).
NEEDS: dict[str, Need] = {
    "therapists": Need(
        "no therapist ids, so therapist effects cannot be separated from patient effects "
        "(a two-level study: sessions within patients)",
        "set `columns.therapist_id` in the study config",
    ),
    "client_rating": Need("no client-rated alliance", "add an `alliance.client` block"),
    "therapist_rating": Need("no therapist-rated alliance", "add an `alliance.therapist` block"),
    "two_raters": Need(
        "alliance ratings from only one rater, so raters cannot be compared",
        "add both `alliance.client` and `alliance.therapist` blocks",
    ),
    "modality": Need(
        "no modality column, or fewer than two modalities",
        "set `columns.modality` (and `modality_labels`)",
    ),
    "intake": Need(
        "no intake (pre-treatment) outcome score",
        "set `outcome.intake_session` or `outcome.intake_total`",
    ),
    "truth": Need(
        "no truth file (a real study, or a simulated one whose truth is not on the analysed "
        "scales), so there is no true value to compare with",
        "give the simulated study's `truth.json` beside its data file",
    ),
    "within": Need(
        f"fewer than {MIN_WITHIN_PATIENTS} patients with enough scored sessions for a "
        "within-patient analysis",
        "lower `cleaning.min_sessions_within` only if the design justifies it",
    ),
    "change_category": Need(
        "an outcome instrument without a published clinical cut-off",
        "reliable change is still in `patients.csv` (`rci`)",
    ),
}


@dataclass(frozen=True)
class StudyProfile:
    """What one study has, from its cleaned data and config.  Build with :func:`load_profile`.

    Attributes
    ----------
    study : str
        The study's short name.
    raters : tuple of str
        Raters whose alliance column holds at least one score (``client``,
        ``therapist``, ``observer``), in config order.
    primary_rater : str
        The rater whose alliance is ``alliance`` (config ``primary_alliance``).
    alliance_instruments : dict of str to str
        Rater -> instrument key.
    outcome_instrument : str
        Outcome instrument key.
    n_patients, n_sessions : int
        Patients and processed sessions.
    n_therapists : int or None
        Therapists, or ``None`` when the study does not identify them.
    session_range : tuple of int
        First and last session number in the processed data.
    n_with_intake : int
        Patients with an intake outcome score.
    n_within_eligible : int
        Patients flagged eligible for within-patient models.
    modalities : tuple of str
        Modalities present (empty when the study has none).
    covariates : tuple of str
        Canonical covariate names present.
    early_session : int
        The session whose alliance is "early alliance" (config).
    has_truth : bool
        Whether a simulated truth file was given.
    """

    study: str
    raters: tuple[str, ...]
    primary_rater: str
    alliance_instruments: dict[str, str]
    outcome_instrument: str
    n_patients: int
    n_sessions: int
    n_therapists: int | None
    session_range: tuple[int, int]
    n_with_intake: int
    n_within_eligible: int
    modalities: tuple[str, ...] = ()
    covariates: tuple[str, ...] = ()
    early_session: int = 3
    has_truth: bool = False
    labels: dict[str, str] = field(default_factory=dict, repr=False)
    term_labels: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def levels(self) -> int:
        """3 when therapists are identified (sessions in patients in therapists), else 2."""
        return 2 if self.n_therapists is None else 3

    def has(self, need: str) -> bool:
        """Whether the study meets ``need`` (a key of :data:`NEEDS`)."""
        checks = {
            "therapists": self.n_therapists is not None,
            "client_rating": "client" in self.raters,
            "therapist_rating": "therapist" in self.raters,
            "two_raters": {"client", "therapist"} <= set(self.raters),
            "modality": len(self.modalities) >= 2,
            "intake": self.n_with_intake > 0,
            "truth": self.has_truth,
            "within": self.n_within_eligible >= MIN_WITHIN_PATIENTS,
            "change_category": get_instrument(self.outcome_instrument).cutoff is not None,
        }
        if need not in checks:
            raise KeyError(f"unknown need {need!r}; known: {', '.join(NEEDS)}")
        return checks[need]

    def missing(self, *needs: str) -> list[str]:
        """The needs of ``needs`` this study does not meet, in the order given."""
        return [n for n in needs if not self.has(n)]

    def skip_note(self, section: str, *needs: str) -> Sentence | None:
        """One sentence saying why ``section`` is skipped, or ``None`` when it can run.

        Examples
        --------
        >>> p = StudyProfile("s", ("client",), "client", {"client": "wai_sr"}, "phq9",
        ...                  10, 50, None, (1, 8), 10, 10)
        >>> print(p.skip_note("The therapist-level split", "therapists"))
        *Skipped — The therapist-level split:* this study has no therapist ids, so therapist \
effects cannot be separated from patient effects (a two-level study: sessions within \
patients). To enable it, set `columns.therapist_id` in the study config.
        """
        absent = self.missing(*needs)
        if not absent:
            return None
        reasons = "; ".join(NEEDS[n].what for n in absent)
        keys = "; ".join(NEEDS[n].key for n in absent)
        return Sentence(f"*Skipped — {section}:* this study has {reasons}. To enable it, {keys}.")

    # ---------------------------------------------------------------- names and formulas

    @property
    def alliance_columns(self) -> list[str]:
        """The per-rater alliance columns present, e.g. ``["alliance_client"]``."""
        return [schema.alliance_total_column(r) for r in self.raters]

    @property
    def raters_share_scale(self) -> bool:
        """Whether every rater present uses the same alliance instrument (levels comparable)."""
        return len({self.alliance_instruments[r] for r in self.raters}) <= 1

    @property
    def alliance_name(self) -> str:
        """Printed name of the primary rater's instrument, e.g. ``"WAI-SR"``."""
        return instrument_name(self.alliance_instruments[self.primary_rater])

    @property
    def outcome_name(self) -> str:
        """Printed name of the outcome instrument, e.g. ``"PHQ-9"``."""
        return instrument_name(self.outcome_instrument)

    def formula(self, fixed: str, patient_term: str | None = None) -> str:
        """``fixed`` plus ``patient_term`` plus ``(1 | therapist_id)`` where therapists exist.

        For patient-level data (one row per patient) leave ``patient_term`` out: in a
        two-level study the model then has no random term and is fitted by least squares.
        """
        terms = [fixed]
        if patient_term:
            terms.append(patient_term)
        if self.n_therapists is not None:
            terms.append(f"(1 | {schema.THERAPIST_ID})")
        return " + ".join(terms)

    @property
    def intake_term(self) -> str:
        """``" + outcome_intake_c"`` where the study has an intake score, else ``""``."""
        return " + outcome_intake_c" if self.has("intake") else ""

    @property
    def therapist_column(self) -> str | None:
        """``"therapist_id"`` where therapists are identified, else ``None``."""
        return schema.THERAPIST_ID if self.n_therapists is not None else None

    def null_formula(self, score: str) -> str:
        """The intercept-only model of ``score`` with every level's random intercept.

        Written outer level first, as lme4 users write it:
        ``score ~ 1 + (1 | therapist_id) + (1 | patient_id)``.
        """
        outer = f" + (1 | {schema.THERAPIST_ID})" if self.n_therapists is not None else ""
        return f"{score} ~ 1{outer} + (1 | {schema.PATIENT_ID})"

    def reference_modality(self, preferred: str = "CBT") -> str | None:
        """``preferred`` if present, else the first modality in sorted order."""
        if not self.modalities:
            return None
        return preferred if preferred in self.modalities else sorted(self.modalities)[0]

    def overview(self) -> pd.DataFrame:
        """The profile as a small two-column table for a notebook."""
        nesting = "sessions in patients" + (" in therapists" if self.levels == 3 else "")
        therapists = "not identified" if self.n_therapists is None else str(self.n_therapists)
        raters = [f"{r} ({instrument_name(self.alliance_instruments[r])})" for r in self.raters]
        rows = [
            ("levels", f"{self.levels} ({nesting})"),
            ("therapists", therapists),
            ("patients", str(self.n_patients)),
            ("sessions", str(self.n_sessions)),
            ("session numbers", f"{self.session_range[0]}–{self.session_range[1]}"),
            ("alliance raters", ", ".join(raters) or "none"),
            ("primary rater", self.primary_rater),
            ("outcome", self.outcome_name),
            ("patients with an intake score", str(self.n_with_intake)),
            ("modalities", ", ".join(self.modalities) or "none"),
            ("covariates", ", ".join(self.covariates) or "none"),
            ("simulated truth", "yes" if self.has_truth else "no"),
        ]
        return pd.DataFrame(rows, columns=["", "this study"]).set_index("")


def instrument_name(key: str) -> str:
    """Short printed name of an instrument key (``"phq9"`` -> ``"PHQ-9"``)."""
    return SHORT_NAMES.get(key, key)


def _raters_with_scores(sessions: pd.DataFrame, configured: Mapping[str, Any]) -> tuple[str, ...]:
    present = []
    for rater in configured:
        column = schema.alliance_total_column(rater)
        if column in sessions.columns and sessions[column].notna().any():
            present.append(rater)
    return tuple(present)


def build_profile(
    sessions: pd.DataFrame, config: Mapping[str, Any], *, has_truth: bool = False
) -> StudyProfile:
    """The profile of a study from its processed sessions and its config (as a mapping).

    Parameters
    ----------
    sessions : pandas.DataFrame
        Processed sessions (``sessions.parquet`` of the cleaning step).
    config : mapping
        The study config in the template's shape (``StudyConfig.to_dict()``, as recorded
        in the processed folder's ``manifest.json``).
    has_truth : bool
        Whether a simulated truth file accompanies the data.
    """
    alliance = dict(config.get("alliance", {}))
    instruments = {r: str(m["instrument"]) for r, m in alliance.items()}
    raters = _raters_with_scores(sessions, alliance)
    primary = str(config.get("primary_alliance", next(iter(alliance), "client")))
    by_patient = sessions.groupby(schema.PATIENT_ID, sort=False)
    therapists = (
        int(sessions[schema.THERAPIST_ID].nunique())
        if schema.THERAPIST_ID in sessions.columns
        else None
    )
    intake = (
        int(by_patient[schema.OUTCOME_INTAKE].first().notna().sum())
        if schema.OUTCOME_INTAKE in sessions.columns
        else 0
    )
    eligible = (
        int(by_patient["within_eligible"].first().astype(bool).sum())
        if "within_eligible" in sessions.columns
        else 0
    )
    modalities = (
        tuple(sorted(str(m) for m in sessions[schema.MODALITY].dropna().unique()))
        if schema.MODALITY in sessions.columns
        else ()
    )
    covariates = tuple(c for c in config.get("covariates", {}) if c in sessions.columns)
    outcome = str(config.get("outcome", {}).get("instrument", "phq9"))
    primary_instrument = instruments.get(primary, "wai_sr")
    return StudyProfile(
        study=str(config.get("study", "study")),
        raters=raters,
        primary_rater=primary,
        alliance_instruments=instruments,
        outcome_instrument=outcome,
        n_patients=int(sessions[schema.PATIENT_ID].nunique()),
        n_sessions=len(sessions),
        n_therapists=therapists,
        session_range=(int(sessions[schema.SESSION].min()), int(sessions[schema.SESSION].max())),
        n_with_intake=intake,
        n_within_eligible=eligible,
        modalities=modalities,
        covariates=covariates,
        early_session=int(config.get("cleaning", {}).get("early_session", 3)),
        has_truth=has_truth,
        labels=make_labels(primary_instrument, outcome),
        term_labels=make_term_labels(primary_instrument, outcome),
    )


def load_profile(processed_dir: str | Path, truth_path: str | Path = "") -> StudyProfile:
    """The profile of the study whose cleaning outputs are in ``processed_dir``.

    Reads ``sessions.parquet`` and the config recorded in ``manifest.json``.
    ``truth_path`` is the simulated study's ``truth.json`` (``""`` for a real study;
    relative paths are taken from the project root, as notebook parameters are).
    """
    from helpers.paths import resolve_path

    folder = Path(processed_dir)
    sessions = pd.read_parquet(folder / "sessions.parquet")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    config = manifest.get("parameters", {}).get("config", {})
    has_truth = bool(truth_path) and resolve_path(truth_path).is_file()
    return build_profile(sessions, config, has_truth=has_truth)
