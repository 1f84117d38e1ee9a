"""Staff's `#files` mail command through the real mail path (intake, worker, pipeline,
outbox) on both databases: the customer gets a working link, the staff member an answer
when it cannot be done."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from gateway.app import App
from gateway.store.models import table_of
from gateway.store.models_files import FileArea
from gateway.web.app import create_web_app
from tests.integration.outbound.test_answers import (  # noqa: F401
    customer,
    deliver,
    mail,
    outbox,
    staff_answer,
)

STAFF = "anna.agent@example.com"


def test_files_command_mails_the_customer_a_link(app: App, customer: None) -> None:  # noqa: F811
    [first] = deliver(app, mail(message_id="<f1@acme>"))
    notify = next(m for e, _, m in outbox(app) if e == "staff-notify")
    assert "#files" in notify.get_body(("plain",)).get_content()   # the command is offered
    reply_to = notify["Reply-To"].addresses[0].addr_spec
    [done] = deliver(app, mail(subject=f"Re: {notify['Subject']}", sender=STAFF,
                               to=reply_to, message_id="<f2@example.com>",
                               In_Reply_To=str(notify["Message-ID"]),
                               body="#files 14\n"),
                     recipient=reply_to, sender=STAFF)
    assert done.outcome == "appended" and "#files 14 (link mailed to max@acme.example" in \
        done.reason
    events = [(e, to) for e, to, _ in outbox(app)]
    assert events[-1] == ("file-link", ("max@acme.example",))
    assert ("staff-answer", ("max@acme.example",)) not in events   # nothing else to send
    link_mail = outbox(app)[-1][2]
    assert f"[Ticket#{first.ticket_number}]" in str(link_mail["Subject"])
    assert link_mail["In-Reply-To"] == "<f1@acme>" or "<f1@acme>" in str(link_mail["References"])
    text = link_mail.get_body(("plain",)).get_content()
    link = re.search(r"http://127\.0\.0\.1:8080(/files/[A-Za-z0-9_-]{43})", text)
    assert link, text
    with app.db.read() as session:
        area = session.execute(select(table_of(FileArea))).one()
    assert area.created_by == f"staff:{STAFF}" and area.mailed_to == "max@acme.example"
    assert abs((area.expires - area.created) - timedelta(days=14)) < timedelta(seconds=5)
    with TestClient(create_web_app(app)) as client:
        page = client.get(link.group(1))
    assert page.status_code == 200 and str(first.ticket_number) in page.text


def test_a_files_command_that_cannot_be_done_is_answered(app: App,
                                                         customer: None) -> None:  # noqa: F811
    [first] = deliver(app, mail(message_id="<g1@acme>"))
    [done] = staff_answer(app, first.ticket_number, "#files forever\n\nOk.\n",
                          "<g2@example.com>")
    assert "#files forever" in done.reason
    failed = [m for e, _, m in outbox(app) if e == "command-failed"]
    assert len(failed) == 1 and "1 to 365" in failed[0].get_body(("plain",)).get_content()
    assert "file-link" not in [e for e, _, _ in outbox(app)]
    assert "staff-answer" not in [e for e, _, _ in outbox(app)]    # "Ok." stays a note
    with app.db.read() as session:
        assert session.execute(select(table_of(FileArea))).all() == []
