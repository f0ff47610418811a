"""The line counter of quote-free files and the fast CSV reader built on it.

The fast reader (``loading._read_plain_text``) must give exactly what the
line-by-line reader gives, or hand the file over to it (``None``); the
property test checks that on generated quote-free files, with blank lines,
separator-only lines, CRLF breaks, non-ASCII text, missing codes and a header
below title lines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import helpers.loading as loading
from helpers import textscan
from helpers.config import ReadConfig
from helpers.validation import StudyDataError


def test_scan_counts_lines_fields_and_visible_characters():
    raw = b"a,b,c\n\n1,2\n, ,\r\nx,y,z"
    stats = textscan.scan_lines(raw, ",")
    assert stats.fields.tolist() == [3, 0, 2, 3, 3]
    assert stats.visible.tolist() == [True, False, True, False, True]
    assert stats.starts.tolist() == [0, 6, 7, 11, 16]
    assert stats.ends.tolist() == [5, 6, 10, 14, 21]  # the \r of line 4 is its break
    assert stats.terminated is False


def test_scan_across_chunk_boundaries_equals_one_chunk(monkeypatch):
    rng = np.random.default_rng(7)
    pieces = rng.choice([b"a", b",", b"\n", b" ", b"7"], size=5000)
    raw = b"".join(pieces.tolist()) + b"\n"
    whole = textscan.scan_lines(raw, ",")
    monkeypatch.setattr(textscan, "CHUNK_BYTES", 37)
    chunked = textscan.scan_lines(raw, ",")
    for name in ("starts", "ends", "fields", "visible"):
        assert getattr(whole, name).tolist() == getattr(chunked, name).tolist()
    lines = raw.split(b"\n")[:-1]
    assert whole.fields.tolist() == [ln.count(b",") + 1 if ln else 0 for ln in lines]


def test_scan_skips_a_byte_order_mark():
    raw = b"\xef\xbb\xbfa;b\n1;2\n"
    stats = textscan.scan_lines(raw, ";", start=3)
    assert stats.starts.tolist() == [3, 7]
    assert stats.fields.tolist() == [2, 2]


def _both_readers(path: Path, read: ReadConfig, monkeypatch):
    """(fast result or None, exact result) — each a RawTable or the StudyDataError raised."""
    fast = loading._read_plain_text(path, path.read_bytes(), "csv", read.delimiter or ",", read)
    with monkeypatch.context() as m:
        m.setattr(loading, "_read_plain_text", lambda *a, **k: None)
        try:
            exact = loading.read_table(path, read)
        except StudyDataError as exc:
            exact = exc
    return fast, exact


_cell = st.sampled_from(["1", "22", "", " ", "NA", ".", "é", "x y", "-3.5", "\u00a0"])


@st.composite
def _plain_files(draw):
    width = draw(st.integers(1, 4))
    titles = draw(st.integers(0, 2))
    rows = draw(st.lists(st.lists(_cell, min_size=width, max_size=width), max_size=6))
    extra = draw(st.lists(st.sampled_from(["", ",,", " ", "short", "7,8,9,10,11"]), max_size=2))
    lines = [f"title {i}" for i in range(titles)] + [",".join(f"c{j}" for j in range(width))]
    body = [",".join(r) for r in rows] + extra
    order = draw(st.permutations(range(len(body))))
    lines += [body[i] for i in order]
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    return text, titles + 1, draw(st.sampled_from(["utf-8", "latin-1"]))


def _case_file(folder, case) -> tuple:
    """Write a generated file (text, header row, encoding) as ``folder/s.csv``; its config."""
    text, header_row, encoding = case
    path = folder / "s.csv"
    path.write_bytes(text.encode(encoding))
    return path, ReadConfig(header_row=header_row, encoding=encoding, missing_codes=("", "NA", "."))


@settings(max_examples=150, deadline=None)
@given(_plain_files())
def test_fast_reader_equals_the_exact_reader_or_hands_over(tmp_path_factory, case):
    path, read = _case_file(tmp_path_factory.mktemp("plain"), case)
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, exact = _both_readers(path, read, monkeypatch)
    if fast is None:
        return
    assert not isinstance(exact, StudyDataError), exact
    pd.testing.assert_frame_equal(fast.data, exact.data)
    assert fast.skipped_lines == exact.skipped_lines
    assert fast.physical_records == exact.physical_records


def test_fast_reader_takes_the_demo_export_and_equals_the_exact_reader(monkeypatch):
    path = Path(__file__).parents[1] / "data" / "raw" / "demo" / "sessions.csv"
    read = ReadConfig(missing_codes=("", "NA", "."))
    fast, exact = _both_readers(path, read, monkeypatch)
    assert fast is not None  # the regular demo file takes the fast path
    pd.testing.assert_frame_equal(fast.data, exact.data)
    assert fast.physical_records == exact.physical_records == 4585


@pytest.mark.parametrize(
    "text",
    ['a,b\n1,"2"\n', "a,b\n1,2\r3,4\n", "a,b\n1\n", "a,b\n1,2,3\n", "a,b\n"],
    ids=["quote", "lone-cr", "short-row", "long-row", "no-rows"],
)
def test_irregular_files_go_to_the_exact_reader(tmp_path: Path, text: str):
    path = tmp_path / "s.csv"
    path.write_text(text, encoding="utf-8", newline="")
    read = ReadConfig()
    assert loading._read_plain_text(path, path.read_bytes(), "csv", ",", read) is None


def test_fast_reader_takes_blank_lines_titles_crlf_and_latin1(tmp_path: Path, monkeypatch):
    text = "Export of 2026\r\nid,score\r\n\r\nP1,3\r\n , \r\nP\u00e9,NA\r\n"
    path = tmp_path / "s.csv"
    path.write_bytes(text.encode("latin-1"))
    read = ReadConfig(header_row=2, encoding="latin-1", missing_codes=("NA",))
    fast, exact = _both_readers(path, read, monkeypatch)
    assert fast is not None
    pd.testing.assert_frame_equal(fast.data, exact.data)
    assert fast.data["id"].tolist() == ["P1", "P\u00e9"]
    assert fast.data["score"].isna().tolist() == [False, True]
    assert fast.skipped_lines == {
        1: "above the header (read.header_row: 2)",
        3: "blank line",
        5: "only separators",
    }


def _as_str_columns(data: pd.DataFrame) -> pd.DataFrame:
    """``category`` columns of text decoded to ``str`` (the rest as they are)."""
    decoded = {c: "str" for c in data.columns if isinstance(data[c].dtype, pd.CategoricalDtype)}
    return data.astype(decoded)


@settings(max_examples=150, deadline=None)
@given(_plain_files())
def test_compact_fast_reader_holds_the_cells_of_the_exact_reader(tmp_path_factory, case):
    path, read = _case_file(tmp_path_factory.mktemp("compact"), case)
    fast = loading._read_plain_text(path, path.read_bytes(), "csv", ",", read, compact=True)
    if fast is None:
        return
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(loading, "_read_plain_text", lambda *a, **k: None)
        exact = loading.read_table(path, read)  # the exact reader: str columns
    assert all(isinstance(fast.data[c].dtype, pd.CategoricalDtype) for c in fast.columns)
    pd.testing.assert_frame_equal(_as_str_columns(fast.data), exact.data)
    assert fast.skipped_lines == exact.skipped_lines
    assert fast.physical_records == exact.physical_records


def test_counts_before_counts_the_true_values_before_each_offset():
    from helpers.textscan import counts_before

    mask = np.array([0, 1, 1, 0, 0, 1, 1, 1], dtype=bool)
    ends = np.array([1, 3, 5, 8])
    assert counts_before(mask, ends).tolist() == [0, 2, 2, 5]
    assert counts_before(mask, ends).tolist() == [int(mask[:e].sum()) for e in ends]
    assert counts_before(mask, np.array([], dtype=np.int64)).tolist() == []
    with pytest.raises(ValueError, match="increasing"):
        counts_before(mask, np.array([3, 3]))
