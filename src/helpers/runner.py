"""Run the numbered notebooks in order on one study (``make all``).

Each notebook in ``notebooks/`` is executed with papermill into
``<out>/notebooks/`` — the committed reference notebooks are never touched —
with the parameters it declares in its cell tagged ``parameters``:

=================  ==========================================
parameter          value passed
=================  ==========================================
``DATA_PATH``      the study's data file
``CONFIG_PATH``    the study config
``OUTPUT_DIR``     ``<out>/processed`` (the cleaning step's outputs)
``PROCESSED_DIR``  ``<out>/processed`` (read by later notebooks)
``RESULTS_DIR``    ``<out>/results``
``FIGURES_DIR``    ``<out>/figures``
``SEED``           the random seed
``TRUTH_PATH``     ``truth.json`` beside the data file if there is one
                   (a simulated study), else ``""`` (a real study: the
                   notebooks skip their comparisons with the truth)
=================  ==========================================

Paths are passed as absolute paths so the notebooks find them whatever the
kernel's working folder.  After the notebooks, :func:`write_run_manifest`
records the run (commit, package versions, parameters, and the SHA-256 of
every input and output file) in ``<out>/manifest.json``.  The executed
notebooks themselves are listed without hashes: papermill stores execution
times in them.

On the terminal each notebook prints one line, its step and wall time
(``[3/6] 03_alliance_outcome_models  12.4 s``); times are never written into
outputs.  The kernels run with ``TQDM_DISABLE=1`` and ``TQDM_DELAY=inf`` (no
progress bars stored in executed notebooks) and talk to the runner over Unix sockets in a private
folder (:func:`_kernel_config`: no port collisions between kernels started at once).  A
notebook that fails leaves ``<name>.failed.ipynb``; its next successful run
deletes it.

Nothing lost
------------
* The output folder may not be, or hold, a file the run reads (data, config,
  truth file, the notebooks), and may not be a file
  (:func:`helpers.safety.check_output_folder`).
* Each invocation holds ``<out>/.helpers-run.lock`` while it writes
  (:func:`helpers.safety.run_lock`): ``make all`` runs one invocation for all
  the notebooks that are out of date, so a second ``make all`` into the same
  folder is refused, with the holder named, while the first runs.
* papermill writes each executed notebook under a temporary name renamed to
  ``<out>/notebooks/<name>.ipynb`` only on success, so a step killed midway
  leaves no file that make would take as up to date.
* Ownership: each notebook's run records the files it wrote in
  ``<out>/notebooks/<name>.outputs.json``.  When the notebook runs again, the
  files of its previous run are deleted first; the manifest lists only the
  files recorded by the run's executed notebooks.  Files in ``processed/``,
  ``results/`` or ``figures/`` that no step of this run wrote are left alone
  (they may be the user's) but are not listed as this run's, and are named on
  stderr when the manifest is written.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from helpers.errors import NotebookFailedError, SettingsError
from helpers.paths import NOTEBOOKS_DIR, relative_to_root, resolve_path
from helpers.provenance import describe_files, git_commit, package_versions
from helpers.safety import (
    PARTIAL_MARK,
    atomic_write_text,
    check_output_folder,
    is_internal,
    partial_path,
    run_lock,
)
from helpers.schedule import Step, declared_reads, run_parallel, stale_steps, step_graph

if TYPE_CHECKING:
    from traitlets.config import Config


def numbered_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The notebooks ``NN_name.ipynb`` of ``folder``, in their numbered order.

    Partly executed copies of failed notebooks (``NN_name.failed.ipynb``) are
    not notebooks of the suite.
    """
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if not is_failed_copy(p))


