"""Issue #14 item 11: every file name that enters the gateway is cleaned by the one function
`mail.attachment_names.clean_filename`, whichever way it comes: a mail attachment (MIME,
TNEF winmail.dat, uuencoded block) through the intake and the worker, a portal reply, a
template form, a file-exchange upload. The same hostile names go through each way and come
out the same. Names stored before this cleaning existed are shown and downloaded clean.

Forms are sent as a browser sends them (HTML5: the file name raw in UTF-8, only `"`, CR and
LF percent-encoded), not as httpx encodes them (it escapes control characters itself).
"""

from __future__ import annotations

import binascii
import re
import struct
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select

from gateway.app import App
from gateway.config.settings import Settings
from gateway.files.exchange import create_area
from gateway.inbound.intake import Envelope, Incoming, accept_many
from gateway.inbound.worker import process_due
from gateway.store.models import Article, Attachment, Ticket, table_of
from gateway.store.models_files import FileArea, FileAreaFile
from gateway.tickets.queries import ticket_detail
from gateway.tickets.ticket import find_ticket
from tests.conftest import make_settings
from tests.web.conftest import csrf_of, new_browser
from tests.web.test_tickets import logged_in, ticket_by_mail

LONG = "Bericht " + "x" * 292 + ".pdf"
# what a sender or uploader sends -> the name the gateway keeps (docs/admin.md 5.4)
BAD_NAMES = {
    "x\u202egpj.exe": "xgpj.exe",                          # RLO: shown as "xexe.jpg"
    "\u2067Rechnung\u2069 \u200fApril.pdf": "Rechnung April.pdf",   # isolates, RLM
    "zero\u200bwidth\ufeff.txt": "zerowidth.txt",          # zero-width space, BOM
    "..\\..\\Windows\\System32\\evil.bat": "evil.bat",     # a Windows path
    "../../etc/passwd": "passwd",                          # a Unix path
    ".htaccess": "htaccess",                               # hidden
    "tab\tand\u00a0nbsp.txt": "tab and nbsp.txt",          # other whitespace
    "invoice.pdf" + " " * 40 + ".exe": "invoice.pdf .exe",  # extension pushed out of view
    "bell\x07\x1b[31mred.txt": "bell[31mred.txt",          # control characters
    LONG: LONG[:196] + ".pdf",                             # 300 characters -> 200
}
FORBIDDEN = ("\u202e", "\u2067", "\u2069", "\u200f", "\u200b", "\ufeff", "\t", "\x07",
             "\x1b", "/", "\\")
BOUNDARY = "----tgwBrowserBoundaryq5fJ8Ws"


