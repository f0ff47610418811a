"""Warm notebook kernels: one process with the suite's imports done, forked for each notebook.

Each notebook of ``make all`` used to start a fresh Python kernel and spend
2–4 s importing pandas, SciPy, matplotlib, numba and the helpers before its
first line of analysis: about a third of the suite's CPU time.  During a run
of several notebooks, :func:`warm_kernel_server` starts one *server*
process that does those imports once (:data:`PRELOAD`) and then forks a
kernel for each notebook.  A forked kernel starts with the imports in its
memory (copy on write), so its import cell takes milliseconds.

How a notebook's kernel reaches the server: the runner's kernel manager
(:class:`helpers.kernel_manager.SuiteKernelManager`) starts
``python -m helpers.warm_kernels launch SOCKET -- <kernel command>``
instead of the kernel command.  That *launcher* sends the server the kernel
command, its working folder, its environment and its standard streams
(file descriptors over the Unix socket); the server forks, and the child
becomes the kernel exactly as ``python -m ipykernel_launcher`` would.  The
launcher stays as the kernel's stand-in for jupyter_client: it passes on
every signal (an interrupt is SIGINT to the kernel), and ends with the
kernel's exit status.  If the launcher dies, even by SIGKILL, the server
kills its kernel.

A forked kernel is the same as a fresh one where it matters:

* the server refuses (and the launcher starts an ordinary kernel) unless the
  kernel command is this interpreter's ``-m ipykernel_launcher`` and the
  kernel's environment equals the server's, apart from jupyter_client's
  per-kernel variables (:data:`PER_KERNEL`), so settings read at import
  (thread counts, the hash seed, ``TQDM_*``) are the kernel's own;
* modules whose import needs a running kernel (the inline matplotlib
  backend, ipywidgets) are never preloaded, and the server checks so;
* the server forks only while it has a single thread.

The socket lives in a new temporary folder only this user can open, and the
server reads at most :data:`MAX_REQUEST_BYTES` per request, refusing anything
malformed.

Whenever the server is missing, still starting, broken or refuses, the
launcher runs the ordinary kernel command instead: warm kernels make a run
faster, never different, and never stop it.  Linux only (:func:`available`).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

#: Modules imported once by the server: everything the numbered notebooks import.
PRELOAD: tuple[str, ...] = (
    "numpy",
    "pandas",
    "scipy.stats",
    "matplotlib.pyplot",
    "IPython",
    "ipykernel.kernelapp",
    *(
        f"helpers.{name}"
        for name in (
            "agreement associations config effects explore explorer features intervals "
            "meta_analysis models moderators narrative paths pipeline plots power "
            "predictions present profile provenance ruptures safety"
        ).split()
    ),
)

#: Modules whose import sets things up for the running kernel (the inline backend
#: hooks into IPython, ipywidgets registers its comm target), so a preloaded copy
#: would miss the kernel: the server refuses to serve if any of them was imported.
#: (seaborn is not preloaded for this reason: it imports ipywidgets when it can.)
NEVER_PRELOADED: tuple[str, ...] = ("matplotlib_inline", "ipywidgets")

#: Environment variables jupyter_client sets for each kernel; all others must equal the server's.
PER_KERNEL: frozenset[str] = frozenset({"JPY_PARENT_PID", "JPY_SESSION_NAME"})

#: The matplotlib backend ipykernel chooses for its kernels (set before matplotlib is imported).
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

#: Largest request (kernel command and environment) the server reads, in bytes.
MAX_REQUEST_BYTES = 1 << 20

#: Longest Unix socket path Linux accepts (108 bytes with the final NUL); a longer
#: temporary folder ($TMPDIR) means no warm kernels.
MAX_SOCKET_PATH = 107

#: Seconds a launcher waits for the server's socket to appear.
CONNECT_WAIT_SECONDS = 2.0

#: Signals a launcher passes on to its kernel.
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def available() -> bool:
    """Whether this platform forks warm kernels: Linux (macOS's system libraries are not
    safe to use in a forked child, and Windows has no fork)."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def launcher_command(socket_path: str | Path, kernel_command: Sequence[str]) -> list[str]:
    """The command that runs ``kernel_command`` as a kernel forked by the server at ``socket_path``.

    >>> launcher_command("/tmp/w/s", ["python", "-m", "ipykernel_launcher", "-f", "c.json"])[3:]
    ['launch', '/tmp/w/s', '--', 'python', '-m', 'ipykernel_launcher', '-f', 'c.json']
    """
    return [
        sys.executable,
        "-m",
        "helpers.warm_kernels",
        "launch",
        str(socket_path),
        "--",
        *kernel_command,
    ]


