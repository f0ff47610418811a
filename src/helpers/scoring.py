"""Instrument scoring, total-range checks and reliable / clinically significant change.

Every supported instrument is described once, in :data:`INSTRUMENTS`, by an
:class:`Instrument` record: its items and their range, reverse-scored items,
subscales, the missing-item rule, the direction of the scale, and the
constants used for reliable change (Jacobson & Truax, 1991), each number with
the source it comes from as a string field next to it.

Status of the constants
-----------------------
Each ``*_source`` field says where its number comes from.  Some of them could
be checked against a published text while this module was written, and some
are quoted from memory of the published form or manual and could not be
checked.  The source string says which, with the words "not verified" for the
latter.  Check any number marked "not verified" against the cited publication
before you report results that depend on it.  In short:

* WAI-S (Tracey & Kokotovic, 1989): the subscale key and the two
  reverse-scored items (4 and 10) are from memory of the client form and are
  not verified.
* OQ-45: the reverse-scored items, the 14-point reliable change and the
  missing-item substitution were checked against the publisher's scoring
  sheet.  The item lists of the three subscales, the total cut-off of 64, the
  test–retest reliability of .84 and the invalid-at-5-missing rule are not
  verified.
* BDI-II: the cut-off (14, the start of the "mild" band) and the test–retest
  reliability (.93) were checked.  The SD of 12.75 for 500 outpatients in the
  manual is not verified.
* PHQ-9 and GAD-7: the cut-offs and reliabilities were checked.  Each SD is
  pooled from the female and male means and SDs in the normative study's
  abstract, and the pooling is shown in the source string.

Missing items
-------------
Two proration rules are implemented (``Instrument.proration``):

``"total_mean"``
    If at most ``max_missing`` items are missing, the total is the mean of
    the answered items times the number of items, rounded half up to a whole
    number (x.5 goes up).  Otherwise the total is missing.  A subscale is
    scored only when all of its items are answered; it is never prorated.
``"subscale_item_mean"`` (OQ-45)
    If at most ``max_missing`` items are missing, each missing item is
    replaced by the mean of the answered items of its subscale (after reverse
    scoring), rounded half up to a whole number.  The subscales are then summed
    and the total is the sum of the subscales.  Otherwise the total and all
    subscales are missing.

Checking input
--------------
:func:`score_items` refuses values outside the item range, values that are not
whole numbers and values that are not numbers.  Checking and logging such
values is the cleaning step's job (:mod:`helpers.cleaning`).  Scoring stops
with an error naming the column, the first rows and their values, so that no
unchecked value can reach a total.

References
----------
Jacobson, N. S., & Truax, P. (1991). Clinical significance: A statistical
approach to defining meaningful change in psychotherapy research. *Journal of
Consulting and Clinical Psychology, 59*(1), 12–19.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from helpers.errors import DataInputError, SettingsError
from helpers.validation import describe_rows

#: Two-sided 5 % critical value of the standard normal used by Jacobson & Truax (1991).
Z_CRITICAL: float = 1.96

#: Absolute tolerance of the comparison ``|RCI| >= 1.96``, so that a change of
#: exactly the published number of points (e.g. 14 on the OQ-45) counts as
#: reliable despite floating-point rounding.
RCI_TOLERANCE: float = 1e-9


Proration = Literal["total_mean", "subscale_item_mean"]
Construct = Literal["alliance", "outcome"]


@dataclass(frozen=True)
class Instrument:
    """Scoring rules and published constants of one instrument.

    Attributes
    ----------
    key : str
        Registry key, as written in the study config (e.g. ``"phq9"``).
    name : str
        Full name.
    citation : str
        The publication that defines the instrument.
    construct : {"alliance", "outcome"}
        What the instrument measures in this suite.
    n_items : int
        Number of items.  :func:`score_items` expects one column per item, in
        item order 1..n_items.
    item_min, item_max : int
        Range of a single item response.
    reverse_items : tuple of int
        1-based items scored ``item_min + item_max - x``.
    subscales : tuple of (str, tuple of int)
        Subscale name and its 1-based items.  The order is the column order of
        the scores.
    higher_is_worse : bool
        ``True`` for symptom measures (higher = worse), ``False`` for alliance
        measures (higher = stronger alliance).
    max_missing : int
        Largest number of missing items for which a total is still computed.
    proration : {"total_mean", "subscale_item_mean"}
        How missing items are handled (see the module docstring).
    missing_rule_source : str
        Where the missing-item rule comes from, or why it was chosen.
    reliability : float or None
        Reliability used for the standard error of measurement.
    reliability_kind : str
        ``"test-retest"`` or ``"internal consistency (alpha)"``.
    reliability_source : str
        Source of ``reliability``.
    cutoff : float or None
        Lowest total in the dysfunctional range: a total of ``cutoff`` or more
        is dysfunctional for measures where higher is worse.
    cutoff_source : str
        Source of ``cutoff``.
    sd : float or None
        Standard deviation of a normative or clinical sample, used for the
        standard error of measurement.
    sd_source : str
        Source of ``sd``.
    reliable_change_points : float or None
        The smallest change in raw points that the publisher calls reliable.
        It is used only when ``sd`` is None: the standard error of the
        difference is then ``reliable_change_points / 1.96``, which gives
        the publisher's threshold back.
    reliable_change_source : str
        Source of ``reliable_change_points``.
    notes : str
        Anything else a user must know.
    """

    key: str
    name: str
    citation: str
    construct: Construct
    n_items: int
    item_min: int
    item_max: int
    reverse_items: tuple[int, ...]
    subscales: tuple[tuple[str, tuple[int, ...]], ...]
    higher_is_worse: bool
    max_missing: int
    proration: Proration
    missing_rule_source: str
    reliability: float | None
    reliability_kind: str
    reliability_source: str
    cutoff: float | None
    cutoff_source: str
    sd: float | None
    sd_source: str
    reliable_change_points: float | None = None
    reliable_change_source: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        items = range(1, self.n_items + 1)
        bad_reverse = [i for i in self.reverse_items if i not in items]
        if bad_reverse:
            raise SettingsError(
                f"{self.key}: reverse items {bad_reverse} outside 1..{self.n_items}"
            )
        seen: list[int] = []
        for name, members in self.subscales:
            outside = [i for i in members if i not in items]
            if outside:
                raise SettingsError(
                    f"{self.key}: subscale {name!r} has items {outside} out of range"
                )
            seen.extend(members)
        if len(seen) != len(set(seen)):
            raise SettingsError(f"{self.key}: an item belongs to more than one subscale")
        if self.proration == "subscale_item_mean" and sorted(seen) != list(items):
            raise SettingsError(
                f"{self.key}: subscale_item_mean needs subscales covering every item"
            )
        if not 0 <= self.max_missing < self.n_items:
            raise SettingsError(f"{self.key}: max_missing must be in 0..{self.n_items - 1}")

    @property
    def total_min(self) -> int:
        """Smallest possible total."""
        return self.n_items * self.item_min

    @property
    def total_max(self) -> int:
        """Largest possible total."""
        return self.n_items * self.item_max

    @property
    def direction(self) -> str:
        """What a higher total means, in words."""
        return "higher = worse" if self.higher_is_worse else "higher = stronger alliance"

    @property
    def subscale_names(self) -> tuple[str, ...]:
        """Names of the subscales, in column order."""
        return tuple(name for name, _ in self.subscales)

    def subscale_items(self) -> dict[str, tuple[int, ...]]:
        """Map each subscale name to its 1-based items."""
        return dict(self.subscales)

    def subscale_range(self, name: str) -> tuple[int, int]:
        """Smallest and largest possible score of subscale ``name``."""
        n = len(self.subscale_items()[name])
        return n * self.item_min, n * self.item_max


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------

_WAI_SUBSCALES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("task", (1, 2, 10, 12)),
    ("bond", (3, 5, 7, 9)),
    ("goal", (4, 6, 8, 11)),
)

_WAI_MISSING_RULE = (
    "Project rule, not published: the total is prorated when at most 1 of the 12 items is "
    "missing (mean of the answered items x 12, rounded half up). A subscale has only 4 "
    "items, so it is scored only when all four are answered."
)

_ALLIANCE_NO_RCI = (
    "Not applicable: this suite computes reliable change only for outcome measures; no "
    "alliance cut-off or normative SD is used."
)

WAI_SR = Instrument(
    key="wai_sr",
    name="Working Alliance Inventory - Short Revised (client form)",
    citation=(
        "Hatcher, R. L., & Gillaspy, J. A. (2006). Development and validation of a revised "
        "short version of the Working Alliance Inventory. Psychotherapy Research, 16(1), 12-25."
    ),
    construct="alliance",
    n_items=12,
    item_min=1,
    item_max=5,
    reverse_items=(),
    subscales=_WAI_SUBSCALES,
    higher_is_worse=False,
    max_missing=1,
    proration="total_mean",
    missing_rule_source=_WAI_MISSING_RULE,
    reliability=None,
    reliability_kind="",
    reliability_source=_ALLIANCE_NO_RCI,
    cutoff=None,
    cutoff_source=_ALLIANCE_NO_RCI,
    sd=None,
    sd_source=_ALLIANCE_NO_RCI,
    notes=(
        "Items are rated 1 (seldom) to 5 (always). Task = items 1, 2, 10, 12; Bond = 3, 5, 7, 9; "
        "Goal = 4, 6, 8, 11 (Hatcher & Gillaspy 2006). All items are positively worded, so "
        "none is reverse-scored. Total 12-60, each subscale 4-20."
    ),
)

WAI_S = Instrument(
    key="wai_s",
    name="Working Alliance Inventory - Short form (client form)",
    citation=(
        "Tracey, T. J., & Kokotovic, A. M. (1989). Factor structure of the Working Alliance "
        "Inventory. Psychological Assessment: A Journal of Consulting and Clinical Psychology, "
        "1(3), 207-210."
    ),
    construct="alliance",
    n_items=12,
    item_min=1,
    item_max=7,
    reverse_items=(4, 10),
    subscales=(
        ("task", (1, 2, 10, 12)),
        ("bond", (3, 5, 7, 9)),
        ("goal", (4, 6, 8, 11)),
    ),
    higher_is_worse=False,
    max_missing=1,
    proration="total_mean",
    missing_rule_source=_WAI_MISSING_RULE,
    reliability=None,
    reliability_kind="",
    reliability_source=_ALLIANCE_NO_RCI,
    cutoff=None,
    cutoff_source=_ALLIANCE_NO_RCI,
    sd=None,
    sd_source=_ALLIANCE_NO_RCI,
    notes=(
        "Items are rated 1 (never) to 7 (always). NOT VERIFIED: the subscale key (Task 1, 2, "
        "10, 12; Bond 3, 5, 7, 9; Goal 4, 6, 8, 11) and the reverse-scored items 4 ('... does "
        "not understand what I am trying to accomplish') and 10 ('... different ideas on what "
        "my problems are'), scored 8 - x, are from memory of the client form. They could not "
        "be checked against Tracey & Kokotovic (1989) when this module was written. Only the "
        "client form is covered; the therapist form may be keyed differently. Total 12-84, each "
        "subscale 4-28."
    ),
)

PHQ9 = Instrument(
    key="phq9",
    name="Patient Health Questionnaire-9",
    citation=(
        "Kroenke, K., Spitzer, R. L., & Williams, J. B. W. (2001). The PHQ-9: Validity of a "
        "brief depression severity measure. Journal of General Internal Medicine, 16(9), 606-613."
    ),
    construct="outcome",
    n_items=9,
    item_min=0,
    item_max=3,
    reverse_items=(),
    subscales=(),
    higher_is_worse=True,
    max_missing=2,
    proration="total_mean",
    missing_rule_source=(
        "NHS Data Dictionary, 'Patient Health Questionnaire-9' (IAPT): if one or two items "
        "are missing, substitute the mean of the answered items; with more than two missing, "
        "disregard the questionnaire. Kroenke et al. (2001) give no rule. Rounding half up to "
        "a whole number is a project choice."
    ),
    reliability=0.84,
    reliability_kind="test-retest",
    reliability_source=(
        "Kroenke et al. (2001): the PHQ-9 completed in clinic and given again by telephone "
        "within 48 h correlated .84. Their internal consistency was alpha = .89 (primary "
        "care) and .86 (obstetrics-gynaecology)."
    ),
    cutoff=10,
    cutoff_source=(
        "Kroenke et al. (2001): a score of 10 or more had 88 % sensitivity and 88 % "
        "specificity for major depression. The NHS Data Dictionary also treats 10 or more as "
        "clinically significant."
    ),
    sd=3.51,
    sd_source=(
        "Kocalevent, R.-D., Hinz, A., & Braehler, E. (2013). Standardization of the depression "
        "screener PHQ-9 in the general population. General Hospital Psychiatry, 35(5), "
        "551-555. German general population, n = 5018, 53.6 % women: women M = 3.1 "
        "(SD 3.5), men M = 2.7 (SD 3.5). Pooled SD = sqrt(3.5^2 + .536 x .464 x 0.4^2) = "
        "3.51. Normative sample, as Jacobson & Truax (1991) allow."
    ),
    notes=(
        "Total 0-27. Because the SD is normative, the reliable-change threshold is small, "
        "about 3.9 points. Pass sd= (e.g. the SD of your own intake scores) to "
        "reliable_change_index or classify_change to use a clinical-sample SD instead."
    ),
)

GAD7 = Instrument(
    key="gad7",
    name="Generalized Anxiety Disorder-7",
    citation=(
        "Spitzer, R. L., Kroenke, K., Williams, J. B. W., & Loewe, B. (2006). A brief measure "
        "for assessing generalized anxiety disorder: The GAD-7. Archives of Internal "
        "Medicine, 166(10), 1092-1097."
    ),
    construct="outcome",
    n_items=7,
    item_min=0,
    item_max=3,
    reverse_items=(),
    subscales=(),
    higher_is_worse=True,
    max_missing=1,
    proration="total_mean",
    missing_rule_source=(
        "Project rule, not published by Spitzer et al. (2006): the total is prorated when at "
        "most 1 of the 7 items is missing (mean of the answered items x 7, rounded half up). "
        "One missing item (14 %) stays within the share the PHQ-9 rule allows (2 of 9, 22 %); "
        "two missing (29 %) would not."
    ),
    reliability=0.83,
    reliability_kind="test-retest",
    reliability_source=(
        "Spitzer et al. (2006): test-retest intraclass correlation .83; internal consistency "
        "alpha = .92."
    ),
    cutoff=10,
    cutoff_source=(
        "Spitzer et al. (2006): a cut point of 10 gave 89 % sensitivity and 82 % specificity "
        "for generalized anxiety disorder. The IAPT programme uses 8 instead; pass cutoff= to "
        "classify_change for that."
    ),
    sd=3.37,
    sd_source=(
        "Loewe, B., et al. (2008). Validation and standardization of the Generalized Anxiety "
        "Disorder Screener (GAD-7) in the general population. Medical Care, 46(3), 266-274. "
        "German general population, n = 5030, 53.6 % women: women M = 3.2 (SD 3.5), men "
        "M = 2.7 (SD 3.2). Pooled SD = sqrt(.536 x 3.5^2 + .464 x 3.2^2 + .536 x .464 x "
        "0.5^2) = 3.37. The paper's whole-sample SD was not consulted."
    ),
    notes="Total 0-21. Reliable change needs about 3.9 points with these constants.",
)

OQ45 = Instrument(
    key="oq45",
    name="Outcome Questionnaire-45.2",
    citation=(
        "Lambert, M. J., et al. (2004). Administration and scoring manual for the OQ-45.2. "
        "American Professional Credentialing Services; Lambert, M. J., Burlingame, G. M., "
        "Umphress, V., et al. (1996). The reliability and validity of the Outcome "
        "Questionnaire. Clinical Psychology and Psychotherapy, 3(4), 249-258."
    ),
    construct="outcome",
    n_items=45,
    item_min=0,
    item_max=4,
    reverse_items=(1, 12, 13, 20, 21, 24, 31, 37, 43),
    subscales=(
        (
            "symptom_distress",
            (
                *(2, 3, 5, 6, 8, 9, 10, 11, 13, 15, 22, 23, 24, 25),
                *(27, 29, 31, 33, 34, 35, 36, 40, 41, 42, 45),
            ),
        ),
        ("interpersonal_relations", (1, 7, 16, 17, 18, 19, 20, 26, 30, 37, 43)),
        ("social_role", (4, 12, 14, 21, 28, 32, 38, 39, 44)),
    ),
    higher_is_worse=True,
    max_missing=4,
    proration="subscale_item_mean",
    missing_rule_source=(
        "Publisher's scoring sheet ('Scoring and Interpreting the OQ-45'): replace a blank "
        "item by the mean of the remaining items of its subscale, rounded to the nearest "
        "whole number (half up here). Treating 5 or more missing items as invalid follows "
        "the project specification and is attributed to the manual (Lambert et al. 2004), "
        "NOT VERIFIED."
    ),
    reliability=0.84,
    reliability_kind="test-retest",
    reliability_source=(
        "Lambert et al. (1996): 3-week test-retest r = .84 for the total (internal "
        "consistency alpha = .93). NOT VERIFIED against the article; used only when sd= is "
        "passed, because the default standard error comes from reliable_change_points."
    ),
    cutoff=64,
    cutoff_source=(
        "Lambert et al. (2004) manual: totals of 64 or more are in the dysfunctional range "
        "(63 or less functional). NOT VERIFIED; the scoring sheet that was checked gives "
        "36 for the Symptom Distress subscale."
    ),
    sd=None,
    sd_source=(
        "No published SD is used. The standard error of the difference comes from the "
        "publisher's reliable change of 14 points (S_diff = 14 / 1.96), so that RCI >= 1.96 "
        "exactly when the change is 14 points or more."
    ),
    reliable_change_points=14,
    reliable_change_source=(
        "OQ Measures (publisher), FAQ table of reliable change indices and the scoring "
        "sheet: a change of 14 points or more on the OQ-45.2 total is reliable."
    ),
    notes=(
        "Total 0-180; Symptom Distress 25 items (0-100), Interpersonal Relations 11 items "
        "(0-44), Social Role 9 items (0-36); the subscale sizes were checked. NOT VERIFIED: "
        "the item lists of the subscales are from memory of the manual's key."
    ),
)

BDI2 = Instrument(
    key="bdi2",
    name="Beck Depression Inventory-II",
    citation=(
        "Beck, A. T., Steer, R. A., & Brown, G. K. (1996). Manual for the Beck Depression "
        "Inventory-II. San Antonio, TX: Psychological Corporation."
    ),
    construct="outcome",
    n_items=21,
    item_min=0,
    item_max=3,
    reverse_items=(),
    subscales=(),
    higher_is_worse=True,
    max_missing=2,
    proration="total_mean",
    missing_rule_source=(
        "Project rule, not from the manual: the total is prorated when at most 2 of the 21 "
        "items (about 10 %) are missing (mean of the answered items x 21, rounded half up)."
    ),
    reliability=0.93,
    reliability_kind="test-retest",
    reliability_source=(
        "Beck, Steer & Brown (1996): 1-week test-retest r = .93 in 26 outpatients; internal "
        "consistency alpha = .92 (outpatients) and .93 (college students)."
    ),
    cutoff=14,
    cutoff_source=(
        "Beck, Steer & Brown (1996) severity bands: 0-13 minimal, 14-19 mild, 20-28 "
        "moderate, 29-63 severe. 14 is the start of the mild band, not a Jacobson-Truax "
        "criterion c."
    ),
    sd=12.75,
    sd_source=(
        "Beck, Steer & Brown (1996): 500 psychiatric outpatients, M = 22.45, SD = 12.75. "
        "NOT VERIFIED: quoted from memory of the manual, which could not be checked."
    ),
    notes=(
        "Total 0-63. Items 16 (sleep) and 18 (appetite) have the options 0, 1a, 1b, 2a, 2b, "
        "3a, 3b; enter them as their numbers 0-3."
    ),
)

#: All supported instruments, by the key used in the study config.
INSTRUMENTS: dict[str, Instrument] = {
    inst.key: inst for inst in (WAI_SR, WAI_S, PHQ9, GAD7, OQ45, BDI2)
}


#: Short printed names of the instruments (keys of :data:`INSTRUMENTS`), for labels and messages.
SHORT_NAMES: dict[str, str] = {
    "wai_sr": "WAI-SR",
    "wai_s": "WAI-S",
    "phq9": "PHQ-9",
    "gad7": "GAD-7",
    "oq45": "OQ-45",
    "bdi2": "BDI-II",
}


def get_instrument(instrument: str | Instrument) -> Instrument:
    """Return the :class:`Instrument` registered under ``instrument``.

    Parameters
    ----------
    instrument : str or Instrument
        A key of :data:`INSTRUMENTS` (e.g. ``"phq9"``), or an instrument,
        which is returned as it is.

    Returns
    -------
    Instrument

    Raises
    ------
    ValueError
        If the key is unknown; the message lists the known keys.

    Examples
    --------
    >>> get_instrument("gad7").total_max
    21
    """
    if isinstance(instrument, Instrument):
        return instrument
    try:
        return INSTRUMENTS[instrument]
    except (KeyError, TypeError):
        known = ", ".join(sorted(INSTRUMENTS))
        raise SettingsError(
            f"Unknown instrument {instrument!r}. Known instruments: {known}. Check the "
            "'instrument' key of the study config."
        ) from None


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


def _round_half_up(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Round ``numerator / denominator`` half up (x.5 -> x+1), for non-negative values.

    ``floor((2 n + d) / (2 d))`` is exact for the small whole numbers that item
    sums are, so no value just below x.5 is pushed up by floating-point error.
    """
    return np.floor((2.0 * numerator + denominator) / (2.0 * denominator))


