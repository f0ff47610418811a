"""Publication figures of the alliance–outcome analysis, in one style.

The functions follow seaborn's conventions: each takes a tidy ``data`` frame
and the names of the columns to use, draws on ``ax`` (or on a new figure of
one journal column's width when ``ax`` is None) and returns the axes.  The
style (:data:`helpers.style.STYLE`) is applied inside every function through
a :func:`matplotlib.rc_context`, so the global rcParams are left as they were.

==================================  ==============================================================
Function                            Shows
==================================  ==============================================================
:func:`plot_trajectories`           every patient's scores (faint) and the mean per session with a
                                    95% CI band, by modality
:func:`plot_coefficients`           fixed effects with 95% CIs (e.g. within- vs between-patient
                                    alliance)
:func:`plot_caterpillar`            random effects (conditional modes), ranked, with intervals
:func:`plot_predicted_trajectories` model-predicted outcome at low / average / high alliance
:func:`plot_rupture_v`              scores aligned on a rupture session (the "V")
:func:`plot_forest`                 this study's r beside meta-analytic benchmarks
:func:`plot_residuals_vs_fitted`    residuals against fitted values with a LOWESS smooth
:func:`plot_qq`                     normal quantile-quantile plot with a quartile reference line
:func:`save_figure`                 PNG, SVG and PDF files that are byte-identical between runs
==================================  ==============================================================

The model tables these functions take are the tidy frames of
:mod:`helpers.models`: fixed effects indexed by ``term`` with ``estimate, se,
ci_low, ci_high``; random effects with one row per group (and ``term``); and so
on (see each function).  Wherever a table has ``se`` but no ``ci_low`` /
``ci_high``, the normal 95% interval ``estimate ± 1.96 se`` is drawn.

Bad input (a column that is not there, text where numbers belong, an interval
that does not contain its estimate) raises :class:`PlotInputError`, whose
message names the function, the argument, the column and the rows.
"""

from __future__ import annotations

import functools
import textwrap
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from scipy import stats

from helpers.errors import PlotInputError
from helpers.paths import FIGURES_DIR
from helpers.safety import atomic_path
from helpers.style import (
    CYCLE_COLORS,
    DEFAULT_ASPECT,
    FONT_FAMILY,
    GROUP_NOUNS,
    HIGHLIGHT_COLOR,
    LABELS,
    MODALITY_COLORS,
    OKABE_ITO,
    REFERENCE_COLOR,
    SMALL_FONT_SIZE,
    STYLE,
    TERM_LABELS,
    alliance_level_name,
    alliance_level_style,
    axis_label,
    figure_size,
    group_colors,
    use_style,
)
from helpers.validation import describe_rows, numeric_column

__all__ = [
    "FIGURE_FORMATS",
    "INTERCEPT_TERMS",
    "LABELS",
    "MODALITY_COLORS",
    "REFERENCE_GID",
    "STYLE",
    "TERM_LABELS",
    "Z_95",
    "PlotInputError",
    "new_figure",
    "normal_quantiles",
    "plot_caterpillar",
    "plot_coefficients",
    "plot_forest",
    "plot_power_curve",
    "plot_predicted_trajectories",
    "plot_qq",
    "plot_residuals_vs_fitted",
    "plot_rupture_v",
    "plot_trajectories",
    "save_figure",
    "session_means",
    "use_style",
]

#: Two-sided 95% normal critical value, ``scipy.stats.norm.ppf(0.975)``.
Z_95: float = float(stats.norm.ppf(0.975))

#: File formats :func:`save_figure` writes, with the metadata that keeps each one
#: identical from run to run (no creation date, no software version in PNG).
FIGURE_FORMATS: dict[str, dict[str, Any]] = {
    "png": {"Software": None},
    "svg": {"Date": None},
    "pdf": {"CreationDate": None, "ModDate": None},
}

#: Term names treated as the intercept (left out of coefficient plots by default).
INTERCEPT_TERMS: tuple[str, ...] = ("Intercept", "(Intercept)", "const")

#: Prefix of the ``gid`` of reference lines (``"reference-zero"``, ``"reference-rupture"``,
#: ``"reference-pooled"``), so they can be told apart from data lines; in SVG files the
#: gid becomes the element id.
REFERENCE_GID = "reference"

#: Faint individual lines: width and opacity.
_INDIVIDUAL_LW = 0.5
_INDIVIDUAL_ALPHA = 0.25
#: Opacity of confidence bands.
_BAND_ALPHA = 0.2

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------


def _styled(func: F) -> F:
    """Run ``func`` inside :func:`helpers.style.use_style`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with use_style():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _check_frame(data: Any, func: str, argument: str = "data") -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise PlotInputError(
            f"{func}: {argument} must be a pandas DataFrame, got {type(data).__name__}. "
            "Pass the tidy table (one row per observation) as a DataFrame."
        )
    if data.empty:
        raise PlotInputError(f"{func}: {argument} has no rows; there is nothing to plot.")
    return data


def _require_columns(
    data: pd.DataFrame, columns: Mapping[str, str | None], func: str, argument: str = "data"
) -> None:
    """``columns`` maps a keyword argument to the column name it was given."""
    missing = {kw: col for kw, col in columns.items() if col is not None and col not in data}
    if missing:
        wanted = ", ".join(f"{kw}={col!r}" for kw, col in missing.items())
        present = ", ".join(repr(str(c)) for c in data.columns)
        raise PlotInputError(
            f"{func}: column(s) not found in {argument}: {wanted}. Columns present: {present}. "
            "Pass the names of your columns through these keyword arguments."
        )


def _numeric(data: pd.DataFrame, column: str, func: str, argument: str = "data") -> np.ndarray:
    """The column as floats; a clear error for text that is not a number."""
    return numeric_column(
        data,
        column,
        func if argument == "data" else f"{func} ({argument})",
        fix="Convert the column to numbers (missing values may be NaN).",
        error=PlotInputError,
    )


def _intervals(
    data: pd.DataFrame,
    estimate: str,
    ci_low: str,
    ci_high: str,
    se: str,
    func: str,
    *,
    allow_missing: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimates and 95% interval bounds, from ``ci_low``/``ci_high`` or else from ``se``."""
    _require_columns(data, {"estimate": estimate}, func)
    est = _numeric(data, estimate, func)
    if ci_low in data and ci_high in data:
        low, high = _numeric(data, ci_low, func), _numeric(data, ci_high, func)
    elif se in data:
        se_values = _numeric(data, se, func)
        negative = se_values < 0
        if negative.any():
            raise PlotInputError(
                f"{func}: column {se!r} holds negative standard errors in rows "
                f"{describe_rows(data.index[negative])}."
            )
        low, high = est - Z_95 * se_values, est + Z_95 * se_values
    else:
        present = ", ".join(repr(str(c)) for c in data.columns)
        raise PlotInputError(
            f"{func}: no interval columns: expected ci_low={ci_low!r} and ci_high={ci_high!r}, "
            f"or se={se!r}. Columns present: {present}. Pass the names of your columns."
        )
    one_sided = np.isnan(low) != np.isnan(high)
    if one_sided.any():
        raise PlotInputError(
            f"{func}: rows {describe_rows(data.index[one_sided])} have only one interval bound "
            f"({ci_low!r} / {ci_high!r}); give both bounds or leave both missing."
        )
    if not allow_missing:
        gaps = np.isnan(est) | np.isnan(low)
        if gaps.any():
            raise PlotInputError(
                f"{func}: rows {describe_rows(data.index[gaps])} have a missing estimate or "
                "interval; drop them or fill them in before plotting."
            )
    with np.errstate(invalid="ignore"):
        outside = (low > est) | (high < est)
    if outside.any():
        raise PlotInputError(
            f"{func}: in rows {describe_rows(data.index[outside])} the interval "
            f"[{ci_low}, {ci_high}] does not contain the estimate ({estimate!r}); check that "
            "the bounds are not swapped or on another scale."
        )
    return est, low, high