@contextmanager
def warm_kernel_server(environment: Mapping[str, str]) -> Iterator[Path | None]:
    """Run a warm-kernel server for the duration of the block; yield its socket path.

    ``environment`` is added to this process's environment for the server:
    pass the variables the kernels will get (the runner's ``KERNEL_ENVIRONMENT``),
    so the forked kernels' environment equals the one the server imported under.
    Yields ``None`` (kernels start the ordinary way) where :func:`available` is false.
    """
    folder = Path(tempfile.mkdtemp(prefix="helpers-warm-"))
    path = folder / "kernels.sock"
    if not available() or len(os.fsencode(path)) > MAX_SOCKET_PATH:
        folder.rmdir()
        yield None
        return
    server = subprocess.Popen(
        [sys.executable, "-m", "helpers.warm_kernels", "serve", str(path)],
        env={**os.environ, **environment},
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C at the terminal reaches the runner, not the server
    )
    try:
        yield path
    finally:
        _stop_server(server)
        shutil.rmtree(folder, ignore_errors=True)


def _stop_server(server: subprocess.Popen) -> None:
    """SIGTERM the server (it stops its kernels), then SIGKILL after 10 s."""
    if server.poll() is None:
        server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# ---- the server --------------------------------------------------------------------------


def serve(socket_path: str) -> int:
    """The server's main loop (``python -m helpers.warm_kernels serve SOCKET``).

    Binds the socket first, so launchers can connect (and wait in the
    backlog) while the imports run, then preloads and serves until SIGTERM or
    until the process that started it has gone.  Returns the exit status.
    """
    parent = os.getppid()
    baseline = dict(os.environ)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(socket_path)
        listener.listen(64)
        _preload()
    except Exception as err:  # any failure: the launchers start ordinary kernels
        note = f"warm kernels unavailable ({type(err).__name__}: {err})"
        print(f"{note}; notebooks start their own kernels", file=sys.stderr)
        listener.close()
        return 0
    signal.signal(signal.SIGTERM, _exit_on_signal)
    _serve_forever(listener, baseline, parent)
    return 0


def _exit_on_signal(signum: int, frame: object) -> NoReturn:
    raise SystemExit(0)


class _KernelShellStandIn:
    """What ``get_ipython()`` returns to a library that asks at import whether it runs in a kernel.

    pandas does: ``display.max_columns`` is 20 in a Jupyter kernel and 0
    (fit the terminal) elsewhere, so a frame's text form depends on it.  Any
    other use of the stand-in fails the preload, and kernels start the
    ordinary way.
    """

    kernel = None


def _preload() -> None:
    """Import :data:`PRELOAD` as in a kernel; check nothing kernel-bound came along.

    As in a kernel: ``sys.path`` without the working folder, the inline
    matplotlib backend chosen (not loaded), and a ``get_ipython`` builtin
    (:class:`_KernelShellStandIn`) while the modules are imported.
    """
    import builtins
    import importlib

    if sys.path and Path(sys.path[0] or ".").resolve() == Path.cwd():
        del sys.path[0]  # as ipykernel_launcher does; IPython adds "" back in the kernel
    os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)
    stand_in = _KernelShellStandIn()
    builtins.get_ipython = lambda: stand_in  # type: ignore[attr-defined]
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    finally:
        del builtins.get_ipython  # type: ignore[attr-defined]
    loaded = [m for m in NEVER_PRELOADED if m in sys.modules]
    if loaded:
        raise RuntimeError(
            f"preloading imported {', '.join(loaded)}, which must load in the kernel"
        )
    if threading.active_count() != 1:
        raise RuntimeError(
            f"preloading started {threading.active_count() - 1} thread(s); forking is unsafe"
        )


@dataclass
class _Server:
    """The server's state: its socket, the kernels it forked, and what a kernel must match."""

    listener: socket.socket
    baseline: Mapping[str, str]
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    kernels: dict[int, socket.socket] = field(default_factory=dict)  # pid -> launcher connection
    wake: tuple[socket.socket, socket.socket] = field(default_factory=socket.socketpair)

    def sockets(self) -> list[socket.socket]:
        """Every socket the server holds (a forked kernel closes them all)."""
        return [self.listener, *self.wake, *self.kernels.values()]


