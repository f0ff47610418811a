"""Type I error of a between-therapist effect with few therapists: z vs Satterthwaite vs KR.

Simulates studies with ``--therapists`` therapists (half with x = 1, half x = 0,
a therapist-level predictor whose true effect is 0), ``--patients`` patients per
therapist and ``--sessions`` sessions per patient; therapist intercept SD 1,
patient intercept SD 1, residual SD 2.  Each study is fitted by REML with
``y ~ x + (1 | therapist) + (1 | patient)`` and ``x`` is tested three ways at
alpha = .05.  Prints the rejection rate of each test with its exact binomial
(Clopper–Pearson) 95% interval.

Usage::

    .venv/bin/python bench/ddf_type1.py --reps 2000 --therapists 10
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from helpers.models import fit_mixed, with_ddf

FORMULA = "y ~ x + (1 | therapist) + (1 | patient)"
METHODS = ("asymptotic", "satterthwaite", "kenward-roger")


def simulate_study(rng: np.random.Generator, therapists: int, patients: int, sessions: int):
    """One study with a null therapist-level effect of ``x``."""
    therapist = np.repeat(np.arange(therapists), patients * sessions)
    patient = np.repeat(np.arange(therapists * patients), sessions)
    x = (therapist % 2).astype(float)
    y = (
        rng.normal(0, 1, therapists)[therapist]
        + rng.normal(0, 1, therapists * patients)[patient]
        + rng.normal(0, 2, therapist.size)
    )
    return pd.DataFrame(
        {"y": y, "x": x, "therapist": therapist.astype(str), "patient": patient.astype(str)}
    )


def p_values(data: pd.DataFrame) -> dict[str, float]:
    """The p-value of ``x`` under each method (one fit)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_mixed(data, FORMULA)
        return {m: float(with_ddf(fit, m).fixed.loc["x", "p"]) for m in METHODS}


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for k successes in n trials."""
    a = (1 - level) / 2
    low = stats.beta.ppf(a, k, n - k + 1) if k > 0 else 0.0
    high = stats.beta.ppf(1 - a, k + 1, n - k) if k < n else 1.0
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--therapists", type=int, default=10)
    parser.add_argument("--patients", type=int, default=6)
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    rows = [
        p_values(simulate_study(rng, args.therapists, args.patients, args.sessions))
        for _ in range(args.reps)
    ]
    seconds = time.perf_counter() - start
    table = pd.DataFrame(rows)
    print(
        f"{args.reps} studies, {args.therapists} therapists x {args.patients} patients x "
        f"{args.sessions} sessions, null therapist-level effect ({seconds:.0f} s)"
    )
    print("| test | rejections | rate | 95% interval | .05 inside |")
    print("|---|---:|---:|---|---|")
    for method in METHODS:
        k = int((table[method] < 0.05).sum())
        low, high = clopper_pearson(k, args.reps)
        inside = "yes" if low <= 0.05 <= high else "no"
        print(f"| {method} | {k} | {k / args.reps:.4f} | {low:.4f}–{high:.4f} | {inside} |")


if __name__ == "__main__":
    main()
