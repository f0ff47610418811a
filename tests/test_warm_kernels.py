"""Warm kernels (helpers.warm_kernels, helpers.kernel_manager): forked kernels behave as fresh ones.

The kernels here are real: a warm-kernel server process, jupyter_client's
kernel manager, the launcher, the forked ipykernel.  Whether a kernel is warm
is read inside it: a fresh kernel has not imported ``helpers.plots`` before
its first cell, a forked one has (the server preloaded it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import kernel_manager, runner
from helpers.kernel_manager import SuiteKernelManager
from helpers.warm_kernels import _refusal, available, warm_kernel_server

pytestmark = pytest.mark.skipif(not available(), reason="warm kernels need os.fork")

WARM = "import sys; print('helpers.plots' in sys.modules)"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Path, dict[str, str]]]:
    """A warm-kernel server as the runner starts it, and the environment it imported under."""
    environment = {**os.environ, **runner.KERNEL_ENVIRONMENT}
    with warm_kernel_server(runner.KERNEL_ENVIRONMENT) as socket_path:
        yield socket_path, environment


@contextmanager
def kernel(tmp_path: Path, socket_path: Path | str, environment: dict[str, str]):
    """A started kernel (through the launcher when ``socket_path``) and a blocking client."""
    settings = {"warm_socket": str(socket_path), "transport": "ipc", "ip": str(tmp_path / "k")}
    from traitlets.config import Config

    manager = SuiteKernelManager(
        kernel_name="python3", config=Config({"SuiteKernelManager": settings})
    )
    asyncio.run(manager.start_kernel(env=environment, cwd=str(tmp_path)))
    client = manager.blocking_client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield manager, client
    finally:
        client.stop_channels()
        asyncio.run(manager.shutdown_kernel(now=True))


def run(client, code: str, timeout: float = 60) -> tuple[str, str]:
    """Execute ``code``; return its printed text and the reply's status ('ok' or the error name)."""
    text: list[str] = []

    def collect(message: dict) -> None:
        if message["header"]["msg_type"] == "stream":
            text.append(message["content"]["text"])

    reply = client.execute_interactive(code, output_hook=collect, timeout=timeout)
    content = reply["content"]
    status = content["status"] if content["status"] == "ok" else content.get("ename", "error")
    return "".join(text), status


# ---- what the server refuses -------------------------------------------------------------


def test_the_server_forks_only_an_ipykernel_of_its_own_interpreter_and_environment():
    command = [sys.executable, "-m", "ipykernel_launcher", "-f", "c.json"]
    environment = {"PATH": "/bin", "OMP_NUM_THREADS": "1"}
    same = {**environment, "JPY_PARENT_PID": "42", "JPY_SESSION_NAME": "x"}
    assert _refusal({"argv": command, "env": same, "cwd": "/"}, environment) == ""
    assert "ipykernel" in _refusal(
        {"argv": [sys.executable, "script.py"], "env": same, "cwd": "/"}, environment
    )
    other = ["/usr/bin/python3.9", *command[1:]]
    assert "interpreter" in _refusal({"argv": other, "env": same, "cwd": "/"}, environment)
    changed = {**same, "OMP_NUM_THREADS": "4"}
    assert "OMP_NUM_THREADS" in _refusal({"argv": command, "env": changed, "cwd": "/"}, environment)
    missing = {"PATH": "/bin"}
    assert "OMP_NUM_THREADS" in _refusal({"argv": command, "env": missing, "cwd": "/"}, environment)
    for broken in ({}, {"argv": "python", "env": same, "cwd": "/"}, {"argv": command, "env": same}):
        assert _refusal(broken, environment) == "malformed request"


# ---- forked kernels ----------------------------------------------------------------------


def test_a_forked_kernel_has_the_imports_and_the_kernel_s_own_folder_and_environment(
    server, tmp_path
):
    socket_path, environment = server
    with kernel(tmp_path, socket_path, environment) as (_, client):
        assert run(client, WARM) == ("True\n", "ok")
        code = (
            "import os, pandas as pd\n"
            "print(os.getcwd(), os.environ['JPY_PARENT_PID'], pd.get_option('display.max_columns'))"
        )
        assert run(client, code) == (f"{tmp_path} {os.getpid()} 20\n", "ok")
        assert run(client, "print(type(get_ipython()).__name__)") == ("ZMQInteractiveShell\n", "ok")


def test_a_forked_kernel_gives_the_outputs_of_a_fresh_one(tmp_path):
    """Text, HTML and figure outputs of a notebook are identical, warm or fresh.

    A frame of 30 columns: pandas decides at import whether it runs in a kernel
    (20 columns shown) or a terminal, so a server importing pandas outside a kernel
    would show another text form.
    """
    from _notebooks import write_notebook

    notebook = tmp_path / "nb.ipynb"
    write_notebook(
        notebook,
        WARM,
        "import numpy as np, pandas as pd\n"
        "pd.DataFrame(np.arange(90).reshape(3, 30), columns=[f'c{i}' for i in range(30)])",
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.show()",
        "import warnings\nwarnings.warn('careful')\nprint('done')",
    )
    outputs = []
    with warm_kernel_server(runner.KERNEL_ENVIRONMENT) as socket_path:  # this test's environment
        for warm in (None, socket_path):
            target = tmp_path / f"out-{bool(warm)}.ipynb"
            runner._papermill(notebook, target, {}, warm)
            first, *cells = json.loads(target.read_text())["cells"][1:]
            assert first["outputs"][0]["text"] == [f"{bool(warm)}\n"]  # warm with the server only
            text = json.dumps([cell["outputs"] for cell in cells])
            outputs.append(re.sub(r"ipykernel_\d+", "ipykernel_PID", text))  # any two kernels
    fresh, forked = outputs
    assert forked == fresh
    assert "image/png" in fresh and "UserWarning: careful" in fresh


