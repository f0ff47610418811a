"""Write the small input fixtures used by the loading/config/reshape tests.

Run from the project root (the output is committed; re-running it rewrites
the same bytes)::

    .venv/bin/python tests/data/make_fixtures.py

``good/`` holds one tiny study in three equivalent forms -- a long CSV, a
wide Excel workbook and a long SPSS file -- with a config for each; all three
map to the same canonical frame.  ``bad/`` holds one file per input mistake
(see ``bad/README.md``).  Values come from a seeded generator; the Excel and
SPSS writers' timestamps are replaced by fixed ones so the files are
byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pyreadstat

HERE = Path(__file__).resolve().parent
SEED = 20240501
N_WAI = 12
N_PHQ = 9
FIXED_ZIP_TIME = (2000, 1, 1, 0, 0, 0)
FIXED_XML_TIME = "2000-01-01T00:00:00Z"

# patient, therapist, modality, age, gender, sessions (0 = intake)
PATIENTS = [
    ("P01", 101, "CBT", 34, "F", [0, 1, 2, 3]),
    ("P02", 101, "CBT", 51, "M", [0, 1, 2]),
    ("P03", 102, "Psychodynamic", 27, "F", [0, 1, 2, 3]),
]
MODALITY_CODES = {"CBT": 1, "Psychodynamic": 2, "Humanistic": 3}
GENDER_CODES = {"F": 1, "M": 2}
WAI = [f"wai_{i}" for i in range(1, N_WAI + 1)]
PHQ = [f"phq_{i}" for i in range(1, N_PHQ + 1)]
LONG_COLUMNS = ["therapist", "patient", "session", "modality", "age", "gender", *WAI, "twai", *PHQ]


def study_rows() -> list[dict]:
    """The tiny study, one dict per patient-session; ``None`` = missing."""
    rng = np.random.default_rng(SEED)
    rows = []
    for patient, therapist, modality, age, gender, sessions in PATIENTS:
        for session in sessions:
            row = {
                "therapist": therapist,
                "patient": patient,
                "session": session,
                "modality": modality,
                "age": age,
                "gender": gender,
            }
            wai = rng.integers(1, 6, size=N_WAI).tolist() if session > 0 else [None] * N_WAI
            row.update(zip(WAI, wai, strict=True))
            row["twai"] = int(rng.integers(12, 61)) if session > 0 else None
            row.update(zip(PHQ, rng.integers(0, 4, size=N_PHQ).tolist(), strict=True))
            rows.append(row)
    # One missing item, and one out-of-range item (kept by loading; cleaning logs it).
    rows[5]["wai_5"] = None  # P02, session 1
    rows[10]["phq_2"] = 4  # P03, session 3 (PHQ-9 items are 0-3)
    return rows


def write_csv(path: Path, rows: list[list[str]], delimiter: str = ",", encoding="utf-8") -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))


def _fixed_xlsx(path: Path) -> None:
    """Rewrite an .xlsx with fixed zip and document timestamps (reproducible bytes)."""
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info.filename)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for name, content in entries:
            if name == "docProps/core.xml":
                text = content.decode("utf-8")
                text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", FIXED_XML_TIME, text)
                content = text.encode("utf-8")
            info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, content)


def write_xlsx(path: Path, sheets: dict[str, list[list]]) -> None:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, grid in sheets.items():
        sheet = workbook.create_sheet(title)
        for r, row in enumerate(grid, start=1):
            for c, value in enumerate(row, start=1):
                if value is not None:
                    sheet.cell(row=r, column=c, value=value)
    workbook.save(path)
    _fixed_xlsx(path)


def _fixed_sav(path: Path) -> None:
    """Overwrite the creation date and time in an SPSS header with fixed ones."""
    content = bytearray(path.read_bytes())
    assert content[:4] == b"$FL2"
    content[92:109] = b"01 Jan 0000:00:00"
    path.write_bytes(bytes(content))


def _text(value) -> str:
    return "" if value is None else str(value)


def write_good(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = study_rows()

    # Long CSV: intake rows code the missing alliance cells three different ways.
    missing_styles = ["NA", "", "."]
    grid = [LONG_COLUMNS]
    intake = 0
    for row in rows:
        cells = []
        for column in LONG_COLUMNS:
            value = row[column]
            if value is None and row["session"] == 0:
                cells.append(missing_styles[intake % 3])
            else:
                cells.append(_text(value))
        intake += row["session"] == 0
        grid.append(cells)
    write_csv(folder / "long.csv", grid)

    # Wide Excel: one row per patient; per-session columns <var>_sNN; data on sheet 2.
    all_sessions = sorted({s for *_, sessions in PATIENTS for s in sessions})
    per_session = [
        (var, s)
        for s in all_sessions
        for var in [*WAI, "twai", *PHQ]
        if not (s == 0 and (var in WAI or var == "twai"))
    ]
    header = ["therapist", "patient", "modality", "age", "gender"] + [
        f"{var}_s{s:02d}" for var, s in per_session
    ]
    grid = [header]
    for patient, therapist, modality, age, gender, _ in PATIENTS:
        mine = {r["session"]: r for r in rows if r["patient"] == patient}
        line = [therapist, patient, modality, age, gender]
        line += [mine[s][var] if s in mine else None for var, s in per_session]
        grid.append(line)
    notes = [["Tiny wide test study; the data are on the sheet 'sessions'."]]
    write_xlsx(folder / "wide.xlsx", {"notes": notes, "sessions": grid})

    # Long SPSS: modality and gender as labelled numeric codes.
    frame = pd.DataFrame(rows, columns=LONG_COLUMNS)
    frame["modality"] = frame["modality"].map(MODALITY_CODES).astype("float64")
    frame["gender"] = frame["gender"].map(GENDER_CODES).astype("float64")
    for column in LONG_COLUMNS:
        if column != "patient":
            frame[column] = frame[column].astype("float64")
    labels = {c: None for c in LONG_COLUMNS}
    labels.update({c: f"WAI-SR item {i}" for i, c in enumerate(WAI, start=1)})
    labels.update({c: f"PHQ-9 item {i}" for i, c in enumerate(PHQ, start=1)})
    labels["twai"] = "Therapist WAI-SR total"
    pyreadstat.write_sav(
        frame,
        folder / "long.sav",
        column_labels=labels,
        variable_value_labels={
            "modality": {float(v): k for k, v in MODALITY_CODES.items()},
            "gender": {float(v): k for k, v in GENDER_CODES.items()},
        },
    )
    _fixed_sav(folder / "long.sav")


def write_bad(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    header = ["therapist", "patient", "session", "wai", "phq"]
    ok = [["T1", "P01", "1", "40", "12"], ["T1", "P01", "2", "44", "10"]]

    (folder / "empty.csv").write_bytes(b"")
    write_csv(folder / "header_only.csv", [header])
    write_csv(folder / "semicolon.csv", [header, *ok], delimiter=";")
    write_csv(
        folder / "latin1.csv",
        [[*header, "site"], [*ok[0], "Zürich"], [*ok[1], "Münster"]],
        encoding="latin-1",
    )
    write_csv(folder / "misnamed_column.csv", [["therapist", "pateint", *header[2:]], *ok])
    write_csv(
        folder / "non_numeric.csv",
        [header, ok[0], ["T1", "P01", "2", "abc", "3,5"], ["T1", "P01", "3", "41", "9"]],
    )
    write_csv(
        folder / "fractional_session.csv",
        [header, ok[0], ["T1", "P01", "2.5", "44", "10"], ["T1", "P01", "3", "41", "9"]],
    )
    # An unquoted decimal comma splits a cell into two fields.
    (folder / "too_many_fields.csv").write_bytes(
        b"therapist,patient,session,wai,phq\nT1,P01,1,40,12\nT1,P01,2,44,10,5\n"
    )
    write_csv(
        folder / "wide_bad_pattern.csv",
        [
            ["therapist", "patient", "wai_t1", "wai_t2", "phq_t1", "phq_t2"],
            ["T1", "P01", "40", "44", "12", "10"],
        ],
    )
    title = [["Alliance study export"], []]
    write_xlsx(folder / "header_row3.xlsx", {"export": [*title, header, *ok]})
    (folder / "old_excel.xls").write_bytes(b"\xd0\xcf\x11\xe0 not a real workbook")
    write_unreadable_text(folder, header)


def _study_lines(n: int) -> list[str]:
    """``n`` well-formed data lines of the bad-file study (sessions 1..n of P01)."""
    return [f"T1,P01,{s},{38 + s % 7},{14 - s % 5}" for s in range(1, n + 1)]


def write_unreadable_text(folder: Path, header: list[str]) -> None:
    """Text files whose lines would be lost, padded or misread by a lenient reader."""
    top = ",".join(header)
    lines = [top, *_study_lines(14)]
    # A stray quote opens a cell on line 12 (of 15) and is never closed.
    end = [*lines[:11], 'T1,P01,11,"40,12', *lines[12:]]
    (folder / "stray_quote_end.csv").write_text("\n".join(end) + "\n", encoding="utf-8")
    # A stray quote on line 4 of 15: without the check the other 11 rows vanish.
    middle = [*lines[:3], 'T1,P01,3,"41,9', *lines[4:]]
    (folder / "stray_quote_middle.csv").write_text("\n".join(middle) + "\n", encoding="utf-8")
    # Lines 3 and 5 lack fields (a lost phq cell; a lost separator merging two cells).
    short = [top, *_study_lines(4)]
    short[2], short[4] = "T1,P01,2,44", "T1,P01,4 41,9"
    (folder / "short_row.csv").write_text("\n".join(short) + "\n", encoding="utf-8")
    # The export stopped in the middle of line 4 (no line break at the end).
    (folder / "cut_off.csv").write_text("\n".join(lines[:3]) + "\nT1,P01,3,4", encoding="utf-8")
    rows = _study_lines(3)
    separators = [top, rows[0], ",,,,", rows[1], ",,,,", ",,,,", rows[2]]
    (folder / "separator_rows.csv").write_text("\n".join(separators) + "\n", encoding="utf-8")
    blank = [top, rows[0], "", rows[1], "   ", "", rows[2], ""]
    (folder / "blank_lines.csv").write_text("\n".join(blank) + "\n", encoding="utf-8")
    study = ("\n".join(lines[:4]) + "\n").encode("utf-8")
    (folder / "gzip.csv").write_bytes(gzip.compress(study, mtime=0))
    table = pd.DataFrame([r.split(",") for r in lines[1:4]], columns=header)
    table.to_parquet(folder / "parquet_named.csv", index=False)
    (folder / "utf16_no_bom.csv").write_bytes(study.decode("utf-8").encode("utf-16-le"))
    noise = np.random.default_rng(SEED).integers(0, 256, size=512, dtype=np.uint8)
    (folder / "random_bytes.csv").write_bytes(noise.tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder holding good/ and bad/")
    args = parser.parse_args()
    write_good(args.out / "good")
    write_bad(args.out / "bad")


if __name__ == "__main__":
    main()
