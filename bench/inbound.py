"""Benchmark: inbound mail through the real `ticketgw serve`, as a ratio to a bare SMTP server.

What is measured, per backend (SQLite in a temp dir, PostgreSQL in a fresh database), mail kind
and number of client connections:
- gateway:  `python -m gateway --config CFG serve` in a subprocess: the SMTP listener commits
            each raw mail (group commit) before answering 250; its worker process parses,
            routes, creates one ticket per mail and queues the answers (the acknowledgement
            to the customer, a notification to each of the queue's staff) in the same
            transaction. Clock: from the first MAIL FROM until every mail sent is no longer
            `pending` in `received_mail` (polled every 20 ms): the end-to-end rate ("until
            committed"). Then until every answer the run caused has left the outbox (no
            `queued` row in `outbound_mail`; the answers go into a Maildir, fsynced):
            the sustained rate ("until delivered"). The time until the last `250` came back
            gives the intake rate (the listener's share).
- baseline: an aiosmtpd server in its own subprocess (`--serve-baseline PORT`) whose handler
            only answers `250 OK`, receiving the same mails over the same number of
            connections, in the same round.

Mails (built before the clock starts, CRLF line endings, a distinct Message-ID and subject
each, so each becomes its own ticket; each from its own registered customer, because
acknowledgements are limited per sender and hour; to a template address):
- text:       ~3.9 KiB of plain text, 8bit UTF-8.
- attachment: a short text part and a 200 KiB random "PDF", base64 (~275 KiB in all); the
              PDF is different in every mail, so every attachment is a new blob.

Clients: N threads, each with one smtplib connection (opened, EHLO done, before the clock
starts) sending every N-th mail. Rounds alternate baseline, gateway for every configuration;
the table gives medians and `ratio = median gateway mails/s / median baseline mails/s`.
One gateway (one database) per backend serves all rounds; each run counts only its own new
mails (ids above the highest id before the run) and checks that every one became a ticket.
CPU ms/mail come from /proc/PID/stat (utime + stime) of the baseline server, the gateway's
listener process (serve) and its worker process, over each run; for PostgreSQL on this
machine also of the database server ("db": the postmaster with its children, the living
ones and those that ended; it includes the benchmark's own polling, a small share). The sum
is what a ticket costs the machine, a steadier figure here than mails/s.

Memory (`--memory-mb`, 0 skips it): on the freshly started gateway, after the warm-up, the
peak RSS (VmHWM, reset through /proc/PID/clear_refs) of the baseline server, the listener and
the worker while one mail with a 25 MiB attachment is received and processed; reported as the
growth over the RSS before, and as a multiple of the attachment's (decoded) size.

Run:  .venv/bin/python bench/inbound.py [--backends sqlite,postgresql] [--connections 1,8]
      [--kinds text,attachment] [--text-count 400] [--attachment-count 60] [--rounds 5]
      [--memory-mb 25] [--staff 1] [--pg-admin-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from itertools import count
from pathlib import Path
from typing import Any

from scratch import scratch_database  # bench/scratch.py: the run's own database
from sqlalchemy import Engine, create_engine, text

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ENV_DROPPED = ("TICKETGW_DATABASE_URL", "TICKETGW_CONFIG")  # would send the bench elsewhere
DOMAIN = "support.example.com"
RCPT = f"incident@{DOMAIN}"
CUSTOMER_DOMAIN = "customer.example"
MAX_SIZE_MB = 60
POLL = 0.02                  # seconds between "all processed?" queries
WARMUP = {"text": 20, "attachment": 4, "reply": 20}   # per backend, before round 1, unmeasured
KINDS = ("text", "attachment", "reply")
OUTCOME = {"text": "created", "attachment": "created", "reply": "appended"}
CLK_TCK = os.sysconf("SC_CLK_TCK")

# -------------------------------------------------------------------------------- the mails

_SENTENCES = (
    "Hello support team, since this morning the printer on the third floor shows error 50.4 "
    "and stops after every second page. ",
    "We already switched it off and on again, replaced the toner cartridge and checked the "
    "paper tray, but nothing changed. ",
    "Could you please send someone today? Our accounting department has to print the monthly "
    "invoices before Friday. ",
    "The device is an office laser printer, inventory number 4711, located next to room 3.14. ",
)
_BODY_TEXT = ("".join(_SENTENCES) * 12)[:3800]
TEXT_BODY = ("\r\n".join(textwrap.wrap(_BODY_TEXT, 76))
             + "\r\n\r\nViele Grüße\r\nAnna Kunde\r\nBuchhaltung, Zimmer 3.14\r\n").encode()
ATTACHMENT_SIZE = 200 * 1024


def sender_of(customer: int) -> str:
    """Every mail comes from its own registered customer: acknowledgements are limited per
    sender and hour (RFC 3834), and real mail comes from many people."""
    return f"customer{customer}@{CUSTOMER_DOMAIN}"


def _headers(tag: str, number: int, customer: int, content_type: str) -> bytes:
    return (
        f"From: Customer {customer} <{sender_of(customer)}>\r\n"
        f"To: Service Desk <{RCPT}>\r\n"
        f"Subject: Printer on floor 3: error 50.4 ({tag} #{number})\r\n"
        f"Message-ID: <{tag}.{number}@customer.example>\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        "MIME-Version: 1.0\r\n"
        f"{content_type}\r\n"
    ).encode()


def text_mail(tag: str, number: int, customer: int) -> bytes:
    return (_headers(tag, number, customer, "Content-Type: text/plain; charset=utf-8\r\n"
                                  "Content-Transfer-Encoding: 8bit")
            + b"\r\n" + TEXT_BODY)


def attachment_mail(tag: str, number: int, customer: int, size: int = ATTACHMENT_SIZE) -> bytes:
    """multipart/mixed: a short note and a random (so never deduplicated) PDF, base64."""
    boundary = f"==bench-{secrets.token_hex(8)}=="
    pdf = b"%PDF-1.4\n" + os.urandom(max(0, size - 15)) + b"\n%%EOF\n"
    encoded = base64.encodebytes(pdf).replace(b"\n", b"\r\n")
    return b"".join((
        _headers(tag, number, customer, f'Content-Type: multipart/mixed; boundary="{boundary}"'),
        b"\r\nThis is a multi-part message in MIME format.\r\n",
        f"--{boundary}\r\n".encode(),
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        TEXT_BODY[:500], b"\r\n",
        f"--{boundary}\r\n".encode(),
        f'Content-Type: application/pdf; name="report-{number}.pdf"\r\n'
        f'Content-Disposition: attachment; filename="report-{number}.pdf"\r\n'.encode(),
        b"Content-Transfer-Encoding: base64\r\n\r\n",
        encoded,
        f"--{boundary}--\r\n".encode(),
    ))


def reply_mail(tag: str, number: int, customer: int) -> bytes:
    """The customer's answer to their own ticket (`text_mail(tag, number, customer)`): a
    reply to the acknowledgment, found by In-Reply-To/References, quoting the original."""
    original = f"<{tag}.{number}@customer.example>"
    return (
        f"From: Customer {customer} <{sender_of(customer)}>\r\n"
        f"To: Service Desk <{RCPT}>\r\n"
        f"Subject: Re: Printer on floor 3: error 50.4 ({tag} #{number})\r\n"
        f"Message-ID: <re.{tag}.{number}@customer.example>\r\n"
        f"In-Reply-To: {original}\r\nReferences: {original}\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        "The printer now also shows error 13.2 after the first page. The toner is new.\r\n"
        "\r\nViele Grüße\r\nAnna Kunde\r\n\r\n"
        "On Monday, Service Desk wrote:\r\n"
    ).encode() + b"".join(b"> " + line + b"\r\n" for line in TEXT_BODY.split(b"\r\n")[:40])


Mail = tuple[str, bytes]    # envelope sender, raw bytes


def build_mails(kind: str, count: int, tag: str, customers: Iterator[int]) -> list[Mail]:
    """`count` mails of `kind`, each from the next customer. For "reply" the tickets they
    answer are `build_mails("text", count, tag, …)` of the same customers, to be sent first
    (`opening_mails`)."""
    make = {"text": text_mail, "attachment": attachment_mail, "reply": reply_mail}[kind]
    mails = []
    for i in range(count):
        customer = next(customers)
        mails.append((sender_of(customer), make(tag, i, customer)))
    return mails


def opening_mails(replies: list[Mail], tag: str) -> list[Mail]:
    """The new-ticket mails that `replies` (built with `tag`) answer."""
    return [(sender, text_mail(tag, i, int(sender.split("@")[0].removeprefix("customer"))))
            for i, (sender, _raw) in enumerate(replies)]


# -------------------------------------------------------------------------------- client


def send_all(port: int, mails: list[Mail], connections: int) -> tuple[float, float]:
    """Send the mails over `connections` parallel SMTP sessions (opened before the clock
    starts); (start, time the last 250 came back), both `time.monotonic()`."""
    shares = [mails[i::connections] for i in range(connections)]
    clients = []
    for _ in shares:
        client = smtplib.SMTP("127.0.0.1", port, timeout=300)
        client.ehlo()
        clients.append(client)
    barrier = threading.Barrier(len(shares) + 1)
    ends = [0.0] * len(shares)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        barrier.wait()
        try:
            for sender, raw in shares[k]:
                refused = clients[k].sendmail(sender, [RCPT], raw)
                if refused:
                    raise RuntimeError(f"recipients refused: {refused}")
        except BaseException as exc:
            errors.append(exc)
        ends[k] = time.monotonic()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(shares))]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.monotonic()
    for thread in threads:
        thread.join()
    for client in clients:
        with suppress(smtplib.SMTPException, OSError):
            client.quit()
    if errors:
        raise RuntimeError(f"{len(errors)} SMTP session(s) failed: {errors[0]!r}")
    return start, max(ends)


# -------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_smtp(port: int, proc: subprocess.Popen[bytes], log: Path | None,
                  timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"server exited with {proc.returncode} at start:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(3) == b"220":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no SMTP banner on port {port} after {timeout} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 40) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def server_cpu_seconds(postmaster: int) -> float:
    """CPU of a local PostgreSQL server: the postmaster, its ended children (cutime,
    cstime) and its living ones."""
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(v) for v in fields[11:15]) / CLK_TCK
    for child in Path(f"/proc/{postmaster}/task").glob("*/children"):
        for pid in child.read_text().split():
            with suppress(OSError):
                total += cpu_seconds(int(pid))
    return total


def memory_kib(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROPPED}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Baseline:
    """aiosmtpd in a subprocess of this script (`--serve-baseline PORT`): answers 250."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / "baseline.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "--serve-baseline", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, env=clean_env())
        wait_for_smtp(self.port, self.proc, self.log)

    def stop(self) -> None:
        stop_process(self.proc)


