"""One presentation layer: result tables as display strings.

Notebooks and the HTML report show tables through :func:`format_table` (or
:func:`show`, its notebook spelling), so a number looks the same wherever it
appears: counts as integers, p-values in APA style, every other number with
the same number of decimals down a column.  The saved result tables keep full
precision; only what is shown is formatted.

The rules, applied to each column in turn (the column's *name* is its label,
or the last level of a :class:`~pandas.MultiIndex` label):

1. **p-values.**  A column named ``p``, ``p_*``, ``*_p``, ``p (…)``,
   ``p-value`` or ``pvalue`` holds p-values: :func:`format_p` writes
   ``"< .001"``, three decimals without a leading zero (``".034"``), and
   ``"> .999"`` for values that round to 1.  Text that already reads as a
   p-value (``"<0.001"``, ``"0.034"``) is rewritten the same way; other text
   is kept.
2. **Booleans** become ``"yes"`` / ``"no"`` in any column.
3. **Counts.**  When every number of a column is a whole number, the column
   is shown as integers (:func:`format_count`) if its name says it is a count
   (``n``, ``N``, ``k``, ``nobs``, ``count(s)``, ``n_*``, ``*_n``, ``n (…)``,
   ``number of …`` or a name ending in a counted noun such as ``patients``,
   ``sessions``, ``therapists``, ``records``, ``episodes``, ``replicates``)
   *or* if its name is not estimate-like.  A name is estimate-like when one of
   its words (split at spaces, underscores and punctuation) is a statistic:
   ``estimate``, ``coef``, ``b``, ``beta``, ``se``, ``sd``, ``ci``, ``mean``,
   ``median``, ``var``/``variance``, ``cov``, ``corr``, ``r``, ``rho``,
   ``r2``, ``icc``, ``d``, ``g``, ``z``, ``t``, ``statistic``, ``loglik``,
   ``aic``, ``bic``, ``share``, ``proportion``, ``rate``, ``ratio``,
   ``value`` … (see ``_ESTIMATE_WORDS``).  So ``df`` = 2.0 shows ``"2"``,
   ``n_patients`` = 12.0 shows ``"12"``, but ``estimate`` = 2.0 shows
   ``"2.000"``.  A column with a fraction anywhere is never shown as
   integers, whatever its name: rounding must not hide a fraction.
4. **Other numbers** get a fixed number of decimals per column: ``decimals``
   (default 3), or the column's entry in a ``decimals`` mapping.  An explicit
   mapping entry always wins over rule 3.  ``-0.000`` is written ``"0.000"``.
5. **Missing values** (``None``, ``NaN``, ``pd.NA``) become ``""``; other text
   is kept as it is; any other object is shown with :func:`str`.

The index (also a :class:`~pandas.MultiIndex`) and the column labels are kept
unchanged.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd

from helpers.errors import SettingsError

__all__ = ["format_count", "format_p", "format_table", "show"]

#: Default number of decimals of numbers that are neither counts nor p-values.
DEFAULT_DECIMALS = 3

_P_NAME = re.compile(r"^p$|^p[_(\s]|^p-?values?$|_p$", re.IGNORECASE)
_P_TEXT = re.compile(r"^\s*([<>]?)\s*=?\s*(\d*\.?\d+(?:e-?\d+)?)\s*$", re.IGNORECASE)
_WORD_SPLIT = re.compile(r"[\W_]+")

_COUNT_LEADS = frozenset({"n", "k", "nobs", "count", "counts", "number"})
_COUNT_WORDS = frozenset(
    {
        "n", "k", "nobs", "count", "counts", "patients", "sessions", "therapists",
        "clients", "raters", "records", "episodes", "replicates", "observations",
        "cases", "rows", "studies", "participants", "dyads", "groups",
    }
)  # fmt: skip
_ESTIMATE_WORDS = frozenset(
    {
        "estimate", "estimates", "est", "coef", "coefficient", "b", "beta", "β",
        "se", "sd", "sem", "ci", "mean", "m", "median", "mad", "iqr",
        "var", "variance", "cov", "covariance", "corr", "correlation",
        "r", "rho", "ρ", "r2", "r²", "icc", "d", "g", "z", "t", "f", "chi2", "χ²",
        "statistic", "stat", "rr", "hr", "loglik", "aic", "bic", "deviance",
        "sigma", "σ", "tau", "τ", "i2", "q", "slope", "intercept", "effect",
        "diff", "difference", "share", "prop", "proportion", "pct", "percent",
        "rate", "ratio", "fraction", "weight", "value", "threshold", "drop",
    }
)  # fmt: skip

_Kind = Literal["p", "count", "decimal"]


def _is_missing(value: object) -> bool:
    """Whether a scalar is missing (``None``, ``NaN``, ``NaT``, ``pd.NA``)."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _is_bool(value: object) -> bool:
    return isinstance(value, bool | np.bool_)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not _is_bool(value)


