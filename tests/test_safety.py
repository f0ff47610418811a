"""Nothing lost: output folders that hold no input, atomic writes, one run per folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _notebooks import one_step_suite, result_cell, wait_cell, write_notebook

from helpers.paths import DEMO_DIR, PROJECT_ROOT
from helpers.pipeline import run_cleaning
from helpers.provenance import sha256_file
from helpers.report import write_report
from helpers.runner import outputs_record, run_notebooks, write_run_manifest
from helpers.safety import (
    LOCK_NAME,
    OutputFolderError,
    atomic_path,
    atomic_write_text,
    check_output_folder,
    is_internal,
    run_lock,
)

GOOD = PROJECT_ROOT / "tests" / "data" / "good"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "helpers", *args], capture_output=True, text=True, check=False
    )


def _listing(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its SHA-256."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def study(tmp_path):
    """A copy of the demo study's data file and config in a folder of its own."""
    folder = tmp_path / "study"
    folder.mkdir()
    for name in ("sessions.csv", "study.yml"):
        shutil.copy(DEMO_DIR / name, folder / name)
    return folder


# ------------------------------------------------------------------ output folders


def test_clean_into_the_input_folder_is_refused_and_nothing_is_written(study):
    before = _listing(study)
    proc = _cli("clean", "--input", str(study / "sessions.csv"), "--config",
                str(study / "study.yml"), "--out", str(study))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "sessions.csv, which this run reads" in proc.stderr
    assert proc.stderr.startswith("error: the output folder cannot be used as it is.")
    assert "Traceback" not in proc.stderr
    assert _listing(study) == before  # raw file byte-identical, no file added


def test_clean_into_an_existing_file_is_a_report_not_a_traceback(study, tmp_path):
    target = tmp_path / "taken.txt"
    target.write_text("mine\n")
    proc = _cli("clean", "--input", str(study / "sessions.csv"), "--config",
                str(study / "study.yml"), "--out", str(target))  # fmt: skip
    assert proc.returncode == 2
    assert "taken.txt is a file, not a folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert target.read_text() == "mine\n"


def test_run_notebooks_into_the_project_folder_is_refused(tmp_path, suite):
    # --out . would overwrite the committed notebooks with executed copies
    project = tmp_path / "project"
    shutil.copytree(suite, project / "notebooks")
    before = _listing(project)
    with pytest.raises(OutputFolderError, match="--out contains notebooks, which this run reads"):
        run_notebooks(tmp_path / "data.csv", tmp_path / "study.yml", project,
                      notebooks_dir=project / "notebooks")  # fmt: skip
    assert _listing(project) == before  # no executed copy, no lock


@pytest.mark.parametrize(
    ("out", "reads", "refused"),
    [
        ("study", ["study/data.csv"], "--out contains data.csv"),
        ("", ["study/data.csv"], "--out contains data.csv"),  # a folder above the data
        ("study", ["study"], "--out is study"),  # a folder the run reads
        ("study/sub", ["study/data.csv"], None),  # a new folder beside the data holds none
        ("other", ["study/data.csv", "study"], None),
        ("note.txt/sub", [], "note.txt is a file, not a folder"),
    ],
)
def test_check_output_folder(tmp_path, out, reads, refused):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "data.csv").write_text("x\n")
    (tmp_path / "note.txt").write_text("x\n")
    reads = [tmp_path / r for r in reads]
    if refused is None:
        check_output_folder(tmp_path / out, reads)
        return
    with pytest.raises(OutputFolderError) as err:
        check_output_folder(tmp_path / out, reads)
    assert refused in str(err.value)


# ------------------------------------------------------------------ atomic writes


