"""Small-sample df of fixed effects (helpers.ddf) against lmerTest and pbkrtest.

Expected values come from R (``tests/reference/ddf/ddf_reference.R``: lmerTest 3.1-3
``summary(fit, ddf=...)`` and ``contestMD``, pbkrtest 0.5.2 ``vcovAdj`` and ``KRmodcomp``)
on the committed data; R is not needed to run these tests.  Two comparisons are made:

* **end to end**: ``fit_mixed`` (our optimum) then Satterthwaite / Kenward-Roger, which
  also carries the tiny differences between our optimum and lme4's;
* **at lme4's optimum**: the same algorithm evaluated at lme4's variance components (read
  from the reference), which isolates the algorithm.  Our Hessian and Jacobian are
  analytic, lmerTest's are numDeriv's (Richardson extrapolation), so exact agreement is
  not possible; pbkrtest's KR is analytic, as ours.

Agreement measured (largest relative difference over the 14 fits: sleepstudy, its
unbalanced subset, three_level.csv with two nested factors (``||`` and correlated, outer and
inner), the demo study's main model, the balanced and singular one-way layouts; REML and
ML):

=====================================  ===========  ===============  =====================
quantity                               end to end   at lme4 optimum  asserted (e2e / opt.)
=====================================  ===========  ===============  =====================
Satterthwaite df (coefficients)        3.1e-6       5.1e-7           2e-5 / 2e-6
Satterthwaite ddf (contrasts)          1.1e-6       4.5e-7           2e-5 / 2e-6
Kenward-Roger df (coefficients)        3.6e-7       5.2e-12          2e-5 / 1e-9
Kenward-Roger SE (``vcovAdj``)         1.4e-6       1.3e-12          2e-5 / 1e-10
Kenward-Roger ddf (contrasts)          3.2e-7       4.0e-12          2e-5 / 1e-9
F statistics (both methods)            2.1e-7       5.0e-12          2e-5 / 1e-10
=====================================  ===========  ===============  =====================

At lme4's optimum Kenward-Roger agrees to rounding (both analytic); the remaining
Satterthwaite difference is the error of numDeriv's Hessian in lmerTest.  End to end, the
differences are those of the optimum (variance components ~1e-6 relative, see
``test_models_demo.py``); in absolute terms at most 7.5e-4 df on ~400 df.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers.models import contrast_test, fit_mixed, with_ddf
from helpers.moderators import wald_test
from helpers.paths import PROJECT_ROOT

REFERENCE = PROJECT_ROOT / "tests" / "reference"
DDF_DIR = REFERENCE / "ddf"
META = json.loads((DDF_DIR / "ddf_fits.json").read_text())
FITS = META["fits"]
COEF = pd.read_csv(DDF_DIR / "ddf_coef.csv")
CONTRASTS = pd.read_csv(DDF_DIR / "ddf_contrasts.csv")
VCOV_KR = pd.read_csv(DDF_DIR / "ddf_vcov_kr.csv")
DATA_FILES = {
    "sleepstudy": REFERENCE / "sleepstudy.csv",
    "three_level": REFERENCE / "three_level.csv",
    "demo": REFERENCE / "demo_model_data.csv",
    "sleep_unbalanced": DDF_DIR / "sleep_unbalanced.csv",
    "oneway_balanced": DDF_DIR / "oneway_balanced.csv",
    "oneway_singular": DDF_DIR / "oneway_singular.csv",
}
IDS = [f"{f['model_id']}-{'REML' if f['reml'] else 'ML'}" for f in FITS]
#: Fits also checked on the statsmodels path (it cannot fit tl_inner_corr).
STATSMODELS_IDS = ["sleep_corr-REML", "tl_nested_patient_slope-REML", "demo_main-REML"]

#: End to end: our optimum differs from lme4's by ~1e-6 relative in the variances.
E2E_RTOL = 2e-5
#: At lme4's optimum: limited by numDeriv (Satterthwaite) or rounding (Kenward-Roger).
SATT_RTOL = 2e-6
KR_DF_RTOL = 1e-9
KR_SE_RTOL = 1e-10


def _read(name: str) -> pd.DataFrame:
    """A data file read the way R reads it (ids as strings, "NA" the only missing code)."""
    ids = {"therapist_id": "str", "patient_id": "str", "Subject": "str", "group": "str"}
    return pd.read_csv(DATA_FILES[name], keep_default_na=False, na_values=["NA"], dtype=ids)


@pytest.fixture(scope="module")
def fitted() -> dict[str, object]:
    """Our REML/ML fit of every reference model (default engine), by reference id."""
    out = {}
    for ref, rid in zip(FITS, IDS, strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[rid] = fit_mixed(_read(ref["data"]), ref["formula"], reml=ref["reml"])
    return out


def _coef(ref: dict) -> pd.DataFrame:
    rows = COEF[(COEF.model_id == ref["model_id"]) & (COEF.reml == ref["reml"])]
    return rows.set_index(rows.term.str.replace("(Intercept)", "Intercept", regex=False))


def _lme4_varcomp(ref: dict) -> pd.DataFrame:
    """lme4's variance components in MixedResult.varcomp's layout."""
    vc = ref["varcomp"]
    rows = []
    for grp, var1, var2, value in zip(vc["grp"], vc["var1"], vc["var2"], vc["vcov"], strict=True):
        group = grp if grp == "Residual" else grp.rsplit(".", 1)[0] if "." in grp else grp
        rows.append(
            {
                "group": group,
                "term": var1.replace("(Intercept)", "Intercept"),
                "term2": var2.replace("(Intercept)", "Intercept"),
                "variance_or_cov": value,
                "sd_or_corr": math.nan,
            }
        )
    return pd.DataFrame(rows)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a / b - 1)))


# --------------------------------------------------------------------------------------
# Reference guards
# --------------------------------------------------------------------------------------


def test_references_read_the_committed_data():
    """R read exactly the committed files (MD5), which the generator reproduces."""
    for ref in FITS:
        digest = hashlib.md5(DATA_FILES[ref["data"]].read_bytes()).hexdigest()
        assert digest == ref["data_md5"], f"{ref['data_file']} changed: rerun ddf_reference.R"


def test_generated_data_are_reproducible(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_ddf", DDF_DIR / "make_ddf_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.oneway(False).to_csv(index=False) == (DDF_DIR / "oneway_balanced.csv").read_text()
    assert module.oneway(True).to_csv(index=False) == (DDF_DIR / "oneway_singular.csv").read_text()
    assert (
        module.sleep_unbalanced().to_csv(index=False)
        == (DDF_DIR / "sleep_unbalanced.csv").read_text()
    )


# --------------------------------------------------------------------------------------
# Per-coefficient df, t, p and KR standard errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", FITS, ids=IDS)
def test_satterthwaite_coefficients_end_to_end(ref, fitted):
    fit = fitted[IDS[FITS.index(ref)]]
    got = with_ddf(fit, "satterthwaite").fixed
    want = _coef(ref).loc[got.index]
    assert list(got.columns) == ["estimate", "se", "ci_low", "ci_high", "df", "t", "p"]
    np.testing.assert_allclose(got["df"], want["df_satt"], rtol=E2E_RTOL)
    np.testing.assert_allclose(got["t"], want["t_satt"], rtol=E2E_RTOL)
    np.testing.assert_allclose(got["p"], want["p_satt"], rtol=1e-3)  # tiny p-values
    np.testing.assert_allclose(got["se"], want["se"], rtol=E2E_RTOL)


@pytest.mark.parametrize("ref", [f for f in FITS if f["reml"]], ids=[i for i in IDS if "REML" in i])
def test_kenward_roger_coefficients_end_to_end(ref, fitted):
    fit = fitted[IDS[FITS.index(ref)]]
    kr = with_ddf(fit, "kenward-roger")
    want = _coef(ref).loc[kr.fixed.index]
    np.testing.assert_allclose(kr.fixed["se"], want["se_kr"], rtol=E2E_RTOL)
    np.testing.assert_allclose(kr.fixed["df"], want["df_kr"], rtol=E2E_RTOL)
    np.testing.assert_allclose(kr.fixed["t"], want["t_kr"], rtol=E2E_RTOL)
    np.testing.assert_allclose(kr.fixed["p"], want["p_kr"], rtol=1e-3)
    # cov_fixed is the adjusted matrix, the full pbkrtest vcovAdj.
    rows = VCOV_KR[VCOV_KR.model_id == ref["model_id"]]
    names = {t: t.replace("(Intercept)", "Intercept") for t in rows.term.unique()}
    for term, term2, value in rows[["term", "term2", "vcov_kr"]].itertuples(index=False):
        got = kr.cov_fixed.loc[names[term], names[term2]]
        assert got == pytest.approx(value, rel=E2E_RTOL, abs=1e-12 * abs(value) + 1e-14)
    assert "Kenward-Roger" in kr.se_convention


@pytest.mark.parametrize("ref", FITS, ids=IDS)
def test_at_lme4_optimum(ref, fitted):
    """The algorithm alone: evaluated at lme4's variance components."""
    fit = fitted[IDS[FITS.index(ref)]]
    at_lme4 = replace(fit, varcomp=_lme4_varcomp(ref), small_sample=None)
    want = _coef(ref)
    satt = with_ddf(at_lme4, "satterthwaite").fixed
    np.testing.assert_allclose(satt["df"], want.loc[satt.index, "df_satt"], rtol=SATT_RTOL)
    if ref["reml"]:
        kr = with_ddf(at_lme4, "kenward-roger").fixed
        np.testing.assert_allclose(kr["df"], want.loc[kr.index, "df_kr"], rtol=KR_DF_RTOL)
        np.testing.assert_allclose(kr["se"], want.loc[kr.index, "se_kr"], rtol=KR_SE_RTOL)
    for cid, rows in ref["contrasts"].items():
        for method in ["Satterthwaite", "Kenward-Roger"] if ref["reml"] else ["Satterthwaite"]:
            r = _reference_contrast(ref, cid, method)
            got = contrast_test(at_lme4, np.array(rows), ddf=method.lower())
            rtol = SATT_RTOL if method == "Satterthwaite" else KR_DF_RTOL
            assert got["ddf"] == pytest.approx(r.ddf, rel=rtol)
            assert got["F"] == pytest.approx(r.F, rel=1e-10)


