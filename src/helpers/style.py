"""The one figure style of the compendium: sizes, fonts, colours and axis labels.

Every plot in :mod:`helpers.plots` is drawn with :data:`STYLE`, applied through
:func:`use_style` (a :func:`matplotlib.rc_context`), so the global
``matplotlib.rcParams`` are never changed permanently.  Use the same context
manager around your own figures to match them::

    with use_style():
        fig, ax = new_figure("double")
        ...

Choices (the reasons and sources are in ``docs/figures.md``)
-------------------------------------------------------------
* **Sizes.**  Figures are made at their printed size: one journal column
  (:data:`SINGLE_COLUMN_IN`, 3.5 in) or the full page width
  (:data:`DOUBLE_COLUMN_IN`, 7 in).  Text is 7–8 pt at that size, whichever
  width is used, so a figure is never scaled down in print.
* **Font.**  DejaVu Sans, which ships inside matplotlib: the rendering (and
  the committed baseline images of the tests) do not depend on the fonts of
  the machine.  PDF files embed it as TrueType (``pdf.fonttype`` 42), so text
  stays editable.
* **Colours.**  The palette of Okabe & Ito (2008), distinguishable with the
  common forms of colour-vision deficiency, with a *fixed* colour per
  treatment modality (:data:`MODALITY_COLORS`) so a modality has the same
  colour in every figure, and fixed colours *and line styles* for low /
  average / high alliance (:data:`ALLIANCE_LEVEL_STYLES`), which stay apart in
  greyscale print.
* **Labels.**  Axes name the instrument, what a total means and its range,
  e.g. "Alliance (WAI-SR total, 12–60)".  :func:`make_labels` builds the
  mapping for any supported pair of instruments; :data:`LABELS` holds the
  demo study's (WAI-SR client form, PHQ-9).

References
----------
Okabe, M., & Ito, K. (2008). *Color Universal Design (CUD): How to make
figures and presentations that are friendly to colorblind people.* J*Fly.
https://jfly.uni-koeln.de/color/
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import matplotlib as mpl
from matplotlib import cycler

from helpers.errors import PlotInputError, SettingsError
from helpers.scoring import SHORT_NAMES, get_instrument

# --------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------

#: Width of one journal column, in inches.
SINGLE_COLUMN_IN: float = 3.5
#: Width of a figure spanning both columns (the full text width), in inches.
DOUBLE_COLUMN_IN: float = 7.0
#: Named widths accepted by :func:`figure_size` and :func:`new_figure`.
FIGURE_WIDTHS: dict[str, float] = {"single": SINGLE_COLUMN_IN, "double": DOUBLE_COLUMN_IN}
#: Default height / width ratio of a figure.
DEFAULT_ASPECT: float = 0.75

#: Font sizes in points, at the printed size of the figure.
FONT_SIZE: float = 8.0
SMALL_FONT_SIZE: float = 7.0
#: The bundled font used for every text element.
FONT_FAMILY: str = "DejaVu Sans"

# --------------------------------------------------------------------------------------
# Colours
# --------------------------------------------------------------------------------------

#: The eight colours of Okabe & Ito (2008), by the names they give them.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

#: Fixed colour of each treatment modality (keys as in the processed data).
MODALITY_COLORS: dict[str, str] = {
    "CBT": OKABE_ITO["blue"],
    "psychodynamic": OKABE_ITO["vermillion"],
    "humanistic": OKABE_ITO["bluish_green"],
}

#: Colours given, in this order, to groups without a fixed colour.  Yellow comes
#: last: it is hard to see on white.
EXTRA_COLORS: tuple[str, ...] = (
    OKABE_ITO["orange"],
    OKABE_ITO["sky_blue"],
    OKABE_ITO["reddish_purple"],
    OKABE_ITO["black"],
    OKABE_ITO["yellow"],
)

#: Colour order of the axes' property cycle (used by plain ``ax.plot`` calls).
CYCLE_COLORS: tuple[str, ...] = (
    OKABE_ITO["blue"],
    OKABE_ITO["vermillion"],
    OKABE_ITO["bluish_green"],
    OKABE_ITO["orange"],
    OKABE_ITO["sky_blue"],
    OKABE_ITO["reddish_purple"],
    OKABE_ITO["black"],
)

#: Colour and line style of the predicted trajectory at low / average / high
#: alliance.  A level label is matched by its first word (case-insensitive):
#: ``"low"``, ``"average"`` or ``"mean"``, ``"high"``.
ALLIANCE_LEVEL_STYLES: dict[str, dict[str, str]] = {
    "low": {"color": OKABE_ITO["vermillion"], "linestyle": "--"},
    "average": {"color": OKABE_ITO["black"], "linestyle": "-"},
    "high": {"color": OKABE_ITO["blue"], "linestyle": "-."},
}

#: Colour of the row of this study in a forest plot.
HIGHLIGHT_COLOR: str = OKABE_ITO["vermillion"]
#: Colour of reference lines (zero, pooled estimate) and individual trajectories.
REFERENCE_COLOR: str = "#7F7F7F"

# --------------------------------------------------------------------------------------
# rcParams
# --------------------------------------------------------------------------------------

#: The rcParams of every figure of the compendium (see the module docstring).
STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "figure.figsize": (SINGLE_COLUMN_IN, SINGLE_COLUMN_IN * DEFAULT_ASPECT),
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.dpi": 300,
    "font.family": "sans-serif",
    "font.sans-serif": [FONT_FAMILY],
    "font.size": FONT_SIZE,
    "mathtext.fontset": "dejavusans",
    "axes.unicode_minus": True,
    "axes.titlesize": FONT_SIZE + 1,
    "axes.labelsize": FONT_SIZE,
    "axes.linewidth": 0.6,
    "axes.edgecolor": "black",
    "axes.labelcolor": "black",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "axes.prop_cycle": cycler(color=list(CYCLE_COLORS)),
    "xtick.labelsize": SMALL_FONT_SIZE,
    "ytick.labelsize": SMALL_FONT_SIZE,
    "xtick.direction": "out",
    "ytick.direction": "out",
    "xtick.major.size": 3.0,
    "ytick.major.size": 3.0,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.size": 1.5,
    "ytick.minor.size": 1.5,
    "lines.linewidth": 1.25,
    "lines.markersize": 4.0,
    "patch.linewidth": 0.6,
    "legend.fontsize": SMALL_FONT_SIZE,
    "legend.title_fontsize": SMALL_FONT_SIZE,
    "legend.frameon": False,
    "legend.handlelength": 2.2,
    "legend.borderaxespad": 0.3,
    "errorbar.capsize": 0.0,
    "image.cmap": "viridis",
    # Stable output files (see helpers.plots.save_figure).
    "svg.fonttype": "path",
    "svg.hashsalt": "alliance-outcome-compendium",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}


def use_style(**overrides: Any) -> AbstractContextManager:
    """Context manager that applies :data:`STYLE` (plus ``overrides``) temporarily.

    Parameters
    ----------
    **overrides
        rcParams to change on top of :data:`STYLE`.  Their names contain dots,
        so pass them unpacked from a dict: ``use_style(**{"font.size": 9})``.

    Returns
    -------
    contextlib.AbstractContextManager
        :func:`matplotlib.rc_context`; on exit every rcParam is restored.

    Examples
    --------
    >>> import matplotlib as mpl
    >>> before = mpl.rcParams["font.size"]
    >>> with use_style():
    ...     mpl.rcParams["font.size"]
    8.0
    >>> mpl.rcParams["font.size"] == before
    True
    """
    return mpl.rc_context(rc={**STYLE, **overrides})


def figure_size(
    width: str | float = "single", aspect: float = DEFAULT_ASPECT
) -> tuple[float, float]:
    """Width and height of a figure in inches.

    Parameters
    ----------
    width : {"single", "double"} or float
        A named journal width (:data:`FIGURE_WIDTHS`) or a width in inches.
    aspect : float
        Height divided by width.

    Returns
    -------
    tuple of float
        ``(width, height)`` in inches.

    Raises
    ------
    ValueError
        For an unknown name or a width or aspect that is not positive.

    Examples
    --------
    >>> figure_size("double", aspect=0.5)
    (7.0, 3.5)
    """
    if isinstance(width, str):
        if width not in FIGURE_WIDTHS:
            raise SettingsError(
                f"Unknown figure width {width!r}: use one of {sorted(FIGURE_WIDTHS)} "
                "or a number of inches."
            )
        inches = FIGURE_WIDTHS[width]
    else:
        inches = float(width)
    if not inches > 0 or not aspect > 0:
        raise SettingsError(
            f"Figure width and aspect must be positive; got width={width!r}, aspect={aspect!r}.",
            fix="Pass a positive width and aspect.",
        )
    return (inches, inches * aspect)


# --------------------------------------------------------------------------------------
# Axis labels
# --------------------------------------------------------------------------------------

#: Short printed names of the supported instruments (one home: :data:`helpers.scoring.SHORT_NAMES`).
INSTRUMENT_SHORT_NAMES: dict[str, str] = SHORT_NAMES

#: What each outcome instrument measures, as the axis names it.
OUTCOME_CONSTRUCTS: dict[str, str] = {
    "phq9": "Depression",
    "gad7": "Anxiety",
    "oq45": "Distress",
    "bdi2": "Depression",
}

#: Plural nouns for the grouping factors, used on ranked (caterpillar) axes.
GROUP_NOUNS: dict[str, str] = {"patient_id": "Patients", "therapist_id": "Therapists"}


def _short_name(key: str) -> str:
    instrument = get_instrument(key)  # clear error for an unknown key
    return INSTRUMENT_SHORT_NAMES.get(instrument.key, instrument.key)


def make_labels(alliance: str = "wai_sr", outcome: str = "phq9") -> dict[str, str]:
    """Axis labels for canonical columns and plot quantities, for a pair of instruments.

    Parameters
    ----------
    alliance : str
        Key of the alliance instrument in :data:`helpers.scoring.INSTRUMENTS`
        (the study config's ``alliance.<rater>.instrument``).
    outcome : str
        Key of the outcome instrument (the study config's ``outcome.instrument``).

    Returns
    -------
    dict of str to str
        Keys are canonical column names (``alliance``, ``outcome``,
        ``session``, ...) and plot quantities (``coefficient``,
        ``random_intercept``, ``r``, ``fitted``, ``residual``, ...).

    Raises
    ------
    ValueError
        For an instrument key that is not registered.

    Examples
    --------
    >>> make_labels()["alliance"]
    'Alliance (WAI-SR total, 12–60)'
    >>> make_labels("wai_s", "oq45")["outcome"]
    'Distress (OQ-45 total, 0–180)'
    """
    a_inst, o_inst = get_instrument(alliance), get_instrument(outcome)
    a, o = _short_name(alliance), _short_name(outcome)
    a_range = f"{a_inst.total_min}–{a_inst.total_max}"
    o_range = f"{o_inst.total_min}–{o_inst.total_max}"
    construct = OUTCOME_CONSTRUCTS.get(o_inst.key, "Outcome")
    return {
        "session": "Session",
        "modality": "Modality",
        "alliance": f"Alliance ({a} total, {a_range})",
        "alliance_client": f"Client-rated alliance ({a} total, {a_range})",
        "alliance_between": f"Patient mean alliance ({a} total, {a_range})",
        "alliance_within": f"Alliance, deviation from patient mean ({a} points)",
        "alliance_within_lag": f"Previous-session alliance deviation ({a} points)",
        "alliance_early": f"Early alliance ({a} total, {a_range})",
        "outcome": f"{construct} ({o} total, {o_range})",
        "outcome_intake": f"{construct} at intake ({o} total, {o_range})",
        "outcome_change": f"Change since intake ({o} points)",
        "predicted": f"Predicted {construct.lower()} ({o} total)",
        "relative_session": "Session relative to rupture (0 = rupture)",
        "coefficient": f"Estimate ({o} points, 95% CI)",
        "random_intercept": f"Random intercept ({o} points, 95% interval)",
        "random_effect": "Random effect (95% interval)",
        "r": "Alliance–outcome correlation r (95% CI)",
        "fitted": f"Fitted value ({o} total)",
        "residual": f"Residual ({o} points)",
        "theoretical_quantiles": "Standard normal quantiles",
        "sample_quantiles": "Sample quantiles",
        "patient_id": "Patient",
        "therapist_id": "Therapist",
    }


def make_term_labels(alliance: str = "wai_sr", outcome: str = "phq9") -> dict[str, str]:
    """Short labels of model terms (fixed effects) for coefficient plots.

    Parameters
    ----------
    alliance, outcome : str
        Instrument keys, as in :func:`make_labels`.

    Returns
    -------
    dict of str to str
        Canonical term name to printed label.

    Examples
    --------
    >>> make_term_labels()["alliance_within_lag"]
    'Alliance within patient, previous session (per WAI-SR point)'
    """
    a, o = _short_name(alliance), _short_name(outcome)
    return {
        "Intercept": "Intercept",
        "session": "Session (per session)",
        "session_c": "Session (per session)",
        "alliance": f"Alliance (per {a} point)",
        "alliance_within": f"Alliance within patient (per {a} point)",
        "alliance_within_lag": f"Alliance within patient, previous session (per {a} point)",
        "alliance_between": f"Alliance between patients (per {a} point)",
        "alliance_between_c": f"Alliance between patients (per {a} point)",
        "alliance_patient_dev": f"Patient deviation from therapist mean (per {a} point)",
        "alliance_therapist_mean": f"Therapist mean alliance (per {a} point)",
        "alliance_early": f"Early alliance (per {a} point)",
        "outcome_intake": f"Intake {o} (per point)",
        "outcome_lag": f"Previous-session {o} (per point)",
    }


#: Axis labels of the demo study's instruments (WAI-SR client form, PHQ-9).
LABELS: dict[str, str] = make_labels()
#: Model-term labels of the demo study's instruments.
TERM_LABELS: dict[str, str] = make_term_labels()


def axis_label(name: str, labels: Mapping[str, str] | None = None) -> str:
    """The printed label of a column or plot quantity.

    Parameters
    ----------
    name : str
        Canonical column name or plot quantity.
    labels : mapping, optional
        Labels that take precedence over :data:`LABELS`.

    Returns
    -------
    str
        The label, or ``name`` itself when no label is known.

    Examples
    --------
    >>> axis_label("outcome")
    'Depression (PHQ-9 total, 0–27)'
    >>> axis_label("outcome", {"outcome": "PHQ-9"})
    'PHQ-9'
    >>> axis_label("my_covariate")
    'my_covariate'
    """
    if labels is not None and name in labels:
        return labels[name]
    return LABELS.get(name, name)


# --------------------------------------------------------------------------------------
# Colour mappings
# --------------------------------------------------------------------------------------


def group_colors(levels: Iterable[Any], fixed: Mapping[str, str] | None = None) -> dict[Any, str]:
    """Assign palette colours to group levels, keeping the fixed ones.

    Parameters
    ----------
    levels : iterable
        The levels, in the order they should receive the free colours.
    fixed : mapping, optional
        Level to colour for levels that always have the same colour; matched
        case-insensitively.  Defaults to :data:`MODALITY_COLORS`.

    Returns
    -------
    dict
        Level to hex colour.  Levels without a fixed colour receive
        :data:`EXTRA_COLORS` in turn (then the unused fixed colours).

    Raises
    ------
    ValueError
        When there are more levels than distinguishable colours.

    Examples
    --------
    >>> group_colors(["humanistic", "CBT", "other"])
    {'humanistic': '#009E73', 'CBT': '#0072B2', 'other': '#E69F00'}
    """
    fixed = MODALITY_COLORS if fixed is None else fixed
    fixed_folded = {str(k).casefold(): v for k, v in fixed.items()}
    levels = list(dict.fromkeys(levels))
    colors: dict[Any, str] = {}
    for level in levels:
        if str(level).casefold() in fixed_folded:
            colors[level] = fixed_folded[str(level).casefold()]
    used = set(colors.values())
    free = [c for c in (*EXTRA_COLORS, *fixed_folded.values()) if c not in used]
    free = list(dict.fromkeys(free))
    rest = [level for level in levels if level not in colors]
    if len(rest) > len(free):
        raise PlotInputError(
            f"{len(levels)} groups to colour but only {len(used) + len(free)} distinguishable "
            f"colours (Okabe & Ito palette). Groups: {levels}. Plot fewer groups at once, or "
            "pass palette={level: colour} for every level."
        )
    for level, color in zip(rest, free, strict=False):
        colors[level] = color
    return colors


def alliance_level_name(label: Any) -> str | None:
    """Which of low / average / high alliance a level label names, if any.

    Parameters
    ----------
    label : object
        A level label such as ``"low (−1 SD)"``, ``"average"``, ``"Mean"`` or
        ``"high (+1 SD)"``; its first word decides (case-insensitive), and
        "mean" counts as "average".

    Returns
    -------
    {"low", "average", "high"} or None

    Examples
    --------
    >>> alliance_level_name("Mean alliance")
    'average'
    >>> alliance_level_name("median") is None
    True
    """
    words = str(label).strip().casefold().replace("(", " ").split()
    if not words:
        return None
    first = "average" if words[0] == "mean" else words[0]
    return first if first in ALLIANCE_LEVEL_STYLES else None


def alliance_level_style(label: Any) -> dict[str, str] | None:
    """Colour and line style of a low / average / high alliance level label.

    Parameters
    ----------
    label : object
        A level label, matched by :func:`alliance_level_name`.

    Returns
    -------
    dict or None
        A copy of ``{"color": ..., "linestyle": ...}`` from
        :data:`ALLIANCE_LEVEL_STYLES`, or ``None`` for a label that is none of
        the three.

    Examples
    --------
    >>> alliance_level_style("High (+1 SD)")
    {'color': '#0072B2', 'linestyle': '-.'}
    """
    name = alliance_level_name(label)
    return None if name is None else dict(ALLIANCE_LEVEL_STYLES[name])
