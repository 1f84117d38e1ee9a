"""The database side of the IMAP import: import records, the per-mailbox cursor and state.

In: what the poller fetched (UID and raw bytes per message) and what it observed. Out:
committed rows, and the state that `report` shows.

Guarantees:
- `store_batch` writes the `received_mail` rows (through intake's row builder, so they are
  exactly what `intake.accept` would store) and one `imap_import` row per message in ONE
  transaction: a message is stored and recorded, or neither.
- A message whose (mailbox, folder, UIDVALIDITY, UID) is recorded is never stored again. The
  unique key makes this hold even for two instances at once: the loser's transaction fails
  (`AlreadyRecorded`) and stores nothing.
- A message whose raw bytes (SHA-256) this mailbox already stored, under any UID or
  UIDVALIDITY, is recorded as a `duplicate` of the stored row, not stored again: what makes a
  rescan after a UIDVALIDITY change safe.
- The cursor (`last_uid`) only moves in the transaction that records the messages below it,
  so it never claims more than is stored. It saves work; it is never what prevents a
  duplicate (the import records are).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from gateway.inbound.intake import Envelope, Incoming, insert_received
from gateway.observe import metrics
from gateway.store.blobs import BlobStore
from gateway.store.db import Database
from gateway.store.models import ImapImport, MailboxState, table_of, utcnow
from gateway.store.upsert import upsert_for

_import = table_of(ImapImport)
_state = table_of(MailboxState)
_CHUNK = 500          # ids per IN (…) list
IMAP_ENVELOPE = Envelope(source="imap")   # IMAP knows no envelope: sender and recipients unknown


class AlreadyRecorded(Exception):
    """Another instance recorded one of these UIDs first; nothing of this batch was stored."""


@dataclass(frozen=True)
class UidSpace:
    """Where a UID means one message: a folder of a mailbox under one UIDVALIDITY."""

    mailbox: str
    folder: str
    uidvalidity: int


@dataclass(frozen=True)
class Cursor:
    folder: str
    uidvalidity: int | None
    last_uid: int


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes


@dataclass(frozen=True)
class Stored:
    mail_ids: list[int]       # new received_mail rows
    duplicates: int           # recorded as copies of mail stored before
    uids: list[int]           # every UID recorded by this batch


def _chunks(values: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def _in_space(space: UidSpace) -> Any:
    return ((_import.c.mailbox == space.mailbox) & (_import.c.folder == space.folder)
            & (_import.c.uidvalidity == space.uidvalidity))


# -- the cursor ------------------------------------------------------------------------------

def load_cursor(db: Database, name: str) -> Cursor:
    """The mailbox's cursor; its state row is created on first use."""
    with db.write() as session:
        session.execute(upsert_for(session)(_state).values(name=name)
                        .on_conflict_do_nothing(index_elements=["name"]))
        row = session.execute(select(_state.c.folder, _state.c.uidvalidity, _state.c.last_uid)
                              .where(_state.c.name == name)).one()
    return Cursor(row.folder, row.uidvalidity, row.last_uid)


def reset_cursor(db: Database, space: UidSpace) -> Cursor:
    """Start over in a new UID space (another folder, or a UIDVALIDITY change): every message
    there is looked at again; the content hashes keep the stored ones from being stored twice."""
    with db.write() as session:
        session.execute(update(_state).where(_state.c.name == space.mailbox).values(
            folder=space.folder, uidvalidity=space.uidvalidity, last_uid=0))
    return Cursor(space.folder, space.uidvalidity, 0)


# -- import records --------------------------------------------------------------------------

def recorded(db: Database, space: UidSpace, uids: Sequence[int]) -> dict[int, bool]:
    """Which of these UIDs are recorded, each with whether its `after` action is done."""
    found: dict[int, bool] = {}
    with db.read() as session:
        for chunk in _chunks(uids):
            rows = session.execute(select(_import.c.uid, _import.c.done)
                                   .where(_in_space(space), _import.c.uid.in_(chunk)))
            found.update((row.uid, row.done is not None) for row in rows)
    return found


def pending(db: Database, space: UidSpace) -> list[int]:
    """UIDs stored but not yet marked, moved or deleted (a crash or a failed change)."""
    with db.read() as session:
        return list(session.execute(select(_import.c.uid).where(
            _in_space(space), _import.c.done.is_(None)).order_by(_import.c.uid)).scalars())


