"""The whole suite (``make all``) on every study shape of :mod:`helpers.scenarios`.

This is the proof that the notebooks adapt to what a study has: each shape — one
rater only, no therapist ids, other instruments, mean-scored totals, dates instead
of session numbers, a wide SPSS file, decimal commas, a tiny study, reversed
effects, … — is written as a clinic would export it, with its config, and run
end to end exactly as a user would (``make all DATA=… CONFIG=… OUT=…``).  The
checks: every notebook executed (no ``*.failed.ipynb``), the report was built,
sections a shape cannot support say why and name the config key, and on the
reversed study the rendered sentences state the reversed directions.

Two shapes run at a time (the machine's two cores), with a 20-replicate bootstrap
in notebook 03 (``PARAMS=N_BOOTSTRAP=20``: the interval's precision is not what is
tested here); the runs are shared by the tests through a session fixture, so a
failure names the shape.

One more run in the same pool is the acceptance test of atomic steps: ``make
all`` on the ``tiny`` shape into a second folder, interrupted as a user's
Ctrl-C does (SIGINT to make's whole process group) while notebook 03 runs,
then run again; it must leave nothing under notebook 03's name, complete, and
give results byte-identical to the uninterrupted run of ``tiny``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import scenarios
from helpers.paths import PROJECT_ROOT
from helpers.safety import LOCK_NAME, PARTIAL_MARK

pytestmark = pytest.mark.scenarios

NAMES = list(scenarios.SCENARIOS)
#: Notebooks that read no study data (the power study starts from the literature's
#: defaults): their output is the same on every shape, so they run once, on the demo
#: (nbval and ``make all``), not once per shape (``test_study_independent_notebooks_…``
#: checks that they still read nothing of the study).
STUDY_INDEPENDENT = ("07_power",)
NOTEBOOKS = sorted(
    p.stem
    for p in (PROJECT_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
    if p.stem not in STUDY_INDEPENDENT
)

#: Sentences a shape must show because it lacks something (notebook prefix, text).
EXPECTED_SKIPS: dict[str, list[tuple[str, str]]] = {
    "client_only": [("05", "alliance ratings from only one rater")],
    "therapist_only": [("05", "alliance ratings from only one rater")],
    "two_level": [
        ("02", "Therapists are not identified"),
        ("03", "this study has no therapist ids"),
        ("03", "set `columns.therapist_id`"),
        ("04", "*Skipped — Ruptures per therapist:*"),
        ("06", "*Skipped — Figure 3 (therapist effects):*"),
        ("08", "*Skipped — Choosing a therapist:*"),
    ],
    "tiny": [("05", "no modality column"), ("05", "set `columns.modality`")],
    "max_8_sessions": [
        ("03", "no intake (pre-treatment) outcome score"),
        ("05", "*Skipped — The benchmark:*"),
    ],
}

#: Sentences the reversed study must state (its effects have the opposite signs).
REVERSED_TEXT: list[tuple[str, str]] = [
    ("03", "usual level is followed by a PHQ-9 higher by"),
    ("03", "whose mean alliance is one point higher has a PHQ-9 higher by"),
    ("05", "therapists rate the alliance higher than clients on average"),
    ("05", "an average patient in psychodynamic has a PHQ-9 lower by"),
]


#: The shape run a second time, interrupted in notebook 03 and run again.
INTERRUPTED = "tiny"
#: Prefix of the notebook the interrupted run is stopped in.
STOPPED_IN = "03"


def _make_all(name: str, root: Path, out: Path) -> list[str]:
    """The ``make all`` command line for shape ``name`` into ``out``."""
    scenario = scenarios.get_scenario(name)
    folder = root / "data" / name
    # -o: never rebuild the virtualenv from here (two runs at once would both try)
    return [
        "make", "--no-print-directory", "-o", ".venv/bin/activate", "all", "PARAMS=N_BOOTSTRAP=20",
        f"DATA={folder / scenario.data_file}", f"CONFIG={folder / 'study.yml'}", f"OUT={out}",
        "NOTEBOOKS=" + " ".join(f"notebooks/{nb}.ipynb" for nb in NOTEBOOKS),
    ]  # fmt: skip


def _run_one(name: str, root: Path) -> dict:
    out = root / "runs" / name
    command = _make_all(name, root, out)
    start = time.perf_counter()
    proc = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, env=os.environ.copy()
    )
    return {
        "name": name,
        "out": out,
        "returncode": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "seconds": time.perf_counter() - start,
    }


def _wait_for_partial(notebooks: Path, make: subprocess.Popen, seconds: float = 900) -> Path:
    """The temporary file of notebook :data:`STOPPED_IN` once papermill writes it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and make.poll() is None:
        found = sorted(notebooks.glob(f".{STOPPED_IN}_*{PARTIAL_MARK}*.ipynb"))
        if found:
            return found[0]
        time.sleep(0.2)
    make.kill()
    raise AssertionError(f"notebook {STOPPED_IN} never started (make exit {make.returncode})")


