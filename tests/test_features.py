"""Tests of helpers.features.

The small hand-made frame below has its expected values worked out by hand,
in the comments.  The property tests (hypothesis) check invariants against an
independent oracle (a plain dictionary lookup) on random long frames with gaps,
missing values and shuffled rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.features import (
    MODEL_FEATURE_COLUMNS,
    THERAPIST_FEATURE_COLUMNS,
    _feature_columns,
    _sorted_codes,
    add_model_features,
    early_value,
    grand_mean_center,
    intake_adjusted_change,
    lag_within_patient,
    person_mean_center,
    therapist_mean_disaggregate,
)

NAN = float("nan")
PROPERTY_SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None)


def hand_frame() -> pd.DataFrame:
    """Three patients, rows deliberately out of order, a gap (A has no session 4).

    Patient A (therapist T1), sessions 1, 2, 3, 5, 6:
        alliance 4, 6, NaN, 2, 4 -> mean 16/4 = 4; outcome 10, 8, 7, 5, 4 -> mean 6.8;
        intake 12.
    Patient B (T1), sessions 1, 2, 3: alliance 3, 5, 7 -> mean 5; outcome 9, 8, 6 -> mean 23/3;
        intake 10.
    Patient C (T2), sessions 1, 2: alliance 6, NaN -> mean 6; outcome 12, 11 -> mean 11.5;
        intake 13.
    """
    rows = [
        ("T1", "A", 2, 6.0, 8.0, 12.0),
        ("T1", "A", 1, 4.0, 10.0, 12.0),
        ("T1", "B", 3, 7.0, 6.0, 10.0),
        ("T1", "A", 5, 2.0, 5.0, 12.0),
        ("T2", "C", 1, 6.0, 12.0, 13.0),
        ("T1", "B", 1, 3.0, 9.0, 10.0),
        ("T1", "A", 3, NAN, 7.0, 12.0),
        ("T2", "C", 2, NAN, 11.0, 13.0),
        ("T1", "B", 2, 5.0, 8.0, 10.0),
        ("T1", "A", 6, 4.0, 4.0, 12.0),
    ]
    frame = pd.DataFrame(
        rows,
        columns=["therapist_id", "patient_id", "session", "alliance", "outcome", "outcome_intake"],
    )
    frame.index = [f"row{i}" for i in range(len(frame))]
    return frame


B_MEAN = 23 / 3

# Row order: A2, A1, B3, A5, C1, B1, A3, C2, B2, A6
HAND_EXPECTED = {
    "alliance_between": [4, 4, 5, 4, 6, 5, 4, 6, 5, 4],
    "alliance_within": [2, 0, 2, -2, 0, -2, NAN, NAN, 0, 0],
    # lag: A2 <- A1 = 4; A1 none; B3 <- B2 = 5; A5 <- A4 absent (gap); C1 none; B1 none;
    # A3 <- A2 = 6; C2 <- C1 = 6; B2 <- B1 = 3; A6 <- A5 = 2
    "alliance_lag": [4, NAN, 5, NAN, NAN, NAN, 6, 6, 3, 2],
    "alliance_within_lag": [0, NAN, 0, NAN, NAN, NAN, 2, 0, -2, -2],
    # grand mean over patients (4 + 5 + 6) / 3 = 5 (over rows it would be 4.5)
    "alliance_between_c": [-1, -1, 0, -1, 1, 0, -1, 1, 0, -1],
    # T1: patients A (4) and B (5) -> 4.5 (row-weighted would be 31/7); T2: C -> 6
    "alliance_therapist_mean": [4.5, 4.5, 4.5, 4.5, 6, 4.5, 4.5, 6, 4.5, 4.5],
    "alliance_patient_dev": [-0.5, -0.5, 0.5, -0.5, 0, 0.5, -0.5, 0, 0.5, -0.5],
    # session 3: A unrated (NaN), B = 7, C has no session 3
    "alliance_early": [NAN, NAN, 7, NAN, NAN, 7, NAN, NAN, 7, NAN],
    "outcome_lag": [10, NAN, 8, NAN, NAN, NAN, 8, 12, 9, 5],
    "outcome_within": [1.2, 3.2, 6 - B_MEAN, -1.8, 0.5, 9 - B_MEAN, 0.2, -0.5, 8 - B_MEAN, -2.8],
    "outcome_between": [6.8, 6.8, B_MEAN, 6.8, 11.5, B_MEAN, 6.8, 11.5, B_MEAN, 6.8],
    "outcome_within_lag": [3.2, NAN, 8 - B_MEAN, NAN, NAN, NAN, 1.2, 0.5, 9 - B_MEAN, -1.8],
    "outcome_change": [-4, -2, -4, -7, -1, -1, -5, -2, -2, -8],
    "session_c": [1, 0, 2, 4, 0, 0, 2, 1, 1, 5],
}


def assert_values(actual, expected) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------


def test_add_model_features_hand_frame():
    frame = hand_frame()
    before = frame.copy()
    out = add_model_features(frame)
    pd.testing.assert_frame_equal(frame, before)  # input untouched
    assert out.index.equals(frame.index)
    assert list(out.columns) == list(frame.columns) + list(MODEL_FEATURE_COLUMNS)
    assert set(HAND_EXPECTED) == set(MODEL_FEATURE_COLUMNS)
    for name, expected in HAND_EXPECTED.items():
        assert_values(out[name], expected)
    pd.testing.assert_frame_equal(out[list(frame.columns)], frame)


def test_add_model_features_other_source_columns_and_early_session():
    frame = hand_frame().rename(columns={"alliance": "alliance_client", "outcome": "phq"})
    out = add_model_features(frame, alliance="alliance_client", outcome="phq", early_session=2)
    assert_values(out["alliance_between"], HAND_EXPECTED["alliance_between"])
    # session 2: A = 6, B = 5, C unrated
    assert_values(out["alliance_early"], [6, 6, 5, 6, NAN, 5, 6, NAN, 5, 6])


def test_add_model_features_two_level_leaves_out_the_therapist_split():
    frame = hand_frame().drop(columns="therapist_id")
    out = add_model_features(frame, therapist=None)
    two_level = [c for c in MODEL_FEATURE_COLUMNS if c not in THERAPIST_FEATURE_COLUMNS]
    assert THERAPIST_FEATURE_COLUMNS == ("alliance_therapist_mean", "alliance_patient_dev")
    assert list(out.columns) == list(frame.columns) + two_level
    for name in two_level:  # the other features do not depend on therapists
        assert_values(out[name], HAND_EXPECTED[name])
    # without therapist=None a missing therapist column is an error, not a silent two-level run
    with pytest.raises(ValueError, match=r"no column\(s\) \['therapist_id'\]"):
        add_model_features(frame)


def test_person_mean_center_hand():
    out = person_mean_center(hand_frame(), "alliance")
    assert_values(out["alliance_between"], HAND_EXPECTED["alliance_between"])
    assert_values(out["alliance_within"], HAND_EXPECTED["alliance_within"])


def test_person_mean_center_all_missing_patient():
    frame = pd.DataFrame({"patient_id": ["a", "a", "b"], "x": [NAN, NAN, 2.0]})
    out = person_mean_center(frame, "x")
    assert_values(out["x_between"], [NAN, NAN, 2])
    assert_values(out["x_within"], [NAN, NAN, 0])


def test_therapist_mean_disaggregate_weights_patients_equally():
    out = therapist_mean_disaggregate(hand_frame(), "alliance")
    assert_values(out["alliance_therapist_mean"], HAND_EXPECTED["alliance_therapist_mean"])
    assert_values(out["alliance_patient_dev"], HAND_EXPECTED["alliance_patient_dev"])


def test_lag_respects_gap_and_row_order():
    lag = lag_within_patient(hand_frame(), "outcome")
    assert lag.name == "outcome_lag"
    assert list(lag.index) == list(hand_frame().index)
    assert_values(lag, HAND_EXPECTED["outcome_lag"])


def test_lag_never_crosses_patients_with_same_session_numbers():
    # Without the patient key, B1 would look like the successor of A's last row.
    frame = pd.DataFrame(
        {"patient_id": ["A", "A", "B", "B"], "session": [1, 2, 1, 2], "x": [1.0, 2.0, 3.0, 4.0]}
    )
    assert_values(lag_within_patient(frame, "x"), [NAN, 1, NAN, 3])


def test_early_value_hand():
    assert_values(early_value(hand_frame(), "alliance"), HAND_EXPECTED["alliance_early"])
    assert_values(
        early_value(hand_frame(), "outcome", session=1), [10, 10, 9, 10, 12, 9, 10, 12, 9, 10]
    )


def test_grand_mean_center_plain_and_by_group():
    # mean of 1, 2, 5 (NaN left out) = 8/3
    assert_values(
        grand_mean_center(pd.Series([1.0, 2.0, NAN, 5.0])), [1 - 8 / 3, 2 - 8 / 3, NAN, 5 - 8 / 3]
    )
    centred = grand_mean_center(pd.Series([4.0, 4.0, 4.0, 6.0]), by=["a", "a", "a", "b"])
    assert_values(centred, [-1, -1, -1, 1])  # grand mean over groups: (4 + 6) / 2 = 5


def test_intake_adjusted_change_and_residual_of_last():
    # Last observed outcomes: A 4 (session 6), B 6 (session 3), C 11 (session 2);
    # intakes 12, 10, 13. OLS: x-bar = 35/3, y-bar = 7, Sxx = 14/3, Sxy = 6 -> slope 9/7,
    # intercept 7 - (9/7)(35/3) = -8. Residuals: A 4 - (-8 + 108/7) = -24/7,
    # B 6 - (-8 + 90/7) = 8/7, C 11 - (-8 + 117/7) = 16/7.
    out = intake_adjusted_change(hand_frame(), residual_of_last=True)
    assert list(out.columns) == ["outcome_change", "outcome_last_residual"]
    assert_values(out["outcome_change"], HAND_EXPECTED["outcome_change"])
    a, b, c = -24 / 7, 8 / 7, 16 / 7
    assert_values(out["outcome_last_residual"], [a, a, b, a, c, b, a, c, b, a])


def test_residual_of_last_skips_missing_last_outcome():
    # If A's session-6 outcome is missing, A's last observed outcome is 5 (session 5).
    frame = hand_frame()
    frame.loc["row9", "outcome"] = NAN
    # x = 12, 10, 13; y = 5, 6, 11: y-bar = 22/3, Sxy = (1/3)(-7/3) + (-5/3)(-4/3) + (4/3)(11/3)
    # = (-7 + 20 + 44) / 9 = 57/9; slope = (57/9) / (14/3) = 19/14;
    # intercept = 22/3 - (19/14)(35/3) = 22/3 - 95/6 = -51/6 = -8.5;
    # residual A = 5 - (-8.5 + 19/14 * 12) = 13.5 - 114/7 = -39/14
    out = intake_adjusted_change(frame, residual_of_last=True)
    assert out.loc["row0", "outcome_last_residual"] == pytest.approx(-39 / 14)


# ---------------------------------------------------------------------------
# Clear errors for bad input
# ---------------------------------------------------------------------------


def test_error_missing_column():
    with pytest.raises(ValueError, match=r"no column\(s\) \['outcome_intake'\]"):
        add_model_features(hand_frame().drop(columns="outcome_intake"))


def test_error_duplicate_session_names_rows():
    frame = hand_frame()
    frame.loc["row1", "session"] = 2  # A now has two session-2 rows: row0 and row1
    with pytest.raises(ValueError, match=r"same 'patient_id' and session in rows 'row0', 'row1'"):
        lag_within_patient(frame, "alliance")


def test_error_patient_under_two_therapists():
    frame = hand_frame()
    frame.loc["row9", "therapist_id"] = "T2"
    with pytest.raises(ValueError, match=r"\['A'\] appear under more than one therapist"):
        therapist_mean_disaggregate(frame, "alliance")


def test_error_fractional_or_intake_session():
    frame = hand_frame()
    frame["session"] = frame["session"].astype(float)
    frame.loc["row4", "session"] = 1.5
    with pytest.raises(ValueError, match=r"not whole numbers in rows 'row4'"):
        lag_within_patient(frame, "alliance")
    frame = hand_frame()
    frame.loc["row5", "session"] = 0
    with pytest.raises(ValueError, match=r"below 1 in rows 'row5'.*outcome_intake"):
        add_model_features(frame)


def test_error_missing_patient_id():
    frame = hand_frame()
    frame.loc["row3", "patient_id"] = None
    with pytest.raises(ValueError, match=r"'patient_id' is missing in rows 'row3'"):
        person_mean_center(frame, "alliance")


def test_error_non_numeric_score():
    frame = hand_frame().astype({"alliance": object})
    frame.loc["row2", "alliance"] = "high"
    with pytest.raises(ValueError, match=r"'alliance'.*not numbers.*'row2'.*'high'"):
        add_model_features(frame)


def test_error_output_columns_already_present():
    once = add_model_features(hand_frame())
    with pytest.raises(ValueError, match="already has the output column"):
        add_model_features(once)


def test_error_bad_early_session_and_varying_group():
    with pytest.raises(ValueError, match="whole number >= 1"):
        early_value(hand_frame(), "alliance", session=0)
    with pytest.raises(ValueError, match="varies within group"):
        grand_mean_center(pd.Series([1.0, 2.0]), by=["a", "a"])


def test_error_residual_needs_three_patients():
    frame = hand_frame()
    frame = frame[frame["patient_id"] != "C"]
    with pytest.raises(ValueError, match="at least 3 patients"):
        intake_adjusted_change(frame, residual_of_last=True)


# ---------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------


@st.composite
def long_frames(draw):
    """Random long frames: gaps, missing scores, shared session numbers, shuffled rows."""
    n_patients = draw(st.integers(min_value=1, max_value=6))
    rows = []
    for p in range(n_patients):
        therapist = draw(st.sampled_from(["T1", "T2", "T3"]))
        sessions = draw(st.sets(st.integers(min_value=1, max_value=8), min_size=1, max_size=8))
        intake = draw(st.integers(min_value=0, max_value=27))
        for s in sorted(sessions):
            alliance = draw(st.one_of(st.none(), st.integers(min_value=12, max_value=60)))
            outcome = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=27)))
            rows.append((therapist, f"P{p}", s, alliance, outcome, intake))
    frame = pd.DataFrame(
        rows,
        columns=["therapist_id", "patient_id", "session", "alliance", "outcome", "outcome_intake"],
    ).astype({"alliance": float, "outcome": float, "outcome_intake": float})
    order = draw(st.permutations(range(len(frame))))
    frame = frame.iloc[list(order)]
    frame.index = [f"r{i}" for i in order]  # labels that are not the row positions
    return frame


@PROPERTY_SETTINGS
@given(long_frames())
def test_property_within_plus_between_is_raw(frame):
    out = person_mean_center(frame, "alliance")
    observed = frame["alliance"].notna()
    assert_values(
        (out["alliance_within"] + out["alliance_between"])[observed], frame["alliance"][observed]
    )
    assert out.loc[~observed, "alliance_within"].isna().all()


@PROPERTY_SETTINGS
@given(long_frames())
def test_property_within_deviations_sum_to_zero(frame):
    out = person_mean_center(frame, "outcome")
    sums = out.groupby("patient_id")["outcome_within"].sum()  # NaN skipped
    assert np.allclose(sums.to_numpy(), 0.0, atol=1e-9)


@PROPERTY_SETTINGS
@given(long_frames())
def test_property_lag_matches_dictionary_oracle(frame):
    value_at = {
        (p, s): v
        for p, s, v in zip(frame["patient_id"], frame["session"], frame["alliance"], strict=True)
    }
    expected = [
        value_at.get((p, s - 1), NAN)
        for p, s in zip(frame["patient_id"], frame["session"], strict=True)
    ]
    lag = lag_within_patient(frame, "alliance")
    assert lag.index.equals(frame.index)
    assert_values(lag, expected)
    first_rows = frame["session"] == frame.groupby("patient_id")["session"].transform("min")
    assert lag[first_rows].isna().all()


@PROPERTY_SETTINGS
@given(long_frames(), st.randoms(use_true_random=False))
def test_property_row_order_does_not_matter(frame, rng):
    out = add_model_features(frame)
    order = list(range(len(frame)))
    rng.shuffle(order)
    shuffled_out = add_model_features(frame.iloc[order])
    assert shuffled_out.index.equals(frame.index[order])
    pd.testing.assert_frame_equal(shuffled_out.loc[out.index], out)


@PROPERTY_SETTINGS
@given(long_frames())
def test_property_therapist_decomposition_is_consistent(frame):
    out = add_model_features(frame)
    rated = out["alliance_between"].notna()
    # therapist mean + patient deviation = patient mean
    assert_values(
        (out["alliance_therapist_mean"] + out["alliance_patient_dev"])[rated],
        out["alliance_between"][rated],
    )
    # each therapist's patient deviations (each patient once) average to zero
    patients = out[rated].drop_duplicates("patient_id")
    dev_means = patients.groupby("therapist_id")["alliance_patient_dev"].mean()
    assert np.allclose(dev_means.to_numpy(), 0.0, atol=1e-9)
    # the therapist mean is the mean of its patients' means, computed independently
    for therapist, group in patients.groupby("therapist_id"):
        expected = group["alliance_between"].mean()
        actual = out.loc[out["therapist_id"] == therapist, "alliance_therapist_mean"]
        assert np.allclose(actual.to_numpy(), expected)


@PROPERTY_SETTINGS
@given(long_frames())
def test_property_input_unchanged_and_columns_exact(frame):
    before = frame.copy()
    out = add_model_features(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert list(out.columns) == list(frame.columns) + list(MODEL_FEATURE_COLUMNS)
    assert out.index.equals(frame.index)
    assert_values(out["session_c"], frame["session"] - 1)
    between_c = out.drop_duplicates("patient_id")["alliance_between_c"].dropna()
    if len(between_c):
        assert math.isclose(between_c.mean(), 0.0, abs_tol=1e-9)


def test_patient_model_features_centre_over_available_patients():
    from helpers.features import add_patient_model_features

    patients = pd.DataFrame(
        {"alliance_early": [40.0, 50.0, np.nan], "outcome_intake": [10.0, 14.0, 18.0]}
    )
    out = add_patient_model_features(patients)
    assert out["alliance_early_c"].tolist()[:2] == [-5.0, 5.0]
    assert np.isnan(out["alliance_early_c"].iloc[2])
    assert out["outcome_intake_c"].tolist() == [-4.0, 0.0, 4.0]
    assert "alliance_early_c" not in patients


# ------------------------------------------------------- ids as sorted codes (memory)


def shuffled_study(seed: int) -> pd.DataFrame:
    """A study whose ids appear out of sorted order, with missing scores and gaps."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in rng.permutation(40):
        therapist = f"T{p % 7:02d}" if p % 3 else f"t{p % 5}"  # mixed case: order is not trivial
        sessions = np.sort(rng.choice(np.arange(1, 15), size=rng.integers(1, 9), replace=False))
        intake = float(rng.integers(5, 27))
        for s in sessions:
            alliance = NAN if rng.random() < 0.15 else rng.normal(5, 1)
            outcome = NAN if rng.random() < 0.1 else rng.normal(12, 4)
            rows.append((therapist, f"P{p}", int(s), alliance, outcome, intake))
    frame = pd.DataFrame(
        rows,
        columns=["therapist_id", "patient_id", "session", "alliance", "outcome", "outcome_intake"],
    )
    return frame.sample(frac=1.0, random_state=seed).astype({"patient_id": "str"})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_features_by_id_codes_equal_features_by_ids(seed: int):
    frame = shuffled_study(seed)
    sessions = frame["session"].to_numpy()
    ids = ["therapist_id", "patient_id"]
    by_ids = _feature_columns(
        frame, {c: frame[c].to_numpy() for c in ids}, sessions, "alliance", "outcome", 3
    )
    out = add_model_features(frame)
    for name in MODEL_FEATURE_COLUMNS:  # bit for bit: same groups, same order of summation
        np.testing.assert_array_equal(out[name].to_numpy(), by_ids[name].to_numpy(), err_msg=name)


