"""Two `ticketgw serve` instances with their own data_dir, ports and processes, sharing one
PostgreSQL database and one S3 bucket (a real SeaweedFS): what one stores, the other serves
(docs/admin.md 3.4; issue #15 item 2)."""

from __future__ import annotations

import hashlib
import random
import re
import smtplib
import subprocess
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, update

from gateway.store.models import CustomerUser, table_of
from gateway.web.passwords import hash_password
from tests.integration.smtp_helpers import DESK_WITH_STAFF
from tests.serve_helpers import (
    TICKETGW,
    free_port,
    serve_config,
    serving,
    stop_cleanly,
    tickets_titled,
)

MiB = 1024 * 1024
PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Instance:
    config: Path
    web: str
    smtp: int
    data: Path


def instance_config(directory: Path, database_url: str, storage: dict[str, str]) -> Instance:
    """One instance's config in its own directory (so its own data_dir), on its own ports."""
    directory.mkdir()
    web_port, smtp_port = free_port(), free_port()
    config = serve_config(directory / "ticketgw.toml", database_url, web_port=web_port,
                          smtp_port=smtp_port, extra=DESK_WITH_STAFF)
    config.write_text(config.read_text("utf-8").replace(
        '[storage]\ndata_dir = "data"\n',
        '[storage]\ndata_dir = "data"\n' + "".join(
            f'{key} = "{value}"\n' for key, value in storage.items())), "utf-8")
    return Instance(config, f"http://127.0.0.1:{web_port}", smtp_port, directory / "data")


def cli(config: Path, *args: str) -> str:
    done = subprocess.run([*TICKETGW, "--config", str(config), *args], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def log_in(client: httpx.Client, username: str) -> None:
    page = client.get("/login").text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf, "no CSRF token on the login page"
    answer = client.post("/login", data={"username": username, "password": PASSWORD,
                                         "csrf": csrf.group(1)})
    assert answer.status_code == 303, answer.text


def local_blobs(data: Path) -> list[Path]:
    """Files under an instance's attachments/ (staging files included)."""
    root = data / "attachments"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.slow
@pytest.mark.backends("postgresql")
def test_what_one_instance_stores_the_other_serves(database_url: str, tmp_path: Path,
                                                   s3_storage: dict[str, str]) -> None:
    one = instance_config(tmp_path / "one", database_url, s3_storage)
    two = instance_config(tmp_path / "two", database_url, s3_storage)
    cli(one.config, "customer", "add", "mmuster", "max@acme.example")
    attachment = random.Random(5).randbytes(2 * MiB)      # a large mail: raw bytes in S3 too
    upload = random.Random(6).randbytes(9 * MiB)          # a multipart upload
    with serving(["--config", str(one.config), "serve"], tmp_path / "one",
                 f"{one.web}/healthz") as first, \
            serving(["--config", str(two.config), "serve"], tmp_path / "two",
                    f"{two.web}/healthz") as second:
        message = EmailMessage()
        message["From"] = "Max Muster <max@acme.example>"
        message["To"] = "incident@support.example.com"
        message["Subject"] = "Zwei Instanzen"
        message["Message-ID"] = "<two-instances@acme.example>"
        message.set_content("Der Bericht hängt an.\n")
        message.add_attachment(attachment, maintype="application", subtype="octet-stream",
                               filename="bericht.bin")
        with smtplib.SMTP("127.0.0.1", one.smtp, timeout=60) as client:
            client.send_message(message)
        created = tickets_titled(one.config, "Zwei Instanzen")
        assert created, "instance one's worker did not make the ticket within 30 s"
        number = str(created[0]["number"])

        # the attachment of the mail instance one received, through instance two's portal
        engine = create_engine(database_url)
        with engine.begin() as connection:
            connection.execute(update(table_of(CustomerUser)).where(
                table_of(CustomerUser).c.username == "mmuster").values(
                password_hash=hash_password(PASSWORD)))
        engine.dispose()
        with httpx.Client(base_url=two.web, timeout=60) as portal:
            log_in(portal, "mmuster")
            page = portal.get(f"/tickets/{number}").text
            link = re.search(r'href="(/tickets/\d+/attachments/\d+)"', page)
            assert link, "no attachment link on the ticket page"
            got = portal.get(link.group(1))
            assert got.status_code == 200 and got.content == attachment

        # a file uploaded through instance one's file exchange, downloaded through two's
        url = cli(two.config, "files", "new", "--ticket", number).strip()
        token = url.rsplit("/files/", 1)[1]
        done = httpx.post(f"{one.web}/files/{token}", timeout=60,
                          files=[("files", ("dump.bin", upload, "application/octet-stream"))])
        assert done.status_code == 303, done.text
        listing = httpx.get(f"{two.web}/files/{token}", timeout=60).text
        link = re.search(rf'href="(/files/{re.escape(token)}/\d+)"', listing)
        assert link, "instance two does not list the uploaded file"
        got = httpx.get(f"{two.web}{link.group(1)}", timeout=60)
        assert got.status_code == 200
        assert hashlib.sha256(got.content).digest() == hashlib.sha256(upload).digest()

        assert "Traceback" not in stop_cleanly(first) + stop_cleanly(second)
    # nothing was kept on either instance's own disk: the bucket holds it all
    assert local_blobs(one.data) == [] and local_blobs(two.data) == []
