"""Type I error of helpers.power's tests: rejection rates with both alliance effects at 0.

One design cell, the benchmark's 20 therapists x 8 patients (Poisson caseloads) x up to
12 sessions, with ``within_effect = between_effect = 0`` and no reverse path (symptoms ->
next alliance; with it the between term picks up the feedback, see ``helpers.power``),
the demo's dropout, missingness and therapist share otherwise.  ``power_curve`` fits every
replicate (REML, Satterthwaite df, alpha .05, fixed seed) on 2 local workers; the script
prints each term's rejection rate with its exact (Clopper-Pearson) binomial 95% interval and
whether .05 lies inside, as a Markdown table (README, "Planning a study").

Usage::

    PYTHONPATH=src .venv/bin/python bench/power_type1.py              # 2,000 replicates
    PYTHONPATH=src .venv/bin/python bench/power_type1.py --reps 4000 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from helpers.power import Design, power_curve  # noqa: E402

NULL = Design(
    n_therapists=20,
    patients_per_therapist=8,
    max_sessions=12,
    within_effect=0.0,
    between_effect=0.0,
    reverse_path_effect=0.0,
)
ALPHA = 0.05


def type1_table(n_reps: int, n_jobs: int, seed: int, ddf: str) -> tuple[list[dict], float]:
    start = time.perf_counter()
    table = power_curve(
        NULL, n_reps=n_reps, seed=seed, alpha=ALPHA, ddf=ddf, n_jobs=n_jobs, progress=False
    )
    wall = time.perf_counter() - start
    rows = []
    for row in table.itertuples():
        rejected = round(float(row.power) * int(row.n_valid))
        ci = stats.binomtest(rejected, row.n_valid).proportion_ci(0.95, method="exact")
        rows.append(
            {
                "term": row.term,
                "n_reps": int(row.n_reps),
                "n_valid": int(row.n_valid),
                "rejected": rejected,
                "rate": rejected / row.n_valid,
                "exact_ci": [float(ci.low), float(ci.high)],
                "alpha_inside": bool(ci.low <= ALPHA <= ci.high),
                "mean_estimate": float(row.mean_estimate),
                "empirical_sd": float(row.empirical_sd),
                "mean_se": float(row.mean_se),
                "share_singular": float(row.share_singular),
            }
        )
    return rows, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--ddf", default="satterthwaite")
    args = parser.parse_args()
    rows, wall = type1_table(args.reps, args.jobs, args.seed, args.ddf)
    print(f"design: 20 x 8 x 12, effects 0, seed {args.seed}, ddf {args.ddf}, "
          f"{args.reps} replicates, {args.jobs} workers, {wall:.0f} s wall")  # fmt: skip
    print("| term | rejected / valid | rate | exact 95% CI | .05 inside | mean SE / emp. SD |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| `{r['term']}` | {r['rejected']} / {r['n_valid']} | {r['rate']:.4f} | "
            f"[{r['exact_ci'][0]:.4f}, {r['exact_ci'][1]:.4f}] | "
            f"{'yes' if r['alpha_inside'] else 'no'} | "
            f"{r['mean_se'] / r['empirical_sd']:.3f} |"
        )
    print(json.dumps({"wall_s": round(wall, 1), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
