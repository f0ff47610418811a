"""Wide (one row per patient) to long (one row per patient-session).

In a wide file, per-session values sit in columns whose names carry the
session number, e.g. ``wai_3_s07`` = variable ``wai_3`` at session 7.  The
config key ``wide.session_pattern`` is a regular expression with the named
groups ``var`` and ``session`` that splits such names; a column is a
per-session column when its *whole* name matches.  Every other column is
patient-level and is repeated on each of the patient's session rows.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import schema
from helpers.config import StudyConfig
from helpers.validation import Problem, StudyDataError

# Common ways of naming per-session columns, tried only to suggest a pattern
# when the configured one matches nothing.
_ALTERNATIVE_PATTERNS: tuple[str, ...] = (
    r"^(?P<var>.+)_s(?P<session>\d+)$",
    r"^(?P<var>.+)_t(?P<session>\d+)$",
    r"^(?P<var>.+)_session(?P<session>\d+)$",
    r"^(?P<var>.+)\.(?P<session>\d+)$",
    r"^(?P<var>.+)_(?P<session>\d+)$",
    r"^s(?P<session>\d+)_(?P<var>.+)$",
    r"^t(?P<session>\d+)_(?P<var>.+)$",
)


def _split_columns(
    columns: list[str], pattern: re.Pattern[str]
) -> tuple[dict[str, dict[int, str]], list[str], list[tuple[str, int, list[str]]]]:
    """Per-session columns by (var, session), patient-level columns, repeated pairs."""
    matched: dict[str, dict[int, str]] = {}
    seen: dict[tuple[str, int], list[str]] = {}
    patient_level: list[str] = []
    for column in columns:
        m = pattern.fullmatch(column)
        if m is None:
            patient_level.append(column)
            continue
        var, session = m.group("var"), int(m.group("session"))
        seen.setdefault((var, session), []).append(column)
        matched.setdefault(var, {}).setdefault(session, column)
    repeated = [(v, s, cols) for (v, s), cols in seen.items() if len(cols) > 1]
    return matched, patient_level, repeated


def _suggest_pattern(columns: list[str], wanted: list[str]) -> str | None:
    """The first common pattern under which every wanted variable has session columns."""
    for alternative in _ALTERNATIVE_PATTERNS:
        matched, _, repeated = _split_columns(columns, re.compile(alternative))
        if wanted and not repeated and all(v in matched for v in wanted):
            return alternative
    return None


def match_session_columns(
    columns: list[str], config: StudyConfig, *, file: str | Path | None = None
) -> dict[str, dict[int, str]]:
    """Find each configured per-session variable's columns in a wide file.

    Parameters
    ----------
    columns : list of str
        The file's column names.
    config : StudyConfig
        The study config (``wide.session_pattern`` and the alliance/outcome
        variables, named by their ``var`` stem).
    file : str or pathlib.Path, optional
        The data file, named in error reports.

    Returns
    -------
    dict of str to dict of int to str
        Variable -> {session number -> column name}, for every column that
        matches the pattern (configured or not).

    Raises
    ------
    StudyDataError
        When no column matches the pattern, a configured variable has no
        per-session columns, or one (variable, session) pair is named by two
        columns (e.g. ``wai_1_s1`` and ``wai_1_s01``).
    """
    columns = [c for c in columns if c != schema.SOURCE_ROW]
    pattern_text = config.wide.session_pattern
    pattern = re.compile(pattern_text)
    matched, patient_level, repeated = _split_columns(columns, pattern)
    wanted = config.session_variables()
    where = "wide.session_pattern"
    shown = ", ".join(f"'{c}'" for c in columns[:8]) + (", …" if len(columns) > 8 else "")
    problems: list[Problem] = []

    if not matched:
        better = _suggest_pattern(columns, wanted)
        fix = (
            f"your columns look like this pattern: set {where}: '{better}'"
            if better
            else f"change {where} so that it matches your per-session column names "
            "(named groups var and session), or rename the columns; if the file has one "
            "row per session, set layout: long"
        )
        problems.append(
            Problem(
                file=file,
                column=None,
                rule=f"per-session columns whose whole name matches {where} '{pattern_text}'",
                found=f"no column matches; the file's columns are {shown}",
                fix=fix,
            )
        )
        raise StudyDataError(problems, "The wide file cannot be reshaped to long.")

    for var, session, cols in repeated:
        problems.append(
            Problem(
                file=file,
                column=", ".join(cols),
                rule="one column per variable and session",
                found=f"{len(cols)} columns for variable '{var}' at session {session}",
                fix="keep one of these columns (or rename it if it is a different variable)",
            )
        )
    absent = [v for v in wanted if v not in matched]
    for var in absent:
        similar = [c for c in columns if c.startswith(var)][:5] or difflib.get_close_matches(
            var, columns, n=5, cutoff=0.5
        )
        if var in patient_level:
            found = f"a single column '{var}', not one column per session"
            fix = (
                f"a score must be given per session, in columns named like "
                f"{where} (e.g. '{var}_s01' for the default pattern)"
            )
        else:
            listed = ", ".join(f"'{c}'" for c in similar) if similar else shown
            found = f"no column for '{var}' matches the pattern; similar columns: {listed}"
            better = _suggest_pattern(columns, wanted)
            fix = (
                f"set {where}: '{better}'"
                if better
                else f"rename the columns, or fix the variable name in the config or {where}"
            )
        problems.append(
            Problem(
                file=file,
                column=var,
                rule=f"columns for '{var}' at each session, matching {where} '{pattern_text}'",
                found=found,
                fix=fix,
            )
        )
    clashes = [v for v in matched if v in patient_level or v == schema.SESSION]
    for var in clashes:
        problems.append(
            Problem(
                file=file,
                column=var,
                rule="each variable either per session or patient-level, not both",
                found=f"a column '{var}' and per-session columns of '{var}'",
                fix="rename one of them",
            )
        )
    if schema.SESSION in patient_level:
        problems.append(
            Problem(
                file=file,
                column=schema.SESSION,
                rule="no 'session' column in a wide file (sessions come from the column names)",
                found="a column named 'session'",
                fix="rename or delete it, or set layout: long if the file has one row per session",
            )
        )
    if problems:
        raise StudyDataError(problems, "The wide file cannot be reshaped to long.")
    return matched


def wide_to_long(
    df: pd.DataFrame, config: StudyConfig, *, file: str | Path | None = None
) -> pd.DataFrame:
    """Reshape a wide frame (one row per patient) to long (one row per patient-session).

    Parameters
    ----------
    df : pandas.DataFrame
        The wide data as read (e.g. ``RawTable.data``), with ``source_row``.
    config : StudyConfig
        Gives ``wide.session_pattern`` and the per-session variables.
    file : str or pathlib.Path, optional
        The data file, named in error reports.

    Returns
    -------
    pandas.DataFrame
        Columns: ``source_row`` (of the patient's row), the patient-level
        columns (repeated), ``session`` (int), then one column per variable
        found by the pattern, named by its ``var`` stem.  Rows are ordered by
        the patient's position in the file, then session.  Session rows in
        which every configured per-session variable is missing are dropped
        (in a wide file they stand for sessions that did not happen).

    Raises
    ------
    StudyDataError
        See :func:`match_session_columns`.

    Examples
    --------
    >>> from dataclasses import replace
    >>> from helpers.config import OutcomeConfig, default_template_path, load_config
    >>> cfg = replace(load_config(default_template_path()), layout="wide", alliance={},
    ...               outcome=OutcomeConfig(instrument="phq9", total="x"))
    >>> wide = pd.DataFrame({"source_row": [2], "patient": ["p1"],
    ...                      "x_s01": [3], "x_s02": [4]})
    >>> wide_to_long(wide, cfg)[["patient", "session", "x"]].to_numpy().tolist()
    [['p1', 1, 3], ['p1', 2, 4]]
    """
    columns = [str(c) for c in df.columns]
    matched = match_session_columns(columns, config, file=file)
    patient_level = [c for c in columns if c != schema.SOURCE_ROW and c not in _flat(matched)]
    keep = ([schema.SOURCE_ROW] if schema.SOURCE_ROW in df.columns else []) + patient_level
    sessions = sorted({s for by_session in matched.values() for s in by_session})
    position = np.arange(len(df))
    parts = []
    for session in sessions:
        part = df[keep].copy()
        part["_position"] = position
        part[schema.SESSION] = session
        for var, by_session in matched.items():
            column = by_session.get(session)
            if column is None:
                part[var] = pd.Series([None] * len(df), index=df.index, dtype=object)
            else:
                part[var] = df[column]
        parts.append(part)
    long = pd.concat(parts, ignore_index=True)
    wanted = [v for v in config.session_variables() if v in matched]
    if wanted:
        long = long.loc[long[wanted].notna().any(axis=1)]
    long = long.sort_values(["_position", schema.SESSION], kind="stable")
    long = long.drop(columns="_position").reset_index(drop=True)
    long[schema.SESSION] = long[schema.SESSION].astype("int64")
    return long


def _flat(matched: dict[str, dict[int, str]]) -> set[str]:
    return {c for by_session in matched.values() for c in by_session.values()}
