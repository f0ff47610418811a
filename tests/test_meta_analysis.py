"""Tests of helpers.meta_analysis (conversions, the meta-analysis table), helpers.stats_common
(the checks and Fisher interval they share), helpers.associations (the patient-level
correlation) and helpers.agreement (rater agreement).

Expected values come from hand arithmetic (written out next to each value),
from independent computations (scipy's pearsonr, statsmodels OLS, numpy least
squares with patient dummies, the rmcorr package's documented example), or
from the known truth of the simulated demo study.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from helpers import meta_analysis, stats_common
from helpers.agreement import (
    between_subject_correlation,
    bland_altman_repeated,
    rater_agreement,
    repeated_measures_correlation,
)
from helpers.associations import patient_level_alliance_outcome
from helpers.errors import SettingsError
from helpers.meta_analysis import (
    META_ANALYSES,
    MetaAnalysis,
    benchmark_table,
    correlation_ci,
    d_from_r,
    fisher_z,
    fisher_z_inverse,
    r_from_d,
    r_from_standardized_beta,
    r_from_t,
    standardized_coefficient,
    unstandardized_coefficient,
)
from helpers.paths import DEMO_DIR
from helpers.pipeline import run_cleaning

Z975 = 1.959963984540054  # standard-normal 97.5% quantile (tables: 1.96)
#: Reproducible property tests: fixed examples, no example database on disk.
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def _p_normal_two_sided(z: float) -> float:
    """2 * (1 - Phi(|z|)) written with math.erfc (independent of scipy)."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def test_moved_analyses_live_only_in_their_new_modules():
    for name in ("patient_level_alliance_outcome", "rater_agreement", "bland_altman_repeated"):
        assert not hasattr(meta_analysis, name), name


def test_meta_analysis_module_has_one_name():
    """Renamed so that it cannot be confused with bench/ (speed benchmarks)."""
    import importlib.util

    assert importlib.util.find_spec("helpers.benchmarks") is None


def test_shared_checks_live_in_stats_common():
    from helpers import agreement, associations

    assert associations.fisher_interval is stats_common.fisher_interval
    assert agreement.confidence_level is stats_common.confidence_level
    for name in ("_level", "_count", "_z_critical", "_fisher_interval", "_real"):
        assert not hasattr(meta_analysis, name), name


def test_stats_common_fisher_interval_is_the_correlation_ci():
    # n = 100 pairs: se_z = 1 / sqrt(97)
    assert stats_common.fisher_interval(0.3, 1 / math.sqrt(97), 0.95) == pytest.approx(
        correlation_ci(0.3, 100)
    )
    assert stats_common.z_critical(0.95) == pytest.approx(Z975, abs=1e-12)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: stats_common.confidence_level(95), "as a proportion"),
        (lambda: stats_common.confidence_level(1.0), "strictly between 0 and 1"),
        (lambda: stats_common.whole_number(2.5, "n", minimum=1), "whole number"),
        (lambda: stats_common.whole_number(0, "n", minimum=1), "at least 1"),
        (lambda: stats_common.real_number(math.inf, "t"), "finite"),
    ],
)
def test_stats_common_refuses_unusable_arguments(call, message):
    with pytest.raises(SettingsError, match=message):
        call()


def test_stats_common_refuses_non_numbers_with_type_error():
    with pytest.raises(TypeError, match="must be a real number"):
        stats_common.real_number(True, "n")


def test_fisher_z_hand_value():
    # z(0.5) = 0.5 * ln((1 + 0.5) / (1 - 0.5)) = 0.5 * ln 3
    assert fisher_z(0.5) == pytest.approx(0.5493061443340549, abs=1e-15)
    assert fisher_z(-0.5) == pytest.approx(-0.5493061443340549, abs=1e-15)
    assert fisher_z(0.0) == 0.0


def test_fisher_z_inverse_hand_value_and_round_trip():
    # tanh(0.5 ln 3) = (3 - 1) / (3 + 1) = 0.5
    assert fisher_z_inverse(0.5 * math.log(3.0)) == pytest.approx(0.5, abs=1e-15)
    for r in (-0.95, -0.3, 0.0, 0.278, 0.9):
        assert fisher_z_inverse(fisher_z(r)) == pytest.approx(r, abs=1e-14)


def test_correlation_ci_hand_arithmetic_r278_n100():
    # z   = 0.5 * ln(1.278 / 0.722)                = 0.2855132480
    # SE  = 1 / sqrt(100 - 3) = 1 / sqrt(97)       = 0.1015346165
    # z +/- 1.959964 * SE                          = 0.0865081 .. 0.4845184
    # tanh of these                                = 0.0862939 .. 0.4498542
    z = 0.5 * math.log(1.278 / 0.722)
    se = 1.0 / math.sqrt(97.0)
    assert z == pytest.approx(0.2855132480, abs=1e-9)
    assert se == pytest.approx(0.1015346165, abs=1e-9)
    lo, hi = correlation_ci(0.278, 100)
    assert lo == pytest.approx(0.0862938946, abs=1e-9)
    assert hi == pytest.approx(0.4498541739, abs=1e-9)
    assert lo == pytest.approx(math.tanh(z - Z975 * se), abs=1e-12)


def test_correlation_ci_matches_rmcorr_documented_example():
    # rmcorr's "Confidence Interval Fix" vignette: r = 0.88 with effective n = 6
    # gives 95% CI [0.2394418, 0.9868084] (psych::r.con(0.88, 6)).
    lo, hi = correlation_ci(0.88, 6)
    assert (lo, hi) == pytest.approx((0.2394418, 0.9868084), abs=1e-7)


def test_correlation_ci_other_level():
    # 90%: quantile 1.644854; r = 0.3, n = 50: z = 0.3095196, SE = 1/sqrt(47) = 0.1458650
    lo, hi = correlation_ci(0.3, 50, level=0.90)
    z, se, q = math.atanh(0.3), 1.0 / math.sqrt(47.0), 1.6448536269514722
    assert (lo, hi) == pytest.approx((math.tanh(z - q * se), math.tanh(z + q * se)), abs=1e-12)
    assert lo < 0.3 < hi


def test_r_from_t_hand_cases():
    # t = 3, df = 16: 3 / sqrt(9 + 16) = 3 / 5
    assert r_from_t(3.0, 16) == pytest.approx(0.6, abs=1e-15)
    # t = -4, df = 9: -4 / sqrt(16 + 9) = -0.8
    assert r_from_t(-4.0, 9) == pytest.approx(-0.8, abs=1e-15)
    assert r_from_t(0.0, 10) == 0.0


