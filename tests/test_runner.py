"""make all's runner on a second dataset: a complete run folder, byte-identical on rerun."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from _notebooks import write_notebook

from helpers.paths import PROJECT_ROOT
from helpers.runner import (
    NotebookFailedError,
    compare_runs,
    failed_copy,
    numbered_notebooks,
    run_notebooks,
    step_line,
    write_run_manifest,
)

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
    assert "TCP" not in proc.stdout + proc.stderr  # no kernel transport warning


def test_truth_is_passed_only_for_a_study_that_ships_one(tmp_path):
    from helpers.paths import DEMO_DIR
    from helpers.runner import notebook_parameters

    demo = notebook_parameters(DEMO_DIR / "sessions.csv", DEMO_DIR / "study.yml", tmp_path, 1)
    assert demo["TRUTH_PATH"] == str(DEMO_DIR / "truth.json")
    other = notebook_parameters(SAV, SAV_CONFIG, tmp_path, 1)
    assert other["TRUTH_PATH"] == ""


def test_step_line_shows_position_name_and_time():
    assert (
        step_line(3, 6, "03_alliance_outcome_models", 12.43, width=26)
        == "[3/6] 03_alliance_outcome_models  12.4 s"
    )
    assert step_line(1, 6, "01_clean", 3.21, width=12) == "[1/6] 01_clean       3.2 s"


def test_failed_copies_are_named_beside_the_target_and_are_not_notebooks(tmp_path):
    assert failed_copy(tmp_path / "02_explore.ipynb") == tmp_path / "02_explore.failed.ipynb"
    for name in ("01_a.ipynb", "01_a.failed.ipynb", "02_b.ipynb", "notes.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in numbered_notebooks(tmp_path)] == ["01_a.ipynb", "02_b.ipynb"]


def _write_notebook(path, *sources):
    write_notebook(path, *sources, parameters="SEED = 0")


@pytest.fixture
def fake_suite(tmp_path):
    """Three tiny numbered notebooks (the second fails) and a study's two input files."""
    suite = tmp_path / "suite"
    suite.mkdir()
    progress = (
        "import sys\nfrom tqdm import tqdm\nfor _ in tqdm(range(3)):\n    pass\n"
        "for _ in tqdm(range(3), disable=False, file=sys.stdout):\n    pass"
    )
    environment = "import os\nos.environ['TQDM_DISABLE']"
    _write_notebook(suite / "01_first.ipynb", progress, environment)
    _write_notebook(suite / "02_second.ipynb", "raise ValueError('boom')")
    _write_notebook(suite / "03_third.ipynb", "print('three')")
    for name in ("data.csv", "study.yml"):
        (tmp_path / name).write_text("x\n")
    return suite


def test_a_fixed_notebook_removes_its_failed_copy_and_the_terminal_shows_only_steps(
    fake_suite, tmp_path, capfd, monkeypatch
):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    data, config, out = tmp_path / "data.csv", tmp_path / "study.yml", tmp_path / "run"
    with pytest.raises(NotebookFailedError, match=r"02_second\.ipynb stopped at cell"):
        run_notebooks(data, config, out, notebooks_dir=fake_suite)
    assert (out / "notebooks" / "02_second.failed.ipynb").exists()

    # the notebook is fixed and re-run on its own, as make does
    _write_notebook(fake_suite / "02_second.ipynb", "print('fixed')")
    run_notebooks(data, config, out, only=["02_second"], notebooks_dir=fake_suite)
    assert (out / "notebooks" / "02_second.ipynb").exists()
    assert not (out / "notebooks" / "02_second.failed.ipynb").exists()

    captured = capfd.readouterr()
    assert "TCP" not in captured.out + captured.err
    # jupyter_client sends SIGINT before every kernel shutdown; ipykernel sometimes logs it
    # (a known, intermittent line, also before the runner existed); nothing else may appear
    shutdown_noise = "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel."
    assert [line for line in captured.err.splitlines() if line != shutdown_noise] == []
    step = r"\[(\d)/3\] (0\d_\w+) +\d+\.\d s"
    lines = captured.out.splitlines()
    assert all(re.fullmatch(step, line) for line in lines), lines
    assert [re.fullmatch(step, line).groups() for line in lines] == [
        ("1", "01_first"),
        ("2", "02_second"),  # its position in the suite, though run alone
    ]
    assert "TQDM_DISABLE" not in os.environ  # set for the kernel only