def _reference_contrast(ref: dict, cid: str, method: str) -> pd.Series:
    """R's row for contrast ``cid`` of fit ``ref`` by ``method`` (ddf_contrasts.csv)."""
    return CONTRASTS[
        (CONTRASTS.model_id == ref["model_id"])
        & (CONTRASTS.reml == ref["reml"])
        & (CONTRASTS.contrast_id == cid)
        & (CONTRASTS.method == method)
    ].iloc[0]


# --------------------------------------------------------------------------------------
# Multi-df contrasts
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", FITS, ids=IDS)
def test_contrasts_end_to_end(ref, fitted):
    fit = fitted[IDS[FITS.index(ref)]]
    for cid, rows in ref["contrasts"].items():
        for method in ["Satterthwaite", "Kenward-Roger"] if ref["reml"] else ["Satterthwaite"]:
            r = _reference_contrast(ref, cid, method)
            got = contrast_test(fit, np.array(rows), ddf=method.lower())
            assert got["ndf"] == r.ndf
            assert got["ddf"] == pytest.approx(r.ddf, rel=E2E_RTOL)
            assert got["F"] == pytest.approx(r.F, rel=E2E_RTOL)
            assert got["p"] == pytest.approx(r.p, rel=1e-3)
            if method == "Kenward-Roger":
                assert got["F_scaling"] == pytest.approx(r.F_scaling, rel=E2E_RTOL)