def test_r_from_t_is_the_partial_correlation_in_ols():
    # Independent check: partial r(y, x1 | x2) from the correlation matrix
    # (r_y1 - r_y2 r_12) / sqrt((1 - r_y2^2)(1 - r_12^2)) equals r from the OLS t of x1.
    rng = np.random.default_rng(11)
    n = 60
    x2 = rng.normal(size=n)
    x1 = 0.5 * x2 + rng.normal(size=n)
    y = 0.4 * x1 - 0.3 * x2 + rng.normal(size=n)
    fit = sm.OLS(y, sm.add_constant(np.column_stack([x1, x2]))).fit()
    c = np.corrcoef(np.vstack([y, x1, x2]))
    r_y1, r_y2, r_12 = c[0, 1], c[0, 2], c[1, 2]
    partial = (r_y1 - r_y2 * r_12) / math.sqrt((1 - r_y2**2) * (1 - r_12**2))
    assert r_from_t(float(fit.tvalues[1]), fit.df_resid) == pytest.approx(partial, abs=1e-12)


def test_r_from_d_cohen_table():
    # Cohen (1988), table 2.2.1 (equal groups, a = 4): d = .2, .5, .8 -> r = .100, .243, .371
    # e.g. 0.8 / sqrt(0.64 + 4) = 0.8 / sqrt(4.64) = 0.3713907
    assert r_from_d(0.8) == pytest.approx(0.3713906764, abs=1e-9)
    assert round(r_from_d(0.5), 3) == 0.243
    assert round(r_from_d(0.2), 3) == 0.100
    assert r_from_d(0.5, 50, 50) == pytest.approx(r_from_d(0.5), abs=1e-15)  # a = 100^2 / 2500 = 4


def test_r_from_d_unequal_groups_hand_value():
    # n1 = 10, n2 = 40: a = 50^2 / (10 * 40) = 6.25; r = 0.5 / sqrt(0.25 + 6.25) = 0.1961161
    assert r_from_d(0.5, 10, 40) == pytest.approx(0.5 / math.sqrt(6.5), abs=1e-15)
    assert r_from_d(0.5, 10, 40) == pytest.approx(0.1961161351, abs=1e-9)


def test_r_from_d_equals_point_biserial_on_data():
    # With d standardised by the within-group SD with denominator N (not N - 2),
    # r_pb = d / sqrt(d^2 + N^2 / (n1 n2)) exactly; the point-biserial r is
    # computed independently as the Pearson r with the 0/1 group indicator.
    rng = np.random.default_rng(3)
    n1, n2 = 12, 37
    g1 = rng.normal(1.0, 2.0, n1)
    g2 = rng.normal(0.0, 2.0, n2)
    ss_within = ((g1 - g1.mean()) ** 2).sum() + ((g2 - g2.mean()) ** 2).sum()
    d = (g1.mean() - g2.mean()) / math.sqrt(ss_within / (n1 + n2))
    indicator = np.r_[np.ones(n1), np.zeros(n2)]
    r_pb = np.corrcoef(indicator, np.r_[g1, g2])[0, 1]
    assert r_from_d(d, n1, n2) == pytest.approx(r_pb, abs=1e-12)
    assert d_from_r(r_pb, n1, n2) == pytest.approx(d, abs=1e-12)


def test_d_from_r_hand_value():
    # Borenstein et al. (2009): d = 2r / sqrt(1 - r^2); r = .5 -> 1 / sqrt(.75) = 1.1547005
    assert d_from_r(0.5) == pytest.approx(1.1547005384, abs=1e-9)
    assert d_from_r(-0.5) == pytest.approx(-1.1547005384, abs=1e-9)


@PROPERTY_SETTINGS
@given(
    d=st.floats(-5, 5, allow_nan=False),
    n1=st.integers(1, 500),
    n2=st.integers(1, 500),
)
def test_d_r_round_trip_unequal_groups(d, n1, n2):
    assert d_from_r(r_from_d(d, n1, n2), n1, n2) == pytest.approx(d, abs=1e-9)


@PROPERTY_SETTINGS
@given(r=st.floats(-0.99, 0.99, allow_nan=False))
def test_r_d_round_trip_equal_groups(r):
    assert r_from_d(d_from_r(r)) == pytest.approx(r, abs=1e-12)


def test_standardized_coefficient_simple_regression_is_r():
    rng = np.random.default_rng(5)
    x = rng.normal(40, 6, 80)
    y = -0.2 * x + rng.normal(0, 4, 80)
    b = np.polyfit(x, y, 1)[0]
    sd_x, sd_y = x.std(ddof=1), y.std(ddof=1)
    beta = standardized_coefficient(b, sd_x, sd_y)
    assert beta == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert r_from_standardized_beta(beta, n_predictors=1) == beta
    assert unstandardized_coefficient(beta, sd_x, sd_y) == pytest.approx(b, abs=1e-12)
    # hand: b = 2, SD(x) = 3, SD(y) = 12 -> beta = 2 * 3 / 12 = 0.5, and back
    assert standardized_coefficient(2.0, 3.0, 12.0) == 0.5
    assert unstandardized_coefficient(0.5, 3.0, 12.0) == 2.0


def test_r_from_standardized_beta_refuses_multiple_regression():
    with pytest.raises(ValueError, match="not a correlation"):
        r_from_standardized_beta(0.3, n_predictors=2)
    with pytest.raises(ValueError, match="cannot come from a simple regression"):
        r_from_standardized_beta(1.2, n_predictors=1)
    with pytest.raises(ValueError, match="at least 1"):
        r_from_standardized_beta(0.2, n_predictors=0)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: fisher_z(1.0), ValueError, r"\|r\| < 1"),
        (lambda: fisher_z(-1.0), ValueError, r"\|r\| < 1"),
        (lambda: fisher_z(27.8), ValueError, "percentage"),
        (lambda: fisher_z(float("nan")), ValueError, "missing"),
        (lambda: fisher_z("0.3"), TypeError, "real number"),
        (lambda: fisher_z(True), TypeError, "real number"),
        (lambda: fisher_z_inverse(float("inf")), ValueError, "finite"),
        (lambda: correlation_ci(0.3, 3), ValueError, "at least 4"),
        (lambda: correlation_ci(0.3, 10.5), ValueError, "whole number"),
        (lambda: correlation_ci(0.3, 50, level=95), ValueError, "proportion"),
        (lambda: r_from_t(2.0, 0), ValueError, "df must be greater than 0"),
        (lambda: r_from_d(0.5, n1=10), ValueError, "both group sizes"),
        (lambda: d_from_r(0.5, 0, 10), ValueError, "n1 must be at least 1"),
        (lambda: standardized_coefficient(1.0, 0.0, 2.0), ValueError, "sd_x"),
        (lambda: unstandardized_coefficient(0.3, 2.0, -1.0), ValueError, "sd_y"),
    ],
)
def test_invalid_input_gives_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_numpy_scalars_accepted():
    assert fisher_z(np.float64(0.5)) == pytest.approx(0.5 * math.log(3.0))
    assert correlation_ci(np.float32(0.278), np.int64(100))[0] == pytest.approx(0.08629, abs=1e-5)


