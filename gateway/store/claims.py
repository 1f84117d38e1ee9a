"""Claiming work from a queue table (received mail, outbound mail) safely across processes.

`claim_due` selects due rows and locks them for the caller's transaction:
- PostgreSQL: `SELECT … FOR UPDATE SKIP LOCKED`. Rows another instance has claimed are
  skipped, not waited for, so several `ticketgw serve` instances share one database and never
  work on the same row. The lock ends with the transaction: a crashed worker's rows are free
  again at once (nothing to expire, no in-process lock).
- SQLite: one writer at a time (`Database.write()` begins IMMEDIATE), so the rows are the
  caller's until it commits; FOR UPDATE does not exist there and is not needed.

The caller processes the rows and records the result in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
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
