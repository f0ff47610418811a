"""Write the demo study as an SPSS file (long) and a wide Excel workbook, with their configs.

Run from the project root (the output is committed; re-running it rewrites
the same files, which ``tests/test_demo_exports.py`` checks)::

    .venv/bin/python tests/data/demo_exports/make_demo_exports.py

Both files hold the committed demo study ``data/raw/demo/sessions.csv`` under
other column names, so that the cleaning step must give the same processed
data from all three (see ``README.md`` in this folder):

``demo.sav`` + ``demo.yml``
    Every row of the CSV, faults included, in the same order (SPSS case
    number = CSV line number - 1, since the CSV's header is line 1).
    Modality is a labelled numeric code; missing cells are system-missing
    (numbers) or empty strings (text).
``demo_wide.xlsx`` + ``demo_wide.yml``
    One row per patient on the sheet ``export``, two title lines above the
    header (row 3); per-session columns ``<variable>_t<session>``.  A wide
    file cannot hold a repeated session or a patient under two therapists,
    so it is built from the CSV rows that the cleaning step keeps: the rows
    of the processed sessions (their ``source_row``) and the intake rows of
    the exclusion ledger.  Out-of-range values and missing cells (with their
    missing codes) are copied as they are.

The SPSS header's creation time and the workbook's timestamps are pinned
with the helpers of ``tests/data/make_fixtures.py``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyreadstat

from helpers.config import load_config
from helpers.paths import PROJECT_ROOT
from helpers.pipeline import CleaningResult, run_cleaning

HERE = Path(__file__).resolve().parent
DEMO = PROJECT_ROOT / "data" / "raw" / "demo"
DEMO_CSV = DEMO / "sessions.csv"
DEMO_CONFIG = DEMO / "study.yml"

SAV_NAME = "demo.sav"
SAV_CONFIG_NAME = "demo.yml"
WIDE_NAME = "demo_wide.xlsx"
WIDE_CONFIG_NAME = "demo_wide.yml"
WIDE_SHEET = "export"
WIDE_HEADER_ROW = 3

N_WAI = 12
N_PHQ = 9
LEADING_COLUMNS = ("therapist", "patient", "session", "modality", "age", "gender")
PATIENT_LEVEL = ("therapist", "modality", "age", "gender")
PER_SESSION = (
    *(f"wai_{i}" for i in range(1, N_WAI + 1)),
    "therapist_wai_total",
    *(f"phq_{i}" for i in range(1, N_PHQ + 1)),
)
TEXT_COLUMNS = ("therapist", "patient", "gender")

#: Modality label -> numeric code stored in the SPSS file.
MODALITY_CODES = {"CBT": 1, "Psychodynamic": 2, "Humanistic": 3}

#: CSV column -> (SPSS variable, SPSS variable label).
SAV_COLUMNS: dict[str, tuple[str, str]] = {
    "therapist": ("TherapistCode", "Therapist code"),
    "patient": ("ClientCode", "Client code"),
    "session": ("SessionNumber", "Session number (0 = intake assessment)"),
    "modality": ("TherapyType", "Therapy type of the therapist"),
    "age": ("AgeYears", "Age in years"),
    "gender": ("Sex", "Gender (F, M, other)"),
    **{f"wai_{i}": (f"WAISR{i:02d}", f"WAI-SR item {i}, client-rated") for i in range(1, 13)},
    "therapist_wai_total": ("WAIT_Total", "WAI-SR total, therapist-rated (12-60)"),
    **{f"phq_{i}": (f"PHQ{i:02d}", f"PHQ-9 item {i}") for i in range(1, 10)},
}

#: CSV column -> wide column: patient-level names, or the stem of per-session names.
WIDE_PATIENT_COLUMNS = {
    "patient": "client_id",
    "therapist": "clinician",
    "modality": "programme",
    "age": "age_at_intake",
    "gender": "sex",
}
WIDE_STEMS = {
    **{f"wai_{i}": f"wai{i}" for i in range(1, N_WAI + 1)},
    "therapist_wai_total": "twai",
    **{f"phq_{i}": f"phq9_{i}" for i in range(1, N_PHQ + 1)},
}
WIDE_TITLE = [
    ["Demo clinic export (SIMULATED data, no real persons): one row per client"],
    ["Per-session columns are named <variable>_t<session>; t00 = intake assessment"],
]

SAV_CONFIG = """\
# Config for demo.sav: the demo study (data/raw/demo/sessions.csv) as a long
# SPSS file under other variable names.  TherapyType is a numeric code with
# value labels (1 = CBT, 2 = Psychodynamic, 3 = Humanistic); missing numbers
# are system-missing and missing text is an empty string.
# Written by make_demo_exports.py (do not edit by hand).
study: demo_sav

read:
  format: sav
  missing_codes: [""]

layout: long

