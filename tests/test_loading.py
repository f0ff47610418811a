"""Tests of helpers.loading: readers, error reports, and mapping to the schema.

Expected values come from the fixture files themselves (read by eye, or with
the standard library's csv module), never from the code under test.
"""

from __future__ import annotations

import csv
import datetime
import gzip
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pyreadstat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.config import ReadConfig, config_from_dict, load_config
from helpers.loading import RawTable, id_report, map_to_canonical, read_study, read_table
from helpers.paths import PROJECT_ROOT
from helpers.validation import StudyDataError

DATA = Path(__file__).resolve().parent / "data"
GOOD = DATA / "good"
BAD = DATA / "bad"
KEY = ["patient_id", "session"]


def _digests() -> dict[Path, str]:
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(DATA.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(autouse=True)
def fixtures_are_never_modified():
    """Every fixture is byte-identical after every test, including failing loads."""
    before = _digests()
    yield
    assert _digests() == before


def totals_config(**changes):
    data = {
        "study": "t",
        "layout": "long",
        "columns": {"therapist_id": "therapist", "patient_id": "patient", "session": "session"},
        "alliance": {"client": {"instrument": "wai_sr", "total": "wai"}},
        "outcome": {"instrument": "phq9", "total": "phq"},
    }
    data.update(changes)
    return config_from_dict(data)


def load_error(path: Path, config=None) -> StudyDataError:
    config = config or load_config(BAD / "totals.yml")
    with pytest.raises(StudyDataError) as info:
        read_study(path, config)
    text = str(info.value)
    assert str(PROJECT_ROOT) not in text  # never an absolute path
    assert "Traceback" not in text
    return info.value


def write_text(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# ------------------------------------------------------------------------- good files


def test_csv_is_read_as_text_with_line_numbers_and_missing_codes():
    raw = read_table(GOOD / "long.csv")
    assert isinstance(raw, RawTable)
    assert raw.format == "csv"
    assert raw.header_row == 1
    assert raw.data["source_row"].tolist() == list(range(2, 13))  # lines 2..12 of the file
    assert raw.data["therapist"].tolist()[:2] == ["101", "101"]  # text, as in the file
    assert raw.data["age"].tolist()[0] == "34"
    # Intake rows code missing as "NA", "" and "." -- all three become missing.
    intake = raw.data.loc[raw.data["session"] == "0", "wai_1"]
    assert intake.isna().all() and len(intake) == 3
    assert raw.name == "tests/data/good/long.csv"
    assert raw.columns[:3] == ["therapist", "patient", "session"]


def test_long_csv_maps_to_the_values_in_the_file():
    frame = read_study(GOOD / "long.csv", GOOD / "long.yml")
    with open(GOOD / "long.csv", newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    assert len(frame) == len(records) == 11
    # Line 3 of the file: 101,P01,1,CBT,34,F,2,2,2,5,3,2,2,5,3,4,2,1,12,3,0,2,0,3,3,3,1,0
    row = frame.loc[(frame["patient_id"] == "P01") & (frame["session"] == 1)].iloc[0]
    assert row["source_row"] == 3
    assert row["therapist_id"] == "101"
    assert row["modality"] == "CBT"
    assert row["age"] == 34.0
    assert row["alliance_client_item04"] == 5.0
    assert row["alliance_therapist"] == 12.0
    assert row["outcome_item01"] == 3.0
    # Every item cell equals the file's text, item by item.
    for record, (_, mapped) in zip(records, frame.iterrows(), strict=True):
        for i in range(1, 10):
            text = record[f"phq_{i}"]
            assert mapped[f"outcome_item{i:02d}"] == float(text)
    # P03 is psychodynamic after modality_labels; the out-of-range PHQ item (4) is kept.
    p03 = frame.loc[frame["patient_id"] == "P03"]
    assert set(p03["modality"]) == {"psychodynamic"}
    assert p03.loc[p03["session"] == 3, "outcome_item02"].item() == 4.0
    # P02 session 1 has a blank wai_5.
    p02 = frame.loc[(frame["patient_id"] == "P02") & (frame["session"] == 1)]
    assert np.isnan(p02["alliance_client_item05"].item())


def test_canonical_columns_and_types():
    cfg = load_config(GOOD / "long.yml")
    frame = read_study(GOOD / "long.csv", cfg)
    assert list(frame.columns) == cfg.canonical_columns()
    assert frame["source_row"].dtype == "int64"
    assert frame["session"].dtype == "Int64"
    for column in ("therapist_id", "patient_id", "modality", "gender"):
        assert isinstance(frame[column].dtype, pd.StringDtype), column
    assert frame["age"].dtype == "float64"
    assert (frame.filter(like="alliance_").dtypes == "float64").all()
    assert (frame.filter(like="outcome_").dtypes == "float64").all()


def test_csv_wide_excel_and_spss_give_the_same_canonical_frame():
    from_csv = read_study(GOOD / "long.csv", GOOD / "long.yml")
    from_xlsx = read_study(GOOD / "wide.xlsx", GOOD / "wide.yml")
    from_sav = read_study(GOOD / "long.sav", GOOD / "sav.yml")

    def comparable(frame):
        return frame.drop(columns="source_row").sort_values(KEY).reset_index(drop=True)

    pd.testing.assert_frame_equal(comparable(from_xlsx), comparable(from_csv))
    pd.testing.assert_frame_equal(comparable(from_sav), comparable(from_csv))
    # Row numbers point into each file: the patient's row of the wide sheet
    # (header on row 1), the case number of the SPSS file.
    assert from_xlsx["source_row"].tolist() == [2, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4]
    assert from_sav["source_row"].tolist() == list(range(1, 12))


def test_spss_keeps_codes_in_the_data_and_labels_as_metadata():
    raw = read_table(GOOD / "long.sav")
    assert raw.format == "sav"
    assert raw.value_labels["modality"] == {1.0: "CBT", 2.0: "Psychodynamic", 3.0: "Humanistic"}
    assert raw.value_labels["gender"] == {1.0: "F", 2.0: "M"}
    assert raw.variable_labels["wai_1"] == "WAI-SR item 1"
    assert raw.data["modality"].tolist() == [1.0] * 7 + [2.0] * 4
    assert raw.data["source_row"].tolist() == list(range(1, 12))


def test_excel_sheet_by_name_or_index():
    by_index = read_table(GOOD / "wide.xlsx", ReadConfig(sheet=1))
    assert by_index.sheet == "sessions"
    assert by_index.data["patient"].tolist() == ["P01", "P02", "P03"]
    assert by_index.data["source_row"].tolist() == [2, 3, 4]
    with pytest.raises(StudyDataError) as info:
        read_table(GOOD / "wide.xlsx")  # the first sheet holds only a note
    (problem,) = info.value.problems
    assert problem.found == "a header (row 1 of sheet 'notes') but no data rows"
    assert "set read.sheet to one of 'sessions'" in problem.fix


def test_excel_missing_sheet_suggests_the_name():
    cfg = totals_config(read={"sheet": "Sessions"})
    with pytest.raises(StudyDataError) as info:
        read_table(GOOD / "wide.xlsx", cfg)
    (problem,) = info.value.problems
    assert "'notes', 'sessions'" in problem.found
    assert problem.fix == "did you mean 'sessions'?"


def test_stata_and_parquet_give_the_same_frame(tmp_path: Path):
    expected = read_study(GOOD / "long.sav", GOOD / "sav.yml")
    frame, meta = pyreadstat.read_sav(str(GOOD / "long.sav"))
    pyreadstat.write_dta(
        frame, tmp_path / "long.dta", variable_value_labels=meta.variable_value_labels
    )
    from_dta = read_study(tmp_path / "long.dta", GOOD / "sav.yml")
    pd.testing.assert_frame_equal(from_dta, expected)

    labelled = frame.assign(
        modality=frame["modality"].map({1.0: "CBT", 2.0: "Psychodynamic"}),
        gender=frame["gender"].map({1.0: "F", 2.0: "M"}),
    )
    labelled.to_parquet(tmp_path / "long.parquet")
    from_parquet = read_study(tmp_path / "long.parquet", GOOD / "sav.yml")
    pd.testing.assert_frame_equal(from_parquet, expected)


def test_tsv_with_blank_lines_bom_and_a_multiline_cell(tmp_path: Path):
    text = (
        "\ufefftherapist\tpatient\tsession\twai\tphq\tnote\n"
        "T1\tP1\t1\t40\t12\tok\n"
        "\n"
        'T1\tP1\t2\t44\t10\t"two\nlines"\n'
        "T1\tP1\t3\t41\t9\tok\n"
    )
    path = write_text(tmp_path, "s.tsv", text)
    raw = read_table(path)
    assert raw.columns[0] == "therapist"  # byte-order mark dropped
    assert raw.data["source_row"].tolist() == [2, 4, 6]  # blank line 3 skipped
    assert raw.data["note"].tolist()[1] == "two\nlines"
    frame = map_to_canonical(raw, totals_config())
    assert frame["session"].tolist() == [1, 2, 3]


def test_short_rows_are_reported_not_padded(tmp_path: Path):
    path = write_text(tmp_path, "s.csv", "therapist,patient,session,wai,phq\nT1,P1,1,40\n")
    (problem,) = load_error(path).problems
    assert problem.rows == [2]
    assert problem.found == "1 row with fewer fields than the header: row 2 has 4"
    # An empty last cell written with its comma is a complete row.
    path.write_bytes(b"therapist,patient,session,wai,phq\nT1,P1,1,40,\n")
    assert np.isnan(read_study(path, totals_config())["outcome"].item())


def test_custom_missing_codes_in_text_and_numeric_cells(tmp_path: Path):
    path = write_text(tmp_path, "s.csv", "therapist,patient,session,wai,phq\nT1,P1,1,-99,n/a\n")
    cfg = totals_config(read={"missing_codes": ["", "n/a", -99]})
    frame = read_study(path, cfg)
    assert np.isnan(frame["alliance_client"].item())
    assert np.isnan(frame["outcome"].item())
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["therapist", "patient", "session", "wai", "phq"])
    sheet.append(["T1", "P1", 1, -99, 12.0])
    sheet.append(["T1", "P1", 2, -99.0, "n/a"])
    workbook.save(tmp_path / "s.xlsx")
    frame = read_study(tmp_path / "s.xlsx", cfg)
    assert frame["alliance_client"].isna().all()
    assert frame["outcome"].tolist()[0] == 12.0 and np.isnan(frame["outcome"].tolist()[1])


def test_numeric_ids_are_text_without_a_decimal_part(tmp_path: Path):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["therapist", "patient", "session", "wai", "phq"])
    sheet.append([7.0, " 0012 ", 1.0, 40, 12])
    workbook.save(tmp_path / "ids.xlsx")
    frame = read_study(tmp_path / "ids.xlsx", totals_config())
    assert frame["therapist_id"].item() == "7"
    assert frame["patient_id"].item() == "0012"  # stripped, leading zeros kept
    assert frame["session"].item() == 1


def test_implausible_sessions_are_kept_for_cleaning(tmp_path: Path):
    text = "therapist,patient,session,wai,phq\nT,P,0,40,1\nT,P,-1,41,2\nT,P,2,42,3\nT,P,2,99,3\n"
    frame = read_study(write_text(tmp_path, "s.csv", text), totals_config())
    assert frame["session"].tolist() == [0, -1, 2, 2]
    assert frame["alliance_client"].tolist() == [40.0, 41.0, 42.0, 99.0]


def test_modality_labels_missing_a_label(tmp_path: Path):
    text = "therapist,patient,session,mod,wai,phq\nT,P,1,CBT,40,1\nT,Q,1,DBT,41,2\n"
    cfg = totals_config(
        columns={
            "therapist_id": "therapist",
            "patient_id": "patient",
            "session": "session",
            "modality": "mod",
        },
        modality_labels={"CBT": "CBT", "Psychodynamic": "psychodynamic"},
    )
    err = load_error(write_text(tmp_path, "s.csv", text), cfg)
    (problem,) = err.problems
    assert problem.column == "mod"
    assert problem.rows == [3]
    assert problem.values == ["DBT"]


def test_without_modality_labels_modality_is_kept_as_text(tmp_path: Path):
    text = "therapist,patient,session,mod,wai,phq\nT,P,1, DBT ,40,1\n"
    cfg = totals_config(
        columns={
            "therapist_id": "therapist",
            "patient_id": "patient",
            "session": "session",
            "modality": "mod",
        }
    )
    assert read_study(write_text(tmp_path, "s.csv", text), cfg)["modality"].item() == "DBT"


def test_text_covariates_stay_text(tmp_path: Path):
    text = "therapist,patient,session,edu,wai,phq\nT,P,1,high,40,1\nT,Q,1,3,41,2\n"
    cfg = totals_config(covariates={"education": "edu"})
    frame = read_study(write_text(tmp_path, "s.csv", text), cfg)
    assert frame["education"].tolist() == ["high", "3"]


def test_wide_layout_with_intake_total_column(tmp_path: Path):
    text = "ther,pat,phq_intake,wai_s01,wai_s02,phq_s01,phq_s02\nT,A,20,40,44,12,10\n"
    cfg = config_from_dict(
        {
            "study": "w",
            "layout": "wide",
            "columns": {"therapist_id": "ther", "patient_id": "pat"},
            "alliance": {"client": {"instrument": "wai_sr", "total": "wai"}},
            "outcome": {"instrument": "phq9", "total": "phq", "intake_total": "phq_intake"},
        }
    )
    frame = read_study(write_text(tmp_path, "w.csv", text), cfg)
    assert frame["session"].tolist() == [1, 2]
    assert frame["outcome_intake"].tolist() == [20.0, 20.0]
    assert frame["alliance_client"].tolist() == [40.0, 44.0]
    assert frame["outcome"].tolist() == [12.0, 10.0]
    assert frame["source_row"].tolist() == [2, 2]


def test_wide_non_numeric_cell_names_the_real_column(tmp_path: Path):
    text = "ther,pat,wai_s01,wai_s02,phq_s01,phq_s02\nT,A,40,x,12,10\n"
    cfg = config_from_dict(
        {
            "study": "w",
            "layout": "wide",
            "columns": {"therapist_id": "ther", "patient_id": "pat"},
            "alliance": {"client": {"instrument": "wai_sr", "total": "wai"}},
            "outcome": {"instrument": "phq9", "total": "phq"},
        }
    )
    (problem,) = load_error(write_text(tmp_path, "w.csv", text), cfg).problems
    assert problem.column == "wai_s02"
    assert problem.rows == [2]
    assert problem.values == ["x"]


def test_wide_patient_level_errors_name_each_cell_once(tmp_path: Path):
    text = "ther,pat,phq_intake,wai_s01,wai_s02,phq_s01,phq_s02\nT,A,x,40,44,12,10\n"
    cfg = config_from_dict(
        {
            "study": "w",
            "layout": "wide",
            "columns": {"therapist_id": "ther", "patient_id": "pat"},
            "alliance": {"client": {"instrument": "wai_sr", "total": "wai"}},
            "outcome": {"instrument": "phq9", "total": "phq", "intake_total": "phq_intake"},
        }
    )
    (problem,) = load_error(write_text(tmp_path, "w.csv", text), cfg).problems
    assert problem.column == "phq_intake"
    assert problem.rows == [2]  # one cell, although the patient has two session rows
    assert problem.found == "1 value that is not a number"


def test_many_bad_values_are_all_counted(tmp_path: Path):
    lines = ["therapist,patient,session,wai,phq"] + [f"T,P,{i},bad{i},1" for i in range(1, 26)]
    err = load_error(write_text(tmp_path, "s.csv", "\n".join(lines) + "\n"), totals_config())
    (problem,) = err.problems
    assert problem.rows == list(range(2, 27))
    assert problem.values == [f"bad{i}" for i in range(1, 11)]
    assert "(25 rows in total)" in str(err)


# -------------------------------------------------------------------------- bad files


def test_missing_file():
    (problem,) = load_error(BAD / "non_numerc.csv").problems
    assert problem.found == "no such file"
    assert "did you mean 'non_numeric.csv'" in problem.fix


def test_empty_file():
    (problem,) = load_error(BAD / "empty.csv").problems
    assert problem.file == "tests/data/bad/empty.csv"
    assert problem.found == "an empty file (0 bytes)"


def test_header_only_file():
    (problem,) = load_error(BAD / "header_only.csv").problems
    assert problem.found == "a header (line 1) but no data rows"


def test_semicolon_file_read_as_csv():
    (problem,) = load_error(BAD / "semicolon.csv").problems
    assert "the whole header in one column" in problem.found
    assert "semicolon-separated" in problem.found
    assert problem.fix.startswith("set read.delimiter: ';'")
    frame = read_study(BAD / "semicolon.csv", totals_config(read={"delimiter": ";"}))
    assert frame["alliance_client"].tolist() == [40.0, 44.0]


def test_tab_file_read_as_csv(tmp_path: Path):
    path = write_text(tmp_path, "t.csv", "therapist\tpatient\tsession\twai\tphq\nT\tP\t1\t4\t5\n")
    (problem,) = load_error(path).problems
    assert "tab-separated" in problem.found
    assert "read.delimiter: tab" in problem.fix


def test_latin1_file_read_as_utf8():
    (problem,) = load_error(BAD / "latin1.csv").problems
    # Counted by hand: line 1 "therapist,patient,session,wai,phq,site\n" is 39 bytes and
    # line 2 starts "T1,P01,1,40,12,Z" (16 bytes), so the latin-1 "ü" (0xFC) is byte 55.
    assert "byte 0xFC at byte offset 55 (line 2)" in problem.found
    assert "read.encoding: latin-1" in problem.fix
    assert problem.rows == [2]
    frame = read_table(BAD / "latin1.csv", totals_config(read={"encoding": "latin-1"}))
    assert frame.data["site"].tolist() == ["Zürich", "Münster"]


def test_misnamed_required_column():
    (problem,) = load_error(BAD / "misnamed_column.csv").problems
    assert problem.column == "patient"
    assert "columns.patient_id" in problem.rule
    assert "'pateint'" in problem.found
    assert problem.fix == (
        "rename the column in the file, or set columns.patient_id: pateint "
        "in tests/data/bad/totals.yml"
    )


def test_non_numeric_scores():
    problems = {p.column: p for p in load_error(BAD / "non_numeric.csv").problems}
    assert set(problems) == {"wai", "phq"}
    assert problems["wai"].rows == [3] and problems["wai"].values == ["abc"]
    assert problems["phq"].rows == [3] and problems["phq"].values == ["3,5"]
    assert problems["phq"].fix.startswith(
        "'3,5' is a number written with a decimal comma: set read.decimal: ',' under read:"
    )
    assert "read.decimal" not in problems["wai"].fix  # 'abc' is no number in any format
    assert "alliance_client" in problems["wai"].rule
    # With the suggested setting the decimal comma reads as 3.5; 'abc' is still reported.
    err = load_error(BAD / "non_numeric.csv", totals_config(read={"decimal": ","}))
    assert [p.column for p in err.problems] == ["wai"]


NUMBER_CSV = "therapist;patient;session;wai;phq;age\n{rows}"


@pytest.mark.parametrize(
    ("read", "cell", "expected"),
    [
        ({"delimiter": ";", "decimal": ","}, "3,25", 3.25),
        ({"delimiter": ";", "decimal": ","}, "-0,5", -0.5),
        ({"delimiter": ";", "decimal": ",", "thousands": "."}, "1.234,5", 1234.5),
        ({"delimiter": ";", "decimal": ",", "thousands": "."}, "1234,5", 1234.5),
        ({"delimiter": ";", "decimal": ",", "thousands": " "}, "1 234,5", 1234.5),
        ({"delimiter": ";", "decimal": ",", "thousands": " "}, "1\u00a0234,5", 1234.5),
        ({"delimiter": ";", "thousands": ","}, "1,234.5", 1234.5),
        ({"delimiter": ";", "thousands": "'"}, "1'234'567", 1234567.0),
    ],
)
def test_decimal_and_thousands_separators_in_text_cells(tmp_path: Path, read, cell, expected):
    rows = f"T1;P01;1;{cell};12;34\n"
    path = write_text(tmp_path, "n.csv", NUMBER_CSV.format(rows=rows))
    frame = read_study(path, totals_config(read=read))
    assert frame["alliance_client"].tolist() == [expected]


def test_european_csv_loads_with_semicolons_and_decimal_commas(tmp_path: Path):
    # As a spreadsheet set to German/French/… conventions saves "CSV": ';' between
    # fields, decimal commas, ids that look like numbers.
    rows = "1.001;P01;1;3,5;12;34,5\n1.001;P01;2;4;9,5;34,5\n"
    path = write_text(tmp_path, "eu.csv", NUMBER_CSV.format(rows=rows))
    config = totals_config(
        read={"delimiter": ";", "decimal": ",", "thousands": "."},
        covariates={"age": "age"},
    )
    frame = read_study(path, config)
    assert frame["alliance_client"].tolist() == [3.5, 4.0]
    assert frame["outcome"].tolist() == [12.0, 9.5]
    assert frame["age"].tolist() == [34.5, 34.5]
    assert frame["therapist_id"].tolist() == ["1.001", "1.001"]  # never a number
    assert frame["session"].tolist() == [1, 2]


def test_excel_text_cells_use_the_decimal_setting(tmp_path: Path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["therapist", "patient", "session", "wai", "phq"])
    sheet.append(["T1", "P01", 1, "3,25", 12])  # typed as text
    sheet.append(["T1", "P01", 2, 41, "1.234,5"])  # a real number; text with thousands
    path = tmp_path / "text_numbers.xlsx"
    book.save(path)
    frame = read_study(path, totals_config(read={"decimal": ",", "thousands": "."}))
    assert frame["alliance_client"].tolist() == [3.25, 41.0]
    assert frame["outcome"].tolist() == [12.0, 1234.5]


def test_a_cell_in_another_number_format_suggests_the_setting(tmp_path: Path):
    rows = "T1;P01;1;3.5;1.234,5;34\n"
    path = write_text(tmp_path, "n.csv", NUMBER_CSV.format(rows=rows))
    err = load_error(path, totals_config(read={"delimiter": ";", "decimal": ","}))
    problems = {p.column: p for p in err.problems}
    assert problems["wai"].fix.startswith(
        "'3.5' is a number written with a decimal point: set read.decimal: '.'"
    )
    assert problems["phq"].fix.startswith(
        "'1.234,5' is a number written with a decimal comma and '.' between thousands: "
        "set read.thousands: '.'"
    )


def test_thousands_separator_equal_to_the_default_delimiter(tmp_path: Path):
    path = write_text(tmp_path, "n.csv", "therapist,patient,session,wai,phq\nT1,P01,1,40,12\n")
    (problem,) = load_error(path, totals_config(read={"thousands": ","})).problems
    assert "other than the field separator" in problem.rule
    assert problem.found.startswith("both are ','")
    assert "read.delimiter" in problem.fix


def test_item_pattern_with_a_format_spec(tmp_path: Path):
    header = ",".join(["therapist", "patient", "session", *[f"WAI{i:02d}" for i in range(1, 13)]])
    row = ",".join(["T1", "P01", "1", *[str(1 + i % 5) for i in range(12)]])
    path = write_text(tmp_path, "w.csv", f"{header},phq\n{row},7\n")
    alliance = {"client": {"instrument": "wai_sr", "item_pattern": "WAI{i:02d}"}}
    frame = read_study(path, totals_config(alliance=alliance))
    # WAI01..WAI12 hold 1,2,3,4,5,1,2,3,4,5,1,2 (written above, item by item)
    items = [frame[f"alliance_client_item{i:02d}"].item() for i in range(1, 13)]
    assert items == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]


