"""The file exchange (issue #7): token-secured areas where a customer uploads files for a
ticket and downloads them again.

In: the caller's session (one transaction), an `answers.Answering` (settings and renderer),
the blob store for uploads, a ticket id, a token from a URL, or uploads already streamed to
staging files (`StagedFile`, see `web/file_uploads.py`).
Out: `file_area` / `file_area_file` rows, a ticket article carrying the uploaded files, and
queued mails (the link to the customer, the notification to the queue's staff). Nothing
here commits: an area and its mail, or an upload and its article, commit together.

Guarantees:
- A token is 256 bits from `secrets`; only its SHA-256 is stored, found through the unique
  index and confirmed with `hmac.compare_digest`. Expiry and revocation are checked in the
  same query on every use, so `find_area` answers a wrong, an expired and a revoked token
  with the same `None` (callers refuse them alike).
- Limits (file size, files and bytes per area) are checked again, with the area row
  locked, before an upload is recorded; `UploadRefused` says which one.
- A download is counted by one conditional UPDATE, so a download limit holds under
  concurrent requests on SQLite and PostgreSQL.
- `create_area_for_address` is the entry point for mail that is too large for the inbound
  limit: inside the caller's transaction it opens an area for a ticket and queues the link
  mail to the address given; it returns the area id.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlmodel import Session

from gateway.config.settings import FilesSettings
from gateway.errors import InvalidInput, NotFound
from gateway.mail.attachment_scan import ScannedFile
from gateway.outbound import answers
from gateway.outbound.answers import Answering
from gateway.outbound.headers import MailIdentity, new_message_id
from gateway.store.blobs import BlobStore, StoredBlob, record_blob
from gateway.store.models import Ticket, table_of, utcnow
from gateway.store.models_files import FileArea, FileAreaFile
from gateway.tickets.facts import ticket_facts
from gateway.tickets.ticket import NewArticle, NewAttachment, add_article
from gateway.tickets.tokens import hash_token

log = logging.getLogger(__name__)

_area = table_of(FileArea)
_file = table_of(FileAreaFile)
_ticket = table_of(Ticket)

TOKEN_BYTES = 32                                 # 256 bits; the issue asks for at least 128
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,128}")
MAX_DAYS = 365


class UploadRefused(Exception):
    """An upload breaks a limit (`reason`: file-too-large, too-many-files, area-full) or is
    incomplete; nothing of it is kept."""

    def __init__(self, reason: str, limit: int = 0) -> None:
        super().__init__(f"{reason} (limit {limit})")
        self.reason = reason
        self.limit = limit


class DownloadLimitReached(Exception):
    """The area's downloads are used up."""


@dataclass(frozen=True)
class AreaPolicy:
    expiry: timedelta
    max_file_size: int
    max_files: int
    max_total_size: int
    download_limit: int | None

    @classmethod
    def from_settings(cls, files: FilesSettings) -> AreaPolicy:
        return cls(timedelta(days=files.expiry_days), files.max_file_size, files.max_files,
                   files.max_total_size, files.download_limit or None)


@dataclass(frozen=True)
class StagedFile:
    """One uploaded file, complete and fsynced in a staging file of the blob store's spool."""

    path: Path
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class AreaFile:
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded: datetime


@dataclass(frozen=True)
class OpenArea:
    """An area a valid token opened: what its page shows."""

    id: int
    ticket_id: int | None
    ticket_number: str | None
    expires: datetime
    download_limit: int | None
    download_count: int
    mailed_to: str
    files: tuple[AreaFile, ...]

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def downloads_left(self) -> int | None:
        if self.download_limit is None:
            return None
        return max(0, self.download_limit - self.download_count)


@dataclass(frozen=True)
class CreatedArea:
    id: int
    token: str                  # shown once (CLI, portal) and mailed; never stored
    url: str
    expires: datetime
    mailed_to: str              # "" when no mail was queued


def file_url(base_url: str, token: str) -> str:
    """The link, built from `[web] base_url` (never from a request's Host header)."""
    return f"{base_url.rstrip('/')}/files/{token}"


def plausible_token(token: str) -> bool:
    return bool(_TOKEN_SHAPE.fullmatch(token))


# -- creating and ending areas -----------------------------------------------------------------

