"""Notebook 06 draws byte-identical figure files from the same results, run after run.

The demo study is cleaned into a temporary folder and the tables notebook 06 reads are
written there the way notebook 03 writes them (the main model is fitted on 12 of the 40
therapists, to keep the test fast; a rupture summary is made up). Then notebook 06 is
executed twice with papermill, into two figure folders, in two kernels with different hash
seeds and matplotlib backends, and every PNG, SVG and PDF file must be identical.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from helpers import associations, effects, predictions
from helpers.features import add_patient_model_features
from helpers.paths import DEMO_DIR, NOTEBOOKS_DIR
from helpers.pipeline import run_cleaning

papermill = pytest.importorskip("papermill")

NOTEBOOK = NOTEBOOKS_DIR / "06_figures.ipynb"
FIGURES = [
    "fig1_trajectories",
    "fig2_within_between",
    "fig3_therapist_effects",
    "fig4_predicted_trajectories",
    "fig5_rupture_v",
    "fig6_forest",
    "fig7_diagnostics",
]
MAIN_FORMULA = (
    "outcome ~ alliance_within_lag + alliance_between_c + session_c"
    " + (1 + session_c || patient_id) + (1 | therapist_id)"
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """Processed demo data and the result tables of notebooks 03 and 04 (rupture summary)."""
    root = tmp_path_factory.mktemp("inputs")
    processed, results = root / "processed", root / "results"
    run_cleaning(DEMO_DIR / "sessions.csv", DEMO_DIR / "study.yml", processed)
    sessions = pd.read_parquet(processed / "sessions.parquet")
    subset = sessions.loc[sessions["therapist_id"].isin([f"T{i:02d}" for i in range(1, 13)])]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        main = effects.fit_quietly(subset, MAIN_FORMULA)
    intercepts = predictions.random_effects_table(main, "patient_id")
    tables = {
        "03_fixed_effects": effects.fixed_table({"session: main": main}),
        "03_diagnostics": effects.diagnostics_table({"session: main": main}),
        "03_random_effects_therapist": predictions.random_effects_table(main, "therapist_id"),
        "03_predicted_trajectories": predictions.predicted_trajectories(main, subset),
        "03_residuals": predictions.residuals_table(main).sort_values("fitted", ignore_index=True),
        "03_patient_random_intercepts": intercepts.loc[
            intercepts["term"] == "Intercept", ["estimate"]
        ].sort_values("estimate", ignore_index=True),
    }
    patients = add_patient_model_features(pd.read_csv(processed / "patients.csv"))
    tables["03_patient_level_r"] = associations.patient_level_alliance_outcome(patients).to_frame()
    for name, table in tables.items():
        effects.save_table(table, name, results)
    rupture = pd.DataFrame(
        {
            "variable": "alliance",
            "relative_session": [-2, -1, 0, 1, 2],
            "mean": [45.0, 46.0, 38.0, 41.0, 43.0],
            "ci_low": [43.0, 44.5, 36.5, 39.0, 41.0],
            "ci_high": [47.0, 47.5, 39.5, 43.0, 45.0],
        }
    )
    effects.save_table(rupture, "04_rupture_aligned", results)
    return processed, results


def _run(inputs, out: Path, hash_seed: str, backend: str | None) -> nbformat.NotebookNode:
    processed, results = inputs
    out.mkdir(parents=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONHASHSEED", hash_seed)
        if backend is None:
            patch.delenv("MPLBACKEND", raising=False)
        else:
            patch.setenv("MPLBACKEND", backend)
        return papermill.execute_notebook(
            str(NOTEBOOK),
            str(out / "06_figures.ipynb"),
            parameters={
                "PROCESSED_DIR": str(processed),
                "RESULTS_DIR": str(results),
                "FIGURES_DIR": str(out / "figures"),
            },
            cwd=str(NOTEBOOKS_DIR),
            kernel_name="python3",
            progress_bar=False,
        )


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.mark.slow  # runs the figure notebook twice
def test_two_runs_write_identical_figure_files(inputs, tmp_path):
    first = _run(inputs, tmp_path / "a", hash_seed="0", backend=None)
    second = _run(inputs, tmp_path / "b", hash_seed="4242", backend="Agg")

    expected = {f"{name}.{fmt}" for name in FIGURES for fmt in ("png", "svg", "pdf")}
    digests_a = _digests(tmp_path / "a" / "figures")
    digests_b = _digests(tmp_path / "b" / "figures")
    assert set(digests_a) == expected
    assert set(digests_b) == expected
    different = sorted(name for name in expected if digests_a[name] != digests_b[name])
    assert not different, f"figure files differ between runs: {different}"

    for executed in (first, second):
        outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.get("name") == "stderr"], "warnings on stderr"
        listing = next(c for c in executed.cells if "for path in written" in c.source)
        printed = "".join(o.get("text", "") for o in listing.outputs).split()
        assert sorted(printed) == sorted(expected)
