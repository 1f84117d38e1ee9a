"""`ticketgw serve`: runs every component in one asyncio loop until SIGINT or SIGTERM.

Components: the inbound worker (its own process), the SMTP and LMTP listeners with their
group committer, the IMAP pollers (a thread per mailbox), the web view (uvicorn), the outbox
sender (a thread) and the scheduler.

Guarantees: a component that fails to start (port in use) stops the others and the error is
reported; on SIGINT/SIGTERM every component is stopped in reverse order and the process
exits 0; nothing is left half-done (work is in the database, claimed per transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator
from multiprocessing.connection import Connection
from typing import Protocol

import uvicorn

from gateway.app import App
from gateway.config.settings import Settings, host_port
from gateway.inbound.doorbell import Bell, Ringer, doorbell
from gateway.inbound.intake import GroupCommitter
from gateway.inbound.smtp import GatewayHandler, server_factory
from gateway.inbound.smtp_limits import ClientLimits
from gateway.jobs import build_scheduler
from gateway.observe import metrics
from gateway.observe.logs import configure_logging
from gateway.observe.metrics import forward_observations, receive_observations
from gateway.web.app import create_web_app
from gateway.web.health import Liveness

log = logging.getLogger(__name__)


class Component(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the service owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class WebComponent:
    name = "web"

    def __init__(self, app: App, liveness: Liveness | None = None) -> None:
        web = app.settings.web
        self.host, self.port = host_port(web.listen)
        # uvicorn believes X-Forwarded-For from 127.0.0.1 (or $FORWARDED_ALLOW_IPS) unless
        # told otherwise, and the portal's per-address limits key on the address it
        # reports: only the configured proxies may name the client; without any, the
        # header is not read at all and the connecting address counts.
        config = uvicorn.Config(create_web_app(app, liveness), host=self.host, port=self.port,
                                log_level="warning", access_log=False, lifespan="off",
                                log_config=None,   # its loggers propagate to ours (format)
                                proxy_headers=bool(web.trusted_proxies),
                                forwarded_allow_ips=list(web.trusted_proxies))
        self.server = _QuietServer(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # bind here, not in uvicorn: a taken port becomes our error message, not its exit(3)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
        except OSError as exc:
            listener.close()
            raise OSError(f"web server could not listen on {self.host}:{self.port}: "
                          f"{exc.strerror}") from None
        self.task = asyncio.create_task(self.server.serve(sockets=[listener]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise OSError(f"web server on {self.host}:{self.port} stopped at start")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


class ListenerComponent:
    """The SMTP or LMTP listener; its mails are committed through one group committer."""

    def __init__(self, app: App, listen: str, committer: GroupCommitter, *, lmtp: bool,
                 on_stored: Callable[[], None] | None = None) -> None:
        self.name = "lmtp" if lmtp else "smtp"
        self.host, self.port = host_port(listen)
        inbound = app.settings.inbound
        self.handler = GatewayHandler(app.addressbook, committer,
                                      max_recipients=inbound.max_recipients, lmtp=lmtp,
                                      max_size=inbound.max_message_size, on_stored=on_stored,
                                      limits=ClientLimits.from_settings(inbound))
        # SIZE and the hard limit: up to oversize_limit a mail is read (its text kept)
        self.factory = server_factory(self.handler,
                                      max_size=max(inbound.max_message_size,
                                                   inbound.oversize_limit),
                                      timeout=app.settings.inbound.timeout)
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        try:
            self.server = await asyncio.get_running_loop().create_server(
                self.factory, host=self.host, port=self.port, reuse_address=True)
        except OSError as exc:
            raise OSError(f"{self.name} listener could not listen on {self.host}:{self.port}: "
                          f"{exc.strerror}") from None

    @property
    def bound_port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class CommitterComponent:
    name = "intake"

    def __init__(self, committer: GroupCommitter) -> None:
        self.committer = committer

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.committer.close()


class WorkerComponent:
    """The inbound worker in its own process: parsing and ticket work use the second core
    and never stall the listener's event loop. Supervised: a worker that dies is started
    again (with a growing pause if it keeps dying); its leased mail becomes due again when
    the lease ends. Waking it (`wake`) never blocks, even when it is dead."""

    name = "worker"
    CHECK_EVERY = 1.0
    FIRST_PAUSE = 2.0              # before the first restart; doubled per restart, at most 60 s
    CRASH_LOOP_DEATHS = 3          # this many deaths within CRASH_LOOP_WINDOW: crash-looping
    CRASH_LOOP_WINDOW = 300.0

    def __init__(self, app: App, outbox_ringer: Ringer | None = None) -> None:
        self.settings = app.settings
        self.context = multiprocessing.get_context("spawn")
        self.ringer, self.bell = doorbell(self.context)
        self.outbox_ringer = outbox_ringer       # rung by the worker after it queued mail
        self.process: multiprocessing.process.BaseProcess | None = None
        self.supervisor: asyncio.Task[None] | None = None
        self.stopping = False
        self.restarts = 0
        self.deaths: list[float] = []      # monotonic times the supervisor found it dead

    def wake(self) -> None:
        self.ringer.ring()

    def _spawn(self) -> None:
        # a pipe per process: what it counts reaches this process's /metrics, and a killed
        # worker cannot leave a shared queue locked for the next one
        receiver, sender = self.context.Pipe(duplex=False)
        self.process = self.context.Process(
            target=worker_process_main, name="ticketgw-worker", daemon=True,
            args=(self.settings, self.bell, sender, logging.getLogger().getEffectiveLevel(),
                  self.outbox_ringer))
        self.process.start()
        sender.close()          # the worker's end: closed here, so its exit is our EOF
        threading.Thread(target=receive_observations, args=(receiver,), daemon=True,
                         name="ticketgw-worker-metrics").start()

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
            log.error("worker process died (%s); starting it again in %.0f s",
                      exit_reason(self.process.exitcode), pause)
            await asyncio.sleep(pause)
            if not self.stopping:
                self._spawn()

    def problem(self) -> str | None:
        """None while the worker runs (and is not crash-looping), else why not (/healthz)."""
        if self.stopping or self.process is None:
            return None
        if not self.process.is_alive():
            return f"the worker process is not running ({exit_reason(self.process.exitcode)})"
        recent = [t for t in self.deaths if time.monotonic() - t < self.CRASH_LOOP_WINDOW]
        if len(recent) >= self.CRASH_LOOP_DEATHS:
            return (f"the worker process is crash-looping: it died {len(recent)} times in "
                    f"{self.CRASH_LOOP_WINDOW:.0f} s")
        return None

    async def stop(self) -> None:
        self.stopping = True
        if self.supervisor is not None:
            self.supervisor.cancel()
        if self.process is None or not self.process.is_alive():
            return
        self.process.terminate()          # SIGTERM: it finishes the mail in hand, then exits
        await asyncio.to_thread(self.process.join, 30)
        if self.process.is_alive():
            log.warning("worker did not stop in 30 s; killing it (its lease expires)")
            self.process.kill()
            await asyncio.to_thread(self.process.join, 5)


def exit_reason(exitcode: int | None) -> str:
    """"killed by SIGKILL" for a process a signal ended, else "exit code N"."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def worker_process_main(settings: Settings, bell: Bell, observations: Connection | None = None,
                        log_level: int | None = None, outbox_ringer: Ringer | None = None,
                        ) -> None:
    """Entry point of the worker process (spawned: it builds its own app and connections).
    After each transaction that queued mail it rings `outbox_ringer`, the outbox's bell.
    SIGTERM asks it to stop after the mail in hand; SIGINT is the parent's to handle. It
    ends within a second of its parent's death, busy or idle (`inbound/lifeline.py`).
    Its metrics go to the parent through `observations`; an exception that ends it is
    logged with its traceback before the process exits (code 1)."""
    import os
    import signal as signals

    from gateway.app import build_app
    from gateway.inbound.lifeline import end_with_parent
    from gateway.inbound.worker import run_worker

    parent = multiprocessing.parent_process()    # its pid, even if it has died already
    end_with_parent(parent.pid if parent is not None and parent.pid else os.getppid())
    stop = threading.Event()
    signals.signal(signals.SIGINT, signals.SIG_IGN)
    signals.signal(signals.SIGTERM, lambda *_: stop.set())
    configure_logging(settings.logging, level=log_level)
    forwarder = forward_observations(observations) if observations is not None else None
    try:
        app = build_app(settings)
        if outbox_ringer is not None:
            app.db.on_mail_queued = outbox_ringer.ring
        try:
            run_worker(app.db, app.stages, stop, bell,
                       on_takeover=metrics.count_takeover_of)
        finally:
            app.close()
    except Exception:
        # logged here, through our handler (JSON too), not printed by multiprocessing
        log.exception("the worker process ends on this error")
        raise SystemExit(1) from None
    finally:
        if forwarder is not None:
            forwarder.close()


