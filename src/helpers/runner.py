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
=================  ==========================================

Paths are passed as absolute paths so the notebooks find them whatever the
kernel's working folder.
"""

from __future__ import annotations

from pathlib import Path

from helpers.paths import NOTEBOOKS_DIR, resolve_path


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
        pm.execute_notebook(
            str(notebook),
            str(target),
            parameters=wanted,
            cwd=str(notebook.parent),
            kernel_name="python3",
            progress_bar=False,
        )
        executed.append(target)
    return executed