def create_area(session: Session, answering: Answering, ticket_id: int, *, created_by: str,
                mail_to: str | None = None, expires_days: int | None = None,
                download_limit: int | None = None, too_large: int | None = None,
                left_out: Sequence[ScannedFile] = (),
                now: datetime | None = None) -> CreatedArea:
    """Open an area for a ticket and mail its link to `mail_to` (None: the ticket's
    customer; "": nobody). `download_limit` 0 means none; None takes the config's.
    `too_large`: the size of a mail over the inbound limit, which the link mail explains,
    naming the attachments that were `left_out`."""
    policy = AreaPolicy.from_settings(answering.settings.files)
    days = expires_days if expires_days is not None else answering.settings.files.expiry_days
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"expiry of {days} days: give 1 to {MAX_DAYS}")
    if download_limit is not None and download_limit < 0:
        raise InvalidInput("the download limit cannot be negative (0 = no limit)")
    limit = policy.download_limit if download_limit is None else (download_limit or None)
    if mail_to is None:
        mail_to = ticket_facts(session, answering.settings, ticket_id).address
    now = now or utcnow()
    token = secrets.token_urlsafe(TOKEN_BYTES)
    expires = now + timedelta(days=days)
    area_id = session.execute(insert(_area).returning(_area.c.id).values(
        ticket_id=ticket_id, token_hash=hash_token(token), created=now,
        created_by=created_by[:400], mailed_to="", expires=expires, download_limit=limit,
        download_count=0, revoked=None, closed=None)).scalar_one()
    mailed = ""
    if mail_to and answers.file_link(session, answering, ticket_id, to_address=mail_to, token=token,
                                     expires=expires, too_large=too_large,
                                     left_out=left_out):
        mailed = mail_to
        session.execute(update(_area).where(_area.c.id == area_id).values(mailed_to=mailed))
    log.info("file area %d for ticket id %d by %s (link mailed to %s)", area_id, ticket_id,
             created_by, mailed or "nobody")
    url = file_url(answering.settings.web.base_url, token)
    return CreatedArea(area_id, token, url, expires, mailed)


def create_area_for_address(session: Session, answering: Answering, ticket_id: int, address: str, *,
                            too_large: int, left_out: Sequence[ScannedFile] = (),
                            created_by: str = "mail") -> CreatedArea:
    """For a mail over the inbound size limit (`too_large` bytes), whose text was kept: an
    area for its ticket, the link queued to `address` with why and which attachments to
    upload (`left_out`), in the caller's transaction."""
    return create_area(session, answering, ticket_id, created_by=created_by, mail_to=address,
                       too_large=too_large, left_out=left_out)


def files_command(session: Session, answering: Answering, ticket_id: int, days: str, *,
                  actor: str) -> str:
    """Staff's `#files [DAYS]`: an area whose link goes to the ticket's customer. What was
    done, for the staff member; "#files DAYS: why" when it could not be done (the pipeline
    then tells them by mail)."""
    label = f"#files {days}".rstrip()
    address = ticket_facts(session, answering.settings, ticket_id).address
    if not address:
        return f"{label}: the ticket has no customer address to send the link to"
    created = create_area(session, answering, ticket_id, created_by=actor,
                          expires_days=int(days) if days else None)
    if not created.mailed_to:
        revoke_area(session, created.id)      # nobody can ever use it
        return f"{label}: the link could not be mailed to {address}"
    return f"{label} (link mailed to {created.mailed_to}, valid until " \
           f"{created.expires:%Y-%m-%d %H.%M} UTC)"


def revoke_area(session: Session, area_id: int, *, now: datetime | None = None) -> bool:
    """End an area at once; False when it was revoked already. `NotFound` if unknown."""
    found = session.execute(select(_area.c.revoked).where(_area.c.id == area_id)).one_or_none()
    if found is None:
        raise NotFound(f"no file-exchange area with id {area_id}")
    if found.revoked is not None:
        return False
    session.execute(update(_area).where(_area.c.id == area_id).values(revoked=now or utcnow()))
    return True


# -- using an area -------------------------------------------------------------------------------

def find_area(session: Session, token: str, *, now: datetime | None = None,
              lock: bool = False) -> OpenArea | None:
    """The area this token opens, or None (wrong, expired or revoked: the same None)."""
    if not plausible_token(token):
        return None
    wanted = hash_token(token)
    statement = (select(_area, _ticket.c.number)
                 .select_from(_area.outerjoin(_ticket, _ticket.c.id == _area.c.ticket_id))
                 .where(_area.c.token_hash == wanted, _area.c.revoked.is_(None),
                        _area.c.expires > (now or utcnow())))
    if lock:
        statement = statement.with_for_update(of=_area)
    row = session.execute(statement).one_or_none()
    if row is None or not hmac.compare_digest(row.token_hash, wanted):
        return None
    files = tuple(AreaFile(f.id, f.filename, f.content_type, f.size, f.sha256, f.uploaded)
                  for f in session.execute(select(_file).where(_file.c.area_id == row.id)
                                           .order_by(_file.c.id)))
    return OpenArea(row.id, row.ticket_id, row.number, row.expires, row.download_limit,
                    row.download_count, row.mailed_to, files)


def claim_download(session: Session, area: OpenArea, file_id: int, *,
                   now: datetime | None = None) -> AreaFile | None:
    """Count one download of a file of the area; None when the area has no such file,
    `DownloadLimitReached` when the downloads are used up."""
    wanted = next((f for f in area.files if f.id == file_id), None)
    if wanted is None:
        return None
    counted = session.execute(update(_area).where(
        _area.c.id == area.id, _area.c.revoked.is_(None), _area.c.expires > (now or utcnow()),
        (_area.c.download_limit.is_(None)) | (_area.c.download_count < _area.c.download_limit))
        .values(download_count=_area.c.download_count + 1))
    if counted.rowcount != 1:   # type: ignore[attr-defined]
        raise DownloadLimitReached
    return wanted