@pytest.mark.slow  # waits for a kernel to start and be interrupted
def test_an_interrupt_reaches_the_forked_kernel(server, tmp_path):
    socket_path, environment = server
    with kernel(tmp_path, socket_path, environment) as (manager, client):
        started = tmp_path / "started"
        code = f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(60)"
        request = client.execute(code)
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:  # an idle kernel ignores it
            time.sleep(0.02)
        asyncio.run(manager.interrupt_kernel())
        reply = client.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != request:  # e.g. wait_for_ready's reply
            reply = client.get_shell_msg(timeout=30)
        assert reply["content"].get("ename") == "KeyboardInterrupt", reply
        assert run(client, "print(1 + 1)") == ("2\n", "ok")  # the kernel lives on


@pytest.mark.slow  # waits for a killed kernel
def test_a_forked_kernel_dies_with_its_launcher(server, tmp_path):
    """jupyter_client kills a kernel with SIGKILL, which the launcher cannot pass on."""
    socket_path, environment = server
    with kernel(tmp_path, socket_path, environment) as (manager, client):
        text, _ = run(client, "import os; print(os.getpid())")
        pid = int(text)
        assert pid != manager.provisioner.process.pid
        os.kill(manager.provisioner.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow  # starts an ordinary kernel
def test_a_kernel_with_another_environment_starts_the_ordinary_way(server, tmp_path):
    socket_path, environment = server
    other = {**environment, "HELPERS_TEST_SETTING": "1"}
    with kernel(tmp_path, socket_path, other) as (_, client):
        assert run(client, WARM) == ("False\n", "ok")
        assert run(client, "import os; print(os.environ['HELPERS_TEST_SETTING'])") == ("1\n", "ok")


@pytest.mark.slow  # waits 2 s for a server that never comes
def test_without_a_server_the_launcher_starts_the_ordinary_kernel(tmp_path):
    with kernel(tmp_path, tmp_path / "no-server.sock", dict(os.environ)) as (_, client):
        assert run(client, WARM) == ("False\n", "ok")


def test_the_server_is_gone_after_the_block():
    with warm_kernel_server({}) as socket_path:
        deadline = time.monotonic() + 30
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert socket_path.exists()
    assert not socket_path.exists()
    assert not socket_path.parent.exists()


# ---- the kernel manager's shutdown --------------------------------------------------------


@pytest.mark.parametrize("cell_running", [False, True])
def test_shutdown_interrupts_the_kernel_only_while_a_cell_runs(tmp_path, cell_running, monkeypatch):
    """jupyter_client interrupts before every shutdown; an idle kernel is not interrupted.

    (An idle ipykernel ignores SIGINT, so the interrupts are counted at jupyter_client.)
    """
    from jupyter_client.manager import AsyncKernelManager

    interrupts = []
    original = AsyncKernelManager._async_interrupt_kernel

    async def counted(self):
        interrupts.append(self.kernel_id)
        await original(self)

    with kernel(tmp_path, "", dict(os.environ)) as (manager, client):
        assert run(client, "x = 1")[1] == "ok"
        monkeypatch.setattr(AsyncKernelManager, "_async_interrupt_kernel", counted)
        monkeypatch.setattr(kernel_manager, "_cell_running", cell_running)
        asyncio.run(manager.shutdown_kernel())
        assert len(interrupts) == int(cell_running)
        assert not asyncio.run(manager.is_alive())


def test_the_runner_tells_the_kernel_manager_when_a_cell_runs(tmp_path, monkeypatch):
    """papermill passes nbclient the hooks: set as each cell starts, unset when it has run."""
    from _notebooks import write_notebook

    notebook = tmp_path / "nb.ipynb"
    write_notebook(notebook, "print('cell')")
    calls = []

    def recorded(name, hook):
        def call(**kwargs):
            hook(**kwargs)
            calls.append((name, kernel_manager._cell_running))

        return call

    hooks = {name: recorded(name, hook) for name, hook in kernel_manager.CELL_HOOKS.items()}
    monkeypatch.setattr(kernel_manager, "CELL_HOOKS", hooks)
    runner._papermill(notebook, tmp_path / "out.ipynb", {})
    cell = [("on_cell_execute", True), ("on_cell_executed", False)]
    assert calls == cell * 2  # the parameters cell and the print cell


def test_a_server_that_cannot_start_says_so_and_serves_nothing(tmp_path, capsys):
    from helpers.warm_kernels import serve

    assert serve(str(tmp_path / "missing-folder" / "kernels.sock")) == 0
    assert "notebooks start their own kernels" in capsys.readouterr().err


def test_a_socket_path_too_long_for_linux_means_ordinary_kernels(monkeypatch):
    from helpers import warm_kernels

    monkeypatch.setattr(warm_kernels, "MAX_SOCKET_PATH", 5)
    with warm_kernel_server({}) as socket_path:
        assert socket_path is None
