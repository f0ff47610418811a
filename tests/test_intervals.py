"""Tests of helpers.intervals: profile-likelihood intervals against lme4, share intervals.

lme4 references: tests/reference/profile/lme4_profile_reference.R (R is not needed here).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from helpers.engine import NestedLMM
from helpers.intervals import (
    INTERVAL_COLUMNS,
    engine_model,
    profile_intervals,
    share_interval,
    share_profile,
    share_profile_from_model,
)
from helpers.models import fit_mixed, icc_from_null

REFERENCE = Path(__file__).parent / "reference"
PROFILE_REF = REFERENCE / "profile"


# --------------------------------------------------------------------------------------
# Simulated three-level data with a known therapist share
# --------------------------------------------------------------------------------------


def three_level_design(n_therapists: int, n_patients: int, n_sessions: int):
    """Therapist and patient labels of a balanced design, sessions within patients."""
    therapist = np.repeat(np.arange(n_therapists), n_patients * n_sessions)
    patient = np.repeat(np.arange(n_therapists * n_patients), n_sessions)
    return therapist, patient


def simulate_shares(rng, therapist, patient, shares: tuple[float, float]) -> np.ndarray:
    """Response with therapist and patient shares ``shares`` of a total variance of 1."""
    tau2, pi2 = shares
    y = math.sqrt(tau2) * rng.standard_normal(therapist.max() + 1)[therapist]
    y += math.sqrt(pi2) * rng.standard_normal(patient.max() + 1)[patient]
    return y + math.sqrt(1.0 - tau2 - pi2) * rng.standard_normal(therapist.size)


def dense_criterion(y, therapist, patient, variances, reml: bool) -> float:
    """-2 log-likelihood (ML or REML, lme4's constants) of ``y ~ 1`` from the dense V."""
    tau2, pi2, sigma2 = variances
    n = y.size
    cov = sigma2 * np.eye(n)
    cov += tau2 * (therapist[:, None] == therapist[None, :])
    cov += pi2 * (patient[:, None] == patient[None, :])
    chol = np.linalg.cholesky(cov)
    x = np.ones((n, 1))
    wx = np.linalg.solve(chol, x)
    wy = np.linalg.solve(chol, y)
    beta = np.linalg.lstsq(wx, wy, rcond=None)[0]
    resid = wy - wx @ beta
    value = 2.0 * np.log(np.diag(chol)).sum() + resid @ resid
    if reml:
        return value + math.log(float((wx.T @ wx)[0, 0])) + (n - 1) * math.log(2 * math.pi)
    return value + n * math.log(2 * math.pi)


def dense_profile(y, therapist, patient, share: float, reml: bool) -> float:
    """Minimum of :func:`dense_criterion` over the total variance and the patient/residual
    split with the therapist share fixed (Nelder-Mead; independent of the engine)."""

    def fun(par):
        total, rest = math.exp(par[0]), 1.0 / (1.0 + math.exp(-par[1]))
        variances = (share * total, (1 - share) * total * rest, (1 - share) * total * (1 - rest))
        return dense_criterion(y, therapist, patient, variances, reml)

    best = math.inf
    for start in ([math.log(y.var()), 0.0], [math.log(y.var()) + 0.5, -1.0]):
        res = optimize.minimize(
            fun, start, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12}
        )
        best = min(best, float(res.fun))
    return best


# --------------------------------------------------------------------------------------
# Share of variance
# --------------------------------------------------------------------------------------


@cache
def demo_sessions() -> pd.DataFrame:
    return pd.read_csv(
        REFERENCE / "demo_model_data.csv", dtype={"therapist_id": str, "patient_id": str}
    )


def test_share_estimate_is_icc_from_null_share():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_mixed(demo_sessions(), "outcome ~ 1 + (1 | therapist_id) + (1 | patient_id)")
    prof = share_profile(fit)
    icc = icc_from_null(fit).set_index("group")
    assert prof.group == "therapist_id" and prof.reml
    assert prof.estimate == pytest.approx(icc.loc["therapist_id", "share"], rel=1e-9)
    assert prof.min_deviance == pytest.approx(-2 * fit.loglik, abs=1e-8)
    assert prof.deviance(prof.estimate) == pytest.approx(prof.min_deviance, abs=1e-6)
    table = share_interval(fit)
    assert list(table.columns) == INTERVAL_COLUMNS
    row = table.iloc[0]
    assert row["parameter"] == "share_therapist_id" and row["criterion"] == "REML"
    assert 0 < row["lower"] < row["estimate"] < row["upper"] < 1
    patient = share_profile(fit, group="patient_id")
    assert patient.estimate == pytest.approx(icc.loc["patient_id", "share"], rel=1e-9)


