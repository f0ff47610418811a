"""Cleaning rules: each one on a hand-made frame whose right answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import cleaning as cl
from helpers.validation import StudyDataError


def _frame(rows: list[tuple]) -> pd.DataFrame:
    """Records (therapist, patient, session, alliance_client_item01, outcome)."""
    df = pd.DataFrame(
        rows,
        columns=["therapist_id", "patient_id", "session", "alliance_client_item01", "outcome"],
    )
    df.insert(0, "source_row", np.arange(2, 2 + len(df)))
    return df.astype({"session": "float64", "alliance_client_item01": "float64"})


def test_exact_duplicates_keep_first_and_name_it():
    df = _frame([("T1", "P1", 1, 3, 10), ("T1", "P1", 1, 3, 10), ("T1", "P1", 2, 4, 9)])
    log = cl.CleaningLog(len(df))
    kept = cl.exclude_exact_duplicates(df, log)
    assert kept["source_row"].tolist() == [2, 4]
    ledger = log.ledger_frame()
    assert ledger["source_row"].tolist() == [3]
    assert ledger["reason"].iloc[0] == "exact duplicate of row 2"


def test_exact_duplicates_treat_zero_signs_missing_values_and_objects_as_grouping_does():
    """Rows equal as grouped (-0.0 == 0.0, missing == missing, 1 == 1.0 in objects) are copies.

    Only rows sharing a row hash are compared, so these rows must hash alike;
    rows 6 and 7 differ in one value and are no copies.
    """
    df = _frame(
        [
            ("T1", "P1", 1, 0.0, 10),  # row 2
            ("T1", "P1", 1, -0.0, 10),  # row 3: copy of row 2
            ("T1", None, 2, np.nan, np.nan),  # row 4
            ("T1", None, 2, np.nan, np.nan),  # row 5: copy of row 4
            ("T1", "P1", 3, 4.0, 9),  # row 6
            ("T1", "P1", 3, 4.0, 8),  # row 7: differs from row 6 in the outcome
        ]
    )
    df["note"] = pd.Series([1, 1.0, "a", "a", True, 2], dtype=object)  # 1 == 1.0 groups together
    log = cl.CleaningLog(len(df))
    kept = cl.exclude_exact_duplicates(df, log)
    assert kept["source_row"].tolist() == [2, 4, 6, 7]
    ledger = log.ledger_frame()
    assert ledger["source_row"].tolist() == [3, 5]
    assert ledger["reason"].tolist() == ["exact duplicate of row 2", "exact duplicate of row 4"]


def test_conflicting_duplicates_policies():
    rows = [("T1", "P1", 1, 3, 10), ("T1", "P1", 1, 4, 10), ("T1", "P1", 2, 4, 9)]
    log = cl.CleaningLog(3)
    kept = cl.resolve_conflicting_duplicates(_frame(rows), log, "exclude")
    assert kept["source_row"].tolist() == [4]
    assert log.ledger_frame()["reason"].tolist() == [
        "conflicts with row(s) 3 for the same patient and session (exclude)",
        "conflicts with row(s) 2 for the same patient and session (exclude)",
    ]
    log = cl.CleaningLog(3)
    kept = cl.resolve_conflicting_duplicates(_frame(rows), log, "keep_first")
    assert kept["source_row"].tolist() == [2, 4]
    with pytest.raises(StudyDataError) as err:
        cl.resolve_conflicting_duplicates(_frame(rows), cl.CleaningLog(3, "x.csv"), "error")
    text = str(err.value)
    assert "P1 session 1" in text and "conflicting_duplicates" in text


def test_multiple_therapists_keep_majority_and_ties():
    rows = [
        ("T1", "P1", 1, 3, 10),
        ("T1", "P1", 2, 3, 10),
        ("T9", "P1", 3, 3, 10),  # mistyped therapist on one row
        ("T1", "P2", 1, 3, 10),
        ("T2", "P2", 2, 3, 10),  # a tie: no majority
    ]
    log = cl.CleaningLog(5)
    kept = cl.resolve_multiple_therapists(_frame(rows), log, "keep_majority")
    assert kept["source_row"].tolist() == [2, 3]
    ledger = log.ledger_frame()
    assert ledger["source_row"].tolist() == [4, 5, 6]
    assert "kept the majority therapist T1" in ledger["reason"].iloc[0]
    assert "no strict majority" in ledger["reason"].iloc[1]
    log = cl.CleaningLog(5)
    kept = cl.resolve_multiple_therapists(_frame(rows), log, "exclude")
    assert kept.empty
    with pytest.raises(StudyDataError, match="T9 \\(1 records\\)"):
        cl.resolve_multiple_therapists(_frame(rows), cl.CleaningLog(5), "error")


def test_out_of_range_set_missing_logs_original():
    df = _frame([("T1", "P1", 1, 6, 10), ("T1", "P1", 2, 2.5, 30), ("T1", "P1", 3, 5, 27)])
    log = cl.CleaningLog(3)
    ranges = {"alliance_client_item01": (1, 5), "outcome": (0, 27)}
    out = cl.set_out_of_range_missing(df, log, ranges)
    assert out["alliance_client_item01"].isna().tolist() == [True, True, False]
    assert out["outcome"].isna().tolist() == [False, True, False]
    changes = log.value_changes_frame()
    assert changes[["source_row", "column", "original_value"]].values.tolist() == [
        [2, "alliance_client_item01", "6"],
        [3, "alliance_client_item01", "2.5"],
        [3, "outcome", "30"],
    ]
    assert len(out) == 3  # records are kept
    assert df["alliance_client_item01"].tolist() == [6, 2.5, 5]  # input not modified


def test_out_of_range_error_policy_reports_rows():
    df = _frame([("T1", "P1", 1, 6, 10)])
    with pytest.raises(StudyDataError) as err:
        cl.set_out_of_range_missing(
            df, cl.CleaningLog(1, "a.csv"), {"alliance_client_item01": (1, 5)}, "error"
        )
    text = str(err.value)
    assert "alliance_client_item01" in text and "1 to 5" in text and "a.csv" in text


def test_out_of_range_after_conversion_reports_the_value_in_the_file():
    # Item means 3.5, 6 and 0.5 became totals x 12 = 42, 72 and 6 before the check.
    df = _frame([("T1", "P1", 1, 3, 10), ("T1", "P1", 2, 3, 10), ("T1", "P1", 3, 3, 10)])
    df["alliance_client"] = [42.0, 72.0, 6.0]
    how = "item mean: allowed 1–5, converted × 12"
    originals = {"alliance_client": (pd.Series([3.5, 6.0, 0.5], index=df.index), how)}
    ranges = {"alliance_client": (12, 60)}
    log = cl.CleaningLog(3)
    out = cl.set_out_of_range_missing(df, log, ranges, originals=originals)
    assert out["alliance_client"].isna().tolist() == [False, True, True]
    changes = log.value_changes_frame()
    assert changes[["source_row", "original_value", "reason"]].values.tolist() == [
        [3, "6", f"outside the allowed range 12–60 ({how})"],
        [4, "0.5", f"outside the allowed range 12–60 ({how})"],
    ]
    with pytest.raises(StudyDataError) as err:
        cl.set_out_of_range_missing(
            df, cl.CleaningLog(3, "a.csv"), ranges, "error", originals=originals
        )
    (problem,) = err.value.problems
    assert problem.values == [6.0, 0.5]
    assert problem.rows == [3, 4]


def test_intake_split_and_invalid_sessions():
    df = _frame([("T1", "P1", 0, np.nan, 15), ("T1", "P1", 1, 3, 12), ("T1", "P1", -1, 3, 12)])
    log = cl.CleaningLog(3)
    kept, intake = cl.split_intake(df, log, 0, "outcome")
    assert intake.to_dict() == {"P1": 15}
    kept = cl.exclude_invalid_sessions(kept, log)
    assert kept["source_row"].tolist() == [3]
    ledger = log.ledger_frame()
    assert ledger[["source_row", "fate"]].values.tolist() == [[2, "intake"], [4, "excluded"]]
    assert "session number -1" in ledger["reason"].iloc[1]
    log.reconcile(len(kept))


def test_patients_without_outcome_and_flags():
    df = _frame([("T1", "P1", 1, 3, np.nan), ("T1", "P1", 2, 3, np.nan), ("T1", "P2", 1, 3, 5)])
    df["alliance"] = 40.0
    log = cl.CleaningLog(3)
    kept = cl.exclude_patients_without_outcome(df, log)
    assert kept["patient_id"].tolist() == ["P2"]
    flagged = cl.flag_few_sessions(kept, log, min_sessions=2)
    assert flagged["within_eligible"].tolist() == [False]


def test_reconcile_detects_a_lost_record():
    df = _frame([("T1", "P1", 1, 3, 10), ("T1", "P1", 2, 3, 10)])
    log = cl.CleaningLog(len(df), "x.csv")
    with pytest.raises(cl.LedgerMismatchError, match="2 records in"):
        log.record_step("silently dropping a row", df.iloc[:1])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["T1", "T2"]),
            st.sampled_from(["P1", "P2", "P3"]),
            st.integers(-1, 4),
            st.sampled_from([1.0, 3.0, 6.0, np.nan]),
            st.sampled_from([0.0, 12.0, 30.0, np.nan]),
        ),
        min_size=1,
        max_size=25,
    ),
    st.sampled_from(["exclude", "keep_first"]),
    st.sampled_from(["exclude", "keep_majority"]),
)
def test_ledger_always_reconciles(rows, dup_policy, multi_policy):
    df = _frame(rows)
    log = cl.CleaningLog(len(df))
    df = cl.exclude_exact_duplicates(df, log)
    df = cl.resolve_conflicting_duplicates(df, log, dup_policy)
    df = cl.resolve_multiple_therapists(df, log, multi_policy)
    df = cl.set_out_of_range_missing(
        df, log, {"alliance_client_item01": (1, 5), "outcome": (0, 27)}
    )
    df, _ = cl.split_intake(df, log, 0, "outcome")
    df = cl.exclude_invalid_sessions(df, log)
    df = cl.exclude_empty_records(df, log, ["alliance_client_item01", "outcome"])
    df = cl.exclude_patients_without_outcome(df, log)
    ledger = log.ledger_frame()
    # every input record is accounted for exactly once
    all_rows = sorted(ledger["source_row"].tolist() + df["source_row"].tolist())
    assert all_rows == list(range(2, 2 + len(rows)))
    flow = log.flow_frame()
    assert (
        flow["records_kept"] + flow["records_excluded_total"] + flow["intake_records"] == len(rows)
    ).all()
    # what is kept obeys the rules
    assert not df.duplicated(["patient_id", "session"]).any()
    assert (df.groupby("patient_id")["therapist_id"].nunique() <= 1).all()
    assert (df["session"] >= 1).all()


def test_two_level_study_skips_the_therapist_rule_and_leaves_therapists_out():
    df = _frame([("T1", "P1", 1, 3, 10), (None, "P1", 2, 3, 9), ("T1", None, 1, 3, 9)])
    df = df.drop(columns="therapist_id")
    log = cl.CleaningLog(len(df), therapists=False)
    log.record_step("records read", df)
    kept = cl.exclude_missing_ids(df, log)
    assert kept["source_row"].tolist() == [2, 3]  # a missing therapist is not missing
    kept = cl.resolve_multiple_therapists(kept, log, "exclude")
    assert kept["source_row"].tolist() == [2, 3]
    flow = log.flow_frame()
    assert flow["step"].tolist() == [
        "records read",
        "missing identifiers",
        "patients under several therapists: not applicable (no therapist column)",
    ]
    assert flow["therapists_kept"].isna().all()
    assert flow["patients_kept"].tolist() == [1, 1, 1]
    ledger = log.ledger_frame()
    assert "therapist_id" not in ledger.columns
    assert ledger[["source_row", "reason"]].values.tolist() == [[4, "missing patient_id"]]


def _dated(rows: list[tuple]) -> pd.DataFrame:
    """Records (therapist, patient, session, session_date, alliance_client_item01, outcome)."""
    df = _frame([(t, p, s, a, o) for t, p, s, _, a, o in rows])
    df.insert(4, "session_date", pd.to_datetime([r[3] for r in rows]))
    return df


def test_missing_session_date_is_named():
    df = _dated([("T1", "P1", 1, "2024-03-05", 3, 10), ("T1", "P1", np.nan, None, 3, 9)])
    log = cl.CleaningLog(2)
    kept = cl.exclude_missing_ids(df, log)
    assert kept["source_row"].tolist() == [2]
    assert log.ledger_frame()["reason"].tolist() == ["missing session_date"]


def test_records_on_the_same_date_go_through_the_duplicate_rules():
    df = _dated(
        [
            ("T1", "P1", 1, "2024-03-05", 3, 10),
            ("T1", "P1", 1, "2024-03-05", 3, 10),  # the same record again
            ("T1", "P1", 2, "2024-03-12", 3, 10),
            ("T1", "P1", 2, "2024-03-12", 4, 10),  # same date, another rating
        ]
    )
    log = cl.CleaningLog(4)
    kept = cl.exclude_exact_duplicates(df, log)
    kept = cl.resolve_conflicting_duplicates(kept, log, "exclude")
    assert kept["source_row"].tolist() == [2]
    assert log.ledger_frame()["reason"].tolist() == [
        "exact duplicate of row 2, same session date",
        "same session date as row(s) 5 of the same patient, other values (exclude)",
        "same session date as row(s) 4 of the same patient, other values (exclude)",
    ]
    with pytest.raises(StudyDataError, match="share a patient and session date"):
        cl.resolve_conflicting_duplicates(df.iloc[2:], cl.CleaningLog(2), "error")


def test_sessions_above_max_session_are_excluded_with_the_reason():
    df = _frame([("T1", "P1", 1, 3, 12), ("T1", "P1", 200, 3, 12), ("T1", "P1", 1100, 3, 12)])
    log = cl.CleaningLog(3)
    kept = cl.exclude_invalid_sessions(df, log, max_session=200)
    assert kept["source_row"].tolist() == [2, 3]  # 200 is the limit itself: kept
    (entry,) = log.ledger_frame().to_dict("records")
    assert entry["source_row"] == 4
    assert entry["reason"] == "session number 1100 is above cleaning.max_session (200)"
    log.reconcile(len(kept))


def test_no_max_session_keeps_high_sessions():
    df = _frame([("T1", "P1", 1100, 3, 12)])
    log = cl.CleaningLog(1)
    assert len(cl.exclude_invalid_sessions(df, log)) == 1


def test_require_sessions_names_the_steps_that_removed_everything():
    df = _frame([("T1", "P1", 1, np.nan, np.nan), ("T1", "P2", -1, 3, 4)])
    log = cl.CleaningLog(2, source="s.csv")
    kept = cl.exclude_invalid_sessions(df, log)
    kept = cl.exclude_empty_records(kept, log, ["alliance_client_item01", "outcome"])
    with pytest.raises(StudyDataError) as info:
        cl.require_sessions(kept, log)
    (problem,) = info.value.problems
    assert problem.found == (
        "nothing usable was found: all 2 records were excluded or used as intake "
        "(1 by 'invalid session numbers'; 1 by 'records without scores')"
    )
    cl.require_sessions(df, log)  # a frame with records passes


# --- the ledger's columns joined in their own types (memory) --------------------------


def _inferred(pieces: list[pd.Series]) -> pd.Series:
    """The ledger's former way: every value a Python object, the type inferred."""
    values = np.concatenate([p.to_numpy(dtype=object) for p in pieces])
    return pd.Series(values, dtype=object).infer_objects()