def notebook_parameters(
    data: Path, config: Path, out: Path, seed: int, extra: Mapping[str, object] | None = None
) -> dict[str, object]:
    """Every parameter a notebook of the suite may declare, for one run.

    ``extra`` holds further parameters set on the command line (``--set N_BOOTSTRAP=20``,
    ``make all PARAMS="N_BOOTSTRAP=20"``); they are passed to the notebooks that declare them.
    """
    return {
        **dict(extra or {}),
        "DATA_PATH": str(data),
        "CONFIG_PATH": str(config),
        "OUTPUT_DIR": str(out / "processed"),
        "PROCESSED_DIR": str(out / "processed"),
        "RESULTS_DIR": str(out / "results"),
        "FIGURES_DIR": str(out / "figures"),
        "SEED": seed,
        "TRUTH_PATH": str(data.parent / "truth.json")
        if (data.parent / "truth.json").exists()
        else "",
    }


#: Name suffix of the partly executed copy a failed notebook leaves for inspection.
FAILED_SUFFIX = ".failed.ipynb"

#: Environment variables added to the kernel of each executed notebook: no
#: progress bars, so no timing text in outputs.  tqdm takes its defaults from
#: ``TQDM_*`` variables: ``TQDM_DISABLE`` turns bars off, but a caller that
#: passes ``disable=False`` (``effects.parametric_bootstrap(progress=True)``)
#: overrides it; ``TQDM_DELAY=inf`` then keeps such a bar from ever drawing.
KERNEL_ENVIRONMENT: dict[str, str] = {"TQDM_DISABLE": "1", "TQDM_DELAY": "inf"}


#: Name suffix of the file beside an executed notebook listing the outputs it wrote.
OUTPUTS_SUFFIX = ".outputs.json"


def failed_copy(executed: Path) -> Path:
    """Where the partly executed copy of a failed notebook is kept."""
    return executed.with_name(executed.name.removesuffix(".ipynb") + FAILED_SUFFIX)


def is_failed_copy(path: Path) -> bool:
    """Whether ``path`` is a partly executed copy left by a failed notebook."""
    return path.name.endswith(FAILED_SUFFIX)


def step_line(step: int, total: int, name: str, seconds: float, width: int = 0) -> str:
    """The terminal line of one executed notebook, e.g. ``[3/6] 03_models  12.4 s``.

    Parameters
    ----------
    step, total
        The notebook's position among all numbered notebooks, and their number.
    name
        The notebook's name without ``.ipynb``.
    seconds
        Wall time of the notebook (shown on the terminal only, never saved).
    width
        Pad the name to this many characters, so the times line up.
    """
    return f"[{step}/{total}] {name:<{width}}  {seconds:4.1f} s"