def test_sorted_codes_order_as_the_ids():
    ids = pd.Series(["b", "B", "a", "b", "10", "9"], dtype="str")
    codes = _sorted_codes(ids)
    assert codes.tolist() == [4, 2, 3, 4, 0, 1]  # sorted: "10" < "9" < "B" < "a" < "b"
    groups = pd.Series(range(len(ids))).groupby(ids.to_numpy()).first().index
    assert list(groups[np.unique(codes)]) == sorted(set(ids))  # as groupby orders the ids


def test_add_model_features_names_the_patient_under_two_therapists():
    frame = hand_frame()
    frame.loc["row9", "therapist_id"] = "T2"
    with pytest.raises(ValueError, match=r"\['A'\] appear under more than one therapist"):
        add_model_features(frame)


def test_add_model_features_names_the_rows_of_a_repeated_session():
    frame = hand_frame()
    frame.loc["row1", "session"] = 2
    with pytest.raises(ValueError, match=r"same 'patient_id' and session in rows 'row0', 'row1'"):
        add_model_features(frame)


def test_rows_at_finds_the_same_patients_row_at_each_wanted_session():
    from helpers.features import _rows_at

    patients = np.array([7, 7, 7, 9, 9])  # rows in no particular order
    sessions = np.array([3, 1, 2, 1, 4])
    lag, early = _rows_at(patients, sessions, sessions - 1, np.full(5, 2))
    assert lag.tolist() == [2, -1, 1, -1, -1]  # patient 9 has no session 3: no lag at 4
    assert early.tolist() == [2, 2, 2, -1, -1]  # patient 9 has no session 2
    assert [r.tolist() for r in _rows_at(np.array([]), np.array([]), np.array([]))] == [[]]


