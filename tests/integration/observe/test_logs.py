"""`[logging]` in a real `ticketgw serve`: with `format = "json"` every line on stderr is a
JSON object, the worker process's too, and the lines about a mail carry its inbound id and
Message-ID; at the default INFO, a mail processed as usual adds no line."""

from __future__ import annotations

import json
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.serve_helpers import free_port, serve_config, serving, stop_cleanly


def _send(port: int, subject: str) -> None:
    message = EmailMessage()
    message["From"] = "Max Mustermann <max.mustermann@acme.example>"
    message["To"] = "stoerung@support.example.com"
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@acme.example>"
    message.set_content("Betroffenes System: Monitor\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message)


def _processed(database_url: str) -> list[tuple[int, str]]:
    """(id, outcome) of every received mail, once none is pending any more."""
    engine = create_engine(database_url)
    deadline = time.monotonic() + 60
    try:
        while True:
            with engine.connect() as connection:
                rows = [(row.id, row.outcome) for row in connection.execute(text(
                    "SELECT id, outcome FROM received_mail ORDER BY id"))]
            if rows and all(outcome != "pending" for _, outcome in rows):
                return rows
            assert time.monotonic() < deadline, rows
            time.sleep(0.1)
    finally:
        engine.dispose()


def _serve_and_send(database_url: str, tmp_path: Path, env: dict[str, str]
                    ) -> tuple[list[tuple[int, str]], str]:
    smtp_port, web_port = free_port(), free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, smtp_port=smtp_port,
                          web_port=web_port)
    with serving(["--config", str(config), "serve", "--demo"], tmp_path,
                 f"http://127.0.0.1:{web_port}/healthz", env=env) as process:
        _send(smtp_port, "Monitor flackert")
        rows = _processed(database_url)
        stderr = stop_cleanly(process)
    return rows, stderr


def test_json_lines_carry_the_inbound_id_and_message_id(database_url: str,
                                                         tmp_path: Path) -> None:
    rows, stderr = _serve_and_send(database_url, tmp_path, {
        "TICKETGW_LOGGING_FORMAT": "json", "TICKETGW_LOGGING_LEVEL": "debug"})
    [(mail_id, outcome)] = rows
    assert outcome == "created"
    records = []
    for line in stderr.splitlines():
        if line.startswith(("ticketgw: wrote the demo", "ticketgw: note:", "demo data loaded")):
            continue                  # --demo's own words, before [logging] is read
        records.append(json.loads(line))
    assert {"time", "level", "logger", "message"} <= set(records[0])
    about = [r for r in records if r.get("inbound_id") == mail_id]
    worker_line = next(r for r in about if r["logger"] == "gateway.inbound.worker")
    assert worker_line["message_id"] == "<Monitor-flackert@acme.example>"
    assert worker_line["level"] == "DEBUG"
    assert worker_line["message"].startswith(f"inbound {mail_id}: created ")
    assert any(r["logger"] == "gateway.inbound.smtp" for r in about)     # the parent's
    assert any(r["message"] == "inbound worker started" for r in records)
    assert records[-1]["message"] == "ticketgw: stopped"


def test_at_info_a_mail_processed_as_usual_adds_no_line(database_url: str,
                                                        tmp_path: Path) -> None:
    [(mail_id, outcome)], stderr = _serve_and_send(database_url, tmp_path, {})
    assert outcome == "created"
    assert f"inbound {mail_id}" not in stderr and "stored mail" not in stderr
    assert " INFO gateway.inbound.worker: inbound worker started" in stderr
