"""Benchmark: the portal's My tickets and search latency for a customer with 10,000 tickets.

What is measured, per backend (SQLite in a temp dir, PostgreSQL in a fresh database), with
the real web app (`create_web_app`) driven in-process by Starlette's TestClient (no network,
one request at a time, a logged-in session cookie):
- static:        GET /static/portal.css — a static answer of the same app: the floor of
                 routing, middleware and the client (the baseline).
- my-tickets:    GET /tickets — the first page (25 rows) of 10,000, by number, with the
                 count for the pager and the first text of each row.
- open-page-200: GET /tickets?filter=open&page=200 — a deep page (OFFSET 4,975).
- search-text:   GET /tickets?q=WORD — a word found in the text of 1 % of the tickets: the
                 search reads every visible article of the user (LIKE '%word%').
- search-number: GET /tickets?q=NUMBER-PREFIX — one day's tickets by number prefix.
Each is requested `--count` times after 5 unmeasured warm-up requests, interleaved round by
round; the table shows the median and the 95th percentile in milliseconds. The data: one
customer with 10,000 tickets (one ~600-byte article each, every 10th closed) plus 10,000
tickets of another customer that must never show up.

Run:  .venv/bin/python bench/portal.py [--backends sqlite,postgresql] [--tickets N]
      [--count N] [--pg-admin-url URL]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.tickets import PG_ADMIN_URL, database
from gateway.app import build_app, prepare_database
from gateway.config.loading import settings_from_mapping
from gateway.store.models import (
    Article,
    CustomerUser,
    Queue,
    Ticket,
    table_of,
)
from gateway.tickets.customers import NewCustomer, add_customer
from gateway.web.app import create_web_app
from gateway.web.passwords import hash_password

PASSWORD = "bench password 1"
WORDS = ("printer", "network", "mailbox", "laptop", "login", "invoice", "vpn", "monitor")
RARE = "zeppelin"   # in 1 % of the tickets


def populate(app: Any, tickets: int) -> str:
    """Two customers with `tickets` tickets each; the number prefix of one day."""
    with app.db.write() as session:
        add_customer(session, NewCustomer("bench", "bench@example.com", "Bench User"))
        add_customer(session, NewCustomer("other", "other@example.com", "Other User"))
        users = dict(session.execute(select(table_of(CustomerUser).c.username,
                                            table_of(CustomerUser).c.id)).all())
        queue_id = session.execute(select(table_of(Queue).c.id)).scalars().first()
        session.execute(table_of(CustomerUser).update().values(
            password_hash=hash_password(PASSWORD)))
    rng = random.Random(5)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    prefix = ""
    for owner_index, username in enumerate(("bench", "other")):
        for batch in range(0, tickets, 1000):
            ticket_rows, article_rows = [], []
            for i in range(batch, min(tickets, batch + 1000)):
                created = start + timedelta(hours=i // 2, minutes=owner_index)
                day = created.strftime("%Y%m%d")
                number = f"{day}10{owner_index}{i:07d}"
                prefix = prefix or day
                words = " ".join(rng.choice(WORDS) for _ in range(80))
                if i % 100 == 7:
                    words += f" {RARE}"
                ticket_rows.append({
                    "number": number, "title": f"Ticket {i} about {rng.choice(WORDS)}",
                    "state": "closed" if i % 10 == 0 else "open", "priority": 3,
                    "queue_id": queue_id, "customer_user_id": users[username],
                    "contact_email": f"{username}@example.com", "created": created,
                    "updated": created, "template_id": None, "owner_staff_id": None,
                    "reply_token": None, "closed": None})
                article_rows.append((number, words, created))
            with app.db.write() as session:
                ids = dict(session.execute(
                    insert(table_of(Ticket)).returning(table_of(Ticket).c.number,
                                                       table_of(Ticket).c.id),
                    ticket_rows).all())
                session.execute(insert(table_of(Article)), [
                    {"ticket_id": ids[number], "direction": "in", "channel": "mail",
                     "internal": False, "sender": "customer", "from_address": "x@example.com",
                     "to_addresses": "", "subject": "", "body": body, "body_html": None,
                     "quote_start": None, "message_id": None, "received_mail_id": None,
                     "outbound_mail_id": None, "created": created}
                    for number, body, created in article_rows])
    return f"{prefix[:8]}"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory(prefix="tgw-bench-portal-") as tmp_name:
        tmp = Path(tmp_name)
        with database(backend, tmp, args.pg_admin_url) as url:
            settings = settings_from_mapping({
                "database": {"url": url}, "storage": {"data_dir": str(tmp / "data")},
                "inbound": {"smtp": ""}, "web": {"listen": "", "rate_limit_per_user": 1000},
                "queue": [{"id": "servicedesk", "from": "Desk <desk@example.com>"}]},
                "bench", tmp)
            app = build_app(settings)
            prepare_database(app, migrate=True)
            began = time.perf_counter()
            day = populate(app, args.tickets)
            print(f"{backend}: {2 * args.tickets} tickets written in "
                  f"{time.perf_counter() - began:.1f} s", file=sys.stderr)
            client = TestClient(create_web_app(app), follow_redirects=False)
            login = client.get("/login").text
            csrf = login.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            assert client.post("/login", data={"username": "bench", "password": PASSWORD,
                                               "csrf": csrf}).status_code == 303
            urls = {"static": "/static/portal.css", "my-tickets": "/tickets",
                    "open-page-200": "/tickets?filter=open&page=200",
                    "search-text": f"/tickets?q={RARE}",
                    "search-number": f"/tickets?q={day}"}
            timings: dict[str, list[float]] = {name: [] for name in urls}
            for path in urls.values():
                for _ in range(5):
                    assert client.get(path).status_code == 200, path
            for _ in range(args.count):
                for name, path in urls.items():
                    began = time.perf_counter()
                    response = client.get(path)
                    timings[name].append((time.perf_counter() - began) * 1000)
                    assert response.status_code == 200
            assert "Other" not in client.get(f"/tickets?q={RARE}").text
            app.close()
    return {name: (statistics.median(values), percentile(values, 0.95))
            for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    print(f"| backend | request | median ms | p95 ms |  ({args.tickets} tickets, "
          f"{args.count} requests each)")
    print("|---|---|---:|---:|")
    for backend in args.backends.split(","):
        for name, (median, p95) in bench_backend(backend.strip(), args).items():
            print(f"| {backend} | {name} | {median:.1f} | {p95:.1f} |", flush=True)


if __name__ == "__main__":
    main()