def test_an_interrupted_write_leaves_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_partial_and_lock_files_are_internal_names(tmp_path):
    with atomic_path(tmp_path / "a.png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and is_internal(tmp)
        tmp.write_bytes(b"x")
    assert is_internal(tmp_path / LOCK_NAME)
    assert not is_internal(tmp_path / "a.png") and not is_internal(tmp_path / ".gitkeep")


# ------------------------------------------------------------------ the run lock


def test_a_second_clean_into_a_locked_folder_is_refused_with_the_holder_named(tmp_path):
    out = tmp_path / "out"
    with run_lock(out, "test holder") as lock:
        holder = json.loads(lock.read_text())
        assert holder == {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": "test holder",
        }
        proc = _cli("clean", "--input", str(GOOD / "long.csv"), "--config",
                    str(GOOD / "long.yml"), "--out", str(out))  # fmt: skip
    assert proc.returncode == 2
    assert f"process {os.getpid()} on {socket.gethostname()} running: test holder" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == []  # nothing written, lock released


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_stale_lock_is_taken_over_and_a_foreign_one_is_not(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    lock = out / LOCK_NAME
    pid = _dead_pid()
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "command": "old"}))
    run_cleaning(GOOD / "long.csv", GOOD / "long.yml", out)
    assert f"taking over the lock of process {pid} (old)" in capsys.readouterr().err
    assert not lock.exists() and (out / "manifest.json").exists()
    lock.write_text(json.dumps({"pid": pid, "host": "elsewhere", "command": "old"}))
    with pytest.raises(OutputFolderError, match=f"process {pid} on elsewhere running: old"):
        run_cleaning(GOOD / "long.csv", GOOD / "long.yml", out)
    assert lock.exists()  # another host's lock is never removed


def test_clean_removes_its_previous_runs_files_only(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "session_dates.csv").write_text("from another study\n")
    (out / "notes.txt").write_text("the user's\n")
    (out / "manifest.json").write_text(json.dumps({"outputs": [{"path": "session_dates.csv"}]}))
    result = run_cleaning(GOOD / "long.csv", GOOD / "long.yml", out)
    assert "session_dates.csv" not in result.outputs
    assert not (out / "session_dates.csv").exists()
    assert (out / "notes.txt").read_text() == "the user's\n"
    listed = {o["path"] for o in json.loads((out / "manifest.json").read_text())["outputs"]}
    assert listed == {name for name in result.outputs if name != "manifest.json"}


# ------------------------------------------------------------------ notebook runs


@pytest.fixture
def suite(tmp_path):
    """One notebook that writes ``results/a.csv``, and the two inputs of a study."""
    return one_step_suite(tmp_path)


