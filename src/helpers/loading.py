"""Read a study's data file and map it onto the canonical long schema.

Two steps, kept apart so each can be inspected:

1. :func:`read_table` reads CSV/TSV, Excel (.xlsx), SPSS (.sav), Stata (.dta)
   or Parquet into a :class:`RawTable`: every value as it was read (CSV cells
   as text), the configured missing codes turned into missing values, and a
   ``source_row`` column giving each record's row number as the user sees it
   in their file (see :mod:`helpers.validation`).
2. :func:`map_to_canonical` uses the study config to rename, reshape (wide
   files) and type the columns: identifiers become stripped text, scores
   become numbers (text cells read with the config's ``read.decimal`` and
   ``read.thousands`` separators).  Values that cannot be numbers are reported, never
   silently dropped; values that are numbers but implausible (session 0,
   out-of-range items, repeated sessions) are kept for the cleaning step,
   which logs what it does with them.

The raw file is only ever opened for reading.  Every mistake is raised as a
:class:`~helpers.validation.StudyDataError` naming the file, column and rows.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import functools
import io
import math
import numbers
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers import schema, textscan
from helpers.config import (
    INSTRUMENT_ITEM_COUNTS,
    SUPPORTED_FORMATS,
    ReadConfig,
    StudyConfig,
)
from helpers.ids import id_report as ids_report
from helpers.ids import map_distinct, normalise_ids
from helpers.reshape import match_session_columns, wide_to_long
from helpers.session_dates import (
    number_sessions_by_date,
    parse_session_dates,
    suggest_date_formats,
)
from helpers.validation import Problem, StudyDataError, display_path, release_freed_memory

#: File extension -> format read by :func:`read_table`.
EXTENSION_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".sav": "sav",
    ".zsav": "sav",
    ".dta": "dta",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
# Number formats tried, in this order, when a cell is not a number under the
# configured one: (decimal, thousands) -> the read settings suggested.
_OTHER_NUMBER_FORMATS: tuple[tuple[str, str | None], ...] = (
    (",", None),
    (",", "."),
    (".", None),
    (".", ","),
    (",", " "),
    (".", " "),
    (",", "'"),
    (".", "'"),
)
# A space as thousands separator also matches the no-break spaces spreadsheets write.
_SPACES = " \u00a0\u202f"
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_DELIMITER_SETTING = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
_HEADER_SCAN_ROWS = 30
# Working columns of a dated long file (names no file column is expected to have).
_PARSED_DATE = "<session date, parsed>"
_DATED_SESSION = "<session number, from the dates>"


@dataclass
class RawTable:
    """A data file as read, before any renaming or typing.

    Attributes
    ----------
    data : pandas.DataFrame
        One row per record, every value as read (CSV/TSV cells as text:
        ``str`` columns, or ``category`` columns of text when read with
        ``compact_text``; Excel/SPSS/Stata/Parquet cells in their stored types; SPSS/Stata
        labelled variables hold their numeric codes), the configured missing
        codes replaced by missing values, fully empty rows dropped (for CSV/TSV
        files they are listed in ``skipped_lines``), plus the ``source_row``
        column (row numbers as in :mod:`helpers.validation`).
    path : pathlib.Path
        The file read.
    format : str
        One of ``csv``, ``tsv``, ``xlsx``, ``sav``, ``dta``, ``parquet``.
    value_labels : dict
        Column -> {code: label} (SPSS/Stata value labels; empty otherwise).
    variable_labels : dict
        Column -> descriptive label (SPSS/Stata; empty otherwise).
    header_row : int or None
        Row holding the column names (CSV/TSV/Excel).
    sheet : str or None
        The Excel sheet read.
    skipped_lines : dict
        CSV/TSV: line number -> why the record starting there holds no data
        row ("blank line", "only separators", or above the header row).
        Together with the header and ``data``'s rows these are all of
        ``physical_records``.
    physical_records : int or None
        CSV/TSV: the number of records in the file (line breaks outside
        quoted cells), counted independently of the parser that read them.
    """

    data: pd.DataFrame
    path: Path
    format: str
    value_labels: dict[str, dict[Any, str]] = field(default_factory=dict)
    variable_labels: dict[str, str] = field(default_factory=dict)
    header_row: int | None = None
    sheet: str | None = None
    skipped_lines: dict[int, str] = field(default_factory=dict)
    physical_records: int | None = None

    @property
    def notes(self) -> list[str]:
        """Sentences on the lines read but not kept as data rows, one per reason.

        Examples
        --------
        >>> table = RawTable(pd.DataFrame(), Path("s.csv"), "csv",
        ...                  skipped_lines={4: "blank line", 9: "blank line"})
        >>> table.notes
        ['2 lines skipped (blank line): lines 4, 9']
        """
        by_reason: dict[str, list[int]] = {}
        for line, reason in self.skipped_lines.items():
            by_reason.setdefault(reason, []).append(line)
        return [
            f"{len(lines)} {'line' if len(lines) == 1 else 'lines'} skipped ({reason}): "
            f"{'line' if len(lines) == 1 else 'lines'} {', '.join(map(str, lines[:20]))}"
            + (", …" if len(lines) > 20 else "")
            for reason, lines in by_reason.items()
        ]

    @property
    def name(self) -> str:
        """The file's name as written into reports (relative to the project root)."""
        return str(display_path(self.path))

    @property
    def columns(self) -> list[str]:
        """The file's own column names (without ``source_row``)."""
        return [c for c in self.data.columns if c != schema.SOURCE_ROW]


# ----------------------------------------------------------------------------- reading


def _fail(path: Path, rule: str, found: str, fix: str, **kw: Any) -> StudyDataError:
    return StudyDataError(
        Problem(file=path, column=kw.pop("column", None), rule=rule, found=found, fix=fix, **kw),
        f"Could not read {display_path(path)}.",
    )


def _detect_format(path: Path, read_config: ReadConfig) -> str:
    if read_config.format is not None:
        return read_config.format
    suffix = path.suffix.lower()
    if suffix in EXTENSION_FORMATS:
        return EXTENSION_FORMATS[suffix]
    extensions = ", ".join(sorted(EXTENSION_FORMATS))
    if suffix in (".xls", ".ods", ".numbers"):
        fix = "open the file in your spreadsheet program and save it as .xlsx (or export to .csv)"
    elif suffix == ".por":
        fix = "open it in SPSS and save it as .sav"
    else:
        fix = (
            "export the data to one of the supported formats, or, if it is one of them "
            f"under another name, set read.format ({', '.join(SUPPORTED_FORMATS)})"
        )
    raise _fail(
        path,
        f"a data file ending in one of {extensions}",
        f"a file ending in '{suffix or '(no extension)'}'",
        fix,
    )


def read_table(
    path: str | Path,
    read_config: ReadConfig | StudyConfig | None = None,
    *,
    compact_text: bool = False,
) -> RawTable:
    """Read a data file as it is, keeping row numbers and labels.

    Parameters
    ----------
    path : str or pathlib.Path
        CSV/TSV, Excel (.xlsx), SPSS (.sav), Stata (.dta) or Parquet file.
    read_config : ReadConfig or StudyConfig, optional
        The config's ``read`` section (a whole :class:`StudyConfig` may be
        passed); defaults suit a UTF-8 comma-separated file with the header
        on the first row.
    compact_text : bool, default False
        Give the text columns of a regular CSV/TSV file (no quote characters,
        every line a record) as ``category`` columns: each distinct cell text
        is stored once, and each cell as a small integer code.  The cells are
        the same; a million-row file's text then takes about a fifth of the
        memory of ``str`` columns (Arrow keeps an 8-byte offset per ``str``
        cell).  :func:`map_to_canonical` reads both alike.  Other files are
        read as usual (``str``).

    Returns
    -------
    RawTable

    Raises
    ------
    StudyDataError
        For a missing or empty file, a header with no data rows, the wrong
        delimiter, undecodable bytes (with the byte offset and line), a
        header row that is empty, duplicated column names, rows with more
        or fewer fields than the header (never padded), a quote that is never
        closed (named at the line it opens on), records joined by a stray
        quote, a file cut off in the middle of its last row, a binary file
        under a text name (gzip, zip/Excel, Parquet, SPSS, old Excel, UTF-16
        without a byte-order mark, other binary data), an Excel workbook that
        inflates beyond :data:`MAX_XLSX_UNCOMPRESSED_BYTES` or a sheet of more
        than :data:`MAX_XLSX_ROWS` rows, or an unsupported file type.  CSV/TSV
        lines that hold no data (blank, separators only, above the header) are
        listed in :attr:`RawTable.skipped_lines`.

    Examples
    --------
    >>> from helpers.paths import PROJECT_ROOT
    >>> raw = read_table(PROJECT_ROOT / "tests" / "data" / "good" / "long.csv")
    >>> raw.format, int(raw.data["source_row"].iloc[0])
    ('csv', 2)
    """
    if isinstance(read_config, StudyConfig):
        read_config = read_config.read
    read_config = read_config or ReadConfig()
    path = Path(path)
    if not path.exists():
        nearby = []
        if path.parent.is_dir():
            names = [p.name for p in path.parent.iterdir() if p.is_file()]
            nearby = difflib.get_close_matches(path.name, names, n=3, cutoff=0.5)
        raise _fail(
            path,
            "an existing data file",
            "no such file",
            (f"did you mean {', '.join(repr(n) for n in nearby)}? " if nearby else "")
            + "check the path (relative paths start from the folder you run the command in)",
        )
    if path.is_dir():
        raise _fail(path, "a data file", "a folder", "give the path of the file itself")
    if not path.is_file():
        raise _fail(
            path,
            "a regular data file",
            _special_file_kind(path),
            "give the path of the exported data file (a pipe or device is never read)",
        )
    fmt = _detect_format(path, read_config)
    try:
        return _read_format(path, fmt, read_config, compact_text)
    except OSError as exc:
        raise _fail(
            path,
            "a data file you may read",
            exc.strerror or type(exc).__name__,
            "check the file's permissions (you need read access), or copy it somewhere "
            "you may read",
        ) from None