columns:
  therapist_id: TherapistCode
  patient_id: ClientCode
  session: SessionNumber
  modality: TherapyType

covariates:
  age: AgeYears
  gender: Sex

modality_labels:
  CBT: CBT
  Psychodynamic: psychodynamic
  Humanistic: humanistic

alliance:
  client:
    instrument: wai_sr
    item_pattern: "WAISR{i:02d}"
  therapist:
    instrument: wai_sr
    total: WAIT_Total
primary_alliance: client

outcome:
  instrument: phq9
  item_pattern: "PHQ{i:02d}"
  intake_session: 0

cleaning:
  out_of_range: set_missing
  conflicting_duplicates: exclude
  multiple_therapists: keep_majority
  min_sessions_within: 3
  early_session: 3
"""

WIDE_CONFIG = f"""\
# Config for demo_wide.xlsx: the demo study (data/raw/demo/sessions.csv) as a
# wide workbook, one row per client, on the sheet "{WIDE_SHEET}" with two title
# lines above the header.  Per-session columns are <variable>_t<session>, e.g.
# wai3_t07 (WAI-SR item 3 at session 7) or phq9_1_t00 (PHQ-9 item 1 at intake).
# Written by make_demo_exports.py (do not edit by hand).
study: demo_wide

read:
  format: xlsx
  sheet: {WIDE_SHEET}
  header_row: {WIDE_HEADER_ROW}
  missing_codes: ["", "NA", "."]

layout: wide

wide:
  session_pattern: '^(?P<var>.+)_t(?P<session>\\d+)$'

columns:
  therapist_id: clinician
  patient_id: client_id
  modality: programme

covariates:
  age: age_at_intake
  gender: sex

modality_labels:
  CBT: CBT
  Psychodynamic: psychodynamic
  Humanistic: humanistic

alliance:
  client:
    instrument: wai_sr
    item_pattern: "wai{{i}}"
  therapist:
    instrument: wai_sr
    total: twai
primary_alliance: client

outcome:
  instrument: phq9
  item_pattern: "phq9_{{i}}"
  intake_session: 0

cleaning:
  out_of_range: set_missing
  conflicting_duplicates: exclude
  multiple_therapists: keep_majority
  min_sessions_within: 3
  early_session: 3
