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


# ------------------------------------------------------------------ sentences about models


def r_text(r: float) -> str:
    """A correlation as journals print it: ``.278``, ``−.05``."""
    text = number(r, 3)
    return text.replace("0.", ".", 1)


def p_text(p: float) -> str:
    """``"p < .001"`` or ``"p = .034"``."""
    if p is None or math.isnan(float(p)):
        return "p n/a"
    if p < 0.001:
        return "p < .001"
    if p > 0.999:
        return "p > .999"
    return f"p = {p:.3f}".replace("0.", ".", 1)


def coefficient_sentence(row, subject: str, predicate: str, unit: str = "points") -> Sentence:
    """What one coefficient says, in words, for either sign or no clear sign.

    ``row`` holds ``estimate, ci_low, ci_high`` and ``p`` (a row of ``MixedResult.fixed``);
    the sentence reads "*subject* *predicate* lower/higher by *size* *unit* (CI, p)".
    """
    est, low, high = float(row["estimate"]), float(row["ci_low"]), float(row["ci_high"])
    word = "lower" if est < 0 else "higher"
    ci = f"95% CI {number(low)} to {number(high)}"
    text = f"{subject[0].upper()}{subject[1:]} {predicate} {word} by {number(abs(est))} {unit}"
    if direction(est, low, high) == "unclear":
        return Sentence(
            f"{text} on average, but the interval ({ci}) includes zero: the data do not "
            "show a clear association in either direction."
        )
    return Sentence(f"{text} ({ci}, {p_text(float(row['p']))}).")


def early_alliance_note(profile) -> Sentence:
    """Which session is the early alliance, and whether intake severity is controlled."""
    text = (
        f"Early alliance is the {profile.primary_rater}'s alliance at session "
        f"{profile.early_session} (`cleaning.early_session`)."
    )
    if not profile.has("intake"):
        text += (
            " This study has no intake score, so the model cannot control for severity at "
            "intake; read the coefficient as an association, not an adjusted one."
        )
    return Sentence(text)


def _ci_width(row) -> float:
    return float(row["ci_high"]) - float(row["ci_low"])


def therapist_split_sentence(result, n_therapists: int) -> Sentence:
    """How much less the therapist-level coefficient is pinned down than the patient-level one."""
    therapist = result.fixed.loc["alliance_therapist_mean_c"]
    patient = result.fixed.loc["alliance_patient_dev"]
    ratio = _ci_width(therapist) / _ci_width(patient)
    return Sentence(
        f"With {count(n_therapists, 'therapist')}, the therapist-level coefficient rests on "
        f"{n_therapists} therapist means: its 95% interval is {number(_ci_width(therapist))} "
        f"points wide, {number(ratio, 1)} times the width of the patient-level coefficient's "
        f"({number(_ci_width(patient))}), which rests on {count(result.nobs, 'patient')}. "
        "A study needs many therapists to answer the Baldwin question."
    )


def forms_agree_sentence(fits, terms) -> Sentence:
    """How far the alliance estimates move between random-effects forms, in SEs of the first.

    The rule stated in the sentence: a shift below half a standard error does not matter.
    """
    names = list(fits)
    first = fits[names[0]].fixed
    shift = max(
        abs(float(fits[n].fixed.loc[t, "estimate"]) - float(first.loc[t, "estimate"]))
        / float(first.loc[t, "se"])
        for n in names[1:]
        for t in terms
    )
    verdict = (
        "less than half a standard error, so the simpler form is harmless here"
        if shift < 0.5
        else "half a standard error or more, so the random-effects form matters here: report "
        "the fullest model that converges and is not singular"
    )
    return Sentence(
        f"Across the {len(names)} random-effects forms ({listing(f'`{n}`' for n in names)}), "
        f"the alliance estimates move by at most {number(shift)} standard errors of the "
        f"`{names[0]}` model: {verdict}."
    )


def lrt_sentence(lrt, what: str, alpha: float = 0.05) -> Sentence:
    """The verdict of a likelihood-ratio test, with its statistic, p and reference
    distribution (``lrt.reference``, chosen by :func:`helpers.models.likelihood_ratio_test`)."""
    verdict = "improves the model" if lrt.p_value < alpha else "does not clearly improve the model"
    reference = getattr(lrt, "reference", "") or (
        "50:50 boundary mixture" if lrt.boundary else f"chi-square({lrt.df})"
    )
    reference = reference.replace("chi-square", "χ²")
    if getattr(lrt, "conservative", False):
        reference += ", conservative"
    return Sentence(
        f"Adding {what} {verdict}: χ² = {number(lrt.statistic)}, {p_text(lrt.p_value)} "
        f"({reference})."
    )