def _item_matrix(items: pd.DataFrame, inst: Instrument) -> np.ndarray:
    """Check the item columns and return them as a float matrix (NaN = missing)."""
    if not isinstance(items, pd.DataFrame):
        raise TypeError(
            f"score_items expects a pandas DataFrame of item columns, got {type(items).__name__}."
        )
    prefix = f"Cannot score {inst.key!r} ({inst.name})"
    if items.shape[1] != inst.n_items:
        raise DataInputError(
            f"{prefix}: expected {inst.n_items} item columns in item order 1..{inst.n_items}, "
            f"found {items.shape[1]}: {list(items.columns)}. Pass exactly the instrument's item "
            "columns, in item order."
        )
    problems: list[str] = []
    matrix = np.empty(items.shape, dtype=float)
    for pos in range(items.shape[1]):
        name = items.columns[pos]
        raw = items.iloc[:, pos]
        numeric = pd.to_numeric(raw, errors="coerce").astype("float64")
        values = numeric.to_numpy(dtype=float, na_value=np.nan)
        not_numeric = raw.notna().to_numpy() & np.isnan(values)
        if not_numeric.any():
            problems.append(
                f"column {name!r} holds values that are not numbers in rows "
                + describe_rows(items.index[not_numeric], list(raw[not_numeric]), unit="row(s)")
            )
        present = ~np.isnan(values)
        not_whole = present & (values != np.round(values))
        if not_whole.any():
            problems.append(
                f"column {name!r} holds values that are not whole numbers in rows "
                + describe_rows(items.index[not_whole], list(raw[not_whole]), unit="row(s)")
            )
        outside = present & ~not_whole & ((values < inst.item_min) | (values > inst.item_max))
        if outside.any():
            problems.append(
                f"column {name!r} holds values outside the item range "
                f"{inst.item_min}-{inst.item_max} in rows "
                + describe_rows(items.index[outside], list(raw[outside]), unit="row(s)")
            )
        matrix[:, pos] = values
    if problems:
        raise DataInputError(
            f"{prefix}: "
            + "; ".join(problems)
            + ". Scoring accepts only checked input. Run the cleaning step first: it logs each "
            "such value with its row and sets it to missing. Or correct the values in the "
            "source file."
        )
    return matrix