def _special_file_kind(path: Path) -> str:
    """What an existing path that is neither a folder nor a regular file is."""
    if path.is_fifo():
        return "a named pipe (FIFO)"
    if path.is_char_device() or path.is_block_device():
        return "a device such as /dev/zero"
    return "a special file (not a regular file)"


def _read_format(path: Path, fmt: str, read_config: ReadConfig, compact_text: bool) -> RawTable:
    """Read ``path`` with the reader of ``fmt`` (``compact_text``: see :func:`read_table`)."""
    if fmt in ("csv", "tsv"):
        return _read_text(path, fmt, read_config, compact_text)
    if fmt == "xlsx":
        return _read_excel(path, read_config)
    if fmt in ("sav", "dta"):
        return _read_readstat(path, fmt, read_config)
    return _read_parquet(path, read_config)


def _check_no_source_row(path: Path, names: list[str]) -> None:
    if schema.SOURCE_ROW in names:
        raise _fail(
            path,
            f"no column named '{schema.SOURCE_ROW}' (the suite adds it to trace rows)",
            f"a column named '{schema.SOURCE_ROW}'",
            "rename that column in your file",
            column=schema.SOURCE_ROW,
        )


def _name_columns(path: Path, cells: list[Any], label) -> list[str]:
    """Column names from header cells: stripped text; empty cells named ``unnamed_<col>``."""
    names = []
    for position, cell in enumerate(cells, start=1):
        text = _cell_text(cell)
        names.append(text if text else f"unnamed_{label(position)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise _fail(
            path,
            "each column name once in the header",
            f"repeated column names: {', '.join(repr(n) for n in repeated)}",
            "rename the repeated columns so that each name is unique",
        )
    _check_no_source_row(path, names)
    return names


def _cell_text(value: Any) -> str:
    """A cell as text: stripped; whole-number floats without '.0'; missing as ''."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    return str(value).strip()


def _empty_header_fix(rows: list[tuple[int, list[Any]]], header_row: int) -> str:
    later = [
        number for number, cells in rows if number > header_row and any(map(_cell_text, cells))
    ]
    if later:
        return f"the first non-empty row is {later[0]}: set read.header_row: {later[0]}"
    return "check that this is the right file and sheet"


# Signatures of binary formats that are sometimes given a .csv/.txt name:
# leading bytes -> (what the file is, how to read it).
_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (
        b"\x1f\x8b",
        "a gzip-compressed file (it starts with the gzip signature 1F 8B)",
        "decompress it first (e.g. gunzip, or 7-Zip on Windows) and read the file inside",
    ),
    (
        b"PAR1",
        "a Parquet file (it starts with 'PAR1')",
        "set read.format: parquet under read: in the config, or rename it to .parquet",
    ),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "an old-format Office file (probably an Excel 97-2003 .xls workbook)",
        "open it in your spreadsheet program and save it as .xlsx (or export it to CSV)",
    ),
    (
        b"$FL2",
        "an SPSS data file (.sav)",
        "set read.format: sav under read: in the config, or rename it to .sav",
    ),
    (
        b"$FL3",
        "an SPSS data file (.zsav)",
        "set read.format: sav under read: in the config, or rename it to .sav",
    ),
    (b"%PDF", "a PDF document", "export the data themselves as CSV and read that file"),
)
_SNIFF_BYTES = 4096
# Bytes that do not occur in text: C0 controls other than tab, line feed, form
# feed and carriage return, and DEL.
_CONTROL_BYTES = frozenset(range(32)) - {9, 10, 12, 13} | {127}


def _is_wide_unicode(encoding: str) -> bool:
    """Whether ``encoding`` is UTF-16 or UTF-32 (text full of NUL bytes)."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return False
    return name.startswith(("utf-16", "utf-32"))


def _zip_kind(raw: bytes) -> tuple[str, str]:
    """What a zip file is (an Excel workbook or another archive) and what to do."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        names = []
    if not names or any(n.startswith("xl/") for n in names):
        return (
            "a zipped file, probably an Excel workbook (.xlsx) with the wrong extension",
            "set read.format: xlsx under read: in the config, or rename it to .xlsx",
        )
    return (
        f"a zip archive holding {len(names)} {'file' if len(names) == 1 else 'files'} "
        f"({', '.join(repr(n) for n in names[:3])}{', …' if len(names) > 3 else ''})",
        "unzip it and read the data file inside",
    )


def _utf16_without_bom(sample: bytes) -> str | None:
    """``'utf-16-le'``/``'utf-16-be'`` when NUL bytes fill every other position."""
    half = len(sample) // 2
    if half < 2:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if odd >= 0.3 * half and even <= 0.05 * half:
        return "utf-16-le"
    if even >= 0.3 * half and odd <= 0.05 * half:
        return "utf-16-be"
    return None


def _binary_evidence(raw: bytes) -> str | None:
    """A description of the control bytes when ``raw`` looks like binary data, else None."""
    sample = raw[:_SNIFF_BYTES]
    controls = [i for i, byte in enumerate(sample) if byte in _CONTROL_BYTES]
    nul = raw.find(b"\x00")
    if nul < 0 and len(controls) < max(3, 0.05 * len(sample)):
        return None
    first = nul if nul >= 0 and (not controls or nul < controls[0]) else controls[0]
    line = raw.count(b"\n", 0, first) + 1
    return (
        f"{len(controls)} control {'byte' if len(controls) == 1 else 'bytes'} in the first "
        f"{len(sample)} bytes (e.g. 0x{raw[first]:02X} at byte offset {first}, line {line})"
    )


def _sniff_content(path: Path, raw: bytes, fmt: str, encoding: str) -> None:
    """Raise a specific error when the bytes are not text in a CSV/TSV file at all."""
    expected = f"a text ({fmt.upper()}) file"
    for signature, found, fix in _SIGNATURES:
        if raw.startswith(signature):
            raise _fail(path, expected, found, fix)
    if raw.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise _fail(path, expected, *_zip_kind(raw))
    if _is_wide_unicode(encoding):
        return
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _fail(
            path,
            f"text encoded as {encoding} (read.encoding)",
            "a UTF-16 file (it starts with a UTF-16 byte-order mark)",
            "set read.encoding: utf-16, or re-save the file as 'CSV UTF-8'",
        )
    wide = _utf16_without_bom(raw[:_SNIFF_BYTES])
    if wide is not None:
        raise _fail(
            path,
            f"text encoded as {encoding} (read.encoding)",
            f"UTF-16 text without a byte-order mark (every other byte is 0x00: {wide})",
            f"set read.encoding: {wide} under read: in the config, or re-save the file "
            "as 'CSV UTF-8'",
        )
    evidence = _binary_evidence(raw)
    if evidence is not None:
        raise _fail(
            path,
            expected,
            f"binary data, not text: {evidence}",
            "check that this is the data file you meant; if it is, open it in the program "
            "that wrote it and export the data as CSV (UTF-8)",
        )


# States of the record scanner (the csv module's, for its default dialect).
_START, _IN_FIELD, _IN_QUOTED, _QUOTE_IN_QUOTED = range(4)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass
class _PhysicalRecord:
    """One record as counted by :func:`_scan_records`, independently of the csv module.

    ``start``/``end`` are the lines it starts and ends on; ``fields`` its number
    of fields (0 for an empty line); ``terminated`` whether a line break ends
    it; ``quote_line`` the line where a quoted cell that runs over a line break
    opened; ``unclosed`` whether the file ends inside that quoted cell.
    """

    start: int
    end: int
    fields: int
    terminated: bool = True
    quote_line: int | None = None
    unclosed: bool = False


def _scan_line(line: str, state: int, delimiter: str) -> tuple[int, int, int | None]:
    """Run one line (without its line break) through the scanner.

    Returns the state at its end, the fields completed on it, and the position
    of the last quote that opened a quoted cell (None if none opened).
    """
    fields, opened = 0, None
    for position, char in enumerate(line):
        if state == _IN_QUOTED:
            if char == '"':
                state = _QUOTE_IN_QUOTED
        elif state == _QUOTE_IN_QUOTED and char == '"':
            state = _IN_QUOTED  # a doubled quote inside a quoted cell
        elif char == delimiter:
            fields, state = fields + 1, _START
        elif state == _START and char == '"':
            state, opened = _IN_QUOTED, position
        else:
            state = _IN_FIELD  # includes text straight after a closing quote
    return state, fields, opened


def _scan_records(text: str, delimiter: str) -> list[_PhysicalRecord]:
    """Count the file's records: line breaks outside quoted cells end them.

    Follows the rules of Python's csv reader for its default dialect (a quote
    opens a quoted cell only at the start of a field; ``""`` inside one is a
    quote; ``\\r\\n``, ``\\r`` and ``\\n`` are line breaks).
    """
    lines = _LINE_BREAK.split(text)
    ends_with_break = lines[-1] == ""
    if ends_with_break:
        lines.pop()
    records: list[_PhysicalRecord] = []
    current: _PhysicalRecord | None = None
    state, quote_line = _START, 0
    for number, line in enumerate(lines, start=1):
        if current is None:
            current = _PhysicalRecord(start=number, end=number, fields=0)
            if '"' not in line:  # the common case, without quotes
                current.fields = line.count(delimiter) + 1 if line else 0
                records.append(current)
                current = None
                continue
        state, fields, opened = _scan_line(line, state, delimiter)
        current.fields += fields
        current.end = number
        if opened is not None:
            quote_line = number
        if state == _IN_QUOTED:
            current.quote_line = current.quote_line or quote_line
            continue  # the quoted cell runs on over the line break
        current.fields += 1  # the last field (a line with a quote is never empty)
        records.append(current)
        current, state = None, _START
    if current is not None:  # the file ends inside a quoted cell
        current.fields += 1
        current.quote_line, current.unclosed = quote_line, True
        records.append(current)
    if records and not ends_with_break:
        records[-1].terminated = False
    return records


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    """The file's text; undecodable bytes are reported with their offset and line."""
    try:
        return raw.decode(_codec(encoding))  # UTF-8 also drops Excel's byte-order mark
    except UnicodeDecodeError as exc:
        offset = exc.start
        line = raw.count(b"\n", 0, offset) + 1
        line_start = raw.rfind(b"\n", 0, offset) + 1
        context = raw[line_start : offset + 12].split(b"\n")[0].decode("latin-1")
        raise _fail(
            path,
            f"text encoded as {encoding} (read.encoding)",
            f"byte 0x{raw[offset]:02X} at byte offset {offset} (line {line}) is not valid "
            f"{encoding}; the line reads, as latin-1: {context!r}",
            "the file is probably in a Windows/Western encoding: set read.encoding: latin-1 "
            "(or cp1252) under read: in the config, or re-save the file as 'CSV UTF-8'",
            rows=[line],
            row_label="line",
        ) from None