def test_fractional_session_numbers():
    (problem,) = load_error(BAD / "fractional_session.csv").problems
    assert problem.column == "session"
    assert problem.rows == [3]
    assert problem.values == ["2.5"]
    assert problem.found == "1 fractional session number"


def test_config_names_a_column_the_file_lacks():
    err = load_error(GOOD / "long.csv", load_config(BAD / "missing_column.yml"))
    (problem,) = err.problems
    assert problem.column == "age_years"
    assert "covariates.age" in problem.rule
    assert "tests/data/bad/missing_column.yml" in problem.fix


def test_item_columns_missing_are_grouped(tmp_path: Path):
    cfg = load_config(GOOD / "long.yml")
    raw = read_table(GOOD / "long.csv")
    raw.data = raw.data.rename(columns={f"wai_{i}": f"WAI{i}" for i in range(1, 13)})
    with pytest.raises(StudyDataError) as info:
        map_to_canonical(raw, cfg)
    (problem,) = info.value.problems
    assert "alliance.client.item_pattern" in problem.rule
    assert "(12 columns)" in problem.rule


def test_wide_file_read_as_long_suggests_layout_wide():
    cfg = load_config(GOOD / "wide.yml")
    cfg_long = config_from_dict(
        {**cfg.to_dict(), "layout": "long", "columns": {**cfg.columns, "session": "session"}}
    )
    with pytest.raises(StudyDataError) as info:
        read_study(GOOD / "wide.xlsx", cfg_long)
    first = info.value.problems[0]
    assert "the file looks wide" in first.found
    assert "'phq_1_s00'" in first.found  # the sheet's first per-session column
    assert first.fix.startswith("set layout: wide")