class OutboxComponent:
    """Drains the outbox in a thread: sending is network-bound, so it shares this process.
    It sleeps on a doorbell that this process rings after each of its transactions that
    queued mail (`Database.on_mail_queued`: the portal, the scheduler's jobs), and that the
    worker process rings likewise (`ringer`, handed to `WorkerComponent`); without a ring
    it looks for due mail (retries) every second."""

    name = "outbox"
    IDLE_POLL = 1.0          # seconds between looks for due mail when nobody rings

    def __init__(self, app: App) -> None:
        from gateway.outbound.answers import tell_staff_on_failure
        from gateway.outbound.outbox import run_outbox
        from gateway.outbound.transport import transport_from_settings

        self.ringer, bell = doorbell(multiprocessing.get_context("spawn"))
        app.db.on_mail_queued = self.ringer.ring
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=run_outbox, name="ticketgw-outbox",
            args=(app.db, self.stop_event, transport_from_settings(app.settings), bell,
                  self.IDLE_POLL),
            kwargs={"on_failed": tell_staff_on_failure(app.answering),
                    "on_takeover": metrics.count_takeover_of}, daemon=True)
        self.stopping = False

    async def start(self) -> None:
        self.thread.start()

    def problem(self) -> str | None:
        """None while the outbox thread runs (or before start / after stop), else why not."""
        if self.thread.ident is None or self.stopping or self.thread.is_alive():
            return None
        return "the outbox thread has stopped"

    def wake(self) -> None:
        self.ringer.ring()

    async def stop(self) -> None:
        self.stopping = True
        self.stop_event.set()
        self.wake()
        await asyncio.to_thread(self.thread.join, 30)


