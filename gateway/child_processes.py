"""The two child processes of `ticketgw serve`: the inbound worker and the outbox sender.

Each runs in a spawned process of its own, so that parsing, ticket work and delivery use the
other cores and never take the GIL from the SMTP listener's event loop (measured with the
outbox as a thread of `serve`: the listener spent 2.4 ms CPU per mail, 0.9 ms without it;
bench/README.md, inbound).

Guarantees, for both:
- **Supervised.** A child that dies is started again after a pause that doubles with each
  death (2 s, 4 s … 60 s); three deaths within 5 minutes is reported as crash-looping
  (`problem()`, which /healthz shows). Its leased rows become due again when their lease
  ends, so nothing is lost with it.
- **Woken, never blocking.** Each sleeps on a doorbell (`inbound/doorbell.py`) when idle:
  the worker is rung when mail was stored, the outbox after every transaction that queued
  mail (in `serve` and in the worker: `Database.on_mail_queued`). Ringing never blocks, even
  when the child is dead. Without a ring each looks again every second.
- **Ends with `serve`**, busy or idle (`inbound/lifeline.py`), and on SIGTERM after the batch
  in hand; `stop()` waits 30 s for that, then kills it.
- **Its metrics reach `serve`'s /metrics** through a pipe, every 0.5 s (a child killed with
  SIGKILL loses at most that much); an exception that ends it is logged with its traceback.
- **Named** `ticketgw-worker` / `ticketgw-outbox` (`/proc/PID/comm`, what `ps -o comm` and
  `top` show) on Linux.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.process
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from gateway.app import App
from gateway.config.settings import Settings
from gateway.inbound.doorbell import Bell, Ringer, doorbell
from gateway.observe import metrics
from gateway.observe.logs import configure_logging
from gateway.observe.metrics import forward_observations, receive_observations

log = logging.getLogger(__name__)
PR_SET_NAME = 15           # prctl(2): the process's name (at most 15 bytes)


class ChildProcess:
    """A supervised child process that sleeps on a doorbell (`wake`) when idle; see the
    module's guarantees. Subclasses name it and give its entry point and arguments."""

    name = ""
    CHECK_EVERY = 1.0
    FIRST_PAUSE = 2.0              # before the first restart; doubled per restart, at most 60 s
    CRASH_LOOP_DEATHS = 3          # this many deaths within CRASH_LOOP_WINDOW: crash-looping
    CRASH_LOOP_WINDOW = 300.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.ringer, self.bell = doorbell(self.context)
        self.process: multiprocessing.process.BaseProcess | None = None
        self.supervisor: asyncio.Task[None] | None = None
        self.stopping = False
        self.restarts = 0
        self.deaths: list[float] = []      # monotonic times the supervisor found it dead

    def entry(self) -> tuple[Callable[..., None], tuple[Any, ...]]:
        """The child's main function and its arguments after (settings, observations,
        log level)."""
        raise NotImplementedError

    def wake(self) -> None:
        self.ringer.ring()

    def _spawn(self) -> None:
        # a pipe per process: what it counts reaches this process's /metrics, and a killed
        # child cannot leave a shared queue locked for the next one
        receiver, sender = self.context.Pipe(duplex=False)
        target, extra = self.entry()
        self.process = self.context.Process(
            target=target, name=f"ticketgw-{self.name}", daemon=True,
            args=(self.settings, sender, logging.getLogger().getEffectiveLevel(), *extra))
        self.process.start()
        sender.close()          # the child's end: closed here, so its exit is our EOF
        threading.Thread(target=receive_observations, args=(receiver,), daemon=True,
                         name=f"ticketgw-{self.name}-metrics").start()

    async def start(self) -> None:
        self._spawn()
        self.supervisor = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.CHECK_EVERY)
            if self.stopping or self.process is None or self.process.is_alive():
                continue
            self.restarts += 1
            self.deaths = [*self.deaths[-self.CRASH_LOOP_DEATHS:], time.monotonic()]
            pause = min(60.0, self.FIRST_PAUSE * 2.0 ** (min(self.restarts, 6) - 1))
            log.error("%s process died (%s); starting it again in %.0f s",
                      self.name, exit_reason(self.process.exitcode), pause)
            await asyncio.sleep(pause)
            if not self.stopping:
                self._spawn()

    def problem(self) -> str | None:
        """None while the child runs (and is not crash-looping), else why not (/healthz)."""
        if self.stopping or self.process is None:
            return None
        if not self.process.is_alive():
            return (f"the {self.name} process is not running "
                    f"({exit_reason(self.process.exitcode)})")
        recent = [t for t in self.deaths if time.monotonic() - t < self.CRASH_LOOP_WINDOW]
        if len(recent) >= self.CRASH_LOOP_DEATHS:
            return (f"the {self.name} process is crash-looping: it died {len(recent)} times "
                    f"in {self.CRASH_LOOP_WINDOW:.0f} s")
        return None

    async def stop(self) -> None:
        self.stopping = True
        if self.supervisor is not None:
            self.supervisor.cancel()
        if self.process is None or not self.process.is_alive():
            return
        self.process.terminate()          # SIGTERM: it finishes the batch in hand, then exits
        self.wake()                       # ... at once if it was asleep
        await asyncio.to_thread(self.process.join, 30)
        if self.process.is_alive():
            log.warning("%s did not stop in 30 s; killing it (its leases expire)", self.name)
            self.process.kill()
            await asyncio.to_thread(self.process.join, 5)