# ---------------------------------------------------------------------------
# The meta-analysis table
# ---------------------------------------------------------------------------

# The literal values from the sources (brief for this module).
LITERAL = {
    "fluckiger2018": dict(
        year=2018, k=295, n_patients=None, r=0.278, ci_low=0.256, ci_high=0.299,
        cite=("Flückiger", "Del Re", "Wampold", "Horvath", "Psychotherapy, 55(4), 316–340"),
    ),
    "horvath2011": dict(
        year=2011, k=190, n_patients=None, r=0.275, ci_low=0.25, ci_high=0.30,
        cite=("Horvath", "Del Re", "Flückiger", "Symonds", "Psychotherapy, 48(1), 9–16"),
    ),
    "martin2000": dict(
        year=2000, k=79, n_patients=None, r=0.22, ci_low=None, ci_high=None,
        cite=("Martin", "Garske", "Davis", "Consulting and Clinical Psychology, 68(3), 438–450"),
    ),
    "eubanks2018": dict(
        year=2018, k=11, n_patients=1314, r=0.29, ci_low=0.10, ci_high=0.47,
        cite=("Eubanks", "Muran", "Safran", "Psychotherapy, 55(4), 508–519"),
    ),
}  # fmt: skip


def test_meta_analyses_hold_the_literal_values():
    assert [e.key for e in META_ANALYSES] == list(LITERAL)
    for key, expected in LITERAL.items():
        entry = META_ANALYSES.get(key)
        for field in ("year", "k", "n_patients", "r", "ci_low", "ci_high"):
            assert getattr(entry, field) == expected[field], (key, field)
        for part in expected["cite"]:
            assert part in entry.source, (key, part)
        assert str(entry.year) in entry.source


def test_meta_analyses_notes_say_what_is_not_entered():
    assert "30,000" in META_ANALYSES.get("fluckiger2018").note
    assert "not entered" in META_ANALYSES.get("horvath2011").note
    assert "no CI" in META_ANALYSES.get("martin2000").note
    assert "rupture repair" in META_ANALYSES.get("eubanks2018").construct


def test_meta_analyses_frame_and_immutability():
    frame = META_ANALYSES.to_frame()
    assert list(frame["key"]) == list(LITERAL)
    assert frame["r"].tolist() == [0.278, 0.275, 0.22, 0.29]
    assert frame["k"].tolist() == [295, 190, 79, 11]
    assert frame["n_patients"].isna().tolist() == [True, True, True, False]
    assert int(frame.loc[3, "n_patients"]) == 1314
    assert frame["ci_low"].isna().tolist() == [False, False, True, False]
    with pytest.raises(dataclasses.FrozenInstanceError):
        META_ANALYSES[0].r = 0.5
    with pytest.raises(TypeError):
        META_ANALYSES[0] = META_ANALYSES[1]
    with pytest.raises(KeyError, match="fluckiger2018"):
        META_ANALYSES.get("wampold2015")


def test_se_z_from_ci_hand_value():
    # Flückiger 2018: (atanh(.299) - atanh(.256)) / (2 * 1.959964)
    # = (0.3084053 - 0.2617988) / 3.9199280 = 0.0118874
    se = (0.5 * math.log(1.299 / 0.701) - 0.5 * math.log(1.256 / 0.744)) / (2 * Z975)
    assert META_ANALYSES.get("fluckiger2018").se_z == pytest.approx(se, abs=1e-15)
    assert se == pytest.approx(0.0118874, abs=1e-7)
    assert META_ANALYSES.get("martin2000").se_z is None


# ---------------------------------------------------------------------------
# Benchmark table
# ---------------------------------------------------------------------------


def test_benchmark_table_numbers_and_difference_tests():
    table = benchmark_table(0.34, 332)
    assert len(table) == 5
    assert table["label"].tolist()[-1] == "this study"
    assert table["key"].tolist() == [*LITERAL, "study"]
    published = table.iloc[:4]
    for (key, expected), (_, row) in zip(LITERAL.items(), published.iterrows(), strict=True):
        assert row["r"] == expected["r"], key
        assert row["k"] == expected["k"], key
        if expected["ci_low"] is None:
            assert pd.isna(row["ci_low"]) and pd.isna(row["z_difference"]), key
            assert pd.isna(row["ci_overlaps_study"]) and pd.isna(row["p_difference"]), key
        else:
            assert (row["ci_low"], row["ci_high"]) == (expected["ci_low"], expected["ci_high"])
    # study: z = atanh(.34) = 0.3540925, SE = 1/sqrt(329) = 0.0551318
    z_s, se_s = 0.5 * math.log(1.34 / 0.66), 1.0 / math.sqrt(329.0)
    study = table.iloc[4]
    assert study["ci_low"] == pytest.approx(math.tanh(z_s - Z975 * se_s), abs=1e-12)
    assert study["ci_high"] == pytest.approx(math.tanh(z_s + Z975 * se_s), abs=1e-12)
    assert study["se_z"] == pytest.approx(se_s, abs=1e-15)
    assert study["n_patients"] == 332
    # vs Flückiger 2018: atanh(.278) = 0.2855132; SE_s^2 = 1/329 = 0.0030395,
    # SE_m^2 = 0.0118874^2 = 0.0001413; z = (0.3540925 - 0.2855132) / sqrt(0.0031808)
    #                                      = 0.0685793 / 0.0563988 = 1.21597
    z_m = 0.5 * math.log(1.278 / 0.722)
    se_m = (math.atanh(0.299) - math.atanh(0.256)) / (2 * Z975)
    z_diff = (z_s - z_m) / math.sqrt(se_s**2 + se_m**2)
    assert z_diff == pytest.approx(1.21597, abs=1e-5)
    assert table.loc[0, "z_difference"] == pytest.approx(z_diff, abs=1e-12)
    assert table.loc[0, "p_difference"] == pytest.approx(_p_normal_two_sided(z_diff), abs=1e-12)
    # CIs (.2435, .4305) and (.256, .299) overlap; so do all the published ones here
    assert bool(table.loc[0, "ci_overlaps_study"]) is True


