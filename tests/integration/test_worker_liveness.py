"""The worker component's liveness, as /healthz sees it: dead, running again, crash-looping.
A real spawned worker process, killed with SIGKILL; only the supervisor's pauses are short."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway.app import App
from gateway.service import WorkerComponent


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