def test_values_at_gives_nan_where_no_row_was_found():
    from helpers.features import _values_at

    out = _values_at(np.array([10.0, 20.0, 30.0]), np.array([2, -1, 0]))
    assert out[[0, 2]].tolist() == [30.0, 10.0] and np.isnan(out[1])


def test_varying_groups_is_nunique_with_missing_counted_as_a_value():
    from helpers.features import _varying_groups

    values = pd.Series([1.0, 1.0, 2.0, 3.0, np.nan, np.nan, 4.0, np.nan, 0.0, -0.0])
    groups = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert _varying_groups(values.groupby(groups)).tolist() == [1, 3]  # 0.0 == -0.0
    expected = values.groupby(groups).nunique(dropna=False)
    assert expected.index[(expected > 1).to_numpy()].tolist() == [1, 3]


def test_grand_mean_center_with_integer_groups_matches_labels():
    values = pd.Series([1.0, 1.0, 4.0, np.nan, 6.0])
    by_codes = grand_mean_center(values, by=np.array([0, 0, 1, 2, 3]))
    by_labels = grand_mean_center(values, by=["a", "a", "b", "c", "d"])
    # patient means 1, 4, 6 (c has none): grand mean 11/3
    expected = [1 - 11 / 3, 1 - 11 / 3, 4 - 11 / 3, np.nan, 6 - 11 / 3]
    np.testing.assert_allclose(by_codes, expected)
    np.testing.assert_array_equal(by_codes, by_labels)
    with pytest.raises(ValueError, match=r"varies within group\(s\) \[1\]"):
        grand_mean_center(pd.Series([1.0, 2.0, 3.0]), by=np.array([0, 1, 1]))
