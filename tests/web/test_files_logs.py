"""File-exchange tokens stay out of uvicorn's access log: the real app served by uvicorn
with its access log ON, over a real socket; every line it writes is checked."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from gateway.app import App
from gateway.web.app import create_web_app
from gateway.web.redaction import redact_tokens
from tests.integration.test_serve import free_port
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


def test_the_token_never_reaches_the_access_log(app: App, customers: None,
                                                access_log: _Lines) -> None:
    token = new_area(app, ticket_by_mail(app, "Logdateien"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_web_app(app), host="127.0.0.1", port=port,
                                           access_log=True, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base) as client:
            assert client.get(f"/files/{token}").status_code == 200
            assert client.post(f"/files/{token}", files=[("files", ("a.txt", b"a"))]
                               ).status_code == 303
            assert client.get(f"/files/{token}/1").status_code == 200
            assert client.get(f"/files/{token}x").status_code == 404
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    lines = access_log.lines
    assert len(lines) == 4, lines
    assert not [line for line in lines if token in line]
    assert 'GET /files/[token] HTTP/1.1" 200' in lines[0]
    assert 'POST /files/[token] HTTP/1.1" 303' in lines[1]
    assert 'GET /files/[token]/1 HTTP/1.1" 200' in lines[2]
