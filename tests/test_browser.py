"""The explorers in a real browser: JupyterLab and Voilà driven by headless Chromium.

A fresh cleaning run of the demo study and a copy of notebook 08 pointed at it
are put in a temporary folder; ``jupyter lab`` serves it on 127.0.0.1 with a
random token, and Playwright for Python drives Debian's ``chromium`` (through
``executable_path``: Playwright's own browser download is not used).  The test
runs every cell, moves the rupture explorer's k slider, changes the model
explorer's rater dropdown, and checks that the table and the figure of each
changed and that no cell shows an error.  Then the same notebook is served by
Voilà (``make app``) and the slider is moved again.  Screenshots of each
explorer are written to the test's temporary folder (printed with ``-s``).

Run with ``make browser-test``.  Without a Chromium binary (or without
Playwright) the test is skipped with the reason shown by pytest ``-ra``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from helpers.paths import NOTEBOOKS_DIR, PROJECT_ROOT

pytestmark = pytest.mark.browser

NOTEBOOK = NOTEBOOKS_DIR / "08_explore_interactively.ipynb"
DEMO_DIR = PROJECT_ROOT / "data" / "raw" / "demo"
BROWSER_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Jupyter refuses to run as root (CI containers) without this flag.
ROOT_FLAG = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
#: Seconds to wait for a server, a notebook run or an update of an explorer.
SERVER_TIMEOUT = 60
RUN_TIMEOUT = 90_000
UPDATE_TIMEOUT = 30_000


def chromium_path() -> str | None:
    """Debian's chromium (or ``$CHROMIUM``), if installed."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _server(command: list[str], port: int, cwd: Path, env: dict, log: Path) -> Iterator[None]:
    """Start a Jupyter server process and wait until it accepts connections."""
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"{command[2]} exited with {process.returncode}:\n{log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(f"{command[2]} did not listen on port {port}:\n{log.read_text()}")
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser_path() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "browser test skipped: no Chromium found (/usr/bin/chromium or $CHROMIUM); "
            "install it with `apt-get install -y chromium` (.ci/run does)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser test skipped: playwright is not installed (make setup installs it)")
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """A cleaning run of the demo study and notebook 08 pointed at it, in a temporary folder."""
    from helpers.pipeline import run_cleaning

    root = tmp_path_factory.mktemp("browser")
    run_cleaning(DEMO_DIR / "sessions.csv", DEMO_DIR / "study.yml", out_dir=root / "processed")
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    parameters = next(c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", []))
    parameters["source"] = (
        f"PROCESSED_DIR = {str(root / 'processed')!r}\n"
        f"TRUTH_PATH = {str(DEMO_DIR / 'truth.json')!r}\n"
    )
    (root / NOTEBOOK.name).write_text(json.dumps(notebook), encoding="utf-8")
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
        "PYTHONPATH": os.pathsep.join(
            [str(PROJECT_ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    # no news prompt over the notebook
    (root / "config" / "labconfig").mkdir(parents=True)
    (root / "config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    return {"root": root, "env": env, "shots": root / "screenshots"}


def _explorer(page, css: str):
    return page.locator(f".{css}").first


def _state(page, css: str) -> tuple[str, str]:
    """The text of an explorer's tables and the source of its figure."""
    box = _explorer(page, css)
    return box.locator(".ae-table").inner_text(), box.locator(".ae-figure").get_attribute("src")


def _wait_changed(page, css: str, before: tuple[str, str]) -> tuple[str, str]:
    deadline = time.monotonic() + UPDATE_TIMEOUT / 1000
    while time.monotonic() < deadline:
        now = _state(page, css)
        status = _explorer(page, css).locator(".ae-status").inner_text()
        if now[0] != before[0] and now[1] != before[1] and "…" not in status:
            return now
        page.wait_for_timeout(200)
    pytest.fail(f"{css}: the table and figure did not both change within {UPDATE_TIMEOUT} ms")


def _wait_text(page, css: str, text: str) -> None:
    """Wait until the explorer's tables show ``text`` and no update is pending."""
    box = _explorer(page, css)
    deadline = time.monotonic() + UPDATE_TIMEOUT / 1000
    while time.monotonic() < deadline:
        if (
            text in box.locator(".ae-table").inner_text()
            and "…" not in box.locator(".ae-status").inner_text()
        ):
            return
        page.wait_for_timeout(200)
    pytest.fail(f"{css}: the tables never showed {text!r}")


def _move_k_slider(page) -> None:
    handle = _explorer(page, "ae-ruptures").locator(".noUi-handle").first
    handle.focus()
    for _ in range(4):  # k from 2.0 to 1.0 in steps of 0.25
        handle.press("ArrowLeft")
    page.mouse.click(5, 5)  # releases the handle: the slider reports its value once


def _check_no_errors(page) -> None:
    errors = page.locator(
        "[data-mime-type='application/vnd.jupyter.stderr'], .jp-RenderedText.jp-mod-error"
    )
    assert errors.count() == 0, f"a cell shows an error: {errors.first.inner_text()[:2000]}"
    for css in ("ae-patients", "ae-ruptures", "ae-models"):
        status = _explorer(page, css).locator(".ae-status").inner_text()
        assert "error" not in status.lower(), f"{css}: {status}"
    assert "Error displaying widget" not in page.content()


def _screenshots(page, shots: Path, prefix: str) -> list[Path]:
    shots.mkdir(parents=True, exist_ok=True)
    written = []
    for css in ("ae-patients", "ae-ruptures", "ae-models"):
        path = shots / f"{prefix}_{css.removeprefix('ae-')}.png"
        _explorer(page, css).screenshot(path=str(path))
        written.append(path)
    return written


def _launch(playwright, browser_path: str):
    return playwright.chromium.launch(executable_path=browser_path, args=BROWSER_ARGS)


def test_explorers_in_jupyterlab_and_voila(browser_path, workspace):
    """Lab and Voilà start together; Voilà runs its kernel while Lab is being driven."""
    from playwright.sync_api import sync_playwright

    root, env, shots = workspace["root"], workspace["env"], workspace["shots"]
    token = secrets.token_hex(16)
    started = time.monotonic()
    timings = {}
    lab_port, voila_port = _free_port(), _free_port()
    lab = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={lab_port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None", *ROOT_FLAG,
    ]  # fmt: skip
    voila = [
        sys.executable, "-m", "voila", str(root / NOTEBOOK.name), "--no-browser",
        "--Voila.ip=127.0.0.1", f"--port={voila_port}", f"--token={token}",
    ]  # fmt: skip
    with ExitStack() as stack:
        stack.enter_context(_server(lab, lab_port, root, env, root / "lab.log"))
        stack.enter_context(_server(voila, voila_port, root, env, root / "voila.log"))
        p = stack.enter_context(sync_playwright())
        browser = _launch(p, browser_path)
        stack.callback(browser.close)
        timings["servers up"] = time.monotonic() - started

        # Voilà executes the notebook when its page is requested: ask now, check later
        app = browser.new_page(viewport={"width": 1400, "height": 1700})
        app.goto(f"http://127.0.0.1:{voila_port}/?token={token}", wait_until="commit")

        page = browser.new_page(viewport={"width": 1400, "height": 1700})
        page.goto(f"http://127.0.0.1:{lab_port}/lab/tree/{NOTEBOOK.name}?token={token}")
        page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
            timeout=RUN_TIMEOUT,
        )
        timings["lab open"] = time.monotonic() - started
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        for css in ("ae-patients", "ae-ruptures", "ae-models"):
            page.locator(f".{css} .ae-figure[src]").first.wait_for(timeout=RUN_TIMEOUT)
        page.wait_for_function(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
            " === 'idle'",
            timeout=RUN_TIMEOUT,
        )
        timings["lab cells run"] = time.monotonic() - started
        _check_no_errors(page)
        written = _screenshots(page, shots, "lab")

        before = _state(page, "ae-ruptures")
        assert "precision" in before[0]
        _move_k_slider(page)
        _wait_changed(page, "ae-ruptures", before)
        _wait_text(page, "ae-ruptures", "drop >= 1 SD")  # every key press is one update

        before = _state(page, "ae-models")
        _explorer(page, "ae-models").locator("select").nth(1).select_option("therapist")
        after = _wait_changed(page, "ae-models", before)
        assert "alliance_therapist_within_lag" in after[0]
        assert "likelihood" in after[0].lower()  # a test, or why there is none
        _check_no_errors(page)
        written += _screenshots(page, shots, "lab_changed")
        timings["lab interactions"] = time.monotonic() - started

        for css in ("ae-patients", "ae-ruptures", "ae-models"):
            app.locator(f".{css} .ae-figure[src]").first.wait_for(timeout=RUN_TIMEOUT)
        timings["voila page"] = time.monotonic() - started
        before = _state(app, "ae-ruptures")
        _move_k_slider(app)
        _wait_changed(app, "ae-ruptures", before)
        _wait_text(app, "ae-ruptures", "drop >= 1 SD")
        assert "Traceback" not in app.content()
        written += _screenshots(app, shots, "voila")
        timings["voila interactions"] = time.monotonic() - started

    print("\nscreenshots:\n" + "\n".join(f"  {p}" for p in written))
    print("elapsed (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    assert all(p.stat().st_size > 5000 for p in written)
