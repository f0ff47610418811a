"""Benchmark helpers.engine against statsmodels' MixedLM and lme4 on the same data.

Models (REML), on data simulated with numpy (10 sessions per patient, 20 patients per
therapist; the lagged predictor is missing at each patient's first session, so ~10% of the
rows are dropped by every engine):

* two-level   ``y ~ x_within_lag + x_between + session + (1 + session | patient_id)``
  (engine, statsmodels MixedLM, lme4);
* three-level the same ``+ (1 | therapist_id)`` (engine, lme4; MixedLM cannot fit
  correlated patient intercepts and slopes inside therapists).

Every fit runs in a fresh process on the same CSV.  Time covers building the model from
the data frame and fitting (not reading the CSV); for lme4 it is ``system.time(lmer(...))``.
Before timing, the engine's compiled kernel is loaded (``helpers.pls_kernel.warm_up``,
about 0.4 s once per process, as R loads lme4 before ``system.time``).
Memory: peak of ``tracemalloc`` during the fit for Python (a second, separate run, as
tracing slows Python down), ``gc()`` "max used" during the fit for R, and the maximum
resident set size of every process (``/usr/bin/time -v``; includes the interpreter, the
libraries and the data).  statsmodels is stopped after ``--timeout`` seconds (5 minutes)
and then skipped for larger sizes (and above ``--sm-max-rows``).  BLAS runs
single-threaded everywhere.  Times vary with the machine; nothing here asserts a time.

Then a parametric bootstrap of the two-level model at ``--bootstrap-rows`` rows: simulate
``y*`` from the fit, refit warm-started (``check=False``), ``--bootstrap`` replicates; lme4's
``bootMer`` is timed on ``--r-bootstrap`` replicates of the same model for comparison.

Usage::

    .venv/bin/python bench/bench_engine.py                       # 2k, 20k, 100k, 1M rows
    .venv/bin/python bench/bench_engine.py --quick               # 2k and 20k, 100 replicates
    .venv/bin/python bench/bench_engine.py --sizes 2000,50000 --bootstrap 200
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240611
SESSIONS_PER_PATIENT = 10
PATIENTS_PER_THERAPIST = 20
FIXED = ["x_within_lag", "x_between", "session"]
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
}
TIME_BINARY = "/usr/bin/time"

ENGINE_CHILD = r"""
import json, sys, time, tracemalloc, warnings
import pandas as pd
from helpers.engine import fit_nested_lmm_frame
from helpers.pls_kernel import warm_up
csv, nested, check, trace = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", sys.argv[4] == "1"
data = pd.read_csv(csv)
warm_up()  # load the compiled kernel first, as R loads lme4 before system.time()
if trace:
    tracemalloc.start()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    start = time.perf_counter()
    fit = fit_nested_lmm_frame(
        data, ["x_within_lag", "x_between", "session"], patient="patient_id",
        patient_terms=["1", "session"], therapist="therapist_id" if nested else None,
        check=check,
    )
    seconds = time.perf_counter() - start
peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
sds = {g: (c.to_numpy().diagonal() ** 0.5).tolist() for g, c in fit.covariance.items()}
cov_p = fit.covariance["patient_id"].to_numpy()
print(json.dumps({"seconds": seconds, "loglik": fit.loglik, "nobs": fit.nobs,
                  "evaluations": fit.n_evaluations, "converged": fit.converged,
                  "peak_mb": peak, "estimate": fit.fixed["estimate"].to_dict(),
                  "se": fit.fixed["se"].to_dict(), "sds": sds, "sigma": fit.sigma,
                  "cor_patient": cov_p[0, 1] / (cov_p[0, 0] * cov_p[1, 1]) ** 0.5}))
"""

STATSMODELS_CHILD = r"""
import json, sys, time, tracemalloc, warnings
import pandas as pd
from statsmodels.regression.mixed_linear_model import MixedLM
csv, trace = sys.argv[1], sys.argv[2] == "1"
data = pd.read_csv(csv).dropna()
if trace:
    tracemalloc.start()
with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    start = time.perf_counter()
    model = MixedLM.from_formula("y ~ x_within_lag + x_between + session", data=data,
                                 groups="patient_id", re_formula="1 + session")
    fit = model.fit(reml=True)
    seconds = time.perf_counter() - start
peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
print(json.dumps({"seconds": seconds, "loglik": float(fit.llf), "nobs": int(model.nobs),
                  "converged": bool(fit.converged), "peak_mb": peak}))
