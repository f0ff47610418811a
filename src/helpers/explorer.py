"""Interactive explorers for JupyterLab and Voilà: patients, ruptures, models.

Three explorers let a researcher look at a study without editing code:

:class:`PatientBrowser`
    Choose a therapist (where the study identifies them) and one of their
    patients, or type part of a patient id: the patient's alliance (every
    rater the study has) and symptom trajectories, with the rupture episodes
    of the default definition shaded, and the patient's own numbers.
:class:`RuptureExplorer`
    Sliders for the rupture criterion (k fluctuation SDs or fixed points), the
    fluctuation estimator and the repair window: the episodes by status, the
    counts, precision and recall against the truth (simulated studies), and
    the V-shaped plot update together.
:class:`ModelExplorer`
    Choose the outcome, the alliance terms (within, lagged within, between;
    any rater the study has), the random-effects structure (time and alliance
    slopes, correlated or not, with or without the therapist level) and
    REML/ML: the model is refitted (:func:`helpers.effects.fit_quietly`, the
    vectorised engine) and shows its fixed effects, variance components,
    diagnostics and warnings, and a likelihood-ratio test against the
    previous fit where the two are nested.

Each explorer is thin: every number comes from a widget-free function of this
module (:func:`patient_summary`, :func:`rupture_view`, :func:`model_view` …)
built on the tested helpers (:mod:`helpers.ruptures`, :mod:`helpers.models`,
:mod:`helpers.effects`), and those functions are what the unit tests check.

Static fallback
---------------
An explorer displayed in a notebook sends one output with two forms: the live
widget (``application/vnd.jupyter.widget-view+json``), which JupyterLab and
Voilà render, and a static rendering of its first state — the table and the
figure as ``text/html`` (the figure as an embedded PNG) — which papermill,
nbval, nbconvert's HTML report and any viewer without a kernel show.  The
committed notebook stores only the static form (:func:`helpers.notebook_files.strip_widget_state`).

Privacy
-------
Tables and figures never show patient or therapist codes: the codes appear
only in the live widget's choosers (a therapist's list of patients), which is
widget state; :func:`helpers.notebook_files.strip_widget_state` removes it from a notebook before it
is committed or rendered into a report.

Examples
--------
>>> from helpers.explorer import load_study, RuptureExplorer  # doctest: +SKIP
>>> study = load_study("runs/demo/processed", "data/raw/demo/truth.json")  # doctest: +SKIP
>>> RuptureExplorer(study)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from helpers import effects, moderators, ruptures, schema
from helpers.errors import SettingsError
from helpers.models import (
    FormulaError,
    LikelihoodRatioTest,
    MixedResult,
    ModelDataError,
    UnsupportedModelError,
    likelihood_ratio_test,
)
from helpers.narrative import Sentence
from helpers.notebook_files import WIDGET_STATE, WIDGET_VIEW  # noqa: F401 (re-exported)
from helpers.present import format_table
from helpers.profile import StudyProfile, build_profile, instrument_name
from helpers.style import OKABE_ITO, axis_label, figure_size, use_style

#: Colour of each episode status in the patient figure.
STATUS_COLORS = {
    "repaired": OKABE_ITO["bluish_green"],
    "unrepaired": OKABE_ITO["vermillion"],
    "censored": OKABE_ITO["sky_blue"],
}
#: Line colour of each rater in the patient figure.
RATER_COLORS = {
    "client": OKABE_ITO["blue"],
    "therapist": OKABE_ITO["orange"],
    "observer": OKABE_ITO["reddish_purple"],
}
#: Resolution of the figures shown by the explorers (screen, not print).
SCREEN_DPI = 110


# ---------------------------------------------------------------------------
# The study an explorer works on
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Study:
    """Processed sessions, their profile and (simulated studies) the true episodes.

    Build with :func:`load_study` (a run's processed folder) or
    :func:`study_from_frames` (data in memory).
    """

    sessions: pd.DataFrame
    profile: StudyProfile
    true_episodes: list[dict[str, Any]] | None = None

    @property
    def therapist_column(self) -> str | None:
        """``"therapist_id"`` where the study identifies therapists, else ``None``."""
        return self.profile.therapist_column


def load_study(processed_dir: str | Path, truth_path: str | Path = "") -> Study:
    """The study whose cleaning outputs are in ``processed_dir`` (a run's ``processed/``).

    ``truth_path`` is a simulated study's ``truth.json`` (``""`` for a real study);
    relative paths are taken from the project root, as notebook parameters are.
    """
    from helpers.paths import resolve_path
    from helpers.profile import load_profile

    folder = resolve_path(processed_dir)
    sessions = pd.read_parquet(folder / "sessions.parquet")
    profile = load_profile(folder, truth_path)
    truth = None
    if profile.has("truth"):
        truth = json.loads(resolve_path(truth_path).read_text(encoding="utf-8")).get("ruptures")
    return Study(sessions, profile, truth)


def study_from_frames(
    sessions: pd.DataFrame,
    config: Mapping[str, Any],
    true_episodes: Sequence[Mapping[str, Any]] | None = None,
) -> Study:
    """A :class:`Study` from processed sessions and a study config held in memory."""
    profile = build_profile(sessions, config, has_truth=true_episodes is not None)
    truth = [dict(e) for e in true_episodes] if true_episodes is not None else None
    return Study(sessions, profile, truth)


# ---------------------------------------------------------------------------
# Rendering helpers (no widgets)
# ---------------------------------------------------------------------------


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of ``fig`` at screen resolution, without run-dependent metadata."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=SCREEN_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _new_figure(nrows: int = 1, aspect: float = 0.62, **kw: Any) -> tuple[Figure, Any]:
    with use_style():
        fig = Figure(figsize=figure_size("double", aspect), layout="constrained")
        axes = fig.subplots(nrows=nrows, **kw)
    return fig, axes


def _note_figure(text: str) -> Figure:
    fig, ax = _new_figure(aspect=0.2)
    with use_style():
        ax.set_axis_off()
        ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return fig


def _sentence_html(text: str) -> str:
    """A sentence's markdown (``*emphasis*``, ``code``) as HTML, everything else escaped."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", escaped)


def _table_html(table: pd.DataFrame | Sentence | str) -> str:
    if isinstance(table, pd.DataFrame):
        return table.to_html(classes="explorer-table", border=0)
    return f"<p>{_sentence_html(str(table))}</p>"


def static_html(title: str, parts: Sequence[pd.DataFrame | Sentence | str], png: bytes) -> str:
    """The static rendering of an explorer: a heading, its tables or notes, its figure."""
    body = "\n".join(_table_html(p) for p in parts)
    image = base64.b64encode(png).decode("ascii")
    return (
        f"<div class='explorer-static'><h4>{html.escape(title)}</h4>\n{body}\n"
        f"<img alt='{html.escape(title)} figure' src='data:image/png;base64,{image}'/></div>"
    )


# ---------------------------------------------------------------------------
# Patients and therapists
# ---------------------------------------------------------------------------


def therapist_options(sessions: pd.DataFrame) -> list[str]:
    """Therapist ids in sorted order; empty for a two-level study (no therapist ids)."""
    if schema.THERAPIST_ID not in sessions.columns:
        return []
    return sorted(str(t) for t in sessions[schema.THERAPIST_ID].dropna().unique())


def patient_options(
    sessions: pd.DataFrame, therapist: str | None = None, search: str = ""
) -> list[str]:
    """Patient ids in sorted order: of ``therapist`` (``None``: all), containing ``search``.

    The search ignores case and surrounding spaces; an empty search keeps every patient.
    """
    frame = sessions
    if therapist is not None and schema.THERAPIST_ID in sessions.columns:
        frame = sessions.loc[sessions[schema.THERAPIST_ID].astype(str) == str(therapist)]
    ids = sorted(str(p) for p in frame[schema.PATIENT_ID].dropna().unique())
    needle = search.strip().lower()
    return [p for p in ids if needle in p.lower()] if needle else ids


def first_patient_with_episode(options: Sequence[str], episodes: pd.DataFrame) -> str | None:
    """The first of ``options`` with a rupture episode, else the first (``None`` if empty)."""
    with_episode = set(episodes[schema.PATIENT_ID].astype(str))
    return next((p for p in options if p in with_episode), next(iter(options), None))


def default_episodes(study: Study) -> pd.DataFrame:
    """Episodes of the default definition (2 SD, repair within 3) in the primary alliance."""
    return ruptures.detect_ruptures(
        study.sessions, schema.ALLIANCE, therapist=study.therapist_column
    )


def _patient_rows(sessions: pd.DataFrame, patient: str) -> pd.DataFrame:
    rows = sessions.loc[sessions[schema.PATIENT_ID].astype(str) == str(patient)]
    if rows.empty:
        raise KeyError(f"no sessions of patient {patient!r}")
    return rows.sort_values(schema.SESSION)


def _first_last(values: pd.Series) -> tuple[float, float]:
    observed = values.dropna()
    if observed.empty:
        return np.nan, np.nan
    return float(observed.iloc[0]), float(observed.iloc[-1])


def patient_summary(study: Study, patient: str, episodes: pd.DataFrame) -> pd.DataFrame:
    """One patient's own numbers: sessions, each rater's alliance, symptoms, ruptures.

    No patient or therapist code appears in the table.

    Returns
    -------
    pandas.DataFrame
        Indexed by measure (``sessions``, ``<rater> alliance (<instrument>)``,
        ``<outcome>``, ``rupture episodes``) with columns ``first``, ``mean``,
        ``last`` and ``change`` (last − first); counts in ``first`` only.
    """
    rows = _patient_rows(study.sessions, patient)
    profile = study.profile
    table: dict[str, dict[str, float]] = {}
    table["sessions"] = {"first": float(rows[schema.SESSION].iloc[0]), "mean": np.nan}
    table["sessions"]["last"] = float(rows[schema.SESSION].iloc[-1])
    table["sessions"]["change"] = float(len(rows))
    measures = [
        (f"{r} alliance ({instrument_name(profile.alliance_instruments[r])})", c)
        for r, c in zip(profile.raters, profile.alliance_columns, strict=True)
    ]
    measures.append((f"symptoms ({profile.outcome_name})", schema.OUTCOME))
    for name, column in measures:
        first, last = _first_last(rows[column])
        table[name] = {
            "first": first,
            "mean": float(rows[column].mean()),
            "last": last,
            "change": last - first,
        }
    mine = episodes.loc[episodes[schema.PATIENT_ID].astype(str) == str(patient)]
    out = pd.DataFrame(table).T[["first", "mean", "last", "change"]]
    out = out.rename(index={"sessions": "session numbers (change: number of sessions)"})
    statuses = mine["status"].value_counts()
    for status in ruptures.EPISODE_STATUSES:
        out.loc[f"rupture episodes: {status}"] = [float(statuses.get(status, 0))] + [np.nan] * 3
    return out.rename_axis("")


def patient_figure(study: Study, patient: str, episodes: pd.DataFrame) -> Figure:
    """The patient's alliance (every rater) and symptoms by session, episodes shaded.

    Each episode is shaded from its rupture session to its end (the repair
    session, the end of the repair window or of treatment) in the colour of its
    status; the title names no code.
    """
    rows = _patient_rows(study.sessions, patient)
    profile = study.profile
    fig, (top, bottom) = _new_figure(nrows=2, aspect=0.7, sharex=True)
    mine = episodes.loc[episodes[schema.PATIENT_ID].astype(str) == str(patient)]
    with use_style():
        for rater, column in zip(profile.raters, profile.alliance_columns, strict=True):
            top.plot(
                rows[schema.SESSION],
                rows[column],
                marker="o",
                markersize=3,
                color=RATER_COLORS.get(rater, OKABE_ITO["black"]),
                label=f"{rater} ({instrument_name(profile.alliance_instruments[rater])})",
            )
        bottom.plot(
            rows[schema.SESSION],
            rows[schema.OUTCOME],
            marker="o",
            markersize=3,
            color=OKABE_ITO["black"],
            label=profile.outcome_name,
        )
        shaded: set[str] = set()
        for _, episode in mine.iterrows():
            status = str(episode["status"])
            for ax in (top, bottom):
                ax.axvspan(
                    float(episode["pre_session"]),
                    float(episode["episode_end"]),
                    color=STATUS_COLORS.get(status, "#999999"),
                    alpha=0.18,
                    linewidth=0,
                    label=f"rupture ({status})" if ax is top and status not in shaded else None,
                )
            shaded.add(status)
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        top.set_ylabel(f"Alliance ({profile.alliance_name})")
        bottom.set_ylabel(axis_label(schema.OUTCOME, profile.labels))
        bottom.set_xlabel("Session")
        top.legend(loc="best", fontsize="small")
        title = f"{len(rows)} sessions, {len(mine)} rupture episode(s) (2 SD criterion)"
        top.set_title(title)
    return fig


# ---------------------------------------------------------------------------
# Ruptures
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RuptureSettings:
    """The rupture definition chosen in the rupture explorer (see :mod:`helpers.ruptures`)."""

    method: str = "sd"
    k: float = 2.0
    points: float = 6.0
    fluctuation: str = "patient_sd"
    repair_within: int = 3
    repair_tolerance: float = 0.0

    def detect(self, study: Study) -> pd.DataFrame:
        """The episodes of this definition in ``study`` (primary alliance)."""
        return ruptures.detect_ruptures(
            study.sessions,
            schema.ALLIANCE,
            method=self.method,
            k=self.k,
            points=self.points if self.method == "points" else None,
            fluctuation=self.fluctuation,
            repair_within=self.repair_within,
            repair_tolerance=self.repair_tolerance,
            therapist=study.therapist_column,
        )


#: Columns of the rupture explorer's counts table.
RUPTURE_COLUMNS = [
    "n_patients_assessable",
    "n_patients_with_rupture",
    "n_episodes",
    "n_repaired",
    "n_unrepaired",
    "n_censored",
    "repair_rate",
]
#: Columns added where the study has a truth file.
RECOVERY_COLUMNS = ["n_true", "true_positives", "precision", "recall", "f1"]


@dataclass
class RuptureView:
    """What the rupture explorer shows for one definition."""

    settings: RuptureSettings
    episodes: pd.DataFrame
    counts: pd.DataFrame
    by_status: pd.DataFrame
    aligned: pd.DataFrame = field(repr=False)
    note: Sentence | None = None


def rupture_view(study: Study, settings: RuptureSettings) -> RuptureView:
    """Detect, count, score against the truth (where known) and align on the rupture.

    ``counts`` is one row of :func:`helpers.ruptures.definition_summary` (the
    columns :data:`RUPTURE_COLUMNS`, plus :data:`RECOVERY_COLUMNS` with a truth
    file); ``by_status`` is :func:`helpers.ruptures.episode_summary`;
    ``aligned`` is the mean alliance around the rupture session
    (:func:`helpers.ruptures.aligned_summary`, all episodes).
    """
    episodes = settings.detect(study)
    summary = ruptures.definition_summary(
        episodes, study.sessions, true_episodes=study.true_episodes
    )
    columns = RUPTURE_COLUMNS + (RECOVERY_COLUMNS if study.true_episodes is not None else [])
    counts = pd.DataFrame([summary]).set_index("definition")[columns]
    note = study.profile.skip_note("Precision and recall against the truth", "truth")
    aligned = pd.DataFrame()
    if len(episodes):
        window = ruptures.aligned_on_rupture(study.sessions, episodes, window=(-3, 4))
        aligned = ruptures.aligned_summary(window).query("variable == @schema.ALLIANCE")
    return RuptureView(
        settings=settings,
        episodes=episodes,
        counts=counts,
        by_status=ruptures.episode_summary(episodes),
        aligned=aligned.reset_index(drop=True),
        note=note,
    )


def rupture_figure(view: RuptureView, profile: StudyProfile) -> Figure:
    """The V: mean alliance (95% CI) around the rupture session, for the chosen definition."""
    from helpers.plots import plot_rupture_v

    # a relative session seen in a single episode has no interval: it is not drawn
    drawable = view.aligned
    if len(drawable):
        drawable = drawable.dropna(subset=["mean", "ci_low", "ci_high"])
    if len(drawable) < 2:
        return _note_figure(f"{view.counts.index[0]}: too few episodes to draw the V.")
    fig, ax = _new_figure(aspect=0.45)
    plot_rupture_v(drawable, ax=ax, axis_labels=profile.labels)
    with use_style():
        ax.set_title(f"{view.counts.index[0]}: {len(view.episodes)} episodes")
    return fig


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------

#: Alliance terms of the model explorer: key -> (suffix of the rater's column, label).
ALLIANCE_TERMS = {
    "lagged": ("_within_lag", "within-patient, previous session"),
    "within": ("_within", "within-patient, same session"),
    "between": ("_between_c", "patient mean (between, centred)"),
}
#: Outcomes the model explorer offers, where the study has them.
MODEL_OUTCOMES = {
    schema.OUTCOME: "symptoms",
    "outcome_change": "change since intake",
}


@dataclass(frozen=True)
class ModelSpec:
    """A session-level model chosen in the model explorer.

    Attributes
    ----------
    outcome : str
        Response column (:data:`MODEL_OUTCOMES`).
    rater : str or None
        Whose alliance: a rater of the study; ``None`` for the primary rater
        (the ``alliance_*`` columns of the cleaning step).
    terms : tuple of str
        Keys of :data:`ALLIANCE_TERMS`.
    time : bool
        Include ``session_c`` (sessions since the first).
    time_slope, alliance_slope : bool
        Random slope of ``session_c`` / of the first within-patient alliance
        term, per patient (ignored when the term is not in the model).
    correlated : bool
        One correlated block per patient (``|``) rather than independent
        effects (``||``).
    therapist_level : bool
        Add ``(1 | therapist_id)`` (ignored for a study without therapist ids).
    reml : bool
        REML (default) or ML.
    """

    outcome: str = schema.OUTCOME
    rater: str | None = None
    terms: tuple[str, ...] = ("lagged", "between")
    time: bool = True
    time_slope: bool = True
    alliance_slope: bool = False
    correlated: bool = False
    therapist_level: bool = True
    reml: bool = True


def _rater_base(spec: ModelSpec, profile: StudyProfile) -> str:
    if spec.rater is None or spec.rater == profile.primary_rater:
        return schema.ALLIANCE
    return schema.alliance_total_column(spec.rater)


def model_columns(spec: ModelSpec, profile: StudyProfile) -> list[str]:
    """The alliance columns of ``spec``'s fixed part, in :data:`ALLIANCE_TERMS` order."""
    unknown = [t for t in spec.terms if t not in ALLIANCE_TERMS]
    if unknown:
        raise SettingsError(f"unknown alliance term(s) {unknown}; known: {list(ALLIANCE_TERMS)}")
    base = _rater_base(spec, profile)
    return [base + ALLIANCE_TERMS[t][0] for t in ALLIANCE_TERMS if t in spec.terms]


def model_formula(spec: ModelSpec, profile: StudyProfile) -> str:
    """The lme4 formula of ``spec`` for a study with ``profile``.

    Examples
    --------
    With the defaults on a three-level study this is notebook 03's main model:
    ``outcome ~ alliance_within_lag + alliance_between_c + session_c +
    (1 + session_c || patient_id) + (1 | therapist_id)``.
    """
    alliance = model_columns(spec, profile)
    fixed = alliance + (["session_c"] if spec.time else [])
    slopes = []
    if spec.time and spec.time_slope:
        slopes.append("session_c")
    within = [c for c in alliance if not c.endswith("_between_c")]
    if spec.alliance_slope and within:
        slopes.append(within[0])
    bar = "|" if spec.correlated else "||"
    patient = (
        f"(1 + {' + '.join(slopes)} {bar} {schema.PATIENT_ID})"
        if slopes
        else f"(1 | {schema.PATIENT_ID})"
    )
    formula = f"{spec.outcome} ~ {' + '.join(fixed) or '1'} + {patient}"
    if spec.therapist_level and profile.has("therapists"):
        formula += f" + (1 | {schema.THERAPIST_ID})"
    return formula


def model_data(study: Study, spec: ModelSpec) -> pd.DataFrame:
    """The sessions with the chosen rater's within/between columns (added where needed)."""
    base = _rater_base(spec, study.profile)
    sessions = study.sessions
    if base == schema.ALLIANCE or f"{base}_within" in sessions.columns:
        return sessions
    return moderators.add_rater_features(sessions, [base])


@dataclass
class ModelView:
    """What the model explorer shows for one fit (or why there is none)."""

    spec: ModelSpec
    formula: str
    result: MixedResult | None
    seconds: float
    error: str | None = None

    def fixed(self) -> pd.DataFrame:
        """Fixed effects: estimate, SE, 95% CI, z, p."""
        return self.result.fixed.rename_axis("term") if self.result is not None else None

    def varcomp(self) -> pd.DataFrame:
        """Variance components as ``MixedResult.varcomp``."""
        return self.result.varcomp if self.result is not None else None

    def diagnostics(self) -> pd.DataFrame:
        """One row: method, nobs, logLik, converged, singular, Hessian, warnings."""
        return effects.diagnostics_table({"this fit": self.result})

    def warnings(self) -> pd.DataFrame:
        """Every warning of the fit (:func:`helpers.effects.warnings_table`)."""
        return effects.warnings_table({"this fit": self.result})


def fit_model(study: Study, spec: ModelSpec) -> ModelView:
    """Fit ``spec`` with :func:`helpers.effects.fit_quietly` (engine), timing the fit.

    A model the data cannot support (too few groups, an unsupported structure,
    a column the study lacks) gives a view with ``error`` set instead of raising.
    """
    try:
        formula = model_formula(spec, study.profile)
        data = model_data(study, spec)
    except (ValueError, KeyError) as err:
        return ModelView(spec, "", None, 0.0, f"{type(err).__name__}: {err}")
    start = time.perf_counter()
    try:
        result = effects.fit_quietly(data, formula, reml=spec.reml)
    except (FormulaError, UnsupportedModelError, ModelDataError, ValueError) as err:
        return ModelView(spec, formula, None, 0.0, f"{type(err).__name__}: {err}")
    return ModelView(spec, formula, result, time.perf_counter() - start)


def compare_fits(previous: ModelView | None, current: ModelView) -> pd.DataFrame | Sentence:
    """Likelihood-ratio test of the previous fit against the current one, when nested.

    Whichever of the two is the smaller model is taken as the restricted one
    (:func:`helpers.models.likelihood_ratio_test` chooses the reference
    distribution).  When they cannot be compared — no previous fit, a failed
    fit, different rows, REML fits with different fixed effects, models that
    are not nested — the reason is returned as one sentence.
    """
    if previous is None or previous.result is None:
        return Sentence("No previous fit to compare with: change a setting to compare.")
    if current.result is None:
        return Sentence("The current model could not be fitted, so there is no comparison.")
    if previous.formula == current.formula and previous.spec.reml == current.spec.reml:
        return Sentence("The previous fit is the same model: nothing to compare.")
    pairs = [(previous, current, "previous → current"), (current, previous, "current → previous")]
    if previous.result.n_params != current.result.n_params:  # the smaller model is restricted
        pairs = [p for p in pairs if p[0].result.n_params < p[1].result.n_params]
    errors = []
    for restricted, full, label in pairs:
        try:
            lrt = likelihood_ratio_test(restricted.result, full.result)
        except ValueError as err:
            errors.append(str(err))
            continue
        return lrt_table(lrt, restricted.formula, full.formula, label)
    return Sentence(f"No likelihood-ratio test: {_first_sentence(errors[0])}")


def _first_sentence(text: str) -> str:
    head, dot, _ = text.partition(". ")
    return head + (dot.strip() or "")


def lrt_table(lrt: LikelihoodRatioTest, restricted: str, full: str, label: str) -> pd.DataFrame:
    """One-row table of a likelihood-ratio test (statistic, df, p, reference)."""
    return pd.DataFrame(
        {
            "restricted": [restricted],
            "full": [full],
            "statistic": [lrt.statistic],
            "df": [lrt.df],
            "p": [lrt.p_value],
            "reference": [lrt.reference],
        },
        index=pd.Index([label], name="comparison"),
    )


def model_figure(view: ModelView, profile: StudyProfile | None = None) -> Figure:
    """Fixed effects (without the intercept) with 95% CIs, or a note when the fit failed."""
    from helpers.plots import plot_coefficients

    if view.result is None:
        return _note_figure("No fit: see the message above.")
    terms = [t for t in view.result.fixed.index if t != "Intercept"]
    if not terms:
        return _note_figure("Intercept-only model: no coefficient to draw.")
    fig, ax = _new_figure(aspect=max(0.25, 0.08 * len(terms) + 0.15))
    labels = (
        {} if profile is None else {"labels": profile.term_labels, "axis_labels": profile.labels}
    )
    plot_coefficients(view.result.fixed, terms=terms, ax=ax, **labels)
    with use_style():
        ax.set_title(f"{view.spec.outcome}, {'REML' if view.spec.reml else 'ML'}")
    return fig


# ---------------------------------------------------------------------------
# Widgets
# ---------------------------------------------------------------------------


class _Explorer:
    """Shared machinery: a controls row, an output area (tables, figure), a static form."""

    title = "explorer"
    css_class = "ae-explorer"

    def __init__(self) -> None:
        import ipywidgets as widgets

        self._w = widgets
        self.status = widgets.HTML(value="")
        self.status.add_class("ae-status")
        self.tables = widgets.HTML(value="")
        self.tables.add_class("ae-table")
        self.image = widgets.Image(format="png")
        self.image.add_class("ae-figure")
        self.image.layout.max_width = "900px"
        self._parts: list[pd.DataFrame | Sentence | str] = []
        self._png = b""

    def controls(self) -> list[Any]:
        raise NotImplementedError

    def compute(self) -> tuple[list[pd.DataFrame | Sentence | str], Figure]:
        raise NotImplementedError

    def refresh(self, *_: Any) -> None:
        """Recompute from the controls and redraw the table and the figure."""
        self.status.value = "<i>updating …</i>"
        try:
            parts, fig = self.compute()
        except Exception as err:  # show, never break the kernel's event loop
            self.status.value = f"<b>error</b>: {html.escape(f'{type(err).__name__}: {err}')}"
            raise
        self._parts, self._png = parts, figure_png(fig)
        self.tables.value = "\n".join(_table_html(p) for p in parts)
        self.image.value = self._png
        self.status.value = ""

    @property
    def widget(self):
        """The live widget: controls, status line, tables and figure."""
        if not hasattr(self, "_box"):
            w = self._w
            heading = w.HTML(f"<h4>{html.escape(self.title)}</h4>")
            self._box = w.VBox([heading, *self.controls(), self.status, self.tables, self.image])
            self._box.add_class(self.css_class)
        return self._box

    def static_html(self) -> str:
        """The current state as HTML: heading, tables, figure (embedded PNG)."""
        return static_html(self.title, self._parts, self._png)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_() or {})
        bundle["text/html"] = self.static_html()
        notes = [str(p) for p in self._parts if isinstance(p, (Sentence, str))]
        bundle["text/plain"] = "\n".join(
            [f"{self.title} (interactive in JupyterLab or Voilà)", *notes]
        )
        return bundle


def _fmt(table: pd.DataFrame | None, decimals: int = 2) -> pd.DataFrame | None:
    return None if table is None else format_table(table, decimals=decimals)


class PatientBrowser(_Explorer):
    """Choose a therapist and a patient (or search an id): trajectories and own numbers."""

    title = "Patient browser"
    css_class = "ae-patients"

    def __init__(self, study: Study, episodes: pd.DataFrame | None = None) -> None:
        super().__init__()
        w = self._w
        self.study = study
        self.episodes = default_episodes(study) if episodes is None else episodes
        therapists = therapist_options(study.sessions)
        self.note = study.profile.skip_note("Choosing a therapist", "therapists")
        self.therapist = w.Dropdown(
            options=[("all therapists", None)] + [(t, t) for t in therapists],
            value=therapists[0] if therapists else None,
            description="therapist",
        )
        self.therapist.layout.display = None if therapists else "none"
        self.search = w.Text(value="", description="patient id", placeholder="type part of an id")
        options = self._patients()
        self.patient = w.Dropdown(
            options=options,
            value=first_patient_with_episode(options, self.episodes),
            description="patient",
        )
        self.therapist.observe(self._filter, names="value")
        self.search.observe(self._filter, names="value")
        self.patient.observe(self.refresh, names="value")
        self.refresh()

    def _patients(self) -> list[str]:
        return patient_options(self.study.sessions, self.therapist.value, self.search.value)

    def _filter(self, *_: Any) -> None:
        options = self._patients()
        current = self.patient.value
        self._filtering = True  # one redraw for the new list, not one per trait change
        try:
            self.patient.options = options
            self.patient.value = current if current in options else (options or [None])[0]
        finally:
            self._filtering = False
        self.refresh()

    def refresh(self, *args: Any) -> None:
        """Redraw for the chosen patient (once per change of the therapist or search)."""
        if not getattr(self, "_filtering", False):
            super().refresh(*args)

    def controls(self) -> list[Any]:
        row = [self.therapist, self.search, self.patient]
        return [self._w.HBox(row)]

    def compute(self) -> tuple[list[Any], Figure]:
        patient = self.patient.value
        if patient is None:
            return [Sentence("No patient matches: clear the search box.")], _note_figure(
                "No patient matches the search."
            )
        summary = patient_summary(self.study, patient, self.episodes)
        parts: list[Any] = [_fmt(summary, 1)] + ([self.note] if self.note else [])
        return parts, patient_figure(self.study, patient, self.episodes)


class RuptureExplorer(_Explorer):
    """Sliders for the rupture criterion and repair window; counts, recovery and the V."""

    title = "Rupture explorer"
    css_class = "ae-ruptures"

    def __init__(self, study: Study, settings: RuptureSettings | None = None) -> None:
        super().__init__()
        w = self._w
        self.study = study
        s = settings or RuptureSettings()
        self.method = w.ToggleButtons(
            options=[("k × fluctuation SD", "sd"), ("fixed points", "points")],
            value=s.method,
            description="criterion",
        )
        self.k = w.FloatSlider(
            value=s.k, min=0.5, max=4.0, step=0.25, description="k (SD)", continuous_update=False
        )
        self.points = w.FloatSlider(
            value=s.points, min=1.0, max=20.0, step=1.0, description="points",
            continuous_update=False,
        )  # fmt: skip
        self.fluctuation = w.Dropdown(
            options=["patient_sd", "patient_mad", "pooled_sd", "stricter"],
            value=s.fluctuation,
            description="fluctuation",
        )
        self.repair_within = w.IntSlider(
            value=s.repair_within, min=1, max=8, description="repair within",
            continuous_update=False,
        )  # fmt: skip
        for control in (self.method, self.k, self.points, self.fluctuation, self.repair_within):
            control.observe(self.refresh, names="value")
        self.refresh()

    def settings(self) -> RuptureSettings:
        """The definition the controls describe."""
        return RuptureSettings(
            method=self.method.value,
            k=float(self.k.value),
            points=float(self.points.value),
            fluctuation=self.fluctuation.value,
            repair_within=int(self.repair_within.value),
        )

    def controls(self) -> list[Any]:
        w = self._w
        return [
            self.method,
            w.HBox([self.k, self.fluctuation]),
            w.HBox([self.points, self.repair_within]),
        ]

    def compute(self) -> tuple[list[Any], Figure]:
        is_sd = self.method.value == "sd"
        self.k.disabled, self.fluctuation.disabled, self.points.disabled = (
            not is_sd,
            not is_sd,
            is_sd,
        )
        self.view = rupture_view(self.study, self.settings())
        parts: list[Any] = [_fmt(self.view.counts, 3), _fmt(self.view.by_status, 2)]
        if self.view.note is not None:
            parts.append(self.view.note)
        return parts, rupture_figure(self.view, self.study.profile)


class ModelExplorer(_Explorer):
    """Outcome, alliance terms, random effects and REML/ML; refit and compare with the last fit."""

    title = "Model explorer"
    css_class = "ae-models"

    def __init__(self, study: Study, spec: ModelSpec | None = None) -> None:
        super().__init__()
        w = self._w
        self.study = study
        profile = study.profile
        spec = spec or ModelSpec()
        outcomes = [
            (label, column)
            for column, label in MODEL_OUTCOMES.items()
            if column in study.sessions.columns and study.sessions[column].notna().any()
        ]
        self.outcome = w.Dropdown(options=outcomes, value=spec.outcome, description="outcome")
        self.rater = w.Dropdown(
            options=[(r, r) for r in profile.raters],
            value=spec.rater or profile.primary_rater,
            description="rater",
        )
        self.terms = w.SelectMultiple(
            options=[(label, key) for key, (_, label) in ALLIANCE_TERMS.items()],
            value=spec.terms,
            description="alliance",
            rows=3,
        )
        self.time = w.Checkbox(value=spec.time, description="time (session_c)")
        self.time_slope = w.Checkbox(value=spec.time_slope, description="random time slope")
        self.alliance_slope = w.Checkbox(
            value=spec.alliance_slope, description="random alliance slope"
        )
        self.correlated = w.Checkbox(value=spec.correlated, description="correlated effects")
        self.therapist_level = w.Checkbox(
            value=spec.therapist_level and profile.has("therapists"),
            description="therapist level (3 levels)",
            disabled=not profile.has("therapists"),
        )
        self.reml = w.ToggleButtons(
            options=[("REML", True), ("ML", False)], value=spec.reml, description="criterion"
        )
        self.note = profile.skip_note("The therapist level", "therapists")
        self.previous: ModelView | None = None
        self.current: ModelView | None = None
        controls = (
            self.outcome, self.rater, self.terms, self.time, self.time_slope,
            self.alliance_slope, self.correlated, self.therapist_level, self.reml,
        )  # fmt: skip
        for control in controls:
            control.observe(self.refresh, names="value")
        self.refresh()

    def spec(self) -> ModelSpec:
        """The model the controls describe."""
        return ModelSpec(
            outcome=self.outcome.value,
            rater=self.rater.value,
            terms=tuple(self.terms.value),
            time=self.time.value,
            time_slope=self.time_slope.value,
            alliance_slope=self.alliance_slope.value,
            correlated=self.correlated.value,
            therapist_level=self.therapist_level.value,
            reml=self.reml.value,
        )

    def controls(self) -> list[Any]:
        w = self._w
        left = w.VBox([self.outcome, self.rater, self.terms, self.reml])
        right = w.VBox(
            [self.time, self.time_slope, self.alliance_slope, self.correlated, self.therapist_level]
        )
        return [w.HBox([left, right])]

    def refresh(self, *args: Any) -> None:
        """Refit (a progress line shows while the engine runs), then redraw."""
        self.status.value = "<i>fitting …</i>"
        super().refresh(*args)
        if self.current is not None and self.current.result is not None:
            self.status.value = (
                f"<span class='ae-fit-time'>fitted in {self.current.seconds:.2f} s</span>"
            )

    def compute(self) -> tuple[list[Any], Figure]:
        view = fit_model(self.study, self.spec())
        if self.current is not None:
            self.previous = self.current
        self.current = view
        parts: list[Any] = [Sentence(f"Formula: {view.formula}")]
        if view.error is not None:
            parts.append(Sentence(f"The model could not be fitted. {view.error}"))
        else:
            parts += [
                _fmt(view.fixed(), 3),
                _fmt(view.varcomp(), 3),
                _fmt(view.diagnostics(), 2),
            ]
            warned = view.warnings()
            if len(warned):
                parts.append(_fmt(warned[["category", "message"]]))
        if self.note is not None:
            parts.append(self.note)
        comparison = compare_fits(self.previous, view)
        parts.append(_fmt(comparison, 4) if isinstance(comparison, pd.DataFrame) else comparison)
        return parts, model_figure(view, self.study.profile)


__all__ = [
    "ModelExplorer",
    "ModelSpec",
    "ModelView",
    "PatientBrowser",
    "RuptureExplorer",
    "RuptureSettings",
    "RuptureView",
    "Study",
    "compare_fits",
    "fit_model",
    "load_study",
    "model_formula",
    "patient_figure",
    "patient_options",
    "patient_summary",
    "rupture_view",
    "study_from_frames",
    "therapist_options",
]
