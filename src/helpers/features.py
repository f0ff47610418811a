"""Derived features for the alliance–outcome models.

Every function is pure: it takes the canonical long frame (one row per
patient-session, see :mod:`helpers.schema`) and returns new values.  It never
modifies its input, and its output follows the input's row order and index.
Sessions are whole numbers from 1.  The intake assessment is not a row: it is
the patient-level column ``outcome_intake``, repeated on each of the patient's
rows.

What the features are for
-------------------------
Alliance and outcome vary both *between* patients (some patients form
stronger alliances than others) and *within* a patient from session to
session.  The two sources answer different questions (Curran & Bauer, 2011):

* :func:`person_mean_center` splits a repeated measure into the patient's
  mean (``_between``) and the session's deviation from it (``_within``).
* :func:`therapist_mean_disaggregate` splits the patient-level mean into the
  therapist's mean and the patient's deviation from it (Baldwin, Wampold &
  Imel, 2007).
* :func:`lag_within_patient` gives the value at the previous session
  (t − 1) of the same patient, for models in which session t − 1 alliance
  predicts session t outcome (Falkenström, Granström & Holmqvist, 2013).
* :func:`early_value` gives the patient's value at one fixed early session
  ("early alliance").
* :func:`add_model_features` adds all of the columns the models use; its
  docstring is the data dictionary.

References
----------
Baldwin, S. A., Wampold, B. E., & Imel, Z. E. (2007). Untangling the
alliance-outcome correlation: Exploring the relative importance of therapist
and patient variability in the alliance. *Journal of Consulting and Clinical
Psychology, 75*(6), 842–852.

Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and
between-person effects in longitudinal models of change. *Annual Review of
Psychology, 62*, 583–619.

Falkenström, F., Granström, F., & Holmqvist, R. (2013). Therapeutic alliance
predicts symptomatic improvement session by session. *Journal of Counseling
Psychology, 60*(3), 317–328.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from helpers.errors import DataInputError, SettingsError
from helpers.schema import OUTCOME, OUTCOME_INTAKE, PATIENT_ID, SESSION, THERAPIST_ID
from helpers.validation import describe_rows, numeric_column, require_frame, with_columns

#: The columns :func:`add_model_features` adds, in this order.
MODEL_FEATURE_COLUMNS: tuple[str, ...] = (
    "alliance_between",
    "alliance_within",
    "alliance_lag",
    "alliance_within_lag",
    "alliance_between_c",
    "alliance_therapist_mean",
    "alliance_patient_dev",
    "alliance_early",
    "outcome_lag",
    "outcome_within",
    "outcome_between",
    "outcome_within_lag",
    "outcome_change",
    "session_c",
)

#: The columns of :data:`MODEL_FEATURE_COLUMNS` that need therapists; a two-level
#: study (``add_model_features(..., therapist=None)``) has none of them.
THERAPIST_FEATURE_COLUMNS: tuple[str, ...] = ("alliance_therapist_mean", "alliance_patient_dev")

#: How many offending rows an error message lists.
_MAX_ROWS_REPORTED = 5


# ---------------------------------------------------------------------------
# Input checks (each raises a ValueError that says what to fix)
# ---------------------------------------------------------------------------


def _check_no_missing(df: pd.DataFrame, columns: Iterable[str], where: str) -> None:
    for column in columns:
        absent = df[column].isna().to_numpy()
        if absent.any():
            raise DataInputError(
                f"{where}: column {column!r} is missing in rows {describe_rows(df.index[absent])}. "
                "Identifier and session columns must be complete; the cleaning step excludes "
                "such records and logs them."
            )


def _session_numbers(
    df: pd.DataFrame, session: str, where: str, *, minimum: int | None = None
) -> np.ndarray:
    """Return the session column as int64, refusing missing or fractional sessions."""
    _check_no_missing(df, [session], where)
    values = numeric_column(df, session, where)
    fractional = values != np.round(values)
    if fractional.any():
        raise DataInputError(
            f"{where}: column {session!r} holds session numbers that are not whole numbers in "
            f"rows {describe_rows(df.index[fractional], values[fractional].tolist())}."
        )
    if minimum is not None:
        low = values < minimum
        if low.any():
            raise DataInputError(
                f"{where}: column {session!r} holds session numbers below {minimum} in rows "
                f"{describe_rows(df.index[low], values[low].tolist())}. Sessions count from 1; "
                "the intake belongs in the patient-level column 'outcome_intake' (the cleaning "
                "step moves it there)."
            )
    return values.astype("int64")


def _session_keys(patients: np.ndarray, *sessions: np.ndarray) -> list[np.ndarray]:
    """One int64 key per (patient, session) pair, equal exactly when both are equal.

    Patients are factorised once; each session array is offset by the
    smallest session number given, so the keys of all arrays are comparable.
    """
    codes = pd.factorize(patients)[0].astype(np.int64)
    low = min(int(s.min()) for s in sessions) if len(codes) else 0
    span = max(int(s.max()) for s in sessions) - low + 1 if len(codes) else 1
    return [codes * span + (np.asarray(s, dtype=np.int64) - low) for s in sessions]


def _check_unique_sessions(
    df: pd.DataFrame, by: str, sessions: np.ndarray, where: str, keys: np.ndarray | None = None
) -> None:
    """Raise unless each (``by``, session) pair is on one row; ``keys`` may stand for ``df[by]``."""
    (keys,) = _session_keys(df[by].to_numpy() if keys is None else keys, sessions)
    duplicated = pd.Series(keys).duplicated(keep=False).to_numpy()
    if duplicated.any():
        raise DataInputError(
            f"{where}: more than one row for the same {by!r} and session in rows "
            f"{describe_rows(df.index[duplicated])}. Each patient may have one row per session; "
            "the cleaning step resolves duplicates and logs them."
        )


def _rows_at(patients: np.ndarray, sessions: np.ndarray, *wanted: np.ndarray) -> list[np.ndarray]:
    """For each ``wanted`` array: the row of the same patient at that session (-1: absent).

    (patient, session) pairs are unique (checked by the callers); their keys
    are sorted once and each wanted key is found by binary search, so the
    lags and the early value of :func:`add_model_features` share one sort.

    Examples
    --------
    >>> rows = _rows_at(np.array(["a", "a", "b"]), np.array([2, 1, 1]), np.array([1, 0, 0]))
    >>> rows[0].tolist()
    [1, -1, -1]
    """
    if len(patients) == 0:
        return [np.full(0, -1, dtype=np.int64) for _ in wanted]
    keys, *targets = _session_keys(patients, sessions, *wanted)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    rows = []
    for target in targets:
        position = np.minimum(np.searchsorted(sorted_keys, target), len(keys) - 1)
        rows.append(np.where(sorted_keys[position] == target, order[position], -1))
    return rows


def _values_at(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values`` at ``rows`` (from :func:`_rows_at`) as floats, NaN where the row is -1."""
    out = np.full(len(rows), np.nan)
    found = rows >= 0
    out[found] = np.asarray(values, dtype=float)[rows[found]]
    return out


