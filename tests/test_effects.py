"""Effect sizes against known truth in simulated data."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers.effects import (
    bootstrap_ci,
    compare_with_truth,
    diagnostics_table,
    fit_quietly,
    fixed_table,
    parametric_bootstrap,
    r_squared,
    simulate_response,
    standardized_coefficients,
    varcomp_table,
    warnings_table,
)
from helpers.paths import DEMO_DIR
from helpers.pipeline import run_cleaning


def _simulate(n_groups=300, n_per=8, slope_sd=0.0, seed=7):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), n_per)
    x = rng.normal(0, 1, g.size)
    z = rng.normal(0, 1, g.size)
    u = rng.normal(0, 1, n_groups)[g]  # random intercept, variance 1
    b = rng.normal(0, slope_sd, n_groups)[g]  # random slope on z
    y = 2 * x + u + b * z + rng.normal(0, 1, g.size)
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": [f"G{i}" for i in g]})


def test_r_squared_recovers_known_variance_shares():
    # var(2x) = 4, var(u) = 1, var(e) = 1: R2m = 4/6, R2c = 5/6
    fit = fit_quietly(_simulate(), "y ~ x + (1 | g)")
    r2 = r_squared(fit)
    assert r2["R2_marginal"] == pytest.approx(4 / 6, abs=0.03)
    assert r2["R2_conditional"] == pytest.approx(5 / 6, abs=0.02)


def test_r_squared_counts_random_slope_variance_johnson():
    # adds a random slope on z with SD 1 and E[z^2] = 1: var_random = 1 + 1 = 2,
    # so R2m = 4/7 and R2c = 6/7 (Johnson 2014); ignoring the slope would give 5/7
    data = _simulate(slope_sd=1.0, n_groups=400)
    fit = fit_quietly(data, "y ~ x + z + (1 + z | g)")
    r2 = r_squared(fit)
    assert r2["var_random"] == pytest.approx(2.0, abs=0.3)
    assert r2["R2_conditional"] == pytest.approx(6 / 7, abs=0.03)
    assert r2["R2_marginal"] == pytest.approx(4 / 7, abs=0.04)


def test_standardized_coefficient_uses_sds_of_the_model_rows():
    data = _simulate()
    data.loc[:9, "y"] = np.nan  # dropped rows must not enter the SDs
    fit = fit_quietly(data, "y ~ x + (1 | g)")
    used = data.dropna()
    expected = fit.fixed.loc["x", "estimate"] * used["x"].std() / used["y"].std()
    assert standardized_coefficients(fit).loc["x", "beta"] == pytest.approx(expected, rel=1e-12)
    assert "Intercept" not in standardized_coefficients(fit).index


def test_fit_quietly_keeps_warnings_in_the_result_not_on_stderr():
    # on the demo study's main model statsmodels' lbfgs and bfgs runs fail with warnings
    # (the engine's fit of it raises none: the statsmodels path is forced here)
    sessions = run_cleaning(DEMO_DIR / "sessions.csv", DEMO_DIR / "study.yml").sessions
    formula = (
        "outcome ~ alliance_within_lag + alliance_between_c + session_c"
        " + (1 + session_c || patient_id) + (1 | therapist_id)"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_quietly(sessions, formula, engine="statsmodels")
    assert fit.warnings, "a boundary fit raises warnings that must be recorded"
    assert not caught, [str(w.message) for w in caught]
    table = warnings_table({"m": fit})
    assert len(table) == len(fit.warnings)
    assert diagnostics_table({"m": fit}).loc["m", "warnings"] == len(fit.warnings)
    assert fixed_table({"m": fit}).loc[1, "term"] == "alliance_within_lag"


def test_parametric_bootstrap_is_seeded_and_centred_on_the_truth():
    data = _simulate(n_groups=60, n_per=5)
    fit = fit_quietly(data, "y ~ x + (1 | g)")
    a = parametric_bootstrap(fit, 30, seed=3, progress=False)
    b = parametric_bootstrap(fit, 5, seed=3, progress=False)
    pd.testing.assert_frame_equal(a.head(5), b)  # same seed, same replicates
    # replicates are drawn around the fitted slope; their SD estimates its sampling SD
    assert a["x"].mean() == pytest.approx(fit.fixed.loc["x", "estimate"], abs=0.03)
    ci = bootstrap_ci(a, fit)
    assert ci.loc["x", "boot_se"] == pytest.approx(fit.fixed.loc["x", "se"], rel=0.35)


def test_parametric_bootstrap_routes_engine_fits_to_the_warm_started_path():
    from helpers.engine import warm_started_bootstrap

    fit = fit_quietly(_simulate(n_groups=40, n_per=5), "y ~ x + (1 | g)")
    assert fit.engine == "engine"
    reps = parametric_bootstrap(fit, 6, seed=4, progress=False)
    warm = warm_started_bootstrap(fit._engine_model, fit.engine_result, 6, seed=4)
    expected = warm.estimates[["Intercept", "x"]]
    pd.testing.assert_frame_equal(reps[["Intercept", "x"]], expected)
    assert reps["converged"].tolist() == warm.converged.tolist()
    assert list(reps.columns) == ["Intercept", "x", "converged", "warnings", "error"]
    # the refit path is still there, and gives the same columns
    refit = parametric_bootstrap(fit, 2, seed=4, progress=False, method="refit")
    assert list(refit.columns) == list(reps.columns)
    # fit_mixed arguments mean refitting from the formula
    by_formula = parametric_bootstrap(fit, 2, seed=4, progress=False, engine="auto")
    pd.testing.assert_frame_equal(by_formula, refit)


def test_parametric_bootstrap_engine_method_needs_an_engine_fit():
    ols = fit_quietly(FIVE, "y ~ x")
    with pytest.raises(ValueError, match="needs a fit of the vectorised engine"):
        parametric_bootstrap(ols, 2, seed=1, method="engine")
    with pytest.raises(ValueError, match="method must be one of"):
        parametric_bootstrap(ols, 2, seed=1, method="warm")


def test_simulate_response_has_the_fitted_variance():
    data = _simulate(n_groups=300, n_per=8)
    fit = fit_quietly(data, "y ~ x + (1 | g)")
    draws = simulate_response(fit, np.random.default_rng(0))
    # var(y*) = var(2x) + var(u) + var(e) ~ 4 + 1 + 1 (as estimated)
    assert np.var(draws) == pytest.approx(np.var(data["y"]), rel=0.1)


def test_compare_with_truth_flags_coverage():
    fit = fit_quietly(_simulate(), "y ~ x + (1 | g)")
    table = compare_with_truth(fit, {"x": 2.0, "Intercept": 5.0})
    assert bool(table.loc["x", "CI covers truth"]) is True  # simulated slope is 2
    assert bool(table.loc["Intercept", "CI covers truth"]) is False  # true intercept is 0


# ---------------------------------------------------------------------------
# Fits without random terms (least squares) and two-level fits (patients only)
# ---------------------------------------------------------------------------

#: Five points by hand: slope 0.6, intercept 2.2, RSS 2.4, TSS 6, Sxx 10, Sxy 6; the
#: fitted values 2.2 + 0.6 x have variance (ddof 0) 0.36 * 2 = 0.72 = SSR / n.
FIVE = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [2.0, 4.0, 5.0, 4.0, 5.0]})


@pytest.mark.parametrize(
    ("reml", "sigma2"), [(True, 2.4 / 3), (False, 2.4 / 5)], ids=["REML", "ML"]
)
def test_r_squared_without_random_terms_by_hand(reml, sigma2):
    r2 = r_squared(fit_quietly(FIVE, "y ~ x", reml=reml))
    assert r2["var_fixed"] == pytest.approx(0.72, rel=1e-12)
    assert r2["var_random"] == 0.0
    assert r2["var_residual"] == pytest.approx(sigma2, rel=1e-12)
    assert r2["R2_marginal"] == pytest.approx(0.72 / (0.72 + sigma2), rel=1e-12)
    assert r2["R2_conditional"] == r2["R2_marginal"]
    if not reml:  # ML: exactly the ordinary R^2 = 1 - RSS / TSS = 0.6
        assert r2["R2_marginal"] == pytest.approx(1 - 2.4 / 6, rel=1e-12)


def test_standardized_slope_of_a_simple_regression_is_pearsons_r():
    beta = standardized_coefficients(fit_quietly(FIVE, "y ~ x")).loc["x", "beta"]
    assert beta == pytest.approx(6 / np.sqrt(10 * 6), rel=1e-12)  # Sxy / sqrt(Sxx Syy)


def test_tables_of_a_least_squares_fit():
    fits = {"lm": fit_quietly(FIVE, "y ~ x"), "lm_ml": fit_quietly(FIVE, "y ~ x", reml=False)}
    diagnostics = diagnostics_table(fits)
    assert diagnostics.loc["lm", "method"] == "REML" and diagnostics.loc["lm_ml", "method"] == "ML"
    assert diagnostics.loc["lm", "optimiser kept"] == "ols"
    assert diagnostics.loc["lm", "logLik"] == round(
        -0.5 * (3 * np.log(2 * np.pi * 0.8) + np.log(50.0) + 3), 2
    )
    assert diagnostics[["converged", "Hessian PD"]].all().all()
    assert not diagnostics["singular"].any() and (diagnostics["warnings"] == 0).all()
    assert warnings_table(fits).empty
    varcomp = varcomp_table(fits)
    assert varcomp["group"].tolist() == ["Residual", "Residual"]
    assert varcomp["variance_or_cov"].tolist() == [0.8, 0.48]
    fixed = fixed_table(fits, terms=["x"])
    assert fixed["estimate"].tolist() == [0.6, 0.6]
    assert fixed["se"].tolist() == [round(np.sqrt(0.08), 3), round(np.sqrt(0.048), 3)]
    truth = compare_with_truth(fits["lm"], {"x": 0.6, "Intercept": 10.0})
    assert truth["CI covers truth"].tolist() == [True, False]


def test_simulated_response_of_a_least_squares_fit_is_fixed_part_plus_noise():
    draws = simulate_response(fit_quietly(FIVE, "y ~ x"), np.random.default_rng(4))
    noise = np.random.default_rng(4).normal(0.0, np.sqrt(0.8), 5)
    np.testing.assert_allclose(draws, 2.2 + 0.6 * FIVE["x"] + noise, rtol=1e-12)


def test_parametric_bootstrap_of_a_least_squares_fit_refits_least_squares():
    rng = np.random.default_rng(8)
    data = pd.DataFrame({"x": rng.normal(size=40)}).assign(
        y=lambda d: 1 + 0.5 * d["x"] + rng.normal(size=40)
    )
    fit = fit_quietly(data, "y ~ x")
    reps = parametric_bootstrap(fit, 4, seed=2, progress=False)
    assert reps["converged"].all() and (reps["warnings"] == 0).all()
    # each replicate is the least-squares fit to X b + N(0, s^2) noise, drawn in order
    x = np.column_stack([np.ones(40), data["x"]])
    b = fit.fixed["estimate"].to_numpy()
    s = np.sqrt(fit.varcomp["variance_or_cov"].item())
    draw = np.random.default_rng(2)
    for _, row in reps.iterrows():
        y_star = x @ b + draw.normal(0.0, s, 40)
        expected = np.linalg.lstsq(x, y_star, rcond=None)[0]
        np.testing.assert_allclose(row[["Intercept", "x"]].to_numpy(float), expected, rtol=1e-9)


def _two_level(n_patients=300, n_sessions=8, seed=5):
    """Sessions in patients, no therapist: intercept SD 1, session slope SD 0.5."""
    rng = np.random.default_rng(seed)
    p = np.repeat(np.arange(n_patients), n_sessions)
    t = np.tile(np.arange(n_sessions) - (n_sessions - 1) / 2, n_patients)  # centred session
    x = rng.normal(0, 1, p.size)
    u0 = rng.normal(0, 1, n_patients)[p]
    u1 = rng.normal(0, 0.5, n_patients)[p]
    y = 2 * x - 0.3 * t + u0 + u1 * t + rng.normal(0, 1, p.size)
    return pd.DataFrame({"y": y, "x": x, "t": t, "patient_id": [f"P{i:03d}" for i in p]})


def test_effects_of_a_two_level_fit_without_therapists():
    data = _two_level()
    fit = fit_quietly(data, "y ~ x + t + (1 + t || patient_id)")
    assert fit.ngroups == {"patient_id": 300}
    # Johnson (2014): var_random = 1 + 0.25 E[t^2]; E[t^2] over -3.5..3.5 = 5.25
    r2 = r_squared(fit)
    assert r2["var_random"] == pytest.approx(1 + 0.25 * 5.25, rel=0.15)
    assert r2["var_fixed"] == pytest.approx(4 + 0.09 * 5.25, rel=0.1)
    draws = simulate_response(fit, np.random.default_rng(1))
    assert np.var(draws) == pytest.approx(np.var(data["y"]), rel=0.1)
    reps = parametric_bootstrap(fit, 2, seed=1, progress=False)
    assert reps["converged"].all() and list(reps.columns[:3]) == ["Intercept", "x", "t"]
    table = compare_with_truth(fit, {"x": 2.0, "t": -0.3})
    assert table["CI covers truth"].all()
    assert diagnostics_table({"m": fit}).loc["m", "nobs"] == 2400
    assert varcomp_table({"m": fit})["group"].tolist() == ["patient_id"] * 2 + ["Residual"]


def test_ddf_table_gives_lmertest_and_pbkrtest_numbers_on_sleepstudy():
    from helpers.effects import ddf_table
    from helpers.paths import PROJECT_ROOT

    reference = PROJECT_ROOT / "tests" / "reference"
    sleep = pd.read_csv(reference / "sleepstudy.csv")
    fit = fit_quietly(sleep, "Reaction ~ Days + (1 + Days | Subject)")
    table = ddf_table(fit)
    r = pd.read_csv(reference / "ddf" / "ddf_coef.csv")
    r = r[(r["model_id"] == "sleep_corr") & r["reml"]].set_index("term")
    np.testing.assert_allclose(table["df (Satterthwaite)"], r["df_satt"], rtol=2e-5)
    np.testing.assert_allclose(table["se (KR)"], r["se_kr"], rtol=2e-5)
    np.testing.assert_allclose(table["p (KR)"], r["p_kr"], rtol=1e-4)
    z = table["estimate"] / table["se"]  # the Wald p by hand
    np.testing.assert_allclose(table["p (z)"], 2 * stats.norm.sf(z.abs()), rtol=1e-12)
    assert table["same conclusion"].all()  # both terms are clear by every test here