def browser_form(fields: dict[str, str], file_field: str,
                 files: list[tuple[str, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body the way a browser writes it (HTML5 form submission)."""
    body = b""
    for key, value in fields.items():
        body += (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
                 f"{value}\r\n").encode()
    for name, data in files:
        quoted = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        body += (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; '
                 f'filename="{quoted}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 ).encode() + data + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def sent_files() -> list[tuple[str, bytes]]:
    return [(name, f"content {n}".encode()) for n, name in enumerate(BAD_NAMES)]


def kept_names(attachments: list[dict[str, Any]]) -> list[str]:
    names = [a["filename"] for a in attachments]
    for name in names:
        assert not any(ch in name for ch in FORBIDDEN), repr(name)
    return names


def tnef_with(name: str, data: bytes) -> bytes:
    """A minimal winmail.dat (MS-OXTNEF): the signature, then one attachment with its title
    (attAttachTitle) and data (attAttachData); tnefparse cannot write TNEF itself."""
    def attribute(tag: int, kind: int, value: bytes) -> bytes:
        return (struct.pack("<BHHI", 2, tag, kind, len(value)) + value
                + struct.pack("<H", sum(value) & 0xFFFF))
    return (struct.pack("<IH", 0x223E9F78, 1)
            + attribute(0x9002, 6, b"\x01\x00" + b"\xff" * 4 + b"\x00" * 8)
            + attribute(0x8010, 1, name.encode() + b"\x00")
            + attribute(0x800F, 6, data))


def hostile_mail() -> bytes:
    """One mail with every bad name as an RFC 2231 attachment name, a winmail.dat and a
    uuencoded block carrying the bidi name too."""
    parts = ["Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
             "\r\nBetroffenes System: Dateiserver\r\n\r\nbegin 644 uu\u202egpj.exe\r\n"
             + binascii.b2a_uu(b"uu data").decode() + "`\r\nend\r\n"]
    for name, data in sent_files():
        parts.append("Content-Type: application/octet-stream\r\n"
                     f"Content-Disposition: attachment; filename*=UTF-8''{quote(name)}\r\n"
                     "Content-Transfer-Encoding: base64\r\n\r\n"
                     + binascii.b2a_base64(data).decode())
    parts.append("Content-Type: application/ms-tnef; name=winmail.dat\r\n"
                 "Content-Disposition: attachment; filename=winmail.dat\r\n"
                 "Content-Transfer-Encoding: base64\r\n\r\n"
                 + binascii.b2a_base64(tnef_with("tnef\u202egpj.exe", b"MZ")).decode())
    head = ("From: Max <max@acme.example>\r\nTo: incident@support.example.com\r\n"
            "Subject: Dateinamen\r\nMessage-ID: <names@acme.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b1\r\n\r\n")
    body = "".join(f"--b1\r\n{part}\r\n" for part in parts) + "--b1--\r\n"
    return (head + body).encode("utf-8")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "data", files={"max_files": 50})


def test_mail_attachment_names_are_cleaned(app: App, customers: None, web: FastAPI) -> None:
    accept_many(app.db, blobs=app.blobs, items=[Incoming(hostile_mail(), Envelope(
        source="smtp", mail_from="max@acme.example",
        rcpt_to=("incident@support.example.com",)))])
    process_due(app.db, app.stages)
    with app.db.read() as session:
        number = session.execute(select(table_of(Ticket).c.number)).scalar_one()
        detail = ticket_detail(session, number)
    names = kept_names(detail["articles"][0]["attachments"])
    assert sorted(names) == sorted([*BAD_NAMES.values(), "uugpj.exe", "tnefgpj.exe"])
    page = logged_in(app, web, "mmuster").get(f"/tickets/{number}").text
    assert ">xgpj.exe</a>" in page and "\u202e" not in page


def test_portal_reply_attachment_names_are_cleaned(app: App, customers: None,
                                                   web: FastAPI) -> None:
    number = ticket_by_mail(app, "Antwort mit Dateien")
    client = logged_in(app, web, "mmuster")
    csrf = csrf_of(client.get(f"/tickets/{number}").text)
    body, headers = browser_form({"csrf": csrf, "text": "Anbei die Dateien."}, "attachments",
                                 sent_files())
    response = client.post(f"/tickets/{number}/reply", content=body, headers=headers)
    assert response.status_code == 303, response.text
    with app.db.read() as session:
        detail = ticket_detail(session, number)
    assert kept_names(detail["articles"][-1]["attachments"]) == list(BAD_NAMES.values())


def test_template_form_attachment_names_are_cleaned(app: App, customers: None,
                                                    web: FastAPI) -> None:
    client = logged_in(app, web, "mmuster")
    csrf = csrf_of(client.get("/templates/incident").text)
    body, headers = browser_form({"csrf": csrf, "subject": "Dateien", "text": "Anbei.",
                                  "guide_system": "Dateiserver", "priority": "3"},
                                 "attachments", sent_files())
    response = client.post("/templates/incident", content=body, headers=headers)
    assert response.status_code == 303, response.text
    number = response.headers["location"].split("/")[2].split("?")[0]
    with app.db.read() as session:
        detail = ticket_detail(session, number)
    assert kept_names(detail["articles"][0]["attachments"]) == list(BAD_NAMES.values())


def test_file_exchange_upload_names_are_cleaned(app: App, customers: None,
                                                web: FastAPI) -> None:
    number = ticket_by_mail(app, "Logdateien")
    with app.db.write() as session:
        token = create_area(session, app.answering, find_ticket(session, number).id or 0,
                            created_by="test").token
    client = new_browser(web)
    body, headers = browser_form({}, "files", sent_files())
    response = client.post(f"/files/{token}", content=body, headers=headers)
    assert response.status_code == 303, response.text
    with app.db.read() as session:
        rows = session.execute(select(table_of(FileAreaFile))
                               .order_by(table_of(FileAreaFile).c.id)).all()
        detail = ticket_detail(session, number)
    assert kept_names([{"filename": r.filename} for r in rows]) == list(BAD_NAMES.values())
    assert kept_names(detail["articles"][-1]["attachments"]) == list(BAD_NAMES.values())
    page = client.get(f"/files/{token}").text
    assert ">xgpj.exe</a>" in page and "\u202e" not in page
    download = client.get(f"/files/{token}/{rows[0].id}")
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"xgpj.exe\"; filename*=UTF-8''xgpj.exe")


def test_names_stored_before_the_cleaning_are_shown_and_downloaded_clean(
        app: App, customers: None, web: FastAPI) -> None:
    """Rows written by an older version keep their names (never lose data), but neither the
    pages nor a download pass a bidi override on to the browser."""
    number = ticket_by_mail(app, "Alte Anlage", attachment=b"MZ old")
    stored = "Rechnung\u202efdp.exe"
    with app.db.write() as session:
        ticket_id = find_ticket(session, number).id or 0
        session.execute(table_of(Attachment).update().values(filename=stored))
        token = create_area(session, app.answering, ticket_id, created_by="test").token
        area_id = session.execute(select(table_of(FileArea).c.id)).scalar_one()
        sha256 = session.execute(select(table_of(Attachment).c.sha256)).scalar_one()
        article_id = session.execute(select(table_of(Article).c.id)).scalar_one()
        session.execute(insert(table_of(FileAreaFile)).values(
            area_id=area_id, sha256=sha256, filename=stored, content_type="text/plain",
            size=6, uploader="link", article_id=article_id))
    client = logged_in(app, web, "mmuster")
    page = client.get(f"/tickets/{number}").text
    assert "\u202e" not in page and ">Rechnungfdp.exe</a>" in page
    link = re.search(r'href="(/tickets/\d+/attachments/\d+)"', page)
    assert link
    expected = "attachment; filename=\"Rechnungfdp.exe\"; filename*=UTF-8''Rechnungfdp.exe"
    assert client.get(link.group(1)).headers["content-disposition"] == expected
    exchange = new_browser(web)
    area_page = exchange.get(f"/files/{token}").text
    assert "\u202e" not in area_page and ">Rechnungfdp.exe</a>" in area_page
    file_link = re.search(r'href="(/files/[^/"]+/\d+)"', area_page)
    assert file_link
    assert exchange.get(file_link.group(1)).headers["content-disposition"] == expected

