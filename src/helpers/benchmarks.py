"""How a study's alliance–outcome association compares with the literature.

Three groups of tools:

* **Effect-size conversions** -- :func:`fisher_z`, :func:`fisher_z_inverse`,
  :func:`correlation_ci`, :func:`r_from_t`, :func:`r_from_d`, :func:`d_from_r`,
  :func:`standardized_coefficient`, :func:`unstandardized_coefficient` and
  :func:`r_from_standardized_beta`.  Each docstring gives the formula and its
  source.  They take and return plain Python floats.
* **Published benchmarks** -- :data:`META_ANALYSES`, the meta-analytic
  alliance–outcome estimates (and the rupture-repair estimate) with full
  citations; :func:`patient_level_alliance_outcome` computes the study's own
  patient-level correlation in the same metric, and :func:`benchmark_table`
  sets it beside the published ones.
* **Rater agreement** -- :func:`rater_agreement`: how client- and
  therapist-rated alliance agree between patients
  (:func:`between_subject_correlation`), within patients
  (:func:`repeated_measures_correlation`) and in level
  (:func:`bland_altman_repeated`: Bland–Altman limits of agreement for
  repeated measurements).

Sign convention
---------------
Every correlation here is coded as in the alliance meta-analyses: a
**positive r means that a stronger alliance goes with a better outcome** (more
improvement).  The symptom measures of this compendium score higher = more
symptoms, so the patient-level outcome is ``improvement = outcome_intake -
outcome_last`` (positive = fewer symptoms at the end than at intake).

References
----------
Bakdash, J. Z., & Marusich, L. R. (2017). Repeated measures correlation.
*Frontiers in Psychology, 8*, 456.

Bland, J. M., & Altman, D. G. (1986). Statistical methods for assessing
agreement between two methods of clinical measurement. *The Lancet, 327*(8476),
307–310.

Bland, J. M., & Altman, D. G. (1995). Calculating correlation coefficients
with repeated observations: Part 1 -- correlation within subjects. *BMJ, 310*,
446.

Bland, J. M., & Altman, D. G. (1999). Measuring agreement in method comparison
studies. *Statistical Methods in Medical Research, 8*, 135–160.

Bland, J. M., & Altman, D. G. (2007). Agreement between methods of
measurement with multiple observations per individual. *Journal of
Biopharmaceutical Statistics, 17*(4), 571–582.

Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009).
*Introduction to meta-analysis* (chap. 7, Converting among effect sizes).
Wiley.

Cohen, J. (1988). *Statistical power analysis for the behavioral sciences*
(2nd ed.). Erlbaum.

Fisher, R. A. (1921). On the "probable error" of a coefficient of correlation
deduced from a small sample. *Metron, 1*, 3–32.

Graybill, F. A., & Wang, C.-M. (1980). Confidence intervals on nonnegative
linear combinations of variances. *Journal of the American Statistical
Association, 75*(372), 869–873.

Peterson, R. A., & Brown, S. P. (2005). On the use of beta coefficients in
meta-analysis. *Journal of Applied Psychology, 90*(1), 175–181.

Rosenthal, R. (1994). Parametric measures of effect size. In H. Cooper & L. V.
Hedges (Eds.), *The handbook of research synthesis* (pp. 231–244). Russell
Sage Foundation.

Schenker, N., & Gentleman, J. F. (2001). On judging the significance of
differences by examining the overlap between confidence intervals. *The
American Statistician, 55*(3), 182–186.

Zou, G. Y. (2013). Confidence interval estimation for the Bland–Altman limits
of agreement with multiple observations per individual. *Statistical Methods
in Medical Research, 22*(6), 630–642.

The four meta-analyses are cited in :data:`META_ANALYSES`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from helpers.schema import OUTCOME_INTAKE, PATIENT_ID
from helpers.validation import describe_rows, require_frame

__all__ = [
    "META_ANALYSES",
    "AllianceOutcomeCorrelation",
    "BlandAltmanRepeated",
    "CorrelationEstimate",
    "MetaAnalysis",
    "MetaAnalysisTable",
    "RaterAgreement",
    "benchmark_table",
    "between_subject_correlation",
    "bland_altman_repeated",
    "correlation_ci",
    "d_from_r",
    "fisher_z",
    "fisher_z_inverse",
    "patient_level_alliance_outcome",
    "r_from_d",
    "r_from_standardized_beta",
    "r_from_t",
    "rater_agreement",
    "repeated_measures_correlation",
    "standardized_coefficient",
    "unstandardized_coefficient",
]

#: How many offending rows an error message lists.
_MAX_ROWS_REPORTED = 5


# ---------------------------------------------------------------------------
# Scalar input checks
# ---------------------------------------------------------------------------


def _real(value: object, name: str) -> float:
    """``value`` as a finite float, or a clear TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__}).")
    out = float(value)
    if math.isnan(out):
        raise ValueError(f"{name} is missing (NaN); a number is needed.")
    if math.isinf(out):
        raise ValueError(f"{name} must be finite, got {out}.")
    return out


def _correlation(value: object, name: str = "r") -> float:
    r = _real(value, name)
    if not -1.0 < r < 1.0:
        raise ValueError(
            f"{name} must lie strictly between -1 and 1 (|{name}| < 1), got {r}. "
            "A correlation of exactly +/-1 has no Fisher z (it is infinite) and no "
            "sampling error; check that the value is a correlation and not, e.g., a "
            "percentage or a regression weight."
        )
    return r


def _positive(value: object, name: str) -> float:
    out = _real(value, name)
    if out <= 0:
        raise ValueError(f"{name} must be greater than 0, got {out}.")
    return out


def _count(value: object, name: str, minimum: int) -> int:
    """A whole number >= ``minimum`` (floats such as 120.0 are accepted)."""
    out = _real(value, name)
    if out != int(out):
        raise ValueError(f"{name} must be a whole number, got {out}.")
    if out < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {int(out)}.")
    return int(out)


def _level(level: object) -> float:
    out = _real(level, "level")
    if not 0.0 < out < 1.0:
        raise ValueError(
            f"level is the confidence level as a proportion (e.g. 0.95), got {out}; "
            "it must lie strictly between 0 and 1."
        )
    return out


def _z_critical(level: float) -> float:
    """Two-sided standard-normal quantile, 1.959964 for ``level`` = 0.95."""
    return float(stats.norm.ppf(0.5 + level / 2.0))


# ---------------------------------------------------------------------------
# Effect-size conversions
# ---------------------------------------------------------------------------


def fisher_z(r: float) -> float:
    """Fisher's z transformation of a correlation.

    .. math:: z = \\tfrac12 \\ln\\frac{1 + r}{1 - r} = \\operatorname{artanh}(r)

    The sampling distribution of z is close to normal with variance
    1 / (n − 3) whatever the population correlation (Fisher, 1921), which is
    why correlations are averaged, compared and given confidence intervals on
    the z scale.

    Parameters
    ----------
    r : float
        A correlation, -1 < r < 1.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        If ``r`` is not a real number.
    ValueError
        If ``r`` is missing, or |r| >= 1.

    Examples
    --------
    >>> round(fisher_z(0.5), 6)
    0.549306
    """
    return math.atanh(_correlation(r))


