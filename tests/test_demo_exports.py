"""The demo study read from CSV, SPSS (.sav, long) and Excel (.xlsx, wide) gives the same data.

The fixtures in ``tests/data/demo_exports/`` hold the committed demo study
``data/raw/demo/sessions.csv`` under other column names (see the README there).
The SPSS file holds every CSV row, faults included.  The wide file cannot hold a
repeated session or a patient under two therapists, so it holds only the CSV rows
the cleaning step keeps (the rows of the processed sessions, found by their
``source_row``, plus the intake rows of the exclusion ledger); it still holds the
out-of-range values and the missing codes.

Expected values come from the files themselves (read with the ``csv`` module,
pyreadstat and openpyxl), from the faults listed in ``data/raw/demo/truth.json``,
and from the CSV's own cleaning result (the three routes must agree).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pyreadstat
import pytest

from helpers.paths import PROJECT_ROOT
from helpers.pipeline import CleaningResult, run_cleaning
from helpers.schema import alliance_item_column, outcome_item_column

DEMO = PROJECT_ROOT / "data" / "raw" / "demo"
EXPORTS = Path(__file__).resolve().parent / "data" / "demo_exports"
SCRIPT = EXPORTS / "make_demo_exports.py"
INPUTS = {
    "csv": (DEMO / "sessions.csv", DEMO / "study.yml"),
    "sav": (EXPORTS / "demo.sav", EXPORTS / "demo.yml"),
    "wide": (EXPORTS / "demo_wide.xlsx", EXPORTS / "demo_wide.yml"),
}
EXPORT_FORMATS = ["sav", "wide"]
GENERATED = ["demo.sav", "demo.yml", "demo_wide.xlsx", "demo_wide.yml"]
MISSING_CODES = {"", "NA", "."}
SAV_NAMES = {
    "therapist": "TherapistCode",
    "patient": "ClientCode",
    "session": "SessionNumber",
    "modality": "TherapyType",
    "age": "AgeYears",
    "gender": "Sex",
    **{f"wai_{i}": f"WAISR{i:02d}" for i in range(1, 13)},
    "therapist_wai_total": "WAIT_Total",
    **{f"phq_{i}": f"PHQ{i:02d}" for i in range(1, 10)},
}
TEXT = ["therapist", "patient", "gender"]
WIDE_HEADER_ROW = 3


def _sha256(paths: list[Path]) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def runs() -> dict:
    """The cleaning result of each file, and the input files' digests before and after."""
    files = [p for pair in INPUTS.values() for p in pair]
    before = _sha256(files)
    results = {name: run_cleaning(data, config) for name, (data, config) in INPUTS.items()}
    return {"results": results, "before": before, "after": _sha256(files)}


@pytest.fixture(scope="module")
def csv_table() -> pd.DataFrame:
    """The demo CSV as text cells, read with the csv module."""
    text = (DEMO / "sessions.csv").read_text(encoding="utf-8")
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    return pd.DataFrame(rows, columns=header, dtype=object)


@pytest.fixture(scope="module")
def wide_sheet() -> list[tuple]:
    """The wide workbook's sheet, row 1 first."""
    workbook = openpyxl.load_workbook(INPUTS["wide"][0], read_only=True)
    try:
        return [tuple(row) for row in workbook["export"].iter_rows(values_only=True)]
    finally:
        workbook.close()


def _result(runs: dict, name: str) -> CleaningResult:
    return runs["results"][name]


def _value_change_keys(result: CleaningResult) -> list[tuple]:
    changes = result.value_changes
    return sorted(
        zip(
            changes["column"],
            changes["patient_id"],
            changes["session"].astype(int),
            changes["original_value"],
            strict=True,
        )
    )


def _shift_quoted_rows(reason: str, shift: int) -> str:
    """Shift the row numbers a ledger reason quotes ('row 12', 'row(s) 3, 4') by ``shift``."""

    def shifted(match: re.Match) -> str:
        numbers = ", ".join(str(int(n) + shift) for n in match.group(2).split(", "))
        return match.group(1) + numbers

    return re.sub(r"(\brow(?:\(s\))? )(\d+(?:, \d+)*)", shifted, reason)


# ----------------------------------------------------------------------- the runs


def test_input_files_are_byte_identical_after_the_runs(runs: dict):
    assert runs["after"] == runs["before"]


