"""The pip lock, environment.yml and pyproject.toml must not drift apart."""

from __future__ import annotations

import re
import tomllib

import yaml

from helpers.paths import PROJECT_ROOT


def _names(lines: list[str]) -> set[str]:
    out = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]
        out.add(name.lower().replace("_", "-"))
    return out


def _lock() -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock line {line!r} is not pinned with =="
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_lock_pins_every_top_level_requirement():
    wanted = _names((PROJECT_ROOT / "requirements.in").read_text().splitlines())
    missing = wanted - set(_lock())
    assert not missing, f"requirements.in lists {sorted(missing)} but the lock does not pin them"


def test_package_dependencies_are_in_the_lock():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    missing = _names(project["dependencies"]) - set(_lock())
    assert not missing, f"pyproject.toml needs {sorted(missing)} which the lock does not pin"


def test_environment_yml_installs_the_same_lock():
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert pip_section == ["-r requirements.lock", "-e ."], (
        "environment.yml must install the pinned lock and the package, nothing else, "
        f"so conda and pip users get the same versions; found {pip_section}"
    )
    conda_pkgs = [
        d for d in deps if isinstance(d, str) and d.split("=")[0] not in {"python", "pip"}
    ]
    assert not conda_pkgs, f"conda packages {conda_pkgs} would bypass the lock"


def test_python_version_agrees():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"].startswith(">=3.11")


def test_lock_holds_no_machine_specific_paths():
    text = (PROJECT_ROOT / "requirements.lock").read_text()
    for marker in ("/work/", "/home/", "/root/", "/tmp/", "file://", "--index-url", "--find-links"):
        assert marker not in text, f"requirements.lock mentions {marker!r}: not portable"