def benchmark_sentence(study_r, published: float = 0.278, source: str = "Flückiger et al. 2018"):
    """Where the study's patient-level r lies relative to the meta-analytic estimate."""
    low, high = study_r.ci
    if low <= published <= high:
        where = "its interval includes"
    elif low > published:
        where = "its interval lies above"
    else:
        where = "its interval lies below"
    return Sentence(
        f"This study's patient-level r = {r_text(study_r.r)} (95% CI {r_text(low)} to "
        f"{r_text(high)}, {count(study_r.n, 'patient')}): {where} the meta-analytic "
        f"r = {r_text(published)} ({source})."
    )


def truth_sentence(comparison) -> Sentence:
    """Whether each estimate's interval covers its true value, and how far apart they are."""
    parts = []
    for term, row in comparison.iterrows():
        se = (float(row["ci_high"]) - float(row["ci_low"])) / (2 * 1.959964)
        gap = abs(float(row["estimate"]) - float(row["truth"])) / se
        covers = "covers" if row["CI covers truth"] else "misses"
        parts.append(
            f"the interval of `{term}` (estimate {number(row['estimate'], 3)}) {covers} its "
            f"true value {number(row['truth'], 3)}, {number(gap, 1)} standard errors away"
        )
    text = "; ".join(parts)
    return Sentence(
        f"{text[0].upper()}{text[1:]}. A 95% interval misses the truth about one time in "
        "twenty, so one miss among several terms is expected now and then."
    )


def diagnostics_sentence(diagnostics) -> Sentence:
    """How many fits converged and which are singular, from ``effects.diagnostics_table``."""
    n = len(diagnostics)
    failed = [str(m) for m in diagnostics.index[~diagnostics["converged"].astype(bool)]]
    singular = [str(m) for m in diagnostics.index[diagnostics["singular"].astype(bool)]]
    text = (
        f"All {n} fits passed the convergence check"
        if not failed
        else f"{count(len(failed), 'fit')} of {n} did not pass the convergence check "
        f"({listing(failed)}): do not report them without refitting"
    )
    if singular:
        text += (
            f"; {count(len(singular), 'fit')} {'is' if len(singular) == 1 else 'are'} "
            f"singular ({listing(singular)}): a variance is estimated at zero (or a "
            "correlation at ±1), so that random effect is not supported by the data"
        )
    else:
        text += "; none is singular"
    return Sentence(text + ".")


# ------------------------------------------------------------------ sentences about ruptures


def _mean_at(summary, variable: str, relative: int, status: str | None = None) -> float:
    rows = summary.loc[
        (summary["variable"] == variable) & (summary["relative_session"] == relative)
    ]
    if status is not None:
        rows = rows.loc[rows["status"] == status]
    return float(rows["mean"].iloc[0]) if len(rows) else float("nan")


def rupture_v_sentence(aligned_by_status, variable: str = "alliance", after: int = 3) -> Sentence:
    """The mean alliance before, at and after the rupture, for repaired and unrepaired episodes."""
    parts = []
    for status in ("repaired", "unrepaired"):
        values = [_mean_at(aligned_by_status, variable, s, status) for s in (-1, 0, after)]
        if math.isnan(values[0]) or math.isnan(values[1]):
            parts.append(f"there are no {status} episodes to average")
            continue
        before, at, later = (number(v, 1) for v in values)
        parts.append(
            f"{status} episodes go from {before} the session before to {at} at the rupture "
            f"and {later} at relative session {after}"
        )
    text = "; ".join(parts)
    return Sentence(f"Mean alliance: {text}.")


def after_rupture_sentence(aligned_all, outcome_name: str) -> Sentence:
    """Whether the mean outcome is higher in the session after a rupture than at it."""
    at, after = (_mean_at(aligned_all, "outcome", s) for s in (0, 1))
    if math.isnan(at) or math.isnan(after):
        return Sentence(f"Too few episodes have an {outcome_name} score around the rupture.")
    if number(at, 1) == number(after, 1):
        change = f"is the same ({number(at, 1)})"
    else:
        change = (
            f"is {'higher' if after > at else 'lower'} ({number(after, 1)} against {number(at, 1)})"
        )
    return Sentence(
        f"Averaged over all episodes, the {outcome_name} in the session after the rupture "
        f"{change} than at the rupture session itself — raw means, before any adjustment."
    )


