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


def _minimal_run(folder, notebooks):
    (folder / "notebooks").mkdir(parents=True)
    for name in notebooks:
        shutil.copy(NOTEBOOKS_DIR / "01_clean.ipynb", folder / "notebooks" / name)


def test_a_failed_notebooks_partial_copy_is_never_listed(tmp_path):
    _minimal_run(tmp_path, ["01_clean.ipynb", "02_explore.ipynb", "02_explore.failed.ipynb"])
    text = write_report(tmp_path).read_text()
    assert text.count("02 · Explore the sample") == 1
    assert "failed" not in text
    assert not (tmp_path / "report" / "02_explore.failed.html").exists()


def test_the_notebook_list_comes_from_the_manifest(tmp_path):
    _minimal_run(tmp_path, ["01_clean.ipynb", "02_explore.ipynb", "03_stale.ipynb"])
    (tmp_path / "manifest.json").write_text(
        json.dumps({"executed_notebooks": ["runs/x/notebooks/01_clean.ipynb", "02_explore.ipynb"]})
    )
    text = write_report(tmp_path).read_text()
    assert 'href="01_clean.html"' in text and 'href="02_explore.html"' in text
    assert "03_stale" not in text


def test_headline_tables_are_formatted_by_the_presentation_layer(tmp_path):
    (tmp_path / "results").mkdir(parents=True)
    pd.DataFrame(
        {
            "label": ["r"],
            "r": [0.341845],
            "n": [332],
            "n_patients": [float("nan")],
            "df": [330],
            "p": [0.0],
        }
    ).to_csv(tmp_path / "results" / "03_patient_level_r.csv")
    pd.DataFrame(
        {"label": ["Eubanks et al. (2018)", "this study"], "r": [0.29, 0.341845],
         "k": [11, 1], "N": [1314.0, float("nan")]}
    ).to_csv(tmp_path / "results" / "05_benchmark.csv", index=False)  # fmt: skip
    text = write_report(tmp_path).read_text()
    assert "<td>0.342</td>" in text and "<td>332</td>" in text and "<td>1314</td>" in text
    assert "<td>&lt; .001</td>" in text
    assert "1314.000" not in text and "0.000" not in text and ">nan<" not in text


def test_only_pages_of_notebooks_that_ran_again_are_rendered_again(tmp_path):
    import os

    _minimal_run(tmp_path, ["01_clean.ipynb", "02_explore.ipynb"])
    write_report(tmp_path)
    pages = {name: tmp_path / "report" / f"{name}.html" for name in ("01_clean", "02_explore")}
    later, latest = 4 * 10**18, 5 * 10**18  # nanoseconds: the 2090s
    for page in pages.values():
        page.write_text("kept")
        os.utime(page, ns=(later, later))  # rendered after the notebooks and the code
    notebook = tmp_path / "notebooks" / "02_explore.ipynb"
    os.utime(notebook, ns=(latest, latest))  # 02 ran again after its page
    write_report(tmp_path)
    assert pages["01_clean"].read_text() == "kept"
    assert pages["02_explore"].read_text().startswith("<!DOCTYPE html>")
