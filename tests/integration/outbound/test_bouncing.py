"""A customer address that bounces: the delivery report arrives over SMTP, automatic mail
to the address is held back (and shown), what a person writes still goes out, and a mail
from the address (or `ticketgw bounces clear`) ends it."""

from __future__ import annotations

import json
import smtplib
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.app import App
from gateway.inbound.worker import process_due
from gateway.outbound import answers, bouncing
from gateway.outbound.bouncing import is_dead
from gateway.outbound.maildir import MaildirTransport
from gateway.outbound.outbox import drain, requeue_failed
from gateway.store.models import OutboundMail, table_of
from gateway.tickets.actions import change_state
from gateway.tickets.ticket import State
from tests.conftest import write_config
from tests.integration.smtp_helpers import customer_mail, running_listener, send

_outbound = table_of(OutboundMail)
CUSTOMER = "max@acme.example"


def dsn(original_message_id: str, status: str, number: int = 1) -> bytes:
    """A delivery status notification (RFC 3464) for one of our mails to the customer."""
    return textwrap.dedent(f"""\
        From: Mail Delivery System <MAILER-DAEMON@mx.acme.example>
        To: support@support.example.com
        Subject: Undelivered Mail Returned to Sender
        Message-ID: <dsn-{number}@mx.acme.example>
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=delivery-status; boundary="B"

        --B
        Content-Type: text/plain

        Your message could not be delivered.

        --B
        Content-Type: message/delivery-status

        Reporting-MTA: dns; mx.acme.example

        Final-Recipient: rfc822; {CUSTOMER}
        Action: failed
        Status: {status}
        Diagnostic-Code: smtp; 550 {status} no such user here

        --B
        Content-Type: text/rfc822-headers

        From: Service Desk <support@support.example.com>
        To: {CUSTOMER}
        Message-ID: {original_message_id}
        Subject: We received your request

        --B--
        """).replace("\n", "\r\n").encode()


def outbox(app: App) -> list[Any]:
    with app.db.read() as session:
        return list(session.execute(select(
            _outbound.c.id, _outbound.c.event, _outbound.c.status, _outbound.c.recipients,
            _outbound.c.message_id, _outbound.c.last_error).order_by(_outbound.c.id)))


def deliver(app: App, tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "sent")
    while drain(app.db, renderer=app.renderer, transport=transport):
        pass


def test_a_dead_address_gets_no_automatic_mail_until_it_writes_again(
        app: App, customer: None, tmp_path: Path) -> None:
    with running_listener(app) as port:
        send(port, customer_mail("Drucker defekt", message_id="<first@acme>"))
        [created] = process_due(app.db, app.stages)
        assert created.outcome == "created"
        deliver(app, tmp_path)
        ack = next(m for m in outbox(app) if m.event == "ack")
        assert ack.status == "sent"

        # the customer's server says the address does not exist
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("", ["support@support.example.com"], dsn(ack.message_id, "5.1.1"))
        [bounced] = process_due(app.db, app.stages)
        assert bounced.outcome == "ignored"

        # a status mail is automatic: held back, with the reason
        with app.db.write() as session:
            ticket_id = session.execute(select(_outbound.c.ticket_id)
                                        .where(_outbound.c.id == ack.id)).scalar_one()
            change_state(session, app.answering, ticket_id, State.CLOSED, actor="test")
        deliver(app, tmp_path)
        status = next(m for m in outbox(app) if m.event == "status")
        assert status.status == "suppressed"
        assert f"{CUSTOMER} bounced (5.1.1, 1x" in status.last_error
        assert "ticketgw bounces clear" in status.last_error

        # a person's answer is not automatic: it is sent
        with app.db.write() as session:
            answers.staff_answered(session, app.answering, ticket_id, agent_name="Anna Agent",
                                   text="Please check the cable.", in_reply_to=None)
        deliver(app, tmp_path)
        assert next(m for m in outbox(app) if m.event == "staff-answer").status == "sent"

        # the customer writes again (a person): the mark ends, automatic mail goes out
        send(port, customer_mail("Noch ein Drucker", message_id="<second@acme>"))
        [second] = process_due(app.db, app.stages)
        assert second.outcome == "created"
        deliver(app, tmp_path)
        acks = [m for m in outbox(app) if m.event == "ack"]
        assert [m.status for m in acks] == ["sent", "sent"]
    with app.db.write() as session:     # the held-back mail goes once it is retried
        assert requeue_failed(session, [status.id]) == [status.id]
    deliver(app, tmp_path)
    assert next(m for m in outbox(app) if m.id == status.id).status == "sent"


