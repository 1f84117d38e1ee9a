"""Poison mail (issue #14, docs/admin.md 5.1): mail that used to jam the worker, crash
`ingest`, hide in quarantine without a name, or be credited to a customer it does not come
from. Each test sends the bad mail the way it arrives (SMTP, `ingest`, or stored and picked
up by the worker) and checks what becomes of it and of the mail around it."""

from __future__ import annotations

import json
import logging
import smtplib
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from gateway.app import App
from gateway.inbound import worker
from gateway.inbound.intake import RAW_IN_ROW_LIMIT, Envelope, Incoming, accept_many
from gateway.inbound.worker import MAX_ATTEMPTS, process_due
from gateway.store.models import OutboundMail, ReceivedMail, Ticket, table_of, utcnow
from gateway.tickets.queries import ticket_detail
from tests.conftest import write_config
from tests.integration.smtp_helpers import customer_mail, running_listener, send
from tests.serve_helpers import TICKETGW, free_port, serve_config, serving, stop_cleanly

_received = table_of(ReceivedMail)
_ticket = table_of(Ticket)
_outbound = table_of(OutboundMail)
FINAL = {"created", "appended", "ignored", "rejected", "quarantined"}
CONFIG = """
[[queue]]
id = "servicedesk"
from = "Service Desk <support@support.example.com>"

[[template]]
id = "incident"
group = "incident"
name = { de = "Störung", en = "Incident" }
addresses = ["incident@support.example.com"]
queue = "servicedesk"
"""


def drain(app: App) -> list[worker.Processed]:
    """Everything that is due now, batch after batch: no waiting for a retry."""
    results: list[worker.Processed] = []
    while batch := process_due(app.db, app.stages):
        results += batch
    return results


def stored(app: App, *raws: bytes, sender: str = "max@acme.example") -> list[int]:
    envelope = Envelope("smtp", sender, ("incident@support.example.com",))
    return accept_many(app.db, [Incoming(raw, envelope) for raw in raws], blobs=app.blobs)


def row(app: App, mail_id: int) -> Any:
    with app.db.read() as session:
        return session.execute(select(_received).where(_received.c.id == mail_id)).one()


def raw_mail(from_: str, subject: str, *, body: str = "Betroffenes System: HP\n",
             extra: str = "") -> bytes:
    return (f"From: {from_}\nTo: incident@support.example.com\nSubject: {subject}\n"
            f"Message-ID: <{abs(hash((from_, subject)))}@test>\n{extra}\n{body}").encode()


@pytest.fixture
def config(database_url: str, tmp_path: Path, run_cli: Any) -> Path:
    path = write_config(tmp_path / "ticketgw.toml", database_url, extra=CONFIG)
    assert run_cli("--config", str(path), "db", "upgrade").exit_code == 0
    return path


def listed(run_cli: Any, config: Path, *args: str) -> list[dict[str, Any]]:
    result = run_cli("--config", str(config), *args, "--json")
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout))


# ---------------------------------------------------------------- 1. an empty mail