def _serve_forever(listener: socket.socket, baseline: Mapping[str, str], parent: int) -> None:
    """Accept launchers, fork kernels, report their exits; kill a kernel whose launcher went."""
    server = _Server(listener, baseline)
    server.selector.register(listener, selectors.EVENT_READ)
    _wake_on_child_exit(server)
    pid = os.getpid()
    try:
        while os.getppid() == parent:
            for key, _ in server.selector.select(timeout=0.5):
                if key.fileobj is listener:
                    _accept(server)
                elif key.fileobj is server.wake[0]:
                    server.wake[0].recv(4096)
                else:
                    _launcher_went(server, key.fileobj)  # type: ignore[arg-type]
            _reap(server)
    finally:
        if os.getpid() == pid:  # never in a forked kernel (they end with os._exit)
            for kernel in server.kernels:
                _signal(kernel, signal.SIGTERM)


def _wake_on_child_exit(server: _Server) -> None:
    """Make the server's wake socket readable when a kernel ends (SIGCHLD).

    So a kernel's exit reaches its launcher at once, not at the next poll.
    """
    readable, writable = server.wake
    for end in server.wake:
        end.setblocking(False)
    signal.set_wakeup_fd(writable.fileno())
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    server.selector.register(readable, selectors.EVENT_READ)


def _accept(server: _Server) -> None:
    """Read one launcher's request; fork its kernel, or tell the launcher why not."""
    connection, _ = server.listener.accept()
    try:
        request, fds = _read_request(connection)
    except (OSError, ValueError):
        connection.close()
        return
    reason = _refusal(request, server.baseline)
    if reason:
        _send_line(connection, f"declined {reason}")
        connection.close()
        _close_all(fds)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        server.selector.close()
        for sock in [connection, *server.sockets()]:
            sock.close()
        _become_kernel(request, fds)
    _close_all(fds)
    server.kernels[pid] = connection
    server.selector.register(connection, selectors.EVENT_READ)
    _send_line(connection, f"pid {pid}")


def _read_request(connection: socket.socket) -> tuple[dict, list[int]]:
    """A length-prefixed JSON request and the three standard-stream descriptors sent with it.

    Raises ``ValueError`` or ``OSError`` (with the descriptors closed) for anything else.
    """
    connection.settimeout(5.0)
    data, fds, _, _ = socket.recv_fds(connection, 65536, 3)
    try:
        if len(data) < 4 or len(fds) != 3:
            raise ValueError("malformed request")
        (size,) = struct.unpack("!I", data[:4])
        if size > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
        body = data[4:]
        while len(body) < size:
            chunk = connection.recv(size - len(body))
            if not chunk:
                raise ValueError("truncated request")
            body += chunk
        request = json.loads(body)
        if not isinstance(request, dict):
            raise ValueError("malformed request")
    except (OSError, ValueError):
        _close_all(fds)
        raise
    connection.settimeout(None)
    return request, list(fds)


def _refusal(request: Mapping, baseline: Mapping[str, str]) -> str:
    """Why a forked kernel would differ from the requested one ("" when it would not)."""
    command, environment, folder = request.get("argv"), request.get("env"), request.get("cwd")
    if not (
        isinstance(command, list)
        and all(isinstance(a, str) for a in command)
        and isinstance(environment, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in environment.items())
        and isinstance(folder, str)
    ):
        return "malformed request"
    if len(command) < 3 or command[1:3] != ["-m", "ipykernel_launcher"]:
        return "not an ipykernel command"
    if os.path.abspath(command[0]) != os.path.abspath(sys.executable):
        return "another interpreter"
    differ = sorted(
        name
        for name in set(environment) | set(baseline)
        if name not in PER_KERNEL and environment.get(name) != baseline.get(name)
    )
    return f"environment differs in {', '.join(differ[:5])}" if differ else ""


