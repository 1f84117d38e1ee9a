"""Keeping leases alive while their work runs (see `store/leases.py`).

In: the database, one queue's table, and the leased rows as `{id: attempts}` (the attempt
count each row was leased with is its lease token). Out: every `HEARTBEAT` after the block
began, `next_attempt` of the rows that are still this holder's moved one `LEASE` ahead, and
`lost`, the rows whose lease was found to be no longer ours (taken over, released by an
operator, or finished).

The renewals run on one long-lived daemon thread per database and interval (`_Beater`),
shared by the blocks of a process, not on a thread per block: the outbox and the worker
open a block for every batch (under load often of one or two mails, done in milliseconds),
and starting and joining a thread for each made the batch wait for both (in the issue #18
profile the thread's own idle wait showed as 4.9% of serve's samples, its start and join
in the outbox thread as about 0.4%). A batch that ends before its first beat costs no
renewal at all. The thread ends after an interval with
nothing to renew and is started again by the next block.

Guarantees:
- Only rows still waiting (`pending`/`queued`), with the same token and the same holder are
  renewed: a heartbeat never revives a lease somebody else holds now.
- A heartbeat that fails (database outage) is logged and tried again at the next beat; it
  never raises and never stops the work. If the outage outlasts the lease, another instance
  may take the rows over; the work's result is then not recorded over the newer lease,
  because every result is guarded by the token.
- `__exit__` returns only when no renewal of its rows is in flight, and none starts after
  (a renewal in flight finishes first).
- One block's slow renewal (a database outage, SQLite's write turn) delays the others of
  the same thread by as long (a block is never renewed more often than every `HEARTBEAT`;
  a lease lasts four beats, so a delay shorter than three beats loses nothing).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import ClassVar

from sqlalchemy import select, tuple_, update

from gateway.store import leases
from gateway.store.db import Database
from gateway.store.leases import QUEUES, holder_id
from gateway.store.models import utcnow

log = logging.getLogger(__name__)


class Heartbeat:
    """Renews the leases of `held` ({row id: attempts}) of `queue` while the block runs,
    every `every` (`leases.HEARTBEAT`) by `length` (`leases.LEASE`)."""

    def __init__(self, db: Database, queue: str, held: Mapping[int, int], *,
                 holder: str | None = None, length: timedelta | None = None,
                 every: timedelta | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self.queue = queue
        self._table, self._status = QUEUES[queue]
        self._leases = dict(held)
        self._holder = holder or holder_id()
        self._length = length or leases.LEASE       # read now: a test may shorten them
        self._every = every or leases.HEARTBEAT
        self._clock = clock
        self._lock = threading.Lock()
        self._beating = threading.Lock()    # held while the shared thread renews ours
        self._closed = False                 # set (under `_beating`) by `__exit__`
        self._beater: _Beater | None = None
        self.lost: set[int] = set()
        self.failures = 0              # renewals that could not reach the database

    def __enter__(self) -> Heartbeat:
        if self._leases:
            self._beater = _Beater.join(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        with self._beating:                  # waits for a renewal of ours in flight
            self._closed = True
        if self._beater is not None:
            self._beater.leave(self)

    def _beat_unless_closed(self) -> None:
        """A beat from the shared thread: none once `__exit__` has begun."""
        with self._beating:
            if not self._closed:
                self.beat()

    def finished(self, ids: Iterable[int]) -> None:
        """These rows have their result (or were handed back): stop renewing them."""
        with self._lock:
            for mail_id in ids:
                self._leases.pop(mail_id, None)

    def is_lost(self, mail_id: int) -> bool:
        with self._lock:
            return mail_id in self.lost

    def beat(self) -> set[int]:
        """Renew once now; the rows renewed (a row locked by the work, which is recording
        its result, waits for the next beat). Never raises."""
        with self._lock:
            pairs = list(self._leases.items())
        if not pairs:
            return set()
        table = self._table
        ours = (table.c.status == self._status, table.c.lease_holder == self._holder,
                tuple_(table.c.id, table.c.attempts).in_(pairs))
        try:
            with self._db.write(durable=False, patient=True) as session:
                still = set(session.execute(select(table.c.id).where(*ours)).scalars())
                # rows the work itself has locked (it is recording their results) are
                # skipped, not waited for: waiting could deadlock with it on PostgreSQL
                free = select(table.c.id).where(*ours).with_for_update(skip_locked=True)
                renewed = set(session.execute(
                    update(table).where(table.c.id.in_(free.scalar_subquery()))
                    .values(next_attempt=self._clock() + self._length)
                    .returning(table.c.id)).scalars())
        except Exception as exc:
            self.failures += 1
            log.warning("%s: could not renew the leases of %d rows (%s); trying again in "
                        "%.0f s", self.queue, len(pairs), exc, self._every.total_seconds())
            return set()
        with self._lock:
            gone = {mail_id for mail_id, _ in pairs
                    if mail_id not in still and mail_id in self._leases}
            for mail_id in gone:
                del self._leases[mail_id]
            self.lost |= gone
        for mail_id in sorted(gone):
            log.info("%s %d: no longer under this instance's lease (finished, taken over or "
                     "released)", self.queue, mail_id)
        return renewed


class _Beater:
    """The thread that renews the leases of the open `Heartbeat` blocks of one database at
    one interval: each block `every` after it began and then every `every` again. Ends
    when no block is open and none began for an interval (`join` starts a new one when
    needed)."""

    _running: ClassVar[weakref.WeakKeyDictionary[Database, dict[float, _Beater]]] = \
        weakref.WeakKeyDictionary()
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, db: Database, every: float) -> None:
        self._db, self._every = db, every
        self._due: dict[Heartbeat, float] = {}        # open block -> its next beat
        self._joined = time.monotonic()                 # when the last block began
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="ticketgw-heartbeat")

    @classmethod
    def join(cls, heartbeat: Heartbeat) -> _Beater:
        """Add the block to its database's thread (started if there is none)."""
        every = heartbeat._every.total_seconds()
        with cls._registry_lock:
            beaters = cls._running.setdefault(heartbeat._db, {})
            beater = beaters.get(every)
            if beater is None:
                beater = beaters[every] = cls(heartbeat._db, every)
                beater._thread.start()
            with beater._wake:
                beater._joined = time.monotonic()
                beater._due[heartbeat] = beater._joined + every
                beater._wake.notify()
        return beater

    def leave(self, heartbeat: Heartbeat) -> None:
        with self._wake:
            self._due.pop(heartbeat, None)

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                idle = not self._due and now - self._joined >= self._every
                if not self._due and not idle:
                    self._wake.wait(self._joined + self._every - now)
                    continue
                due = [heartbeat for heartbeat, at in self._due.items() if at <= now]
                if self._due and not due:
                    self._wake.wait(min(self._due.values()) - now)
                    continue
                for heartbeat in due:
                    self._due[heartbeat] = now + self._every
            if idle:
                # the registry's lock first, as in `join`: nobody can join while we end
                with _Beater._registry_lock, self._wake:
                    if not self._due and time.monotonic() - self._joined >= self._every:
                        beaters = _Beater._running.get(self._db, {})
                        if beaters.get(self._every) is self:
                            del beaters[self._every]
                        return
                continue
            for heartbeat in due:
                try:
                    heartbeat._beat_unless_closed()
                except Exception:       # `beat` never raises; this thread must not die
                    log.exception("%s: the heartbeat failed", heartbeat.queue)