def serve_baseline(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    class OkHandler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = await loop.create_server(
            lambda: SMTP(OkHandler(), data_size_limit=MAX_SIZE_MB * 1024 * 1024,
                         decode_data=False, enable_SMTPUTF8=True, loop=loop),
            host="127.0.0.1", port=port)
        await stop.wait()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


CONFIG = """\
[database]
url = "{url}"

[storage]
data_dir = "{tmp}/var"

[inbound]
smtp = "127.0.0.1:{port}"
domains = ["{domain}"]
max_message_size = "{max_mb}MB"

[outbound]
transport = "maildir:{tmp}/var/outbox"
from = "Service Desk <support@{domain}>"

[web]
listen = ""

[[queue]]
id = "servicedesk"
name = "Service Desk"
from = "Service Desk <support@{domain}>"
staff = [{staff_list}]
language = "en"
{staff_blocks}
[[template]]
id = "incident"
group = "incident"
name = {{ en = "General incident report" }}
addresses = ["{rcpt}"]
queue = "servicedesk"
priority = 3
"""


def write_config(path: Path, url: str, tmp: Path, port: int, staff: int) -> None:
    addresses = [f"agent{i}@example.com" for i in range(staff)]
    path.write_text(CONFIG.format(
        url=url, tmp=tmp, port=port, domain=DOMAIN, max_mb=MAX_SIZE_MB, rcpt=RCPT,
        staff_list=", ".join(f'"{a}"' for a in addresses),
        staff_blocks="".join(f'\n[[staff]]\nemail = "{a}"\nname = "Agent {i}"\nlanguage = "en"\n'
                             for i, a in enumerate(addresses))))


class Gateway:
    """`ticketgw serve` on its own config and database, started as a subprocess."""

    def __init__(self, url: str, tmp: Path, *, customers: int, staff: int) -> None:
        self.url, self.tmp = url, tmp
        self.port = free_port()
        self.config = tmp / "ticketgw.toml"
        write_config(self.config, url, tmp, self.port, staff)
        self.log = tmp / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.worker_pid = 0
        self.outbox_pid = 0      # the outbox's own process (0: a thread of serve)
        self.cli("db", "upgrade")
        csv = tmp / "customers.csv"
        csv.write_text("username,email,name,organisation,language\n" + "".join(
            f"customer{i},{sender_of(i)},Customer {i},,en\n" for i in range(customers)))
        self.cli("customer", "import", str(csv))
        self.engine: Engine = create_engine(url)

    def cli(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "gateway", "--config", str(self.config), *args],
                       check=True, env=clean_env(), stdout=subprocess.DEVNULL)

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", str(self.config), "serve"],
                stdout=out, stderr=subprocess.STDOUT, env=clean_env())
        wait_for_smtp(self.port, self.proc, self.log)
        self.worker_pid, self.outbox_pid = self._find_children()

    def _children(self) -> dict[int, str]:
        """The spawned children of `serve` and their names (`/proc/PID/comm`)."""
        assert self.proc is not None
        found = {}
        for children in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            for pid in children.read_text().split():
                with suppress(OSError):
                    if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        found[int(pid)] = Path(f"/proc/{pid}/comm").read_text().strip()
        return found

    def _find_children(self) -> tuple[int, int]:
        """(worker, outbox) process ids; outbox 0 for a gateway whose outbox is a thread of
        `serve` (before 2026-12-07; such a gateway's only child is its worker)."""
        for _ in range(200):
            children = self._children()
            named = {name: pid for pid, name in children.items()}
            if "ticketgw-worker" in named and "ticketgw-outbox" in named:
                return named["ticketgw-worker"], named["ticketgw-outbox"]
            if len(children) == 1 and not any(n.startswith("ticketgw-") for n in named):
                time.sleep(0.5)                  # a newer gateway names its children late
                if len(again := self._children()) == 1 and again == children:
                    return next(iter(children)), 0
            time.sleep(0.05)
        raise RuntimeError("the worker process of ticketgw serve was not found")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            if self.worker_pid:   # a daemon child; serve joins it, but make sure
                with suppress(ProcessLookupError):
                    os.kill(self.worker_pid, signal.SIGKILL)
        self.engine.dispose()

    def postmaster(self) -> int | None:
        """The PostgreSQL server's main process when it runs on this machine (its /proc
        readable); None for SQLite or a remote server."""
        if not self.url.startswith("postgresql"):
            return None
        backend = int(self.scalar("SELECT pg_backend_pid()"))
        try:
            parent = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
            server_cpu_seconds(parent)
        except (OSError, ValueError, IndexError):
            return None
        return parent

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def max_id(self) -> int:
        return int(self.scalar("SELECT coalesce(max(id), 0) FROM received_mail"))

    def wait_processed(self, after_id: int, count: int, timeout: float = 600) -> float:
        """Poll until `count` mails above `after_id` are no longer pending; that moment."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.scalar("SELECT count(*) FROM received_mail WHERE status = 'pending'")
            if left == 0:
                now = time.monotonic()
                stored = self.scalar("SELECT count(*) FROM received_mail WHERE id > :id",
                                     id=after_id)
                if stored != count:
                    raise RuntimeError(f"{stored} mails stored, {count} sent")
                return now
            if time.monotonic() > deadline:
                raise RuntimeError(f"{left} mails still pending after {timeout} s")
            time.sleep(POLL)

    def wait_delivered(self, timeout: float = 600) -> float:
        """Poll until no answer is `queued` in the outbox any more; that moment."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.scalar("SELECT count(*) FROM outbound_mail WHERE status = 'queued'")
            if left == 0:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{left} answers still queued after {timeout} s")
            time.sleep(POLL)

    def check(self, after_id: int, count: int, outcome: str = "created") -> None:
        """Not a timing check: every mail of the run must have become a new ticket
        (`created`), or an article of its ticket (`appended`, the replies)."""
        done = self.scalar("SELECT count(*) FROM received_mail WHERE id > :id "
                           "AND outcome = :outcome AND ticket_id IS NOT NULL", id=after_id,
                           outcome=outcome)
        if done != count:
            with self.engine.connect() as connection:
                rows = connection.execute(text(
                    "SELECT outcome, reason FROM received_mail WHERE id > :id "
                    "AND outcome <> :outcome LIMIT 3"), {"id": after_id,
                                                         "outcome": outcome}).all()
            raise RuntimeError(f"{done} of {count} mails were {outcome}; e.g. {rows}")



