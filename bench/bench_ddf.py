"""Benchmark Satterthwaite and Kenward-Roger df (helpers.ddf) against lmerTest and pbkrtest.

Two data sets, one model each:

* ``demo``: notebook 03's main model on the demo study
  (``tests/reference/demo_model_data.csv``, 4,179 rows, 3,459 complete),
  ``outcome ~ alliance_within_lag + alliance_between_c + session_c
  + (1 + session_c || patient_id) + (1 | therapist_id)``;
* ``sim20k``: 20,000 simulated rows (50 therapists x 40 patients x 10 sessions), the same
  structure ``y ~ x_within + x_between + session + (1 + session || patient_id)
  + (1 | therapist_id)``.

Python: the model is fitted once (``fit_mixed``, engine path), then
``with_ddf(fit, "satterthwaite")`` and ``with_ddf(fit, "kenward-roger")`` are timed each
from scratch (median of ``--repeat`` runs).  R (when ``Rscript`` with lmerTest and pbkrtest is
installed; skipped with a note otherwise): the lme4 fit, then lmerTest's Satterthwaite
(``as_lmerModLmerTest``: numDeriv Hessian and Jacobian, plus ``summary``) and pbkrtest's
Kenward-Roger (``summary(fit, ddf = "Kenward-Roger")``, i.e. ``vcovAdj`` and ``Lb_ddf`` per
coefficient).  pbkrtest builds dense ``n x n`` matrices (one per variance parameter), so
its Kenward-Roger is not run above :data:`R_KR_MAX_ROWS` rows (20,000 rows would need
> 15 GB).  The largest df difference between the two is reported.  Times vary with the
machine: nothing here asserts a time.

Usage::

    .venv/bin/python bench/bench_ddf.py
    .venv/bin/python bench/bench_ddf.py --no-r --repeat 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from helpers.models import fit_mixed, with_ddf  # noqa: E402

DEMO_FORMULA = (
    "outcome ~ alliance_within_lag + alliance_between_c + session_c"
    " + (1 + session_c || patient_id) + (1 | therapist_id)"
)
SIM_FORMULA = (
    "y ~ x_within + x_between + session + (1 + session || patient_id) + (1 | therapist_id)"
)
#: pbkrtest's Kenward-Roger is skipped above this many rows (dense n x n matrices).
R_KR_MAX_ROWS = 6_000

R_SCRIPT = r"""
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(pbkrtest)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], colClasses = c(therapist_id = "character", patient_id = "character"))
d$therapist_id <- factor(d$therapist_id); d$patient_id <- factor(d$patient_id)
form <- as.formula(args[2]); run_kr <- args[3] == "1"
t_fit <- system.time(fit <- lme4::lmer(form, data = d, REML = TRUE))[["elapsed"]]
t_sat <- system.time({
  m <- lmerTest::as_lmerModLmerTest(fit)
  sat <- summary(m, ddf = "Satterthwaite")$coefficients
})[["elapsed"]]
out <- list(fit = t_fit, satterthwaite = t_sat, df_satt = unname(sat[, "df"]),
            terms = rownames(sat))
