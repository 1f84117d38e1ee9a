"""The inbound worker when processing a mail fails (a bug, a broken row): that mail's
changes roll back alone, the failure is counted and shown, the rest of the batch and of the
queue moves on, and after three failures the mail is quarantined, from where it can be
retried."""

from __future__ import annotations

import fcntl
import os
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from gateway.app import App
from gateway.inbound import worker
from gateway.inbound.intake import Envelope, Incoming, accept_many
from gateway.inbound.worker import MAX_ATTEMPTS, process_due
from gateway.store.models import ReceivedMail, Ticket, table_of, utcnow
from gateway.tickets.queries import ticket_detail
from tests.integration.smtp_helpers import customer_mail

_received = table_of(ReceivedMail)
_ticket = table_of(Ticket)


def store(app: App, *subjects: str) -> list[int]:
    return accept_many(app.db, [
        Incoming(bytes(customer_mail(subject, message_id=f"<{subject}@acme>")),
                 Envelope("smtp", "max@acme.example", ("incident@support.example.com",)))
        for subject in subjects], blobs=app.blobs)


def row(app: App, mail_id: int) -> Any:
    with app.db.read() as session:
        return session.execute(select(_received).where(_received.c.id == mail_id)).one()


def tickets(app: App) -> list[str]:
    with app.db.read() as session:
        return sorted(session.execute(select(_ticket.c.title)).scalars())


def make_due(app: App, mail_id: int) -> None:
    """Skip the pause before the next attempt (30 s, then 5 min)."""
    with app.db.write() as session:
        session.execute(update(_received).where(_received.c.id == mail_id)
                        .values(next_attempt=utcnow()))