def database(backend: str, tmp: Path, admin_url: str) -> AbstractContextManager[str]:
    return scratch_database(backend, tmp, admin_url, sqlite_name="gateway.db")


# -------------------------------------------------------------------------------- the runs


@dataclass
class Series:
    baseline: list[float] = field(default_factory=list)       # mails/s
    intake: list[float] = field(default_factory=list)         # gateway, until the last 250
    end_to_end: list[float] = field(default_factory=list)     # gateway, until all processed
    delivered: list[float] = field(default_factory=list)      # gateway, until all answers sent
    cpu_baseline: list[float] = field(default_factory=list)   # ms CPU per mail
    cpu_listener: list[float] = field(default_factory=list)
    cpu_worker: list[float] = field(default_factory=list)
    cpu_outbox: list[float] = field(default_factory=list)     # its own process, if any
    cpu_database: list[float] = field(default_factory=list)   # PostgreSQL's server, if local


def run_baseline(baseline: Baseline, mails: list[bytes], connections: int,
                 series: Series) -> None:
    cpu = cpu_seconds(baseline.proc.pid)
    start, end = send_all(baseline.port, mails, connections)
    series.cpu_baseline.append((cpu_seconds(baseline.proc.pid) - cpu) * 1000 / len(mails))
    series.baseline.append(len(mails) / (end - start))