def test_an_out_of_office_reply_from_a_dead_address_ends_the_mark(
        app: App, customer: None, tmp_path: Path) -> None:
    """An auto-responder that answers proves the mailbox exists (the bounce may have been a
    passing fault of the customer's server); a mailing list's mail from it does not."""
    with running_listener(app) as port:
        send(port, customer_mail("Drucker defekt", message_id="<first@acme>"))
        process_due(app.db, app.stages)
        deliver(app, tmp_path)
        ack = next(m for m in outbox(app) if m.event == "ack")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("", ["support@support.example.com"], dsn(ack.message_id, "5.1.1"))
        process_due(app.db, app.stages)
        with app.db.read() as session:
            assert bouncing.dead_address(session, CUSTOMER) is not None

        send(port, customer_mail("Newsletter", message_id="<list@acme>",
                                 Precedence="bulk", List_Id="<news.acme.example>"))
        [listed] = process_due(app.db, app.stages)
        with app.db.read() as session:
            assert bouncing.dead_address(session, CUSTOMER) is not None, listed

        send(port, customer_mail("Automatic reply: We received your request",
                                 message_id="<ooo@acme>", In_Reply_To=ack.message_id,
                                 Auto_Submitted="auto-replied",
                                 body="I am out of the office until Monday.\n"), sender="")
        [ooo] = process_due(app.db, app.stages)
        assert "auto-submitted" in ooo.reason or "out-of-office" in ooo.reason, ooo
        with app.db.read() as session:
            assert bouncing.dead_address(session, CUSTOMER) is None


def test_a_mail_after_a_bounce_in_the_same_batch_ends_the_mark(
        app: App, customer: None, tmp_path: Path) -> None:
    """The worker looks up its batch's senders once, before the bounce of the same batch is
    recorded: the customer's mail right after that bounce must still end the mark."""
    with running_listener(app) as port:
        send(port, customer_mail("Drucker defekt", message_id="<first@acme>"))
        process_due(app.db, app.stages)
        deliver(app, tmp_path)
        ack = next(m for m in outbox(app) if m.event == "ack")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("", ["support@support.example.com"], dsn(ack.message_id, "5.1.1"))
        send(port, customer_mail("Noch ein Drucker", message_id="<second@acme>"))
        bounced, written = process_due(app.db, app.stages)       # one transaction
        assert (bounced.outcome, written.outcome) == ("ignored", "created"), (bounced, written)
        with app.db.read() as session:
            assert bouncing.dead_address(session, CUSTOMER) is None
            assert bouncing.listing(session, dead_only=False) == []


def test_the_cli_lists_and_clears_bouncing_addresses(app: App, customer: None,
                                                      tmp_path: Path, run_cli: Any,
                                                      database_url: str) -> None:
    config = write_config(tmp_path / "ticketgw.toml", database_url)
    with running_listener(app) as port:
        send(port, customer_mail("Drucker defekt", message_id="<first@acme>"))
        process_due(app.db, app.stages)
        ack = next(m for m in outbox(app) if m.event == "ack")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("", ["support@support.example.com"], dsn(ack.message_id, "5.2.2"))
        process_due(app.db, app.stages)
    result = run_cli("--config", str(config), "bounces", "list", "--json")
    [row] = json.loads(result.stdout)
    assert (row["address"], row["status"], row["count"], row["dead"]) == (
        CUSTOMER, "5.2.2", 1, False)     # a full mailbox says nothing about the address
    assert run_cli("--config", str(config), "bounces", "list", "--dead").stdout.strip() == (
        "(no bouncing addresses)")
    # explain shows what a delivery report says, and that a dead sender's mail revives it
    report = tmp_path / "dsn.eml"
    report.write_bytes(dsn(ack.message_id, "5.1.1", number=2))
    result = run_cli("--config", str(config), "explain", str(report), "--json")
    assert json.loads(result.stdout)["bounced_recipients"] == f"{CUSTOMER} 5.1.1 (hard)"
    text = run_cli("--config", str(config), "explain", str(report)).stdout.splitlines()
    assert f"bounced_recipients: {CUSTOMER} 5.1.1 (hard)" in text
    assert any(line.startswith("outcome:            ") for line in text)   # one column
    with app.db.write() as session:
        bouncing.record_bounces(session, [(CUSTOMER, "5.1.1", True)], [ack.message_id], "test",
                                None)
    mail = tmp_path / "customer.eml"
    mail.write_bytes(bytes(customer_mail("Wieder da", message_id="<back@acme>")))
    result = run_cli("--config", str(config), "explain", str(mail), "--json")
    explained = json.loads(result.stdout)["sender_bouncing"]
    assert explained.startswith(f"{CUSTOMER} bounced (5.1.1, 2x") and "this mail ends that" in (
        explained)
    listed = run_cli("--config", str(config), "ticket", "list", "--json").stdout
    number = json.loads(listed)[0]["number"]
    shown = run_cli("--config", str(config), "ticket", "show", number).stdout
    assert f"! {CUSTOMER} bounced (5.1.1, 2x" in shown and "held back" in shown
    result = run_cli("--config", str(config), "bounces", "clear", CUSTOMER)
    assert result.exit_code == 0 and "automatic mail goes there again" in result.stderr
    result = run_cli("--config", str(config), "bounces", "clear", CUSTOMER)
    assert result.exit_code != 0 and "no bounces are recorded" in result.stderr
    shown = json.loads(run_cli("--config", str(config), "ticket", "show", number,
                               "--json").stdout)
    assert shown["contact_bouncing"] is None


