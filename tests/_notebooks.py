"""Tiny notebooks for the runner's tests (``from _notebooks import write_notebook``).

pytest puts ``tests/`` on ``sys.path`` when it imports a test module, so test modules
import this one by its bare name (as ``_fits``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat

#: The parameters cell of a tiny notebook: what the runner may pass to it.
PARAMETERS = "RESULTS_DIR = ''\nSEED = 0"


def write_notebook(
    path: Path, *sources: str, parameters: str = PARAMETERS, reads: list[str] | None = None
) -> None:
    """Write a notebook with a ``parameters`` cell and one code cell per source.

    ``reads``: the steps whose results it reads (``helpers.schedule.declared_reads``);
    by default it declares none, so it waits for every step before it.
    """
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(parameters)]
    notebook.cells[0].metadata["tags"] = ["parameters"]
    notebook.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook.metadata["language_info"] = {"name": "python"}
    if reads is not None:
        notebook.metadata["helpers"] = {"reads": reads}
    nbformat.write(notebook, path)


def result_cell(name: str) -> str:
    """A cell that writes ``RESULTS_DIR/<name>`` (its content: the name)."""
    return f"import pathlib\npathlib.Path(RESULTS_DIR, {name!r}).write_text('{name}\\n')"


def wait_cell(folder: Path, announce: str, until: str, seconds: float = 60) -> str:
    """A cell that writes ``folder/announce`` (the kernel's pid) and waits for ``folder/until``.

    It fails when ``until`` has not appeared after ``seconds``.
    """
    return (
        "import os, pathlib, time\n"
        f"folder = pathlib.Path({str(folder)!r})\n"
        f"(folder / {announce!r}).write_text(str(os.getpid()))\n"
        f"deadline = time.monotonic() + {seconds}\n"
        f"while not (folder / {until!r}).exists():\n"
        f"    assert time.monotonic() < deadline, {until + ' never appeared'!r}\n"
        "    time.sleep(0.05)"
    )


def one_step_suite(root: Path) -> Path:
    """``root/suite`` with ``01_first.ipynb`` (writes ``results/a.csv``), and the two inputs
    of a study (``root/data.csv``, ``root/study.yml``); returns the suite's folder."""
    folder = root / "suite"
    folder.mkdir()
    makedirs = "import os\nos.makedirs(RESULTS_DIR, exist_ok=True)"
    write_notebook(folder / "01_first.ipynb", makedirs, result_cell("a.csv"))
    for name in ("data.csv", "study.yml"):
        (root / name).write_text("x\n")
    return folder