def _duplicated_rows(
    data: pd.DataFrame, keys: Sequence[str], func: str, what: str, fix: str
) -> None:
    dup = data.duplicated(list(keys), keep=False)
    if dup.any():
        raise PlotInputError(
            f"{func}: expected one row per {what}, but rows {describe_rows(data.index[dup])} "
            "repeat "
            f"the same {', '.join(keys)}. {fix}"
        )


def _finish_axes(ax: Axes) -> Axes:
    """Fix tick-label font and size on the axes themselves.

    Tick labels are created lazily when a figure is drawn, possibly after the
    style context has closed; setting them here keeps them in the style.
    """
    ax.tick_params(
        axis="both",
        which="both",
        labelsize=SMALL_FONT_SIZE,
        labelfontfamily=FONT_FAMILY,
        direction="out",
    )
    return ax


def new_figure(
    width: str | float = "single", aspect: float = DEFAULT_ASPECT, **subplots_kw: Any
) -> tuple[Figure, Any]:
    """A new figure at its printed size, in the compendium's style.

    Parameters
    ----------
    width : {"single", "double"} or float
        One journal column (3.5 in), the full text width (7 in), or inches.
    aspect : float
        Height divided by width.
    **subplots_kw
        Passed to :func:`matplotlib.pyplot.subplots` (e.g. ``nrows``, ``ncols``,
        ``sharey``).  The layout engine is ``"constrained"``.

    Returns
    -------
    tuple
        ``(figure, axes)`` as from :func:`matplotlib.pyplot.subplots`.

    Examples
    --------
    >>> fig, ax = new_figure("double", aspect=0.5)
    >>> tuple(float(v) for v in fig.get_size_inches())
    (7.0, 3.5)
    """
    size = figure_size(width, aspect)
    with use_style():
        fig, axes = plt.subplots(figsize=size, layout="constrained", **subplots_kw)
    for one in np.atleast_1d(axes).ravel():
        _finish_axes(one)
    return fig, axes


def _axes_or_new(ax: Axes | None, aspect: float = DEFAULT_ASPECT) -> Axes:
    if ax is None:
        _, ax = new_figure("single", aspect)
    elif not isinstance(ax, Axes):
        raise PlotInputError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}.")
    return ax


def _rows_aspect(n_rows: int) -> float:
    """Aspect giving ~0.28 in per row of a dot plot (at least 1.5 in tall)."""
    height = max(1.5, 0.28 * n_rows + 0.8)
    return height / figure_size("single")[0]


def _ordered_levels(values: pd.Series) -> list[Any]:
    """Levels in categorical order, else sorted (as text) for a deterministic order."""
    present = values.dropna()
    if isinstance(values.dtype, pd.CategoricalDtype):
        used = set(present.unique())
        return [c for c in values.cat.categories if c in used]
    return sorted(present.unique(), key=str)


def _individual_segments(frame: pd.DataFrame, x: str, y: str, unit: str) -> list[np.ndarray]:
    """One ``(n, 2)`` array of (x, y) points per unit, sorted by x, missing y left out."""
    segments = []
    observed = frame.loc[frame[y].notna()].sort_values([unit, x], kind="mergesort")
    for _, rows in observed.groupby(unit, sort=False):
        segments.append(rows[[x, y]].to_numpy(dtype=float))
    return segments


def _sample_units(units: Iterable[Any], max_units: int | None, seed: int) -> set[Any] | None:
    """A seeded random subset of ``max_units`` units, or None for all."""
    if max_units is None:
        return None
    if int(max_units) != max_units or max_units < 1:
        raise PlotInputError(
            f"max_units must be a positive whole number or None, got {max_units!r}."
        )
    ordered = sorted(set(units), key=str)
    if max_units >= len(ordered):
        return None
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(ordered), size=int(max_units), replace=False)
    return {ordered[i] for i in chosen}


def _apa_number(value: float) -> str:
    """Two decimals without the leading zero (APA style for r): 0.28 -> .28, -0.05 -> −.05."""
    text = f"{abs(value):.2f}"
    if text.startswith("0"):
        text = text[1:]
    return ("\u2212" if value < 0 and text.strip("0.") else "") + text


# --------------------------------------------------------------------------------------
# Descriptive plots
# --------------------------------------------------------------------------------------


def session_means(
    data: pd.DataFrame, y: str, *, x: str = "session", hue: str | None = None, min_n: int = 10
) -> pd.DataFrame:
    """Mean of ``y`` per ``x`` (and ``hue``) with its normal-approximation 95% CI.

    This is the summary drawn by :func:`plot_trajectories`.

    Parameters
    ----------
    data : pandas.DataFrame
        Long frame, one row per patient and session.
    y, x : str
        Value and session column.
    hue : str, optional
        Grouping column (e.g. ``"modality"``).
    min_n : int
        Sessions with fewer than ``min_n`` non-missing values are dropped.

    Returns
    -------
    pandas.DataFrame
        Columns ``[hue,] x, n, mean, sd, ci_low, ci_high``, where the interval is
        ``mean ± z_.975 · sd / sqrt(n)`` with ``sd`` the sample SD (``ddof=1``).

    Raises
    ------
    PlotInputError
        For missing or non-numeric columns, or ``min_n`` below 2.
    """
    func = "session_means"
    _check_frame(data, func)
    _require_columns(data, {"y": y, "x": x, "hue": hue}, func)
    if int(min_n) != min_n or min_n < 2:
        raise PlotInputError(
            f"{func}: min_n must be a whole number of at least 2 (a standard deviation needs "
            f"two values), got {min_n!r}."
        )
    keys = [hue, x] if hue is not None else [x]
    frame = pd.DataFrame({x: _numeric(data, x, func), y: _numeric(data, y, func)})
    if hue is not None:
        frame[hue] = data[hue].to_numpy()
    frame = frame.loc[frame[y].notna() & frame[x].notna()]
    if hue is not None:
        frame = frame.loc[frame[hue].notna()]
    summary = (
        frame.groupby(keys, sort=True, observed=True)[y]
        .agg(n="count", mean="mean", sd="std")
        .reset_index()
    )
    summary = summary.loc[summary["n"] >= min_n].reset_index(drop=True)
    half = Z_95 * summary["sd"] / np.sqrt(summary["n"])
    summary["ci_low"] = summary["mean"] - half
    summary["ci_high"] = summary["mean"] + half
    return summary


def _trajectory_frame(
    data: pd.DataFrame, y: str, x: str, unit: str, hue: str | None
) -> pd.DataFrame:
    """The checked columns of :func:`plot_trajectories` (rows with a missing ``hue`` left out)."""
    func = "plot_trajectories"
    _check_frame(data, func)
    _require_columns(data, {"y": y, "x": x, "unit": unit, "hue": hue}, func)
    columns = [c for c in dict.fromkeys([unit, x, y, hue]) if c is not None]
    frame = data[columns].copy()
    frame[x] = _numeric(data, x, func)
    frame[y] = _numeric(data, y, func)
    if frame[x].isna().any():
        raise PlotInputError(
            f"{func}: column x={x!r} is missing in rows "
            f"{describe_rows(frame.index[frame[x].isna()])}; every row needs its session number."
        )
    _duplicated_rows(
        frame, [unit, x], func, f"{unit} and {x}", "Aggregate or drop the repeated rows first."
    )
    if hue is not None and frame[hue].isna().any():
        n_missing = int(frame[hue].isna().sum())
        warnings.warn(
            f"{func}: {n_missing} row(s) with a missing {hue!r} are left out of the plot "
            f"(rows {describe_rows(frame.index[frame[hue].isna()])}).",
            UserWarning,
            stacklevel=4,
        )
        frame = frame.loc[frame[hue].notna()]
    if frame[y].notna().sum() == 0:
        raise PlotInputError(f"{func}: column y={y!r} has no non-missing values to plot.")
    return frame