@contextmanager
def _environment(extra: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables while a kernel is started, then restore them.

    jupyter_client starts the kernel with a copy of this process's
    environment, so this is how a variable reaches the kernel only.
    """
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _kernel_config(socket_dir: Path, warm_socket: Path | None = None) -> Config:
    """Kernel-manager settings: talk to the kernel over Unix sockets in ``socket_dir``.

    Over TCP, each kernel picks free ports and binds them a moment later, so
    kernels started at the same time by two processes (``--jobs 2``, two test
    workers) can pick the same port and fail with "Address already in use".
    Unix-domain sockets (ZeroMQ's ``ipc`` transport) in a folder private to
    this kernel cannot collide, and no other user of the machine can connect
    to them, so ipykernel's "running over TCP without encryption" warning has
    no cause.  Windows has no ``ipc`` transport: there the kernel uses TCP with
    CurveZMQ keys where libzmq has them.  The kernel manager is the suite's
    (:class:`helpers.kernel_manager.SuiteKernelManager`); with ``warm_socket``
    it forks the kernel from that warm-kernel server (:mod:`helpers.warm_kernels`).
    """
    import zmq
    from traitlets.config import Config

    manager: dict[str, object] = {"warm_socket": str(warm_socket or "")}
    if os.name != "nt":
        manager |= {"transport": "ipc", "ip": str(socket_dir / "kernel")}
    elif zmq.has("curve"):
        manager |= {"transport_encryption": "auto"}
    return Config({"SuiteKernelManager": manager})


def declared_parameters(notebook: Path, parameters: Mapping[str, object]) -> dict[str, object]:
    """The entries of ``parameters`` that ``notebook`` declares in its ``parameters`` cell."""
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    return {k: v for k, v in parameters.items() if k in declared}


def _papermill(
    notebook: Path, target: Path, parameters: dict[str, object], warm: Path | None = None
) -> None:
    """Run papermill on ``notebook`` with ``parameters`` (:func:`declared_parameters`).

    ``warm`` is the socket of a warm-kernel server to fork the kernel from
    (:func:`helpers.warm_kernels.warm_kernel_server`), or ``None``.
    """
    import papermill as pm

    from helpers.kernel_manager import CELL_HOOKS, SuiteKernelManager

    with _environment(KERNEL_ENVIRONMENT), tempfile.TemporaryDirectory(prefix="kernel-") as sockets:
        pm.execute_notebook(
            str(notebook),
            str(target),
            parameters=parameters,
            cwd=str(notebook.parent),
            kernel_name="python3",
            progress_bar=False,
            config=_kernel_config(Path(sockets), warm),
            kernel_manager_class=SuiteKernelManager,
            **CELL_HOOKS,
        )


def _execute(
    notebook: Path, target: Path, parameters: dict[str, object], warm: Path | None = None
) -> None:
    """Execute one notebook into ``target``; a failure leaves ``<name>.failed.ipynb``.

    papermill writes the executed notebook cell by cell, so it writes to a
    temporary name (:func:`helpers.safety.partial_path`) renamed to
    ``target`` only on success: an interrupted or failed step never leaves a
    file under the target's name for make to take as up to date.
    """
    from papermill import PapermillExecutionError

    partial = partial_path(target)
    try:
        _papermill(notebook, partial, parameters, warm)
    except PapermillExecutionError as err:
        # keep the partial notebook for inspection, but not under the target's name
        failed = failed_copy(target)
        partial.replace(failed)
        raise NotebookFailedError(notebook.name, err, failed) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)


def outputs_record(executed: Path) -> Path:
    """The file beside an executed notebook listing the outputs its run wrote."""
    return executed.with_name(executed.name.removesuffix(".ipynb") + OUTPUTS_SUFFIX)


def _signatures(out: Path) -> dict[Path, tuple[int, int, int]]:
    """Inode, modification time and size of every file of the run's deterministic folders."""
    signatures = {}
    for path in run_output_files(out):
        stat = path.stat()
        signatures[path] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return signatures


def recorded_outputs(out: Path, executed: Path) -> list[Path]:
    """The existing files of ``out``'s deterministic folders that a notebook's last run wrote.

    Read from its :func:`outputs_record`; empty when it has none.  Names
    leading outside the deterministic folders are ignored.
    """
    import json

    try:
        names = json.loads(outputs_record(executed).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    folders = [(out / f).resolve() for f in DETERMINISTIC_FOLDERS]
    paths = [(out / str(name)).resolve() for name in names]
    return [p for p in paths if any(f in p.parents for f in folders) and p.is_file()]


def _forget_step(out: Path, target: Path) -> None:
    """Remove what the notebook's previous run left: its outputs, record, copies.

    A step that starts again invalidates its earlier results, so a failed or
    interrupted re-run leaves none of them behind to be taken for this run's.
    """
    for path in recorded_outputs(out, target):
        path.unlink()
    outputs_record(target).unlink(missing_ok=True)
    target.unlink(missing_ok=True)
    for partial in target.parent.glob(f".{target.stem}{PARTIAL_MARK}*"):
        partial.unlink(missing_ok=True)


def _run_step(
    notebook: Path, target: Path, out: Path, params: dict[str, object], warm: Path | None = None
) -> None:
    """Execute one notebook and record the files it wrote (:func:`outputs_record`).

    The files written are those of the deterministic folders that are new or
    changed (inode, modification time or size) after the notebook ran; every
    output is written under a temporary name and renamed, so a rewritten file
    is a new inode even when its bytes are unchanged.
    """
    _forget_step(out, target)
    before = _signatures(out)
    try:
        _execute(notebook, target, params, warm)
    finally:  # also a failed step's files are its own, removed when it runs again
        write_outputs_record(target, changed_since(out, before))


def changed_since(out: Path, before: Mapping[Path, tuple[int, int, int]]) -> list[str]:
    """The files of ``out``'s deterministic folders new or changed since ``before``
    (:func:`_signatures`), relative to ``out``, sorted."""
    after = _signatures(out)
    return sorted(p.relative_to(out).as_posix() for p in after if after[p] != before.get(p))


def write_outputs_record(executed: Path, written: list[str]) -> None:
    """Write the :func:`outputs_record` of an executed notebook: the files its run wrote."""
    import json

    atomic_write_text(outputs_record(executed), json.dumps(written, indent=1) + "\n")


def run_notebooks(
    data: str | Path,
    config: str | Path,
    out: str | Path,
    *,
    seed: int = 2026,
    only: list[str] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    extra: Mapping[str, object] | None = None,
    jobs: int = 1,
    stale_only: bool = False,
) -> list[Path]:
    """Execute the numbered notebooks in order; return the executed copies' paths.

    Prints one line per notebook (:func:`step_line`): its position among all
    numbered notebooks and its wall time.  Before a notebook runs, what its
    previous run into ``out`` left (executed copy, recorded outputs, partial
    copies) is removed; after it succeeds, the files it wrote are recorded
    beside it (:func:`outputs_record`) and the partly executed copy of an
    earlier failed run of it is deleted.

    Parameters
    ----------
    data, config
        The study's data file and config (relative paths: from the project root).
    out
        The run's output folder.  It may not be (or hold) a file the run
        reads (:func:`helpers.safety.check_output_folder`); the run holds the
        folder's lock while it writes (:func:`helpers.safety.run_lock`).
    seed
        Random seed passed to notebooks that declare ``SEED``.
    only
        Run only the notebooks whose file names start with one of these
        prefixes (e.g. ``["01"]``).
    notebooks_dir
        Folder of the numbered notebooks (the suite's ``notebooks/``).
    extra
        Further parameters (:func:`notebook_parameters`), e.g. ``{"N_BOOTSTRAP": 20}``.
    jobs
        How many notebooks may run at once (:func:`helpers.schedule.run_parallel`):
        after the first notebook, those that read only the cleaned data run
        side by side, and the figure notebook last.  Results do not depend on it.
    stale_only
        Run only the notebooks whose executed copy is missing or out of date
        (:func:`helpers.schedule.stale_steps`), as ``make all`` does.

    Raises
    ------
    helpers.safety.OutputFolderError
        When ``out`` holds an input, is a file, or another run writes into it.
    NotebookFailedError
        When a notebook stops with an error.
    """
    data, config, out = (resolve_path(p).resolve() for p in (data, config, out))
    params = notebook_parameters(data, config, out, seed, extra)
    truth = [Path(str(params["TRUTH_PATH"]))] if params["TRUTH_PATH"] else []
    reads = [data, config, notebooks_dir, *truth]
    check_output_folder(out, reads)
    notebooks = numbered_notebooks(notebooks_dir)
    number = {nb.stem: i for i, nb in enumerate(notebooks, start=1)}
    width = max((len(nb.stem) for nb in notebooks), default=0)

    def done(step: Step, seconds: float) -> None:
        line = step_line(number[step.name], len(notebooks), step.name, seconds, width)
        print(line, flush=True)

    command = "run-notebooks" + (f" --only {' '.join(only)}" if only else "")
    with run_lock(out, command):
        (out / "notebooks").mkdir(parents=True, exist_ok=True)
        reads = {nb.stem: declared_reads(nb) for nb in notebooks}
        graph = step_graph([nb.stem for nb in notebooks], reads)
        inputs = [data, config, *truth]
        steps = _chosen_steps(notebooks, out, params, only, stale_only, inputs, graph)
        with _warm_kernels(len(steps) > 1) as warm:
            if jobs > 1 and len(steps) > 1:
                run_parallel(steps, graph, out, jobs, done, warm)
            else:
                for step in steps:
                    start = time.perf_counter()
                    _run_step(step.notebook, step.target, out, step.parameters, warm)
                    failed_copy(step.target).unlink(missing_ok=True)
                    done(step, time.perf_counter() - start)
    return [step.target for step in steps]


@contextmanager
def _warm_kernels(wanted: bool) -> Iterator[Path | None]:
    """A warm-kernel server for a run of several notebooks (:mod:`helpers.warm_kernels`).

    Its imports cost about as much as one notebook's, so a run of one
    notebook starts its kernel the ordinary way.  ``HELPERS_WARM_KERNELS=0``
    turns warm kernels off (to compare, or to rule them out).
    """
    if not wanted or os.environ.get("HELPERS_WARM_KERNELS", "1") == "0":
        yield None
        return
    from helpers.warm_kernels import warm_kernel_server

    with warm_kernel_server(KERNEL_ENVIRONMENT) as socket_path:
        yield socket_path


def _chosen_steps(
    notebooks: list[Path],
    out: Path,
    params: Mapping[str, object],
    only: list[str] | None,
    stale_only: bool,
    inputs: list[Path],
    graph: Mapping[str, tuple[str, ...]],
) -> list[Step]:
    """The steps to run: those ``only`` names (all by default), the stale ones if asked."""
    steps = [
        Step(nb.stem, nb, out / "notebooks" / nb.name, declared_parameters(nb, params))
        for nb in notebooks
        if not only or any(nb.name.startswith(p) for p in only)
    ]
    if not stale_only:
        return steps
    stale = stale_steps(
        {s.name: s.target for s in steps},
        {s.name: s.notebook for s in steps},
        [*inputs, *helpers_sources()],
        {s.name: s.parameters for s in steps},
        graph,
    )
    return [s for s in steps if s.name in stale]


def helpers_sources() -> list[Path]:
    """The helpers' code and settings and ``pyproject.toml``: a change re-runs every step."""
    package = Path(__file__).resolve().parent
    files = [*package.glob("*.py"), *package.glob("*.yml")]
    project = package.parents[1] / "pyproject.toml"
    return sorted(files + ([project] if project.is_file() else []))


#: Output folders of a run whose files must be byte-identical between runs.
DETERMINISTIC_FOLDERS: tuple[str, ...] = ("processed", "results", "figures")


def run_output_files(out: Path) -> list[Path]:
    """Every file of a run's deterministic folders, sorted.

    Lock files and temporary files of unfinished writes (:func:`helpers.safety.is_internal`)
    are not outputs.
    """
    files: list[Path] = []
    for folder in DETERMINISTIC_FOLDERS:
        if (out / folder).is_dir():
            files += [p for p in (out / folder).rglob("*") if p.is_file() and not is_internal(p)]
    return sorted(files)


def executed_notebooks(out: Path, notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The run's executed copies of the suite's numbered notebooks, in order.

    Partly executed copies of failed notebooks (``*.failed.ipynb``) and copies
    of notebooks the suite no longer has are not part of the run.
    """
    copies = [out / "notebooks" / nb.name for nb in numbered_notebooks(notebooks_dir)]
    return [p for p in copies if p.is_file()]


def run_outputs(out: Path, notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The files this run's executed notebooks wrote (:func:`recorded_outputs`), sorted."""
    files = {p for nb in executed_notebooks(out, notebooks_dir) for p in recorded_outputs(out, nb)}
    return sorted(files)


def _note_unlisted(out: Path, listed: list[Path]) -> None:
    """Say on stderr which files of the deterministic folders no notebook of this run wrote."""
    import sys

    unlisted = sorted(set(run_output_files(out)) - {p.resolve() for p in listed})
    if unlisted:
        names = ", ".join(p.relative_to(out).as_posix() for p in unlisted[:5])
        more = f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else ""
        print(
            f"note: {len(unlisted)} file(s) in {relative_to_root(out)} were not written by this "
            f"run and are not in its manifest: {names}{more}",
            file=sys.stderr,
        )


def write_run_manifest(
    data: Path,
    config: Path,
    out: Path,
    seed: int,
    *,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    extra: Mapping[str, object] | None = None,
) -> Path:
    """Write ``<out>/manifest.json``: commit, versions, parameters, input and output hashes.

    ``executed_notebooks`` lists the run's executed notebooks
    (:func:`executed_notebooks`); the report reads its notebook list from it.
    ``outputs`` lists only the files those notebooks wrote (:func:`run_outputs`):
    a file of ``processed/``, ``results/`` or ``figures/`` left by an earlier
    run that this run did not write again is not listed, and is named on stderr.
    The manifest is written atomically while the run holds the folder's lock.
    """
    import json

    data, config, out = (resolve_path(p).resolve() for p in (data, config, out))
    params = notebook_parameters(data, config, out, seed, extra)
    outputs = run_outputs(out, notebooks_dir)
    manifest = {
        "commit": git_commit(),
        "packages": package_versions(),
        "parameters": {
            k: (relative_to_root(v) if isinstance(v, str) else v) for k, v in params.items()
        },
        "inputs": describe_files([data, config]),
        "outputs": describe_files(outputs, base=out),
        "executed_notebooks": [relative_to_root(p) for p in executed_notebooks(out, notebooks_dir)],
    }
    path = out / "manifest.json"
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    with run_lock(out, "run-notebooks --manifest"):
        # an unchanged manifest keeps its time stamp, so make does not render the report again
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
    _note_unlisted(out, outputs)
    return path


def manifest_outputs(out: Path) -> set[str]:
    """The outputs of the deterministic folders that ``<out>/manifest.json`` lists.

    Raises
    ------
    helpers.validation.StudyDataError
        When the run has no readable manifest (it did not finish, or is not a run).
    """
    import json

    from helpers.validation import Problem, StudyDataError, display_path

    manifest = out / "manifest.json"
    try:
        listed = json.loads(manifest.read_text(encoding="utf-8"))["outputs"]
        names = {str(entry["path"]) for entry in listed}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        problem = Problem(
            file=manifest,
            column=None,
            rule="a finished run: its manifest.json lists the files it wrote",
            found=f"no readable list of outputs ({type(exc).__name__}: {exc})",
            fix="finish the run first (make all OUT=...), or give the folder of a finished run",
        )
        raise StudyDataError(problem, f"{display_path(out)} is not a finished run.") from None
    return {n for n in names if n.split("/", 1)[0] in DETERMINISTIC_FOLDERS}


def compare_runs(first: str | Path, second: str | Path) -> list[str]:
    """Outputs of two runs that differ, comparing only the files each run's manifest lists.

    A file in a run's folder that its manifest does not list (left by an
    earlier run) is not compared; a file listed by one manifest only, or
    listed but missing from its folder, is reported.

    Returns
    -------
    list of str
        One line per file that differs or is not in both runs (empty when
        the runs wrote byte-identical outputs).
    """
    a, b = resolve_path(first), resolve_path(second)
    listed_a, listed_b = manifest_outputs(a), manifest_outputs(b)
    differ = [f"{n} (listed only in the manifest of {first})" for n in sorted(listed_a - listed_b)]
    differ += [
        f"{n} (listed only in the manifest of {second})" for n in sorted(listed_b - listed_a)
    ]
    for name in sorted(listed_a & listed_b):
        missing = [
            str(run) for run, root in ((first, a), (second, b)) if not (root / name).is_file()
        ]
        if missing:
            differ.append(f"{name} (listed in the manifest but missing from {', '.join(missing)})")
        elif (a / name).read_bytes() != (b / name).read_bytes():
            differ.append(name)
    return differ


def parse_settings(settings: list[str] | None) -> dict[str, object]:
    """``["N_BOOTSTRAP=20", "RUPTURE_K=2.5"]`` -> ``{"N_BOOTSTRAP": 20, "RUPTURE_K": 2.5}``.

    Values are Python literals (numbers, quoted strings, lists) or else plain text.

    Raises
    ------
    ValueError
        For a setting without ``=`` or whose name is not an upper-case identifier.
    """
    import ast
    import re

    out: dict[str, object] = {}
    for setting in settings or []:
        name, sep, text = setting.partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name.strip()):
            raise SettingsError(
                f"--set {setting!r}: write NAME=VALUE with the notebook parameter's upper-case "
                "name, e.g. --set N_BOOTSTRAP=20"
            )
        try:
            out[name.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            out[name.strip()] = text.strip()
    return out