def _check_quotes_closed(path: Path, physical: list[_PhysicalRecord]) -> None:
    """Raise when the file ends inside a quoted cell, naming the line the quote opened on."""
    if not physical or not physical[-1].unclosed:
        return
    last = physical[-1]
    opened = last.quote_line or last.start
    span = last.end - opened + 1
    fix = (
        f"remove the stray quote on line {opened}, or add the quote that closes its cell "
        '(a quote inside a cell is written twice: "")'
    )
    if not last.terminated:
        fix += "; the file also does not end with a line break: if it was cut off, export it again"
    raise _fail(
        path,
        'each quoted cell closed by a matching quote (")',
        f"a quote opened on line {opened} is never closed: everything from there to the end "
        f"of the file (lines {opened}-{last.end}, {span} {'line' if span == 1 else 'lines'}) "
        "would be read as one cell",
        fix,
        rows=[opened],
        row_label="line",
    )


def _parse_records(
    path: Path, text: str, delimiter: str, fmt: str, physical: list[_PhysicalRecord]
) -> list[tuple[int, list[str]]]:
    """The csv module's records, each with the line it starts on."""
    records: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    previous_line = 0
    try:
        for record in reader:
            records.append((previous_line + 1, record))
            previous_line = reader.line_num
    except csv.Error as exc:
        start = next((r for r in physical if r.start <= reader.line_num <= r.end), None)
        line = (start.quote_line or start.start) if start is not None else reader.line_num
        raise _fail(
            path,
            f"a well-formed {fmt.upper()} file",
            f"{exc} (in the record that starts on line {line})",
            "check the quoting on that line: a cell that starts with a quote must end with one",
            rows=[line],
            row_label="line",
        ) from None
    return records


def _reconcile(
    path: Path, physical: list[_PhysicalRecord], records: list[tuple[int, list[str]]]
) -> None:
    """Raise unless the parser read exactly the records the independent count found."""
    counted = [(r.start, r.fields) for r in physical]
    parsed = [(number, len(cells)) for number, cells in records]
    if counted == parsed:
        return
    at = next(
        (i for i, (a, b) in enumerate(zip(counted, parsed, strict=False)) if a != b),
        min(len(counted), len(parsed)),
    )
    line = (counted[at] if at < len(counted) else parsed[at])[0]
    raise _fail(
        path,
        "every line read as the header, a record or a blank line",
        f"the parser read {len(parsed)} records but the line count found {len(counted)}; "
        f"they first differ at line {line}",
        f"check the quotes and line breaks around line {line}; if they look right, please "
        "report this file's layout as a bug",
        rows=[line],
        row_label="line",
    )


def _read_text(path: Path, fmt: str, read_config: ReadConfig, compact_text: bool) -> RawTable:
    raw = path.read_bytes()
    if not raw.strip():
        raise _fail(
            path,
            "a header row with column names, then one row per record",
            f"an empty file ({len(raw)} bytes)",
            "check that you exported the data to this file (re-export it if needed)",
        )
    _sniff_content(path, raw, fmt, read_config.encoding)
    _check_decodes(path, raw, read_config.encoding)
    delimiter = read_config.delimiter or ("\t" if fmt == "tsv" else ",")
    if read_config.thousands == delimiter:
        raise _fail(
            path,
            "a thousands separator (read.thousands) other than the field separator",
            f"both are {delimiter!r} (a {fmt.upper()} file is "
            f"{_DELIMITER_NAMES.get(delimiter, repr(delimiter))}-separated unless "
            "read.delimiter says otherwise)",
            "set read.delimiter to the file's separator (e.g. ';'), or delete read.thousands",
        )
    plain = _read_plain_text(path, raw, fmt, delimiter, read_config, compact_text)
    if plain is not None:
        return plain
    text = _decode(path, raw, read_config.encoding)
    del raw
    physical = _scan_records(text, delimiter)
    _check_quotes_closed(path, physical)
    records = _parse_records(path, text, delimiter, fmt, physical)
    _reconcile(path, physical, records)
    header_row = read_config.header_row
    at = [(n, r) for n, r in records if n == header_row]
    if not at or not any(cell.strip() for cell in at[0][1]):
        last_line = physical[-1].end if physical else 0
        raise _fail(
            path,
            f"the column names on line {header_row} (read.header_row)",
            f"line {header_row} is empty" if header_row <= last_line else f"only {last_line} lines",
            _empty_header_fix(records, header_row),
        )
    header_cells = at[0][1]
    _check_header_on_one_line(path, next(r for r in physical if r.start == header_row))
    if len(header_cells) == 1:
        _check_delimiter(path, header_cells[0], delimiter, fmt)
    names = _name_columns(path, header_cells, str)
    above = f"above the header (read.header_row: {header_row})"
    skipped = {n: above for n, _ in records if n < header_row}
    body = [(p, cells) for p, (n, cells) in zip(physical, records, strict=True) if n > header_row]
    rows, source_rows, blank = _sort_body(path, body, header_row, header_cells, delimiter)
    skipped.update(blank)
    if not rows:
        raise _fail(
            path,
            "one or more data rows below the header",
            f"a header (line {header_row}) but no data rows"
            + (f" ({len(blank)} blank or empty lines)" if blank else ""),
            "check that you exported the data, not just the column names",
        )
    codes = set(read_config.missing_codes)
    columns: dict[str, Any] = {schema.SOURCE_ROW: np.asarray(source_rows, dtype="int64")}
    for j, column in enumerate(names):
        values = [None if row[j].strip() in codes else row[j] for row in rows]
        columns[column] = pd.Series(values, dtype="str")
    return RawTable(
        data=pd.DataFrame(columns),
        path=path,
        format=fmt,
        header_row=header_row,
        skipped_lines=dict(sorted(skipped.items())),
        physical_records=len(physical),
    )


def _check_decodes(path: Path, raw: bytes, encoding: str) -> None:
    """Raise :func:`_decode`'s report unless ``raw`` decodes; checked in chunks (bounded memory)."""
    decoder = codecs.getincrementaldecoder(_codec(encoding))()
    view = memoryview(raw)
    try:
        for start in range(0, len(raw), textscan.CHUNK_BYTES):
            decoder.decode(view[start : start + textscan.CHUNK_BYTES])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        _decode(path, raw, encoding)  # raises the report with the offset and line
        raise


def _codec(encoding: str) -> str:
    """The codec that reads ``encoding``; UTF-8 also drops a byte-order mark."""
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        return "utf-8-sig"
    return encoding


#: Encodings in which the delimiter, line feed and ASCII characters are single
#: bytes that occur in no other character (so :mod:`helpers.textscan` applies).
_ASCII_COMPATIBLE = {"utf-8", "ascii", "latin-1", "iso8859-1", "iso8859-15", "cp1252"}


def _plain_reader_applies(raw: bytes, delimiter: str, encoding: str) -> bool:
    """Whether the file can take the quote-free fast path of :func:`_read_plain_text`."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return False
    return (
        name in _ASCII_COMPATIBLE
        and len(delimiter) == 1
        and " " < delimiter < "\x7f"
        and delimiter != '"'
        and b'"' not in raw
        and raw.count(b"\r") == raw.count(b"\r\n")
    )


def _read_plain_text(
    path: Path,
    raw: bytes,
    fmt: str,
    delimiter: str,
    read_config: ReadConfig,
    compact: bool = False,
) -> RawTable | None:
    """Read a regular quote-free file with pandas' C parser; ``None`` to use the exact reader.

    Every line is a record.  The lines and their fields are counted
    independently (:func:`helpers.textscan.scan_lines`) and the parser must
    return exactly that many rows.  Anything irregular — a missing or blank
    header line, a row with more or fewer fields than the header — returns
    ``None``, and the line-by-line reader reports it with its usual message.
    """
    if not _plain_reader_applies(raw, delimiter, read_config.encoding):
        return None
    codec = _codec(read_config.encoding)
    start = len(codecs.BOM_UTF8) if codec == "utf-8-sig" and raw.startswith(codecs.BOM_UTF8) else 0
    lines = textscan.scan_lines(raw, delimiter, start)
    header_row = read_config.header_row
    if header_row > len(lines) or not lines.visible[header_row - 1]:
        return None
    plain = codec.removesuffix("-sig")
    header_cells = _line_text(raw, lines, header_row - 1, plain).split(delimiter)
    width = len(header_cells)
    if width == 1:
        _check_delimiter(path, header_cells[0], delimiter, fmt)
    names = _name_columns(path, header_cells, str)
    body, skipped = _plain_body(raw, lines, header_row, width, delimiter, plain)
    if body is None or len(body) == 0:
        return None  # the exact reader reports the rows (or the missing ones)
    data = _parse_plain(raw, lines, delimiter, codec, body, width, read_config, compact)
    if data is None:
        return None
    data.columns = names
    data.insert(0, schema.SOURCE_ROW, (body + 1).astype("int64"))
    return RawTable(
        data=data,
        path=path,
        format=fmt,
        header_row=header_row,
        skipped_lines=skipped,
        physical_records=len(lines),
    )


def _line_text(raw: bytes, lines: textscan.LineStats, index: int, codec: str) -> str:
    return raw[lines.starts[index] : lines.ends[index]].decode(codec)


def _plain_body(
    raw: bytes, lines: textscan.LineStats, header_row: int, width: int, delimiter: str, codec: str
) -> tuple[np.ndarray | None, dict[int, str]]:
    """Indices of the data lines and the skipped lines' reasons; ``None`` if a width is wrong."""
    above = f"above the header (read.header_row: {header_row})"
    skipped = {number: above for number in range(1, header_row)}
    candidates = np.arange(header_row, len(lines))
    maybe_blank = candidates[~lines.visible[candidates]]
    for index in maybe_blank:
        reason = _blank_reason(_line_text(raw, lines, index, codec).split(delimiter))
        if reason is not None:
            skipped[int(index) + 1] = reason
    blank = np.asarray(sorted(n - 1 for n in skipped if n > header_row), dtype=np.int64)
    body = np.setdiff1d(candidates, blank, assume_unique=True)
    if np.any(lines.fields[body] != width):
        return None, skipped
    return body, dict(sorted(skipped.items()))


