"""What the gateway answers, end to end through the pipeline into the outbox: the mails are
parsed back with the standard library and their headers checked."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.app import App, build_app, prepare_database
from gateway.inbound.intake import Envelope, Incoming, accept_many
from gateway.inbound.worker import process_due
from gateway.outbound.outbox import message_bytes
from gateway.store.models import OutboundMail, table_of
from gateway.tickets.customers import NewCustomer, add_customer
from gateway.tickets.queries import ticket_detail
from tests.conftest import BASE_CONFIG, make_settings
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
             email.message_from_bytes(message_bytes(r, app.renderer),
                                    policy=email.policy.default))  # type: ignore[misc]
            for r in rows]


STAFF = "anna.agent@example.com"


def staff_address(app: App, number: object) -> str:
    """The ticket's staff reply address: the Reply-To of its staff notice."""
    notice = next(m for e, _, m in outbox(app)
                  if e == "staff-notify" and f"[Ticket#{number}]" in str(m["Subject"]))
    return str(notice["Reply-To"].addresses[0].addr_spec)


def staff_answer(app: App, number: object, body: str, message_id: str,
                 **fields: str) -> list[Any]:
    """Anna answers ticket `number` the way her mail client does: to its staff address."""
    address = staff_address(app, number)
    return deliver(app, mail(subject=f"Re: [Ticket#{number}]", sender=STAFF, to=address,
                             message_id=message_id, body=body, **fields),
                   recipient=address, sender=STAFF)


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
    staff_reply_to = notify["Reply-To"].addresses[0].addr_spec      # its own secret
    assert staff_reply_to.startswith("support+s-") and staff_reply_to.endswith(
        "@support.example.com")
    assert staff_reply_to.partition("-")[2] != reply_to.partition("-")[2]
    assert staff_reply_to not in ack.as_string()           # the customer never sees it
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
    [done] = staff_answer(app, first.ticket_number, "#state closed\n#priority 5\n\nErledigt.\n",
                          "<c2@example.com>")
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
    [done] = staff_answer(app, first.ticket_number,
                          "#internal\nDer Kunde hat den falschen Treiber.\n", "<i2@example.com>")
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
    [done] = staff_answer(app, first.ticket_number, "#state closed\nAll done, send money.\n",
                          "<a2@evil>", Authentication_Results="mx.support.example.com; "
                                                              "dmarc=fail header.from=example.com")
    assert "does not vouch for it" in done.reason
    assert [(e, r) for e, r, _ in outbox(app)[before:]] == [("kept-as-note", (STAFF,))]
    with app.db.read() as session:
        assert ticket_detail(session, str(first.ticket_number))["state"] == "new"
    [done] = staff_answer(app, first.ticket_number, "#state closed\nErledigt.\n",
                          "<a3@example.com>",
                          Authentication_Results="mx.support.example.com; dkim=pass "
                                                 "header.d=example.com")
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


def test_a_rejection_comes_from_the_queue_the_mail_was_for(app: App, customer: None) -> None:
    """Not from the gateway's default `[outbound] from`: from the template's queue."""
    deliver(app, mail(subject="", message_id="<r3@acme>", to="change@support.example.com"),
            recipient="change@support.example.com")
    deliver(app, mail(subject="", message_id="<r4@acme>", sender="moritz@acme.example"))
    [(_, _, to_changes), (_, _, to_incident)] = outbox(app)
    assert to_changes["From"].addresses[0].addr_spec == "changes@support.example.com"
    assert to_changes["From"].addresses[0].display_name == "Changes"
    assert to_incident["From"].addresses[0].addr_spec == QUEUE_ADDRESS
    assert app.settings.outbound.from_ not in (str(to_changes["From"]),
                                               str(to_incident["From"]))


def test_a_priority_line_sets_only_a_new_tickets_priority(app: App, customer: None) -> None:
    [done] = deliver(app, mail(message_id="<p1@acme>", body="Priorität: hoch\nDer Drucker.\n"))
    with app.db.read() as session:
        assert ticket_detail(session, str(done.ticket_number))["priority"] == 4
    [ack, _] = outbox(app)
    assert "4 hoch" in ack[2].get_body(("plain",)).get_content()
    address = str(ack[2]["Reply-To"].addresses[0].addr_spec)
    deliver(app, mail(subject=f"Re: [Ticket#{done.ticket_number}]", to=address,
                      message_id="<p2@acme>", body="Priority: urgent\n"), recipient=address)
    with app.db.read() as session:
        assert ticket_detail(session, str(done.ticket_number))["priority"] == 4


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
    """All or nothing: `#assign nobody` parses but cannot be done, so `#priority 2` before
    it is rolled back and the answer stays an internal note."""
    [first] = deliver(app, mail(message_id="<e1@acme>"))
    before = len(outbox(app))
    [done] = staff_answer(app, first.ticket_number, "#priority 2\n#assign nobody\n\nOk.\n",
                          "<e2@example.com>")
    assert "#assign nobody" in done.reason and "nothing carried out" in done.reason
    assert [(e, r) for e, r, _ in outbox(app)[before:]] == [("command-failed", (STAFF,))]
    failed = outbox(app)[-1][2]
    text = failed.get_body(("plain",)).get_content()
    assert "#assign nobody" in text and "nichts davon ausgeführt" in text
    assert failed["Reply-To"].addresses[0].addr_spec == staff_address(app, first.ticket_number)
    with app.db.read() as session:
        detail = ticket_detail(session, str(first.ticket_number))
    assert detail["priority"] == 3 and detail["state"] == "new"   # nothing counted
    assert detail["articles"][-1]["internal"] is True


