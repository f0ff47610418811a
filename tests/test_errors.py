"""Tests of helpers.errors: one hierarchy, the same structure, the command line's rendering."""

from __future__ import annotations

import importlib
import inspect
import pickle

import numpy as np
import pandas as pd
import pytest

from helpers import errors

from _fits import quiet_fit

PUBLIC_CLASSES = [
    obj
    for name, obj in vars(errors).items()
    if inspect.isclass(obj) and issubclass(obj, BaseException) and not name.startswith("_")
]


# --------------------------------------------------------------------------------------
# The hierarchy
# --------------------------------------------------------------------------------------


def test_every_public_error_class_is_a_helpers_error_defined_in_errors():
    assert len(PUBLIC_CLASSES) >= 15
    for cls in PUBLIC_CLASSES:
        assert issubclass(cls, errors.HelpersError), cls
        assert cls.__module__ == "helpers.errors", cls
        assert cls.__doc__, cls
        assert cls.__name__ in errors.__all__, cls


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (errors.ConfigError, errors.StudyDataError),
        (errors.OutputFolderError, errors.StudyDataError),
        (errors.DataInputError, errors.StudyDataError),
        (errors.PowerSettingsError, errors.SettingsError),
        (errors.FormulaError, errors.ModelSpecificationError),
        (errors.UnsupportedModelError, errors.ModelSpecificationError),
        (errors.ModelDataError, errors.ModelSpecificationError),
        (errors.LedgerMismatchError, AssertionError),
        (errors.NotebookFailedError, RuntimeError),
    ],
)
def test_branches(child, parent):
    assert issubclass(child, parent)


def test_classes_that_were_value_errors_still_are():
    for cls in (
        errors.DataInputError,
        errors.SettingsError,
        errors.PowerSettingsError,
        errors.ModelSpecificationError,
        errors.FormulaError,
        errors.UnsupportedModelError,
        errors.ModelDataError,
        errors.EngineInputError,
        errors.PlotInputError,
    ):
        assert issubclass(cls, ValueError), cls
    # a study input's report is not a ValueError (callers catch it by its own name)
    assert not issubclass(errors.StudyDataError, ValueError)
    assert not issubclass(errors.ConfigError, ValueError)


OLD_HOMES = [
    ("validation", "StudyDataError"),
    ("validation", "Problem"),
    ("validation", "format_problems"),
    ("safety", "OutputFolderError"),
    ("plots", "PlotInputError"),
    ("power", "PowerSettingsError"),
    ("engine", "EngineInputError"),
    ("models", "FormulaError"),
    ("models", "UnsupportedModelError"),
    ("models", "ModelDataError"),
    ("cleaning", "LedgerMismatchError"),
    ("runner", "NotebookFailedError"),
]


@pytest.mark.parametrize(("module", "name"), OLD_HOMES)
def test_old_homes_import_the_same_classes(module, name):
    old_home = importlib.import_module(f"helpers.{module}")
    assert getattr(old_home, name) is getattr(errors, name)


# --------------------------------------------------------------------------------------
# The structure: file, column, rows, expected, found, fix
# --------------------------------------------------------------------------------------


def test_structured_fields_become_one_problem_and_the_fix_is_appended_once():
    err = errors.SettingsError(
        "f: level is 95.", column="level", found="95", expected="a proportion", fix="Pass 0.95."
    )
    assert str(err) == "f: level is 95. Pass 0.95."
    (problem,) = err.problems
    assert (problem.column, problem.found, problem.rule, problem.fix) == (
        "level",
        "95",
        "a proportion",
        "Pass 0.95.",
    )
    assert list(err.to_frame()["column"]) == ["level"]
    said = errors.SettingsError("f: bad. Pass 0.95.", fix="Pass 0.95.")
    assert str(said) == "f: bad. Pass 0.95."
    assert errors.SettingsError("plain").problems == []


