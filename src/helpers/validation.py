"""Readable reports of what is wrong with a study's input files.

Every check in :mod:`helpers.config`, :mod:`helpers.loading` and
:mod:`helpers.reshape` (and the cleaning step built on them) describes each
mistake it finds as a :class:`Problem` -- which file, which column, which rows,
what was expected, what was found and how to fix it -- and raises them
together as one :class:`StudyDataError`, whose text is a plain report meant for
the researcher, not a traceback.  :class:`Problem`, :func:`format_problems` and
the error classes are defined in :mod:`helpers.errors` (the package's one error
hierarchy) and imported here, their old home; :func:`display_path` lives in
:mod:`helpers.paths`.  This module adds the helpers analysis functions use to
check their input frames (:func:`require_frame`, :func:`numeric_column`,
:func:`describe_rows`).

Row numbers
-----------
Rows are numbered the way the user sees them when they open their own file:

* CSV/TSV: the line number in a text editor (1 = the first line), so with the
  header on line 1 the first data record is row 2.  A record whose quoted cell
  spans several lines is numbered by the line it starts on.
* Excel: the worksheet row number shown at the left of the sheet (again, the
  header row counts).
* SPSS, Stata and Parquet files have no header line: the 1-based case number
  (row 1 = the first case, as in SPSS's Data View).
* Config files (YAML): the line number, reported as "line" rather than "row".

The same numbers are carried through the analysis in the ``source_row``
column, so a row in the exclusion ledger can be found in the raw file.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from helpers.errors import (  # noqa: F401 (Problem & co. re-exported: their old home)
    MAX_VALUES,
    DataInputError,
    Problem,
    StudyDataError,
    format_problems,
)
from helpers.paths import display_path  # noqa: F401 (re-exported)


def describe_rows(
    labels: Iterable[Any],
    values: Iterable[Any] | None = None,
    limit: int = 5,
    *,
    unit: str | None = None,
) -> str:
    """The first few offending row labels (and values) for an error message.

    The one row-list formatter of the package: every error message that names
    rows, terms or ids lists them through it.  ``unit`` names what the "more"
    counts (``"row(s)"``).

    >>> describe_rows([3, 7, 9], ["a", "b", "c"], limit=2)
    "3 (value 'a'), 7 (value 'b') and 1 more"
    >>> describe_rows(["p1", "p2", "p3"], limit=1, unit="row(s)")
    "'p1' and 2 more row(s)"
    """
    labels = list(labels)
    shown = labels[:limit]
    if values is None:
        text = ", ".join(repr(label) for label in shown)
    else:
        vals = list(values)[:limit]
        text = ", ".join(f"{lab!r} (value {val!r})" for lab, val in zip(shown, vals, strict=True))
    if len(labels) > len(shown):
        text += f" and {len(labels) - len(shown)} more" + (f" {unit}" if unit else "")
    return text


def numeric_column(
    frame: pd.DataFrame,
    column: str,
    where: str,
    *,
    finite: bool = False,
    fix: str = "Score and clean the data first.",
    row_labels: Callable[[pd.DataFrame, np.ndarray], Sequence[Any]] | None = None,
    error: type[ValueError] = ValueError,
) -> np.ndarray:
    """``frame[column]`` as a float array (NaN = missing), refusing values that are not numbers.

    The one converter of an analysis input column to numbers (the file readers
    of :mod:`helpers.loading` parse text with the study's read settings and
    collect :class:`Problem` records instead).

    Parameters
    ----------
    frame : pandas.DataFrame
        The input table.
    column : str
        Column to convert.
    where : str
        Name of the calling function, first word of the message.
    finite : bool, default False
        Also refuse infinite values and true/false columns (scores only).
    fix : str
        The last sentence of the message: what to do.
    row_labels : callable, optional
        ``row_labels(frame, mask)`` names the offending rows (default: index labels).
    error : type of ValueError, default ValueError
        The exception raised (e.g. :class:`helpers.plots.PlotInputError`).

    Examples
    --------
    >>> numeric_column(pd.DataFrame({"x": ["1", None, "2.5"]}), "x", "f")
    array([1. , nan, 2.5])
    >>> numeric_column(pd.DataFrame({"x": ["1", "often"]}), "x", "f")
    Traceback (most recent call last):
    ...
    ValueError: f: column 'x' holds values that are not numbers in rows 1 (value 'often'). Score and clean the data first.
    """  # noqa: E501
    raw = frame[column]
    if finite and pd.api.types.is_bool_dtype(raw):
        raise error(
            f"{where}: column {column!r} is true/false, not a score. Pass a numeric column."
        )
    values = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
    bad = raw.notna().to_numpy() & ~(np.isfinite(values) if finite else ~np.isnan(values))
    if bad.any():
        labels = frame.index[bad] if row_labels is None else row_labels(frame, bad)
        numbers = "(finite) numbers" if finite else "numbers"
        raise error(
            f"{where}: column {column!r} holds values that are not {numbers} in rows "
            f"{describe_rows(labels, list(raw[bad]))}. {fix}"
        )
    return values


#: What to do when a helper's input frame lacks a canonical column.
CANONICAL_NAMES_HINT = (
    "Map your columns onto the canonical names with the study config, or pass the right "
    "column names."
)


def require_frame(
    df: object,
    columns: Iterable[str],
    where: str,
    what: str = "the frame",
    hint: str = CANONICAL_NAMES_HINT,
) -> None:
    """Check that ``df`` is a DataFrame holding ``columns``; raise a clear error if not.

    Raises
    ------
    TypeError
        ``df`` is not a pandas DataFrame.
    DataInputError
        Columns are missing (a ``ValueError``); the message names them, the
        columns present, and ``hint``.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{where} expects {what} as a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataInputError(
            f"{where}: {what} has no column(s) {missing}. Columns present: "
            f"{list(df.columns)}. {hint}",
            column=missing[0],
            found=f"no column(s) {missing}",
            expected=f"columns {list(columns)}",
            fix=hint,
        )