def score_items(items: pd.DataFrame, instrument: str | Instrument) -> pd.DataFrame:
    """Score item responses: total, subscales, number missing and whether prorated.

    Parameters
    ----------
    items : pandas.DataFrame
        One column per item, in item order 1..n (names are free), one row per
        administration.  Missing responses are NaN/NA.
    instrument : str or Instrument
        Key of :data:`INSTRUMENTS`, e.g. ``"wai_sr"`` or ``"phq9"``.

    Returns
    -------
    pandas.DataFrame
        Same index as ``items``, with the columns ``total``, one column per
        subscale (in the instrument's order), ``n_missing`` (int) and
        ``prorated`` (bool, True when the total was computed despite missing
        items).  Totals and subscales that cannot be computed under the
        missing-item rule are NaN.

    Raises
    ------
    ValueError
        If the number of columns is wrong, or if any value is not a number, not
        a whole number or outside the item range.  The message names the
        column, the first rows (by index label) and their values.

    Examples
    --------
    >>> items = pd.DataFrame([[1, 2, 3, 0, 1, 2, None, None, 3]])
    >>> scores = score_items(items, "phq9")
    >>> scores.loc[0, "total"], scores.loc[0, "n_missing"]
    (np.float64(15.0), np.int64(2))
    """
    inst = get_instrument(instrument)
    matrix = _item_matrix(items, inst)
    reverse_pos = [i - 1 for i in inst.reverse_items]
    if reverse_pos:
        matrix[:, reverse_pos] = inst.item_min + inst.item_max - matrix[:, reverse_pos]

    missing = np.isnan(matrix)
    n_missing = missing.sum(axis=1)
    valid = n_missing <= inst.max_missing
    answered_sum = np.where(missing, 0.0, matrix).sum(axis=1)
    n_answered = inst.n_items - n_missing

    out = pd.DataFrame(index=items.index)
    subscale_scores: dict[str, np.ndarray] = {}
    if inst.proration == "total_mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            prorated_total = _round_half_up(answered_sum * inst.n_items, n_answered)
        total = np.where(n_missing == 0, answered_sum, prorated_total)
        total = np.where(valid, total, np.nan)
        for name, members in inst.subscales:
            cols = [i - 1 for i in members]
            complete = ~missing[:, cols].any(axis=1)
            subscale_scores[name] = np.where(complete, matrix[:, cols].sum(axis=1), np.nan)
    else:  # "subscale_item_mean"
        total = np.zeros(len(matrix))
        for name, members in inst.subscales:
            cols = [i - 1 for i in members]
            sub_missing = missing[:, cols]
            sub_sum = np.where(sub_missing, 0.0, matrix[:, cols]).sum(axis=1)
            sub_n_answered = len(cols) - sub_missing.sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                substitute = _round_half_up(sub_sum, sub_n_answered)
            n_sub_missing = sub_missing.sum(axis=1)
            score = sub_sum + np.where(n_sub_missing > 0, n_sub_missing * substitute, 0.0)
            score = np.where(valid, score, np.nan)
            subscale_scores[name] = score
            total = total + score

    out["total"] = total
    for name in inst.subscale_names:
        out[name] = subscale_scores[name]
    out["n_missing"] = n_missing.astype("int64")
    out["prorated"] = valid & (n_missing > 0)
    return out