def _level_colors(
    frame: pd.DataFrame, hue: str | None, palette: Mapping[Any, str] | None, func: str
) -> tuple[list[Any], dict[Any, str]]:
    """The levels of ``hue`` in plotting order and their colours (``palette`` when given)."""
    if hue is None:
        return [None], {None: OKABE_ITO["black"]}
    levels = _ordered_levels(frame[hue])
    if palette is None:
        return levels, group_colors(levels)
    uncovered = [lv for lv in levels if lv not in palette]
    if uncovered:
        raise PlotInputError(
            f"{func}: palette has no colour for level(s) {uncovered} of {hue!r}; "
            "give a colour for every level."
        )
    return levels, {lv: palette[lv] for lv in levels}


def _draw_trajectory_level(
    ax: Axes,
    sub: pd.DataFrame,
    summary: pd.DataFrame,
    level: Any,
    color: str,
    shown_units: Any,
    *,
    x: str,
    y: str,
    unit: str,
    hue: str | None,
) -> Line2D:
    """One level's individual lines, 95% band and mean line; returns the mean line."""
    drawn = sub if shown_units is None else sub.loc[sub[unit].isin(shown_units)]
    segments = _individual_segments(drawn, x, y, unit)
    ax.add_collection(
        LineCollection(
            segments,
            colors=color,
            linewidths=_INDIVIDUAL_LW,
            alpha=_INDIVIDUAL_ALPHA,
            zorder=1,
            label="_individual",
        ),
        autolim=True,
    )
    # Every session of this level, so that a dropped session leaves a gap.
    sessions = np.sort(sub.loc[sub[y].notna(), x].unique())
    level_summary = summary if level is None else summary.loc[summary[hue] == level]
    level_summary = level_summary.set_index(x).reindex(sessions)
    ax.fill_between(
        sessions,
        level_summary["ci_low"].to_numpy(dtype=float),
        level_summary["ci_high"].to_numpy(dtype=float),
        color=color,
        alpha=_BAND_ALPHA,
        linewidth=0,
        zorder=2,
    )
    n_units = int(sub.loc[sub[y].notna(), unit].nunique())
    label = f"Mean (n = {n_units})" if level is None else f"{level} (n = {n_units})"
    (line,) = ax.plot(
        sessions,
        level_summary["mean"].to_numpy(dtype=float),
        color=color,
        linewidth=1.6,
        zorder=3,
        label=label,
    )
    return line


@_styled
def plot_trajectories(
    data: pd.DataFrame,
    y: str,
    *,
    x: str = "session",
    unit: str = "patient_id",
    hue: str | None = "modality",
    ax: Axes | None = None,
    max_units: int | None = None,
    seed: int = 20240501,
    min_n: int = 10,
    palette: Mapping[Any, str] | None = None,
    axis_labels: Mapping[str, str] | None = None,
) -> Axes:
    """Individual trajectories (faint) and the mean per session with a 95% CI band.

    Parameters
    ----------
    data : pandas.DataFrame
        Long frame, one row per ``unit`` and ``x`` (e.g. the processed sessions).
    y : str
        Column to plot, e.g. ``"alliance"`` or ``"outcome"``.
    x : str
        Session column.
    unit : str
        Column identifying one trajectory (patient).
    hue : str or None
        Grouping column; one colour, one mean line and one band per level.
        ``"modality"`` levels get their fixed colours
        (:data:`helpers.style.MODALITY_COLORS`).  Rows with a missing ``hue``
        are left out with a warning.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new single-column figure when None.
    max_units : int, optional
        Draw the individual lines of at most this many units, chosen at random
        (without replacement, seeded by ``seed``) from all units.  The means
        always use every unit.
    seed : int
        Seed of :func:`numpy.random.default_rng` for ``max_units``.
    min_n : int
        A session's mean and band are drawn only when at least ``min_n``
        units have a value there; sessions below it leave a gap in the line.
    palette : mapping, optional
        Level to colour, replacing the default colours.
    axis_labels : mapping, optional
        Labels overriding :data:`helpers.style.LABELS` (e.g. from
        :func:`helpers.style.make_labels` for other instruments).

    Returns
    -------
    matplotlib.axes.Axes

    Notes
    -----
    The band is the normal approximation to the 95% confidence interval of the
    mean at each session, ``mean ± 1.96 · SD / sqrt(n)``, computed from the
    patients who have a value at that session (:func:`session_means`).  It
    ignores that the same patients contribute to every session, and later
    sessions hold only the patients still in treatment, so the mean line is
    descriptive, not a model estimate.  Individual lines join a patient's
    observed sessions (a missed session is bridged); a patient with a single
    observed session draws no line.

    Drawn artists: per level, one :class:`~matplotlib.collections.LineCollection`
    of individual lines, one band (``fill_between``) and one mean
    :class:`~matplotlib.lines.Line2D`; the legend reads ``"<level> (n = <units>)"``.
    """
    frame = _trajectory_frame(data, y, x, unit, hue)
    ax = _axes_or_new(ax)
    levels, colors = _level_colors(frame, hue, palette, "plot_trajectories")
    shown_units = _sample_units(frame[unit].unique(), max_units, seed)
    summary = session_means(frame, y, x=x, hue=hue, min_n=min_n)
    handles = []
    for level in levels:
        sub = frame if level is None else frame.loc[frame[hue] == level]
        line = _draw_trajectory_level(
            ax, sub, summary, level, colors[level], shown_units, x=x, y=y, unit=unit, hue=hue
        )
        handles.append(line)
    ax.autoscale_view()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(axis_label(x, axis_labels))
    ax.set_ylabel(axis_label(y, axis_labels))
    if hue is not None:
        # Above the axes, so the legend never hides data.
        ax.legend(
            handles=handles,
            loc="lower left",
            bbox_to_anchor=(0.0, 1.01),
            ncols=min(len(handles), 2),
            borderaxespad=0.0,
            handlelength=1.2,
            handletextpad=0.5,
            columnspacing=1.0,
        )
    return _finish_axes(ax)


# --------------------------------------------------------------------------------------
# Model tables
# --------------------------------------------------------------------------------------


def _term_table(data: pd.DataFrame, func: str) -> pd.DataFrame:
    """Fixed-effects table indexed by term (a ``term`` column is used as the index)."""
    table = data.set_index("term") if "term" in data.columns else data
    if table.index.has_duplicates:
        dup = table.index[table.index.duplicated(keep=False)]
        raise PlotInputError(
            f"{func}: terms {describe_rows(dict.fromkeys(dup))} appear more than once in the "
            "table; pass the fixed effects of one model."
        )
    return table


def _wrap(label: str, width: int = 30) -> str:
    return textwrap.fill(str(label), width=width, break_long_words=False)


