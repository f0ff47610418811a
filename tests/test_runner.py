"""make all's runner on a second dataset: a complete run folder, byte-identical on rerun."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers.paths import PROJECT_ROOT
from helpers.runner import compare_runs, numbered_notebooks, run_notebooks, write_run_manifest

SAV = PROJECT_ROOT / "tests" / "data" / "demo_exports" / "demo.sav"
SAV_CONFIG = PROJECT_ROOT / "tests" / "data" / "demo_exports" / "demo.yml"
BAD = PROJECT_ROOT / "tests" / "data" / "bad"


def test_notebooks_are_found_in_numbered_order():
    names = [p.name for p in numbered_notebooks()]
    assert names == sorted(names) and names[0] == "01_clean.ipynb"


@pytest.mark.slow
def test_second_dataset_runs_and_reruns_byte_identically(tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        run_notebooks(SAV, SAV_CONFIG, out, only=["01", "02"])
        write_run_manifest(SAV, SAV_CONFIG, out, seed=2026)
        runs.append(out)
    a = runs[0]
    assert (a / "notebooks" / "01_clean.ipynb").exists()
    assert (a / "processed" / "sessions.parquet").exists()
    assert (a / "results" / "02_iccs.csv").exists()
    assert (a / "figures" / "02_trajectories.png").exists()
    manifest = json.loads((a / "manifest.json").read_text())
    assert [i["path"] for i in manifest["inputs"]] == [
        "tests/data/demo_exports/demo.sav",
        "tests/data/demo_exports/demo.yml",
    ]
    assert len(manifest["outputs"]) >= 10
    assert "processed/sessions.parquet" in {o["path"] for o in manifest["outputs"]}
    assert compare_runs(runs[0], runs[1]) == []
    # and the comparison can fail
    (runs[1] / "results" / "02_iccs.csv").write_text("changed\n")
    assert compare_runs(runs[0], runs[1]) == ["results/02_iccs.csv"]


def test_a_failing_notebook_is_reported_and_not_left_as_up_to_date(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "run-notebooks", "--data", str(BAD / "empty.csv"),
         "--config", str(BAD / "totals.yml"), "--out", str(tmp_path), "--only", "01"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "01_clean.ipynb stopped at cell" in proc.stderr
    assert "empty file" in proc.stderr
    assert not (tmp_path / "notebooks" / "01_clean.ipynb").exists()
    assert (tmp_path / "notebooks" / "01_clean.failed.ipynb").exists()


def test_truth_is_passed_only_for_a_study_that_ships_one(tmp_path):
    from helpers.paths import DEMO_DIR
    from helpers.runner import notebook_parameters

    demo = notebook_parameters(DEMO_DIR / "sessions.csv", DEMO_DIR / "study.yml", tmp_path, 1)
    assert demo["TRUTH_PATH"] == str(DEMO_DIR / "truth.json")
    other = notebook_parameters(SAV, SAV_CONFIG, tmp_path, 1)
    assert other["TRUTH_PATH"] == ""
