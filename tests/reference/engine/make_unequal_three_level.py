"""Write ``unequal_three_level.csv``: unbalanced three-level data for the engine tests.

Run from the project root to regenerate the committed file byte for byte::

    .venv/bin/python tests/reference/engine/make_unequal_three_level.py

Design (known truth): 36 therapists with very unequal caseloads (therapist 1 sees a single
patient, others 2 to 30 patients), 1 to 24 sessions per patient (some patients have a
single row).  Patient intercepts and session slopes are correlated inside therapists, and
therapists have correlated intercepts and slopes::

    y = 20 + 0.6 x_within + 0.8 x_between - 0.4 session
        + (t0 + t1 session) + (p0 + p1 session) + e

    (t0, t1) ~ N(0, [[1.2^2, 0.3*1.2*0.15], [., 0.15^2]])
    (p0, p1) ~ N(0, [[2.5^2, -0.5*2.5*0.3], [., 0.3^2]])
    e ~ N(0, 1.3^2)

``y_null_therapist`` has the same patient effects and residuals but no therapist effects,
and its patient intercepts are centred within each therapist, so the between-therapist
variance is below what chance alone gives: lme4 estimates the therapist variance of
``(1 | therapist_id) + (1 | patient_id)`` at exactly 0 (the singular reference case).
Values are rounded to 4 decimals so that R and Python read the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20250117
N_THERAPISTS = 36
TRUTH = {
    "intercept": 20.0,
    "x_within": 0.6,
    "x_between": 0.8,
    "session": -0.4,
    "sd_therapist": 1.2,
    "sd_therapist_session": 0.15,
    "cor_therapist": 0.3,
    "sd_patient": 2.5,
    "sd_patient_session": 0.3,
    "cor_patient": -0.5,
    "sd_residual": 1.3,
}


def _cov(sd0: float, sd1: float, rho: float) -> np.ndarray:
    return np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])


def simulate_unequal(seed: int = SEED) -> pd.DataFrame:
    """Simulate the data set described in the module docstring.

    Parameters
    ----------
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    pandas.DataFrame
        Columns ``therapist_id, patient_id, session, x_within, x_between, y,
        y_null_therapist``.
    """
    rng = np.random.default_rng(seed)
    cov_t = _cov(TRUTH["sd_therapist"], TRUTH["sd_therapist_session"], TRUTH["cor_therapist"])
    cov_p = _cov(TRUTH["sd_patient"], TRUTH["sd_patient_session"], TRUTH["cor_patient"])
    caseloads = np.clip(np.round(rng.lognormal(np.log(7.0), 0.8, N_THERAPISTS)), 2, 30)
    caseloads[0] = 1
    frames = []
    for t, caseload in enumerate(caseloads.astype(int), start=1):
        t0, t1 = rng.multivariate_normal(np.zeros(2), cov_t)
        effects = rng.multivariate_normal(np.zeros(2), cov_p, size=caseload)
        null_intercepts = effects[:, 0] - effects[:, 0].mean() if caseload > 1 else effects[:, 0]
        for p in range(caseload):
            n_sessions = int(rng.choice([1, 2, 3]) if rng.random() < 0.15 else rng.integers(4, 25))
            session = np.arange(1, n_sessions + 1)
            x = rng.normal(4.5, 0.9) + rng.normal(0.0, 0.8, size=n_sessions)
            x = np.round(x, 4)
            x_between = round(float(x.mean()), 4)
            x_within = np.round(x - x_between, 4)
            noise = rng.normal(0.0, TRUTH["sd_residual"], size=n_sessions)
            fixed = (
                TRUTH["intercept"]
                + TRUTH["x_within"] * x_within
                + TRUTH["x_between"] * x_between
                + TRUTH["session"] * session
            )
            y = fixed + t0 + t1 * session + effects[p, 0] + effects[p, 1] * session + noise
            y_null = fixed + null_intercepts[p] + effects[p, 1] * session + noise
            frames.append(
                pd.DataFrame(
                    {
                        "therapist_id": f"U{t:02d}",
                        "patient_id": f"U{t:02d}P{p + 1:02d}",
                        "session": session,
                        "x_within": x_within,
                        "x_between": x_between,
                        "y": np.round(y, 4),
                        "y_null_therapist": np.round(y_null, 4),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


if __name__ == "__main__":
    out = Path(__file__).with_name("unequal_three_level.csv")
    simulate_unequal().to_csv(out, index=False)
    print(f"wrote {out}")