def check_total_range(totals: pd.Series, instrument: str | Instrument) -> pd.Series:
    """Flag totals outside the instrument's possible range.

    Use this for totals supplied directly rather than scored from items (e.g.
    a therapist WAI-SR total, which must lie in 12–60).  Missing totals are
    not flagged.  Totals need not be whole numbers, since a study may report
    prorated totals with decimals.

    Parameters
    ----------
    totals : pandas.Series
        The totals, numeric (missing as NaN/NA).
    instrument : str or Instrument
        Key of :data:`INSTRUMENTS`.

    Returns
    -------
    pandas.Series of bool
        Same index as ``totals``; True where a total lies outside
        ``[total_min, total_max]``.

    Raises
    ------
    ValueError
        If a value is not a number; the message names the series and rows.

    Examples
    --------
    >>> check_total_range(pd.Series([12, 61, None, 8]), "wai_sr").tolist()
    [False, True, False, True]
    """
    inst = get_instrument(instrument)
    series = pd.Series(totals)
    values = pd.to_numeric(series, errors="coerce").astype("float64")
    not_numeric = series.notna() & values.isna()
    if not_numeric.any():
        rows = describe_rows(series.index[not_numeric], list(series[not_numeric]), unit="row(s)")
        raise DataInputError(
            f"Total column {series.name!r} ({inst.name}) holds values that are not numbers in "
            f"rows {rows}. Correct them in the source file or mark them as missing."
        )
    outside = (values < inst.total_min) | (values > inst.total_max)
    return outside.fillna(False).astype(bool).rename(series.name)


