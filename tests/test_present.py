"""The presentation layer: tables as display strings, checked against hand-written text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.present import format_count, format_p, format_table, show


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.0, "< .001"),
        (0.00099, "< .001"),
        (0.001, ".001"),
        (0.0341, ".034"),
        (0.05, ".050"),
        (0.5, ".500"),
        (0.9994, ".999"),
        (0.9996, "> .999"),
        (1.0, "> .999"),
        (np.float64(0.2), ".200"),
        (float("nan"), ""),
        (None, ""),
        (pd.NA, ""),
    ],
)
def test_p_values_are_written_in_apa_style(p, expected):
    assert format_p(p) == expected


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_a_p_value_outside_zero_one_is_refused(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        format_p(bad)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(267, "267"), (1314.0, "1314"), (np.int64(0), "0"), (np.float64(12.0), "12"), (None, "")],
)
def test_counts_are_integers(n, expected):
    assert format_count(n) == expected


def test_a_count_with_a_fraction_is_refused():
    with pytest.raises(ValueError, match="whole number"):
        format_count(12.5)
    with pytest.raises(TypeError):
        format_count(True)


def test_headline_table_cells():
    table = pd.DataFrame(
        {
            "estimate": [-0.1234, 2.0],
            "se": [0.01, 1.0],
            "N": [267.0, 1314.0],
            "p": [0.0, 0.0341],
            "converged": [True, False],
            "label": ["Flückiger et al. (2018)", "this study"],
        }
    )
    assert format_table(table).to_dict("list") == {
        "estimate": ["-0.123", "2.000"],
        "se": ["0.010", "1.000"],
        "N": ["267", "1314"],
        "p": ["< .001", ".034"],
        "converged": ["yes", "no"],
        "label": ["Flückiger et al. (2018)", "this study"],
    }


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        # count names: integers
        ("n", [332.0, 12.0], ["332", "12"]),
        ("k", [295, 11], ["295", "11"]),
        ("n_patients", [12.0, np.nan], ["12", ""]),
        ("patients_n", [3.0, 4.0], ["3", "4"]),
        ("n (sessions)", [5.0, 6.0], ["5", "6"]),
        ("nobs", [4048, 3957], ["4048", "3957"]),
        ("replicates", [200.0, 1000.0], ["200", "1000"]),
        ("low_alliance_n", [2.0, 3.0], ["2", "3"]),  # a count name beats the word "low"
        # whole numbers under a neutral name: integers too
        ("df", [2.0, 330.0], ["2", "330"]),
        ("dropped (missing)", [131, 0], ["131", "0"]),
        # estimate-like names stay decimal even when whole
        ("estimate", [2.0, 3.0], ["2.000", "3.000"]),
        ("ci_low", [7.0, 11.0], ["7.000", "11.000"]),
        ("intake SD", [5.0, 4.0], ["5.000", "4.000"]),
        ("sessions (mean)", [11.0, 10.0], ["11.000", "10.000"]),
        ("share", [1.0, 0.0], ["1.000", "0.000"]),
        ("r", [1.0, 0.0], ["1.000", "0.000"]),
        ("estimate", [2, 3], ["2.000", "3.000"]),  # integer dtype: the name still decides
        # a fraction is never rounded away, whatever the name
        ("sessions", [12.5, 3.0], ["12.500", "3.000"]),
        ("n", [0.5, 1.0], ["0.500", "1.000"]),
    ],
)
def test_count_or_decimal_both_directions(name, values, expected):
    table = pd.DataFrame({name: values})
    assert format_table(table)[name].tolist() == expected


@pytest.mark.parametrize("name", ["p", "P", "p_value", "p_holm", "wald_p", "p (LRT)", "p-value"])
def test_p_columns_are_found_by_name(name):
    table = pd.DataFrame({name: [0.0001, 0.5]})
    assert format_table(table)[name].tolist() == ["< .001", ".500"]


@pytest.mark.parametrize("name", ["pct", "patients", "ps", "prop"])
def test_names_starting_with_p_are_not_p_values(name):
    table = pd.DataFrame({name: [0.25, 2.0]})
    assert format_table(table)[name].tolist() == ["0.250", "2.000"]


def test_p_text_already_formatted_elsewhere_is_rewritten_in_apa_style():
    table = pd.DataFrame({"p": ["<0.001", "0.034", "1.000", "< 0.01", "n/a", None]})
    assert format_table(table)["p"].tolist() == ["< .001", ".034", "> .999", "< .010", "n/a", ""]


def test_missing_values_are_empty_in_every_kind_of_column():
    table = pd.DataFrame(
        {
            "estimate": [np.nan, 1.5],
            "n": pd.array([pd.NA, 3], dtype="Int64"),
            "ok": pd.array([pd.NA, True], dtype="boolean"),
            "label": [None, "a"],
        }
    )
    assert format_table(table).to_dict("list") == {
        "estimate": ["", "1.500"],
        "n": ["", "3"],
        "ok": ["", "yes"],
        "label": ["", "a"],
    }


def test_decimals_per_column_and_overall():
    table = pd.DataFrame({"estimate": [1.23456, -0.00001], "z": [33.59, 2.0], "df": [2.0, 3.0]})
    assert format_table(table, decimals=2).to_dict("list") == {
        "estimate": ["1.23", "0.00"],  # no "-0.00"
        "z": ["33.59", "2.00"],
        "df": ["2", "3"],
    }
    mapped = format_table(table, decimals={"z": 1, "df": 1})
    assert mapped["estimate"].tolist() == ["1.235", "0.000"]  # unnamed columns: 3
    assert mapped["z"].tolist() == ["33.6", "2.0"]
    assert mapped["df"].tolist() == ["2.0", "3.0"]  # an explicit entry beats the count rule


def test_bad_decimals_are_refused():
    table = pd.DataFrame({"estimate": [1.0]})
    with pytest.raises(ValueError, match="does not have"):
        format_table(table, decimals={"estimat": 2})
    with pytest.raises(ValueError, match="≥ 0"):
        format_table(table, decimals=-1)


def test_index_and_multiindex_are_kept_and_the_input_is_not_changed():
    index = pd.MultiIndex.from_tuples([("outcome", "therapist"), ("outcome", "patient")])
    columns = pd.MultiIndex.from_tuples([("variance", "estimate"), ("variance", "n")])
    table = pd.DataFrame([[2.249459, 14.0], [21.744977, 399.0]], index=index, columns=columns)
    before = table.copy()
    out = format_table(table)
    assert out.index.equals(index) and out.columns.equals(columns)
    assert out.to_numpy().tolist() == [["2.249", "14"], ["21.745", "399"]]
    pd.testing.assert_frame_equal(table, before)


def test_duplicate_column_labels_are_formatted_one_by_one():
    table = pd.DataFrame([[0.5, 2.0]], columns=["estimate", "estimate"])
    assert format_table(table).to_numpy().tolist() == [["0.500", "2.000"]]


def test_show_is_format_table():
    table = pd.DataFrame({"estimate": [0.12345], "p": [0.2]}, index=pd.Index(["a"], name="term"))
    pd.testing.assert_frame_equal(show(table, decimals=2), format_table(table, decimals=2))
    assert show(table).loc["a"].tolist() == ["0.123", ".200"]
