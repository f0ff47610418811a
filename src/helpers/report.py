"""An HTML report of a run, readable without running anything (``make report``).

:func:`write_report` renders each executed notebook of ``<out>/notebooks/`` to
HTML in ``<out>/report/`` and writes ``index.html``: the study's headline
results (read from the saved result tables, not recomputed), every figure, and
links to the rendered notebooks and the run's manifest.  Tables are shown
through :func:`helpers.present.format_table`, like the notebooks show them.
The notebooks listed are those of the latest successful run: the manifest's
``executed_notebooks`` when the run has a manifest, never the partly executed
copies (``*.failed.ipynb``) failed notebooks leave behind.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.paths import resolve_path
from helpers.present import format_table
from helpers.runner import is_failed_copy
from helpers.safety import atomic_write_text, run_lock

_TITLES = {
    "01": "Load, validate, score and clean",
    "02": "Explore the sample",
    "03": "Mixed-effects models of alliance and outcome",
    "04": "Ruptures and repair",
    "05": "Moderators and the meta-analytic benchmark",
    "06": "Figures",
    "08": "Explore interactively (static view)",
}

_CSS = """
body { font-family: DejaVu Sans, Helvetica, Arial, sans-serif; max-width: 60rem;
       margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; }
.note { color: #555; font-size: 0.9rem; }
"""


def _table_html(table: pd.DataFrame) -> str:
    show_index = not isinstance(table.index, pd.RangeIndex)
    return format_table(table).to_html(border=0, index=show_index)


def headline_tables(
    results_dir: Path, listed: set[Path] | None = None
) -> list[tuple[str, pd.DataFrame]]:
    """The tables the index page shows, where the run produced them.

    ``listed``, when given, holds the files the run wrote (:func:`run_files`):
    a result table left in the folder by an earlier run is not shown.
    """

    def produced(path: Path) -> bool:
        return path.exists() and (listed is None or path in listed)

    shown: list[tuple[str, pd.DataFrame]] = []
    fixed = results_dir / "03_fixed_effects.csv"
    if produced(fixed):
        table = pd.read_csv(fixed, index_col=0)
        main = table.loc[table["model"] == "session: main"].set_index("term")
        keep = [t for t in ("alliance_within_lag", "alliance_between_c") if t in main.index]
        if keep:
            shown.append(
                (
                    "Session-level model: alliance and next-session symptoms",
                    main.loc[keep, ["estimate", "se", "ci_low", "ci_high", "p"]],
                )
            )
    r_file = results_dir / "03_patient_level_r.csv"
    if produced(r_file):
        table = pd.read_csv(r_file, index_col=0).reset_index(drop=True)
        shown.append(("Patient-level alliance–outcome correlation", table))
    bench = results_dir / "05_benchmark.csv"
    if produced(bench):
        shown.append(("Beside the meta-analyses", pd.read_csv(bench)))
    return shown


def report_notebooks(out: Path, manifest: Mapping[str, Any]) -> list[Path]:
    """The executed notebooks the report renders and lists, in numbered order.

    Parameters
    ----------
    out : Path
        The run's output folder.
    manifest : mapping
        The run's manifest (empty if it has none).  Its ``executed_notebooks``
        names the notebooks of the latest successful run; without it, every
        ``NN_name.ipynb`` of ``<out>/notebooks`` is taken.

    Returns
    -------
    list of Path
        Existing executed notebooks, never a failed notebook's partial copy.
    """
    folder = out / "notebooks"
    listed = manifest.get("executed_notebooks")
    if listed is None:
        candidates = list(folder.glob("[0-9][0-9]_*.ipynb"))
    else:
        candidates = [folder / Path(p).name for p in listed]
    return sorted(p for p in candidates if p.is_file() and not is_failed_copy(p))


def run_files(out: Path, manifest: Mapping[str, Any]) -> set[Path] | None:
    """The output files the manifest lists as the run's, or ``None`` when it lists none.

    A manifest without ``outputs`` (or no manifest) leaves the report to take
    every file of the run folder, as before manifests listed outputs.
    """
    listed = manifest.get("outputs")
    if listed is None:
        return None
    return {out / str(entry["path"]) for entry in listed}


def page_is_current(page: Path, notebook: Path) -> bool:
    """Whether a notebook's HTML page is newer than the notebook and the code that renders it.

    ``make all`` renders the report after every run; only the pages of notebooks
    that ran again (or of a changed :mod:`helpers.report` or
    :mod:`helpers.notebook_files`) are rendered again.
    """
    from helpers import notebook_files

    if not page.is_file():
        return False
    sources = [notebook, Path(__file__), Path(notebook_files.__file__)]
    return page.stat().st_mtime_ns > max(p.stat().st_mtime_ns for p in sources)


def write_report(out: str | Path) -> Path:
    """Render a run's executed notebooks and write ``<out>/report/index.html``.

    Only the figures and result tables the manifest lists as the run's
    outputs are shown (:func:`run_files`); every page is written atomically
    while the run folder's lock is held (:mod:`helpers.safety`).
    """
    out = resolve_path(out)
    with run_lock(out, "report"):
        return _write_report(out)


def _write_report(out: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    from helpers.notebook_files import strip_widget_state

    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    listed = run_files(out, manifest)
    exporter = HTMLExporter()
    links = []
    for notebook in report_notebooks(out, manifest):
        target = report / f"{notebook.stem}.html"
        if not page_is_current(target, notebook):
            # the explorers' live widgets carry patient codes in their state: the report shows
            # their static form only (helpers.notebook_files.strip_widget_state)
            executed = nbformat.read(str(notebook), as_version=4)
            strip_widget_state(executed)
            body, _ = exporter.from_notebook_node(executed)
            atomic_write_text(target, body)
        title = _TITLES.get(notebook.name[:2], notebook.stem)
        number = notebook.name[:2]
        links.append(f'<li><a href="{target.name}">{number} · {html.escape(title)}</a></li>')

    params = manifest.get("parameters", {})
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<title>Alliance–outcome analysis report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Alliance–outcome analysis</h1>",
        f"<p class='note'>Data: <code>{html.escape(str(params.get('DATA_PATH', '?')))}</code>; "
        f"config: <code>{html.escape(str(params.get('CONFIG_PATH', '?')))}</code>; "
        f"commit <code>{html.escape(str(manifest.get('commit', 'unknown')))}</code>. "
        "Every number below is read from the run's saved result tables.</p>",
        "<h2>Headline results</h2>",
    ]
    for title, table in headline_tables(out / "results", listed):
        parts += [f"<h3>{html.escape(title)}</h3>", _table_html(table)]
    parts += ["<h2>The analysis, notebook by notebook</h2>", "<ul>", *links, "</ul>"]
    figures = sorted(p for p in (out / "figures").glob("*.png") if listed is None or p in listed)
    if figures:
        parts.append("<h2>Figures</h2>")
        for fig in figures:
            name = html.escape(fig.stem.replace("_", " "))
            parts.append(
                f"<figure><img src='../figures/{fig.name}' alt='{name}'>"
                f"<figcaption>{name} (also as <a href='../figures/{fig.stem}.svg'>SVG</a>, "
                f"<a href='../figures/{fig.stem}.pdf'>PDF</a>)</figcaption></figure>"
            )
    parts += [
        "<h2>Provenance</h2>",
        "<p>Input and output SHA-256, parameters and package versions: "
        "<a href='../manifest.json'>manifest.json</a>.</p>",
        "</body></html>",
    ]
    index = report / "index.html"
    atomic_write_text(index, "\n".join(parts) + "\n")
    return index