@_styled
def plot_coefficients(
    data: pd.DataFrame,
    *,
    terms: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    estimate: str = "estimate",
    ci_low: str = "ci_low",
    ci_high: str = "ci_high",
    se: str = "se",
    xlabel: str | None = None,
    ax: Axes | None = None,
    axis_labels: Mapping[str, str] | None = None,
) -> Axes:
    """Fixed effects as points with 95% CIs, beside a line at zero.

    Parameters
    ----------
    data : pandas.DataFrame
        Fixed-effects table indexed by term (or with a ``term`` column) and
        columns ``estimate``, ``ci_low``, ``ci_high`` (or ``se``), as
        ``MixedResult.fixed`` of :mod:`helpers.models`.
    terms : sequence of str, optional
        Terms to show, top to bottom.  Default: every term except the
        intercept (:data:`INTERCEPT_TERMS`), in table order.
    labels : mapping, optional
        Term to printed label; default :data:`helpers.style.TERM_LABELS`, then
        the term name.  Labels are wrapped at 30 characters.
    estimate, ci_low, ci_high, se : str
        Column names.  ``se`` is used (``estimate ± 1.96 se``) only when the
        CI columns are absent.
    xlabel : str, optional
        Default ``axis_labels["coefficient"]`` ("Estimate (PHQ-9 points, 95% CI)").
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new single-column figure (height by number of
        terms) when None.
    axis_labels : mapping, optional
        Overrides of :data:`helpers.style.LABELS`.

    Returns
    -------
    matplotlib.axes.Axes
        Intervals are one :class:`~matplotlib.collections.LineCollection`,
        estimates one :class:`~matplotlib.lines.Line2D` with markers; the
        first term is at the top.

    Raises
    ------
    PlotInputError
        For a term not in the table (the message lists the terms present),
        missing columns, or an interval that does not contain its estimate.
    """
    func = "plot_coefficients"
    table = _term_table(_check_frame(data, func), func)
    available = [str(t) for t in table.index]
    if terms is None:
        chosen = [t for t in table.index if str(t) not in INTERCEPT_TERMS]
    else:
        if isinstance(terms, str):
            terms = [terms]
        unknown = [t for t in terms if t not in table.index]
        if unknown:
            raise PlotInputError(
                f"{func}: term(s) {unknown} not in the table. Terms present: {available}."
            )
        chosen = list(terms)
    if not chosen:
        raise PlotInputError(
            f"{func}: no terms to plot (the table holds only {available}); pass terms=[...]."
        )
    table = table.loc[chosen]
    est, low, high = _intervals(table, estimate, ci_low, ci_high, se, func)
    names = {**TERM_LABELS, **(labels or {})}
    ax = _axes_or_new(ax, _rows_aspect(len(chosen)))

    positions = np.arange(len(chosen))[::-1].astype(float)
    ax.axvline(
        0,
        gid=f"{REFERENCE_GID}-zero",
        color=REFERENCE_COLOR,
        linestyle="--",
        linewidth=0.8,
        zorder=1,
    )
    ax.hlines(positions, low, high, colors=OKABE_ITO["black"], linewidth=1.2, zorder=2)
    ax.plot(est, positions, linestyle="none", marker="o", color=OKABE_ITO["black"], zorder=3)
    ax.set_yticks(positions, [_wrap(names.get(str(t), str(t))) for t in chosen])
    ax.set_ylim(-0.6, len(chosen) - 0.4)
    ax.tick_params(axis="y", length=0)
    ax.spines["left"].set_visible(False)
    ax.set_xlabel(xlabel if xlabel is not None else axis_label("coefficient", axis_labels))
    return _finish_axes(ax)


@_styled
def plot_caterpillar(
    data: pd.DataFrame,
    *,
    group: str,
    estimate: str = "estimate",
    ci_low: str = "ci_low",
    ci_high: str = "ci_high",
    se: str = "se",
    term: str | None = None,
    term_column: str = "term",
    ylabel: str | None = None,
    ax: Axes | None = None,
    axis_labels: Mapping[str, str] | None = None,
) -> Axes:
    """Random effects (conditional modes) ranked, with intervals, beside a line at zero.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per group level (and term): the ``group`` id column,
        ``estimate`` and ``ci_low``/``ci_high`` (or ``se``, the conditional
        SD, for ``estimate ± 1.96 se``).
    group : str
        Column holding the id of each group level, e.g. ``"therapist_id"``;
        its name also labels the x axis ("Therapists (ranked by estimate)").
    estimate, ci_low, ci_high, se : str
        Column names.
    term : str, optional
        When the table has a ``term_column`` with several terms (random
        intercept and slope), the one to plot.
    term_column : str
        Name of that column.
    ylabel : str, optional
        Default: "Random intercept (PHQ-9 points, 95% interval)" for the
        intercept, else "Random effect: <term> (95% interval)".
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new single-column figure when None.
    axis_labels : mapping, optional
        Overrides of :data:`helpers.style.LABELS`.

    Returns
    -------
    matplotlib.axes.Axes
        Levels are ranked by estimate (ties by id) at x = 1..n; intervals are
        one :class:`~matplotlib.collections.LineCollection`, estimates one
        :class:`~matplotlib.lines.Line2D`.

    Notes
    -----
    The intervals of conditional modes describe the uncertainty of each
    level's predicted deviation given the estimated variance components; they
    are not confidence intervals for a fixed parameter, and picking out the
    levels whose intervals exclude zero is a multiple-comparison exercise.
    """
    func = "plot_caterpillar"
    table = _check_frame(data, func)
    _require_columns(table, {"group": group}, func)
    if term_column in table.columns:
        present = list(dict.fromkeys(table[term_column].dropna()))
        if term is None and len(present) > 1:
            raise PlotInputError(
                f"{func}: the table holds random effects of several terms {present} in column "
                f"{term_column!r}; choose one with term=..."
            )
        if term is not None:
            if term not in present:
                raise PlotInputError(
                    f"{func}: term {term!r} not in column {term_column!r}; terms present: "
                    f"{present}."
                )
            table = table.loc[table[term_column] == term]
        elif present:
            term = present[0]
    elif term is not None:
        raise PlotInputError(
            f"{func}: term={term!r} was given but the table has no {term_column!r} column."
        )
    _duplicated_rows(
        table, [group], func, f"{group}", "Filter the table to one grouping factor and term."
    )
    est, low, high = _intervals(table, estimate, ci_low, ci_high, se, func)
    ids = table[group].astype(str).to_numpy()
    order = np.lexsort((ids, est))
    est, low, high = est[order], low[order], high[order]
    n = len(est)
    ranks = np.arange(1, n + 1, dtype=float)

    ax = _axes_or_new(ax)
    marker_size = 3.0 if n <= 60 else 1.5
    line_width = 0.9 if n <= 60 else 0.5
    ax.axhline(
        0,
        gid=f"{REFERENCE_GID}-zero",
        color=REFERENCE_COLOR,
        linestyle="--",
        linewidth=0.8,
        zorder=1,
    )
    ax.vlines(ranks, low, high, colors=OKABE_ITO["black"], linewidth=line_width, zorder=2)
    ax.plot(
        ranks,
        est,
        linestyle="none",
        marker="o",
        markersize=marker_size,
        color=OKABE_ITO["black"],
        zorder=3,
    )
    ax.set_xlim(0.5 - 0.02 * n, n + 0.5 + 0.02 * n)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    noun = GROUP_NOUNS.get(group, group)
    ax.set_xlabel(f"{noun} (ranked by estimate)")
    if ylabel is None:
        if term is None or str(term) in INTERCEPT_TERMS:
            ylabel = axis_label("random_intercept", axis_labels)
        else:
            ylabel = f"Random effect: {term} (95% interval)"
    ax.set_ylabel(_wrap(ylabel, 32))
    return _finish_axes(ax)


def _level_order(levels: list[Any], order: Sequence[Any] | None, func: str, hue: str) -> list[Any]:
    if order is not None:
        missing = [lv for lv in levels if lv not in order]
        absent = [lv for lv in order if lv not in levels]
        if missing or absent:
            raise PlotInputError(
                f"{func}: order must list the levels of {hue!r} exactly; levels in the data "
                f"{levels}, order {list(order)}."
            )
        return list(order)
    rank = {"low": 0, "average": 1, "high": 2, None: 3}
    # sorted() is stable: levels that are none of the three keep their data order.
    return sorted(levels, key=lambda level: rank[alliance_level_name(level)])


