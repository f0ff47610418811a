"""Output safety: atomic writes, output folders that hold no input, one run per folder.

Nothing a run reads may be overwritten, and no file is ever left half written
under its real name:

* :func:`atomic_path`, :func:`atomic_write_bytes` and :func:`atomic_write_text`
  write to a temporary name in the target's folder and rename the file into
  place (:func:`os.replace`) only when it is complete.  An interrupted write
  leaves at most a hidden ``.<name>.partial-<token><suffix>`` file, which no
  output listing takes for an output (:func:`is_internal`).
* :func:`check_output_folder` refuses an output folder that is a file, or
  that equals or contains a file the run reads (the data, the config …).
* :func:`run_lock` holds ``<out>/.helpers-run.lock`` while a run writes: a
  second run into the same folder is refused with the holder named, and the
  lock of a run whose process is gone is taken over (by one run only, however
  many try at once).

Refusals are :class:`OutputFolderError`, a
:class:`~helpers.validation.StudyDataError`, so the command line prints them
as a report and exits with status 2.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from helpers.errors import OutputFolderError, Problem
from helpers.paths import display_path

#: Name of the lock file a run holds in its output folder.
LOCK_NAME = ".helpers-run.lock"

#: Marker in the names of temporary files written by :func:`atomic_path`.
PARTIAL_MARK = ".partial-"

#: Marker in the name of the claim file of a run taking over a stale lock.
TAKEOVER_MARK = ".takeover-"


def partial_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``: hidden, unique, with ``path``'s suffix.

    The suffix is kept so that writers choosing a format from the name
    (matplotlib, papermill) write the same bytes as to ``path`` itself.
    """
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    return path.with_name(f".{path.stem}{PARTIAL_MARK}{token}{path.suffix}")


