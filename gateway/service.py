"""`ticketgw serve`: runs every component in one asyncio loop until SIGINT or SIGTERM.

Components today: the web view (uvicorn) and the scheduler. The SMTP/LMTP listener and the
IMAP pollers join the same list. Guarantees: a component that fails to start (port in use)
stops the others and the error is reported; on SIGINT/SIGTERM every component is stopped in
reverse order, the process exits 0, and nothing is left half-done (work is in the database,
claimed per transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Generator
from typing import Protocol

import uvicorn

from gateway.app import App
from gateway.jobs import build_scheduler
from gateway.settings import host_port
from gateway.web.app import create_web_app

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

    def __init__(self, app: App) -> None:
        self.host, self.port = host_port(app.settings.web.listen)
        config = uvicorn.Config(create_web_app(app), host=self.host, port=self.port,
                                log_level="warning", access_log=False, lifespan="off")
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


class SchedulerComponent:
    name = "scheduler"

    def __init__(self, app: App) -> None:
        self.scheduler = build_scheduler(app)

    async def start(self) -> None:
        self.scheduler.start()

    async def stop(self) -> None:
        self.scheduler.shutdown(wait=False)


def build_components(app: App) -> list[Component]:
    components: list[Component] = []
    if app.settings.web.listen:
        components.append(WebComponent(app))
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
