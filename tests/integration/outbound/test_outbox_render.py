"""Answers are rendered by the outbox, not in the transaction that queued them (issue #18
item 2): the worker queues a recipe, the outbox renders it, stores the bytes before it
sends them, and every later attempt sends exactly those bytes. A real aiosmtpd relay."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from typing import Any

from sqlalchemy import update

from gateway.app import App
from gateway.outbound.outbox import drain, message_bytes
from gateway.outbound.render import MailRenderer
from gateway.store.models import OutboundMail, table_of
from tests.integration.outbound.test_answers import customer, deliver, mail  # noqa: F401
from tests.integration.outbound.test_outbox import (
    ScriptedRelay,
    make_due,
    relay,  # noqa: F401
    rows,
    smtp_to,
)

_outbound = table_of(OutboundMail)


def override(app: App, directory: Path) -> MailRenderer:
    """The app's renderer as it is after an admin put templates into `directory`."""
    return MailRenderer(base_url=app.renderer.base_url, override_dir=directory)


def test_the_worker_queues_a_recipe_and_the_outbox_sends_what_it_stored(
        app: App, customer: None, relay: ScriptedRelay) -> None:  # noqa: F811
    [done] = deliver(app, mail(message_id="<r1@acme>", body="Der Drucker druckt nicht.\n"))
    queued = rows(app)
    assert [(r.event, r.raw, bool(r.recipe)) for r in queued] == [
        ("ack", None, True), ("staff-notify", None, True)]

    assert [d.status for d in drain(app.db, smtp_to(relay), renderer=app.renderer)] == [
        "sent", "sent"]
    sent = rows(app)
    assert [r.raw for r in sent] == [r.data for r in relay.received]   # stored = sent
    ack = email.message_from_bytes(sent[0].raw, policy=email.policy.default)
    assert ack["Message-ID"] == queued[0].message_id                 # fixed at queue time
    assert f"[Ticket#{done.ticket_number}]" in str(ack["Subject"])
    assert "In-Reply-To" in ack and ack["In-Reply-To"] == "<r1@acme>"


def test_a_retry_sends_the_same_bytes_even_after_the_templates_changed(
        app: App, customer: None, relay: ScriptedRelay, tmp_path: Path) -> None:  # noqa: F811
    deliver(app, mail(message_id="<r2@acme>"))
    relay.data_replies = ["451 4.3.0 try again later"]                 # the ack's first try
    assert [d.status for d in drain(app.db, smtp_to(relay), renderer=app.renderer)] == [
        "queued", "sent"]
    stored = rows(app)[0].raw
    assert stored is not None                    # rendered and stored before it was sent

    (tmp_path / "ack.de.txt.j2").write_text("Ganz anderer Text\n")
    make_due(app)
    [retry] = drain(app.db, smtp_to(relay), renderer=override(app, tmp_path))
    assert retry.status == "sent"
    assert relay.received[-1].data == stored and b"Ganz anderer" not in stored


def test_a_template_broken_after_queueing_holds_the_mail_until_it_is_fixed(
        app: App, customer: None, relay: ScriptedRelay, tmp_path: Path) -> None:  # noqa: F811
    deliver(app, mail(message_id="<r3@acme>"))
    (tmp_path / "ack.de.html.j2").write_text("{{ undefined_value }}\n")
    broken = override(app, tmp_path)

    ack, notice = drain(app.db, smtp_to(relay), renderer=broken)
    assert (ack.status, notice.status) == ("queued", "sent")           # one bad mail only
    assert "could not be rendered" in ack.detail and "ack.de.html.j2" in ack.detail
    row = rows(app)[0]
    assert (row.status, row.raw, row.attempts) == ("queued", None, 1)
    assert [r.rcpt_tos for r in relay.received] == [["anna.agent@example.com"]]

    (tmp_path / "ack.de.html.j2").unlink()                             # the admin fixes it
    make_due(app)
    [fixed] = drain(app.db, smtp_to(relay), renderer=override(app, tmp_path))
    assert fixed.status == "sent"
    assert relay.received[-1].data == rows(app)[0].raw


def test_outbox_show_prints_an_unsent_mail_as_it_will_be_sent(
        app: App, customer: None, relay: ScriptedRelay) -> None:  # noqa: F811
    deliver(app, mail(message_id="<r4@acme>"))
    queued = rows(app)[0]
    before = message_bytes(queued, app.renderer)
    drain(app.db, smtp_to(relay), renderer=app.renderer)
    assert relay.received[0].data == before == rows(app)[0].raw


def test_a_mail_that_cannot_be_rendered_holds_back_no_other(
        app: App, customer: None, relay: ScriptedRelay) -> None:  # noqa: F811
    deliver(app, mail(message_id="<r5@acme>"))
    ack, notice = rows(app)
    with app.db.write() as session:                     # a recipe damaged in the database
        session.execute(update(_outbound).where(_outbound.c.id == ack.id)
                        .values(recipe='{"v":1,"event":'))

    class Buggy(MailRenderer):                          # and a bug for the other one
        def finish(self, recipe_text: str, message_id: str, **options: Any) -> bytes:
            if message_id == notice.message_id:
                raise KeyError("a bug")
            return super().finish(recipe_text, message_id, **options)

    results = drain(app.db, smtp_to(relay), renderer=Buggy(base_url=app.renderer.base_url))
    assert [(d.status, d.detail.split(":")[0]) for d in results] == [
        ("queued", "could not be rendered"), ("queued", "could not be rendered")]
    assert relay.received == [] and [r.raw for r in rows(app)] == [None, None]

    make_due(app)
    assert [d.status for d in drain(app.db, smtp_to(relay), renderer=app.renderer)] == [
        "queued", "sent"]                               # the damaged one waits for its deadline


def test_a_rendered_mail_keeps_its_bytes_in_place_of_its_recipe(
        app: App, customer: None, relay: ScriptedRelay) -> None:  # noqa: F811
    deliver(app, mail(message_id="<r6@acme>"))
    drain(app.db, smtp_to(relay), renderer=app.renderer)
    assert [(r.raw is not None, r.recipe) for r in rows(app)] == [(True, None), (True, None)]
