"""Tests of the outcome helpers of helpers.ruptures (notebook 04).

``lagged_rupture_indicator`` and ``patients_by_rupture_status`` are checked on
hand-made trajectories whose episodes are worked out in the comments; the
demo-study test checks the session-level rupture effect against the simulated
truth (a rupture lowers the latent alliance by 8 WAI-SR points, and each point
of within-patient alliance at t − 1 moves the PHQ-9 at t by −0.15).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from helpers.effects import fit_quietly
from helpers.paths import DEMO_DIR
from helpers.pipeline import run_cleaning
from helpers.ruptures import (
    RuptureDefinition,
    detect_ruptures,
    lagged_rupture_indicator,
    patient_rupture_status,
    patients_by_rupture_status,
)

NAN = float("nan")


def trajectory(patient, values, *, sessions=None, therapist="T1"):
    sessions = list(range(1, len(values) + 1)) if sessions is None else list(sessions)
    return pd.DataFrame(
        {
            "therapist_id": therapist,
            "patient_id": patient,
            "session": sessions,
            "alliance": [float(v) for v in values],
        }
    )


def same(series, expected):
    """Equal element by element, NaN equal to NaN."""
    got = series.to_numpy(dtype=float)
    want = np.asarray(expected, dtype=float)
    return got.shape == want.shape and bool(
        np.all((got == want) | (np.isnan(got) & np.isnan(want)))
    )


# ---------------------------------------------------------------------------
# lagged_rupture_indicator
# ---------------------------------------------------------------------------
@pytest.fixture
def three_patients():
    # A: 40 41 40 32 40 41 (sessions 1-6): drop of 8 at session 4 -> rupture at 4 (6 points).
    #    Differences exist at sessions 2..6.
    # B: 40 40 30 41 41 at sessions 1, 2, 3, 5, 6 (session 4 absent): drop of 10 at 3 ->
    #    rupture at 3; differences at 2, 3, 6 (none at 5: session 4 absent).
    # C: 40 41 (two sessions): one difference, at session 2; no rupture.
    return pd.concat(
        [
            trajectory("A", [40, 41, 40, 32, 40, 41]),
            trajectory("B", [40, 40, 30, 41, 41], sessions=[1, 2, 3, 5, 6]),
            trajectory("C", [40, 41]),
        ],
        ignore_index=True,
    )


def test_indicator_by_hand(three_patients):
    data = three_patients
    episodes = detect_ruptures(data, method="points", points=6)
    assert episodes[["patient_id", "rupture_session"]].values.tolist() == [["A", 4], ["B", 3]]
    lag1 = lagged_rupture_indicator(episodes, data)
    assert lag1.name == "rupture_lag1"
    # A: s1 (no s0) NaN; s2 (s1 has no difference) NaN; s3 0; s4 0; s5 (s4 = onset) 1; s6 0
    # B: s1 NaN; s2 NaN; s3 0 (s2 a difference, no onset); s5 (s4 absent) NaN; s6 (s5 has no
    #    difference: s4 absent) NaN
    # C: s1 NaN; s2 NaN
    assert same(lag1, [NAN, NAN, 0, 0, 1, 0, NAN, NAN, 0, NAN, NAN, NAN, NAN])
    # lag 2: A s6 <- s4 onset = 1; B s5 <- s3 onset = 1; s4 and s5 of A <- s2, s3 = 0
    lag2 = lagged_rupture_indicator(episodes, data, lag=2)
    assert lag2.name == "rupture_lag2"
    assert same(lag2, [NAN, NAN, NAN, 0, 0, 1, NAN, NAN, NAN, 1, NAN, NAN, NAN])


def test_indicator_is_missing_for_patients_who_are_not_assessable():
    # With the SD method and min_differences = 3, a patient needs four sessions; P has three.
    # Q: 45 46 45 46 36 -> differences +1 -1 +1 -10, SD sqrt(82.75/3) = 5.25; k = 1 -> onset 5.
    data = pd.concat(
        [trajectory("P", [40, 30, 40]), trajectory("Q", [45, 46, 45, 46, 36, 40])],
        ignore_index=True,
    )
    episodes = detect_ruptures(data, k=1.0)
    assert episodes[["patient_id", "rupture_session"]].values.tolist() == [["Q", 5]]
    values = lagged_rupture_indicator(episodes, data)
    assert same(values, [NAN, NAN, NAN, NAN, NAN, 0, 0, 0, 1])


def test_indicator_follows_the_rows_not_their_order(three_patients):
    episodes = detect_ruptures(three_patients, method="points", points=6)
    expected = lagged_rupture_indicator(episodes, three_patients)
    shuffled = three_patients.sample(frac=1.0, random_state=3)
    shuffled.index = shuffled.index + 100
    got = lagged_rupture_indicator(episodes, shuffled)
    assert list(got.index) == list(shuffled.index)
    assert same(got, expected.loc[shuffled.index - 100].to_numpy())


def test_indicator_reads_the_definition_when_attrs_are_lost(three_patients):
    episodes = detect_ruptures(three_patients, method="points", points=6)
    bare = pd.DataFrame(episodes.to_dict("list"))  # attrs dropped
    with pytest.raises(ValueError, match="carries no rupture definition"):
        lagged_rupture_indicator(bare, three_patients)
    definition = RuptureDefinition(method="points", points=6.0, k=2.0)
    got = lagged_rupture_indicator(bare, three_patients, definition=definition)
    assert same(got, lagged_rupture_indicator(episodes, three_patients))


@pytest.mark.parametrize("lag", [0, -1, 1.5, True, "1"])
def test_indicator_refuses_a_bad_lag(three_patients, lag):
    episodes = detect_ruptures(three_patients, method="points", points=6)
    with pytest.raises(ValueError, match="lag must be a whole number"):
        lagged_rupture_indicator(episodes, three_patients, lag=lag)


def test_indicator_refuses_episodes_of_other_data(three_patients):
    episodes = detect_ruptures(three_patients, method="points", points=6)
    other = three_patients.loc[three_patients.patient_id != "A"]
    with pytest.raises(ValueError, match="absent from the session-level frame"):
        lagged_rupture_indicator(episodes, other)


# ---------------------------------------------------------------------------
# patients_by_rupture_status
# ---------------------------------------------------------------------------
@pytest.fixture
def status_and_patients():
    status = pd.DataFrame(
        {
            "patient_id": ["a", "b", "c", "d", "e", "f"],
            "rupture_status": [
                "no rupture",
                "repaired",
                "unrepaired",
                "censored",
                "not assessable",
                "no rupture",
            ],
        }
    )
    patients = pd.DataFrame(
        {"patient_id": ["f", "e", "d", "c", "b", "a"], "outcome_last": [6.0, 5, 4, 3, 2, 1]}
    )
    return status, patients


def test_groups_leave_out_censored_and_not_assessable(status_and_patients):
    status, patients = status_and_patients
    out = patients_by_rupture_status(status, patients)
    # order of the patient table kept; d (censored) and e (not assessable) left out
    assert out.patient_id.tolist() == ["f", "c", "b", "a"]
    assert out.rupture_group.tolist() == ["no rupture", "unrepaired", "repaired", "no rupture"]
    assert out.outcome_last.tolist() == [6.0, 3.0, 2.0, 1.0]
    assert "rupture_group" not in patients.columns  # input untouched


@pytest.mark.parametrize("censored_as", ["repaired", "unrepaired"])
def test_censored_patients_can_be_counted_in_a_group(status_and_patients, censored_as):
    status, patients = status_and_patients
    out = patients_by_rupture_status(status, patients, censored_as=censored_as)
    assert out.patient_id.tolist() == ["f", "d", "c", "b", "a"]
    assert out.set_index("patient_id").loc["d", "rupture_group"] == censored_as


def test_groups_can_be_chosen(status_and_patients):
    status, patients = status_and_patients
    out = patients_by_rupture_status(status, patients, groups=("repaired", "unrepaired"))
    assert out.patient_id.tolist() == ["c", "b"]


def test_patients_without_status_and_duplicates_are_refused(status_and_patients):
    status, patients = status_and_patients
    extra = pd.concat([patients, pd.DataFrame({"patient_id": ["z"], "outcome_last": [0.0]})])
    with pytest.raises(ValueError, match=r"'z'.*no rupture status"):
        patients_by_rupture_status(status, extra)
    doubled = pd.concat([status, status.iloc[[1]]])
    with pytest.raises(ValueError, match="status table has more than one row for patients 'b'"):
        patients_by_rupture_status(doubled, patients)
    with pytest.raises(ValueError, match="groups must be patient statuses"):
        patients_by_rupture_status(status, patients, groups=("no ruptures",))
    with pytest.raises(ValueError, match="censored_as must be"):
        patients_by_rupture_status(status, patients, censored_as="dropped")
    with pytest.raises(ValueError, match="has no column"):
        patients_by_rupture_status(status.rename(columns={"rupture_status": "s"}), patients)


# ---------------------------------------------------------------------------
# The demo study: the next session after a rupture, against the simulated truth
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_sessions():
    return run_cleaning(DEMO_DIR / "sessions.csv", DEMO_DIR / "study.yml").sessions


def test_symptoms_rise_after_a_detected_rupture_as_simulated(demo_sessions):
    truth = json.loads((DEMO_DIR / "truth.json").read_text())["effects"]
    # a true rupture lowers the latent alliance deviation by 8 points; each point at t - 1
    # moves the PHQ-9 at t by -0.15: +1.2 points in the session after the rupture
    implied = -truth["rupture_drop"] * truth["alliance_within_lag1_effect"]
    assert implied == pytest.approx(1.2)
    episodes = detect_ruptures(demo_sessions)
    data = demo_sessions.assign(rupture_lag1=lagged_rupture_indicator(episodes, demo_sessions))
    assert int(data.rupture_lag1.sum()) > 50  # most onsets have a next session
    fit = fit_quietly(
        data,
        "outcome ~ rupture_lag1 + session_c + alliance_between_c"
        " + (1 + session_c || patient_id) + (1 | therapist_id)",
    )
    est = fit.fixed.loc["rupture_lag1"]
    assert est.ci_low > 0  # symptoms are higher after a rupture
    assert est.ci_low <= implied <= est.ci_high
    # patient-level groups of the same episodes: every kept patient has a group
    status = patient_rupture_status(episodes, demo_sessions)
    patients = status[["patient_id"]].assign(x=1.0)
    groups = patients_by_rupture_status(status, patients)
    assert set(groups.rupture_group) == {"no rupture", "repaired", "unrepaired"}
    assert len(groups) == int(
        status.rupture_status.isin(["no rupture", "repaired", "unrepaired"]).sum()
    )
    assert math.isfinite(est.se)
