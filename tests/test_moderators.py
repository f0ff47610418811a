"""Tests of helpers.moderators.

Expected values come from hand calculation (the small frames and the linear
combinations below), from an independent dense computation of the GLS
covariance (X' V^-1 X)^-1 built from the estimated variance components, from
refitting the same model with another reference level (which must give the
same slope and standard error as a simple slope), and from the known slopes of
simulated data.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from helpers.effects import fit_quietly
from helpers.moderators import (
    add_rater_features,
    early_late_alliance,
    fixed_effects_covariance,
    interaction_terms,
    linear_combination,
    readable_term,
    simple_slopes,
    wald_test,
)

NAN = float("nan")
Z975 = 1.959963984540054


# ---------------------------------------------------------------------------
# add_rater_features
# ---------------------------------------------------------------------------
def test_rater_features_by_hand():
    # patient a: client 40, 44, _, 48 at sessions 1, 2, 3, 5 (session 4 absent)
    #   mean (40 + 44 + 48) / 3 = 44; within -4, 0, NaN, 4; lag: NaN, -4, 0, NaN (s4 absent)
    # patient b: client 50, 52 at sessions 1, 2: mean 51; within -1, 1; lag NaN, -1
    # grand mean of patient means (44 + 51) / 2 = 47.5 -> between_c -3.5 and 3.5
    # therapist ratings: a 30, 30, 36, 36 -> mean 33; within -3, -3, 3, 3;
    #   lag NaN, -3, -3, NaN; b 40, _ -> mean 40, within 0, NaN; lag NaN, 0
    #   grand mean (33 + 40) / 2 = 36.5 -> between_c -3.5, 3.5
    sessions = pd.DataFrame(
        {
            "patient_id": ["a", "a", "a", "a", "b", "b"],
            "session": [1, 2, 3, 5, 1, 2],
            "alliance_client": [40.0, 44.0, NAN, 48.0, 50.0, 52.0],
            "alliance_therapist": [30.0, 30.0, 36.0, 36.0, 40.0, NAN],
        },
        index=[10, 11, 12, 13, 20, 21],
    )
    out = add_rater_features(sessions)
    assert list(out.index) == list(sessions.index)
    expected = {
        "alliance_client_between": [44, 44, 44, 44, 51, 51],
        "alliance_client_within": [-4, 0, NAN, 4, -1, 1],
        "alliance_client_within_lag": [NAN, -4, 0, NAN, NAN, -1],
        "alliance_client_between_c": [-3.5, -3.5, -3.5, -3.5, 3.5, 3.5],
        "alliance_therapist_between": [33, 33, 33, 33, 40, 40],
        "alliance_therapist_within": [-3, -3, 3, 3, 0, NAN],
        "alliance_therapist_within_lag": [NAN, -3, -3, NAN, NAN, 0],
        "alliance_therapist_between_c": [-3.5, -3.5, -3.5, -3.5, 3.5, 3.5],
    }
    for column, values in expected.items():
        np.testing.assert_allclose(out[column].to_numpy(dtype=float), values, err_msg=column)
    assert not any(c.endswith("_within") for c in sessions.columns)  # input untouched


def test_rater_features_are_independent_of_row_order():
    rng = np.random.default_rng(1)
    sessions = pd.DataFrame(
        {
            "patient_id": np.repeat(["a", "b", "c"], 4),
            "session": np.tile([1, 2, 3, 4], 3),
            "alliance_client": rng.normal(45, 5, 12).round(),
            "alliance_therapist": rng.normal(40, 5, 12).round(),
        }
    )
    straight = add_rater_features(sessions)
    shuffled = add_rater_features(sessions.sample(frac=1.0, random_state=2)).loc[sessions.index]
    pd.testing.assert_frame_equal(straight, shuffled)


def test_rater_features_refuse_bad_input():
    sessions = pd.DataFrame({"patient_id": ["a"], "session": [1], "alliance_client": [40.0]})
    with pytest.raises(ValueError, match=r"no column\(s\) \['alliance_therapist'\]"):
        add_rater_features(sessions)
    with pytest.raises(ValueError, match="already has the column"):
        add_rater_features(add_rater_features(sessions, ["alliance_client"]), ["alliance_client"])
    with pytest.raises(ValueError, match="at least one rating column"):
        add_rater_features(sessions, [])
    text = sessions.assign(alliance_client=["high"])
    with pytest.raises(ValueError, match="not numbers"):
        add_rater_features(text, ["alliance_client"])


# ---------------------------------------------------------------------------
# fixed_effects_covariance: against a dense GLS computation
# ---------------------------------------------------------------------------
def _nested_data(seed=5):
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(8):
        u_t = rng.normal(0, 1.0)
        for p in range(4):
            u_p = rng.normal(0, 1.5)
            for s in range(5):
                x = rng.normal()
                y = 2.0 + 0.5 * x - 0.2 * s + u_t + u_p + rng.normal(0, 1.0)
                rows.append((f"T{t}", f"T{t}P{p}", s, x, y))
    return pd.DataFrame(rows, columns=["therapist_id", "patient_id", "s", "x", "y"])


def _dense_covariance(data, fixed_columns, variances):
    """(X' V^-1 X)^-1 with V = sum_g var_g Z_g Z_g' + var_e I (random intercepts)."""
    n = len(data)
    x = np.column_stack([np.ones(n)] + [data[c].to_numpy(float) for c in fixed_columns])
    v = variances["Residual"] * np.eye(n)
    for group, var in variances.items():
        if group == "Residual":
            continue
        codes = pd.factorize(data[group])[0]
        z = (codes[:, None] == np.arange(codes.max() + 1)[None, :]).astype(float)
        v += var * z @ z.T
    return np.linalg.inv(x.T @ np.linalg.solve(v, x))


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x + s + (1 | therapist_id)",
        "y ~ x + s + (1 | therapist_id) + (1 | patient_id)",
    ],
)
def test_covariance_matches_a_dense_gls_computation(formula):
    data = _nested_data()
    fit = fit_quietly(data, formula)
    variances = dict(zip(fit.varcomp.group, fit.varcomp.variance_or_cov, strict=True))
    expected = _dense_covariance(data, ["x", "s"], variances)
    got = fixed_effects_covariance(fit)
    assert list(got.index) == list(got.columns) == ["Intercept", "x", "s"]
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-6)
    # symmetric, and its diagonal gives the reported standard errors
    np.testing.assert_allclose(got.to_numpy(), got.to_numpy().T)
    np.testing.assert_allclose(np.sqrt(np.diag(got)), fit.fixed.se, rtol=1e-8)


def test_covariance_refuses_other_objects():
    with pytest.raises(TypeError, match="MixedResult"):
        fixed_effects_covariance(object())


# ---------------------------------------------------------------------------
# linear_combination and wald_test: hand calculations with a given covariance
# ---------------------------------------------------------------------------
class _Stub:
    """Only what the combination functions read: a 'fixed' table of estimates."""

    def __init__(self, estimates):
        self.fixed = pd.DataFrame({"estimate": estimates})


@pytest.fixture
def stub():
    result = _Stub(pd.Series({"Intercept": 10.0, "a": -0.2, "b": 0.05}))
    cov = pd.DataFrame(
        [[1.0, 0.0, 0.0], [0.0, 0.01, -0.002], [0.0, -0.002, 0.004]],
        index=["Intercept", "a", "b"],
        columns=["Intercept", "a", "b"],
    )
    return result, cov


def test_linear_combination_by_hand(stub):
    result, cov = stub
    # a + b = -0.15; Var = 0.01 + 0.004 + 2(-0.002) = 0.010 -> SE 0.1; z = -1.5
    row = linear_combination(result, {"a": 1, "b": 1}, covariance=cov)
    assert row.estimate == pytest.approx(-0.15)
    assert row.se == pytest.approx(0.1)
    assert row.z == pytest.approx(-1.5)
    assert row.p == pytest.approx(0.133614, abs=1e-6)  # 2 * (1 - Phi(1.5))
    assert row.ci_low == pytest.approx(-0.15 - Z975 * 0.1)
    assert row.ci_high == pytest.approx(-0.15 + Z975 * 0.1)
    # a - b = -0.25; Var = 0.01 + 0.004 + 0.004 = 0.018
    diff = linear_combination(result, {"a": 1, "b": -1}, covariance=cov)
    assert diff.estimate == pytest.approx(-0.25)
    assert diff.se == pytest.approx(math.sqrt(0.018))
    # a 90% interval: z = 1.644854
    narrow = linear_combination(result, {"a": 2}, covariance=cov, level=0.90)
    assert narrow.estimate == pytest.approx(-0.4)
    assert narrow.ci_high == pytest.approx(-0.4 + 1.644854 * 0.2, abs=1e-6)


def test_linear_combination_refuses_unknown_terms(stub):
    result, cov = stub
    with pytest.raises(ValueError, match=r"\['c'\] are not fixed effects"):
        linear_combination(result, {"a": 1, "c": 1}, covariance=cov)
    with pytest.raises(ValueError, match="at least one term"):
        linear_combination(result, {}, covariance=cov)
    with pytest.raises(ValueError, match="confidence level"):
        linear_combination(result, {"a": 1}, covariance=cov, level=95)


def test_wald_test_by_hand(stub):
    result, cov = stub
    # one term: W = 0.2^2 / 0.01 = 4 = z^2; p = P(chi2_1 > 4) = 0.0455003
    one = wald_test(result, ["a"], covariance=cov)
    assert one.statistic == pytest.approx(4.0)
    assert one.df == 1
    assert one.p == pytest.approx(0.0455003, abs=1e-7)
    # two terms: Sigma = [[.01, -.002], [-.002, .004]], det = 4e-5 - 4e-6 = 3.6e-5
    # Sigma^-1 = [[.004, .002], [.002, .01]] / 3.6e-5; b = (-0.2, 0.05)
    # b' Sigma^-1 b = (.004*.04 + 2*.002*(-.01) + .01*.0025) / 3.6e-5
    #               = (1.6e-4 - 4e-5 + 2.5e-5) / 3.6e-5 = 1.45e-4 / 3.6e-5 = 4.027778
    two = wald_test(result, ["a", "b"], covariance=cov)
    assert two.statistic == pytest.approx(1.45e-4 / 3.6e-5)
    assert two.df == 2
    assert two.p == pytest.approx(math.exp(-two.statistic / 2))  # chi2_2 survival
    with pytest.raises(ValueError, match="repeated"):
        wald_test(result, ["a", "a"], covariance=cov)


# ---------------------------------------------------------------------------
# simple_slopes: refits with another reference level and simulated truth
# ---------------------------------------------------------------------------
TRUE_SLOPES = {"A": -0.5, "B": -0.2, "C": 0.1}


@pytest.fixture(scope="module")
def moderated_data():
    rng = np.random.default_rng(11)
    rows = []
    for g in range(30):
        arm = "ABC"[g % 3]
        u = rng.normal(0, 1.0)
        for _ in range(15):
            x = rng.normal(0, 2.0)
            y = 1.0 + {"A": 0.0, "B": 0.5, "C": -0.5}[arm] + TRUE_SLOPES[arm] * x + u
            rows.append((f"g{g:02d}", arm, x, y + rng.normal(0, 1.0)))
    return pd.DataFrame(rows, columns=["g", "arm", "x", "y"])


def _fit(data, reference):
    return fit_quietly(data, f'y ~ x * C(arm, Treatment("{reference}")) + (1 | g)')


@pytest.fixture(scope="module")
def fits_by_reference(moderated_data):
    return {ref: _fit(moderated_data, ref) for ref in "ABC"}


def test_simple_slopes_equal_the_main_effect_of_refits(fits_by_reference):
    slopes = simple_slopes(fits_by_reference["A"], "x")
    assert slopes.level.tolist() == ["A", "B", "C"]
    assert slopes.reference.tolist() == [True, False, False]
    assert slopes.terms[1] == 'x + x:C(arm, Treatment("A"))[T.B]'
    for _, row in slopes.iterrows():
        refit = fits_by_reference[row.level].fixed.loc["x"]
        assert row.estimate == pytest.approx(refit.estimate, rel=1e-4)
        assert row.se == pytest.approx(refit.se, rel=1e-4)
        assert row.ci_low == pytest.approx(refit.ci_low, rel=1e-4, abs=1e-6)
        assert row.p == pytest.approx(refit.p, rel=1e-3, abs=1e-12)


def test_simple_slopes_recover_the_simulated_slopes(fits_by_reference):
    slopes = simple_slopes(fits_by_reference["B"], "x").set_index("level")
    for level, truth in TRUE_SLOPES.items():
        assert slopes.loc[level, "ci_low"] <= truth <= slopes.loc[level, "ci_high"], level


def test_simple_slopes_with_a_string_column_and_chosen_levels(moderated_data, fits_by_reference):
    fit = fit_quietly(moderated_data, "y ~ x * arm + (1 | g)")  # reference A (first level)
    slopes = simple_slopes(fit, "x", ["C", "A"])
    assert slopes.level.tolist() == ["C", "A"]
    expected = simple_slopes(fits_by_reference["A"], "x").set_index("level")
    assert slopes.estimate.tolist() == pytest.approx(expected.loc[["C", "A"], "estimate"].tolist())
    # the explicit mapping form gives the same numbers
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # level B is 0 at both levels reported: no caveat
        mapping = simple_slopes(fit, "x", {"C": ["x:arm[T.C]"], "A": []})
    assert mapping.estimate.tolist() == pytest.approx(slopes.estimate.tolist())
    assert mapping.se.tolist() == pytest.approx(slopes.se.tolist())


def test_simple_slopes_refuse_what_they_cannot_compute(moderated_data, fits_by_reference):
    fit = fits_by_reference["A"]
    with pytest.raises(ValueError, match="'D' is not a level of"):
        simple_slopes(fit, "x", ["A", "D"])
    with pytest.raises(ValueError, match=r"\['z'\] are not fixed effects"):
        simple_slopes(fit, "z")
    main_only = fit_quietly(moderated_data, "y ~ x + arm + (1 | g)")
    with pytest.raises(ValueError, match="no interaction of 'x' with a treatment-coded factor"):
        simple_slopes(main_only, "x")
    data = moderated_data.assign(half=np.where(moderated_data.g < "g15", "early", "late"))
    two = fit_quietly(data, "y ~ x * arm + x * half + (1 | g)")
    with pytest.raises(ValueError, match="several factors"):
        simple_slopes(two, "x")
    with pytest.warns(UserWarning, match=r"also appears in \['x:half\[T.late\]'\]"):
        slopes = simple_slopes(two, "x", moderator="arm")
    assert slopes.level.tolist() == ["A", "B", "C"]


def test_simple_slopes_warn_about_other_interactions(moderated_data):
    data = moderated_data.assign(w=np.linspace(-1, 1, len(moderated_data)))
    fit = fit_quietly(data, "y ~ x * arm + x:w + w + (1 | g)")
    with pytest.warns(UserWarning, match=r"also appears in \['x:w'\]"):
        simple_slopes(fit, "x")


def test_wald_test_of_one_term_is_the_squared_z(fits_by_reference):
    fit = fits_by_reference["A"]
    term = 'x:C(arm, Treatment("A"))[T.C]'
    got = wald_test(fit, [term])
    assert got.statistic == pytest.approx(fit.fixed.loc[term, "z"] ** 2, rel=1e-8)
    # the interaction terms jointly: the slopes differ (true slopes -0.5, -0.2, 0.1)
    terms = interaction_terms(fit, "x")
    assert terms == ['x:C(arm, Treatment("A"))[T.B]', 'x:C(arm, Treatment("A"))[T.C]']
    joint = wald_test(fit, terms)
    assert joint.df == 2 and joint.p < 1e-6
    assert joint.p == pytest.approx(stats.chi2.sf(joint.statistic, 2))


def test_combinations_of_a_least_squares_fit_match_statsmodels_ols(moderated_data):
    """A patient-level model of a two-level study has no random terms: fit_mixed fits it by
    least squares, and its REML covariance is OLS's, so contrasts match statsmodels."""
    formula = "y ~ x * arm"
    fit = fit_quietly(moderated_data, formula)
    ols = smf.ols(formula, moderated_data).fit()
    assert fit.engine == "ols"
    np.testing.assert_allclose(fixed_effects_covariance(fit), ols.cov_params(), rtol=1e-10)
    slopes = simple_slopes(fit, "x").set_index("level")
    for level, row in (("B", [0, 0, 0, 1, 1, 0]), ("C", [0, 0, 0, 1, 0, 1])):
        contrast = ols.t_test(np.array([row], dtype=float))
        assert slopes.loc[level, "estimate"] == pytest.approx(contrast.effect.item(), rel=1e-10)
        assert slopes.loc[level, "se"] == pytest.approx(contrast.sd.item(), rel=1e-10)
    combined = linear_combination(fit, {"x": 1, "x:arm[T.B]": 1})
    assert combined["se"] == pytest.approx(slopes.loc["B", "se"], rel=1e-12)
    terms = ["x:arm[T.B]", "x:arm[T.C]"]
    joint = wald_test(fit, terms)
    restrictions = np.array([[0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]], dtype=float)
    reference = ols.wald_test(restrictions, use_f=False, scalar=True)
    assert joint.statistic == pytest.approx(float(reference.statistic), rel=1e-10)
    assert joint.p == pytest.approx(float(reference.pvalue), rel=1e-8)


# ---------------------------------------------------------------------------
# early_late_alliance
# ---------------------------------------------------------------------------
def test_early_and_late_means_by_hand():
    # a: sessions 1-5 = 40, 42, NaN, 50, 52 -> early (1-3) mean 41 (2 ratings), late 51 (2)
    # b: sessions 1-2 = 30, 34 -> early 32 (2), no late session -> NaN (0 ratings)
    # c: sessions 4, 6 = 45, 47 (no early session) -> early NaN (0), late 46 (2)
    sessions = pd.DataFrame(
        {
            "patient_id": ["a"] * 5 + ["b"] * 2 + ["c"] * 2,
            "session": [1, 2, 3, 4, 5, 1, 2, 4, 6],
            "alliance": [40, 42, NAN, 50, 52, 30, 34, 45, 47],
        }
    )
    patients = pd.DataFrame({"patient_id": ["c", "b", "a"], "outcome_last": [1.0, 2.0, 3.0]})
    out = early_late_alliance(sessions, patients)
    assert out.patient_id.tolist() == ["c", "b", "a"]
    np.testing.assert_allclose(out.alliance_early_mean, [NAN, 32, 41])
    np.testing.assert_allclose(out.alliance_late_mean, [46, NAN, 51])
    assert out.n_early_ratings.tolist() == [0, 2, 2]
    assert out.n_late_ratings.tolist() == [2, 0, 2]
    # centred on the patients with a value: early mean (32 + 41) / 2 = 36.5, late 48.5
    np.testing.assert_allclose(out.alliance_early_mean_c, [NAN, -4.5, 4.5])
    np.testing.assert_allclose(out.alliance_late_mean_c, [-2.5, NAN, 2.5])
    # early_until = 1: a early 40 (1 rating), late (42 + 50 + 52) / 3 = 48
    one = early_late_alliance(sessions, patients, early_until=1).set_index("patient_id")
    assert one.loc["a", "alliance_early_mean"] == 40
    assert one.loc["a", "alliance_late_mean"] == 48
    assert one.loc["a", "n_late_ratings"] == 3


def test_early_late_refuses_bad_input():
    sessions = pd.DataFrame({"patient_id": ["a"], "session": [1], "alliance": [40.0]})
    with pytest.raises(ValueError, match="more than one row for patients 'a'"):
        early_late_alliance(sessions, pd.DataFrame({"patient_id": ["a", "a"]}))
    with pytest.raises(ValueError, match="early_until must be"):
        early_late_alliance(sessions, pd.DataFrame({"patient_id": ["a"]}), early_until=0)
    with pytest.raises(ValueError, match="early_until must be"):
        early_late_alliance(sessions, pd.DataFrame({"patient_id": ["a"]}), early_until=2.5)
    with pytest.raises(ValueError, match=r"no column\(s\) \['alliance'\]"):
        early_late_alliance(sessions.drop(columns="alliance"), pd.DataFrame({"patient_id": ["a"]}))
    with pytest.raises(ValueError, match="already has the column"):
        early_late_alliance(
            sessions, pd.DataFrame({"patient_id": ["a"], "alliance_early_mean": [1.0]})
        )


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ('C(modality, Treatment("CBT"))[T.humanistic]', "modality[humanistic]"),
        ("C(modality, Treatment(reference='CBT'))[T.psycho dynamic]", "modality[psycho dynamic]"),
        ("C(arm)[T.B]", "arm[B]"),
        ("arm[T.B]", "arm[B]"),
        ('x:C(arm, Treatment("A"))[T.C]', "x × arm[C]"),
        ("C(g)[T.a:b]", "g[a:b]"),
        ("alliance_within_lag", "alliance_within_lag"),
        ("Intercept", "Intercept"),
    ],
)
def test_readable_term(term, expected):
    assert readable_term(term) == expected


def test_interaction_terms_refuse_a_model_without_them(moderated_data):
    fit = fit_quietly(moderated_data, "y ~ x + arm + (1 | g)")
    with pytest.raises(ValueError, match="no interaction of 'x'"):
        interaction_terms(fit, "x")
