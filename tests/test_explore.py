"""Descriptive tables of notebook 02, on frames small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import explore


@pytest.fixture
def sessions():
    # T1: P1 (sessions 1-3), P2 (1-2); T2: P3 (1-6)
    rows = [("T1", "P1", s) for s in (1, 2, 3)] + [("T1", "P2", s) for s in (1, 2)]
    rows += [("T2", "P3", s) for s in range(1, 7)]
    df = pd.DataFrame(rows, columns=["therapist_id", "patient_id", "session"])
    df["outcome"] = [10, 8, np.nan, 12, 11, 20, 18, 16, 14, 12, np.nan]
    df["alliance"] = [40, 42, 44, np.nan, 30, 50, 50, 50, 50, 50, 50]
    df["within_eligible"] = df["patient_id"] != "P2"
    return df


def test_sample_overview_counts(sessions):
    table = explore.sample_overview(sessions)["value"]
    assert table["therapists"] == "2"
    assert table["patients"] == "3"
    assert table["sessions"] == "11"
    # sessions per patient 3, 2, 6: median 3, quartiles 2.5 and 4.5
    assert table["sessions per patient"] == "3 [2.5–4.5], range 2–6"
    assert table["patients eligible for within-patient models"] == "2"


def test_missingness_by_phase(sessions):
    table = explore.missingness_table(sessions, ["outcome", "alliance"])
    # outcome missing at P1 s3 and P3 s6: 2 of 11 overall; sessions 1-5: 1 of 10; 6-10: 1 of 1
    assert table.loc["outcome", "all sessions"] == round(100 * 2 / 11, 1)
    assert table.loc["outcome", "sessions 1–5"] == 10.0
    assert table.loc["outcome", "sessions 6–10"] == 100.0
    assert table.loc["alliance", "all sessions"] == round(100 / 11, 1)


def test_mean_by_session_ci(sessions):
    table = explore.mean_by_session(sessions, "outcome", min_n=3)
    first = table.loc[table["session"] == 1].iloc[0]
    # session 1 outcomes: 10, 12, 20 -> mean 14, sd 5.2915
    assert first["n"] == 3 and first["mean"] == 14
    half = 1.96 * np.std([10, 12, 20], ddof=1) / np.sqrt(3)
    assert first["ci_low"] == pytest.approx(14 - half, abs=1e-3)
    assert set(table["session"]) == {1, 2}  # later sessions have fewer than 3 scores


def test_intake_and_change_by_group():
    patients = pd.DataFrame(
        {
            "therapist_id": ["T1", "T1", "T2"],
            "modality": ["CBT", "CBT", "humanistic"],
            "outcome_intake": [20.0, 10.0, 15.0],
            "n_sessions": [10, 4, 6],
            "outcome_last": [8.0, 9.0, 15.0],
            "improvement": [12.0, 1.0, 0.0],
            "change_category": ["recovered", "no reliable change", "no reliable change"],
        }
    )
    intake = explore.intake_by_group(patients)
    assert intake.loc["CBT", "patients"] == 2 and intake.loc["CBT", "intake mean"] == 15
    assert intake.loc["CBT", "intake SD"] == round(np.std([20, 10], ddof=1), 2)
    change = explore.change_summary(patients)
    assert change.loc["CBT", "% reliably improved"] == 50
    assert change.loc["humanistic", "improvement"] == 0


def test_sample_overview_of_a_two_level_study(sessions):
    table = explore.sample_overview(sessions.drop(columns="therapist_id"))["value"]
    assert table["therapists"] == "not identified (two-level study)"
    assert "patients per therapist" not in table.index
    assert table["patients"] == "3" and table["sessions"] == "11"
    assert table["sessions per patient"] == "3 [2.5–4.5], range 2–6"


@pytest.fixture
def patients_without_groups():
    return pd.DataFrame(
        {
            "outcome_intake": [20.0, 10.0, 15.0],
            "n_sessions": [10, 4, 6],
            "outcome_last": [8.0, 9.0, 15.0],
            "improvement": [12.0, 1.0, 0.0],
            "change_category": ["recovered", "no reliable change", "improved"],
        }
    )


def test_group_tables_without_modality_or_therapists_give_one_overall_row(
    patients_without_groups,
):
    intake = explore.intake_by_group(patients_without_groups)
    assert intake.index.tolist() == ["all patients"]
    assert list(intake.columns) == ["patients", "intake mean", "intake SD", "sessions (mean)"]
    assert intake.loc["all patients"].tolist() == [3, 15.0, 5.0, round(20 / 3, 2)]
    change = explore.change_summary(patients_without_groups)
    assert change.index.tolist() == ["all patients"]
    # 2 of 3 patients recovered or improved; mean improvement (12 + 1 + 0) / 3
    assert change.loc["all patients", "% reliably improved"] == round(200 / 3, 2)
    assert change.loc["all patients", "improvement"] == round(13 / 3, 2)


def test_group_tables_by_none_and_a_misspelt_column(patients_without_groups):
    with_modality = patients_without_groups.assign(modality=["CBT", "CBT", "humanistic"])
    overall = explore.intake_by_group(with_modality, by=None)
    assert overall.index.tolist() == ["all patients"]
    assert explore.change_summary(with_modality, by=None).index.tolist() == ["all patients"]
    with pytest.raises(KeyError, match="no column 'modalty'"):
        explore.intake_by_group(with_modality, by="modalty")


def test_mean_by_session_by_modality_without_modality(sessions):
    table = explore.mean_by_session(sessions, "outcome", by="modality", min_n=3)
    pd.testing.assert_frame_equal(table, explore.mean_by_session(sessions, "outcome", min_n=3))
    assert "modality" not in table.columns