# ---------------------------------------------------------------------------
# Reliable and clinically significant change (Jacobson & Truax, 1991)
# ---------------------------------------------------------------------------


def standard_error_of_difference(
    instrument: str | Instrument, *, sd: float | None = None, reliability: float | None = None
) -> float:
    """Standard error of the difference between two scores, ``S_diff``.

    ``S_diff = sqrt(2 SE^2)`` with ``SE = SD * sqrt(1 - r)`` (Jacobson & Truax,
    1991).  ``sd`` and ``reliability`` default to the instrument's published
    constants.  When the instrument gives no SD (OQ-45) and neither argument is
    passed, ``S_diff`` is the publisher's reliable change in points divided by
    1.96.

    Parameters
    ----------
    instrument : str or Instrument
        Key of :data:`INSTRUMENTS`.
    sd : float, optional
        A standard deviation to use instead of the instrument's, e.g. that of
        your own intake scores.
    reliability : float, optional
        A reliability in [0, 1) to use instead of the instrument's.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the needed constants are missing (e.g. for an alliance measure) or
        out of range.

    Examples
    --------
    >>> round(standard_error_of_difference("phq9", sd=5.0, reliability=0.84), 4)
    2.8284
    """
    inst = get_instrument(instrument)
    if sd is None and reliability is None and inst.sd is None:
        if inst.reliable_change_points is None:
            raise SettingsError(
                f"No reliable change is defined for {inst.key!r} ({inst.name}): it has no "
                "published SD, reliability or reliable-change threshold in this suite. Pass "
                "sd= and reliability= explicitly if you have them."
            )
        return inst.reliable_change_points / Z_CRITICAL
    sd_used = inst.sd if sd is None else sd
    r_used = inst.reliability if reliability is None else reliability
    if sd_used is None or r_used is None:
        raise SettingsError(
            f"Reliable change for {inst.key!r} needs both an SD and a reliability; the "
            f"instrument supplies sd={inst.sd} and reliability={inst.reliability}. Pass the "
            "missing one explicitly."
        )
    if not (math.isfinite(sd_used) and sd_used > 0):
        raise SettingsError(f"sd must be a positive number, got {sd_used!r}.")
    if not (0 <= r_used < 1):
        raise SettingsError(f"reliability must be in [0, 1), got {r_used!r}.")
    se = sd_used * math.sqrt(1.0 - r_used)
    return math.sqrt(2.0 * se**2)


