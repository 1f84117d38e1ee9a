"""Taking turns at SQLite's write lock, with received mail first.

SQLite has one write lock and no queue: a writer that finds it taken sleeps and retries
(its busy handler sleeps 1, 2, 5, 10 … 100 ms between tries), and whoever asks at the
right moment gets it next. The inbound worker and the outbox run write transactions back
to back, so a mail waiting for its `250` could wait behind many of them: measured on one
SMTP connection, the intake fell from 73 to 18 mails/s while the worker ran
(bench/README.md, inbound).

`WriteTurns` puts every writer on one SQLite file (all processes: `serve`, its worker,
`ticketgw ingest`) in front of two lock files beside the database:
- `DB-turn`: held (flock, exclusive) for the whole write transaction.
- `DB-urgent`: held shared by urgent writers (received mail, a client waits for the
  answer) while they wait for their turn. Background writers (the worker, the outbox,
  the portal) let them go first, each time they could take the turn, and the worker
  ends a batch early when one waits (`urgent_waiting()`).
A background writer does not poll: it watches both files with inotify (`_Releases`) and
tries again when a holder closes one, which every holder does right after unlocking it,
so a wait costs a few syscalls, not a try (~25-55 µs of CPU: a syscall and a wake-up)
every half millisecond: 2.2 -> 0.6 ms of CPU per 45 ms wait, measured. A holder that was
killed is closed by the kernel before its lock is released, so that wake-up can come too
early: waiters also try every `WATCHED_POLL`. Urgent writers keep polling every `POLL`:
on this loaded 2-core machine a wake-up by inotify came later than the next poll in about
one wait of ten (p90 6 ms after the release against 0.6 ms), and an urgent writer's wait
is what an SMTP client waits for. Where inotify is missing everybody polls, patient
writers (the outbox's bookkeeping, which nobody waits for) every `PATIENT_POLL`.
SQLite's own lock still decides correctness; turns only decide the order. PostgreSQL
locks rows, not the database, and does not use turns.

Guarantees: the kernel releases a flock when its process dies, so a killed writer never
blocks the others; waiting for a turn ends after `timeout` seconds with
`TemporaryFailure` (4xx / retry later), and giving way after `MAX_GIVE_WAY`.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.errors import TemporaryFailure

MAX_GIVE_WAY = 0.5      # seconds a background writer lets urgent ones go first, at most
POLL = 0.0005           # seconds between tries for the turn without inotify
PATIENT_POLL = 0.005    # the same for patient writers
WATCHED_POLL = 0.02     # with inotify: a try this often anyway (a killed holder, see above)


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
        releases: _Releases | None = None
        try:
            fd = os.open(self.turn_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:                     # e.g. a read-only directory: no order, no harm
            _release(announcement)
            yield
            return
        try:
            started = time.monotonic()
            while True:
                # a background writer lets waiting urgent ones go first, every time it is
                # woken (it is woken as fast as they are), for `MAX_GIVE_WAY` at most
                giving_way = not urgent and time.monotonic() - started < MAX_GIVE_WAY \
                    and self.urgent_waiting()
                if not giving_way and _try_lock(fd, fcntl.LOCK_EX):
                    break
                if urgent:                  # polls: its wait is what an SMTP client sees
                    releases = releases or _Releases(None)
                elif releases is None:
                    releases = _Releases.watching(self.turn_path, self.urgent_path)
                    continue                # released before the watch began? look again
                if time.monotonic() - started > timeout:
                    raise TemporaryFailure(f"no write turn within {timeout:.0f} s")
                releases.wait(poll)
            if releases is not None:
                releases.close()
                releases = None
            _release(announcement)          # not waiting any more
            announcement = None
            yield
        finally:
            _release(fd)                    # unlocked, then closed: that wakes the waiters
            _release(announcement)
            if releases is not None:
                releases.close()

    def urgent_waiting(self) -> bool:
        """Is an urgent writer waiting for its turn right now?"""
        try:    # read-only: closing it wakes nobody (`_Releases` watches closes of writers)
            fd = os.open(self.urgent_path, os.O_RDONLY | os.O_CREAT, 0o600)
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


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _release(fd: int | None) -> None:
    """Unlock, then close: the close that wakes the waiters comes after the unlock (the
    kernel's own close of a file reports the close before it drops the lock)."""
    if fd is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


_IN_CLOSE_WRITE = 0x8
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _libc.inotify_init1.argtypes = [ctypes.c_int]
    _libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
except (OSError, AttributeError):       # not Linux: waiters poll
    _libc = None


class _Releases:
    """Wakes a waiter when a turn's holder closes one of the lock files (inotify
    IN_CLOSE_WRITE); without inotify, `wait` sleeps."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    @classmethod
    def watching(cls, *paths: Path) -> _Releases:
        if _libc is None:
            return cls(None)
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:                      # e.g. too many instances: poll instead
            return cls(None)
        for path in paths:
            if _libc.inotify_add_watch(fd, os.fsencode(path), _IN_CLOSE_WRITE) < 0:
                os.close(fd)
                return cls(None)
        return cls(fd)

    def wait(self, poll: float) -> None:
        """Until a holder lets go of a lock file (or `WATCHED_POLL`); `poll` without
        inotify."""
        if self.fd is None:
            time.sleep(poll)
            return
        ready, _, _ = select.select([self.fd], [], [], WATCHED_POLL)
        if ready:
            try:
                os.read(self.fd, 4096)      # the events themselves say nothing more
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    raise

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
