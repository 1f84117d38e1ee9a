"""Intake: the only writer of received mail. Raw bytes and envelope in, a committed row out.

Guarantees:
- `accept_many` (and `GroupCommitter.submit`) return only after the raw bytes and the
  envelope are committed (SQLite synchronous=FULL, PostgreSQL synchronous_commit): only
  then may a caller answer `250` or exit 0. Any failure raises `TemporaryFailure` (answer
  4xx / exit 75) and nothing is half-stored.
- Nothing is parsed here: a mail we cannot understand is still stored, and every later stage
  can be re-run from these bytes.
- `GroupCommitter` lets many SMTP sessions share one commit (and one fsync): each caller
  still gets its answer only after the commit that holds its own mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from gateway.errors import TemporaryFailure
from gateway.store.db import Database
from gateway.store.models import ReceivedMail, table_of, utcnow

log = logging.getLogger(__name__)

_received = table_of(ReceivedMail)
_INSERT = insert(_received).returning(_received.c.id)
_INSERT_MANY = insert(_received).returning(_received.c.id, sort_by_parameter_order=True)
SOURCES = ("smtp", "lmtp", "imap", "ingest")


@dataclass(frozen=True)
class Envelope:
    """Who sent it to whom, as the transport said (not the headers)."""

    source: str                       # smtp | lmtp | imap | ingest
    mail_from: str | None = None      # "" is the null reverse-path <>; None: not known
    rcpt_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}")


@dataclass(frozen=True)
class Incoming:
    raw: bytes
    envelope: Envelope


def _row(item: Incoming, now: datetime) -> dict[str, object]:
    return {
        "received": now, "source": item.envelope.source,
        "envelope_from": item.envelope.mail_from if item.envelope.mail_from is not None else "",
        "envelope_to": list(item.envelope.rcpt_to), "raw": item.raw,
        "raw_sha256": hashlib.sha256(item.raw).hexdigest(), "size": len(item.raw),
        "status": "pending", "outcome": "pending", "attempts": 0, "next_attempt": now,
    }


def insert_received(session: Session, items: Sequence[Incoming], now: datetime) -> list[int]:
    """Insert the rows in the caller's transaction, as one multi-row INSERT; their ids, in
    order. For importers that record more in the same transaction (the IMAP import
    record); the caller commits."""
    if not items:
        return []
    rows = session.execute(_INSERT_MANY, [_row(item, now) for item in items])
    return [int(mail_id) for mail_id in rows.scalars()]


def accept_many(db: Database, items: Sequence[Incoming], *, urgent: bool = False) -> list[int]:
    """Store several mails in one transaction; their ids, in order. All or none. `urgent`:
    a client waits for the answer (SMTP/LMTP), so this write goes before background ones."""
    if not items:
        return []
    now = utcnow()
    try:
        with db.write(urgent=urgent) as session:
            return [int(session.execute(_INSERT, _row(item, now)).scalar_one())
                    for item in items]
    except TemporaryFailure:
        raise
    except (SQLAlchemyError, OSError) as exc:
        # disk full, constraint trouble, driver errors: never a 5xx, never a lost mail
        log.exception("intake could not store %d mail(s)", len(items))
        raise TemporaryFailure(f"could not store the mail: {type(exc).__name__}") from exc


class GroupCommitter:
    """Batches concurrent `submit` calls into shared transactions.

    While one commit runs (in a worker thread, so the event loop keeps serving other
    sessions), new mails queue; the next commit takes them all. One mail alone is committed
    at once: there is no waiting for company.
    """

    def __init__(self, db: Database, max_batch: int = 64) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Incoming, asyncio.Future[int]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: Incoming) -> int:
        """The mail's id after its commit; `TemporaryFailure` if it could not be stored."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < self.max_batch:
                batch.append(self._queue.get_nowait())
            try:
                ids = await asyncio.to_thread(accept_many, self.db, [i for i, _ in batch],
                                              urgent=True)
            except Exception as exc:   # every caller of this batch gets the failure
                failure = exc if isinstance(exc, TemporaryFailure) else TemporaryFailure(str(exc))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
                continue
            for (_, future), mail_id in zip(batch, ids, strict=True):
                if not future.done():
                    future.set_result(mail_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
