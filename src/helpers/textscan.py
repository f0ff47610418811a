"""Counting lines and fields of a delimited text file without parsing it.

The CSV/TSV reader (:mod:`helpers.loading`) reconciles what its parser read
with an independent count of the file's records.  For a file without quote
characters every line is one record, and this module counts, line by line,
the fields and whether the line holds any visible character — in fixed-size
chunks of the raw bytes with numpy, so the count costs a few passes over the
bytes and memory proportional to the number of lines, not to the file.

Only ASCII-compatible encodings are scanned here (UTF-8 and the single-byte
Western code pages): in them the delimiter, the line feed and the ASCII
letters and digits are single bytes that never occur inside another
character's encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Bytes scanned per chunk (8 MiB: about 40 MB of temporary arrays at most).
CHUNK_BYTES = 1 << 23

_LF, _CR = 10, 13
#: Visible ASCII characters: a line holding one of them (other than the
#: delimiter) has a non-blank cell.
_VISIBLE = np.zeros(256, dtype=bool)
_VISIBLE[0x21:0x7F] = True


@dataclass(frozen=True)
class LineStats:
    """Per-line counts of a quote-free delimited file.

    Attributes
    ----------
    starts, ends : numpy.ndarray
        Byte offsets of each line's first byte and of the byte after its last
        (line breaks excluded; a ``\\r`` before ``\\n`` is part of the break).
    fields : numpy.ndarray
        Fields on each line: delimiters + 1, or 0 for an empty line.
    visible : numpy.ndarray
        Whether the line holds a visible ASCII character other than the
        delimiter (such a line is surely not blank; the others may be, and are
        decided on their decoded text).
    terminated : bool
        Whether the last line ends with a line break.
    """

    starts: np.ndarray
    ends: np.ndarray
    fields: np.ndarray
    visible: np.ndarray
    terminated: bool

    def __len__(self) -> int:
        return len(self.starts)


def _chunk_counts(
    chunk: np.ndarray, base: int, delimiter: int, carry: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Line-feed offsets in ``chunk`` and the running delimiter/visible counts at each."""
    feeds = np.flatnonzero(chunk == _LF)
    is_delimiter = chunk == delimiter
    shown = _VISIBLE[chunk] & ~is_delimiter
    at_delims = carry[0] + counts_before(is_delimiter, feeds + 1)
    at_shown = carry[1] + counts_before(shown, feeds + 1)
    total = (
        carry[0] + int(np.count_nonzero(is_delimiter)),
        carry[1] + int(np.count_nonzero(shown)),
    )
    return feeds + base, at_delims, at_shown, total


def counts_before(mask: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each of the increasing offsets ``ends``: how many of ``mask[:end]`` are true.

    One pass summing the stretches between the offsets (``np.add.reduceat``),
    then a running sum over the stretches: no running count per byte (an
    8-byte integer for each byte of the file, as ``np.cumsum`` would make).

    Examples
    --------
    >>> counts_before(np.array([1, 0, 1, 1, 0, 1], dtype=bool), np.array([1, 3, 4])).tolist()
    [1, 2, 3]
    """
    if not len(ends):
        return np.zeros(0, dtype=np.int64)
    starts = np.concatenate(([0], ends[:-1]))
    if np.any(starts >= ends):
        raise ValueError("counts_before: the offsets must be positive and increasing")
    stretches = np.add.reduceat(mask[: ends[-1]], starts, dtype=np.int64)
    return np.cumsum(stretches)


def scan_lines(raw: bytes, delimiter: str, start: int = 0) -> LineStats:
    """Count the lines, fields and visible characters of ``raw[start:]``.

    Parameters
    ----------
    raw
        The file's bytes, without quote characters and without a lone ``\\r``
        (callers check both).
    delimiter
        The one-character ASCII field separator.
    start
        Offset of the first byte to scan (after a byte-order mark).
    """
    data = np.frombuffer(raw, dtype=np.uint8)
    code = ord(delimiter)
    feeds, delims, shown = [], [], []
    carry = (0, 0)
    for base in range(start, len(data), CHUNK_BYTES):
        chunk = data[base : base + CHUNK_BYTES]
        f, d, s, carry = _chunk_counts(chunk, base, code, carry)
        feeds.append(f)
        delims.append(d)
        shown.append(s)
    ends = np.concatenate(feeds) if feeds else np.empty(0, np.int64)
    at_delims = np.concatenate(delims) if delims else np.empty(0, np.int64)
    at_shown = np.concatenate(shown) if shown else np.empty(0, np.int64)
    terminated = len(data) == start or data[-1] == _LF
    if not terminated:  # the last line has no line break
        ends = np.append(ends, len(data))
        at_delims, at_shown = np.append(at_delims, carry[0]), np.append(at_shown, carry[1])
    return _line_stats(data, start, ends, at_delims, at_shown, terminated)


def _line_stats(
    data: np.ndarray,
    start: int,
    ends: np.ndarray,
    at_delims: np.ndarray,
    at_shown: np.ndarray,
    terminated: bool,
) -> LineStats:
    """Turn running counts at each line's end into per-line counts."""
    starts = np.concatenate(([start], ends[:-1] + 1)).astype(np.int64)
    delims = np.diff(at_delims, prepend=0)
    shown = np.diff(at_shown, prepend=0)
    content_end = ends.copy()
    has_cr = (content_end > starts) & (data[np.maximum(content_end - 1, 0)] == _CR)
    content_end[has_cr] -= 1
    fields = np.where(content_end > starts, delims + 1, 0).astype(np.int64)
    return LineStats(starts, content_end, fields, shown > 0, bool(terminated))
