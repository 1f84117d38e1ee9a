"""Periodic clean-up of rows that have served their purpose."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, or_, select, update
from sqlmodel import Session

from gateway.store.blobs import BlobStore
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