"""

BOOTSTRAP_CHILD = r"""
import json, sys, time, warnings
import pandas as pd
from helpers.engine import nested_lmm_from_frame, warm_started_bootstrap
csv, replicates = sys.argv[1], int(sys.argv[2])
fixed = ["x_within_lag", "x_between", "session"]
data = pd.read_csv(csv)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model, y = nested_lmm_from_frame(data, fixed, patient="patient_id",
                                     patient_terms=["1", "session"])
    fit = model.fit(y)
    start = time.perf_counter()
    boot = warm_started_bootstrap(model, fit, replicates, seed=20240611)
    seconds = time.perf_counter() - start
print(json.dumps({
    "seconds": seconds, "replicates": replicates, "nobs": fit.nobs,
    "evaluations_per_replicate": boot.n_evaluations / replicates,
    "not_converged": int((~boot.converged).sum()), "singular": int(boot.singular.sum()),
    "warnings": [str(w.message) for w in caught],
    "boot_se": boot.estimates[fixed].std().to_dict(),
    "model_se": fit.fixed.loc[fixed, "se"].to_dict(),
}))
"""

R_FIT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$patient_id <- factor(d$patient_id)
d$therapist_id <- factor(d$therapist_id)
f <- if (args[2] == "1") {
  y ~ x_within_lag + x_between + session + (1 + session | patient_id) + (1 | therapist_id)
} else {
  y ~ x_within_lag + x_between + session + (1 + session | patient_id)
}
invisible(gc(reset = TRUE))
used_before <- sum(gc()[, 2])
seconds <- system.time(fit <- lmer(f, data = d, REML = TRUE))[["elapsed"]]
g <- gc()
max_used <- sum(g[, ncol(g)])
cat(sprintf(paste0('{"seconds": %.6f, "loglik": %.10f, "nobs": %d, "gc_max_mb": %.3f, ',
                   '"gc_before_mb": %.3f}\n'),
            seconds, as.numeric(logLik(fit)), nobs(fit), max_used, used_before))
"""

R_BOOT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$patient_id <- factor(d$patient_id)
fit <- lmer(y ~ x_within_lag + x_between + session + (1 + session | patient_id), data = d)
n <- as.integer(args[2])
set.seed(1)
seconds <- system.time(b <- bootMer(fit, fixef, nsim = n))[["elapsed"]]
cat(sprintf('{"seconds": %.6f, "replicates": %d}\n', seconds, n))
"""


def simulate_sessions(n_rows: int, seed: int = SEED) -> pd.DataFrame:
    """Simulate about ``n_rows`` patient-sessions (whole patients of 10 sessions).

    Parameters
    ----------
    n_rows : int
        Approximate number of rows.
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    pandas.DataFrame
        ``therapist_id, patient_id, session, x_within_lag, x_between, y``;
        ``x_within_lag`` is missing at each patient's first session.
    """
    rng = np.random.default_rng(seed)
    n_patients = max(4, n_rows // SESSIONS_PER_PATIENT)
    n_therapists = max(2, n_patients // PATIENTS_PER_THERAPIST)
    patient = np.repeat(np.arange(n_patients), SESSIONS_PER_PATIENT)
    therapist = patient % n_therapists
    session = np.tile(np.arange(1, SESSIONS_PER_PATIENT + 1), n_patients)
    level = rng.normal(5.0, 0.8, n_patients)
    alliance = level[patient] + rng.normal(0.0, 0.7, patient.size)
    between = np.bincount(patient, alliance) / np.bincount(patient)
    within = alliance - between[patient]
    within_lag = np.r_[np.nan, within[:-1]]
    within_lag[session == 1] = np.nan
    cov = np.array([[3.0**2, -0.3 * 3.0 * 0.3], [-0.3 * 3.0 * 0.3, 0.3**2]])
    effects = rng.multivariate_normal(np.zeros(2), cov, size=n_patients)
    therapist_effect = rng.normal(0.0, 1.0, n_therapists)
    y = (
        15.0
        - 0.8 * np.nan_to_num(within_lag)
        - 1.2 * between[patient]
        - 0.5 * session
        + effects[patient, 0]
        + effects[patient, 1] * session
        + therapist_effect[therapist]
        + rng.normal(0.0, 2.0, patient.size)
    )
    return pd.DataFrame(
        {
            "therapist_id": therapist,
            "patient_id": patient,
            "session": session,
            "x_within_lag": np.round(within_lag, 6),
            "x_between": np.round(between[patient], 6),
            "y": np.round(y, 6),
        }
    )


def _max_rss_mb(stderr: str) -> float | None:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return int(match.group(1)) / 1024 if match else None


def _run(command: list[str], timeout: float | None = None) -> dict | None:
    """Run a child under ``/usr/bin/time -v``; its last stdout line is a JSON record."""
    env = {**os.environ, **SINGLE_THREAD_ENV}
    wrapped = [TIME_BINARY, "-v", *command] if Path(TIME_BINARY).exists() else command
    try:
        out = subprocess.run(wrapped, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"timeout": True}
    if out.returncode != 0:
        print(f"note: {command[0]} failed: {out.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    record = json.loads(out.stdout.strip().splitlines()[-1])
    record["max_rss_mb"] = _max_rss_mb(out.stderr)
    return record


def run_engine(csv: Path, nested: bool, check: bool, trace: bool) -> dict | None:
    """Fit with helpers.engine in a fresh interpreter."""
    flags = ["1" if nested else "0", "1" if check else "0", "1" if trace else "0"]
    return _run([sys.executable, "-c", ENGINE_CHILD, str(csv), *flags])


def run_statsmodels(csv: Path, trace: bool, timeout: float) -> dict | None:
    """Fit the two-level model with statsmodels' MixedLM in a fresh interpreter."""
    return _run(
        [sys.executable, "-c", STATSMODELS_CHILD, str(csv), "1" if trace else "0"],
        timeout=timeout,
    )


