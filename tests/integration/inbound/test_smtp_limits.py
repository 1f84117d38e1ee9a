"""The listener's abuse limits (issue #14, item 14), as an SMTP client meets them: sessions
beyond the limits get `421 4.7.0` before the greeting; a session that keeps naming unknown
recipients is answered ever more slowly and then ended with `421 4.7.0`. No timings are
asserted: the slow-down is counted in the listener's log lines, with a short configured
delay. Clients on 127.0.0.2 are other clients than those on 127.0.0.1 (Linux answers on all
of 127.0.0.0/8)."""

from __future__ import annotations

import logging
import re
import smtplib
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.app import App
from gateway.inbound.worker import process_due
from tests.integration.smtp_helpers import customer_mail, running_listener
from tests.serve_helpers import free_port, serve_config, serving, stop_cleanly

UNKNOWN = "nobody-{}@support.example.com"


def limit(app: App, **inbound: Any) -> None:
    app.settings = app.settings.model_copy(update={"inbound": app.settings.inbound.model_copy(
        update=inbound)})


def session(port: int, source: str = "127.0.0.1") -> smtplib.SMTP:
    """An SMTP session that got its greeting (smtplib raises SMTPConnectError otherwise)."""
    return smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0))


@contextmanager
def sessions(port: int, count: int, source: str = "127.0.0.1") -> Iterator[list[smtplib.SMTP]]:
    with ExitStack() as stack:
        opened = []
        for _ in range(count):
            client = stack.enter_context(session(port, source))
            assert client.noop()[0] == 250
            opened.append(client)
        yield opened


def refused(port: int, source: str = "127.0.0.1") -> tuple[int, bytes]:
    """The reply to a session that the listener does not serve."""
    try:
        client = session(port, source)
    except smtplib.SMTPConnectError as error:
        return error.smtp_code, error.smtp_error
    client.close()
    raise AssertionError("the session was served")


