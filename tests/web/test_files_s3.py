"""The portal with its blobs in S3 (a real SeaweedFS): a mail's attachment and file-exchange
uploads are stored as objects, nothing stays on local disk, and both download paths stream
them back; while the store is down a download fails without counting. Issue #15 item 2."""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from gateway.app import App, build_app
from gateway.config.settings import Settings
from gateway.store.models import table_of
from gateway.store.models_files import FileArea, FileAreaFile
from gateway.web.app import create_web_app
from tests.conftest import make_settings
from tests.s3 import SeaweedS3, free_ports
from tests.web.conftest import new_browser
from tests.web.test_files import new_area, upload
from tests.web.test_tickets import logged_in, ticket_by_mail

KB = 1024


@pytest.fixture
def settings(database_url: str, tmp_path: Path, s3_storage: dict[str, str]) -> Settings:
    return make_settings(database_url, tmp_path / "data", storage={
        "data_dir": str(tmp_path / "data"), **s3_storage}, files={
        "max_file_size": "20MB", "max_files": 3, "max_total_size": "30MB"})


def objects(app: App, server: SeaweedS3) -> list[str]:
    """The digests stored in the app's bucket (under its prefix)."""
    bucket, _, prefix = app.settings.storage.blobs.removeprefix("s3://").partition("/")
    listed = server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"].rsplit("/", 1)[1] for item in listed.get("Contents", []))


def local_files(app: App) -> list[Path]:
    root = app.settings.attachments_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_mail_attachment_in_s3_is_downloaded_through_the_portal(
        app: App, customers: None, web: FastAPI, s3_server: SeaweedS3) -> None:
    content = b"Pruefbericht\n" * 1000
    number = ticket_by_mail(app, "Mit Anlage", attachment=content)
    assert objects(app, s3_server) == [hashlib.sha256(content).hexdigest()]
    assert local_files(app) == []
    client = logged_in(app, web, "mmuster")
    link = re.search(r'href="(/tickets/\d+/attachments/\d+)"', client.get(f"/tickets/{number}")
                     .text)
    assert link
    response = client.get(link.group(1))
    assert response.status_code == 200 and response.content == content
    assert response.headers["content-length"] == str(len(content))


def test_file_exchange_uploads_go_to_s3_and_come_back(
        app: App, customers: None, web: FastAPI, s3_server: SeaweedS3) -> None:
    number = ticket_by_mail(app, "Logdateien fehlen")
    token = new_area(app, number)
    client = new_browser(web)
    large = random.Random(3).randbytes(12 * KB * KB)     # a multipart upload (8 MiB parts)
    small = b"line\n" * 5000
    done = upload(client, token, ("dump.bin", large, "application/octet-stream"),
                  ("server.log", small, "text/plain"))
    assert done.status_code == 303, done.text
    with app.db.read() as session:
        rows = session.execute(select(table_of(FileAreaFile)).order_by(
            table_of(FileAreaFile).c.id)).all()
    digests = [hashlib.sha256(large).hexdigest(), hashlib.sha256(small).hexdigest()]
    assert [r.sha256 for r in rows] == digests
    assert objects(app, s3_server) == sorted(digests)
    assert local_files(app) == []                          # no staging file left behind
    for row, content in zip(rows, (large, small), strict=True):
        got = client.get(f"/files/{token}/{row.id}")
        assert got.status_code == 200
        assert got.content == content
    again = upload(client, token, ("copy.bin", large, "application/octet-stream"))
    assert again.status_code == 303                       # same content: stored once
    assert objects(app, s3_server) == sorted(digests)


def test_a_download_while_s3_is_down_fails_and_counts_nothing(
        app: App, customers: None, web: FastAPI, tmp_path: Path) -> None:
    """The same database, but an object store that does not answer: the download fails
    (500) and its claim rolls back, so the download limit is not used up by it."""
    number = ticket_by_mail(app, "Nur ein Download")
    token = new_area(app, number, download_limit=1)
    assert upload(new_browser(web), token, ("a.txt", b"abc", "text/plain")).status_code == 303
    with app.db.read() as session:
        file_id = session.execute(select(table_of(FileAreaFile).c.id)).scalar_one()
    [port] = free_ports(1)
    storage = app.settings.storage.model_copy(update={
        "s3_endpoint": f"http://127.0.0.1:{port}"})
    cut_off = build_app(app.settings.model_copy(update={"storage": storage}))
    try:
        with TestClient(create_web_app(cut_off), base_url="http://127.0.0.1:8080",
                        raise_server_exceptions=False) as client:
            assert client.get(f"/files/{token}/{file_id}").status_code == 500
    finally:
        cut_off.close()
    with app.db.read() as session:
        count = session.execute(select(table_of(FileArea).c.download_count)).scalar_one()
    assert count == 0
    got = new_browser(web).get(f"/files/{token}/{file_id}")
    assert got.status_code == 200 and got.content == b"abc"
