"""Simulation-based power (helpers.power): known truth, Monte Carlo CI, determinism, resume.

Kept fast (small designs, few replicates): the whole file runs in well under a minute on
two busy cores.  The statistical checks use exact binomial tolerances stated in each test.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import power
from helpers.features import add_model_features
from helpers.power import Design, PowerSettingsError, mc_interval, power_curve

#: A small design: 8 therapists x 5 patients x up to 6 sessions (fits take a few ms).
SMALL = Design(n_therapists=8, patients_per_therapist=5, max_sessions=6, caseload="equal")
#: Two cells, as in a real curve.
VARY = {"n_therapists": [6, 8]}
N_REPS = 6


def _cell_bytes(out):
    return {p.name: p.read_bytes() for p in sorted((out / "cells").glob("*.parquet"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted in-process run (1 worker) with its output folder."""
    out = tmp_path_factory.mktemp("power") / "one"
    table = power_curve(SMALL, VARY, n_reps=N_REPS, seed=11, n_jobs=1, out=out, progress=False)
    return table, out


# ---- Design ------------------------------------------------------------------------------


def test_design_defaults_are_the_demo_calibration():
    d = Design()
    assert (d.n_therapists, d.patients_per_therapist, d.max_sessions) == (40, 10, 20)
    assert (d.within_effect, d.between_effect, d.therapist_share) == (-0.15, -0.177, 0.05)
    # the share .05 converts back to the demo's calibrated therapist SD (1.0839, data card)
    assert d.generating_parameters()["outcome_sd_therapist"] == pytest.approx(1.0839, abs=0.01)
    table = d.table()
    assert "Flückiger" in table.loc["between_effect", "source"]
    assert "n_therapists" in repr(d) and "meaning" in repr(d)


def test_design_refuses_bad_values_with_the_field_named():
    with pytest.raises(PowerSettingsError, match="n_therapists"):
        Design(n_therapists=1)
    with pytest.raises(PowerSettingsError, match="therapist_share"):
        Design(therapist_share=1.2)
    with pytest.raises(PowerSettingsError, match="unknown key"):
        Design.from_mapping({"n_therapist": 10})
    with pytest.raises(PowerSettingsError, match="unknown design field"):
        power.design_cells(SMALL, {"n_patients": [1, 2]})


def test_features_match_add_model_features():
    frame = power.simulate_sessions(SMALL.replace(questionnaire_missing_rate=0.2), seed=5)
    expected = add_model_features(
        frame.drop(columns=["alliance_within_lag", "alliance_between_c", "session_c"])
    )
    for column in ("alliance_within_lag", "alliance_between_c", "session_c"):
        np.testing.assert_allclose(frame[column], expected[column], rtol=0, atol=1e-12)
    assert frame["alliance"].isna().any()  # missed questionnaires are missing totals


def test_equal_caseloads():
    frame = power.simulate_sessions(SMALL)
    assert frame.groupby("therapist_id")["patient_id"].nunique().eq(5).all()


# ---- Monte Carlo CI ----------------------------------------------------------------------


def test_mc_interval_is_the_wilson_interval_by_hand():
    # k = 40 of n = 50, z = 1.959964: p = .8, z^2/n = .076829
    # centre = (.8 + .0384146) / 1.0768292 = .778596
    # half = 1.959964 * sqrt(.8 * .2 / 50 + 3.841459 / 10000) / 1.0768292 = .108967
    low, high = mc_interval(40, 50)
    assert low == pytest.approx(0.778596 - 0.108967, abs=1e-5)
    assert high == pytest.approx(0.778596 + 0.108967, abs=1e-5)
    assert mc_interval(0, 20)[0] == 0.0 and mc_interval(20, 20)[1] == 1.0
    assert mc_interval(0, 20)[1] > 0  # not empty at power 0


# ---- known truth -------------------------------------------------------------------------


