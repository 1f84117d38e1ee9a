"""The SMTP and LMTP listener over real sockets (smtplib and a raw LMTP client), with the
real intake, worker and database: what a sending MTA sees, and what becomes of the mail."""

from __future__ import annotations

import email
import email.policy
import hashlib
import random
import smtplib
import socket
import sqlite3
import time

import pytest
from sqlalchemy import select

from gateway.app import App
from gateway.inbound.intake import stored_raw
from gateway.inbound.worker import process_due
from gateway.outbound.outbox import message_bytes
from gateway.store.db import Database
from gateway.store.models import OutboundMail, ReceivedMail, table_of
from gateway.tickets.queries import list_tickets, ticket_detail
from tests.conftest import drop_connections
from tests.integration.smtp_helpers import (
    customer_mail,
    lmtp_transaction,
    running_listener,
    send,
)

_received = table_of(ReceivedMail)
_outbound = table_of(OutboundMail)


def tickets(app: App) -> list[dict[str, object]]:
    with app.db.read() as session:
        return list_tickets(session)


def test_new_ticket_then_replies_by_header_and_by_tag(app: App, customer: None) -> None:
    with running_listener(app) as port:
        send(port, customer_mail(message_id="<first@acme>",
                                 body="Betroffenes System: HP 2. OG\n"))
        [first] = process_due(app.db, app.stages)
        assert first.outcome == "created"
        number = first.ticket_number
        send(port, customer_mail(subject="Re: Drucker defekt", message_id="<second@acme>",
                                 In_Reply_To="<first@acme>", body="Noch da.\n"))
        send(port, customer_mail(subject=f"AW: Drucker [Ticket#{number}]",
                                 message_id="<third@acme>", body="Und jetzt?\n"))
        results = process_due(app.db, app.stages)
    assert [(r.outcome, r.ticket_number) for r in results] == [
        ("appended", number), ("appended", number)]
    with app.db.read() as session:
        detail = ticket_detail(session, str(number))
    assert detail["customer"] == "mmuster" and detail["template"] == "incident"
    assert detail["guide_answers"] == {"system": "HP 2. OG"}
    assert [a["message_id"] for a in detail["articles"]] == [
        "<first@acme>", "<second@acme>", "<third@acme>"]


def test_a_stranger_using_a_valid_tag_gets_a_new_ticket(app: App, customer: None) -> None:
    with running_listener(app) as port:
        send(port, customer_mail(message_id="<a@acme>"))
        [first] = process_due(app.db, app.stages)
        send(port, customer_mail(subject=f"Re: [Ticket#{first.ticket_number}] mine now",
                                 sender="mallory@evil.example", message_id="<b@evil>"),
             sender="mallory@evil.example")
        [second] = process_due(app.db, app.stages)
    assert second.outcome == "created" and second.ticket_number != first.ticket_number
    assert "may not write to ticket" in second.reason


def test_an_auto_responder_is_kept_but_never_opens_or_reopens(app: App, customer: None) -> None:
    with running_listener(app) as port:
        send(port, customer_mail(message_id="<c@acme>"))
        [first] = process_due(app.db, app.stages)
        send(port, customer_mail(subject="Automatische Antwort: Drucker defekt",
                                 message_id="<ooo@acme>", In_Reply_To="<c@acme>",
                                 Auto_Submitted="auto-replied", body="Ich bin im Urlaub.\n"))
        [reply] = process_due(app.db, app.stages)
    assert reply.outcome == "appended" and reply.ticket_number == first.ticket_number
    with app.db.read() as session:
        detail = ticket_detail(session, str(first.ticket_number))
    assert detail["articles"][-1]["internal"] is True
    assert detail["state"] == "new"


def test_the_same_mail_delivered_twice_is_one_article(app: App, customer: None) -> None:
    message = customer_mail(message_id="<twice@acme>")
    with running_listener(app) as port:
        send(port, message)
        send(port, message)
        results = process_due(app.db, app.stages)
    assert [r.outcome for r in results] == ["created", "ignored"]
    assert "received before" in results[1].reason
    assert len(tickets(app)) == 1


