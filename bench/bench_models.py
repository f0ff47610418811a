"""Benchmark fit_mixed against lme4 on the main session-level model.

Model: ``y ~ x_within_lag + x_between + session + (1 + session | patient_id)`` on data
simulated with numpy (10 sessions per patient; the lag leaves the first session of each
patient missing, so about 10% of rows are dropped as lme4 would).

For each size the fit runs in a fresh Python process so that peak memory (``ru_maxrss``)
belongs to that fit alone; lme4 is timed on the same data via ``Rscript`` when R and lme4
are installed (skipped with a note otherwise).  ``fit_mixed(engine="auto")`` (the vectorised
engine, :mod:`helpers.engine`) is compared with the statsmodels path
(``engine="statsmodels"``; default optimisers and lbfgs only), which is run only up to
:data:`STATSMODELS_MAX_ROWS` rows.  Times vary with the machine: nothing here asserts a time.

Usage::

    .venv/bin/python bench/bench_models.py                  # 2k, 20k and 100k rows
    .venv/bin/python bench/bench_models.py --quick          # 2k and 5k rows
    .venv/bin/python bench/bench_models.py --sizes 2000,50000
    .venv/bin/python bench/bench_models.py --engine auto    # engine path only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

FORMULA = "y ~ x_within_lag + x_between + session + (1 + session | patient_id)"
SESSIONS_PER_PATIENT = 10
SEED = 12345
#: The statsmodels path is not run above this many rows (minutes per fit).
STATSMODELS_MAX_ROWS = 20_000
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
}

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$patient_id <- factor(d$patient_id)
invisible(gc(reset = TRUE))
elapsed <- system.time(
  fit <- lmer(y ~ x_within_lag + x_between + session + (1 + session | patient_id),
              data = d, REML = TRUE)
)[["elapsed"]]
g <- gc()
mem <- sum(g[, ncol(g)])
cat(sprintf('{"seconds": %.6f, "loglik": %.10f, "max_mem_mb": %.3f, "nobs": %d}\n',
            elapsed, as.numeric(logLik(fit)), mem, nobs(fit)))
"""

CHILD_CODE = r"""
import json, resource, sys, time, warnings
import pandas as pd
from helpers.models import fit_mixed
data = pd.read_csv(sys.argv[1])
optimizers = tuple(sys.argv[3].split(","))
engine = sys.argv[4]
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    start = time.perf_counter()
    result = fit_mixed(data, sys.argv[2], optimizers=optimizers, engine=engine)
    seconds = time.perf_counter() - start
rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({
    "seconds": seconds, "loglik": result.loglik, "nobs": result.nobs,
    "rss_before_mb": rss_before / 1024, "rss_peak_mb": rss_after / 1024,
    "converged": result.converged, "optimizer": result.optimizer, "engine": result.engine,
    "max_gap": float(result.attempts["loglik_gap"].max()),
}))
"""