"""


def _load_make_fixtures():
    """Import ``tests/data/make_fixtures.py`` (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("make_fixtures", HERE.parent / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_demo_csv(path: Path = DEMO_CSV) -> tuple[list[str], dict[int, list[str]]]:
    """The CSV's header and its data rows as text, keyed by line number (header = line 1).

    Parameters
    ----------
    path : pathlib.Path
        The demo study's CSV.

    Returns
    -------
    header : list of str
        The column names.
    rows : dict of int to list of str
        Line number -> the row's cells, exactly as written.
    """
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    header = next(reader)
    rows: dict[int, list[str]] = {}
    for cells in reader:
        if len(cells) != len(header):
            raise ValueError(f"{path}: line {reader.line_num} has {len(cells)} fields")
        rows[reader.line_num] = cells
    if header != [*LEADING_COLUMNS, *PER_SESSION]:
        raise ValueError(f"{path}: unexpected columns {header}")
    return header, rows


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def sav_frame(
    header: list[str], rows: dict[int, list[str]], missing_codes: tuple[str, ...]
) -> pd.DataFrame:
    """The CSV rows, in file order, as the SPSS variables (before renaming).

    Text columns keep their text (a missing code becomes ``""``); modality
    becomes its numeric code; every other column becomes a float (a missing
    code becomes NaN, written as system-missing).
    """
    records = [rows[line] for line in sorted(rows)]
    columns: dict[str, Any] = {}
    for j, name in enumerate(header):
        cells = [r[j].strip() for r in records]
        if name in TEXT_COLUMNS:
            columns[name] = pd.Series(
                ["" if c in missing_codes else c for c in cells], dtype=object
            )
        elif name == "modality":
            columns[name] = np.asarray([MODALITY_CODES[c] for c in cells], dtype="float64")
        else:
            columns[name] = np.asarray(
                [np.nan if c in missing_codes else float(c) for c in cells], dtype="float64"
            )
    return pd.DataFrame(columns)


def write_sav(
    path: Path, header: list[str], rows: dict[int, list[str]], missing_codes: tuple[str, ...]
) -> None:
    """Write every CSV row to an SPSS file under the names of :data:`SAV_COLUMNS`."""
    frame = sav_frame(header, rows, missing_codes)
    frame = frame.rename(columns={csv_name: sav for csv_name, (sav, _) in SAV_COLUMNS.items()})
    numeric = [sav for csv_name, (sav, _) in SAV_COLUMNS.items() if csv_name not in TEXT_COLUMNS]
    pyreadstat.write_sav(
        frame,
        path,
        file_label="Demo study (SIMULATED data)",
        row_compress=True,
        column_labels={sav: label for sav, label in SAV_COLUMNS.values()},
        variable_value_labels={
            SAV_COLUMNS["modality"][0]: {float(c): label for label, c in MODALITY_CODES.items()}
        },
        variable_format={name: "F3.0" for name in numeric},
        variable_measure={
            SAV_COLUMNS["modality"][0]: "nominal",
            SAV_COLUMNS["gender"][0]: "nominal",
        },
    )
    _load_make_fixtures()._fixed_sav(path)


def wide_source_lines(csv_result: CleaningResult) -> list[int]:
    """The CSV lines that go into the wide file: kept sessions and intake records.

    Parameters
    ----------
    csv_result : CleaningResult
        The cleaning step's result for the demo CSV.

    Returns
    -------
    list of int
        CSV line numbers (header = line 1), sorted.
    """
    ledger = csv_result.ledger
    intake = ledger.loc[ledger["fate"] == "intake", "source_row"]
    lines = {int(x) for x in csv_result.sessions["source_row"]} | {int(x) for x in intake}
    return sorted(lines)


def _wide_cell(text: str, missing_codes: tuple[str, ...]) -> Any:
    """A CSV cell as an Excel cell: numbers as numbers, "" as an empty cell, codes as text."""
    text = text.strip()
    if text == "":
        return None
    if text in missing_codes:
        return text
    return _number(text)


def _patient_cell(column: str, text: str) -> Any:
    """A patient-level CSV cell as an Excel cell: age as a number, the others as text."""
    if text == "":
        return None
    return _number(text) if column == "age" else text


def wide_grid(
    header: list[str], rows: dict[int, list[str]], lines: list[int], missing_codes: tuple[str, ...]
) -> list[list[Any]]:
    """One row per patient (header first) built from the given CSV lines.

    A per-session column exists when at least one selected row at that
    session has a value (not a missing code) for the variable.
    """
    position = {name: j for j, name in enumerate(header)}
    patients: dict[str, dict[str, Any]] = {}
    values: dict[tuple[str, str, int], Any] = {}
    present: set[tuple[str, int]] = set()
    for line in lines:
        cells = rows[line]
        patient = cells[position["patient"]].strip()
        session = int(cells[position["session"]])
        level = {c: cells[position[c]].strip() for c in PATIENT_LEVEL}
        if patients.setdefault(patient, level) != level:
            raise ValueError(f"patient {patient}: line {line} has other patient-level values")
        for var in PER_SESSION:
            text = cells[position[var]]
            key = (patient, var, session)
            if key in values:
                raise ValueError(f"patient {patient}: session {session} twice (line {line})")
            values[key] = _wide_cell(text, missing_codes)
            if text.strip() not in missing_codes:
                present.add((var, session))
    sessions = sorted({s for _, s in present})
    per_session = [(v, s) for s in sessions for v in PER_SESSION if (v, s) in present]
    grid: list[list[Any]] = [
        [*WIDE_PATIENT_COLUMNS.values(), *(f"{WIDE_STEMS[v]}_t{s:02d}" for v, s in per_session)]
    ]
    for patient, level in patients.items():
        line_cells = [patient] + [_patient_cell(c, level[c]) for c in PATIENT_LEVEL]
        line_cells += [values.get((patient, v, s)) for v, s in per_session]
        grid.append(line_cells)
    return grid


def write_exports(out_dir: Path) -> dict[str, Path]:
    """Write the SPSS file, the wide workbook and their configs into ``out_dir``.

    Parameters
    ----------
    out_dir : pathlib.Path
        The folder to write into (created if needed).

    Returns
    -------
    dict of str to pathlib.Path
        File name -> path of every file written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    missing_codes = tuple(load_config(DEMO_CONFIG).read.missing_codes)
    header, rows = read_demo_csv()
    paths = {name: out_dir / name for name in (SAV_NAME, SAV_CONFIG_NAME)}
    paths.update({name: out_dir / name for name in (WIDE_NAME, WIDE_CONFIG_NAME)})

    write_sav(paths[SAV_NAME], header, rows, missing_codes)
    paths[SAV_CONFIG_NAME].write_text(SAV_CONFIG, encoding="utf-8", newline="\n")

    lines = wide_source_lines(run_cleaning(DEMO_CSV, DEMO_CONFIG))
    grid = wide_grid(header, rows, lines, missing_codes)
    _load_make_fixtures().write_xlsx(paths[WIDE_NAME], {WIDE_SHEET: [*WIDE_TITLE, *grid]})
    paths[WIDE_CONFIG_NAME].write_text(WIDE_CONFIG, encoding="utf-8", newline="\n")
    return paths


def main() -> None:
    """Command line: ``make_demo_exports.py [--out FOLDER]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into")
    args = parser.parse_args()
    write_exports(args.out)


if __name__ == "__main__":
    main()
