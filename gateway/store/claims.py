"""Claiming work from a queue table (received mail, outbound mail) safely across processes.

`claim_due` selects due rows and locks them for the caller's short lease transaction:
- PostgreSQL: `SELECT … FOR UPDATE SKIP LOCKED`. Rows another instance is claiming right
  now are skipped, not waited for, so several `ticketgw serve` instances share one database
  and never claim the same row.
- SQLite: one writer at a time (`Database.write()` begins IMMEDIATE), so the rows are the
  caller's until it commits; FOR UPDATE does not exist there and is not needed.

The row lock ends when the lease transaction commits; what keeps other instances away
after that is the lease itself: the caller moves `next_attempt` ahead and records itself in
`lease_holder` (`store/leases.py`), and a heartbeat renews it while the work runs. A crashed
instance's rows are therefore *not* free at once: they become due when its lease ends, at
most `leases.LEASE` (20 s) after its last heartbeat, and the next instance that claims them
logs the takeover.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select, text
from sqlmodel import Session


def claim_due(session: Session, table: Table, *, status: str, now: datetime,
              limit: int = 1, columns: Sequence[str] | None = None) -> Sequence[Any]:
    """Lock and return up to `limit` rows in `status` whose `next_attempt` is due, oldest
    first; only `columns` when given (a lease need not read 50 MB of raw mail). Rows locked
    by another transaction are skipped (PostgreSQL)."""
    selected = [table.c[name] for name in columns] if columns else [table]
    statement = (
        select(*selected)
        .where(table.c.status == status, table.c.next_attempt <= now)
        .order_by(table.c.next_attempt, table.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.execute(statement).all()


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory-lock key for `name`: 64 bits of its SHA-256, signed."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def one_instance_at_a_time(session: Session, job: str) -> None:
    """Serialise a scheduled job across instances for the rest of the caller's transaction:
    on PostgreSQL a transaction-level advisory lock on the job's name (a second instance
    waits, then sees what the first committed); on SQLite the write transaction is already
    the only one."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": advisory_key(f"ticketgw:job:{job}")})