def test_recipient_and_size_checks(app: App) -> None:
    with running_listener(app) as port, smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        assert "size" in client.esmtp_features
        limit = int(client.esmtp_features["size"])     # the hard limit: larger is refused
        assert limit == app.settings.inbound.oversize_limit > \
            app.settings.inbound.max_message_size
        client.mail("max@acme.example")
        code, text = client.rcpt("someone@gmail.example")
        assert (code, text[:5]) == (550, b"5.7.1")
        code, text = client.rcpt("nobody-at-all@elsewhere.example")
        assert code == 550
        client.rset()
        code, text = client.mail("max@acme.example", [f"SIZE={limit + 1}"])
        assert (code, text[:5]) == (552, b"5.3.4")
        client.rset()
        client.mail("max@acme.example")
        for _ in range(app.settings.inbound.max_recipients):
            assert client.rcpt("incident@support.example.com")[0] == 250
        code, text = client.rcpt("incident@support.example.com")
        assert (code, text[:5]) == (452, b"4.5.3")


def test_an_unknown_address_in_our_domain(app: App) -> None:
    with running_listener(app) as port, smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("max@acme.example")
        code, text = client.rcpt("nobody@support.example.com")
        assert (code, text[:5]) == (550, b"5.1.1")


def test_oversized_data_without_a_declared_size(app: App) -> None:
    small = app.settings.model_copy(update={"inbound": app.settings.inbound.model_copy(
        update={"max_message_size": 2000, "oversize_limit": 0})})
    app.settings = small
    with running_listener(app) as port, smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("max@acme.example")
        client.rcpt("incident@support.example.com")
        oversized = customer_mail(body=("x" * 70 + "\n") * 100).as_bytes()
        code, text = client.data(oversized.replace(b"\n", b"\r\n"))
        assert (code, text[:5]) == (552, b"5.3.4")
    with app.db.read() as session:
        assert session.execute(select(_received.c.id)).all() == []


def test_lmtp_answers_per_recipient_and_stores_once(app: App, customer: None) -> None:
    raw = customer_mail(message_id="<lmtp@acme>").as_bytes()
    with running_listener(app, lmtp=True) as port:
        replies = lmtp_transaction(port, "max@acme.example",
                                   ["incident@support.example.com",
                                    "change@support.example.com"], raw)
    assert len(replies) == 2 and all(r.startswith("250 2.0.0") for r in replies)
    results = process_due(app.db, app.stages)
    assert [r.outcome for r in results] == ["created"]       # one mail, one ticket
    with app.db.read() as session:
        row = session.execute(select(_received)).one()
    assert row.source == "lmtp" and row.envelope_to == [
        "incident@support.example.com", "change@support.example.com"]


def test_database_down_during_data_is_451_and_the_retry_makes_one_ticket(
        app: App, customer: None) -> None:
    message = customer_mail(message_id="<retry@acme>")
    down = Database("postgresql+psycopg://gw@127.0.0.1:1/gw")
    with running_listener(app, committer_db=down) as port:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(port, message)
        assert refused.value.smtp_code == 451
        assert refused.value.smtp_error.startswith(b"4.3.0")
        assert b"psycopg" not in refused.value.smtp_error      # no internal detail
    down.dispose()
    with running_listener(app) as port:
        send(port, message)                                   # the sending MTA retries
    assert [r.outcome for r in process_due(app.db, app.stages)] == ["created"]
    assert len(tickets(app)) == 1


