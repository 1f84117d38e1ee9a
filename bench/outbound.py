"""Benchmark: outbound mail rendered, queued and delivered to a local SMTP relay, as a ratio
to sending the same pre-rendered bytes with plain smtplib to the same relay.

What is measured, per backend (SQLite in a temp dir, PostgreSQL in a fresh database):
- baseline: `smtplib.SMTP.sendmail` of N pre-rendered mails over one connection (opened and
            EHLO done before the clock starts) to the relay: the cost of the SMTP
            transactions alone.
- outbox:   the same N pre-rendered `OutgoingMail`s, each about its own ticket (made before
            the first run), through the real outbox: `enqueue` of each in its own
            `app.db.write()` transaction (as a ticket change would commit it, including the
            ticket's Message-ID row), then `drain` with an `SmtpTransport` until nothing is
            due: lease 20, send each and record its result, one relay connection per batch.
            (Until 2026-12-07 all mails were about one ticket and one recipient; since
            `outbound/ordering.py` that let each drain send just the first of its batch.)
- maildir:  as `outbox`, but drained into a Maildir (`MaildirTransport`, in the run's temp
            dir, on the same disk as the SQLite file) instead of the relay: the fsyncs and
            the result transactions without any SMTP. Its ratio to the SMTP baseline is
            only for scale; compare its mails/s and CPU ms between commits.
- composed: as `maildir`, but the mails are queued as the worker queues answers since
            2026-12-07: composed (`MailRenderer.compose`, before the clock), their texts
            rendered by the drain (`finish`) and stored before they are written: the
            outbox's share of rendering at delivery. Left out when `compose` is missing.
- rendered: as `outbox`, but each mail is first rendered by `MailRenderer.render("ack", …)`
            (Jinja2 text + HTML, headers, MIME serialisation) inside the clock. Left out,
            with a note, when `gateway.outbound.render` cannot be imported.

The relay is aiosmtpd in a subprocess of this script (`--serve-relay PORT`) whose handler only
answers `250`, so its CPU does not compete with this process's GIL. Mails: an "ack" as the
renderer makes it (multipart/alternative, ~2-3 KiB), a distinct Message-ID each; the baseline
and `outbox` send byte-identical mails.

Rounds alternate baseline, outbox, rendered; the table gives medians and
`ratio = median mails/s / median baseline mails/s`, plus where the outbox's time goes
(`enqueue` and `drain` ms/mail, from the medians) and `CPU` ms/mail, this process's CPU
time (all threads: drain and heartbeat) while draining.
To compare two commits, run this script with `PYTHONPATH` pointing at each checkout in
turn (it uses only `drain`, `enqueue`, the transports and `MailRenderer`). Each run
checks that all its mails are `sent` in the database (work done, not a timing check).

Run:  .venv/bin/python bench/outbound.py [--backends sqlite,postgresql] [--count 300]
      [--rounds 5] [--kinds outbox,maildir,composed,rendered] [--pg-admin-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scratch import scratch_database  # bench/scratch.py: the run's own database
from sqlalchemy import func, select

from gateway.app import App, build_app, prepare_database
from gateway.config.loading import settings_from_mapping
from gateway.config.settings import DATABASE_URL_ENV
from gateway.outbound.mail import OutgoingMail
from gateway.outbound.maildir import MaildirTransport
from gateway.outbound.outbox import drain, enqueue
from gateway.outbound.smtp import SmtpTransport
from gateway.outbound.transport import Transport
from gateway.store.models import OutboundMail, Queue, table_of
from gateway.tickets.ticket import NewArticle, NewTicket, create_ticket

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
QUEUE_FROM = ("Service Desk", "support@support.example.com")
CUSTOMER = ("Anna Kunde", "anna.kunde@customer.example")
WARMUP = 20
_outbound = table_of(OutboundMail)

ACK_CONTEXT: dict[str, Any] = {
    "customer_name": "Anna Kunde", "title": "Printer on floor 3: error 50.4",
    "template_name": "General incident report", "priority": 3,
    "answers": [("Affected system", "Office laser printer, inventory number 4711"),
                ("Since when", "this morning")],
    "missing": [],
}

# -- the relay ---------------------------------------------------------------------------------

def serve_relay(port: int) -> None:
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
            lambda: SMTP(OkHandler(), decode_data=False, enable_SMTPUTF8=True, loop=loop),
            host="127.0.0.1", port=port)
        await stop.wait()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def relay_process() -> Iterator[int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in (DATABASE_URL_ENV, "TICKETGW_CONFIG")}
    proc = subprocess.Popen([sys.executable, __file__, "--serve-relay", str(port)], env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    if sock.recv(3) == b"220":
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the relay did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the mails ---------------------------------------------------------------------------------

def make_renderer() -> Callable[[int, int], OutgoingMail] | None:
    """A function rendering ack number n for a ticket, or None when rendering is missing."""
    try:
        from gateway.outbound.headers import MailIdentity
        from gateway.outbound.render import MailRenderer
    except ImportError as exc:
        print(f"rendering left out: {exc}", file=sys.stderr)
        return None
    renderer = MailRenderer(base_url="https://support.example.com")
    sender = MailIdentity(*QUEUE_FROM)

    def render(n: int, ticket_id: int) -> OutgoingMail:
        return renderer.render("ack", "en", ACK_CONTEXT, sender=sender, to=[CUSTOMER],
                               ticket_number=f"2026112710{n:06d}",
                               in_reply_to=f"<customer.{n}@customer.example>",
                               ticket_id=ticket_id)

    return render


def make_composer() -> Callable[[int, int], OutgoingMail] | None:
    """As `make_renderer`, but the ack composed (its texts left to the outbox)."""
    try:
        from gateway.outbound.headers import MailIdentity
        from gateway.outbound.render import MailRenderer
    except ImportError:
        return None
    renderer = MailRenderer(base_url="https://support.example.com")
    if not hasattr(renderer, "compose"):
        print("composed left out: this tree renders in the queueing transaction",
              file=sys.stderr)
        return None
    sender = MailIdentity(*QUEUE_FROM)

    def compose(n: int, ticket_id: int) -> OutgoingMail:
        return renderer.compose("ack", "en", ACK_CONTEXT, sender=sender,  # type: ignore[no-any-return]
                                to=[CUSTOMER], ticket_number=f"2026112710{n:06d}",
                                in_reply_to=f"<customer.{n}@customer.example>",
                                ticket_id=ticket_id)

    return compose


def handmade(n: int, ticket_id: int) -> OutgoingMail:
    message_id = f"<bench.{n}.{secrets.token_hex(6)}@support.example.com>"
    body = ("Dear Anna Kunde,\r\n\r\nwe received your request. " * 30).encode()
    raw = (f"From: Service Desk <{QUEUE_FROM[1]}>\r\nTo: Anna Kunde <{CUSTOMER[1]}>\r\n"
           f"Subject: Your request [Ticket#2026112710{n:06d}]\r\nMessage-ID: {message_id}\r\n"
           f"Date: {datetime.now(UTC):%a, %d %b %Y %H:%M:%S +0000}\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\n").encode() + body
    return OutgoingMail(event="ack", envelope_from=QUEUE_FROM[1], recipients=(CUSTOMER[1],),
                        message_id=message_id, raw=raw, ticket_id=ticket_id)


def prebuilt(count: int, tickets: list[int],
             render: Callable[[int, int], OutgoingMail] | None) -> list[OutgoingMail]:
    """`count` finished mails (rendered before the clock), each with its own Message-ID,
    each about its own ticket."""
    make = render or handmade
    return [make(n, tickets[n % len(tickets)]) for n in range(count)]


# -- the runs ----------------------------------------------------------------------------------

def run_baseline(port: int, mails: list[OutgoingMail]) -> float:
    client = smtplib.SMTP("127.0.0.1", port, timeout=60)
    client.ehlo()
    start = time.perf_counter()
    for mail in mails:
        if client.sendmail(mail.envelope_from, list(mail.recipients), mail.raw):
            raise RuntimeError("a recipient was refused")
    elapsed = time.perf_counter() - start
    with suppress(smtplib.SMTPException, OSError):
        client.quit()
    return len(mails) / elapsed


def run_outbox(app: App, transport: Transport, mails: list[OutgoingMail] | None, count: int,
               render: Callable[[int, int], OutgoingMail] | None,
               tickets: list[int]) -> tuple[float, float, float, float]:
    """(mails/s, enqueue s, drain s, drain CPU s). With `mails` None, each mail is rendered
    in the clock."""
    first_id = _max_id(app)
    start = time.perf_counter()
    for n in range(count):
        if mails is not None:
            mail = mails[n]
        else:
            assert render is not None
            mail = render(n, tickets[n % len(tickets)])
        with app.db.write() as session:
            enqueue(session, mail)
    queued = time.perf_counter()
    cpu = time.process_time()
    while drain(app.db, transport, renderer=app.renderer):
        pass
    end = time.perf_counter()
    cpu = time.process_time() - cpu
    with app.db.read() as session:
        sent = session.execute(select(func.count()).select_from(_outbound).where(
            _outbound.c.id > first_id, _outbound.c.status == "sent")).scalar_one()
    if sent != count:
        raise SystemExit(f"only {sent} of {count} mails were sent")
    return count / (end - start), queued - start, end - queued, cpu


def _max_id(app: App) -> int:
    with app.db.read() as session:
        return int(session.execute(select(func.coalesce(func.max(_outbound.c.id), 0)))
                   .scalar_one())



def database(backend: str, tmp: Path, admin_url: str) -> AbstractContextManager[str]:
    return scratch_database(backend, tmp, admin_url, sqlite_name="bench.db")


def bench_backend(backend: str, port: int, args: argparse.Namespace,
                  render: Callable[[int, int], OutgoingMail] | None,
                  compose: Callable[[int, int], OutgoingMail] | None) -> dict[str, Any]:
    kinds = ["baseline", *args.kinds]
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    phases: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="tgw-bench-") as tmp_name, \
            database(backend, Path(tmp_name), args.pg_admin_url) as url:
        settings = settings_from_mapping(
            {"database": {"url": url}, "storage": {"data_dir": tmp_name},
             "queue": [{"id": "q", "from": f"{QUEUE_FROM[0]} <{QUEUE_FROM[1]}>"}]},
            "bench/outbound.py", Path(tmp_name))
        app = build_app(settings)
        prepare_database(app, migrate=True)
        # one ticket per mail, as acks are: mails of one ticket to one recipient go out in
        # order (`outbound/ordering.py`), one per batch, which is not what this measures
        tickets = []
        with app.db.write() as session:
            queue_id = session.execute(select(table_of(Queue).c.id)).scalar_one()
            for n in range(max(args.count, WARMUP)):
                tickets.append(create_ticket(session, NewTicket(
                    title=f"Printer {n}", queue_id=queue_id, first_article=NewArticle(
                        direction="in", channel="mail", sender="customer", body="x",
                        message_id=f"<first.{n}@customer.example>")),
                    numbering=app.numbering, actor="bench").id)
        maildir = Path(tmp_name) / "maildir"

        def run(kind: str, count: int) -> float:
            # fresh Message-IDs each run, built before the clock starts
            mails = (None if kind == "rendered" else
                     prebuilt(count, tickets, compose if kind == "composed" else render))
            if kind == "baseline":
                assert mails is not None
                return run_baseline(port, mails)
            transport: Transport = (MaildirTransport(maildir)
                                    if kind in ("maildir", "composed") else
                                    SmtpTransport("127.0.0.1", port, starttls=False,
                                                  timeout=60))
            rate, enqueue_s, drain_s, cpu_s = run_outbox(
                app, transport, mails, count, render, tickets)
            for phase, seconds in (("enqueue", enqueue_s), ("drain", drain_s),
                                   ("cpu", cpu_s)):
                phases.setdefault(f"{kind} {phase}", []).append(seconds / count)
            return rate

        for kind in kinds:
            run(kind, WARMUP)
        phases.clear()
        for round_no in range(1, args.rounds + 1):
            for kind in kinds:
                rates[kind].append(run(kind, args.count))
            print(f"  {backend} round {round_no}/{args.rounds}: " + ", ".join(
                f"{kind} {rates[kind][-1]:6.1f}/s" for kind in kinds)
                + "; drain CPU ms/mail " + ", ".join(
                f"{kind} {1000 * phases[f'{kind} cpu'][-1]:.2f}" for kind in args.kinds),
                file=sys.stderr)
        app.close()
    medians = {kind: statistics.median(values) for kind, values in rates.items()}
    return {"backend": backend, "medians": medians,
            "ms": {name: 1000 * statistics.median(values) for name, values in phases.items()}}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-relay":
        serve_relay(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--count", type=int, default=300, help="mails per kind and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kinds", default="outbox,rendered",
                        help="comma-separated: outbox, maildir, composed, rendered (the "
                             "baseline always runs)")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if (set(backends) - {"sqlite", "postgresql"}
            or set(args.kinds) - {"outbox", "maildir", "composed", "rendered"}
            or args.count < 1 or args.rounds < 1):
        parser.error("check --backends, --kinds, --count and --rounds")
    os.environ.pop(DATABASE_URL_ENV, None)
    render = make_renderer()
    if render is None and "rendered" in args.kinds:
        args.kinds.remove("rendered")
    compose = make_composer()
    if compose is None and "composed" in args.kinds:
        args.kinds.remove("composed")
    mail_size = len(prebuilt(1, [1], render)[0].raw)

    with relay_process() as port:
        results = [bench_backend(backend, port, args, render, compose)
                   for backend in backends]
    print(f"\n{args.count} mails per kind and round ({mail_size} bytes each), "
          f"{args.rounds} rounds, medians; ms per mail (CPU: this process while draining)")
    header = f"{'backend':<11} {'baseline/s':>10}"
    for kind in args.kinds:
        header += f" {kind + '/s':>11} {'ratio':>5}"
    for kind in args.kinds:
        header += f" | {kind}: enqueue  drain   CPU"
    print(header)
    for r in results:
        line = f"{r['backend']:<11} {r['medians']['baseline']:>10.1f}"
        for kind in args.kinds:
            line += (f" {r['medians'][kind]:>11.1f}"
                     f" {r['medians'][kind] / r['medians']['baseline']:>5.2f}")
        for kind in args.kinds:
            ms = r["ms"]
            line += (f" | {' ' * len(kind)}  {ms[f'{kind} enqueue']:>7.2f}"
                     f" {ms[f'{kind} drain']:>6.2f} {ms[f'{kind} cpu']:>5.2f}")
        print(line)


if __name__ == "__main__":
    main()
