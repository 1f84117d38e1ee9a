"""Queued mail goes out at once, not at the outbox's next look: a transaction that queued
mail rings the outbox after its commit, in `serve`'s own process (portal, jobs) and from the
worker process. The outbox here looks for due mail only every 60 s on its own, so an answer
that arrives within the test's 20 s was rung for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.app import App
from gateway.child_processes import OutboxComponent, WorkerComponent
from gateway.inbound.intake import Envelope, Incoming, accept_many
from gateway.outbound.outbox import enqueue
from tests.integration.outbound.test_outbox import outgoing, put

RUNG_WITHIN = 20.0     # far below SlowPollingOutbox.IDLE_POLL: a hang guard, not a timing


class SlowPollingOutbox(OutboxComponent):
    IDLE_POLL = 60.0


def _outbox_files(app: App) -> list[Path]:
    new = app.settings.path("var/outbox") / "new"
    return sorted(new.iterdir()) if new.exists() else []


async def _until(condition: Callable[[], bool], timeout: float = RUNG_WITHIN) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return False


def test_the_hook_runs_after_a_commit_that_queued_mail_only(app: App) -> None:
    calls: list[str] = []
    app.db.on_mail_queued = lambda: calls.append("rung")
    with app.db.write() as session:          # nothing queued: no ring
        session.info["unrelated"] = True
    assert calls == []
    with app.db.write() as session:
        enqueue(session, outgoing(1))
        assert calls == []                   # not before the commit
    assert calls == ["rung"]
    with pytest.raises(RuntimeError), app.db.write() as session:
        enqueue(session, outgoing(2))
        raise RuntimeError("rolled back")
    assert calls == ["rung"]                 # a rolled-back queueing rings nobody


def test_mail_queued_in_serve_goes_out_without_waiting_for_the_poll(app: App) -> None:
    async def scenario() -> None:
        outbox = SlowPollingOutbox(app)
        await outbox.start()
        try:
            await asyncio.sleep(0.3)            # asleep on its bell now
            put(app, outgoing(1))               # e.g. the portal's password mail
            assert await _until(lambda: len(_outbox_files(app)) == 1)
        finally:
            await outbox.stop()

    asyncio.run(scenario())


def test_answers_the_worker_queues_go_out_without_waiting_for_the_poll(app: App) -> None:
    async def scenario() -> None:
        outbox = SlowPollingOutbox(app)
        worker = WorkerComponent(app, outbox.ringer)
        await outbox.start()
        await worker.start()
        try:
            await asyncio.sleep(0.3)
            envelope = Envelope(source="ingest", mail_from="max@acme.example",
                                rcpt_to=("incident@support.example.com",))
            accept_many(app.db, [Incoming(b"From: max@acme.example\r\nSubject: Drucker\r\n"
                                          b"Message-ID: <wake.1@acme.example>\r\n\r\n"
                                          b"Der Drucker druckt nicht.\r\n", envelope)],
                        blobs=app.blobs)
            worker.wake()
            # the staff notice (and an acknowledgment, were Max a customer) from the worker
            assert await _until(lambda: len(_outbox_files(app)) >= 1), \
                "the worker's answers waited for the outbox's own poll"
        finally:
            await worker.stop()
            await outbox.stop()

    asyncio.run(scenario())