def smtp_empty_data(port: int) -> str:
    """DATA followed at once by "." (smtplib always sends a line break before it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")

        def reply() -> str:
            while True:
                line = reader.readline().decode()
                if line[3:4] != "-":
                    return line.strip()

        def command(text: str) -> str:
            sock.sendall(text.encode() + b"\r\n")
            return reply()

        reply()
        assert command("EHLO test").startswith("250")
        assert command("MAIL FROM:<max@acme.example>").startswith("250")
        assert command("RCPT TO:<incident@support.example.com>").startswith("250")
        assert command("DATA").startswith("354")
        answer = command(".")
        command("QUIT")
        return answer


def test_an_empty_mail_does_not_hold_back_the_thirty_after_it(app: App) -> None:
    """It jammed the worker: `_groups` raised IndexError for a 0-byte first mail, so every
    lease of the batch failed and the 30 mails behind it waited in lock-step."""
    with running_listener(app) as port:
        assert smtp_empty_data(port).startswith("250")
        for i in range(30):
            send(port, customer_mail(f"Anliegen {i}", message_id=f"<m{i}@acme>",
                                     body="Betroffenes System: HP\n"))
    results = drain(app)
    assert len(results) == 31
    assert [r.outcome for r in results].count("created") == 30
    empty = next(r for r in results if r.outcome != "created")
    assert row(app, empty.mail_id).size == 0
    assert empty.outcome in FINAL and row(app, empty.mail_id).status == "done"
    with app.db.read() as session:
        assert len(session.execute(select(_ticket.c.id)).all()) == 30


def test_serve_after_an_empty_mail_makes_the_next_thirty_tickets_at_once(
        database_url: str, tmp_path: Path) -> None:
    """The whole service as deployed (demo data): an empty DATA, then 30 mails and the
    CVE-2023-27043 From of the issue, all over SMTP; the worker makes the 31 tickets without
    waiting for a lease to end, and the spoofed one is not the demo customer's."""
    smtp_port, web_port = free_port(), free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, smtp_port=smtp_port,
                          web_port=web_port)
    with serving(["--config", str(config), "serve", "--demo"], tmp_path,
                 f"http://127.0.0.1:{web_port}/healthz") as process:
        assert smtp_empty_data(smtp_port).startswith("250")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            for i in range(30):
                client.sendmail("max.mustermann@acme.example", ["stoerung@support.example.com"],
                                raw_mail("Max Mustermann <max.mustermann@acme.example>",
                                         f"Anliegen {i}").replace(
                                    b"incident@", b"stoerung@"))
            client.sendmail("eve@evil.example", ["stoerung@support.example.com"], raw_mail(
                'max.mustermann@acme.example"@evil.example', "Gefälscht").replace(
                    b"incident@", b"stoerung@"))
        deadline, made = time.monotonic() + 60, []
        while time.monotonic() < deadline and len(made) < 31:
            listed = subprocess.run([*TICKETGW, "--config", str(config), "ticket", "list",
                                     "--json"], capture_output=True, text=True)
            assert listed.returncode == 0, listed.stderr
            made = [t for t in json.loads(listed.stdout)
                    if str(t["title"]).startswith(("Anliegen ", "Gefälscht"))]
            time.sleep(0.5)
        assert len(made) == 31, f"{len(made)} of 31 tickets within 60 s"
        customers = {t["title"]: t["customer"] for t in made}
        assert customers.pop("Gefälscht") is None
        assert set(customers.values()) == {"mmuster"}
        assert "Traceback" not in stop_cleanly(process)


def test_empty_mails_anywhere_in_a_batch_are_processed_with_it(app: App) -> None:
    ids = stored(app, b"", raw_mail("max@acme.example", "Erste"), b"", b"\r\n",
                 raw_mail("max@acme.example", "Zweite"), b"")
    results = {r.mail_id: r.outcome for r in drain(app)}
    assert set(results) == set(ids) and set(results.values()) <= FINAL
    assert [results[ids[1]], results[ids[4]]] == ["created", "created"]


# ---------------------------------------------------------------- 2. recursion bombs


