"""make all's schedule: which steps are out of date, and steps run side by side."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _notebooks import one_step_suite, result_cell, wait_cell, write_notebook

from helpers.errors import NotebookFailedError
from helpers.paths import NOTEBOOKS_DIR
from helpers.runner import outputs_record, run_notebooks, write_run_manifest
from helpers.safety import LOCK_NAME
from helpers.schedule import (
    Step,
    _next_ready,
    declared_reads,
    owned_by,
    stale_steps,
    step_graph,
)

NAMES = ["01_clean", "02_explore", "03_models", "06_figures", "07_power"]


#: The graph of NAMES as the suite's notebooks declare it: the figures read 02, 03 and 07.
READS = {
    "02_explore": ["01"],
    "03_models": ["01"],
    "06_figures": ["02", "03", "07"],
    "07_power": [],
}
GRAPH = step_graph(NAMES, READS)


def test_step_graph_cleaning_first_then_what_each_step_declares():
    assert GRAPH["01_clean"] == ()
    assert GRAPH["02_explore"] == GRAPH["03_models"] == GRAPH["07_power"] == ("01_clean",)
    assert GRAPH["06_figures"] == ("01_clean", "02_explore", "03_models", "07_power")
    assert step_graph([]) == {}


def test_a_step_that_declares_nothing_waits_for_every_step_before_it():
    graph = step_graph(NAMES, {"02_explore": ["01"]})
    assert graph["02_explore"] == ("01_clean",)
    assert graph["06_figures"] == ("01_clean", "02_explore", "03_models")
    assert graph["07_power"] == ("01_clean", "02_explore", "03_models", "06_figures")
    # a declared number no notebook has is ignored; a step never waits for itself
    assert step_graph(NAMES, {"03_models": ["09", "03"]})["03_models"] == ("01_clean",)


def test_declared_reads_come_from_the_notebook_metadata(tmp_path):
    notebook = tmp_path / "06_x.ipynb"
    notebook.write_text(json.dumps({"metadata": {"helpers": {"reads": ["03", 4]}}}))
    assert declared_reads(notebook) == ["03", "4"]
    notebook.write_text(json.dumps({"metadata": {}}))
    assert declared_reads(notebook) is None
    notebook.write_text("not json")
    assert declared_reads(notebook) is None
    assert declared_reads(tmp_path / "missing.ipynb") is None


def test_the_step_others_wait_for_starts_first():
    steps = [Step(n, Path(n), Path(n), {}) for n in NAMES[1:]]
    # 02 is first in numbered order, but 06 waits for 03 (and 02, 07): all three tie
    graph = step_graph(NAMES, {**READS, "06_figures": ["03"]})
    assert _next_ready(steps, graph, {"01_clean"}, set(NAMES)).name == "03_models"
    assert _next_ready(steps, GRAPH, {"01_clean"}, set(NAMES)).name == "02_explore"
    assert _next_ready(steps, GRAPH, set(), set(NAMES)) is None  # all wait for the cleaning


def test_each_notebook_declares_the_steps_whose_results_it_opens():
    """Its declared reads are the numbers of the result files it names, and 01 when it
    reads the cleaned data: a missing number would let it run before its input is written."""
    notebooks = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    for notebook in notebooks[1:]:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        opened = {m[:2] for m in re.findall(r"[\"'](\d\d_\w+\.(?:csv|json|parquet))[\"']", code)}
        opened |= {"01"} if "PROCESSED_DIR" in code else set()
        expected = sorted(opened - {notebook.name[:2]})
        assert sorted(declared_reads(notebook) or []) == expected, notebook.name


def test_owned_by_gives_numbered_files_to_their_step_only():
    changed = ["results/02_a.csv", "results/03_b.csv", "figures/03_c.png", "results/shared.csv"]
    assert owned_by("03_models", changed, NAMES) == [
        "figures/03_c.png",
        "results/03_b.csv",
        "results/shared.csv",
    ]
    assert owned_by("02_explore", changed, NAMES) == ["results/02_a.csv", "results/shared.csv"]
    # a number no step has is an ordinary name
    assert owned_by("02_explore", ["results/09_x.csv"], NAMES) == ["results/09_x.csv"]


@pytest.fixture
def built(tmp_path):
    """Executed copies of NAMES (parameters {"SEED": 1}) newer than their sources and inputs."""
    sources, targets = {}, {}
    for i, name in enumerate(NAMES):
        sources[name] = tmp_path / f"{name}.src"
        sources[name].write_text("source")
        targets[name] = tmp_path / f"{name}.ipynb"
        stored = {"metadata": {"papermill": {"parameters": {"SEED": 1}}}}
        targets[name].write_text(json.dumps(stored))
        os.utime(sources[name], ns=(1_000, 1_000))
        done = 10_100 if name == "06_figures" else 10_000 + i  # the figures step ran last
        os.utime(targets[name], ns=(done, done))
    data = tmp_path / "data.csv"
    data.write_text("x")
    os.utime(data, ns=(2_000, 2_000))
    params = {name: {"SEED": 1} for name in NAMES}
    return targets, sources, [data], params


def test_nothing_is_stale_after_a_complete_run(built):
    assert stale_steps(*built, GRAPH) == []


def test_a_changed_notebook_reruns_it_and_the_figures(built):
    targets, sources, inputs, params = built
    os.utime(sources["03_models"], ns=(20_000, 20_000))
    assert stale_steps(targets, sources, inputs, params, GRAPH) == ["03_models", "06_figures"]


def test_changed_data_or_cleaning_reruns_everything(built):
    targets, sources, inputs, params = built
    os.utime(inputs[0], ns=(20_000, 20_000))
    assert stale_steps(targets, sources, inputs, params, GRAPH) == NAMES
    os.utime(inputs[0], ns=(2_000, 2_000))
    os.utime(targets["01_clean"], ns=(20_000, 20_000))  # re-run by hand: later steps are older
    assert stale_steps(targets, sources, inputs, params, GRAPH) == NAMES[1:]


def test_a_missing_copy_or_new_parameters_rerun_the_step(built):
    targets, sources, inputs, params = built
    targets["07_power"].unlink()
    assert stale_steps(targets, sources, inputs, params, GRAPH) == ["06_figures", "07_power"]
    targets["07_power"].write_text("not json")  # unreadable parameters: re-run
    os.utime(targets["07_power"], ns=(10_003, 10_003))
    assert stale_steps(targets, sources, inputs, params, GRAPH) == ["06_figures", "07_power"]
    params = {**params, "02_explore": {"SEED": 2}}
    assert stale_steps(targets, sources, inputs, params, GRAPH)[:1] == ["02_explore"]


# ---------------------------------------------------------------------------
# Running steps side by side (tiny notebooks)
# ---------------------------------------------------------------------------


@pytest.fixture
def suite(tmp_path):
    """01 writes a.csv; 02 and 03 (reading 01) run only if side by side; 06, which declares
    nothing, waits for all and reads what both wrote."""
    folder = one_step_suite(tmp_path)
    check_a = "assert pathlib.Path(RESULTS_DIR, 'a.csv').exists()"
    meet_03, meet_02 = wait_cell(tmp_path, "02", "03"), wait_cell(tmp_path, "03", "02")
    first = ["01"]
    write_notebook(
        folder / "02_second.ipynb", meet_03, check_a, result_cell("02_x.csv"), reads=first
    )
    write_notebook(
        folder / "03_third.ipynb",
        meet_02,
        result_cell("03_y.csv"),
        result_cell("shared.csv"),
        reads=first,
    )
    read_all = (
        "for n in ('a.csv', '02_x.csv', '03_y.csv'):\n"
        "    assert pathlib.Path(RESULTS_DIR, n).exists()"
    )
    write_notebook(folder / "06_figures.ipynb", "import pathlib", read_all, result_cell("06_z.csv"))
    return folder


def _record(out: Path, name: str) -> list[str]:
    return json.loads(outputs_record(out / "notebooks" / f"{name}.ipynb").read_text())


def test_two_jobs_run_independent_steps_side_by_side_in_graph_order(suite, tmp_path, capfd):
    data, config, out = tmp_path / "data.csv", tmp_path / "study.yml", tmp_path / "run"
    ran = run_notebooks(data, config, out, notebooks_dir=suite, jobs=2)
    assert [p.name for p in ran] == [
        "01_first.ipynb", "02_second.ipynb", "03_third.ipynb", "06_figures.ipynb",
    ]  # fmt: skip
    assert _record(out, "01_first") == ["results/a.csv"]
    assert "results/02_x.csv" in _record(out, "02_second")
    assert not {"results/03_y.csv", "results/a.csv"} & set(_record(out, "02_second"))
    assert {"results/03_y.csv", "results/shared.csv"} <= set(_record(out, "03_third"))
    assert "results/02_x.csv" not in _record(out, "03_third")
    assert _record(out, "06_figures") == ["results/06_z.csv"]
    manifest = json.loads(write_run_manifest(data, config, out, 0, notebooks_dir=suite).read_text())
    assert [o["path"] for o in manifest["outputs"]] == [
        "results/02_x.csv", "results/03_y.csv", "results/06_z.csv", "results/a.csv",
        "results/shared.csv",
    ]  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "notebooks", "results"]
    lines = capfd.readouterr().out.splitlines()
    assert sorted(line.split()[1] for line in lines) == [
        "01_first", "02_second", "03_third", "06_figures",
    ]  # fmt: skip
    assert lines[0].startswith("[1/4] 01_first") and lines[-1].startswith("[4/4] 06_figures")


@pytest.mark.slow  # runs the tiny suite four times
def test_stale_only_reruns_what_changed(suite, tmp_path):
    data, config, out = tmp_path / "data.csv", tmp_path / "study.yml", tmp_path / "run"
    names = lambda ran: [p.stem for p in ran]  # noqa: E731
    for marker in ("02", "03"):  # the steps meet only when run side by side
        (tmp_path / marker).write_text("")
    assert len(run_notebooks(data, config, out, notebooks_dir=suite, stale_only=True)) == 4
    assert run_notebooks(data, config, out, notebooks_dir=suite, stale_only=True) == []
    future = time.time() + 60
    os.utime(suite / "03_third.ipynb", (future, future))
    ran = run_notebooks(data, config, out, notebooks_dir=suite, stale_only=True, jobs=2)
    assert names(ran) == ["03_third", "06_figures"]
    ran = run_notebooks(data, config, out, notebooks_dir=suite, stale_only=True, seed=5)
    assert names(ran) == ["01_first", "02_second", "03_third", "06_figures"]


def test_a_failed_step_lets_running_steps_finish_and_starts_no_more(suite, tmp_path):
    failing = wait_cell(tmp_path, "02", "03"), "raise ValueError('boom')"
    write_notebook(suite / "02_second.ipynb", *failing, reads=["01"])
    data, config, out = tmp_path / "data.csv", tmp_path / "study.yml", tmp_path / "run"
    with pytest.raises(NotebookFailedError, match=r"02_second\.ipynb stopped at cell \[\d+\]"):
        run_notebooks(data, config, out, notebooks_dir=suite, jobs=2)
    notebooks = out / "notebooks"
    assert (notebooks / "02_second.failed.ipynb").exists()
    assert not (notebooks / "02_second.ipynb").exists()
    assert (notebooks / "03_third.ipynb").exists()  # was running: finished
    assert not (notebooks / "06_figures.ipynb").exists()  # needs 02: never started
    assert not (out / LOCK_NAME).exists()


def _default_sigint() -> None:
    """In the child: Ctrl-C as at a terminal (a background job may have inherited it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setpgrp()


@pytest.mark.slow  # waits for kernels to start and stop
@pytest.mark.parametrize("stop", ["sigterm-to-runner", "ctrl-c-to-all"])
def test_a_terminated_parallel_run_stops_its_steps_and_leaves_no_partial_files(
    suite, tmp_path, stop
):
    wait = (
        "import os, pathlib, time\n"
        f"folder = pathlib.Path({str(tmp_path)!r})\n"
        "(folder / f'kernel-{os.getpid()}').write_text('')\n"
        "time.sleep(120)"
    )
    write_notebook(suite / "02_second.ipynb", wait, reads=["01"])
    write_notebook(suite / "03_third.ipynb", wait, reads=["01"])
    out = tmp_path / "run"
    data, config = str(tmp_path / "data.csv"), str(tmp_path / "study.yml")
    code = (
        "from pathlib import Path\nfrom helpers.runner import run_notebooks\n"
        f"run_notebooks(Path({data!r}), Path({config!r}), Path({str(out)!r}),"
        f" notebooks_dir=Path({str(suite)!r}), jobs=2)"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint
    )
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("kernel-*"))) < 2:
        assert runner.poll() is None, runner.communicate()
        assert time.monotonic() < deadline, "the two steps did not start"
        time.sleep(0.2)
    time.sleep(1)  # papermill has written the partial notebooks by now
    if stop == "sigterm-to-runner":
        runner.send_signal(signal.SIGTERM)
    else:  # the terminal's Ctrl-C reaches the runner and its steps; the runner SIGTERMs them too
        os.killpg(runner.pid, signal.SIGINT)
    _, err = runner.communicate(timeout=90)
    expected = [128 + signal.SIGTERM] if stop == "sigterm-to-runner" else [-signal.SIGINT, 130]
    assert runner.returncode in expected  # KeyboardInterrupt ends Python with SIGINT
    # each step stops once: no second interruption of its clean-up, no stray asyncio report
    assert "ignored due to race condition" not in err and "never retrieved" not in err, err
    kernels = [int(p.name.split("-")[1]) for p in tmp_path.glob("kernel-*")]
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in kernels) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in kernels), "a kernel outlived the stopped run"
    left = sorted(p.name for p in (out / "notebooks").iterdir())
    assert left == ["01_first.ipynb", "01_first.outputs.json", "02_second.outputs.json",
                    "03_third.outputs.json"]  # fmt: skip
    assert not (out / LOCK_NAME).exists()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def test_a_step_process_reports_an_error_outside_any_cell_without_a_traceback(tmp_path):
    from helpers.schedule import _step_main

    spec, result = tmp_path / "spec.json", tmp_path / "result.json"
    spec.write_text(json.dumps({"notebook": str(tmp_path / "missing.ipynb"),
                                "target": str(tmp_path / "out.ipynb"),
                                "parameters": {}, "result": str(result)}))  # fmt: skip
    assert _step_main(str(spec)) == 1
    report = json.loads(result.read_text())
    assert report["failed"] and report["partial"] == ""
    assert report["ename"] == "FileNotFoundError" and "missing.ipynb" in report["evalue"]
