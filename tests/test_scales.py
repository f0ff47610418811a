"""Tests of helpers.scales: item means converted to totals, columns on the wrong scale.

Expected values are worked out by hand from the instruments' published ranges
(WAI-SR items 1–5, totals 12–60; WAI-S totals 12–84; PHQ-9 items 0–3, totals
0–27; OQ-45 totals 0–180), never taken from the code under test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.config import config_from_dict
from helpers.scales import check_column_scales, convert_item_means, score_columns
from helpers.validation import StudyDataError

NAN = float("nan")


def config(client=None, outcome=None):
    return config_from_dict(
        {
            "study": "s",
            "layout": "long",
            "columns": {"therapist_id": "t", "patient_id": "p", "session": "s"},
            "alliance": {"client": client or {"instrument": "wai_sr", "total": "wai"}},
            "outcome": outcome or {"instrument": "phq9", "total": "phq"},
        }
    )


def frame(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    data = {"source_row": np.arange(2, n + 2)}
    data.update({k: np.asarray(v, dtype="float64") for k, v in columns.items()})
    return pd.DataFrame(data)


def scale_problem(df: pd.DataFrame, cfg):
    with pytest.raises(StudyDataError) as info:
        check_column_scales(df, score_columns(cfg), "study.csv")
    (problem,) = info.value.problems
    assert info.value.summary == (
        f"Most values of column '{info.value.problems[0].column}' in study.csv are outside "
        "the allowed range; nothing was set to missing."
    )
    return problem


# ----------------------------------------------------------------- score columns


def test_score_columns_describe_items_totals_and_means():
    cfg = config(
        client={"instrument": "wai_sr", "total": "wai_mean", "total_scale": "mean"},
        outcome={"instrument": "gad7", "item_pattern": "g{i}", "intake_total": "g0"},
    )
    described = [(c.column, c.source, c.key, c.kind, c.allowed) for c in score_columns(cfg)]
    assert described == [
        ("alliance_client", "wai_mean", "alliance.client.total", "mean", (1, 5)),
        *[
            (f"outcome_item{i:02d}", f"g{i}", "outcome.item_pattern", "item", (0, 3))
            for i in range(1, 8)
        ],
        ("outcome_intake", "g0", "outcome.intake_total", "total", (0, 21)),
    ]


# ----------------------------------------------------------------- conversion


def test_item_means_become_totals_and_the_conversion_is_listed():
    cfg = config(
        client={"instrument": "wai_sr", "total": "wai_mean", "total_scale": "mean"},
        outcome={
            "instrument": "phq9",
            "total": "phq_mean",
            "intake_total": "phq0_mean",
            "total_scale": "mean",
        },
    )
    df = frame(
        alliance_client=[3.5, 1, NAN, 5],
        outcome=[1.5, NAN, 0, 3],
        outcome_intake=[2, 2, 2, NAN],
    )
    converted, table, originals = convert_item_means(df, score_columns(cfg))
    # WAI-SR: 12 items, so 3.5 -> 42, 1 -> 12, 5 -> 60; PHQ-9: 9 items, 1.5 -> 13.5, 2 -> 18.
    assert converted["alliance_client"].tolist()[:2] == [42.0, 12.0]
    assert np.isnan(converted["alliance_client"].iloc[2])
    assert converted["alliance_client"].iloc[3] == 60.0
    assert converted["outcome"].fillna(-1).tolist() == [13.5, -1, 0.0, 27.0]
    assert converted["outcome_intake"].fillna(-1).tolist() == [18.0, 18.0, 18.0, -1]
    assert df["alliance_client"].tolist()[:2] == [3.5, 1.0]  # input not modified
    assert table.to_dict("records") == [
        {
            "column": "alliance_client",
            "source column": "wai_mean",
            "config key": "alliance.client.total_scale",
            "from": "item mean (1–5)",
            "to": "total (12–60)",
            "factor": 12,
            "values converted": 3,
        },
        {
            "column": "outcome",
            "source column": "phq_mean",
            "config key": "outcome.total_scale",
            "from": "item mean (0–3)",
            "to": "total (0–27)",
            "factor": 9,
            "values converted": 3,
        },
        {
            "column": "outcome_intake",
            "source column": "phq0_mean",
            "config key": "outcome.total_scale",
            "from": "item mean (0–3)",
            "to": "total (0–27)",
            "factor": 9,
            "values converted": 3,
        },
    ]
    before, how = originals["alliance_client"]
    assert before.tolist()[:2] == [3.5, 1.0]
    assert how == "item mean: allowed 1–5, converted × 12"


def test_sum_totals_are_not_converted():
    df = frame(alliance_client=[40, 41], outcome=[12, 9])
    converted, table, originals = convert_item_means(df, score_columns(config()))
    assert converted["alliance_client"].tolist() == [40.0, 41.0]
    assert table.empty and list(table.columns)[-1] == "values converted"
    assert originals == {}


# ----------------------------------------------------------------- mostly out of range


def test_a_total_column_holding_item_means_stops_with_the_fix():
    means = [3.5, 4.25, 2.0, 1.0, 5.0, 3.75]
    problem = scale_problem(frame(alliance_client=means, outcome=[9] * 6), config())
    assert problem.file == "study.csv"
    assert problem.column == "wai"
    assert problem.rule == (
        "WAI-SR totals (12–60): values from 12 to 60 "
        "(named by alliance.client.total; becomes alliance_client)"
    )
    assert problem.found == "6 of 6 values (100%) outside that range, from 1 to 5"
    assert problem.rows == [2, 3, 4, 5, 6, 7]
    assert problem.values == means
    assert problem.fix == (
        "this looks like an item mean, not a total: all 6 values lie within the WAI-SR "
        "item range 1–5; set `alliance.client.total_scale: mean`"
    )


def test_another_instruments_range_is_named():
    # WAI-S totals (12-84): 70, 84, 65, 77, 61 are above the WAI-SR maximum of 60.
    wai_s = [70, 84, 65, 77, 61, 45]
    problem = scale_problem(frame(alliance_client=wai_s, outcome=[9] * 6), config())
    assert problem.found == "5 of 6 values (83%) outside that range, from 45 to 84"
    assert problem.fix == (
        "is this another instrument? (e.g. WAI-S 12–84, which holds all 6 values): "
        "if so, set `alliance.client.instrument: wai_s`"
    )
    # OQ-45 totals (0-180) in a PHQ-9 column: BDI-II (0-63) holds only 40 and 55.
    oq = [40, 55, 80, 120, 95, 150]
    problem = scale_problem(frame(alliance_client=[40] * 6, outcome=oq), config())
    assert problem.column == "phq"
    assert "e.g. OQ-45 0–180, which holds all 6 values" in problem.fix
    assert problem.fix.endswith("set `outcome.instrument: oq45`")


def test_percentages_and_unknown_values():
    # None lies in 12-60 or in WAI-S 12-84, only 5 in the item range 1-5; all in 0-100.
    percent = [0, 5, 95, 100, 88, 99]
    problem = scale_problem(frame(alliance_client=percent, outcome=[9] * 6), config())
    assert problem.fix.startswith(
        "the values look like percentages or a 0–100 score (all 6 lie within 0–100)"
    )
    generic = (
        "check the instrument (`alliance.client.instrument: wai_sr`) and the column "
        "mapping (`alliance.client.total`)"
    )
    odd = [200, 300, 450, 500, 999]
    assert scale_problem(frame(alliance_client=odd, outcome=[9] * 5), config()).fix == generic
    # within 0-100 but all below the WAI-SR range: no sign of percentages
    low = [0, 6, 8, 10, 11]
    assert scale_problem(frame(alliance_client=low, outcome=[9] * 5), config()).fix == generic


def test_an_item_mean_column_holding_totals_says_so():
    cfg = config(client={"instrument": "wai_sr", "total": "wai_mean", "total_scale": "mean"})
    problem = scale_problem(frame(alliance_client=[40, 44, 52, 38, 60], outcome=[9] * 5), cfg)
    assert problem.rule.startswith("WAI-SR item means (1–5): values from 1 to 5")
    assert problem.fix == (
        "this looks like a total, not an item mean: all 5 values lie within the WAI-SR "
        "total range 12–60; set `alliance.client.total_scale: sum` (or delete it)"
    )


def _items_frame(item04: list[float]) -> pd.DataFrame:
    items = {f"outcome_item{i:02d}": [1] * len(item04) for i in range(1, 10)}
    items["outcome_item04"] = item04
    return frame(alliance_client=[40] * len(item04), **items)


PHQ_ITEMS = config(outcome={"instrument": "phq9", "item_pattern": "phq_{i}"})


def test_an_item_column_holding_totals_says_so():
    problem = scale_problem(_items_frame([12, 20, 15, 9, 27, 2]), PHQ_ITEMS)  # 5 above 3
    assert problem.column == "phq_4"
    assert problem.rule.startswith("PHQ-9 item scores (0–3): values from 0 to 3 in whole numbers")
    assert problem.rows == [2, 3, 4, 5, 6]
    assert problem.fix == (
        "this looks like a total, not a single item: all 6 values lie within the PHQ-9 "
        "total range 0–27; check the column mapping (`outcome.item_pattern`)"
    )


def test_an_item_column_with_decimals_says_so():
    problem = scale_problem(_items_frame([1.5, 2.5, 0.5, 1.5, 2.5, 3]), PHQ_ITEMS)
    assert problem.found == "5 of 6 values (83%) outside that range, from 0.5 to 3"
    assert problem.fix.startswith("item scores are whole numbers, but 5 values have decimals")


@pytest.mark.parametrize(
    ("values", "stops"),
    [
        ([70, 71, 72, 73, NAN, NAN], False),  # 4 out of range: fewer than 5
        ([70, 71, 72, 73, 74, 40, 41, 42, 43, 44], False),  # 5 of 10: not more than half
        ([70, 71, 72, 73, 74, 40, 41, 42, 43], True),  # 5 of 9
        ([70, 71, 72, 73, 74, NAN, NAN, NAN, NAN, NAN, NAN], True),  # missing values not counted
    ],
)
def test_the_threshold_is_more_than_half_and_at_least_five(values, stops):
    df = frame(alliance_client=values, outcome=[9] * len(values))
    if stops:
        scale_problem(df, config())
    else:
        check_column_scales(df, score_columns(config()), "study.csv")


def test_every_such_column_is_reported_at_once():
    df = frame(alliance_client=[1, 2, 3, 4, 5], outcome=[30, 40, 50, 60, 70])
    with pytest.raises(StudyDataError) as info:
        check_column_scales(df, score_columns(config()), "study.csv")
    assert [p.column for p in info.value.problems] == ["wai", "phq"]
