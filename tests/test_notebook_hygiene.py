"""Every committed notebook is a clean, re-runnable reference.

Checks: numbered file name; the ``python3`` kernelspec; every code cell executed,
with execution counts present and increasing from 1; a first code cell tagged
``parameters`` holding only literal assignments (papermill); a last code cell
reporting versions whose output nbval ignores; no absolute paths, kernel temp
paths or timestamps in stored outputs; no stderr output left unexplained.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from helpers.paths import NOTEBOOKS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
ABSOLUTE_PATH = re.compile(r"(/work/|/home/[a-z]|/root/|/tmp/ipykernel|[A-Z]:\\\\Users)")
TIMESTAMP = re.compile(r"\b20\d\d-[01]\d-[0-3]\d[ T][0-2]\d:[0-5]\d")


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _output_text(cell: dict) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            parts.append("".join(out["text"]))
        for key, value in out.get("data", {}).items():
            if key.startswith("text/") or key == "application/json":
                parts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(parts)


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb files"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_name_is_numbered(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_kernelspec_is_python3(path):
    assert _load(path)["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_execution_counts_present_and_increasing(path):
    counts = [c["execution_count"] for c in _code_cells(_load(path))]
    assert None not in counts, f"{path.name}: unexecuted cells (execution_count null)"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: counts {counts}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_literal_parameters(path):
    first = _code_cells(_load(path))[0]
    assert "parameters" in first["metadata"].get("tags", []), "first code cell not tagged"
    tree = ast.parse("".join(first["source"]))
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"non-assignment in parameters: {ast.dump(node)}"
        ast.literal_eval(node.value)  # raises unless the value is a literal


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_last_code_cell_reports_versions_and_is_ignored(path):
    last = _code_cells(_load(path))[-1]
    source = "".join(last["source"])
    # nbval only honours the marker as a comment line of its own
    assert "# NBVAL_IGNORE_OUTPUT" in [line.strip() for line in source.splitlines()]
    assert "package_versions" in source and "git_commit" in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_have_no_absolute_paths_timestamps_or_stderr(path):
    for i, cell in enumerate(_code_cells(_load(path)), start=1):
        text = _output_text(cell)
        assert not ABSOLUTE_PATH.search(text), f"{path.name} cell {i}: absolute path in output"
        if "NBVAL_IGNORE_OUTPUT" not in "".join(cell["source"]):
            assert not TIMESTAMP.search(text), f"{path.name} cell {i}: timestamp in output"
        for out in cell.get("outputs", []):
            assert out.get("name") != "stderr", (
                f"{path.name} cell {i}: stderr output; show warnings as findings "
                "(helpers report them) or remove them at the source"
            )
            assert out["output_type"] != "error", f"{path.name} cell {i}: error output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cells_carry_no_execution_timestamps(path):
    stamped = [
        i for i, c in enumerate(_load(path)["cells"]) if "execution" in c.get("metadata", {})
    ]
    assert not stamped, f"{path.name}: execution timestamps in cells {stamped} (make refresh)"