@pytest.mark.parametrize("name", EXPORT_FORMATS)
def test_processed_sessions_equal_the_csv_except_source_row(runs: dict, name: str):
    expected = _result(runs, "csv").sessions.drop(columns="source_row")
    found = _result(runs, name).sessions.drop(columns="source_row")
    assert len(found) > 4000  # the demo's ~4200 treatment sessions, not an empty frame
    pd.testing.assert_frame_equal(found, expected, check_exact=True)


@pytest.mark.parametrize("name", EXPORT_FORMATS)
def test_patient_tables_equal_the_csv(runs: dict, name: str):
    expected = _result(runs, "csv").patients
    assert len(expected) == 399  # 400 patients, P0103 has no outcome at any session
    pd.testing.assert_frame_equal(_result(runs, name).patients, expected, check_exact=True)


@pytest.mark.parametrize("name", ["csv", *EXPORT_FORMATS])
def test_value_changes_are_the_injected_out_of_range_values(runs: dict, name: str):
    faults = json.loads((DEMO / "truth.json").read_text(encoding="utf-8"))["faults"]
    canonical = {f"wai_{i}": alliance_item_column("client", i) for i in range(1, 13)}
    canonical.update({f"phq_{i}": outcome_item_column(i) for i in range(1, 10)})
    expected = sorted(
        (canonical[f["column"]], f["patient"], f["session"], str(f["new"]))
        for f in faults
        if f["type"] == "out_of_range"
    )
    assert len(expected) == 2
    assert _value_change_keys(_result(runs, name)) == expected
    assert _value_change_keys(_result(runs, name)) == _value_change_keys(_result(runs, "csv"))


def test_sav_source_row_is_the_csv_line_minus_one(runs: dict):
    csv_rows = _result(runs, "csv").sessions["source_row"].to_numpy()
    sav_rows = _result(runs, "sav").sessions["source_row"].to_numpy()
    np.testing.assert_array_equal(sav_rows, csv_rows - 1)
    csv_changes = _result(runs, "csv").value_changes["source_row"].to_numpy()
    sav_changes = _result(runs, "sav").value_changes["source_row"].to_numpy()
    np.testing.assert_array_equal(sav_changes, csv_changes - 1)


def test_sav_ledger_has_the_csv_reasons_with_case_numbers(runs: dict):
    csv_ledger = _result(runs, "csv").ledger
    sav_ledger = _result(runs, "sav").ledger
    same = ["patient_id", "therapist_id", "session", "step", "fate"]
    pd.testing.assert_frame_equal(sav_ledger[same], csv_ledger[same])
    np.testing.assert_array_equal(sav_ledger["source_row"], csv_ledger["source_row"] - 1)
    shifted = [_shift_quoted_rows(r, -1) for r in csv_ledger["reason"]]
    assert list(sav_ledger["reason"]) == shifted
    # The quoted numbers are SPSS case numbers: truth.json's CSV lines minus one.
    assert "exact duplicate of row 2937" in set(sav_ledger["reason"])
    assert (sav_ledger["fate"] == "excluded").sum() == 5


def test_shift_quoted_rows_helper():
    assert _shift_quoted_rows("exact duplicate of row 2938", -1) == "exact duplicate of row 2937"
    assert (
        _shift_quoted_rows("conflicts with row(s) 10, 12 for the same patient", -1)
        == "conflicts with row(s) 9, 11 for the same patient"
    )
    assert (
        _shift_quoted_rows("therapists [T01 (1), T08 (8)]", -1) == "therapists [T01 (1), T08 (8)]"
    )


def test_wide_ledger_holds_only_the_intake_records(runs: dict, wide_sheet: list[tuple]):
    ledger = _result(runs, "wide").ledger
    n_patients = len(wide_sheet) - WIDE_HEADER_ROW
    assert n_patients == 400
    assert set(ledger["fate"]) == {"intake"}
    assert sorted(ledger["source_row"]) == list(range(WIDE_HEADER_ROW + 1, len(wide_sheet) + 1))


