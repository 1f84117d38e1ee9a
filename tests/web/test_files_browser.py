"""The file exchange in a real browser: Debian's Chromium driven by Playwright for Python,
against a real `ticketgw serve` whose outbound mail goes to a Maildir.

Journey (issue #7): a customer's mail opens a ticket -> staff run `ticketgw files new` ->
the link mail is delivered by the outbox into the Maildir -> the link taken from that mail
is opened in Chromium -> two files are uploaded at once -> one is downloaded and its SHA-256
compared -> the ticket shows both as attachments.

Chromium must be at /usr/bin/chromium; when it is not, this test FAILS, it never skips.
Screenshots go to the test's directory, and to $TGW_SCREENSHOTS_DIR when set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

from tests.maildir import Maildir
from tests.web.browser import german_page
from tests.web.test_portal_browser import (  # noqa: F401  (server is the fixture)
    _env,
    _ticketgw,
    server,
    text_of,
)


def ticketgw(config: Path, *args: str) -> str:
    done = subprocess.run([*_ticketgw(), "--config", str(config), *args], cwd=config.parent,
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_upload_two_files_and_download_one_in_chromium(server: tuple[str, Path],  # noqa: F811
                                                       tmp_path: Path) -> None:
    from playwright.sync_api import expect

    base, config = server
    mail = tmp_path / "mail.eml"
    mail.write_bytes(b"From: Max Mustermann <max.mustermann@acme.example>\r\n"
                     b"To: incident@support.example.com\r\nSubject: Logdateien vom Server\r\n"
                     b"Message-ID: <logs@acme.example>\r\n\r\nBetroffenes System: Web-01\r\n")
    ticketgw(config, "ingest", str(mail), "-r", "incident@support.example.com")
    number = json.loads(ticketgw(config, "ticket", "list", "--json"))[0]["number"]
    ticketgw(config, "files", "new", "--ticket", number)

    outbox = Maildir(tmp_path / "outbox")
    link_mail = outbox.wait_for(lambda m: "/files/" in text_of(m))
    assert link_mail["To"] == "Max Mustermann <max.mustermann@acme.example>"
    assert f"[Ticket#{number}]" in str(link_mail["Subject"])
    found = re.search(rf"{re.escape(base)}/files/[A-Za-z0-9_-]{{43}}", text_of(link_mail))
    assert found, text_of(link_mail)
    link = found.group(0)

    report = tmp_path / "bericht.txt"
    report.write_text("Fehlerbericht\n" * 1000, encoding="utf-8")
    image = tmp_path / "bildschirm foto.png"
    image.write_bytes(os.urandom(300_000))

    with german_page(tmp_path, "files", numbered=False, accept_downloads=True) as (page, shot):

        page.goto(link)
        expect(page.get_by_role("heading", level=1)).to_contain_text(f"Dateien zu Ticket {number}")
        expect(page.get_by_text("Noch keine Dateien.")).to_be_visible()
        page.get_by_label("Dateien auswählen (mehrere möglich)").set_input_files(
            [str(report), str(image)])
        shot("01-choose")
        page.get_by_role("button", name="Dateien hochladen").click()
        expect(page.get_by_role("status")).to_contain_text("2 Dateien hochgeladen")
        expect(page.get_by_role("link", name="bericht.txt")).to_be_visible()
        expect(page.get_by_role("link", name="bildschirm foto.png")).to_be_visible()
        shot("02-uploaded")

        with page.expect_download() as waiting:
            page.get_by_role("link", name="bildschirm foto.png").click()
        download = waiting.value
        assert download.suggested_filename == "bildschirm foto.png"
        saved = tmp_path / "downloaded.png"
        download.save_as(saved)
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == \
            hashlib.sha256(image.read_bytes()).hexdigest()

    shown = json.loads(ticketgw(config, "ticket", "show", number, "--json"))
    attachments = {a["filename"]: a["sha256"] for a in shown["articles"][-1]["attachments"]}
    assert attachments == {"bericht.txt": hashlib.sha256(report.read_bytes()).hexdigest(),
                           "bildschirm foto.png": hashlib.sha256(image.read_bytes()).hexdigest()}
    staff = outbox.wait_for(lambda m: str(m["Subject"]).startswith("Dateien von"))
    assert "bericht.txt" in text_of(staff)