def test_benchmark_table_overlap_false_and_study_ci_given():
    # r = .60, n = 200: z = 0.6931472, SE = 1/sqrt(197); lower = tanh(0.6931 - 0.1396) = 0.503
    # > .299 (Flückiger), > .30 (Horvath), > .47 (Eubanks): no overlap anywhere.
    table = benchmark_table(0.60, 200)
    assert table["ci_overlaps_study"].iloc[[0, 1, 3]].tolist() == [False, False, False]
    # A CI given explicitly: its width sets the study SE, (z(hi) - z(lo)) / (2 * 1.959964).
    given_ci = (0.40, 0.75)
    table2 = benchmark_table(0.60, 200, given_ci, label="my study")
    se_given = (math.atanh(0.75) - math.atanh(0.40)) / (2 * Z975)
    assert table2.iloc[-1]["label"] == "my study"
    custom = benchmark_table(0.60, 200, construct="early alliance–PHQ-9 change")
    assert custom.iloc[-1]["construct"] == "early alliance–PHQ-9 change"
    assert table2.iloc[-1]["se_z"] == pytest.approx(se_given, abs=1e-15)
    se_m = (math.atanh(0.30) - math.atanh(0.25)) / (2 * Z975)
    z_h = (math.atanh(0.60) - math.atanh(0.275)) / math.sqrt(se_given**2 + se_m**2)
    assert table2.loc[1, "z_difference"] == pytest.approx(z_h, abs=1e-12)
    assert bool(table2.loc[3, "ci_overlaps_study"]) is True  # .40-.75 meets .10-.47
    # Passing the Fisher CI itself gives the same test as passing none.
    fisher = correlation_ci(0.60, 200)
    same = benchmark_table(0.60, 200, fisher)
    assert same.loc[0, "z_difference"] == pytest.approx(table.loc[0, "z_difference"], abs=1e-12)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.3, 3), "at least 4"),
        ((1.2, 100), "strictly between -1 and 1"),
        ((0.3, 100, (0.35, 0.5)), "does not contain"),
        ((0.3, 100, (0.1,)), "pair"),
        ((0.3, 100, (0.1, 1.0)), "upper bound"),
    ],
)
def test_benchmark_table_invalid_study(args, message):
    with pytest.raises(ValueError, match=message):
        benchmark_table(*args)


def test_benchmark_table_custom_entries():
    entry = MetaAnalysis(
        key="x", label="X (2020)", source="X. (2020).", year=2020, construct="c",
        k=3, n_patients=None, r=0.1, ci_low=0.0, ci_high=0.2,
    )  # fmt: skip
    table = benchmark_table(0.1, 100, meta_analyses=[entry])
    assert len(table) == 2
    # same r: z difference exactly 0
    assert table.loc[0, "z_difference"] == pytest.approx(0.0, abs=1e-15)
    assert table.loc[0, "p_difference"] == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------------------
# Patient-level alliance–outcome correlation
# ---------------------------------------------------------------------------


def _hand_patients() -> pd.DataFrame:
    # Used patients: alliance 1..5, improvement 2,1,4,3,5.  Deviations:
    # x: -2,-1,0,1,2 ; y: -1,-2,1,0,2 ; sum xy = 2+2+0+0+4 = 8, sum x^2 = sum y^2 = 10
    # r = 8 / 10 = 0.8.  P6 has 2 sessions (excluded), P7 no improvement (excluded).
    return pd.DataFrame(
        {
            "patient_id": ["P1", "P2", "P3", "P4", "P5", "P6", "P7"],
            "n_sessions": [3, 5, 8, 10, 4, 2, 6],
            "alliance_mean": [1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 3.0],
            "improvement": [2.0, 1.0, 4.0, 3.0, 5.0, -9.0, np.nan],
            "outcome_intake": [10.0, 14.0, 12.0, 18.0, 15.0, 20.0, 11.0],
        }
    )


def test_patient_level_hand_value_and_pearsonr():
    res = patient_level_alliance_outcome(_hand_patients())
    assert res.r == pytest.approx(0.8, abs=1e-15)
    assert res.n == 5
    assert res.correlation.df == 3
    assert res.n_patients_in == 7
    assert res.n_excluded_few_sessions == 1
    assert res.n_excluded_missing == 1
    reference = stats.pearsonr([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert res.p == pytest.approx(reference.pvalue, rel=1e-10)
    # CI: atanh(.8) = 1.0986123 (= 0.5 ln 9), SE = 1/sqrt(2)
    z, se = 0.5 * math.log(9.0), 1.0 / math.sqrt(2.0)
    assert res.ci == pytest.approx((math.tanh(z - Z975 * se), math.tanh(z + Z975 * se)), abs=1e-12)
    # sign convention: an outcome scored higher = worse flips the sign
    flipped = patient_level_alliance_outcome(_hand_patients(), higher_outcome_is_better=False)
    assert flipped.r == pytest.approx(-0.8, abs=1e-15)
    # min_sessions=None keeps P6 (alliance 9, improvement -9)
    everyone = patient_level_alliance_outcome(_hand_patients(), min_sessions=None)
    assert everyone.n == 6
    assert everyone.r == pytest.approx(
        np.corrcoef([1, 2, 3, 4, 5, 9], [2, 1, 4, 3, 5, -9])[0, 1], abs=1e-12
    )


def test_patient_level_partial_r_matches_ols():
    rng = np.random.default_rng(2024)
    n = 120
    intake = rng.normal(15, 4, n)
    alliance = 43 - 0.3 * intake + rng.normal(0, 5, n)
    improvement = 0.4 * intake + 0.15 * alliance + rng.normal(0, 4, n)
    patients = pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(n)],
            "n_sessions": rng.integers(3, 21, n),
            "alliance_mean": alliance,
            "improvement": improvement,
            "outcome_intake": intake,
        }
    )
    res = patient_level_alliance_outcome(patients, adjust_for_intake=True)
    c = np.corrcoef(np.vstack([alliance, improvement, intake]))
    r_xy, r_xc, r_yc = c[0, 1], c[0, 2], c[1, 2]
    partial = (r_xy - r_xc * r_yc) / math.sqrt((1 - r_xc**2) * (1 - r_yc**2))
    assert res.partial.r == pytest.approx(partial, abs=1e-12)
    assert res.partial.df == n - 3
    fit = sm.OLS(improvement, sm.add_constant(np.column_stack([alliance, intake]))).fit()
    assert res.partial.p == pytest.approx(fit.pvalues[1], rel=1e-8)
    z, se = math.atanh(partial), 1.0 / math.sqrt(n - 4)
    assert res.partial.ci_low == pytest.approx(math.tanh(z - Z975 * se), abs=1e-12)
    frame = res.to_frame()
    assert frame["label"].tolist() == ["r", "partial r | outcome_intake"]
    assert frame["r"].tolist() == pytest.approx([res.r, res.partial.r])


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "message"),
    [
        (lambda d: d.drop(columns="improvement"), {}, ValueError, "no column.*improvement"),
        (lambda d: d.drop(columns="n_sessions"), {}, ValueError, "min_sessions=None"),
        (lambda d: d.drop(columns="outcome_intake"), {"adjust_for_intake": True},
         ValueError, "outcome_intake"),
        (lambda d: pd.concat([d, d.iloc[[0]]]), {}, ValueError, "P1.*one row per patient"),
        (lambda d: d.assign(alliance_mean=["a", 2, 3, 4, 5, 6, 7]), {}, ValueError,
         "patient_id=P1.*'a'"),
        (lambda d: d.assign(alliance_mean=3.0), {}, ValueError, "no variance"),
        (lambda d: d, {"min_sessions": 5}, ValueError, "only 3 patient"),
        (lambda d: d, {"min_sessions": 2.5}, ValueError, "whole number"),
        (lambda d: d["alliance_mean"], {}, TypeError, "DataFrame"),
    ],
)  # fmt: skip
def test_patient_level_invalid_input(change, kwargs, error, message):
    with pytest.raises(error, match=message):
        patient_level_alliance_outcome(change(_hand_patients()), **kwargs)