def run_gateway(gateway: Gateway, mails: list[bytes], connections: int,
                series: Series | None, outcome: str = "created") -> None:
    first = gateway.max_id()
    postmaster = gateway.postmaster()
    cpu_l, cpu_w = cpu_seconds(gateway.pid), cpu_seconds(gateway.worker_pid)
    cpu_o = cpu_seconds(gateway.outbox_pid) if gateway.outbox_pid else 0.0
    cpu_d = server_cpu_seconds(postmaster) if postmaster else 0.0
    start, answered = send_all(gateway.port, mails, connections)
    done = gateway.wait_processed(first, len(mails))
    delivered = gateway.wait_delivered()
    cpu_l, cpu_w = cpu_seconds(gateway.pid) - cpu_l, cpu_seconds(gateway.worker_pid) - cpu_w
    if gateway.outbox_pid:
        cpu_o = cpu_seconds(gateway.outbox_pid) - cpu_o
    if postmaster:
        cpu_d = server_cpu_seconds(postmaster) - cpu_d
    gateway.check(first, len(mails), outcome)
    if series is not None:
        series.intake.append(len(mails) / (answered - start))
        series.end_to_end.append(len(mails) / (done - start))
        series.delivered.append(len(mails) / (delivered - start))
        series.cpu_listener.append(cpu_l * 1000 / len(mails))
        series.cpu_worker.append(cpu_w * 1000 / len(mails))
        if gateway.outbox_pid:
            series.cpu_outbox.append(cpu_o * 1000 / len(mails))
        if postmaster:
            series.cpu_database.append(cpu_d * 1000 / len(mails))


