"""`ticketgw serve`: runs every component in one asyncio loop until SIGINT or SIGTERM.

Components: the inbound worker and the outbox sender (each its own process,
`child_processes.py`), the SMTP and LMTP listeners with their group committer, the IMAP
pollers (a thread per mailbox), the web view (uvicorn) and the scheduler.

Guarantees: a component that fails to start (port in use) stops the others and the error is
reported; on SIGINT/SIGTERM every component is stopped in reverse order and the process
exits 0; nothing is left half-done (work is in the database, claimed per transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Generator
from typing import Protocol

import uvicorn

from gateway.app import App
from gateway.child_processes import OutboxComponent, WorkerComponent
from gateway.config.settings import host_port
from gateway.inbound.intake import GroupCommitter
from gateway.inbound.smtp import GatewayHandler, server_factory
from gateway.inbound.smtp_limits import ClientLimits
from gateway.jobs import build_scheduler
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
