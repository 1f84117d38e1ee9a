"""Keeping leases alive while their work runs (see `store/leases.py`).

In: the database, one queue's table, and the leased rows as `{id: attempts}` (the attempt
count each row was leased with is its lease token). Out: a daemon thread that, every
`HEARTBEAT`, moves `next_attempt` of the rows that are still this holder's one `LEASE`
ahead, and `lost`, the rows whose lease was found to be no longer ours (taken over,
released by an operator, or finished).

Guarantees:
- Only rows still waiting (`pending`/`queued`), with the same token and the same holder are
  renewed: a heartbeat never revives a lease somebody else holds now.
- A heartbeat that fails (database outage) is logged and tried again at the next beat; it
  never raises and never stops the work. If the outage outlasts the lease, another instance
  may take the rows over; the work's result is then not recorded over the newer lease,
  because every result is guarded by the token.
- `__exit__` stops the thread before it returns (at most one renewal in flight finishes).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType

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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: set[int] = set()
        self.failures = 0              # renewals that could not reach the database

    def __enter__(self) -> Heartbeat:
        if self._leases:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"ticketgw-heartbeat-{self.queue}")
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def finished(self, ids: Iterable[int]) -> None:
        """These rows have their result (or were handed back): stop renewing them."""
        with self._lock:
            for mail_id in ids:
                self._leases.pop(mail_id, None)

    def is_lost(self, mail_id: int) -> bool:
        with self._lock:
            return mail_id in self.lost

    def _run(self) -> None:
        while not self._stop.wait(self._every.total_seconds()):
            self.beat()

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