def test_wide_source_row_is_the_patients_sheet_row(runs: dict, wide_sheet: list[tuple]):
    header = wide_sheet[WIDE_HEADER_ROW - 1]
    patient_column = header.index("client_id")
    sheet_row = {
        row[patient_column]: number
        for number, row in enumerate(wide_sheet, start=1)
        if number > WIDE_HEADER_ROW
    }
    sessions = _result(runs, "wide").sessions
    expected = sessions["patient_id"].map(sheet_row).to_numpy(dtype="int64")
    np.testing.assert_array_equal(sessions["source_row"].to_numpy(), expected)


# ------------------------------------------------------------------- the fixtures


def test_sav_holds_every_csv_row_under_its_spss_name(csv_table: pd.DataFrame):
    frame, meta = pyreadstat.read_sav(str(INPUTS["sav"][0]), apply_value_formats=False)
    assert list(frame.columns) == [SAV_NAMES[c] for c in csv_table.columns]
    assert len(frame) == len(csv_table) == 4584
    assert meta.variable_value_labels == {
        "TherapyType": {1.0: "CBT", 2.0: "Psychodynamic", 3.0: "Humanistic"}
    }
    assert all(meta.column_names_to_labels[name] for name in frame.columns)
    for column in csv_table.columns:
        cells = csv_table[column].str.strip()
        stored = frame[SAV_NAMES[column]]
        if column in TEXT:
            assert list(stored) == [("" if c in MISSING_CODES else c) for c in cells], column
        elif column == "modality":
            labels = meta.variable_value_labels["TherapyType"]
            assert list(stored.map(labels)) == list(cells), column
        else:
            numbers = [np.nan if c in MISSING_CODES else float(c) for c in cells]
            np.testing.assert_array_equal(stored.to_numpy(), np.asarray(numbers), column)


def test_wide_sheet_layout(wide_sheet: list[tuple]):
    assert wide_sheet[0][0].startswith("Demo clinic export (SIMULATED")
    header = wide_sheet[WIDE_HEADER_ROW - 1]
    assert header[:5] == ("client_id", "clinician", "programme", "age_at_intake", "sex")
    assert "phq9_1_t00" in header and "wai3_t07" in header and "twai_t20" in header
    assert "wai1_t00" not in header  # no alliance at intake
    cells = [v for row in wide_sheet[WIDE_HEADER_ROW:] for v in row]
    assert {"NA", "."} <= {v for v in cells if isinstance(v, str)}  # missing codes kept


def test_wide_sheet_holds_the_kept_csv_rows(csv_table: pd.DataFrame, wide_sheet: list[tuple]):
    """Each patient-session with a value in the sheet is a CSV row kept by cleaning."""
    header = wide_sheet[WIDE_HEADER_ROW - 1]
    pattern = re.compile(r"^(?P<var>.+)_t(?P<session>\d+)$")
    in_sheet = set()
    for row in wide_sheet[WIDE_HEADER_ROW:]:
        for name, value in zip(header, row, strict=True):
            match = pattern.fullmatch(name)
            if match and value is not None:
                in_sheet.add((row[0], int(match.group("session"))))
    in_csv = set(zip(csv_table["patient"], csv_table["session"].astype(int), strict=True))
    # truth.json's faults: both copies of P0334 session 2 conflict, P0078's only session-1
    # row has the mistyped therapist id (the exact duplicate's first copy is kept); and
    # P0103's one treatment session has no outcome (a patient without any outcome).
    excluded = {("P0334", 2), ("P0078", 1), ("P0103", 1)}
    assert in_sheet == in_csv - excluded
    row_of = {row[0]: row for row in wide_sheet[WIDE_HEADER_ROW:]}
    assert row_of["P0064"][header.index("wai11_t18")] == 6  # out-of-range value kept
    assert row_of["P0145"][header.index("phq9_1_t07")] == 4
    assert row_of["P0078"][header.index("clinician")] == "T08"


def _zip_parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_script_reproduces_the_committed_files(tmp_path: Path):
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        cwd=PROJECT_ROOT,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(GENERATED)
    for name in GENERATED:
        if name.endswith(".xlsx"):  # compare the workbook's parts, not zlib's bytes
            assert _zip_parts(tmp_path / name) == _zip_parts(EXPORTS / name), name
        else:
            assert (tmp_path / name).read_bytes() == (EXPORTS / name).read_bytes(), name


def test_readme_names_every_file():
    readme = (EXPORTS / "README.md").read_text(encoding="utf-8")
    for path in EXPORTS.iterdir():
        if path.is_file():
            assert f"`{path.name}`" in readme, path.name