def _start_runner(suite: Path, tmp_path: Path, out: Path) -> subprocess.Popen:
    data, config = str(tmp_path / "data.csv"), str(tmp_path / "study.yml")
    code = (
        "from pathlib import Path\nfrom helpers.runner import run_notebooks\n"
        f"run_notebooks(Path({data!r}), Path({config!r}), Path({str(out)!r}),"
        f" notebooks_dir=Path({str(suite)!r}))"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait_for(path: Path, runner: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert runner.poll() is None, runner.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def test_two_concurrent_runs_into_one_folder_the_second_is_refused(suite, tmp_path):
    write_notebook(suite / "01_first.ipynb", wait_cell(tmp_path, "kernel.pid", "release"))
    out = tmp_path / "run"
    first = _start_runner(suite, tmp_path, out)
    try:
        _wait_for(tmp_path / "kernel.pid", first)
        with pytest.raises(OutputFolderError) as err:
            run_notebooks(tmp_path / "data.csv", tmp_path / "study.yml", out,
                          notebooks_dir=suite)  # fmt: skip
        assert f"process {first.pid} on {socket.gethostname()} running: run-notebooks" in str(
            err.value
        )
    finally:
        (tmp_path / "release").write_text("")
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert (out / "notebooks" / "01_first.ipynb").exists()
    assert not (out / LOCK_NAME).exists()


def test_a_killed_step_leaves_no_target_and_the_rerun_completes(suite, tmp_path):
    write_notebook(suite / "01_first.ipynb", wait_cell(tmp_path, "kernel.pid", "release"))
    out = tmp_path / "run"
    runner = _start_runner(suite, tmp_path, out)
    try:
        _wait_for(tmp_path / "kernel.pid", runner)
        time.sleep(1)  # papermill has written the partial notebook by now
        runner.send_signal(signal.SIGKILL)  # no cleanup code runs at all
        runner.communicate(timeout=60)
    finally:
        (tmp_path / "release").write_text("")
        os.kill(int((tmp_path / "kernel.pid").read_text()), signal.SIGKILL)
    target = out / "notebooks" / "01_first.ipynb"
    assert not target.exists()
    assert not (out / "notebooks" / "01_first.failed.ipynb").exists()
    assert (out / LOCK_NAME).exists()  # left by the killed run
    write_notebook(suite / "01_first.ipynb", "print('done')")
    run_notebooks(tmp_path / "data.csv", tmp_path / "study.yml", out, notebooks_dir=suite)
    assert target.exists()
    assert sorted(p.name for p in out.iterdir()) == ["notebooks"]  # stale lock taken over, gone
    assert sorted(p.name for p in (out / "notebooks").iterdir()) == [
        "01_first.ipynb",
        "01_first.outputs.json",
    ]  # and the killed run's partial notebook removed


def test_a_terminated_step_cleans_up_its_partial_notebook_and_lock(suite, tmp_path):
    write_notebook(suite / "01_first.ipynb", wait_cell(tmp_path, "kernel.pid", "release"))
    out = tmp_path / "run"
    runner = _start_runner(suite, tmp_path, out)
    try:
        _wait_for(tmp_path / "kernel.pid", runner)
        time.sleep(1)
        runner.send_signal(signal.SIGTERM)  # as make or CI stop a job
        runner.communicate(timeout=60)
    finally:
        (tmp_path / "release").write_text("")
    assert runner.returncode == 128 + signal.SIGTERM
    assert sorted(p.name for p in out.iterdir()) == ["notebooks"]
    assert sorted(p.name for p in (out / "notebooks").iterdir()) == ["01_first.outputs.json"]


def test_the_manifest_lists_only_files_this_run_wrote(suite, tmp_path):
    out = tmp_path / "run"
    (out / "results").mkdir(parents=True)
    (out / "results" / "stale.csv").write_text("an earlier run's\n")
    data, config = tmp_path / "data.csv", tmp_path / "study.yml"

    def listed() -> list[str]:
        path = write_run_manifest(data, config, out, 0, notebooks_dir=suite)
        return [o["path"] for o in json.loads(path.read_text())["outputs"]]

    run_notebooks(data, config, out, notebooks_dir=suite)
    assert json.loads(outputs_record(out / "notebooks" / "01_first.ipynb").read_text()) == [
        "results/a.csv"
    ]
    assert listed() == ["results/a.csv"]
    assert (out / "results" / "stale.csv").exists()  # not this run's: left alone, not listed

    # the notebook now writes b.csv: its previous output a.csv is removed before it runs
    write_notebook(suite / "01_first.ipynb", result_cell("b.csv"))
    run_notebooks(data, config, out, notebooks_dir=suite)
    assert listed() == ["results/b.csv"]
    assert sorted(p.name for p in (out / "results").iterdir()) == ["b.csv", "stale.csv"]


def test_the_report_shows_only_figures_the_manifest_lists(tmp_path):
    (tmp_path / "figures").mkdir()
    for name in ("02_new.png", "02_stale.png"):
        (tmp_path / "figures" / name).write_bytes(b"png")
    manifest = {"executed_notebooks": [], "outputs": [{"path": "figures/02_new.png"}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    text = write_report(tmp_path).read_text()
    assert "../figures/02_new.png" in text
    assert "02_stale" not in text
    assert not (tmp_path / LOCK_NAME).exists()


# ------------------------------------------------------------------ data generators


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A stand-in project: notebooks/, src/ and data/raw/demo/ with files in each."""
    from helpers import paths

    root = tmp_path / "project"
    for folder, name in (("notebooks", "01_clean.ipynb"), ("src", "x.py"),
                         ("data/raw/demo", "sessions.csv")):  # fmt: skip
        (root / folder).mkdir(parents=True)
        (root / folder / name).write_text("mine\n")
    monkeypatch.setattr(paths, "PROJECT_ROOT", root)
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", root / "notebooks")
    monkeypatch.setattr(paths, "DEMO_DIR", root / "data" / "raw" / "demo")
    return root


@pytest.mark.parametrize(
    ("command", "out", "found"),
    [
        ("simulate", ".", "--out contains notebooks, a folder of the project"),
        ("simulate", "notebooks", "--out is notebooks, a folder of the project"),
        ("simulate", "data/raw", "--out contains data/raw/demo, a folder of the project"),
        ("scenarios", ".", "--out contains notebooks, a folder of the project"),
        ("scenarios", "data/raw/demo", "--out is data/raw/demo, a folder of the project"),
        ("scenarios", "data", "--out contains data/raw/demo, a folder of the project"),
        ("scenarios", "src", "--out is src, a folder of the project"),
    ],
)
def test_generators_refuse_a_folder_holding_the_projects_files(project, capsys, command, out,
                                                               found):  # fmt: skip
    from helpers.cli import main

    before = _listing(project)
    assert main([command, "--out", str(project / out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the output folder cannot be used as it is.")
    assert found in err and "Traceback" not in err
    assert _listing(project) == before  # nothing written, no lock left


def test_simulate_writes_its_own_demo_folder_under_the_lock(project, capsys, monkeypatch):
    from helpers import simulate
    from helpers.cli import main

    demo = project / "data" / "raw" / "demo"
    seen = []

    def fake_write(out, seed):  # records the lock a real run would hold while writing
        seen.append(json.loads((Path(out) / LOCK_NAME).read_text())["command"])

    monkeypatch.setattr(simulate, "write_demo_study", fake_write)
    assert main(["simulate", "--out", str(demo)]) == 0
    assert seen == ["simulate --seed 2026"]
    assert not (demo / LOCK_NAME).exists()


def test_generators_into_a_locked_folder_are_refused(tmp_path, capsys):
    from helpers.cli import main

    out = tmp_path / "scen"
    with run_lock(out, "another run"):
        assert main(["scenarios", "--out", str(out), "--only", "tiny"]) == 2
        assert main(["simulate", "--out", str(out)]) == 2
    assert "running: another run" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == []


def _race_for_the_lock(out: str, start, done, wins) -> None:
    """In a child process: try to take the folder's lock at the barrier; hold it until done."""
    from helpers.safety import _acquire

    start.wait()
    try:
        _acquire(Path(out), f"racer {os.getpid()}")
    except OutputFolderError:
        won = False
    else:
        won = True
    wins.put((os.getpid(), won))
    done.wait()


def test_a_stale_lock_taken_over_by_racing_runs_has_exactly_one_winner(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    racers, rounds = 6, 15
    for round_ in range(rounds):
        out = tmp_path / f"out{round_}"
        out.mkdir()
        stale = {"pid": _dead_pid(), "host": socket.gethostname(), "command": "old"}
        (out / LOCK_NAME).write_text(json.dumps(stale))
        start, done = context.Barrier(racers), context.Barrier(racers)
        wins = context.Queue()
        children = [
            context.Process(target=_race_for_the_lock, args=(str(out), start, done, wins))
            for _ in range(racers)
        ]
        for child in children:
            child.start()
        results = [wins.get(timeout=30) for _ in children]
        for child in children:
            child.join(timeout=30)
        winners = [pid for pid, won in results if won]
        assert len(winners) == 1, f"round {round_}: {len(winners)} runs took the lock over"
        holder = json.loads((out / LOCK_NAME).read_text())
        assert holder["pid"] == winners[0]
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # no claim file left