def check_limits(policy: AreaPolicy, area: OpenArea, staged: Sequence[StagedFile]) -> None:
    """`UploadRefused` when these files do not fit into the area any more."""
    for item in staged:
        if item.size > policy.max_file_size:
            raise UploadRefused("file-too-large", policy.max_file_size)
    if len(area.files) + len(staged) > policy.max_files:
        raise UploadRefused("too-many-files", policy.max_files)
    if area.total_size + sum(s.size for s in staged) > policy.max_total_size:
        raise UploadRefused("area-full", policy.max_total_size)


def record_uploads(session: Session, answering: Answering, blobs: BlobStore, area: OpenArea,
                   staged: Sequence[StagedFile], *, now: datetime | None = None) -> int | None:
    """Store the staged files as blobs of the area (the area must be locked: `find_area(...,
    lock=True)`), attach them to the ticket as one article and notify the queue's staff;
    the article id (None for an area without a ticket). Staging files are adopted or gone
    when this returns; on an exception the caller removes what is left."""
    check_limits(AreaPolicy.from_settings(answering.settings.files), area, staged)
    now = now or utcnow()
    uploader = f"link:{area.mailed_to}" if area.mailed_to else "link"
    for item in staged:
        record_blob(session, StoredBlob(item.sha256, item.size))
        blobs.adopt(item.path, item.sha256)    # after the row: see housekeeping
    article_id = None
    if area.ticket_id is not None:
        article_id = _attach_to_ticket(session, answering, area, staged, now)
    session.execute(insert(_file), [
        {"area_id": area.id, "sha256": s.sha256, "filename": s.filename,
         "content_type": s.content_type, "size": s.size, "uploaded": now,
         "uploader": uploader[:400], "article_id": article_id} for s in staged])
    return article_id


_ARTICLE_TEXT = {
    "de": ("Dateien über den Dateiaustausch hochgeladen", "Datei"),
    "en": ("Files uploaded via the file exchange", "File"),
}


def _attach_to_ticket(session: Session, answering: Answering, area: OpenArea,
                      staged: Sequence[StagedFile], now: datetime) -> int:
    assert area.ticket_id is not None
    facts = ticket_facts(session, answering.settings, area.ticket_id)
    subject, _ = _ARTICLE_TEXT.get(facts.language, _ARTICLE_TEXT["en"])
    lines = [f"{subject}:", ""] + [f"- {s.filename} ({s.size} bytes, SHA-256 {s.sha256})"
                                   for s in staged]
    body = "\n".join(lines)
    domain = MailIdentity.parse(facts.queue.from_).address.rpartition("@")[2] or "localhost"
    message_id = new_message_id(domain)
    article_id = add_article(session, area.ticket_id, NewArticle(
        direction="in", channel="web", sender="customer", internal=False,
        from_address=area.mailed_to, subject=subject, body=body, message_id=message_id,
        attachments=tuple(NewAttachment(filename=s.filename, content_type=s.content_type,
                                        sha256=s.sha256, size=s.size) for s in staged)),
        now=now)
    answers.notify_staff(session, answering, facts, kind="files", body=body, in_reply_to=message_id)
    return article_id


# -- listings ------------------------------------------------------------------------------------

def area_state(row: Any, now: datetime) -> str:
    if row.revoked is not None:
        return "revoked"
    if row.expires <= now:
        return "expired"
    if row.download_limit is not None and row.download_count >= row.download_limit:
        return "downloads-used"
    return "open"


def list_areas(session: Session, *, ticket_number: str | None = None,
               now: datetime | None = None) -> list[dict[str, Any]]:
    """Areas, newest first, with their files (for `ticketgw files list`)."""
    now = now or utcnow()
    statement = (select(_area, _ticket.c.number)
                 .select_from(_area.outerjoin(_ticket, _ticket.c.id == _area.c.ticket_id))
                 .order_by(_area.c.id.desc()))
    if ticket_number is not None:
        statement = statement.where(_ticket.c.number == ticket_number.strip())
    rows = session.execute(statement).all()
    files: dict[int, list[dict[str, Any]]] = {}
    if rows:
        for f in session.execute(select(_file).where(_file.c.area_id.in_([r.id for r in rows]))
                                 .order_by(_file.c.id)):
            files.setdefault(f.area_id, []).append(
                {"filename": f.filename, "content_type": f.content_type, "size": f.size,
                 "sha256": f.sha256, "uploaded": f.uploaded})
    return [{"id": r.id, "ticket": r.number, "state": area_state(r, now), "created": r.created,
             "created_by": r.created_by, "mailed_to": r.mailed_to, "expires": r.expires,
             "revoked": r.revoked, "download_limit": r.download_limit,
             "download_count": r.download_count, "files": files.get(r.id, [])}
            for r in rows]


def count_open_areas(session: Session, ticket_id: int, *, now: datetime | None = None) -> int:
    return int(session.execute(select(func.count()).select_from(_area).where(
        _area.c.ticket_id == ticket_id, _area.c.revoked.is_(None),
        _area.c.expires > (now or utcnow()))).scalar_one())