def fisher_z_inverse(z: float) -> float:
    """Back-transform a Fisher z to a correlation: r = tanh(z).

    .. math:: r = \\frac{e^{2z} - 1}{e^{2z} + 1} = \\tanh(z)

    Parameters
    ----------
    z : float
        Any finite number.

    Returns
    -------
    float
        A correlation in (-1, 1) (it rounds to +/-1 in floating point only for
        |z| above about 19).

    Examples
    --------
    >>> round(fisher_z_inverse(0.549306144), 6)
    0.5
    """
    return math.tanh(_real(z, "z"))


def _fisher_interval(r: float, se_z: float, level: float) -> tuple[float, float]:
    z = math.atanh(r)
    half = _z_critical(level) * se_z
    return math.tanh(z - half), math.tanh(z + half)


def correlation_ci(r: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Confidence interval of a Pearson correlation via Fisher's z.

    .. math::

        z = \\operatorname{artanh}(r), \\quad SE_z = 1/\\sqrt{n - 3}, \\quad
        [\\tanh(z - z_{1-\\alpha/2} SE_z),\\; \\tanh(z + z_{1-\\alpha/2} SE_z)]

    (Fisher, 1921; Borenstein et al., 2009, chap. 6).  The interval is
    asymmetric around r on the r scale.

    Parameters
    ----------
    r : float
        The sample correlation, -1 < r < 1.
    n : int
        Number of independent pairs (patients), n > 3.
    level : float, default 0.95
        Confidence level.

    Returns
    -------
    tuple of float
        ``(lower, upper)``.

    Raises
    ------
    ValueError
        If |r| >= 1, n <= 3 (the standard error 1/sqrt(n − 3) is then undefined)
        or ``level`` is not in (0, 1).

    Examples
    --------
    >>> [round(x, 4) for x in correlation_ci(0.88, 6)]
    [0.2394, 0.9868]
    """
    r = _correlation(r)
    n = _count(n, "n (the number of pairs)", minimum=4)
    return _fisher_interval(r, 1.0 / math.sqrt(n - 3), _level(level))


def r_from_t(t: float, df: float) -> float:
    """Correlation from a t statistic: r = t / sqrt(t² + df).

    For the t test of a Pearson correlation (df = n − 2) this recovers r
    exactly.  For the t statistic of one coefficient in an ordinary
    least-squares regression with residual degrees of freedom ``df`` it gives
    the **partial** correlation of that predictor with the outcome, controlling
    for the other predictors -- an exact identity for OLS (Rosenthal, 1994).
    For mixed models the residual df is approximate (Satterthwaite,
    Kenward–Roger, or between-within), and so is the resulting r.  The sign of
    ``t`` is kept.

    Parameters
    ----------
    t : float
        The t statistic.
    df : float
        Its degrees of freedom, > 0 (fractional df, e.g. Satterthwaite, are
        allowed).

    Returns
    -------
    float

    Examples
    --------
    >>> r_from_t(3.0, 16)  # 3 / sqrt(9 + 16) = 3 / 5
    0.6
    """
    t = _real(t, "t")
    df = _positive(df, "df")
    return t / math.sqrt(t * t + df)


def _two_group_a(n1: object, n2: object) -> float:
    """Borenstein et al.'s correction factor a = (n1 + n2)² / (n1 n2); 4 when n1 = n2."""
    if n1 is None and n2 is None:
        return 4.0
    if n1 is None or n2 is None:
        raise ValueError(
            "Give both group sizes n1 and n2, or neither (neither assumes equal groups, a = 4)."
        )
    n1 = _count(n1, "n1", minimum=1)
    n2 = _count(n2, "n2", minimum=1)
    return (n1 + n2) ** 2 / (n1 * n2)


def r_from_d(d: float, n1: int | None = None, n2: int | None = None) -> float:
    """Point-biserial correlation from a standardised mean difference.

    .. math:: r = \\frac{d}{\\sqrt{d^2 + a}}, \\qquad a = \\frac{(n_1 + n_2)^2}{n_1 n_2}

    (Borenstein et al., 2009, chap. 7).  With equal groups (or no group sizes
    given) a = 4, giving Cohen's (1988) table: d = 0.2, 0.5, 0.8 ↔ r = .100,
    .243, .371.

    Parameters
    ----------
    d : float
        Cohen's d (or Hedges' g).
    n1, n2 : int, optional
        Group sizes; both or neither.

    Returns
    -------
    float

    Examples
    --------
    >>> round(r_from_d(0.8), 3)
    0.371
    """
    d = _real(d, "d")
    a = _two_group_a(n1, n2)
    return d / math.sqrt(d * d + a)


def d_from_r(r: float, n1: int | None = None, n2: int | None = None) -> float:
    """Standardised mean difference from a (point-biserial) correlation.

    .. math:: d = \\frac{r \\sqrt{a}}{\\sqrt{1 - r^2}}, \\qquad
              a = \\frac{(n_1 + n_2)^2}{n_1 n_2}

    With equal groups (a = 4) this is Borenstein et al.'s (2009, chap. 7)
    d = 2r / sqrt(1 − r²).  With unequal groups it is the exact inverse of
    :func:`r_from_d` for the same n1, n2, so the two functions round-trip.

    Parameters
    ----------
    r : float
        A correlation, -1 < r < 1.
    n1, n2 : int, optional
        Group sizes; both or neither.

    Returns
    -------
    float

    Examples
    --------
    >>> round(d_from_r(0.5), 4)  # 2 * 0.5 / sqrt(0.75)
    1.1547
    """
    r = _correlation(r)
    a = _two_group_a(n1, n2)
    return r * math.sqrt(a) / math.sqrt(1.0 - r * r)


def standardized_coefficient(b: float, sd_x: float, sd_y: float) -> float:
    """Standardised regression coefficient: beta = b · SD(x) / SD(y).

    The change in y, in SDs of y, per SD of x.  Use the SDs of the sample the
    model was fitted on.  In a simple regression beta equals Pearson's r; in a
    multiple regression it does not (see :func:`r_from_standardized_beta`).

    Parameters
    ----------
    b : float
        Unstandardised coefficient (units of y per unit of x).
    sd_x, sd_y : float
        Standard deviations of predictor and outcome, > 0.

    Returns
    -------
    float

    Examples
    --------
    >>> standardized_coefficient(-0.5, sd_x=6.0, sd_y=5.0)
    -0.6
    """
    return _real(b, "b") * _positive(sd_x, "sd_x") / _positive(sd_y, "sd_y")


def unstandardized_coefficient(beta: float, sd_x: float, sd_y: float) -> float:
    """Back from a standardised coefficient: b = beta · SD(y) / SD(x).

    The inverse of :func:`standardized_coefficient`.

    Parameters
    ----------
    beta : float
        Standardised coefficient.
    sd_x, sd_y : float
        Standard deviations of predictor and outcome, > 0.

    Returns
    -------
    float

    Examples
    --------
    >>> unstandardized_coefficient(-0.6, sd_x=6.0, sd_y=5.0)
    -0.5
    """
    return _real(beta, "beta") * _positive(sd_y, "sd_y") / _positive(sd_x, "sd_x")


def r_from_standardized_beta(beta: float, n_predictors: int) -> float:
    """A standardised coefficient as a correlation -- only where that is an identity.

    In a simple regression (one predictor plus intercept), beta = b · SD(x) /
    SD(y) = r exactly, so ``beta`` is returned unchanged.

    With two or more predictors the function refuses.  Then

    .. math:: \\beta_1 = \\frac{r_{y1} - r_{y2} r_{12}}{1 - r_{12}^2}
              \\quad \\text{(two predictors)},

    which equals the zero-order r only when the predictors are uncorrelated.
    It is not a partial or semi-partial correlation either, and can exceed 1
    in absolute value.  Treating it as r mixes different effect sizes in a
    comparison with meta-analyses of zero-order r (Peterson & Brown, 2005,
    give an approximate imputation, r ≈ .98 beta + .05 λ, λ = 1 if beta ≥ 0, with
    a wide error; it is not an identity and is not offered here).  From a
    multiple regression use the coefficient's t statistic with
    :func:`r_from_t` (a partial r, labelled as such), or compute the
    zero-order r from the data.

    Parameters
    ----------
    beta : float
        The standardised coefficient.
    n_predictors : int
        Number of predictors in the model (excluding the intercept).

    Returns
    -------
    float
        ``beta`` itself, when ``n_predictors`` is 1.

    Raises
    ------
    ValueError
        If ``n_predictors`` is not 1, or |beta| > 1 (impossible in a simple
        regression).

    Examples
    --------
    >>> r_from_standardized_beta(0.31, n_predictors=1)
    0.31
    """
    beta = _real(beta, "beta")
    k = _count(n_predictors, "n_predictors", minimum=1)
    if k != 1:
        raise ValueError(
            f"A standardised coefficient from a regression with {k} predictors is not a "
            "correlation: it equals r only when the predictors are uncorrelated, and it is "
            "neither the zero-order nor the partial correlation. Use r_from_t(t, df_resid) "
            "with the coefficient's t statistic for a partial r (and label it partial), or "
            "compute the zero-order r from the data."
        )
    if abs(beta) > 1.0:
        raise ValueError(
            f"beta = {beta} cannot come from a simple regression, where beta = r and "
            "|r| <= 1. Check that it is standardised (b * SD(x) / SD(y))."
        )
    return beta


# ---------------------------------------------------------------------------
# Published meta-analyses
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MetaAnalysis:
    """One published meta-analytic estimate.

    Attributes
    ----------
    key : str
        Short identifier, e.g. ``"fluckiger2018"``.
    label : str
        Author–year label for tables.
    source : str
        Full citation (APA style).
    year : int
        Publication year.
    construct : str
        What was correlated with outcome.
    k : int
        Number of studies (independent samples) pooled.
    n_patients : int or None
        Total number of patients; None when not entered here (see ``note``).
    r : float
        Pooled correlation (positive = stronger alliance / better repair goes
        with better outcome).
    ci_low, ci_high : float or None
        Its 95% confidence interval; None when not entered here.
    note : str
        What is approximate or missing.
    """

    key: str
    label: str
    source: str
    year: int
    construct: str
    k: int
    n_patients: int | None
    r: float
    ci_low: float | None
    ci_high: float | None
    note: str = ""

    @property
    def se_z(self) -> float | None:
        """Standard error on the Fisher-z scale implied by the 95% CI.

        SE = (z(ci_high) − z(ci_low)) / (2 × 1.959964); None without a CI.
        """
        if self.ci_low is None or self.ci_high is None:
            return None
        return (math.atanh(self.ci_high) - math.atanh(self.ci_low)) / (2.0 * _z_critical(0.95))


_FRAME_COLUMNS = (
    "key",
    "label",
    "source",
    "year",
    "construct",
    "k",
    "n_patients",
    "r",
    "ci_low",
    "ci_high",
    "note",
)


def _entries_frame(entries: Iterable[MetaAnalysis]) -> pd.DataFrame:
    records = [asdict(e) for e in entries]
    frame = pd.DataFrame.from_records(records, columns=list(_FRAME_COLUMNS))
    frame["year"] = frame["year"].astype("int64")
    for column in ("k", "n_patients"):
        frame[column] = pd.array(frame[column].tolist(), dtype="Int64")
    for column in ("r", "ci_low", "ci_high"):
        frame[column] = pd.array(frame[column].tolist(), dtype="Float64")
    return frame


class MetaAnalysisTable(tuple):
    """An immutable tuple of :class:`MetaAnalysis` entries with a table view.

    Examples
    --------
    >>> META_ANALYSES.get("horvath2011").r
    0.275
    """

    __slots__ = ()

    def __new__(cls, entries: Iterable[MetaAnalysis]) -> MetaAnalysisTable:
        entries = tuple(entries)
        if not all(isinstance(e, MetaAnalysis) for e in entries):
            raise TypeError("MetaAnalysisTable holds MetaAnalysis entries only.")
        return super().__new__(cls, entries)

    def to_frame(self) -> pd.DataFrame:
        """One row per meta-analysis.

        Returns
        -------
        pandas.DataFrame
            Columns ``key, label, source, year, construct, k, n_patients, r,
            ci_low, ci_high, note``; values not entered are ``<NA>``
            (nullable ``Int64``/``Float64`` columns).
        """
        return _entries_frame(self)

    def get(self, key: str) -> MetaAnalysis:
        """The entry with this ``key``.

        Raises
        ------
        KeyError
            Naming the keys there are.
        """
        for entry in self:
            if entry.key == key:
                return entry
        raise KeyError(f"No meta-analysis {key!r}; keys: {[e.key for e in self]}.")


#: Published meta-analytic estimates, for :func:`benchmark_table`.  Only the
#: numbers given in each ``note``/field are entered; what is not entered is
#: None, never guessed.
META_ANALYSES: MetaAnalysisTable = MetaAnalysisTable(
    (
        MetaAnalysis(
            key="fluckiger2018",
            label="Flückiger et al. (2018)",
            source=(
                "Flückiger, C., Del Re, A. C., Wampold, B. E., & Horvath, A. O. (2018). "
                "The alliance in adult psychotherapy: A meta-analytic synthesis. "
                "Psychotherapy, 55(4), 316–340."
            ),
            year=2018,
            construct="alliance–outcome",
            k=295,
            n_patients=None,
            r=0.278,
            ci_low=0.256,
            ci_high=0.299,
            note=(
                "k = 295 studies with more than 30,000 patients; the exact N is not "
                "entered here (see the paper)."
            ),
        ),
        MetaAnalysis(
            key="horvath2011",
            label="Horvath et al. (2011)",
            source=(
                "Horvath, A. O., Del Re, A. C., Flückiger, C., & Symonds, D. (2011). "
                "Alliance in individual psychotherapy. Psychotherapy, 48(1), 9–16."
            ),
            year=2011,
            construct="alliance–outcome",
            k=190,
            n_patients=None,
            r=0.275,
            ci_low=0.25,
            ci_high=0.30,
            note="N is not entered here (see the paper).",
        ),
        MetaAnalysis(
            key="martin2000",
            label="Martin et al. (2000)",
            source=(
                "Martin, D. J., Garske, J. P., & Davis, M. K. (2000). Relation of the "
                "therapeutic alliance with outcome and other variables: A meta-analytic "
                "review. Journal of Consulting and Clinical Psychology, 68(3), 438–450."
            ),
            year=2000,
            construct="alliance–outcome",
            k=79,
            n_patients=None,
            r=0.22,
            ci_low=None,
            ci_high=None,
            note=(
                "r ≈ .22 as reported; no CI and no N are entered here (see the paper), so "
                "no difference test is made against this estimate."
            ),
        ),
        MetaAnalysis(
            key="eubanks2018",
            label="Eubanks et al. (2018)",
            source=(
                "Eubanks, C. F., Muran, J. C., & Safran, J. D. (2018). Alliance rupture "
                "repair: A meta-analysis. Psychotherapy, 55(4), 508–519."
            ),
            year=2018,
            construct="rupture repair–outcome",
            k=11,
            n_patients=1314,
            r=0.29,
            ci_low=0.10,
            ci_high=0.47,
            note=(
                "Association of rupture repair (not of the alliance level) with outcome; "
                "a context value, not a benchmark for the alliance–outcome r."
            ),
        ),
    )
)


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
        raise ValueError(
            f"{label}: the correlation is exactly {r:+.0f}; the two columns are perfectly "
            "related (the same column twice, or one computed from the other?). A confidence "
            "interval and test are not defined."
        )
    t = r * math.sqrt(df / (1.0 - r * r))
    p = float(2.0 * stats.t.sf(abs(t), df))
    lo, hi = _fisher_interval(r, se_z, level)
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


@dataclass(frozen=True)
class BlandAltmanRepeated:
    """Result of :func:`bland_altman_repeated`.

    Attributes
    ----------
    a, b : str
        The two rating columns (difference = ``b`` − ``a``).
    n_obs : int
        Pairs (rows with both ratings).
    n_subjects : int
        Subjects with at least one pair.
    n_rows_incomplete : int
        Rows left out because one or both ratings are missing.
    mean_difference : float
        Mean of all ``n_obs`` differences (the bias).
    sd_within, sd_between : float
        Within- and between-subject SDs of the differences, from the one-way ANOVA of the
        differences on subjects (``sd_between`` is 0 when its estimate is negative, see
        ``between_truncated``).  NaN when every subject has one pair (the two cannot be
        separated).
    sd_total : float
        SD of the difference between the two ratings of one randomly chosen occasion:
        ``sqrt(sd_between**2 + sd_within**2)``.
    loa_low, loa_high : float
        Limits of agreement, ``mean_difference ± z · sd_total`` (z = 1.96 for 95%).
    agreement : float
        Share of differences the limits are meant to contain (0.95).
    ms_between, ms_within : float
        Between- and within-subject mean squares of the differences.
    df_between, df_within : int
        Their degrees of freedom, ``k − 1`` and ``n − k``.
    divisor : float
        ``(n² − Σ mᵢ²) / ((k − 1) n)``, the mean number of pairs per subject that turns the
        mean squares into the between-subject variance (``mᵢ`` constant: ``mᵢ``).
    between_truncated : bool
        Whether ``ms_between < ms_within`` so that the between-subject variance was set to 0.
    sd_naive : float
        SD (n − 1) of all differences pooled as if independent, for comparison.
    level : float
        Confidence level of the intervals.
    mean_difference_ci, loa_low_ci, loa_high_ci : tuple of float
        Approximate confidence intervals of the bias and of the two limits (see
        :func:`bland_altman_repeated`).
    """

    a: str
    b: str
    n_obs: int
    n_subjects: int
    n_rows_incomplete: int
    mean_difference: float
    sd_within: float
    sd_between: float
    sd_total: float
    loa_low: float
    loa_high: float
    agreement: float
    ms_between: float
    ms_within: float
    df_between: int
    df_within: int
    divisor: float
    between_truncated: bool
    sd_naive: float
    level: float
    mean_difference_ci: tuple[float, float]
    loa_low_ci: tuple[float, float]
    loa_high_ci: tuple[float, float]

    def to_frame(self) -> pd.DataFrame:
        """The limits as a one-row table.

        Returns
        -------
        pandas.DataFrame
            Columns ``difference, n_obs, n_subjects, mean_difference, sd_within,
            sd_between, sd_total, loa_low, loa_high, loa_low_ci_low, loa_low_ci_high,
            loa_high_ci_low, loa_high_ci_high, sd_naive``.
        """
        return pd.DataFrame(
            {
                "difference": [f"{self.b} - {self.a}"],
                "n_obs": [self.n_obs],
                "n_subjects": [self.n_subjects],
                "mean_difference": [self.mean_difference],
                "sd_within": [self.sd_within],
                "sd_between": [self.sd_between],
                "sd_total": [self.sd_total],
                "loa_low": [self.loa_low],
                "loa_high": [self.loa_high],
                "loa_low_ci_low": [self.loa_low_ci[0]],
                "loa_low_ci_high": [self.loa_low_ci[1]],
                "loa_high_ci_low": [self.loa_high_ci[0]],
                "loa_high_ci_high": [self.loa_high_ci[1]],
                "sd_naive": [self.sd_naive],
            }
        )


@dataclass(frozen=True)
class RaterAgreement:
    """Result of :func:`rater_agreement`.

    Attributes
    ----------
    a, b : str
        The two rating columns (difference = ``b`` − ``a``).
    between : CorrelationEstimate
        Correlation of the patients' means (n = patients);
        :func:`between_subject_correlation`.
    within : CorrelationEstimate
        Repeated measures correlation (n = observations of patients with at
        least two complete pairs; ``n_patients`` = those patients);
        :func:`repeated_measures_correlation`.
    r_pooled : float
        Pearson r over all complete session rows, ignoring that rows are
        nested in patients.  It mixes the between- and within-patient
        associations; reported for comparison with studies that pool sessions,
        without a CI or p value because the rows are not independent.
    n_obs : int
        Session rows with both ratings.
    n_patients : int
        Patients with at least one such row.
    n_rows_incomplete : int
        Rows left out because one or both ratings are missing.
    mean_difference : float
        Mean of ``b − a`` over the complete rows.
    sd_difference : float
        SD of ``b − a`` for one session of a random patient, from the between-
        and within-patient variance components (Bland & Altman 2007;
        ``limits.sd_total``).  Not the SD of the pooled rows (``limits.sd_naive``).
    loa_low, loa_high : float
        95% limits of agreement for repeated measurements, mean ± 1.96
        ``sd_difference`` (:func:`bland_altman_repeated`).
    limits : BlandAltmanRepeated
        The full Bland–Altman analysis: variance components, the pooled SD and
        approximate confidence intervals of the limits.
    """

    a: str
    b: str
    between: CorrelationEstimate
    within: CorrelationEstimate
    r_pooled: float
    n_obs: int
    n_patients: int
    n_rows_incomplete: int
    mean_difference: float
    sd_difference: float
    loa_low: float
    loa_high: float
    limits: BlandAltmanRepeated

    def to_frame(self) -> pd.DataFrame:
        """The between- and within-patient correlations, one row each.

        Returns
        -------
        pandas.DataFrame
            Columns ``label, r, n, n_patients, df, ci_low, ci_high, p, level``.
        """
        return _estimates_frame([self.between, self.within])

    def difference_frame(self) -> pd.DataFrame:
        """The Bland–Altman summary (repeated measurements) as a one-row table.

        Returns
        -------
        pandas.DataFrame
            Columns ``difference, n_obs, n_patients, mean_difference,
            sd_difference, loa_low, loa_high`` and, from ``limits``, ``sd_within,
            sd_between, loa_low_ci_low, loa_low_ci_high, loa_high_ci_low,
            loa_high_ci_high, sd_naive``.
        """
        limits = self.limits
        return pd.DataFrame(
            {
                "difference": [f"{self.b} - {self.a}"],
                "n_obs": [self.n_obs],
                "n_patients": [self.n_patients],
                "mean_difference": [self.mean_difference],
                "sd_difference": [self.sd_difference],
                "loa_low": [self.loa_low],
                "loa_high": [self.loa_high],
                "sd_within": [limits.sd_within],
                "sd_between": [limits.sd_between],
                "loa_low_ci_low": [limits.loa_low_ci[0]],
                "loa_low_ci_high": [limits.loa_low_ci[1]],
                "loa_high_ci_low": [limits.loa_high_ci[0]],
                "loa_high_ci_high": [limits.loa_high_ci[1]],
                "sd_naive": [limits.sd_naive],
            }
        )


# ---------------------------------------------------------------------------
# Frame input checks
# ---------------------------------------------------------------------------


def _row_labels(df: pd.DataFrame, mask: np.ndarray) -> list[object]:
    """Patient ids where the frame has them, else index labels, of rows in ``mask``."""
    if PATIENT_ID in df.columns:
        return [f"{PATIENT_ID}={v}" for v in df.loc[mask, PATIENT_ID]]
    return list(df.index[mask])


def _numeric_column(df: pd.DataFrame, column: str, where: str) -> np.ndarray:
    raw = df[column]
    if pd.api.types.is_bool_dtype(raw):
        raise ValueError(
            f"{where}: column {column!r} is true/false, not a score. Pass a numeric column."
        )
    values = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
    bad = raw.notna().to_numpy() & ~np.isfinite(values)
    if bad.any():
        raise ValueError(
            f"{where}: column {column!r} holds values that are not (finite) numbers in rows "
            f"{describe_rows(_row_labels(df, bad), list(raw[bad]))}. Score and clean the data "
            "first (helpers.pipeline), or pass the right column."
        )
    return values


def _check_not_constant(values: np.ndarray, column: str, where: str, what: str) -> None:
    if np.ptp(values) == 0:
        raise ValueError(
            f"{where}: {column!r} has the same value ({values[0]:g}) for every {what} used, "
            "so it has no variance and no correlation can be computed."
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
    level = _level(level)
    if min_sessions is not None:
        min_sessions = _count(min_sessions, "min_sessions", minimum=1)
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
            raise ValueError(
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
        raise ValueError(
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


# ---------------------------------------------------------------------------
# Benchmark table
# ---------------------------------------------------------------------------


def benchmark_table(
    study_r: float,
    study_n: int,
    study_ci: tuple[float, float] | None = None,
    label: str = "this study",
    *,
    construct: str = "alliance–outcome (patient level)",
    level: float = 0.95,
    meta_analyses: Iterable[MetaAnalysis] = META_ANALYSES,
) -> pd.DataFrame:
    """The published meta-analytic estimates with the study's own r beside them.

    For each published estimate with a CI, two comparisons:

    ``ci_overlaps_study``
        Whether the study's CI and the published 95% CI share any value.  A
        description, not a test: two estimates can differ significantly while
        their 95% CIs overlap (Schenker & Gentleman, 2001).
    ``z_difference``, ``p_difference``
        The z test of the difference on the Fisher-z scale,

        .. math:: z = \\frac{z(r_s) - z(r_m)}{\\sqrt{SE_s^2 + SE_m^2}},

        two-sided p from the standard normal.  The published estimate's SE is
        recovered from its 95% CI: SE_m = (z(hi) − z(lo)) / (2 × 1.959964)
        (:attr:`MetaAnalysis.se_z`).  The study's SE is recovered the same way
        from ``study_ci`` when it is given (so a CI from a model that accounts
        for therapists, or from a partial r, carries its own width), and is
        otherwise 1/sqrt(n − 3).  For a Fisher CI from :func:`correlation_ci`
        the two agree.

    Without a published CI (Martin et al., 2000, as entered here) neither is
    computed (``<NA>``).

    What the test does and does not say: it asks whether the study's r differs
    from the **average** effect of the meta-analysis.  The meta-analyses found
    heterogeneity between studies, so single studies are expected to scatter
    around the mean more widely than the mean's CI; a "significant" difference
    does not make a study an outlier, and a non-significant one does not
    confirm it.  The studies also differ in measures, timing (early vs
    averaged alliance), outcome definition and rater; compare like with like.

    Parameters
    ----------
    study_r : float
        The study's correlation, coded positive = stronger alliance with better
        outcome (see :func:`patient_level_alliance_outcome`).
    study_n : int
        Its number of patients (> 3).
    study_ci : tuple of float, optional
        Its confidence interval at ``level``; computed with
        :func:`correlation_ci` when not given.
    label : str, default "this study"
        Name of the study's row.
    construct : str, default "alliance–outcome (patient level)"
        What the study's r correlates, for its row.
    level : float, default 0.95
        Confidence level of ``study_ci``.
    meta_analyses : iterable of MetaAnalysis, default META_ANALYSES
        The published estimates to compare with.

    Returns
    -------
    pandas.DataFrame
        One row per meta-analysis, then the study's row (key ``"study"``).
        Columns ``key, label, source, year, construct, k, n_patients, r,
        ci_low, ci_high, se_z, ci_overlaps_study, z_difference, p_difference,
        note``; the study's row has ``<NA>`` in the comparison columns.

    Raises
    ------
    ValueError
        If the study's r, n or CI is invalid (|r| >= 1, n <= 3, CI not
        containing r or outside (−1, 1)).
    """
    r_s = _correlation(study_r, "study_r")
    n_s = _count(study_n, "study_n (patients)", minimum=4)
    level = _level(level)
    if study_ci is None:
        lo_s, hi_s = correlation_ci(r_s, n_s, level)
        se_s = 1.0 / math.sqrt(n_s - 3)
        ci_note = f"{level:.0%} CI from Fisher z with n = {n_s}"
    else:
        if isinstance(study_ci, str) or len(study_ci) != 2:
            raise ValueError(f"study_ci must be a pair (lower, upper), got {study_ci!r}.")
        lo_s = _correlation(study_ci[0], "study_ci lower bound")
        hi_s = _correlation(study_ci[1], "study_ci upper bound")
        if not lo_s <= r_s <= hi_s or lo_s == hi_s:
            raise ValueError(
                f"study_ci = ({lo_s}, {hi_s}) does not contain study_r = {r_s} as "
                "(lower < upper, lower <= r <= upper). Pass (lower, upper) of the same "
                "estimate."
            )
        se_s = (math.atanh(hi_s) - math.atanh(lo_s)) / (2.0 * _z_critical(level))
        ci_note = f"{level:.0%} CI as given"
    entries = list(meta_analyses)
    frame = _entries_frame(entries)
    se_m = [e.se_z for e in entries]
    overlaps: list[object] = []
    z_diff: list[float | None] = []
    p_diff: list[float | None] = []
    for entry, se in zip(entries, se_m, strict=True):
        if se is None:
            overlaps.append(None)
            z_diff.append(None)
            p_diff.append(None)
            continue
        overlaps.append(max(lo_s, entry.ci_low) <= min(hi_s, entry.ci_high))
        z = (math.atanh(r_s) - math.atanh(entry.r)) / math.sqrt(se_s**2 + se**2)
        z_diff.append(z)
        p_diff.append(float(2.0 * stats.norm.sf(abs(z))))
    frame.insert(frame.columns.get_loc("ci_high") + 1, "se_z", pd.array(se_m, dtype="Float64"))
    frame.insert(
        frame.columns.get_loc("se_z") + 1, "ci_overlaps_study", pd.array(overlaps, dtype="boolean")
    )
    frame.insert(
        frame.columns.get_loc("ci_overlaps_study") + 1,
        "z_difference",
        pd.array(z_diff, dtype="Float64"),
    )
    frame.insert(
        frame.columns.get_loc("z_difference") + 1,
        "p_difference",
        pd.array(p_diff, dtype="Float64"),
    )
    study_row = pd.DataFrame(
        {
            "key": ["study"],
            "label": [label],
            "source": [label],
            "year": pd.array([None], dtype="Int64"),
            "construct": [construct],
            "k": pd.array([1], dtype="Int64"),
            "n_patients": pd.array([n_s], dtype="Int64"),
            "r": pd.array([r_s], dtype="Float64"),
            "ci_low": pd.array([lo_s], dtype="Float64"),
            "ci_high": pd.array([hi_s], dtype="Float64"),
            "se_z": pd.array([se_s], dtype="Float64"),
            "ci_overlaps_study": pd.array([None], dtype="boolean"),
            "z_difference": pd.array([None], dtype="Float64"),
            "p_difference": pd.array([None], dtype="Float64"),
            "note": [ci_note],
        }
    )
    frame["year"] = frame["year"].astype("Int64")
    return pd.concat([frame, study_row], ignore_index=True)


# ---------------------------------------------------------------------------
# Rater agreement
# ---------------------------------------------------------------------------


def _unit(subject: str) -> str:
    """What one group is called in labels and messages."""
    return "patient" if subject == PATIENT_ID else "subject"


def _paired_ratings(
    data: pd.DataFrame, a: str, b: str, subject: str, where: str
) -> tuple[pd.DataFrame, int]:
    """Rows with both ratings as ``subject, a, b`` columns, and the number left out."""
    require_frame(
        data,
        [subject, a, b],
        where,
        hint="Pass the session-level data (sessions.parquet from the cleaning step) and name "
        "the two rating columns with a= and b= (e.g. a='alliance_client', "
        "b='alliance_therapist').",
    )
    if a == b:
        raise ValueError(f"{where}: a and b are the same column ({a!r}); name two ratings.")
    no_id = data[subject].isna().to_numpy()
    if no_id.any():
        raise ValueError(
            f"{where}: column {subject!r} is missing in rows "
            f"{describe_rows(list(data.index[no_id]))}. Every row needs its {_unit(subject)}."
        )
    va = _numeric_column(data, a, where)
    vb = _numeric_column(data, b, where)
    complete = np.isfinite(va) & np.isfinite(vb)
    pairs = pd.DataFrame(
        {"subject": data[subject].to_numpy()[complete], "a": va[complete], "b": vb[complete]}
    )
    return pairs, int((~complete).sum())


def between_subject_correlation(
    data: pd.DataFrame,
    a: str,
    b: str,
    subject: str = PATIENT_ID,
    *,
    level: float = 0.95,
) -> CorrelationEstimate:
    """Correlation of two ratings between subjects: Pearson r of the subjects' means.

    Only rows with both ratings are used; each subject contributes the mean of ``a`` and
    the mean of ``b`` over those rows.  n = subjects, df = n − 2, CI by Fisher's z with
    SE = 1/sqrt(n − 3).  Do patients whom the client sees as having a strong alliance also
    get high ratings from the therapist?

    Parameters
    ----------
    data : pandas.DataFrame
        One row per occasion (e.g. patient-session).
    a, b : str
        The two rating columns.
    subject : str, default "patient_id"
        Subject identifier column.
    level : float, default 0.95
        Confidence level of the interval.

    Returns
    -------
    CorrelationEstimate
        ``n`` and ``n_patients`` are the subjects.

    Raises
    ------
    ValueError
        If a column is absent or not numeric, a subject id is missing, fewer than 4
        subjects have complete rows, or a subject-mean rating does not vary.
    """
    where = "between_subject_correlation"
    level = _level(level)
    pairs, n_incomplete = _paired_ratings(data, a, b, subject, where)
    return _between(pairs, a, b, subject, n_incomplete, level, where)


def _between(
    pairs: pd.DataFrame, a: str, b: str, subject: str, n_incomplete: int, level: float, where: str
) -> CorrelationEstimate:
    unit = _unit(subject)
    means = pairs.groupby("subject", sort=True)[["a", "b"]].mean()
    k = len(means)
    if k < 4:
        raise ValueError(
            f"{where}: only {k} {unit}(s) have rows with both {a!r} and {b!r} "
            f"({n_incomplete} rows lack one of them); at least 4 are needed for the "
            f"between-{unit} correlation and its CI."
        )
    _check_not_constant(means["a"].to_numpy(), f"mean {a}", where, unit)
    _check_not_constant(means["b"].to_numpy(), f"mean {b}", where, unit)
    r = float(np.corrcoef(means["a"], means["b"])[0, 1])
    return _estimate(
        f"between {unit}s: r(mean {a}, mean {b})",
        r,
        k,
        k - 2,
        1.0 / math.sqrt(k - 3),
        level,
        n_patients=k,
    )


def repeated_measures_correlation(
    data: pd.DataFrame,
    a: str,
    b: str,
    subject: str = PATIENT_ID,
    *,
    level: float = 0.95,
) -> CorrelationEstimate:
    """Repeated measures correlation (rmcorr; Bakdash & Marusich 2017).

    The common within-subject association of two measures: the ANCOVA of ``b`` on ``a``
    with one intercept per subject and a common slope.  Equivalently, each rating is
    centred on the subject's own mean and the centred values are correlated:

    .. math:: r_{rm} = \\frac{\\sum (a_{it} - \\bar a_i)(b_{it} - \\bar b_i)}
              {\\sqrt{\\sum (a_{it} - \\bar a_i)^2 \\sum (b_{it} - \\bar b_i)^2}}

    with df = N − k − 1 (N observations, k subjects), the residual df of that ANCOVA (the
    t test of r_rm equals the test of the common slope).  The CI is Fisher's with the
    effective sample size df + 2, SE = 1/sqrt(df − 1), as in the rmcorr package from
    version 0.5.4.  Subjects with one complete row carry no within-subject information and
    are not counted (they would add one observation and one parameter each, leaving df
    unchanged).  Rows with either rating missing are dropped.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per occasion (e.g. patient-session).
    a, b : str
        The two measures (the correlation is symmetric in them).
    subject : str, default "patient_id"
        Subject identifier column.
    level : float, default 0.95
        Confidence level of the interval.

    Returns
    -------
    CorrelationEstimate
        ``n`` = observations of subjects with at least two complete rows, ``n_patients`` =
        those subjects, ``df`` = N − k − 1.

    Raises
    ------
    ValueError
        If a column is absent or not numeric, a subject id is missing, df < 2, or a
        measure does not vary within any subject.

    Examples
    --------
    Bland & Altman's (1995) PaCO2 and pH data (8 subjects, 47 observations) give
    r_rm = −0.507, df = 38, 95% CI −0.707 to −0.232, as the rmcorr package does.
    """
    where = "repeated_measures_correlation"
    level = _level(level)
    pairs, _ = _paired_ratings(data, a, b, subject, where)
    return _within(pairs, a, b, subject, level, where)


def _within(
    pairs: pd.DataFrame, a: str, b: str, subject: str, level: float, where: str
) -> CorrelationEstimate:
    unit = _unit(subject)
    sizes = pairs.groupby("subject", sort=False)["a"].transform("size").to_numpy()
    repeated = pairs.loc[sizes >= 2]
    k = int(repeated["subject"].nunique())
    n = len(repeated)
    df = n - k - 1
    if df < 2:
        raise ValueError(
            f"{where}: too few repeated ratings for the within-{unit} correlation: "
            f"{n} rows of {k} {unit}(s) with at least two complete rows give "
            f"df = N - k - 1 = {df}; at least 2 are needed."
        )
    group = repeated.groupby("subject", sort=False)
    ca = (repeated["a"] - group["a"].transform("mean")).to_numpy()
    cb = (repeated["b"] - group["b"].transform("mean")).to_numpy()
    ssa, ssb = float(ca @ ca), float(cb @ cb)
    for ss, column in ((ssa, a), (ssb, b)):
        if ss == 0.0:
            raise ValueError(
                f"{where}: {column!r} does not vary within any {unit}, so the "
                f"within-{unit} correlation is not defined."
            )
    r = float(ca @ cb) / math.sqrt(ssa * ssb)
    return _estimate(
        f"within {unit}s: repeated measures r({a}, {b})",
        r,
        n,
        df,
        1.0 / math.sqrt(df - 1),
        level,
        n_patients=k,
    )


def _variance_ci(terms: Sequence[tuple[float, float, int]], level: float) -> tuple[float, float]:
    """CI of ``sum(c * E[MS])`` from independent mean squares ``(c, MS, df)``, c >= 0.

    Graybill & Wang's (1980) modified large-sample method (the MOVER for variances; Zou 2013):
    ``L = θ − sqrt(Σ c²MS²(1 − df/χ²_{df,1−α/2})²)``,
    ``U = θ + sqrt(Σ c²MS²(df/χ²_{df,α/2} − 1)²)``, θ = Σ c·MS.
    """
    alpha = 1.0 - level
    theta = sum(c * ms for c, ms, _ in terms)
    low = high = 0.0
    for c, ms, df in terms:
        if c == 0.0:
            continue
        low += (c * ms * (1.0 - df / stats.chi2.ppf(1.0 - alpha / 2.0, df))) ** 2
        high += (c * ms * (df / stats.chi2.ppf(alpha / 2.0, df) - 1.0)) ** 2
    return max(theta - math.sqrt(low), 0.0), theta + math.sqrt(high)


def bland_altman_repeated(
    data: pd.DataFrame,
    a: str,
    b: str,
    subject: str = PATIENT_ID,
    *,
    level: float = 0.95,
    agreement: float = 0.95,
) -> BlandAltmanRepeated:
    """Limits of agreement with repeated pairs per subject whose true value varies.

    Bland & Altman (2007, section 5; 1999, section 5.3): each subject i contributes
    ``mᵢ`` pairs measured on occasions at which the true value may differ (sessions), so
    the differences ``d = b − a`` of one subject are correlated but need not be equal.  A
    one-way analysis of variance of the differences on subjects gives (n = Σ mᵢ pairs,
    k subjects):

    * ``MS_w = Σᵢ Σₜ (dᵢₜ − d̄ᵢ)² / (n − k)``, the within-subject variance ``s²_w``;
    * ``MS_b = Σᵢ mᵢ (d̄ᵢ − d̄)² / (k − 1)``;
    * ``s²_b = (MS_b − MS_w) / λ`` with ``λ = (n² − Σ mᵢ²) / ((k − 1) n)`` (set to 0 when
      negative), the between-subject variance of the differences;
    * ``s²_d = s²_b + s²_w``, the variance of the difference of one pair from a random
      subject, and the limits ``d̄ ± z s_d`` (z = 1.96 for 95% ``agreement``), where d̄
      is the mean of all n differences.

    Pooling all pairs as if independent (``sd_naive``) underestimates ``s_d`` when
    subjects differ in their mean difference; with one pair per subject the two agree
    (λ = 1, n = k: ``s²_d = MS_b``, the ordinary variance, and the two components cannot
    be separated: ``sd_within`` and ``sd_between`` are NaN).

    Approximate confidence intervals (``level``): for the bias, ``d̄ ± t_{k−1} SE`` with
    ``SE² = (s²_b Σ mᵢ² + s²_w n) / n²``; for ``s²_d = MS_b/λ + (1 − 1/λ) MS_w``, a
    linear combination of independent mean squares, Graybill & Wang's (1980) method
    (``MS_w`` alone, chi-square with n − k df, when ``s²_b`` was set to 0); for the limits,
    the MOVER combination of the two (Zou 2013).  They assume normal differences
    and are approximate with few subjects.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per occasion (e.g. patient-session).
    a, b : str
        The two rating columns; the difference is ``b − a``.  Rows with either missing
        are dropped and counted.
    subject : str, default "patient_id"
        Subject identifier column.
    level : float, default 0.95
        Confidence level of the intervals.
    agreement : float, default 0.95
        Share of differences the limits should contain.

    Returns
    -------
    BlandAltmanRepeated

    Raises
    ------
    ValueError
        If a column is absent or not numeric, a subject id is missing, or fewer than
        2 subjects have complete rows.

    Examples
    --------
    Three subjects with differences (1, 3), (2) and (4, 6, 8): n = 6, k = 3, d̄ = 4,
    subject means 2, 2, 6; MS_w = (2 + 0 + 8) / 3 = 10/3; MS_b = (2·4 + 1·4 + 3·4) / 2 = 12;
    λ = (36 − 14) / (2 · 6) = 11/6; s²_b = (12 − 10/3) / (11/6) = 52/11; s²_d = 52/11 + 10/3.
    """
    where = "bland_altman_repeated"
    level = _level(level)
    agreement = _level(agreement)
    pairs, n_incomplete = _paired_ratings(data, a, b, subject, where)
    return _bland_altman(pairs, a, b, subject, n_incomplete, level, agreement, where)


def _bland_altman(
    pairs: pd.DataFrame,
    a: str,
    b: str,
    subject: str,
    n_incomplete: int,
    level: float,
    agreement: float,
    where: str,
) -> BlandAltmanRepeated:
    diff = (pairs["b"] - pairs["a"]).to_numpy()
    groups = pd.Series(diff).groupby(pairs["subject"].to_numpy(), sort=True)
    m = groups.size().to_numpy().astype(float)
    subject_means = groups.mean().to_numpy()
    n, k = len(diff), len(m)
    if k < 2:
        raise ValueError(
            f"{where}: only {k} {_unit(subject)}(s) have rows with both {a!r} and {b!r} "
            f"({n_incomplete} rows lack one of them); at least 2 are needed for the "
            "between-subject variance of the differences."
        )
    mean_diff = float(diff.mean())
    df_b, df_w = k - 1, n - k
    ms_b = float((m * (subject_means - mean_diff) ** 2).sum() / df_b)
    within_dev = diff - groups.transform("mean").to_numpy()
    divisor = float((n**2 - (m**2).sum()) / (df_b * n))
    if df_w > 0:
        ms_w = float(within_dev @ within_dev / df_w)
        var_b = (ms_b - ms_w) / divisor
        truncated = var_b < 0.0
        var_b = max(var_b, 0.0)
        var_w = ms_w
        var_total = var_b + var_w
        if truncated:
            var_ci = _variance_ci([(1.0, ms_w, df_w)], level)
        else:
            var_ci = _variance_ci(
                [(1.0 / divisor, ms_b, df_b), (1.0 - 1.0 / divisor, ms_w, df_w)], level
            )
        se_mean = math.sqrt((var_b * (m**2).sum() + var_w * n) / n**2)
        sd_w, sd_b = math.sqrt(var_w), math.sqrt(var_b)
    else:  # one pair per subject: the ordinary variance of the differences
        ms_w, truncated = math.nan, False
        var_total = ms_b
        var_ci = _variance_ci([(1.0, ms_b, df_b)], level)
        se_mean = math.sqrt(ms_b / n)
        sd_w = sd_b = math.nan
    sd_total = math.sqrt(var_total)
    z = _z_critical(agreement)
    t = float(stats.t.ppf(0.5 + level / 2.0, df_b))
    mean_ci = (mean_diff - t * se_mean, mean_diff + t * se_mean)
    sd_low, sd_high = math.sqrt(var_ci[0]), math.sqrt(var_ci[1])
    # MOVER (Zou 2013): limit = bias ± z sd, each part with its own interval.
    down_mean, up_mean = mean_diff - mean_ci[0], mean_ci[1] - mean_diff
    down_sd, up_sd = z * (sd_total - sd_low), z * (sd_high - sd_total)
    loa_low, loa_high = mean_diff - z * sd_total, mean_diff + z * sd_total
    loa_low_ci = (loa_low - math.hypot(down_mean, up_sd), loa_low + math.hypot(up_mean, down_sd))
    loa_high_ci = (
        loa_high - math.hypot(down_mean, down_sd),
        loa_high + math.hypot(up_mean, up_sd),
    )
    return BlandAltmanRepeated(
        a=a,
        b=b,
        n_obs=n,
        n_subjects=k,
        n_rows_incomplete=n_incomplete,
        mean_difference=mean_diff,
        sd_within=sd_w,
        sd_between=sd_b,
        sd_total=sd_total,
        loa_low=loa_low,
        loa_high=loa_high,
        agreement=agreement,
        ms_between=ms_b,
        ms_within=ms_w,
        df_between=df_b,
        df_within=df_w,
        divisor=divisor,
        between_truncated=truncated,
        sd_naive=float(diff.std(ddof=1)) if n > 1 else math.nan,
        level=level,
        mean_difference_ci=mean_ci,
        loa_low_ci=loa_low_ci,
        loa_high_ci=loa_high_ci,
    )


def rater_agreement(
    sessions: pd.DataFrame,
    a: str = "alliance_client",
    b: str = "alliance_therapist",
    *,
    patient: str = PATIENT_ID,
    level: float = 0.95,
) -> RaterAgreement:
    """How two alliance ratings of the same sessions agree (e.g. client vs therapist).

    Only session rows with both ratings are used.  Three views, each its own function:

    Between patients (:func:`between_subject_correlation`)
        Pearson r of the patients' mean ratings, n = patients.  Do patients whom the
        client sees as having a strong alliance also get high ratings from the therapist?
    Within patients (:func:`repeated_measures_correlation`; Bakdash & Marusich, 2017)
        The common within-patient slope of the two ratings as a correlation, df = N − k −
        1.  Do sessions in which the client's rating is above the client's own average
        also get higher therapist ratings?
    Level (:func:`bland_altman_repeated`; Bland & Altman, 2007)
        Mean difference ``b − a`` (therapist − client by default) and 95% limits of
        agreement for one session, with the SD of the differences from their between-
        and within-patient variance components (sessions of one patient are not
        independent, and their true alliance varies).  Meaningful only when both ratings
        are on the same scale (e.g. both WAI-SR totals).

    Parameters
    ----------
    sessions : pandas.DataFrame
        Session-level data (one row per patient-session).
    a, b : str
        The two rating columns; the difference is ``b − a``.
    patient : str, default "patient_id"
        Patient identifier column.
    level : float, default 0.95
        Confidence level of the correlations' intervals and of the limits' intervals.

    Returns
    -------
    RaterAgreement

    Raises
    ------
    ValueError
        If a column is absent or not numeric, a patient id is missing, fewer
        than 4 patients have complete rows, the within-patient df is below 2,
        or a rating does not vary (between or within patients).
    """
    where = "rater_agreement"
    level = _level(level)
    pairs, n_incomplete = _paired_ratings(sessions, a, b, patient, where)
    between = _between(pairs, a, b, patient, n_incomplete, level, where)
    within = _within(pairs, a, b, patient, level, where)
    limits = _bland_altman(pairs, a, b, patient, n_incomplete, level, 0.95, where)
    return RaterAgreement(
        a=a,
        b=b,
        between=between,
        within=within,
        r_pooled=float(np.corrcoef(pairs["a"], pairs["b"])[0, 1]),
        n_obs=len(pairs),
        n_patients=between.n,
        n_rows_incomplete=n_incomplete,
        mean_difference=limits.mean_difference,
        sd_difference=limits.sd_total,
        loa_low=limits.loa_low,
        loa_high=limits.loa_high,
        limits=limits,
    )
