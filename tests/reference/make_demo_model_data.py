"""Write the model columns of the processed demo study, the input of ``lme4_demo_reference.R``.

Run from the project root to regenerate both files byte for byte::

    .venv/bin/python tests/reference/make_demo_model_data.py

The data are what notebook ``03_alliance_outcome_models.ipynb`` fits: the cleaning step
(:func:`helpers.pipeline.run_cleaning` on ``data/raw/demo/``) gives the processed sessions and
the patient table, and :func:`helpers.features.add_patient_model_features` adds the centred
patient-level predictors.  Only the columns the models use are kept, rows in the processed
order:

``demo_model_data.csv``
    one row per patient-session (:data:`SESSION_COLUMNS`);
``demo_patient_model_data.csv``
    one row per patient (:data:`PATIENT_COLUMNS`).

Floats are written with 17 significant digits (``%.17g``), which both R's ``read.csv`` and
pandas' ``read_csv`` read back as exactly the same doubles; missing values are written
``NA``.  ``tests/test_models_demo.py`` checks that a fresh cleaning run still reproduces
these files exactly, so the lme4 references cannot go stale silently.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers.features import add_patient_model_features
from helpers.paths import DEMO_DIR
from helpers.pipeline import run_cleaning

REFERENCE_DIR = Path(__file__).resolve().parent
SESSIONS_FILE = REFERENCE_DIR / "demo_model_data.csv"
PATIENTS_FILE = REFERENCE_DIR / "demo_patient_model_data.csv"

#: Session-level columns used by the models of notebook 03 (plus ``session``, for reading).
SESSION_COLUMNS: tuple[str, ...] = (
    "therapist_id",
    "patient_id",
    "session",
    "session_c",
    "outcome",
    "alliance",
    "alliance_within_lag",
    "alliance_between_c",
    "outcome_within_lag",
    "outcome_between",
)
#: Patient-level columns used by the patient-level models of notebook 03.
PATIENT_COLUMNS: tuple[str, ...] = (
    "therapist_id",
    "patient_id",
    "outcome_last",
    "alliance_early_c",
    "outcome_intake_c",
    "alliance_therapist_mean_c",
    "alliance_patient_dev",
)
FLOAT_FORMAT = "%.17g"
MISSING = "NA"


def demo_model_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean the demo study and return its session- and patient-level model columns.

    Returns
    -------
    sessions : pandas.DataFrame
        :data:`SESSION_COLUMNS` of the processed sessions, processed row order, fresh index.
    patients : pandas.DataFrame
        :data:`PATIENT_COLUMNS` of the patient table with the centred predictors.
    """
    cleaned = run_cleaning(DEMO_DIR / "sessions.csv", DEMO_DIR / "study.yml")
    sessions = cleaned.sessions[list(SESSION_COLUMNS)].reset_index(drop=True)
    patients = add_patient_model_features(cleaned.patients)[list(PATIENT_COLUMNS)]
    return sessions, patients.reset_index(drop=True)


def write_reference_data() -> None:
    """Write ``demo_model_data.csv`` and ``demo_patient_model_data.csv`` beside this script."""
    sessions, patients = demo_model_frames()
    for frame, path in ((sessions, SESSIONS_FILE), (patients, PATIENTS_FILE)):
        frame.to_csv(
            path, index=False, float_format=FLOAT_FORMAT, na_rep=MISSING, lineterminator="\n"
        )
        print(f"wrote {len(frame)} rows to {path.name}")


if __name__ == "__main__":
    write_reference_data()
