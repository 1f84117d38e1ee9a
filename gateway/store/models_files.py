"""The file exchange's schema (issue #7): exchange areas and the files uploaded into them.

Kept apart from `models.py` (which is at its size limit); `gateway/store/__init__.py` and
the migrations' `env.py` import this module, so the tables are part of `SQLModel.metadata`
wherever the schema is built or compared (the "migrations produce exactly the models" test
covers them).

- `file_area`: one token-secured area, usually linked to a ticket. Only the SHA-256 of the
  token is stored (unique, indexed: a lookup costs one index probe). `expires` is checked
  on every use; `revoked` ends an area at once; `download_count` counts against the
  optional `download_limit` (None: no limit); `closed` is set by housekeeping once an
  expired or revoked area's files were swept.
- `file_area_file`: one uploaded file: its content is a blob (`blob.sha256`, the
  content-addressed store under DATA_DIR/attachments), and `article_id` is the ticket
  article the upload was attached to (so the file belongs to the ticket as well).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index
from sqlmodel import Field, SQLModel

from gateway.store.models import _time, utcnow


class FileArea(SQLModel, table=True):
    """A file-exchange area reached by `/files/{token}`."""

    __tablename__ = "file_area"
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    token_hash: str = Field(unique=True, max_length=64)     # SHA-256 hex; never the token
    created: datetime = _time(default_factory=utcnow)
    created_by: str = Field(max_length=400)                 # "cli", "staff:ADDR", "web:USER"
    mailed_to: str = Field(default="", max_length=320)      # where the link was sent
    expires: datetime = _time()
    download_limit: int | None = Field(default=None)        # None: unlimited
    download_count: int = Field(default=0)
    revoked: datetime | None = _time(default=None)
    closed: datetime | None = _time(default=None)           # swept by housekeeping

    __table_args__ = (Index("ix_file_area_open_expires", "closed", "expires"),)


class FileAreaFile(SQLModel, table=True):
    """One file uploaded into an area; its bytes are the blob `sha256`."""

    __tablename__ = "file_area_file"
    id: int | None = Field(default=None, primary_key=True)
    area_id: int = Field(foreign_key="file_area.id", index=True)
    sha256: str = Field(foreign_key="blob.sha256", index=True, max_length=64)
    filename: str = Field(max_length=1000)
    content_type: str = Field(default="application/octet-stream", max_length=200)
    size: int = Field(sa_type=BigInteger)
    uploaded: datetime = _time(default_factory=utcnow)
    uploader: str = Field(default="", max_length=400)       # "link" or "link:ADDRESS"
    article_id: int | None = Field(default=None, foreign_key="article.id")