def with_columns(df: pd.DataFrame, columns: dict[str, Any]) -> pd.DataFrame:
    """A new frame: ``df`` with ``columns`` set, as ``out[name] = values`` would set them.

    A name ``df`` has keeps its position; new names follow, in the order
    given.  A Series is aligned on ``df``'s index; an array must have one
    value per row.  Unlike ``out[name] = values``, which copies the values,
    the new frame holds the given Series and arrays and shares ``df``'s other
    columns (copy-on-write: writing to either frame copies first, so ``df``
    is not modified); only a read-only array (``Series.to_numpy()`` of a
    column) is copied, since pandas would write into it.  At a million rows
    each copy of a float column is 8 MB, and scoring and the features add
    about twenty (memory).

    Examples
    --------
    >>> df = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    >>> with_columns(df, {"b": np.array([5, 6]), "c": np.array([7, 8])}).to_dict("list")
    {'a': [1, 2], 'b': [5, 6], 'c': [7, 8]}
    """
    data: dict[Any, Any] = {name: df[name] for name in df.columns}
    for name, values in columns.items():
        if isinstance(values, pd.Series):
            if not values.index.equals(df.index):
                values = values.reindex(df.index)
        elif len(values) != len(df):
            raise ValueError(f"with_columns: {name!r} has {len(values)} values for {len(df)} rows")
        elif isinstance(values, np.ndarray) and not values.flags.writeable:
            values = values.copy()
        data[name] = values
    return pd.DataFrame(data, index=df.index, columns=list(data), copy=False)


def widen_half(values: pd.Series) -> pd.Series:
    """A float16 column (compact item scores) as float32; any other column as it is.

    numpy computes in float16 in software, 5–20 times slower than in float32;
    every float16 is a float32 exactly, so comparisons give the same answers.

    Examples
    --------
    >>> widen_half(pd.Series([1.0, 2.0], dtype="float16")).dtype
    dtype('float32')
    >>> widen_half(pd.Series([1.0, 2.0])).dtype
    dtype('float64')
    """
    return values.astype(np.float32) if values.dtype == np.float16 else values


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (macOS, Windows, musl)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


def release_freed_memory() -> None:
    """Give the memory of dropped frames back to the system.

    Arrow's pool (text columns) and glibc's heap (numpy arrays up to 32 MB)
    keep freed pages for reuse; without this the process keeps every large
    frame a cleaning step has replaced, about a third of its peak at a
    million rows (``bench/bench_cleaning.py``).  Outputs are not affected.
    Used between the cleaning steps (:func:`helpers.pipeline.clean_study`)
    and before a cleaning rule copies the rows it keeps
    (:func:`helpers.cleaning.rows_kept`).
    """
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