def test_long_file_read_as_wide_mentions_layout_long():
    cfg = load_config(GOOD / "long.yml").to_dict()
    cfg["layout"] = "wide"
    del cfg["columns"]["session"]
    with pytest.raises(StudyDataError) as info:
        read_study(GOOD / "long.csv", config_from_dict(cfg))
    (problem,) = info.value.problems
    assert "no column matches" in problem.found
    assert "set layout: long" in problem.fix


def test_wide_file_whose_columns_do_not_match_the_pattern():
    err = load_error(BAD / "wide_bad_pattern.csv", load_config(BAD / "wide_bad_pattern.yml"))
    (problem,) = err.problems
    assert "no column matches" in problem.found
    assert "'wai_t1'" in problem.found
    assert problem.fix == (
        "your columns look like this pattern: set wide.session_pattern: "
        "'^(?P<var>.+)_t(?P<session>\\d+)$'"
    )


def test_excel_header_on_row_three():
    (problem,) = load_error(BAD / "header_row3.xlsx").problems
    assert problem.rows == [3]
    assert "read.header_row: 3" in problem.fix
    assert "'Alliance study export'" in problem.found
    frame = read_study(BAD / "header_row3.xlsx", totals_config(read={"header_row": 3}))
    assert frame["source_row"].tolist() == [4, 5]
    assert frame["alliance_client"].tolist() == [40.0, 44.0]


