"""The explorers of helpers.explorer: their computations, and their widgets driven from Python.

The computations are checked against the helpers they wrap (``fit_mixed``,
``likelihood_ratio_test``, ``threshold_sensitivity``); the widgets are driven
by setting a control's value, as a browser would, and the output area is
checked to have changed with it.  ``tests/test_browser.py`` does the same in
a real browser.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from helpers import explorer as ex
from helpers import ruptures
from helpers.models import fit_mixed, likelihood_ratio_test
from helpers.narrative import Sentence
from helpers.paths import PROJECT_ROOT
from helpers.pipeline import run_cleaning

DEMO_DIR = PROJECT_ROOT / "data" / "raw" / "demo"
MAIN_FORMULA = (
    "outcome ~ alliance_within_lag + alliance_between_c + session_c"
    " + (1 + session_c || patient_id) + (1 | therapist_id)"
)


@pytest.fixture(scope="module")
def cleaned():
    return run_cleaning(DEMO_DIR / "sessions.csv", DEMO_DIR / "study.yml")


@pytest.fixture(scope="module")
def truth() -> list[dict]:
    return json.loads((DEMO_DIR / "truth.json").read_text(encoding="utf-8"))["ruptures"]


@pytest.fixture(scope="module")
def study(cleaned, truth) -> ex.Study:
    return ex.study_from_frames(cleaned.sessions, cleaned.config.to_dict(), truth)


@pytest.fixture(scope="module")
def small_study(cleaned) -> ex.Study:
    """A two-level study with one rater and no truth: what the explorers must adapt to."""
    sessions = cleaned.sessions.drop(columns=["therapist_id", "alliance_therapist"])
    config = cleaned.config.to_dict()
    config["alliance"] = {"client": config["alliance"]["client"]}
    return ex.study_from_frames(sessions, config)


def _ids(sessions: pd.DataFrame) -> set[str]:
    codes = set(sessions["patient_id"].astype(str))
    if "therapist_id" in sessions.columns:
        codes |= set(sessions["therapist_id"].astype(str))
    return codes


# ---------------------------------------------------------------------------
# Patients
# ---------------------------------------------------------------------------


def test_therapist_and_patient_choices(study, small_study):
    sessions = study.sessions
    therapists = ex.therapist_options(sessions)
    assert therapists == sorted(sessions["therapist_id"].unique())
    first = therapists[0]
    own = ex.patient_options(sessions, first)
    assert own == sorted(sessions.loc[sessions["therapist_id"] == first, "patient_id"].unique())
    assert ex.patient_options(sessions) == sorted(sessions["patient_id"].unique())
    # search: part of an id, any case, surrounding spaces ignored
    assert ex.patient_options(sessions, None, " p001 ") == [
        p for p in sorted(sessions["patient_id"].unique()) if "P001" in p
    ]
    assert ex.patient_options(sessions, first, "no such id") == []
    assert ex.therapist_options(small_study.sessions) == []


def test_first_patient_shown_has_an_episode(study):
    episodes = ex.default_episodes(study)
    options = ex.patient_options(study.sessions, ex.therapist_options(study.sessions)[0])
    first = ex.first_patient_with_episode(options, episodes)
    assert first in set(episodes["patient_id"]) and first == min(
        set(options) & set(episodes["patient_id"])
    )
    assert ex.first_patient_with_episode(options, episodes.iloc[:0]) == options[0]
    assert ex.first_patient_with_episode([], episodes) is None


def test_patient_summary_holds_the_patients_own_numbers_and_no_codes(study):
    episodes = ex.default_episodes(study)
    patient = episodes["patient_id"].value_counts().index[0]  # a patient with episodes
    rows = study.sessions.query("patient_id == @patient").sort_values("session")
    table = ex.patient_summary(study, patient, episodes)
    client = table.loc["client alliance (WAI-SR)"]
    observed = rows["alliance_client"].dropna()
    assert client["first"] == observed.iloc[0] and client["last"] == observed.iloc[-1]
    assert client["mean"] == pytest.approx(rows["alliance_client"].mean())
    outcome = table.loc[next(i for i in table.index if i.startswith("symptoms"))]
    assert outcome["change"] == pytest.approx(outcome["last"] - outcome["first"])
    assert table.loc["session numbers (change: number of sessions)", "change"] == len(rows)
    mine = episodes.query("patient_id == @patient")
    for status in ruptures.EPISODE_STATUSES:
        assert table.loc[f"rupture episodes: {status}", "first"] == (mine.status == status).sum()
    text = table.to_string()
    assert not [code for code in _ids(study.sessions) if code in text]


def test_patient_figure_draws_each_rater_and_shades_each_episode(study, small_study):
    episodes = ex.default_episodes(study)
    patient = episodes["patient_id"].value_counts().index[0]
    fig = ex.patient_figure(study, patient, episodes)
    top, bottom = fig.axes
    assert len(top.lines) == 2 and len(bottom.lines) == 1  # client and therapist; symptoms
    n_episodes = (episodes["patient_id"] == patient).sum()
    assert len(top.patches) == len(bottom.patches) == n_episodes
    assert patient not in top.get_title()
    small_fig = ex.patient_figure(small_study, patient, ex.default_episodes(small_study))
    assert len(small_fig.axes[0].lines) == 1  # one rater only


# ---------------------------------------------------------------------------
# Ruptures
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        ex.RuptureSettings(),
        ex.RuptureSettings(k=1.0, repair_within=2, fluctuation="pooled_sd"),
        ex.RuptureSettings(method="points", points=8.0, repair_within=4),
    ],
    ids=["2 SD", "1 SD pooled", "8 points"],
)
def test_rupture_view_equals_threshold_sensitivity(study, settings):
    view = ex.rupture_view(study, settings)
    sd = settings.method == "sd"
    reference = ruptures.threshold_sensitivity(
        study.sessions,
        ks=[settings.k] if sd else [],
        points=[] if sd else [settings.points],
        fluctuation=settings.fluctuation,
        repair_within=settings.repair_within,
        true_episodes=study.true_episodes,
    ).set_index("definition")
    columns = ex.RUPTURE_COLUMNS + ex.RECOVERY_COLUMNS
    pd.testing.assert_frame_equal(view.counts, reference[columns])
    assert view.note is None
    assert view.by_status.loc["all", "episodes"] == len(view.episodes)
    aligned = ruptures.aligned_summary(
        ruptures.aligned_on_rupture(study.sessions, view.episodes, window=(-3, 4))
    ).query("variable == 'alliance'")
    np.testing.assert_allclose(view.aligned["mean"], aligned["mean"])
    assert ex.rupture_figure(view, study.profile).axes[0].get_title().endswith("episodes")


def test_rupture_figure_leaves_out_sessions_without_an_interval(study):
    view = ex.rupture_view(study, ex.RuptureSettings())
    view.aligned.loc[0, ["sd", "ci_low", "ci_high"]] = np.nan  # one episode at session -3
    line = ex.rupture_figure(view, study.profile).axes[0].lines[-1]
    assert list(line.get_xdata()) == list(range(-2, 5))


def test_rupture_view_without_truth_says_so(small_study):
    view = ex.rupture_view(small_study, ex.RuptureSettings())
    assert list(view.counts.columns) == ex.RUPTURE_COLUMNS
    assert "truth" in str(view.note) and "Skipped" in str(view.note)


def test_rupture_view_with_no_episode_draws_a_note(study):
    view = ex.rupture_view(study, ex.RuptureSettings(method="points", points=60.0))
    assert len(view.episodes) == 0 and view.counts["n_episodes"].iloc[0] == 0
    fig = ex.rupture_figure(view, study.profile)
    assert "too few episodes" in fig.axes[0].texts[0].get_text()


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


def test_default_model_is_notebook_03s_main_model(study, small_study):
    assert ex.model_formula(ex.ModelSpec(), study.profile) == MAIN_FORMULA
    two_level = ex.model_formula(ex.ModelSpec(), small_study.profile)
    assert two_level == MAIN_FORMULA.removesuffix(" + (1 | therapist_id)")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            ex.ModelSpec(terms=("within",), time=False),
            "outcome ~ alliance_within + (1 | patient_id) + (1 | therapist_id)",
        ),
        (
            ex.ModelSpec(terms=("within", "between"), alliance_slope=True, correlated=True),
            "outcome ~ alliance_within + alliance_between_c + session_c"
            " + (1 + session_c + alliance_within | patient_id) + (1 | therapist_id)",
        ),
        (
            ex.ModelSpec(rater="therapist", therapist_level=False, time_slope=False),
            "outcome ~ alliance_therapist_within_lag + alliance_therapist_between_c + session_c"
            " + (1 | patient_id)",
        ),
        (
            ex.ModelSpec(outcome="outcome_change", terms=(), alliance_slope=True),
            "outcome_change ~ session_c + (1 + session_c || patient_id) + (1 | therapist_id)",
        ),
    ],
    ids=["within only", "correlated slopes", "therapist rater, 2 levels", "no alliance term"],
)
def test_model_formula(study, spec, expected):
    assert ex.model_formula(spec, study.profile) == expected


def test_unknown_alliance_term_is_an_error_view(study):
    view = ex.fit_model(study, ex.ModelSpec(terms=("sideways",)))
    assert view.result is None and "sideways" in view.error


@pytest.mark.parametrize(
    "spec",
    [ex.ModelSpec(), ex.ModelSpec(rater="therapist", correlated=True, reml=False)],
    ids=["main", "therapist rater, correlated, ML"],
)
def test_model_explorer_numbers_equal_fit_mixed(study, spec):
    view = ex.fit_model(study, spec)
    data = ex.model_data(study, spec)
    reference = fit_mixed(data, view.formula, reml=spec.reml)
    pd.testing.assert_frame_equal(view.result.fixed, reference.fixed)
    pd.testing.assert_frame_equal(view.result.varcomp, reference.varcomp)
    assert view.result.loglik == reference.loglik
    assert view.result.engine == "engine"
    assert view.error is None and view.seconds > 0


def test_compare_fits_tests_nested_models_and_explains_the_rest(study):
    main = ex.fit_model(study, ex.ModelSpec())
    no_slope = ex.fit_model(study, ex.ModelSpec(time_slope=False))
    table = ex.compare_fits(main, no_slope)  # the smaller model came second
    lrt = likelihood_ratio_test(no_slope.result, main.result)
    assert table.index[0] == "current → previous"
    assert table["statistic"].iloc[0] == lrt.statistic and table["p"].iloc[0] == lrt.p_value
    assert table["df"].iloc[0] == 1 and "mixture" in table["reference"].iloc[0]
    # different fixed effects by REML: not comparable, and the sentence says why
    fewer = ex.fit_model(study, ex.ModelSpec(terms=("lagged",)))
    reason = ex.compare_fits(main, fewer)
    assert isinstance(reason, Sentence) and "REML" in str(reason)
    # by ML the same pair is a chi-square(1) test of the between term
    ml = ex.compare_fits(
        ex.fit_model(study, ex.ModelSpec(terms=("lagged",), reml=False)),
        ex.fit_model(study, ex.ModelSpec(reml=False)),
    )
    assert ml["df"].iloc[0] == 1 and ml.index[0] == "previous → current"
    # different rows (the lag drops first sessions): not comparable
    within = ex.fit_model(study, ex.ModelSpec(terms=("within", "between")))
    assert "same observations" in str(ex.compare_fits(main, within))
    assert "No previous fit" in str(ex.compare_fits(None, main))


# ---------------------------------------------------------------------------
# Widgets, driven from Python
# ---------------------------------------------------------------------------


def test_rupture_explorer_updates_with_its_sliders(study):
    explorer = ex.RuptureExplorer(study)
    table, png = explorer.tables.value, bytes(explorer.image.value)
    assert "precision" in table and png.startswith(b"\x89PNG")
    explorer.k.value = 1.0
    assert explorer.tables.value != table and bytes(explorer.image.value) != png
    assert explorer.view.settings.k == 1.0
    expected = ex.rupture_view(study, ex.RuptureSettings(k=1.0)).counts
    pd.testing.assert_frame_equal(explorer.view.counts, expected)
    explorer.method.value = "points"
    assert explorer.k.disabled and not explorer.points.disabled
    assert explorer.view.counts.index[0].startswith("drop")
    assert explorer.status.value == ""


def test_patient_browser_follows_therapist_search_and_patient(study):
    browser = ex.PatientBrowser(study)
    therapists = ex.therapist_options(study.sessions)
    assert browser.therapist.value == therapists[0]
    assert list(browser.patient.options) == ex.patient_options(study.sessions, therapists[0])
    assert browser.patient.value in set(browser.episodes["patient_id"])
    before = (browser.tables.value, bytes(browser.image.value))
    browser.therapist.value = therapists[1]
    assert list(browser.patient.options) == ex.patient_options(study.sessions, therapists[1])
    assert (browser.tables.value, bytes(browser.image.value)) != before
    browser.search.value = "no such patient"
    assert browser.patient.value is None and "No patient matches" in browser.tables.value
    browser.therapist.value = None
    browser.search.value = browser.patient.options[0] if browser.patient.options else ""
    browser.search.value = ""
    browser.patient.value = browser.patient.options[-1]
    assert "rupture episodes" in browser.tables.value
    text = re.sub(r"base64,[A-Za-z0-9+/=]+", "", browser.static_html())
    assert not [code for code in _ids(study.sessions) if code in text]


def test_model_explorer_refits_and_compares(study):
    explorer = ex.ModelExplorer(study)
    assert MAIN_FORMULA in explorer.tables.value
    assert "No previous fit" in explorer.tables.value
    assert "fitted in" in explorer.status.value
    png = bytes(explorer.image.value)
    explorer.time_slope.value = False
    assert explorer.previous.formula == MAIN_FORMULA
    assert "50:50 mixture" in explorer.tables.value and bytes(explorer.image.value) != png
    explorer.rater.value = "therapist"
    assert "alliance_therapist_within_lag" in explorer.current.formula
    explorer.terms.value = ()
    assert explorer.current.formula.startswith("outcome ~ session_c")
    assert "Intercept" in explorer.tables.value


def test_explorers_adapt_to_a_two_level_one_rater_study(small_study):
    browser = ex.PatientBrowser(small_study)
    assert browser.therapist.layout.display == "none" and browser.patient.options
    assert "therapist ids" in str(browser.note)
    models = ex.ModelExplorer(small_study)
    assert models.therapist_level.disabled and not models.therapist_level.value
    assert list(models.rater.options) == [("client", "client")]
    assert "therapist_id" not in models.current.formula and models.current.result is not None
    ruptures_view = ex.RuptureExplorer(small_study)
    assert "Skipped" in ruptures_view.tables.value


def test_display_sends_the_widget_and_a_static_fallback(study):
    explorer = ex.ModelExplorer(study)
    bundle = explorer._repr_mimebundle_()
    assert ex.WIDGET_VIEW in bundle
    assert bundle["text/html"].startswith("<div class='explorer-static'><h4>Model explorer</h4>")
    assert "data:image/png;base64," in bundle["text/html"]
    assert bundle["text/plain"].startswith("Model explorer (interactive in JupyterLab or Voilà)")
    assert "No previous fit" in bundle["text/plain"]


def test_committed_notebooks_hold_no_widget_state():
    for path in sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        assert ex.WIDGET_STATE not in notebook["metadata"], f"{path.name}: widget state"
        views = [
            o
            for c in notebook["cells"]
            for o in c.get("outputs", [])
            if ex.WIDGET_VIEW in o.get("data", {})
        ]
        assert not views, f"{path.name}: live widget outputs (make refresh strips them)"