def _keyed_lookup(
    patients: np.ndarray, sessions: np.ndarray, values: np.ndarray, wanted: np.ndarray
) -> np.ndarray:
    """Value of the same patient at session ``wanted`` (NaN where that session is absent)."""
    (rows,) = _rows_at(patients, sessions, wanted)
    return _values_at(values, rows)


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------


def person_mean_center(df: pd.DataFrame, column: str, by: str = PATIENT_ID) -> pd.DataFrame:
    """Split a repeated measure into a patient mean and within-patient deviations.

    Parameters
    ----------
    df : pandas.DataFrame
        Long frame, one row per patient-session.
    column : str
        The numeric column to split (e.g. ``"alliance"``).
    by : str, default "patient_id"
        The grouping column.

    Returns
    -------
    pandas.DataFrame
        A copy of ``df`` with two columns added:

        ``<column>_between``
            The patient's mean of ``column`` over the patient's non-missing
            values, repeated on each of the patient's rows.  NaN for a patient
            whose values are all missing.
        ``<column>_within``
            ``column - <column>_between``.  NaN where ``column`` is NaN.  The
            deviations of a patient sum to zero.

    Examples
    --------
    >>> df = pd.DataFrame({"patient_id": ["a", "a", "b"], "x": [1.0, 3.0, 5.0]})
    >>> person_mean_center(df, "x")[["x_between", "x_within"]].to_numpy().tolist()
    [[2.0, -1.0], [2.0, 1.0], [5.0, 0.0]]
    """
    where = "person_mean_center"
    require_frame(df, [column, by], where)
    _check_no_missing(df, [by], where)
    values = pd.Series(numeric_column(df, column, where), index=df.index)
    between = values.groupby(df[by].to_numpy()).transform("mean").astype(float)
    return with_columns(df, {f"{column}_between": between, f"{column}_within": values - between})


