"""The outbox on SQLite and PostgreSQL, sending to a real aiosmtpd relay in the test.

The relay (`ScriptedRelay`) records every mail it accepted and answers from a script: the
next replies to DATA, fixed replies per recipient at RCPT, an optional delay per mail.
"Moving time" is done in the database: a retry or an expired lease is made due by setting
`next_attempt` (and `deadline`) into the past.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select, update
from sqlmodel import Session

from gateway.app import App
from gateway.errors import ConfigError, TemporaryFailure
from gateway.outbound.mail import OutgoingMail
from gateway.outbound.maildir import MaildirTransport
from gateway.outbound.outbox import (
    QueuedMail,
    drain,
    enqueue,
    lease_due,
    record_result,
    run_outbox,
)
from gateway.outbound.smtp import SmtpTransport
from gateway.outbound.transport import DeliveryResult, transport_from_settings
from gateway.store.db import Database
from gateway.store.models import OutboundMail, Queue, TicketMessageId, table_of, utcnow
from gateway.tickets.ticket import NewArticle, NewTicket, create_ticket
from tests.conftest import make_settings, write_config

_outbound = table_of(OutboundMail)
FROM = "support@support.example.com"
CUSTOMER = "max@acme.example"


# -- the relay ---------------------------------------------------------------------------------

@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class ScriptedRelay:
    """An aiosmtpd handler: DATA answers from `data_replies` in turn (then 250), RCPT answers
    from `rcpt_replies` by address (else 250); accepted mail lands in `received`."""

    data_replies: list[str] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    port: int = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.data_replies:
            reply = self.data_replies.pop(0)
            if not reply.startswith("250"):
                return reply
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.original_content))
        return "250 2.0.0 OK queued"

    async def handle_exception(self, error: Exception) -> str:
        return "451 4.3.0 test relay error"   # the default would be a permanent 500

    def message_ids(self) -> list[str]:
        return [line.split(b":", 1)[1].strip().decode()
                for r in self.received for line in r.data.split(b"\r\n")
                if line.lower().startswith(b"message-id:")]


class _Controller(Controller):
    """aiosmtpd's Controller on port 0: learn the bound port before it connects to it."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@contextmanager
def running_relay(relay: ScriptedRelay, **smtp_options: Any) -> Iterator[ScriptedRelay]:
    controller = _Controller(relay, hostname="127.0.0.1", port=0, decode_data=False,
                             **smtp_options)
    controller.start()
    relay.port = controller.port
    try:
        yield relay
    finally:
        controller.stop()


@pytest.fixture
def relay() -> Iterator[ScriptedRelay]:
    with running_relay(ScriptedRelay()) as running:
        yield running


def smtp_to(relay: ScriptedRelay, **options: Any) -> SmtpTransport:
    return SmtpTransport("127.0.0.1", relay.port, starttls=False, timeout=5, **options)


# -- helpers -----------------------------------------------------------------------------------

def outgoing(n: int = 1, *, event: str = "ack", recipients: tuple[str, ...] = (CUSTOMER,),
             ticket_id: int | None = None) -> OutgoingMail:
    message_id = f"<out.{n}.{secrets.token_hex(4)}@support.example.com>"
    raw = (f"From: Service Desk <{FROM}>\r\nTo: {', '.join(recipients)}\r\n"
           f"Subject: Test mail {n}\r\nMessage-ID: {message_id}\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\n"
           f"Hello number {n}.\r\n.dot-line stays\r\n").encode()
    return OutgoingMail(event=event, envelope_from=FROM, recipients=recipients,
                        message_id=message_id, raw=raw, ticket_id=ticket_id)


def put(app: App, *mails: OutgoingMail, deadline: timedelta = timedelta(days=5)) -> list[int]:
    with app.db.write() as session:
        return [enqueue(session, mail, deadline=deadline) for mail in mails]


def rows(app: App) -> list[Any]:
    with app.db.read() as session:
        return list(session.execute(select(_outbound).order_by(_outbound.c.id)))


