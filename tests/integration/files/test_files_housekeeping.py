"""The file-exchange sweep on both databases: expired and revoked areas are closed, files
only they held are removed (rows and disk), files a ticket or an open area holds stay."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select

from gateway.app import App
from gateway.files.exchange import StagedFile, create_area, find_area, record_uploads
from gateway.jobs import _sweep_file_areas
from gateway.store.models import Attachment, Blob, ReceivedMail, table_of, utcnow
from gateway.store.models_files import FileArea, FileAreaFile
from gateway.tickets.ticket import find_ticket
from gateway.tickets.tokens import hash_token
from tests.web.conftest import customers  # noqa: F401  (the fixture)
from tests.web.test_tickets import ticket_by_mail

_area = table_of(FileArea)


def stage(app: App, content: bytes, name: str) -> StagedFile:
    handle = app.blobs.staging_file()
    with handle:
        handle.write(content)
    return StagedFile(Path(handle.name), name, "application/octet-stream", len(content),
                      hashlib.sha256(content).hexdigest())


def area_with_files(app: App, ticket_id: int | None, *contents: bytes) -> tuple[int, str]:
    """An area (with a ticket, or a bare one) holding these files; its id and token."""
    with app.db.write() as session:
        if ticket_id is not None:
            created = create_area(session, app.answering, ticket_id, created_by="test", mail_to="")
            area_id, token = created.id, created.token
        else:
            token = secrets.token_urlsafe(32)
            area_id = session.execute(insert(_area).returning(_area.c.id).values(
                ticket_id=None, token_hash=hash_token(token), created=utcnow(),
                created_by="test", mailed_to="", expires=utcnow() + timedelta(days=7),
                download_count=0)).scalar_one()
        area = find_area(session, token, lock=True)
        assert area is not None
        record_uploads(session, app.answering, app.blobs, area, [stage(app, c, f"f{i}") for i, c in
                                            enumerate(contents)])
    return area_id, token


def shas(app: App, model: object) -> set[str]:
    with app.db.read() as session:
        return set(session.execute(select(table_of(model).c.sha256)).scalars())  # type: ignore[arg-type]


def test_sweep_removes_only_what_nothing_else_holds(app: App,
                                                   customers: None) -> None:  # noqa: F811
    with app.db.read() as session:
        ticket_id = find_ticket(session, ticket_by_mail(app, "Dateien")).id
    attached, lonely, shared, revoked_only = (secrets.token_bytes(100) for _ in range(4))
    with app.db.read() as session:                 # the same bytes as a received mail
        mail = session.execute(select(table_of(ReceivedMail).c.raw)).scalar_one()
    with_ticket, _ = area_with_files(app, ticket_id, attached)
    bare, _ = area_with_files(app, None, lonely, shared, mail)
    still_open, open_token = area_with_files(app, None, shared)
    revoked, _ = area_with_files(app, None, revoked_only)
    digest = {c: hashlib.sha256(c).hexdigest() for c in (attached, lonely, shared,
                                                          revoked_only, mail)}
    with app.db.write() as session:
        session.execute(_area.update().where(_area.c.id.in_([with_ticket, bare]))
                        .values(expires=utcnow() - timedelta(minutes=1)))
        session.execute(_area.update().where(_area.c.id == revoked).values(revoked=utcnow()))

    _sweep_file_areas(app.db, app.blobs)

    with app.db.read() as session:
        closed = dict(session.execute(select(_area.c.id, _area.c.closed)).all())
        assert find_area(session, open_token) is not None
    assert {k for k, v in closed.items() if v is not None} == {with_ticket, bare, revoked}
    assert closed[still_open] is None
    kept = {digest[attached], digest[shared], digest[mail]}
    assert shas(app, Blob) == kept
    assert shas(app, FileAreaFile) == {digest[shared]}              # only the open area's
    assert digest[attached] in shas(app, Attachment)               # the ticket keeps it
    for content, sha in digest.items():
        assert app.blobs.path_for(sha).exists() == (sha in kept), content[:4]
    assert not [p for p in app.blobs.root.rglob(".incoming-*")]

    _sweep_file_areas(app.db, app.blobs)                     # a second run finds nothing more to do
    assert shas(app, Blob) == kept