def therapist_mean_disaggregate(
    df: pd.DataFrame,
    column: str,
    *,
    by: str = PATIENT_ID,
    therapist: str = THERAPIST_ID,
) -> pd.DataFrame:
    """Split the patient-level mean into therapist mean and patient deviation.

    Following Baldwin, Wampold & Imel (2007), each patient's mean of
    ``column`` (over the patient's non-missing sessions) is split into:

    ``<column>_therapist_mean``
        The mean of the therapist's *patient means*.  Every patient with at
        least one non-missing value counts once, however many sessions the
        patient has.
    ``<column>_patient_dev``
        The patient's mean minus the therapist mean.

    Why patients count equally: the decomposition is of the patient-level
    variable (two levels, patients within therapists), so the therapist mean
    is an average over patients.  Averaging over session rows instead would
    let patients with many sessions dominate their therapist's mean.  It would
    also leave ``patient_dev`` with a non-zero unweighted mean within the
    therapist, so the therapist and patient components would no longer be
    separated.  With equal weights, the patient deviations of each therapist
    average exactly to zero.

    Parameters
    ----------
    df : pandas.DataFrame
        Long frame, one row per patient-session.
    column : str
        The numeric column (e.g. ``"alliance"``).
    by : str, default "patient_id"
    therapist : str, default "therapist_id"

    Returns
    -------
    pandas.DataFrame
        A copy of ``df`` with the two columns added (NaN for a patient whose
        values are all missing; the therapist mean is NaN only when none of the
        therapist's patients has a value).

    Raises
    ------
    ValueError
        If a patient appears under more than one therapist.

    Examples
    --------
    >>> df = pd.DataFrame({"therapist_id": ["t"] * 3, "patient_id": ["a", "a", "b"],
    ...                    "x": [1.0, 3.0, 6.0]})
    >>> out = therapist_mean_disaggregate(df, "x")
    >>> out[["x_therapist_mean", "x_patient_dev"]].to_numpy().tolist()
    [[4.0, -2.0], [4.0, -2.0], [4.0, 2.0]]
    """
    where = "therapist_mean_disaggregate"
    require_frame(df, [column, by, therapist], where)
    _check_no_missing(df, [by, therapist], where)
    values = pd.Series(numeric_column(df, column, where))
    patients = df[by].to_numpy()
    therapists = pd.Series(df[therapist].to_numpy())

    if therapists.dtype.kind in "iu":  # group codes: no sort of the values (memory)
        shared = _varying_groups(therapists.groupby(patients))
    else:  # labels, maybe of mixed types, which min and max cannot compare
        n_therapists = therapists.groupby(patients).nunique()
        shared = n_therapists.index[(n_therapists > 1).to_numpy()]
    if len(shared):
        raise DataInputError(
            f"{where}: patient(s) {list(shared[:_MAX_ROWS_REPORTED])} appear under more "
            f"than one therapist ({therapist!r}). Patients must be nested in one therapist; the "
            "cleaning step's 'multiple_therapists' policy resolves this."
        )
    patient_mean = values.groupby(patients).mean()
    therapist_of_patient = therapists.groupby(patients).first()
    therapist_mean = patient_mean.groupby(therapist_of_patient).mean()

    row_patient_mean = pd.Series(patients).map(patient_mean).astype(float).set_axis(df.index)
    row_therapist_mean = therapists.map(therapist_mean).astype(float).set_axis(df.index)
    deviation = row_patient_mean - row_therapist_mean
    added = {f"{column}_therapist_mean": row_therapist_mean, f"{column}_patient_dev": deviation}
    return with_columns(df, added)