@pytest.fixture
def bug(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """A bug that strikes mail with "boom" in its subject *after* its ticket was made."""
    real = worker.route_and_apply
    armed = {"on": True}

    def buggy(session: Any, app: App, understood: Any, mail_id: int | None) -> Any:
        outcome = real(session, app, understood, mail_id)
        if armed["on"] and "boom" in understood.parsed.subject:
            raise RuntimeError("boom: a bug after the ticket was written")
        return outcome

    monkeypatch.setattr(worker, "route_and_apply", buggy)
    return armed


def test_a_failing_mail_rolls_back_alone_and_is_quarantined_after_three_attempts(
        app: App, customer: None, bug: dict[str, bool], run_cli: Any) -> None:
    first, failing, last = store(app, "Drucker", "boom Scanner", "Monitor")
    results = {r.mail_id: r for r in process_due(app.db, app.stages)}
    assert results[first].outcome == results[last].outcome == "created"
    assert results[failing].outcome == "pending"
    assert "boom: a bug after the ticket was written" in results[failing].reason
    assert tickets(app) == ["Drucker", "Monitor"]          # its ticket was rolled back
    failed = row(app, failing)
    assert (failed.status, failed.attempts) == ("pending", 1)
    assert "RuntimeError: boom" in failed.last_error
    assert failed.next_attempt > utcnow()                  # retried after a pause

    for attempt in range(2, MAX_ATTEMPTS + 1):
        make_due(app, failing)
        [again] = process_due(app.db, app.stages)
        assert row(app, failing).attempts == attempt
    assert again.outcome == "quarantined"
    quarantined = row(app, failing)
    assert quarantined.status == "quarantined"
    assert quarantined.reason.startswith(f"failed {MAX_ATTEMPTS} times; last error: "
                                         "RuntimeError: boom")
    assert process_due(app.db, app.stages) == []                          # the queue is not blocked
    assert tickets(app) == ["Drucker", "Monitor"]

    bug["on"] = False                                      # the bug is fixed: retry it
    with app.db.write() as session:
        session.execute(update(_received).where(_received.c.id == failing)
                        .values(status="pending", attempts=0, next_attempt=utcnow()))
    [fixed] = process_due(app.db, app.stages)
    assert fixed.outcome == "created"
    assert tickets(app) == ["Drucker", "Monitor", "boom Scanner"]


def test_a_batch_with_a_failing_mail_keeps_every_other_mails_work(
        app: App, customer: None, bug: dict[str, bool]) -> None:
    subjects = [f"Anliegen {i}" for i in range(8)]
    subjects[3] = "boom 3"
    subjects[7] = "boom 7"
    ids = store(app, *subjects)
    results = {r.mail_id: r.outcome for r in process_due(app.db, app.stages)}
    assert [results[i] for i in ids] == ["created"] * 3 + ["pending"] + ["created"] * 3 + [
        "pending"]
    assert tickets(app) == sorted(s for s in subjects if not s.startswith("boom"))


def test_a_mail_delivered_twice_is_one_ticket_in_one_batch_or_in_two(
        app: App, customer: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker asks once per transaction which Message-IDs are articles already: a copy
    in the same transaction (its article added by it) and a copy in a later one are both
    duplicates; a mail with the same Message-ID but other text is not."""
    monkeypatch.setattr(worker, "TRANSACTION_BUDGET", {"sqlite": 60.0, "postgresql": 60.0})
    first, copy = store(app, "Drucker", "Drucker")
    results = {r.mail_id: r for r in process_due(app.db, app.stages)}
    assert (results[first].outcome, results[copy].outcome) == ("created", "ignored")
    assert results[copy].rule == "duplicate"
    [later] = store(app, "Drucker")
    [again] = process_due(app.db, app.stages)
    assert (again.mail_id, again.outcome, again.rule) == (later, "ignored", "duplicate")
    other = accept_many(app.db, [Incoming(
        bytes(customer_mail("Drucker", message_id="<Drucker@acme>", body="Jetzt der Scanner.")),
        Envelope("smtp", "max@acme.example", ("incident@support.example.com",)))],
        blobs=app.blobs)
    [changed] = process_due(app.db, app.stages)
    assert changed.mail_id == other[0]
    assert changed.outcome != "ignored", changed


def test_a_mail_whose_lease_was_taken_over_meanwhile_is_left_to_the_new_holder(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's heartbeat could not reach the database and another instance leased the
    mail again while it was parsed: the first worker records nothing, the second makes the
    one ticket."""
    from gateway.store.leases import LEASE

    [mail_id] = store(app, "Slow parse")
    assert worker.lease_batch(app.db) == [mail_id]
    understand = worker._understand

    def taken_over_meanwhile(stages: Any, stored: Any, token: int) -> Any:
        assert worker.lease_batch(app.db, now=utcnow() + LEASE) == [mail_id]
        return understand(stages, stored, token)

    monkeypatch.setattr(worker, "_understand", taken_over_meanwhile)
    [late] = worker.process_batch(app.db, app.stages, [mail_id])
    monkeypatch.undo()
    assert (late.outcome, late.reason) == ("pending", "lease lost")
    assert (row(app, mail_id).status, row(app, mail_id).attempts) == ("pending", 2)
    assert tickets(app) == []
    [done] = worker.process_batch(app.db, app.stages, [mail_id])   # the new holder
    assert done.outcome == "created" and tickets(app) == ["Slow parse"]
    assert row(app, mail_id).lease_holder is None


def test_a_slow_mail_keeps_its_lease_by_heartbeat(
        app: App, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lease shortened to 1 s and a mail that takes 3 s to understand (a 50 MB mail, say):
    the heartbeat keeps another instance from leasing it meanwhile."""
    import threading
    import time

    import gateway.inbound.leasing as leasing
    import gateway.store.leases as leases
    from gateway.store.db import Database

    monkeypatch.setattr(leasing, "LEASE", timedelta(seconds=1))
    monkeypatch.setattr(leases, "LEASE", timedelta(seconds=1))
    monkeypatch.setattr(leases, "HEARTBEAT", timedelta(milliseconds=200))
    understand = worker._understand

    def slowly(stages: Any, stored: Any, token: int) -> Any:
        time.sleep(3)
        return understand(stages, stored, token)

    monkeypatch.setattr(worker, "_understand", slowly)
    [mail_id] = store(app, "Huge mail")
    assert worker.lease_batch(app.db) == [mail_id]
    results: list[Any] = []
    working = threading.Thread(
        target=lambda: results.extend(worker.process_batch(app.db, app.stages, [mail_id])))
    working.start()
    other = Database(database_url)                 # another instance, trying all the while
    taken: list[int] = []
    try:
        while working.is_alive():
            taken += worker.lease_batch(other)
            time.sleep(0.1)
    finally:
        other.dispose()
        working.join(30)
    assert taken == []
    assert [r.outcome for r in results] == ["created"] and tickets(app) == ["Huge mail"]


def test_attachments_go_into_the_blob_store_before_the_write_transaction(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing and fsyncing an attachment must not hold the write transaction (on SQLite the
    write turn, while received mail waits for its 250): the worker stores it first."""
    events: list[str] = []
    real_put, real_apply = app.blobs.put, worker.route_and_apply

    def put(data: Any) -> Any:
        turn_free = True
        if app.db.turns is not None:             # SQLite: may another writer start now?
            fd = os.open(app.db.turns.turn_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                turn_free = False
            finally:
                os.close(fd)
        events.append("put" if turn_free else "put while holding the write turn")
        return real_put(data)

    def apply(*args: Any) -> Any:
        events.append("apply")
        return real_apply(*args)

    message = customer_mail("Drucker mit Anhang", message_id="<attached@acme>")
    message.add_attachment(os.urandom(300_000), maintype="application", subtype="pdf",
                           filename="scan.pdf")
    accept_many(app.db, [Incoming(bytes(message), Envelope(
        "smtp", "max@acme.example", ("incident@support.example.com",)))], blobs=app.blobs)
    monkeypatch.setattr(app.blobs, "put", put)
    monkeypatch.setattr(worker, "route_and_apply", apply)
    [done] = process_due(app.db, app.stages)
    assert done.outcome == "created"
    assert events == ["put", "apply"]
    with app.db.read() as session:
        [article] = ticket_detail(session, str(done.ticket_number))["articles"]
    [attachment] = article["attachments"]
    assert (attachment["filename"], attachment["size"]) == ("scan.pdf", 300_000)