def run_lme4(csv: Path, nested: bool, workdir: Path) -> dict | None:
    """Fit with lme4 (default lmerControl) via Rscript; None without R."""
    if shutil.which("Rscript") is None:
        return None
    script = workdir / "fit.R"
    script.write_text(R_FIT)
    return _run(["Rscript", str(script), str(csv), "1" if nested else "0"])


def run_bootstrap(csv: Path, replicates: int) -> dict | None:
    """Time a parametric bootstrap of the two-level model with the engine (fresh process)."""
    return _run([sys.executable, "-c", BOOTSTRAP_CHILD, str(csv), str(replicates)])


def run_r_bootstrap(csv: Path, replicates: int, workdir: Path) -> dict | None:
    """Time lme4's bootMer on the same two-level model; None without R."""
    if shutil.which("Rscript") is None or replicates <= 0:
        return None
    script = workdir / "boot.R"
    script.write_text(R_BOOT)
    return _run(["Rscript", str(script), str(csv), str(replicates)])


#: The simulation's truth (see :func:`simulate_sessions`), three-level model.
TRUTH = {
    "(Intercept)": 15.0,
    "x_within_lag": -0.8,
    "x_between": -1.2,
    "session": -0.5,
    "sd patient (Intercept)": 3.0,
    "sd patient session": 0.3,
    "cor patient": -0.3,
    "sd therapist": 1.0,
    "sigma": 2.0,
}


def truth_table(engine: dict, n_rows: int) -> str:
    """Markdown table of the three-level engine estimates against the simulation truth."""
    estimates = {
        **{k: (engine["estimate"][k], engine["se"][k]) for k in [*FIXED, "(Intercept)"]},
        "sd patient (Intercept)": (engine["sds"]["patient_id"][0], None),
        "sd patient session": (engine["sds"]["patient_id"][1], None),
        "cor patient": (engine["cor_patient"], None),
        "sd therapist": (engine["sds"]["therapist_id"][0], None),
        "sigma": (engine["sigma"], None),
    }
    lines = [
        f"Known truth, three-level model, {n_rows:,} rows:",
        "",
        "| quantity | truth | estimate | SE |",
        "|---|---|---|---|",
    ]
    for name, truth in TRUTH.items():
        value, se = estimates[name]
        lines.append(f"| {name} | {truth:g} | {value:.4f} | {'' if se is None else f'{se:.4f}'} |")
    return "\n".join(lines)


def _cell(record: dict | None, key: str, fmt: str) -> str:
    if record is None:
        return "n/a"
    if record.get("timeout"):
        return "timeout"
    if record.get("skipped"):
        return "skipped"
    value = record.get(key)
    return "n/a" if value is None else format(value, fmt)