def memory_test(gateway: Gateway, baseline: Baseline, size_mb: int, customer: int
                ) -> dict[str, Any]:
    """Peak RSS growth of each process while one mail with a `size_mb` MiB attachment is
    received (baseline, listener) and processed (worker)."""
    size = size_mb * 1024 * 1024
    mail = (sender_of(customer),
            attachment_mail(f"mem-{secrets.token_hex(4)}", 0, customer, size))
    result: dict[str, Any] = {"size": size, "mail": len(mail[1])}
    pids = {"baseline": baseline.proc.pid, "listener": gateway.pid,
            "worker": gateway.worker_pid}
    if gateway.outbox_pid:
        pids["outbox"] = gateway.outbox_pid
    result["reset"] = all(reset_peak(pid) for pid in pids.values())
    before = {name: memory_kib(pid) for name, pid in pids.items()}
    send_all(baseline.port, [mail], 1)
    first = gateway.max_id()
    start, answered = send_all(gateway.port, [mail], 1)
    done = gateway.wait_processed(first, 1)
    gateway.check(first, 1)
    result.update(intake_s=answered - start, total_s=done - start)
    for name, pid in pids.items():
        rss, peak = before[name]["VmRSS"] * 1024, memory_kib(pid)["VmHWM"] * 1024
        result[name] = {"rss_before": rss, "peak": peak, "growth": peak - rss,
                        "ratio": (peak - rss) / size}
    return result