def store_batch(db: Database, space: UidSpace, fetched: Sequence[Fetched], *,
                last_uid: int, backlog: int, blobs: BlobStore) -> Stored:
    """Store and record the fetched messages in one transaction (see the module's
    guarantees); also moves the cursor to `last_uid` and records the backlog."""
    now = utcnow()
    try:
        with db.write() as session:
            stored = _store(session, space, fetched, now, blobs)
            session.execute(update(_state).where(_state.c.name == space.mailbox).values(
                backlog=backlog, imported=_state.c.imported + len(stored.mail_ids)))
            session.execute(update(_state).where(_state.c.name == space.mailbox,
                                                 _state.c.last_uid < last_uid)
                            .values(last_uid=last_uid))
    except IntegrityError as exc:
        raise AlreadyRecorded(str(exc.orig)) from exc
    metrics.count_received(["imap"] * len(stored.mail_ids))     # committed
    return stored


def _store(session: Session, space: UidSpace, fetched: Sequence[Fetched],
           now: datetime, blobs: BlobStore) -> Stored:
    uids = [item.uid for item in fetched]
    taken: set[int] = set()
    for chunk in _chunks(uids):
        taken.update(session.execute(select(_import.c.uid).where(
            _in_space(space), _import.c.uid.in_(chunk))).scalars())
    todo = [(item, hashlib.sha256(item.raw).hexdigest()) for item in fetched
            if item.uid not in taken]
    known: dict[str, int] = {}
    hashes = sorted({digest for _, digest in todo})
    for start in range(0, len(hashes), _CHUNK):
        rows = session.execute(select(_import.c.sha256, _import.c.received_mail_id).where(
            _import.c.mailbox == space.mailbox,
            _import.c.sha256.in_(hashes[start:start + _CHUNK])))
        known.update((row.sha256, row.received_mail_id) for row in rows)
    fresh: dict[str, Incoming] = {}
    first_uid: dict[str, int] = {}
    for item, digest in todo:
        first_uid.setdefault(digest, item.uid)
        if digest not in known and digest not in fresh:
            fresh[digest] = Incoming(item.raw, IMAP_ENVELOPE)
    ids = insert_received(session, list(fresh.values()), now, blobs)
    new_ids = dict(zip(fresh, ids, strict=True))
    records: list[dict[str, Any]] = [
        {"mailbox": space.mailbox, "folder": space.folder, "uidvalidity": space.uidvalidity,
         "uid": item.uid, "sha256": digest,
         "received_mail_id": known.get(digest) or new_ids[digest],
         "duplicate": digest in known or first_uid[digest] != item.uid,
         "imported": now, "done": None}
        for item, digest in todo]
    if records:
        session.execute(insert(_import), records)
    return Stored(mail_ids=ids, duplicates=len(records) - len(ids),
                  uids=[r["uid"] for r in records])


def mark_done(db: Database, space: UidSpace, uids: Sequence[int]) -> None:
    """The `after` action was carried out for these UIDs (or they are gone)."""
    now = utcnow()
    with db.write() as session:
        for chunk in _chunks(uids):
            session.execute(update(_import).where(
                _in_space(space), _import.c.uid.in_(chunk), _import.c.done.is_(None))
                .values(done=now))


# -- reporting -------------------------------------------------------------------------------

def record_success(db: Database, name: str, *, messages: int, backlog: int,
                   owner: str) -> None:
    now = utcnow()
    with db.write() as session:
        session.execute(update(_state).where(_state.c.name == name).values(
            messages=messages, backlog=backlog, last_check=now, last_attempt=now,
            last_error=None, error_kind=None, error_since=None, failures=0, owner=owner))


def record_failure(db: Database, name: str, *, kind: str, message: str, owner: str) -> None:
    now = utcnow()
    with db.write() as session:
        session.execute(upsert_for(session)(_state).values(name=name)
                        .on_conflict_do_nothing(index_elements=["name"]))
        session.execute(update(_state).where(_state.c.name == name).values(
            last_attempt=now, last_error=message[:4000], error_kind=kind,
            failures=_state.c.failures + 1, owner=owner))
        session.execute(update(_state).where(_state.c.name == name,
                                             _state.c.error_since.is_(None))
                        .values(error_since=now))