def _parse_plain(
    raw: bytes,
    lines: textscan.LineStats,
    delimiter: str,
    codec: str,
    body: np.ndarray,
    width: int,
    read_config: ReadConfig,
    compact: bool = False,
) -> pd.DataFrame | None:
    """The body lines as text columns, missing codes as missing; ``None`` if counts differ.

    Arrow's CSV reader parses straight into Arrow strings (no Python object
    per cell; pandas' ``str`` columns then share its buffers), or with
    ``compact`` into dictionary-encoded strings (pandas ``category``
    columns).  It returns the lines with exactly ``width`` fields (empty
    lines and others are skipped and counted); those must be the lines the
    independent scan found.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{j}" for j in range(width)]
    skipped = []
    start = int(lines.starts[0]) if len(lines) else 0
    # the line scan's temporaries are free in the C heap, which Arrow's pool does not
    # reuse: give them back first (at a million rows 65 MB of the read's peak)
    release_freed_memory()
    table = pacsv.read_csv(
        pa.py_buffer(raw)[start:],
        read_options=pacsv.ReadOptions(
            column_names=names, use_threads=False, encoding=codec.removesuffix("-sig")
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter,
            quote_char=False,
            double_quote=False,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=True,
            invalid_row_handler=lambda row: skipped.append(row.number) or "skip",
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(
                names, pa.dictionary(pa.int32(), pa.string()) if compact else pa.large_string()
            ),
            null_values=list(read_config.missing_codes),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    full = np.flatnonzero(lines.fields == width)  # the lines Arrow returns, in order
    others = int(np.count_nonzero((lines.fields != width) & (lines.fields > 0)))
    if table.num_rows != len(full) or len(skipped) != others:
        return None
    owned = [table]
    del table  # _rows_of holds the only reference, so it can free each column it has converted
    data = _rows_of(owned, np.searchsorted(full, body))
    _strip_missing_codes(data, read_config.missing_codes)
    return data


def _rows_of(owned: list[Any], positions: np.ndarray) -> pd.DataFrame:
    """The rows at ``positions`` of the Arrow table in ``owned`` as pandas columns.

    The table is taken out of ``owned`` (the caller gives up its reference)
    and converted one column at a time, each dropped from the table once
    converted, so the table and the frame never coexist whole (memory).
    Large strings become pandas ``str`` columns (sharing Arrow's buffers),
    dictionary-encoded strings ``category`` columns.
    """
    import pyarrow as pa

    table = owned.pop()
    if len(positions) and positions[-1] - positions[0] + 1 == len(positions):
        table = table.slice(int(positions[0]), len(positions))  # zero-copy
    else:
        table = table.take(pa.array(positions))
    text = {pa.large_string(): pd.StringDtype(na_value=np.nan)}.get
    columns = {}
    for name in table.column_names:
        columns[name] = table.column(name).to_pandas(types_mapper=text)
        table = table.drop_columns([name])
        pa.default_memory_pool().release_unused()  # the column's pages, for the next one
    return pd.DataFrame(columns, index=pd.RangeIndex(len(positions)), copy=False)


def _strip_missing_codes(data: pd.DataFrame, codes: tuple[str, ...]) -> None:
    """Set cells that equal a missing code after stripping spaces (e.g. ``" NA"``) missing."""
    for column in data.columns:
        values = data[column]
        if isinstance(values.dtype, pd.CategoricalDtype):  # decided once per distinct text
            coded = [c for c in values.cat.categories if c.strip() in codes]
            if coded:
                data[column] = values.cat.remove_categories(coded)
            continue
        missing = values.str.strip().isin(list(codes)) & values.notna()
        if missing.any():
            data[column] = values.where(~missing)


def _check_header_on_one_line(path: Path, header: _PhysicalRecord) -> None:
    """Raise when a quoted cell carries the header over a line break into the next lines."""
    if header.end == header.start:
        return
    opened = header.quote_line or header.start
    raise _fail(
        path,
        f"the column names on one line (line {header.start}, read.header_row)",
        f"a quoted cell opened on line {opened} runs on to line {header.end}, joining lines "
        f"{header.start}-{header.end} into the header",
        f"a stray quote on line {opened} probably starts the cell: remove it (a quote inside "
        'a cell is written twice: ""), or close the quoted cell on the same line',
        rows=[opened],
        row_label="line",
    )


def _blank_reason(cells: list[str]) -> str | None:
    """Why a record holds no data ("blank line", "only separators"), or None if it does."""
    if any(cell.strip() for cell in cells):
        return None
    return "blank line" if len(cells) <= 1 else "only separators"


def _sort_body(
    path: Path,
    body: list[tuple[_PhysicalRecord, list[str]]],
    header_row: int,
    header_cells: list[str],
    delimiter: str,
) -> tuple[list[list[str]], list[int], dict[int, str]]:
    """Data rows (cut to the header's width), their line numbers and the blank lines.

    Raises for rows with more or fewer fields than the header, records joined
    by a stray quote, and a file cut off in the middle of its last row.
    """
    width = len(header_cells)
    rows: list[list[str]] = []
    source_rows: list[int] = []
    blank: dict[int, str] = {}
    wrong: list[tuple[_PhysicalRecord, list[str]]] = []
    for record, cells in body:
        reason = _blank_reason(cells)
        if reason is not None:
            blank[record.start] = reason
        elif len(cells) < width or any(cell.strip() for cell in cells[width:]):
            wrong.append((record, cells))
        else:
            rows.append(cells[:width])
            source_rows.append(record.start)
    if wrong:
        _raise_wrong_widths(path, wrong, header_row, header_cells, delimiter)
    return rows, source_rows, blank


def _width_cause(record: _PhysicalRecord, fields: int, width: int) -> str:
    """Why a record does not have the header's width: joined, cut, short or long."""
    if record.quote_line is not None:
        return "joined"  # a quoted cell over line breaks: probably a stray quote
    if fields > width:
        return "long"
    return "short" if record.terminated else "cut"  # only the last record lacks a break


def _raise_wrong_widths(
    path: Path,
    wrong: list[tuple[_PhysicalRecord, list[str]]],
    header_row: int,
    header_cells: list[str],
    delimiter: str,
) -> None:
    """Report rows whose number of fields differs from the header's, grouped by cause."""
    width = len(header_cells)
    by_cause: dict[str, list[tuple[_PhysicalRecord, list[str]]]] = {}
    for record, cells in wrong:
        by_cause.setdefault(_width_cause(record, len(cells), width), []).append((record, cells))
    long_ = by_cause.get("long", [])
    if long_:
        first, cells = long_[0]
        _check_title_lines(path, header_row, header_cells, (first.start, cells))
    problems = [_joined_problem(path, r, len(c), width) for r, c in by_cause.get("joined", [])]
    if "short" in by_cause:
        problems.append(_short_problem(path, by_cause["short"], header_row, width, delimiter))
    for record, cells in by_cause.get("cut", []):
        problems.append(_cut_off_problem(path, record, len(cells), width))
    if long_:
        problems.append(_long_problem(path, long_, header_row, width, delimiter))
    raise StudyDataError(problems, f"Could not read {display_path(path)}.")


def _joined_problem(path: Path, record: _PhysicalRecord, fields: int, width: int) -> Problem:
    opened = record.quote_line
    return Problem(
        file=path,
        column=None,
        rows=[opened],
        rule=f"{width} fields per record, as in the header",
        found=f"a quoted cell opened on line {opened} runs on to line {record.end}, joining "
        f"lines {record.start}-{record.end} into one record with {fields} fields",
        fix=f"a stray quote on line {opened} probably starts the cell: remove it (a quote "
        'inside a cell is written twice: ""), or close the quoted cell where it should end',
        row_label="line",
    )


def _short_problem(
    path: Path,
    short: list[tuple[_PhysicalRecord, list[str]]],
    header_row: int,
    width: int,
    delimiter: str,
) -> Problem:
    n = len(short)
    listed = ", ".join(f"row {r.start} has {len(c)}" for r, c in short[:5])
    name = _DELIMITER_NAMES.get(delimiter, repr(delimiter))
    return Problem(
        file=path,
        column=None,
        rows=[r.start for r, _ in short],
        values=[len(c) for _, c in short],
        rule=f"{width} fields per row, as in the header (line {header_row})",
        found=f"{n} {'row' if n == 1 else 'rows'} with fewer fields than the header: {listed}"
        + (", …" if n > 5 else ""),
        fix=f"add the missing fields: an empty cell still needs its {name} (e.g. a row ending "
        f"in an empty cell ends with '{delimiter}'); rows are not padded with missing values "
        "because a lost separator would shift the cells into the wrong columns",
    )


def _cut_off_problem(path: Path, record: _PhysicalRecord, fields: int, width: int) -> Problem:
    return Problem(
        file=path,
        column=None,
        rows=[record.start],
        rule=f"a complete last row ({width} fields, as in the header)",
        found=f"the file ends in the middle of line {record.start}: it has {fields} of "
        f"{width} fields and no line break at the end",
        fix="the file looks cut off (an interrupted export, copy or download): export or "
        "copy it again",
        row_label="line",
    )


def _long_problem(
    path: Path,
    too_long: list[tuple[_PhysicalRecord, list[str]]],
    header_row: int,
    width: int,
    delimiter: str,
) -> Problem:
    n = len(too_long)
    return Problem(
        file=path,
        column=None,
        rows=[r.start for r, _ in too_long],
        values=[delimiter.join(c[width:]) for _, c in too_long],
        rule=f"at most {width} fields per row, as in the header (line {header_row})",
        found=f"{n} {'row' if n == 1 else 'rows'} with more fields than the header",
        fix=f"a {_DELIMITER_NAMES.get(delimiter, repr(delimiter))} inside a cell splits it: "
        "quote such cells, or use a decimal point instead of a decimal comma"
        + (
            " (or save the file ';'-separated and set read.delimiter: ';' and read.decimal: ',')"
            if delimiter == ","
            else ""
        ),
    )


def _check_title_lines(
    path: Path, header_row: int, header_cells: list[str], first_long: tuple[int, list[str]]
) -> None:
    """Raise when the configured header line looks like a title above the real header."""
    number, cells = first_long
    looks_like_names = all(c.strip() and not _NUMBER.match(c.strip()) for c in cells)
    if not looks_like_names:
        return
    shown = ", ".join(repr(c) for c in header_cells[:3])
    raise _fail(
        path,
        f"the column names on line {header_row} (read.header_row)",
        f"line {header_row} holds {len(header_cells)} "
        f"{'name' if len(header_cells) == 1 else 'names'} ({shown}) but line {number} has "
        f"{len(cells)} fields that look like column names",
        f"set read.header_row: {number} under read: in the config",
        rows=[number],
    )


def _check_delimiter(path: Path, header: str, delimiter: str, fmt: str) -> None:
    candidates = {d: header.count(d) for d in _DELIMITER_NAMES if d != delimiter}
    likely = max(candidates, key=lambda d: candidates[d])
    if candidates[likely] == 0:
        return
    used = _DELIMITER_NAMES.get(delimiter, repr(delimiter))
    shown = header if len(header) <= 60 else header[:57] + "..."
    fix = f"set read.delimiter: {_DELIMITER_SETTING[likely]} under read: in the config"
    if likely == "\t":
        fix += " (or read.format: tsv)"
    raise _fail(
        path,
        f"columns separated by {used} ({fmt.upper()})",
        f"the whole header in one column: {shown!r}; it looks {_DELIMITER_NAMES[likely]}-separated",
        fix,
    )


def _missing_mask(series: pd.Series, codes: tuple[str, ...]) -> pd.Series:
    """Cells equal to a missing code: text after stripping, numbers numerically."""
    text_codes = set(codes)
    numeric_codes = {float(c) for c in codes if _NUMBER.match(c)}

    def is_code(value: Any) -> bool:
        if isinstance(value, str):
            return value.strip() in text_codes
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value) in numeric_codes
        return False

    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.isin(list(numeric_codes)) if numeric_codes else series.isna() & False
    return series.map(is_code, na_action="ignore").fillna(False).astype(bool)


def _apply_missing_codes(data: pd.DataFrame, codes: tuple[str, ...]) -> pd.DataFrame:
    out = data.copy()
    for column in out.columns:
        if column == schema.SOURCE_ROW:
            continue
        mask = _missing_mask(out[column], codes)
        if mask.any():
            out[column] = out[column].mask(mask)
    return out


def _excel_letter(position: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(position)


#: Largest total size, uncompressed, of the parts of an .xlsx workbook (its sheet XML …)
#: that is read: a workbook larger than this (or a "zip bomb", a small file that
#: inflates to gigabytes) is refused before it is opened.
MAX_XLSX_UNCOMPRESSED_BYTES = 500 * 2**20

#: Most rows read from an Excel sheet: Excel's own limit per sheet, so only a file
#: Excel did not write (or one padded with empty rows) is refused.
MAX_XLSX_ROWS = 1_048_576

_XLSX_FIX = (
    "export the sheet to CSV (in Excel: File > Save As > CSV UTF-8) and read that file; "
    "a CSV file is read with far less memory"
)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def _check_xlsx_size(path: Path) -> None:
    """Refuse a workbook whose parts declare more than :data:`MAX_XLSX_UNCOMPRESSED_BYTES`.

    Python's :mod:`zipfile` (which openpyxl uses) never inflates a part beyond
    its declared size, so the declared sizes bound what reading can take.  A
    file that is not a zip archive is left to openpyxl's own report.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError):
        return
    total = sum(part.file_size for part in parts)
    if total <= MAX_XLSX_UNCOMPRESSED_BYTES:
        return
    largest = max(parts, key=lambda part: part.file_size)
    raise _fail(
        path,
        f"an Excel workbook of at most {_mb(MAX_XLSX_UNCOMPRESSED_BYTES)} uncompressed",
        f"a {_mb(path.stat().st_size)} file that inflates to {_mb(total)}; the largest part, "
        f"{largest.filename}, to {_mb(largest.file_size)} from {_mb(largest.compress_size)} "
        "(so large a ratio is typical of a sheet padded with empty cells, or of a 'zip bomb')",
        _XLSX_FIX,
    )


def _too_many_rows(path: Path, sheet: str, found: str) -> StudyDataError:
    return _fail(
        path,
        f"a sheet of at most {MAX_XLSX_ROWS:,} rows (Excel's limit)",
        f"sheet {sheet!r} {found}",
        _XLSX_FIX,
    )


def _sheet_grid(path: Path, worksheet: Any, sheet: str) -> list[list[Any]]:
    """The sheet's rows as lists of values, refusing more than :data:`MAX_XLSX_ROWS` rows.

    The declared size (the sheet's ``dimension`` element) is checked first;
    rows are counted as they stream in, since a declared size can be missing
    or wrong.
    """
    declared = worksheet.max_row
    if isinstance(declared, int) and declared > MAX_XLSX_ROWS:
        raise _too_many_rows(path, sheet, f"declares {declared:,} rows (its dimension element)")
    grid: list[list[Any]] = []
    for row in worksheet.iter_rows(values_only=True):
        if len(grid) == MAX_XLSX_ROWS:
            raise _too_many_rows(path, sheet, f"holds more than {MAX_XLSX_ROWS:,} rows")
        grid.append(list(row))
    return grid


def _read_excel(path: Path, read_config: ReadConfig) -> RawTable:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    if path.stat().st_size == 0:
        raise _fail(
            path, "an Excel workbook", "an empty file (0 bytes)", "re-export the data to this file"
        )
    _check_xlsx_size(path)
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError) as exc:
        raise _fail(
            path,
            "an Excel workbook (.xlsx)",
            f"a file that could not be opened as a workbook ({type(exc).__name__}: {exc})",
            "open it in Excel and save it again as .xlsx, or export it to CSV",
        ) from None
    try:
        names = workbook.sheetnames
        sheet = read_config.sheet
        if sheet is None:
            sheet_name = names[0]
        elif isinstance(sheet, int):
            if sheet >= len(names):
                raise _fail(
                    path,
                    f"a sheet number 0 to {len(names) - 1} (read.sheet, 0 = first sheet)",
                    f"sheet {sheet}; the workbook's sheets are {', '.join(map(repr, names))}",
                    "set read.sheet to one of these names",
                )
            sheet_name = names[sheet]
        elif sheet in names:
            sheet_name = sheet
        else:
            close = difflib.get_close_matches(str(sheet), names, n=1, cutoff=0.5)
            raise _fail(
                path,
                "an existing sheet (read.sheet)",
                f"no sheet {sheet!r}; the workbook's sheets are {', '.join(map(repr, names))}",
                f"did you mean {close[0]!r}?" if close else "set read.sheet to one of these names",
            )
        grid = _sheet_grid(path, workbook[sheet_name], sheet_name)
    finally:
        workbook.close()
    numbered = list(enumerate(grid, start=1))
    header_row = read_config.header_row
    if not any(_cell_text(c) for row in grid for c in row):
        raise _fail(
            path,
            "a sheet with a header row and data rows",
            f"sheet {sheet_name!r} is empty",
            "check the sheet (read.sheet) and that the data were saved",
        )
    if header_row > len(grid) or not any(_cell_text(c) for c in grid[header_row - 1]):
        raise _fail(
            path,
            f"the column names on row {header_row} of sheet {sheet_name!r} (read.header_row)",
            f"row {header_row} is empty",
            _empty_header_fix(numbered, header_row),
        )
    header = grid[header_row - 1]
    body = [(n, row) for n, row in numbered if n > header_row and any(_cell_text(c) for c in row)]
    width = max([len(header)] + [len(r) for _, r in body])
    header = header + [None] * (width - len(header))
    # Trailing header cells that are empty and hold no data are formatting, not columns.
    while (
        width
        and header[width - 1] is None
        and all(len(r) < width or _cell_text(r[width - 1]) == "" for _, r in body)
    ):
        width -= 1
    names_ = _name_columns(path, header[:width], _excel_letter)
    if not body:
        others = [n for n in names if n != sheet_name]
        where = (
            f"if the data are on another sheet, set read.sheet to one of "
            f"{', '.join(map(repr, others))}; otherwise check"
            if others
            else "check"
        )
        raise _fail(
            path,
            "one or more data rows below the header",
            f"a header (row {header_row} of sheet {sheet_name!r}) but no data rows",
            f"{where} that you saved the data, not just the column names",
        )
    columns: dict[str, Any] = {
        schema.SOURCE_ROW: np.asarray([n for n, _ in body], dtype="int64"),
    }
    for j, column in enumerate(names_):
        values = [row[j] if j < len(row) else None for _, row in body]
        columns[column] = pd.Series(values, dtype=object)
    data = _apply_missing_codes(pd.DataFrame(columns), read_config.missing_codes)
    return RawTable(
        data=data, path=path, format="xlsx", header_row=header_row, sheet=str(sheet_name)
    )


def _read_readstat(path: Path, fmt: str, read_config: ReadConfig) -> RawTable:
    import pyreadstat

    reader = pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta
    program = "SPSS" if fmt == "sav" else "Stata"
    if path.stat().st_size == 0:
        raise _fail(path, f"a {program} data file", "an empty file (0 bytes)", "re-save the data")
    try:
        frame, meta = reader(str(path), apply_value_formats=False)
    except Exception as exc:  # pyreadstat raises several unrelated error types
        raise _fail(
            path,
            f"a {program} data file (.{fmt})",
            f"a file the {program} reader could not read ({type(exc).__name__}: {exc})",
            f"open it in {program} and save it again, or export it to CSV",
        ) from None
    if frame.shape[0] == 0:
        raise _fail(
            path,
            "one or more cases",
            "variables but no cases",
            "check that the data were saved, not just the variable definitions",
        )
    names = [str(c) for c in frame.columns]
    _check_no_source_row(path, names)
    frame = frame.copy()
    frame.columns = names
    frame.insert(0, schema.SOURCE_ROW, np.arange(1, len(frame) + 1, dtype="int64"))
    data = _apply_missing_codes(frame, read_config.missing_codes)
    labels = {k: v for k, v in (meta.column_names_to_labels or {}).items() if v}
    return RawTable(
        data=data,
        path=path,
        format=fmt,
        value_labels={k: dict(v) for k, v in (meta.variable_value_labels or {}).items()},
        variable_labels=labels,
    )


def _read_parquet(path: Path, read_config: ReadConfig) -> RawTable:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated error types
        raise _fail(
            path,
            "a Parquet file",
            f"a file the Parquet reader could not read ({type(exc).__name__}: {exc})",
            "re-export the data, or export it to CSV",
        ) from None
    if frame.shape[0] == 0:
        raise _fail(path, "one or more rows", "columns but no rows", "re-export the data")
    names = [str(c) for c in frame.columns]
    _check_no_source_row(path, names)
    frame = frame.reset_index(drop=True)
    frame.columns = names
    frame.insert(0, schema.SOURCE_ROW, np.arange(1, len(frame) + 1, dtype="int64"))
    data = _apply_missing_codes(frame, read_config.missing_codes)
    return RawTable(data=data, path=path, format="parquet")


# ----------------------------------------------------------------------------- mapping


def _purpose(canonical: str, config: StudyConfig) -> str:
    """Plain words for what a canonical score column holds."""
    if canonical == schema.OUTCOME_INTAKE:
        return f"the intake {config.outcome.instrument} total ({canonical})"
    if canonical == schema.OUTCOME:
        return f"the {config.outcome.instrument} total ({canonical})"
    if canonical.startswith("outcome_item"):
        item = int(canonical.removeprefix("outcome_item"))
        return f"item {item} of {config.outcome.instrument} ({canonical})"
    for rater, measure in config.alliance.items():
        if canonical == schema.alliance_total_column(rater):
            return f"the {rater}'s {measure.instrument} alliance total ({canonical})"
        prefix = f"alliance_{rater}_item"
        if canonical.startswith(prefix):
            item = int(canonical.removeprefix(prefix))
            return f"item {item} of the {rater}'s {measure.instrument} ({canonical})"
    return canonical


@functools.lru_cache(maxsize=16)
def _number_pattern(decimal: str = ".", thousands: str | None = None) -> re.Pattern[str]:
    """A number written with these separators (the default is :data:`_NUMBER`)."""
    if decimal == "." and thousands is None:
        return _NUMBER
    point = re.escape(decimal)
    whole = r"\d+"
    if thousands is not None:
        group = "[" + re.escape(_SPACES if thousands == " " else thousands) + "]"
        whole = rf"(?:\d{{1,3}}(?:{group}\d{{3}})+|\d+)"
    return re.compile(rf"^[+-]?({whole}({point}\d*)?|{point}\d+)([eE][+-]?\d+)?$")


def _plain_number(text: str, read: ReadConfig) -> str:
    """A number in ``read``'s format rewritten as plain ``1234.5``."""
    if read.thousands is not None:
        for char in _SPACES if read.thousands == " " else read.thousands:
            text = text.replace(char, "")
    return text.replace(read.decimal, ".")


def _to_numbers(series: pd.Series, read: ReadConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Numeric values (NaN where missing) and a mask of cells that are not numbers.

    Numbers and text holding a number in ``read``'s format are accepted: by
    default a plain decimal number (``"3"``, ``" 2.5 "``, ``"-1"``, ``"1e2"``);
    with ``read.decimal: ","`` also ``"3,25"``, with ``read.thousands`` digits
    grouped in threes (``"1.234,5"``).  Everything else (``"abc"``, a decimal
    comma under the default format, true/false, dates) is flagged, never coerced.
    """
    read = read or ReadConfig()
    if pd.api.types.is_bool_dtype(series):
        return np.full(len(series), np.nan), series.notna().to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64").to_numpy(), np.zeros(len(series), dtype=bool)
    if isinstance(series.dtype, pd.StringDtype):  # CSV/TSV cells: text or missing
        return _text_to_numbers(*pd.factorize(series, use_na_sentinel=True), read)
    if _is_text_category(series):  # CSV/TSV cells read with compact_text
        return _text_to_numbers(series.cat.codes.to_numpy(), series.cat.categories, read)
    values = np.full(len(series), np.nan)
    bad = np.zeros(len(series), dtype=bool)
    for i, value in enumerate(series.to_numpy(dtype=object)):
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, bool | np.bool_):
            bad[i] = True
        elif isinstance(value, numbers.Real):
            values[i] = float(value)
        elif isinstance(value, str):
            text = value.strip()
            if not text:
                continue
            if _number_pattern(read.decimal, read.thousands).match(text):
                values[i] = float(_plain_number(text, read))
            else:
                bad[i] = True
        else:
            bad[i] = True
    return values, bad


def _is_text_category(series: pd.Series) -> bool:
    """Whether ``series`` is a ``category`` column of text (``read_table(compact_text=True)``)."""
    return isinstance(series.dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(
        series.cat.categories
    )


def _text_to_numbers(
    codes: np.ndarray, uniques: Any, read: ReadConfig
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_to_numbers` of a text column given as codes into its distinct cells (-1: missing)."""
    text = pd.Series(uniques, dtype="str").str.strip()
    missing = (text.isna() | (text == "")).to_numpy(dtype=bool)
    pattern = _number_pattern(read.decimal, read.thousands).pattern
    ok = text.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)
    text = text.where(ok)
    if (read.decimal, read.thousands) != (".", None):
        text = text.map(lambda t: _plain_number(t, read), na_action="ignore")
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64")
    values, bad = np.append(values, np.nan), np.append(~missing & ~ok, False)
    return values[codes], bad[codes]  # code -1 (a missing cell) takes the appended entry


def _unique_rows(rows: Any, values: list[Any]) -> tuple[list[int], list[Any]]:
    """Drop repeats of the same (row, value) pair.

    A wide file's patient-level cell is repeated on each of the patient's
    session rows, but it is one cell in the file and is reported once.
    """
    seen: set[tuple[int, str]] = set()
    kept_rows: list[int] = []
    kept_values: list[Any] = []
    for row, value in zip(rows, values, strict=True):
        key = (int(row), repr(value))
        if key not in seen:
            seen.add(key)
            kept_rows.append(int(row))
            kept_values.append(value)
    return kept_rows, kept_values


_SEPARATOR_NAMES = {".": "'.'", ",": "','", " ": "spaces", "'": "apostrophes"}


def _number_format_hint(texts: list[str], read: ReadConfig, delimiter: str | None) -> str | None:
    """The read.decimal / read.thousands under which most of ``texts`` are numbers, as a fix."""
    best: tuple[str, str | None] | None = None
    best_n = 0
    for decimal, thousands in _OTHER_NUMBER_FORMATS:
        if (decimal, thousands) == (read.decimal, read.thousands) or (
            thousands is not None and thousands == delimiter
        ):
            continue
        n = sum(bool(_number_pattern(decimal, thousands).match(t)) for t in texts)
        if n > best_n:
            best, best_n = (decimal, thousands), n
    if best is None:
        return None
    decimal, thousands = best
    example = next(t for t in texts if _number_pattern(decimal, thousands).match(t))
    words = f"a decimal {'comma' if decimal == ',' else 'point'}"
    settings = [f"read.decimal: '{decimal}'"] if decimal != read.decimal else []
    if thousands is not None:
        words += f" and {_SEPARATOR_NAMES[thousands]} between thousands"
    if thousands != read.thousands:
        settings.append(f"read.thousands: {'null' if thousands is None else repr(thousands)}")
    return (
        f"{example!r} is a number written with {words}: "
        f"set {' and '.join(settings)} under read: in the config"
    )


def _number_problem(
    raw: RawTable,
    column: str,
    rows: np.ndarray,
    values: list[Any],
    purpose: str,
    read: ReadConfig | None = None,
) -> Problem:
    read = read or ReadConfig()
    rows, values = _unique_rows(rows, values)
    texts = [str(v).strip() for v in values]
    delimiter = read.delimiter or {"csv": ",", "tsv": "\t"}.get(raw.format)
    hint = _number_format_hint(texts, read, delimiter)
    fix = "correct these cells in the file; if a code means 'missing', add it to read.missing_codes"
    n = len(rows)
    return Problem(
        file=raw.path,
        column=column,
        rows=list(rows),
        values=values,
        rule=f"numbers: {purpose}",
        found=f"{n} {'value' if n == 1 else 'values'} that {'is' if n == 1 else 'are'} "
        "not a number",
        fix=fix if hint is None else f"{hint}; otherwise {fix}",
    )


def _numeric_column(
    raw: RawTable,
    frame: pd.DataFrame,
    column: str,
    purpose: str,
    problems: list[Problem],
    read: ReadConfig | None = None,
) -> np.ndarray:
    values, bad = _to_numbers(frame[column], read)
    if bad.any():
        problems.append(
            _number_problem(
                raw,
                column,
                frame[schema.SOURCE_ROW].to_numpy()[bad],
                list(frame[column].to_numpy(dtype=object)[bad]),
                purpose,
                read,
            )
        )
    return values


def _text_column(series: pd.Series) -> pd.Series:
    """Identifiers as stripped text (``101.0`` -> ``"101"``); empty -> missing."""
    texts = map_distinct(series, lambda v: (_cell_text(v) or None) if not _is_missing(v) else None)
    return pd.Series(texts, index=series.index, dtype="str")


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _apply_value_labels(series: pd.Series, labels: dict[Any, str] | None) -> pd.Series:
    """Replace SPSS/Stata codes by their labels (unlabelled codes are kept)."""
    if not labels:
        return series

    def label(value: Any) -> Any:
        if _is_missing(value):
            return value
        if value in labels:
            return labels[value]
        if isinstance(value, numbers.Real) and float(value) in labels:
            return labels[float(value)]
        return value

    return series.map(label).astype(object)


def _modality_column(
    raw: RawTable, frame: pd.DataFrame, column: str, config: StudyConfig, problems: list[Problem]
) -> pd.Series:
    text = _text_column(_apply_value_labels(frame[column], raw.value_labels.get(column)))
    mapping = config.modality_labels
    if not mapping:
        return text
    targets = set(mapping.values())
    known = text.isna() | text.isin(list(mapping)) | text.isin(list(targets))
    if not known.all():
        unknown = text[~known]
        rows, values = _unique_rows(frame.loc[~known, schema.SOURCE_ROW], list(unknown))
        problems.append(
            Problem(
                file=raw.path,
                column=column,
                rows=rows,
                values=values,
                rule="a modality listed under modality_labels: "
                + ", ".join(repr(k) for k in mapping),
                found=f"{len(rows)} {'row' if len(rows) == 1 else 'rows'} with other labels: "
                + ", ".join(repr(v) for v in sorted(set(unknown))[:10]),
                fix="add these labels under modality_labels in the config (label: suite name), "
                "or correct the cells",
            )
        )
    renamed = map_distinct(text, lambda v: mapping.get(v, v) if isinstance(v, str) else None)
    return pd.Series(renamed, index=text.index, dtype="str")


def _covariate_column(
    raw: RawTable, frame: pd.DataFrame, column: str, read: ReadConfig | None = None
) -> pd.Series:
    """Labelled codes -> labels (text); all-numeric -> float; otherwise stripped text."""
    labels = raw.value_labels.get(column)
    if labels:
        return _text_column(_apply_value_labels(frame[column], labels))
    values, bad = _to_numbers(frame[column], read)
    if not bad.any():
        return pd.Series(values, index=frame.index, dtype="float64")
    return _text_column(frame[column])


def _close_columns(name: str, columns: list[str]) -> list[str]:
    lowered = {c.lower(): c for c in columns}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    return [lowered[c] for c in close]


def _find_header_row(raw: RawTable, expected: list[str]) -> int | None:
    """The first data row that holds most of the expected column names, if any."""
    if raw.format not in ("csv", "tsv", "xlsx") or not expected:
        return None
    needed = max(1, min(len(expected), max(2, (len(expected) + 1) // 2)))
    wanted = set(expected)
    head = raw.data.head(_HEADER_SCAN_ROWS)
    for _, row in head.iterrows():
        cells = {_cell_text(v) for k, v in row.items() if k != schema.SOURCE_ROW}
        if len(wanted & cells) >= needed:
            return int(row[schema.SOURCE_ROW])
    return None


def _missing_column_problems(
    raw: RawTable, config: StudyConfig, missing: list[str], available: list[str]
) -> list[Problem]:
    config_name = display_path(config.path) if config.path is not None else "the config"
    hint = _find_header_row(raw, missing)
    if hint is not None:
        names = ", ".join(repr(c) for c in raw.columns[:3])
        return [
            Problem(
                file=raw.path,
                column=None,
                rows=[hint],
                rule=f"the column names on row {raw.header_row} (read.header_row)",
                found=f"row {raw.header_row} holds {names}…; the configured column names "
                f"are on row {hint}",
                fix=f"set read.header_row: {hint} under read: in {config_name}",
            )
        ]
    problems: list[Problem] = []
    if config.layout == "long":
        pattern = re.compile(config.wide.session_pattern)
        stems = {m.group("var") for c in available if (m := pattern.fullmatch(c)) is not None}
        looks_wide = [u for u in missing if u in stems]
        if looks_wide:
            example = next(c for c in available if pattern.fullmatch(c) is not None)
            problems.append(
                Problem(
                    file=raw.path,
                    column=None,
                    rule="one row per patient-session (layout: long)",
                    found=f"per-session columns such as {example!r}: the file looks wide "
                    "(one row per patient)",
                    fix=f"set layout: wide in {config_name} (and delete columns.session)",
                )
            )
    keys = config.source_keys()
    by_key: dict[str, list[str]] = {}
    for user in missing:
        by_key.setdefault(keys.get(user, "?"), []).append(user)
    for key, users in by_key.items():
        close = {u: _close_columns(u, available) for u in users}
        suggestions = [f"'{u}' -> {', '.join(map(repr, c))}" for u, c in close.items() if c]
        shown = ", ".join(repr(u) for u in users[:5]) + (
            f", … ({len(users)} columns)" if len(users) > 5 else ""
        )
        found = "not in the file" + (
            f"; closest names in the file: {'; '.join(suggestions[:5])}" if suggestions else ""
        )
        if not suggestions:
            found += f"; the file's columns are {', '.join(map(repr, available[:8]))}"
            found += ", …" if len(available) > 8 else ""
        single = len(users) == 1 and close[users[0]]
        fix = (
            f"rename the column in the file, or set {key}: {close[users[0]][0]} in {config_name}"
            if single and not key.endswith(("items", "item_pattern"))
            else f"rename the columns in the file, or correct {key} in {config_name}"
        )
        problems.append(
            Problem(
                file=raw.path,
                column=", ".join(users[:5]) + ("…" if len(users) > 5 else ""),
                rule=f"column {shown} (named by {key} in {config_name})",
                found=found,
                fix=fix,
            )
        )
    return problems


def _date_problem(raw: RawTable, frame: pd.DataFrame, column: str, bad, date_format) -> Problem:
    rows, values = _unique_rows(
        frame[schema.SOURCE_ROW].to_numpy()[bad], list(frame[column].to_numpy(dtype=object)[bad])
    )
    texts = [v for v in frame[column].dropna().to_numpy(dtype=object) if isinstance(v, str)]
    fits = [f for f in suggest_date_formats(texts) if f != date_format]
    if fits:
        fix = f"set read.date_format: '{fits[0]}' under read: in the config"
        if len(fits) > 1:
            fix += f" (the cells also fit '{fits[1]}': choose the one your file uses)"
    else:
        fix = (
            "set read.date_format to the format of these cells (e.g. '%d.%m.%Y' for "
            "05.03.2024), or correct them; numbers in a spreadsheet mean the column is "
            "not formatted as dates"
        )
    expected = f"'{date_format}' (read.date_format)" if date_format else "YYYY-MM-DD (ISO 8601)"
    n = len(rows)
    return Problem(
        file=raw.path,
        column=column,
        rows=rows,
        values=values,
        rule=f"session dates written as {expected}",
        found=f"{n} {'value' if n == 1 else 'values'} that {'is' if n == 1 else 'are'} "
        "not a date in that format",
        fix=fix,
    )


def _unify_ids(config: StudyConfig) -> bool:
    """Whether digit-only ids are written as whole numbers (``cleaning.id_leading_zeros``)."""
    return config.cleaning.id_leading_zeros == "unify"


def id_report(raw: RawTable, config: StudyConfig) -> pd.DataFrame:
    """The ids :func:`map_to_canonical` normalises, and the collisions that causes.

    Parameters
    ----------
    raw : RawTable
        From :func:`read_table`.
    config : StudyConfig
        The study config (``columns`` and ``cleaning.id_leading_zeros``).

    Returns
    -------
    pandas.DataFrame
        As :func:`helpers.ids.id_report` (one row per changed spelling; a
        wide file counts one record per patient row).
    """
    columns = {
        canonical: raw.data[user]
        for canonical, user in config.columns.items()
        if canonical in (schema.THERAPIST_ID, schema.PATIENT_ID) and user in raw.data
    }
    return ids_report(columns, _unify_ids(config))


def _number_by_date(
    raw: RawTable, data: pd.DataFrame, config: StudyConfig, problems: list[Problem]
) -> pd.DataFrame:
    """``data`` with the parsed dates and the session numbers derived from them."""
    column = config.columns[schema.SESSION_DATE]
    dates, bad = parse_session_dates(data[column], config.read.date_format)
    if bad.any():
        problems.append(_date_problem(raw, data, column, bad, config.read.date_format))
    patients = normalise_ids(data[config.columns[schema.PATIENT_ID]], _unify_ids(config))
    first = 0 if config.outcome.intake_session == 0 else 1
    numbers_ = number_sessions_by_date(patients, dates, first).astype("float64")
    return data.assign(**{_PARSED_DATE: dates, _DATED_SESSION: numbers_})


#: Session numbers beyond this (in absolute value) are not whole numbers a float
#: holds exactly, let alone sessions: they are reported, never converted.
MAX_SESSION_NUMBER = 2**53


def _huge_sessions(sessions: np.ndarray) -> np.ndarray:
    """Mask of session numbers that are infinite or too large to be whole numbers."""
    with np.errstate(invalid="ignore"):
        return np.isinf(sessions) | (np.abs(np.nan_to_num(sessions)) > MAX_SESSION_NUMBER)


def _huge_session_problem(raw: RawTable, frame: pd.DataFrame, column: str, huge) -> Problem:
    values = [str(v)[:40] for v in frame[column].to_numpy(dtype=object)[huge]]
    rows, values = _unique_rows(frame[schema.SOURCE_ROW].to_numpy()[huge], values)
    n = len(rows)
    return Problem(
        file=raw.path,
        column=column,
        rows=rows,
        values=values,
        rule=f"session numbers of at most {MAX_SESSION_NUMBER:,} (1 = first session)",
        found=f"{n} infinite or overflowing session {'number' if n == 1 else 'numbers'}",
        fix="correct these cells; a number such as 1e309 or a very long run of digits is "
        "usually a typing or export error",
    )


def _canonical_column(
    raw: RawTable,
    frame: pd.DataFrame,
    user: str,
    canonical: str,
    config: StudyConfig,
    problems: list[Problem],
) -> pd.Series:
    """The user's column ``user`` of ``frame`` typed as the canonical column ``canonical``.

    Ids are normalised, modality labels and covariates converted, scores read
    as numbers; a problem with the cells is appended to ``problems``.
    """
    if canonical in (schema.THERAPIST_ID, schema.PATIENT_ID):
        return normalise_ids(frame[user], _unify_ids(config))
    if canonical == schema.SESSION_DATE:
        return frame[_PARSED_DATE]
    if canonical == schema.MODALITY:
        return _modality_column(raw, frame, user, config, problems)
    if canonical in config.covariates:
        return _covariate_column(raw, frame, user, config.read)
    purpose = _purpose(canonical, config)
    values = _numeric_column(raw, frame, user, purpose, problems, config.read)
    return pd.Series(values, index=frame.index, dtype="float64")


def _drop_column(frame: pd.DataFrame, data: pd.DataFrame, column: str) -> None:
    """Delete ``column`` from ``frame`` and from ``data`` (the table as read, which may share it).

    Arrow's memory pool keeps freed buffers for reuse; they are handed back
    to the system here, so the numbers that replace the text can use them.
    """
    import pyarrow as pa

    for table in (frame, data):
        if column in table.columns:
            del table[column]
    pa.default_memory_pool().release_unused()


def _whole_numbers(values: np.ndarray) -> pd.arrays.IntegerArray:
    """Whole numbers held as floats (NaN where missing) as a nullable ``Int64`` array.

    The callers have checked that every value is a whole number of at most
    :data:`MAX_SESSION_NUMBER`, so the conversion is exact.

    Examples
    --------
    >>> _whole_numbers(np.array([3.0, np.nan, -0.0])).tolist()
    [3, <NA>, 0]
    """
    missing = np.isnan(values)
    whole = np.where(missing, 0.0, values).astype(np.int64)
    return pd.arrays.IntegerArray(whole, missing)


def map_to_canonical(raw: RawTable, config: StudyConfig, *, consume: bool = False) -> pd.DataFrame:
    """Rename, reshape and type a raw table into the canonical long schema.

    Parameters
    ----------
    raw : RawTable
        From :func:`read_table`.
    config : StudyConfig
        From :func:`helpers.config.load_config`.
    consume : bool, default False
        Drop each of ``raw.data``'s columns as soon as it has been converted
        (long files), so the cells as read never sit beside all of the
        converted columns (memory: the text of a CSV file is about 3.5× the
        file).  ``raw.data`` is then left with the columns not converted; pass
        ``True`` only when the caller does not use ``raw.data`` again.  The
        result and the errors raised are the same either way.

    Returns
    -------
    pandas.DataFrame
        One row per patient-session, with the columns of
        ``config.canonical_columns()`` in that order:

        - ``source_row`` (int): row number in the file (for wide files, the
          patient's row);
        - ``therapist_id``, ``patient_id`` (str): normalised by the rules of
          :mod:`helpers.ids` (surrounding spaces and zero-width characters
          removed, ``101.0`` written as ``"101"``, ``"007"`` as ``"7"`` with
          ``cleaning.id_leading_zeros: unify``; :func:`id_report` lists what
          changed); no ``therapist_id`` in a two-level study;
        - ``session`` (Int64): as in the file (0, negative or repeated
          sessions are kept for the cleaning step to log); with
          ``columns.session_date``, numbered per patient in date order
          (:func:`helpers.session_dates.number_sessions_by_date`: 1 = first
          date, or 0 for the first when ``outcome.intake_session`` is 0;
          records on one date share a number; ``<NA>`` without a date);
        - ``session_date`` (datetime64, only with ``columns.session_date``):
          the day of the session, for the cleaning step, which drops it;
        - ``modality`` (str): SPSS/Stata value labels applied, then
          ``modality_labels``;
        - covariates: labelled codes as their labels (str), otherwise numbers
          (float) when every value is a number, else text (str);
        - ``alliance_<rater>_itemNN`` or ``alliance_<rater>``,
          ``outcome_itemNN`` or ``outcome``, ``outcome_intake`` (float):
          values kept as they are, even when out of the instrument's range.

    Raises
    ------
    StudyDataError
        Configured columns missing from the file (with the closest names in
        its header, or the row where the header probably is), text in a
        score or session column (file, column, rows, values), fractional
        session numbers, session dates not in ``read.date_format`` (with a
        format that fits them, when one does), modality labels not listed
        under ``modality_labels``,
        and the wide-file problems of :func:`helpers.reshape.wide_to_long`.
    """
    problems: list[Problem] = []
    sources = config.source_columns()
    session_vars = set(config.session_variables())
    available = raw.columns
    data = raw.data
    summary = f"The data in {raw.name} do not match the study config."

    patient_level = [u for u in sources if u not in session_vars or config.layout == "long"]
    missing = [u for u in patient_level if u not in available]
    if config.layout == "wide":
        if missing and _find_header_row(raw, missing) is not None:
            raise StudyDataError(_missing_column_problems(raw, config, missing, available), summary)
        matched = match_session_columns(available, config, file=raw.path)
        missing = [u for u in missing if u not in matched]
    if missing:
        raise StudyDataError(_missing_column_problems(raw, config, missing, available), summary)

    if config.layout == "wide":
        data = data.copy()
        for var in config.session_variables():
            purpose = _purpose(sources[var], config)
            for session in sorted(matched[var]):
                column = matched[var][session]
                values = _numeric_column(raw, data, column, purpose, problems, config.read)
                data[column] = values
        frame = wide_to_long(data, config, file=raw.path)
        session_column = schema.SESSION
    elif config.sessions_from_dates:
        frame = _number_by_date(raw, data, config, problems)
        session_column = _DATED_SESSION
    else:
        frame = data
        session_column = config.columns[schema.SESSION]

    consume = consume and config.layout == "long"  # a wide file's long frame is new already
    out: dict[str, Any] = {schema.SOURCE_ROW: frame[schema.SOURCE_ROW].astype("int64")}
    for user, canonical in sources.items():
        if canonical == schema.SESSION:
            continue  # converted below, with its own checks
        out[canonical] = _canonical_column(raw, frame, user, canonical, config, problems)
        if consume:
            _drop_column(frame, raw.data, user)

    sessions = _numeric_column(
        raw, frame, session_column, "the session number (1 = first session)", problems, config.read
    )
    fractional = np.isfinite(sessions) & (sessions != np.floor(sessions))
    if fractional.any():
        problems.append(
            Problem(
                file=raw.path,
                column=session_column,
                rows=list(frame[schema.SOURCE_ROW].to_numpy()[fractional]),
                values=list(frame[session_column].to_numpy(dtype=object)[fractional]),
                rule="whole session numbers (1 = first session, 2 = second, …)",
                found=f"{int(fractional.sum())} fractional session "
                + ("number" if fractional.sum() == 1 else "numbers"),
                fix="correct these cells; if the column holds weeks or dates, compute the "
                "session's number first",
            )
        )
    huge = _huge_sessions(sessions)
    if huge.any():
        problems.append(_huge_session_problem(raw, frame, session_column, huge))
    if problems:
        raise StudyDataError(problems, summary)
    out[schema.SESSION] = _whole_numbers(sessions)
    # copy=False: the columns are new already; no consolidated copy of them all (memory)
    ordered = {c: out.pop(c) for c in config.canonical_columns()}
    return pd.DataFrame(ordered, index=frame.index, copy=False).reset_index(drop=True)


def read_study(data_path: str | Path, config: StudyConfig | str | Path) -> pd.DataFrame:
    """Read a data file and map it to the canonical schema in one step.

    Parameters
    ----------
    data_path : str or pathlib.Path
        The data file.
    config : StudyConfig or str or pathlib.Path
        A loaded config, or the path of one.

    Returns
    -------
    pandas.DataFrame
        As :func:`map_to_canonical`.

    Raises
    ------
    StudyDataError
        See :func:`read_table` and :func:`map_to_canonical`.
    """
    if not isinstance(config, StudyConfig):
        from helpers.config import load_config

        config = load_config(config)
    return map_to_canonical(read_table(data_path, config.read), config)


__all__ = [
    "EXTENSION_FORMATS",
    "INSTRUMENT_ITEM_COUNTS",
    "RawTable",
    "map_to_canonical",
    "read_study",
    "read_table",
]