def lag_within_patient(
    df: pd.DataFrame, column: str, by: str = PATIENT_ID, session: str = SESSION
) -> pd.Series:
    """Value of ``column`` at session t − 1 of the same patient.

    The lag is looked up by patient and session number, never by row
    position.  A row at session t gets the value at session t − 1 of the same
    patient, or NaN when the patient has no row at session t − 1.  After a
    gap (e.g. sessions 3 and 5), session 5 gets NaN, not the value at session
    3.  Values never pass from one patient to another, and the result does not
    depend on the order of the rows.

    Parameters
    ----------
    df : pandas.DataFrame
        Long frame, one row per patient-session.
    column : str
        The numeric column to lag.
    by : str, default "patient_id"
    session : str, default "session"
        Column of whole session numbers.

    Returns
    -------
    pandas.Series
        Named ``<column>_lag``, with the index of ``df``.

    Raises
    ------
    ValueError
        If a patient has two rows for the same session, or session numbers are
        missing or fractional.

    Examples
    --------
    >>> df = pd.DataFrame({"patient_id": ["a", "a", "a", "b"], "session": [3, 1, 2, 2],
    ...                    "x": [30.0, 10.0, 20.0, 99.0]})
    >>> lag_within_patient(df, "x").tolist()
    [20.0, nan, 10.0, nan]
    """
    where = "lag_within_patient"
    require_frame(df, [column, by, session], where)
    _check_no_missing(df, [by], where)
    sessions = _session_numbers(df, session, where)
    _check_unique_sessions(df, by, sessions, where)
    values = numeric_column(df, column, where)
    lag = _keyed_lookup(df[by].to_numpy(), sessions, values, sessions - 1)
    return pd.Series(lag, index=df.index, name=f"{column}_lag")


def early_value(
    df: pd.DataFrame,
    column: str,
    session: int = 3,
    *,
    by: str = PATIENT_ID,
    session_column: str = SESSION,
) -> pd.Series:
    """The patient's value of ``column`` at one fixed session, on every row.

    Used for "early alliance": the alliance rated at session 3 (by default) as
    a patient-level predictor.  Every row of the patient gets the same value,
    including the rows before that session.  If you use it to predict
    outcomes, restrict the model to the sessions after ``session`` yourself,
    so that an outcome is never predicted by a rating made later.

    Parameters
    ----------
    df : pandas.DataFrame
        Long frame, one row per patient-session.
    column : str
        The numeric column (e.g. ``"alliance"``).
    session : int, default 3
        The session whose value is taken.
    by : str, default "patient_id"
    session_column : str, default "session"

    Returns
    -------
    pandas.Series
        Named ``<column>_early``, with the index of ``df``.  NaN for a patient
        with no row at ``session`` or a missing value there.  No other session
        is substituted.

    Examples
    --------
    >>> df = pd.DataFrame({"patient_id": ["a", "a", "b"], "session": [1, 3, 1],
    ...                    "x": [1.0, 3.0, 5.0]})
    >>> early_value(df, "x", session=3).tolist()
    [3.0, 3.0, nan]
    """
    where = "early_value"
    _check_early_session(session)
    require_frame(df, [column, by, session_column], where)
    _check_no_missing(df, [by], where)
    sessions = _session_numbers(df, session_column, where)
    _check_unique_sessions(df, by, sessions, where)
    values = numeric_column(df, column, where)
    wanted = np.full(len(df), int(session), dtype="int64")
    early = _keyed_lookup(df[by].to_numpy(), sessions, values, wanted)
    return pd.Series(early, index=df.index, name=f"{column}_early")