def format_count(n: object) -> str:
    """A whole number as an integer string: ``12.0`` → ``"12"``; missing → ``""``.

    Parameters
    ----------
    n : int or float
        A count (or any whole number).

    Returns
    -------
    str
        The integer without decimals or thousands separators.

    Raises
    ------
    ValueError
        If ``n`` is not a whole number (a fraction or infinity).
    TypeError
        If ``n`` is not a number (booleans are not counts).
    """
    if _is_missing(n):
        return ""
    if not _is_number(n):
        raise TypeError(f"a count must be a number; got {n!r}.")
    if isinstance(n, numbers.Integral):
        return str(int(n))
    value = float(n)
    if not value.is_integer():
        raise SettingsError(f"a count must be a whole number; got {n!r}.")
    return str(int(value))


def format_p(p: object) -> str:
    """A p-value in APA style: ``"< .001"``, ``".034"``, ``"> .999"``; missing → ``""``.

    Parameters
    ----------
    p : float
        A p-value in [0, 1].  Values below .001 are written ``"< .001"``;
        others with three decimals and no leading zero; values that round
        to 1 are written ``"> .999"``.

    Returns
    -------
    str
        The formatted p-value.

    Raises
    ------
    ValueError
        If ``p`` is outside [0, 1] (beyond floating-point noise).
    TypeError
        If ``p`` is not a number.
    """
    if _is_missing(p):
        return ""
    if not _is_number(p):
        raise TypeError(f"a p-value must be a number; got {p!r}.")
    value = float(p)
    if not -1e-9 <= value <= 1 + 1e-9:
        raise SettingsError(f"a p-value must lie in [0, 1]; got {p!r}.")
    if value < 0.001:
        return "< .001"
    text = f"{value:.3f}"
    return "> .999" if text == "1.000" else text.removeprefix("0")


def _format_p_text(text: str) -> str:
    """Rewrite text that reads as a p-value (``"<0.001"``) in APA style; keep other text."""
    match = _P_TEXT.match(text)
    if match is None:
        return text
    bound, number = match.group(1), float(match.group(2))
    if not 0 <= number <= 1:
        return text
    if bound == "<":
        return "< .001" if number <= 0.001 else f"< {format_p(number)}"
    if bound == ">":
        return "> .999" if number >= 0.999 else f"> {format_p(number)}"
    return format_p(number)


def _format_decimal(value: float, decimals: int) -> str:
    text = f"{float(value):.{decimals}f}"
    return text.removeprefix("-") if float(text) == 0 else text


def _words(name: str) -> list[str]:
    return [w for w in _WORD_SPLIT.split(name.lower()) if w]


def _is_p_name(name: str) -> bool:
    return bool(_P_NAME.search(name.strip()))


def _is_count_name(name: str) -> bool:
    words = _words(name)
    if not words:
        return False
    return words[0] in _COUNT_LEADS or words[-1] in _COUNT_WORDS


def _is_estimate_name(name: str) -> bool:
    return any(w in _ESTIMATE_WORDS for w in _words(name))


def _column_name(label: object) -> str:
    """The name the rules read: the label, or the last level of a MultiIndex label."""
    if isinstance(label, tuple):
        label = label[-1] if label else ""
    return str(label)