@pytest.mark.parametrize(
    "pieces",
    [
        [pd.Series([3, 7], dtype="int8"), pd.Series([70_000], dtype="int32")],
        [pd.Series(["P1", None], dtype="str"), pd.Series(["T2"], dtype="str")],
        [pd.Series([None, None], dtype="str")],  # no value: float64, as inferred
        [pd.Series([1, 2]), pd.Series([2.5])],  # mixed: float64
        [pd.Series([None, None], dtype=object), pd.Series(["a"], dtype="str")],
        [pd.Series([2**63 + 1], dtype="uint64")],  # beyond int64: stays uint64
    ],
)
def test_concat_column_types_as_inferred(pieces):
    joined = cl._concat_column(pieces)
    pd.testing.assert_series_equal(joined, _inferred(pieces))


def test_concat_column_values_and_type():
    joined = cl._concat_column([pd.Series([1], dtype="int16"), pd.Series([5, 6])])
    assert joined.dtype == np.dtype("int64")
    assert joined.tolist() == [1, 5, 6]
    text = cl._concat_column([pd.Series(["b"], dtype="str"), pd.Series([None, "a"], dtype="str")])
    assert str(text.dtype) == "str"
    assert text.index.tolist() == [0, 1, 2]


def test_fits_int64():
    assert cl._fits_int64(np.dtype("int64")) and cl._fits_int64(np.dtype("uint32"))
    assert not cl._fits_int64(np.dtype("uint64"))
    assert not cl._fits_int64(np.dtype("float64"))
    assert not cl._fits_int64(pd.Int64Dtype())


