"""The study's own patient-level alliance–outcome correlation, in the meta-analyses' metric.

:func:`patient_level_alliance_outcome` correlates each patient's mean alliance
with their improvement (optionally partialling out intake severity) and returns
an :class:`AllianceOutcomeCorrelation`; :func:`helpers.meta_analysis.benchmark_table`
sets the result beside the published meta-analytic estimates.
:class:`CorrelationEstimate` (a correlation with its t test and Fisher-z
interval) is the result type shared with :mod:`helpers.agreement`.

Sign convention
---------------
Every correlation here is coded as in the alliance meta-analyses: a
**positive r means that a stronger alliance goes with a better outcome** (more
improvement).  The symptom measures of this compendium score higher = more
symptoms, so the patient-level outcome is ``improvement = outcome_intake -
outcome_last`` (positive = fewer symptoms at the end than at intake).

References
----------
Fisher, R. A. (1921). On the "probable error" of a coefficient of correlation
deduced from a small sample. *Metron, 1*, 3–32.

Flückiger, C., Del Re, A. C., Wampold, B. E., & Horvath, A. O. (2018). The
alliance in adult psychotherapy: A meta-analytic synthesis. *Psychotherapy,
55*(4), 316–340.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from helpers.errors import DataInputError
from helpers.schema import OUTCOME_INTAKE, PATIENT_ID
from helpers.stats_common import confidence_level, fisher_interval, whole_number
from helpers.validation import describe_rows, numeric_column, require_frame

__all__ = [
    "AllianceOutcomeCorrelation",
    "CorrelationEstimate",
    "patient_level_alliance_outcome",
]


# ---------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CorrelationEstimate:
    """A correlation with its test and Fisher-z confidence interval.

    Attributes
    ----------
    label : str
        What was correlated (e.g. ``"r"``, ``"partial r | outcome_intake"``).
    r : float
        The correlation.
    n : int
        Number of units it is computed on (patients; for a repeated measures
        correlation, observations).
    df : int
        Degrees of freedom of its t test (n − 2 for a Pearson r, n − 3 for a
        partial r with one control, N − k − 1 for a repeated measures r).
    ci_low, ci_high : float
        Confidence interval.
    p : float
        Two-sided p value of the t test of r = 0,
        t = r · sqrt(df / (1 − r²)).
    level : float
        Confidence level of the interval.
    n_patients : int or None
        Number of patients, where ``n`` counts observations.
    """

    label: str
    r: float
    n: int
    df: int
    ci_low: float
    ci_high: float
    p: float
    level: float
    n_patients: int | None = None

    @property
    def ci(self) -> tuple[float, float]:
        """``(ci_low, ci_high)``."""
        return (self.ci_low, self.ci_high)

    def as_dict(self) -> dict[str, object]:
        """The fields as a dict (for one row of a table)."""
        return asdict(self)


def _estimate(
    label: str,
    r: float,
    n: int,
    df: int,
    se_z: float,
    level: float,
    n_patients: int | None = None,
) -> CorrelationEstimate:
    """Build a CorrelationEstimate: t-test p with ``df``, Fisher CI with ``se_z``."""
    if not np.isfinite(r):
        raise ValueError(f"{label}: the correlation could not be computed (got {r}).")
    if abs(r) >= 1.0:
        raise DataInputError(
            f"{label}: the correlation is exactly {r:+.0f}; the two columns are perfectly "
            "related (the same column twice, or one computed from the other?). A confidence "
            "interval and test are not defined.",
            fix="Pass two different measures.",
        )
    t = r * math.sqrt(df / (1.0 - r * r))
    p = float(2.0 * stats.t.sf(abs(t), df))
    lo, hi = fisher_interval(r, se_z, level)
    return CorrelationEstimate(
        label=label,
        r=float(r),
        n=int(n),
        df=int(df),
        ci_low=lo,
        ci_high=hi,
        p=p,
        level=level,
        n_patients=n_patients,
    )


def _estimates_frame(estimates: Sequence[CorrelationEstimate]) -> pd.DataFrame:
    columns = ["label", "r", "n", "n_patients", "df", "ci_low", "ci_high", "p", "level"]
    frame = pd.DataFrame.from_records([e.as_dict() for e in estimates], columns=columns)
    frame["n_patients"] = pd.array(frame["n_patients"].tolist(), dtype="Int64")
    return frame


@dataclass(frozen=True)
class AllianceOutcomeCorrelation:
    """Result of :func:`patient_level_alliance_outcome`.

    Attributes
    ----------
    alliance, outcome : str
        The columns correlated.
    min_sessions : int or None
        Minimum number of sessions a patient needed.
    n_patients_in : int
        Patients (rows) in the input.
    n_excluded_few_sessions : int
        Patients with fewer than ``min_sessions`` sessions.
    n_excluded_missing : int
        Further patients without an alliance, outcome (or, when adjusting,
        intake) value.
    correlation : CorrelationEstimate
        Zero-order Pearson r over the remaining patients.
    partial : CorrelationEstimate or None
        Partial r controlling for intake severity (``adjust_for_intake=True``).
    """

    alliance: str
    outcome: str
    min_sessions: int | None
    n_patients_in: int
    n_excluded_few_sessions: int
    n_excluded_missing: int
    correlation: CorrelationEstimate
    partial: CorrelationEstimate | None = None

    @property
    def r(self) -> float:
        """The zero-order correlation."""
        return self.correlation.r

    @property
    def n(self) -> int:
        """Patients in the zero-order correlation."""
        return self.correlation.n

    @property
    def ci(self) -> tuple[float, float]:
        """Confidence interval of the zero-order correlation."""
        return self.correlation.ci

    @property
    def p(self) -> float:
        """p value of the zero-order correlation."""
        return self.correlation.p

    def to_frame(self) -> pd.DataFrame:
        """One row per estimate (zero-order, and partial when computed).

        Returns
        -------
        pandas.DataFrame
            Columns ``label, r, n, n_patients, df, ci_low, ci_high, p, level``.
        """
        estimates = [self.correlation] + ([self.partial] if self.partial is not None else [])
        return _estimates_frame(estimates)


# ---------------------------------------------------------------------------
# Frame input checks
# ---------------------------------------------------------------------------


def _row_labels(df: pd.DataFrame, mask: np.ndarray) -> list[object]:
    """Patient ids where the frame has them, else index labels, of rows in ``mask``."""
    if PATIENT_ID in df.columns:
        return [f"{PATIENT_ID}={v}" for v in df.loc[mask, PATIENT_ID]]
    return list(df.index[mask])


def _numeric_column(df: pd.DataFrame, column: str, where: str) -> np.ndarray:
    """A score column as floats, rows named by patient id where the frame has them."""
    return numeric_column(
        df,
        column,
        where,
        finite=True,
        fix="Score and clean the data first (helpers.pipeline), or pass the right column.",
        row_labels=_row_labels,
        error=DataInputError,
    )


def _check_not_constant(values: np.ndarray, column: str, where: str, what: str) -> None:
    if np.ptp(values) == 0:
        raise DataInputError(
            f"{where}: {column!r} has the same value ({values[0]:g}) for every {what} used, "
            "so it has no variance and no correlation can be computed.",
            fix="Check that the column holds the intended measure.",
        )


def _residualise(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Residuals of the least-squares regression of y on [1, x]."""
    design = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return y - design @ coef


