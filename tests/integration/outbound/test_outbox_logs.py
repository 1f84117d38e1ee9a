"""What the outbox logs for trouble it expects: a relay's 4xx, a relay that refuses the
connection and a database that is gone are WARNING lines without a traceback; a mail
delivered is not a line at INFO."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from gateway.app import App
from gateway.outbound.outbox import drain, run_outbox
from gateway.outbound.smtp import SmtpTransport
from gateway.store.db import Database
from tests.integration.outbound.test_outbox import (
    ScriptedRelay,
    outgoing,
    put,
    running_relay,
    smtp_to,
)
from tests.serve_helpers import free_port


@pytest.fixture
def relay() -> Iterator[ScriptedRelay]:
    with running_relay(ScriptedRelay()) as running:
        yield running


def _until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_4xx_is_one_warning_and_a_delivery_is_quiet_at_info(
        app: App, relay: ScriptedRelay, caplog: pytest.LogCaptureFixture) -> None:
    relay.data_replies = ["451 4.3.0 try again later"]
    put(app, outgoing(1), outgoing(2))
    with caplog.at_level(logging.INFO, logger="gateway"):
        deliveries = drain(app.db, renderer=app.renderer, transport=smtp_to(relay))
    assert [d.status for d in deliveries] == ["queued", "sent"]
    assert [(r.levelname, "451" in r.getMessage()) for r in caplog.records] == [
        ("WARNING", True)]
    assert not [r for r in caplog.records if r.exc_info]


def test_a_relay_refusing_the_connection_is_a_warning_without_traceback(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    put(app, outgoing(1))
    with caplog.at_level(logging.INFO, logger="gateway"):
        [delivery] = drain(app.db, renderer=app.renderer,
                           transport=SmtpTransport("127.0.0.1", free_port(), starttls=False,
                                                 timeout=5))
    assert delivery.status == "queued"
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "cannot connect" in caplog.records[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]


def test_a_database_that_is_gone_is_one_warning_without_traceback(
        app: App, relay: ScriptedRelay, caplog: pytest.LogCaptureFixture) -> None:
    gone = Database(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone")
    stop, wake = threading.Event(), threading.Event()
    thread = threading.Thread(target=run_outbox, args=(gone, stop, smtp_to(relay)),
                              kwargs={"idle_poll": 0.01, "renderer": app.renderer})
    with caplog.at_level(logging.DEBUG, logger="gateway"):
        thread.start()
        try:
            _until(lambda: sum("still failing" in r.getMessage()
                               for r in caplog.records) >= 3)
        finally:
            stop.set()
            wake.set()
            thread.join(30)
    serious = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(":")[0:2] for r in serious] == [
        ["outbox", " the database"]]
    assert not [r for r in caplog.records if r.exc_info]
    gone.dispose()
