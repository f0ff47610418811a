"""Benchmark the power simulation (helpers.power) against lme4's simulate() + refit() loop.

Design: 20 therapists x 8 patients (Poisson caseloads) x up to 12 sessions, the demo's
effects, dropout and missingness (``Design(n_therapists=20, patients_per_therapist=8,
max_sessions=12)``).

Python: ``power_curve`` on that one cell, ``--reps`` replicates, with 1 and with 2 local
worker processes (joblib; the pool is started before timing), Satterthwaite df and z tests.
Every replicate is a new study (new caseloads, dropout, missingness and responses),
simulated, turned into the model's features and fitted by REML.

R (when ``Rscript`` with lme4 is installed): the loop simr runs — ``lmer`` once on
replicate 0 of the same cell, then ``simulate()`` + ``refit()`` ``--r-reps`` times (the design
is fixed: only the response is redrawn, which favours lme4), and the same loop with
lmerTest's Satterthwaite ``summary`` when lmerTest is installed.  Times vary with the
machine and its load: nothing here asserts a time.

``--size N`` adds a type I error check: N replicates with both alliance effects (and the
reverse path) at 0; the rejection rates should lie within Monte Carlo error of alpha.

Usage::

    .venv/bin/python bench/bench_power.py
    .venv/bin/python bench/bench_power.py --reps 200 --r-reps 200 --size 2000
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from helpers.power import Design, power_curve, simulate_sessions  # noqa: E402

DESIGN = Design(n_therapists=20, patients_per_therapist=8, max_sessions=12)

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d <- d[complete.cases(d[, c("outcome", "alliance_within_lag", "alliance_between_c")]), ]
n <- as.integer(args[2])
f <- outcome ~ alliance_within_lag + alliance_between_c + session_c +
  (1 + session_c || patient_id) + (1 | therapist_id)
fit <- lmer(f, d)
set.seed(1)
t0 <- proc.time()[["elapsed"]]
for (i in seq_len(n)) {
  y <- simulate(fit)[[1]]
  r <- refit(fit, y)
  s <- coef(summary(r))
}
lme4_s <- proc.time()[["elapsed"]] - t0
satt_s <- NA
if (requireNamespace("lmerTest", quietly = TRUE)) {
  fit2 <- lmerTest::lmer(f, d)
  t0 <- proc.time()[["elapsed"]]
  for (i in seq_len(n)) {
    y <- simulate(fit2)[[1]]
    r <- lmerTest::as_lmerModLmerTest(refit(fit2, y))
    s <- coef(summary(r, ddf = "Satterthwaite"))
  }
  satt_s <- proc.time()[["elapsed"]] - t0
}
cat(sprintf('{"n": %d, "lme4_seconds": %.4f, "lmertest_seconds": %s, "lme4": "%s"}\n',
            n, lme4_s, ifelse(is.na(satt_s), "null", sprintf("%.4f", satt_s)),
            as.character(packageVersion("lme4"))))
"""


def python_rate(n_reps: int, n_jobs: int, ddf: str) -> dict:
    if n_jobs > 1:  # start the worker pool before timing
        power_curve(DESIGN.replace(n_therapists=3), n_reps=n_jobs, n_jobs=n_jobs, progress=False)
    start = time.perf_counter()
    table = power_curve(DESIGN, n_reps=n_reps, seed=1, ddf=ddf, n_jobs=n_jobs, progress=False)
    wall = time.perf_counter() - start
    return {
        "workers": n_jobs,
        "ddf": ddf,
        "fits": n_reps,
        "wall_s": round(wall, 2),
        "fits_per_s": round(n_reps / wall, 2),
        "fits_per_s_per_core": round(n_reps / wall / n_jobs, 2),
        "power": dict(zip(table["term"], table["power"].round(3), strict=True)),
    }


def r_rate(n_reps: int) -> dict | None:
    if shutil.which("Rscript") is None:
        print("Rscript not found: the lme4 comparison is skipped.")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rep0.csv"
        simulate_sessions(DESIGN, seed=1, replicate=0).to_csv(data, index=False)
        script = Path(tmp) / "loop.R"
        script.write_text(R_SCRIPT, encoding="utf-8")
        run = subprocess.run(
            ["Rscript", str(script), str(data), str(n_reps)],
            capture_output=True,
            text=True,
            check=False,
        )
    if run.returncode != 0:
        print(f"the R loop failed (lme4 missing?): {run.stderr.strip()[:300]}")
        return None
    out = json.loads(run.stdout.strip().splitlines()[-1])
    out["lme4_fits_per_s"] = round(n_reps / out["lme4_seconds"], 2)
    if out["lmertest_seconds"] is not None:
        out["lmertest_fits_per_s"] = round(n_reps / out["lmertest_seconds"], 2)
    return out


def size_check(n_reps: int, n_jobs: int) -> list[dict]:
    null = DESIGN.replace(within_effect=0.0, between_effect=0.0, reverse_path_effect=0.0)
    table = power_curve(null, n_reps=n_reps, seed=2, n_jobs=n_jobs, progress=True)
    rows = []
    for row in table.itertuples():
        se = math.sqrt(0.05 * 0.95 / row.n_valid)
        rows.append(
            {
                "term": row.term,
                "rejection_rate": round(row.power, 4),
                "mc_ci": [round(row.power_ci_low, 4), round(row.power_ci_high, 4)],
                "within_2_mc_se_of_alpha": abs(row.power - 0.05) <= 2 * se,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=60, help="Python replicates per run")
    parser.add_argument("--r-reps", type=int, default=60, help="lme4 refits")
    parser.add_argument("--size", type=int, default=0, help="type I error check replicates")
    parser.add_argument("--no-r", action="store_true", help="skip the lme4 loop")
    args = parser.parse_args()
    results = {"design": "20 therapists x 8 patients (Poisson) x 12 sessions"}
    results["python"] = [
        python_rate(args.reps, 1, "satterthwaite"),
        python_rate(args.reps, 1, "asymptotic"),
        python_rate(args.reps, 2, "satterthwaite"),
    ]
    if not args.no_r:
        results["lme4"] = r_rate(args.r_reps)
    if args.size:
        results["type_i_error"] = size_check(args.size, 2)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
