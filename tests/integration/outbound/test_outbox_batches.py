"""The outbox delivering in batches, on SQLite and PostgreSQL, with real Maildirs and a real
aiosmtpd relay: a Maildir batch is one directory fsync and one result transaction, with
file names that survive a resend; SMTP still records each mail before the next one."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, update

from gateway.app import App
from gateway.outbound.maildir import MaildirTransport
from gateway.outbound.outbox import (
    BATCH,
    Delivery,
    QueuedMail,
    drain,
    lease_due,
    lease_size,
    record_results,
)
from gateway.outbound.smtp import SmtpTransport
from gateway.outbound.transport import DeliveryResult, Envelope, Refusal
from gateway.store.db import Database
from gateway.store.models import OutboundMail, table_of, utcnow
from tests.integration.outbound.test_outbox import (
    CUSTOMER,
    ScriptedRelay,
    StaffTold,
    outgoing,
    put,
    rows,
    running_relay,
    smtp_to,
)

_outbound = table_of(OutboundMail)


@contextmanager
def counted(db: Database) -> Iterator[dict[str, int]]:
    """Transactions begun (autocommitted statements included) and UPDATE statements that
    set a result on `outbound_mail`, on every engine of `db`, while the block runs."""
    counts = {"transactions": 0, "result updates": 0}

    def begun(_connection: Any) -> None:
        counts["transactions"] += 1

    def executed(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE OUTBOUND_MAIL SET STATUS"):
            counts["result updates"] += 1

    engines = [db.engine, *([db._lazy_engine] if db._lazy_engine is not None else [])]
    for engine in engines:
        event.listen(engine, "begin", begun)
        event.listen(engine, "before_cursor_execute", executed)
    try:
        yield counts
    finally:
        for engine in engines:
            event.remove(engine, "begin", begun)
            event.remove(engine, "before_cursor_execute", executed)


def taken_over(app: App, database_url: str, mail: QueuedMail,
               result: DeliveryResult) -> Delivery:
    """Another instance (its own engine) takes `mail` over once our lease on it ran out,
    and records `result` for it; that delivery."""
    other = Database(database_url)
    try:
        with app.db.write() as session:           # our lease on it ran out
            session.execute(update(_outbound).where(_outbound.c.id == mail.id)
                            .values(next_attempt=utcnow() - timedelta(seconds=1)))
        [taken] = lease_due(other, mail_ids=[mail.id])
        [delivery] = record_results(other, [(taken, result)])
        return delivery
    finally:
        other.dispose()


def expected_name(row: Any) -> str:
    digest = hashlib.sha256(row.message_id.encode()).hexdigest()[:24]
    return f"ticketgw.{row.id}.{digest}"


# -- Maildir -----------------------------------------------------------------------------------

def test_a_maildir_batch_is_recorded_in_one_transaction_under_stable_names(
        app: App, tmp_path: Path) -> None:
    put(app, *(outgoing(n) for n in range(5)))
    target = tmp_path / "outbox"
    with counted(app.db) as counts:
        deliveries = drain(app.db, renderer=app.renderer, transport=MaildirTransport(target))
    assert [d.status for d in deliveries] == ["sent"] * 5
    # the lease and the results: two transactions (one lease and five results before)
    assert counts == {"transactions": 2, "result updates": 1}
    written = {p.name: p.read_bytes() for p in (target / "new").iterdir()}
    assert written == {expected_name(row): row.raw for row in rows(app)}
    assert all((row.status, row.attempts, row.lease_holder) == ("sent", 1, None)
               for row in rows(app))


def test_a_maildir_drain_leases_a_whole_batch_and_smtp_the_usual_twenty(
        app: App, tmp_path: Path) -> None:
    put(app, *(outgoing(n) for n in range(BATCH + 30)))
    maildir = MaildirTransport(tmp_path / "outbox")
    assert lease_size(maildir) == maildir.batch_size > BATCH
    with counted(app.db) as counts:
        deliveries = drain(app.db, renderer=app.renderer, transport=maildir)
    assert len(deliveries) == BATCH + 30 and counts["transactions"] == 2
    assert lease_size(SmtpTransport("127.0.0.1", 25)) == BATCH      # not connected


def test_a_batch_sent_again_before_its_results_were_recorded_leaves_one_file_per_mail(
        app: App, tmp_path: Path) -> None:
    """Sent but not recorded (a crash or an outage after the directory fsync): the rows
    are queued again with their lease run out, as a takeover finds them."""
    put(app, *(outgoing(n) for n in range(4)))
    target = tmp_path / "outbox"
    assert len(drain(app.db, renderer=app.renderer, transport=MaildirTransport(target))) == 4
    with app.db.write() as session:              # ... as if the results never were recorded
        session.execute(update(_outbound).values(
            status="queued", sent=None, lease_holder="dead-host:1",
            next_attempt=utcnow() - timedelta(seconds=1)))
    again = drain(app.db, renderer=app.renderer, transport=MaildirTransport(target))
    assert [d.status for d in again] == ["sent"] * 4
    names = sorted(p.name for p in (target / "new").iterdir())
    assert names == sorted(expected_name(row) for row in rows(app))     # 4 files, not 8
    assert [row.attempts for row in rows(app)] == [2] * 4
    assert list((target / "tmp").iterdir()) == []


def test_a_lost_lease_in_a_batch_is_not_recorded_over(
        app: App, database_url: str) -> None:
    """Another instance took the second mail over (and put it back for a retry) while this
    one was sending the batch: this one's results are recorded for the others in one
    transaction, the second keeps the newer lease's state."""
    put(app, outgoing(1), outgoing(2), outgoing(3, recipients=(CUSTOMER, "gone@acme.example")))
    first, second, third = lease_due(app.db)
    retry = taken_over(app, database_url, second, DeliveryResult("temporary", 451, "busy"))
    assert retry.status == "queued"
    before = {row.id: row for row in rows(app)}
    told = StaffTold()
    with counted(app.db) as counts:
        deliveries = record_results(app.db, [
            (first, DeliveryResult("sent", 250, "250 OK")),
            (second, DeliveryResult("permanent", 550, "550 too late")),
            (third, DeliveryResult("sent", 250, "250 OK", refused=())),
        ], on_failed=told)
    assert counts["transactions"] == 1
    assert [(d.mail_id, d.status) for d in deliveries] == [
        (first.id, "sent"), (second.id, "unrecorded"), (third.id, "sent")]
    after = {row.id: row for row in rows(app)}
    assert after[second.id] == before[second.id]          # the newer lease's, untouched
    assert (after[second.id].status, after[second.id].attempts) == ("queued", 2)
    assert told.calls == []
    assert after[first.id].status == after[third.id].status == "sent"


