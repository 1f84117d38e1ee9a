"""The file exchange over HTTP (the real app through Starlette's TestClient) on SQLite and
PostgreSQL: upload several files, download with safe headers, one refusal for expired,
revoked and wrong tokens, limits that leave nothing behind, download limit, rate limit on
guessing, expiry checked on every use."""

from __future__ import annotations

import hashlib
import re
import secrets
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.app import App
from gateway.config.settings import Settings
from gateway.files.exchange import create_area, revoke_area
from gateway.store.models import Article, Attachment, Blob, table_of, utcnow
from gateway.store.models_files import FileArea, FileAreaFile
from gateway.tickets.queries import ticket_detail
from gateway.tickets.ticket import find_ticket
from tests.conftest import make_settings
from tests.web.conftest import mails, new_browser, text_of
from tests.web.test_tickets import ticket_by_mail

KB = 1024


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "data", files={
        "max_file_size": "100KB", "max_files": 3, "max_total_size": "150KB",
        "rate_limit_per_address": 5})


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Python's temporary directory for this test, to prove nothing was spooled there."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    yield directory


@pytest.fixture
def ticket(app: App, customers: None) -> str:
    return ticket_by_mail(app, "Logdateien fehlen")


def new_area(app: App, number: str, **options: Any) -> str:
    with app.db.write() as session:
        ticket_id = find_ticket(session, number).id or 0
        return create_area(session, app.answering, ticket_id, created_by="test", **options).token


def upload(client: TestClient, token: str, *files: tuple[str, bytes, str]) -> Any:
    return client.post(f"/files/{token}",
                       files=[("files", (name, data, kind)) for name, data, kind in files])


def count(app: App, model: Any) -> int:
    with app.db.read() as session:
        return int(session.execute(select(func.count()).select_from(table_of(model)))
                   .scalar_one())


def blob_files(app: App) -> list[Path]:
    root = app.blobs.root
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_upload_two_files_then_download_one(app: App, ticket: str, web: FastAPI) -> None:
    token = new_area(app, ticket)
    client = new_browser(web)
    page = client.get(f"/files/{token}", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert f"Files for ticket {ticket}" in page.text and "No files yet." in page.text
    assert '<label for="files">' in page.text and 'enctype="multipart/form-data"' in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"

    log = b"line\n" * 5000
    html = b"<script>alert(1)</script>"
    done = upload(client, token, ("server.log", log, "text/plain"),
                  ("../../Bericht ü.html", html, "text/html"))
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"/files/{token}?uploaded=2"
    listed = client.get(done.headers["location"])
    assert "2 Dateien hochgeladen" in listed.text
    assert "server.log" in listed.text and "Bericht ü.html" in listed.text

    with app.db.read() as session:
        rows = session.execute(select(table_of(FileAreaFile)).order_by(
            table_of(FileAreaFile).c.id)).all()
    assert [(r.filename, r.size, r.sha256) for r in rows] == [
        ("server.log", len(log), hashlib.sha256(log).hexdigest()),
        ("Bericht ü.html", len(html), hashlib.sha256(html).hexdigest())]
    assert all(r.article_id is not None for r in rows)
    for row, content in zip(rows, (log, html), strict=True):
        assert app.blobs.path_for(row.sha256).read_bytes() == content

    got = client.get(f"/files/{token}/{rows[1].id}")
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == rows[1].sha256
    assert got.headers["content-type"] == "application/octet-stream"   # html is not served
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"Bericht _.html\"; filename*=UTF-8''Bericht%20%C3%BC.html")
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert got.headers["referrer-policy"] == "no-referrer"
    assert got.headers["cache-control"] == "private, no-store"
    assert client.get(f"/files/{token}/{rows[0].id}").headers["content-type"].startswith(
        "text/plain")

    with app.db.read() as session:           # attached to the ticket, staff notified
        detail = ticket_detail(session, ticket)
    article = detail["articles"][-1]
    assert article["channel"] == "web" and not article["internal"]
    assert [(a["filename"], a["sha256"]) for a in article["attachments"]] == [
        ("server.log", rows[0].sha256), ("Bericht ü.html", rows[1].sha256)]
    notes = [m for e, to, m in mails(app, "staff-notify") if "Dateien" in str(m["Subject"])]
    assert len(notes) == 1 and "server.log" in text_of(notes[0])
    from tests.web.test_tickets import logged_in
    view = logged_in(app, web, "mmuster").get(f"/tickets/{ticket}").text   # the portal too
    assert "Dateien über den Dateiaustausch hochgeladen" in view
    assert ">server.log</a>" in view and ">Bericht ü.html</a>" in view


