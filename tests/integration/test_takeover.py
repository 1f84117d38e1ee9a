"""Two `ticketgw serve` instances on one PostgreSQL database and one S3 bucket (a real
SeaweedFS); one is killed with SIGKILL in the middle of a stream of mail while it holds
leases. The survivor takes its received and outbound mail over: every mail that was accepted
with `250` becomes exactly one ticket within 60 s of the kill, and every answer lands in the
shared Maildir exactly once: a batch the victim wrote but did not record is written again
by the survivor under the same file names (named after the outbox row), replacing them.
Files uploaded through either instance download from the other, also after the kill.
Prints the takeover time measured (kill -> last ticket)."""

from __future__ import annotations

import hashlib
import random
import re
import smtplib
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from gateway.store.db import Database
from gateway.store.models import OutboundMail, ReceivedMail, Ticket, table_of
from tests.conftest import write_config
from tests.integration.inbound.test_lifeline import gone
from tests.integration.smtp_helpers import customer_mail
from tests.maildir import Maildir
from tests.serve_helpers import (
    TICKETGW,
    free_port,
    only_child,
    only_worker,
    start,
    stop,
    tickets_titled,
    wait_healthy,
)

_received = table_of(ReceivedMail)
_outbound = table_of(OutboundMail)
_ticket = table_of(Ticket)

DESK = """
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


class Sender(threading.Thread):
    """Sends mail to one instance over SMTP until stopped or refused; remembers the
    subjects the instance accepted (250)."""

    def __init__(self, name: str, port: int, limit: int) -> None:
        super().__init__(name=f"sender-{name}", daemon=True)
        self.label, self.port, self.limit = name, port, limit
        self.accepted: list[str] = []
        self.refused = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stopping.is_set() and len(self.accepted) < self.limit:
            number += 1
            subject = f"Takeover {self.label}{number}"
            sender = f"c{self.label}{number}@acme.example"    # no auto-reply limit is hit
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                    client.send_message(customer_mail(subject, sender=sender,
                                                      message_id=f"<{subject.split()[1]}@t>"),
                                        from_addr=sender,
                                        to_addrs=["incident@support.example.com"])
            except (OSError, smtplib.SMTPException):
                self.refused += 1
                if self.refused > 3:
                    return
                time.sleep(0.05)
                continue
            self.accepted.append(subject)


class Drain(threading.Thread):
    """Reads a process's stderr as it comes, so that its log never fills the pipe."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.lines: list[str] = []
        self.start()

    def run(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)


def leases_held_by(db: Database, holders: list[str]) -> tuple[int, int]:
    with db.read() as session:
        return (session.execute(select(func.count()).where(
                    _received.c.status == "pending",
                    _received.c.lease_holder.in_(holders))).scalar_one(),
                session.execute(select(func.count()).where(
                    _outbound.c.status == "queued",
                    _outbound.c.lease_holder.in_(holders))).scalar_one())


def exchange_file(config: Path, number: str, upload_to: str, download_from: str,
                  content: bytes) -> str:
    """Upload `content` through one instance's file exchange; check the other lists and
    serves it byte for byte. Returns the download path."""
    made = subprocess.run([*TICKETGW, "--config", str(config), "files", "new", "--ticket",
                           number], capture_output=True, text=True, check=True)
    token = made.stdout.strip().rsplit("/files/", 1)[1]
    done = httpx.post(f"{upload_to}/files/{token}", timeout=60,
                      files=[("files", ("dump.bin", content, "application/octet-stream"))])
    assert done.status_code == 303, done.text
    listing = httpx.get(f"{download_from}/files/{token}", timeout=60).text
    link = re.search(rf'href="(/files/{re.escape(token)}/\d+)"', listing)
    assert link, "the other instance does not list the uploaded file"
    assert_serves(download_from, link.group(1), content)
    return link.group(1)


def assert_serves(web: str, path: str, content: bytes) -> None:
    got = httpx.get(f"{web}{path}", timeout=60)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(content).digest()