def test_header_row_pointing_at_an_empty_row():
    with pytest.raises(StudyDataError) as info:
        read_table(BAD / "header_row3.xlsx", totals_config(read={"header_row": 2}).read)
    (problem,) = info.value.problems
    assert problem.found == "row 2 is empty"
    assert problem.fix == "the first non-empty row is 3: set read.header_row: 3"


def test_csv_header_on_a_later_line(tmp_path: Path):
    text = "Export of 2024\n\ntherapist,patient,session,wai,phq\nT,P,1,40,12\n"
    path = write_text(tmp_path, "s.csv", text)
    (problem,) = load_error(path).problems
    assert problem.found == (
        "line 1 holds 1 name ('Export of 2024') but line 3 has 5 fields that look like column names"
    )
    assert problem.fix.startswith("set read.header_row: 3")
    frame = read_study(path, totals_config(read={"header_row": 3}))
    assert frame["source_row"].tolist() == [4]


def test_unquoted_decimal_comma_gives_too_many_fields():
    (problem,) = load_error(BAD / "too_many_fields.csv").problems
    assert problem.rows == [3]
    assert problem.values == ["5"]
    assert "1 row with more fields" in problem.found
    assert problem.fix.endswith(
        "(or save the file ';'-separated and set read.delimiter: ';' and read.decimal: ',')"
    )


def test_unsupported_extension():
    (problem,) = load_error(BAD / "old_excel.xls").problems
    assert problem.found == "a file ending in '.xls'"
    assert "save it as .xlsx" in problem.fix


def test_excel_file_named_csv(tmp_path: Path):
    path = tmp_path / "data.csv"
    path.write_bytes((GOOD / "wide.xlsx").read_bytes())
    (problem,) = load_error(path).problems
    assert "Excel workbook" in problem.found
    assert "read.format: xlsx" in problem.fix


def test_utf16_file(tmp_path: Path):
    path = tmp_path / "u.csv"
    path.write_bytes("therapist,patient,session,wai,phq\nT,P,1,4,5\n".encode("utf-16"))
    (problem,) = load_error(path).problems
    assert "read.encoding: utf-16" in problem.fix
    frame = read_study(path, totals_config(read={"encoding": "utf-16"}))
    assert frame["outcome"].item() == 5.0


def test_repeated_column_names(tmp_path: Path):
    path = write_text(tmp_path, "d.csv", "therapist,patient,wai,wai,phq,session\nT,P,1,2,3,1\n")
    (problem,) = load_error(path).problems
    assert problem.found == "repeated column names: 'wai'"


def test_a_column_named_source_row(tmp_path: Path):
    path = write_text(tmp_path, "d.csv", "source_row,therapist\n1,T\n")
    (problem,) = load_error(path).problems
    assert problem.column == "source_row"


def test_corrupt_spss_file(tmp_path: Path):
    path = tmp_path / "broken.sav"
    path.write_bytes(b"$FL2 this is not really an SPSS file")
    (problem,) = load_error(path).problems
    assert "SPSS reader could not read" in problem.found


def test_corrupt_excel_file(tmp_path: Path):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"not a zip file")
    (problem,) = load_error(path).problems
    assert problem.rule == "an Excel workbook (.xlsx)"


# ------------------------------------------------------ every line accounted for


def test_stray_quote_near_the_end_is_named_at_its_line():
    # Line 12 of 15 reads: T1,P01,11,"40,12 -- the quote opens a cell never closed.
    (problem,) = load_error(BAD / "stray_quote_end.csv").problems
    assert problem.rows == [12]
    assert problem.found.startswith("a quote opened on line 12 is never closed")
    assert "(lines 12-15, 4 lines)" in problem.found
    assert problem.fix.startswith("remove the stray quote on line 12")


def test_stray_quote_in_the_middle_is_named_at_its_line():
    (problem,) = load_error(BAD / "stray_quote_middle.csv").problems
    assert problem.rows == [4]
    assert "(lines 4-15, 12 lines)" in problem.found


def test_a_file_cut_off_inside_a_quote_also_suggests_a_new_export(tmp_path: Path):
    path = write_text(tmp_path, "s.csv", 'therapist,patient,session,wai,phq\nT1,P1,1,"40')
    (problem,) = load_error(path).problems
    assert problem.rows == [2]
    assert "if it was cut off, export it again" in problem.fix


def test_a_stray_quote_closed_by_another_names_the_joined_lines(tmp_path: Path):
    text = (
        "therapist,patient,session,wai,phq\n"
        "T1,P1,1,40,12\n"
        'T1,P1,2,"44,10\n'  # line 3: a stray quote opens a cell
        "T1,P1,3,41,9\n"
        'T1,P1",4,42,8\n'  # line 5: a quote followed by a comma closes it
        "T1,P1,5,43,7\n"
    )
    (problem,) = load_error(write_text(tmp_path, "s.csv", text)).problems
    assert problem.rows == [3]
    # Counted by hand: T1 | P1 | 2 | <44,10 ... T1,P1> | 4 | 42 | 8 -> 7 fields.
    assert problem.found == (
        "a quoted cell opened on line 3 runs on to line 5, joining lines 3-5 into one "
        "record with 7 fields"
    )


def test_a_huge_quoted_cell_is_reported_at_the_line_its_quote_opened(tmp_path: Path):
    filler = "".join(f"T1,P{i},1,40,12\n" for i in range(12000))  # > 131072 characters
    text = f'therapist,patient,session,wai,phq\nT1,P0,1,"40,12\n{filler}T1,P9,1,40",12\n'
    (problem,) = load_error(write_text(tmp_path, "s.csv", text)).problems
    assert problem.rows == [2]
    assert "field larger than field limit" in problem.found


def test_short_rows_list_lines_and_field_counts():
    # Line 3 "T1,P01,2,44" (4 fields), line 5 "T1,P01,4 41,9" (4 fields); header 5.
    (problem,) = load_error(BAD / "short_row.csv").problems
    assert problem.rows == [3, 5]
    assert problem.values == [4, 4]
    assert problem.found == "2 rows with fewer fields than the header: row 3 has 4, row 5 has 4"
    assert problem.rule == "5 fields per row, as in the header (line 1)"
    assert "not padded" in problem.fix


def test_a_file_cut_off_mid_row_is_reported_as_such():
    # The file ends "T1,P01,3,4" on line 4, without a line break.
    (problem,) = load_error(BAD / "cut_off.csv").problems
    assert problem.rows == [4]
    assert problem.found == (
        "the file ends in the middle of line 4: it has 4 of 5 fields and no line break at the end"
    )
    assert "cut off" in problem.fix


def test_a_complete_last_row_without_a_line_break_is_read(tmp_path: Path):
    path = write_text(tmp_path, "s.csv", "therapist,patient,session,wai,phq\nT1,P1,1,40,12")
    raw = read_table(path)
    assert raw.data["phq"].tolist() == ["12"]
    assert raw.physical_records == 2


