"""The canonical long schema: one row per patient-session.

Every input, whatever its layout and column names, is mapped by the study
config (:mod:`helpers.config`) onto these names.  Later stages (scoring,
cleaning, features, models, plots) only ever use the names defined here.

Column families
---------------
Identifiers
    ``therapist_id``, ``patient_id`` (strings) and ``session`` (positive integer,
    1 = first treatment session).  ``therapist_id`` is absent in a two-level
    study (config without ``columns.therapist_id``): patients are then not
    grouped by therapist.  When the config gives session dates
    (``columns.session_date``) instead of numbers, ``session`` is derived from
    the date order and the dates themselves (``session_date``) live only in the
    canonical frame; the cleaning step drops them, so no date reaches the
    processed data (``days_since_first``, optional, is a whole number of days).
    ``source_row`` is the row number a user sees in the input file (CSV line or
    Excel sheet row, counting the header, so the first record of a file with a
    one-line header is row 2; the case number in SPSS/Stata/Parquet; the
    patient's row in a wide file), kept so every record can be traced through
    the exclusion ledger.
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
SESSION_DATE = "session_date"
DAYS_SINCE_FIRST = "days_since_first"
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


def processed_schema():
    """The pandera schema every processed session-level frame satisfies.

    Checked by :func:`validate_processed` at the end of the cleaning step:
    identifiers present; sessions whole numbers from 1, one row per patient
    and session; each patient under one therapist; ``alliance`` and
    ``outcome`` numeric (missing allowed); the within-patient flag boolean.
    ``therapist_id`` may be absent (a two-level study); ``days_since_first``
    is optional (whole days, from 0).  No column may hold dates (the
    ``session_date`` column or any date/time dtype).  Instrument ranges were
    enforced earlier (values outside them were set to missing and logged).
    """
    import pandera.pandas as pa

    def one_therapist_per_patient(df):
        if THERAPIST_ID not in df.columns:
            return True
        return one_therapist_each(df[PATIENT_ID], df[THERAPIST_ID])

    def no_dates(df):
        kinds = [df[c].dtype.kind for c in df.columns]
        return SESSION_DATE not in df.columns and "M" not in kinds and "m" not in kinds

    return pa.DataFrameSchema(
        {
            SOURCE_ROW: pa.Column("int64", pa.Check.ge(1)),
            THERAPIST_ID: pa.Column(str, nullable=False, required=False),
            PATIENT_ID: pa.Column(str, nullable=False),
            SESSION: pa.Column("int64", pa.Check.ge(1)),
            DAYS_SINCE_FIRST: pa.Column("int64", pa.Check.ge(0), required=False),
            ALLIANCE: pa.Column(float, nullable=True),
            OUTCOME: pa.Column(float, nullable=True),
            OUTCOME_INTAKE: pa.Column(float, nullable=True),
            "within_eligible": pa.Column(bool),
            "alliance_within": pa.Column(float, nullable=True),
            "alliance_between": pa.Column(float, nullable=True),
        },
        checks=[
            pa.Check(first_of_each_session, error="one row per patient and session"),
            pa.Check(one_therapist_per_patient, error="each patient under one therapist"),
            pa.Check(no_dates, error="no dates in the processed data"),
        ],
        strict=False,
        coerce=False,
    )


def first_of_each_session(df):
    """``~df.duplicated([patient_id, session])``: False on a repeat of a patient's session.

    With whole-number sessions (int64) the pair is one integer key, so no
    text is hashed twice and no frame of keys is built (memory: a fifth of
    pandas' at a million rows).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"patient_id": ["a", "b", "a", "a"], "session": [1, 1, 2, 1]})
    >>> first_of_each_session(df).tolist()
    [True, True, True, False]
    """
    import pandas as pd

    sessions = df[SESSION]
    if sessions.dtype != "int64" or not len(df):
        return ~df.duplicated([PATIENT_ID, SESSION])
    patients = pd.factorize(df[PATIENT_ID])[0]  # -1: missing, one key as duplicated has it
    low, high = int(sessions.min()), int(sessions.max())
    if (int(patients.max()) + 2) * (high - low + 1) >= 2**62:  # keys would overflow
        return ~df.duplicated([PATIENT_ID, SESSION])
    keys = patients.astype("int64", copy=False)  # new already: computed in place (memory)
    keys *= high - low + 1
    keys += sessions.to_numpy()
    keys -= low
    return pd.Series(~repeated_keys(keys), index=df.index)


def repeated_keys(keys):
    """Mask of the integer keys equal to an earlier one (``duplicated(keep="first")``).

    By a stable sort rather than a hash table: two arrays of the keys' size,
    not a table of several times it (memory).

    Examples
    --------
    >>> import numpy as np
    >>> repeated_keys(np.array([5, 3, 5, 5, 3, 1])).tolist()
    [False, False, True, True, True, False]
    """
    import numpy as np

    order = np.argsort(keys, kind="stable")  # equal keys keep their order: the first is first
    ordered = keys[order]
    repeated = np.zeros(len(keys), dtype=bool)
    repeated[order[1:][ordered[1:] == ordered[:-1]]] = True
    return repeated


def one_therapist_each(patients, therapists) -> bool:
    """Whether no patient has two different therapists (missing ids are left out).

    ``groupby(patient)[therapist].nunique() <= 1`` for every patient, from
    the smallest and largest therapist code per patient (no sort and no
    grouping of the ids: memory).

    Examples
    --------
    >>> import pandas as pd
    >>> one_therapist_each(pd.Series(["a", "a", "b"]), pd.Series(["t", "t", "u"]))
    True
    >>> one_therapist_each(pd.Series(["a", "a", "b"]), pd.Series(["t", "u", "u"]))
    False
    """
    import numpy as np
    import pandas as pd

    patient, distinct = pd.factorize(patients)
    therapist = pd.factorize(therapists)[0]
    known = (patient >= 0) & (therapist >= 0)  # as nunique: a missing id is no id
    if not known.all():
        patient, therapist = patient[known], therapist[known]
    lowest = np.full(len(distinct), np.iinfo(np.int64).max)
    highest = np.full(len(distinct), -1)
    np.minimum.at(lowest, patient, therapist)
    np.maximum.at(highest, patient, therapist)
    return not bool((highest > lowest).any())


def validate_processed(df, source: str = ""):
    """Validate processed data against :func:`processed_schema`.

    Raises
    ------
    helpers.validation.StudyDataError
        Listing every failed check with its column and rows (lazy validation).
    """
    import pandera.errors

    from helpers.validation import Problem, StudyDataError

    try:
        # inplace: the schema coerces nothing, so validating a copy would only cost memory
        return processed_schema().validate(df, lazy=True, inplace=True)
    except pandera.errors.SchemaErrors as err:
        problems = []
        for (column, check), cases in err.failure_cases.groupby(
            ["column", "check"], dropna=False, sort=False
        ):
            idx = [int(i) for i in cases["index"].dropna()]
            rows = df.loc[idx, SOURCE_ROW].tolist() if SOURCE_ROW in df.columns else idx
            problems.append(
                Problem(
                    file=source,
                    column=None if column is None or column != column else str(column),
                    rows=rows,
                    values=cases["failure_case"].tolist(),
                    rule=str(check),
                    found=f"{len(cases)} failing value(s) in the processed data",
                    fix="this is a bug in the cleaning step if the input passed validation; "
                    "please report it with the input file",
                )
            )
        raise StudyDataError(problems, "The processed data do not satisfy the schema.") from None