@_styled
def plot_predicted_trajectories(
    data: pd.DataFrame,
    *,
    x: str = "session",
    y: str = "predicted",
    hue: str = "alliance_level",
    ci_low: str = "ci_low",
    ci_high: str = "ci_high",
    se: str = "se",
    order: Sequence[Any] | None = None,
    palette: Mapping[Any, str] | None = None,
    legend_title: str = "Alliance",
    ax: Axes | None = None,
    axis_labels: Mapping[str, str] | None = None,
) -> Axes:
    """Model-predicted trajectories with 95% CI bands at several alliance levels.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per level and session: ``x``, ``hue`` (level label),
        ``y`` (prediction) and ``ci_low``/``ci_high`` (or ``se``).
    x, y, hue, ci_low, ci_high, se : str
        Column names.
    order : sequence, optional
        Level order (legend and drawing).  Default: labels starting with
        "low", "average"/"mean", "high" in that order, then any others in
        data order.
    palette : mapping, optional
        Level to colour.  Default: low = vermillion dashed, average = black
        solid, high = blue dash-dot (:data:`helpers.style.ALLIANCE_LEVEL_STYLES`);
        other levels get further palette colours, solid.
    legend_title : str
        Title of the legend.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new single-column figure when None.
    axis_labels : mapping, optional
        Overrides of :data:`helpers.style.LABELS` (the y label is
        ``axis_labels["predicted"]`` when ``y == "predicted"``).

    Returns
    -------
    matplotlib.axes.Axes
        One band and one :class:`~matplotlib.lines.Line2D` per level, labelled
        with the level.
    """
    func = "plot_predicted_trajectories"
    table = _check_frame(data, func)
    _require_columns(table, {"x": x, "y": y, "hue": hue}, func)
    _duplicated_rows(
        table, [hue, x], func, f"{hue} and {x}", "Pass one prediction per level and session."
    )
    xs_all = _numeric(table, x, func)
    est, low, high = _intervals(table, y, ci_low, ci_high, se, func)
    levels = _level_order(list(dict.fromkeys(table[hue].dropna())), order, func, hue)
    fallback = group_colors([lv for lv in levels if alliance_level_style(lv) is None], fixed={})
    ax = _axes_or_new(ax)
    labels_arr = table[hue].to_numpy()
    for level in levels:
        mask = labels_arr == level
        idx = np.argsort(xs_all[mask], kind="mergesort")
        xs, ys = xs_all[mask][idx], est[mask][idx]
        lo, hi = low[mask][idx], high[mask][idx]
        style = alliance_level_style(level) or {"color": fallback[level], "linestyle": "-"}
        if palette is not None and level in palette:
            style["color"] = palette[level]
        ax.fill_between(xs, lo, hi, color=style["color"], alpha=_BAND_ALPHA, linewidth=0, zorder=1)
        ax.plot(
            xs, ys, color=style["color"], linestyle=style["linestyle"], zorder=2, label=str(level)
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(axis_label(x, axis_labels))
    ax.set_ylabel(axis_label(y, axis_labels))
    ax.legend(title=legend_title, loc="best")
    return _finish_axes(ax)


@_styled
def plot_rupture_v(
    data: pd.DataFrame,
    *,
    x: str = "relative_session",
    y: str = "mean",
    ci_low: str = "ci_low",
    ci_high: str = "ci_high",
    se: str = "se",
    individual: pd.DataFrame | None = None,
    individual_y: str = "alliance",
    unit: str = "patient_id",
    max_units: int | None = None,
    seed: int = 20240501,
    ylabel: str | None = None,
    ax: Axes | None = None,
    axis_labels: Mapping[str, str] | None = None,
) -> Axes:
    """Scores aligned on a rupture session: mean with 95% CI, optional individual lines.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per relative session: ``x`` (0 = the rupture session,
        negative before, positive after), ``y`` and ``ci_low``/``ci_high``
        (or ``se``).
    x, y, ci_low, ci_high, se : str
        Column names.
    individual : pandas.DataFrame, optional
        Long frame of the aligned individual scores: columns ``x``, ``unit``
        and ``individual_y``; drawn as faint grey lines.
    individual_y, unit : str
        Columns of ``individual``.
    max_units, seed : optional
        Draw at most ``max_units`` individual lines, chosen with
        ``numpy.random.default_rng(seed)``.
    ylabel : str, optional
        Default: the label of ``individual_y`` ("Alliance (WAI-SR total, 12–60)").
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new single-column figure when None.
    axis_labels : mapping, optional
        Overrides of :data:`helpers.style.LABELS`.

    Returns
    -------
    matplotlib.axes.Axes
        A dotted vertical line at ``x = 0``; the mean is a
        :class:`~matplotlib.lines.Line2D` with markers labelled "Mean (95% CI)";
        individual lines, when given, are one
        :class:`~matplotlib.collections.LineCollection`.
    """
    func = "plot_rupture_v"
    table = _check_frame(data, func)
    _require_columns(table, {"x": x, "y": y}, func)
    _duplicated_rows(table, [x], func, f"{x}", "Pass one summary row per relative session.")
    xs = _numeric(table, x, func)
    est, low, high = _intervals(table, y, ci_low, ci_high, se, func)
    ax = _axes_or_new(ax)
    handles = []
    if individual is not None:
        ind = _check_frame(individual, func, "individual")
        _require_columns(
            ind, {"x": x, "unit": unit, "individual_y": individual_y}, func, "individual"
        )
        frame = pd.DataFrame(
            {
                unit: ind[unit].to_numpy(),
                x: _numeric(ind, x, func, "individual"),
                individual_y: _numeric(ind, individual_y, func, "individual"),
            },
            index=ind.index,
        )
        _duplicated_rows(
            frame,
            [unit, x],
            func,
            f"{unit} and {x} in individual",
            "Pass one aligned score per unit and relative session.",
        )
        shown = _sample_units(frame[unit].unique(), max_units, seed)
        if shown is not None:
            frame = frame.loc[frame[unit].isin(shown)]
        segments = _individual_segments(frame, x, individual_y, unit)
        ax.add_collection(
            LineCollection(
                segments, colors=REFERENCE_COLOR, linewidths=_INDIVIDUAL_LW, alpha=0.35, zorder=1
            ),
            autolim=True,
        )
        handles.append(
            Line2D(
                [],
                [],
                color=REFERENCE_COLOR,
                linewidth=_INDIVIDUAL_LW,
                label=f"Individual {GROUP_NOUNS.get(unit, unit).lower()} (n = {len(segments)})",
            )
        )
    order = np.argsort(xs, kind="mergesort")
    xs, est, low, high = xs[order], est[order], low[order], high[order]
    ax.axvline(
        0,
        gid=f"{REFERENCE_GID}-rupture",
        color=REFERENCE_COLOR,
        linestyle=":",
        linewidth=1.0,
        zorder=1,
    )
    ax.fill_between(
        xs, low, high, color=OKABE_ITO["black"], alpha=_BAND_ALPHA, linewidth=0, zorder=2
    )
    (mean_line,) = ax.plot(
        xs,
        est,
        color=OKABE_ITO["black"],
        marker="o",
        markersize=3.5,
        zorder=3,
        label="Mean (95% CI)",
    )
    handles.insert(0, mean_line)
    ax.autoscale_view()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(
        axis_label("relative_session", axis_labels)
        if x == "relative_session"
        else axis_label(x, axis_labels)
    )
    ax.set_ylabel(ylabel if ylabel is not None else axis_label(individual_y, axis_labels))
    ax.legend(handles=handles, loc="best")
    return _finish_axes(ax)


class _ForestRows(NamedTuple):
    """The checked rows of a forest plot, in table order."""

    table: pd.DataFrame
    labels: list[str]
    est: np.ndarray
    low: np.ndarray
    high: np.ndarray
    highlighted: np.ndarray
    pooled_r: float | None


def _check_forest(
    data: pd.DataFrame,
    label: str,
    r: str,
    ci_low: str,
    ci_high: str,
    highlight: str | Sequence[str] | None,
    pooled: float | str | None,
) -> _ForestRows:
    """The input checks of :func:`plot_forest`; raises :class:`PlotInputError`."""
    func = "plot_forest"
    table = _check_frame(data, func)
    _require_columns(table, {"label": label, "r": r, "ci_low": ci_low, "ci_high": ci_high}, func)
    _duplicated_rows(table, [label], func, f"{label}", "Give every row its own label.")
    est, low, high = _intervals(table, r, ci_low, ci_high, "__no_se__", func, allow_missing=True)
    if np.isnan(est).any():
        raise PlotInputError(
            f"{func}: column r={r!r} is missing in rows "
            f"{describe_rows(table.index[np.isnan(est)])}."
        )
    outside = (
        (np.abs(est) > 1) | (np.abs(np.nan_to_num(low)) > 1) | (np.abs(np.nan_to_num(high)) > 1)
    )
    if outside.any():
        raise PlotInputError(
            f"{func}: correlations and their bounds must lie in [-1, 1]; rows "
            f"{describe_rows(table.index[outside])} do not. Convert other effect sizes to r first."
        )
    labels = [str(v) for v in table[label]]
    wanted = (
        [] if highlight is None else [highlight] if isinstance(highlight, str) else list(highlight)
    )
    unknown = [h for h in wanted if h not in labels]
    if unknown:
        raise PlotInputError(
            f"{func}: highlight label(s) {unknown} not in column {label!r}; labels present: "
            f"{labels}."
        )
    if isinstance(pooled, str):
        if pooled not in labels:
            raise PlotInputError(
                f"{func}: pooled={pooled!r} is not a label in column {label!r}; labels present: "
                f"{labels}."
            )
        pooled_r: float | None = float(est[labels.index(pooled)])
    else:
        pooled_r = None if pooled is None else float(pooled)
    highlighted = np.array([t in wanted for t in labels])
    return _ForestRows(table, labels, est, low, high, highlighted, pooled_r)


def _forest_tick_labels(rows: _ForestRows, k: str | None, n: str | None) -> list[str]:
    """Row labels with "(k = …, N = …)" added where the counts are present."""

    def count(column: str | None, i: int) -> float | None:
        if column is None or column not in rows.table.columns:
            return None
        value = pd.to_numeric(rows.table[column], errors="coerce").iloc[i]
        return None if pd.isna(value) else float(value)

    tick_labels = []
    for i, text in enumerate(rows.labels):
        extra = []
        k_value, n_value = count(k, i), count(n, i)
        if k_value is not None:
            extra.append(f"k = {k_value:,.0f}")
        if n_value is not None:
            extra.append(f"N = {n_value:,.0f}")
        counts = f"({', '.join(extra)})" if extra else ""
        joined = f"{text} {counts}".strip()
        tick_labels.append(joined if len(joined) <= 32 else f"{_wrap(text, 32)}\n{counts}".strip())
    return tick_labels


def _bold_highlighted(tick_labels: Sequence[Any], highlighted: np.ndarray) -> None:
    for tick, study in zip(tick_labels, highlighted, strict=True):
        if study:
            tick.set_color(HIGHLIGHT_COLOR)
            tick.set_fontweight("bold")


def _draw_forest_rows(ax: Axes, rows: _ForestRows, positions: np.ndarray) -> None:
    """The r = 0 and pooled lines, then the intervals and points of each row."""
    ax.axvline(
        0,
        gid=f"{REFERENCE_GID}-zero",
        color=REFERENCE_COLOR,
        linestyle="-",
        linewidth=0.8,
        zorder=1,
    )
    if rows.pooled_r is not None:
        ax.axvline(
            rows.pooled_r,
            gid=f"{REFERENCE_GID}-pooled",
            color=REFERENCE_COLOR,
            linestyle="--",
            linewidth=0.8,
            zorder=1,
            label=f"Pooled r = {_apa_number(rows.pooled_r)}",
        )
    has_ci = ~np.isnan(rows.low)
    for rows_mask, color, marker, size in (
        (~rows.highlighted, OKABE_ITO["black"], "D", 4.0),
        (rows.highlighted, HIGHLIGHT_COLOR, "s", 5.0),
    ):
        lines = rows_mask & has_ci
        if lines.any():
            ax.hlines(
                positions[lines],
                rows.low[lines],
                rows.high[lines],
                colors=color,
                linewidth=1.2,
                zorder=2,
            )
        if rows_mask.any():
            ax.plot(
                rows.est[rows_mask],
                positions[rows_mask],
                linestyle="none",
                marker=marker,
                markersize=size,
                color=color,
                zorder=3,
            )


def _forest_values(ax: Axes, rows: _ForestRows, positions: np.ndarray) -> None:
    """Each row's "r [ci_low, ci_high]" on a secondary axis at the right."""
    has_ci = ~np.isnan(rows.low)
    values = [
        f"{_apa_number(e)} [{_apa_number(lo)}, {_apa_number(hi)}]" if ok else _apa_number(e)
        for e, lo, hi, ok in zip(rows.est, rows.low, rows.high, has_ci, strict=True)
    ]
    right = ax.secondary_yaxis("right")
    right.set_yticks(positions, values)
    right.tick_params(axis="y", length=0, labelsize=SMALL_FONT_SIZE, labelfontfamily=FONT_FAMILY)
    right.spines["right"].set_visible(False)
    _bold_highlighted(right.get_yticklabels(), rows.highlighted)


@_styled
def plot_forest(
    data: pd.DataFrame,
    *,
    label: str = "label",
    r: str = "r",
    ci_low: str = "ci_low",
    ci_high: str = "ci_high",
    k: str | None = "k",
    n: str | None = "N",
    highlight: str | Sequence[str] | None = None,
    pooled: float | str | None = None,
    show_values: bool = True,
    ax: Axes | None = None,
    axis_labels: Mapping[str, str] | None = None,
) -> Axes:
    """This study's alliance–outcome r beside meta-analytic benchmarks.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per estimate, drawn top to bottom in table order: ``label``,
        ``r``, ``ci_low``, ``ci_high`` (both missing: the point only), and
        optionally ``k`` (studies) and ``N`` (patients).
    label, r, ci_low, ci_high : str
        Column names.
    k, n : str or None
        Columns with the number of studies and of patients; when present and
        not missing they are added to the row label, "(k = 295, N = 30,000)".
    highlight : str or sequence of str, optional
        Label(s) of this study's row(s): drawn as vermillion squares with a
        bold label; the other rows are black diamonds.
    pooled : float or str, optional
        A dashed vertical line at this r (e.g. the pooled meta-analytic r), or
        at the r of the row with this label.
    show_values : bool
        Print "r [ci_low, ci_high]" (APA style, no leading zero) at the right.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new single-column figure (height by number of rows)
        when None.
    axis_labels : mapping, optional
        Overrides of :data:`helpers.style.LABELS` (x label ``"r"``).

    Returns
    -------
    matplotlib.axes.Axes
        A solid vertical line at r = 0 (and the dashed pooled line, in the
        legend as "Pooled r = .28").
    """
    rows = _check_forest(data, label, r, ci_low, ci_high, highlight, pooled)
    tick_labels = _forest_tick_labels(rows, k, n)
    count = len(rows.labels)
    ax = _axes_or_new(ax, _rows_aspect(count))
    positions = np.arange(count)[::-1].astype(float)
    _draw_forest_rows(ax, rows, positions)
    ax.set_yticks(positions, tick_labels)
    _bold_highlighted(ax.get_yticklabels(), rows.highlighted)
    ax.set_ylim(-0.6, count - 0.4)
    ax.tick_params(axis="y", length=0)
    ax.spines["left"].set_visible(False)
    ax.set_xlabel(axis_label("r", axis_labels))
    if rows.pooled_r is not None:
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.1)
    if show_values:
        _forest_values(ax, rows, positions)
    return _finish_axes(ax)