class Dialogue:
    """A raw SMTP client: every reply is read as it comes, also one nobody asked for."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = self.sock.makefile("rb")
        assert self.reply().startswith("220")

    def reply(self) -> str:
        lines = []
        while True:
            line = self.reader.readline().decode()
            lines.append(line.rstrip("\r\n"))
            if line[3:4] != "-":
                return "\n".join(lines)

    def command(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def send_mail(self) -> str:
        assert self.command("RCPT TO:<incident@support.example.com>").startswith("250")
        assert self.command("DATA").startswith("354")
        raw = customer_mail(message_id="<limits@acme>").as_bytes().replace(b"\n", b"\r\n")
        self.sock.sendall(raw + b".\r\n")
        return self.reply()

    def closed(self) -> bool:
        return self.reader.read() == b""

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


@pytest.fixture
def delays(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[float]]]:
    """The delays the listener has announced before its error answers so far, in order."""
    def announced() -> list[float]:
        return [float(m.group(1)) for r in caplog.records
                if (m := re.search(r"answered after ([\d.]+) s", r.getMessage()))]

    with caplog.at_level(logging.INFO, logger="gateway.inbound.smtp"):
        yield announced


def test_more_sessions_from_one_client_than_the_default_limit_get_421(app: App) -> None:
    """The issue's 300 sessions from one address: with the defaults 20 are served (the
    client is no trusted relay here), the next get 421; other clients are still served and
    a session that ends frees its place."""
    limit(app, trusted_relays=[])
    assert app.settings.inbound.max_sessions_per_client == 20
    with running_listener(app) as port, sessions(port, 20) as served:
        for _ in range(5):
            code, text = refused(port)
            assert code == 421 and text.startswith(b"4.7.0") and b"Too many connections" in text
        with session(port, "127.0.0.2") as other:
            other.send_message(customer_mail(message_id="<other@acme>"))
        served[0].quit()
        with session(port) as again:
            again.send_message(customer_mail(message_id="<again@acme>"))
    assert [r.outcome for r in process_due(app.db, app.stages)] == ["created", "created"]


def test_the_total_limit_holds_for_a_trusted_relay_too(app: App) -> None:
    """A trusted relay (here 127.0.0.1, by default) carries everybody's mail: the limit per
    client does not apply to it, the total does."""
    limit(app, max_sessions=4, max_sessions_per_client=1)
    with running_listener(app) as port, sessions(port, 4):
        code, text = refused(port)
        assert code == 421 and text.startswith(b"4.7.0")
        code, _ = refused(port, "127.0.0.2")
        assert code == 421


def test_repeated_errors_are_answered_slower_then_the_session_ends_with_421(
        app: App, delays: Callable[[], list[float]]) -> None:
    limit(app, soft_error_limit=2, hard_error_limit=5, error_sleep_time=0.01)
    with running_listener(app) as port:
        client = Dialogue(port)
        assert client.command("EHLO prober.example").startswith("250")
        assert client.command("RCPT TO:<x@support.example.com>").startswith("503")  # 1 error
        assert client.command("MAIL FROM:<probe@prober.example>").startswith("250")
        assert client.command(f"RCPT TO:<{UNKNOWN.format(1)}>").startswith("550 5.1.1")  # 2
        assert client.command("RCPT TO:<someone@gmail.example>").startswith("550 5.7.1")  # 3
        assert client.command("VRFY").startswith("50")                                   # 4
        assert client.command(f"RCPT TO:<{UNKNOWN.format(2)}>").startswith("550 5.1.1")  # 5
        ended = client.reply()                    # unasked: the session is over
        assert ended.startswith("421 4.7.0") and "Too many errors" in ended
        assert client.closed()
        client.close()
    assert delays() == [0.01, 0.02, 0.03]           # errors 3, 4 and 5: ever longer


def test_delivering_a_mail_starts_the_error_count_again(
        app: App, delays: Callable[[], list[float]]) -> None:
    """Like Postfix: a relay that delivers real mail is not ended for the odd unknown
    recipient among it."""
    limit(app, soft_error_limit=1, hard_error_limit=3, error_sleep_time=0.01)
    with running_listener(app) as port:
        client = Dialogue(port)
        assert client.command("EHLO relay.example").startswith("250")
        assert client.command("MAIL FROM:<max@acme.example>").startswith("250")
        for n in (1, 2):
            assert client.command(f"RCPT TO:<{UNKNOWN.format(n)}>").startswith("550")
        assert client.send_mail().startswith("250")
        assert client.command("MAIL FROM:<max@acme.example>").startswith("250")
        for n in (3, 4):
            assert client.command(f"RCPT TO:<{UNKNOWN.format(n)}>").startswith("550")
        assert client.command("NOOP").startswith("250")       # still served
        assert client.command(f"RCPT TO:<{UNKNOWN.format(5)}>").startswith("550")
        assert client.reply().startswith("421 4.7.0")
        client.close()
    assert delays() == [0.01, 0.01, 0.02]           # error 2; after the mail errors 2 and 3


def test_serve_applies_the_limits_of_its_config_file(database_url: str,
                                                     tmp_path: Path) -> None:
    smtp_port, web_port = free_port(), free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, smtp_port=smtp_port,
                          web_port=web_port)
    config.write_text(config.read_text().replace(
        "[inbound]\n", "[inbound]\ntrusted_relays = []\nmax_sessions_per_client = 1\n"
                       "soft_error_limit = 0\nhard_error_limit = 2\nerror_sleep_time = 0\n", 1))
    with serving(["--config", str(config), "serve"], tmp_path,
                 f"http://127.0.0.1:{web_port}/healthz") as process:
        client = Dialogue(smtp_port)
        code, text = refused(smtp_port)
        assert code == 421 and text.startswith(b"4.7.0")
        assert client.command("EHLO prober.example").startswith("250")
        assert client.command("MAIL FROM:<probe@prober.example>").startswith("250")
        assert client.command(f"RCPT TO:<{UNKNOWN.format(1)}>").startswith("550 5.1.1")
        assert client.command(f"RCPT TO:<{UNKNOWN.format(2)}>").startswith("550 5.1.1")
        assert client.reply().startswith("421 4.7.0")
        assert client.closed()
        client.close()
        with session(smtp_port) as next_one:      # its place is free again
            assert next_one.noop()[0] == 250
        stderr = stop_cleanly(process)
    assert "session refused with 421" in stderr and "session closed with 421" in stderr