def simulate_sessions(n_rows: int, seed: int = SEED) -> pd.DataFrame:
    """Simulate ``n_rows`` patient-sessions for the benchmark model.

    Parameters
    ----------
    n_rows : int
        Approximate number of rows (rounded to whole patients of 10 sessions).
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    pandas.DataFrame
        ``patient_id, session, x_within_lag, x_between, y``; ``x_within_lag`` is missing
        at each patient's first session.
    """
    rng = np.random.default_rng(seed)
    n_patients = max(2, n_rows // SESSIONS_PER_PATIENT)
    patient = np.repeat(np.arange(n_patients), SESSIONS_PER_PATIENT)
    session = np.tile(np.arange(1, SESSIONS_PER_PATIENT + 1), n_patients)
    level = rng.normal(5.0, 0.8, n_patients)
    alliance = level[patient] + rng.normal(0.0, 0.7, patient.size)
    between = pd.Series(alliance).groupby(patient).transform("mean").to_numpy()
    within = alliance - between
    within_lag = pd.Series(within).groupby(patient).shift(1).to_numpy()
    intercepts = rng.normal(0.0, 3.0, n_patients)
    slopes = rng.normal(0.0, 0.3, n_patients)
    # Correlated patient intercepts and slopes (corr -0.3).
    slopes = slopes - 0.3 * 0.3 / 3.0 * intercepts
    y = (
        15.0
        - 0.8 * np.nan_to_num(within_lag)
        - 1.2 * between
        - 0.5 * session
        + intercepts[patient]
        + slopes[patient] * session
        + rng.normal(0.0, 2.0, patient.size)
    )
    return pd.DataFrame(
        {
            "patient_id": patient,
            "session": session,
            "x_within_lag": within_lag,
            "x_between": between,
            "y": y,
        }
    )


def run_fit_mixed(csv: Path, optimizers: str, engine: str = "statsmodels") -> dict:
    """Fit in a fresh interpreter and return its timing and memory record."""
    env = {**os.environ, **SINGLE_THREAD_ENV}
    out = subprocess.run(
        [sys.executable, "-c", CHILD_CODE, str(csv), FORMULA, optimizers, engine],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_lme4(csv: Path, workdir: Path) -> dict | None:
    """Time lme4's ``lmer`` (default settings, REML) on the same CSV; None without R."""
    if shutil.which("Rscript") is None:
        return None
    script = workdir / "bench_lme4.R"
    script.write_text(R_SCRIPT)
    env = {**os.environ, **SINGLE_THREAD_ENV}
    out = subprocess.run(
        ["Rscript", str(script), str(csv)], capture_output=True, text=True, env=env
    )
    if out.returncode != 0:
        print(f"note: lme4 run failed ({out.stderr.strip()[:200]})", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _seconds(record: dict | None, digits: int = 1) -> str:
    return "n/a" if record is None else f"{record['seconds']:.{digits}f}"


def _ratio(numerator: dict | None, denominator: dict | None) -> str:
    if numerator is None or denominator is None:
        return "n/a"
    return f"{numerator['seconds'] / max(denominator['seconds'], 1e-3):.2g}x"


def _gap(a: dict | None, b: dict | None) -> str:
    return "n/a" if a is None or b is None else f"{a['loglik'] - b['loglik']:+.2e}"


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,100000", help="comma-separated rows")
    parser.add_argument("--quick", action="store_true", help="only 2000 and 5000 rows")
    parser.add_argument(
        "--engine",
        choices=("both", "auto", "statsmodels"),
        default="both",
        help="fit_mixed paths to time (statsmodels only up to 20k rows)",
    )
    args = parser.parse_args(argv)
    sizes = [2000, 5000] if args.quick else [int(s) for s in args.sizes.split(",")]

    rows = []
    have_r = shutil.which("Rscript") is not None
    if not have_r:
        print("note: Rscript not found; lme4 columns are skipped.", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for n_rows in sizes:
            csv = workdir / f"sessions_{n_rows}.csv"
            simulate_sessions(n_rows).to_csv(csv, index=False)
            auto = full = single = None
            if args.engine in ("both", "auto"):
                auto = run_fit_mixed(csv, "lbfgs", engine="auto")
            if args.engine in ("both", "statsmodels") and n_rows <= STATSMODELS_MAX_ROWS:
                full = run_fit_mixed(csv, "lbfgs,bfgs,nm+lbfgs")
                single = run_fit_mixed(csv, "lbfgs")
            lme4 = run_lme4(csv, workdir) if have_r else None
            rows.append((n_rows, auto, full, single, lme4))
            print(f"done: {n_rows} rows", file=sys.stderr)

    header = (
        "| rows | nobs | fit_mixed auto (engine) s | statsmodels default s | "
        "statsmodels lbfgs only s | lme4 s | statsmodels default / auto | auto / lme4 | "
        "Python peak RSS MiB auto / statsmodels | lme4 max mem MiB | "
        "logLik auto - statsmodels | logLik auto - lme4 |"
    )
    print(header)
    print("|" + "---|" * 12)
    for n_rows, auto, full, single, lme4 in rows:
        any_fit = auto or full
        rss = " / ".join("-" if r is None else f"{r['rss_peak_mb']:.0f}" for r in (auto, full))
        cells = [
            f"{n_rows:,}",
            f"{any_fit['nobs']:,}",
            _seconds(auto, 2),
            _seconds(full),
            _seconds(single),
            _seconds(lme4, 2),
            _ratio(full, auto),
            _ratio(auto, lme4),
            rss,
            "n/a" if lme4 is None else f"{lme4['max_mem_mb']:.0f}",
            _gap(auto, full),
            _gap(auto, lme4),
        ]
        print("| " + " | ".join(cells) + " |")
    print(
        "\nfit_mixed auto: the vectorised engine (two optimiser starts, Newton polish). "
        "statsmodels: REML, default optimisers (lbfgs, bfgs, nm+lbfgs) then Newton "
        f"refinement, not run above {STATSMODELS_MAX_ROWS:,} rows; peak RSS is the whole "
        "Python process (interpreter, pandas, statsmodels and data included). lme4: lmer() "
        "with default control, REML; memory is R's gc() 'max used'. One BLAS thread "
        "everywhere."
    )
    for n_rows, auto, full, _, _ in rows:
        for name, record in (("auto", auto), ("statsmodels", full)):
            if record is None:
                continue
            print(
                f"{n_rows:,} rows, {name}: fitted by {record['engine']}, kept "
                f"{record['optimizer']}, converged={record['converged']}, largest loglik gap "
                f"between runs {record['max_gap']:.3g}"
            )


if __name__ == "__main__":
    main()