def make_due(app: App, **values: Any) -> None:
    """Time passes: every queued mail's retry (or lease) is due now."""
    with app.db.write() as session:
        session.execute(update(_outbound).where(_outbound.c.status == "queued")
                        .values(next_attempt=utcnow() - timedelta(seconds=1), **values))


def new_ticket(app: App) -> int:
    with app.db.write() as session:
        queue_id = session.execute(select(table_of(Queue).c.id)
                                   .where(table_of(Queue).c.key == "servicedesk")).scalar_one()
        ref = create_ticket(session, NewTicket(
            title="Drucker defekt", queue_id=queue_id,
            first_article=NewArticle(direction="in", channel="mail", sender="customer",
                                     body="Er druckt nicht.", message_id="<in.1@acme>")),
            numbering=app.numbering, actor="test")
    return ref.id


class StaffTold:
    """An `on_failed` hook that records its calls and enqueues a staff notice, as the
    caller's renderer would."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, str]] = []
        self.subjects: list[str] = []

    def __call__(self, session: Session, mail: QueuedMail, error: str) -> None:
        self.calls.append((mail.id, mail.event, error))
        self.subjects.append(mail.subject)
        enqueue(session, outgoing(900 + mail.id, event="delivery-failed",
                                  recipients=("anna.agent@example.com",)))


# -- enqueue -----------------------------------------------------------------------------------

def test_enqueue_stores_the_mail_and_remembers_its_message_id(app: App) -> None:
    ticket_id = new_ticket(app)
    mail = outgoing(ticket_id=ticket_id)
    [mail_id] = put(app, mail)
    [row] = rows(app)
    assert (row.id, row.status, row.attempts, row.event, row.ticket_id) == (
        mail_id, "queued", 0, "ack", ticket_id)
    assert row.raw == mail.raw and row.recipients == [CUSTOMER]
    assert row.next_attempt <= utcnow() and row.deadline - row.created == timedelta(days=5)
    with app.db.read() as session:
        remembered = session.get(TicketMessageId, mail.message_id)
    assert remembered is not None and remembered.ticket_id == ticket_id


def test_a_rolled_back_change_leaves_no_mail(app: App) -> None:
    ticket_id = new_ticket(app)
    mail = outgoing(ticket_id=ticket_id)
    with pytest.raises(RuntimeError), app.db.write() as session:
        enqueue(session, mail)
        raise RuntimeError("the ticket change failed after the mail was rendered")
    assert rows(app) == []
    with app.db.read() as session:
        assert session.get(TicketMessageId, mail.message_id) is None


# -- SMTP: temporary, permanent, per recipient ------------------------------------------------

def test_the_relay_answering_451_then_250_delivers_exactly_once(
        app: App, relay: ScriptedRelay) -> None:
    relay.data_replies = ["451 4.3.0 try again later"]
    [mail_id] = put(app, outgoing())
    before = utcnow()
    [first] = drain(app.db, renderer=app.renderer, transport=smtp_to(relay))
    assert first.status == "queued" and "451" in first.detail
    assert first.next_attempt is not None
    assert timedelta(seconds=47) < first.next_attempt - before < timedelta(seconds=73)
    assert drain(app.db, renderer=app.renderer,
                 transport=smtp_to(relay)) == []          # not due yet
    make_due(app)
    [second] = drain(app.db, renderer=app.renderer, transport=smtp_to(relay))
    assert (second.mail_id, second.status) == (mail_id, "sent")
    assert drain(app.db, renderer=app.renderer, transport=smtp_to(relay)) == []
    [row] = rows(app)
    assert (row.status, row.attempts) == ("sent", 2) and row.sent is not None
    assert len(relay.received) == 1
    assert relay.received[0].data == row.raw          # the bytes as stored, dots unstuffed
    assert (relay.received[0].mail_from, relay.received[0].rcpt_tos) == (FROM, [CUSTOMER])


def test_bare_line_feeds_go_out_as_crlf(app: App, relay: ScriptedRelay) -> None:
    mail = outgoing()
    put(app, replace(mail, raw=mail.raw.replace(b"\r\n", b"\n")))
    [delivery] = drain(app.db, renderer=app.renderer, transport=smtp_to(relay))
    assert delivery.status == "sent" and relay.received[0].data == mail.raw


def test_550_marks_failed_and_staff_are_told_but_never_about_their_own_notice(
        app: App, relay: ScriptedRelay) -> None:
    relay.data_replies = ["550 5.7.1 rejected by policy", "550 5.1.1 staff mailbox gone"]
    told = StaffTold()
    [mail_id] = put(app, outgoing())
    [delivery] = drain(app.db, renderer=app.renderer, transport=smtp_to(relay), on_failed=told)
    assert delivery.status == "failed" and "550 5.7.1" in delivery.detail
    assert [(i, e) for i, e, _ in told.calls] == [(mail_id, "ack")]
    assert told.subjects == ["Test mail 1"]
    failed, notice = rows(app)
    assert failed.status == "failed" and "550 5.7.1 rejected by policy" in failed.last_error
    assert (notice.event, notice.status) == ("delivery-failed", "queued")
    [notice_delivery] = drain(app.db, renderer=app.renderer,
                              transport=smtp_to(relay), on_failed=told)
    assert notice_delivery.status == "failed"
    assert len(told.calls) == 1                    # the notice's failure tells no one: no loop
    assert relay.received == []


def test_a_failing_on_failed_hook_does_not_undo_the_failure(
        app: App, relay: ScriptedRelay) -> None:
    relay.data_replies = ["554 5.6.0 bad content"]

    def broken(session: Session, mail: QueuedMail, error: str) -> None:
        enqueue(session, outgoing(2, event="delivery-failed"))
        raise RuntimeError("renderer broke")

    put(app, outgoing())
    [delivery] = drain(app.db, renderer=app.renderer, transport=smtp_to(relay), on_failed=broken)
    assert delivery.status == "failed"
    [row] = rows(app)                              # the hook's half-done work was rolled back
    assert row.status == "failed"


def test_552_is_temporary(app: App, relay: ScriptedRelay) -> None:
    relay.data_replies = ["552 4.5.3 too many recipients"]
    put(app, outgoing())
    [delivery] = drain(app.db, renderer=app.renderer, transport=smtp_to(relay))
    assert delivery.status == "queued"             # RFC 5321 §4.5.3.1.10
    assert "552 4.5.3" in rows(app)[0].last_error


def test_552_too_big_is_permanent(app: App, relay: ScriptedRelay) -> None:
    """The same bytes can never fit: failed at once, not retried for days."""
    relay.data_replies = ["552 5.3.4 message size exceeds fixed limit"]
    put(app, outgoing())
    [delivery] = drain(app.db, renderer=app.renderer, transport=smtp_to(relay))
    assert delivery.status == "failed"
    assert "552 5.3.4" in rows(app)[0].last_error


def test_connection_refused_is_temporary_for_the_whole_batch(app: App) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]               # nothing listens here after the close
    put(app, outgoing(1), outgoing(2))
    deliveries = drain(app.db, renderer=app.renderer,
                       transport=SmtpTransport("127.0.0.1", port, starttls=False, timeout=5))
    assert [d.status for d in deliveries] == ["queued", "queued"]
    assert all("cannot connect to smtp://127.0.0.1" in r.last_error for r in rows(app))


def test_a_relay_that_never_answers_times_out_as_temporary(app: App) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        put(app, outgoing())
        transport = SmtpTransport("127.0.0.1", silent.getsockname()[1], starttls=False,
                                  timeout=0.5)
        [delivery] = drain(app.db, renderer=app.renderer, transport=transport)
    assert delivery.status == "queued" and "timed out" in delivery.detail


def test_after_the_deadline_a_temporary_failure_fails_the_mail(
        app: App, relay: ScriptedRelay) -> None:
    relay.data_replies = ["451 4.4.1 still down"]
    told = StaffTold()
    [mail_id] = put(app, outgoing())
    make_due(app, deadline=utcnow() - timedelta(minutes=1))
    [delivery] = drain(app.db, renderer=app.renderer, transport=smtp_to(relay), on_failed=told)
    assert delivery.status == "failed"
    row = rows(app)[0]
    assert row.status == "failed"
    assert row.last_error.startswith("not delivered by the deadline")
    assert "451 4.4.1 still down" in row.last_error
    assert [i for i, _, _ in told.calls] == [mail_id]


def test_retries_are_never_scheduled_after_the_deadline(app: App, relay: ScriptedRelay) -> None:
    relay.data_replies = ["451 4.4.1 down"]
    put(app, outgoing(), deadline=timedelta(seconds=20))
    [delivery] = drain(app.db, renderer=app.renderer, transport=smtp_to(relay))
    assert delivery.status == "queued"
    row = rows(app)[0]
    assert row.next_attempt == row.deadline        # the last try is at the deadline


def test_a_mail_whose_attempts_never_finish_fails_a_lease_after_its_deadline(
        app: App, relay: ScriptedRelay) -> None:
    told = StaffTold()
    [mail_id] = put(app, outgoing())
    assert len(lease_due(app.db)) == 1             # ... and the drainer dies while sending
    make_due(app, deadline=utcnow() - timedelta(hours=1))
    assert drain(app.db, renderer=app.renderer, transport=smtp_to(relay), on_failed=told) == []
    row = rows(app)[0]
    assert row.status == "failed" and "the last attempt did not finish" in row.last_error
    assert [i for i, _, _ in told.calls] == [mail_id]
    assert relay.received == []


def test_recipients_with_different_outcomes_are_split(app: App, relay: ScriptedRelay) -> None:
    relay.rcpt_replies = {"gone@acme.example": "550 5.1.1 no such user",
                          "busy@acme.example": "451 4.2.1 mailbox busy"}
    told = StaffTold()
    [mail_id] = put(app, outgoing(recipients=(CUSTOMER, "gone@acme.example",
                                              "busy@acme.example")))
    deliveries = drain(app.db, renderer=app.renderer, transport=smtp_to(relay), on_failed=told)
    assert [(d.recipients, d.status) for d in deliveries] == [
        ((CUSTOMER,), "sent"), (("busy@acme.example",), "queued"),
        (("gone@acme.example",), "failed")]
    by_id = {r.id: r for r in rows(app)}
    sent, busy, gone = (by_id[d.mail_id] for d in deliveries)
    [notice] = [r for r in by_id.values() if r.event == "delivery-failed"]
    assert sent.id == mail_id and sent.recipients == [CUSTOMER] and sent.status == "sent"
    assert f"outbox {busy.id} (temporary)" in sent.last_error
    assert busy.message_id == gone.message_id == sent.message_id and busy.raw == sent.raw
    assert "550 5.1.1 no such user" in gone.last_error and gone.status == "failed"
    assert [i for i, _, _ in told.calls] == [gone.id] and notice.event == "delivery-failed"
    relay.rcpt_replies = {}
    make_due(app)
    drain(app.db, renderer=app.renderer, transport=smtp_to(relay), on_failed=told)
    assert [r.rcpt_tos for r in relay.received] == [
        [CUSTOMER], ["busy@acme.example"], ["anna.agent@example.com"]]


# -- crashes and concurrency -------------------------------------------------------------------

def test_a_crash_between_send_and_record_sends_it_again_exactly_once(
        app: App, relay: ScriptedRelay) -> None:
    put(app, outgoing())
    [leased] = lease_due(app.db)
    transport = smtp_to(relay)
    assert transport.send(leased.envelope_from, leased.recipients, leased.raw).outcome == "sent"
    transport.close()                              # ... and the process dies here
    assert drain(app.db, renderer=app.renderer,
                 transport=smtp_to(relay)) == []     # leased: nobody else sends it
    make_due(app)                                  # the lease runs out
    [delivery] = drain(app.db, renderer=app.renderer, transport=smtp_to(relay))
    assert delivery.status == "sent"
    assert drain(app.db, renderer=app.renderer, transport=smtp_to(relay)) == []
    assert len(relay.received) == 2                # one duplicate, never none, never more
    assert rows(app)[0].attempts == 2


def test_a_result_for_a_lease_that_ran_out_does_not_overwrite_a_newer_one(
        app: App, relay: ScriptedRelay) -> None:
    put(app, outgoing())
    [slow] = lease_due(app.db)
    make_due(app)
    [delivery] = drain(app.db, renderer=app.renderer,
                       transport=smtp_to(relay))     # another instance took over and sent it
    assert delivery.status == "sent"
    [late] = record_result(app.db, slow, DeliveryResult("temporary", 451, "late"))
    assert late.status == "unrecorded"
    assert rows(app)[0].status == "sent"


def test_when_a_result_cannot_be_recorded_the_rest_of_the_batch_is_handed_back(
        app: App, relay: ScriptedRelay, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.outbound.outbox as outbox_module

    def database_gone(*args: Any, **kwargs: Any) -> list[Any]:
        raise TemporaryFailure("database unavailable: connection refused")

    _, second_id = put(app, outgoing(1), outgoing(2))
    monkeypatch.setattr(outbox_module, "record_results", database_gone)
    assert drain(app.db, renderer=app.renderer, transport=smtp_to(relay)) == []
    monkeypatch.undo()
    first, second = rows(app)
    assert len(relay.received) == 1                        # the second was never sent
    assert (first.attempts, first.next_attempt > utcnow()) == (1, True)   # leased: retried later
    assert (second.attempts, second.next_attempt <= utcnow()) == (0, True)  # due again now
    [delivery] = drain(app.db, renderer=app.renderer, transport=smtp_to(relay))
    assert (delivery.mail_id, delivery.status) == (second_id, "sent")


def test_a_stopping_drainer_hands_its_batch_back_unsent(app: App, relay: ScriptedRelay) -> None:
    put(app, outgoing(1), outgoing(2))
    stop = threading.Event()
    stop.set()
    assert drain(app.db, renderer=app.renderer, transport=smtp_to(relay), stop=stop) == []
    assert relay.received == [] and [r.attempts for r in rows(app)] == [0, 0]
    assert len(drain(app.db, renderer=app.renderer, transport=smtp_to(relay))) == 2


def test_a_slow_relay_keeps_its_lease_by_heartbeat(
        app: App, database_url: str, relay: ScriptedRelay,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A lease shortened to 1 s and a relay that takes 3 s: while the mail is being sent the
    heartbeat keeps other instances away, and it is sent exactly once."""
    import gateway.outbound.outbox as outbox_module
    import gateway.store.leases as leases

    monkeypatch.setattr(outbox_module, "LEASE", timedelta(seconds=1))
    monkeypatch.setattr(leases, "LEASE", timedelta(seconds=1))
    monkeypatch.setattr(leases, "HEARTBEAT", timedelta(milliseconds=200))
    relay.delay = 3.0
    put(app, outgoing())
    deliveries: list[Any] = []
    sending = threading.Thread(target=lambda: deliveries.extend(drain(app.db, renderer=app.renderer,
                                                                      transport=smtp_to(relay))))
    sending.start()
    while sending.is_alive() and rows(app)[0].attempts == 0:    # until it has the lease
        time.sleep(0.01)
    other = Database(database_url)                 # another instance, trying all the while
    try:
        taken: list[QueuedMail] = []
        while sending.is_alive():
            taken += lease_due(other)
            time.sleep(0.1)
    finally:
        other.dispose()
        sending.join(30)
    assert taken == []
    assert [d.status for d in deliveries] == ["sent"] and len(relay.received) == 1


