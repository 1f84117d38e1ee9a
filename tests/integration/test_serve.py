"""`ticketgw serve` as a real process: starts, answers /healthz and /metrics, stops cleanly
on SIGTERM and SIGINT, refuses an unmigrated database and a taken port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_config
from tests.serve_helpers import (
    TICKETGW,
    child_pids,
    free_port,
    only_worker,
    serve_config,
    serving,
    start,
    stop_cleanly,
    tickets_titled,
    worker_pids,
)


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    port = free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, web_port=port)
    base = f"http://127.0.0.1:{port}"
    with serving(["--config", str(config), "serve", "--demo"], tmp_path,
                 f"{base}/healthz") as process:
        yield process, base, config


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_demo_answers_and_stops_cleanly(served: tuple[subprocess.Popen[str], str, Path],
                                              stop_signal: signal.Signals) -> None:
    process, base, config = served
    health = httpx.get(f"{base}/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["database"] == "ok"
    metrics = httpx.get(f"{base}/metrics")
    assert metrics.status_code == 200
    assert 'ticketgw_tickets{state="closed"} 1.0' in metrics.text
    assert "ticketgw_database_up 1.0" in metrics.text
    listed = subprocess.run([*TICKETGW, "--config", str(config), "ticket", "list", "--json"],
                            capture_output=True, text=True, check=True)
    assert len(json.loads(listed.stdout)) == 5

    started = time.monotonic()
    process.send_signal(stop_signal)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert time.monotonic() - started < 10
    assert "ticketgw: stopped" in stderr
    assert "Traceback" not in stderr


@pytest.mark.backends("sqlite")
def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/new.db")
    process = start(["--config", str(config), "serve"], tmp_path)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 75
    assert "ticketgw db upgrade" in stderr


@pytest.mark.backends("sqlite")
def test_serve_reports_a_taken_port(database_url: str, tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        config = write_config(tmp_path / "c.toml", database_url)
        config.write_text(config.read_text().replace('listen = ""',
                                                     f'listen = "127.0.0.1:{port}"'))
        process = start(["--config", str(config), "serve"], tmp_path)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1
    assert f"error: web server could not listen on 127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr


def test_serve_takes_mail_over_smtp_and_the_worker_makes_the_ticket(
        database_url: str, tmp_path: Path) -> None:
    """The whole service as deployed: listener, group commit, worker process, database."""
    import smtplib
    from email.message import EmailMessage

    smtp_port, web_port = free_port(), free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, smtp_port=smtp_port,
                          web_port=web_port)
    with serving(["--config", str(config), "serve", "--demo"], tmp_path,
                 f"http://127.0.0.1:{web_port}/healthz") as process:
        message = EmailMessage()
        message["From"] = "Max Mustermann <max.mustermann@acme.example>"
        message["To"] = "stoerung@support.example.com"
        message["Subject"] = "Monitor flackert"
        message["Message-ID"] = "<e2e@acme.example>"
        message.set_content("Betroffenes System: Monitor\nAuswirkung: nur ich\n")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.send_message(message)
        created = tickets_titled(config, "Monitor flackert")
        assert created, "the worker did not make the ticket within 30 s"
        assert (created[0]["customer"], created[0]["template"]) == ("mmuster", "incident")
        assert "Traceback" not in stop_cleanly(process)


def test_serve_answers_a_customer_through_a_real_relay(database_url: str,
                                                       tmp_path: Path) -> None:
    """Deployed shape: SMTP in, the worker process makes the ticket and queues the
    acknowledgment, the outbox process delivers it to a real SMTP relay."""
    import email
    import email.policy
    import smtplib
    from email.message import EmailMessage

    from tests.integration.outbound.test_outbox import ScriptedRelay, running_relay

    smtp_port, web_port = free_port(), free_port()
    with running_relay(ScriptedRelay()) as relay:
        config = serve_config(
            tmp_path / "ticketgw.toml", database_url, smtp_port=smtp_port, web_port=web_port,
            extra=f'\n\n[outbound]\ntransport = "smtp://127.0.0.1:{relay.port}"'
                  '\nstarttls = false')
        with serving(["--config", str(config), "serve", "--demo"], tmp_path,
                     f"http://127.0.0.1:{web_port}/healthz") as process:
            message = EmailMessage()
            message["From"] = "Max Mustermann <max.mustermann@acme.example>"
            message["To"] = "stoerung@support.example.com"
            message["Subject"] = "Beamer im Raum 3"
            message["Message-ID"] = "<beamer@acme.example>"
            message.set_content("Betroffenes System: Beamer\nAuswirkung: Meeting\n")
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
                client.send_message(message)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(relay.received) < 3:
                time.sleep(0.2)
            by_recipient = {tuple(r.rcpt_tos): r for r in relay.received}
            assert set(by_recipient) == {("max.mustermann@acme.example",),
                                         ("anna.agent@example.com",),
                                         ("ben.agent@example.com",)}, relay.received
            ack = email.message_from_bytes(by_recipient[("max.mustermann@acme.example",)].data,
                                           policy=email.policy.default)
            assert ack["In-Reply-To"] == "<beamer@acme.example>"
            assert "[Ticket#" in ack["Subject"] and ack["Auto-Submitted"] == "auto-replied"
            assert by_recipient[("max.mustermann@acme.example",)].mail_from == \
                "support@support.example.com"
            stop_cleanly(process)


@pytest.mark.backends("sqlite")
def test_a_dead_worker_neither_freezes_the_listener_nor_loses_mail(
        database_url: str, tmp_path: Path) -> None:
    """kill -9 of the worker process: SMTP keeps answering, the worker is started again
    and processes what arrived meanwhile, and serve still stops cleanly."""
    import smtplib

    smtp_port, web_port = free_port(), free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, smtp_port=smtp_port,
                          web_port=web_port)
    with serving(["--config", str(config), "serve", "--demo"], tmp_path,
                 f"http://127.0.0.1:{web_port}/healthz") as process:
        deadline = time.monotonic() + 20
        while not child_pids(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in child_pids(process.pid):
            os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        raw = (b"From: max.mustermann@acme.example\r\nTo: stoerung@support.example.com\r\n"
               b"Subject: Nach dem Absturz\r\nMessage-ID: <after-crash@acme>\r\n\r\nHallo\r\n")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.sendmail("max.mustermann@acme.example", ["stoerung@support.example.com"],
                            raw)
        assert time.monotonic() - started < 5            # answered at once, not frozen
        assert tickets_titled(config, "Nach dem Absturz"), \
            "the restarted worker did not process the mail"
        assert "worker process died (killed by SIGKILL)" in stop_cleanly(process)


def _health_until(url: str, wanted: int, timeout: float) -> httpx.Response:
    """Poll /healthz until it answers `wanted` (the last answer otherwise)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(url, timeout=5)
        if answer.status_code == wanted or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