@pytest.mark.slow  # hundreds of simulated fits
def test_rejection_rate_is_alpha_when_the_effects_are_zero():
    # No alliance effects and no reverse path: every rejection is a type I error.  With
    # n = 120 replicates the count is Binomial(120, .05) (mean 6); the test fails only if
    # an exact two-sided binomial test rejects at .001, i.e. above 14 rejections (the
    # acceptance region is 0..14: too few replicates to detect a conservative test; the
    # issue's >= 2,000-replicate check is bench/power_type1.py, not a unit test).
    null = SMALL.replace(within_effect=0.0, between_effect=0.0, reverse_path_effect=0.0)
    # two local workers (the pool is reused by the two-worker test below)
    table = power_curve(null, n_reps=120, seed=7, n_jobs=2, progress=False)
    for row in table.itertuples():
        rejections = round(row.power * row.n_valid)
        assert row.n_valid >= 115, row
        p = stats.binomtest(rejections, row.n_valid, 0.05).pvalue
        assert p > 0.001, (row.term, rejections, row.n_valid)
        assert abs(row.bias) < 4 * row.empirical_sd / math.sqrt(row.n_valid)


def test_power_is_near_one_for_a_large_effect():
    big = SMALL.replace(within_effect=-0.8, between_effect=-0.8)
    table = power_curve(big, n_reps=20, seed=8, n_jobs=1, progress=False).set_index("term")
    assert (table["power"] >= 0.9).all(), table["power"]
    assert (table["power_ci_high"] == 1.0).all() or (table["power"] < 1).any()


# ---- determinism over splits, workers and Dask -------------------------------------------


def test_results_do_not_depend_on_the_chunking(reference):
    table, _ = reference
    again = power_curve(SMALL, VARY, n_reps=N_REPS, seed=11, n_jobs=1, chunk_size=4, progress=False)
    pd.testing.assert_frame_equal(table.drop(columns="seconds"), again.drop(columns="seconds"))


@pytest.mark.slow  # starts a process pool
def test_two_workers_give_byte_identical_results(reference, tmp_path):
    table, out_one = reference
    out = tmp_path / "two"
    two = power_curve(
        SMALL, VARY, n_reps=N_REPS, seed=11, n_jobs=2, chunk_size=2, out=out, progress=False
    )
    pd.testing.assert_frame_equal(table.drop(columns="seconds"), two.drop(columns="seconds"))
    assert _cell_bytes(out) == _cell_bytes(out_one)
    assert (out / "power.csv").read_bytes() == (out_one / "power.csv").read_bytes()


