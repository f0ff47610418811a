"""The design shared by the recovery test and its lme4 target: one source of truth.

``tests/test_recovery.py`` checks that ``fit_mixed`` recovers the main model's within-patient
effect over many small simulated studies; ``tests/reference/recovery_target.py`` measures the
value it should recover on a few very large ones (-> ``recovery_target.json``).  Both take the
main model, the number of patients per therapist and the cleaning config from here, so the
target and its check cannot drift apart; ``test_recovery`` also checks that the design recorded
in ``recovery_target.json`` is this one.
"""

from __future__ import annotations

import yaml

from helpers.paths import DEMO_DIR

#: ``simulate_study``'s patients per therapist (on average) in both the test and the target.
PATIENTS_PER_THERAPIST = 8
#: The main model of notebook 03.
MAIN = (
    "outcome ~ alliance_within_lag + alliance_between_c + session_c"
    " + (1 + session_c || patient_id) + (1 | therapist_id)"
)


def simulated_data_config() -> dict:
    """The demo study config, re-pointed at the column names of ``simulate_study``'s frame.

    Same cleaning rules as the demo; blank cells are missing; a patient under two
    therapists is an error (the clean simulated data have none).
    """
    config = yaml.safe_load((DEMO_DIR / "study.yml").read_text(encoding="utf-8"))
    config["study"] = "recovery"
    config["read"]["missing_codes"] = [""]
    config["columns"] = {key: key for key in config["columns"]}
    config["covariates"] = {key: key for key in config["covariates"]}
    config["modality_labels"] = {m: m for m in ("CBT", "psychodynamic", "humanistic")}
    config["alliance"]["client"]["item_pattern"] = "alliance_client_item{i:02d}"
    config["alliance"]["therapist"]["total"] = "alliance_therapist"
    config["outcome"]["item_pattern"] = "outcome_item{i:02d}"
    config["cleaning"]["multiple_therapists"] = "error"
    return config