def test_share_needs_random_intercepts_only():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_mixed(demo_sessions(), "outcome ~ session_c + (1 + session_c || patient_id)")
    with pytest.raises(ValueError, match="random-intercept-only"):
        share_interval(fit)


@pytest.mark.slow  # profile-likelihood search per endpoint: about a minute
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize(("seed", "tau2"), [(11, 0.15), (3, 0.01)])
def test_share_endpoints_are_likelihood_ratio_endpoints(seed, tau2, reml):
    """At each endpoint the criterion, maximised over the other parameters with the dense
    marginal likelihood (no engine), is the optimum + chi2_1(0.95); a lower endpoint of 0
    means the profile at 0 is still below that cutoff."""
    therapist, patient = three_level_design(10, 4, 4)
    y = 5.0 + simulate_shares(np.random.default_rng(seed), therapist, patient, (tau2, 0.4))
    prof = share_profile_from_model(
        NestedLMM(np.ones((y.size, 1)), patient=patient, therapist=therapist), y, reml=reml
    )
    lower, upper, lower_at_bound, upper_at_bound = prof.interval(0.95)
    cutoff = float(stats.chi2.ppf(0.95, 1))
    optimum = dense_profile(y, therapist, patient, prof.estimate, reml)
    assert optimum == pytest.approx(prof.min_deviance, abs=1e-6)
    assert not upper_at_bound
    assert dense_profile(y, therapist, patient, upper, reml) - optimum == pytest.approx(
        cutoff, abs=1e-5
    )
    if lower_at_bound:
        assert lower == 0.0
        assert dense_profile(y, therapist, patient, 0.0, reml) - optimum < cutoff
    else:
        assert dense_profile(y, therapist, patient, lower, reml) - optimum == pytest.approx(
            cutoff, abs=1e-5
        )
    # the two seeds give one interval away from 0 and one reaching it
    assert lower_at_bound == (tau2 < 0.05)


# --------------------------------------------------------------------------------------
# Profile intervals against lme4's confint(method = "profile")
# --------------------------------------------------------------------------------------


def _read(name: str, groups: tuple[str, ...], folder: Path = REFERENCE) -> pd.DataFrame:
    return pd.read_csv(folder / name, dtype=dict.fromkeys(groups, str))


DATASETS = {
    "sleepstudy": lambda: _read("sleepstudy.csv", ("Subject",)),
    "three_level": lambda: _read("three_level.csv", ("therapist_id", "patient_id")),
    "demo_sessions": demo_sessions,
    "demo_patients": lambda: _read("demo_patient_model_data.csv", ("therapist_id", "patient_id")),
    "dyestuff2": lambda: _read("dyestuff2.csv", ("Batch",), PROFILE_REF),
}
LME4_CI = pd.read_csv(PROFILE_REF / "lme4_profile_ci.csv")
LME4_FITS = json.loads((PROFILE_REF / "lme4_profile_fits.json").read_text())["fits"]
MODELS = {(f["model_id"], f["reml"]): (f["data"], f["formula"]) for f in LME4_FITS}

#: Allowed |ours - lme4| as a fraction of the interval's half-width on that side (the
#: scale on which lme4's spline over zeta works).  lme4 evaluates zeta on a grid spaced
#: delta = cutoff / 8 (default) or cutoff / 32 (dense) and inverts an interpolating
#: spline; its optimisers stop at rhoend ~ 2e-7 (default) or 1e-10 (dense).  Ours are
#: root-found endpoints.  The tolerances are ~3x the largest difference observed on these
#: models when they were set (docs/models.md, "Profile intervals").
TOLERANCE = {"default": 5e-3, "dense": 1e-5}


#: lme4 failures kept out of the comparison: with the dense setting's bobyqa control the
#: sigma profile of Dyestuff2 (batch sd estimated as 0) returns NA deviances ("NAs
#: detected in profiling") and confint falls back to the bounds [0, Inf].
LME4_FAILURES = {("dyestuff2", "dense", "sigma")}


