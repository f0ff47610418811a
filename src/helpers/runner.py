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
"""

from __future__ import annotations

from pathlib import Path

from helpers.paths import NOTEBOOKS_DIR, relative_to_root, resolve_path
from helpers.provenance import describe_files, git_commit, package_versions


def numbered_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The notebooks ``NN_name.ipynb`` of ``folder``, in their numbered order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def notebook_parameters(data: Path, config: Path, out: Path, seed: int) -> dict[str, object]:
    """Every parameter a notebook of the suite may declare, for one run."""
    return {
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


def run_notebooks(
    data: str | Path,
    config: str | Path,
    out: str | Path,
    *,
    seed: int = 2026,
    only: list[str] | None = None,
) -> list[Path]:
    """Execute the numbered notebooks in order; return the executed copies' paths.

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
    """
    import papermill as pm

    data, config, out = (resolve_path(p).resolve() for p in (data, config, out))
    executed_dir = out / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    params = notebook_parameters(data, config, out, seed)
    executed = []
    for notebook in numbered_notebooks():
        if only and not any(notebook.name.startswith(p) for p in only):
            continue
        declared = pm.inspect_notebook(str(notebook))
        wanted = {k: v for k, v in params.items() if k in declared}
        target = executed_dir / notebook.name
        print(f"running {notebook.name}")
        try:
            pm.execute_notebook(
                str(notebook),
                str(target),
                parameters=wanted,
                cwd=str(notebook.parent),
                kernel_name="python3",
                progress_bar=False,
            )
        except pm.PapermillExecutionError as err:
            # keep the partial notebook for inspection, but not under the target's name:
            # make must not take a failed run for an up-to-date one
            failed = target.with_suffix(".failed.ipynb")
            target.replace(failed)
            raise NotebookFailedError(notebook.name, err, failed) from None
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


def write_run_manifest(data: Path, config: Path, out: Path, seed: int) -> Path:
    """Write ``<out>/manifest.json``: commit, versions, parameters, input and output hashes."""
    import json

    data, config, out = (resolve_path(p).resolve() for p in (data, config, out))
    params = notebook_parameters(data, config, out, seed)
    manifest = {
        "commit": git_commit(),
        "packages": package_versions(),
        "parameters": {
            k: (relative_to_root(v) if isinstance(v, str) else v) for k, v in params.items()
        },
        "inputs": describe_files([data, config]),
        "outputs": describe_files(run_output_files(out), base=out),
        "executed_notebooks": sorted(
            relative_to_root(p) for p in (out / "notebooks").glob("*.ipynb")
        ),
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