def test_two_drainers_send_every_mail_exactly_once(
        app: App, database_url: str, relay: ScriptedRelay) -> None:
    relay.delay = 0.1
    put(app, *(outgoing(n) for n in range(16)))
    barrier = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def drainer() -> None:
        database = Database(database_url)              # its own engine, like another instance
        sent = 0
        try:
            barrier.wait()
            while batch := drain(database, smtp_to(relay), renderer=app.renderer, limit=3):
                sent += sum(d.status == "sent" for d in batch)
        except BaseException as exc:
            errors.append(exc)
        finally:
            database.dispose()
            counts.append(sent)

    threads = [threading.Thread(target=drainer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(relay.message_ids()) == sorted(r.message_id for r in rows(app))
    assert sum(counts) == 16 and min(counts) > 0, counts
    assert {r.status for r in rows(app)} == {"sent"}


def test_run_outbox_sends_when_woken_and_stops(app: App, relay: ScriptedRelay) -> None:
    stop, wake = threading.Event(), threading.Event()
    thread = threading.Thread(target=run_outbox,
                              args=(app.db, stop, smtp_to(relay), wake, 30.0),
                              kwargs={"renderer": app.renderer})
    thread.start()
    try:
        time.sleep(0.2)                                 # idle: waiting on `wake`
        put(app, outgoing())
        wake.set()
        deadline = time.monotonic() + 10
        while not relay.received and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        wake.set()
        thread.join(10)
    assert not thread.is_alive()
    assert len(relay.received) == 1 and rows(app)[0].status == "sent"


# -- Maildir and the settings ------------------------------------------------------------------

def test_maildir_writes_one_file_per_mail_with_the_exact_bytes(app: App, tmp_path: Path) -> None:
    mails = [outgoing(1), outgoing(2, recipients=(CUSTOMER, "b@acme.example"))]
    put(app, *mails)
    target = tmp_path / "outbox"
    deliveries = drain(app.db, renderer=app.renderer, transport=MaildirTransport(target))
    assert [d.status for d in deliveries] == ["sent", "sent"]
    files = sorted((target / "new").iterdir())
    assert sorted(f.read_bytes() for f in files) == sorted(m.raw for m in mails)
    assert list((target / "tmp").iterdir()) == [] and (target / "cur").is_dir()


def test_an_unwritable_maildir_is_temporary(app: App, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    put(app, outgoing())
    [delivery] = drain(app.db, renderer=app.renderer,
                       transport=MaildirTransport(blocker / "outbox"))
    assert delivery.status == "queued" and "cannot write to the Maildir" in delivery.detail


def test_transport_from_settings(app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 database_url: str) -> None:
    default = transport_from_settings(app.settings)
    assert isinstance(default, MaildirTransport)
    assert default.path == app.settings.path("var/outbox") and default.path.is_absolute()
    smtp = make_settings(database_url, tmp_path, outbound={
        "transport": "smtps://relay.example.com", "smtp_user": "gw",
        "smtp_password_env": "TGW_TEST_RELAY_PW"})
    monkeypatch.delenv("TGW_TEST_RELAY_PW", raising=False)
    with pytest.raises(ConfigError, match="TGW_TEST_RELAY_PW is not set"):
        transport_from_settings(smtp)
    monkeypatch.setenv("TGW_TEST_RELAY_PW", "s3cret")
    transport = transport_from_settings(smtp)
    assert isinstance(transport, SmtpTransport)
    assert (transport.host, transport.port, transport.ssl, transport.starttls,
            transport.user) == ("relay.example.com", 465, True, False, "gw")
    plain = transport_from_settings(make_settings(database_url, tmp_path, outbound={
        "transport": "smtp://relay.example.com:587"}))
    assert isinstance(plain, SmtpTransport)
    assert (plain.port, plain.ssl, plain.starttls, plain.user) == (587, False, True, "")


# -- STARTTLS and AUTH -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                   auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"gateway"
          and auth_data.password == b"s3cret")
    return AuthResult(success=ok, handled=False)   # handled=False: aiosmtpd answers 535


def test_starttls_and_auth(app: App, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    with running_relay(ScriptedRelay(), tls_context=server_tls, require_starttls=True,
                       authenticator=_authenticator, auth_require_tls=True) as tls_relay:
        def transport(password: str) -> SmtpTransport:
            return SmtpTransport("127.0.0.1", tls_relay.port, starttls=True, user="gateway",
                                 password=password, timeout=5, ssl_context=client_tls)

        put(app, outgoing(1))
        [refused] = drain(app.db, renderer=app.renderer, transport=transport("wrong"))
        assert refused.status == "queued"                    # our config, not the mail's fault
        assert "refused our login as 'gateway'" in refused.detail and "535" in refused.detail
        make_due(app)
        [delivery] = drain(app.db, renderer=app.renderer, transport=transport("s3cret"))
        assert delivery.status == "sent" and len(tls_relay.received) == 1


def test_starttls_is_required_when_configured(app: App, relay: ScriptedRelay) -> None:
    put(app, outgoing())
    [delivery] = drain(app.db, renderer=app.renderer,
                       transport=SmtpTransport("127.0.0.1", relay.port, starttls=True,
                                             timeout=5))
    assert delivery.status == "queued" and "does not offer STARTTLS" in delivery.detail
    assert relay.received == []


# -- the command line --------------------------------------------------------------------------

def test_outbox_list_show_and_retry(app: App, relay: ScriptedRelay, run_cli: Any,
                                    tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path / "ticketgw.toml", database_url,
                          f'\n[outbound]\ntransport = "smtp://127.0.0.1:{relay.port}"\n'
                          "starttls = false\n")
    ticket_id = new_ticket(app)
    relay.data_replies = ["550 5.7.1 no", "550 5.7.1 no"]
    first, second = put(app, outgoing(1, ticket_id=ticket_id), outgoing(2))
    drain(app.db, renderer=app.renderer, transport=smtp_to(relay))

    result = run_cli("--config", str(config), "outbox", "list", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [m["id"] for m in listed] == [second, first]
    assert set(listed[0]) == {"id", "created", "event", "ticket", "message_id", "recipients",
                              "status", "attempts", "next_attempt", "last_error", "sent"}
    assert listed[1]["ticket"] is not None and listed[1]["recipients"] == [CUSTOMER]
    assert listed[1]["status"] == "failed" and "550 5.7.1" in listed[1]["last_error"]
    table = run_cli("--config", str(config), "outbox", "list", "--status", "failed")
    assert "550 5.7.1" in table.stdout and table.stdout.startswith("ID")

    raw = run_cli("--config", str(config), "outbox", "show", str(first), "--raw")
    assert raw.stdout_bytes == rows(app)[0].raw
    missing = run_cli("--config", str(config), "outbox", "show", "999")
    assert missing.exit_code == 1 and "no outbound mail with id 999" in missing.stderr

    retried = run_cli("--config", str(config), "outbox", "retry", str(first))
    assert retried.exit_code == 0 and "requeued 1 mail(s)" in retried.stderr
    row = rows(app)[0]
    assert (row.status, row.attempts) == ("queued", 0)
    assert row.deadline - row.next_attempt == timedelta(days=5)
    again = run_cli("--config", str(config), "outbox", "retry", str(first))
    assert again.exit_code == 1 and "neither failed nor suppressed" in again.stderr

    now = run_cli("--config", str(config), "outbox", "retry", "--all", "--now")
    assert now.exit_code == 0, now.output
    assert now.stdout == f"outbox {second}: sent (250 2.0.0 OK queued)\n"
    assert [r.status for r in rows(app)] == ["queued", "sent"]   # the service sends the first
    drain(app.db, renderer=app.renderer, transport=smtp_to(relay))
    assert [r.status for r in rows(app)] == ["sent", "sent"] and len(relay.received) == 2
    usage = run_cli("--config", str(config), "outbox", "retry")
    assert usage.exit_code == 1 and "give one ID or --all" in usage.stderr
