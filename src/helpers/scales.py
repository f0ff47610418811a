"""Score columns on the scale the config says: item means and wrong-scale columns.

Two steps of :func:`helpers.pipeline.clean_study`, run just before the range
check (:func:`helpers.cleaning.set_out_of_range_missing`):

1. :func:`check_column_scales` stops with a
   :class:`~helpers.validation.StudyDataError` when more than half of a score
   column's values (and at least :data:`MIN_OUT_OF_RANGE` of them) lie outside
   the allowed range.  Blanking most of a column is never what the researcher
   wants: the column almost always holds something else (an item mean, another
   instrument, percentages), and the report names the likely cause.
2. :func:`convert_item_means` turns a total column given as an item mean
   (``total_scale: mean``) into the instrument total, mean x number of items
   (a WAI-SR mean of 3.5 becomes 42), and lists each conversion in a table.

Examples
--------
>>> from helpers.config import config_from_dict
>>> cfg = config_from_dict({
...     "study": "s", "layout": "long",
...     "columns": {"therapist_id": "t", "patient_id": "p", "session": "s"},
...     "alliance": {"client": {"instrument": "wai_sr", "total": "w", "total_scale": "mean"}},
...     "outcome": {"instrument": "phq9", "total": "phq"}})
>>> [(c.column, c.kind, c.allowed) for c in score_columns(cfg)]
[('alliance_client', 'mean', (1, 5)), ('outcome', 'total', (0, 27))]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from helpers import schema
from helpers.config import StudyConfig
from helpers.scoring import INSTRUMENTS, SHORT_NAMES, Instrument, get_instrument
from helpers.validation import Problem, StudyDataError, widen_half

#: A column stops the cleaning only when at least this many values are out of range.
MIN_OUT_OF_RANGE = 5
#: Share of a column's values a range must hold to name it as the likely cause.
FITS = 0.95
#: Columns of the conversion table (:func:`convert_item_means`).
CONVERSION_COLUMNS = [
    "column",
    "source column",
    "config key",
    "from",
    "to",
    "factor",
    "values converted",
]


@dataclass(frozen=True)
class ScoreColumn:
    """One item or total column as the config describes it.

    Attributes
    ----------
    column : str
        Canonical column, e.g. ``alliance_client`` or ``outcome_item03``.
    source : str
        The user's column (in wide layout, its ``var`` stem).
    key : str
        The config key naming it, e.g. ``alliance.client.total``.
    instrument : Instrument
        The instrument it belongs to.
    kind : str
        ``"item"``, ``"total"`` or ``"mean"`` (a total column holding the item mean).
    """

    column: str
    source: str
    key: str
    instrument: Instrument
    kind: str

    @property
    def allowed(self) -> tuple[int, int]:
        """Allowed range of the values as given: the item range for items and means."""
        inst = self.instrument
        if self.kind == "total":
            return inst.total_min, inst.total_max
        return inst.item_min, inst.item_max

    @property
    def block(self) -> str:
        """The config block of the measure, e.g. ``alliance.client`` or ``outcome``."""
        return self.key.rsplit(".", 1)[0]

    @property
    def what(self) -> str:
        """Plain words for the values, e.g. ``"WAI-SR totals (12–60)"``."""
        noun = {"item": "item scores", "total": "totals", "mean": "item means"}[self.kind]
        low, high = self.allowed
        return f"{SHORT_NAMES[self.instrument.key]} {noun} ({low}–{high})"


def _measure_name(canonical: str) -> str | None:
    """``"outcome"``, the rater, or ``None`` for a column that is not a score."""
    if canonical == schema.OUTCOME_INTAKE or canonical.startswith(schema.OUTCOME):
        return schema.OUTCOME
    if canonical.startswith("alliance_"):
        return canonical.removeprefix("alliance_").split("_item")[0]
    return None


def score_columns(config: StudyConfig) -> list[ScoreColumn]:
    """Every item and total column the config names, in config order.

    Parameters
    ----------
    config : StudyConfig

    Returns
    -------
    list of ScoreColumn
    """
    keys = config.source_keys()
    out = []
    for user, canonical in config.source_columns().items():
        name = _measure_name(canonical)
        if name is None:
            continue
        measure = config.measure(name)
        kind = "item" if "_item" in canonical else "total"
        if kind == "total" and measure.total_scale == "mean":
            kind = "mean"
        inst = get_instrument(measure.instrument)
        out.append(ScoreColumn(canonical, user, keys[user], inst, kind))
    return out


def _outside(values: pd.Series, column: ScoreColumn) -> pd.Series:
    """Values outside the allowed range (items: also values that are not whole numbers)."""
    low, high = column.allowed
    bad = (values < low) | (values > high)
    if column.kind == "item":
        bad |= np.floor(values) != values
    return bad


def _share_within(values: pd.Series, low: float, high: float) -> float:
    return float(((values >= low) & (values <= high)).mean())


def _counted(values: pd.Series, low: float, high: float) -> str:
    n_in = int(((values >= low) & (values <= high)).sum())
    return f"all {len(values):,}" if n_in == len(values) else f"{n_in:,} of {len(values):,}"


def _other_instrument(values: pd.Series, column: ScoreColumn) -> tuple[Instrument, int, int] | None:
    """The other instrument of the same kind whose range holds the values, if any.

    Totals are compared with total ranges, items and item means with item
    ranges; of several that fit, the one holding most values, then the narrowest.
    """
    best: tuple[tuple[float, int], Instrument, int, int] | None = None
    for inst in INSTRUMENTS.values():
        if inst.key == column.instrument.key or inst.construct != column.instrument.construct:
            continue
        if column.kind == "total":
            low, high = inst.total_min, inst.total_max
        else:
            low, high = inst.item_min, inst.item_max
        rank = (_share_within(values, low, high), low - high)
        if rank[0] >= FITS and (best is None or rank > best[0]):
            best = (rank, inst, low, high)
    return None if best is None else best[1:]


def _wrong_kind(values: pd.Series, column: ScoreColumn) -> str | None:
    """The fix when the values are of another kind: means, totals or decimals in items."""
    inst = column.instrument
    name = SHORT_NAMES[inst.key]
    items = (inst.item_min, inst.item_max)
    totals = (inst.total_min, inst.total_max)
    fractions = int((np.floor(values) != values).sum())
    if column.kind == "item" and 2 * fractions > int(_outside(values, column).sum()):
        return (
            f"item scores are whole numbers, but {fractions:,} values have decimals: are "
            f"these averaged or rescaled scores? check the column mapping (`{column.key}`)"
        )
    if column.kind == "total" and _share_within(values, *items) >= FITS:
        return (
            f"this looks like an item mean, not a total: {_counted(values, *items)} values lie "
            f"within the {name} item range {items[0]}–{items[1]}; "
            f"set `{column.block}.total_scale: mean`"
        )
    if column.kind != "total" and _share_within(values, *totals) >= FITS:
        noun = "an item mean" if column.kind == "mean" else "a single item"
        fix = (
            f"set `{column.block}.total_scale: sum` (or delete it)"
            if column.kind == "mean"
            else f"check the column mapping (`{column.key}`)"
        )
        return (
            f"this looks like a total, not {noun}: {_counted(values, *totals)} values lie "
            f"within the {name} total range {totals[0]}–{totals[1]}; {fix}"
        )
    return None


def likely_cause(values: pd.Series, column: ScoreColumn) -> str:
    """What a column whose values are mostly out of range probably holds, as a fix.

    Parameters
    ----------
    values : pandas.Series
        The column's non-missing values.
    column : ScoreColumn
        What the config says the column holds.

    Returns
    -------
    str
        Decimals in an item column, an item mean given as a total (or the
        reverse), totals in an item column, another instrument's range,
        percentages, or else a plain request to check the instrument and the
        column mapping.
    """
    wrong_kind = _wrong_kind(values, column)
    if wrong_kind is not None:
        return wrong_kind
    other = _other_instrument(values, column)
    if other is not None:
        inst2, low, high = other
        return (
            f"is this another instrument? (e.g. {SHORT_NAMES[inst2.key]} {low}–{high}, which "
            f"holds {_counted(values, low, high)} values): if so, set "
            f"`{column.block}.instrument: {inst2.key}`"
        )
    if _share_within(values, 0, 100) >= FITS and values.max() > column.allowed[1]:
        return (
            f"the values look like percentages or a 0–100 score ({_counted(values, 0, 100)} "
            f"lie within 0–100): convert them to {column.what} before loading, or check the "
            f"column mapping (`{column.key}`)"
        )
    return (
        f"check the instrument (`{column.block}.instrument: {column.instrument.key}`) and the "
        f"column mapping (`{column.key}`)"
    )


def _scale_problem(df: pd.DataFrame, column: ScoreColumn, source: str) -> Problem | None:
    """A problem when most of the column's values (and at least 5) are out of range."""
    values = widen_half(df[column.column])  # items may be float16 (slow to compare)
    values = values[values.notna()]
    bad = _outside(values, column)
    n_bad = int(bad.sum())
    if n_bad < MIN_OUT_OF_RANGE or 2 * n_bad <= len(values):
        return None
    low, high = column.allowed
    whole = " in whole numbers" if column.kind == "item" else ""
    return Problem(
        file=source,
        column=column.source,
        rows=df.loc[bad.index[bad], schema.SOURCE_ROW].tolist(),
        values=values[bad].tolist(),
        rule=f"{column.what}: values from {low} to {high}{whole} "
        f"(named by {column.key}; becomes {column.column})",
        found=f"{n_bad:,} of {len(values):,} values ({n_bad / len(values):.0%}) outside that "
        f"range, from {values.min():g} to {values.max():g}",
        fix=likely_cause(values, column),
    )


