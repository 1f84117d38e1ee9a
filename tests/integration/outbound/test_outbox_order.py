"""Mail about one ticket to one recipient leaves in the order it was queued, even when the
first attempt fails (issue #16 item 7c: after a retry "open" arrived after "pending"). A
real aiosmtpd relay answers 451 once; time moves by making the retry due in the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import App
from gateway.outbound.outbox import drain
from gateway.tickets.actions import change_state
from gateway.tickets.ticket import State, find_ticket
from tests.conftest import write_config
from tests.integration.outbound.test_answers import deliver, mail
from tests.integration.outbound.test_outbox import (
    ScriptedRelay,
    make_due,
    new_ticket,
    outgoing,
    put,
    rows,
    running_relay,
    smtp_to,
)

CUSTOMER = "moritz@acme.example"


@pytest.fixture
def scripted() -> Iterator[ScriptedRelay]:
    with running_relay(ScriptedRelay()) as running:
        yield running


def subjects(relay: ScriptedRelay, recipient: str) -> list[str]:
    return [line.decode() for r in relay.received if recipient in r.rcpt_tos
            for line in r.data.split(b"\r\n") if line.startswith(b"Subject:")]


def test_a_status_mail_waits_for_the_earlier_one_that_failed(
        app: App, scripted: ScriptedRelay) -> None:
    [done] = deliver(app, mail(message_id="<o1@acme>", sender=CUSTOMER))
    assert len(drain(app.db, renderer=app.renderer,
                     transport=smtp_to(scripted))) == 2          # the ack and the notice
    with app.db.write() as session:
        ticket_id = find_ticket(session, str(done.ticket_number)).id or 0
        change_state(session, app.answering, ticket_id, State.OPEN, actor="test")
        change_state(session, app.answering, ticket_id, State.PENDING, actor="test")
    [to_staff] = put(app, outgoing(7, event="staff-notify", ticket_id=ticket_id,
                                   recipients=("anna.agent@example.com",)))
    opened, pending = [r.id for r in rows(app) if r.event == "status"]
    scripted.data_replies = ["451 4.3.0 try again later"]      # the first DATA only

    first = drain(app.db, renderer=app.renderer, transport=smtp_to(scripted))
    assert [(d.mail_id, d.status) for d in first] == [(opened, "queued"), (to_staff, "sent")]
    by_id = {r.id: r for r in rows(app)}
    assert (by_id[pending].status, by_id[pending].attempts) == ("queued", 0)   # not leased
    assert drain(app.db, renderer=app.renderer,
                 transport=smtp_to(scripted)) == []      # "open" waits for its retry: so does this
    assert subjects(scripted, CUSTOMER)[2:] == []

    make_due(app)                                      # the retry is due
    assert [(d.mail_id, d.status) for d in drain(app.db, renderer=app.renderer,
                                                 transport=smtp_to(scripted))] == [
        (opened, "sent")]                              # claimed together, "pending" still waits
    assert [(d.mail_id, d.status) for d in drain(app.db, renderer=app.renderer,
                                                 transport=smtp_to(scripted))] == [
        (pending, "sent")]
    statuses = [s for s in subjects(scripted, CUSTOMER) if "Status" in s or "status" in s]
    assert len(statuses) == 2
    order = [r.id for r in sorted(rows(app), key=lambda r: r.sent) if r.event == "status"]
    assert order == [opened, pending]


def test_other_recipients_and_mail_without_a_ticket_are_not_held(
        app: App, scripted: ScriptedRelay) -> None:
    scripted.data_replies = ["451 4.3.0 try again later"]
    deliver(app, mail(message_id="<o2@acme>", sender=CUSTOMER))
    put(app, outgoing(1, event="faq-answer", recipients=(CUSTOMER,)))
    delivered = drain(app.db, renderer=app.renderer, transport=smtp_to(scripted))
    # the ack fails; the notice (another recipient) and the FAQ answer (no ticket) go out
    assert [(d.status, r.event) for d, r in zip(delivered, rows(app), strict=True)] == [
        ("queued", "ack"), ("sent", "staff-notify"), ("sent", "faq-answer")]


def test_retry_now_keeps_the_order_and_says_what_waits(
        app: App, scripted: ScriptedRelay, run_cli: Any, tmp_path: Path,
        database_url: str) -> None:
    config = write_config(tmp_path / "ticketgw.toml", database_url,
                          f'\n[outbound]\ntransport = "smtp://127.0.0.1:{scripted.port}"\n'
                          "starttls = false\n")
    ticket_id = new_ticket(app)
    scripted.data_replies = ["550 5.7.1 no", "550 5.7.1 no"]
    first, second = put(app, outgoing(1, event="status", ticket_id=ticket_id),
                        outgoing(2, event="status", ticket_id=ticket_id))
    drain(app.db, renderer=app.renderer,
          transport=smtp_to(scripted))
    drain(app.db, renderer=app.renderer,
          transport=smtp_to(scripted))        # the second waited for the first to fail
    assert [r.status for r in rows(app)] == ["failed", "failed"]
    now = run_cli("--config", str(config), "outbox", "retry", "--all", "--now")
    assert now.exit_code == 0, now.output
    assert now.stdout.splitlines() == [
        f"outbox {first}: sent (250 2.0.0 OK queued)",
        f"outbox {second}: not sent now (an earlier mail of its ticket to the same recipient "
        "goes first, or it was held back; see `outbox list`)"]
    drain(app.db, renderer=app.renderer, transport=smtp_to(scripted))
    assert [r.status for r in rows(app)] == ["sent", "sent"]
