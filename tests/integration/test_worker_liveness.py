"""The worker component's liveness, as /healthz sees it: dead, running again, crash-looping.
A real spawned worker process, killed with SIGKILL; only the supervisor's pauses are short.
And the other way round: a worker whose `serve` is killed ends with it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.app import App
from gateway.child_processes import WorkerComponent
from tests.integration.inbound.test_lifeline import gone, seconds_until_gone
from tests.serve_helpers import free_port, only_worker, serve_config, serving


class QuickWorker(WorkerComponent):
    CHECK_EVERY = 0.05
    FIRST_PAUSE = 0.05


async def _until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert condition(), "timed out"


def test_a_worker_that_keeps_dying_is_reported_as_crash_looping(app: App) -> None:
    async def scenario() -> None:
        worker = QuickWorker(app)
        await worker.start()
        try:
            assert worker.problem() is None
            for death in range(1, QuickWorker.CRASH_LOOP_DEATHS + 1):
                process = worker.process
                assert process is not None
                process.kill()
                await _until(lambda p=process: not p.is_alive())
                if worker.process is process:          # not restarted yet
                    assert worker.problem() == (
                        "the worker process is not running (killed by SIGKILL)")
                await _until(lambda p=process: worker.process is not p
                             and worker.process is not None and worker.process.is_alive())
                if death < QuickWorker.CRASH_LOOP_DEATHS:
                    assert worker.problem() is None, death
            assert worker.problem() == ("the worker process is crash-looping: it died 3 "
                                        "times in 300 s")
        finally:
            await worker.stop()
        assert worker.problem() is None                # stopped on purpose

    asyncio.run(scenario())


@pytest.mark.backends("sqlite")     # the processes are the same on PostgreSQL
def test_the_worker_of_a_killed_serve_ends_within_seconds(database_url: str,
                                                          tmp_path: Path) -> None:
    """`kill -9` of `serve`: its worker process must not go on working unsupervised (the
    issue allows 2 s; the test polls 10 s and prints the time measured)."""
    port = free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, web_port=port)
    with serving(["--config", str(config), "serve"], tmp_path,
                 f"http://127.0.0.1:{port}/healthz") as process:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        worker = only_worker(process.pid)   # started before the web view answers
        process.kill()
        process.communicate(timeout=30)
        took = seconds_until_gone(worker)
        print(f"the worker was gone {took:.2f} s after serve's SIGKILL")
        assert gone(worker), "the worker still runs 10 s after serve was killed"

