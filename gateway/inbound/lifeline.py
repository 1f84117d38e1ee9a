"""A child process (the worker, the outbox) ends with the `serve` that started it, busy or idle.

When `serve` is killed (`kill -9`, the OOM killer), nothing tells its worker process: it would
go on processing the mail in hand, and leasing more, with nobody supervising it. Two guards
end it within a fraction of a second:
- Linux only: `prctl(PR_SET_PDEATHSIG, SIGKILL)` asks the kernel to kill it when its parent
  ends; this works even while a C extension holds the GIL. (The kernel means the parent
  *thread* that started it: `WorkerComponent` starts it from the event loop's thread, which
  lives as long as `serve`.)
- Everywhere: a daemon thread that checks every `CHECK_EVERY` seconds whether the parent
  process is still its parent, and ends the process hard (`os._exit`) when it is not.
Ending hard is safe: an open transaction is rolled back by the database, and the mails of
the lease the worker held are taken over by another instance once the lease ends.

In: the parent's process id. Out: nothing, or the process gone. Never raises.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading

CHECK_EVERY = 0.2          # seconds
EXIT_CODE = 70             # EX_SOFTWARE: nobody waits for it, but a reader of ps may
PR_SET_PDEATHSIG = 1


def end_with_parent(parent_pid: int, every: float = CHECK_EVERY, *,
                    ask_kernel: bool = True) -> threading.Thread:
    """Make this process end within about `every` seconds of its parent `parent_pid`;
    returns the watching thread (already running). `ask_kernel=False` leaves out the
    Linux guard (for testing the watching thread alone)."""
    if ask_kernel:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    watcher = threading.Thread(target=_watch, args=(parent_pid, every), daemon=True,
                               name="ticketgw-lifeline")
    watcher.start()
    return watcher


def prctl(option: int, argument: int | bytes) -> None:
    """Linux's prctl(2) with one argument, for this process; elsewhere, or when libc has no
    such call, nothing."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            value = ctypes.c_char_p(argument) if isinstance(argument, bytes) else argument
            ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _watch(parent_pid: int, every: float) -> None:
    while os.getppid() == parent_pid:
        threading.Event().wait(every)
    with contextlib.suppress(OSError):
        os.write(2, f"ticketgw child process {os.getpid()}: the service that started it (pid "
                    f"{parent_pid}) is gone; exiting at once\n".encode())
    os._exit(EXIT_CODE)