def _wait_for_a_cell(partial: Path, make: subprocess.Popen, seconds: float = 300) -> None:
    """Until papermill has recorded a finished code cell in ``partial`` (the kernel runs cells).

    A fixed wait is not enough: with warm kernels notebook 03 of a tiny study can
    finish within 3 s of its file appearing.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and make.poll() is None:
        try:
            cells = json.loads(partial.read_text(encoding="utf-8"))["cells"]
        except (OSError, ValueError, KeyError):
            cells = []
        if any(c.get("execution_count") for c in cells if c.get("cell_type") == "code"):
            return
        time.sleep(0.05)
    raise AssertionError(f"notebook {STOPPED_IN} ran no cell before it ended or {seconds} s passed")


#: Python code that sets SIGINT to its default action and runs ``sys.argv[1:]`` in its place.
_EXEC_WITH_DEFAULT_SIGINT = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def _interrupted_run(name: str, root: Path) -> dict:
    """``make all`` stopped by Ctrl-C in notebook 03, what it left, then ``make all`` again."""
    out = root / "runs" / f"{name}-interrupted"
    command = _make_all(name, root, out)
    start = time.perf_counter()
    # Ctrl-C must reach make even when this test runs with SIGINT ignored (a background job
    # of a non-interactive shell inherits SIG_IGN, and make and Python keep it): exec make
    # from a process that has set SIGINT back to its default
    with_ctrl_c = [sys.executable, "-c", _EXEC_WITH_DEFAULT_SIGINT, *command]
    make = subprocess.Popen(with_ctrl_c, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        partial = _wait_for_partial(out / "notebooks", make)
        _wait_for_a_cell(partial, make)
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        stopped_stdout, stopped_stderr = make.communicate(timeout=120)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
    left = sorted(p.name for p in (out / "notebooks").iterdir())
    lock_left = (out / LOCK_NAME).exists()
    rerun = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, env=os.environ.copy()
    )
    return {
        "name": f"{name} (interrupted)",
        "out": out,
        "partial": partial.name,
        "stopped_returncode": make.returncode,
        "stopped_stderr": stopped_stderr,
        "stopped_stdout": stopped_stdout,
        "left": left,
        "lock_left": lock_left,
        "returncode": rerun.returncode,
        "stderr": rerun.stderr,
        "seconds": time.perf_counter() - start,
    }


@pytest.fixture(scope="session")
def all_runs(tmp_path_factory) -> dict[str, dict]:
    """Every shape's ``make all``, and the interrupted run of :data:`INTERRUPTED` (2 at a time)."""
    root = tmp_path_factory.mktemp("scenario-suite")
    scenarios.write_scenarios(root / "data")
    jobs = [lambda: _interrupted_run(INTERRUPTED, root)]
    jobs += [lambda n=n: _run_one(n, root) for n in NAMES]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: job(), jobs))
    timing = "\n".join(f"{r['name']:<22} {r['seconds']:6.1f} s" for r in results)
    print(f"\nmake all per study shape:\n{timing}")
    return {r["name"]: r for r in results}


@pytest.fixture(scope="session")
def runs(all_runs) -> dict[str, dict]:
    """The uninterrupted ``make all`` of each shape, by name."""
    return {name: all_runs[name] for name in NAMES}