def check_column_scales(df: pd.DataFrame, columns: list[ScoreColumn], source: str = "") -> None:
    """Stop when most values of a score column are outside its allowed range.

    A column stops the cleaning when more than half of its non-missing values,
    and at least :data:`MIN_OUT_OF_RANGE`, are outside the range (for items,
    also when they are not whole numbers), whatever ``cleaning.out_of_range``
    says: setting most of a column to missing would hide a wrong config.
    Item means (``total_scale: mean``) are checked on the item range.

    Parameters
    ----------
    df : pandas.DataFrame
        The canonical frame, before :func:`convert_item_means`.
    columns : list of ScoreColumn
        From :func:`score_columns`.
    source : str
        The input file's name, for the report.

    Raises
    ------
    StudyDataError
        One problem per such column: the file, the user's column and config
        key, the allowed range, the count out of range, the first rows and
        values, and the likely cause (:func:`likely_cause`) as the fix.
    """
    problems = [
        problem
        for column in columns
        if column.column in df.columns
        and (problem := _scale_problem(df, column, source)) is not None
    ]
    if problems:
        names = ", ".join(f"'{p.column}'" for p in problems)
        raise StudyDataError(
            problems,
            f"Most values of {'column' if len(problems) == 1 else 'columns'} {names} in "
            f"{source or 'the data'} are outside the allowed range; nothing was set to missing.",
        )


