"""Identifier hygiene: patient and therapist ids written the same way.

:func:`helpers.loading.map_to_canonical` turns the id columns into text with
:func:`normalise_ids`.  The rules, applied to every id cell:

1. Numeric cells that hold a whole number are written without decimals
   (a spreadsheet's ``101.0`` is ``"101"``).
2. Zero-width characters (U+200B zero-width space, U+200C/U+200D zero-width
   (non-)joiner, U+2060 word joiner, U+FEFF byte-order mark) are removed
   wherever they are: they are invisible, so two ids differing only by them
   cannot be told apart by a person.
3. Surrounding whitespace (spaces, tabs, no-break spaces) is removed.
4. Only with ``cleaning.id_leading_zeros: unify``: an id made of digits only,
   optionally followed by ``.0`` (``"007"``, ``"101.0"``), is written as its
   whole number (``"7"``, ``"101"``).  The default, ``keep``, leaves ``"007"``
   and ``"7"`` as two different ids.

An id that is empty after these rules is missing.  :func:`id_report` lists
every id these rules changed and flags *collisions*: different spellings in
the file that became the same id (``"P7"`` and ``" P7"``, or ``"007"`` and
``"7"`` when unifying) and are now treated as one person.

Examples
--------
>>> normalise_id(" P7\\u200b", unify_numbers=False)
'P7'
>>> normalise_id("007", unify_numbers=True), normalise_id("007", unify_numbers=False)
('7', '007')
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

#: Invisible characters removed from ids wherever they are.
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
#: Choices of ``cleaning.id_leading_zeros``.
ID_LEADING_ZEROS: tuple[str, ...] = ("keep", "unify")
#: Columns of :func:`id_report`.
ID_REPORT_COLUMNS = ["column", "original", "normalised", "records", "collides_with"]

_ZERO_WIDTH_TABLE = str.maketrans("", "", ZERO_WIDTH)
_WHOLE_NUMBER = re.compile(r"^\d+(\.0*)?$")


def id_as_written(value: Any) -> str | None:
    """An id cell as text, before any normalisation (``None`` when missing).

    A numeric cell holding a whole number is written without decimals.
    """
    if _is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def normalise_id(text: str | None, unify_numbers: bool) -> str | None:
    """Apply the rules of the module docstring to one id (``None`` when empty).

    Parameters
    ----------
    text : str or None
        The id as written (:func:`id_as_written`).
    unify_numbers : bool
        Rule 4: write digit-only ids as their whole number.

    Returns
    -------
    str or None
    """
    if text is None:
        return None
    cleaned = text.translate(_ZERO_WIDTH_TABLE).strip()
    if unify_numbers and _WHOLE_NUMBER.match(cleaned):
        cleaned = str(int(cleaned.split(".")[0]))
    return cleaned or None


def normalise_ids(series: pd.Series, unify_numbers: bool = False) -> pd.Series:
    """An id column as normalised text (missing where empty), same index.

    Parameters
    ----------
    series : pandas.Series
        The id column as read (text, numbers or a mix).
    unify_numbers : bool, default False
        ``cleaning.id_leading_zeros: unify``.

    Returns
    -------
    pandas.Series
        ``str`` dtype.
    """
    texts = map_distinct(series, lambda v: normalise_id(id_as_written(v), unify_numbers))
    return pd.Series(texts, index=series.index, dtype="str")


def map_distinct(series: pd.Series, func: Callable[[Any], Any]) -> list[Any]:
    """``[func(v) for v in series]``, calling ``func`` once per distinct value of a text column.

    Text columns (``str`` dtype, as CSV/TSV cells are read) are factorised and
    ``func`` runs on each distinct value once (missing cells get
    ``func(None)``), so a 5M-row column with 100k patients costs 100k calls.
    A ``category`` column of text (CSV/TSV cells read with
    ``compact_text``) runs ``func`` once per category.  Other dtypes (Excel,
    SPSS, Parquet cells that mix numbers, text and booleans, where
    ``1 == 1.0 == True``) are mapped value by value.
    """
    if _is_text_category(series):
        codes, uniques = series.cat.codes.to_numpy(), series.cat.categories
    elif isinstance(series.dtype, pd.StringDtype):
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
    else:
        return [func(v) for v in series.to_numpy(dtype=object)]
    mapped = np.asarray([func(u) for u in uniques] + [func(None)], dtype=object)
    return mapped[codes].tolist()  # code -1 (missing) takes the last entry


def _is_text_category(series: pd.Series) -> bool:
    """Whether ``series`` is a ``category`` column of text."""
    return isinstance(series.dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(
        series.cat.categories
    )


def id_report(columns: dict[str, pd.Series], unify_numbers: bool = False) -> pd.DataFrame:
    """Every id spelling the rules changed, and the collisions they caused.

    Parameters
    ----------
    columns : dict of str to pandas.Series
        Canonical id column (``patient_id``, ``therapist_id``) -> its cells as read.
    unify_numbers : bool, default False
        ``cleaning.id_leading_zeros: unify``.

    Returns
    -------
    pandas.DataFrame
        One row per changed spelling, columns :data:`ID_REPORT_COLUMNS`:
        the canonical column, the id as written (``repr``, so spaces and
        invisible characters show), the id it became, the number of records
        with that spelling, and the other spellings in the file that became
        the same id (``""`` when none: no collision).
        Empty when no id changed.
    """
    rows = []
    for column, series in columns.items():
        counts = spelling_counts(series)
        normalised = {original: normalise_id(original, unify_numbers) for original in counts}
        spellings: dict[str, list[str]] = {}
        for original, new in normalised.items():
            if new is not None:
                spellings.setdefault(new, []).append(original)
        for original, n in counts.items():
            new = normalised[original]
            if new != original:
                others = [repr(o) for o in spellings.get(new, []) if o != original]
                rows.append((column, repr(original), new, int(n), ", ".join(others)))
    return _report_frame(rows)


def spelling_counts(series: pd.Series) -> dict[str, int]:
    """Each id as written (:func:`id_as_written`) → its records, in order of first appearance.

    What ``written.dropna().value_counts(sort=False)`` gives for the column
    as written, but a text column is counted by its codes (one
    :func:`id_as_written` per distinct cell, no Python string per row: 0.7 s
    and a 1M-item list less at a million rows).  Missing cells are left out.

    Examples
    --------
    >>> spelling_counts(pd.Series(["b", "a", None, "b"], dtype="str"))
    {'b': 2, 'a': 1}
    """
    if _is_text_category(series):
        codes, uniques = series.cat.codes.to_numpy(), series.cat.categories
    elif isinstance(series.dtype, pd.StringDtype):
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
    else:
        written = pd.Series([id_as_written(v) for v in series.to_numpy(dtype=object)], dtype=object)
        return {k: int(n) for k, n in written.dropna().value_counts(sort=False).items()}
    uniques = uniques.tolist()  # Python values: indexing Arrow text one by one is slow
    present = np.flatnonzero(codes >= 0)
    records = np.bincount(codes[present], minlength=len(uniques))
    first = np.full(len(uniques), len(codes))
    np.minimum.at(first, codes[present], present)
    counts: dict[str, int] = {}
    for code in np.argsort(first, kind="stable"):
        text = id_as_written(uniques[code]) if records[code] else None
        if text is not None:
            counts[text] = counts.get(text, 0) + int(records[code])
    return counts


def empty_id_report() -> pd.DataFrame:
    """An :func:`id_report` with no rows (no id changed)."""
    return _report_frame([])


def _report_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=ID_REPORT_COLUMNS)
    return frame.astype({"column": "str", "original": "str", "normalised": "str"}).astype(
        {"records": "int64", "collides_with": "str"}
    )


def describe_id_report(report: pd.DataFrame) -> str:
    """One sentence on :func:`id_report` (empty when no id changed).

    >>> describe_id_report(id_report({"patient_id": pd.Series(["P7", " P7", "P8"])}))
    "identifiers: 1 id spelling normalised (1 record); 1 collision: ' P7' and 'P7' are now one \
id 'P7' (patient_id)."
    """
    if report.empty:
        return ""
    n = len(report)
    records = int(report["records"].sum())
    text = (
        f"identifiers: {n} id {'spelling' if n == 1 else 'spellings'} normalised "
        f"({records} {'record' if records == 1 else 'records'})"
    )
    clashes = report.loc[report["collides_with"] != ""]
    groups = clashes.drop_duplicates(["column", "normalised"])
    if groups.empty:
        return text + "; no collisions."
    shown = "; ".join(
        f"{row.original} and {row.collides_with} are now one id {row.normalised!r} ({row.column})"
        for row in groups.head(5).itertuples()
    )
    k = len(groups)
    more = f"; … ({k} in all)" if k > 5 else ""
    return f"{text}; {k} {'collision' if k == 1 else 'collisions'}: {shown}{more}."