@pytest.mark.slow
@pytest.mark.backends("postgresql")
def test_a_killed_instances_mail_is_taken_over_by_the_other(
        database_url: str, tmp_path: Path, s3_storage: dict[str, str]) -> None:
    config = write_config(tmp_path / "ticketgw.toml", database_url, extra=DESK)
    config.write_text(config.read_text().replace(
        '[inbound]\nsmtp = ""', '[inbound]\nsmtp = ""\ndomains = ["support.example.com"]'))
    ports = {name: (free_port(), free_port()) for name in ("a", "b")}
    processes: dict[str, subprocess.Popen[str]] = {}
    db = Database(database_url)
    try:
        # one config file for both; what differs comes from the environment (as in
        # docs/admin.md 3.1), the blobs included
        storage = {f"TICKETGW_STORAGE_{key.upper()}": value for key, value in s3_storage.items()}
        for name, (smtp, web) in ports.items():
            processes[name] = start(
                ["--config", str(config), "serve"], tmp_path,
                env={"TICKETGW_INBOUND_SMTP": f"127.0.0.1:{smtp}",
                     "TICKETGW_WEB_LISTEN": f"127.0.0.1:{web}", **storage})
        for name, (_, web) in ports.items():
            wait_healthy(processes[name], f"http://127.0.0.1:{web}/healthz")
        webs = {name: f"http://127.0.0.1:{web}" for name, (_, web) in ports.items()}

        # files: uploaded through either instance, served by the other (a shared bucket)
        with smtplib.SMTP("127.0.0.1", ports["a"][0], timeout=10) as client:
            client.send_message(customer_mail("Dateien", sender="files@acme.example",
                                              message_id="<files@t>"),
                                from_addr="files@acme.example",
                                to_addrs=["incident@support.example.com"])
        made = tickets_titled(config, "Dateien")
        assert made, "no ticket for the file exchange within 30 s"
        number = str(made[0]["number"])
        via_a = random.Random(1).randbytes(9 * 1024 * 1024)     # a multipart upload
        via_b = random.Random(2).randbytes(300 * 1024)
        uploaded_to_a = exchange_file(config, number, webs["a"], webs["b"], via_a)
        exchange_file(config, number, webs["b"], webs["a"], via_b)
        logs = {name: Drain(process) for name, process in processes.items()}
        victim = processes["a"]
        victim_worker = only_worker(victim.pid)
        victim_outbox = only_child(victim.pid, "ticketgw-outbox")
        host = socket.gethostname()
        holders = [f"{host}:{victim_worker}", f"{host}:{victim_outbox}"]

        senders = {name: Sender(name, smtp, limit=400 if name == "a" else 150)
                   for name, (smtp, _) in ports.items()}
        for sender in senders.values():
            sender.start()
        # mid-stream: after some mail, at a moment the victim holds outbound leases (for
        # the first 15 s, only one where it holds received mail's leases too)
        started = time.monotonic()
        while True:
            assert time.monotonic() - started < 120, "the victim never held a lease"
            assert senders["a"].is_alive(), "sending to the victim failed"
            if len(senders["a"].accepted) >= 30:
                received, outbound = leases_held_by(db, holders)
                # either child may still finish a batch in its last milliseconds
                if outbound and (received or time.monotonic() - started > 15):
                    break
            time.sleep(0.002)
        victim.kill()
        killed = time.monotonic()
        victim.wait(timeout=30)
        worker_gone = time.monotonic()
        while not gone(victim_worker) and time.monotonic() - worker_gone < 10:
            time.sleep(0.01)
        assert gone(victim_worker), "the victim's worker outlived it"
        while not gone(victim_outbox) and time.monotonic() - worker_gone < 10:
            time.sleep(0.01)
        assert gone(victim_outbox), "the victim's outbox outlived it"
        # counted once all are gone: a child may commit a batch in its last milliseconds
        held = leases_held_by(db, holders)
        assert sum(held) > 0, "the victim finished its leases before the kill; run again"
        senders["a"].stopping.set()
        senders["a"].join(30)
        print(f"killed instance a holding leases on {held[0]} received and {held[1]} "
              f"outbound mails")
        senders["b"].join(120)

        accepted = senders["a"].accepted + senders["b"].accepted
        last_ticket = None
        while time.monotonic() - killed < 60:
            with db.read() as session:
                titles = Counter(session.execute(select(_ticket.c.title)).scalars())
            if all(titles[subject] for subject in accepted):
                last_ticket = time.monotonic() - killed
                break
            time.sleep(0.1)
        assert last_ticket is not None, (
            f"{sum(1 for s in accepted if not titles[s])} accepted mails have no ticket "
            "60 s after the kill")
        assert max(titles.values()) == 1, [t for t, n in titles.items() if n > 1]

        maildir = Maildir(tmp_path / "var" / "outbox")
        while time.monotonic() - killed < 90:
            with db.read() as session:
                statuses = Counter(session.execute(select(_outbound.c.status)).scalars())
            if set(statuses) == {"sent"}:
                break
            time.sleep(0.2)
        assert set(statuses) == {"sent"}, statuses
        all_sent = time.monotonic() - killed
        with db.read() as session:
            queued_ids = Counter(session.execute(select(_outbound.c.message_id)).scalars())
        delivered = Counter(str(m["Message-ID"]) for m in maildir.messages())
        assert set(delivered) == set(queued_ids)
        twice = [m for m, n in delivered.items() if n > queued_ids[m]]
        assert twice == [], twice
        print(f"accepted {len(senders['a'].accepted)} + {len(senders['b'].accepted)} mails; "
              f"last ticket {last_ticket:.1f} s after the kill, every answer sent "
              f"{all_sent:.1f} s after it; {len(queued_ids)} answers, {len(twice)} delivered "
              "twice")
        # what the dead instance took in is still served by the survivor
        assert_serves(webs["b"], uploaded_to_a, via_a)
        processes["b"].terminate()
        assert processes["b"].wait(timeout=40) == 0
        logs["b"].join(10)
        takeovers = [line for line in logs["b"].lines if "taking over the lease" in line]
        print("".join(takeovers[:3]), end="")
        assert len(takeovers) >= sum(held), "".join(logs["b"].lines[-40:])
    finally:
        for process in processes.values():
            stop(process)
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        db.dispose()
