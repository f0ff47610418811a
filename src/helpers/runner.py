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
progress bars stored in executed notebooks) and with CurveZMQ transport encryption where libzmq has
it (no "running over TCP without encryption" warning per notebook).  A
notebook that fails leaves ``<name>.failed.ipynb``; its next successful run
deletes it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from helpers.paths import NOTEBOOKS_DIR, relative_to_root, resolve_path
from helpers.provenance import describe_files, git_commit, package_versions

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


def _kernel_config() -> Config:
    """Kernel-manager settings: encrypt the kernel's ZeroMQ sockets where possible.

    Over plain TCP, ipykernel ≥ 7 logs "Kernel is running over TCP without
    encryption" to the terminal for every notebook.  With
    ``transport_encryption = "auto"`` jupyter_client provisions CurveZMQ keys
    for kernels whose kernelspec declares support (ipykernel's does), which
    removes the cause of that warning rather than hiding warnings.  Without
    CurveZMQ in libzmq, the default (plain TCP) is kept and ipykernel's
    warning stays true and visible.
    """
    import zmq
    from traitlets.config import Config

    if not zmq.has("curve"):
        return Config()
    return Config({"KernelManager": {"transport_encryption": "auto"}})


def _execute(notebook: Path, target: Path, parameters: dict[str, object]) -> None:
    """Execute one notebook into ``target``; a failure leaves ``<name>.failed.ipynb``."""
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    wanted = {k: v for k, v in parameters.items() if k in declared}
    try:
        with _environment(KERNEL_ENVIRONMENT):
            pm.execute_notebook(
                str(notebook),
                str(target),
                parameters=wanted,
                cwd=str(notebook.parent),
                kernel_name="python3",
                progress_bar=False,
                config=_kernel_config(),
            )
    except pm.PapermillExecutionError as err:
        # keep the partial notebook for inspection, but not under the target's name:
        # make must not take a failed run for an up-to-date one
        failed = failed_copy(target)
        target.replace(failed)
        raise NotebookFailedError(notebook.name, err, failed) from None


def run_notebooks(
    data: str | Path,
    config: str | Path,
    out: str | Path,
    *,
    seed: int = 2026,
    only: list[str] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    extra: Mapping[str, object] | None = None,
) -> list[Path]:
    """Execute the numbered notebooks in order; return the executed copies' paths.

    Prints one line per notebook (:func:`step_line`): its position among all
    numbered notebooks and its wall time.  After a notebook succeeds, the
    partly executed copy of an earlier failed run of it is deleted.

    Parameters
    ----------
    data, config
        The study's data file and config (relative paths: from the project root).
    out
        The run's output folder.
    seed
        Random seed passed to notebooks that declare ``SEED``.
    only
        Run only the notebooks whose file names start with one of these
        prefixes (e.g. ``["01"]``).
    notebooks_dir
        Folder of the numbered notebooks (the suite's ``notebooks/``).
    extra
        Further parameters (:func:`notebook_parameters`), e.g. ``{"N_BOOTSTRAP": 20}``.
    """
    data, config, out = (resolve_path(p).resolve() for p in (data, config, out))
    executed_dir = out / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    params = notebook_parameters(data, config, out, seed, extra)
    notebooks = numbered_notebooks(notebooks_dir)
    width = max((len(nb.stem) for nb in notebooks), default=0)
    executed = []
    for step, notebook in enumerate(notebooks, start=1):
        if only and not any(notebook.name.startswith(p) for p in only):
            continue
        target = executed_dir / notebook.name
        start = time.perf_counter()
        _execute(notebook, target, params)
        failed_copy(target).unlink(missing_ok=True)
        seconds = time.perf_counter() - start
        print(step_line(step, len(notebooks), notebook.stem, seconds, width), flush=True)
        executed.append(target)
    return executed


class NotebookFailedError(RuntimeError):
    """A notebook of the suite stopped with an error during ``make all``."""

    def __init__(self, name: str, err: Exception, partial: Path) -> None:
        self.name, self.partial = name, partial
        ename = getattr(err, "ename", type(err).__name__)
        evalue = getattr(err, "evalue", str(err))
        cell = getattr(err, "exec_count", "?")
        super().__init__(
            f"{name} stopped at cell [{cell}] with {ename}:\n{evalue}\n\n"
            f"The partly executed notebook is {relative_to_root(partial)}."
        )


#: Output folders of a run whose files must be byte-identical between runs.
DETERMINISTIC_FOLDERS: tuple[str, ...] = ("processed", "results", "figures")


def run_output_files(out: Path) -> list[Path]:
    """Every file of a run's deterministic folders, sorted."""
    files: list[Path] = []
    for folder in DETERMINISTIC_FOLDERS:
        if (out / folder).is_dir():
            files += [p for p in (out / folder).rglob("*") if p.is_file()]
    return sorted(files)


def executed_notebooks(out: Path, notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The run's executed copies of the suite's numbered notebooks, in order.

    Partly executed copies of failed notebooks (``*.failed.ipynb``) and copies
    of notebooks the suite no longer has are not part of the run.
    """
    copies = [out / "notebooks" / nb.name for nb in numbered_notebooks(notebooks_dir)]
    return [p for p in copies if p.is_file()]


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
    """
    import json

    data, config, out = (resolve_path(p).resolve() for p in (data, config, out))
    params = notebook_parameters(data, config, out, seed, extra)
    manifest = {
        "commit": git_commit(),
        "packages": package_versions(),
        "parameters": {
            k: (relative_to_root(v) if isinstance(v, str) else v) for k, v in params.items()
        },
        "inputs": describe_files([data, config]),
        "outputs": describe_files(run_output_files(out), base=out),
        "executed_notebooks": [relative_to_root(p) for p in executed_notebooks(out, notebooks_dir)],
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def compare_runs(first: str | Path, second: str | Path) -> list[str]:
    """Files of the deterministic folders that differ (or exist in one run only)."""
    a, b = resolve_path(first), resolve_path(second)
    names_a = {p.relative_to(a) for p in run_output_files(a)}
    names_b = {p.relative_to(b) for p in run_output_files(b)}
    differ = sorted(str(n) + " (only in one run)" for n in names_a ^ names_b)
    for name in sorted(names_a & names_b):
        if (a / name).read_bytes() != (b / name).read_bytes():
            differ.append(str(name))
    return differ


def strip_execution_metadata(path: str | Path) -> int:
    """Remove the execution timestamps nbconvert stores in each cell's metadata.

    Committed reference notebooks then change only where their outputs change
    (``make refresh`` calls this).  Returns the number of cells cleaned.
    """
    import json

    path = Path(path)
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cleaned = 0
    for cell in notebook["cells"]:
        if cell.get("metadata", {}).pop("execution", None) is not None:
            cleaned += 1
    text = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")
    return cleaned


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
            raise ValueError(
                f"--set {setting!r}: write NAME=VALUE with the notebook parameter's upper-case "
                "name, e.g. --set N_BOOTSTRAP=20"
            )
        try:
            out[name.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            out[name.strip()] = text.strip()
    return out
