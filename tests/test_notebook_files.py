"""Notebook-file hygiene: no execution timestamps or live widget state in stored notebooks."""

import json

from helpers.notebook_files import WIDGET_VIEW, strip_execution_metadata, strip_widget_state_file


def test_strip_widget_state(tmp_path):
    import nbformat

    output = nbformat.v4.new_output(
        "display_data", data={WIDGET_VIEW: {"model_id": "x"}, "text/html": "<p>t</p>"}
    )
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x", outputs=[output])],
        metadata={"widgets": {"state": {}}, "language_info": {"name": "python"}},
    )
    path = tmp_path / "nb.ipynb"
    nbformat.write(notebook, str(path))
    assert strip_widget_state_file(path) == 1
    stripped = json.loads(path.read_text())
    assert stripped["metadata"] == {"language_info": {"name": "python"}}
    assert stripped["cells"][0]["outputs"][0]["data"] == {"text/html": ["<p>t</p>"]}
    assert strip_widget_state_file(path) == 0


def test_strip_execution_metadata_keeps_everything_else(tmp_path):
    cells = [
        {"cell_type": "code", "metadata": {"execution": {"iopub.status.idle": "2026-12-02"},
                                            "tags": ["x"]}, "source": "1", "outputs": []},
        {"cell_type": "markdown", "metadata": {}, "source": "text"},
    ]  # fmt: skip
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))
    assert strip_execution_metadata(path) == 1
    stored = json.loads(path.read_text())
    assert stored["cells"][0]["metadata"] == {"tags": ["x"]}
    assert stored["cells"][1] == cells[1]
    assert "2026" not in path.read_text()
    assert strip_execution_metadata(path) == 0
