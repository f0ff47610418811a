"""Tests of helpers.reshape: wide (one row per patient) to long (one row per session)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.config import config_from_dict
from helpers.reshape import match_session_columns, wide_to_long
from helpers.validation import StudyDataError


def wide_config(pattern: str = r"^(?P<var>.+)_s(?P<session>\d+)$", **changes):
    data = {
        "study": "w",
        "layout": "wide",
        "wide": {"session_pattern": pattern},
        "columns": {"therapist_id": "ther", "patient_id": "pat"},
        "covariates": {"age": "age"},
        "alliance": {"client": {"instrument": "wai_sr", "total": "wai"}},
        "outcome": {"instrument": "phq9", "total": "phq"},
    }
    data.update(changes)
    return config_from_dict(data)


def wide_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_row": [2, 3],
            "ther": ["T1", "T2"],
            "pat": ["A", "B"],
            "age": [30, 40],
            "wai_s01": [40, 50],
            "wai_s02": [44, None],
            "phq_s00": [15, 20],
            "phq_s01": [12, 18],
            "phq_s02": [10, None],
        }
    )


def test_wide_to_long_by_hand():
    long = wide_to_long(wide_frame(), wide_config())
    assert list(long.columns) == ["source_row", "ther", "pat", "age", "session", "wai", "phq"]
    # Patient A has sessions 0, 1, 2; patient B has 0 and 1 (session 2 all missing: dropped).
    assert long["pat"].tolist() == ["A", "A", "A", "B", "B"]
    assert long["session"].tolist() == [0, 1, 2, 0, 1]
    assert long["source_row"].tolist() == [2, 2, 2, 3, 3]
    assert long["ther"].tolist() == ["T1", "T1", "T1", "T2", "T2"]
    assert long["age"].tolist() == [30, 30, 30, 40, 40]
    np.testing.assert_array_equal(long["wai"].to_numpy(dtype=float), [np.nan, 40, 44, np.nan, 50])
    np.testing.assert_array_equal(long["phq"].to_numpy(dtype=float), [15, 12, 10, 20, 18])
    assert long["session"].dtype == "int64"


def test_a_session_with_any_value_is_kept():
    frame = wide_frame()
    frame.loc[1, "wai_s02"] = 33  # B now has a session-2 alliance but no outcome
    long = wide_to_long(frame, wide_config())
    b = long.loc[long["pat"] == "B"]
    assert b["session"].tolist() == [0, 1, 2]
    assert b["wai"].tolist()[-1] == 33
    assert pd.isna(b["phq"].tolist()[-1])


def test_unconfigured_session_variables_are_reshaped_too():
    frame = wide_frame().assign(mood_s01=[1, 2])
    long = wide_to_long(frame, wide_config())
    assert "mood" in long.columns
    assert long.loc[long["session"] == 1, "mood"].tolist() == [1, 2]


def test_match_session_columns():
    matched = match_session_columns(list(wide_frame().columns), wide_config())
    assert matched == {
        "wai": {1: "wai_s01", 2: "wai_s02"},
        "phq": {0: "phq_s00", 1: "phq_s01", 2: "phq_s02"},
    }


def test_other_naming_schemes_via_the_pattern():
    frame = wide_frame().rename(columns=lambda c: c.replace("_s0", "_t") if "_s0" in c else c)
    long = wide_to_long(frame, wide_config(r"^(?P<var>.+)_t(?P<session>\d+)$"))
    assert long["session"].tolist() == [0, 1, 2, 0, 1]


def test_no_column_matches_the_pattern_suggests_one():
    frame = wide_frame().rename(columns=lambda c: c.replace("_s0", "_t") if "_s0" in c else c)
    with pytest.raises(StudyDataError) as info:
        wide_to_long(frame, wide_config(), file="wide.csv")
    (problem,) = info.value.problems
    assert problem.file == "wide.csv"
    assert "no column matches" in problem.found
    assert "'wai_t1'" in problem.found
    assert "^(?P<var>.+)_t(?P<session>\\d+)$" in problem.fix


def test_configured_variable_without_session_columns():
    frame = wide_frame().drop(columns=["phq_s00", "phq_s01", "phq_s02"]).assign(phq_v1=[1, 2])
    with pytest.raises(StudyDataError) as info:
        wide_to_long(frame, wide_config())
    (problem,) = info.value.problems
    assert problem.column == "phq"
    assert "'phq_v1'" in problem.found
    assert r"^(?P<var>.+)_s(?P<session>\d+)$" in problem.rule


def test_score_given_as_one_column_in_a_wide_file():
    frame = wide_frame().drop(columns=["phq_s00", "phq_s01", "phq_s02"]).assign(phq=[1, 2])
    with pytest.raises(StudyDataError) as info:
        wide_to_long(frame, wide_config())
    (problem,) = info.value.problems
    assert problem.found == "a single column 'phq', not one column per session"


def test_same_variable_and_session_twice():
    frame = wide_frame().assign(wai_s1=[1, 2])
    with pytest.raises(StudyDataError) as info:
        wide_to_long(frame, wide_config())
    (problem,) = info.value.problems
    assert problem.column == "wai_s01, wai_s1"
    assert problem.found == "2 columns for variable 'wai' at session 1"


def test_variable_both_per_session_and_patient_level():
    frame = wide_frame().assign(wai=[1, 2])
    with pytest.raises(StudyDataError) as info:
        wide_to_long(frame, wide_config())
    assert info.value.problems[0].found == "a column 'wai' and per-session columns of 'wai'"


def test_a_session_column_in_a_wide_file():
    frame = wide_frame().assign(session=[1, 1])
    with pytest.raises(StudyDataError) as info:
        wide_to_long(frame, wide_config())
    assert info.value.problems[0].column == "session"
