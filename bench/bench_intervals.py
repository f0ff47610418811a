"""Benchmark profile-likelihood intervals against lme4's ``confint(method = "profile")``.

Model: notebook 03's main model on the demo study (``tests/reference/demo_model_data.csv``,
3459 complete rows, 366 patients, 40 therapists), fitted by REML::

    outcome ~ alliance_within_lag + alliance_between_c + session_c
              + (1 + session_c || patient_id) + (1 | therapist_id)

:func:`helpers.intervals.profile_intervals` (every parameter: 3 sds, sigma, 4 fixed
effects) is timed in this process, single-threaded BLAS as in ``make``; lme4's
``confint(fit, method = "profile", oldNames = FALSE)`` is timed in the same run through
``Rscript`` when R and lme4 are installed (skipped with a note otherwise).  Both times
exclude the model fit.  The largest endpoint difference is printed too.  Times vary with
the machine: nothing here asserts a time.

Usage::

    .venv/bin/python bench/bench_intervals.py            # 3 repetitions
    .venv/bin/python bench/bench_intervals.py --repeat 1
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from helpers.intervals import profile_intervals  # noqa: E402
from helpers.models import fit_mixed  # noqa: E402

DATA = ROOT / "tests" / "reference" / "demo_model_data.csv"
FORMULA = (
    "outcome ~ alliance_within_lag + alliance_between_c + session_c"
    " + (1 + session_c || patient_id) + (1 | therapist_id)"
)

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], na.strings = "NA",
              colClasses = c(therapist_id = "character", patient_id = "character"))
fit <- lmer(as.formula(args[2]), data = d, REML = TRUE)
for (i in seq_len(as.integer(args[3]))) {
  elapsed <- system.time(
    ci <- suppressMessages(confint(fit, method = "profile", oldNames = FALSE))
  )[["elapsed"]]
  cat(sprintf("seconds,%.6f\n", elapsed))
}
write.csv(data.frame(parameter = rownames(ci), lower = ci[, 1], upper = ci[, 2]),
          stdout(), row.names = FALSE)
"""


def time_ours(repeat: int) -> tuple[list[float], pd.DataFrame]:
    data = pd.read_csv(DATA, dtype={"therapist_id": str, "patient_id": str})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_mixed(data, FORMULA)
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        table = profile_intervals(fit)
        seconds.append(time.perf_counter() - start)
    return seconds, table


def time_lme4(repeat: int) -> tuple[list[float], pd.DataFrame] | str:
    if shutil.which("Rscript") is None:
        return "Rscript not found: lme4 not timed"
    run = subprocess.run(
        ["Rscript", "-e", R_SCRIPT, str(DATA), FORMULA, str(repeat)],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        return f"Rscript failed (lme4 installed?): {run.stderr.strip()[-300:]}"
    lines = run.stdout.splitlines()
    seconds = [float(line.split(",")[1]) for line in lines if line.startswith("seconds,")]
    table = pd.read_csv(io.StringIO("\n".join(lines[len(seconds) :])))
    return seconds, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ours, table = time_ours(args.repeat)
    print(f"profile_intervals: {min(ours):.2f} s (best of {args.repeat}; all {ours})")
    lme4 = time_lme4(args.repeat)
    if isinstance(lme4, str):
        print(lme4)
        return
    seconds, ref = lme4
    print(f"lme4 confint(profile): {min(seconds):.2f} s (best of {args.repeat}; all {seconds})")
    names = table["parameter"].replace({"Intercept": "(Intercept)"})
    merged = table.assign(parameter=names).merge(ref, on="parameter", suffixes=("", "_lme4"))
    gap = (merged[["lower", "upper"]].to_numpy() - merged[["lower_lme4", "upper_lme4"]]).abs()
    print(f"largest endpoint difference: {float(gap.to_numpy().max()):.2e}")


if __name__ == "__main__":
    main()