def per_therapist_sentence(therapist_summary) -> Sentence:
    """Episodes per therapist: mean and range."""
    row = therapist_summary.loc["n_episodes"]
    return Sentence(
        f"Therapists have {number(row['mean'], 1)} episodes on average (from "
        f"{int(row['min'])} to {int(row['max'])})."
    )


def sensitivity_sentence(sensitivity) -> Sentence:
    """The range of the share of patients with a rupture over the definitions."""
    shares = sensitivity.set_index("definition")["share_patients_with_rupture"].dropna()
    if shares.empty:
        return Sentence("No definition could assess any patient.")
    low, high = shares.idxmin(), shares.idxmax()
    return Sentence(
        f"Across these definitions the share of assessable patients with a rupture ranges from "
        f"{percent(shares[low])} ({low}) to {percent(shares[high])} ({high})."
    )


def treatment_length_sentence(group_means) -> Sentence:
    """Mean treatment length of patients with and without a rupture."""
    sessions = group_means["n_sessions"]
    none = sessions.get("no rupture", float("nan"))
    ruptured = [sessions.get(s, float("nan")) for s in ("repaired", "unrepaired")]
    ruptured = [v for v in ruptured if not math.isnan(v)]
    if math.isnan(none) or not ruptured:
        return Sentence("The groups are too sparse to compare treatment lengths.")
    low, high = min(ruptured), max(ruptured)
    spread = (
        number(low, 1)
        if number(low, 1) == number(high, 1)
        else (f"{number(low, 1)}–{number(high, 1)}")
    )
    longer = "longer" if low > none else "shorter" if high < none else "about as long"
    return Sentence(
        f"In this study, patients with a rupture had {longer} treatments than patients without "
        f"one ({spread} against {number(none, 1)} sessions on average)."
    )


def group_sizes_sentence(status) -> Sentence:
    """How many patients fall in each rupture status."""
    counts = status["rupture_status"].value_counts()
    parts = [f"{s} {count(int(counts[s]), 'patient')}" for s in counts.index]
    return Sentence(f"Group sizes: {listing(parts)}.")


def next_session_sentence(fits, outcome_name: str) -> Sentence:
    """The next-session rupture effect under each definition, and which is largest."""
    parts = []
    for name, fit in fits.items():
        row = fit.fixed.loc["rupture_lag1"]
        verdict = choose(
            row["estimate"],
            row["ci_low"],
            row["ci_high"],
            positive="higher",
            negative="lower",
            unclear="no clear difference",
        )
        parts.append(
            f"{name}: {interval(row['estimate'], row['ci_low'], row['ci_high'])}, {verdict}"
        )
    sizes = {n: abs(float(f.fixed.loc["rupture_lag1", "estimate"])) for n, f in fits.items()}
    largest = max(sizes, key=sizes.get)
    return Sentence(
        f"{outcome_name} points in the session after a rupture, by definition — "
        f"{'; '.join(parts)}. The largest estimate in size is under {largest}."
    )


def rupture_truth_sentence(parameters) -> Sentence:
    """The simulated rupture process, from a truth file's ``parameters``."""
    return Sentence(
        f"This study was simulated with ruptures at a rate of "
        f"{percent(parameters['rupture_rate'], 1)} per at-risk session, a drop of the latent "
        f"alliance by {number(parameters['rupture_drop'], 1)} points, and repair with "
        f"probability {number(parameters['repair_probability'], 2)} within 1–"
        f"{int(parameters['repair_max_sessions'])} sessions."
    )


def recovery_sentence(recovery) -> Sentence:
    """Best definition by F1, with its precision and recall."""
    table = recovery.set_index("definition")
    best = table["f1"].idxmax()
    row = table.loc[best]
    return Sentence(
        f"The best balance here (highest F1, {number(row['f1'])}) is {best}: it finds "
        f"{percent(row['recall'])} of the true episodes, and {percent(row['precision'])} of "
        f"its detections are true. Recall ranges from {percent(table['recall'].min())} to "
        f"{percent(table['recall'].max())} and precision from "
        f"{percent(table['precision'].min())} to {percent(table['precision'].max())} over "
        "the definitions."
    )


# ------------------------------------------------------------------ sentences about moderators


def _coef(fit, term: str) -> str:
    row = fit.fixed.loc[term]
    return interval(row["estimate"], row["ci_low"], row["ci_high"])