@pytest.mark.parametrize(
    "err",
    [
        errors.SettingsError("a setting", column="level", fix="Pass 0.95."),
        errors.DataInputError("a frame", column="x", rows=[3], values=["a"], fix="Clean it."),
        errors.StudyDataError(errors.Problem("a.csv", "x", [2], ["v"], "r", "f", "g"), "summary"),
        errors.FormulaError("no response"),
    ],
)
def test_errors_survive_pickling(err):
    """Worker processes (joblib, Dask) send errors back pickled."""
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.problems == err.problems


def test_data_input_error_is_a_one_paragraph_data_error():
    err = errors.DataInputError("f: column 'x' holds text.", column="x", fix="Clean it.")
    assert str(err) == "f: column 'x' holds text. Clean it."
    lines = err._render_traceback_()
    assert lines[0].startswith("StudyDataError") and lines[-1] == str(err)
    assert "Traceback" not in "\n".join(lines)


# --------------------------------------------------------------------------------------
# A user's mistake in each module raises the right class, with a fix
# --------------------------------------------------------------------------------------


def _frame(**columns):
    return pd.DataFrame(columns)


def _config_error():
    from helpers.config import config_from_dict

    config_from_dict({"study": "x", "layout": "longg"})


def _power_error():
    from helpers.power import Design

    Design(n_therapists=1)


def _engine_error():
    from helpers.engine import NestedLMM

    NestedLMM(np.ones((4, 1)), patient=np.zeros(3, dtype=int))


USER_ERRORS = [
    # (module, call, class, a piece of the fix)
    (
        "validation",
        lambda: __import__("helpers.validation").validation.require_frame(
            _frame(a=[1]), ["session"], "f"
        ),
        errors.DataInputError,
        "Map your columns",
    ),
    ("config", _config_error, errors.ConfigError, "did you mean 'long'"),
    ("power", _power_error, errors.PowerSettingsError, "n_therapists"),
    ("engine", _engine_error, errors.EngineInputError, "give one label per observation"),
    (
        "plots",
        lambda: __import__("helpers.plots").plots.normal_quantiles(0),
        errors.PlotInputError,
        "Pass n >= 1",
    ),
    (
        "style",
        lambda: __import__("helpers.style").style.figure_size("huge"),
        errors.SettingsError,
        "use one of",
    ),
    (
        "present",
        lambda: __import__("helpers.present").present.format_p(2),
        errors.SettingsError,
        "[0, 1]",
    ),
    (
        "meta_analysis",
        lambda: __import__("helpers.meta_analysis").meta_analysis.correlation_ci(1.5, 40),
        errors.SettingsError,
        "check that the value is a correlation",
    ),
    (
        "ruptures",
        lambda: __import__("helpers.ruptures").ruptures.RuptureDefinition(method="drop"),
        errors.SettingsError,
        "method must be one of",
    ),
    (
        "simulate",
        lambda: __import__("helpers.simulate").simulate.simulate_study(n_therapists=0),
        errors.SettingsError,
        "Pass e.g. n_therapists=",
    ),
    (
        "scenarios",
        lambda: __import__("helpers.scenarios").scenarios.get_scenario("nope"),
        errors.SettingsError,
        "the scenarios are",
    ),
    (
        "runner",
        lambda: __import__("helpers.runner").runner.parse_settings(["seed"]),
        errors.SettingsError,
        "write NAME=VALUE",
    ),
    (
        "moderators",
        lambda: __import__("helpers.moderators").moderators.add_rater_features(
            _frame(patient_id=["a"], session=[1], wai=[3.0], wai_between=[1.0]), ["wai"]
        ),
        errors.DataInputError,
        "Drop them",
    ),
    (
        "associations",
        lambda: __import__("helpers.associations").associations.patient_level_alliance_outcome(
            _frame(
                patient_id=["a", "a"],
                alliance=[1.0, 2.0],
                outcome=[3.0, 4.0],
                outcome_intake=[5.0, 6.0],
                n_sessions=[8, 8],
            ),
            alliance="alliance",
            outcome="outcome",
        ),
        errors.DataInputError,
        "one row per patient",
    ),
    (
        "scoring",
        lambda: __import__("helpers.scoring").scoring.get_instrument("wai-xl"),
        errors.SettingsError,
        "'instrument' key of the study config",
    ),
    (
        "features",
        lambda: __import__("helpers.features").features.lag_within_patient(
            _frame(patient_id=["a", "a"], session=[1, 1], x=[1.0, 2.0]), "x"
        ),
        errors.DataInputError,
        "the cleaning step resolves duplicates",
    ),
    (
        "agreement",
        lambda: __import__("helpers.agreement").agreement.between_subject_correlation(
            _frame(patient_id=["a", None], x=[1.0, 2.0], y=[1.0, 2.0]), "x", "y"
        ),
        errors.DataInputError,
        "Every row needs",
    ),
]