def test_executed_notebooks_store_no_progress_bars(fake_suite, tmp_path, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    out = tmp_path / "run"
    run_notebooks(tmp_path / "data.csv", tmp_path / "study.yml", out, only=["01"],
                  notebooks_dir=fake_suite)  # fmt: skip
    executed = nbformat.read(out / "notebooks" / "01_first.ipynb", as_version=4)
    progress_cell, env_cell = executed.cells[-2], executed.cells[-1]
    assert progress_cell.outputs == []
    assert env_cell.outputs[0]["data"]["text/plain"] == "'1'"
    assert "TQDM_DISABLE" not in os.environ  # set for the kernel only


def test_the_manifest_lists_only_the_runs_executed_notebooks(fake_suite, tmp_path):
    out = tmp_path / "run"
    (out / "notebooks").mkdir(parents=True)
    for name in ("01_first.ipynb", "02_second.failed.ipynb", "03_third.ipynb", "09_gone.ipynb"):
        (out / "notebooks" / name).write_text("{}")
    path = write_run_manifest(
        tmp_path / "data.csv", tmp_path / "study.yml", out, 0, notebooks_dir=fake_suite
    )
    listed = json.loads(path.read_text())["executed_notebooks"]
    assert listed == ["01_first.ipynb", "03_third.ipynb"]


def test_parse_settings_reads_literals_and_refuses_lower_case_names():
    from helpers.runner import parse_settings

    assert parse_settings(["N_BOOTSTRAP=20", "RUPTURE_K=2.5", "ALLIANCE_COLUMN=alliance"]) == {
        "N_BOOTSTRAP": 20,
        "RUPTURE_K": 2.5,
        "ALLIANCE_COLUMN": "alliance",
    }
    assert parse_settings(None) == {}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_settings(["n_bootstrap=20"])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_settings(["N_BOOTSTRAP"])


def test_extra_parameters_reach_the_notebook_parameters_and_the_manifest_keys():
    from helpers.runner import notebook_parameters

    params = notebook_parameters(
        Path("/d/s.csv"), Path("/d/s.yml"), Path("/o"), 7, {"N_BOOTSTRAP": 20}
    )
    assert params["N_BOOTSTRAP"] == 20 and params["SEED"] == 7


def _fake_run(out: Path, files: dict[str, str], listed: list[str]) -> Path:
    """A run folder holding ``files`` whose manifest lists ``listed``."""
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    outputs = [{"path": name, "bytes": 0, "sha256": "-"} for name in listed]
    (out / "manifest.json").write_text(json.dumps({"outputs": outputs}))
    return out


def test_compare_runs_compares_only_the_files_each_manifest_lists(tmp_path):
    files_a = {"results/same.csv": "1\n", "results/diff.csv": "1\n", "results/extra.csv": "x\n"}
    files_b = {"results/same.csv": "1\n", "results/diff.csv": "2\n", "figures/gone.png": ""}
    a = _fake_run(tmp_path / "a", files_a | {"results/stale.csv": "old\n"}, list(files_a))
    b = _fake_run(
        tmp_path / "b", files_b | {"results/stale.csv": "older\n"}, [*files_b, "figures/no.png"]
    )
    assert compare_runs(a, b) == [
        f"results/extra.csv (listed only in the manifest of {a})",
        f"figures/gone.png (listed only in the manifest of {b})",
        f"figures/no.png (listed only in the manifest of {b})",
        "results/diff.csv",
    ]  # results/stale.csv differs too, but neither manifest lists it


def test_compare_runs_of_identical_listed_files_with_stale_leftovers_is_empty(tmp_path):
    a = _fake_run(tmp_path / "a", {"results/r.csv": "1\n"}, ["results/r.csv"])
    b = _fake_run(tmp_path / "b", {"results/r.csv": "1\n", "figures/old.png": "x"},
                  ["results/r.csv"])  # fmt: skip
    assert compare_runs(a, b) == []
    (a / "results" / "r.csv").unlink()  # listed, but no longer there
    assert compare_runs(a, b) == [f"results/r.csv (listed in the manifest but missing from {a})"]


def test_compare_runs_without_a_manifest_is_a_report(tmp_path):
    a = _fake_run(tmp_path / "a", {"results/r.csv": "1\n"}, ["results/r.csv"])
    (tmp_path / "b").mkdir()
    command = [sys.executable, "-m", "helpers", "compare-runs", str(a), str(tmp_path / "b")]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "is not a finished run" in proc.stderr and "Traceback" not in proc.stderr
    assert "manifest.json lists the files it wrote" in proc.stderr