# ---------------------------------------------------------------------------
# Rater agreement
# ---------------------------------------------------------------------------


def _hand_sessions() -> pd.DataFrame:
    # a (client) and b (therapist) per patient, with patient-centred values:
    # P1 a 1,2,3 (-1,0,1)   b 2,3,7 (-2,-1,3)   sum ab 5  sum a^2 2  sum b^2 14
    # P2 a 4,6,8 (-2,0,2)   b 1,1,4 (-1,-1,2)   sum ab 6  sum a^2 8  sum b^2 6
    # P3 a 5,5,8 (-1,-1,2)  b 3,5,4 (-1,1,0)    sum ab 0  sum a^2 6  sum b^2 2
    # P4 a 3,5   (-1,1)     b 6,6   (0,0)       sum ab 0  sum a^2 2  sum b^2 0
    # P5 a 7     (single complete row: no within information)
    # plus one row of P1 with b missing (left out).
    return pd.DataFrame(
        {
            "patient_id": ["P1"] * 4 + ["P2"] * 3 + ["P3"] * 3 + ["P4"] * 2 + ["P5"],
            "session": [1, 2, 3, 4, 1, 2, 3, 1, 2, 3, 1, 2, 1],
            "alliance_client": [1, 2, 3, 9, 4, 6, 8, 5, 5, 8, 3, 5, 7],
            "alliance_therapist": [2, 3, 7, np.nan, 1, 1, 4, 3, 5, 4, 6, 6, 2],
        }
    )


def test_rater_agreement_hand_values():
    res = rater_agreement(_hand_sessions())
    # within: r = 11 / sqrt(18 * 22) = 11 / sqrt(396) = 0.5527708; df = 11 - 4 - 1 = 6
    assert res.within.r == pytest.approx(11.0 / math.sqrt(396.0), abs=1e-14)
    assert res.within.df == 6
    assert res.within.n == 11
    assert res.within.n_patients == 4
    # CI with effective n = df + 2 = 8: SE = 1/sqrt(5)
    z, se = math.atanh(11.0 / math.sqrt(396.0)), 1.0 / math.sqrt(5.0)
    assert res.within.ci == pytest.approx(
        (math.tanh(z - Z975 * se), math.tanh(z + Z975 * se)), abs=1e-12
    )
    # t = r sqrt(df / (1 - r^2)) = 0.5527708 * sqrt(6 / 0.6944444) = 1.6248077
    t = 0.5527707983925666 * math.sqrt(6 / (1 - 121 / 396))
    assert t == pytest.approx(1.6248077, abs=1e-6)
    assert res.within.p == pytest.approx(2 * stats.t.sf(t, 6), rel=1e-10)
    # between: patient means a = 2, 6, 6, 4, 7 ; b = 4, 2, 4, 6, 2 (P5 counts here)
    # mean a = 5, mean b = 3.6; dev a = -3,1,1,-1,2 ; dev b = .4,-1.6,.4,2.4,-1.6
    # sum ab = -1.2 - 1.6 + .4 - 2.4 - 3.2 = -8 ; sum a^2 = 16 ; sum b^2 = 11.2
    # r = -8 / sqrt(179.2) = -0.5976143
    assert res.between.r == pytest.approx(-8.0 / math.sqrt(179.2), abs=1e-14)
    assert res.between.n == 5 and res.between.df == 3
    assert res.n_patients == 5 and res.n_obs == 12 and res.n_rows_incomplete == 1
    # differences b - a over the 12 complete rows, by patient:
    # P1 1,1,4 (mean 2, SS 6)  P2 -3,-5,-4 (mean -4, SS 2)  P3 -2,0,-4 (mean -2, SS 8)
    # P4 3,1 (mean 2, SS 2)    P5 -5 (SS 0);  grand mean -13/12
    # MS_w = 18 / (12 - 5) = 18/7
    # MS_b = [3 (37/12)^2 + 3 (35/12)^2 + 3 (11/12)^2 + 2 (37/12)^2 + (47/12)^2] / 4
    #      = (13092 / 144) / 4 = 1091/48
    # divisor = (12^2 - (9 + 9 + 9 + 4 + 1)) / (4 * 12) = 112/48 = 7/3
    # s_b^2 = (1091/48 - 18/7) / (7/3) = 6773/784;  s_d^2 = 6773/784 + 18/7 = 8789/784
    diffs = [1, 1, 4, -3, -5, -4, -2, 0, -4, 3, 1, -5]
    ms_w, ms_b, divisor = Fraction(18, 7), Fraction(1091, 48), Fraction(7, 3)
    var_b = (ms_b - ms_w) / divisor
    assert var_b == Fraction(6773, 784) and var_b + ms_w == Fraction(8789, 784)
    sd_total = math.sqrt(8789 / 784)
    assert res.mean_difference == pytest.approx(-13 / 12, abs=1e-14)
    assert res.sd_difference == pytest.approx(sd_total, abs=1e-12)
    assert res.loa_low == pytest.approx(-13 / 12 - Z975 * sd_total, abs=1e-12)
    assert res.loa_high == pytest.approx(-13 / 12 + Z975 * sd_total, abs=1e-12)
    assert res.limits.ms_within == pytest.approx(18 / 7, abs=1e-12)
    assert res.limits.ms_between == pytest.approx(1091 / 48, abs=1e-12)
    assert res.limits.divisor == pytest.approx(7 / 3, abs=1e-12)
    assert res.limits.sd_within == pytest.approx(math.sqrt(18 / 7), abs=1e-12)
    assert res.limits.sd_naive == pytest.approx(statistics.stdev(diffs), abs=1e-12)
    assert res.r_pooled == pytest.approx(
        np.corrcoef([1, 2, 3, 4, 6, 8, 5, 5, 8, 3, 5, 7], [2, 3, 7, 1, 1, 4, 3, 5, 4, 6, 6, 2])[
            0, 1
        ],
        abs=1e-12,
    )
    assert res.to_frame()["label"].str.startswith(("between", "within")).all()
    assert res.difference_frame().loc[0, "difference"] == "alliance_therapist - alliance_client"