def _become_kernel(request: Mapping, fds: list[int]) -> NoReturn:
    """In the forked child: take the launcher's streams, folder and environment; run the kernel.

    ipykernel read ``JPY_PARENT_PID`` when the server imported it (a class
    attribute's default), so the kernel's own value is passed here.
    """
    from ipykernel import kernelapp

    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [_launcher_file(), *request["argv"][3:]]
    parent_handle = int(os.environ.get("JPY_PARENT_PID") or 0)
    try:
        kernelapp.IPKernelApp.launch_instance(parent_handle=parent_handle)
    except SystemExit as end:
        _end_kernel(end.code)
    except KeyboardInterrupt:  # interrupted outside a cell: the run that owns it is stopping
        _end_kernel(128 + signal.SIGINT)
    except BaseException:  # as a fresh kernel would: the traceback on stderr, status 1
        import traceback

        traceback.print_exc()
        _end_kernel(1)
    _end_kernel(0)


def _end_kernel(code: object) -> NoReturn:
    """End a forked kernel: atexit handlers and flushed streams, as at any exit, then ``os._exit``.

    A fresh kernel would also tear down every module, which with the
    suite's imports takes about half a second and changes nothing; and
    ``os._exit`` keeps the exit from unwinding through the server's frames.
    """
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    os._exit(code)


def _launcher_file() -> str:
    """``sys.argv[0]`` of a kernel started as ``python -m ipykernel_launcher``."""
    import importlib.util

    spec = importlib.util.find_spec("ipykernel_launcher")
    return spec.origin if spec and spec.origin else "ipykernel_launcher"


def _launcher_went(server: _Server, connection: socket.socket) -> None:
    """A launcher's connection is readable: if it closed, kill its kernel."""
    try:
        data = connection.recv(1)
    except OSError:
        data = b""
    if data:
        return
    server.selector.unregister(connection)
    for pid, owner in server.kernels.items():
        if owner is connection:
            _signal(pid, signal.SIGKILL)


def _reap(server: _Server) -> None:
    """Collect kernels that ended; tell their launchers the exit status."""
    while server.kernels:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = server.kernels.pop(pid, None)
        if connection is None:
            continue
        _send_line(connection, f"exit {os.waitstatus_to_exitcode(status)}")
        if connection.fileno() in server.selector.get_map():
            server.selector.unregister(connection)
        connection.close()


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _send_line(connection: socket.socket, line: str) -> None:
    try:
        connection.sendall((line + "\n").encode())
    except OSError:
        pass


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# ---- the launcher ------------------------------------------------------------------------


def launch(socket_path: str, kernel_command: list[str]) -> NoReturn:
    """Have the server fork the kernel and stand in for it; else run ``kernel_command`` itself."""
    connection = _request_kernel(socket_path, kernel_command)
    reply = _read_line(connection) if connection else ""
    if not reply.startswith("pid "):
        if connection:
            connection.close()
        os.execv(kernel_command[0], kernel_command)  # an ordinary kernel
    pid = int(reply.split()[1])
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, lambda s, _frame: _signal(pid, s))
    status = _read_line(connection)
    code = int(status.split()[1]) if status.startswith("exit ") else 1
    if code < 0:  # ended by a signal: end the same way, so jupyter_client sees the same status
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    raise SystemExit(code)


def _request_kernel(socket_path: str, kernel_command: list[str]) -> socket.socket | None:
    """Connect to the server and send the request; ``None`` if there is no server to ask."""
    deadline = time.monotonic() + CONNECT_WAIT_SECONDS
    while not os.path.exists(socket_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    request = json.dumps(
        {"argv": kernel_command, "cwd": os.getcwd(), "env": dict(os.environ)}
    ).encode()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(socket_path)
        message = struct.pack("!I", len(request)) + request
        sent = socket.send_fds(connection, [message], [0, 1, 2])
        connection.sendall(message[sent:])
    except OSError:
        connection.close()
        return None
    return connection


def _read_line(connection: socket.socket) -> str:
    """One reply line from the server ("" when the connection closed first)."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = connection.recv(256)
        except OSError:
            return ""
        if not chunk:
            return ""
        data += chunk
    return data.decode().strip()


def main(argv: list[str]) -> int:
    """``serve SOCKET`` or ``launch SOCKET -- KERNEL COMMAND...``."""
    if len(argv) >= 2 and argv[0] == "serve":
        return serve(argv[1])
    if len(argv) >= 4 and argv[0] == "launch" and argv[2] == "--":
        launch(argv[1], argv[3:])
    print(
        "usage: python -m helpers.warm_kernels serve SOCKET | launch SOCKET -- COMMAND...",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