# --------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------


@_styled
def plot_residuals_vs_fitted(
    data: pd.DataFrame,
    *,
    fitted: str = "fitted",
    residual: str = "residual",
    lowess: bool = True,
    frac: float = 2 / 3,
    ax: Axes | None = None,
    axis_labels: Mapping[str, str] | None = None,
) -> Axes:
    """Residuals against fitted values, a line at zero and a LOWESS smooth.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per observation with the fitted value and the residual.
    fitted, residual : str
        Column names.
    lowess : bool
        Add the LOWESS smooth of the residuals on the fitted values
        (``statsmodels.nonparametric.lowess`` with ``frac`` and its default
        three robustifying iterations; Cleveland, 1979).  A smooth that
        departs from zero points to a misspecified mean structure.
    frac : float
        Share of the data used for each local fit.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new single-column figure when None.
    axis_labels : mapping, optional
        Overrides of :data:`helpers.style.LABELS` (keys ``"fitted"`` and
        ``"residual"``).

    Returns
    -------
    matplotlib.axes.Axes
        The points are one :class:`~matplotlib.collections.PathCollection`;
        rows with a missing value are left out.
    """
    func = "plot_residuals_vs_fitted"
    table = _check_frame(data, func)
    _require_columns(table, {"fitted": fitted, "residual": residual}, func)
    fx, ry = _numeric(table, fitted, func), _numeric(table, residual, func)
    keep = ~(np.isnan(fx) | np.isnan(ry))
    fx, ry = fx[keep], ry[keep]
    if len(fx) == 0:
        raise PlotInputError(f"{func}: no rows with both {fitted!r} and {residual!r} present.")
    ax = _axes_or_new(ax)
    ax.axhline(
        0,
        gid=f"{REFERENCE_GID}-zero",
        color=REFERENCE_COLOR,
        linestyle="--",
        linewidth=0.8,
        zorder=1,
    )
    ax.scatter(fx, ry, s=4, color=OKABE_ITO["blue"], alpha=0.35, linewidths=0, zorder=2)
    if lowess and len(fx) >= 3:
        from statsmodels.nonparametric.smoothers_lowess import lowess as _lowess

        smooth = _lowess(ry, fx, frac=frac, return_sorted=True)
        ax.plot(
            smooth[:, 0],
            smooth[:, 1],
            color=OKABE_ITO["vermillion"],
            linewidth=1.4,
            zorder=3,
            label="LOWESS",
        )
    ax.set_xlabel(axis_label("fitted" if fitted == "fitted" else fitted, axis_labels))
    ax.set_ylabel(axis_label("residual" if residual == "residual" else residual, axis_labels))
    return _finish_axes(ax)