def _ols_dummy_rmcorr(data: pd.DataFrame) -> tuple[float, float, float]:
    """Independent rmcorr: b ~ a + patient dummies by least squares.

    r = sign(slope) * sqrt(SS_a / (SS_a + SS_resid)), where SS_a is the drop in
    the residual sum of squares when a is added to the dummies-only model.
    Returns (r, p of the slope from statsmodels, residual df).
    """
    dummies = pd.get_dummies(data["patient_id"], dtype=float).to_numpy()
    b = data["alliance_therapist"].to_numpy(float)
    a = data["alliance_client"].to_numpy(float)
    full = np.column_stack([a, dummies])
    coef = np.linalg.lstsq(full, b, rcond=None)[0]
    ss_reduced = float(((b - dummies @ np.linalg.lstsq(dummies, b, rcond=None)[0]) ** 2).sum())
    ss_resid = float(((b - full @ coef) ** 2).sum())
    ss_a = ss_reduced - ss_resid
    r = math.copysign(math.sqrt(ss_a / (ss_a + ss_resid)), coef[0])
    fit = sm.OLS(b, full).fit()
    return r, float(fit.pvalues[0]), float(fit.df_resid)


def test_rater_agreement_within_equals_ols_with_patient_dummies():
    hand = _hand_sessions().dropna()
    hand = hand[hand["patient_id"] != "P5"]  # a single row: its dummy fits it exactly
    r, p, df = _ols_dummy_rmcorr(hand)
    res = rater_agreement(_hand_sessions())
    assert res.within.r == pytest.approx(r, abs=1e-12)
    assert res.within.p == pytest.approx(p, rel=1e-8)
    assert res.within.df == df

    rng = np.random.default_rng(7)
    rows = []
    for i in range(30):
        level = rng.normal(0, 5)
        for s in range(1, int(rng.integers(2, 9)) + 1):
            state = rng.normal(0, 3)
            rows.append(
                {
                    "patient_id": f"P{i:02d}",
                    "session": s,
                    "alliance_client": 43 + level + state,
                    "alliance_therapist": 39 + 0.4 * level + 0.3 * state + rng.normal(0, 2),
                }
            )
    data = pd.DataFrame(rows)
    r, p, df = _ols_dummy_rmcorr(data)
    res = rater_agreement(data)
    assert res.within.r == pytest.approx(r, abs=1e-12)
    assert res.within.p == pytest.approx(p, rel=1e-8)
    assert res.within.df == df == len(data) - 30 - 1
    means = data.groupby("patient_id")[["alliance_client", "alliance_therapist"]].mean()
    ref = stats.pearsonr(means["alliance_client"], means["alliance_therapist"])
    assert res.between.r == pytest.approx(ref.statistic, abs=1e-12)
    assert res.between.p == pytest.approx(ref.pvalue, rel=1e-8)


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (lambda d: d.drop(columns="alliance_therapist"), {}, "no column.*alliance_therapist"),
        (lambda d: d, {"b": "alliance_client"}, "same column"),
        (lambda d: d[d["patient_id"].isin(["P1", "P2", "P3"])], {}, "only 3 patient"),
        (lambda d: d.assign(patient_id=[None] + ["P1"] * 3 + list(d["patient_id"].iloc[4:])), {},
         "missing in rows 0"),
        (lambda d: d.assign(alliance_client=d["alliance_client"].astype(str).where(
            d.index != 2, "high")), {}, "patient_id=P1.*'high'"),
        (lambda d: d.assign(alliance_therapist=d.groupby("patient_id")["alliance_therapist"]
         .transform("mean")), {}, "does not vary within any patient"),
    ],
)  # fmt: skip
def test_rater_agreement_invalid_input(change, kwargs, message):
    with pytest.raises(ValueError, match=message):
        rater_agreement(change(_hand_sessions()), **kwargs)