@cache
def fitted(model_id: str, reml: bool):
    data, formula = MODELS[(model_id, reml)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_mixed(DATASETS[data](), formula, reml=reml)


@cache
def _our_intervals(model_id: str, reml: bool) -> pd.DataFrame:
    return profile_intervals(fitted(model_id, reml))


def our_intervals(model_id: str, reml: bool) -> pd.DataFrame:
    return _our_intervals(model_id, reml).copy()


def lme4_name(parameter: str) -> str:
    return "(Intercept)" if parameter == "Intercept" else parameter


def comparison(model_id: str, reml: bool, setting: str) -> pd.DataFrame:
    ours = our_intervals(model_id, reml).copy()
    ours["parameter"] = ours["parameter"].map(lme4_name)
    ref = LME4_CI[
        (LME4_CI["model_id"] == model_id)
        & (LME4_CI["reml"] == reml)
        & (LME4_CI["setting"] == setting)
    ]
    merged = ours.merge(ref, on="parameter", suffixes=("", "_lme4"), validate="1:1")
    assert len(merged) == len(ref) == len(ours), (ours["parameter"], ref["parameter"])
    failed = [p for p in merged["parameter"] if (model_id, setting, p) in LME4_FAILURES]
    return merged.loc[~merged["parameter"].isin(failed)]


CASES = sorted(
    {(m, r, s) for m, r, s in LME4_CI[["model_id", "reml", "setting"]].itertuples(index=False)}
)


@pytest.mark.parametrize(("model_id", "reml", "setting"), CASES)
def test_profile_intervals_match_lme4(model_id, reml, setting):
    merged = comparison(model_id, reml, setting)
    centre = merged["profile_centre"]
    for side in ("lower", "upper"):
        half_width = (merged[side] - centre).abs()
        gap = (merged[side] - merged[f"{side}_lme4"]).abs()
        bad = merged.loc[gap > TOLERANCE[setting] * half_width + 1e-12]
        assert bad.empty, bad[["parameter", side, f"{side}_lme4", "profile_centre"]]


def test_profile_of_reml_fit_is_the_ml_profile():
    """lme4 profiles a REML fit on the ML deviance (devfun2 calls refitML)."""
    reml, ml = our_intervals("sleep_corr", True), our_intervals("sleep_corr", False)
    assert (reml["criterion"] == "ML").all()
    np.testing.assert_allclose(reml["lower"], ml["lower"], rtol=1e-6)
    np.testing.assert_allclose(reml["upper"], ml["upper"], rtol=1e-6)
    np.testing.assert_allclose(reml["profile_centre"], ml["estimate"], rtol=1e-5)
    fit = fitted("sleep_corr", True)
    sd = reml.set_index("parameter").loc["sd_(Intercept)|Subject"]
    assert sd["estimate"] == pytest.approx(fit.varcomp["sd_or_corr"].iloc[0], rel=1e-9)
    assert sd["estimate"] > sd["profile_centre"]  # REML sd > ML sd here


def test_lower_sd_bound_zero():
    """An sd whose profile stays below the cutoff down to 0 gets lower = 0, flagged."""
    early = our_intervals("demo_patient_early", True).set_index("parameter")
    sd = early.loc["sd_(Intercept)|therapist_id"]
    assert sd["estimate"] > 0 and sd["lower"] == 0.0 and sd["lower_at_bound"]
    assert not sd["upper_at_bound"]
    dye = our_intervals("dyestuff2", True).set_index("parameter")
    sd = dye.loc["sd_(Intercept)|Batch"]
    assert sd["estimate"] == 0.0 and sd["lower"] == 0.0 and sd["lower_at_bound"]
    for table in (early, dye):
        others = table.drop(index=[p for p in table.index if p.startswith("sd_")])
        assert not others["lower_at_bound"].any() and not others["upper_at_bound"].any()
    ref = LME4_CI.set_index(["model_id", "setting", "parameter"])
    for model_id, name in (
        ("demo_patient_early", "sd_(Intercept)|therapist_id"),
        ("dyestuff2", "sd_(Intercept)|Batch"),
    ):
        assert ref.loc[(model_id, "default", name), "lower"] == 0.0


def test_which_selects_parameters():
    fit = fitted("sleep_corr", False)
    table = profile_intervals(fit, which=["Days", "sigma"], level=0.9)
    assert table["parameter"].tolist() == ["sigma", "Days"]
    assert (table["level"] == 0.9).all()
    full = our_intervals("sleep_corr", False).set_index("parameter")
    assert table.set_index("parameter").loc["Days", "upper"] < full.loc["Days", "upper"]
    assert profile_intervals(fit, which="beta_")["kind"].eq("fixed").all()
    with pytest.raises(ValueError, match="unknown parameter"):
        profile_intervals(fit, which="sd_Days")


def test_engine_model_reproduces_the_fit():
    fit = fitted("demo_main", True)
    model = engine_model(fit)
    criterion = model.deviance_function(fit.response_values, reml=True)
    assert criterion(fit.theta) == pytest.approx(-2 * fit.loglik, abs=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = fit_mixed(
            DATASETS["sleepstudy"](), "Reaction ~ 1 + (1 | Subject)", engine="statsmodels"
        )
    with pytest.raises(ValueError, match="engine='engine'"):
        profile_intervals(sm)


def test_warns_when_the_fit_was_not_the_optimum():
    from dataclasses import replace

    from helpers.intervals import IntervalWarning

    fit = fitted("sleep_corr", False)
    off = replace(fit, theta=fit.theta * 1.05)
    with pytest.warns(IntervalWarning, match="lower"):
        profile_intervals(off, which="sigma")


# --------------------------------------------------------------------------------------
# Coverage of the share interval on simulated data with a known small therapist share
# --------------------------------------------------------------------------------------

#: True variance shares (therapist, patient) of the simulation; the therapist share is the
#: suite's calibrated value (helpers.simulate.TARGETS["therapist_share_outcome"]).
TRUE_SHARES = (0.05, 0.45)


def share_coverage(n_datasets: int, seed: int) -> dict[str, float]:
    """Coverage of the REML profile interval of the therapist share over simulated data
    (20 therapists x 5 patients x 6 sessions), with Wald intervals for comparison."""
    therapist, patient = three_level_design(20, 5, 6)
    model = NestedLMM(np.ones((therapist.size, 1)), patient=patient, therapist=therapist)
    rng = np.random.default_rng(seed)
    covered = at_zero = wald_defined = wald_covered = wald_negative = 0
    for _ in range(n_datasets):
        y = simulate_shares(rng, therapist, patient, TRUE_SHARES)
        prof = share_profile_from_model(model, y, reml=True)
        lower, upper, lower_at_bound, _ = prof.interval(0.95)
        covered += lower <= TRUE_SHARES[0] <= upper
        at_zero += lower_at_bound
        wald_low, wald_high = prof.wald(0.95)
        if np.isfinite(wald_low):
            wald_defined += 1
            wald_covered += wald_low <= TRUE_SHARES[0] <= wald_high
            wald_negative += wald_low < 0
    return {
        "n": n_datasets,
        "covered": covered,
        "lower_at_zero": at_zero,
        "wald_defined": wald_defined,
        "wald_covered": wald_covered,
        "wald_lower_negative": wald_negative,
    }


def assert_coverage_consistent(result: dict, level: float = 0.95, alpha: float = 1e-3):
    """The number of covering intervals is consistent with the asymptotic coverage.

    With the share inside (0, 1) the asymptotic coverage is ``level``; at the boundary
    (share 0) the deviance difference is a 50:50 mixture of chi2_0 and chi2_1, so the
    chi2_1 cutoff covers with probability ``1 - (1 - level) / 2`` (0.975).  A small true
    share lies between the two, so the count must not be below the ``alpha / 2`` quantile
    of Binomial(n, level) nor above the ``1 - alpha / 2`` quantile of Binomial(n, 0.975).
    """
    n, covered = result["n"], result["covered"]
    low = stats.binom.ppf(alpha / 2, n, level)
    high = stats.binom.ppf(1 - alpha / 2, n, 1 - (1 - level) / 2)
    ci = stats.binomtest(covered, n).proportion_ci(0.95)
    message = (
        f"coverage {covered}/{n} = {covered / n:.3f} (95% CI {ci.low:.3f}-{ci.high:.3f}), "
        f"accepted counts {low:.0f}-{high:.0f}; {result}"
    )
    print(message)
    assert low <= covered <= high, message


def test_share_interval_coverage_fast():
    assert_coverage_consistent(share_coverage(40, seed=20240611))


@pytest.mark.slow
def test_share_interval_coverage():
    started = time.perf_counter()
    result = share_coverage(200, seed=20240612)
    assert_coverage_consistent(result)
    print(f"{time.perf_counter() - started:.1f} s")