def test_address_headers_nested_thousands_deep_are_processed_at_once(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    """From and To of thousands of nested comments or groups (a "stack overflow" mail of
    MIME test suites) raised RecursionError in the stdlib's address parser: a 2,700-line
    traceback per attempt, quarantine after ~5 minutes. Now they are read without
    recursion: processed on the first attempt, one log line each."""
    deep = "(" * 5000 + "x" + ")" * 5000
    groups = "g:" * 5000 + "max@acme.example" + ";" * 5000
    comments_id, groups_id, to_id = stored(
        app, raw_mail(f"{deep} max@acme.example", "Tief kommentiert"),
        raw_mail(groups, "Tief gruppiert"),
        raw_mail("max@acme.example", "Tiefes To", extra=f"Cc: {groups}\nTo: {deep} a@b\n"))
    with caplog.at_level(logging.INFO, logger="gateway"):
        results = {r.mail_id: r for r in drain(app)}
    assert {i: r.outcome for i, r in results.items()} == {
        comments_id: "created", groups_id: "created", to_id: "created"}
    assert row(app, comments_id).from_address == "max@acme.example"
    groups_row = row(app, groups_id)       # names nobody: the header as written is shown
    assert groups_row.from_address.startswith("g:g:g:") and groups_row.attempts == 1
    assert "not a registered customer" in groups_row.reason
    assert not [r for r in caplog.records if r.exc_info]
    assert all(r.getMessage().count("\n") == 0 for r in caplog.records)


def test_a_recursion_error_anywhere_in_understanding_quarantines_at_once(
        app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The safety net: whatever part of parsing recurses too deeply does so again on every
    attempt, so the mail is quarantined on the first one, with one line in the log."""
    def recursing(*args: Any, **kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(worker, "understand_stored", recursing)
    [mail_id] = stored(app, raw_mail("Max <max@acme.example>", "Rekursion"))
    with caplog.at_level(logging.INFO, logger="gateway"):
        [result] = process_due(app.db, app.stages)
    assert result.outcome == "quarantined" and "RecursionError" in result.reason
    quarantined = row(app, mail_id)
    assert (quarantined.status, quarantined.attempts) == ("quarantined", 1)
    assert (quarantined.from_address, quarantined.subject) == ("max@acme.example", "Rekursion")
    assert not [r for r in caplog.records if r.exc_info]
    assert [r.levelname for r in caplog.records if "Rekursion" in r.getMessage()] == [
        "ERROR", "INFO"]


# ---------------------------------------------------------------- 3. ingest's exit code


def test_ingest_of_an_empty_stdin_stores_an_empty_mail(run_cli: Any, config: Path) -> None:
    result = run_cli("--config", str(config), "ingest", "-r", "incident@support.example.com",
                     input="")
    assert result.exit_code == 0, result.output
    [entry] = listed(run_cli, config, "inbound", "list")
    assert entry["outcome"] in FINAL
    shown = json.loads(run_cli("--config", str(config), "inbound", "show", str(entry["id"]),
                               "--json").stdout)
    assert shown["size"] == 0 and shown["status"] == "done"


def test_ingest_exits_0_once_stored_whatever_processing_does(
        run_cli: Any, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 1 after the mail was stored made Postfix bounce a mail we keep."""
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the pipeline broke")

    monkeypatch.setattr(worker, "process_batch", broken)
    result = run_cli("--config", str(config), "ingest", "-r", "incident@support.example.com",
                     input="From: max@acme.example\nSubject: Drucker\n\nHP\n")
    assert result.exit_code == 0, result.output
    assert ("is stored, but processing it failed (RuntimeError: the pipeline broke); it "
            "stays queued for the service's worker") in result.stderr
    assert "Traceback" not in result.output
    [entry] = listed(run_cli, config, "inbound", "list")
    assert entry["outcome"] == "pending"

    monkeypatch.setattr(worker, "lease_ids", broken)        # failing before processing too
    again = run_cli("--config", str(config), "ingest", input="Subject: zwei\n\nx\n")
    assert again.exit_code == 0 and "is stored, but processing it failed" in again.stderr
    assert len(listed(run_cli, config, "inbound", "list")) == 2


# ---------------------------------------------------------------- 4. quarantine names the mail


def test_quarantined_mail_shows_its_from_and_subject(run_cli: Any, config: Path,
                                                      tmp_path: Path) -> None:
    nested = (b"From: =?utf-8?q?J=C3=BCrgen?= <juergen@acme.example>\n"
              b"Subject: =?utf-8?q?Tief_verschachtelt_=C3=BCberall?=\n"
              b"Content-Type: multipart/mixed; boundary=b0\n\n")
    for level in range(1, 100):
        nested += f"--b{level - 1}\nContent-Type: multipart/mixed; boundary=b{level}\n\n".encode()
    path = tmp_path / "deep.eml"
    path.write_bytes(nested)
    result = run_cli("--config", str(config), "ingest", "-r", "incident@support.example.com",
                     str(path))
    assert result.exit_code == 0, result.output
    assert "from 'juergen@acme.example', subject 'Tief verschachtelt überall'" in result.stderr
    [entry] = listed(run_cli, config, "quarantine", "list")
    assert (entry["from"], entry["subject"], entry["rule"]) == (
        "juergen@acme.example", "Tief verschachtelt überall", "parse-limit")
    [logged] = listed(run_cli, config, "inbound", "list", "--outcome", "quarantined")
    assert logged == entry
    table = run_cli("--config", str(config), "quarantine", "list").stdout
    assert "juergen@acme.example" in table and "Tief verschachtelt überall" in table


def test_mail_that_fails_or_kills_the_worker_is_quarantined_with_its_from_and_subject(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    real = worker.route_and_apply

    def buggy(session: Any, stages: Any, understood: Any, mail_id: int | None) -> Any:
        if "Absturz" in understood.parsed.subject:
            raise RuntimeError("a bug")
        return real(session, stages, understood, mail_id)

    monkeypatch.setattr(worker, "route_and_apply", buggy)
    large = raw_mail("Eva <eva@acme.example>", "Riesig", body="x" * (RAW_IN_ROW_LIMIT + 10))
    failing, died, died_large, fine = stored(
        app, raw_mail("Max <max@acme.example>", "Absturz beim Verarbeiten"),
        raw_mail('max@acme.example"@evil.example', "Worker stirbt"), large,
        raw_mail("Max <max@acme.example>", "Normal"))
    with app.db.write() as session:      # their worker died in each of its attempts
        session.execute(update(_received).where(_received.c.id.in_([died, died_large]))
                        .values(attempts=MAX_ATTEMPTS))
    results = {r.mail_id: r.outcome for r in drain(app)}
    assert results == {failing: "pending", fine: "created"}
    pending = row(app, failing)
    assert (pending.from_address, pending.subject) == ("max@acme.example",
                                                       "Absturz beim Verarbeiten")
    for _ in range(MAX_ATTEMPTS - 1):
        with app.db.write() as session:
            session.execute(update(_received).where(_received.c.id == failing)
                            .values(next_attempt=utcnow()))
        drain(app)
    shown = {r.id: (r.status, r.from_address, r.subject) for r in
             (row(app, i) for i in (failing, died, died_large))}
    assert shown == {
        failing: ("quarantined", "max@acme.example", "Absturz beim Verarbeiten"),
        died: ("quarantined", 'max@acme.example"@evil.example', "Worker stirbt"),
        died_large: ("quarantined", "eva@acme.example", "Riesig")}


# ---------------------------------------------------------------- 8. ambiguous From


def send_raw(port: int, raw: bytes, sender: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(sender, ["incident@support.example.com"], raw)


def test_an_ambiguous_from_is_never_credited_to_the_customer(app: App, customer: None) -> None:
    """CVE-2023-27043 class: `max@acme.example"@evil.example` was read as the registered
    customer max@acme.example (mmuster): it opened tickets as him and appended to his. Now
    it is an unknown sender: the template address still takes mail from unknown senders
    (as configured), but nothing is credited to the customer."""
    spoof = 'max@acme.example"@evil.example'
    with running_listener(app) as port:
        send(port, customer_mail("Drucker", message_id="<real@acme>",
                                 body="Betroffenes System: HP\n"))
        [real] = drain(app)
        assert real.outcome == "created"
        number = real.ticket_number
        send_raw(port, raw_mail(spoof, "Neues Anliegen"), "eve@evil.example")
        send_raw(port, raw_mail(spoof, f"AW: Drucker [Ticket#{number}]",
                                body="#state closed\nSchliessen bitte\n"), "eve@evil.example")
        new, reply = drain(app)
    assert new.outcome == "created" and "unknown sender is not a registered customer" in \
        new.reason
    assert reply.outcome == "created" and reply.ticket_number != number
    assert f"may not write to ticket {number}" in reply.reason
    with app.db.read() as session:
        mine = ticket_detail(session, str(number))
        spoofed = [ticket_detail(session, str(r.ticket_number)) for r in (new, reply)]
    assert [a["message_id"] for a in mine["articles"]] == ["<real@acme>"]
    assert mine["state"] != "closed"
    assert [t["customer"] for t in spoofed] == [None, None]
    assert row(app, new.mail_id).from_address == spoof       # shown as written, credits nobody
    with app.db.read() as session:                           # the customer got only his ack
        outbox = session.execute(select(_outbound.c.event, _outbound.c.recipients)).all()
    assert [event for event, to in outbox if "max@acme.example" in to] == ["ack"]


def test_an_ambiguous_from_is_not_staff(app: App, customer: None) -> None:
    """The staff check sees no sender either: no commands, no answer to the customer."""
    with running_listener(app) as port:
        send(port, customer_mail("Drucker", message_id="<real@acme>",
                                 body="Betroffenes System: HP\n"))
        [real] = drain(app)
        send_raw(port, raw_mail('anna.agent@example.com"@evil.example',
                                f"AW: Drucker [Ticket#{real.ticket_number}]",
                                body="#state closed\nErledigt.\n"), "eve@evil.example")
        [spoofed] = drain(app)
    assert spoofed.ticket_number != real.ticket_number and "may not write" in spoofed.reason
    with app.db.read() as session:
        assert ticket_detail(session, str(real.ticket_number))["state"] != "closed"


def test_explain_says_why_a_from_names_nobody(run_cli: Any, config: Path,
                                              tmp_path: Path) -> None:
    path = tmp_path / "spoof.eml"
    path.write_bytes(raw_mail('max@acme.example"@evil.example', "Drucker"))
    report = json.loads(run_cli("--config", str(config), "explain", str(path), "--json").stdout)
    assert report["from"] == ("none: From is not one unambiguous address (an unclosed quote); "
                              "taken as no From")
    assert report["customer"] == "none (no sender)"


def test_header_values_longer_than_their_columns_are_cut_not_retried(app: App) -> None:
    """PostgreSQL refuses a value longer than its column (SQLite stores it anyway): a subject
    of 1,500 characters, 150 recipients in To (about 4,500 characters) and a 1,100-character
    Message-ID used to fail every attempt and end in quarantine. Such a mail is a ticket like
    any other; what is cut is only the stored copy (the raw mail keeps every byte)."""
    recipients = ", ".join(f"colleague{i:03d}@acme.example" for i in range(150))
    raw = (f"From: Max Mustermann <max@acme.example>\nTo: incident@support.example.com, "
           f"{recipients}\nSubject: {'Drucker ' * 188}\nMessage-ID: <{'m' * 1100}@acme.example>\n"
           f"\nBetroffenes System: HP\n").encode()
    [mail_id] = stored(app, raw)
    [result] = drain(app)
    assert (result.mail_id, result.outcome) == (mail_id, "created")
    stored_row = row(app, mail_id)
    assert stored_row.status == "done" and stored_row.attempts == 1
    assert len(stored_row.subject) <= 1000 and len(stored_row.message_id) <= 1000
    with app.db.read() as session:
        detail = ticket_detail(session, result.ticket_number or "")
    assert detail["title"].startswith("Drucker Drucker") and len(detail["title"]) <= 1000