def test_mixed_results_of_a_batch_share_one_transaction(app: App) -> None:
    told = StaffTold()
    ids = put(app, outgoing(1), outgoing(2), outgoing(3),
              outgoing(4, recipients=(CUSTOMER, "gone@acme.example", "busy@acme.example")))
    leased = lease_due(app.db)
    assert [m.id for m in leased] == ids
    refused = DeliveryResult("sent", 250, "250 OK", (
        Refusal("gone@acme.example", "permanent", 550, "no such user"),
        Refusal("busy@acme.example", "temporary", 451, "mailbox busy")))
    with counted(app.db) as counts:
        deliveries = record_results(app.db, list(zip(leased, [
            DeliveryResult("sent", 250, "250 OK"),
            DeliveryResult("temporary", 451, "451 later"),
            DeliveryResult("permanent", 550, "550 no"),
            refused], strict=True)), on_failed=told)
    assert counts["transactions"] == 1
    statuses = [(d.mail_id, d.recipients, d.status) for d in deliveries]
    assert statuses[:4] == [(ids[0], (CUSTOMER,), "sent"), (ids[1], (CUSTOMER,), "queued"),
                            (ids[2], (CUSTOMER,), "failed"), (ids[3], (CUSTOMER,), "sent")]
    assert [(s[1], s[2]) for s in statuses[4:]] == [
        (("busy@acme.example",), "queued"), (("gone@acme.example",), "failed")]
    assert [i for i, _, _ in told.calls] == [ids[2], statuses[5][0]]
    by_id = {row.id: row for row in rows(app)}
    assert [by_id[i].status for i in ids] == ["sent", "queued", "failed", "sent"]
    assert by_id[ids[3]].recipients == [CUSTOMER]
    assert all(row.lease_holder is None for row in by_id.values())


