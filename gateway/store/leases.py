"""Leases on the two work queues (`received_mail`, `outbound_mail`): how long they last, who
holds one, what happens when one is taken over, and what an operator can see and release.

A lease is `next_attempt` moved `LEASE` into the future, with `attempts` counted (the
attempt count is the lease token: a result is recorded only while the row still has the
count its worker leased it with) and `lease_holder` set to the instance (`holder_id()`).
While the work runs, a `Heartbeat` (`store/heartbeat.py`) pushes `next_attempt` ahead every
`HEARTBEAT`, so a slow mail keeps its lease however long it takes; when an instance dies the
heartbeat stops, and its rows are due again at most `LEASE` later. Every result (done,
quarantined, sent, a retry later, handed back) clears `lease_holder`.

In: rows as the lease functions select them. Out: log lines, a count, and the `on_takeover`
hook (the seam for a metrics counter such as `ticketgw_lease_takeovers_total{queue=...}`).
A hook that raises is logged and ignored: counting never stops work.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, select, update
from sqlmodel import Session

from gateway.store.models import OutboundMail, ReceivedMail, table_of

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=20)       # a lease nobody renews ends this long after its last beat
HEARTBEAT = timedelta(seconds=5)    # renewal interval while the work runs: 4 tries per lease
# A dead instance's rows are due again at most LEASE after its last heartbeat; another
# instance polls at least every second, so it takes them over within about 21 s.

# queue name (as operators and metrics see it) -> (table, status of a row waiting for work)
QUEUES: dict[str, tuple[Table, str]] = {
    "inbound": (table_of(ReceivedMail), "pending"),
    "outbound": (table_of(OutboundMail), "queued"),
}

# (queue, row id, the holder whose lease ran out); called once per row taken over
TakeoverHook = Callable[[str, int, str], None]


def holder_id() -> str:
    """This process as a lease holder: `hostname:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def note_takeovers(queue: str, rows: Iterable[Any], on_takeover: TakeoverHook | None = None
                   ) -> int:
    """Log (one WARNING each) and count the rows among these, just claimed because they were
    due, whose previous lease ran out without a result (`lease_holder` still set); returns
    their number and calls `on_takeover` for each."""
    count = 0
    for row in rows:
        if row.lease_holder is None:
            continue
        count += 1
        log.warning("%s %d: taking over the lease of %s, which ended at %s UTC without a "
                    "result (attempt %d)", queue, row.id, row.lease_holder,
                    f"{row.next_attempt:%Y-%m-%d %H:%M:%S}", row.attempts + 1)
        if on_takeover is not None:
            try:
                on_takeover(queue, row.id, row.lease_holder)
            except Exception:
                log.exception("%s %d: the takeover hook failed", queue, row.id)
    return count


@dataclass(frozen=True)
class HeldLease:
    """One leased row, as `ticketgw leases` shows it."""

    queue: str
    id: int
    holder: str | None
    attempts: int
    lease_ends: datetime
    stale: bool          # the lease has ended without a result: due for a takeover


def held_leases(session: Session, now: datetime, *, stale_only: bool = False
                ) -> list[HeldLease]:
    """Rows of both queues under a lease, running or ended without a result (`stale`),
    the lease that ended first first."""
    leases: list[HeldLease] = []
    for queue, (table, status) in QUEUES.items():
        condition = [table.c.status == status, table.c.lease_holder.is_not(None)]
        if stale_only:
            condition.append(table.c.next_attempt <= now)
        for row in session.execute(select(table.c.id, table.c.lease_holder, table.c.attempts,
                                          table.c.next_attempt).where(*condition)):
            leases.append(HeldLease(queue, row.id, row.lease_holder, row.attempts,
                                    row.next_attempt, row.next_attempt <= now))
    return sorted(leases, key=lambda lease: (lease.lease_ends, lease.queue, lease.id))


def release_leases(session: Session, queue: str, ids: Sequence[int], now: datetime) -> list[int]:
    """End the leases of these rows of `queue`: due now, no holder (the attempt stays
    counted); returns the ids that were leased waiting rows of that queue. A holder that is
    still at work cannot renew the lease any more; its result is recorded only if nobody
    has leased the row again meanwhile (an outbound mail it sent is recorded as sent in any
    case)."""
    table, status = QUEUES[queue]
    released: list[int] = []
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        found = list(session.execute(select(table.c.id).where(
            table.c.id.in_(chunk), table.c.status == status,
            table.c.lease_holder.is_not(None))).scalars())
        if found:
            session.execute(update(table).where(table.c.id.in_(found)).values(
                next_attempt=now, lease_holder=None))
        released += found
    return sorted(released)
