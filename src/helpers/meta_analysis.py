"""How a study's alliance–outcome association compares with the literature.

Two groups of tools:

* **Effect-size conversions** -- :func:`fisher_z`, :func:`fisher_z_inverse`,
  :func:`correlation_ci`, :func:`r_from_t`, :func:`r_from_d`, :func:`d_from_r`,
  :func:`standardized_coefficient`, :func:`unstandardized_coefficient` and
  :func:`r_from_standardized_beta`.  Each docstring gives the formula and its
  source.  They take and return plain Python floats.
* **Published benchmarks** -- :data:`META_ANALYSES`, the meta-analytic
  alliance–outcome estimates (and the rupture-repair estimate) with full
  citations; :func:`benchmark_table` sets the study's own r beside them.

The study's own correlations live beside this module:
:func:`helpers.associations.patient_level_alliance_outcome` (the patient-level
alliance–outcome r in the meta-analyses' metric) and
:func:`helpers.agreement.rater_agreement` (how client- and therapist-rated
alliance agree).

Sign convention
---------------
As in the alliance meta-analyses (and :mod:`helpers.associations`): a
**positive r means that a stronger alliance goes with a better outcome**.

References
----------
Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009).
*Introduction to meta-analysis* (chap. 7, Converting among effect sizes).
Wiley.

Cohen, J. (1988). *Statistical power analysis for the behavioral sciences*
(2nd ed.). Erlbaum.

Fisher, R. A. (1921). On the "probable error" of a coefficient of correlation
deduced from a small sample. *Metron, 1*, 3–32.

Peterson, R. A., & Brown, S. P. (2005). On the use of beta coefficients in
meta-analysis. *Journal of Applied Psychology, 90*(1), 175–181.

Rosenthal, R. (1994). Parametric measures of effect size. In H. Cooper & L. V.
Hedges (Eds.), *The handbook of research synthesis* (pp. 231–244). Russell
Sage Foundation.

Schenker, N., & Gentleman, J. F. (2001). On judging the significance of
differences by examining the overlap between confidence intervals. *The
American Statistician, 55*(3), 182–186.

The four meta-analyses are cited in :data:`META_ANALYSES`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import pandas as pd
from scipy import stats

from helpers.errors import SettingsError
from helpers.stats_common import (
    confidence_level,
    fisher_interval,
    real_number,
    whole_number,
    z_critical,
)

__all__ = [
    "META_ANALYSES",
    "MetaAnalysis",
    "MetaAnalysisTable",
    "benchmark_table",
    "correlation_ci",
    "d_from_r",
    "fisher_z",
    "fisher_z_inverse",
    "r_from_d",
    "r_from_standardized_beta",
    "r_from_t",
    "standardized_coefficient",
    "unstandardized_coefficient",
]

# ---------------------------------------------------------------------------
# Scalar input checks (the shared ones live in helpers.stats_common)
# ---------------------------------------------------------------------------


def _correlation(value: object, name: str = "r") -> float:
    r = real_number(value, name)
    if not -1.0 < r < 1.0:
        raise SettingsError(
            f"{name} must lie strictly between -1 and 1 (|{name}| < 1), got {r}. "
            "A correlation of exactly +/-1 has no Fisher z (it is infinite) and no "
            "sampling error; check that the value is a correlation and not, e.g., a "
            "percentage or a regression weight."
        )
    return r


def _positive(value: object, name: str) -> float:
    out = real_number(value, name)
    if out <= 0:
        raise SettingsError(
            f"{name} must be greater than 0, got {out}.", fix="Pass a positive number."
        )
    return out


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
    return math.tanh(real_number(z, "z"))


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
    n = whole_number(n, "n (the number of pairs)", minimum=4)
    return fisher_interval(r, 1.0 / math.sqrt(n - 3), confidence_level(level))


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
    t = real_number(t, "t")
    df = _positive(df, "df")
    return t / math.sqrt(t * t + df)


def _two_group_a(n1: object, n2: object) -> float:
    """Borenstein et al.'s correction factor a = (n1 + n2)² / (n1 n2); 4 when n1 = n2."""
    if n1 is None and n2 is None:
        return 4.0
    if n1 is None or n2 is None:
        raise SettingsError(
            "Give both group sizes n1 and n2, or neither (neither assumes equal groups, a = 4)."
        )
    n1 = whole_number(n1, "n1", minimum=1)
    n2 = whole_number(n2, "n2", minimum=1)
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
    d = real_number(d, "d")
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
    return real_number(b, "b") * _positive(sd_x, "sd_x") / _positive(sd_y, "sd_y")


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
    return real_number(beta, "beta") * _positive(sd_y, "sd_y") / _positive(sd_x, "sd_x")


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
    beta = real_number(beta, "beta")
    k = whole_number(n_predictors, "n_predictors", minimum=1)
    if k != 1:
        raise SettingsError(
            f"A standardised coefficient from a regression with {k} predictors is not a "
            "correlation: it equals r only when the predictors are uncorrelated, and it is "
            "neither the zero-order nor the partial correlation. Use r_from_t(t, df_resid) "
            "with the coefficient's t statistic for a partial r (and label it partial), or "
            "compute the zero-order r from the data."
        )
    if abs(beta) > 1.0:
        raise SettingsError(
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
        return (math.atanh(self.ci_high) - math.atanh(self.ci_low)) / (2.0 * z_critical(0.95))


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
        outcome (see :func:`helpers.associations.patient_level_alliance_outcome`).
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
    n_s = whole_number(study_n, "study_n (patients)", minimum=4)
    level = confidence_level(level)
    if study_ci is None:
        lo_s, hi_s = correlation_ci(r_s, n_s, level)
        se_s = 1.0 / math.sqrt(n_s - 3)
        ci_note = f"{level:.0%} CI from Fisher z with n = {n_s}"
    else:
        if isinstance(study_ci, str) or len(study_ci) != 2:
            raise SettingsError(f"study_ci must be a pair (lower, upper), got {study_ci!r}.")
        lo_s = _correlation(study_ci[0], "study_ci lower bound")
        hi_s = _correlation(study_ci[1], "study_ci upper bound")
        if not lo_s <= r_s <= hi_s or lo_s == hi_s:
            raise SettingsError(
                f"study_ci = ({lo_s}, {hi_s}) does not contain study_r = {r_s} as "
                "(lower < upper, lower <= r <= upper). Pass (lower, upper) of the same "
                "estimate."
            )
        se_s = (math.atanh(hi_s) - math.atanh(lo_s)) / (2.0 * z_critical(level))
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
# Moved names
# ---------------------------------------------------------------------------