def bench_backend(backend: str, args: argparse.Namespace, baseline: Baseline
                  ) -> tuple[dict[tuple[str, int], Series], dict[str, Any] | None]:
    configs = [(k, c) for k in args.kinds for c in args.connections]
    per_round = sum(args.attachment_count if k == "attachment" else args.text_count
                    for k, _ in configs)
    expected = (sum(WARMUP[k] for k in args.kinds) + (1 if args.memory_mb else 0)
                + args.rounds * per_round)       # tickets: a reply's opening mail is one
    customers = count()          # one customer per mail, never reused
    results = {config: Series() for config in configs}
    memory = None
    with tempfile.TemporaryDirectory(prefix="tgw-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with database(backend, tmp, args.pg_admin_url) as url:
            gateway = Gateway(url, tmp, customers=expected, staff=args.staff)
            try:
                gateway.start()
                for kind in args.kinds:   # connections, imports, statement caches
                    warm = build_mails(kind, WARMUP[kind], f"warmup-{kind}", customers)
                    if kind == "reply":
                        run_gateway(gateway, opening_mails(warm, f"warmup-{kind}"), 2, None)
                    send_all(baseline.port, warm, 2)
                    run_gateway(gateway, warm, 2, None, OUTCOME[kind])
                if args.memory_mb:
                    memory = memory_test(gateway, baseline, args.memory_mb, next(customers))
                    print(f"  {backend} memory: {describe_memory(memory)}", file=sys.stderr)
                for round_no in range(1, args.rounds + 1):
                    for kind, conns in configs:
                        n = args.attachment_count if kind == "attachment" else args.text_count
                        tag = f"r{round_no}-{kind}-{conns}-{secrets.token_hex(3)}"
                        mails = build_mails(kind, n, tag, customers)
                        series = results[(kind, conns)]
                        if kind == "reply":   # their tickets first, not measured
                            run_gateway(gateway, opening_mails(mails, tag), conns, None)
                        run_baseline(baseline, mails, conns, series)
                        run_gateway(gateway, mails, conns, series, OUTCOME[kind])
                        print(f"  {backend} round {round_no}/{args.rounds} {kind:<10} "
                              f"{conns} conn: baseline {series.baseline[-1]:6.1f}/s, "
                              f"gateway intake {series.intake[-1]:6.1f}/s, "
                              f"end-to-end {series.end_to_end[-1]:6.1f}/s "
                              f"(ratio {series.end_to_end[-1] / series.baseline[-1]:.2f}), "
                              f"delivered {series.delivered[-1]:6.1f}/s "
                              f"(ratio {series.delivered[-1] / series.baseline[-1]:.2f}); "
                              f"CPU ms/mail baseline {series.cpu_baseline[-1]:.2f}, "
                              f"listener {series.cpu_listener[-1]:.2f}, "
                              f"worker {series.cpu_worker[-1]:.2f}"
                              + (f", outbox {series.cpu_outbox[-1]:.2f}"
                                 if series.cpu_outbox else "")
                              + (f", db {series.cpu_database[-1]:.2f}"
                                 if series.cpu_database else ""), file=sys.stderr)
                tickets = gateway.scalar("SELECT count(*) FROM ticket")
                if tickets != expected:
                    raise RuntimeError(f"{backend}: {tickets} tickets, expected {expected}")
                queued = gateway.scalar("SELECT count(*) FROM outbound_mail")
                print(f"  {backend}: {tickets} tickets, {queued} outbound mails queued "
                      f"({queued / tickets:.2f} per ticket)", file=sys.stderr)
            finally:
                gateway.stop()
    return results, memory


def describe_memory(m: dict[str, Any]) -> str:
    mib = 1024 * 1024
    parts = [f"{m['size'] / mib:.0f} MiB attachment ({m['mail'] / mib:.1f} MiB mail), "
             f"250 after {m['intake_s']:.2f} s, processed after {m['total_s']:.2f} s"]
    for name in ("baseline", "listener", "worker", "outbox"):
        if name not in m:
            continue
        p = m[name]
        parts.append(f"{name} RSS {p['rss_before'] / mib:.0f} MiB -> peak {p['peak'] / mib:.0f} "
                     f"MiB (+{p['growth'] / mib:.0f} MiB = {p['ratio']:.1f}x)")
    if not m["reset"]:
        parts.append("(VmHWM could not be reset: peaks include earlier work)")
    return "; ".join(parts)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-baseline":
        serve_baseline(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql (default: both)")
    parser.add_argument("--connections", default="1,8",
                        help="comma-separated numbers of parallel SMTP connections")
    parser.add_argument("--kinds", default="text,attachment",
                        help="text, attachment, reply (a customer's reply to their new "
                             "ticket, sent after the ticket exists)")
    parser.add_argument("--text-count", type=int, default=400,
                        help="text (and reply) mails per configuration and round")
    parser.add_argument("--attachment-count", type=int, default=60,
                        help="attachment mails per configuration and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory-mb", type=int, default=25,
                        help="attachment size (MiB) of the memory test; 0 skips it")
    parser.add_argument("--staff", type=int, default=1,
                        help="staff members on the queue, each notified of every new ticket "
                             "(default 1, as in the sample config)")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL,
                        help="a database to run CREATE/DROP DATABASE from")
    args = parser.parse_args()
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    try:
        args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    except ValueError:
        parser.error("--connections takes numbers, e.g. 1,8")
    if (set(args.backends) - {"sqlite", "postgresql"} or set(args.kinds) - set(KINDS)
            or not args.backends or not args.kinds or min(args.connections, default=0) < 1
            or args.rounds < 1 or args.text_count < 1 or args.attachment_count < 1
            or args.memory_mb < 0 or args.staff < 0):
        parser.error("check the arguments")
    for name in ENV_DROPPED:
        os.environ.pop(name, None)

    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tgw-bench-base-") as tmp_name:
        baseline = Baseline(Path(tmp_name))
        try:
            for backend in args.backends:
                results, memory = bench_backend(backend, args, baseline)
                rows.append((backend, results, memory))
        finally:
            baseline.stop()

    med = statistics.median
    print(f"\n{args.rounds} rounds, medians; {args.text_count} text / {args.attachment_count} "
          f"attachment mails per run; {time.monotonic() - started:.0f} s in all")
    print(f"{'backend':<10} {'mail':<10} {'conns':>5} {'baseline/s':>10} {'intake/s':>9} "
          f"{'gateway/s':>9} {'intake':>6} {'ratio':>5} {'delivered/s':>11} {'ratio':>5}  "
          f"{'CPU ms/mail: base':>17} "
          f"{'listener':>8} {'worker':>6} {'outbox':>6} {'db':>5}")
    for backend, results, _ in rows:
        for (kind, conns), s in results.items():
            base, intake, e2e = med(s.baseline), med(s.intake), med(s.end_to_end)
            sent = med(s.delivered)
            print(f"{backend:<10} {kind:<10} {conns:>5} {base:>10.1f} {intake:>9.1f} "
                  f"{e2e:>9.1f} {intake / base:>6.2f} {e2e / base:>5.2f} {sent:>11.1f} "
                  f"{sent / base:>5.2f}  "
                  f"{med(s.cpu_baseline):>17.2f} {med(s.cpu_listener):>8.2f} "
                  f"{med(s.cpu_worker):>6.2f} "
                  + (f"{med(s.cpu_outbox):>6.2f} " if s.cpu_outbox else f"{'-':>6} ")
                  + (f"{med(s.cpu_database):>5.2f}" if s.cpu_database else f"{'-':>5}"))
    for backend, _, memory in rows:
        if memory is not None:
            print(f"memory, {backend}: {describe_memory(memory)}")


if __name__ == "__main__":
    main()
