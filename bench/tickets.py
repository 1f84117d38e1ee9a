"""Benchmark: tickets created per second, each with one article, through the real domain code.

What is measured, per backend (SQLite in a temp dir, PostgreSQL in a fresh database):
- tickets:  `gateway.tickets.ticket.create_ticket` with one inbound mail article (~4 KiB body), one
            ticket per `app.db.write()` transaction: the day counter upsert, the ticket, its
            `created` history row, the article and its Message-ID row, then the commit.
            This is the domain's share of a new mail; parsing, routing and the ack are not in it.
- baseline: one plain `INSERT` of the same ~4 KiB body into a scratch table `bench_row`, one
            row per `app.db.write()` transaction, same engine, driver and durability
            (SQLite: WAL, synchronous=FULL, BEGIN IMMEDIATE; PostgreSQL: its own settings).

How to read the numbers: rounds are interleaved (baseline, tickets, baseline, tickets, ...)
because the machine is shared and noisy; the table shows the median of each and
`ratio = median tickets/s / median baseline rows/s`. A ratio of 0.5 means one ticket costs as
much as two bare one-row commits; 1.0 would mean the domain work is free next to the commit.
`+ms/ticket` is what a ticket costs on top of a bare commit (from the medians). Compare ratios
between commits and machines rather than absolute figures, and never use these timings in a
pass/fail test.

With `--workers K` (K > 1) that many spawned processes run the same loop at once, each with
its own engine, `count / K` operations each, and the figure is total operations / wall time
from a common start (a barrier) to the last one finishing.

Run:  .venv/bin/python bench/tickets.py [--backends sqlite,postgresql] [--count N]
      [--rounds R] [--workers K] [--pg-admin-url URL]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from itertools import count as counter
from multiprocessing.queues import Queue as MpQueue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from scratch import scratch_database  # bench/scratch.py: the run's own database
from sqlalchemy import Column, Integer, MetaData, Table, Text, func, select, text

from gateway.app import App, build_app, prepare_database
from gateway.config.loading import settings_from_mapping
from gateway.config.settings import DATABASE_URL_ENV
from gateway.store.models import Queue, Ticket, table_of
from gateway.tickets.ticket import NewArticle, NewTicket, create_ticket

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
WARMUP = 20  # unmeasured operations per kind and worker: connections, statement caches

_SENTENCES = (
    "Hello support team, since this morning the printer on the third floor shows error 50.4 "
    "and stops after every second page. ",
    "We already switched it off and on again, replaced the toner cartridge and checked the "
    "paper tray, but nothing changed. ",
    "Could you please send someone today? Our accounting department has to print the monthly "
    "invoices before Friday. ",
    "The device is an office laser printer, inventory number 4711, located next to room 3.14. ",
)
BODY = ("".join(_SENTENCES) * 12)[:4000]  # ~3.9 KiB, like the text mails in performance-notes

SCRATCH = Table("bench_row", MetaData(),
                Column("id", Integer, primary_key=True), Column("body", Text, nullable=False))
INSERT_ROW = text("INSERT INTO bench_row (body) VALUES (:body)")


def open_app(url: str, data_dir: Path) -> App:
    settings = settings_from_mapping(
        {"database": {"url": url}, "storage": {"data_dir": str(data_dir)},
         "queue": [{"id": "q", "from": "Desk <desk@example.com>"}]},
        "bench/tickets.py", data_dir,
    )
    return build_app(settings)


def insert_rows(app: App, n: int) -> None:
    for _ in range(n):
        with app.db.write() as session:
            session.execute(INSERT_ROW, {"body": BODY})


def create_tickets(app: App, n: int, queue_id: int, ids: Iterator[str]) -> None:
    for _ in range(n):
        message_id = next(ids)
        article = NewArticle(
            direction="in", channel="mail", sender="customer", body=BODY,
            subject="Printer on floor 3: error 50.4", from_address="anna@customer.example",
            message_id=message_id,
        )
        new = NewTicket(title="Printer on floor 3: error 50.4", queue_id=queue_id,
                        first_article=article, contact_email="anna@customer.example")
        with app.db.write() as session:
            create_ticket(session, new, numbering=app.numbering, actor="bench")


def worker(number: int, url: str, data_dir: Path, commands: MpQueue[tuple[str, int] | None],
           results: MpQueue[tuple[float, float]], barrier: Barrier) -> None:
    """Run each command (kind, n) after all workers reach the barrier; report (start, end)."""
    app = open_app(url, data_dir)
    with app.db.read() as session:
        queue_id = session.execute(select(table_of(Queue).c.id)).scalar_one()
    ids = (f"<bench-{number}-{i}@bench.invalid>" for i in counter())
    while (command := commands.get()) is not None:
        kind, n = command
        barrier.wait()
        # time.monotonic is one system-wide clock on Linux, so workers' stamps are comparable
        start = time.monotonic()
        if kind == "tickets":
            create_tickets(app, n, queue_id, ids)
        else:
            insert_rows(app, n)
        results.put((start, time.monotonic()))
    app.close()



def database(backend: str, tmp: Path, admin_url: str) -> AbstractContextManager[str]:
    return scratch_database(backend, tmp, admin_url, sqlite_name="bench.db")


def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    per_worker = max(1, args.count // args.workers)
    rates: dict[str, list[float]] = {"baseline": [], "tickets": []}
    with tempfile.TemporaryDirectory(prefix="tgw-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with database(backend, tmp, args.pg_admin_url) as url:
            app = open_app(url, tmp)
            prepare_database(app, migrate=True)
            SCRATCH.create(app.db.engine)
            app.close()

            ctx = mp.get_context("spawn")
            barrier = ctx.Barrier(args.workers)
            results: MpQueue[tuple[float, float]] = ctx.Queue()
            inboxes: list[MpQueue[tuple[str, int] | None]] = [
                ctx.Queue() for _ in range(args.workers)]
            procs = [ctx.Process(target=worker, args=(i, url, tmp, inbox, results, barrier))
                     for i, inbox in enumerate(inboxes)]
            for proc in procs:
                proc.start()

            def run(kind: str, n: int) -> float:
                for inbox in inboxes:
                    inbox.put((kind, n))
                stamps = [results.get() for _ in procs]
                elapsed = max(end for _, end in stamps) - min(start for start, _ in stamps)
                return n * len(procs) / elapsed

            try:
                run("baseline", WARMUP)
                run("tickets", WARMUP)
                for round_no in range(1, args.rounds + 1):
                    for kind in ("baseline", "tickets"):
                        rates[kind].append(run(kind, per_worker))
                    print(f"  {backend} round {round_no}/{args.rounds}: "
                          f"baseline {rates['baseline'][-1]:7.1f} rows/s, "
                          f"tickets {rates['tickets'][-1]:7.1f}/s", file=sys.stderr)
            finally:
                for inbox in inboxes:
                    inbox.put(None)
                for proc in procs:
                    proc.join()

            # not a timing check: every ticket the loop claims to have made must be there
            app = open_app(url, tmp)
            with app.db.read() as session:
                made = session.execute(select(func.count()).select_from(table_of(Ticket)))
                made_count = made.scalar_one()
            app.close()
            expected = (WARMUP + per_worker * args.rounds) * args.workers
            if made_count != expected:
                raise SystemExit(f"{backend}: {made_count} tickets in the database, "
                                 f"expected {expected}")
    baseline, tickets = statistics.median(rates["baseline"]), statistics.median(rates["tickets"])
    return {"backend": backend, "workers": args.workers, "baseline": baseline,
            "tickets": tickets, "ratio": tickets / baseline,
            "extra_ms": 1000 / tickets - 1000 / baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql (default: both)")
    parser.add_argument("--count", type=int, default=1000,
                        help="operations per kind and round, split evenly over the workers")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1,
                        help="parallel writer processes (default 1: the single-writer figure)")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL,
                        help="a database to run CREATE/DROP DATABASE from")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown or args.count < 1 or args.rounds < 1 or args.workers < 1:
        parser.error(f"check the arguments (unknown backends: {sorted(unknown)})")
    # the env override would silently send the benchmark (and its junk rows) elsewhere
    os.environ.pop(DATABASE_URL_ENV, None)

    rows = [bench_backend(backend, args) for backend in backends]
    done = max(1, args.count // args.workers) * args.workers
    print(f"\n{done} operations per kind and round, {args.rounds} rounds, medians")
    print(f"{'backend':<11} {'workers':>7} {'baseline rows/s':>15} {'tickets/s':>9} "
          f"{'ratio':>5} {'+ms/ticket':>10}")
    for r in rows:
        print(f"{r['backend']:<11} {r['workers']:>7} {r['baseline']:>15.1f} "
              f"{r['tickets']:>9.1f} {r['ratio']:>5.2f} {r['extra_ms']:>10.2f}")


if __name__ == "__main__":
    main()
