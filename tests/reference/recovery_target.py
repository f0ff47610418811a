"""Large-sample target of the main model's within-patient effect, fitted by lme4.

Run from the project root (needs R with lme4 on the PATH; CI does not run this)::

    .venv/bin/python tests/reference/recovery_target.py

``tests/test_recovery.py`` checks that ``fit_mixed`` recovers the lagged within-patient effect
of the main model of notebook 03 over many small simulated studies.  The value the main model
estimates is not exactly the generating ``-0.15``: on complete-case observed totals the
person-centred fixed-effects estimator converges to about ``-0.141``
(``truth["definitions"]``); the cleaned data prorate totals with a few missing items; and the
main model is not that estimator (it models time linearly, has patient slopes and a random
intercept).  This script measures the main model's own large-sample value with an
independent implementation, lme4: it simulates :data:`N_STUDIES` large studies with the
design of the recovery test (``patients_per_therapist=8``, default parameters; the main model,
the design and the cleaning config come from ``tests/_recovery.py``, shared with the test),
cleans each one with :func:`helpers.pipeline.run_cleaning`, and fits, with ``lmer`` (REML, bobyqa):

``main``
    the main model, as in the test;
``main_session_factor``
    the same with one fixed effect per session instead of the linear ``session_c``;

and, in numpy, the fixed-effects least-squares estimator of ``tests/test_simulate.py`` (lagged
alliance on outcome, session dummies, both centred within patients), here on the cleaned
totals.  It
writes the per-study estimates and their means with Monte-Carlo standard errors to
``recovery_target.json`` beside this script.  Seeds are fixed, so the result is reproducible.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from helpers.pipeline import run_cleaning
from helpers.simulate import simulate_study

# The design shared with tests/test_recovery.py lives in tests/_recovery.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _recovery import MAIN, PATIENTS_PER_THERAPIST, simulated_data_config

N_STUDIES = 12
N_THERAPISTS = 1250
FIRST_SEED = 90001
OUT_FILE = Path(__file__).resolve().parent / "recovery_target.json"
MAIN_SESSION_FACTOR = MAIN.replace("+ session_c +", "+ factor(session_c) +")
R_FIT = """
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], colClasses = c(therapist_id = "character", patient_id = "character"))
ctrl <- lmerControl(optimizer = "bobyqa", calc.derivs = FALSE,
                    optCtrl = list(rhoend = 1e-10, maxfun = 1e6))
for (form in args[-1]) {
  m <- lmer(as.formula(form), data = d, REML = TRUE, control = ctrl)
  cf <- summary(m)$coefficients
  cat(sprintf("%.17g %.17g\\n", cf["alliance_within_lag", 1], cf["alliance_within_lag", 2]))
}
"""


def fixed_effects_estimate(sessions: pd.DataFrame) -> float:
    """Least-squares lagged alliance effect, session dummies, centred within patients."""
    d = sessions[["patient_id", "session", "outcome", "alliance_lag"]].dropna()
    dummies = pd.get_dummies(d["session"], prefix="s", drop_first=True, dtype=float)
    design = pd.concat([d[["alliance_lag"]], dummies], axis=1)
    groups = d["patient_id"].to_numpy()
    x = design - design.groupby(groups).transform("mean")
    y = d["outcome"] - d.groupby(groups)["outcome"].transform("mean")
    coef, *_ = np.linalg.lstsq(x.to_numpy(), y.to_numpy(), rcond=None)
    return float(coef[0])


def _summary(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {
        "mean": float(array.mean()),
        "mc_se": float(array.std(ddof=1) / np.sqrt(array.size)),
        "sd": float(array.std(ddof=1)),
    }


def main() -> None:
    """Simulate, clean and fit the studies; write ``recovery_target.json``."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "study.yml").write_text(yaml.safe_dump(simulated_data_config()), encoding="utf-8")
        (folder / "fit.R").write_text(R_FIT, encoding="utf-8")
        for seed in range(FIRST_SEED, FIRST_SEED + N_STUDIES):
            data, _ = simulate_study(
                n_therapists=N_THERAPISTS, patients_per_therapist=PATIENTS_PER_THERAPIST, seed=seed
            )
            data.to_csv(folder / "raw.csv", index=False)
            sessions = run_cleaning(folder / "raw.csv", folder / "study.yml").sessions
            sessions.to_csv(folder / "model.csv", index=False, float_format="%.17g")
            output = subprocess.run(
                ["Rscript", str(folder / "fit.R"), str(folder / "model.csv"), MAIN,
                 MAIN_SESSION_FACTOR],
                check=True, capture_output=True, text=True,
            ).stdout.split()  # fmt: skip
            values = [float(v) for v in output]
            rows.append(
                {
                    "seed": seed,
                    "n_patients": int(sessions["patient_id"].nunique()),
                    "main": values[0],
                    "main_se": values[1],
                    "main_session_factor": values[2],
                    "fixed_effects_ls": fixed_effects_estimate(sessions),
                }
            )
            print(rows[-1], flush=True)
    result = {
        "design": {
            "n_studies": N_STUDIES,
            "n_therapists": N_THERAPISTS,
            "patients_per_therapist": PATIENTS_PER_THERAPIST,
            "seeds": [FIRST_SEED, FIRST_SEED + N_STUDIES - 1],
            "formula_main": MAIN,
            "formula_main_session_factor": MAIN_SESSION_FACTOR,
        },
        "summary": {
            key: _summary([r[key] for r in rows])
            for key in ("main", "main_session_factor", "fixed_effects_ls")
        },
        "studies": rows,
    }
    OUT_FILE.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