def normal_quantiles(n: int) -> np.ndarray:
    """Standard normal quantiles at the plotting positions of R's ``ppoints(n)``.

    The positions are ``(i - a) / (n + 1 - 2a)`` for ``i = 1..n``, with
    ``a = 3/8`` when ``n <= 10`` and ``a = 1/2`` otherwise (Blom, 1958; as in
    R's ``qqnorm``); the quantiles come from :func:`scipy.stats.norm.ppf`.

    Parameters
    ----------
    n : int
        Number of observations (at least 1).

    Returns
    -------
    numpy.ndarray
        ``n`` increasing quantiles.

    Examples
    --------
    >>> normal_quantiles(5).round(4).tolist()
    [-1.1798, -0.4972, 0.0, 0.4972, 1.1798]
    """
    if n < 1:
        raise PlotInputError(f"n must be at least 1, got {n}.", fix="Pass n >= 1.")
    a = 3 / 8 if n <= 10 else 1 / 2
    positions = (np.arange(1, n + 1) - a) / (n + 1 - 2 * a)
    return stats.norm.ppf(positions)


@_styled
def plot_qq(
    values: Any,
    ax: Axes | None = None,
    *,
    ylabel: str | None = None,
    axis_labels: Mapping[str, str] | None = None,
) -> Axes:
    """Normal quantile-quantile plot with a reference line through the quartiles.

    Parameters
    ----------
    values : array-like or pandas.Series
        The sample (e.g. residuals or random effects); missing values are left
        out.  A Series named after a known quantity (``"residual"``) takes
        that quantity's label.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new single-column figure when None.
    ylabel : str, optional
        Default: the Series' label, else "Sample quantiles".
    axis_labels : mapping, optional
        Overrides of :data:`helpers.style.LABELS`.

    Returns
    -------
    matplotlib.axes.Axes
        Points: a :class:`~matplotlib.lines.Line2D` of (normal quantile,
        sorted value) from :func:`normal_quantiles`; the reference line (as
        R's ``qqline``) passes through the first and third sample quartiles
        (numpy's default, R's type 7) against the normal quartiles
        ``±0.6745``, drawn across the range of the points.
    """
    func = "plot_qq"
    name = values.name if isinstance(values, pd.Series) else None
    try:
        sample = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise PlotInputError(
            f"{func}: values must be numbers (an array, list or numeric Series); got values "
            f"that cannot be converted to float."
        ) from None
    sample = np.sort(sample[~np.isnan(sample)])
    if sample.size < 3:
        raise PlotInputError(f"{func}: needs at least 3 non-missing values, got {sample.size}.")
    theoretical = normal_quantiles(sample.size)
    q1, q3 = np.quantile(sample, [0.25, 0.75])
    z1, z3 = stats.norm.ppf([0.25, 0.75])
    slope = (q3 - q1) / (z3 - z1)
    intercept = q1 - slope * z1
    ax = _axes_or_new(ax, aspect=1.0)
    ends = np.array([theoretical[0], theoretical[-1]])
    ax.plot(
        ends,
        intercept + slope * ends,
        color=OKABE_ITO["vermillion"],
        linewidth=1.0,
        zorder=1,
        label="Quartile line",
    )
    ax.plot(
        theoretical,
        sample,
        linestyle="none",
        marker="o",
        markersize=2.5,
        color=OKABE_ITO["blue"],
        alpha=0.6,
        markeredgewidth=0,
        zorder=2,
        label="Sample",
    )
    ax.set_xlabel(axis_label("theoretical_quantiles", axis_labels))
    if ylabel is None:
        ylabel = (
            axis_label(str(name), axis_labels)
            if name is not None and (str(name) in LABELS or str(name) in (axis_labels or {}))
            else axis_label("sample_quantiles", axis_labels)
        )
    ax.set_ylabel(ylabel)
    return _finish_axes(ax)


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------


#: The formats :func:`save_figure` and :func:`save_and_show` write by default.
DEFAULT_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")


def save_figure(
    fig: Figure | Axes,
    name: str,
    folder: str | Path = FIGURES_DIR,
    formats: Sequence[str] = DEFAULT_FORMATS,
    dpi: int = 300,
) -> list[Path]:
    """Write a figure in several formats, byte-identical from one run to the next.

    Parameters
    ----------
    fig : matplotlib.figure.Figure or matplotlib.axes.Axes
        The figure (or any of its axes).
    name : str
        File name without extension, e.g. ``"fig2_trajectories"``.
    folder : str or pathlib.Path
        Output folder, created if needed (default ``figures/`` of the project).
    formats : sequence of {"png", "svg", "pdf"}
        Formats to write, in this order.
    dpi : int
        Resolution of the PNG (and of any rasterised part of SVG/PDF).

    Returns
    -------
    list of pathlib.Path
        The files written, in the order of ``formats``.

    Raises
    ------
    PlotInputError
        For an unknown format, a name with a folder or an extension in it, or
        a dpi that is not a positive whole number.

    Notes
    -----
    Nothing that changes between runs is written: PNG files carry no
    ``Software`` entry, SVG files no ``Date`` and a fixed ``svg.hashsalt`` (the
    ids of clip paths derive from it), PDF files no ``CreationDate`` or
    ``ModDate``.  The figure is drawn in :data:`helpers.style.STYLE`, with
    fonts embedded as TrueType (PDF) or paths (SVG).  Each file is written
    under a temporary name and renamed into place (:func:`helpers.safety.atomic_path`).
    """
    figure, formats, out = _save_arguments(fig, name, folder, formats, dpi)
    with mpl.rc_context(rc=STYLE), _frozen_layout(figure):
        return _write_formats(figure, out, str(name), formats, int(dpi))


