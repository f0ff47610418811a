"""Data and Python fits for the lme4/lmerTest power reference (tests/test_power.py).

One design cell with non-zero alliance effects is simulated ``N_REPS`` times by
:func:`helpers.power.simulate_sessions` (exactly the replicates :func:`power_curve` fits:
same seed, same cell, replicates 0..N_REPS-1).  The data go to a temporary folder, never
to the repository; R refits them (``lme4_power_reference.R``); the per-replicate results
of both and their rejection counts are then committed beside this script:

    power_reference.json            design, seed, rejection counts per term (Python, R),
                                    discordant decisions, agreement of the p-values
    power_reference_replicates.csv  replicate, term, n_obs, estimate/se/df/p of Python
                                    (power_curve) and of R (lmerTest, Satterthwaite)

Regenerate (about 2 + 3 minutes on one busy core)::

    PYTHONPATH=src python tests/reference/power/make_power_reference.py data /tmp/pref
    Rscript tests/reference/power/lme4_power_reference.R /tmp/pref
    PYTHONPATH=src python tests/reference/power/make_power_reference.py summary /tmp/pref
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

from helpers.power import ALLIANCE_TERMS, Design, power_curve, simulate_sessions

HERE = Path(__file__).resolve().parent
DESIGN = Design(n_therapists=16, patients_per_therapist=6, max_sessions=10)
SEED = 15
N_REPS = 500
ALPHA = 0.05
DDF = "satterthwaite"
COLUMNS = [
    "therapist_id",
    "patient_id",
    "session",
    "outcome",
    "alliance_within_lag",
    "alliance_between_c",
    "session_c",
]


def python_replicates(n_reps: int, out: Path, n_jobs: int = 1) -> pd.DataFrame:
    """Per-replicate rows of ``power_curve`` for replicates 0..n_reps-1 of the cell."""
    power_curve(
        DESIGN, n_reps=n_reps, seed=SEED, alpha=ALPHA, ddf=DDF, out=out, n_jobs=n_jobs,
        progress=False,
    )  # fmt: skip
    (cell,) = sorted((out / "cells").glob("*.parquet"))
    return pd.read_parquet(cell)


def write_data(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for rep in range(N_REPS):
        frame = simulate_sessions(DESIGN, seed=SEED, replicate=rep)[COLUMNS]
        frame.insert(0, "replicate", rep)
        frames.append(frame)
    pd.concat(frames, ignore_index=True).to_csv(folder / "sessions.csv", index=False)
    with tempfile.TemporaryDirectory() as tmp:
        fits = python_replicates(N_REPS, Path(tmp) / "run", n_jobs=1)
    fits.to_csv(folder / "python_fits.csv", index=False)


def summarise(folder: Path) -> None:
    py = pd.read_csv(folder / "python_fits.csv")
    r = pd.read_csv(folder / "r_fits.csv")
    cols = ["estimate", "se", "df", "p"]
    merged = py[["replicate", "term", "n_obs", *cols]].merge(
        r[["replicate", "term", "n_obs", "singular", *cols]],
        on=["replicate", "term"],
        suffixes=("_python", "_r"),
        validate="one_to_one",
    )
    terms = {}
    for term in ALLIANCE_TERMS:
        part = merged.loc[merged["term"] == term]
        rej_py = part["p_python"] < ALPHA
        rej_r = part["p_r"] < ALPHA
        d_est = (part["estimate_python"] - part["estimate_r"]).abs()
        d_p = (part["p_python"] - part["p_r"]).abs()
        terms[term] = {
            "n": len(part),
            "rejected_python": int(rej_py.sum()),
            "rejected_r": int(rej_r.sum()),
            "power_python": float(rej_py.mean()),
            "power_r": float(rej_r.mean()),
            "discordant": int((rej_py != rej_r).sum()),
            "python_only": int((rej_py & ~rej_r).sum()),
            "r_only": int((~rej_py & rej_r).sum()),
            "max_abs_diff_estimate": float(d_est.max()),
            "max_abs_diff_p": float(d_p.max()),
            "median_abs_diff_p": float(d_p.median()),
        }
    summary = {
        "design": DESIGN.to_dict(),
        "seed": SEED,
        "n_reps": N_REPS,
        "alpha": ALPHA,
        "ddf": DDF,
        "r_model": "lmerTest::lmer(outcome ~ alliance_within_lag + alliance_between_c + "
        "session_c + (1 + session_c || patient_id) + (1 | therapist_id), REML = TRUE); "
        "summary(ddf = 'Satterthwaite')",
        "same_n_obs": bool((merged["n_obs_python"] == merged["n_obs_r"]).all()),
        "r_singular_share": float(r.drop_duplicates("replicate")["singular"].mean()),
        "terms": terms,
    }
    (HERE / "power_reference.json").write_text(json.dumps(summary, indent=1) + "\n")
    keep = ["replicate", "term", "n_obs_python"] + [
        f"{c}_{who}" for who in ("python", "r") for c in cols
    ]
    out = merged[keep].rename(columns={"n_obs_python": "n_obs"})
    out.to_csv(HERE / "power_reference_replicates.csv", index=False, float_format="%.10g")
    print(json.dumps(terms, indent=1))


if __name__ == "__main__":
    step, where = sys.argv[1], Path(sys.argv[2])
    {"data": write_data, "summary": summarise}[step](where)
