"""Provenance: file hashes, package versions and the commit an output came from.

Manifests hold no wall-clock time and no absolute path, so that the same inputs
give a byte-identical manifest.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from helpers.paths import PROJECT_ROOT, relative_to_root
from helpers.safety import atomic_write_text

#: Packages whose versions are recorded in manifests and the notebooks' last cell.
KEY_PACKAGES: tuple[str, ...] = (
    "helpers",
    "numpy",
    "pandas",
    "scipy",
    "statsmodels",
    "matplotlib",
    "seaborn",
    "pandera",
    "pyreadstat",
    "pyarrow",
)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions(packages: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (``"not installed"`` where absent)."""
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    """The commit of the project checkout (with ``-dirty`` if it has changes), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def describe_files(paths: list[Path], base: Path | None = None) -> list[dict[str, str | int]]:
    """Name, size and SHA-256 of each file, sorted by name.

    Names are relative to ``base`` when given (so a manifest does not depend on
    the folder a run was written to), else to the project root.
    """
    rows = [
        {
            "path": Path(p).relative_to(base).as_posix() if base else relative_to_root(p),
            "bytes": Path(p).stat().st_size,
            "sha256": sha256_file(p),
        }
        for p in paths
    ]
    return sorted(rows, key=lambda r: str(r["path"]))


def write_manifest(
    path: Path,
    *,
    inputs: list[Path],
    outputs: list[Path],
    parameters: dict,
    include_commit: bool = True,
) -> dict:
    """Write a JSON manifest of inputs, outputs, parameters, versions and commit.

    Outputs are named relative to the manifest's folder; inputs relative to the
    project root (or by file name when outside it).

    The commit is recorded for provenance; pass ``include_commit=False`` where
    the manifest itself must be byte-identical across commits (e.g. in tests).
    The file is written atomically (:func:`helpers.safety.atomic_write_text`).
    """
    manifest = {
        "parameters": parameters,
        "inputs": describe_files(inputs),
        "outputs": describe_files(outputs, base=path.parent),
        "packages": package_versions(),
    }
    if include_commit:
        manifest["commit"] = git_commit()
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return manifest