# -- SMTP --------------------------------------------------------------------------------------

class RecordingRelay(ScriptedRelay):
    """Also notes, at each DATA, the client's connection and which outbox rows were sent
    in the database at that moment."""

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app
        self.peers: list[Any] = []
        self.sent_before: list[int] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.peers.append(session.peer)
        self.sent_before.append(sum(row.status == "sent" for row in rows(self.app)))
        return await super().handle_DATA(server, session, envelope)


def test_an_smtp_batch_uses_one_connection_records_each_mail_before_the_next_and_splits(
        app: App) -> None:
    with running_relay(RecordingRelay(app)) as relay:
        assert isinstance(relay, RecordingRelay)
        relay.rcpt_replies = {"gone@acme.example": "550 5.1.1 no such user"}
        ids = put(app, outgoing(1), outgoing(2, recipients=(CUSTOMER, "gone@acme.example")),
                  outgoing(3))
        deliveries = drain(app.db, renderer=app.renderer, transport=smtp_to(relay))
    assert [(d.mail_id, d.recipients, d.status) for d in deliveries[:3]] == [
        (ids[0], (CUSTOMER,), "sent"), (ids[1], (CUSTOMER,), "sent"),
        (deliveries[2].mail_id, ("gone@acme.example",), "failed")]
    assert [(d.mail_id, d.status) for d in deliveries[3:]] == [(ids[2], "sent")]
    assert len(set(relay.peers)) == 1                   # one connection for the batch
    # each mail's result was committed before the next mail's DATA: a crash repeats at
    # most the mail in flight
    assert relay.sent_before == [0, 1, 2]
    assert [r.rcpt_tos for r in relay.received] == [[CUSTOMER], [CUSTOMER], [CUSTOMER]]
    by_id = {row.id: row for row in rows(app)}
    assert by_id[ids[1]].recipients == [CUSTOMER] and by_id[ids[1]].status == "sent"


def test_envelope_keys_are_stable_and_distinct() -> None:
    """The key a Maildir file is named after: the row id and the Message-ID's digest."""
    from gateway.outbound.outbox import _envelope
    from gateway.outbound.outbox_record import QueuedMail

    now = utcnow()

    def queued(mail_id: int, message_id: str, attempts: int) -> QueuedMail:
        return QueuedMail(mail_id, "ack", "a@example.com", ("b@example.com",), message_id,
                          b"x", None, attempts, now, now)

    first = _envelope(queued(7, "<a@example.com>", 1))
    assert isinstance(first, Envelope)
    assert first.key == _envelope(queued(7, "<a@example.com>", 3)).key       # any attempt
    assert first.key != _envelope(queued(7, "<b@example.com>", 1)).key       # another db
    assert first.key != _envelope(queued(8, "<a@example.com>", 1)).key       # a split row
    assert first.key.startswith("ticketgw.7.") and "/" not in first.key


def test_an_all_sent_batch_with_a_lost_lease_leaves_the_newer_result(
        app: App, database_url: str) -> None:
    """The newer lease failed the second mail meanwhile: this batch's "sent" for it is not
    recorded over that (the row is no longer queued); the others are marked sent."""
    put(app, outgoing(1), outgoing(2), outgoing(3))
    first, second, third = lease_due(app.db)
    failed = taken_over(app, database_url, second, DeliveryResult("permanent", 550, "no"))
    assert failed.status == "failed"
    sent = DeliveryResult("sent", 250, "250 OK")
    deliveries = record_results(app.db, [(first, sent), (second, sent), (third, sent)])
    assert [(d.mail_id, d.status) for d in deliveries] == [
        (first.id, "sent"), (second.id, "unrecorded"), (third.id, "sent")]
    by_id = {row.id: row for row in rows(app)}
    assert [by_id[m.id].status for m in (first, second, third)] == ["sent", "failed", "sent"]
    assert by_id[second.id].attempts == 2
