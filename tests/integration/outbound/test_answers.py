"""What the gateway answers, end to end through the pipeline into the outbox: the mails are
parsed back with the standard library and their headers checked."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from gateway.app import App
from gateway.inbound.intake import Envelope, Incoming, accept_many
from gateway.inbound.worker import process_due
from gateway.store.models import OutboundMail, table_of
from gateway.tickets.customers import NewCustomer, add_customer
from gateway.tickets.queries import ticket_detail
from tests.integration.smtp_helpers import customer_mail

_outbound = table_of(OutboundMail)
QUEUE_ADDRESS = "support@support.example.com"


@pytest.fixture
def customer(app: App) -> None:
    with app.db.write() as session:
        add_customer(session, NewCustomer("mmuster", "max@acme.example", "Max Muster", "acme",
                                          "de"))


def deliver(app: App, *mails: EmailMessage, recipient: str = "incident@support.example.com",
            sender: str | None = None) -> list[Any]:
    accept_many(app.db, blobs=app.blobs, items=[Incoming(m.as_bytes(), Envelope(
        source="smtp", mail_from=sender if sender is not None else str(m["From"]),
        rcpt_to=(recipient,), client_address="127.0.0.1")) for m in mails])  # a trusted hop
    return process_due(app.db, app.stages)


def mail(subject: str = "Drucker defekt", sender: str = "max@acme.example",
         **fields: str) -> EmailMessage:
    """`customer_mail` with the From header exactly as given (with a name, or without)."""
    message = customer_mail(subject, sender=sender, **fields)
    message.replace_header("From", sender)
    return message


def outbox(app: App) -> list[tuple[str, tuple[str, ...], email.message.EmailMessage]]:
    with app.db.read() as session:
        rows = session.execute(select(_outbound).order_by(_outbound.c.id)).all()
    return [(r.event, tuple(r.recipients),
             email.message_from_bytes(r.raw, policy=email.policy.default))  # type: ignore[misc]
            for r in rows]


def test_a_new_ticket_is_acknowledged_and_the_staff_notified(app: App, customer: None) -> None:
    [done] = deliver(app, mail(message_id="<first@acme>", body="Hallo,\nder Drucker.\n"))
    sent = outbox(app)
    assert [(e, r) for e, r, _ in sent] == [("ack", ("max@acme.example",)),
                                           ("staff-notify", ("anna.agent@example.com",))]
    ack = sent[0][2]
    assert ack["From"].addresses[0].addr_spec == QUEUE_ADDRESS
    assert f"[Ticket#{done.ticket_number}]" in ack["Subject"]
    assert ack["In-Reply-To"] == "<first@acme>" and "<first@acme>" in ack["References"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["X-Auto-Response-Suppress"]
    assert ack["Message-ID"].endswith("@support.example.com>")
    reply_to = ack["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("support+r-") and reply_to.endswith("@support.example.com")
    text = ack.get_body(("plain",)).get_content()
    assert "Betroffenes System" in text                    # the missing required answer
    notify = sent[1][2]
    assert notify["Reply-To"].addresses[0].addr_spec == reply_to
    assert "der Drucker" in notify.get_body(("plain",)).get_content()


def test_a_reply_to_the_ack_threads_by_its_message_id(app: App, customer: None) -> None:
    [first] = deliver(app, mail(message_id="<t1@acme>"))
    ack_id = outbox(app)[0][2]["Message-ID"]
    [reply] = deliver(app, mail(subject="Re: whatever", message_id="<t2@acme>",
                                In_Reply_To=ack_id))
    assert (reply.outcome, reply.ticket_number) == ("appended", first.ticket_number)


def test_a_staff_answer_reaches_the_customer_from_the_queue_address(
        app: App, customer: None) -> None:
    [first] = deliver(app, mail(message_id="<s1@acme>"))
    notify = outbox(app)[1][2]
    answer = mail(subject=f"Re: {notify['Subject']}", sender="Anna Agent <anna.agent@example.com>",
                  message_id="<staff-1@example.com>", In_Reply_To=notify["Message-ID"],
                  to=notify["Reply-To"].addresses[0].addr_spec,
                  body="Bitte starten Sie den Drucker neu.\n\nAm Montag schrieb Service Desk:\n"
                       "> Neues Ticket ...\n> Er druckt nicht.\n")
    [done] = deliver(app, answer, recipient=notify["Reply-To"].addresses[0].addr_spec,
                     sender="anna.agent@example.com")
    assert done.outcome == "appended" and "answer sent to the customer" in done.reason
    event, recipients, sent = outbox(app)[-1]
    assert (event, recipients) == ("staff-answer", ("max@acme.example",))
    assert sent["From"].addresses[0].addr_spec == QUEUE_ADDRESS
    assert "Anna Agent" in sent["From"].addresses[0].display_name
    assert "anna.agent@example.com" not in sent.as_string()        # private address hidden
    body = sent.get_body(("plain",)).get_content()
    assert "Bitte starten Sie den Drucker neu." in body
    assert "Neues Ticket" not in body                               # the quote is not sent back
    with app.db.read() as session:
        detail = ticket_detail(session, str(first.ticket_number))
    last = detail["articles"][-1]
    assert (last["direction"], last["sender"], last["internal"]) == ("out", "staff", False)
    assert last["message_id"] == sent["Message-ID"]


def test_staff_commands_close_and_send_the_status_mail(app: App, customer: None) -> None:
    [first] = deliver(app, mail(message_id="<c1@acme>"))
    tag = f"[Ticket#{first.ticket_number}]"
    [done] = deliver(app, mail(subject=f"Re: {tag}", sender="anna.agent@example.com",
                               message_id="<c2@example.com>",
                               body="#state closed\n#priority 5\n\nErledigt.\n"),
                     sender="anna.agent@example.com")
    assert "#state closed" in done.reason and "#priority 5" in done.reason
    with app.db.read() as session:
        detail = ticket_detail(session, str(first.ticket_number))
    assert (detail["state"], detail["priority"]) == ("closed", 5)
    events = [e for e, _, _ in outbox(app)]
    assert events[-2:] == ["status", "staff-answer"]
    status = outbox(app)[-2][2]
    assert "geschlossen" in status.get_body(("plain",)).get_content()


def test_internal_sends_nothing_to_the_customer(app: App, customer: None) -> None:
    [first] = deliver(app, mail(message_id="<i1@acme>"))
    before = len(outbox(app))
    [done] = deliver(app, mail(subject=f"[Ticket#{first.ticket_number}]",
                               sender="anna.agent@example.com", message_id="<i2@example.com>",
                               body="#internal\nDer Kunde hat den falschen Treiber.\n"),
                     sender="anna.agent@example.com")
    assert "internal note" in done.reason
    assert len(outbox(app)) == before
    with app.db.read() as session:
        detail = ticket_detail(session, str(first.ticket_number))
    assert detail["articles"][-1]["internal"] is True


def test_commands_from_a_stranger_are_plain_text(app: App, customer: None) -> None:
    [first] = deliver(app, mail(message_id="<x1@acme>"))
    [done] = deliver(app, mail(subject=f"[Ticket#{first.ticket_number}]",
                               message_id="<x2@acme>", body="#state closed\nbitte\n"))
    assert done.outcome == "appended"
    with app.db.read() as session:
        assert ticket_detail(session, str(first.ticket_number))["state"] == "new"


def test_without_authentication_results_staff_mail_is_only_a_note(
        app: App, customer: None) -> None:
    app.settings = app.settings.model_copy(update={"inbound": app.settings.inbound.model_copy(
        update={"authserv_id": "mx.support.example.com"})})
    [first] = deliver(app, mail(message_id="<a1@acme>"))
    before = len(outbox(app))
    forged = mail(subject=f"[Ticket#{first.ticket_number}]", sender="anna.agent@example.com",
                  message_id="<a2@evil>", body="#state closed\nAll done, send money.\n",
                  Authentication_Results="mx.support.example.com; dmarc=fail "
                                         "header.from=example.com")
    [done] = deliver(app, forged, sender="anna.agent@example.com")
    assert "not authenticated" in done.reason
    assert len(outbox(app)) == before
    with app.db.read() as session:
        assert ticket_detail(session, str(first.ticket_number))["state"] == "new"
    genuine = mail(subject=f"[Ticket#{first.ticket_number}]", sender="anna.agent@example.com",
                   message_id="<a3@example.com>", body="#state closed\nErledigt.\n",
                   Authentication_Results="mx.support.example.com; dkim=pass "
                                          "header.d=example.com")
    [done] = deliver(app, genuine, sender="anna.agent@example.com")
    with app.db.read() as session:
        assert ticket_detail(session, str(first.ticket_number))["state"] == "closed"


def test_rejections_are_explained_but_never_to_automatic_mail(app: App, customer: None) -> None:
    [done] = deliver(app, mail(subject="", message_id="<r1@acme>"))
    assert done.outcome == "rejected"
    [(event, recipients, rejection)] = outbox(app)
    assert (event, recipients) == ("reject", ("max@acme.example",))
    assert "Betreff" in rejection.get_body(("plain",)).get_content()
    [auto] = deliver(app, mail(subject="", message_id="<r2@acme>",
                               Auto_Submitted="auto-generated"))
    assert auto.outcome == "rejected" and len(outbox(app)) == 1


def test_auto_responders_get_no_acknowledgment(app: App, customer: None) -> None:
    [done] = deliver(app, mail(subject="Alert: disk full", message_id="<m1@acme>",
                               Auto_Submitted="auto-generated"))
    assert done.outcome == "created"
    assert [e for e, _, _ in outbox(app)] == ["staff-notify"]       # staff yes, sender no


def test_acknowledgments_are_rate_limited_per_sender(app: App, customer: None) -> None:
    limit = app.settings.outbound.max_auto_replies_per_hour
    deliver(app, *[mail(subject=f"Flood {i}", message_id=f"<flood{i}@acme>")
                   for i in range(limit + 3)])
    acks = [r for e, r, _ in outbox(app) if e == "ack"]
    assert len(acks) == limit


def test_cli_state_change_sends_the_status_mail(app: App, customer: None, run_cli: Any,
                                                tmp_path: Any) -> None:
    from tests.conftest import BASE_CONFIG

    [first] = deliver(app, mail(message_id="<cli1@acme>"))
    config = tmp_path / "c.toml"
    queue, template = BASE_CONFIG["queue"][0], BASE_CONFIG["template"][0]
    config.write_text(
        f'[database]\nurl = "{app.db.url}"\n[inbound]\nsmtp = ""\n[web]\nlisten = ""\n'
        f'[[queue]]\nid = "{queue["id"]}"\nfrom = "{queue["from"]}"\n'
        f'[[template]]\nid = "{template["id"]}"\ngroup = "incident"\nqueue = "{queue["id"]}"\n'
        'name = { de = "Störung" }\n')
    result = run_cli("--config", str(config), "ticket", "set", str(first.ticket_number),
                     "--state", "pending")
    assert result.exit_code == 0, result.output
    event, recipients, status = outbox(app)[-1]
    assert (event, recipients) == ("status", ("max@acme.example",))
    assert "wartend" in status.get_body(("plain",)).get_content()


def test_a_command_that_cannot_be_done_is_answered_to_the_staff_member(
        app: App, customer: None) -> None:
    [first] = deliver(app, mail(message_id="<e1@acme>"))
    [done] = deliver(app, mail(subject=f"[Ticket#{first.ticket_number}]",
                               sender="anna.agent@example.com", message_id="<e2@example.com>",
                               body="#state erledigt\n#assign nobody\n#priority 2\n\nOk.\n"),
                     sender="anna.agent@example.com")
    assert "#state erledigt" in done.reason
    failed = [(e, r, m) for e, r, m in outbox(app) if e == "command-failed"]
    assert [r for _, r, _ in failed] == [("anna.agent@example.com",)]
    text = failed[0][2].get_body(("plain",)).get_content()
    assert "#state erledigt" in text and "#assign nobody" in text and "#priority 2" in text
    with app.db.read() as session:
        detail = ticket_detail(session, str(first.ticket_number))
    assert detail["priority"] == 2 and detail["state"] == "new"   # the rest still counts
    assert [e for e, _, _ in outbox(app)][-1] == "staff-answer"