def _check_early_session(session: object) -> None:
    """Raise unless ``session`` (of :func:`early_value`) is a whole number >= 1."""
    if isinstance(session, bool) or not isinstance(session, (int, np.integer)) or session < 1:
        raise SettingsError(f"early_value: session must be a whole number >= 1, got {session!r}.")


def grand_mean_center(
    series: pd.Series, *, by: pd.Series | Sequence[object] | np.ndarray | None = None
) -> pd.Series:
    """Subtract the grand mean from ``series``.

    Parameters
    ----------
    series : pandas.Series
        Numeric values (missing values stay missing and are left out of the
        mean).
    by : array-like, optional
        Group labels, one per element of ``series`` (e.g. the patient ids).
        If given, ``series`` must be constant within each group (e.g. a
        patient mean repeated on each row).  The grand mean is then the mean
        over groups, each group once, so patients with more sessions do not
        weigh more.

    Returns
    -------
    pandas.Series
        Same index and name as ``series``.

    Raises
    ------
    ValueError
        If ``by`` has the wrong length or ``series`` varies within a group.

    Examples
    --------
    >>> grand_mean_center(pd.Series([1.0, 1.0, 1.0, 4.0]), by=["a", "a", "a", "b"]).tolist()
    [-1.5, -1.5, -1.5, 1.5]
    """
    values = pd.to_numeric(series, errors="raise").astype("float64")
    if by is None:
        return values - values.mean()
    groups = np.asarray(by)
    if groups.dtype.kind not in "iu":  # integer keys (group codes) group as they are: fast
        groups = np.asarray(by, dtype=object)
    if len(groups) != len(values):
        raise DataInputError(
            f"grand_mean_center: 'by' has {len(groups)} labels for {len(values)} values."
        )
    grouped = pd.Series(values.to_numpy(), index=pd.RangeIndex(len(values))).groupby(groups)
    varying = _varying_groups(grouped)
    if len(varying):
        raise DataInputError(
            f"grand_mean_center: {series.name!r} varies within group(s) "
            f"{varying[:_MAX_ROWS_REPORTED].tolist()}; with 'by', pass a value that is "
            "constant within each group (such as a patient mean)."
        )
    grand_mean = grouped.first().mean()
    return values - grand_mean


def _varying_groups(grouped: pd.api.typing.SeriesGroupBy) -> pd.Index:
    """The groups holding more than one distinct value (missing counts as a value).

    What ``nunique(dropna=False) > 1`` finds, from per-group minimum, maximum
    and counts: no sort of the values (memory and time at a million rows).

    Examples
    --------
    >>> values = pd.Series([1.0, 1.0, 2.0, 3.0, np.nan, np.nan, 4.0, np.nan])
    >>> _varying_groups(values.groupby([0, 0, 1, 1, 2, 2, 3, 3])).tolist()
    [1, 3]
    """
    size, count = grouped.size(), grouped.count()
    differ = (grouped.max() > grouped.min()) | ((count > 0) & (count < size))
    return differ.index[differ.to_numpy()]


