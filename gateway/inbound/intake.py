"""Intake: the only writer of received mail. Raw bytes and envelope in, a committed row out.

Guarantees:
- `accept_many` (and `GroupCommitter.submit`) return only after the raw bytes and the
  envelope are committed (SQLite synchronous=FULL, PostgreSQL synchronous_commit): only
  then may a caller answer `250` or exit 0. Any failure raises `TemporaryFailure` (answer
  4xx / exit 75) and nothing is half-stored.
- Nothing is parsed here: a mail we cannot understand is still stored, and every later stage
  can be re-run from these bytes. A mail larger than `RAW_IN_ROW_LIMIT` is kept in the blob
  store (fsynced on disk, or uploaded to S3, before its row commits; a store that cannot
  take it is an `OSError`, so `TemporaryFailure`); `stored_raw` reads either kind.
- `GroupCommitter` lets many SMTP sessions share one commit (and one fsync): each caller
  still gets its answer only after the commit that holds its own mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from gateway.errors import TemporaryFailure
from gateway.mail.attachment_scan import ScannedFile
from gateway.observe import metrics
from gateway.store.blobs import BlobStore, StoredBlob, record_blob
from gateway.store.db import Database
from gateway.store.models import ReceivedMail, table_of, utcnow

log = logging.getLogger(__name__)

_received = table_of(ReceivedMail)
_INSERT_MANY = insert(_received).returning(_received.c.id, sort_by_parameter_order=True)
SOURCES = ("smtp", "lmtp", "imap", "ingest")
# Larger mails live in the blob store, the row names them (raw_sha256) and keeps raw empty:
# a 25 MB mail must not pass through the database driver (which copies it, PostgreSQL's
# text protocol even hex-encodes it) nor be read back whole into a transaction.
RAW_IN_ROW_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class Envelope:
    """Who sent it to whom, as the transport said (not the headers)."""

    source: str                       # smtp | lmtp | imap | ingest
    mail_from: str | None = None      # "" is the null reverse-path <>; None: not known
    rcpt_to: tuple[str, ...] = ()
    client_address: str | None = None  # the SMTP/LMTP client's IP; None for ingest and IMAP

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}")


@dataclass(frozen=True)
class SpooledRaw:
    """A received mail already in the blob store: the listener writes a large mail to disk
    as it arrives instead of holding it in memory."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Incoming:
    raw: bytes | SpooledRaw
    envelope: Envelope
    truncated_from: int | None = None    # over the size limit: only the beginning is `raw`
    left_out: tuple[ScannedFile, ...] = ()   # and the attachments it had (none were kept)


def _external(item: Incoming, blobs: BlobStore) -> StoredBlob | None:
    """Where a large mail's bytes live: written to the blob store now (before the row that
    names them commits), or already there (spooled)."""
    if isinstance(item.raw, SpooledRaw):
        return StoredBlob(item.raw.sha256, item.raw.size)
    if len(item.raw) > RAW_IN_ROW_LIMIT:
        return blobs.put(item.raw)
    return None


def _row(item: Incoming, now: datetime, external: StoredBlob | None) -> dict[str, object]:
    if external is not None:
        raw, digest, size = b"", external.sha256, external.size
    else:
        assert isinstance(item.raw, bytes)
        raw, digest, size = item.raw, hashlib.sha256(item.raw).hexdigest(), len(item.raw)
    return {
        "received": now, "source": item.envelope.source,
        "envelope_from": item.envelope.mail_from if item.envelope.mail_from is not None else "",
        "envelope_to": list(item.envelope.rcpt_to),
        "client_address": (item.envelope.client_address or "")[:64] or None,
        "raw": raw, "raw_sha256": digest,
        "size": size, "truncated_from": item.truncated_from,
        "left_out": left_out_rows(item.left_out) if item.truncated_from is not None else None,
        "status": "pending",
        "outcome": "pending", "attempts": 0, "next_attempt": now,
    }


def left_out_rows(files: Sequence[ScannedFile]) -> list[dict[str, object]]:
    """The `received_mail.left_out` column: one {"name", "type", "size"} per file."""
    return [{"name": f.name, "type": f.content_type, "size": f.size} for f in files]


def left_out_files(rows: Sequence[Mapping[str, object]] | None) -> tuple[ScannedFile, ...]:
    """`left_out_rows` read back; rows that are not as written are skipped."""
    files = []
    for row in rows or ():
        name, kind, size = row.get("name"), row.get("type"), row.get("size")
        if isinstance(name, str) and isinstance(kind, str) and isinstance(size, int):
            files.append(ScannedFile(name, kind, size))
    return tuple(files)


def _rows(session: Session, items: Sequence[Incoming], now: datetime,
          blobs: BlobStore) -> list[dict[str, object]]:
    rows = []
    for item in items:
        external = _external(item, blobs)
        if external is not None:
            record_blob(session, external)
        rows.append(_row(item, now, external))
    return rows


def stored_raw(blobs: BlobStore, raw: bytes, size: int, sha256: str) -> bytes:
    """The bytes of a stored mail (a `received_mail` row's raw, size and raw_sha256): the
    row's own, or the blob's for a mail larger than `RAW_IN_ROW_LIMIT`."""
    if raw or not size:
        return raw
    with blobs.open(sha256) as handle:
        return handle.read()


def insert_received(session: Session, items: Sequence[Incoming], now: datetime,
                    blobs: BlobStore) -> list[int]:
    """Insert the rows in the caller's transaction, as one multi-row INSERT; their ids, in
    order. For importers that record more in the same transaction (the IMAP import
    record); the caller commits."""
    if not items:
        return []
    rows = session.execute(_INSERT_MANY, _rows(session, items, now, blobs))
    return [int(mail_id) for mail_id in rows.scalars()]


def accept_many(db: Database, items: Sequence[Incoming], *, blobs: BlobStore,
                urgent: bool = False) -> list[int]:
    """Store several mails in one transaction; their ids, in order. All or none. `urgent`:
    a client waits for the answer (SMTP/LMTP), so this write goes before background ones."""
    if not items:
        return []
    now = utcnow()
    try:
        with db.write(urgent=urgent) as session:
            ids = insert_received(session, items, now, blobs)   # one statement for all
    except TemporaryFailure:
        raise
    except (SQLAlchemyError, OSError) as exc:
        # disk full, constraint trouble, driver errors: never a 5xx, never a lost mail
        log.exception("intake could not store %d mail(s)", len(items))
        raise TemporaryFailure(f"could not store the mail: {type(exc).__name__}") from exc
    metrics.count_received(item.envelope.source for item in items)      # committed
    return ids


class GroupCommitter:
    """Batches concurrent `submit` calls into shared transactions.

    While one commit runs (in a worker thread, so the event loop keeps serving other
    sessions), new mails queue; the next commit takes them all. One mail alone is committed
    at once: there is no waiting for company.
    """

    def __init__(self, db: Database, blobs: BlobStore, max_batch: int = 64) -> None:
        self.db = db
        self.blobs = blobs
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
                                              blobs=self.blobs, urgent=True)
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
