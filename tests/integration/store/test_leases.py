"""Leases (`store/leases.py`) and their heartbeat (`store/heartbeat.py`) on SQLite and
PostgreSQL: a renewed lease keeps other instances away, an expired one is taken over with a
log line and a count, a heartbeat never revives a lease somebody else holds now and never
raises when the database is gone, and the operator can list and release leases.

Time is given: the lease functions and the heartbeat take `now` / a clock."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gateway.app import App
from gateway.outbound.mail import OutgoingMail
from gateway.outbound.outbox import enqueue, lease_due, release
from gateway.store.db import Database
from gateway.store.heartbeat import Heartbeat
from gateway.store.leases import LEASE, held_leases, holder_id, release_leases
from gateway.store.models import OutboundMail, table_of, utcnow

_outbound = table_of(OutboundMail)


def queued(app: App, count: int = 1) -> list[int]:
    with app.db.write() as session:
        return [enqueue(session, OutgoingMail(
            event="ack", envelope_from="support@support.example.com",
            recipients=("max@acme.example",), message_id=f"<lease.{n}@support.example.com>",
            raw=b"Subject: x\r\n\r\nx\r\n", ticket_id=None)) for n in range(count)]


def row(app: App, mail_id: int) -> Any:
    with app.db.read() as session:
        return session.execute(select(_outbound).where(_outbound.c.id == mail_id)).one()


class Takeovers(list[tuple[str, int, str]]):
    """The `on_takeover` hook a metrics counter would be: remembers each call."""

    def __call__(self, queue: str, mail_id: int, holder: str) -> None:
        self.append((queue, mail_id, holder))


def test_a_lease_names_its_holder_and_the_heartbeat_keeps_it(app: App) -> None:
    [mail_id] = queued(app)
    start = utcnow()
    [mail] = lease_due(app.db, now=start)
    leased = row(app, mail_id)
    assert leased.lease_holder == holder_id() and leased.next_attempt == start + LEASE
    later = start + timedelta(minutes=10)         # a slow relay: far past the first lease
    beat = Heartbeat(app.db, "outbound", {mail.id: mail.attempts}, clock=lambda: later)
    assert beat.beat() == {mail_id}
    assert row(app, mail_id).next_attempt == later + LEASE
    takeovers = Takeovers()
    assert lease_due(app.db, now=later + LEASE - timedelta(seconds=1),
                     on_takeover=takeovers) == []                  # still held
    assert takeovers == []


def test_an_expired_lease_is_taken_over_logged_and_counted_and_the_old_one_is_not_renewed(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    first, second = queued(app, 2)
    start = utcnow()
    old = lease_due(app.db, now=start)
    assert [m.id for m in old] == [first, second]
    takeovers = Takeovers()
    with caplog.at_level(logging.WARNING, logger="gateway.store.leases"):
        new = lease_due(app.db, now=start + LEASE, on_takeover=takeovers)
    assert [m.attempts for m in new] == [2, 2]
    assert takeovers == [("outbound", first, holder_id()), ("outbound", second, holder_id())]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"outbound {first}: taking over the lease of {holder_id()}")
    # the old holder's heartbeat (its token is the old attempt count) revives nothing
    beat = Heartbeat(app.db, "outbound", {m.id: m.attempts for m in old},
                     clock=lambda: start + timedelta(hours=1))
    assert beat.beat() == set() and beat.lost == {first, second}
    assert row(app, first).next_attempt == start + 2 * LEASE


def test_a_lease_that_ended_with_a_result_is_no_takeover(app: App) -> None:
    [mail_id] = queued(app)
    start = utcnow()
    [mail] = lease_due(app.db, now=start)
    release(app.db, [mail])                        # handed back unsent: a result of sorts
    assert row(app, mail_id).lease_holder is None
    takeovers = Takeovers()
    assert len(lease_due(app.db, now=start + LEASE, on_takeover=takeovers)) == 1
    assert takeovers == []


def test_a_heartbeat_without_a_database_logs_and_goes_on(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    gone = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    try:
        beat = Heartbeat(gone, "inbound", {1: 1})
        with caplog.at_level(logging.WARNING, logger="gateway.store.heartbeat"):
            assert beat.beat() == set()
        assert beat.failures == 1 and beat.lost == set()
        assert "could not renew the leases of 1 rows" in caplog.text
    finally:
        gone.dispose()


def test_the_heartbeat_thread_renews_until_the_block_ends(app: App) -> None:
    [mail_id] = queued(app)
    [mail] = lease_due(app.db)
    first = row(app, mail_id).next_attempt
    with Heartbeat(app.db, "outbound", {mail.id: mail.attempts},
                   every=timedelta(milliseconds=50)) as beat:
        deadline = utcnow() + timedelta(seconds=30)
        while row(app, mail_id).next_attempt == first and utcnow() < deadline:
            time.sleep(0.02)
        assert not beat.is_lost(mail_id)
    renewed = row(app, mail_id).next_attempt
    assert renewed > first
    assert row(app, mail_id).next_attempt == renewed  # stopped with the block


def test_leases_are_listed_and_stale_ones_released(app: App) -> None:
    held, stale = queued(app, 2)
    start = utcnow()
    lease_due(app.db, now=start - LEASE - timedelta(seconds=5), mail_ids=[stale])
    lease_due(app.db, now=start, mail_ids=[held])
    with app.db.read() as session:
        listed = held_leases(session, start)
        only_stale = held_leases(session, start, stale_only=True)
    assert [(lease.id, lease.stale, lease.holder) for lease in listed] == [
        (stale, True, holder_id()), (held, False, holder_id())]
    assert [lease.id for lease in only_stale] == [stale]
    with app.db.write() as session:
        assert release_leases(session, "outbound", [stale, 9999], start) == [stale]
    assert (row(app, stale).lease_holder, row(app, stale).next_attempt) == (None, start)
    assert row(app, stale).attempts == 1           # the attempt stays counted
    assert [m.id for m in lease_due(app.db, now=start)] == [stale]


@pytest.mark.backends("postgresql")     # SQLite has one writer: nothing to skip there
def test_a_row_locked_by_its_work_is_skipped_by_the_heartbeat_not_lost(app: App) -> None:
    """The worker's transaction that records results locks the rows; the heartbeat must not
    wait for it (two transactions locking many rows in different order can deadlock)."""
    [mail_id] = queued(app)
    [mail] = lease_due(app.db)
    beat = Heartbeat(app.db, "outbound", {mail.id: mail.attempts})
    with app.db.write() as session:
        session.execute(select(_outbound.c.id).where(_outbound.c.id == mail_id)
                        .with_for_update())
        assert beat.beat() == set() and beat.lost == set()
    assert beat.beat() == {mail_id}


def test_consecutive_blocks_share_one_heartbeat_thread_and_a_quick_one_renews_nothing(
        app: App) -> None:
    """A batch that ends before its first beat costs no renewal, and the next batch's block
    is renewed by the same thread (not one started and joined per batch)."""
    first_id, second_id = queued(app, 2)
    [first] = lease_due(app.db, mail_ids=[first_id])
    [second] = lease_due(app.db, mail_ids=[second_id])
    first_until, second_until = row(app, first_id).next_attempt, row(app, second_id).next_attempt
    every = timedelta(milliseconds=200)
    before = set(threading.enumerate())

    def beaters() -> list[threading.Thread]:
        return [t for t in threading.enumerate()
                if t.name == "ticketgw-heartbeat" and t not in before]

    with Heartbeat(app.db, "outbound", {first.id: first.attempts}, every=every):
        [thread] = beaters()
    assert row(app, first_id).next_attempt == first_until        # over before its beat
    with Heartbeat(app.db, "outbound", {second.id: second.attempts}, every=every):
        assert beaters() == [thread]
        deadline = utcnow() + timedelta(seconds=30)
        while row(app, second_id).next_attempt == second_until and utcnow() < deadline:
            time.sleep(0.02)
    assert row(app, second_id).next_attempt > second_until
    assert row(app, first_id).next_attempt == first_until        # left, never renewed
    thread.join(30)                                              # idle: it ends
    assert not thread.is_alive()