def test_expired_revoked_and_wrong_tokens_are_refused_alike(app: App, ticket: str,
                                                            web: FastAPI) -> None:
    expired = new_area(app, ticket, now=utcnow() - timedelta(days=8))
    revoked = new_area(app, ticket)
    with app.db.write() as session:
        area_id = session.execute(select(table_of(FileArea).c.id)
                                  .order_by(table_of(FileArea).c.id.desc())).scalars().first()
        assert revoke_area(session, area_id or 0)
    wrong = secrets.token_urlsafe(32)
    malformed = "x" * 5
    answers = []
    for n, token in enumerate((expired, revoked, wrong, malformed)):
        # one client address per token: three failures each stay below the guessing limit
        client = TestClient(web, base_url="http://127.0.0.1:8080", follow_redirects=False,
                            client=(f"192.0.2.{n + 1}", 5000))
        client.get("/login")                  # the browser cookie is set once, before
        for response in (client.get(f"/files/{token}"), client.get(f"/files/{token}/1"),
                         upload(client, token, ("a.txt", b"a", "text/plain"))):
            headers = {k: v for k, v in response.headers.items() if k not in ("date",)}
            # each browser's CSRF token (the language switch) differs, never by the file token
            page = re.sub(r'name="csrf" value="[0-9a-f]+"', 'name="csrf"', response.text)
            answers.append((response.status_code, headers, page))
    assert all(a == answers[0] for a in answers), [a[0] for a in answers]
    assert answers[0][0] == 404
    assert "Dieser Link ist ungültig oder abgelaufen." in answers[0][2]
    assert count(app, FileAreaFile) == 0 and blob_files(app) == []


def test_expiry_is_checked_on_every_use(app: App, ticket: str, web: FastAPI) -> None:
    token = new_area(app, ticket)
    client = new_browser(web)
    assert client.get(f"/files/{token}").status_code == 200
    with app.db.write() as session:
        session.execute(table_of(FileArea).update().values(expires=utcnow()))
    assert client.get(f"/files/{token}").status_code == 404
    assert upload(client, token, ("a.txt", b"a", "text/plain")).status_code == 404


def test_guessing_is_rate_limited_per_address(app: App, ticket: str, web: FastAPI) -> None:
    valid = new_area(app, ticket)
    client = new_browser(web)
    for _ in range(5):
        assert client.get(f"/files/{secrets.token_urlsafe(32)}").status_code == 404
    assert client.get(f"/files/{secrets.token_urlsafe(32)}").status_code == 429
    refused = client.get(f"/files/{valid}")      # a valid link learns nothing either
    assert refused.status_code == 429 and "Zu viele Versuche" in refused.text
    other = TestClient(web, base_url="http://127.0.0.1:8080", client=("192.0.2.7", 5000))
    assert other.get(f"/files/{valid}").status_code == 200


@pytest.mark.parametrize("files, reason", [
    ([("big.bin", 100 * KB + 1)], "höchstens 100 KB je Datei"),
    ([("a.bin", 80 * KB), ("b.bin", 80 * KB)], "150 KB zusammen"),
    ([("1", 10), ("2", 10), ("3", 10), ("4", 10)], "höchstens 3 in diesem Bereich"),
])
def test_an_upload_over_a_limit_is_refused_and_leaves_nothing(
        app: App, ticket: str, web: FastAPI, temp_dir: Path,
        files: list[tuple[str, int]], reason: str) -> None:
    token = new_area(app, ticket)
    client = new_browser(web)
    before = (count(app, Blob), count(app, Attachment), count(app, Article), len(mails(app)))
    blobs_before = blob_files(app)
    refused = upload(client, token, *[(n, secrets.token_bytes(s), "application/octet-stream")
                                      for n, s in files])
    assert refused.status_code == 413
    assert reason in refused.text and "Es wurde nichts gespeichert." in refused.text
    assert '<input id="files" name="files" type="file"' in refused.text   # try again
    assert blob_files(app) == blobs_before                # no blob, no .incoming-* file
    assert list(temp_dir.iterdir()) == []                 # nothing spooled elsewhere
    assert count(app, FileAreaFile) == 0
    assert (count(app, Blob), count(app, Attachment), count(app, Article),
            len(mails(app))) == before