def _ratio(a: dict | None, b: dict | None) -> str:
    if not a or not b or "seconds" not in a or "seconds" not in b:
        return "n/a"
    return f"{a['seconds'] / max(b['seconds'], 1e-3):.2f}"


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,100000,1000000", help="rows, comma-sep.")
    parser.add_argument("--quick", action="store_true", help="2k and 20k rows, 100 replicates")
    parser.add_argument(
        "--sm-max-rows", type=int, default=10**9, help="skip statsmodels above this many rows"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="statsmodels time limit, s")
    parser.add_argument("--bootstrap", type=int, default=1000, help="engine replicates")
    parser.add_argument("--bootstrap-rows", type=int, default=20_000)
    parser.add_argument("--r-bootstrap", type=int, default=100, help="lme4 bootMer replicates")
    parser.add_argument("--json", type=Path, help="also write all records to this file")
    args = parser.parse_args(argv)
    sizes = [2000, 20000] if args.quick else [int(s) for s in args.sizes.split(",")]
    replicates = 100 if args.quick else args.bootstrap
    if shutil.which("Rscript") is None:
        print("note: Rscript not found; lme4 columns are skipped.", file=sys.stderr)

    results = []
    sm_timed_out = False
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for n_rows in sizes:
            csv = workdir / f"sessions_{n_rows}.csv"
            simulate_sessions(n_rows).to_csv(csv, index=False)
            for nested in (False, True):
                row = {"rows": n_rows, "nested": nested}
                row["engine"] = run_engine(csv, nested, check=True, trace=False)
                row["engine_nocheck"] = run_engine(csv, nested, check=False, trace=False)
                row["engine_mem"] = run_engine(csv, nested, check=True, trace=True)
                row["lme4"] = run_lme4(csv, nested, workdir)
                if nested:
                    row["sm"] = row["sm_mem"] = None
                elif n_rows > args.sm_max_rows or sm_timed_out:
                    row["sm"] = row["sm_mem"] = {"skipped": True}
                else:
                    row["sm"] = run_statsmodels(csv, trace=False, timeout=args.timeout)
                    sm_timed_out = row["sm"] is None or bool(row["sm"].get("timeout"))
                    row["sm_mem"] = (
                        {"skipped": True}
                        if sm_timed_out
                        else run_statsmodels(csv, trace=True, timeout=args.timeout * 2)
                    )
                results.append(row)
                print(f"done: {n_rows} rows, nested={nested}", file=sys.stderr)
        boot_csv = workdir / "bootstrap.csv"
        simulate_sessions(args.bootstrap_rows, seed=SEED + 1).to_csv(boot_csv, index=False)
        boot = run_bootstrap(boot_csv, replicates)
        r_boot = run_r_bootstrap(boot_csv, args.r_bootstrap, workdir)

    print(
        "| model | rows | nobs | engine s | engine s (no 2nd start) | lme4 s | "
        "engine / lme4 | statsmodels s | evaluations | logLik engine - lme4 | "
        "engine tracemalloc MiB | statsmodels tracemalloc MiB | lme4 gc max MiB | "
        "max RSS MiB engine / statsmodels / lme4 |"
    )
    print("|" + "---|" * 14)
    for row in results:
        eng, lme4, sm = row["engine"], row["lme4"], row["sm"]
        gap = (
            f"{eng['loglik'] - lme4['loglik']:.1e}" if eng and lme4 and "loglik" in lme4 else "n/a"
        )
        rss = " / ".join(
            _cell(r, "max_rss_mb", ".0f") if r is not None else "-" for r in (eng, sm, lme4)
        )
        cells = [
            "3-level" if row["nested"] else "2-level",
            f"{row['rows']:,}",
            _cell(eng, "nobs", ","),
            _cell(eng, "seconds", ".2f"),
            _cell(row["engine_nocheck"], "seconds", ".2f"),
            _cell(lme4, "seconds", ".2f"),
            _ratio(eng, lme4),
            "-" if sm is None else _cell(sm, "seconds", ".1f"),
            _cell(eng, "evaluations", "d"),
            gap,
            _cell(row["engine_mem"], "peak_mb", ".0f"),
            "-" if row["sm_mem"] is None else _cell(row["sm_mem"], "peak_mb", ".0f"),
            _cell(lme4, "gc_max_mb", ".0f"),
            rss,
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    largest = [r for r in results if r["rows"] == max(sizes) and r["nested"] and r["engine"]]
    if largest:
        print(truth_table(largest[0]["engine"], max(sizes)))
        print()
    load = os.getloadavg()
    print(f"Load average (1, 5, 15 min) at the end: {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}")
    print()
    if not boot or "seconds" not in boot:
        print("bootstrap failed")
        return
    per_fit = boot["seconds"] / boot["replicates"]
    print(
        f"Parametric bootstrap, two-level model, {boot['nobs']:,} rows: engine "
        f"{boot['replicates']} replicates in {boot['seconds']:.1f} s ({per_fit * 1e3:.0f} ms "
        f"per replicate, {boot['evaluations_per_replicate']:.0f} deviance evaluations each; "
        f"{boot['not_converged']} not converged, {boot['singular']} singular)."
    )
    if r_boot and "seconds" in r_boot:
        r_per = r_boot["seconds"] / r_boot["replicates"]
        print(
            f"lme4 bootMer: {r_boot['replicates']} replicates in {r_boot['seconds']:.1f} s "
            f"({r_per * 1e3:.0f} ms per replicate; {r_per * boot['replicates']:.0f} s for "
            f"{boot['replicates']}); engine / lme4 per replicate: {per_fit / r_per:.2f}."
        )
    print(
        "Bootstrap SD of fixed effects vs model SE:",
        {k: f"{boot['boot_se'][k]:.4f} / {boot['model_se'][k]:.4f}" for k in boot["boot_se"]},
    )
    if args.json:
        args.json.write_text(
            json.dumps({"fits": results, "bootstrap": boot, "r_bootstrap": r_boot}, indent=1)
        )


if __name__ == "__main__":
    main()
