"""Tests of helpers.validation: Problem, StudyDataError and the report text."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.paths import PROJECT_ROOT
from helpers.validation import (
    MAX_VALUES,
    Problem,
    StudyDataError,
    format_problems,
    widen_half,
    with_columns,
)


def test_problem_stores_paths_relative_to_the_project_root():
    inside = Problem(file=PROJECT_ROOT / "data" / "raw" / "x.csv", column="a")
    assert inside.file == "data/raw/x.csv"
    absolute_text = Problem(file=str(PROJECT_ROOT / "tests" / "y.csv"), column=None)
    assert absolute_text.file == "tests/y.csv"


def test_problem_outside_the_project_keeps_only_the_file_name(tmp_path: Path):
    p = Problem(file=tmp_path / "deep" / "study.sav", column=None)
    assert p.file == "study.sav"
    assert str(tmp_path) not in format_problems([p])


def test_problem_keeps_relative_text_paths_as_given():
    assert Problem(file="data/my.csv", column=None).file == "data/my.csv"


def test_problem_keeps_at_most_ten_values_but_all_rows():
    p = Problem(file="f.csv", column="c", rows=list(range(2, 32)), values=list(range(30)))
    assert p.values == list(range(MAX_VALUES))
    assert MAX_VALUES == 10
    assert len(p.rows) == 30


def test_format_problems_renders_the_exact_report():
    p = Problem(
        file="data.csv",
        column="phq",
        rows=[3, 7],
        values=["abc", "3,5"],
        rule="numbers",
        found="2 values that are not numbers",
        fix="correct the cells",
    )
    expected = (
        "1 problem found:\n"
        "\n"
        "[1] data.csv, column 'phq', rows 3, 7\n"
        "    expected: numbers\n"
        "    found:    2 values that are not numbers\n"
        "    values:   'abc', '3,5'\n"
        "    fix:      correct the cells"
    )
    assert format_problems([p]) == expected


def test_format_problems_truncates_rows_and_gives_the_total():
    p = Problem(file="d.csv", column="x", rows=list(range(2, 27)), rule="r", found="f", fix="x")
    text = format_problems([p], max_rows=3)
    assert "rows 2, 3, 4, … (25 rows in total)" in text


def test_config_problems_say_key_and_line_and_do_not_repeat_the_value():
    p = Problem(
        file="study.yml",
        column="layout",
        rows=[4],
        values=["longg"],
        rule="one of: long, wide",
        found="'longg'",
        fix="did you mean 'long'?",
        row_label="line",
    )
    text = format_problems([p])
    assert "study.yml, key 'layout', line 4" in text
    assert "values:" not in text  # 'longg' is already in the found line


def test_numbering_of_several_problems():
    problems = [Problem(file="a.csv", column=str(i), rule="r", found="f") for i in range(12)]
    text = format_problems(problems)
    assert text.startswith("12 problems found:")
    assert "\n[1] a.csv, column '0'" in text
    assert "\n[12] a.csv, column '11'" in text
    # Continuation lines line up under the text after the wider tag.
    assert "\n     expected: r" in text


def test_no_problems():
    assert format_problems([]) == "No problems found."


def test_missing_values_are_shown_as_missing():
    p = Problem(file="a.csv", column="c", rows=[2], values=[float("nan")], rule="r", found="f")
    assert "values:   <missing>" in format_problems([p])


def test_study_data_error_message_is_summary_plus_report():
    p = Problem(file="a.csv", column="c", rows=[2], values=["x"], rule="r", found="f", fix="g")
    err = StudyDataError([p], "Could not read a.csv.")
    text = str(err)
    assert text.splitlines()[0] == "Could not read a.csv."
    assert text.endswith(format_problems([p]))
    assert "Traceback" not in text
    assert err.problems == [p]


def test_study_data_error_accepts_a_single_problem():
    p = Problem(file="a.csv", column="c")
    assert StudyDataError(p).problems == [p]


def test_to_frame_has_one_row_per_problem():
    err = StudyDataError(
        [
            Problem("a.csv", "x", [2, 5], ["q", "r"], "numbers", "text", "fix it"),
            Problem("b.yml", "layout", [3], [], "long|wide", "'longg'", "did you mean", "line"),
        ]
    )
    frame = err.to_frame()
    assert list(frame.columns) == [
        "file",
        "column",
        "rows",
        "n_rows",
        "values",
        "rule",
        "found",
        "fix",
    ]
    assert frame["file"].tolist() == ["a.csv", "b.yml"]
    assert frame["rows"].tolist() == ["2, 5", "3"]
    assert frame["n_rows"].tolist() == [2, 1]
    assert frame.loc[0, "values"] == "'q' | 'r'"
    assert isinstance(frame, pd.DataFrame)


def test_study_data_error_survives_pickling():
    err = StudyDataError([Problem("a.csv", "x", [2], ["v"], "r", "f", "g")], "summary")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err)
    assert again.problems[0].rows == [2]


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"a": [1.0, 2.0, 3.0], "s": pd.array(["x", "y", "z"], dtype="str")}, index=[10, 20, 30]
    )


def test_with_columns_replaces_in_place_and_appends_new_names_in_order():
    out = with_columns(_frame(), {"c": np.array([7, 8, 9]), "a": np.array([4.0, 5.0, 6.0])})
    assert out.columns.tolist() == ["a", "s", "c"]
    assert out["a"].tolist() == [4.0, 5.0, 6.0]
    assert out["c"].tolist() == [7, 8, 9]
    assert out.index.tolist() == [10, 20, 30]


def test_with_columns_aligns_a_series_on_the_index_like_setitem():
    values = pd.Series([3.0, 1.0], index=[30, 10])
    out = with_columns(_frame(), {"b": values})
    assert out["b"].iloc[0] == 1.0 and out["b"].iloc[2] == 3.0
    assert np.isnan(out["b"].iloc[1])  # no value for row 20


def test_with_columns_shares_the_arrays_but_leaves_the_input_unmodified():
    df = _frame()
    added = np.array([7.0, 8.0, 9.0])
    out = with_columns(df, {"b": added})
    assert np.shares_memory(out["b"].to_numpy(), added)  # not copied
    assert np.shares_memory(out["a"].to_numpy(), df["a"].to_numpy())
    out.loc[10, "a"] = 100.0
    out.loc[20, "s"] = "changed"
    assert df["a"].tolist() == [1.0, 2.0, 3.0]
    assert df["s"].tolist() == ["x", "y", "z"]


def test_with_columns_copies_a_read_only_array_so_the_frame_stays_writable():
    source = pd.Series([1.0, 2.0, 3.0])
    view = source.to_numpy()
    assert not view.flags.writeable
    out = with_columns(_frame(), {"b": view})
    out.loc[10, "b"] = 5.0
    assert out["b"].tolist() == [5.0, 2.0, 3.0]
    assert source.tolist() == [1.0, 2.0, 3.0]


def test_with_columns_refuses_an_array_of_the_wrong_length():
    with pytest.raises(ValueError, match="'b' has 2 values for 3 rows"):
        with_columns(_frame(), {"b": np.array([1.0, 2.0])})


def test_widen_half_gives_float16_columns_as_float32_with_the_same_values():
    half = pd.Series([1.0, np.nan, 65504.0, -0.5], dtype="float16", index=[3, 4, 5, 6])
    wide = widen_half(half)
    assert wide.dtype == np.float32
    assert wide.index.tolist() == [3, 4, 5, 6]
    assert wide[[3, 5, 6]].tolist() == [1.0, 65504.0, -0.5] and np.isnan(wide[4])
    other = pd.Series([1.5, 2.5])
    assert widen_half(other) is other  # float64 (or any other type) is left as it is


def test_release_freed_memory_keeps_live_data():
    import pyarrow as pa

    from helpers.validation import release_freed_memory

    live = pa.array(np.arange(1 << 20, dtype="int64")).cast(pa.float64())  # Arrow pool
    numbers = np.arange(1 << 20, dtype="float64")  # 8 MB from malloc
    assert release_freed_memory() is None
    assert pa.total_allocated_bytes() >= 8 << 20  # only unused pages are returned
    assert live[-1].as_py() == (1 << 20) - 1
    assert numbers.sum() == (1 << 20) * ((1 << 20) - 1) / 2