def is_internal(path: Path) -> bool:
    """Whether ``path`` is a lock or temporary file of this module (never an output)."""
    name = path.name
    return name.startswith(".") and (name.startswith(LOCK_NAME) or PARTIAL_MARK in name)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` when the block completes.

    For writers that take a path (``DataFrame.to_parquet``, ``Figure.savefig``).
    If the block raises (including ``KeyboardInterrupt``), the temporary file
    is removed and ``path`` is left as it was.

    Examples
    --------
    >>> import pandas as pd, tempfile
    >>> target = Path(tempfile.mkdtemp()) / "t.csv"
    >>> with atomic_path(target) as tmp:
    ...     pd.DataFrame({"a": [1]}).to_csv(tmp, index=False)
    >>> target.read_text()
    'a\\n1\\n'
    """
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary name, then rename); return ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, with newlines as given; return ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


# ---------------------------------------------------------------------------
# Output folders
# ---------------------------------------------------------------------------


def _refuse(
    out: Path,
    found: str,
    fix: str,
    summary: str,
    rule: str = "an output folder that holds none of the files the run reads",
) -> OutputFolderError:
    problem = Problem(
        file=out,
        column=None,
        rule=rule,
        found=found,
        fix=fix,
    )
    return OutputFolderError(problem, summary=summary)


def check_output_folder(
    out: str | Path, reads: Iterable[str | Path], option: str = "--out"
) -> None:
    """Refuse an output folder that is a file or holds a file the run reads.

    Parameters
    ----------
    out
        The output folder (it need not exist yet).
    reads
        Every file or folder the run reads (data, config, notebooks …).
    option
        How the user named the folder, for the message.

    Raises
    ------
    OutputFolderError
        When ``out`` (or a folder above it) is an existing file, or when
        ``out`` equals or contains one of ``reads``.
    """
    out = Path(out).resolve()
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            raise _refuse(
                out,
                f"{display_path(folder)} is a file, not a folder",
                f"give {option} a folder (a new one is created), not a file",
                f"Cannot write into {display_path(out)}.",
            )
    for read in reads:
        read = Path(read).resolve()
        if read == out or out in read.parents:
            raise _refuse(
                out,
                f"{option} {'is' if read == out else 'contains'} {display_path(read)}, "
                "which this run reads; its outputs could overwrite it",
                f"choose an {option} folder outside the input's folder, e.g. runs/<study name>",
                f"Refusing to write into {display_path(out)}: it holds the run's inputs.",
            )


def check_generator_folder(out: str | Path, own: str | Path | None = None) -> None:
    """Refuse an output folder of a data generator that holds the project's own files.

    ``simulate`` and ``scenarios`` read no input, but their files (a
    ``README.md``, a ``sessions.csv`` …) would replace the project's: the
    folder may not be or hold the suite's notebooks, its source code, or the
    demo data, except ``own``, the one folder the command is meant to
    regenerate (``simulate`` writes the demo data into ``data/raw/demo``).

    Parameters
    ----------
    out
        The output folder (it need not exist yet).
    own
        A protected folder the command may write into itself (not its parents).

    Raises
    ------
    OutputFolderError
        As :func:`check_output_folder`.
    """
    from helpers.paths import DEMO_DIR, NOTEBOOKS_DIR, PROJECT_ROOT

    out = Path(out).resolve()
    check_output_folder(out, [])  # a file where the folder should be
    protected = [NOTEBOOKS_DIR, PROJECT_ROOT / "src", DEMO_DIR]
    for folder in (p.resolve() for p in protected if p.exists()):
        if folder == out and own is not None and folder == Path(own).resolve():
            continue
        if folder == out or out in folder.parents:
            raise _refuse(
                out,
                f"--out {'is' if folder == out else 'contains'} {display_path(folder)}, "
                "a folder of the project whose files the generated ones could replace",
                "choose a new folder for the generated data, e.g. runs/<name>",
                f"Refusing to write into {display_path(out)}: it holds the project's own files.",
                rule="an output folder holding none of the project's notebooks, code or demo data",
            )


# ---------------------------------------------------------------------------
# One run per output folder
# ---------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _read_holder(lock: Path) -> dict[str, object]:
    """The lock file's holder (empty when it cannot be read)."""
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _is_stale(holder: dict[str, object]) -> bool:
    """Whether the holder was a process of this host that no longer runs."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    return pid != os.getpid() and not _pid_alive(pid)


def _holder(command: str) -> str:
    """This process as a lock file's content: pid, host name and command."""
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command}) + "\n"


def _create_lock(lock: Path, command: str) -> bool:
    """Create the lock file atomically (``O_EXCL``); ``False`` if it already exists."""
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(_holder(command))
    return True


def _take_over(lock: Path, stale: dict[str, object], command: str) -> bool:
    """Replace the stale lock of ``stale`` by this run's; ``False`` if another run got there first.

    Of several runs taking over the same stale lock at once, only the one that
    creates the claim file for that holder (``O_EXCL``) may replace it, and
    only if the lock still holds ``stale`` when it has the claim; the lock is
    replaced in one :func:`os.replace`, so it never goes missing meanwhile.
    """
    claim = lock.with_name(f"{LOCK_NAME}{TAKEOVER_MARK}{stale.get('host')}-{stale.get('pid')}")
    try:
        os.close(os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    try:
        if _read_holder(lock) != stale:
            return False
        atomic_write_text(lock, _holder(command))
        return True
    finally:
        claim.unlink(missing_ok=True)


def _busy(out: Path, holder: dict[str, object]) -> OutputFolderError:
    if holder:
        who = (
            f"process {holder.get('pid')} on {holder.get('host')} running: {holder.get('command')}"
        )
    else:
        who = "a run whose lock file cannot be read"
    lock = out / LOCK_NAME
    problem = Problem(
        file=out,
        column=None,
        rule="one run at a time writing into an output folder",
        found=f"another run holds {display_path(lock)}: {who}",
        fix=(
            "wait for that run to finish, or write into another folder; if no such run is "
            f"going on, delete {display_path(lock)}"
        ),
    )
    return OutputFolderError(problem, summary=f"{display_path(out)} is in use by another run.")


def _acquire(out: Path, command: str, attempts: int = 3) -> None:
    """Create the lock, taking over a stale one; raise when another run holds it."""
    lock = out / LOCK_NAME
    for _ in range(attempts):
        if _create_lock(lock, command):
            return
        holder = _read_holder(lock)
        if not _is_stale(holder):
            raise _busy(out, holder)
        if _take_over(lock, holder, command):
            print(
                f"note: taking over the lock of process {holder['pid']} "
                f"({holder.get('command')}), which no longer runs: {display_path(lock)}",
                file=sys.stderr,
            )
            return
        time.sleep(0.05)  # another run is taking the lock over: see who won
    raise _busy(out, _read_holder(lock))


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into ``SystemExit`` so cleanup (temporary files, the lock) runs."""
    raise SystemExit(128 + signum)


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """While the block runs in the main thread, SIGTERM raises ``SystemExit``."""
    try:
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def run_lock(out: str | Path, command: str) -> Iterator[Path]:
    """Hold ``<out>/.helpers-run.lock`` while the block writes into ``out``.

    The lock is created atomically (``O_EXCL``) and holds this process's pid,
    the host name and ``command`` (no time).  It is removed when the block
    ends, also on an error, Ctrl-C or SIGTERM.  A lock left by a process of
    this host that no longer runs is taken over, with a note on stderr.

    Parameters
    ----------
    out
        The output folder (created if missing).
    command
        What the run is, for the message another run shows.

    Yields
    ------
    pathlib.Path
        The lock file.

    Raises
    ------
    OutputFolderError
        When another live run (or a run on another host) holds the lock.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _acquire(out, command)
    lock = out / LOCK_NAME
    try:
        with _sigterm_as_exit():
            yield lock
    finally:
        if _read_holder(lock).get("pid") == os.getpid():
            lock.unlink(missing_ok=True)