def intake_adjusted_change(
    df: pd.DataFrame,
    *,
    outcome: str = OUTCOME,
    intake: str = OUTCOME_INTAKE,
    residual_of_last: bool = False,
    by: str = PATIENT_ID,
    session: str = SESSION,
) -> pd.DataFrame:
    """Change from intake, and optionally the intake-adjusted last outcome.

    Parameters
    ----------
    df : pandas.DataFrame
        Long frame with the session outcome and the patient's intake total.
    outcome : str, default "outcome"
    intake : str, default "outcome_intake"
    residual_of_last : bool, default False
        Also return the residual of each patient's last observed outcome
        regressed on intake.
    by, session : str
        Patient and session columns (used only with ``residual_of_last``).

    Returns
    -------
    pandas.DataFrame
        Index of ``df``, with the columns:

        ``<outcome>_change``
            ``outcome - intake`` per row.  Negative means fewer symptoms than
            at intake.
        ``<outcome>_last_residual`` (only with ``residual_of_last=True``)
            The patient's last observed outcome (at the highest session with
            a non-missing outcome) minus the value predicted by an ordinary
            least-squares line of last outcome on intake, fitted across
            patients, each patient once.  Repeated on each of the patient's
            rows.  NaN for patients without a last outcome or an intake.

    Raises
    ------
    ValueError
        With ``residual_of_last``: if the intake varies within a patient, or
        fewer than 3 patients with distinct intakes are available for the
        line.

    Examples
    --------
    >>> df = pd.DataFrame({"outcome": [8.0, 5.0], "outcome_intake": [10.0, 10.0]})
    >>> intake_adjusted_change(df)["outcome_change"].tolist()
    [-2.0, -5.0]
    """
    where = "intake_adjusted_change"
    require_frame(df, [outcome, intake], where)
    y = numeric_column(df, outcome, where)
    y0 = numeric_column(df, intake, where)
    # the constructor, not out[name] = …, which would copy the new array (memory)
    out = pd.DataFrame({f"{outcome}_change": y - y0}, index=df.index, copy=False)
    if not residual_of_last:
        return out

    require_frame(df, [by, session], where)
    _check_no_missing(df, [by], where)
    sessions = _session_numbers(df, session, where)
    _check_unique_sessions(df, by, sessions, where)
    patients = df[by].to_numpy()
    intake_by_row = pd.Series(y0)
    n_intakes = intake_by_row.groupby(patients).nunique(dropna=False)
    varying = n_intakes[n_intakes > 1]
    if len(varying):
        raise DataInputError(
            f"{where}: {intake!r} differs between rows of patient(s) "
            f"{list(varying.index[:_MAX_ROWS_REPORTED])}; the intake is one value per patient."
        )
    observed = pd.DataFrame({"p": patients, "s": sessions, "y": y, "y0": y0})
    observed = observed[observed["y"].notna()]
    last = observed.sort_values("s", kind="stable").groupby("p").last()
    last = last[last["y0"].notna()]
    x = last["y0"].to_numpy(dtype=float)
    yl = last["y"].to_numpy(dtype=float)
    if len(last) < 3 or np.unique(x).size < 2:
        raise DataInputError(
            f"{where}: the residual of the last outcome on intake needs at least 3 patients "
            f"with a last outcome and an intake, and intakes that differ; found {len(last)} "
            f"patient(s) with {np.unique(x).size} distinct intake value(s)."
        )
    x_mean, y_mean = x.mean(), yl.mean()
    slope = np.sum((x - x_mean) * (yl - y_mean)) / np.sum((x - x_mean) ** 2)
    intercept = y_mean - slope * x_mean
    residual = pd.Series(yl - (intercept + slope * x), index=last.index)
    out[f"{outcome}_last_residual"] = pd.Series(patients).map(residual).to_numpy(dtype=float)
    return out