@pytest.mark.backends("postgresql")
def test_a_postgresql_restart_between_mails_loses_nothing(app: App, customer: None) -> None:
    """The server drops every connection (a restart) right after a mail was stored: the
    next mail gets 451 at most once (its pooled connection was used just before, so it is
    not pinged), the retry is stored, and each mail makes exactly one ticket."""
    with running_listener(app) as port:
        send(port, customer_mail("Erste Mail", message_id="<before@acme>"))
        drop_connections(app.db.url)                         # a server restart
        after = customer_mail("Zweite Mail", message_id="<after@acme>")
        try:
            send(port, after)
        except smtplib.SMTPDataError as refused:
            assert refused.smtp_code == 451
            send(port, after)                                 # the sending MTA retries
    assert sorted(r.outcome for r in process_due(app.db, app.stages)) == ["created", "created"]
    assert sorted(str(t["title"]) for t in tickets(app)) == ["Erste Mail", "Zweite Mail"]


@pytest.mark.backends("sqlite")
def test_sqlite_locked_during_data_is_451(app: App, customer: None) -> None:
    impatient = Database(app.db.url, busy_timeout_ms=300)
    blocker = sqlite3.connect(app.db.url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with running_listener(app, committer_db=impatient) as port:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                send(port, customer_mail(message_id="<locked@acme>"))
            assert refused.value.smtp_code == 451
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        impatient.dispose()
    with running_listener(app) as port:
        send(port, customer_mail(message_id="<locked@acme>"))
    assert [r.outcome for r in process_due(app.db, app.stages)] == ["created"]


def test_a_bug_in_the_handler_is_451_not_500(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.inbound import smtp

    async def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(smtp.GatewayHandler, "handle_DATA", broken)
    with running_listener(app) as port, pytest.raises(smtplib.SMTPDataError) as refused:
        send(port, customer_mail())
    assert refused.value.smtp_code == 451
    assert b"internal detail" not in refused.value.smtp_error


def test_a_reply_to_a_closed_ticket_reopens_it(app: App, customer: None) -> None:
    from gateway.tickets.ticket import State, find_ticket, set_state

    with running_listener(app) as port:
        send(port, customer_mail(message_id="<closed-1@acme>"))
        [first] = process_due(app.db, app.stages)
        with app.db.write() as session:
            ticket = find_ticket(session, str(first.ticket_number))
            assert ticket.id is not None
            set_state(session, ticket.id, State.CLOSED, actor="cli")
        send(port, customer_mail(subject="Re: Drucker defekt", message_id="<closed-2@acme>",
                                 In_Reply_To="<closed-1@acme>", body="Wieder kaputt.\n"))
        [reply] = process_due(app.db, app.stages)
    assert (reply.outcome, reply.ticket_number) == ("appended", first.ticket_number)
    with app.db.read() as session:
        detail = ticket_detail(session, str(first.ticket_number))
    assert detail["state"] == "open"
    assert detail["history"][-1]["actor"] == "mail:max@acme.example"


def test_with_reopen_off_a_reply_to_a_closed_ticket_opens_a_follow_up(
        app: App, customer: None) -> None:
    from gateway.tickets.ticket import State, find_ticket, set_state

    app.settings = app.settings.model_copy(update={"tickets": app.settings.tickets.model_copy(
        update={"reopen_on_reply": False})})
    with running_listener(app) as port:
        send(port, customer_mail(message_id="<f-1@acme>"))
        [first] = process_due(app.db, app.stages)
        with app.db.write() as session:
            ticket = find_ticket(session, str(first.ticket_number))
            assert ticket.id is not None
            set_state(session, ticket.id, State.CLOSED, actor="cli")
        send(port, customer_mail(subject="Re: Drucker defekt", message_id="<f-2@acme>",
                                 In_Reply_To="<f-1@acme>", body="Wieder kaputt.\n"))
        [follow_up] = process_due(app.db, app.stages)
    assert follow_up.outcome == "created" and follow_up.ticket_number != first.ticket_number
    with app.db.read() as session:
        detail = ticket_detail(session, str(follow_up.ticket_number))
    assert {"field": "follows", "new": first.ticket_number}.items() <= detail["history"][1].items()


def _attachment_mail(size: int, message_id: str) -> bytes:
    """A mail with a random binary attachment of `size` bytes and text lines starting with
    dots (which the client stuffs), CRLF throughout."""
    message = customer_mail(message_id=message_id,
                            body=".hidden line\n..two dots\n.\nthe end\n")
    message.add_attachment(random.Random(size).randbytes(size), maintype="application",
                           subtype="octet-stream", filename="dump.bin")
    return message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _incoming_files(app: App) -> list[str]:
    root = app.blobs.root
    return [p.name for p in root.iterdir() if p.name.startswith(".incoming-")] \
        if root.exists() else []


def test_a_large_mail_is_spooled_to_disk_and_kept_byte_for_byte(app: App,
                                                                customer: None) -> None:
    raw = _attachment_mail(3 * 1024 * 1024, "<large@acme>")
    small = customer_mail(subject="Zweite Mail", message_id="<small@acme>").as_bytes() \
        .replace(b"\n", b"\r\n")
    with running_listener(app) as port, smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("max@acme.example", ["incident@support.example.com"], raw)
        client.sendmail("max@acme.example", ["incident@support.example.com"], small)
    with app.db.read() as session:
        rows = session.execute(select(_received).order_by(_received.c.id)).all()
    large = rows[0]
    assert (large.raw, large.size) == (b"", len(raw))        # in the blob store, not the row
    assert stored_raw(app.blobs, large.raw, large.size, large.raw_sha256) == raw
    assert rows[1].raw == small                               # small mails stay in the row
    assert [r.outcome for r in process_due(app.db, app.stages)] == ["created", "created"]
    with app.db.read() as session:
        number = next(t["number"] for t in tickets(app) if t["title"] == "Drucker defekt")
        detail = ticket_detail(session, str(number))
    article = detail["articles"][0]
    assert article["body"].startswith(".hidden line\n..two dots\n.\nthe end")
    [attachment] = article["attachments"]
    assert (attachment["filename"], attachment["size"]) == ("dump.bin", 3 * 1024 * 1024)
    assert attachment["sha256"] == hashlib.sha256(
        random.Random(3 * 1024 * 1024).randbytes(3 * 1024 * 1024)).hexdigest()
    assert _incoming_files(app) == []


def test_a_mail_over_the_limit_keeps_nothing(app: App) -> None:
    app.settings = app.settings.model_copy(update={"inbound": app.settings.inbound.model_copy(
        update={"max_message_size": 1024 * 1024, "oversize_limit": 2 * 1024 * 1024})})
    with running_listener(app) as port, smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail("max@acme.example")
        client.rcpt("incident@support.example.com")
        code, text = client.data(_attachment_mail(3 * 1024 * 1024, "<too-big@acme>"))
        assert (code, text[:5]) == (552, b"5.3.4")
        assert client.noop()[0] == 250                   # the session goes on
    with app.db.read() as session:
        assert session.execute(select(_received.c.id)).all() == []
    assert _incoming_files(app) == []


def test_a_connection_lost_during_data_keeps_nothing(app: App) -> None:
    with running_listener(app) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            reader = sock.makefile("rb")
            reader.readline()
            for command in (b"EHLO test", b"MAIL FROM:<max@acme.example>",
                            b"RCPT TO:<incident@support.example.com>", b"DATA"):
                sock.sendall(command + b"\r\n")
                while reader.readline()[3:4] == b"-":
                    pass
            raw = _attachment_mail(3 * 1024 * 1024, "<cut@acme>").replace(b"\r\n.", b"\r\n..")
            sock.sendall(raw[:2_500_000])            # dot-stuffed, and cut off mid-way
            reader.close()
            sock.shutdown(socket.SHUT_RDWR)
        # the listener may still be reading what was sent: wait until it has let go
        deadline, quiet_since = time.monotonic() + 15, time.monotonic()
        while time.monotonic() - quiet_since < 1 and time.monotonic() < deadline:
            if _incoming_files(app):
                quiet_since = time.monotonic()
            time.sleep(0.05)
    assert _incoming_files(app) == []
    with app.db.read() as session:
        assert session.execute(select(_received.c.id)).all() == []


def test_one_mail_to_two_templates_makes_one_ticket_each_when_configured(
        app: App, customer: None) -> None:
    app.settings = app.settings.model_copy(update={"inbound": app.settings.inbound.model_copy(
        update={"several_templates": "each"})})
    with running_listener(app) as port:
        send(port, customer_mail(to="incident@support.example.com, change@support.example.com"),
             recipients=("incident@support.example.com", "change@support.example.com"))
    [result] = process_due(app.db, app.stages)
    assert result.outcome == "created"
    made = tickets(app)
    assert sorted(str(t["template"]) for t in made) == ["change", "incident"]
    assert all(str(t["number"]) in result.reason for t in made)
    with app.db.read() as session:
        acks = session.execute(select(_outbound.c.ticket_id).where(
            _outbound.c.event == "ack")).scalars().all()
    assert len(set(acks)) == 2                      # each ticket acknowledges itself


def test_a_mail_over_the_size_limit_keeps_its_text_and_gets_a_file_link(
        app: App, customer: None) -> None:
    app.settings = app.settings.model_copy(update={"inbound": app.settings.inbound.model_copy(
        update={"max_message_size": 1024 * 1024, "oversize_limit": 10 * 1024 * 1024})})
    raw = _attachment_mail(3 * 1024 * 1024, "<huge@acme>")
    with running_listener(app) as port, smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("max@acme.example", ["incident@support.example.com"], raw)  # 250
    with app.db.read() as session:
        row = session.execute(select(_received)).one()
    assert row.truncated_from == len(raw)
    assert raw.startswith(row.raw) and len(row.raw) == 256 * 1024     # only the beginning
    [result] = process_due(app.db, app.stages)
    assert result.outcome == "created"
    assert "over the size limit" in result.reason
    number = str(tickets(app)[0]["number"])
    with app.db.read() as session:
        article = ticket_detail(session, number)["articles"][0]
        link_mail = message_bytes(session.execute(select(_outbound).where(
            _outbound.c.event == "file-link")).one(), app.renderer)
    assert article["body"].startswith(".hidden line") and article["attachments"] == []
    text = email.message_from_bytes(link_mail, policy=email.policy.default) \
        .get_body(("plain",)).get_content()                    # type: ignore[union-attr]
    assert "/files/" in text and "per E-Mail nehmen wir höchstens 1 MB an" in text
    assert "Dieser Anhang fehlt deshalb:\n- dump.bin, 3 MB\n" in text.replace("\r\n", "\n")
    assert _incoming_files(app) == []


@pytest.mark.parametrize("subject", ["Abwesend: Drucker defekt", "Out of Office: Drucker defekt"])
def test_an_absence_subject_without_auto_headers_gets_no_acknowledgment(
        app: App, customer: None, subject: str) -> None:
    """Some autoresponders set no Auto-Submitted/X-Autoreply header, only the subject prefix:
    the reply is kept as an internal note and nobody is answered; without a ticket to attach
    it to, it is dropped."""
    with running_listener(app) as port:
        send(port, customer_mail(message_id="<d@acme>"))
        [first] = process_due(app.db, app.stages)
        with app.db.read() as session:
            queued = len(session.execute(select(_outbound.c.id)).all())
        send(port, customer_mail(subject=subject, message_id="<ooo2@acme>",
                                 In_Reply_To="<d@acme>", body="Ich bin bis 5. Januar weg.\n"))
        send(port, customer_mail(subject=subject, message_id="<ooo3@acme>",
                                 body="Ich bin bis 5. Januar weg.\n"))
        reply, lone = process_due(app.db, app.stages)
    assert (reply.outcome, reply.ticket_number) == ("appended", first.ticket_number)
    assert "out-of-office" in reply.reason or "subject" in reply.reason
    assert lone.outcome == "ignored" and "no ticket to attach it to" in lone.reason
    with app.db.read() as session:
        detail = ticket_detail(session, str(first.ticket_number))
        assert len(session.execute(select(_outbound.c.id)).all()) == queued
    assert detail["articles"][-1]["internal"] is True and detail["state"] == "new"
    assert len(tickets(app)) == 1
