"""What the suite removes from notebook files before they are committed or shown.

* :func:`strip_execution_metadata`: the execution timestamps nbconvert stores
  in each cell (``make refresh``), so committed reference notebooks change
  only where their outputs change.
* :func:`strip_widget_state` / :func:`strip_widget_state_file`: the live
  widgets' views and state, which carry patient codes; the report and the
  committed notebook 08 keep only the widgets' static forms.

This module imports nothing heavy, so the report and ``make refresh`` do not
load the explorers (:mod:`helpers.explorer`) to clean a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers.safety import atomic_write_text

#: MIME type of a live widget's view in a notebook output.
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

#: Key of the widget state in a notebook's metadata.
WIDGET_STATE = "widgets"


def strip_execution_metadata(path: str | Path) -> int:
    """Remove the execution timestamps nbconvert stores in each cell's metadata.

    Committed reference notebooks then change only where their outputs change
    (``make refresh`` calls this).  Returns the number of cells cleaned.
    """
    path = Path(path)
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cleaned = 0
    for cell in notebook["cells"]:
        if cell.get("metadata", {}).pop("execution", None) is not None:
            cleaned += 1
    text = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_text(path, text)
    return cleaned


def strip_widget_state(notebook: dict[str, Any]) -> int:
    """Remove live-widget outputs and widget state from a notebook (in place).

    Drops the ``application/vnd.jupyter.widget-view+json`` form of every output
    (its static ``text/html``/``text/plain`` forms stay) and the notebook's
    ``metadata.widgets``.  Returns how many widget views were removed.
    """
    removed = 0
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
                removed += 1
    notebook.get("metadata", {}).pop(WIDGET_STATE, None)
    return removed


def strip_widget_state_file(path: str | Path) -> int:
    """:func:`strip_widget_state` on a notebook file, rewritten only if something changed."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    had_state = WIDGET_STATE in notebook.get("metadata", {})
    removed = strip_widget_state(notebook)
    if removed or had_state:
        nbformat.write(notebook, str(path))
    return removed
