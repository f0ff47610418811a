"""Tests of helpers.scoring.

Every expected value below was computed by hand from the published scoring
rules (sums, reversals, proration, the Jacobson–Truax formula with the cited
constants), never by calling the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from helpers.schema import alliance_item_column, outcome_item_column
from helpers.scoring import (
    INSTRUMENTS,
    RCI_TOLERANCE,
    check_total_range,
    classify_change,
    get_instrument,
    reliable_change_index,
    score_items,
    standard_error_of_difference,
)

NAN = float("nan")


def outcome_items(rows: list[list[float]], index: list[str] | None = None) -> pd.DataFrame:
    """Item frame with canonical outcome item names, one list per row."""
    n = len(rows[0])
    return pd.DataFrame(
        rows, columns=[outcome_item_column(i) for i in range(1, n + 1)], index=index
    )


def alliance_items(rows: list[list[float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[alliance_item_column("client", i) for i in range(1, 13)])


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "n_items", "total_min", "total_max"),
    [
        ("wai_sr", 12, 12, 60),
        ("wai_s", 12, 12, 84),
        ("phq9", 9, 0, 27),
        ("gad7", 7, 0, 21),
        ("oq45", 45, 0, 180),
        ("bdi2", 21, 0, 63),
    ],
)
def test_registry_items_and_total_ranges(key, n_items, total_min, total_max):
    inst = INSTRUMENTS[key]
    assert inst.n_items == n_items
    assert (inst.total_min, inst.total_max) == (total_min, total_max)


@pytest.mark.parametrize("key", sorted(INSTRUMENTS))
def test_every_number_has_a_source(key):
    inst = INSTRUMENTS[key]
    assert inst.citation and inst.missing_rule_source
    assert inst.reliability_source and inst.cutoff_source and inst.sd_source
    if inst.reliable_change_points is not None:
        assert inst.reliable_change_source


def test_directions():
    assert not INSTRUMENTS["wai_sr"].higher_is_worse
    assert not INSTRUMENTS["wai_s"].higher_is_worse
    for key in ("phq9", "gad7", "oq45", "bdi2"):
        assert INSTRUMENTS[key].higher_is_worse
    assert INSTRUMENTS["wai_sr"].direction == "higher = stronger alliance"
    assert INSTRUMENTS["phq9"].direction == "higher = worse"


def test_unknown_instrument_lists_known_keys():
    with pytest.raises(ValueError, match=r"'phq-9'.*bdi2, gad7, oq45, phq9, wai_s, wai_sr"):
        get_instrument("phq-9")


# ---------------------------------------------------------------------------
# WAI-SR and WAI-S
# ---------------------------------------------------------------------------


def test_wai_sr_total_and_subscales():
    # items 1..12 = 5 4 3 2 1 5 4 3 2 1 5 4
    # Task 1,2,10,12 = 5+4+1+4 = 14; Bond 3,5,7,9 = 3+1+4+2 = 10;
    # Goal 4,6,8,11 = 2+5+3+5 = 15; total = 39.
    scores = score_items(alliance_items([[5, 4, 3, 2, 1, 5, 4, 3, 2, 1, 5, 4]]), "wai_sr")
    assert list(scores.columns) == ["total", "task", "bond", "goal", "n_missing", "prorated"]
    row = scores.iloc[0]
    assert (row["total"], row["task"], row["bond"], row["goal"]) == (39, 14, 10, 15)
    assert row["n_missing"] == 0
    assert not row["prorated"]


def test_wai_sr_subscale_ranges_at_extremes():
    scores = score_items(alliance_items([[1] * 12, [5] * 12]), "wai_sr")
    assert scores["total"].tolist() == [12, 60]
    for name in ("task", "bond", "goal"):
        assert scores[name].tolist() == [4, 20]


def test_wai_s_reverses_items_4_and_10():
    # raw items: 7 6 5 6 3 2 1 7 6 5 4 3; item 4 -> 8-6 = 2, item 10 -> 8-5 = 3.
    # Task 1,2,10,12 = 7+6+3+3 = 19; Bond 3,5,7,9 = 5+3+1+6 = 15;
    # Goal 4,6,8,11 = 2+2+7+4 = 15; total = 49.
    scores = score_items(alliance_items([[7, 6, 5, 6, 3, 2, 1, 7, 6, 5, 4, 3]]), "wai_s")
    row = scores.iloc[0]
    assert (row["total"], row["task"], row["bond"], row["goal"]) == (49, 19, 15, 15)


@pytest.mark.parametrize("item", range(1, 13))
def test_wai_s_reverse_scoring_item_by_item(item):
    # All items at 4 (the midpoint, its own reverse) give 48; raising one item to 7
    # adds 3 if it is keyed normally and subtracts 3 if it is reverse-keyed.
    row = [4] * 12
    row[item - 1] = 7
    expected = 45 if item in (4, 10) else 51
    assert score_items(alliance_items([row]), "wai_s").loc[0, "total"] == expected


def test_wai_one_missing_item_prorates_total_not_subscale():
    # WAI-SR, item 3 (Bond) missing; answered 11 items sum to 44 -> 44 * 12 / 11 = 48.
    row = [4] * 12
    row[2] = NAN
    scores = score_items(alliance_items([row]), "wai_sr").iloc[0]
    assert scores["total"] == 48
    assert bool(scores["prorated"]) and scores["n_missing"] == 1
    assert math.isnan(scores["bond"])
    assert scores["task"] == 16 and scores["goal"] == 16


def test_wai_two_missing_items_give_no_total():
    row = [4] * 12
    row[2] = NAN
    row[3] = NAN
    scores = score_items(alliance_items([row]), "wai_sr").iloc[0]
    assert math.isnan(scores["total"])
    assert scores["n_missing"] == 2 and not scores["prorated"]
    assert scores["task"] == 16  # complete subscale still scored


# ---------------------------------------------------------------------------
# PHQ-9, GAD-7, BDI-II: mean proration
# ---------------------------------------------------------------------------


def test_phq9_complete_and_prorated():
    rows = [
        [1, 2, 3, 0, 1, 2, 3, 0, 1],  # complete: 13
        [1, 2, 3, 0, 1, 2, NAN, NAN, 3],  # 2 missing: 12 of 7 items -> 12*9/7 = 15.43 -> 15
        [0, 1, 0, 1, 0, 1, 0, 1, NAN],  # 1 missing: 4*9/8 = 4.5 -> half up -> 5
        [1, 2, 3, 0, 1, NAN, NAN, NAN, 3],  # 3 missing: not scored
    ]
    scores = score_items(outcome_items(rows), "phq9")
    assert scores["total"].iloc[:3].tolist() == [13, 15, 5]
    assert math.isnan(scores["total"].iloc[3])
    assert scores["n_missing"].tolist() == [0, 2, 1, 3]
    assert scores["prorated"].tolist() == [False, True, True, False]
    assert list(scores.columns) == ["total", "n_missing", "prorated"]


def test_gad7_prorates_one_missing_but_not_two():
    rows = [
        [3, 2, 1, 0, 3, 2, 1],  # 12
        [3, 2, 1, 0, 3, 2, NAN],  # 11 * 7 / 6 = 12.83 -> 13
        [3, 2, 1, 0, 3, NAN, NAN],  # 2 missing: not scored
    ]
    scores = score_items(outcome_items(rows), "gad7")
    assert scores["total"].iloc[:2].tolist() == [12, 13]
    assert math.isnan(scores["total"].iloc[2])
    assert scores["prorated"].tolist() == [False, True, False]


def test_bdi2_prorates_two_missing_but_not_three():
    complete = [1] * 21
    two_missing = [0] + [2] * 18 + [NAN, NAN]  # 36 over 19 items -> 36*21/19 = 39.79 -> 40
    three_missing = [2] * 18 + [NAN, NAN, NAN]
    scores = score_items(outcome_items([complete, two_missing, three_missing]), "bdi2")
    assert scores["total"].iloc[:2].tolist() == [21, 40]
    assert math.isnan(scores["total"].iloc[2])
    assert scores["n_missing"].tolist() == [0, 2, 3]


def test_nullable_integer_input_is_accepted():
    frame = outcome_items([[1, 2, 3, 0, 1, 2, 3, 0, 1]]).astype("Int64")
    frame.iloc[0, 8] = pd.NA
    assert score_items(frame, "phq9").loc[0, "total"] == 14  # 12 * 9 / 8 = 13.5 -> 14


# ---------------------------------------------------------------------------
# OQ-45: reverse items, subscales, substitution of missing items
# ---------------------------------------------------------------------------

OQ_REVERSE = {1, 12, 13, 20, 21, 24, 31, 37, 43}
OQ_SUBSCALE_OF_ITEM = {
    **{
        i: "symptom_distress"
        for i in (2, 3, 5, 6, 8, 9, 10, 11, 13, 15, 22, 23, 24, 25, 27, 29, 31, 33, 34, 35)
    },
    **{i: "symptom_distress" for i in (36, 40, 41, 42, 45)},
    **{i: "interpersonal_relations" for i in (1, 7, 16, 17, 18, 19, 20, 26, 30, 37, 43)},
    **{i: "social_role" for i in (4, 12, 14, 21, 28, 32, 38, 39, 44)},
}
OQ_SUBSCALES = ["symptom_distress", "interpersonal_relations", "social_role"]


def test_oq45_key_covers_45_items():
    assert sorted(OQ_SUBSCALE_OF_ITEM) == list(range(1, 46))


def test_oq45_all_zero_responses():
    # Only the 9 reversed items score 4: SD has 13, 24, 31 -> 12; IR has 1, 20, 37, 43 -> 16;
    # SR has 12, 21 -> 8; total 36.
    scores = score_items(outcome_items([[0] * 45]), "oq45").iloc[0]
    assert [scores[s] for s in OQ_SUBSCALES] == [12, 16, 8]
    assert scores["total"] == 36


@pytest.mark.parametrize("item", range(1, 46))
def test_oq45_each_item_keyed_and_placed(item):
    # All items at 2 (the midpoint) give 90 (SD 50, IR 22, SR 18). Raising one item to 4
    # changes its own subscale by +2, or by -2 if the item is reverse-scored.
    row = [2] * 45
    row[item - 1] = 4
    scores = score_items(outcome_items([row]), "oq45").iloc[0]
    delta = -2 if item in OQ_REVERSE else 2
    expected = {"symptom_distress": 50, "interpersonal_relations": 22, "social_role": 18}
    expected[OQ_SUBSCALE_OF_ITEM[item]] += delta
    assert {s: scores[s] for s in OQ_SUBSCALES} == expected
    assert scores["total"] == 90 + delta


def _oq_all_ones() -> list[float]:
    return [1.0] * 45


def test_oq45_all_ones_hand_total():
    # SD: 22 items at 1 + 3 reversed at 3 = 31; IR: 7 + 4*3 = 19; SR: 7 + 2*3 = 13; total 63.
    scores = score_items(outcome_items([_oq_all_ones()]), "oq45").iloc[0]
    assert [scores[s] for s in OQ_SUBSCALES] == [31, 19, 13]
    assert scores["total"] == 63


def test_oq45_four_missing_items_substituted_by_subscale_mean():
    # Missing: items 2, 3 (SD), 7 (IR), 4 (SR).
    # SD answered: 20 ones + 3 reversed threes = 29 over 23 -> mean 1.26 -> 1; SD = 29 + 2*1 = 31
    # IR answered: 6 ones + 4 threes = 18 over 10 -> 1.8 -> 2; IR = 18 + 2 = 20
    # SR answered: 6 ones + 2 threes = 12 over 8 -> 1.5 -> half up 2; SR = 12 + 2 = 14
    # total = 31 + 20 + 14 = 65
    row = _oq_all_ones()
    for item in (2, 3, 7, 4):
        row[item - 1] = NAN
    scores = score_items(outcome_items([row]), "oq45").iloc[0]
    assert [scores[s] for s in OQ_SUBSCALES] == [31, 20, 14]
    assert scores["total"] == 65
    assert scores["n_missing"] == 4 and bool(scores["prorated"])


def test_oq45_five_missing_items_invalid():
    row = _oq_all_ones()
    for item in (2, 3, 7, 4, 5):
        row[item - 1] = NAN
    scores = score_items(outcome_items([row]), "oq45").iloc[0]
    assert math.isnan(scores["total"])
    assert all(math.isnan(scores[s]) for s in OQ_SUBSCALES)
    assert scores["n_missing"] == 5 and not scores["prorated"]


def test_oq45_missing_reversed_item_uses_reversed_mean():
    # Item 1 (IR, reversed) missing, all others raw 0: IR answered = items 20, 37, 43 at 4,
    # the other 7 at 0 -> 12 over 10 -> 1.2 -> 1; IR = 12 + 1 = 13. SD 12, SR 8; total 33.
    row = [0.0] * 45
    row[0] = NAN
    scores = score_items(outcome_items([row]), "oq45").iloc[0]
    assert [scores[s] for s in OQ_SUBSCALES] == [12, 13, 8]
    assert scores["total"] == 33


# ---------------------------------------------------------------------------
# Refusing unchecked input
# ---------------------------------------------------------------------------


def test_out_of_range_error_names_column_rows_and_values():
    rows = [[0] * 9, [0] * 9, [0] * 9]
    rows[1][2] = 4
    rows[2][2] = -1
    frame = outcome_items(rows, index=["row_a", "row_b", "row_c"])
    with pytest.raises(ValueError) as info:
        score_items(frame, "phq9")
    message = str(info.value)
    assert "outcome_item03" in message
    assert "'row_b'" in message and "'row_c'" in message
    assert "value 4" in message and "value -1" in message
    assert "0-3" in message
    assert "'row_a'" not in message


def test_non_integer_error_names_column_and_row():
    rows = [[1] * 9, [1] * 9]
    rows[1][6] = 2.5
    frame = outcome_items(rows, index=["p1-s1", "p1-s2"])
    with pytest.raises(ValueError, match=r"outcome_item07.*not whole numbers.*'p1-s2'.*2\.5"):
        score_items(frame, "phq9")


def test_non_numeric_error_names_column_and_row():
    frame = outcome_items([[1] * 7, [1] * 7]).astype(object)
    frame.iloc[1, 0] = "often"
    with pytest.raises(ValueError, match=r"outcome_item01.*not numbers.*1.*'often'"):
        score_items(frame, "gad7")


def test_error_lists_only_first_rows():
    rows = [[9] + [0] * 8 for _ in range(8)]
    with pytest.raises(ValueError, match=r"and 3 more row"):
        score_items(outcome_items(rows), "phq9")


def test_wrong_number_of_columns():
    with pytest.raises(ValueError, match=r"expected 9 item columns.*found 8"):
        score_items(outcome_items([[0] * 8]), "phq9")


def test_wai_s_range_is_1_to_7_not_0_to_4():
    row = [4] * 12
    row[5] = 0
    with pytest.raises(ValueError, match=r"alliance_client_item06.*range 1-7"):
        score_items(alliance_items([row]), "wai_s")


# ---------------------------------------------------------------------------
# Totals given directly
# ---------------------------------------------------------------------------


def test_check_total_range_wai_sr_therapist_totals():
    totals = pd.Series([12, 60, 11, 61, None, 35.5], index=list("abcdef"), name="therapist_wai")
    mask = check_total_range(totals, "wai_sr")
    assert mask.tolist() == [False, False, True, True, False, False]
    assert list(mask.index) == list("abcdef")


def test_check_total_range_refuses_text():
    totals = pd.Series([20, "twenty"], index=["r1", "r2"], name="wai_total", dtype=object)
    with pytest.raises(ValueError, match=r"'wai_total'.*'r2'.*'twenty'"):
        check_total_range(totals, "wai_sr")


# ---------------------------------------------------------------------------
# Reliable change (Jacobson & Truax 1991) with the cited constants
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "sd", "r"),
    [("phq9", 3.51, 0.84), ("gad7", 3.37, 0.83), ("bdi2", 12.75, 0.93)],
)
def test_rci_matches_hand_formula(key, sd, r):
    s_diff = math.sqrt(2 * (sd * math.sqrt(1 - r)) ** 2)
    rci = reliable_change_index(pd.Series([16.0, 10.0]), pd.Series([9.0, 12.0]), key)
    assert rci.tolist() == pytest.approx([-7 / s_diff, 2 / s_diff])


def test_rci_phq9_worked_number():
    # SE = 3.51 * sqrt(.16) = 1.404; S_diff = 1.404 * sqrt(2) = 1.98555; -7 / 1.98555 = -3.5255
    assert reliable_change_index([16], [9], "phq9").iloc[0] == pytest.approx(-3.5255, abs=1e-4)


def test_rci_oq45_uses_published_14_points():
    # S_diff = 14 / 1.96 = 7.142857; a 14-point drop gives RCI -1.96, 7 points -0.98.
    rci = reliable_change_index([80, 80], [66, 73], "oq45")
    assert rci.tolist() == pytest.approx([-1.96, -0.98])
    assert standard_error_of_difference("oq45") == pytest.approx(14 / 1.96)


def test_rci_override_sd_and_reliability():
    # SD 5, r .84: SE = 2, S_diff = 2 * sqrt(2) = 2.8284; -10 / 2.8284 = -3.5355
    rci = reliable_change_index([20], [10], "phq9", sd=5.0, reliability=0.84)
    assert rci.iloc[0] == pytest.approx(-3.5355, abs=1e-4)


def test_rci_missing_scores_give_nan():
    rci = reliable_change_index([10, None], [None, 5], "phq9")
    assert rci.isna().all()


def test_rci_refuses_alliance_and_bad_constants():
    with pytest.raises(ValueError, match="No reliable change is defined for 'wai_sr'"):
        reliable_change_index([40], [50], "wai_sr")
    with pytest.raises(ValueError, match="reliability must be in"):
        reliable_change_index([10], [5], "phq9", reliability=1.0)


def test_rci_refuses_misaligned_series():
    pre = pd.Series([10.0, 12.0], index=["a", "b"])
    post = pd.Series([5.0, 6.0], index=["b", "a"])
    with pytest.raises(ValueError, match="different indexes"):
        reliable_change_index(pre, post, "phq9")


def test_classify_change_phq9_categories():
    # Reliable change needs |diff| >= 1.96 * 1.98555 = 3.89 points; cut-off 10.
    pre = pd.Series([16, 16, 9, 12, 5, 10, np.nan], index=list("abcdefg"))
    post = pd.Series([9, 10, 4, 9, 9, 5, 4], index=list("abcdefg"))
    result = classify_change(pre, post, "phq9")
    assert list(result.columns) == [
        "rci",
        "reliable_improvement",
        "reliable_deterioration",
        "clinically_significant",
        "category",
    ]
    assert result["category"].iloc[:6].tolist() == [
        "recovered",  # -7, 16 -> 9 crosses the cut-off
        "improved",  # -6, ends at 10, still at the cut-off
        "improved",  # -5, but started below the cut-off
        "no reliable change",  # -3 crosses the cut-off but is not reliable
        "deteriorated",  # +4
        "recovered",  # -5, starting exactly at the cut-off (10 is dysfunctional)
    ]
    assert result["clinically_significant"].iloc[:6].tolist() == [
        True,
        False,
        False,
        False,
        False,
        True,
    ]
    assert result["reliable_improvement"].iloc[:6].tolist() == [
        True,
        True,
        True,
        False,
        False,
        True,
    ]
    assert result["reliable_deterioration"].iloc[:6].tolist() == [False] * 4 + [True, False]
    assert result.loc["g"].isna().all()
    assert list(result.index) == list("abcdefg")


def test_classify_change_oq45_boundary_of_14_points():
    result = classify_change([80, 80, 70, 50], [66, 63, 57, 64], "oq45")
    assert result["category"].tolist() == [
        "improved",  # exactly -14: reliable, but 66 >= 64 stays dysfunctional
        "recovered",  # -17 and 63 < 64
        "no reliable change",  # -13
        "deteriorated",  # exactly +14
    ]
    assert RCI_TOLERANCE < 1e-6


def test_classify_change_cutoff_override():
    # S_diff = sqrt(2) * 3.37 * sqrt(.17) = 1.965, so 3.85 points are reliable. 12 -> 8 (-4)
    # recovers with the published cut-off 10, but not with the IAPT caseness cut-off 8.
    assert classify_change([12], [8], "gad7")["category"].iloc[0] == "recovered"
    assert classify_change([12], [8], "gad7", cutoff=8)["category"].iloc[0] == "improved"


def test_classify_change_refuses_alliance():
    with pytest.raises(ValueError, match="measures the alliance"):
        classify_change([40], [50], "wai_sr")
