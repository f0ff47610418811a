"""Write ``three_level.csv``: a small simulated sessions-in-patients-in-therapists data set.

Run from the project root to regenerate the committed file byte for byte::

    .venv/bin/python tests/reference/make_three_level.py

Design (the known truth, also used by the tests): 40 therapists x 10 patients, 6 to 12
sessions per patient (unbalanced).  ``x`` (an alliance-like predictor) is split into the
patient mean ``x_between`` and the deviation ``x_within``; the outcome is

``y = 10 + 0.5 x_within + 1.0 x_between - 0.3 session + t + p + s * session + e``

with therapist intercepts ``t ~ N(0, 1.0^2)``, patient intercepts ``p ~ N(0, 2.0^2)``,
uncorrelated patient session slopes ``s ~ N(0, 0.25^2)`` and residuals ``e ~ N(0, 1.5^2)``.
Patient ids are unique across therapists (``T07P03``).  Values are rounded to 4 decimals
so that R and Python read exactly the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240611
N_THERAPISTS = 40
PATIENTS_PER_THERAPIST = 10
TRUTH = {
    "intercept": 10.0,
    "x_within": 0.5,
    "x_between": 1.0,
    "session": -0.3,
    "sd_therapist": 1.0,
    "sd_patient": 2.0,
    "sd_patient_session": 0.25,
    "sd_residual": 1.5,
}


def simulate_three_level(seed: int = SEED) -> pd.DataFrame:
    """Simulate the three-level reference data set described in the module docstring.

    Parameters
    ----------
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    pandas.DataFrame
        Columns ``therapist_id, patient_id, session, x_within, x_between, y``.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(1, N_THERAPISTS + 1):
        therapist_effect = rng.normal(0.0, TRUTH["sd_therapist"])
        for p in range(1, PATIENTS_PER_THERAPIST + 1):
            n_sessions = int(rng.integers(6, 13))
            patient_level = rng.normal(5.0, 0.8)
            patient_effect = rng.normal(0.0, TRUTH["sd_patient"])
            patient_slope = rng.normal(0.0, TRUTH["sd_patient_session"])
            x = patient_level + rng.normal(0.0, 0.7, size=n_sessions)
            x = np.round(x, 4)
            x_between = round(float(x.mean()), 4)
            x_within = np.round(x - x_between, 4)
            session = np.arange(1, n_sessions + 1)
            y = (
                TRUTH["intercept"]
                + TRUTH["x_within"] * x_within
                + TRUTH["x_between"] * x_between
                + TRUTH["session"] * session
                + therapist_effect
                + patient_effect
                + patient_slope * session
                + rng.normal(0.0, TRUTH["sd_residual"], size=n_sessions)
            )
            for k in range(n_sessions):
                rows.append(
                    {
                        "therapist_id": f"T{t:02d}",
                        "patient_id": f"T{t:02d}P{p:02d}",
                        "session": int(session[k]),
                        "x_within": float(x_within[k]),
                        "x_between": x_between,
                        "y": round(float(y[k]), 4),
                    }
                )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    out = Path(__file__).with_name("three_level.csv")
    simulate_three_level().to_csv(out, index=False, float_format="%.4f", lineterminator="\n")
    print(f"wrote {out.name}")