def test_separator_only_rows_are_counted_and_listed():
    # Lines 3, 5 and 6 are ",,,,"; data on lines 2, 4, 7.
    raw = read_table(BAD / "separator_rows.csv")
    assert raw.data["source_row"].tolist() == [2, 4, 7]
    assert raw.skipped_lines == {3: "only separators", 5: "only separators", 6: "only separators"}
    assert raw.physical_records == 7
    assert raw.notes == ["3 lines skipped (only separators): lines 3, 5, 6"]


def test_blank_lines_are_counted_and_listed():
    # Lines 3 and 6 are empty, line 5 holds three spaces, line 8 is empty before the
    # final line break; data on lines 2, 4, 7.
    raw = read_table(BAD / "blank_lines.csv")
    assert raw.data["source_row"].tolist() == [2, 4, 7]
    assert raw.skipped_lines == {n: "blank line" for n in (3, 5, 6, 8)}
    assert raw.physical_records == 8
    assert raw.notes == ["4 lines skipped (blank line): lines 3, 5, 6, 8"]


def test_lines_above_the_header_are_listed(tmp_path: Path):
    text = "Export of 2024\n\ntherapist,patient,session,wai,phq\nT,P,1,40,12\n"
    raw = read_table(write_text(tmp_path, "s.csv", text), ReadConfig(header_row=3))
    assert raw.skipped_lines == {1: "above the header (read.header_row: 3)"} | {
        2: "above the header (read.header_row: 3)"
    }
    assert len(raw.data) + len(raw.skipped_lines) + 1 == raw.physical_records == 4


def test_header_and_blank_lines_only(tmp_path: Path):
    path = write_text(tmp_path, "s.csv", "therapist,patient,session,wai,phq\n,,,,\n\n")
    (problem,) = load_error(path).problems
    assert problem.found == "a header (line 1) but no data rows (2 blank or empty lines)"


@pytest.mark.parametrize(
    ("name", "found", "fix"),
    [
        ("gzip.csv", "a gzip-compressed file", "decompress it first"),
        ("parquet_named.csv", "a Parquet file", "set read.format: parquet"),
        ("utf16_no_bom.csv", "UTF-16 text without a byte-order mark", "read.encoding: utf-16-le"),
        ("random_bytes.csv", "binary data, not text", "check that this is the data file"),
    ],
)
def test_non_text_files_are_named_before_any_encoding_advice(name, found, fix):
    (problem,) = load_error(BAD / name).problems
    assert problem.found.startswith(found)
    assert problem.fix.startswith(fix) or fix in problem.fix
    assert "latin-1" not in problem.fix


def test_the_suggested_settings_read_the_sniffed_files():
    # gzip.csv, parquet_named.csv and utf16_no_bom.csv hold lines 1-4 of the study:
    # header + sessions 1-3 of P01 (wai 39, 40, 41).
    as_parquet = read_table(BAD / "parquet_named.csv", ReadConfig(format="parquet"))
    as_utf16 = read_table(BAD / "utf16_no_bom.csv", ReadConfig(encoding="utf-16-le"))
    for raw in (as_parquet, as_utf16):
        assert raw.data["wai"].tolist() == ["39", "40", "41"]


def test_a_zip_archive_that_is_not_a_workbook(tmp_path: Path):
    path = tmp_path / "data.csv"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("sessions.csv", "therapist,patient\n")
    (problem,) = load_error(path).problems
    assert problem.found == "a zip archive holding 1 file ('sessions.csv')"
    assert problem.fix == "unzip it and read the data file inside"


def test_a_few_control_characters_in_text_are_not_binary(tmp_path: Path):
    path = tmp_path / "s.csv"
    path.write_bytes(b"therapist,patient,note\nT1,P1,ring \x07 bell\n")
    raw = read_table(path)
    assert raw.data["note"].tolist() == ["ring \x07 bell"]


def test_a_dos_end_of_file_mark_is_a_row_not_silently_dropped(tmp_path: Path):
    path = tmp_path / "s.csv"
    path.write_bytes(b"therapist,patient,session,wai,phq\nT1,P1,1,40,12\n\x1a")
    (problem,) = load_error(path).problems
    assert problem.rows == [3]
    assert problem.found.startswith("the file ends in the middle of line 3: it has 1 of 5")


# ------------------------------------------------------------------------ fixtures


