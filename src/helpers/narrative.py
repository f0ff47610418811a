"""Sentences about the data, rendered from results at run time.

The notebooks' static markdown teaches methods; every sentence that states a
count, a direction, a size or a comparison about *this* study is built here
from a result table, so it is true for any study: each builder has a wording
for "above zero", "below zero" and "no clear difference" and picks one from
the estimate's confidence interval, never from the demo study's numbers.

A :class:`Sentence` shows as Markdown in Jupyter; its plain-text form (what
nbval compares and the HTML report prints when Markdown is unavailable) is the
same text.

Examples
--------
>>> direction(-0.16, -0.21, -0.11)
'negative'
>>> interval(-0.164, -0.213, -0.115)
'−0.16 (95% CI −0.21 to −0.12)'
>>> print(count(1, "therapist"), count(40, "therapist"))
1 therapist 40 therapists
"""

from __future__ import annotations

import math
from collections.abc import Iterable

MINUS = "\u2212"


class Sentence(str):
    """Text that a notebook displays as Markdown; ``repr`` is the text itself."""

    def _repr_markdown_(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return str(self)


def join(*parts: str | None) -> Sentence:
    """Join the non-empty parts with spaces into one :class:`Sentence`."""
    return Sentence(" ".join(str(p).strip() for p in parts if p))


def paragraphs(*parts: str | None) -> Sentence:
    """Join the non-empty parts as Markdown paragraphs."""
    return Sentence("\n\n".join(str(p).strip() for p in parts if p))


def number(value: float, decimals: int = 2) -> str:
    """``value`` with ``decimals`` decimals and a typographic minus; "n/a" when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{float(value):.{decimals}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return text.replace("-", MINUS)


def percent(share: float, decimals: int = 0) -> str:
    """A share (0–1) as a percentage, e.g. ``0.052 -> "5%"``."""
    return f"{number(100 * share, decimals)}%"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with the noun in the right number: ``"1 therapist"``, ``"40 therapists"``."""
    n = int(n)
    word = noun if n == 1 else (plural or f"{noun}s")
    return f"{n:,} {word}"


def interval(estimate: float, low: float, high: float, decimals: int = 2) -> str:
    """``"est (95% CI low to high)"`` with typographic minus signs."""
    return (
        f"{number(estimate, decimals)} (95% CI {number(low, decimals)} to {number(high, decimals)})"
    )


def direction(estimate: float, low: float, high: float) -> str:
    """``"positive"``, ``"negative"`` or ``"unclear"`` (the interval includes zero)."""
    if any(v is None or math.isnan(float(v)) for v in (estimate, low, high)):
        return "unclear"
    if low > 0:
        return "positive"
    if high < 0:
        return "negative"
    return "unclear"


def choose(
    estimate: float, low: float, high: float, *, positive: str, negative: str, unclear: str
) -> str:
    """The wording for the direction of ``estimate`` given its interval."""
    return {"positive": positive, "negative": negative, "unclear": unclear}[
        direction(estimate, low, high)
    ]


def listing(items: Iterable[str], conjunction: str = "and") -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


# ------------------------------------------------------------------ sentences about a study


def study_sentence(profile) -> Sentence:
    """What the study is: size, levels, raters, outcome, and whether it is simulated.

    ``profile`` is a :class:`helpers.profile.StudyProfile`.
    """
    from helpers.profile import instrument_name

    first, last = profile.session_range
    size = (
        f"This study ({profile.study}) has {count(profile.n_sessions, 'session')} "
        f"(session numbers {first}–{last}) of {count(profile.n_patients, 'patient')}"
    )
    if profile.n_therapists is None:
        size += (
            ". Therapists are not identified, so it is analysed as a two-level study "
            "(sessions within patients) and therapist effects cannot be separated from "
            "patient effects."
        )
    else:
        size += f" treated by {count(profile.n_therapists, 'therapist')}."
    raters = listing(
        f"the {r} ({instrument_name(profile.alliance_instruments[r])})" for r in profile.raters
    )
    ratings = (
        f"The alliance is rated by {raters}; the models use the {profile.primary_rater}'s "
        f"rating. The outcome is the {profile.outcome_name}."
    )
    origin = (
        "It is **simulated**: a truth file holds the values it was generated from, so "
        "estimates are checked against them."
        if profile.has_truth
        else "No truth file accompanies it, so sections that compare with true values are skipped."
    )
    return join(size, ratings, origin)


def _session_means(sessions, column: str):
    counts = sessions.groupby("session")[column].agg(["count", "mean"])
    for min_n in (10, 3):
        kept = counts.loc[counts["count"] >= min_n]
        if len(kept) >= 2:
            return kept, min_n
    return counts.iloc[0:0], 0


def trend(sessions, column: str, name: str, decimals: int = 1) -> Sentence:
    """How the session mean of ``column`` moves from the first to the last well-filled session.

    A session counts when at least 10 patients have a score there (3 in very small
    studies).  Descriptive only: later sessions hold only the patients still in treatment.
    """
    means, min_n = _session_means(sessions, column)
    if means.empty:
        return Sentence(f"Too few {name} scores per session to describe a trend.")
    (s0, m0), (s1, m1) = (
        (means.index[0], means["mean"].iloc[0]),
        (
            means.index[-1],
            means["mean"].iloc[-1],
        ),
    )
    a, b = number(m0, decimals), number(m1, decimals)
    if a == b:
        verb = f"is about the same at session {s0} ({a}) and session {s1} ({b})"
    else:
        verb = f"{'rises' if m1 > m0 else 'falls'} from {a} at session {s0} to {b} at session {s1}"
    return Sentence(f"The mean {name} {verb} (the last session with at least {min_n} scores).")


def icc_sentence(iccs, profile) -> Sentence:
    """Each score's variance shares by level, from :func:`helpers.models.icc_from_null` tables."""
    sentences = []
    for score in iccs.index.get_level_values(0).unique():
        table = iccs.loc[score]
        shares = dict(zip(table["group"], table["share"], strict=True))
        parts = []
        if "therapist_id" in shares:
            part = f"therapists {percent(shares['therapist_id'], 1)}"
            if shares["therapist_id"] < 1e-4:
                part += " (estimated at zero: a singular fit)"
            parts.append(part)
        patient = shares.get("patient_id", 0.0)
        parts.append(f"patients {percent(patient, 1)}")
        rest = 1 - sum(shares.values())
        parts.append(f"sessions within patients {percent(rest, 1)}")
        sentences.append(f"`{score}`: {listing(parts)}.")
    note = (
        ""
        if profile.has("therapists")
        else " Therapists are not identified, so any therapist share is inside the patient share."
    )
    return Sentence("Shares of the variance — " + " ".join(sentences) + note)
