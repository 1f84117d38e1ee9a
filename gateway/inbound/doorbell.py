"""A doorbell between processes: one side rings without ever blocking, the other waits for
a ring or a timeout.

Why not `multiprocessing.Event`: its `set()` waits, without a timeout, for every sleeping
waiter to acknowledge; when the waiting process has died, the ringer hangs for good. A
ringer on the SMTP event loop must never block, so the bell is a pipe whose writing end is
non-blocking: a full pipe means a ring is already pending, a pipe nobody reads any more
means nobody is listening; neither is an error for the ringer.
"""

from __future__ import annotations

import contextlib
import os
from multiprocessing.connection import Connection
from typing import Any


class Ringer:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        os.set_blocking(connection.fileno(), False)

    def ring(self) -> None:
        # BlockingIOError: already rung; BrokenPipeError: nobody is listening
        with contextlib.suppress(OSError):
            os.write(self._connection.fileno(), b"\0")

    def close(self) -> None:
        self._connection.close()


class Bell:
    """The listening side; picklable, so it can be handed to a spawned process."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.ringer_gone = False    # the other end was closed: its process ended

    def wait(self, timeout: float) -> bool:
        """True when rung within `timeout` seconds; all pending rings are consumed. When
        the ringing side is gone (its process died), `ringer_gone` is set and True returned
        at once: the pipe reads as ended, and waiting on it again would spin."""
        if self.ringer_gone or not self._connection.poll(timeout):
            return self.ringer_gone
        while self._connection.poll(0):
            if not os.read(self._connection.fileno(), 4096):
                self.ringer_gone = True
                break
        return True

    def clear(self) -> None:
        """Nothing to do: `wait` consumes the rings (lets a bell stand in for an Event)."""


def doorbell(context: Any) -> tuple[Ringer, Bell]:
    """A new bell: the ringer stays here, the bell goes to the process that waits."""
    reader, writer = context.Pipe(duplex=False)
    return Ringer(writer), Bell(reader)