@pytest.mark.parametrize("path", ["reply-token", "in-reply-to", "references", "subject-tag"])
def test_a_staff_from_on_another_path_is_a_note_and_they_are_told_why(
        app: App, customer: None, path: str) -> None:
    """Item 5 of issue #14: whatever else ties a staff From to the ticket (the customer's
    reply address, which every customer knows, or headers and a subject tag anyone can
    write), it neither commands nor reaches the customer."""
    [first] = deliver(app, mail(message_id="<p1@acme>"))
    ack = outbox(app)[0][2]
    recipient = ack["Reply-To"].addresses[0].addr_spec if path == "reply-token" else \
        "incident@support.example.com"
    fields = {"in-reply-to": {"In_Reply_To": str(ack["Message-ID"])},
              "references": {"References": str(ack["Message-ID"])}}.get(path, {})
    subject = f"Re: [Ticket#{first.ticket_number}]" if path == "subject-tag" else "Re: Drucker"
    before = len(outbox(app))
    [done] = deliver(app, mail(subject=subject, sender=STAFF, to=recipient,
                               message_id="<p2@example.com>",
                               body="#state closed\nErledigt, wir buchen 500 EUR ab.\n",
                               **fields), recipient=recipient, sender=STAFF)
    assert (done.outcome, done.ticket_number) == ("appended", first.ticket_number)
    assert "kept as an internal note" in done.reason and f"came by {path}" in done.reason
    assert "kept as an internal note" in done.reason and "is told why" in done.reason
    [(event, recipients, told)] = outbox(app)[before:]
    assert (event, recipients) == ("kept-as-note", (STAFF,))
    assert told["Reply-To"].addresses[0].addr_spec == staff_address(app, first.ticket_number)
    assert told["In-Reply-To"] == "<p2@example.com>"
    with app.db.read() as session:
        detail = ticket_detail(session, str(first.ticket_number))
    assert detail["state"] == "new"
    assert (detail["articles"][-1]["internal"], detail["articles"][-1]["sender"]) == (
        True, "staff")


def test_automatic_staff_mail_on_another_path_is_kept_but_not_answered(
        app: App, customer: None) -> None:
    """RFC 3834 §2: an auto-forward from a staff mailbox gets no mail back (no loop)."""
    [first] = deliver(app, mail(message_id="<q1@acme>"))
    before = len(outbox(app))
    [done] = deliver(app, mail(subject=f"Fwd: [Ticket#{first.ticket_number}]", sender=STAFF,
                               message_id="<q2@example.com>", body="#state closed\n",
                               Auto_Submitted="auto-generated"), sender=STAFF)
    assert "kept as an internal note" in done.reason and "not told" in done.reason
    assert outbox(app)[before:] == []
    with app.db.read() as session:
        assert ticket_detail(session, str(first.ticket_number))["state"] == "new"


@pytest.fixture
def three_staff_app(database_url: str, tmp_path: Path) -> Iterator[App]:
    """The service desk with three staff members: two read German, one English."""
    queues = [dict(BASE_CONFIG["queue"][0], staff=["anna.agent@example.com",
                                                   "bernd.agent@example.com",
                                                   "carl.agent@example.com"]),
              *BASE_CONFIG["queue"][1:]]
    built = build_app(make_settings(database_url, tmp_path / "data", queue=queues, staff=[
        {"email": "anna.agent@example.com", "name": "Anna Agent", "language": "de"},
        {"email": "bernd.agent@example.com", "name": "Bernd Agent", "language": "de"},
        {"email": "carl.agent@example.com", "name": "Carl Agent", "language": "en"}]))
    prepare_database(built, migrate=False)
    yield built
    built.close()


def test_each_staff_member_gets_a_notice_of_their_own(three_staff_app: App) -> None:
    """The notice's texts are rendered once per language; each mail still has its own
    recipient and Message-ID, and the text of its recipient's language."""
    app = three_staff_app
    deliver(app, mail(message_id="<one@acme>", sender="Max Muster <max@acme.example>",
                      body="Der Drucker druckt nicht.\n"))
    notices = {recipients: message for event, recipients, message in outbox(app)
               if event == "staff-notify"}
    assert set(notices) == {("anna.agent@example.com",), ("bernd.agent@example.com",),
                            ("carl.agent@example.com",)}
    anna, bernd, carl = (notices[(f"{n}.agent@example.com",)] for n in ("anna", "bernd", "carl"))
    assert [m["To"].addresses[0].display_name for m in (anna, bernd, carl)] == [
        "Anna Agent", "Bernd Agent", "Carl Agent"]
    assert len({m["Message-ID"] for m in (anna, bernd, carl)}) == 3
    texts = {name: str(m.get_body(("plain",)).get_content())  # type: ignore[union-attr]
             for name, m in (("anna", anna), ("bernd", bernd), ("carl", carl))}
    assert texts["anna"] == texts["bernd"] != texts["carl"]
    assert all("Der Drucker druckt nicht." in text for text in texts.values())
    assert str(anna["Subject"]) == str(bernd["Subject"]) != str(carl["Subject"])
    assert anna["Reply-To"] == bernd["Reply-To"] == carl["Reply-To"]
