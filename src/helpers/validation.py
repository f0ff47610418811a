"""Readable reports of what is wrong with a study's input files.

Every check in :mod:`helpers.config`, :mod:`helpers.loading` and
:mod:`helpers.reshape` (and the cleaning step built on them) describes each
mistake it finds as a :class:`Problem` -- which file, which column, which rows,
what was expected, what was found and how to fix it -- and raises them
together as one :class:`StudyDataError`, whose text is a plain report meant for
the researcher, not a traceback.

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

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.paths import relative_to_root

#: At most this many offending values are kept in a :class:`Problem`.
MAX_VALUES = 10


def display_path(path: str | Path | None) -> str | None:
    """A file name as written into reports: relative to the project root, never absolute.

    Parameters
    ----------
    path : str or pathlib.Path or None
        :class:`~pathlib.Path` objects and absolute strings go through
        :func:`helpers.paths.relative_to_root`; relative strings are kept as
        given (with forward slashes).

    Returns
    -------
    str or None
    """
    if path is None:
        return None
    if isinstance(path, Path) or os.path.isabs(path):
        return relative_to_root(path)
    return Path(path).as_posix()


@dataclass
class Problem:
    """One thing wrong with an input file or config.

    Parameters
    ----------
    file : str or pathlib.Path or None
        The file with the problem.  Absolute paths and :class:`~pathlib.Path`
        objects are stored relative to the project root (or as the bare file
        name for files outside it), so reports never contain machine-specific
        paths.
    column : str or None
        The column (or, for config files, the dotted key such as
        ``alliance.client.instrument``) the problem is in.
    rows : list of int
        Row numbers as the user sees them in their file (see the module
        docstring); empty when the problem is not about particular rows.
    values : list
        The offending values, in row order; only the first :data:`MAX_VALUES`
        are kept.
    rule : str
        What was expected.
    found : str
        What was found instead.
    fix : str
        How to fix it.
    row_label : str
        Word used for ``rows`` in reports: ``"row"`` for data files,
        ``"line"`` for config files.

    Examples
    --------
    >>> p = Problem(file="data.csv", column="phq_1", rows=[3], values=["abc"],
    ...             rule="numbers", found="text", fix="correct the cell")
    >>> p.rows
    [3]
    """

    file: str | Path | None
    column: str | None
    rows: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    rule: str = ""
    found: str = ""
    fix: str = ""
    row_label: str = "row"

    def __post_init__(self) -> None:
        self.file = display_path(self.file)
        self.rows = [int(r) for r in self.rows]
        self.values = list(self.values)[:MAX_VALUES]


def _plural(word: str, n: int) -> str:
    return word if n == 1 else f"{word}s"


def _format_rows(rows: Sequence[int], max_rows: int, label: str) -> str:
    shown = ", ".join(str(r) for r in rows[:max_rows])
    text = f"{_plural(label, len(rows))} {shown}"
    if len(rows) > max_rows:
        text += f", … ({len(rows)} {_plural(label, len(rows))} in total)"
    return text


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    try:
        if pd.isna(value):
            return "<missing>"
    except (TypeError, ValueError):
        pass
    return str(value)


def _format_one(problem: Problem, max_rows: int) -> str:
    where = [problem.file if problem.file else "study input"]
    if problem.column:
        noun = "key" if problem.row_label == "line" else "column"
        where.append(f"{noun} '{problem.column}'")
    if problem.rows:
        where.append(_format_rows(problem.rows, max_rows, problem.row_label))
    lines = [", ".join(where)]
    if problem.rule:
        lines.append(f"expected: {problem.rule}")
    if problem.found:
        lines.append(f"found:    {problem.found}")
    shown_values = [_format_value(v) for v in problem.values[:max_rows]]
    if shown_values and not all(v in problem.found for v in shown_values):
        lines.append(f"values:   {', '.join(shown_values)}")
    if problem.fix:
        lines.append(f"fix:      {problem.fix}")
    return "\n".join(lines)


def format_problems(problems: Iterable[Problem], max_rows: int = 10) -> str:
    """Render problems as a numbered, plain-text report.

    Parameters
    ----------
    problems : iterable of Problem
        The problems to report, in the order given.
    max_rows : int, default 10
        At most this many row numbers and values are listed per problem; the
        total is given when there are more.

    Returns
    -------
    str
        One block per problem: where (file, column, rows), then the
        ``expected``, ``found``, ``values`` and ``fix`` lines.

    Examples
    --------
    >>> print(format_problems([Problem("data.csv", "session", [4], [2.5],
    ...       "whole session numbers", "a fractional session", "round it")]))
    1 problem found:
    <BLANKLINE>
    [1] data.csv, column 'session', row 4
        expected: whole session numbers
        found:    a fractional session
        values:   2.5
        fix:      round it
    """
    problems = list(problems)
    if not problems:
        return "No problems found."
    header = f"{len(problems)} {_plural('problem', len(problems))} found:"
    blocks = []
    for number, problem in enumerate(problems, start=1):
        tag = f"[{number}] "
        body = _format_one(problem, max_rows).splitlines()
        indent = " " * len(tag)
        blocks.append("\n".join([tag + body[0], *(indent + line for line in body[1:])]))
    return header + "\n\n" + "\n\n".join(blocks)


class StudyDataError(Exception):
    """A study input (data file or config) that cannot be used as it is.

    Holds every :class:`Problem` found; ``str(error)`` is the readable report
    from :func:`format_problems`, preceded by an optional one-line summary.

    Parameters
    ----------
    problems : Problem or iterable of Problem
        What is wrong.
    summary : str, optional
        One line saying what was being done, e.g. ``"Could not read
        data/raw/my_study.csv."``.

    Examples
    --------
    >>> err = StudyDataError([Problem("study.yml", "layout", [7], ["longg"],
    ...     "one of: long, wide", "'longg'", "did you mean 'long'?", "line")])
    >>> len(err.problems)
    1
    """

    def __init__(self, problems: Problem | Iterable[Problem], summary: str | None = None) -> None:
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        self.summary = summary
        super().__init__(self._render())

    def _render(self) -> str:
        report = format_problems(self.problems)
        return f"{self.summary}\n{report}" if self.summary else report

    def __str__(self) -> str:
        return self._render()

    def _render_traceback_(self) -> list[str]:
        """How IPython/Jupyter shows the error: the report, without a traceback."""
        return ["StudyDataError: the input cannot be used as it is.", "", *str(self).splitlines()]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems, self.summary))

    def to_frame(self) -> pd.DataFrame:
        """The problems as a table, one row per problem.

        Returns
        -------
        pandas.DataFrame
            Columns ``file``, ``column``, ``rows`` (all row numbers, comma
            separated), ``n_rows``, ``values`` (the kept offending values,
            ``" | "`` separated), ``rule``, ``found``, ``fix``.
        """
        records = [
            {
                "file": p.file,
                "column": p.column,
                "rows": ", ".join(str(r) for r in p.rows),
                "n_rows": len(p.rows),
                "values": " | ".join(_format_value(v) for v in p.values),
                "rule": p.rule,
                "found": p.found,
                "fix": p.fix,
            }
            for p in self.problems
        ]
        columns = ["file", "column", "rows", "n_rows", "values", "rule", "found", "fix"]
        return pd.DataFrame.from_records(records, columns=columns)


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
    ValueError
        Columns are missing; the message names them, the columns present, and ``hint``.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{where} expects {what} as a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{where}: {what} has no column(s) {missing}. Columns present: "
            f"{list(df.columns)}. {hint}"
        )