def _outputs(out: Path, prefix: str) -> str:
    """Every text, Markdown and HTML output of the executed notebook ``prefix``."""
    (path,) = (out / "notebooks").glob(f"{prefix}_*.ipynb")
    texts = []
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        for output in cell.get("outputs", []):
            texts.append("".join(output.get("text", "")))
            for kind in ("text/plain", "text/markdown"):
                texts.append("".join(output.get("data", {}).get(kind, "")))
    return "\n".join(texts)


@pytest.mark.parametrize("name", NAMES)
def test_make_all_completes(runs, name):
    run = runs[name]
    assert run["returncode"] == 0, f"make all failed on {name}:\n{run['stderr'][-3000:]}"
    executed = sorted(p.stem for p in (run["out"] / "notebooks").glob("*.ipynb"))
    assert executed == NOTEBOOKS, f"{name}: executed {executed}"
    index = (run["out"] / "report" / "index.html").read_text(encoding="utf-8")
    for notebook in NOTEBOOKS:
        assert f'href="{notebook}.html"' in index, f"{name}: report lacks {notebook}"


@pytest.mark.parametrize("name", NAMES)
def test_no_notebook_output_shows_an_error(runs, name):
    for notebook in NOTEBOOKS:
        path = runs[name]["out"] / "notebooks" / f"{notebook}.ipynb"
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        errors = [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
        assert not errors, f"{name}/{notebook}: {errors[0]['ename']}: {errors[0]['evalue']}"


@pytest.mark.parametrize("name", sorted(EXPECTED_SKIPS))
def test_skipped_sections_say_why(runs, name):
    for prefix, text in EXPECTED_SKIPS[name]:
        assert text in _outputs(runs[name]["out"], prefix), f"{name}/{prefix}: no '{text}'"


@pytest.mark.parametrize("name", [n for n in NAMES if not scenarios.get_scenario(n).truth])
def test_truth_sections_are_skipped_without_a_truth_file(runs, name):
    assert "*Skipped — The comparison with the truth:*" in _outputs(runs[name]["out"], "03")


def test_reversed_study_states_the_reversed_directions(runs):
    for prefix, text in REVERSED_TEXT:
        assert text in _outputs(runs["reversed"]["out"], prefix), f"reversed/{prefix}: '{text}'"


def test_make_all_interrupted_in_a_notebook_then_rerun_gives_identical_results(all_runs):
    run = all_runs[f"{INTERRUPTED} (interrupted)"]
    assert run["stopped_returncode"] != 0, f"make was not stopped:\n{run['stopped_stderr'][-3000:]}"
    # nothing under notebook 03's real name (nor the figures' that need it), no partial copy,
    # no lock; notebooks that ran beside 03 (make all's JOBS) may have finished or been stopped
    executed = [n for n in run["left"] if n.endswith(".ipynb")]
    assert executed[:1] == [f"{NOTEBOOKS[0]}.ipynb"], run["left"]
    assert not [n for n in executed if n.startswith((STOPPED_IN, "06"))], run["left"]
    assert set(executed) <= {f"{nb}.ipynb" for nb in NOTEBOOKS}, run["left"]
    assert not run["lock_left"]
    assert run["returncode"] == 0, f"the re-run failed:\n{run['stderr'][-3000:]}"
    assert sorted(p.stem for p in (run["out"] / "notebooks").glob("*.ipynb")) == NOTEBOOKS
    uninterrupted = all_runs[INTERRUPTED]["out"]
    compare = subprocess.run(
        [sys.executable, "-m", "helpers", "compare-runs", str(uninterrupted), str(run["out"])],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env=os.environ.copy(),
    )  # fmt: skip
    assert compare.returncode == 0, compare.stdout + compare.stderr
    assert "byte-identical" in compare.stdout


@pytest.mark.parametrize("notebook", STUDY_INDEPENDENT)
def test_study_independent_notebooks_read_no_study_data(notebook):
    """The notebooks left out of the per-shape runs take no processed data, config or truth."""
    cells = json.loads((PROJECT_ROOT / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    for name in ("PROCESSED_DIR", "TRUTH_PATH", "processed", "load_profile", "sessions.parquet"):
        assert name not in code, f"{notebook} uses {name}: run it on every shape again"
