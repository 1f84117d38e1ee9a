"""The file exchange under a real uvicorn, over a real socket: tokens stay out of the access
log (turned ON here; every line it writes is checked), and an upload the client abandons
half-way leaves nothing behind."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from gateway.app import App
from gateway.store.models import table_of
from gateway.store.models_files import FileAreaFile
from gateway.web.app import create_web_app
from gateway.web.redaction import redact_tokens
from tests.serve_helpers import free_port
from tests.web.test_files import new_area
from tests.web.test_tickets import ticket_by_mail


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_log() -> Iterator[_Lines]:
    handler = _Lines()
    logger = logging.getLogger("uvicorn.access")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_redaction_keeps_the_rest_of_the_path() -> None:
    assert redact_tokens('GET /files/abc-DEF_123/17 HTTP/1.1') == "GET /files/[token]/17 HTTP/1.1"
    assert redact_tokens("/files/abc?uploaded=2") == "/files/[token]?uploaded=2"
    assert redact_tokens("/tickets/2026") == "/tickets/2026"


@contextmanager
def uvicorn_serving(app: App, **options: Any) -> Iterator[str]:
    """The real app under uvicorn on a free port, in a thread; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_web_app(app), host="127.0.0.1", port=port,
                                           log_config=None, lifespan="off", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_the_token_never_reaches_the_access_log(app: App, customers: None,
                                                access_log: _Lines) -> None:
    token = new_area(app, ticket_by_mail(app, "Logdateien"))
    with uvicorn_serving(app, access_log=True) as base, httpx.Client(base_url=base) as client:
        assert client.get(f"/files/{token}").status_code == 200
        assert client.post(f"/files/{token}", files=[("files", ("a.txt", b"a"))]
                           ).status_code == 303
        assert client.get(f"/files/{token}/1").status_code == 200
        assert client.get(f"/files/{token}x").status_code == 404
    lines = access_log.lines
    assert len(lines) == 4, lines
    assert not [line for line in lines if token in line]
    assert 'GET /files/[token] HTTP/1.1" 200' in lines[0]
    assert 'POST /files/[token] HTTP/1.1" 303' in lines[1]
    assert 'GET /files/[token]/1 HTTP/1.1" 200' in lines[2]


def test_an_upload_the_client_abandons_leaves_nothing(app: App, customers: None) -> None:
    """A browser closed mid-upload: the staging file is removed, nothing is recorded, and
    the server answers the next request."""
    token = new_area(app, ticket_by_mail(app, "Abgebrochen"))
    head = (b"--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.bin\"\r\n"
            b"\r\n")
    with uvicorn_serving(app) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(
                f"POST /files/{token} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                f"multipart/form-data; boundary=B\r\nContent-Length: {50 * 2**20}\r\n\r\n"
                .encode() + head)
            for _ in range(5):
                connection.sendall(b"x" * 2**20)
            deadline = time.monotonic() + 10   # the server has started a staging file
            while not list(app.blobs.root.glob(".incoming-*")) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert list(app.blobs.root.glob(".incoming-*"))
        deadline = time.monotonic() + 20
        while list(app.blobs.root.glob(".incoming-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(app.blobs.root.glob(".incoming-*")) == []
        assert httpx.get(f"{base}/files/{token}").status_code == 200
    with app.db.read() as session:
        assert session.execute(select(table_of(FileAreaFile))).all() == []
