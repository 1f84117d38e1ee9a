"""What the inbound worker tells the operator when things go wrong: a database that is gone
is one WARNING line without a traceback (however long it stays gone), and a worker process
that dies of an exception leaves that exception, with its traceback, in the log before the
parent reports its exit."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.app import App
from gateway.child_processes import WorkerComponent
from gateway.config.settings import DkimSettings
from gateway.inbound.worker import run_worker
from gateway.store.db import Database
from tests.serve_helpers import free_port


def _until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_database_that_is_gone_is_one_warning_without_traceback(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    gone = Database(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone")
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, args=(gone, app.stages, stop),
                              kwargs={"idle_poll": 0.01})
    with caplog.at_level(logging.DEBUG, logger="gateway"):
        thread.start()
        try:
            _until(lambda: sum("still failing" in r.getMessage()
                               for r in caplog.records) >= 3)
        finally:
            stop.set()
            thread.join(30)
    worker_lines = [r for r in caplog.records if r.name == "gateway.inbound.worker"
                    and r.levelno >= logging.WARNING]
    assert len(worker_lines) == 1, [r.getMessage() for r in worker_lines]
    [warning] = worker_lines
    assert warning.levelname == "WARNING"
    assert warning.getMessage().startswith("inbound worker: the database: database "
                                           "unavailable")
    assert not [r for r in caplog.records if r.exc_info]
    gone.dispose()


class QuickWorker(WorkerComponent):
    CHECK_EVERY = 0.05
    FIRST_PAUSE = 30.0            # no restart during the test


def test_a_worker_that_dies_of_an_exception_logs_it(
        app: App, tmp_path: Path, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """A DKIM key file that is missing: the worker process cannot build its renderer. Its
    traceback reaches stderr (the spawned process shares the test's), through our log
    handler, and the parent names the exit code."""
    broken = app.settings.model_copy(update={"outbound": app.settings.outbound.model_copy(
        update={"dkim": [DkimSettings(domain="support.example.com", selector="s1",
                                      key_path=str(tmp_path / "missing.pem"))]})})
    worker = QuickWorker(dataclasses.replace(app, settings=broken))

    async def scenario() -> None:
        await worker.start()
        try:
            deadline = time.monotonic() + 60
            while not worker.restarts and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await worker.stop()

    with caplog.at_level(logging.INFO, logger="gateway.child_processes"):
        asyncio.run(scenario())
    assert worker.process is not None and worker.process.exitcode == 1
    stderr = capfd.readouterr().err
    assert "ERROR gateway.child_processes: the worker process ends on this error" in stderr
    assert "Traceback (most recent call last)" in stderr
    assert "missing.pem" in stderr
    assert [r.getMessage() for r in caplog.records if "died" in r.getMessage()] == [
        "worker process died (exit code 1); starting it again in 30 s"]