# ---------------------------------------------------------------------------
# The study's own patient-level correlation
# ---------------------------------------------------------------------------


def patient_level_alliance_outcome(
    patients: pd.DataFrame,
    alliance: str = "alliance_mean",
    outcome: str = "improvement",
    min_sessions: int | None = 3,
    adjust_for_intake: bool = False,
    *,
    intake: str = OUTCOME_INTAKE,
    sessions_column: str = "n_sessions",
    higher_outcome_is_better: bool = True,
    level: float = 0.95,
) -> AllianceOutcomeCorrelation:
    """The patient-level alliance–outcome correlation, in the meta-analyses' metric.

    One value per patient: by default the patient's mean alliance over the
    treatment sessions (``alliance_mean`` in ``patients.csv``) and the
    improvement from intake to the last session with an outcome
    (``improvement = outcome_intake − outcome_last``).  Patients with fewer
    than ``min_sessions`` sessions are left out (a mean of one or two ratings
    and a change over one or two sessions are poor measures of either), and so
    are patients missing one of the values.

    Sign convention: a **positive r means that a stronger alliance goes with
    more improvement**, as in the meta-analyses (Flückiger et al., 2018, code
    every outcome so that positive = better).  If the outcome column is
    scored higher = worse (e.g. the end-of-treatment symptom score itself),
    pass ``higher_outcome_is_better=False`` and the sign is reversed so the
    result stays comparable.

    With ``adjust_for_intake=True`` the partial correlation controlling for
    intake severity is added: alliance and outcome are each regressed on
    ``outcome_intake`` (least squares with intercept) and the residuals are
    correlated.  Its t test has df = n − 3 and its Fisher-z SE is
    1/sqrt(n − 4) (one controlled variable).  Because improvement = intake −
    last, the partial r of alliance with improvement given intake equals
    minus the partial r of alliance with the last score given intake (a
    residualised-change correlation).

    Parameters
    ----------
    patients : pandas.DataFrame
        One row per patient, e.g. ``patients.csv`` from the cleaning step.
    alliance : str, default "alliance_mean"
        Patient-level alliance column (e.g. ``"alliance_early"``).
    outcome : str, default "improvement"
        Patient-level outcome column.
    min_sessions : int or None, default 3
        Minimum value of ``sessions_column`` for a patient to be used; None
        uses every patient (then ``sessions_column`` is not needed).
    adjust_for_intake : bool, default False
        Also compute the partial r controlling for ``intake``.
    intake : str, default "outcome_intake"
        Intake severity column, used when adjusting.
    sessions_column : str, default "n_sessions"
        Number of sessions per patient.
    higher_outcome_is_better : bool, default True
        Whether a higher ``outcome`` value is the better result.
    level : float, default 0.95
        Confidence level.

    Returns
    -------
    AllianceOutcomeCorrelation
        ``.r``, ``.n``, ``.ci``, ``.p`` for the zero-order correlation,
        ``.partial`` when adjusted, the exclusion counts, and ``.to_frame()``.

    Raises
    ------
    ValueError
        If a column is absent or not numeric, a patient appears twice, fewer
        than 4 patients (5 when adjusting) remain, or a column is constant.
    """
    where = "patient_level_alliance_outcome"
    level = confidence_level(level)
    if min_sessions is not None:
        min_sessions = whole_number(min_sessions, "min_sessions", minimum=1)
    needed = [alliance, outcome]
    if min_sessions is not None:
        needed.append(sessions_column)
    if adjust_for_intake:
        needed.append(intake)
    require_frame(
        patients,
        needed,
        where,
        hint="Pass the patient-level table (patients.csv from the cleaning step), or name the "
        "columns with the alliance=, outcome=, sessions_column= and intake= arguments "
        "(min_sessions=None needs no session count).",
    )
    if PATIENT_ID in patients.columns:
        dup = patients[PATIENT_ID].duplicated(keep=False).to_numpy()
        if dup.any():
            raise DataInputError(
                f"{where}: patients appear on more than one row: "
                f"{describe_rows(sorted(set(patients.loc[dup, PATIENT_ID])))}. This function "
                "needs one row per patient (patients.csv), not the session-level data."
            )
    x = _numeric_column(patients, alliance, where)
    y = _numeric_column(patients, outcome, where)
    n_in = len(patients)
    keep = np.ones(n_in, dtype=bool)
    n_few = 0
    if min_sessions is not None:
        counts = _numeric_column(patients, sessions_column, where)
        enough = counts >= min_sessions  # NaN counts compare False: excluded
        n_few = int((~enough).sum())
        keep &= enough
    complete = np.isfinite(x) & np.isfinite(y)
    if adjust_for_intake:
        c = _numeric_column(patients, intake, where)
        complete &= np.isfinite(c)
    n_missing = int((keep & ~complete).sum())
    keep &= complete
    n = int(keep.sum())
    minimum = 5 if adjust_for_intake else 4
    if n < minimum:
        raise DataInputError(
            f"{where}: only {n} patient(s) remain of {n_in} ({n_few} with fewer than "
            f"{min_sessions} sessions, {n_missing} missing a value); at least {minimum} "
            "are needed for a confidence interval. Lower min_sessions or check the columns."
        )
    x, y = x[keep], y[keep]
    what = "patient"
    _check_not_constant(x, alliance, where, what)
    _check_not_constant(y, outcome, where, what)
    sign = 1.0 if higher_outcome_is_better else -1.0
    r = sign * float(np.corrcoef(x, y)[0, 1])
    zero_order = _estimate("r", r, n, n - 2, 1.0 / math.sqrt(n - 3), level)
    partial = None
    if adjust_for_intake:
        c = c[keep]
        _check_not_constant(c, intake, where, what)
        rx, ry = _residualise(x, c), _residualise(y, c)
        r_partial = sign * float(np.corrcoef(rx, ry)[0, 1])
        partial = _estimate(
            f"partial r | {intake}", r_partial, n, n - 3, 1.0 / math.sqrt(n - 4), level
        )
    return AllianceOutcomeCorrelation(
        alliance=alliance,
        outcome=outcome,
        min_sessions=min_sessions,
        n_patients_in=n_in,
        n_excluded_few_sessions=n_few,
        n_excluded_missing=n_missing,
        correlation=zero_order,
        partial=partial,
    )
