"""Large mails with the blobs in S3 (a real SeaweedFS): over SMTP they become a ticket whose
raw mail and attachment are objects in the bucket; when the object store cannot be reached,
no mail is lost: SMTP answers 451 and `ingest` exits 75. Issue #15 item 2."""

from __future__ import annotations

import hashlib
import random
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.app import App, build_app, prepare_database
from gateway.inbound.intake import RAW_IN_ROW_LIMIT, stored_raw
from gateway.inbound.worker import process_due
from gateway.store.models import ReceivedMail, table_of
from gateway.tickets.queries import ticket_detail
from tests.conftest import make_settings, write_config
from tests.integration.smtp_helpers import customer_mail, running_listener
from tests.s3 import SeaweedS3, free_ports

_received = table_of(ReceivedMail)
MiB = 1024 * 1024


def attachment_mail(size: int, message_id: str) -> bytes:
    message = customer_mail(message_id=message_id)
    message.add_attachment(random.Random(size).randbytes(size), maintype="application",
                           subtype="octet-stream", filename="dump.bin")
    return message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def bucket_digests(app: App, server: SeaweedS3) -> set[str]:
    bucket, _, prefix = app.settings.storage.blobs.removeprefix("s3://").partition("/")
    listed = server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {item["Key"].rsplit("/", 1)[1] for item in listed.get("Contents", [])}


def local_files(app: App) -> list[Path]:
    root = app.settings.attachments_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_large_mail_over_smtp_lands_in_s3(s3_app: App, s3_server: SeaweedS3) -> None:
    app = s3_app
    raw = attachment_mail(3 * MiB, "<large-s3@acme>")
    assert len(raw) > RAW_IN_ROW_LIMIT
    with running_listener(app) as port, smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.sendmail("max@acme.example", ["incident@support.example.com"], raw)
    with app.db.read() as session:
        [row] = session.execute(select(_received)).all()
    assert (row.raw, row.size, row.raw_sha256) == (b"", len(raw),
                                                  hashlib.sha256(raw).hexdigest())
    assert row.raw_sha256 in bucket_digests(app, s3_server)
    assert stored_raw(app.blobs, row.raw, row.size, row.raw_sha256) == raw
    [result] = process_due(app.db, app.stages)
    assert result.outcome == "created"
    with app.db.read() as session:
        detail = ticket_detail(session, str(result.ticket_number))
    [attachment] = detail["articles"][0]["attachments"]
    assert attachment["size"] == 3 * MiB
    assert bucket_digests(app, s3_server) == {row.raw_sha256, attachment["sha256"]}
    with app.blobs.open(attachment["sha256"]) as handle:
        assert handle.read() == random.Random(3 * MiB).randbytes(3 * MiB)
    assert local_files(app) == []                 # staging files gone, no local blobs


@pytest.fixture
def dead_s3(database_url: str, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """An app whose object store does not answer: nothing listens at its endpoint."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    [port] = free_ports(1)
    built = build_app(make_settings(database_url, tmp_path / "data", storage={
        "data_dir": str(tmp_path / "data"), "blobs": "s3://gone/blobs",
        "s3_endpoint": f"http://127.0.0.1:{port}", "s3_region": "us-east-1"}))
    prepare_database(built, migrate=False)
    yield built
    built.close()


def received_count(app: App) -> int:
    with app.db.read() as session:
        return int(session.execute(select(func.count()).select_from(_received)).scalar_one())


def test_smtp_answers_451_for_a_large_mail_it_cannot_store(dead_s3: App) -> None:
    app = dead_s3
    small = customer_mail(subject="Klein", message_id="<small@acme>").as_bytes() \
        .replace(b"\n", b"\r\n")
    with running_listener(app) as port, smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo()
        client.mail("max@acme.example")
        client.rcpt("incident@support.example.com")
        code, text = client.data(attachment_mail(2 * MiB, "<large-dead@acme>"))
        assert (code, text) == (451, b"4.3.0 Temporary failure, please try again later")
        assert client.noop()[0] == 250                        # the session goes on
        client.sendmail("max@acme.example", ["incident@support.example.com"], small)
    assert received_count(app) == 1                           # the small one, in its row
    assert local_files(app) == []                             # the spooled one is removed


def test_ingest_exits_75_for_a_large_mail_it_cannot_store(dead_s3: App, run_cli: Any,
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    storage = dead_s3.settings.storage
    config = write_config(tmp_path / "c.toml", dead_s3.settings.database_url())
    text = config.read_text("utf-8").replace(
        '[storage]\ndata_dir = "data"\n',
        f'[storage]\ndata_dir = "data"\nblobs = "{storage.blobs}"\n'
        f's3_endpoint = "{storage.s3_endpoint}"\ns3_region = "us-east-1"\n')
    config.write_text(text, "utf-8")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    mail = tmp_path / "large.eml"
    mail.write_bytes(attachment_mail(2 * MiB, "<ingest-dead@acme>"))
    result = run_cli("--config", str(config), "ingest", "-r", "incident@support.example.com",
                     str(mail))
    assert result.exit_code == 75, result.output
    assert "could not store the mail: BlobStoreError" in result.stderr
    assert received_count(dead_s3) == 0