@pytest.mark.parametrize(("status", "permanent", "count", "dead"), [
    ("5.1.1", True, 1, True),      # no such user
    ("5.1.10", True, 1, True),     # null MX
    ("5.2.1", True, 1, True),      # mailbox disabled
    ("5.7.1", True, 1, False),     # refused once for a policy reason: not yet
    ("5.7.1", True, 2, True),      # ... twice
    ("5.0.0", True, 2, True),
    ("5.2.2", True, 9, False),     # mailbox full
    ("5.3.4", True, 9, False),     # message too big
    ("4.4.7", False, 9, False),    # expired after temporary failures
])
def test_which_bounces_make_an_address_dead(status: str, permanent: bool, count: int,
                                            dead: bool) -> None:
    assert is_dead(status, permanent, count) is dead


def test_a_forged_bounce_marks_no_address_dead(app: App, customer: None, tmp_path: Path,
                                               run_cli: Any, database_url: str) -> None:
    """Anyone can send a null-sender "delivery report". One that returns no mail we sent to
    the address (a made-up Message-ID, the customer's own mail, or our mail to someone
    else) must not hold back the customer's status mails (issue #14, item 13)."""
    with running_listener(app) as port:
        send(port, customer_mail("Drucker defekt", message_id="<first@acme>"))
        [created] = process_due(app.db, app.stages)
        deliver(app, tmp_path)
        ack = next(m for m in outbox(app) if m.event == "ack")
        other = dsn(ack.message_id, "5.1.1", number=3).replace(
            f"rfc822; {CUSTOMER}".encode(), b"rfc822; victim@elsewhere.example")
        forged = [dsn("<made-up@support.example.com>", "5.1.1", number=1),
                  dsn("<first@acme>", "5.1.1", number=2),     # on the ticket, but not ours
                  other]
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            for report in forged:
                client.sendmail("", ["support@support.example.com"], report)
        results = process_due(app.db, app.stages)
    assert [r.outcome for r in results] == ["ignored"] * 3
    assert results[1].ticket_number == created.ticket_number     # still kept on its ticket
    config = write_config(tmp_path / "ticketgw.toml", database_url)
    listed = run_cli("--config", str(config), "bounces", "list", "--json")
    assert json.loads(listed.stdout) == []
    with app.db.write() as session:        # the customer's status mail goes out
        ticket_id = session.execute(select(_outbound.c.ticket_id)
                                    .where(_outbound.c.id == ack.id)).scalar_one()
        change_state(session, app.answering, ticket_id, State.CLOSED, actor="test")
    deliver(app, tmp_path)
    assert next(m for m in outbox(app) if m.event == "status").status == "sent"
    # the processing log says why
    assert "not marked as bouncing: max@acme.example (it returns no mail of ours)" in (
        results[0].reason)
    assert "not marked as bouncing: max@acme.example" in results[1].reason
    assert ("not marked as bouncing: victim@elsewhere.example (the mail of ours it returns "
            "was not sent to it)") in results[2].reason
