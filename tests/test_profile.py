"""The study profile: what a study has, and what a section that needs more says."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from helpers.profile import build_profile, load_profile


def _sessions(therapists: bool = True, therapist_rating: bool = True) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "patient_id": ["P1", "P1", "P2", "P2", "P3"],
            "session": [1, 2, 1, 3, 2],
            "alliance_client": [40.0, 42.0, 50.0, None, 45.0],
            "outcome": [10.0, 8.0, 5.0, 4.0, 12.0],
            "outcome_intake": [12.0, 12.0, None, None, 15.0],
            "within_eligible": [True, True, False, False, False],
            "modality": ["CBT", "CBT", "humanistic", "humanistic", "CBT"],
        }
    )
    if therapists:
        frame.insert(0, "therapist_id", ["T1", "T1", "T2", "T2", "T1"])
    if therapist_rating:
        frame["alliance_therapist"] = [38.0, 39.0, None, 41.0, 40.0]
    return frame


CONFIG = {
    "study": "s",
    "alliance": {"client": {"instrument": "wai_sr"}, "therapist": {"instrument": "wai_s"}},
    "primary_alliance": "client",
    "outcome": {"instrument": "gad7"},
    "covariates": {"age": "age"},
    "cleaning": {"early_session": 2},
}


def test_three_level_profile_counts_what_the_data_hold():
    p = build_profile(_sessions(), CONFIG, has_truth=True)
    assert (p.levels, p.n_therapists, p.n_patients, p.n_sessions) == (3, 2, 3, 5)
    assert p.session_range == (1, 3)
    assert p.n_with_intake == 2  # P1 and P3
    assert p.raters == ("client", "therapist")
    assert p.modalities == ("CBT", "humanistic")
    assert p.covariates == ()  # configured, but not in the data
    assert p.early_session == 2
    assert p.outcome_name == "GAD-7" and p.alliance_name == "WAI-SR"
    assert not p.raters_share_scale  # WAI-SR and WAI-S
    assert p.labels["outcome"].startswith("Anxiety (GAD-7 total, 0–21)")


def test_two_level_profile_drops_the_therapist_term_and_explains_skips():
    p = build_profile(_sessions(therapists=False, therapist_rating=False), CONFIG)
    assert p.levels == 2 and p.n_therapists is None
    assert p.formula("y ~ x", "(1 | patient_id)") == "y ~ x + (1 | patient_id)"
    assert p.formula("y ~ x") == "y ~ x"  # patient level: no random term at all
    assert p.null_formula("outcome") == "outcome ~ 1 + (1 | patient_id)"
    note = p.skip_note("The split", "therapists", "two_raters")
    assert note.startswith("*Skipped — The split:* this study has no therapist ids")
    assert "set `columns.therapist_id` in the study config" in note
    assert "add both `alliance.client` and `alliance.therapist` blocks" in note
    assert p.skip_note("Anything", "client_rating", "intake") is None


def test_three_level_formula_adds_the_therapist_intercept():
    p = build_profile(_sessions(), CONFIG)
    assert p.null_formula("outcome") == "outcome ~ 1 + (1 | therapist_id) + (1 | patient_id)"
    assert p.formula("y ~ x", "(1 + s || patient_id)") == (
        "y ~ x + (1 + s || patient_id) + (1 | therapist_id)"
    )


def test_a_configured_rater_without_scores_is_absent():
    sessions = _sessions().assign(alliance_therapist=float("nan"))
    p = build_profile(sessions, CONFIG)
    assert p.raters == ("client",)
    assert not p.has("two_raters") and not p.has("therapist_rating")


def test_unknown_need_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown need 'therapist'"):
        build_profile(_sessions(), CONFIG).has("therapist")


def test_reference_modality_falls_back_to_the_first_present():
    p = build_profile(_sessions(), CONFIG)
    assert p.reference_modality("CBT") == "CBT"
    assert p.reference_modality("psychodynamic") == "CBT"
    no_modality = build_profile(_sessions().drop(columns="modality"), CONFIG)
    assert no_modality.reference_modality() is None and not no_modality.has("modality")


def test_load_profile_reads_the_config_recorded_by_the_cleaning_step(tmp_path):
    _sessions().to_parquet(tmp_path / "sessions.parquet")
    (tmp_path / "manifest.json").write_text(json.dumps({"parameters": {"config": CONFIG}}))
    truth = tmp_path / "truth.json"
    assert not load_profile(tmp_path, "").has_truth
    assert not load_profile(tmp_path, truth).has_truth  # named but absent
    truth.write_text("{}")
    assert load_profile(tmp_path, truth).has_truth