@pytest.mark.slow  # starts a Dask cluster
def test_dask_local_cluster_gives_byte_identical_results(reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    table, out_one = reference
    try:
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
    except Exception as error:  # pragma: no cover - depends on the machine
        pytest.skip(f"distributed.LocalCluster could not start here: {error}")
    with cluster, distributed.Client(cluster) as client:
        out = tmp_path / "dask"
        dask = power_curve(
            SMALL, VARY, n_reps=N_REPS, seed=11, scheduler=client, chunk_size=2, out=out,
            progress=False,
        )  # fmt: skip
    pd.testing.assert_frame_equal(table.drop(columns="seconds"), dask.drop(columns="seconds"))
    assert _cell_bytes(out) == _cell_bytes(out_one)
    assert (out / "power.csv").read_bytes() == (out_one / "power.csv").read_bytes()


def test_unreachable_scheduler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(power, "SCHEDULER_TIMEOUT", "1s")
    with pytest.raises(PowerSettingsError, match="could not connect"):
        power_curve(SMALL, n_reps=1, scheduler="tcp://127.0.0.1:9", progress=False)


def test_pilot_warm_start_reaches_the_cold_start_optimum():
    # Every replicate starts from the cell's pilot fit (theta and curvature); the estimates
    # and p-values must be those of a fit from lme4's default start, and the pilot must
    # save evaluations.
    design = Design(n_therapists=12, patients_per_therapist=6, max_sessions=10)
    pilot = power._pilot(json.dumps(design.to_dict(), sort_keys=True), 5)
    assert pilot is not None and pilot.converged
    for rep in range(6):
        rows = power._simulate_arrays(design, power.replicate_seed(5, design.key(), rep))
        warm, warm_flags = power._fit_replicate(rows, "satterthwaite", 0.05, pilot)
        cold, cold_flags = power._fit_replicate(rows, "satterthwaite", 0.05, None)
        assert warm_flags == cold_flags
        for term in power.ALLIANCE_TERMS:
            assert warm[term]["estimate"] == pytest.approx(cold[term]["estimate"], rel=1e-5)
            assert warm[term]["p"] == pytest.approx(cold[term]["p"], rel=1e-4, abs=1e-9)
    _, replicate = power._analysis_model(rows)
    cold_fit = replicate.model.fit_fixed(replicate.y)
    warm_fit = replicate.model.fit_fixed(replicate.y, start=pilot.theta, curvature=pilot.hessian)
    assert warm_fit.n_evaluations < cold_fit.n_evaluations


# ---- resume ------------------------------------------------------------------------------


def test_interrupted_run_resumes_without_refitting_finished_cells(reference, tmp_path, monkeypatch):
    table, out_one = reference
    out = tmp_path / "resumed"
    calls = {"n": 0}
    real = power._fit_replicate

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(power, "_fit_replicate", counting)
    # "interrupted" after the first cell: only that cell's file exists
    first = power_curve(
        SMALL, {"n_therapists": [6]}, n_reps=N_REPS, seed=11, n_jobs=1, out=out, progress=False
    )
    assert calls["n"] == N_REPS and first.attrs["fits"] == N_REPS
    resumed = power_curve(SMALL, VARY, n_reps=N_REPS, seed=11, n_jobs=1, out=out, progress=False)
    assert calls["n"] == 2 * N_REPS  # only the second cell was fitted
    assert resumed.attrs["fits"] == N_REPS
    assert len(resumed.attrs["reused_cells"]) == 1 and len(resumed.attrs["computed_cells"]) == 1
    pd.testing.assert_frame_equal(table.drop(columns="seconds"), resumed.drop(columns="seconds"))
    assert _cell_bytes(out) == _cell_bytes(out_one)
    assert (out / "power.csv").read_bytes() == (out_one / "power.csv").read_bytes()
    # a third run reads everything
    power_curve(SMALL, VARY, n_reps=N_REPS, seed=11, n_jobs=1, out=out, progress=False)
    assert calls["n"] == 2 * N_REPS


def test_a_cell_file_of_other_settings_is_not_reused(reference, tmp_path):
    _, out_one = reference
    out = tmp_path / "copy"
    shutil.copytree(out_one, out)
    other = power_curve(SMALL, VARY, n_reps=N_REPS, seed=12, n_jobs=1, out=out, progress=False)
    assert other.attrs["reused_cells"] == [] and other.attrs["fits"] == 2 * N_REPS


# ---- table -------------------------------------------------------------------------------


def test_table_columns_and_smallest_design(reference):
    table, _ = reference
    assert list(table.columns[:2]) == ["n_therapists", "term"]
    for column in ("power", "power_ci_low", "power_ci_high", "bias", "empirical_sd", "mean_se",
                   "coverage", "share_singular", "share_nonconverged", "seconds"):  # fmt: skip
        assert column in table.columns
    assert (table["power_ci_low"] <= table["power"]).all()
    assert (table["power"] <= table["power_ci_high"]).all()
    row = power.smallest_design(table, "alliance_within_lag", ["n_therapists"], target=0.0)
    assert row["n_therapists"] == 6
    assert power.smallest_design(table, "alliance_within_lag", ["n_therapists"], 1.01) is None


# ---- command line ------------------------------------------------------------------------


def test_cli_runs_a_study_file_and_reports_bad_ones(tmp_path, capsys):
    from helpers.cli import main

    good = tmp_path / "power.yml"
    good.write_text(
        "design:\n  n_therapists: 6\n  patients_per_therapist: 5\n  max_sessions: 6\n"
        "vary:\n  between_effect: [0.0, -0.3]\nn_reps: 2\nseed: 3\n",
        encoding="utf-8",
    )
    out = tmp_path / "runs"
    assert main(["power", "--design", str(good), "--out", str(out), "--jobs", "1"]) == 0
    table = pd.read_csv(out / "power.csv")
    assert list(table["between_effect"].unique()) == [0.0, -0.3]
    assert "2 cell(s) computed (4 fits)" in capsys.readouterr().out
    bad = tmp_path / "bad.yml"
    bad.write_text("design:\n  n_therapist: 6\nreps: 3\n", encoding="utf-8")
    assert main(["power", "--design", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['reps']" in err and "Traceback" not in err


def test_example_study_file_is_valid():
    from helpers.paths import PROJECT_ROOT

    settings = power.read_study_file(PROJECT_ROOT / "docs" / "power_example.yml")
    assert len(power.design_cells(settings["design"], settings["vary"])) == 8


# ---- figure and sentences ----------------------------------------------------------------


def _curve_table():
    rows = []
    for k in (4, 8):
        for n in (10, 20, 40):
            for term in power.ALLIANCE_TERMS:
                p = min(1.0, n * k / 200)
                rows.append({"n_therapists": n, "patients_per_therapist": k, "term": term,
                             "power": p, "power_ci_low": max(0, p - 0.1),
                             "power_ci_high": min(1, p + 0.1), "n_valid": 100})  # fmt: skip
    return pd.DataFrame(rows)


def test_plot_power_curve_draws_one_line_per_hue_and_the_target():
    import matplotlib.pyplot as plt

    from helpers.plots import REFERENCE_GID, PlotInputError, plot_power_curve

    ax = plot_power_curve(_curve_table(), x="n_therapists", hue="patients_per_therapist",
                          term="alliance_between_c", hue_label="Patients")  # fmt: skip
    data_lines = [line for line in ax.get_lines() if line.get_label() in ("4", "8")]
    assert len(data_lines) == 2
    assert list(data_lines[0].get_xdata()) == [10, 20, 40]
    assert any(line.get_gid() == f"{REFERENCE_GID}-target" for line in ax.get_lines())
    assert ax.get_ylabel() == "Power" and ax.get_legend().get_title().get_text() == "Patients"
    with pytest.raises(PlotInputError, match="several terms"):
        plot_power_curve(_curve_table(), x="n_therapists")
    plt.close("all")


def test_power_sentences_cover_reached_not_reached_and_tradeoffs():
    from helpers import narrative

    table = _curve_table()
    row = power.smallest_design(table, "alliance_within_lag", ["n_therapists"])
    text = narrative.power_target_sentence(row, "the within-patient effect")
    assert "20 therapists with 8 patients each" in text and "power 0.80" in text
    assert "None of the designs" in narrative.power_target_sentence(
        None, "x", size="the designs tried"
    )
    a = table.iloc[2].copy()  # 20 x 4
    b = table.iloc[0].copy()  # 10 x 8 stand-in
    b[["n_therapists", "patients_per_therapist"]] = [10, 8]
    a[["power", "power_ci_low", "power_ci_high"]] = [0.9, 0.85, 0.95]
    b[["power", "power_ci_low", "power_ci_high"]] = [0.5, 0.4, 0.6]
    assert "more therapists gave clearly more power" in narrative.power_tradeoff_sentence(
        a, b, "the between effect"
    )
    assert "more patients per therapist" in narrative.power_tradeoff_sentence(b, a, "x")
    b[["power", "power_ci_low", "power_ci_high"]] = [0.85, 0.7, 0.95]
    assert "did not differ" in narrative.power_tradeoff_sentence(a, b, "x")


# ---- power against an independent check: lmerTest refits of the same replicates ------------

POWER_REFERENCE = Path(__file__).parent / "reference" / "power"


@pytest.fixture(scope="module")
def lme4_power_reference():
    summary = json.loads((POWER_REFERENCE / "power_reference.json").read_text())
    replicates = pd.read_csv(POWER_REFERENCE / "power_reference_replicates.csv")
    return summary, replicates


def test_power_reference_python_fits_are_reproduced(lme4_power_reference, tmp_path):
    # The committed Python p-values (500 replicates, computed once by
    # tests/reference/power/make_power_reference.py) are what power_curve gives now: the
    # first 20 replicates are refitted (replicate seeds do not depend on n_reps).
    summary, replicates = lme4_power_reference
    design = Design(**summary["design"])
    n = 20
    power_curve(
        design, n_reps=n, seed=summary["seed"], alpha=summary["alpha"], ddf=summary["ddf"],
        out=tmp_path, n_jobs=1, progress=False,
    )  # fmt: skip
    (cell,) = (tmp_path / "cells").glob("*.parquet")
    now = pd.read_parquet(cell).merge(
        replicates.loc[replicates["replicate"] < n], on=["replicate", "term"], validate="1:1"
    )
    assert len(now) == n * len(power.ALLIANCE_TERMS)
    # Estimates and standard errors move with where inside the optimiser's tolerance a fit
    # stops (start, curvature seed, floating-point summation order, the CPU's BLAS kernels).
    # The Satterthwaite df differentiates the variance numerically, which multiplies those
    # last digits: on an AVX-512 machine one between-patient df moved by 2.8e-4 (relative)
    # and its p by 4.7e-5, with the estimate and se within 7e-7.  So df and p get 1e-3.
    np.testing.assert_allclose(now["estimate"], now["estimate_python"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(now["se"], now["se_python"], rtol=1e-5)
    np.testing.assert_allclose(now["df"], now["df_python"], rtol=1e-3)
    np.testing.assert_allclose(now["p"], now["p_python"], rtol=1e-3, atol=1e-9)
    assert ((now["p"] < summary["alpha"]) == (now["p_python"] < summary["alpha"])).all()
    assert (now["n_obs_x"] == now["n_obs_y"]).all()


def test_power_agrees_with_lmertest_refits_of_the_same_data(lme4_power_reference):
    # Same 500 simulated studies, fitted by power_curve and by lmerTest (REML,
    # Satterthwaite; tests/reference/power/lme4_power_reference.R).  The decisions are
    # paired, so they should be nearly all identical; the rates must agree within Monte
    # Carlo error (exact McNemar test on the discordant pairs, and the unpaired
    # two-proportion bound 2.58 * sqrt(2 p (1 - p) / n)).
    summary, replicates = lme4_power_reference
    alpha = summary["alpha"]
    assert summary["n_reps"] >= 500 and summary["same_n_obs"]
    for term, counts in summary["terms"].items():
        part = replicates.loc[replicates["term"] == term]
        assert len(part) == counts["n"] == summary["n_reps"]
        py, r = part["p_python"] < alpha, part["p_r"] < alpha
        assert (int(py.sum()), int(r.sum())) == (counts["rejected_python"], counts["rejected_r"])
        discordant = int((py != r).sum())
        assert discordant == counts["discordant"]
        assert discordant <= 0.02 * len(part), (term, discordant)
        if discordant:
            assert stats.binomtest(int((py & ~r).sum()), discordant, 0.5).pvalue > 0.01
        p = (py.mean() + r.mean()) / 2
        assert abs(py.mean() - r.mean()) <= 2.58 * math.sqrt(2 * p * (1 - p) / len(part))
        assert 0.1 < py.mean() < 0.95, (term, py.mean())  # an informative power
        np.testing.assert_allclose(part["estimate_python"], part["estimate_r"], atol=1e-3)
