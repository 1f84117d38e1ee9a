"""Benchmark: the inbound worker alone, in-process: CPU, wall and statements per new ticket
(or, with `--replies`, per customer reply to an existing ticket).

What is measured, per backend (SQLite in a temp dir, PostgreSQL in a fresh database): the
config of `bench/inbound.py` (one queue, one staff member, one template; a registered
customer per mail), `--count` text mails stored through the real intake (`accept_many`, in
groups of 8 as the listener's group commit stores them), then `process_due` until nothing
is due. Reported per new ticket: this process's CPU (user + system) and wall time, the
PostgreSQL server's CPU (the backends of the run's own database on a local server, from
`/proc`: other sessions on the server are not counted), and with `--statements` the
statements sent to the database (a `before_cursor_execute` hook; an executemany counts
once), by their first words. Each round stores and processes fresh mails in the same
database; the first `WARMUP` mails are processed unmeasured.

A/B against another commit: run the same script with that commit's tree first on
PYTHONPATH (e.g. a `git worktree`), alternating, and compare medians:
    PYTHONPATH=/tmp/parent python bench/worker.py --backend postgresql --rounds 3
Timings here are for comparison between commits on one machine, never for pass/fail tests.

Run:  .venv/bin/python bench/worker.py [--backend sqlite|postgresql] [--count 300]
      [--rounds 3] [--statements] [--replies] [--profile FILE] [--pg-admin-url URL]
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from itertools import count as counter
from pathlib import Path
from typing import Any

from inbound import (  # bench/inbound.py: the same config, customers and mails
    PG_ADMIN_URL,
    RCPT,
    clean_env,
    cpu_seconds,
    reply_mail,
    sender_of,
    text_mail,
    write_config,
)
from scratch import scratch_database
from sqlalchemy import event, text

from gateway.app import build_app
from gateway.config.loading import load_settings
from gateway.inbound.intake import Envelope, Incoming, accept_many
from gateway.inbound.worker import process_due

WARMUP = 20
GROUP = 8


def _setup(url: str, tmp: Path, customers: int) -> Path:
    config = tmp / "ticketgw.toml"
    write_config(config, url, tmp, 2525, 1)
    csv = tmp / "customers.csv"
    csv.write_text("username,email,name,organisation,language\n" + "".join(
        f"customer{i},{sender_of(i)},Customer {i},,en\n" for i in range(customers)))
    for args in (("db", "upgrade"), ("customer", "import", str(csv))):
        subprocess.run([sys.executable, "-m", "gateway", "--config", str(config), *args],
                       check=True, env=clean_env(), stdout=subprocess.DEVNULL)
    return config


def _server_cpu(app: Any) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving this run's database (its name is the
    run's own, so other sessions on the same server are not counted); {} for SQLite."""
    if app.db.is_sqlite:
        return {}
    with app.db.engine.connect() as connection:
        pids = connection.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars()
        cpu = {}
        for pid in pids:
            with suppress(OSError):      # ended meanwhile
                cpu[pid] = cpu_seconds(pid)
    return cpu


def _store(app: Any, tag: str, numbers: range, make: Any = text_mail) -> None:
    mails = [Incoming(make(tag, n, n), Envelope("smtp", sender_of(n), (RCPT,)))
             for n in numbers]
    for start in range(0, len(mails), GROUP):
        accept_many(app.db, mails[start:start + GROUP], blobs=app.blobs)


def _drain(app: Any) -> int:
    done = 0
    while batch := process_due(app.db, app.stages):
        done += len(batch)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--statements", action="store_true")
    parser.add_argument("--replies", action="store_true",
                        help="measure customers' replies to their new tickets (the tickets "
                             "are made first, unmeasured) instead of new tickets")
    parser.add_argument("--profile", metavar="FILE",
                        help="cProfile the last round's processing into FILE (pstats)")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    customers = WARMUP + args.count * args.rounds
    with tempfile.TemporaryDirectory(prefix="tgw-bench-worker-") as name, \
            scratch_database(args.backend, Path(name), args.pg_admin_url,
                             sqlite_name="gateway.db") as url:
        tmp = Path(name)
        app = build_app(load_settings(_setup(url, tmp, customers)))
        numbers = counter()
        first = next(numbers)
        _store(app, "warm", range(first, first + WARMUP))
        for _ in range(WARMUP - 1):
            next(numbers)
        _drain(app)
        statements: collections.Counter[str] = collections.Counter()

        def _count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            statements[" ".join(statement.split()[:3])[:60]] += 1

        if args.statements:
            engines = [app.db.engine]
            if app.db._lazy_engine is not None:
                engines.append(app.db._lazy_engine)
            for engine in engines:
                event.listen(engine, "before_cursor_execute", _count)
        cpu, wall, db_cpu = [], [], []
        for round_ in range(args.rounds):
            start_n = next(numbers)
            _store(app, f"r{round_}", range(start_n, start_n + args.count))
            if args.replies:                  # their tickets first, not measured
                _drain(app)
                _store(app, f"r{round_}", range(start_n, start_n + args.count), reply_mail)
            for _ in range(args.count - 1):
                next(numbers)
            statements.clear()
            c0, w0 = time.process_time(), time.monotonic()
            s0 = _server_cpu(app)
            profiler = cProfile.Profile() if args.profile and round_ == args.rounds - 1 else None
            if profiler is not None:
                profiler.enable()
            done = _drain(app)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            c1, w1 = time.process_time(), time.monotonic()
            s1 = _server_cpu(app)
            if done != args.count:
                raise RuntimeError(f"{done} mails processed, {args.count} stored")
            cpu.append((c1 - c0) * 1000 / done)
            wall.append((w1 - w0) * 1000 / done)
            db_cpu.append(sum(v - s0.get(pid, 0.0) for pid, v in s1.items()) * 1000 / done)
            print(f"round {round_ + 1}: worker CPU {cpu[-1]:.2f} ms/mail, wall {wall[-1]:.2f} "
                  f"ms/mail, db CPU {db_cpu[-1]:.2f} ms/mail", flush=True)
            if args.statements:
                total = sum(statements.values())
                print(f"  statements: {total / done:.2f} per mail")
                for words, n in statements.most_common():
                    print(f"    {n / done:6.2f}  {words}")
        with app.db.read() as session:
            created = session.execute(text(
                "SELECT count(*) FROM received_mail WHERE outcome = 'created'")).scalar_one()
        print(f"{args.backend}: median worker CPU {statistics.median(cpu):.2f} ms/mail, wall "
              f"{statistics.median(wall):.2f}, db CPU {statistics.median(db_cpu):.2f} "
              f"({created} tickets in all)")
        app.close()


if __name__ == "__main__":
    main()