def test_ledger_keeps_text_as_arrow_text():
    log = cl.CleaningLog(3)
    rows = pd.DataFrame(
        {"source_row": [2, 3], "patient_id": ["P1", "P2"], "therapist_id": ["T1", "T1"]}
    ).assign(session=np.array([1, 4], dtype="int8"))
    log.exclude(rows, "a step", ["why 2", "why 3"])
    part = log.ledger[0]
    assert str(part["patient_id"].dtype) == "str"  # not Python objects
    ledger = log.ledger_frame()
    assert ledger["session"].dtype == np.dtype("int64")
    assert ledger["session"].tolist() == [1, 4]
    assert ledger["reason"].tolist() == ["why 2", "why 3"]


# --- counts per patient and therapist, and the rows a rule keeps (memory) --------------


def test_pair_counts_as_groupby():
    patients = pd.Series(["P2", "P1", "P2", None, "P2", "P10"], dtype="str")
    therapists = pd.Series(["T2", "T1", "T1", "T1", "T2", None], dtype="str")
    counts = cl._pair_counts(patients, therapists)
    assert counts.values.tolist() == [["P1", "T1", 1], ["P2", "T1", 1], ["P2", "T2", 2]]
    assert counts["n"].dtype == np.dtype("int64")
    frame = pd.DataFrame({"patient_id": patients, "therapist_id": therapists})
    expected = frame.groupby(["patient_id", "therapist_id"]).size().rename("n").reset_index()
    pd.testing.assert_frame_equal(counts, expected)


def test_rows_kept_drops_the_masked_rows_and_keeps_labels():
    df = pd.DataFrame({"a": [10, 20, 30, 40]}, index=[7, 3, 5, 1])
    kept = cl.rows_kept(df, pd.Series([True, False, False, True], index=df.index))
    assert kept["a"].tolist() == [20, 30]
    assert kept.index.tolist() == [3, 5]
    assert df["a"].tolist() == [10, 20, 30, 40]  # the input is not modified