@pytest.mark.backends("sqlite")
def test_healthz_is_503_while_the_worker_is_dead_and_200_after_its_restart(
        database_url: str, tmp_path: Path) -> None:
    """kill -9 of the worker: /healthz answers 503 naming it until the supervisor has
    started a new one (it waits at least 2 s first), then 200 again."""
    web_port = free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, web_port=web_port)
    url = f"http://127.0.0.1:{web_port}/healthz"
    with serving(["--config", str(config), "serve", "--demo"], tmp_path, url) as process:
        deadline = time.monotonic() + 20
        while not worker_pids(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = only_worker(process.pid)
        healthy = httpx.get(url)
        assert healthy.status_code == 200
        assert healthy.json()["components"] == {"outbox": "ok", "worker": "ok"}
        os.kill(worker, signal.SIGKILL)
        dead = _health_until(url, 503, timeout=60)
        assert dead.status_code == 503
        assert dead.json()["components"]["worker"] == "down"
        assert dead.json()["problems"] == [
            "worker: the worker process is not running (killed by SIGKILL)"]
        recovered = _health_until(url, 200, timeout=60)
        assert recovered.status_code == 200, recovered.json()
        assert only_worker(process.pid) != worker      # the new one (once it named itself)
        assert "worker process died (killed by SIGKILL)" in stop_cleanly(process)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"                     # a zombie has ended; its parent is gone


@pytest.mark.backends("sqlite")
def test_the_worker_does_not_outlive_a_killed_serve(database_url: str, tmp_path: Path) -> None:
    """kill -9 of `serve` itself: its worker process notices (the doorbell pipe ends) and
    exits instead of spinning on the closed pipe or holding serve's stdout open."""
    web_port = free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, smtp_port=free_port(),
                          web_port=web_port)
    with serving(["--config", str(config), "serve"], tmp_path,
                 f"http://127.0.0.1:{web_port}/healthz") as process:
        deadline = time.monotonic() + 20
        while not child_pids(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        children = child_pids(process.pid)
        assert children
        process.kill()
        process.communicate(timeout=30)     # hung for good while an orphan held the pipes
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in children)
