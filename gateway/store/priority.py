"""Taking turns at SQLite's write lock, with received mail first.

SQLite has one write lock and no queue: a writer that finds it taken sleeps and retries
(its busy handler sleeps 1, 2, 5, 10 … 100 ms between tries), and whoever asks at the
right moment gets it next. The inbound worker and the outbox run write transactions back
to back, so a mail waiting for its `250` could wait behind many of them: measured on one
SMTP connection, the intake fell from 73 to 18 mails/s while the worker ran
(bench/README.md, inbound).

`WriteTurns` puts every writer on one SQLite file (all processes: `serve`, its worker,
`ticketgw ingest`) in front of two lock files beside the database:
- `DB-turn`: held (flock, exclusive) for the whole write transaction. Waiters poll it
  every `POLL` seconds, so the next writer starts within half a millisecond of a commit.
- `DB-urgent`: held shared by urgent writers (received mail, a client waits for the
  answer) while they wait for their turn. Background writers (the worker, the outbox,
  the portal) let them go first, and the worker ends a batch early when one waits
  (`urgent_waiting()`).
- Patient writers (the outbox's bookkeeping: nobody waits for a "sent" mark) try every
  `PATIENT_POLL` instead. Each try costs about 55 µs of CPU here (a syscall and a wake-up),
  so polling at `POLL` costs ~8% of a core while the worker holds the turn, and the outbox
  waits like that for every batch it leases and records.
SQLite's own lock still decides correctness; turns only decide the order. PostgreSQL
locks rows, not the database, and does not use turns.

Guarantees: the kernel releases a flock when its process dies, so a killed writer never
blocks the others; waiting for a turn ends after `timeout` seconds with
`TemporaryFailure` (4xx / retry later), and giving way after `MAX_GIVE_WAY`.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.errors import TemporaryFailure

MAX_GIVE_WAY = 0.5      # seconds a background writer lets urgent ones go first, at most
POLL = 0.0005           # seconds between tries for the turn
PATIENT_POLL = 0.005    # the same for patient writers


class WriteTurns:
    def __init__(self, database: Path) -> None:
        self.turn_path = database.with_name(database.name + "-turn")
        self.urgent_path = database.with_name(database.name + "-urgent")

    @contextmanager
    def turn(self, *, urgent: bool = False, patient: bool = False,
             timeout: float = 30.0) -> Iterator[None]:
        """Hold the write turn for the block; `urgent` for writes someone waits for,
        `patient` for bookkeeping that may wait a few milliseconds longer."""
        if urgent and patient:
            raise ValueError("a writer cannot be urgent and patient")
        poll = PATIENT_POLL if patient else POLL
        announcement = self._announce() if urgent else None
        if not urgent:
            self._give_way(poll)
        try:
            fd = os.open(self.turn_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:                     # e.g. a read-only directory: no order, no harm
            if announcement is not None:
                os.close(announcement)
            yield
            return
        try:
            deadline = time.monotonic() + timeout
            while not _try_lock(fd, fcntl.LOCK_EX):
                if time.monotonic() > deadline:
                    raise TemporaryFailure(f"no write turn within {timeout:.0f} s")
                time.sleep(poll)
            if announcement is not None:
                os.close(announcement)      # not waiting any more
                announcement = None
            yield
        finally:
            os.close(fd)                    # closing releases the lock
            if announcement is not None:
                os.close(announcement)

    def urgent_waiting(self) -> bool:
        """Is an urgent writer waiting for its turn right now?"""
        try:
            fd = os.open(self.urgent_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            return not _try_lock(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)

    def _announce(self) -> int | None:
        try:
            fd = os.open(self.urgent_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None                     # no announcement: only the order suffers
        fcntl.flock(fd, fcntl.LOCK_SH)      # waits at most for another writer's check
        return fd

    def _give_way(self, poll: float) -> None:
        deadline = time.monotonic() + MAX_GIVE_WAY
        while self.urgent_waiting() and time.monotonic() < deadline:
            time.sleep(poll)


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
