"""The HTML report: index page built from a run folder's saved files."""

from __future__ import annotations

import json
import shutil

import pandas as pd

from helpers.paths import NOTEBOOKS_DIR
from helpers.report import write_report


def test_index_links_notebooks_figures_and_headline_numbers(tmp_path):
    (tmp_path / "notebooks").mkdir()
    shutil.copy(NOTEBOOKS_DIR / "01_clean.ipynb", tmp_path / "notebooks" / "01_clean.ipynb")
    (tmp_path / "results").mkdir()
    pd.DataFrame(
        {
            "model": ["session: main", "session: main", "other"],
            "term": ["alliance_within_lag", "session_c", "alliance_within_lag"],
            "estimate": [-0.1234, -0.2, 9.0],
            "se": [0.01, 0.01, 1.0],
            "ci_low": [-0.14, -0.22, 7.0],
            "ci_high": [-0.10, -0.18, 11.0],
            "p": ["<0.001", "<0.001", "0.5"],
        }
    ).to_csv(tmp_path / "results" / "03_fixed_effects.csv")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "02_trajectories.png").write_bytes(b"png")
    (tmp_path / "manifest.json").write_text(
        json.dumps({"commit": "abc123", "parameters": {"DATA_PATH": "data/x.csv"}})
    )
    index = write_report(tmp_path)
    text = index.read_text()
    assert (tmp_path / "report" / "01_clean.html").exists()
    assert 'href="01_clean.html"' in text
    assert "-0.123" in text and "9.000" not in text  # only the main model's alliance rows
    assert "session_c" not in text
    assert "../figures/02_trajectories.png" in text
    assert "abc123" in text and "data/x.csv" in text
