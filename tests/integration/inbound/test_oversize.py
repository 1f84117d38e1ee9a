"""A mail over `[inbound] max_message_size` (but within `oversize_limit`) through the real
SMTP listener: its text becomes the ticket, its attachments are left out, and the file-link
mail names each left-out attachment with its size, in the customer's language."""

from __future__ import annotations

import email
import email.policy
import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from gateway.app import App
from gateway.inbound.worker import process_due
from gateway.mail.attachment_scan import scan_attachments
from gateway.mail.parse import parse_message
from gateway.outbound.outbox import message_bytes
from gateway.store.models import OutboundMail, ReceivedMail, table_of
from gateway.tickets.customers import NewCustomer, add_customer
from gateway.tickets.queries import list_tickets, ticket_detail
from tests.conftest import CORPUS
from tests.integration.smtp_helpers import running_listener

_received = table_of(ReceivedMail)
_outbound = table_of(OutboundMail)
# a real Outlook mail (MDaemon): text, three inline images, four .htm parts and a PDF
OUTLOOK_MAIL = CORPUS / "spamscope-mail-parser" / "mail_test_7"


@pytest.fixture
def customer_en(app: App) -> None:
    with app.db.write() as session:
        add_customer(session, NewCustomer("jdoe", "jane@acme.example", "Jane Doe", "acme", "en"))


def small_limit(app: App, limit: int) -> None:
    app.settings = app.settings.model_copy(update={"inbound": app.settings.inbound.model_copy(
        update={"max_message_size": limit, "oversize_limit": 10 * 1024 * 1024})})


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def file_link_mail(app: App) -> EmailMessage:
    with app.db.read() as session:
        raw = message_bytes(session.execute(select(_outbound).where(
            _outbound.c.event == "file-link")).one(), app.renderer)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def part(message: EmailMessage, kind: str) -> str:
    body = message.get_body((kind,))
    assert body is not None
    return str(body.get_content())


def test_the_file_link_names_each_left_out_attachment_of_a_real_mail(app: App) -> None:
    raw = crlf(OUTLOOK_MAIL.read_bytes())
    small_limit(app, 20 * 1024)
    with running_listener(app) as port, smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("geronazzo@voidstudicom.it", ["incident@support.example.com"], raw)
    [result] = process_due(app.db, app.stages)
    assert result.outcome == "created" and "file-exchange link mailed to" in result.reason
    number = str(list_tickets_of(app)[0]["number"])
    with app.db.read() as session:
        article = ticket_detail(session, number)["articles"][0]
        left_out = session.execute(select(_received.c.left_out)).scalar_one()
    assert article["attachments"] == [] and "Ciao sere" in article["body"]

    whole = parse_message(raw, received=datetime(2026, 1, 1, tzinfo=UTC))
    names = [a.filename for a in whole.attachments]
    assert len(names) == 8 and "20170609091403417.pdf" in names
    assert [f["name"] for f in left_out] == names            # as the listener saw them pass
    pdf = next(a for a in whole.attachments if a.filename.endswith(".pdf"))
    [scanned_pdf] = [f for f in left_out if f["name"] == pdf.filename]
    assert abs(scanned_pdf["size"] - len(pdf.content())) <= 2

    link = file_link_mail(app)
    assert str(link["Subject"]).startswith("Ihre E-Mail war zu groß: bitte die Anhänge")
    text, html = part(link, "plain"), part(link, "html")
    assert (f"Ihre E-Mail war {round(len(raw) / 1024)} KB groß; per E-Mail nehmen wir "
            "höchstens 20 KB an.") in text
    assert f"Den Text haben wir in Ticket {number} übernommen, die Anhänge aber nicht." in text
    assert "Diese Anhänge fehlen deshalb:" in text and "Bitte laden Sie sie über" in text
    pdf_size = f"{round(scanned_pdf['size'] / 1024)} KB"
    assert f"- 20170609091403417.pdf, {pdf_size}\n" in text.replace("\r\n", "\n")
    assert f"<li>20170609091403417.pdf, {pdf_size}</li>" in html
    for name in names:
        assert f"- {name}, " in text and f"<li>{name}, " in html
    assert "/files/" in text and "Anhänge hochladen" in html


def test_one_left_out_attachment_in_english(app: App, customer_en: None) -> None:
    """A crafted mail of an English-speaking customer with one attachment: singular, sizes
    with a decimal point."""
    message = EmailMessage()
    message["From"] = "Jane Doe <jane@acme.example>"
    message["To"] = "incident@support.example.com"
    message["Subject"] = "Log files"
    message["Message-ID"] = "<log@acme>"
    message.set_content("Please find the log attached.\n")
    message.add_attachment(b"x" * (3 * 1024 * 1024 // 2), maintype="application",
                           subtype="octet-stream", filename="server log (März).bin")
    raw = crlf(message.as_bytes())
    small_limit(app, 100 * 1024)
    with running_listener(app) as port, smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("jane@acme.example", ["incident@support.example.com"], raw)
    [result] = process_due(app.db, app.stages)
    assert result.outcome == "created"
    link = file_link_mail(app)
    text, html = part(link, "plain"), part(link, "html")
    size = f"{len(raw) / 1024 / 1024:.1f}".removesuffix(".0")
    assert f"Your email was {size} MB; we accept at most 100 KB by email." in text
    assert "This attachment is missing:\n- server log (März).bin, 1.5 MB\n" in \
        text.replace("\r\n", "\n")
    assert "Please upload it using this link:" in text
    assert "<li>server log (März).bin, 1.5 MB</li>" in html
    assert scan_attachments(raw)[0].size == 3 * 1024 * 1024 // 2


def list_tickets_of(app: App) -> list[dict[str, object]]:
    with app.db.read() as session:
        return list_tickets(session)