@pytest.mark.parametrize(
    ("call", "cls", "fix"), [u[1:] for u in USER_ERRORS], ids=[u[0] for u in USER_ERRORS]
)
def test_a_user_error_raises_the_right_class_with_a_fix(call, cls, fix):
    with pytest.raises(cls) as info:
        call()
    assert fix in str(info.value)
    assert isinstance(info.value, errors.HelpersError)


@pytest.fixture(scope="module")
def small_fit():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(12), 6)
    x = rng.normal(size=groups.size)
    y = 1 + 0.5 * x + rng.normal(size=12)[groups] + rng.normal(size=groups.size)
    data = pd.DataFrame({"y": y, "x": x, "g": [f"g{k}" for k in groups]})
    return data, quiet_fit(data, "y ~ x + (1 | g)")


def test_model_user_errors_raise_model_specification_or_settings_errors(small_fit):
    from helpers import effects, intervals, models, moderators, predictions

    data, fit = small_fit
    with pytest.raises(errors.FormulaError):
        models.fit_mixed(data, "y ~ x + (1 | )")
    with pytest.raises(errors.SettingsError, match="engine must be one of"):
        models.fit_mixed(data, "y ~ x + (1 | g)", engine="lme4")
    with pytest.raises(errors.ModelSpecificationError, match="not a fixed effect"):
        models.contrast_test(fit, {"z": 1.0})
    with pytest.raises(errors.ModelSpecificationError, match="Write them as in"):
        moderators.linear_combination(fit, {"z": 1.0})
    with pytest.raises(errors.SettingsError, match="Use method='refit'"):
        effects.parametric_bootstrap(fit, 2, 0, method="engine", reml=False)
    with pytest.raises(errors.SettingsError, match=r"Pass e\.g\. level=0\.95"):
        intervals.profile_intervals(fit, level=95)
    with pytest.raises(errors.DataInputError, match="Pass the data the model was fitted on"):
        predictions.predicted_trajectories(fit, data, alliance="x", session_term="x")


# --------------------------------------------------------------------------------------
# The command line: reports, not tracebacks
# --------------------------------------------------------------------------------------


def _cli_with(monkeypatch, err):
    from helpers import cli, pipeline

    def failing(*args, **kwargs):
        raise err

    monkeypatch.setattr(pipeline, "run_cleaning", failing)
    return cli.main(["clean", "--input", "x.csv", "--config", "x.yml", "--out", "out"])


def test_cli_renders_a_data_error_without_traceback(monkeypatch, capsys):
    err = errors.DataInputError(
        "features: column 'session' holds text in rows 4.", column="session", fix="Clean it."
    )
    assert _cli_with(monkeypatch, err) == 2
    text = capsys.readouterr().err
    assert text.startswith("error: the input cannot be used as it is.")
    assert "column 'session' holds text in rows 4. Clean it." in text
    assert "Traceback" not in text


def test_cli_renders_a_settings_or_model_error_as_one_message(monkeypatch, capsys):
    for err in (
        errors.SettingsError("f: level is 95.", fix="Pass level=0.95."),
        errors.FormulaError("the formula has no response."),
    ):
        assert _cli_with(monkeypatch, err) == 2
        text = capsys.readouterr().err
        assert text.startswith(f"error: {err}") and "Traceback" not in text


def test_cli_reports_a_ledger_mismatch_as_a_bug(monkeypatch, capsys, tmp_path):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert _cli_with(monkeypatch, errors.LedgerMismatchError("counts differ")) == 3
    assert "this is a bug in the suite" in capsys.readouterr().err