def convert_item_means(
    df: pd.DataFrame, columns: list[ScoreColumn]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, tuple[pd.Series, str]]]:
    """Turn item means (``total_scale: mean``) into instrument totals.

    total = mean x number of items, e.g. a WAI-SR mean of 3.5 becomes 42.0,
    so the range check that follows sees totals (WAI-SR 12–60).

    Parameters
    ----------
    df : pandas.DataFrame
        The canonical frame; not modified.
    columns : list of ScoreColumn
        From :func:`score_columns`; only those of kind ``"mean"`` are converted.

    Returns
    -------
    converted : pandas.DataFrame
        ``df`` with the item-mean columns replaced by totals.
    conversions : pandas.DataFrame
        One row per converted column (:data:`CONVERSION_COLUMNS`); ``values
        converted`` counts the column's non-missing values.
    originals : dict
        Converted column -> (its values before conversion, how it was
        converted), for :func:`helpers.cleaning.set_out_of_range_missing` to
        report out-of-range values as they are in the file.
    """
    means = [c for c in columns if c.kind == "mean" and c.column in df.columns]
    out = df.copy() if means else df
    rows, originals = [], {}
    for column in means:
        inst = column.instrument
        before = df[column.column]
        out[column.column] = before * inst.n_items
        originals[column.column] = (
            before,
            f"item mean: allowed {inst.item_min}–{inst.item_max}, converted × {inst.n_items}",
        )
        rows.append(
            [
                column.column,
                column.source,
                f"{column.block}.total_scale",
                f"item mean ({inst.item_min}–{inst.item_max})",
                f"total ({inst.total_min}–{inst.total_max})",
                inst.n_items,
                int(before.notna().sum()),
            ]
        )
    return out, pd.DataFrame(rows, columns=CONVERSION_COLUMNS), originals