def test_bland_altman_repeated_small_example_by_hand():
    """Three subjects with differences (1, 3), (2) and (4, 6, 8), plus a row without b.

    n = 6, k = 3, grand mean 4, subject means 2, 2, 6
    MS_w = (2 + 0 + 8) / (6 - 3) = 10/3
    MS_b = (2 (2-4)^2 + 1 (2-4)^2 + 3 (6-4)^2) / 2 = 24 / 2 = 12
    divisor = (36 - (4 + 1 + 9)) / (2 * 6) = 22/12 = 11/6
    s_b^2 = (12 - 10/3) / (11/6) = 52/11;  s_d^2 = 52/11 + 10/3 = 266/33
    limits 4 -/+ 1.959964 sqrt(266/33) = 4 -/+ 5.564574
    """
    data = pd.DataFrame(
        {
            "id": ["A", "A", "B", "C", "C", "C", "C"],
            "x": [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0],
            "y": [11.0, 13.0, 12.0, 14.0, 16.0, 18.0, np.nan],
        }
    )
    res = bland_altman_repeated(data, "x", "y", "id")
    assert (res.n_obs, res.n_subjects, res.n_rows_incomplete) == (6, 3, 1)
    assert (res.df_between, res.df_within) == (2, 3)
    assert res.mean_difference == pytest.approx(4.0, abs=1e-14)
    assert res.ms_within == pytest.approx(10 / 3, abs=1e-13)
    assert res.ms_between == pytest.approx(12.0, abs=1e-13)
    assert res.divisor == pytest.approx(11 / 6, abs=1e-14)
    assert res.sd_between == pytest.approx(math.sqrt(52 / 11), abs=1e-13)
    assert res.sd_within == pytest.approx(math.sqrt(10 / 3), abs=1e-13)
    assert res.sd_total == pytest.approx(math.sqrt(266 / 33), abs=1e-13)
    assert res.loa_low == pytest.approx(4 - Z975 * math.sqrt(266 / 33), abs=1e-12)
    assert res.loa_high == pytest.approx(4 + 5.564574, abs=1e-6)
    assert not res.between_truncated
    # intervals: bias d +/- t(0.975, 2) SE, SE^2 = (s_b^2 (4 + 1 + 9) + s_w^2 6) / 36
    se = math.sqrt((52 / 11 * 14 + 10 / 3 * 6) / 36)
    t = stats.t.ppf(0.975, 2)
    assert res.mean_difference_ci == pytest.approx((4 - t * se, 4 + t * se), abs=1e-12)
    # Graybill-Wang bounds of s_d^2 = MS_b / (11/6) + (5/11) MS_w, then MOVER for the limits
    c = [(6 / 11, 12.0, 2), (5 / 11, 10 / 3, 3)]
    theta = 266 / 33
    var_lo = theta - math.sqrt(
        sum((cc * ms * (1 - df / stats.chi2.ppf(0.975, df))) ** 2 for cc, ms, df in c)
    )
    var_hi = theta + math.sqrt(
        sum((cc * ms * (df / stats.chi2.ppf(0.025, df) - 1)) ** 2 for cc, ms, df in c)
    )
    sd = math.sqrt(theta)
    upper = 4 + Z975 * sd
    assert res.loa_high_ci[0] == pytest.approx(
        upper - math.hypot(t * se, Z975 * (sd - math.sqrt(var_lo))), abs=1e-10
    )
    assert res.loa_high_ci[1] == pytest.approx(
        upper + math.hypot(t * se, Z975 * (math.sqrt(var_hi) - sd)), abs=1e-10
    )
    assert res.loa_low_ci[0] < res.loa_low < res.loa_low_ci[1]
    assert res.to_frame().loc[0, "difference"] == "y - x"


def test_bland_altman_repeated_one_pair_per_subject_is_the_ordinary_analysis():
    """n = k: divisor 1, s_d^2 = MS_b = the ordinary variance; the components are NaN."""
    rng = np.random.default_rng(11)
    data = pd.DataFrame(
        {"id": np.arange(25), "a": rng.normal(50, 5, 25), "b": rng.normal(48, 6, 25)}
    )
    res = bland_altman_repeated(data, "a", "b", "id")
    diffs = (data["b"] - data["a"]).tolist()
    assert res.divisor == pytest.approx(1.0, abs=1e-14)
    assert res.sd_total == pytest.approx(statistics.stdev(diffs), rel=1e-12)
    assert res.sd_total == pytest.approx(res.sd_naive, rel=1e-12)
    assert math.isnan(res.sd_within) and math.isnan(res.sd_between)
    assert res.loa_low == pytest.approx(statistics.mean(diffs) - Z975 * res.sd_naive, rel=1e-12)
    # the bias interval is the one-sample t interval
    half = stats.t.ppf(0.975, 24) * statistics.stdev(diffs) / 5
    assert res.mean_difference_ci == pytest.approx(
        (statistics.mean(diffs) - half, statistics.mean(diffs) + half), rel=1e-12
    )


def _simulated_differences(rng, k, mu, sd_between, sd_within):
    rows = []
    for i in range(k):
        u = rng.normal(0, sd_between)
        for _ in range(int(rng.integers(1, 11))):
            truth = rng.normal(45, 6)  # the true value varies from session to session
            rows.append({"id": i, "a": truth, "b": truth + mu + u + rng.normal(0, sd_within)})
    return pd.DataFrame(rows)


def test_bland_altman_repeated_recovers_known_components():
    """400 subjects, 1-10 pairs each, sd_between 2, sd_within 3, bias -1.

    Sampling SEs (normal theory): s_w^2 has SE sigma_w^2 sqrt(2 / df_w) ~ 9 * 0.03 = 0.27,
    i.e. ~0.045 on the SD scale; s_b^2 has SE ~ sqrt(2 / (k - 1)) (sigma_b^2 +
    sigma_w^2 / m) ~ 0.071 * (4 + 9 / 5.5) ~ 0.40, i.e. ~0.10 on the SD scale; the bias has
    SE ~ sqrt(4 / 400 + 9 / 2200) ~ 0.12.  Tolerances are 4 SEs.
    """
    rng = np.random.default_rng(2024)
    data = _simulated_differences(rng, 400, -1.0, 2.0, 3.0)
    res = bland_altman_repeated(data, "a", "b", "id")
    assert res.sd_within == pytest.approx(3.0, abs=4 * 0.045)
    assert res.sd_between == pytest.approx(2.0, abs=4 * 0.10)
    assert res.mean_difference == pytest.approx(-1.0, abs=4 * 0.12)
    assert res.sd_total == pytest.approx(math.sqrt(13.0), abs=0.25)
    true_high = -1.0 + Z975 * math.sqrt(13.0)
    assert res.loa_high_ci[0] < true_high < res.loa_high_ci[1]


def test_bland_altman_repeated_limit_intervals_cover():
    """Coverage of the approximate 95% intervals of the limits over 400 small studies
    (30 subjects, 1-10 pairs each): within 2.5 binomial SEs (1.1 points) of 95% would be
    exact; the MOVER is approximate, so 90-99% is accepted."""
    rng = np.random.default_rng(5)
    true_low, true_high = -1.0 - Z975 * math.sqrt(13.0), -1.0 + Z975 * math.sqrt(13.0)
    hits_low = hits_high = 0
    for _ in range(400):
        res = bland_altman_repeated(_simulated_differences(rng, 30, -1.0, 2.0, 3.0), "a", "b", "id")
        hits_low += res.loa_low_ci[0] <= true_low <= res.loa_low_ci[1]
        hits_high += res.loa_high_ci[0] <= true_high <= res.loa_high_ci[1]
    assert 0.90 <= hits_low / 400 <= 0.99
    assert 0.90 <= hits_high / 400 <= 0.99