class WorkerComponent(ChildProcess):
    """The inbound worker (`inbound/worker.py`). It rings `outbox_ringer` after each
    transaction that queued mail."""

    name = "worker"

    def __init__(self, app: App, outbox_ringer: Ringer | None = None) -> None:
        super().__init__(app.settings)
        self.outbox_ringer = outbox_ringer

    def entry(self) -> tuple[Callable[..., None], tuple[Any, ...]]:
        return worker_process_main, (self.bell, self.outbox_ringer)


class OutboxComponent(ChildProcess):
    """The outbox sender (`outbound/outbox.run_outbox`). `serve`'s own transactions that
    queue mail (the portal, the scheduler's jobs) ring it; hand `ringer` to the worker."""

    name = "outbox"
    IDLE_POLL = 1.0          # seconds between looks for due mail (retries) when nobody rings

    def __init__(self, app: App) -> None:
        super().__init__(app.settings)
        app.db.on_mail_queued = self.ringer.ring

    def entry(self) -> tuple[Callable[..., None], tuple[Any, ...]]:
        return outbox_process_main, (self.bell, self.IDLE_POLL)


def exit_reason(exitcode: int | None) -> str:
    """"killed by SIGKILL" for a process a signal ended, else "exit code N"."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


# -- in the child ------------------------------------------------------------------------------

def worker_process_main(settings: Settings, observations: Connection | None,
                        log_level: int | None, bell: Bell,
                        outbox_ringer: Ringer | None = None) -> None:
    """The worker process: processes received mail until SIGTERM; after each transaction
    that queued mail it rings `outbox_ringer`."""
    from gateway.inbound.worker import run_worker

    def work(app: App, stop: threading.Event) -> None:
        if outbox_ringer is not None:
            app.db.on_mail_queued = outbox_ringer.ring
        run_worker(app.db, app.stages, stop, bell, on_takeover=metrics.count_takeover_of)

    _run_child("worker", settings, observations, log_level, work)


def outbox_process_main(settings: Settings, observations: Connection | None,
                        log_level: int | None, bell: Bell, idle_poll: float = 1.0) -> None:
    """The outbox process: sends queued mail until SIGTERM, woken by `bell`."""
    from gateway.outbound.answers import tell_staff_on_failure
    from gateway.outbound.outbox import run_outbox
    from gateway.outbound.transport import transport_from_settings

    def send(app: App, stop: threading.Event) -> None:
        run_outbox(app.db, stop, transport_from_settings(settings), bell, idle_poll,
                   renderer=app.renderer, on_failed=tell_staff_on_failure(app.answering),
                   on_takeover=metrics.count_takeover_of)

    _run_child("outbox", settings, observations, log_level, send)


def _run_child(name: str, settings: Settings, observations: Connection | None,
               log_level: int | None, body: Callable[[App, threading.Event], None]) -> None:
    """What both children do around their work: end with the parent, SIGTERM asks to stop
    after the batch in hand (SIGINT is the parent's to handle), logging as the parent's,
    metrics to the parent, and an exception that ends it logged here (exit code 1)."""
    import os

    from gateway.app import build_app
    from gateway.inbound.lifeline import end_with_parent, prctl

    parent = multiprocessing.parent_process()    # its pid, even if it has died already
    end_with_parent(parent.pid if parent is not None and parent.pid else os.getppid())
    prctl(PR_SET_NAME, f"ticketgw-{name}".encode()[:15])   # what `ps -o comm` shows
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    configure_logging(settings.logging, level=log_level)
    forwarder = forward_observations(observations) if observations is not None else None
    try:
        app = build_app(settings)
        try:
            body(app, stop)
        finally:
            app.close()
    except Exception:
        # logged here, through our handler (JSON too), not printed by multiprocessing
        log.exception("the %s process ends on this error", name)
        raise SystemExit(1) from None
    finally:
        if forwarder is not None:
            forwarder.close()