@pytest.mark.slow  # statsmodels-path fits
@pytest.mark.parametrize("rid", STATSMODELS_IDS)
def test_statsmodels_path_gives_the_same_df(rid, fitted):
    """One implementation for both fitters: the statsmodels fit's df match lmerTest's."""
    ref = FITS[IDS.index(rid)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = fit_mixed(_read(ref["data"]), ref["formula"], reml=True, engine="statsmodels")
    assert sm.engine == "statsmodels"
    want = _coef(ref)
    for method, col in [("satterthwaite", "df_satt"), ("kenward-roger", "df_kr")]:
        got = with_ddf(sm, method).fixed
        np.testing.assert_allclose(got["df"], want.loc[got.index, col], rtol=E2E_RTOL)


def test_contrast_forms_agree(fitted):
    fit = with_ddf(fitted["tl_nested_patient_slope-REML"], "satterthwaite")
    by_terms = contrast_test(fit, ["x_within", "x_between"])
    by_dicts = contrast_test(fit, [{"x_within": 1}, {"x_between": 1.0}])
    frame = pd.DataFrame({"x_within": [1.0, 0.0], "x_between": [0.0, 1.0]})
    by_frame = contrast_test(fit, frame)
    for other in (by_dicts, by_frame):
        assert other["F"] == pytest.approx(by_terms["F"], rel=1e-12)
        assert other["ddf"] == pytest.approx(by_terms["ddf"], rel=1e-12)
    assert by_terms["method"] == "satterthwaite"  # the fit's method by default
    # One row: F = t^2 of the coefficient table, same df.
    one = contrast_test(fit, "x_between")
    row = fit.fixed.loc["x_between"]
    assert one["F"] == pytest.approx(row["t"] ** 2, rel=1e-9)
    assert one["ddf"] == pytest.approx(row["df"], rel=1e-9)
    # A redundant row is dropped by Satterthwaite (lmerTest's rank rule) ...
    redundant = contrast_test(fit, [{"x_within": 1}, {"x_within": 2}], ddf="satterthwaite")
    assert redundant["ndf"] == 1
    # ... and refused by Kenward-Roger, which needs full row rank (pbkrtest errors).
    with pytest.raises(ValueError, match="rank"):
        contrast_test(fit, [{"x_within": 1}, {"x_within": 2}], ddf="kenward-roger")
    with pytest.raises(ValueError, match="not a fixed effect"):
        contrast_test(fit, ["nope"])


def test_asymptotic_contrast_is_the_wald_test(fitted):
    fit = fitted["demo_main-REML"]
    terms = ["alliance_within_lag", "alliance_between_c"]
    got = contrast_test(fit, terms)
    assert got["method"] == "asymptotic" and math.isinf(got["ddf"])
    default = wald_test(fit, terms)
    assert got["chi2"] == pytest.approx(default["statistic"], rel=1e-12)
    assert got["p"] == pytest.approx(default["p"], rel=1e-12)
    # wald_test(ddf=...) routes to contrast_test; the default is unchanged.
    assert list(default.index) == ["statistic", "df", "p"]
    for method in ("satterthwaite", "kenward-roger"):
        routed = wald_test(fit, terms, ddf=method)
        direct = contrast_test(fit, terms, ddf=method)
        assert routed["statistic"] == direct["F"] and routed["ddf"] == direct["ddf"]
    assert wald_test(fit, terms, ddf="asymptotic")["statistic"] == pytest.approx(
        default["statistic"], rel=1e-12
    )


# --------------------------------------------------------------------------------------
# Known truth, boundary fits, least squares, API
# --------------------------------------------------------------------------------------


def test_balanced_oneway_df_are_the_anova_df(fitted):
    """Balanced one-way layout, G = 8 groups of n = 5, REML, interior optimum.

    ``y_ij = b0 + b1 x_i + b2 w_ij + u_i + e_ij`` with ``w`` summing to zero in each group.
    The REML likelihood splits into two independent strata: the group means
    ``ybar_i = b0 + b1 x_i + u_i + ebar_i`` with variance ``tau / n`` (``tau = sigma^2 +
    n sigma_u^2``), estimated by the between mean square on ``G - 2`` df (two fixed effects
    in that stratum), and the within-group deviations with variance ``sigma^2`` on
    ``G (n - 1) - 1`` df (one fixed effect, b2).  ``Var(b0)`` and ``Var(b1)`` are
    proportional to ``tau`` alone and ``Var(b2)`` to ``sigma^2`` alone, each a scaled
    chi-square, so Satterthwaite's df are exactly ``G - 2 = 6`` and ``G (n - 1) - 1 = 31``,
    and Kenward-Roger's too (KR is exact here and its adjusted covariance is the plain one).
    The 2-df test of (b1, b2) combines nu = (6, 31) by lmerTest's rule:
    ``E = 6/4 + 31/29``, ``ddf = 2E / (E - 2) = 9.0303``.
    """
    fit = fitted["oneway_balanced-REML"]
    assert not fit.singular
    expected = pd.Series({"Intercept": 6.0, "x_between": 6.0, "x_within": 31.0})
    for method in ("satterthwaite", "kenward-roger"):
        got = with_ddf(fit, method)
        np.testing.assert_allclose(got.fixed["df"], expected[got.fixed.index], rtol=1e-6)
    kr = with_ddf(fit, "kenward-roger")
    np.testing.assert_allclose(kr.cov_fixed, fit.cov_fixed, rtol=1e-6, atol=1e-12)
    e = 6 / 4 + 31 / 29
    test = contrast_test(fit, ["x_between", "x_within"], ddf="satterthwaite")
    assert test["ddf"] == pytest.approx(2 * e / (e - 2), rel=1e-6)


def test_singular_fit_gets_the_least_squares_df(fitted):
    """At a boundary fit (group variance 0) lmerTest's df are those of lm: n - p (REML).

    With ``theta = 0`` the derivative of ``Cov(beta)`` in ``theta`` vanishes (it depends on
    ``theta^2``) and the Hessian is block-diagonal, so only ``sigma`` contributes:
    ``df = 2 V^2 / (g_sigma^2 2 / H_ss)`` with ``g_sigma = 2 V / sigma`` and ``H_ss = 4 m /
    sigma^2`` gives ``df = m``, the residual df ``m = n - p`` (REML) or ``n`` (ML).
    lmerTest gives the same (no Hessian warning: the theta curvature is positive).
    """
    for rid, m in [("oneway_singular-REML", 37.0), ("oneway_singular-ML", 40.0)]:
        fit = fitted[rid]
        assert fit.singular
        got = with_ddf(fit, "satterthwaite").fixed["df"]
        np.testing.assert_allclose(got, m, rtol=1e-8)
    ref = FITS[IDS.index("oneway_singular-REML")]
    assert ref["singular"] and not any("eigenvalue" in w for w in ref["warnings"])


def test_least_squares_fit_uses_lm_df():
    data = _read("oneway_balanced")
    fit = fit_mixed(data, "y ~ x_between + x_within", ddf="satterthwaite")
    assert fit.engine == "ols"
    n, p = len(data), 3
    np.testing.assert_allclose(fit.fixed["df"], n - p)
    import statsmodels.formula.api as smf

    ols = smf.ols("y ~ x_between + x_within", data).fit()
    np.testing.assert_allclose(fit.fixed["p"], ols.pvalues.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(fit.fixed["ci_low"], ols.conf_int()[0].to_numpy(), rtol=1e-9)
    kr = fit_mixed(data, "y ~ x_between + x_within", ddf="kenward-roger")
    np.testing.assert_allclose(kr.fixed["df"], n - p)
    test = contrast_test(fit, ["x_between", "x_within"])
    ftest = ols.f_test("x_between = 0, x_within = 0")
    assert test["F"] == pytest.approx(float(ftest.fvalue), rel=1e-9)
    assert test["p"] == pytest.approx(float(ftest.pvalue), rel=1e-9)
    assert test["ddf"] == n - p


def test_fit_mixed_ddf_argument(fitted):
    data = _read("sleepstudy")
    formula = "Reaction ~ Days + (1 + Days | Subject)"
    plain = fitted["sleep_corr-REML"]
    assert plain.ddf == "asymptotic"
    assert list(plain.fixed.columns) == ["estimate", "se", "ci_low", "ci_high", "z", "p"]
    satt = fit_mixed(data, formula, ddf="satterthwaite")
    assert satt.ddf == "satterthwaite" and satt.small_sample is not None
    pd.testing.assert_frame_equal(satt.cov_fixed, plain.cov_fixed, rtol=1e-6)
    crit = stats.t.ppf(0.975, satt.fixed["df"])
    np.testing.assert_allclose(
        satt.fixed["ci_high"], satt.fixed["estimate"] + crit * satt.fixed["se"], rtol=1e-12
    )
    back = with_ddf(with_ddf(plain, "kenward-roger"), "asymptotic")
    pd.testing.assert_frame_equal(back.fixed, plain.fixed, rtol=1e-10)
    with pytest.raises(ValueError, match="REML"):
        fit_mixed(data, formula, reml=False, ddf="kenward-roger")
    with pytest.raises(ValueError, match="ddf must be one of"):
        fit_mixed(data, formula, ddf="containment")
    with pytest.raises(ValueError, match="REML"):
        contrast_test(fitted["sleep_corr-ML"], ["Days"], ddf="kenward-roger")


def _type1_module():
    """``bench/ddf_type1.py`` (the simulation lives there once; the test runs it small)."""
    import importlib.util

    path = Path(__file__).parents[1] / "bench" / "ddf_type1.py"
    spec = importlib.util.spec_from_file_location("ddf_type1", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # hundreds of simulated fits
def test_small_sample_tests_keep_type_i_error_with_ten_therapists():
    """A null therapist-level effect with 10 therapists: the Satterthwaite and KR rejection
    counts lie in the central 99.9% of Binomial(n, .05); z rejects at least as often as t
    on every study (same estimate, t has heavier tails; KR's SE is not smaller)."""
    bench = _type1_module()
    rng = np.random.default_rng(7)
    n = 300
    rows = [bench.p_values(bench.simulate_study(rng, 10, 4, 4)) for _ in range(n)]
    table = pd.DataFrame(rows)
    low, high = stats.binom.ppf([0.0005, 0.9995], n, 0.05)
    for method in ("satterthwaite", "kenward-roger"):
        k = int((table[method] < 0.05).sum())
        assert low <= k <= high, (method, k, (low, high))
    assert (table["asymptotic"] <= table["satterthwaite"] + 1e-12).all()
    assert (table["asymptotic"] <= table["kenward-roger"] + 1e-12).all()
