"""The cleaning step end to end: demo study, command line, determinism, bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import pipeline, schema
from helpers.paths import DEMO_DIR, PROJECT_ROOT
from helpers.pipeline import _patient_rows, change_category_table, run_cleaning
from helpers.provenance import sha256_file
from helpers.scoring import get_instrument, score_items
from helpers.validation import StudyDataError

DEMO_DATA = DEMO_DIR / "sessions.csv"
DEMO_CONFIG = DEMO_DIR / "study.yml"
BAD = PROJECT_ROOT / "tests" / "data" / "bad"
GOOD = PROJECT_ROOT / "tests" / "data" / "good"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    before = sha256_file(DEMO_DATA)
    result = run_cleaning(DEMO_DATA, DEMO_CONFIG, out)
    assert sha256_file(DEMO_DATA) == before, "the raw demo file was modified"
    return result, out


def _non_missing(column: pd.Series) -> int:
    return int(column.notna().sum())


@pytest.fixture(scope="module")
def truth():
    return json.loads((DEMO_DIR / "truth.json").read_text(encoding="utf-8"))


def test_every_input_row_is_accounted_for_once(demo):
    result, _ = demo
    raw = pd.read_csv(DEMO_DATA, dtype=str, keep_default_na=False)
    file_rows = list(range(2, len(raw) + 2))  # header is row 1
    accounted = sorted(
        result.sessions[schema.SOURCE_ROW].tolist() + result.ledger[schema.SOURCE_ROW].tolist()
    )
    assert accounted == file_rows
    counts = result.reconciliation()["records"]
    assert counts.iloc[0] == counts.iloc[1:].sum() == len(raw)


def test_every_documented_fault_is_caught(demo, truth):
    result, _ = demo
    ledger = result.ledger.set_index(schema.SOURCE_ROW)
    changes = result.value_changes
    seen = {"exact_duplicate", "conflicting_duplicate", "mistyped_therapist_id", "out_of_range"}
    for fault in truth["faults"]:
        kind = fault["type"]
        if kind == "exact_duplicate":
            assert (
                ledger.loc[fault["row"], "reason"]
                == f"exact duplicate of row {fault['row_original']}"
            )
        elif kind == "conflicting_duplicate":
            for row in (fault["row"], fault["row_original"]):
                assert ledger.loc[row, "step"] == "conflicting duplicates"
        elif kind == "mistyped_therapist_id":
            entry = ledger.loc[fault["row"]]
            assert entry["therapist_id"] == fault["new"]
            assert f"kept the majority therapist {fault['original']}" in entry["reason"]
        elif kind == "out_of_range":
            hit = changes.loc[changes[schema.SOURCE_ROW] == fault["row"]]
            assert len(hit) == 1 and hit["original_value"].iloc[0] == str(fault["new"])
        seen.discard(kind)
    assert not seen, f"faults not documented in truth.json: {seen}"
    # nothing else was excluded but the documented faults, intake rows and the patient
    # whose every outcome is missing
    excluded = result.ledger.loc[result.ledger["fate"] == "excluded", "step"].value_counts()
    assert excluded.to_dict() == {
        "conflicting duplicates": 2,
        "exact duplicates": 1,
        "patients under several therapists": 1,
        "patients without any outcome": excluded.get("patients without any outcome", 0),
    }


def test_dot_missing_codes_became_missing(demo, truth):
    result, _ = demo
    dots = [f for f in truth["faults"] if f["type"] == "missing_code_dot"]
    assert dots
    by_row = result.sessions.set_index(schema.SOURCE_ROW)
    for fault in dots:
        # a '.' item leaves the total prorated (or missing), never a parse error
        prefix = "outcome" if fault["column"].startswith("phq") else "alliance_client"
        assert by_row.loc[fault["row"], f"{prefix}_n_missing_items"] >= 1


def test_processed_data_match_the_simulated_truth(demo):
    """Scores in the processed data equal totals computed independently from the raw items."""
    result, _ = demo
    raw = pd.read_csv(DEMO_DATA, na_values=["NA", "."], keep_default_na=True)
    raw.index = range(2, len(raw) + 2)
    s = result.sessions.set_index(schema.SOURCE_ROW)
    phq = raw.loc[s.index, [f"phq_{i}" for i in range(1, 10)]]
    complete = phq.notna().all(axis=1) & (phq <= 3).all(axis=1)
    assert (s.loc[complete, "outcome"] == phq[complete].sum(axis=1)).all()
    wai = raw.loc[s.index, [f"wai_{i}" for i in range(1, 13)]]
    complete = wai.notna().all(axis=1) & (wai <= 5).all(axis=1)
    assert (s.loc[complete, "alliance"] == wai[complete].sum(axis=1)).all()
    bond = wai[[f"wai_{i}" for i in (3, 5, 7, 9)]]
    assert (s.loc[complete, "alliance_client_bond"] == bond[complete].sum(axis=1)).all()
    intake = raw.loc[raw["session"] == 0].set_index("patient")
    intake_total = intake[[f"phq_{i}" for i in range(1, 10)]].sum(axis=1, min_count=9)
    got = s.groupby("patient_id")["outcome_intake"].first()
    both = intake_total.index.intersection(got.index)
    full = intake_total.loc[both].notna()
    assert (got.loc[both][full] == intake_total.loc[both][full]).all()


def test_outputs_are_byte_identical_across_runs(demo, tmp_path):
    _, first = demo
    run_cleaning(DEMO_DATA, DEMO_CONFIG, tmp_path)
    for name in [
        "sessions.csv",
        "sessions.parquet",
        "patients.csv",
        "exclusion_ledger.csv",
        "value_changes.csv",
        "flow.csv",
        "conversions.csv",
        "manifest.json",
    ]:
        assert (first / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_sessions_csv_reads_back_as_exactly_the_processed_data(demo):
    result, out = demo
    frame = result.sessions
    text = pd.read_csv(out / "sessions.csv", keep_default_na=False, na_values=[""])
    assert list(text.columns) == list(frame.columns)
    for column in frame.columns:
        expected, got = frame[column], text[column]
        if pd.api.types.is_bool_dtype(expected):
            assert got.tolist() == expected.tolist(), column
        elif pd.api.types.is_numeric_dtype(expected):  # shortest round-trip form: exact
            np.testing.assert_array_equal(got.to_numpy(float), expected.to_numpy(float), column)
        else:
            assert (
                got.astype(object).where(got.notna(), None).tolist()
                == expected.astype(object).where(expected.notna(), None).tolist()
            ), column


def test_manifest_records_hashes_without_absolute_paths(demo):
    _, out = demo
    text = (out / "manifest.json").read_text()
    manifest = json.loads(text)
    assert {"path": "data/raw/demo/sessions.csv"}.items() <= manifest["inputs"][0].items() or any(
        i["path"] == "data/raw/demo/sessions.csv" for i in manifest["inputs"]
    )
    # outputs are named relative to the output folder, so the manifest does not depend on it
    assert sorted(o["path"] for o in manifest["outputs"]) == [
        "conversions.csv",
        "exclusion_ledger.csv",
        "flow.csv",
        "id_changes.csv",
        "patients.csv",
        "sessions.csv",
        "sessions.parquet",
        "skipped_lines.csv",
        "value_changes.csv",
    ]
    sessions = next(o for o in manifest["outputs"] if o["path"] == "sessions.csv")
    assert sessions["sha256"] == sha256_file(out / "sessions.csv")
    assert str(PROJECT_ROOT) not in text and "/tmp/" not in text


def test_processed_data_hold_no_free_text_or_identifying_columns(demo):
    result, _ = demo
    allowed_text = {schema.THERAPIST_ID, schema.PATIENT_ID, schema.MODALITY, "gender"}
    text_columns = {
        c for c in result.sessions.columns if not pd.api.types.is_numeric_dtype(result.sessions[c])
    }
    assert text_columns - {"within_eligible"} <= allowed_text


def test_cli_cleans_the_demo_study(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "clean", "--input", str(DEMO_DATA), "--config",
         str(DEMO_CONFIG), "--out", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "4584 records in" in proc.stdout
    assert (tmp_path / "sessions.parquet").exists()
    # the values set to missing, after the summary: one line per column and reason
    lost = proc.stdout.split("values set to missing:\n", 1)[1].splitlines()
    header = "column  source column  reason  values set to missing  share of non-missing values"
    assert lost[0].split() == header.split()
    n_wai_11 = _non_missing(pd.read_csv(DEMO_DATA, na_values=["NA", "."])["wai_11"])
    assert lost[1].split() == [
        "alliance_client_item11",
        "wai_11",
        *"outside the allowed range 1–5".split(),
        "1",
        f"{1 / n_wai_11:.2%}",
    ]
    assert lost[2].split()[:2] == ["outcome_item01", "phq_1"]
    assert len(lost) == 3


@pytest.mark.parametrize(
    ("data", "config", "expected"),
    [
        (BAD / "empty.csv", BAD / "totals.yml", "empty file"),
        (BAD / "header_only.csv", BAD / "totals.yml", "no data rows"),
        (BAD / "semicolon.csv", BAD / "totals.yml", "read.delimiter: ';'"),
        (BAD / "latin1.csv", BAD / "totals.yml", "read.encoding: latin-1"),
        (BAD / "misnamed_column.csv", BAD / "totals.yml", "pateint"),
        (BAD / "non_numeric.csv", BAD / "totals.yml", "'abc'"),
        (BAD / "fractional_session.csv", BAD / "totals.yml", "fractional session"),
        (BAD / "header_row3.xlsx", BAD / "totals.yml", "read.header_row: 3"),
        (BAD / "wide_bad_pattern.csv", BAD / "wide_bad_pattern.yml", "no column matches"),
        (GOOD / "long.csv", BAD / "unknown_key.yml", "did you mean"),
        (GOOD / "long.csv", BAD / "missing_column.yml", "age_years"),
    ],
    ids=[
        "empty",
        "header-only",
        "semicolon",
        "latin1",
        "misnamed",
        "non-numeric",
        "fractional",
        "excel-header-row",
        "wide-pattern",
        "config-key",
        "config-column",
    ],
)
def test_cli_reports_bad_input_without_traceback(tmp_path, data, config, expected, capsys):
    """The command line's own entry point, in this process (test_cli_cleans_the_demo_study
    runs ``python -m helpers`` as a process): exit 2, the fix on stderr, no traceback."""
    from helpers import cli

    before = sha256_file(data)
    argv = ["clean", "--input", str(data), "--config", str(config), "--out", str(tmp_path)]
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert status == 2
    assert expected in err
    assert "Traceback" not in err
    assert sha256_file(data) == before
    assert not any(tmp_path.iterdir()), "nothing is written for bad input"


def test_conflicting_duplicates_error_policy_names_rows(tmp_path):
    text = DEMO_CONFIG.read_text().replace(
        "conflicting_duplicates: exclude", "conflicting_duplicates: error"
    )
    config = tmp_path / "study.yml"
    config.write_text(text)
    with pytest.raises(StudyDataError) as err:
        run_cleaning(DEMO_DATA, config)
    assert "P0334 session 2" in str(err.value)
    assert "3849" in str(err.value) and "3850" in str(err.value)


def test_study_data_error_renders_without_traceback_in_jupyter():
    err = StudyDataError([])
    lines = err._render_traceback_()
    assert lines[0].startswith("StudyDataError") and "Traceback" not in "\n".join(lines)


@pytest.mark.parametrize(
    ("data", "where", "expected"),
    [
        ("out_of_range.csv", "values", "outside the allowed range 12–60"),
        ("out_of_range.csv", "values", "outside the allowed range 0–27"),
        ("conflicting_duplicate.csv", "ledger", "conflicts with row(s) 4 for the same patient"),
        ("two_therapists.csv", "ledger", "[T1 (1), T2 (1)]; patient excluded (policy exclude)"),
        ("nonpositive_session.csv", "ledger", "session number -1 is not a positive integer"),
        ("nonpositive_session.csv", "ledger", "session number 0 is not a positive integer"),
        ("no_outcome.csv", "ledger", "patient has no outcome score at any session"),
    ],
)
def test_logged_problems_give_a_clear_reason(data, where, expected):
    before = sha256_file(BAD / data)
    result = run_cleaning(BAD / data, BAD / "totals.yml")
    table = result.value_changes if where == "values" else result.ledger
    assert table["reason"].str.contains(expected, regex=False).any(), table["reason"].tolist()
    assert sha256_file(BAD / data) == before


# ------------------------------------------------------------------ two-level studies


def _config_without(tmp_path, source, *lines: str):
    """A copy of a config with the given lines (exactly as written) deleted."""
    text = source.read_text(encoding="utf-8")
    for line in lines:
        assert line + "\n" in text, line
        text = text.replace(line + "\n", "")
    path = tmp_path / source.name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------- values lost, item means


def test_values_lost_of_the_demo_are_its_out_of_range_faults(demo, truth):
    result, _ = demo
    raw = pd.read_csv(DEMO_DATA, na_values=["NA", "."])
    faults = [f for f in truth["faults"] if f["type"] == "out_of_range"]
    assert [f["column"] for f in faults] == ["wai_11", "phq_1"]
    lost = result.values_lost()
    assert list(lost.columns) == [
        "column",
        "source column",
        "reason",
        "values set to missing",
        "share of non-missing values",
    ]
    assert lost.iloc[:, :4].values.tolist() == [
        ["alliance_client_item11", "wai_11", "outside the allowed range 1–5", 1],
        ["outcome_item01", "phq_1", "outside the allowed range 0–3", 1],
    ]
    assert lost["values set to missing"].dtype == "int64"
    shares = [1 / _non_missing(raw["wai_11"]), 1 / _non_missing(raw["phq_1"])]
    assert lost["share of non-missing values"].tolist() == pytest.approx(shares)


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


THERAPIST_COLUMNS = ["therapist_id", "alliance_therapist_mean", "alliance_patient_dev"]


@pytest.fixture(scope="module")
def two_level(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two_level")
    config = _config_without(tmp, GOOD / "long.yml", "  therapist_id: therapist")
    result = run_cleaning(GOOD / "long.csv", config, tmp / "out")
    return result, tmp / "out"


def test_two_level_study_cleans_without_therapist_columns(two_level):
    result, out = two_level
    three_level = run_cleaning(GOOD / "long.csv", GOOD / "long.yml")
    for table in ("sessions", "patients"):
        got = getattr(result, table)
        assert not set(THERAPIST_COLUMNS) & set(got.columns), table
        # the same data as the three-level study, less the therapist columns
        expected = getattr(three_level, table).drop(columns=THERAPIST_COLUMNS)
        pd.testing.assert_frame_equal(got, expected)
    assert len(result.sessions) == 8 and result.sessions["patient_id"].nunique() == 3
    assert "therapist_id" not in result.ledger.columns
    assert result.ledger["source_row"].tolist() == [2, 6, 9]  # the intake rows
    header, lines, first, *_ = (out / "flow.csv").read_text().splitlines()
    assert header.split(",")[3] == "therapists_kept"
    assert (
        lines
        == '"lines of the file: 1 header, 11 data rows, 0 skipped (skipped_lines.csv)",12,,,0,0,0'
    )
    assert first == "records read,11,3,,0,0,0"  # therapists not identified: empty, not 0
    assert "patients under several therapists: not applicable (no therapist column)" in set(
        result.flow["step"]
    )
    assert result.summary().splitlines()[0] == (
        "study tiny_long: 11 records in; 8 sessions of 3 patients kept; therapists not "
        "identified (two-level study); 3 intake records; 0 records excluded; "
        "1 values set to missing."
    )


def test_two_level_wide_file_gives_the_same_sessions(two_level, tmp_path):
    long_result, _ = two_level
    config = _config_without(tmp_path, GOOD / "wide.yml", "  therapist_id: therapist")
    result = run_cleaning(GOOD / "wide.xlsx", config)
    assert "therapist_id" not in result.sessions.columns
    columns = [c for c in long_result.sessions.columns if c != "source_row"]
    pd.testing.assert_frame_equal(result.sessions[columns], long_result.sessions[columns])


def test_study_without_therapists_or_modality_explores(tmp_path):
    from helpers import explore

    config = _config_without(
        tmp_path, GOOD / "long.yml", "  therapist_id: therapist", "  modality: modality"
    )
    result = run_cleaning(GOOD / "long.csv", config)
    assert "modality" not in result.patients.columns
    overview = explore.sample_overview(result.sessions)["value"]
    assert overview["therapists"] == "not identified (two-level study)"
    intake = explore.intake_by_group(result.patients)
    # intake PHQ-9 totals by hand from the file's session-0 rows: 6, 11, 15
    assert intake.index.tolist() == ["all patients"]
    assert intake.loc["all patients", "intake mean"] == round((6 + 11 + 15) / 3, 2)
    assert "therapists" not in intake.columns
    change = explore.change_summary(result.patients)
    assert change.index.tolist() == ["all patients"]


# ------------------------------------------------------------------ session dates

DATED_CSV = """therapist,patient,visit,wai,phq
T1,P1,01.02.2024,,20
T1,P1,08.02.2024,40,15
T1,P1,15.02.2024,42,12
T1,P1,15.02.2024,42,12
T1,P1,30.04.2024,45,8
T1,P2,10.01.2024,,18
T1,P2,17.01.2024,35,17
T1,P2,24.01.2024,36,16
T1,P2,24.01.2024,30,16
T1,P2,31.01.2024,37,14
T2,P3,,33,10
T2,P3,05.03.2024,,22
T2,P3,12.03.2024,30,21
T2,P3,19.03.2024,31,19
"""
DATED_YML = """study: dated
read:
  date_format: "%d.%m.%Y"
