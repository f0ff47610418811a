"""Tests of helpers.session_dates on hand-made dates whose answers are worked out by hand."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest

from helpers import session_dates as sd


def days(*texts: str | None) -> pd.Series:
    return pd.Series([pd.NaT if t is None else pd.Timestamp(t) for t in texts])


def test_iso_dates_by_default_with_an_optional_time():
    dates, bad = sd.parse_session_dates(
        pd.Series(["2024-03-05", " 2024-12-31 ", "2024-03-05 17:45", "2024-03-05T08:00:00", None])
    )
    assert dates.tolist()[:4] == [
        pd.Timestamp(2024, 3, 5),
        pd.Timestamp(2024, 12, 31),
        pd.Timestamp(2024, 3, 5),  # the time of day is dropped
        pd.Timestamp(2024, 3, 5),
    ]
    assert dates.isna().tolist() == [False] * 4 + [True]
    assert bad.tolist() == [False] * 5


@pytest.mark.parametrize("text", ["05.03.2024", "2024-3-5", "2024-02-30", "2024", "yesterday"])
def test_text_that_is_not_an_iso_date_is_bad(text):
    dates, bad = sd.parse_session_dates(pd.Series([text]))
    assert bad.tolist() == [True] and dates.isna().all()


def test_a_configured_format():
    dates, bad = sd.parse_session_dates(
        pd.Series(["05.03.2024", "31.12.2023", "2024-03-05", "31.02.2024", ""]), "%d.%m.%Y"
    )
    assert dates.tolist()[:2] == [pd.Timestamp(2024, 3, 5), pd.Timestamp(2023, 12, 31)]
    # ISO text does not fit the format; 31 February is not a date; '' is missing, not bad
    assert bad.tolist() == [False, False, True, True, False]


def test_native_date_cells_are_taken_as_they_are():
    berlin = datetime.timezone(datetime.timedelta(hours=1))
    cells = pd.Series(
        [
            datetime.date(2024, 3, 5),
            datetime.datetime(2024, 3, 6, 14, 30),
            pd.Timestamp("2024-03-07 09:00"),
            np.datetime64("2024-03-08"),
            datetime.datetime(2024, 3, 9, 23, 30, tzinfo=berlin),  # the local day counts
        ],
        dtype=object,
    )
    dates, bad = sd.parse_session_dates(cells, "%d.%m.%Y")  # the format is for text only
    assert [d.day for d in dates] == [5, 6, 7, 8, 9]
    assert not bad.any()


def test_numbers_are_dates_only_with_a_format():
    cells = pd.Series([20240305, 20240306.0, 45356.0, True], dtype=object)
    _, bad = sd.parse_session_dates(cells)
    assert bad.tolist() == [True, True, True, True]
    dates, bad = sd.parse_session_dates(cells, "%Y%m%d")
    assert dates.tolist()[:2] == [pd.Timestamp(2024, 3, 5), pd.Timestamp(2024, 3, 6)]
    assert bad.tolist() == [False, False, True, True]


def test_suggested_formats():
    assert sd.suggest_date_formats(["31/01/2024", "05/03/2024"]) == ["%d/%m/%Y"]
    assert sd.suggest_date_formats(["03/05/2024"]) == ["%d/%m/%Y", "%m/%d/%Y"]
    assert sd.suggest_date_formats(["05.03.2024", "2024-03-05"]) == []
    assert sd.suggest_date_formats([]) == []


def test_sessions_numbered_in_date_order_with_ties_and_gaps_in_the_rows():
    patients = pd.Series(["a", "a", "b", "a", None, "b", "a"], index=[10, 11, 12, 13, 14, 15, 16])
    dates = days(
        "2024-03-12", "2024-03-05", "2024-01-01", "2024-03-12", "2024-01-01", None, "2024-05-01"
    )
    dates.index = patients.index
    numbers = sd.number_sessions_by_date(patients, dates)
    # a: 03-05 -> 1, 03-12 -> 2 (twice), 05-01 -> 3; b: 01-01 -> 1, no date -> NA; no patient -> NA
    assert numbers.astype(object).where(numbers.notna(), None).tolist() == [
        2,
        1,
        1,
        2,
        None,
        None,
        3,
    ]
    assert numbers.index.tolist() == [10, 11, 12, 13, 14, 15, 16]
    with_intake = sd.number_sessions_by_date(patients, dates, first=0)
    assert with_intake.loc[[11, 10, 16, 12]].tolist() == [0, 1, 2, 0]


def test_numbering_does_not_depend_on_row_order():
    patients = pd.Series(["a", "b", "a", "a", "b"])
    dates = days("2024-02-01", "2024-01-10", "2024-01-15", "2024-03-01", "2024-01-03")
    numbers = sd.number_sessions_by_date(patients, dates)
    order = [4, 2, 0, 3, 1]
    shuffled = sd.number_sessions_by_date(patients.iloc[order], dates.iloc[order])
    assert shuffled.sort_index().tolist() == numbers.tolist() == [2, 2, 1, 3, 1]


def summary_input():
    """Patient A: intake 03-01, sessions 03-05, 03-12 (twice), 04-30; B: 01-01, 01-02, 01-09.

    Treatment intervals: A 7 and 49 days, B 7 days (the intake is not a session);
    median 7; one interval longer than 28 days; A's two records on 03-12 share a
    date; one record has no date.
    """
    patients = pd.Series(["A"] * 5 + ["B"] * 4)
    dates = days(
        "2024-03-01",
        "2024-03-05",
        "2024-03-12",
        "2024-03-12",
        "2024-04-30",
        "2024-01-01",
        "2024-01-02",
        "2024-01-09",
        None,
    )
    sessions = pd.Series([0, 1, 2, 2, 3, 0, 1, 2, None], dtype="Int64")
    return patients, sessions, dates


def test_session_date_summary_by_hand():
    table = sd.session_date_summary(*summary_input(), max_gap_days=28)
    assert table["measure"].tolist() == [
        "records with a session date",
        "records without a session date",
        "patients with dated records",
        "records on the same date as another record of the patient",
        "intervals between consecutive treatment sessions",
        "intervals longer than 28 days",
        "median days between consecutive treatment sessions",
    ]
    assert table["value"].tolist() == [8, 1, 2, 2, 3, 1, 7]
    # a longer limit: no interval is longer than 49 days
    assert sd.session_date_summary(*summary_input(), max_gap_days=49)["value"].tolist()[5] == 0


def test_session_date_summary_without_intervals():
    table = sd.session_date_summary(
        pd.Series(["A"]), pd.Series([1], dtype="Int64"), days("2024-01-01")
    )
    assert table["value"].tolist() == [1, 0, 1, 0, 0, 0, None]


def test_days_since_first_session_by_hand():
    patients, sessions, dates = summary_input()
    got = sd.days_since_first_session(patients, sessions, dates)
    # A: session 1 on 03-05: intake -4, 0, 7, 7, 56; B: session 1 on 01-02: -1, 0, 7; no date: NA
    assert got.iloc[:8].tolist() == [-4, 0, 7, 7, 56, -1, 0, 7]
    assert got.isna().tolist() == [False] * 8 + [True]
    assert got.name == "days_since_first"