class ImapComponent:
    """One poller thread per `[[mailbox]]` (imapclient blocks); see gateway/inbound/imap/poller.py.
    A mailbox's URL that cannot be used is a `ConfigError` here, before anything starts."""

    name = "imap"

    def __init__(self, app: App, wake: Callable[[], None] | None = None) -> None:
        from gateway.inbound.imap.poller import MailboxPoller

        self.pollers = [MailboxPoller(app.db, app.blobs, mailbox,
                                      base_dir=app.settings.base_dir, wake=wake)
                        for mailbox in app.settings.mailbox]

    async def start(self) -> None:
        for poller in self.pollers:
            poller.start()

    async def stop(self) -> None:
        for poller in self.pollers:
            poller.stop()
        for poller in self.pollers:   # each ends within about a second (a batch is finished)
            await asyncio.to_thread(poller.join, 30)


class SchedulerComponent:
    name = "scheduler"

    def __init__(self, app: App) -> None:
        self.scheduler = build_scheduler(app.db, app.blobs, app.settings.web,
                                         answering=app.answering)

    async def start(self) -> None:
        self.scheduler.start()

    async def stop(self) -> None:
        self.scheduler.shutdown(wait=False)


def build_components(app: App, *, worker: bool = True) -> list[Component]:
    """Everything `serve` runs, in start order (they stop in reverse)."""
    components: list[Component] = []
    wake: Callable[[], None] | None = None
    outbox = OutboxComponent(app)
    if worker:
        worker_component = WorkerComponent(app, outbox.ringer)
        components.append(worker_component)
        wake = worker_component.wake
    inbound = app.settings.inbound
    if inbound.smtp or inbound.lmtp:
        committer = GroupCommitter(app.db, app.blobs)
        components.append(CommitterComponent(committer))
        if inbound.smtp:
            components.append(ListenerComponent(app, inbound.smtp, committer, lmtp=False,
                                                on_stored=wake))
        if inbound.lmtp:
            components.append(ListenerComponent(app, inbound.lmtp, committer, lmtp=True,
                                                on_stored=wake))
    if app.settings.mailbox:
        components.append(ImapComponent(app, wake))
    if app.settings.web.listen:   # /healthz judges the worker and the outbox of this serve
        liveness = {"outbox": outbox.problem}
        if worker:
            liveness["worker"] = worker_component.problem
        components.append(WebComponent(app, liveness))
    components.append(outbox)
    components.append(SchedulerComponent(app))
    return components


async def run_service(components: list[Component], stop: asyncio.Event | None = None) -> None:
    """Start the components, wait for SIGINT/SIGTERM (or `stop`), stop them in reverse."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started: list[Component] = []
    try:
        for component in components:
            await component.start()
            started.append(component)
            log.info("%s started", component.name)
        await stop.wait()
        log.info("stopping")
    finally:
        for component in reversed(started):
            try:
                await component.stop()
            except Exception:
                log.exception("%s did not stop cleanly", component.name)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
