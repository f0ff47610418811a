"""The kernel manager of the suite's notebook runs (papermill's kernels, started by nbclient).

:class:`SuiteKernelManager` is jupyter_client's ``AsyncKernelManager`` with two changes:

* with ``warm_socket`` set, the kernel is forked by a warm-kernel server
  (:mod:`helpers.warm_kernels`) instead of starting a fresh interpreter;
* it interrupts a kernel it shuts down only while a cell runs (a run
  stopped mid-cell).  jupyter_client sends SIGINT before every shutdown
  request; when the signal lands while the idle kernel is handling a
  message, ipykernel prints "KeyboardInterrupt caught in kernel" on the
  terminal, a false alarm in a successful ``make all``.  nbclient tells
  whether a cell runs through :data:`CELL_HOOKS`; an interrupted cell gets up to
  :data:`INTERRUPTED_REPLY_SECONDS` to reply before the shutdown request.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets import Unicode

from helpers.warm_kernels import launcher_command

#: Seconds at most that a kernel interrupted for shutdown gets to reply (nbclient's hook says
#: when it has) before the shutdown request: without them ipykernel may close its sockets while
#: the interrupted cell still replies (formatting a long traceback can take a second), and print
#: a "Socket operation on non-socket" traceback on the terminal of a stopped run.
INTERRUPTED_REPLY_SECONDS = 3.0

_cell_running = False


def _cell_started(**_: Any) -> None:
    global _cell_running
    _cell_running = True


def _cell_ended(**_: Any) -> None:
    global _cell_running
    _cell_running = False


#: nbclient hooks (papermill passes them on) that tell the kernel manager whether a cell runs.
CELL_HOOKS = {"on_cell_execute": _cell_started, "on_cell_executed": _cell_ended}


class SuiteKernelManager(AsyncKernelManager):
    """``AsyncKernelManager`` that can fork warm kernels and shuts idle kernels down quietly."""

    warm_socket = Unicode(
        "", config=True, help="Socket of a warm-kernel server to fork kernels from ('' for none)."
    )

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        """The kernel command, run through the warm-kernel launcher when a server is set."""
        command = super().format_kernel_cmd(extra_arguments)
        return launcher_command(self.warm_socket, command) if self.warm_socket else command

    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down and not _cell_running:
            return  # nothing to interrupt: the shutdown request alone ends an idle kernel
        await super()._async_interrupt_kernel()
        if self.shutting_down:  # let the interrupted cell send its reply before the sockets close
            deadline = time.monotonic() + INTERRUPTED_REPLY_SECONDS
            while _cell_running and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