def test_limits_count_what_the_area_holds_already(app: App, ticket: str, web: FastAPI) -> None:
    token = new_area(app, ticket)
    client = new_browser(web)
    assert upload(client, token, ("a", b"a" * 90 * KB, "text/plain")).status_code == 303
    refused = upload(client, token, ("b", b"b" * 70 * KB, "text/plain"))
    assert refused.status_code == 413 and count(app, FileAreaFile) == 1
    assert upload(client, token, ("b", b"b" * 50 * KB, "text/plain")).status_code == 303


def test_empty_and_broken_uploads(app: App, ticket: str, web: FastAPI, temp_dir: Path) -> None:
    token = new_area(app, ticket)
    client = new_browser(web)
    empty = client.post(f"/files/{token}", files=[("files", ("", b"", "application/x"))])
    assert empty.status_code == 400 and "mindestens eine Datei" in empty.text
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\n"
            b"Content-Type: text/plain\r\n\r\n" + b"a" * 5000)     # no closing boundary
    cut = client.post(f"/files/{token}", content=body,
                      headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert cut.status_code == 400 and "nicht vollständig" in cut.text
    assert blob_files(app) == [] and list(temp_dir.iterdir()) == []
    assert count(app, FileAreaFile) == 0


def test_download_limit(app: App, ticket: str, web: FastAPI) -> None:
    token = new_area(app, ticket, download_limit=2)
    client = new_browser(web)
    assert upload(client, token, ("a.txt", b"hello", "text/plain")).status_code == 303
    with app.db.read() as session:
        file_id = session.execute(select(table_of(FileAreaFile).c.id)).scalar_one()
    assert "Verbleibende Downloads: 2" in client.get(f"/files/{token}").text
    assert client.get(f"/files/{token}/{file_id}").content == b"hello"
    assert client.get(f"/files/{token}/{file_id}").content == b"hello"
    used = client.get(f"/files/{token}/{file_id}")
    assert used.status_code == 410 and "aufgebraucht" in used.text
    assert "Verbleibende Downloads: 0" in client.get(f"/files/{token}").text
    assert client.get(f"/files/{token}/999").status_code == 404
    with app.db.read() as session:
        assert session.execute(select(table_of(FileArea).c.download_count)).scalar_one() == 2


def test_the_ticket_view_button_creates_an_area_and_mails_the_link(
        app: App, ticket: str, web: FastAPI) -> None:
    import re

    from tests.web.conftest import csrf_of
    from tests.web.test_tickets import logged_in
    other = ticket_by_mail(app, "Fremd", sender="jane@globex.example")
    client = logged_in(app, web, "mmuster")
    view = client.get(f"/tickets/{ticket}")
    assert "Link zum Dateiaustausch anfordern" in view.text
    created = client.post(f"/tickets/{ticket}/files", data={"csrf": csrf_of(view.text)})
    assert created.status_code == 200, created.text
    assert "auch per E-Mail unterwegs" in created.text
    link = re.search(r'href="(http://127\.0\.0\.1:8080/files/[A-Za-z0-9_-]{43})"', created.text)
    assert link
    sent = mails(app, "file-link")
    assert [to for _, to, _ in sent] == [("max@acme.example",)]
    assert link.group(1) in text_of(sent[0][2])
    assert client.get(link.group(1).removeprefix("http://127.0.0.1:8080")).status_code == 200
    with app.db.read() as session:
        area = session.execute(select(table_of(FileArea))).one()
    assert (area.created_by, area.mailed_to) == ("web:mmuster", "max@acme.example")

    csrf = csrf_of(client.get(f"/tickets/{ticket}").text)
    assert client.post(f"/tickets/{other}/files", data={"csrf": csrf}).status_code == 404
    assert client.post(f"/tickets/{ticket}/files", data={"csrf": "nope"}).status_code == 403
    statuses = [client.post(f"/tickets/{ticket}/files", data={"csrf": csrf}).status_code
                for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]       # five per window and username
    assert count(app, FileArea) == 5


def test_a_download_limit_holds_under_parallel_requests(app: App, ticket: str,
                                                        web: FastAPI) -> None:
    import threading

    from gateway.files.exchange import DownloadLimitReached, claim_download, find_area
    token = new_area(app, ticket, download_limit=3)
    assert upload(new_browser(web), token, ("a.txt", b"x", "text/plain")).status_code == 303
    with app.db.read() as session:
        area = find_area(session, token)
    assert area is not None
    results: list[str] = []
    start = threading.Barrier(8)

    def download() -> None:
        start.wait()
        try:
            with app.db.write() as session:
                claim_download(session, area, area.files[0].id)
            results.append("ok")
        except DownloadLimitReached:
            results.append("refused")

    threads = [threading.Thread(target=download) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == ["ok"] * 3 + ["refused"] * 5