def add_model_features(
    df: pd.DataFrame,
    *,
    alliance: str = "alliance",
    outcome: str = OUTCOME,
    early_session: int = 3,
    therapist: str | None = THERAPIST_ID,
) -> pd.DataFrame:
    """Add every derived column the mixed models use.

    The input must hold ``therapist_id`` (unless ``therapist=None``),
    ``patient_id``, ``session`` (whole numbers from 1, one row per patient and
    session), the alliance and outcome columns, and ``outcome_intake``.  The
    input is not modified.  The result is a copy with the same rows, order and
    index, plus exactly the columns below (:data:`MODEL_FEATURE_COLUMNS`; with
    ``therapist=None`` those without :data:`THERAPIST_FEATURE_COLUMNS`).
    Output names always start with ``alliance_`` / ``outcome_``, whichever
    source columns were chosen.

    Parameters
    ----------
    df : pandas.DataFrame
        The cleaned long frame.
    alliance : str, default "alliance"
        Column holding the alliance total to use (e.g. ``"alliance_client"``).
    outcome : str, default "outcome"
        Column holding the outcome total.
    early_session : int, default 3
        Session whose alliance is the early alliance.
    therapist : str or None, default "therapist_id"
        The therapist column; ``None`` for a two-level study (patients not
        identified by therapist), which leaves out the Baldwin–Wampold–Imel
        split (``alliance_therapist_mean``, ``alliance_patient_dev``).

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    ValueError
        If a required column is absent, an output column already exists, an
        identifier is missing, a session number is not a whole number >= 1, a
        patient has two rows for one session or more than one therapist, or a
        score column is not numeric.

    Notes
    -----
    Data dictionary of the added columns:

    alliance_between
        Patient mean of the alliance over the patient's non-missing sessions
        (:func:`person_mean_center`).
    alliance_within
        Alliance minus ``alliance_between``: the session's deviation from the
        patient's own mean.  NaN where the alliance is missing.
    alliance_lag
        Alliance at session t − 1 of the same patient.  NaN at the first
        session, after a gap, or when that rating is missing
        (:func:`lag_within_patient`).
    alliance_within_lag
        ``alliance_within`` at session t − 1 of the same patient.
    alliance_between_c
        ``alliance_between`` minus the grand mean of the patient means (each
        patient counted once), so 0 is the average patient
        (:func:`grand_mean_center`).
    alliance_therapist_mean
        Mean of the therapist's patient means (each patient counted once;
        :func:`therapist_mean_disaggregate`).  Absent with ``therapist=None``.
    alliance_patient_dev
        ``alliance_between`` minus ``alliance_therapist_mean``.  Absent with
        ``therapist=None``.
    alliance_early
        The patient's alliance at session ``early_session`` on every row of the
        patient; NaN if that session is absent or unrated
        (:func:`early_value`).
    outcome_lag
        Outcome at session t − 1 of the same patient (NaN at the first session
        and after a gap).
    outcome_within
        Outcome minus the patient's mean outcome over sessions (the intake is
        not a session and is not part of the mean).
    outcome_between
        Patient mean of the outcome over the patient's non-missing sessions.
    outcome_within_lag
        ``outcome_within`` at session t − 1 of the same patient.
    outcome_change
        ``outcome - outcome_intake``.  Negative means fewer symptoms than at
        intake, since every supported outcome measure is scored so that higher
        is worse.
    session_c
        ``session - 1``: 0 at the first session, so model intercepts refer to
        the first session.
    """
    where = "add_model_features"
    ids = [PATIENT_ID] if therapist is None else [therapist, PATIENT_ID]
    require_frame(df, [*ids, SESSION, alliance, outcome, OUTCOME_INTAKE], where)
    names = [
        c
        for c in MODEL_FEATURE_COLUMNS
        if therapist is not None or c not in THERAPIST_FEATURE_COLUMNS
    ]
    clash = [c for c in MODEL_FEATURE_COLUMNS if c in df.columns]
    if clash:
        raise DataInputError(
            f"{where}: the frame already has the output column(s) {clash}. Drop them (or start "
            "from the cleaned data) so that no stale feature is mistaken for a fresh one."
        )
    _check_no_missing(df, ids, where)
    sessions = _session_numbers(df, SESSION, where, minimum=1)
    keys = {c: _sorted_codes(df[c]) for c in ids}
    _check_unique_sessions(df, PATIENT_ID, sessions, where, keys=keys[PATIENT_ID])
    try:
        features = _feature_columns(df, keys, sessions, alliance, outcome, early_session)
    except DataInputError:
        features = None
    if features is None:  # a problem found by code: found again by id, the message names them
        labels = {c: df[c].to_numpy() for c in ids}
        features = _feature_columns(df, labels, sessions, alliance, outcome, early_session)
    # Series on the frame's index, not arrays: copy-on-write tracks them, so nothing is copied
    return with_columns(df, {name: features.pop(name).set_axis(df.index) for name in names})


