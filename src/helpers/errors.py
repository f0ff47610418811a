"""One hierarchy for the errors the package raises on purpose.

Every error the package raises because a user's input, setting or model
cannot be used is a :class:`HelpersError`; ``except HelpersError`` catches all
of them and nothing else.  The classes::

    HelpersError
    ├── StudyDataError              a study input cannot be used; a report, no traceback
    │   ├── ConfigError             the study config (study.yml)
    │   ├── OutputFolderError       an output folder that cannot be written safely
    │   └── DataInputError          a frame handed to an analysis (also a ValueError)
    ├── SettingsError               an option of a call or a run (also a ValueError)
    │   └── PowerSettingsError      a design or power-study setting
    ├── ModelSpecificationError     a model that cannot be fitted as given (ValueError)
    │   ├── FormulaError            the formula cannot be read
    │   ├── UnsupportedModelError   no exact equivalent on the chosen fitting path
    │   └── ModelDataError          the data do not fit the model
    ├── EngineInputError            data or arguments the engine cannot take (ValueError)
    ├── PlotInputError              a frame or argument a plot cannot use (ValueError)
    ├── LedgerMismatchError         the exclusion ledger does not reconcile (AssertionError)
    └── NotebookFailedError         a notebook of the suite stopped (RuntimeError)

The classes that were ``ValueError``, ``AssertionError`` or ``RuntimeError``
before this module existed still are, so ``except ValueError`` keeps working.

Structure
---------
Each error carries what is wrong in the same fields: ``file``, ``column``,
``rows``, ``values``, ``expected``, ``found`` and ``fix``, collected as
:class:`Problem` records in ``error.problems`` (empty when the message says it
all).  A :class:`StudyDataError` may hold many problems and its text is the
numbered report of :func:`format_problems`; the other classes keep a
one-paragraph message, followed by the ``fix`` when the message does not
already say it::

    raise SettingsError(
        "simulate_study: n_therapists must be a whole number >= 2; got 1.",
        column="n_therapists", found="1", expected="a whole number >= 2",
        fix="Pass e.g. n_therapists=10.",
    )

Data errors (the :class:`StudyDataError` branch) render without a traceback:
the command line prints their report and exits with status 2, and Jupyter
shows the report alone (``_render_traceback_``).  The command line prints
the other user errors (settings, model, engine, plot) as one ``error:`` line
with status 2 as well; :class:`LedgerMismatchError` is a bug of the suite and
is reported as one.

The old homes (``helpers.validation.StudyDataError``,
``helpers.models.FormulaError``, ``helpers.power.PowerSettingsError``, …)
import these classes, so code written against them keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.paths import display_path, relative_to_root

if (
    TYPE_CHECKING
):  # pandas is imported where it is used: the runner's processes need only the classes
    import pandas as pd

__all__ = [
    "MAX_VALUES",
    "ConfigError",
    "DataInputError",
    "EngineInputError",
    "FormulaError",
    "HelpersError",
    "LedgerMismatchError",
    "ModelDataError",
    "ModelSpecificationError",
    "NotebookFailedError",
    "OutputFolderError",
    "PlotInputError",
    "PowerSettingsError",
    "Problem",
    "SettingsError",
    "StudyDataError",
    "UnsupportedModelError",
    "format_problems",
]

#: At most this many offending values are kept in a :class:`Problem`.
MAX_VALUES = 10


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
    import pandas as pd

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


# --------------------------------------------------------------------------------------
# The base
# --------------------------------------------------------------------------------------


class HelpersError(Exception):
    """Base of every error the package raises on purpose.

    Parameters
    ----------
    message : str
        What is wrong, in a sentence or two (the text of the error).
    file, column, rows, values, expected, found, fix
        The structured parts of the message (see :class:`Problem`); when any
        is given, ``problems`` holds them as one :class:`Problem`.  A ``fix``
        the message does not already contain is appended to the text.

    Examples
    --------
    >>> err = HelpersError("f: level is 95.", column="level", found="95",
    ...                    expected="a proportion", fix="Pass level=0.95.")
    >>> str(err)
    'f: level is 95. Pass level=0.95.'
    >>> err.problems[0].column
    'level'
    """

    def __init__(
        self,
        message: str = "",
        *,
        file: str | Path | None = None,
        column: str | None = None,
        rows: Iterable[int] = (),
        values: Iterable[Any] = (),
        expected: str = "",
        found: str = "",
        fix: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        rows, values = list(rows), list(values)
        structured = file or column or rows or values or expected or found or fix
        self.problems: list[Problem] = (
            [Problem(file, column, rows, values, expected, found, fix)] if structured else []
        )

    def __str__(self) -> str:
        if self.fix and self.fix not in self.message:
            return f"{self.message} {self.fix}".strip()
        return self.message

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
        import pandas as pd

        return pd.DataFrame.from_records(records, columns=columns)


# --------------------------------------------------------------------------------------
# Data errors: reports without a traceback
# --------------------------------------------------------------------------------------


class StudyDataError(HelpersError):
    """A study input (data file or config) that cannot be used as it is.

    Holds every :class:`Problem` found; ``str(error)`` is the readable report
    from :func:`format_problems`, preceded by an optional one-line summary.
    The command line prints the report without a traceback (exit status 2),
    and so does Jupyter.

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
        self.problems = list(problems)
        self.summary = summary
        self.fix = ""
        self.message = self._render()
        Exception.__init__(self, self.message)

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


