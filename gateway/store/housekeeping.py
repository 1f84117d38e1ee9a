"""Periodic clean-up of rows that have served their purpose, and of blobs no row names.

Each function returns what it removed; the row sweeps work in the caller's transaction, the
blob sweep in its own short ones. A failure raises (the next run tries again).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import islice

from sqlalchemy import delete, exists, or_, select, update
from sqlmodel import Session

from gateway.store.blobs import BlobStore
from gateway.store.db import Database
from gateway.store.models import Attachment, Blob, ReceivedMail, Token, table_of
from gateway.store.models_files import FileArea, FileAreaFile

_token = table_of(Token)
_area = table_of(FileArea)
_area_file = table_of(FileAreaFile)
_attachment = table_of(Attachment)
_blob = table_of(Blob)
_received = table_of(ReceivedMail)


def purge_expired_tokens(session: Session, now: datetime,
                         keep: timedelta = timedelta(days=1)) -> int:
    """Delete tokens that expired (or were used) more than `keep` ago; returns how many.
    A token is refused as soon as it expires or is used; keeping it a while longer only
    lets a refusal say "expired" rather than "unknown"."""
    cutoff = now - keep
    result = session.execute(delete(_token).where(
        or_(_token.c.expires < cutoff, _token.c.used < cutoff)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def sweep_file_areas(session: Session, blobs: BlobStore, now: datetime) -> tuple[int, int]:
    """Close the file-exchange areas that expired or were revoked: their file rows go, and
    so does every blob that nothing else references (a file uploaded for a ticket is also
    the ticket's attachment and stays; a received mail's raw bytes may be the same blob).
    Returns (areas closed, blobs removed).

    Blob rows are locked before their references are checked, and their files are deleted
    before this transaction commits: an upload of the same content in parallel either
    commits first (then it is a reference and the blob stays) or finds the row gone and
    writes the file again (`BlobStore.adopt` after `record_blob`). A failed commit leaves
    rows whose files are gone, but only of closed areas, which nothing can open; the next
    sweep removes them."""
    closing = select(_area.c.id).where(
        _area.c.closed.is_(None), or_(_area.c.expires <= now, _area.c.revoked.is_not(None)))
    if session.get_bind().dialect.name == "postgresql":
        closing = closing.with_for_update(skip_locked=True)
    area_ids = list(session.execute(closing).scalars())
    if not area_ids:
        return 0, 0
    candidates = set(session.execute(select(_area_file.c.sha256).where(
        _area_file.c.area_id.in_(area_ids))).scalars())
    session.execute(delete(_area_file).where(_area_file.c.area_id.in_(area_ids)))
    session.execute(update(_area).where(_area.c.id.in_(area_ids)).values(closed=now))
    removed = 0
    for sha256 in sorted(candidates):
        locked = session.execute(select(_blob.c.sha256).where(_blob.c.sha256 == sha256)
                                 .with_for_update()).scalar_one_or_none()
        referenced = session.execute(select(          # a raw mail may live there too
            exists().where(_attachment.c.sha256 == sha256)
            | exists().where(_area_file.c.sha256 == sha256)
            | exists().where(_received.c.raw_sha256 == sha256))).scalar()
        if locked is None or referenced:
            continue
        session.execute(delete(_blob).where(_blob.c.sha256 == sha256))
        blobs.remove(sha256)
        removed += 1
    return len(area_ids), removed


BLOB_GRACE = timedelta(days=1)   # far longer than any upload takes before its row commits


def sweep_unreferenced_blobs(db: Database, blobs: BlobStore, now: datetime,
                             grace: timedelta = BLOB_GRACE) -> int:
    """Delete the blobs written more than `grace` ago that no row names (no `blob` row and
    no reference): what a rolled-back transaction or a crash between upload and commit
    left behind. Staging files older than `grace` go too. Returns how many blobs went.

    The same on every backend (a directory listing, or the bucket's prefix on S3). Blobs
    are listed outside any transaction and checked 500 at a time in short read
    transactions, so a large bucket never holds up a writer. A blob is written before the
    row that names it commits, so one being stored right now is younger than `grace` and
    never looked at. Left open: an old unreferenced blob whose content is stored again in
    the moment between its check and its deletion (the new upload finds it present and
    skips writing it); `grace` makes that a blob nobody referenced for a day reappearing
    within milliseconds."""
    removed = 0
    found = blobs.stored_before(now - grace)
    while batch := list(islice(found, 500)):
        with db.read() as session:
            unreferenced = _unreferenced(session, batch)
        for sha256 in unreferenced:
            blobs.remove(sha256)
            removed += 1
    blobs.remove_stale_staging(now - grace)
    return removed


def _unreferenced(session: Session, digests: list[str]) -> list[str]:
    named = set(session.execute(select(_blob.c.sha256).where(_blob.c.sha256.in_(digests)))
                .scalars())
    for column in (_attachment.c.sha256, _area_file.c.sha256, _received.c.raw_sha256):
        named |= set(session.execute(select(column).where(column.in_(digests))).scalars())
    return [sha256 for sha256 in digests if sha256 not in named]