def test_bland_altman_repeated_truncates_a_negative_between_variance():
    # differences with identical subject means: MS_b = 0 < MS_w
    data = pd.DataFrame({"id": ["A", "A", "B", "B"], "a": [0.0] * 4, "b": [1.0, 3.0, 3.0, 1.0]})
    res = bland_altman_repeated(data, "a", "b", "id")
    assert res.between_truncated and res.sd_between == 0.0
    assert res.sd_total == pytest.approx(res.sd_within, abs=1e-14)
    assert res.sd_within == pytest.approx(math.sqrt(4 / 2), abs=1e-14)


# Bland & Altman (1995, BMJ 310: 446), table 1: intramural pH and PaCO2 of 8 subjects
# (the rmcorr package's data set bland1995).
BLAND_1995 = {
    1: ([6.68, 6.53, 6.43, 6.33], [3.97, 4.12, 4.09, 3.97]),
    2: ([6.85, 7.06, 7.13, 7.17], [5.27, 5.37, 5.41, 5.44]),
    3: (
        [7.40, 7.42, 7.41, 7.37, 7.34, 7.35, 7.28, 7.30, 7.34],
        [5.67, 3.64, 4.32, 4.73, 4.96, 5.04, 5.22, 4.82, 5.07],
    ),
    4: ([7.36, 7.33, 7.29, 7.30, 7.35], [5.67, 5.10, 5.53, 4.75, 5.51]),
    5: (
        [7.35, 7.30, 7.30, 7.37, 7.27, 7.28, 7.32, 7.32],
        [4.28, 4.44, 4.32, 3.23, 4.46, 4.72, 4.75, 4.99],
    ),
    6: ([7.38, 7.30, 7.29, 7.33, 7.31, 7.33], [4.78, 4.73, 5.12, 4.93, 5.03, 4.93]),
    7: ([6.86, 6.94, 6.92], [6.85, 6.44, 6.52]),
    8: (
        [7.19, 7.29, 7.21, 7.25, 7.20, 7.19, 6.77, 6.82],
        [5.28, 4.56, 4.34, 4.32, 4.41, 3.69, 6.09, 5.58],
    ),
}


def test_repeated_measures_correlation_reproduces_bland_altman_1995():
    """rmcorr(Subject, PaCO2, pH, bland1995): r = -0.5067697, df = 38, p = 0.0008471081,
    95% CI -0.7067146 to -0.2318631 (rmcorr package README; Bakdash & Marusich 2017)."""
    data = pd.DataFrame(
        [
            {"Subject": s, "pH": ph, "PaCO2": co2}
            for s, (phs, co2s) in BLAND_1995.items()
            for ph, co2 in zip(phs, co2s, strict=True)
        ]
    )
    assert len(data) == 47
    res = repeated_measures_correlation(data, "PaCO2", "pH", "Subject")
    assert res.r == pytest.approx(-0.5067697, abs=5e-8)
    assert res.df == 38 and res.n == 47 and res.n_patients == 8
    assert res.p == pytest.approx(0.0008471081, rel=1e-6)
    assert res.ci == pytest.approx((-0.7067146, -0.2318631), abs=5e-8)
    assert res.label.startswith("within subjects")


def test_rater_agreement_is_the_composition_of_the_three_functions():
    data = _hand_sessions()
    res = rater_agreement(data)
    a, b = "alliance_client", "alliance_therapist"
    assert res.between == between_subject_correlation(data, a, b)
    assert res.within == repeated_measures_correlation(data, a, b)
    limits = bland_altman_repeated(data, a, b)
    assert res.limits == limits
    assert (res.sd_difference, res.loa_low, res.loa_high) == (
        limits.sd_total,
        limits.loa_low,
        limits.loa_high,
    )
    frame = res.difference_frame()
    assert frame.loc[0, "sd_within"] == limits.sd_within
    assert frame.loc[0, "loa_high_ci_high"] == limits.loa_high_ci[1]


# ---------------------------------------------------------------------------
# The demo study against its known truth
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo():
    result = run_cleaning(DEMO_DIR / "sessions.csv", DEMO_DIR / "study.yml")
    truth = json.loads((DEMO_DIR / "truth.json").read_text(encoding="utf-8"))
    return result, truth


def test_demo_patient_level_r_matches_truth(demo):
    result, truth = demo
    res = patient_level_alliance_outcome(result.patients)
    # truth["sample"] is the same r computed by the simulator on the same 332 patients
    # (>= 3 sessions) from the complete data, before item and questionnaire missingness
    # were imposed.  Patient sampling error therefore does not enter the comparison
    # (that would be SE ~ (1 - r^2)/sqrt(n) ~ 0.049); only the missing values do
    # (about 5% of items, prorated, and 3% of questionnaires, which change a few
    # patient means and last scores).  Tolerance 0.03, about 0.6 sampling SEs: wide
    # enough for that perturbation, narrow enough to catch a wrong column, sign or filter.
    assert abs(res.n - 332) <= 5
    assert res.r == pytest.approx(truth["sample"]["alliance_outcome_r_patient"], abs=0.03)
    assert res.ci[0] < truth["sample"]["alliance_outcome_r_patient"] < res.ci[1]
    # Against the population value the sampling error does enter: within 3 Fisher SEs.
    z_gap = math.atanh(res.r) - math.atanh(truth["population"]["alliance_outcome_r_patient"])
    assert abs(z_gap) < 3.0 / math.sqrt(res.n - 3)
    table = benchmark_table(res.r, res.n, res.ci)
    assert table.iloc[-1]["r"] == pytest.approx(res.r)


def test_demo_rater_agreement_matches_truth(demo):
    result, truth = demo
    res = rater_agreement(result.sessions)
    # truth: Pearson r over all treatment-session rows before missingness; the pooled r
    # here uses the complete rows after missingness (same tolerance argument as above).
    assert res.r_pooled == pytest.approx(truth["sample"]["client_therapist_alliance_r"], abs=0.03)
    assert res.between.r > 0 and res.within.r > 0
    assert res.n_obs + res.n_rows_incomplete == len(result.sessions)