class ConfigError(StudyDataError):
    """The study config (``study.yml``) cannot be used as it is; problems name its lines."""


class OutputFolderError(StudyDataError):
    """An output folder that cannot be written safely (it holds inputs, is a file, is busy)."""


class DataInputError(StudyDataError, ValueError):
    """A data frame handed to an analysis function cannot be used as it is.

    Raised with a one-paragraph message and the structured fields of
    :class:`HelpersError` (not a list of problems); a :class:`StudyDataError`
    for the command line and Jupyter, a ``ValueError`` for callers.

    Examples
    --------
    >>> err = DataInputError("f: column 'x' holds text.", column="x",
    ...                      fix="Score and clean the data first.")
    >>> str(err)
    "f: column 'x' holds text. Score and clean the data first."
    >>> isinstance(err, StudyDataError) and isinstance(err, ValueError)
    True
    """

    def __init__(self, message: str = "", **fields: Any) -> None:
        HelpersError.__init__(self, message, **fields)
        self.summary = None

    def __str__(self) -> str:
        return HelpersError.__str__(self)

    def _render(self) -> str:
        return str(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.fix, self.problems))


def _rebuild(
    cls: type[HelpersError], message: str, fix: str, problems: list[Problem]
) -> HelpersError:
    """Unpickle an error of the one-message kind (used by ``__reduce__``)."""
    err = cls(message)
    err.fix, err.problems = fix, problems
    return err


# --------------------------------------------------------------------------------------
# Settings, models, engine, plots
# --------------------------------------------------------------------------------------


class SettingsError(HelpersError, ValueError):
    """An option of a call or a run that cannot be used (out of range, unknown, clashing).

    Examples
    --------
    >>> raise SettingsError("f: level must be in (0, 1); got 95.", fix="Pass level=0.95.")
    Traceback (most recent call last):
    ...
    helpers.errors.SettingsError: f: level must be in (0, 1); got 95. Pass level=0.95.
    """


class PowerSettingsError(SettingsError):
    """A design or power-study setting that cannot be used (the message says how to fix)."""


class ModelSpecificationError(HelpersError, ValueError):
    """A mixed model that cannot be fitted as specified (formula, model, data)."""


class FormulaError(ModelSpecificationError):
    """The formula cannot be read as an lme4 mixed-model formula."""


class UnsupportedModelError(ModelSpecificationError):
    """The lme4 model has no exact equivalent on the chosen fitting path."""


class ModelDataError(ModelSpecificationError):
    """The data do not fit the model (missing columns, too few groups, ...)."""


class EngineInputError(HelpersError, ValueError):
    """The data or arguments do not fit the nested mixed model (message says how to fix)."""


class PlotInputError(HelpersError, ValueError):
    """A data frame or argument passed to a plot function cannot be plotted.

    The message says which function and argument, which column and rows, what
    was expected, what was found and how to fix it.
    """


# --------------------------------------------------------------------------------------
# Not the user's input
# --------------------------------------------------------------------------------------


class LedgerMismatchError(HelpersError, AssertionError):
    """Raised when the counts of the exclusion ledger do not reconcile (a bug of the suite)."""


class NotebookFailedError(HelpersError, RuntimeError):
    """A notebook of the suite stopped with an error during ``make all``.

    Parameters
    ----------
    name : str
        The notebook's name.
    err : Exception
        The error it stopped with (nbclient's ``CellExecutionError`` or any other).
    partial : pathlib.Path
        The partly executed copy kept for inspection.
    """

    def __init__(self, name: str, err: Exception, partial: Path) -> None:
        self.name, self.partial = name, partial
        ename = getattr(err, "ename", type(err).__name__)
        evalue = getattr(err, "evalue", str(err))
        cell = getattr(err, "exec_count", "?")
        self.ename, self.evalue, self.exec_count = str(ename), str(evalue), cell
        super().__init__(
            f"{name} stopped at cell [{cell}] with {ename}:\n{evalue}\n\n"
            f"The partly executed notebook is {relative_to_root(partial)}."
        )