def _as_float_series(values: object, label: str) -> pd.Series:
    """Convert ``values`` to a float Series (NaN = missing), naming bad entries."""
    series = values if isinstance(values, pd.Series) else pd.Series(list(values))
    numeric = pd.to_numeric(series, errors="coerce").astype("float64")
    not_numeric = series.notna() & numeric.isna()
    if not_numeric.any():
        rows = describe_rows(series.index[not_numeric], list(series[not_numeric]), unit="row(s)")
        raise DataInputError(f"{label} holds values that are not numbers in rows {rows}.")
    return numeric


def _paired_scores(pre: object, post: object) -> tuple[pd.Series, pd.Series]:
    """Return pre and post as aligned float Series, refusing silent misalignment."""
    pre_s = _as_float_series(pre, "pre")
    post_s = _as_float_series(post, "post")
    if len(pre_s) != len(post_s):
        raise DataInputError(
            f"pre and post must have equal length; got {len(pre_s)} and {len(post_s)}."
        )
    if isinstance(pre, pd.Series) and isinstance(post, pd.Series):
        if not pre.index.equals(post.index):
            raise DataInputError(
                "pre and post are Series with different indexes; align them first (e.g. one "
                "row per patient, same index) so that each pre score meets its own post score."
            )
    elif isinstance(pre, pd.Series):
        post_s.index = pre_s.index
    else:
        pre_s.index = post_s.index
    return pre_s, post_s