def _clear(fit, term: str) -> bool:
    row = fit.fixed.loc[term]
    return direction(row["estimate"], row["ci_low"], row["ci_high"]) != "unclear"


def rater_models_sentence(rater_fits, client: str, therapist: str) -> Sentence:
    """Each rater's coefficients alone, and which stay clear when both are in the model."""
    alone = []
    for rater, name in ((client, "rater: client"), (therapist, "rater: therapist")):
        fit = rater_fits[name]
        alone.append(
            f"the {name.removeprefix('rater: ')}'s rating has a within-patient coefficient of "
            f"{_coef(fit, f'{rater}_within_lag')} and a between-patient one of "
            f"{_coef(fit, f'{rater}_between_c')}"
        )
    both = rater_fits["rater: both"]
    kept = [
        f"`{t}`"
        for rater in (client, therapist)
        for t in (f"{rater}_within_lag", f"{rater}_between_c")
        if _clear(both, t)
    ]
    together = (
        f"Together, the coefficients whose interval excludes zero are {listing(kept)}."
        if kept
        else "Together, no coefficient's interval excludes zero."
    )
    return Sentence(f"Alone, {alone[0]}; {alone[1]}. {together}")


def _strength(r: float) -> str:
    size = abs(r)
    return (
        "negligibly"
        if size < 0.1
        else "weakly"
        if size < 0.3
        else "moderately"
        if size < 0.5
        else "strongly"
    )


def _patient_mean_difference(sessions, a: str, b: str) -> tuple[float, float, float, int]:
    from scipy import stats

    pairs = sessions.dropna(subset=[a, b])
    per_patient = (pairs[b] - pairs[a]).groupby(pairs["patient_id"]).mean()
    n = len(per_patient)
    mean = float(per_patient.mean())
    half = float(stats.t.ppf(0.975, n - 1) * per_patient.std() / math.sqrt(n)) if n > 1 else 0.0
    return mean, mean - half, mean + half, n


def agreement_sentence(agreement, sessions, same_scale: bool = True) -> Sentence:
    """How far two raters agree: between and within patients, and on their level.

    The level difference is judged on the patients' mean differences (one value per
    patient, a t interval), because sessions of one patient are not independent.
    """
    b, w = agreement.between, agreement.within
    rank = (
        f"The raters agree {_strength(b.r)} about *which patients* have the stronger alliance "
        f"(r = {r_text(b.r)}, 95% CI {r_text(b.ci[0])} to {r_text(b.ci[1])}) and "
        f"{_strength(w.r)} about *which sessions* were better (within-patient r = "
        f"{r_text(w.r)}, {r_text(w.ci[0])} to {r_text(w.ci[1])})."
    )
    if not same_scale:
        return Sentence(rank + " Their levels are not compared: the two use different scales.")
    rater_b, rater_a = (c.removeprefix("alliance_") for c in (agreement.b, agreement.a))
    mean, low, high, n = _patient_mean_difference(sessions, agreement.a, agreement.b)
    level = choose(
        mean,
        low,
        high,
        positive=f"{rater_b}s rate the alliance higher than {rater_a}s on average",
        negative=f"{rater_b}s rate the alliance lower than {rater_a}s on average",
        unclear=f"{rater_b}s and {rater_a}s do not differ clearly on average",
    )
    return Sentence(
        f"{rank} On the level, {level} ({rater_b} − {rater_a}: {interval(mean, low, high)} "
        f"points over {count(n, 'patient')}); for a single session the 95% limits of agreement "
        f"run from {number(agreement.loa_low, 1)} to {number(agreement.loa_high, 1)} points."
    )


def _test_text(row) -> str:
    """``F(2, 31.4) = 1.20`` for a test with denominator df, else ``χ²(2) = 2.40``."""
    ddf = row.get("ddf", math.inf)
    if ddf is not None and math.isfinite(float(ddf)):
        return f"F({int(row['df'])}, {number(ddf, 1)}) = {number(row['statistic'])}"
    return f"χ²({int(row['df'])}) = {number(row['statistic'])}"


