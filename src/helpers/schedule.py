"""Which steps of a run are out of date, and running independent steps side by side.

``make all`` runs the numbered notebooks as a small graph (:func:`step_graph`):
the first notebook (cleaning) before every other, and each later one after
the steps whose results it reads, as its metadata declares them
(:func:`declared_reads`; a notebook that declares nothing waits for every
one before it).  :func:`stale_steps` decides, as make would, which executed
copies are out of date; it also re-runs a step whose parameters changed
(another seed, ``PARAMS="N_BOOTSTRAP=20"``), which make cannot see.

:func:`run_parallel` runs up to ``jobs`` steps at once, each in its own
process (papermill changes the process's working folder, so two notebooks
cannot share one).  A step starts when the steps it reads from have
finished, those that others wait for first; after a failure no new step
starts, the running ones finish, and the first failure is raised.  Stopped
with Ctrl-C or SIGTERM, it stops every running step, which removes its partly
written notebook.

The files a step wrote are those of the run's deterministic folders that
changed while it ran (:func:`owned_by`).  When steps overlap, a changed file
whose name starts with another step's number (``03_residuals.csv``) is that
step's; a file without a step number is recorded for every step it may
belong to, so it is deleted when any of them runs again and never lost from
the manifest.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from helpers.errors import NotebookFailedError

#: Seconds a stopped step may take to clean up before it is killed.
STOP_GRACE_SECONDS = 30.0


def declared_reads(notebook: Path) -> list[str] | None:
    """The numbers of the steps whose outputs ``notebook`` reads, as its metadata declares them.

    A notebook declares them in its metadata as ``{"helpers": {"reads": ["03", "04"]}}``
    (in JupyterLab: the property inspector's notebook metadata).  ``None`` when it
    declares nothing or cannot be read.
    """
    try:
        metadata = json.loads(notebook.read_text(encoding="utf-8"))["metadata"]
        reads = metadata["helpers"]["reads"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [str(r) for r in reads] if isinstance(reads, list) else None


def step_graph(
    names: Sequence[str], reads: Mapping[str, Sequence[str] | None] | None = None
) -> dict[str, tuple[str, ...]]:
    """The steps each step reads from, for notebook stems in numbered order.

    The first step (cleaning) reads the raw data and runs before every other.
    A later step reads the first and the steps whose numbers it declares in
    ``reads`` (:func:`declared_reads`); a step that declares nothing waits for
    every step before it, so a new notebook is safe before it says what it reads.

    >>> names = ["01_clean", "02_explore", "06_figures", "07_power", "09_mine"]
    >>> graph = step_graph(names, {"02_explore": ["01"], "06_figures": ["02"], "07_power": []})
    >>> graph["06_figures"], graph["07_power"]
    (('01_clean', '02_explore'), ('01_clean',))
    >>> graph["09_mine"]
    ('01_clean', '02_explore', '06_figures', '07_power')
    """
    reads = reads or {}
    first = names[0] if names else ""
    graph: dict[str, tuple[str, ...]] = {}
    for i, name in enumerate(names):
        declared = reads.get(name)
        if name == first:
            graph[name] = ()
        elif declared is None:
            graph[name] = tuple(names[:i])
        else:
            wanted = {str(r) for r in declared}
            graph[name] = tuple(n for n in names if n == first or (n != name and n[:2] in wanted))
    return graph


def stored_parameters(executed: Path) -> dict[str, object] | None:
    """The parameters papermill stored in an executed notebook (``None`` if unreadable)."""
    try:
        notebook = json.loads(executed.read_text(encoding="utf-8"))
        return dict(notebook["metadata"]["papermill"]["parameters"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def stale_steps(
    targets: Mapping[str, Path],
    sources: Mapping[str, Path],
    inputs: Sequence[Path],
    parameters: Mapping[str, Mapping[str, object]],
    graph: Mapping[str, tuple[str, ...]] | None = None,
) -> list[str]:
    """The steps whose executed copy is missing or out of date, in numbered order.

    A step is out of date, as in the Makefile's rules, when its executed copy
    (``targets``) is missing or older than its notebook (``sources``) or any
    of ``inputs`` (data, config, the helpers' code), or older than the
    executed copy of a step it reads from (``graph``, by default
    :func:`step_graph` of the names), or when such a step is itself out of
    date.  A step is also out of date when the parameters stored in its
    executed copy differ from ``parameters``.
    """
    names = list(targets)
    graph = graph if graph is not None else step_graph(names)
    newest_input = max((_mtime(p) for p in inputs), default=0)
    stale: set[str] = set()
    for name in _in_graph_order(names, graph):
        target = targets[name]
        if not target.is_file():
            stale.add(name)
            continue
        built = _mtime(target)
        wanted = json.loads(json.dumps(dict(parameters[name])))
        needs = [n for n in graph[name] if n in targets]
        if (
            built < max(newest_input, _mtime(sources[name]))
            or stored_parameters(target) != wanted
            or any(n in stale or _mtime(targets[n]) > built for n in needs)
        ):
            stale.add(name)
    return [n for n in names if n in stale]


def _in_graph_order(names: Sequence[str], graph: Mapping[str, tuple[str, ...]]) -> list[str]:
    """``names`` ordered so that every step comes after the steps it reads from."""
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [
            n
            for n in names
            if n not in ordered and all(p in ordered or p not in names for p in graph[n])
        ]
        ordered += ready[:1]
    return ordered


def owned_by(name: str, changed: Sequence[str], all_names: Sequence[str]) -> list[str]:
    """Which of the files that changed while step ``name`` ran are its outputs.

    A file whose name starts with a step's number (``03_…``) belongs to that
    step only; any other changed file may be this step's.

    >>> owned_by("03_models", ["results/03_fit.csv", "results/04_x.csv", "a.csv"],
    ...          ["03_models", "04_ruptures"])
    ['a.csv', 'results/03_fit.csv']
    """
    prefixes = {n[:3] for n in all_names if n[:2].isdigit() and n[2:3] == "_"}
    own = name[:3]
    keep = []
    for path in changed:
        base = Path(path).name
        if base.startswith(own) or not any(base.startswith(p) for p in prefixes):
            keep.append(path)
    return sorted(keep)


@dataclass
class Step:
    """One notebook to execute: its source, executed copy and parameters."""

    name: str
    notebook: Path
    target: Path
    parameters: dict[str, object]


@dataclass
class _Running:
    step: Step
    process: subprocess.Popen
    result_file: Path
    before: dict[Path, tuple[int, int, int]]
    start: float = field(default_factory=time.perf_counter)


class _StepError(Exception):
    """A step's error as its process reported it (cell number, error name and value)."""

    def __init__(self, ename: str, evalue: str, exec_count: object) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename, self.evalue, self.exec_count = ename, evalue, exec_count


def run_parallel(
    steps: Sequence[Step],
    graph: Mapping[str, tuple[str, ...]],
    out: Path,
    jobs: int,
    on_done: Callable[[Step, float], None],
    warm: Path | None = None,
) -> None:
    """Run ``steps`` (in numbered order) with up to ``jobs`` at once, each in its own process.

    A step starts when every step of ``graph`` it reads from and that is
    among ``steps`` has finished.  ``on_done(step, seconds)`` is called as
    each step succeeds.  After a failure no new step starts; the first
    failure (:class:`~helpers.errors.NotebookFailedError`) is raised once the
    running steps have finished.  ``warm`` is the socket of a warm-kernel
    server the steps fork their kernels from (:mod:`helpers.warm_kernels`).
    """
    chosen = {s.name for s in steps}
    pending, running, done = list(steps), [], set()
    failure: Exception | None = None
    with tempfile.TemporaryDirectory(prefix="helpers-steps-") as tmp:
        try:
            while pending or running:
                while failure is None and len(running) < jobs:
                    ready = _next_ready(pending, graph, done, chosen)
                    if ready is None:
                        break
                    pending.remove(ready)
                    running.append(_launch(ready, out, Path(tmp), warm))
                if not running:
                    break
                finished = _wait_for_one(running)
                running.remove(finished)
                error = _finish(finished, out, list(graph))
                if error is not None:
                    failure = failure or error
                else:
                    done.add(finished.step.name)
                    on_done(finished.step, time.perf_counter() - finished.start)
        finally:
            _stop(running, out, list(graph))
    if failure is not None:
        raise failure


def _next_ready(
    pending: Sequence[Step], graph: Mapping[str, tuple[str, ...]], done: set[str], chosen: set[str]
) -> Step | None:
    """The pending step to start: of those whose chosen prerequisites have all finished,
    the one that most pending steps wait for (so the figures' inputs come first), then
    the first in numbered order."""
    ready = [s for s in pending if all(p in done or p not in chosen for p in graph[s.name])]
    if not ready:
        return None
    waiting = {s.name: _waiting_for(s.name, pending, graph) for s in ready}
    return min(ready, key=lambda s: -waiting[s.name])


def _waiting_for(name: str, pending: Sequence[Step], graph: Mapping[str, tuple[str, ...]]) -> int:
    """How many pending steps wait, directly or through others, for step ``name``."""
    waiting: set[str] = set()
    frontier = {name}
    while frontier:
        frontier = {s.name for s in pending if set(graph[s.name]) & frontier} - waiting
        waiting |= frontier
    return len(waiting)


def _launch(step: Step, out: Path, tmp: Path, warm: Path | None = None) -> _Running:
    """Forget the step's previous outputs and start its process."""
    from helpers.runner import _forget_step, _signatures

    _forget_step(out, step.target)
    spec = tmp / f"{step.name}.spec.json"
    result = tmp / f"{step.name}.result.json"
    spec.write_text(
        json.dumps(
            {
                "notebook": str(step.notebook),
                "target": str(step.target),
                "parameters": step.parameters,
                "result": str(result),
                "warm": str(warm) if warm else "",
            }
        ),
        encoding="utf-8",
    )
    before = _signatures(out)
    process = subprocess.Popen([sys.executable, "-m", "helpers.schedule", str(spec)])
    return _Running(step, process, result, before)


def _wait_for_one(running: Sequence[_Running]) -> _Running:
    """Wait until one of the running steps' processes has ended; return it."""
    while True:
        for item in running:
            if item.process.poll() is not None:
                return item
        time.sleep(0.05)


def _record_outputs(item: _Running, out: Path, all_names: Sequence[str]) -> None:
    """Record the files the step wrote (:func:`owned_by`), also when it failed or was stopped."""
    from helpers.runner import changed_since, write_outputs_record

    changed = changed_since(out, item.before)
    write_outputs_record(item.step.target, owned_by(item.step.name, changed, all_names))


def _finish(item: _Running, out: Path, all_names: Sequence[str]) -> Exception | None:
    """Record the files the step wrote; return its error, if it failed."""
    from helpers.runner import failed_copy

    _record_outputs(item, out, all_names)
    try:
        result = json.loads(item.result_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        code = item.process.returncode
        return RuntimeError(f"the process of step {item.step.name} ended with status {code}")
    if not result["failed"]:
        failed_copy(item.step.target).unlink(missing_ok=True)
        return None
    error = _StepError(result["ename"], result["evalue"], result["exec_count"])
    if not result["partial"]:  # stopped outside a cell (a kernel that died, a missing file)
        return RuntimeError(f"step {item.step.name} stopped: {error}")
    return NotebookFailedError(item.step.notebook.name, error, Path(result["partial"]))


def _stop(running: Sequence[_Running], out: Path, all_names: Sequence[str]) -> None:
    """Stop the steps still running (SIGTERM, then SIGKILL after a grace period).

    Each stopped step removes its partly written notebook; the files it had
    written are recorded as its own, so its next run deletes them.
    """
    for item in running:
        if item.process.poll() is None:
            item.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for item in running:
        try:
            item.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            item.process.kill()
            item.process.wait()
        _record_outputs(item, out, all_names)


def _step_main(spec_path: str) -> int:
    """Execute one step in this process (the child side of :func:`run_parallel`)."""
    from helpers.runner import _execute

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = Path(spec["result"])
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_once)
    try:
        warm = Path(spec["warm"]) if spec.get("warm") else None
        _execute(Path(spec["notebook"]), Path(spec["target"]), spec["parameters"], warm)
    except NotebookFailedError as err:
        report = {"failed": True, "ename": err.ename, "evalue": err.evalue}
        report |= {"exec_count": err.exec_count, "partial": str(err.partial)}
        result.write_text(json.dumps(report), encoding="utf-8")
        return 1
    except KeyboardInterrupt:  # Ctrl-C or the runner's SIGTERM: the runner reports it
        return 130
    except Exception as err:  # e.g. the kernel died: reported by the runner, no traceback
        report = {"failed": True, "ename": type(err).__name__, "evalue": str(err)}
        report |= {"exec_count": "?", "partial": ""}
        result.write_text(json.dumps(report), encoding="utf-8")
        return 1
    result.write_text(json.dumps({"failed": False}), encoding="utf-8")
    return 0


def _stop_once(signum: int, frame: object) -> None:
    """Stop the step (Ctrl-C reaches it from the terminal, SIGTERM from the runner).

    The first of the two interrupts the notebook; later ones are no-ops, so the
    clean-up (kernel shut down, partial notebook removed) is not interrupted.  The
    interrupted cell's error, which arrives during the clean-up, is not reported
    (asyncio would print it as "Task exception was never retrieved"): the runner
    reports the stop.
    """
    import logging

    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, _ignore)  # not SIG_IGN: a signal already pending would raise
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    raise KeyboardInterrupt


def _ignore(signum: int, frame: object) -> None:
    """A signal handler that does nothing."""


if __name__ == "__main__":
    raise SystemExit(_step_main(sys.argv[1]))
