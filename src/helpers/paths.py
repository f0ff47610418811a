"""Project folders, resolved from the location of this file.

Every path the suite writes or reads by default is derived here, so notebooks
and scripts never hard-code absolute paths and never edit ``sys.path``.
Importing this module prints nothing and creates nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Root of the compendium (the folder holding ``pyproject.toml``).
PROJECT_ROOT: Path = Path(__file__).resolve().parents[2]
DATA_DIR: Path = PROJECT_ROOT / "data"
RAW_DIR: Path = DATA_DIR / "raw"
DEMO_DIR: Path = RAW_DIR / "demo"
PROCESSED_DIR: Path = DATA_DIR / "processed"
RESULTS_DIR: Path = PROJECT_ROOT / "results"
FIGURES_DIR: Path = PROJECT_ROOT / "figures"
NOTEBOOKS_DIR: Path = PROJECT_ROOT / "notebooks"


def relative_to_root(path: str | Path) -> str:
    """Return ``path`` relative to the project root when it lies inside it.

    Used whenever a path is written into an output (manifest, ledger, report),
    so outputs carry no machine-specific absolute paths.  Paths outside the
    project are reduced to their file name.

    >>> relative_to_root(PROJECT_ROOT / "data" / "raw" / "demo" / "sessions.csv")
    'data/raw/demo/sessions.csv'
    """
    p = Path(path).resolve()
    try:
        return p.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return p.name


def display_path(path: str | Path | None) -> str | None:
    """A file name as written into reports: relative to the project root, never absolute.

    Parameters
    ----------
    path : str or pathlib.Path or None
        :class:`~pathlib.Path` objects and absolute strings go through
        :func:`helpers.paths.relative_to_root`; relative strings are kept as
        given (with forward slashes).

    Returns
    -------
    str or None
    """
    if path is None:
        return None
    if isinstance(path, Path) or os.path.isabs(path):
        return relative_to_root(path)
    return Path(path).as_posix()


def resolve_path(path: str | Path) -> Path:
    """Resolve a path given in a notebook parameter or on the command line.

    Absolute paths are returned as they are; relative paths are taken relative
    to the project root (not to the notebook's folder), so the same parameter
    values work from JupyterLab, papermill and the command line.

    >>> resolve_path("data/raw/demo/sessions.csv") == DEMO_DIR / "sessions.csv"
    True
    """
    p = Path(path)
    return p if p.is_absolute() else PROJECT_ROOT / p