def _column_kind(name: str, column: pd.Series, explicit: bool) -> _Kind:
    """Which rule formats a column's numbers (see the module docstring)."""
    if _is_p_name(name):
        return "p"
    if explicit:
        return "decimal"
    values = [v for v in column if _is_number(v) and not _is_missing(v)]
    whole = bool(values) and all(float(v).is_integer() for v in values)
    if whole and (_is_count_name(name) or not _is_estimate_name(name)):
        return "count"
    return "decimal"


def _format_cell(value: object, kind: _Kind, decimals: int) -> str:
    if _is_missing(value):
        return ""
    if _is_bool(value):
        return "yes" if value else "no"
    if isinstance(value, str):
        return _format_p_text(value) if kind == "p" else value
    if not _is_number(value):
        return str(value)
    if kind == "p":
        return format_p(value)
    if kind == "count":
        return format_count(value)
    return _format_decimal(value, decimals)


def _decimals_for(label: object, decimals: int | Mapping[str, int]) -> tuple[int, bool]:
    """The decimals of one column and whether a mapping named the column."""
    if not isinstance(decimals, Mapping):
        return decimals, False
    for key in (label, _column_name(label)):
        if key in decimals:
            return decimals[key], True
    return DEFAULT_DECIMALS, False


def _check_decimals(table: pd.DataFrame, decimals: int | Mapping[str, int]) -> None:
    values = decimals.values() if isinstance(decimals, Mapping) else [decimals]
    for value in values:
        if _is_bool(value) or not isinstance(value, numbers.Integral) or value < 0:
            raise SettingsError(f"decimals must be whole numbers ≥ 0; got {value!r}.")
    if isinstance(decimals, Mapping):
        known = set(table.columns) | {_column_name(c) for c in table.columns}
        unknown = [k for k in decimals if k not in known]
        if unknown:
            raise SettingsError(
                f"decimals names columns the table does not have: {unknown}.",
                fix="Name columns of the table, or drop those keys.",
            )


def format_table(
    table: pd.DataFrame, decimals: int | Mapping[str, int] = DEFAULT_DECIMALS
) -> pd.DataFrame:
    """A copy of ``table`` whose cells are display strings, by the module's rules.

    Parameters
    ----------
    table : pandas.DataFrame
        A result table (full precision); it is not modified.
    decimals : int or mapping of str to int, default 3
        Decimals of numbers that are neither counts nor p-values: one number
        for every column, or a mapping from column name to decimals (columns
        it does not name get 3).  A column named in the mapping is always
        shown with that many decimals, even if its values are whole.

    Returns
    -------
    pandas.DataFrame
        Same shape, index and column labels as ``table``; every cell a string.

    Raises
    ------
    ValueError
        If ``decimals`` is negative or not whole, or a mapping names a column
        the table does not have.

    Examples
    --------
    >>> t = pd.DataFrame({"estimate": [-0.1234, 2.0], "n": [267.0, 1314.0],
    ...                   "p": [0.0, 0.0341], "converged": [True, False]})
    >>> format_table(t).to_dict("list")  # doctest: +NORMALIZE_WHITESPACE
    {'estimate': ['-0.123', '2.000'], 'n': ['267', '1314'],
     'p': ['< .001', '.034'], 'converged': ['yes', 'no']}
    """
    _check_decimals(table, decimals)
    formatted = {}
    for position, label in enumerate(table.columns):
        column = table.iloc[:, position]
        places, explicit = _decimals_for(label, decimals)
        kind = _column_kind(_column_name(label), column, explicit)
        formatted[position] = [_format_cell(v, kind, places) for v in column]
    result = pd.DataFrame(formatted, index=table.index, columns=range(table.shape[1]))
    result.columns = table.columns
    return result


def show(table: pd.DataFrame, **kwargs: int | Mapping[str, int]) -> pd.DataFrame:
    """The table formatted for display in a notebook: the same as :func:`format_table`.

    Parameters
    ----------
    table : pandas.DataFrame
        The result table.
    **kwargs
        Passed to :func:`format_table` (``decimals``).

    Returns
    -------
    pandas.DataFrame
        The formatted table; as the last expression of a cell Jupyter shows it.
    """
    return format_table(table, **kwargs)