def modality_sentence(interaction_tests, sessions, alpha: float = 0.05) -> Sentence:
    """The joint tests of slope differences between modalities, with therapists per modality.

    ``interaction_tests``: rows of :func:`helpers.moderators.wald_test` — an F test
    when they have a finite ``ddf``, a chi-square test otherwise.
    """
    parts = []
    for focal, row in interaction_tests.iterrows():
        verdict = "differs clearly" if row["p"] < alpha else "does not differ clearly"
        parts.append(
            f"the slope of `{focal}` {verdict} between modalities ({_test_text(row)}, "
            f"{p_text(row['p'])})"
        )
    text = f"{'; '.join(parts)}."
    if "therapist_id" in sessions.columns:
        per = sessions.groupby("modality")["therapist_id"].nunique()
        text += " Therapists per modality: " + listing(f"{m} {n}" for m, n in per.items()) + "."
    return Sentence(text[0].upper() + text[1:])


def _beta_text(row) -> str:
    return interval(row["beta"], row["ci_low"], row["ci_high"])


def timing_sentence(standardized, timing) -> Sentence:
    """Early and late alliance alone and together (standardised), and their correlation."""
    table = standardized.reset_index()

    def beta(model: str, term: str):
        row = table.loc[(table["model"] == model) & (table["term"] == term)].iloc[0]
        return row

    early, late = (
        beta("timing: early", "alliance_early_mean_c"),
        beta("timing: late", "alliance_late_mean_c"),
    )
    joint_early = beta("timing: early + late", "alliance_early_mean_c")
    widening = (joint_early["ci_high"] - joint_early["ci_low"]) / (
        early["ci_high"] - early["ci_low"]
    )
    r = float(timing["alliance_early_mean"].corr(timing["alliance_late_mean"]))
    return Sentence(
        f"Alone, early alliance has β = {_beta_text(early)} "
        f"and late alliance β = {_beta_text(late)}. In the "
        f"joint model the early alliance's interval is {number(widening, 1)} times as wide as "
        f"alone, because the two correlate r = {r_text(r)} over "
        f"{count(len(timing), 'patient')}."
    )


def therapist_effects_sentence(therapist_effects, singular: bool) -> Sentence:
    """The spread of the therapists' conditional modes, and whether the fit was singular."""
    spread = therapist_effects["estimate"]
    if spread.abs().max() < 1e-6:
        return Sentence(
            "The main model estimates the therapist variance at zero (a singular fit): every "
            "therapist's effect is shrunk to exactly zero. This does not show that therapists "
            "are alike, only that these data cannot tell them apart."
        )
    excluding = int(((therapist_effects["ci_low"] > 0) | (therapist_effects["ci_high"] < 0)).sum())
    note = " The main model's fit is singular (see notebook 03)." if singular else ""
    return Sentence(
        f"The {count(len(spread), 'therapist')}' effects range from {number(spread.min())} to "
        f"{number(spread.max())} points; of their {len(spread)} intervals, {excluding} "
        f"{'excludes' if excluding == 1 else 'exclude'} zero.{note}"
    )


def scores_sentence(profile) -> Sentence:
    """What ``alliance`` and ``outcome`` hold in this study: rater, instrument and range."""
    from helpers.profile import instrument_name
    from helpers.scoring import get_instrument

    def described(key: str) -> str:
        inst = get_instrument(key)
        return f"{instrument_name(key)} total ({inst.total_min}–{inst.total_max})"

    alliance = described(profile.alliance_instruments[profile.primary_rater])
    outcome = described(profile.outcome_instrument)
    intake = (
        f" {count(profile.n_with_intake, 'patient')} of {profile.n_patients} have an intake score."
        if profile.has("intake")
        else " This study has no intake score."
    )
    return Sentence(
        f"In this study `alliance` is the {profile.primary_rater}'s {alliance} and `outcome` "
        f"the {outcome}.{intake}"
    )


def modality_levels_sentence(result, outcome_name: str) -> Sentence:
    """Each modality's outcome difference from the reference modality (the main effects).

    Terms are read as ``C(modality, Treatment("REF"))[T.level]``; interaction terms are left
    to :func:`modality_sentence`.
    """
    from helpers.effects import treatment_level

    parts = []
    for term in result.fixed.index:
        levels = treatment_level(term)
        if levels is None or ":" in term:
            continue
        reference, level = levels
        parts.append(
            coefficient_sentence(
                result.fixed.loc[term],
                f"compared with {reference}, an average patient in {level}",
                f"has a {outcome_name}",
            )
        )
    return paragraphs(*parts)