if (run_kr) {
  out$kenward_roger <- system.time(
    kr <- summary(m, ddf = "Kenward-Roger")$coefficients)[["elapsed"]]
  out$df_kr <- unname(kr[, "df"])
}
cat(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA))
"""


def simulate(seed: int = 20250117) -> pd.DataFrame:
    """20,000 rows: 50 therapists x 40 patients x 10 sessions, nested random effects."""
    rng = np.random.default_rng(seed)
    n_t, n_p, n_s = 50, 40, 10
    therapist = np.repeat(np.arange(n_t), n_p * n_s)
    patient = np.repeat(np.arange(n_t * n_p), n_s)
    session = np.tile(np.arange(n_s, dtype=float), n_t * n_p)
    x_between = rng.normal(0, 1, n_t * n_p)[patient]
    x_within = rng.normal(0, 1, len(patient))
    y = (
        10
        + 0.5 * x_within
        + 1.0 * x_between
        - 0.3 * session
        + rng.normal(0, 1.0, n_t)[therapist]
        + rng.normal(0, 2.0, n_t * n_p)[patient]
        + rng.normal(0, 0.25, n_t * n_p)[patient] * session
        + rng.normal(0, 1.5, len(patient))
    )
    return pd.DataFrame(
        {
            "therapist_id": [f"T{t:02d}" for t in therapist],
            "patient_id": [f"T{t:02d}P{p:03d}" for t, p in zip(therapist, patient, strict=True)],
            "session": session,
            "x_within": np.round(x_within, 6),
            "x_between": np.round(x_between, 6),
            "y": np.round(y, 6),
        }
    )


def time_python(data: pd.DataFrame, formula: str, repeat: int) -> dict:
    """Fit once, then time Satterthwaite and Kenward-Roger each from scratch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        fit = fit_mixed(data, formula)
        out: dict = {"fit": time.perf_counter() - start, "nobs": fit.nobs}
    for method in ("satterthwaite", "kenward-roger"):
        times = []
        for _ in range(repeat):
            fresh = with_ddf(fit, "asymptotic")
            fresh.small_sample = None
            start = time.perf_counter()
            table = with_ddf(fresh, method).fixed
            times.append(time.perf_counter() - start)
        out[method] = float(np.median(times))
        out[f"df_{method}"] = table["df"].to_numpy()
    return out


def time_r(data: pd.DataFrame, formula: str, run_kr: bool) -> dict | str:
    """lmerTest / pbkrtest timings via Rscript, or why they were skipped."""
    if shutil.which("Rscript") is None:
        return "Rscript not found"
    with tempfile.TemporaryDirectory() as tmp:
        csv, script = Path(tmp) / "data.csv", Path(tmp) / "bench.R"
        data.to_csv(csv, index=False)
        script.write_text(R_SCRIPT)
        run = subprocess.run(
            ["Rscript", str(script), str(csv), formula, "1" if run_kr else "0"],
            capture_output=True,
            text=True,
            check=False,
        )
    if run.returncode != 0:
        return f"R failed: {run.stderr.strip()[-300:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-r", action="store_true", help="skip lmerTest / pbkrtest")
    parser.add_argument("--repeat", type=int, default=3, help="Python repetitions (median)")
    args = parser.parse_args()
    demo = pd.read_csv(
        ROOT / "tests" / "reference" / "demo_model_data.csv",
        keep_default_na=False,
        na_values=["NA"],
        dtype={"therapist_id": str, "patient_id": str},
    )
    cases = [("demo", demo, DEMO_FORMULA), ("sim20k", simulate(), SIM_FORMULA)]
    for name, data, formula in cases:
        py = time_python(data, formula, args.repeat)
        print(f"{name}: {py['nobs']} rows; Python fit {py['fit']:.2f} s")
        print(
            f"  Python  Satterthwaite {py['satterthwaite']:.3f} s, "
            f"Kenward-Roger {py['kenward-roger']:.3f} s"
        )
        if args.no_r:
            continue
        r = time_r(data, formula, run_kr=len(data) <= R_KR_MAX_ROWS)
        if isinstance(r, str):
            print(f"  R       skipped: {r}")
            continue
        diff = np.max(np.abs(py["df_satterthwaite"] / np.asarray(r["df_satt"]) - 1))
        line = f"  R       fit {r['fit']:.2f} s, lmerTest Satterthwaite {r['satterthwaite']:.3f} s"
        if "kenward_roger" in r:
            line += f", pbkrtest Kenward-Roger {r['kenward_roger']:.3f} s"
            kr = np.max(np.abs(py["df_kenward-roger"] / np.asarray(r["df_kr"]) - 1))
            diff_text = f"max rel df diff: Satterthwaite {diff:.1e}, Kenward-Roger {kr:.1e}"
        else:
            line += f", pbkrtest Kenward-Roger skipped (> {R_KR_MAX_ROWS} rows)"
            diff_text = f"max rel df diff: Satterthwaite {diff:.1e}"
        print(line)
        print(f"  {diff_text}")


if __name__ == "__main__":
    main()