layout: long
columns:
  therapist_id: therapist
  patient_id: patient
  session_date: visit
alliance:
  client:
    instrument: wai_sr
    total: wai
outcome:
  instrument: phq9
  total: phq
  intake_session: 0
cleaning:
  max_gap_days: 28
  days_since_first: true
"""


@pytest.fixture(scope="module")
def dated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dated")
    (tmp / "dated.csv").write_text(DATED_CSV, encoding="utf-8")
    (tmp / "dated.yml").write_text(DATED_YML, encoding="utf-8")
    result = run_cleaning(tmp / "dated.csv", tmp / "dated.yml", tmp / "out")
    return result, tmp / "out"


def test_sessions_are_numbered_by_date(dated):
    result, _ = dated
    s = result.sessions.set_index("source_row")
    # P1: intake 01.02 (line 2); 08.02 -> 1, 15.02 -> 2, 30.04 -> 3; P2: intake 10.01;
    # 17.01 -> 1, 24.01 (twice, conflicting) -> 2, 31.01 -> 3; P3: intake 05.03; 12.03 -> 1 ...
    assert s["session"].to_dict() == {3: 1, 4: 2, 6: 3, 8: 1, 11: 3, 14: 1, 15: 2}
    # days since the first treatment session; 08.02 -> 30.04.2024 is 21 + 31 + 30 = 82 days
    assert s["days_since_first"].to_dict() == {3: 0, 4: 7, 6: 82, 8: 0, 11: 14, 14: 0, 15: 7}
    assert s["days_since_first"].dtype == "int64"
    assert s.loc[[3, 4, 6], "outcome_intake"].tolist() == [20.0] * 3
    ledger = result.ledger.set_index("source_row")
    assert ledger["fate"].to_dict() == {
        2: "intake",
        5: "excluded",
        7: "intake",
        9: "excluded",
        10: "excluded",
        12: "excluded",
        13: "intake",
    }
    assert ledger.loc[5, "reason"] == "exact duplicate of row 4, same session date"
    assert ledger.loc[9, "reason"] == (
        "same session date as row(s) 10 of the same patient, other values (exclude)"
    )
    assert ledger.loc[12, "reason"] == "missing session_date"


def test_session_dates_summary(dated):
    result, out = dated
    summary = result.session_dates.set_index("measure")["value"]
    # intervals: P1 7 and 75 days, P2 7 and 7, P3 7 -> 5 intervals, 1 over 28, median 7
    assert summary.tolist() == [13, 1, 3, 4, 5, 1, 7]
    assert (out / "session_dates.csv").read_text().splitlines()[6:8] == [
        "intervals longer than 28 days,1",
        "median days between consecutive treatment sessions,7",
    ]
    assert result.summary().splitlines()[1] == (
        "session numbers from dates: 13 dated records of 3 patients; 4 records on the same "
        "date as another of the patient's; 1 of 5 intervals between sessions longer than "
        "28 days; median interval 7 days."
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert "session_dates.csv" in {o["path"] for o in manifest["outputs"]}


def test_no_output_holds_a_session_date(dated):
    result, out = dated
    days = {line.split(",")[2] for line in DATED_CSV.splitlines()[1:]} - {""}
    assert len(days) == 11
    forms = set()
    for day in days:
        d, m, y = day.split(".")
        forms |= {day, f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{d}/{m}/{y}", f"{y}{m}{d}"}
    files = sorted(out.iterdir())
    assert {f.name for f in files} >= {"sessions.csv", "sessions.parquet", "session_dates.csv"}
    for path in files:
        content = path.read_bytes().decode("utf-8", errors="replace")
        leaked = sorted(f for f in forms if f in content)
        assert not leaked, f"{path.name} holds {leaked}"
    tables = [result.sessions, result.patients, result.ledger, result.value_changes]
    tables += [result.flow, result.session_dates, pd.read_parquet(out / "sessions.parquet")]
    for table in tables:
        assert "session_date" not in table.columns
        assert not any(table[c].dtype.kind in "mM" for c in table.columns)


def test_cli_reports_unparseable_dates(tmp_path):
    (tmp_path / "dated.csv").write_text(DATED_CSV, encoding="utf-8")
    config = tmp_path / "dated.yml"
    config.write_text(DATED_YML.replace('  date_format: "%d.%m.%Y"\n', ""), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "clean", "--input", str(tmp_path / "dated.csv"),
         "--config", str(config), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "session dates written as YYYY-MM-DD (ISO 8601)" in proc.stderr
    assert "set read.date_format: '%d.%m.%Y'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_processed_schema_accepts_no_therapist_and_refuses_dates(dated):
    result, _ = dated
    sessions = result.sessions
    schema.validate_processed(sessions.drop(columns="therapist_id"))  # a two-level frame
    for dated_frame in (
        sessions.assign(session_date=pd.Timestamp(2024, 3, 5)),
        sessions.assign(visit=pd.Timestamp(2024, 3, 5)),  # a date column under any name
    ):
        with pytest.raises(StudyDataError, match="no dates in the processed data"):
            schema.validate_processed(dated_frame)
    with pytest.raises(StudyDataError, match="days_since_first"):
        schema.validate_processed(sessions.assign(days_since_first=-1))


CLEAN_TOTALS = "therapist,patient,session,wai,phq\n" + "".join(
    f"T1,P01,{s},{40 + s},{12 - s}\n" for s in range(1, 5)
)


def test_values_lost_is_empty_with_its_columns_when_nothing_was_lost(tmp_path):
    result = run_cleaning(_write(tmp_path, "ok.csv", CLEAN_TOTALS), BAD / "totals.yml")
    lost = result.values_lost()
    assert lost.empty
    assert list(lost.columns)[3:] == ["values set to missing", "share of non-missing values"]
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "clean", "--input", str(tmp_path / "ok.csv"),
         "--config", str(BAD / "totals.yml"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("no values were set to missing")


def test_values_lost_counts_each_column_and_reason(tmp_path):
    # wai: 61 and 70 above 60 (2 of 5 values); phq: 30 above 27 (1 of 4; one cell empty)
    text = "therapist,patient,session,wai,phq\n" + (
        "T1,P01,1,40,12\nT1,P01,2,61,30\nT1,P01,3,41,\nT1,P01,4,70,9\nT1,P01,5,42,8\n"
    )
    result = run_cleaning(_write(tmp_path, "r.csv", text), BAD / "totals.yml")
    assert result.values_lost().values.tolist() == [
        ["alliance_client", "wai", "outside the allowed range 12–60", 2, 2 / 5],
        ["outcome", "phq", "outside the allowed range 0–27", 1, 1 / 4],
    ]


@pytest.fixture(scope="module")
def mean_export(tmp_path_factory, truth):
    """The demo exported with the client WAI-SR as an item mean (one mean set to 5.5).

    The rows of the duplicate and mistyped-therapist faults are left out, so no
    record is excluded before the range check.
    """
    folder = tmp_path_factory.mktemp("means")
    raw = pd.read_csv(DEMO_DATA, dtype=str, keep_default_na=False)
    raw.index = range(2, len(raw) + 2)  # file line numbers
    kinds = {"exact_duplicate", "conflicting_duplicate", "mistyped_therapist_id"}
    faulty = {r for f in truth["faults"] if f["type"] in kinds
              for r in (f["row"], f.get("row_original")) if r}  # fmt: skip
    raw = raw.drop(index=sorted(faulty)).reset_index(drop=True)
    items = raw[[f"wai_{i}" for i in range(1, 13)]].apply(pd.to_numeric, errors="coerce")
    mean = items.sum(axis=1) / 12
    mean[items.isna().any(axis=1)] = np.nan
    first = int(np.flatnonzero(mean.notna())[0])
    mean.iloc[first] = 5.5  # above the item range 1-5
    export = raw.drop(columns=items.columns).assign(wai_mean=mean)
    path = folder / "wai_means.csv"
    export.to_csv(path, index=False, na_rep="NA")
    configs = {}
    for scale in ("sum", "mean"):
        study = yaml.safe_load(DEMO_CONFIG.read_text())
        study["alliance"]["client"] = {"instrument": "wai_sr", "total": "wai_mean"}
        if scale == "mean":
            study["alliance"]["client"]["total_scale"] = "mean"
        configs[scale] = folder / f"{scale}.yml"
        configs[scale].write_text(yaml.safe_dump(study))
    sums = items.sum(axis=1).where(items.notna().all(axis=1) & (items <= 5).all(axis=1))
    return path, configs, mean, sums, first + 2


def test_a_total_column_holding_item_means_stops_instead_of_being_blanked(mean_export, tmp_path):
    path, configs, mean, _, _ = mean_export
    n = _non_missing(mean)
    with pytest.raises(StudyDataError) as err:
        run_cleaning(path, configs["sum"], tmp_path)
    (problem,) = err.value.problems
    assert problem.column == "wai_mean"
    assert "named by alliance.client.total" in problem.rule
    assert problem.found.startswith(f"{n:,} of {n:,} values (100%) outside that range")
    assert problem.fix == (
        f"this looks like an item mean, not a total: {n - 1:,} of {n:,} values lie within "
        "the WAI-SR item range 1–5; set `alliance.client.total_scale: mean`"
    )
    assert not any(tmp_path.iterdir()), "nothing is written"
    policy = yaml.safe_load(configs["sum"].read_text())
    policy["cleaning"]["out_of_range"] = "error"
    configs_error = tmp_path / "error.yml"
    configs_error.write_text(yaml.safe_dump(policy))
    with pytest.raises(StudyDataError, match="this looks like an item mean"):
        run_cleaning(path, configs_error)


def test_item_means_are_converted_to_totals(mean_export, tmp_path):
    path, configs, mean, sums, row_55 = mean_export
    n = _non_missing(mean)
    result = run_cleaning(path, configs["mean"], tmp_path)
    conversion = {
        "column": "alliance_client",
        "source column": "wai_mean",
        "config key": "alliance.client.total_scale",
        "from": "item mean (1–5)",
        "to": "total (12–60)",
        "factor": 12,
        "values converted": n,
    }
    assert result.conversions.to_dict("records") == [conversion]
    written = pd.read_csv(tmp_path / "conversions.csv")
    assert written.to_dict("records") == [conversion]
    # a mean of 5.5 is out of range, and is reported as 5.5, not as the total 66
    changes = result.value_changes.set_index(schema.SOURCE_ROW)
    assert changes.loc[row_55, "column"] == "alliance_client"
    assert changes.loc[row_55, "original_value"] == "5.5"
    assert changes.loc[row_55, "reason"] == (
        "outside the allowed range 12–60 (item mean: allowed 1–5, converted × 12)"
    )
    lost = result.values_lost()
    assert lost.iloc[0].tolist() == [
        "alliance_client",
        "wai_mean",
        "outside the allowed range 12–60 (item mean: allowed 1–5, converted × 12)",
        1,
        pytest.approx(1 / n),
    ]
    # totals: mean x 12 equals the sum of the 12 items wherever the items are complete
    s = result.sessions.set_index(schema.SOURCE_ROW)["alliance_client"]
    expected = sums.set_axis(range(2, len(sums) + 2)).dropna().drop(index=row_55)
    both = expected.index.intersection(s.index)
    assert len(both) > 3000
    assert s.loc[both].to_numpy() == pytest.approx(expected.loc[both].to_numpy())
    summary = result.summary()
    assert summary.splitlines()[0].endswith("; 1 column converted from item means to totals.")
    assert (
        f"  wai_mean (alliance.client.total_scale: mean): item mean (1–5) × 12 = total (12–60), "
        f"{n:,} values converted" in summary
    )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["parameters"]["config"]["alliance"]["client"]["total_scale"] == "mean"


def test_cli_reports_a_column_of_item_means_without_traceback(tmp_path):
    text = "therapist,patient,session,wai,phq\n" + "".join(
        f"T1,P01,{s},{m},{9}\n" for s, m in enumerate([3.5, 4.25, 2.0, 1.0, 5.0], start=1)
    )
    path = _write(tmp_path, "m.csv", text)
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "clean", "--input", str(path), "--config",
         str(BAD / "totals.yml"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert re.search(r"column 'wai', rows 2, 3, 4, 5, 6", proc.stderr)
    assert "5 of 5 values (100%) outside that range" in proc.stderr
    assert "set `alliance.client.total_scale: mean`" in proc.stderr


def test_a_european_export_of_item_means_cleans_to_the_same_sessions(mean_export, tmp_path):
    # The same export as a European spreadsheet saves it: ';' between fields and
    # decimal commas ("3,5833333333333335").
    path, configs, *_ = mean_export
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert table["wai_mean"].str.contains(".", regex=False).any()
    table["wai_mean"] = table["wai_mean"].str.replace(".", ",", regex=False)
    european = tmp_path / "european.csv"
    table.to_csv(european, sep=";", index=False)
    study = yaml.safe_load(configs["mean"].read_text())
    study["read"].update(delimiter=";", decimal=",")
    config = tmp_path / "european.yml"
    config.write_text(yaml.safe_dump(study))
    expected = run_cleaning(path, configs["mean"]).sessions
    pd.testing.assert_frame_equal(run_cleaning(european, config).sessions, expected)


def test_change_category_table_counts_missing_categories_by_name():
    patients = pd.DataFrame(
        {"change_category": pd.Categorical(["improved", None, "recovered", "improved"])}
    )
    table = change_category_table(patients)
    assert table.index.tolist() == ["recovered", "improved", "no intake or outcome"]
    assert table["patients"].tolist() == [1, 2, 1]
    assert table["percent"].tolist() == [25.0, 50.0, 25.0]


def test_instrument_table_does_not_call_a_therapist_rating_the_client_form():
    from helpers.config import load_config
    from helpers.pipeline import instrument_table

    table = instrument_table(load_config(DEMO_CONFIG))
    assert table.loc["alliance (client)", "instrument"].endswith("(client form)")
    assert table.loc["alliance (therapist)", "instrument"] == (
        "Working Alliance Inventory - Short Revised (therapist rating)"
    )


# ----------------------------------------------------------------- one error path


def test_all_empty_scores_are_an_error_not_zero_sessions(tmp_path):
    data = tmp_path / "empty_scores.csv"
    data.write_text("therapist,patient,session,wai,phq\nT1,P1,1,,\nT1,P1,2,NA,\nT1,P2,1,,\n")
    with pytest.raises(StudyDataError) as info:
        run_cleaning(data, BAD / "totals.yml", tmp_path / "out")
    (problem,) = info.value.problems
    assert problem.found == (
        "nothing usable was found: all 3 records were excluded or used as intake "
        "(3 by 'records without scores')"
    )
    assert info.value.summary == "No usable data in empty_scores.csv."
    assert not (tmp_path / "out").exists()


def test_cli_reports_an_unexpected_error_as_a_bug(tmp_path, monkeypatch, capsys):
    import tempfile

    from helpers import cli, pipeline

    def broken(*args, **kwargs):
        raise KeyError("a column the code forgot")

    monkeypatch.setattr(pipeline, "run_cleaning", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    status = cli.main(["clean", "--input", "x.csv", "--config", "x.yml", "--out", "out"])
    err = capsys.readouterr().err
    assert status == 3
    assert err.startswith("error: this is a bug in the suite, not a problem with your data")
    assert "KeyError" in err and "Traceback" not in err
    (saved,) = tmp_path.glob("helpers-bug-*.txt")
    assert str(saved) in err
    text = saved.read_text(encoding="utf-8")
    assert text.startswith("Traceback") and "a column the code forgot" in text


def test_cli_keeps_exit_2_for_a_config_with_aliases(tmp_path):
    config = tmp_path / "study.yml"
    config.write_text("study: &s x\nlayout: *s\n")
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "clean", "--input", str(DEMO_DATA), "--config",
         str(config), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "found:    the alias *s on line 2" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------
# Lines the parser skipped: in skipped_lines.csv, the flow, the manifest and the summary
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "skipped", "reason", "records"),
    [
        # lines 3 and 6 empty, line 5 three spaces, line 8 empty before the last line break
        ("blank_lines.csv", [3, 5, 6, 8], "blank line", 8),
        # lines 3, 5 and 6 are ",,,,"
        ("separator_rows.csv", [3, 5, 6], "only separators", 7),
    ],
)
def test_skipped_lines_are_in_every_account_of_the_run(tmp_path, name, skipped, reason, records):
    # Both files hold a header and 3 data rows (lines 2, 4, 7) of patient P01.
    result = run_cleaning(BAD / name, BAD / "totals.yml", tmp_path)
    n = len(skipped)
    written = pd.read_csv(tmp_path / "skipped_lines.csv", keep_default_na=False)
    assert written.columns.tolist() == ["line", "reason"]
    assert written["line"].tolist() == skipped
    assert set(written["reason"]) == {reason}
    # the ledger stays one row per record that entered cleaning: none of these was one
    assert result.ledger.empty and len(result.sessions) == 3
    flow = pd.read_csv(tmp_path / "flow.csv", keep_default_na=False)
    assert (
        flow["step"].iloc[0]
        == f"lines of the file: 1 header, 3 data rows, {n} skipped (skipped_lines.csv)"
    )
    assert flow["records_kept"].iloc[0] == records == 1 + n + 3
    assert flow["step"].iloc[1] == "records read" and flow["records_kept"].iloc[1] == 3
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["parameters"]["input_lines"] == {
        "records": records,
        "header": 1,
        "data_rows": 3,
        "skipped_lines": n,
    }
    assert "skipped_lines.csv" in {o["path"] for o in manifest["outputs"]}
    first, second = result.summary().splitlines()[:2]
    assert first.endswith(f"; {n} lines of the file skipped.")
    lines = ", ".join(map(str, skipped))
    assert second == (
        f"lines of the file not read as data: {n} {reason} (lines {lines}); "
        f"{records} records = 1 header + {n} skipped + 3 data rows (see skipped_lines.csv)."
    )


def test_skipped_lines_csv_is_header_only_when_nothing_was_skipped(demo):
    result, out = demo
    assert (out / "skipped_lines.csv").read_text() == "line,reason\n"
    assert "skipped" not in result.summary().splitlines()[0]


def test_lines_that_do_not_reconcile_stop_the_run(tmp_path):
    from helpers.cleaning import LedgerMismatchError
    from helpers.pipeline import FileLines

    with pytest.raises(LedgerMismatchError, match="9 records in the file, 1 header"):
        FileLines(records=9, data_rows=3, skipped={3: "blank line"}).reconcile("s.csv")
    FileLines(records=5, data_rows=3, skipped={3: "blank line"}).reconcile("s.csv")


# ---------------------------------------------------------------------------
# Ids normalised when mapping: id_changes.csv
# ---------------------------------------------------------------------------


def test_id_changes_are_written_to_id_changes_csv(tmp_path):
    # ' P7' (a leading space, 2 records) and 'P7' (1 record) are one patient after
    # normalising; 'P8' is unchanged.
    data = tmp_path / "ids.csv"
    data.write_text(
        "therapist,patient,session,wai,phq\n"
        "T1, P7,1,40,12\n"
        "T1, P7,2,41,11\n"
        "T1,P7,3,42,10\n"
        "T1,P8,1,39,14\n"
        "T1,P8,2,40,13\n"
        "T1,P8,3,41,12\n"
    )
    out = tmp_path / "out"
    result = run_cleaning(data, BAD / "totals.yml", out)
    written = pd.read_csv(out / "id_changes.csv", keep_default_na=False, dtype=str)
    assert written.to_dict("records") == [
        {
            "column": "patient_id",
            "original": "' P7'",
            "normalised": "P7",
            "records": "2",
            "collides_with": "'P7'",
        }
    ]
    assert sorted(result.sessions["patient_id"].unique()) == ["P7", "P8"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert "id_changes.csv" in {o["path"] for o in manifest["outputs"]}
    assert "' P7' and 'P7' are now one id 'P7' (patient_id)" in result.summary()


def test_id_changes_csv_is_header_only_when_no_id_changed(demo):
    result, out = demo
    assert result.id_changes.empty
    assert (out / "id_changes.csv").read_text() == (
        "column,original,normalised,records,collides_with\n"
    )


def test_cli_reports_ctrl_c_in_one_line_with_exit_130(monkeypatch, capsys):
    from helpers import cli, pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_cleaning", interrupted)
    status = cli.main(["clean", "--input", "x.csv", "--config", "x.yml", "--out", "out"])
    err = capsys.readouterr().err
    assert status == 130
    assert err.startswith("interrupted: clean stopped;") and "Traceback" not in err


def test_item_columns_are_held_as_float16_or_float32_only_where_every_value_fits_exactly():
    """Items become float16/float32 for cleaning only when no value changes."""
    from helpers.config import load_config
    from helpers.pipeline import _compact_items

    config = load_config(DEMO_DIR / "study.yml")
    frame = pd.DataFrame(
        {
            "alliance_client_item01": [1.0, 5.0, np.nan, 99.0, -0.0],  # whole numbers: float16
            "alliance_client_item02": [1.0, 2.3, 3.0, 4.0, 5.0],  # 2.3 is no float32
            "alliance_client_item03": [1.0, 4097.0, 3.0, 4.0, 5.0],  # no float16: float32
            "outcome_item01": [0.0, 1e300, 2.0, 3.0, 1.0],  # beyond float32's range
            "alliance_therapist": [30.0, 31.0, 32.0, 33.0, 34.0],  # a total: left as it is
        }
    )
    compact = _compact_items(frame, config)
    expected = ["float16", "float64", "float32", "float64", "float64"]
    assert compact.dtypes.astype(str).tolist() == expected
    assert compact["alliance_client_item01"].tolist()[:2] == [1.0, 5.0]
    assert compact["alliance_client_item02"].tolist()[1] == 2.3
    assert compact["alliance_client_item03"].tolist()[1] == 4097.0
    assert frame["alliance_client_item01"].dtype == "float64"  # the input is not modified


def test_smallest_exact_float_keeps_every_value_and_missing_values():
    from helpers.pipeline import smallest_exact_float

    half = smallest_exact_float(np.array([0.5, -3.0, np.nan, 65504.0]))  # float16's largest
    assert half.dtype == np.float16
    assert half[[0, 1, 3]].tolist() == [0.5, -3.0, 65504.0] and np.isnan(half[2])
    assert smallest_exact_float(np.array([0.1])) is None  # no binary float holds 0.1 exactly
    assert smallest_exact_float(np.array([70000.0])).dtype == np.float32  # beyond float16
    assert smallest_exact_float(np.array([1.0, 2.0**-30])).dtype == np.float32  # below float16


def test_exact_duplicates_of_float16_items_are_found():
    """Compact items (float16) group as their values: pandas cannot group on float16 itself."""
    from helpers.cleaning import CleaningLog, exclude_exact_duplicates

    items = np.array([1.0, 2.0, 1.0, np.nan, np.nan], dtype=np.float16)
    frame = pd.DataFrame(
        {
            "source_row": [2, 3, 4, 5, 6],
            "therapist_id": ["T1"] * 5,
            "patient_id": ["P1", "P1", "P1", "P2", "P2"],
            "session": [1, 2, 1, 1, 1],
            "alliance_client_item01": items,
        }
    )
    log = CleaningLog(5)
    kept = exclude_exact_duplicates(frame, log)
    assert kept["source_row"].tolist() == [2, 3, 5]
    assert log.ledger_frame()["reason"].tolist() == [
        "exact duplicate of row 2",
        "exact duplicate of row 5",
    ]


# ------------------------------------------------------ patient rows by position (memory)


def _rows_by_groupby(sessions: pd.DataFrame) -> dict[str, list]:
    """The rows :func:`_patient_rows` finds, found by sorting and grouping the frame."""
    s = sessions.reset_index(drop=True).sort_values(["patient_id", "session"])
    grouped = s.groupby("patient_id")
    scored = s.loc[s["outcome"].notna()].groupby("patient_id")
    return {
        "first": grouped.head(1).index.tolist(),
        "last": grouped.tail(1).index.tolist(),
        "last_scored": scored.tail(1).index.tolist(),
        "n_sessions": grouped.size().tolist(),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_patient_rows_are_those_of_a_sort_and_groupby(seed: int):
    rng = np.random.default_rng(seed)
    n = 400
    sessions = pd.DataFrame(
        {
            "patient_id": pd.Series(rng.choice(["P10", "P9", "a", "B", "p1"], n), dtype="str"),
            "session": rng.permutation(n),  # unique, shuffled
            "outcome": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),
        }
    )
    sessions.loc[sessions["patient_id"] == "B", "outcome"] = np.nan  # a patient never scored
    sessions.loc[[5, 17], "patient_id"] = np.nan  # rows without an id are left out
    rows = _patient_rows(sessions)
    expected = _rows_by_groupby(sessions)
    assert rows.first.tolist() == expected["first"]
    assert rows.last.tolist() == expected["last"]
    assert rows.last_scored.tolist() == expected["last_scored"]
    assert rows.n_sessions.tolist() == expected["n_sessions"]


# ------------------------------------------------------------ scoring in slices (memory)


@pytest.mark.parametrize("instrument", ["wai_sr", "phq9"])
def test_scoring_in_slices_gives_the_scores_of_the_whole_table(monkeypatch, instrument: str):
    inst = get_instrument(instrument)
    rng = np.random.default_rng(7)
    n = 1_000
    values = rng.integers(inst.item_min, inst.item_max + 1, size=(n, inst.n_items)).astype(float)
    values[rng.random(values.shape) < 0.15] = np.nan  # some prorated, some not scorable
    items = pd.DataFrame(
        values, index=rng.permutation(n) + 10, columns=[f"i{k}" for k in range(1, inst.n_items + 1)]
    )
    expected = score_items(items, inst)
    monkeypatch.setattr(pipeline, "SCORE_SLICE_ROWS", 64)
    scored = pipeline._score_in_slices(items, inst)
    pd.testing.assert_frame_equal(scored, expected, check_exact=True)


def test_scoring_in_slices_names_every_bad_row_as_the_whole_table_does(monkeypatch):
    inst = get_instrument("phq9")
    items = pd.DataFrame(
        np.ones((300, inst.n_items)), columns=[f"i{k}" for k in range(1, inst.n_items + 1)]
    )
    items.iloc[[5, 250], 2] = 2.5  # one bad value in the first slice, one in the last
    with pytest.raises(ValueError) as whole:
        score_items(items, inst)
    monkeypatch.setattr(pipeline, "SCORE_SLICE_ROWS", 64)
    with pytest.raises(ValueError) as sliced:
        pipeline._score_in_slices(items, inst)
    assert str(sliced.value) == str(whole.value)
    assert "250" in str(sliced.value)


def test_compact_numbers_holds_whole_numbers_small_and_astype_restores_them():
    from helpers.pipeline import compact_numbers

    frame = pd.DataFrame(
        {
            "source_row": np.array([2, 3, 4], dtype="int64"),  # kept as it is
            "total": [12.0, np.nan, 60.0],  # float16
            "n_missing": np.array([0, 3, 1], dtype="int64"),  # int8
            "big": np.array([0, 40_000, 1], dtype="int64"),  # int32
            "mean": [0.1, 0.2, 0.3],  # no smaller float holds 0.1: float64
            "label": ["a", "b", "c"],
        }
    )
    compact, wide = compact_numbers(frame, keep=["source_row"])
    assert compact.dtypes.astype(str).tolist() == [
        "int64",
        "float16",
        "int8",
        "int32",
        "float64",
        "str",
    ]
    assert wide == {"total": "float64", "n_missing": "int64", "big": "int64"}
    pd.testing.assert_frame_equal(compact.astype(wide), frame)
    assert frame["total"].dtype == "float64"  # the input is not modified


def test_smallest_int_picks_the_first_type_holding_the_range():
    from helpers.pipeline import smallest_int

    assert smallest_int(np.array([-128, 127])).dtype == np.int8
    assert smallest_int(np.array([-129, 0])).dtype == np.int16
    assert smallest_int(np.array([0, 2**31 - 1])).dtype == np.int32
    assert smallest_int(np.array([0, 2**31])) is None
    assert smallest_int(np.array([], dtype=np.int64)).dtype == np.int8


def test_patient_table_from_rows_found_before_the_features_is_the_same():
    from helpers.config import load_config
    from helpers.loading import read_study
    from helpers.pipeline import _patient_rows, clean_study, patient_table

    config = load_config(DEMO_DIR / "study.yml")
    sessions = clean_study(read_study(DEMO_DIR / "sessions.csv", config), config).sessions
    given = patient_table(sessions, config, _patient_rows(sessions))
    pd.testing.assert_frame_equal(given, patient_table(sessions, config))


def test_sessions_csv_in_large_batches_has_the_bytes_of_arrows_default_batches(tmp_path):
    """The batch size changes only the speed: 40,000 rows span several batches."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from helpers.pipeline import CSV_BATCH_ROWS, _write_csv

    n = 40_000
    assert n > 2 * CSV_BATCH_ROWS
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "patient_id": pd.array([f"P{i % 977}, x" if i % 5 == 0 else f"P{i}" for i in range(n)]),
            "score": np.where(rng.random(n) < 0.1, np.nan, rng.normal(30, 8, n)),
            "whole": rng.integers(0, 60, n).astype("float64"),
            "flag": rng.random(n) < 0.5,
        }
    )
    _write_csv(frame, tmp_path / "batched.csv", arrow=True)
    default = tmp_path / "default.csv"
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pacsv.write_csv(table, default, pacsv.WriteOptions(quoting_style="needed"))
    assert (tmp_path / "batched.csv").read_bytes() == default.read_bytes()