def _save_arguments(
    fig: Figure | Axes, name: str, folder: str | Path, formats: Sequence[str] | str, dpi: int
) -> tuple[Figure, list[str], Path]:
    """Check :func:`save_figure`'s arguments; return the figure, formats and folder."""
    func = "save_figure"
    figure = fig.figure if isinstance(fig, Axes) else fig
    if not isinstance(figure, Figure):
        raise PlotInputError(
            f"{func}: fig must be a matplotlib Figure or Axes, got {type(fig).__name__}."
        )
    formats = [formats] if isinstance(formats, str) else list(formats)
    unknown = [f for f in formats if f not in FIGURE_FORMATS]
    if unknown or not formats:
        raise PlotInputError(
            f"{func}: unknown format(s) {unknown or formats}; choose from {sorted(FIGURE_FORMATS)}."
        )
    name = str(name)
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise PlotInputError(
            f"{func}: name must be a plain file name without folders, got {name!r}; pass the "
            "folder with folder=..."
        )
    if Path(name).suffix.lower().lstrip(".") in FIGURE_FORMATS:
        raise PlotInputError(
            f"{func}: give the name without an extension (got {name!r}); the formats come "
            "from formats=..."
        )
    if int(dpi) != dpi or dpi <= 0:
        raise PlotInputError(f"{func}: dpi must be a positive whole number, got {dpi!r}.")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    return figure, formats, out


def _write_formats(
    figure: Figure, out: Path, name: str, formats: Sequence[str], dpi: int
) -> list[Path]:
    """Write ``figure`` once per format, each file atomically (layout already frozen)."""
    written = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        with atomic_path(path) as tmp:  # never a half-written figure under its name
            figure.savefig(tmp, format=fmt, dpi=dpi, metadata=dict(FIGURE_FORMATS[fmt]))
        written.append(path)
    return written


def _axes_positions(figure: Figure) -> list[tuple[float, ...]]:
    return [tuple(ax.get_position().bounds) for ax in figure.axes]


@contextmanager
def _frozen_layout(figure: Figure, max_draws: int = 5) -> Iterator[None]:
    """Run the figure's layout engine to a fixed point, then hold it while saving.

    A layout engine (constrained layout) recomputes the axes positions at every
    draw, from text extents that depend on the dpi of that draw and on the
    previous positions; a PNG at 300 dpi, an SVG at 72 dpi and a second save
    of the same figure would then each get a slightly different layout.  Here
    the layout is redrawn (at the figure's own dpi) until the positions stop
    changing, switched off while the files are written, and switched back on
    afterwards, so every format and every call uses the same positions.
    """
    engine = figure.get_layout_engine()
    if engine is None:
        yield
        return
    previous = None
    for _ in range(max_draws):
        figure.draw_without_rendering()
        current = _axes_positions(figure)
        if current == previous:
            break
        previous = current
    figure.set_layout_engine("none")
    try:
        yield
    finally:
        figure.set_layout_engine(engine)


def save_and_show(fig: Figure, name: str, folder: Path | str = FIGURES_DIR) -> list[Path]:
    """Save ``fig`` with :func:`save_figure`, show it in the notebook, and close it.

    The figure is shown as a PNG at screen resolution (100 dpi) rendered here,
    so a notebook displays it the same way whatever matplotlib backend the
    kernel uses (inline in JupyterLab, Agg under a test runner).  It is drawn
    with the layout frozen for the saved files (:func:`_frozen_layout`), so the
    figure on screen has the same layout as the files, and the layout engine
    runs once for all four renderings.

    Returns
    -------
    list of pathlib.Path
        The files written by :func:`save_figure`.
    """
    import io

    from IPython.display import Image, display

    figure, formats, out = _save_arguments(fig, name, folder, DEFAULT_FORMATS, 300)
    shown = io.BytesIO()
    with mpl.rc_context(rc=STYLE), _frozen_layout(figure):  # one layout for files and screen
        paths = _write_formats(figure, out, str(name), formats, 300)
        figure.savefig(shown, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    display(Image(shown.getvalue()))
    return paths


def add_note(ax: Axes, text: str) -> Axes:
    """Write a short warning inside the top of ``ax`` (e.g. that a fit was singular).

    The note is part of the figure, so it travels with every saved format; use it
    for what a reader must not miss, such as a variance estimated at zero.
    """
    with use_style():
        ax.text(
            0.5,
            0.97,
            text,
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize=mpl.rcParams["font.size"] * 0.85,
            color="0.2",
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "0.6"},
        )
    return ax


@_styled
def plot_power_curve(
    data: pd.DataFrame,
    *,
    x: str,
    hue: str | None = None,
    term: str | None = None,
    target: float | None = 0.8,
    xlabel: str | None = None,
    hue_label: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Simulated power against a design size, one line per ``hue`` value, with MC intervals.

    Parameters
    ----------
    data : pandas.DataFrame
        A :func:`helpers.power.power_curve` table: ``x``, ``hue``, ``term``, ``power``,
        ``power_ci_low``, ``power_ci_high``.
    x : str
        Design column on the horizontal axis (e.g. ``"n_therapists"``).
    hue : str, optional
        Column with one line per value (e.g. ``"patients_per_therapist"``).
    term : str, optional
        Keep only this term's rows (required when the table holds several terms).
    target : float or None, default 0.8
        A dashed reference line at this power (gid ``"reference-target"``).
    xlabel, hue_label : str, optional
        Axis and legend titles (default: the column names).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (a new single-column figure when None).

    Returns
    -------
    matplotlib.axes.Axes
        One :class:`~matplotlib.lines.Line2D` per ``hue`` value (labelled by the value)
        and its Monte Carlo interval as error bars; y from 0 to 1.
    """
    func = "plot_power_curve"
    table = _check_frame(data, func)
    needed = {"x": x, "hue": hue, **{c: c for c in ("power", "power_ci_low", "power_ci_high")}}
    _require_columns(table, needed, func)
    if term is not None:
        table = table.loc[table["term"] == term]
    elif "term" in table.columns and table["term"].nunique() > 1:
        raise PlotInputError(
            f"{func}: the table holds several terms {sorted(table['term'].unique())}; pass term=."
        )
    if table.empty:
        raise PlotInputError(f"{func}: no rows to plot for term {term!r}.")
    ax = _axes_or_new(ax)
    levels = _ordered_levels(table[hue]) if hue else [None]
    colors = list(CYCLE_COLORS)
    markers = ["o", "s", "^", "D", "v", "P"]
    for i, level in enumerate(levels):
        part = table if level is None else table.loc[table[hue] == level]
        part = part.sort_values(x)
        xs = part[x].to_numpy(dtype=float)
        ys = part["power"].to_numpy(dtype=float)
        err = np.vstack([ys - part["power_ci_low"], part["power_ci_high"] - ys])
        color = colors[i % len(colors)]
        ax.errorbar(xs, ys, yerr=err, color=color, linewidth=0, elinewidth=0.8, capsize=2)
        ax.plot(xs, ys, color=color, marker=markers[i % len(markers)], markersize=4,
                label=None if level is None else f"{level:g}" if isinstance(level, float)
                else str(level))  # fmt: skip
    if target is not None:
        ax.axhline(target, gid=f"{REFERENCE_GID}-target", color=REFERENCE_COLOR,
                   linestyle="--", linewidth=0.8, zorder=1)  # fmt: skip
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel if xlabel is not None else x)
    ax.set_ylabel("Power")
    if hue:
        ax.legend(title=hue_label if hue_label is not None else hue, frameon=False)
    return _finish_axes(ax)
