"""Tests of helpers.schema's checks of the processed data (their lean implementations)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.schema import first_of_each_session, one_therapist_each, repeated_keys


def test_repeated_keys_marks_every_repeat_but_the_first():
    keys = np.array([4, 2, 4, 9, 2, 4])
    assert repeated_keys(keys).tolist() == [False, False, True, False, True, True]
    assert repeated_keys(np.array([], dtype=np.int64)).tolist() == []


def test_first_of_each_session_is_not_duplicated_on_patient_and_session():
    df = pd.DataFrame(
        {
            "patient_id": pd.array(["a", "b", "a", "a", None, None], dtype="str"),
            "session": [1, 1, 2, 1, 3, 3],
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    assert first_of_each_session(df).tolist() == [True, True, True, False, True, False]
    assert first_of_each_session(df).index.tolist() == [10, 11, 12, 13, 14, 15]
    as_floats = df.astype({"session": "float64"})  # not int64: pandas' duplicated answers
    assert first_of_each_session(as_floats).tolist() == [True, True, True, False, True, False]


def test_first_of_each_session_with_huge_session_numbers_does_not_overflow():
    df = pd.DataFrame({"patient_id": ["a", "b", "a"], "session": [1, 2**62, 2**62]})
    assert first_of_each_session(df).tolist() == [True, True, True]


def test_one_therapist_each_ignores_missing_ids():
    patients = pd.Series(["a", "a", "b", "b", None])
    assert one_therapist_each(patients, pd.Series(["t", "t", "u", None, "v"]))
    assert not one_therapist_each(patients, pd.Series(["t", "t", "u", "w", "v"]))
    assert one_therapist_each(pd.Series([], dtype="str"), pd.Series([], dtype="str"))