def _zip_contents(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_make_fixtures_reproduces_the_committed_files(tmp_path: Path):
    subprocess.run(
        [sys.executable, str(DATA / "make_fixtures.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written, "the script wrote nothing"
    for relative in written:
        committed = DATA / relative
        assert committed.exists(), relative
        written_bytes = (tmp_path / relative).read_bytes()
        if relative.suffix == ".xlsx":  # compare the workbook's parts, not zlib's bytes
            assert _zip_contents(tmp_path / relative) == _zip_contents(committed), relative
        elif written_bytes[:2] == b"\x1f\x8b":  # gzip: the content, not zlib's bytes
            assert gzip.decompress(written_bytes) == gzip.decompress(committed.read_bytes())
        elif written_bytes[:4] == b"PAR1":  # Parquet: the table, not the writer's version
            pd.testing.assert_frame_equal(
                pd.read_parquet(tmp_path / relative), pd.read_parquet(committed)
            )
        else:
            assert (tmp_path / relative).read_bytes() == committed.read_bytes(), relative


def test_bad_fixture_readme_lists_every_bad_file():
    readme = (BAD / "README.md").read_text(encoding="utf-8")
    for path in BAD.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, path.name


# ----------------------------------------------------------------- property checks

finite_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)


def _raw_from_cells(cells: list[str]) -> RawTable:
    n = len(cells)
    data = pd.DataFrame(
        {
            "source_row": np.arange(2, n + 2, dtype="int64"),
            "therapist": pd.Series(["T"] * n, dtype="str"),
            "patient": pd.Series(["P"] * n, dtype="str"),
            "session": pd.Series(["1"] * n, dtype="str"),
            "wai": pd.Series(cells, dtype="str"),
            "phq": pd.Series(["1"] * n, dtype="str"),
        }
    )
    return RawTable(data=data, path=Path("cells.csv"), format="csv")


@settings(max_examples=60, deadline=None)
@given(st.lists(finite_floats, min_size=1, max_size=5))
def test_numbers_written_as_text_come_back_exactly(values):
    frame = map_to_canonical(_raw_from_cells([repr(v) for v in values]), totals_config())
    assert frame["alliance_client"].tolist() == [float(v) for v in values]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="abcxyz,;%/", min_size=1, max_size=6))
def test_text_in_a_score_column_is_always_reported(text):
    with pytest.raises(StudyDataError) as info:
        map_to_canonical(_raw_from_cells(["3", text]), totals_config())
    (problem,) = info.value.problems
    assert problem.rows == [3]
    assert problem.values == [text]


_plain_cells = st.text(alphabet="abcXYZ019 .-", min_size=1, max_size=5).filter(str.strip)
# A quoted cell may hold commas and doubled quotes, but no line break, so that each
# record of the valid file is one line.
_quoted_cells = st.text(alphabet='ab1,"', min_size=0, max_size=4).map(
    lambda t: '"' + t.replace('"', '""') + '"'
)


@st.composite
def _valid_csv_rows(draw) -> list[list[str]]:
    """A header ``c0, c1, …`` and 1-6 rows of cells as written (quoted or not)."""
    width = draw(st.integers(1, 4))
    cell = st.one_of(_plain_cells, _quoted_cells)
    rows = draw(st.lists(st.lists(cell, min_size=width, max_size=width), min_size=1, max_size=6))
    return [[f"c{j}" for j in range(width)], *rows]


_CORRUPTIONS = ("none", "quote", "drop_field", "truncate", "blank", "separators")


def _corrupt(rows: list[list[str]], corruption: str, where: int, final_break: bool) -> str:
    lines = [",".join(row) for row in rows]
    if corruption in ("blank", "separators"):
        at = 1 + where % (len(lines) - 1)  # below the header, above the last line
        lines.insert(at, "" if corruption == "blank" else "," * (len(rows[0]) - 1))
    elif corruption == "drop_field":
        at = 1 + where % (len(lines) - 1)
        lines[at] = lines[at].rsplit(",", 1)[0]
    text = "\n".join(lines) + ("\n" if final_break else "")
    if corruption == "quote":
        at = where % (len(text) + 1)
        text = text[:at] + '"' + text[at:]
    elif corruption == "truncate":
        text = text[: 1 + where % len(text)]
    return text


def _read_or_report(text: str) -> RawTable | None:
    """Read ``text`` as a CSV file; None when a StudyDataError reports it; bytes unchanged."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.csv"
        path.write_bytes(text.encode("utf-8"))
        try:
            raw = read_table(path)
        except StudyDataError as error:
            assert error.problems  # a report, never another exception
            raw = None
        assert path.read_bytes() == text.encode("utf-8")  # the input is never changed
    return raw


@settings(max_examples=300, deadline=None)
@given(_valid_csv_rows(), st.sampled_from(_CORRUPTIONS), st.integers(0, 10_000), st.booleans())
def test_every_line_is_read_skipped_or_reported(rows, corruption, where, final_break):
    width = len(rows[0])
    raw = _read_or_report(_corrupt(rows, corruption, where, final_break))
    if raw is not None:
        assert len(raw.data) + len(raw.skipped_lines) + 1 == raw.physical_records
        assert raw.data.shape[1] == width + 1  # the columns and source_row
    # Expected counts from the generated rows: a row of empty quoted cells ("") is empty.
    empty = sum(all(cell == '""' for cell in row) for row in rows[1:])
    if corruption in ("none", "blank", "separators") and empty == len(rows) - 1:
        assert raw is None  # a header but no data rows
    elif corruption in ("none", "blank", "separators"):
        added = corruption != "none"
        assert raw is not None
        assert len(raw.data) == len(rows) - 1 - empty
        assert len(raw.skipped_lines) == empty + added
        assert raw.physical_records == len(rows) + added
    drop_at = 1 + where % (len(rows) - 1)
    dropped_row = rows[drop_at]
    if corruption == "drop_field" and width > 1 and not any('"' in c for c in dropped_row):
        assert raw is None  # a row one field short is reported, never padded


# ------------------------------------------------------------- two-level studies, session dates


def test_two_level_file_maps_without_a_therapist_column(tmp_path: Path):
    text = "patient,session,wai,phq\nP,1,40,12\nQ,1,41,9\n"
    cfg = totals_config(columns={"patient_id": "patient", "session": "session"})
    frame = read_study(write_text(tmp_path, "s.csv", text), cfg)
    assert list(frame.columns) == [
        "source_row",
        "patient_id",
        "session",
        "alliance_client",
        "outcome",
    ]
    assert frame["patient_id"].tolist() == ["P", "Q"]


DATED = {"therapist_id": "therapist", "patient_id": "patient", "session_date": "visit"}


def dated_config(**read):
    return totals_config(
        columns=DATED,
        read=read,
        outcome={"instrument": "phq9", "total": "phq", "intake_session": 0},
    )


def test_session_dates_number_each_patients_sessions(tmp_path: Path):
    # P: intake 01.02.2024, then 08.02 (twice), 29.02; Q: 15.01.2024 only; row 7 has no date
    text = (
        "therapist,patient,visit,wai,phq\n"
        "T,P,29.02.2024,40,5\n"
        "T,P,01.02.2024,,20\n"
        "T,P,08.02.2024,38,12\n"
        "T,Q,15.01.2024,,14\n"
        "T,P,08.02.2024,39,11\n"
        "T,Q,,30,9\n"
    )
    frame = read_study(write_text(tmp_path, "d.csv", text), dated_config(date_format="%d.%m.%Y"))
    assert list(frame.columns)[:5] == [
        "source_row",
        "therapist_id",
        "patient_id",
        "session",
        "session_date",
    ]
    assert frame["source_row"].tolist() == [2, 3, 4, 5, 6, 7]
    assert frame["session"].tolist()[:5] == [2, 0, 1, 0, 1]
    assert frame["session"].isna().tolist() == [False] * 5 + [True]
    assert frame["session_date"].iloc[0] == pd.Timestamp(2024, 2, 29)
    assert frame["session_date"].isna().tolist() == [False] * 5 + [True]


def test_session_dates_without_intake_start_at_one(tmp_path: Path):
    text = "therapist,patient,visit,wai,phq\nT,P,2024-03-12,40,5\nT,P,2024-03-05,41,6\n"
    cfg = totals_config(columns=DATED)
    frame = read_study(write_text(tmp_path, "d.csv", text), cfg)
    assert frame["session"].tolist() == [2, 1]


def test_unparseable_session_dates_name_rows_values_and_the_format(tmp_path: Path):
    text = (
        "therapist,patient,visit,wai,phq\n"
        "T,P,2024-03-05,40,5\n"
        "T,P,12.03.2024,41,6\n"
        "T,Q,19.03.2024,42,7\n"
    )
    err = load_error(write_text(tmp_path, "d.csv", text), dated_config())
    (problem,) = err.problems
    assert problem.column == "visit"
    assert problem.rows == [3, 4]
    assert problem.values == ["12.03.2024", "19.03.2024"]
    assert problem.rule == "session dates written as YYYY-MM-DD (ISO 8601)"
    assert problem.found == "2 values that are not a date in that format"
    # no single format reads every date of the column (the first is ISO): a general fix
    assert "set read.date_format to the format of these cells" in problem.fix


def test_a_format_that_fits_every_date_is_suggested(tmp_path: Path):
    text = "therapist,patient,visit,wai,phq\nT,P,31/01/2024,40,5\nT,P,07/02/2024,41,6\n"
    (problem,) = load_error(write_text(tmp_path, "d.csv", text), dated_config()).problems
    assert problem.fix == "set read.date_format: '%d/%m/%Y' under read: in the config"
    text = "therapist,patient,visit,wai,phq\nT,P,03/01/2024,40,5\nT,P,07/02/2024,41,6\n"
    (problem,) = load_error(write_text(tmp_path, "e.csv", text), dated_config()).problems
    assert "'%d/%m/%Y'" in problem.fix and "also fit '%m/%d/%Y'" in problem.fix


def test_native_dates_from_excel_parquet_spss_and_stata(tmp_path: Path):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["therapist", "patient", "visit", "wai", "phq"])
    sheet.append(["T", "P", datetime.datetime(2024, 3, 12), 40, 5])
    sheet.append(["T", "P", datetime.datetime(2024, 3, 5), 41, 6])
    sheet.append(["T", "P", "2024-03-19", 42, 7])  # a date typed as text
    workbook.save(tmp_path / "d.xlsx")
    frame = read_study(tmp_path / "d.xlsx", dated_config())
    assert frame["session"].tolist() == [1, 0, 2]
    table = pd.DataFrame(
        {
            "therapist": ["T", "T"],
            "patient": ["P", "P"],
            "visit": [datetime.date(2024, 3, 12), datetime.date(2024, 3, 5)],
            "wai": [40, 41],
            "phq": [5, 6],
        }
    )
    table.to_parquet(tmp_path / "d.parquet")
    pyreadstat.write_sav(table, tmp_path / "d.sav")
    pyreadstat.write_dta(table, tmp_path / "d.dta")
    for name in ("d.parquet", "d.sav", "d.dta"):
        assert read_study(tmp_path / name, dated_config())["session"].tolist() == [1, 0], name


def test_excel_numbers_in_a_date_column_are_reported(tmp_path: Path):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["therapist", "patient", "visit", "wai", "phq"])
    sheet.append(["T", "P", 45356, 40, 5])  # a serial day number, not formatted as a date
    workbook.save(tmp_path / "d.xlsx")
    (problem,) = load_error(tmp_path / "d.xlsx", dated_config()).problems
    assert problem.column == "visit" and problem.rows == [2] and problem.values == [45356]
    assert "not formatted as dates" in problem.fix


# ----------------------------------------------------------------- one error path


def test_a_fifo_or_device_is_refused_without_reading(tmp_path: Path):
    import os

    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    (problem,) = load_error(fifo).problems  # opening it would block forever
    assert problem.found == "a named pipe (FIFO)"
    assert problem.rule == "a regular data file"
    if Path("/dev/zero").exists():
        with pytest.raises(StudyDataError) as info:
            read_table("/dev/zero", ReadConfig(format="csv"))
        assert info.value.problems[0].found == "a device such as /dev/zero"


def test_an_unreadable_data_file_is_reported(tmp_path: Path):
    import os

    path = write_text(tmp_path, "data.csv", "therapist,patient,session,wai,phq\nT,P,1,40,5\n")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who may read any file (root): chmod 000 does not block")
        with pytest.raises(StudyDataError) as info:
            read_table(path)
    finally:
        path.chmod(0o644)
    (problem,) = info.value.problems
    assert problem.found == "Permission denied"
    assert problem.rule == "a data file you may read"


@pytest.mark.parametrize("cell", ["1e309", "-1e309", "9" * 400, "1e20"])
def test_overflowing_session_numbers_are_reported(cell: str):
    raw = _raw_from_cells(["3", "4"])
    raw.data.loc[1, "session"] = cell
    with pytest.raises(StudyDataError) as info:
        map_to_canonical(raw, totals_config())
    (problem,) = info.value.problems
    assert problem.column == "session"
    assert problem.rows == [3]
    assert problem.found == "1 infinite or overflowing session number"
    assert problem.values == [cell[:40]]


def test_infinite_session_in_a_parquet_file_is_reported(tmp_path: Path):
    frame = pd.DataFrame(
        {
            "therapist": ["T", "T"],
            "patient": ["P", "P"],
            "session": [1.0, np.inf],
            "wai": [40.0, 41.0],
            "phq": [5.0, 4.0],
        }
    )
    frame.to_parquet(tmp_path / "d.parquet")
    with pytest.raises(StudyDataError) as info:
        read_study(tmp_path / "d.parquet", totals_config())
    (problem,) = info.value.problems
    assert problem.rows == [2]  # case number 2 (Parquet rows are numbered from 1)
    assert problem.values == ["inf"]


def test_the_largest_exact_session_number_is_still_read():
    raw = _raw_from_cells(["3"])
    raw.data.loc[0, "session"] = str(2**53)
    assert map_to_canonical(raw, totals_config())["session"].tolist() == [2**53]


# ----------------------------------------------------------------- id hygiene


def _id_raw(patients: list, therapists: list | None = None) -> RawTable:
    raw = _raw_from_cells(["40"] * len(patients))
    raw.data["patient"] = pd.Series(patients, dtype=object)
    if therapists is not None:
        raw.data["therapist"] = pd.Series(therapists, dtype=object)
    raw.data["session"] = pd.Series([str(i) for i in range(1, len(patients) + 1)], dtype="str")
    return raw


def test_ids_lose_surrounding_spaces_and_zero_width_characters():
    patients = ["P7", " P7", "P7\u200b", "\ufeffP8\t", "\u200c\u200d", "P 9"]
    frame = map_to_canonical(_id_raw(patients), totals_config())
    # the zero-width-only id is empty, so missing; inner spaces are kept
    assert frame["patient_id"].tolist()[:4] == ["P7", "P7", "P7", "P8"]
    assert pd.isna(frame["patient_id"].iloc[4])
    assert frame["patient_id"].iloc[5] == "P 9"


def test_leading_zeros_are_kept_unless_unified():
    raw = _id_raw(["007", "7", "101.0", 101.0, "0"], therapists=["T1"] * 5)
    kept = map_to_canonical(raw, totals_config())
    assert kept["patient_id"].tolist() == ["007", "7", "101.0", "101", "0"]
    unified = map_to_canonical(raw, totals_config(cleaning={"id_leading_zeros": "unify"}))
    assert unified["patient_id"].tolist() == ["7", "7", "101", "101", "0"]


def test_id_report_lists_changes_and_collisions():
    from helpers.ids import describe_id_report
    from helpers.loading import id_report

    raw = _id_raw(["P7", " P7", " P7", "007", "7", "P8"], therapists=["T1", "T1 ", "T1"] * 2)
    report = id_report(raw, totals_config(cleaning={"id_leading_zeros": "unify"}))
    rows = report.sort_values(["column", "original"]).to_dict("records")
    assert rows == [
        {"column": "patient_id", "original": "' P7'", "normalised": "P7", "records": 2,
         "collides_with": "'P7'"},
        {"column": "patient_id", "original": "'007'", "normalised": "7", "records": 1,
         "collides_with": "'7'"},
        {"column": "therapist_id", "original": "'T1 '", "normalised": "T1", "records": 2,
         "collides_with": "'T1'"},
    ]  # fmt: skip
    text = describe_id_report(report)
    assert text.startswith("identifiers: 3 id spellings normalised (5 records); 3 collisions: ")
    assert "'007' and '7' are now one id '7' (patient_id)" in text


def test_id_report_is_empty_for_clean_ids():
    from helpers.loading import id_report

    raw = _id_raw(["P1", "P2", 3.0], therapists=["T1", "T1", "T2"])
    assert id_report(raw, totals_config()).empty


def test_cleaning_summary_says_how_many_ids_were_normalised(tmp_path: Path):
    from helpers.pipeline import run_cleaning

    text = "therapist,patient,session,wai,phq\nT1,P1,1,40,5\nT1, P1,2,41,4\nT1,P1\u200b,3,42,3\n"
    path = write_text(tmp_path, "ids.csv", text)
    result = run_cleaning(path, BAD / "totals.yml")
    assert result.sessions["patient_id"].tolist() == ["P1", "P1", "P1"]
    assert "identifiers: 2 id spellings normalised (2 records); 1 collision: " in result.summary()
    assert len(result.id_changes) == 2


def test_max_session_from_the_config_excludes_a_typo(tmp_path: Path):
    from helpers.pipeline import run_cleaning

    text = "therapist,patient,session,wai,phq\nT1,P1,1,40,5\nT1,P1,2,41,4\nT1,P1,1100,42,3\n"
    path = write_text(tmp_path, "typo.csv", text)
    ledger = run_cleaning(path, BAD / "totals.yml").ledger
    assert ledger["source_row"].tolist() == [4]
    assert ledger["reason"].tolist() == ["session number 1100 is above cleaning.max_session (200)"]


# ------------------------------------------------------ bounded resources: Excel


def _workbook(path: Path, n_rows: int) -> Path:
    """A long-layout workbook: header and ``n_rows`` sessions of patient P1."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["therapist", "patient", "session", "wai", "phq"])
    for session in range(1, n_rows + 1):
        sheet.append(["T1", "P1", session, 40, 12])
    workbook.save(path)
    return path


def _rewrite_sheet(path: Path, edit) -> Path:
    """Rewrite ``xl/worksheets/sheet1.xml`` of the workbook at ``path`` through ``edit``."""
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    name = "xl/worksheets/sheet1.xml"
    parts[name] = edit(parts[name])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for part, data in parts.items():
            archive.writestr(part, data)
    return path


def test_a_workbook_that_inflates_beyond_the_limit_is_refused_fast(tmp_path, monkeypatch):
    import time

    from helpers import loading

    # 3 MiB of a comment inside the sheet XML compresses to a few kB: a small zip bomb.
    padding = b"<!--" + b"a" * (3 * 2**20) + b"-->"
    path = _rewrite_sheet(
        _workbook(tmp_path / "bomb.xlsx", 3),
        lambda xml: xml.replace(b"<sheetPr>", padding + b"<sheetPr>", 1),
    )
    assert path.stat().st_size < 50_000
    monkeypatch.setattr(loading, "MAX_XLSX_UNCOMPRESSED_BYTES", 2**20)  # 1 MiB
    start = time.perf_counter()
    (problem,) = load_error(path).problems
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    assert problem.rule == "an Excel workbook of at most 1.0 MB uncompressed"
    assert "inflates to 3." in problem.found
    assert "the largest part, xl/worksheets/sheet1.xml, to 3.0 MB" in problem.found
    assert problem.fix.startswith("export the sheet to CSV")
    # the same file under the real limit is a valid workbook: the guard refused it
    monkeypatch.setattr(loading, "MAX_XLSX_UNCOMPRESSED_BYTES", 500 * 2**20)
    assert read_table(path).data["session"].tolist() == [1, 2, 3]


def test_a_sheet_declaring_too_many_rows_is_refused(tmp_path, monkeypatch):
    from helpers import loading

    path = _workbook(tmp_path / "rows.xlsx", 10)  # header and 10 rows: dimension A1:E11
    monkeypatch.setattr(loading, "MAX_XLSX_ROWS", 5)
    (problem,) = load_error(path).problems
    assert problem.rule == "a sheet of at most 5 rows (Excel's limit)"
    assert problem.found == "sheet 'Sheet' declares 11 rows (its dimension element)"
    assert problem.fix.startswith("export the sheet to CSV")


def test_a_sheet_without_a_dimension_is_counted_as_it_streams(tmp_path, monkeypatch):
    import re

    from helpers import loading

    path = _rewrite_sheet(
        _workbook(tmp_path / "rows.xlsx", 10), lambda xml: re.sub(rb"<dimension[^>]*/>", b"", xml)
    )
    assert b"<dimension" not in zipfile.ZipFile(path).read("xl/worksheets/sheet1.xml")
    monkeypatch.setattr(loading, "MAX_XLSX_ROWS", 5)
    (problem,) = load_error(path).problems
    assert problem.found == "sheet 'Sheet' holds more than 5 rows"
    monkeypatch.setattr(loading, "MAX_XLSX_ROWS", 11)  # exactly the header and 10 rows: read
    assert len(read_table(path).data) == 10


def test_a_stray_quote_that_joins_the_header_to_the_next_line_is_reported(tmp_path: Path):
    path = write_text(tmp_path, "q.csv", '"c0,c1\n0,"1"\n0,0\n')
    with pytest.raises(StudyDataError) as info:
        read_table(path)
    (problem,) = info.value.problems
    assert problem.rows == [1]
    assert "joining lines 1-2 into the header" in problem.found


# ------------------------------------------------------------- consuming the cells as read

CONSUME_CASES = {
    "long csv (items, covariates, modality)": (GOOD / "long.csv", GOOD / "long.yml"),
    "spss (labelled codes)": (GOOD / "long.sav", GOOD / "sav.yml"),
}


@pytest.mark.parametrize("case", list(CONSUME_CASES))
def test_map_to_canonical_consuming_the_table_gives_the_same_frame(case: str):
    path, config_path = CONSUME_CASES[case]
    config = load_config(config_path)
    expected = map_to_canonical(read_table(path, config.read), config)
    raw = read_table(path, config.read)
    frame = map_to_canonical(raw, config, consume=True)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    # every converted column is gone from the table as read; the session column is read last
    assert set(raw.columns) == {config.columns["session"]}


def test_map_to_canonical_consuming_a_dated_file_gives_the_same_frame(tmp_path: Path):
    text = "therapist,patient,visit,wai,phq\nT,P,29.02.2024,40,5\nT,P,01.02.2024,,20\nT,Q,,30,9\n"
    path = write_text(tmp_path, "d.csv", text)
    config = dated_config(date_format="%d.%m.%Y")
    expected = map_to_canonical(read_table(path, config.read), config)
    raw = read_table(path, config.read)
    frame = map_to_canonical(raw, config, consume=True)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert raw.columns == []


def test_map_to_canonical_consuming_reports_the_same_problems(tmp_path: Path):
    text = "therapist,patient,session,wai,phq\nT,P,1,40,x\nT,P,1.5,abc,5\nT,Q,2,30,9\n"
    path = write_text(tmp_path, "s.csv", text)
    messages = []
    for consume in (False, True):
        with pytest.raises(StudyDataError) as err:
            map_to_canonical(read_table(path), totals_config(), consume=consume)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "'x'" in messages[1] and "'abc'" in messages[1] and "fractional" in messages[1]


def test_map_to_canonical_keeps_a_wide_table_when_asked_to_consume():
    config = load_config(GOOD / "wide.yml")
    raw = read_table(GOOD / "wide.xlsx", config.read)
    before = list(raw.columns)
    map_to_canonical(raw, config, consume=True)
    assert raw.columns == before  # a wide file's long frame is a new table: nothing to drop


def test_session_numbers_become_nullable_integers_exactly(tmp_path: Path):
    text = "therapist,patient,session,wai,phq\nT,P,9007199254740992,40,5\nT,P,,41,6\nT,P,-0,4,5\n"
    frame = read_study(write_text(tmp_path, "s.csv", text), totals_config())
    assert str(frame["session"].dtype) == "Int64"
    assert frame["session"].tolist() == [2**53, pd.NA, 0]


# ------------------------------------------------------------ compact text (category columns)

COMPACT_CASES = {
    "ids with spaces, zero-width characters and leading zeros": (
        "therapist,patient,session,wai,phq\n"
        " T1,007,1,40,5\nT1 ,7,2,41,6\nT1,P\u200b8,1,NA,7\nT2, NA ,1,30,\n",
        {"cleaning": {"id_leading_zeros": "unify"}},
    ),
    "missing codes with spaces, blank and separator-only lines, CRLF, BOM": (
        "\ufefftherapist,patient,session,wai,phq\r\n"
        "T1,P1,1, NA,5\r\n\r\n,,,,\r\nT1,P1,2,-99,6\r\nT1,P2,1,38,NA \r\n",
        {"read": {"missing_codes": ["NA", "-99"]}},
    ),
    "decimal commas and thousands separators": (
        "therapist;patient;session;wai;phq\nT1;P1;1;40,5;1.005\nT1;P1;2;41;6,25\n",
        {"read": {"delimiter": ";", "decimal": ",", "thousands": "."}},
    ),
    "covariates as numbers and as text, modality labels": (
        "therapist,patient,session,mod,age,site,wai,phq\n"
        "T1,P1,1,cbt,34,north,40,5\nT1,P1,2,cbt,34,north,41,6\nT2,P2,1,pd,,south,30,7\n",
        {
            "columns": {
                "therapist_id": "therapist",
                "patient_id": "patient",
                "session": "session",
                "modality": "mod",
            },
            "covariates": {"age": "age", "site": "site"},
            "modality_labels": {"cbt": "CBT", "pd": "psychodynamic"},
        },
    ),
}


@pytest.mark.parametrize("case", list(COMPACT_CASES))
def test_compact_text_maps_to_the_same_frame(tmp_path: Path, case: str):
    text, changes = COMPACT_CASES[case]
    path = write_text(tmp_path, "s.csv", text)
    config = totals_config(**changes)
    plain = read_table(path, config.read)
    compact = read_table(path, config.read, compact_text=True)
    assert all(str(compact.data[c].dtype) == "category" for c in compact.columns)
    assert compact.skipped_lines == plain.skipped_lines
    assert compact.physical_records == plain.physical_records
    for column in plain.columns:  # the same cells, missing where the str column is missing
        assert compact.data[column].tolist() == plain.data[column].tolist() or (
            compact.data[column].isna().tolist() == plain.data[column].isna().tolist()
            and compact.data[column].dropna().tolist() == plain.data[column].dropna().tolist()
        )
    pd.testing.assert_frame_equal(
        map_to_canonical(compact, config), map_to_canonical(plain, config), check_exact=True
    )
    pd.testing.assert_frame_equal(id_report(compact, config), id_report(plain, config))


def test_compact_text_maps_a_dated_file_to_the_same_frame(tmp_path: Path):
    text = "therapist,patient,visit,wai,phq\nT,P,29.02.2024,40,5\nT,P,01.02.2024,,20\nT,Q,,30,9\n"
    path = write_text(tmp_path, "d.csv", text)
    config = dated_config(date_format="%d.%m.%Y")
    compact = read_table(path, config.read, compact_text=True)
    assert str(compact.data["visit"].dtype) == "category"
    pd.testing.assert_frame_equal(
        map_to_canonical(compact, config),
        map_to_canonical(read_table(path, config.read), config),
        check_exact=True,
    )


def test_compact_text_reports_the_same_problems(tmp_path: Path):
    text = "therapist,patient,session,wai,phq\nT,P,1,40,x\nT,P,1.5,abc,5\nT,Q,1e400,30,9\n"
    path = write_text(tmp_path, "s.csv", text)
    messages = []
    for compact in (False, True):
        raw = read_table(path, compact_text=compact)
        with pytest.raises(StudyDataError) as err:
            map_to_canonical(raw, totals_config())
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "'x'" in messages[1] and "'abc'" in messages[1] and "fractional" in messages[1]
    assert "infinite or overflowing" in messages[1]


def test_compact_text_applies_only_to_files_the_plain_reader_takes(tmp_path: Path):
    quoted = write_text(tmp_path, "q.csv", 'therapist,patient,session,wai,phq\nT,"P, 1",1,40,5\n')
    raw = read_table(quoted, compact_text=True)  # quotes: the exact reader, str columns
    assert str(raw.data["patient"].dtype) == "str"
    assert raw.data["patient"].tolist() == ["P, 1"]


def test_spelling_counts_counts_each_id_as_written_in_order_of_first_appearance():
    from helpers.ids import spelling_counts

    cells = [" P1", "P2", None, "P2", "007", " P1", "P2"]
    expected = {" P1": 2, "P2": 3, "007": 1}  # missing cells left out
    assert spelling_counts(pd.Series(cells, dtype="str")) == expected
    assert spelling_counts(pd.Series(cells, dtype="str").astype("category")) == expected
    mixed = pd.Series([7.0, "7", None, 3, 7.0], dtype=object)  # Excel cells: numbers and text
    assert spelling_counts(mixed) == {"7": 3, "3": 1}
    assert spelling_counts(pd.Series([None, None], dtype="str")) == {}