def _sorted_codes(ids: pd.Series) -> np.ndarray:
    """Each id's position among the sorted distinct ids: integer keys ordered as the ids.

    Grouping by these codes gives the groups, their order and the order of
    rows within them that grouping by the ids does, without a Python string
    object per row (memory and time at a million rows).

    Examples
    --------
    >>> _sorted_codes(pd.Series(["b", "a", "b", "c"])).tolist()
    [1, 0, 1, 2]
    """
    return pd.factorize(ids, sort=True)[0]


def _feature_columns(
    df: pd.DataFrame,
    ids: dict[str, np.ndarray],
    sessions: np.ndarray,
    alliance: str,
    outcome: str,
    early_session: int,
) -> dict[str, pd.Series]:
    """The columns of :func:`add_model_features` by name (every one, therapist ones if asked).

    ``ids`` maps ``patient_id`` (and, for a three-level study, the therapist
    column) to one group key per row: the ids or their :func:`_sorted_codes`.
    """
    where = "add_model_features"
    # what lag_within_patient and early_value give, from one sort of the (patient,
    # session) keys (add_model_features has checked them); first, while little is held
    _check_early_session(early_session)
    early = np.full(len(sessions), int(early_session), dtype="int64")
    lag, first = _rows_at(ids[PATIENT_ID], sessions, sessions - 1, early)
    del early
    work = pd.DataFrame(
        {
            PATIENT_ID: ids[PATIENT_ID],
            SESSION: sessions,
            "alliance": numeric_column(df, alliance, where),
            "outcome": numeric_column(df, outcome, where),
            OUTCOME_INTAKE: numeric_column(df, OUTCOME_INTAKE, where),
        },
        copy=False,  # the arrays are new or read-only views of df's columns, never written
    )
    work = person_mean_center(work, "alliance")
    # before the other features: its grouping's temporaries then meet fewer of them (memory)
    between_c = grand_mean_center(work["alliance_between"], by=work[PATIENT_ID])
    work = person_mean_center(work, "outcome")
    therapist = next((c for c in ids if c != PATIENT_ID), None)
    if therapist is not None:
        work = with_columns(work, {THERAPIST_ID: ids[therapist]})
        work = therapist_mean_disaggregate(work, "alliance")
    at = {name: pd.Series(_values_at(work[name].to_numpy(), lag)) for name in _LAGGED}
    return {
        "alliance_between": work["alliance_between"],
        "alliance_within": work["alliance_within"],
        "alliance_lag": at["alliance"],
        "alliance_within_lag": at["alliance_within"],
        "alliance_between_c": between_c,
        **{c: work[c] for c in THERAPIST_FEATURE_COLUMNS if c in work},
        "alliance_early": pd.Series(_values_at(work["alliance"].to_numpy(), first)),
        "outcome_lag": at["outcome"],
        "outcome_within": work["outcome_within"],
        "outcome_between": work["outcome_between"],
        "outcome_within_lag": at["outcome_within"],
        "outcome_change": intake_adjusted_change(work)["outcome_change"],
        "session_c": pd.Series(sessions - 1),
    }


#: The columns of :func:`_feature_columns`' work frame whose value at t − 1 is a feature.
_LAGGED = ("alliance", "alliance_within", "outcome", "outcome_within")


def add_patient_model_features(patients: pd.DataFrame) -> pd.DataFrame:
    """Grand-mean-centred predictors for patient-level models (one row per patient).

    Adds ``alliance_early_c``, ``alliance_mean_c``, ``alliance_therapist_mean_c``
    and ``outcome_intake_c``: each column minus its mean over the patients who
    have it, so a model's intercept is the outcome of a patient with average
    early alliance and average intake severity.  ``alliance_patient_dev`` is
    already centred within therapists and is left as it is.  The input is not
    modified.
    """
    out = patients.copy()
    for column in ("alliance_early", "alliance_mean", "alliance_therapist_mean", OUTCOME_INTAKE):
        if column in out:
            out[f"{column}_c"] = out[column] - out[column].mean()
    return out
