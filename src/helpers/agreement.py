"""How two ratings of the same occasions agree (e.g. client- vs therapist-rated alliance).

:func:`rater_agreement` composes three analyses, each its own function:

* between subjects -- :func:`between_subject_correlation`, the Pearson r of
  the subjects' mean ratings;
* within subjects -- :func:`repeated_measures_correlation`, the repeated
  measures correlation (Bakdash & Marusich, 2017);
* in level -- :func:`bland_altman_repeated`, Bland–Altman limits of agreement
  for repeated measurements whose true value varies (Bland & Altman, 2007),
  with approximate confidence intervals (Zou, 2013).

The correlations are :class:`helpers.associations.CorrelationEstimate` results.

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

Graybill, F. A., & Wang, C.-M. (1980). Confidence intervals on nonnegative
linear combinations of variances. *Journal of the American Statistical
Association, 75*(372), 869–873.

Zou, G. Y. (2013). Confidence interval estimation for the Bland–Altman limits
of agreement with multiple observations per individual. *Statistical Methods
in Medical Research, 22*(6), 630–642.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from helpers.associations import (
    CorrelationEstimate,
    _check_not_constant,
    _estimate,
    _estimates_frame,
    _numeric_column,
)
from helpers.errors import DataInputError, SettingsError
from helpers.schema import PATIENT_ID
from helpers.stats_common import confidence_level, z_critical
from helpers.validation import describe_rows, require_frame

__all__ = [
    "BlandAltmanRepeated",
    "RaterAgreement",
    "between_subject_correlation",
    "bland_altman_repeated",
    "rater_agreement",
    "repeated_measures_correlation",
]


# ---------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------


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
        renamed = {"n_subjects": "n_patients", "sd_total": "sd_difference"}
        columns = [
            "difference",
            "n_obs",
            "n_patients",
            "mean_difference",
            "sd_difference",
            "loa_low",
            "loa_high",
            "sd_within",
            "sd_between",
            "loa_low_ci_low",
            "loa_low_ci_high",
            "loa_high_ci_low",
            "loa_high_ci_high",
            "sd_naive",
        ]
        return self.limits.to_frame().rename(columns=renamed)[columns]


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
        raise SettingsError(f"{where}: a and b are the same column ({a!r}); name two ratings.")
    no_id = data[subject].isna().to_numpy()
    if no_id.any():
        raise DataInputError(
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
    level = confidence_level(level)
    pairs, n_incomplete = _paired_ratings(data, a, b, subject, where)
    return _between(pairs, a, b, subject, n_incomplete, level, where)


def _between(
    pairs: pd.DataFrame, a: str, b: str, subject: str, n_incomplete: int, level: float, where: str
) -> CorrelationEstimate:
    unit = _unit(subject)
    means = pairs.groupby("subject", sort=True)[["a", "b"]].mean()
    k = len(means)
    if k < 4:
        raise DataInputError(
            f"{where}: only {k} {unit}(s) have rows with both {a!r} and {b!r} "
            f"({n_incomplete} rows lack one of them); at least 4 are needed for the "
            f"between-{unit} correlation and its CI.",
            fix="Check that both ratings are filled in for the same rows.",
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
    level = confidence_level(level)
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
        raise DataInputError(
            f"{where}: too few repeated ratings for the within-{unit} correlation: "
            f"{n} rows of {k} {unit}(s) with at least two complete rows give "
            f"df = N - k - 1 = {df}; at least 2 are needed.",
            fix="Pass data in which more subjects have two or more rows with both ratings.",
        )
    group = repeated.groupby("subject", sort=False)
    ca = (repeated["a"] - group["a"].transform("mean")).to_numpy()
    cb = (repeated["b"] - group["b"].transform("mean")).to_numpy()
    ssa, ssb = float(ca @ ca), float(cb @ cb)
    for ss, column in ((ssa, a), (ssb, b)):
        if ss == 0.0:
            raise DataInputError(
                f"{where}: {column!r} does not vary within any {unit}, so the "
                f"within-{unit} correlation is not defined.",
                fix="Pass a rating that changes across a subject's rows.",
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
    level = confidence_level(level)
    agreement = confidence_level(agreement)
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
        raise DataInputError(
            f"{where}: only {k} {_unit(subject)}(s) have rows with both {a!r} and {b!r} "
            f"({n_incomplete} rows lack one of them); at least 2 are needed for the "
            "between-subject variance of the differences.",
            fix="Check that both ratings are filled in for the same rows.",
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
    z = z_critical(agreement)
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
    level = confidence_level(level)
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