def reliable_change_index(
    pre: pd.Series | Sequence[float] | np.ndarray,
    post: pd.Series | Sequence[float] | np.ndarray,
    instrument: str | Instrument,
    *,
    sd: float | None = None,
    reliability: float | None = None,
) -> pd.Series:
    """Jacobson–Truax reliable change index ``RCI = (post - pre) / S_diff``.

    Parameters
    ----------
    pre, post : array-like of float
        Totals before and after, paired by position (or by a shared index).
    instrument : str or Instrument
        Key of :data:`INSTRUMENTS`.
    sd, reliability : float, optional
        Override the instrument's constants (see
        :func:`standard_error_of_difference`).

    Returns
    -------
    pandas.Series
        The RCI, NaN where either score is missing.  For measures where higher
        is worse, a negative RCI is an improvement.

    Examples
    --------
    >>> reliable_change_index([20.0], [10.0], "phq9", sd=5.0, reliability=0.84).round(3).tolist()
    [-3.536]
    """
    s_diff = standard_error_of_difference(instrument, sd=sd, reliability=reliability)
    pre_s, post_s = _paired_scores(pre, post)
    return ((post_s - pre_s) / s_diff).rename("rci")


def classify_change(
    pre: pd.Series | Sequence[float] | np.ndarray,
    post: pd.Series | Sequence[float] | np.ndarray,
    instrument: str | Instrument,
    *,
    sd: float | None = None,
    reliability: float | None = None,
    cutoff: float | None = None,
) -> pd.DataFrame:
    """Classify pre–post change as recovered, improved, unchanged or deteriorated.

    The rules follow Jacobson & Truax (1991) and take the scale's direction
    into account:

    * reliable improvement: the change is in the better direction and
      ``|RCI| >= 1.96``;
    * reliable deterioration: the change is in the worse direction and
      ``|RCI| >= 1.96``;
    * clinically significant: reliable improvement *and* ``pre`` in the
      dysfunctional range (at or above the cut-off when higher is worse) *and*
      ``post`` in the functional range;
    * category: ``"recovered"`` (clinically significant), ``"improved"``
      (reliable improvement without crossing the cut-off), ``"deteriorated"``,
      otherwise ``"no reliable change"``.

    A change of exactly 1.96 S_diff counts as reliable (tolerance
    :data:`RCI_TOLERANCE`).  For the OQ-45 this gives the publisher's rule,
    "14 points or more".

    Parameters
    ----------
    pre, post : array-like of float
        Totals before and after treatment.
    instrument : str or Instrument
        Key of an outcome instrument in :data:`INSTRUMENTS`.
    sd, reliability : float, optional
        Override the constants used for ``S_diff``.
    cutoff : float, optional
        Lowest dysfunctional total, instead of the instrument's.

    Returns
    -------
    pandas.DataFrame
        Columns ``rci`` (float), ``reliable_improvement``,
        ``reliable_deterioration``, ``clinically_significant`` (nullable
        boolean, NA where a score is missing) and ``category`` (string, NA
        where a score is missing).

    Raises
    ------
    ValueError
        For alliance instruments or when no cut-off is available.

    Examples
    --------
    >>> classify_change([16, 16], [8, 12], "phq9")["category"].tolist()
    ['recovered', 'improved']
    """
    inst = get_instrument(instrument)
    if inst.construct != "outcome":
        raise SettingsError(
            f"classify_change is for outcome measures; {inst.key!r} ({inst.name}) measures "
            "the alliance."
        )
    cut = inst.cutoff if cutoff is None else cutoff
    if cut is None:
        raise SettingsError(f"No clinical cut-off is defined for {inst.key!r}; pass cutoff=.")
    rci = reliable_change_index(pre, post, inst, sd=sd, reliability=reliability)
    pre_s, post_s = _paired_scores(pre, post)
    complete = rci.notna()
    worse_sign = 1.0 if inst.higher_is_worse else -1.0
    signed = worse_sign * rci  # positive = change towards worse
    threshold = Z_CRITICAL - RCI_TOLERANCE
    improvement = signed <= -threshold
    deterioration = signed >= threshold
    if inst.higher_is_worse:
        pre_dysfunctional = pre_s >= cut
        post_functional = post_s < cut
    else:
        pre_dysfunctional = pre_s <= cut
        post_functional = post_s > cut
    significant = improvement & pre_dysfunctional & post_functional

    category = pd.Series("no reliable change", index=rci.index, dtype="string")
    category = category.mask(deterioration, "deteriorated")
    category = category.mask(improvement, "improved")
    category = category.mask(significant, "recovered")
    category = category.mask(~complete, pd.NA)

    def _flag(mask: pd.Series) -> pd.Series:
        return mask.astype("boolean").mask(~complete, pd.NA)

    return pd.DataFrame(
        {
            "rci": rci,
            "reliable_improvement": _flag(improvement),
            "reliable_deterioration": _flag(deterioration),
            "clinically_significant": _flag(significant),
            "category": category,
        },
        index=rci.index,
    )