def rupture_figure_note(aligned, drawable) -> Sentence:
    """Which relative sessions figure 5 leaves out (an interval needs two episodes)."""
    left_out = sorted(set(aligned["relative_session"]) - set(drawable["relative_session"]))
    if len(drawable) < 2:
        return Sentence(
            "*Skipped — Figure 5:* fewer than two relative sessions have an interval (at least "
            "two episodes each), so there is no course to draw."
        )
    if not left_out:
        return Sentence("Every relative session in the window has an interval.")
    sessions = listing(str(int(s)) for s in left_out)
    return Sentence(
        f"Relative session{'s' if len(left_out) > 1 else ''} {sessions} "
        f"{'are' if len(left_out) > 1 else 'is'} not drawn: an interval needs at least two "
        "episodes there."
    )


def share_interval_sentence(shares) -> Sentence:
    """Each score's therapist share with its profile interval.

    ``shares``: rows of :func:`helpers.intervals.share_interval`, indexed by
    score (the first index level) — ``estimate, lower, upper, level,
    lower_at_bound``.
    """
    parts = []
    for score in shares.index.get_level_values(0).unique():
        row = shares.loc[score].iloc[0]
        text = (
            f"`{score}`: {percent(row['estimate'], 1)} ({percent(row['level'])} profile "
            f"interval {percent(row['lower'], 1)} to {percent(row['upper'], 1)})"
        )
        if bool(row["lower_at_bound"]) or row["lower"] <= 0:
            text += ", an interval that reaches zero: no therapist differences is also consistent"
        parts.append(text)
    return Sentence("Therapists' share of the variance — " + "; ".join(parts) + ".")


def ddf_sentence(table, alpha: float = 0.05) -> Sentence:
    """How many df each term's t-test has, and whether z and t tests agree.

    ``table``: :func:`helpers.effects.ddf_table`.
    """
    terms = [t for t in table.index if t != "Intercept"]
    dfs = listing(f"`{t}` {number(table.loc[t, 'df (Satterthwaite)'], 1)}" for t in terms)
    differ = [t for t in table.index if not bool(table.loc[t, "same conclusion"])]
    alpha_text = f"{alpha:.2f}".lstrip("0")
    if differ:
        verdict = (
            f"The tests reach different conclusions at p < {alpha_text} for "
            f"{listing(f'`{t}`' for t in differ)}: report the small-sample test."
        )
    else:
        verdict = (
            f"The z-test and the small-sample t-tests reach the same conclusion at "
            f"p < {alpha_text} for every term."
        )
    return Sentence(f"Satterthwaite degrees of freedom: {dfs}. {verdict}")


def power_target_sentence(row, what: str, target: float = 0.8, size: str | None = None) -> Sentence:
    """Which design first reached ``target`` power for an effect (or that none did).

    ``row`` is a row of a :func:`helpers.power.power_curve` table (from
    :func:`helpers.power.smallest_design`) or ``None``; ``size`` describes the designs tried.
    """
    goal = percent(target)
    if row is None:
        subject = f"None of {size}" if size else "No design tried"
        return join(
            f"{subject} reached {goal} power for {what};",
            "more therapists or patients are needed (or more replicates to tell).",
        )
    design = (
        f"{count(int(row['n_therapists']), 'therapist')} with "
        f"{count(int(row['patients_per_therapist']), 'patient')} each"
    )
    return join(
        f"The smallest design tried that reached {goal} power for {what} was {design}:",
        f"power {number(row['power'])} (Monte Carlo 95% CI {number(row['power_ci_low'])} to "
        f"{number(row['power_ci_high'])}, {count(int(row['n_valid']), 'replicate')}).",
    )


def power_tradeoff_sentence(more_therapists, more_patients, what: str) -> Sentence:
    """Compare two designs of equal size: more therapists vs more patients per therapist.

    Each argument is a row of a power table (same total number of patients).
    """

    def label(row) -> str:
        return f"{int(row['n_therapists'])} × {int(row['patients_per_therapist'])}"

    a, b = more_therapists, more_patients
    total = int(a["n_therapists"] * a["patients_per_therapist"])
    values = (
        f"power {number(a['power'])} with {label(a)} (therapists × patients) against "
        f"{number(b['power'])} with {label(b)}"
    )
    if a["power_ci_low"] > b["power_ci_high"]:
        verdict = "spreading them over more therapists gave clearly more power"
    elif b["power_ci_low"] > a["power_ci_high"]:
        verdict = "more patients per therapist gave clearly more power here"
    else:
        verdict = "the two designs did not differ beyond Monte Carlo error"
    return join(f"With {total} patients in all, for {what}, {verdict}: {values}.")
