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
- search-common: GET /tickets?q=WORD — a word in 10 % of the tickets.
- search-short:  GET /tickets?q=vp — two letters: no trigram; titles and numbers only
                 (the page says so), not the texts.
- search-… (scan): the same request answered with the query before migration 0017
                 (`ticket_search.scan_condition`, swapped in for that request; for
                 search-short also what the portal did until it searched titles only), on
                 the same data; the script checks that both list the same tickets (for
                 search-short: that it finds some, with the page's note).
- faq-search:    GET /faq?lang=all&q=… — the FAQ's search page (its own FTS5 / tsvector
                 index), the queries of bench/faq.py in turn, over `--faq-articles`
                 generated articles.
- faq-search (parent): with `--before REV`, the same requests answered by REV's
                 `faq.search` (its `search` and `text` modules, read with git) from a
                 second database with the same FAQ articles and REV's FAQ schema (without
                 migration 0018's index): the A/B in one run. The script checks that both
                 list the same articles.
With `--drop-index`, the index of migration 0017 is dropped after the import and only the
scans are measured: the parent commit's query on the parent's schema.
Each is requested `--count` times after 5 unmeasured warm-up requests, interleaved round by
round; the table shows the median and the 95th percentile in milliseconds and the ratio of
the median to static's. The data: one customer with 10,000 tickets (`--articles` ~600-byte
articles each, default 10: 100,000 articles; every 10th ticket closed) plus 10,000 tickets
of another customer (one article each) that must never show up; then VACUUM ANALYZE on
PostgreSQL (what autovacuum does after a bulk load).

Run:  .venv/bin/python bench/portal.py [--backends sqlite,postgresql] [--tickets N]
      [--articles N] [--faq-articles N] [--drop-index] [--count N] [--before REV]
      [--pg-admin-url URL]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.faq import QUERIES as FAQ_QUERIES
from bench.faq import generate as generate_faq
from bench.faq import parent_schema, parent_search
from bench.tickets import PG_ADMIN_URL, database
from gateway.app import build_app, prepare_database
from gateway.config.loading import settings_from_mapping
from gateway.faq.store import save_articles
from gateway.store.models import (
    Article,
    CustomerUser,
    Queue,
    Ticket,
    table_of,
)
from gateway.tickets.customers import NewCustomer, add_customer
from gateway.web import faq as web_faq
from gateway.web import ticket_search
from gateway.web.app import create_web_app
from gateway.web.passwords import hash_password

PASSWORD = "bench password 1"
DROP_INDEX = {"sqlite": ["DROP TRIGGER article_trgm_insert", "DROP TABLE article_trgm"],
              "postgresql": ["DROP INDEX ix_article_body_trgm"]}   # what 0017 made
WORDS = ("printer", "network", "mailbox", "laptop", "login", "invoice", "vpn", "monitor")
RARE = "zeppelin"   # in 1 % of the tickets
COMMON = "harbour"  # in 10 % of the tickets


def populate(app: Any, tickets: int, articles: int) -> str:
    """Two customers with `tickets` tickets each (the first with `articles` articles per
    ticket, the other with one); the number prefix of one day."""
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
                for k in range(articles if owner_index == 0 else 1):
                    words = " ".join(rng.choice(WORDS) for _ in range(80))
                    if i % 100 == 7 and k == articles // 2:
                        words += f" {RARE}"
                    if i % 10 == 3 and k == 0:
                        words += f" {COMMON}"
                    article_rows.append((number, words, created))
                ticket_rows.append({
                    "number": number, "title": f"Ticket {i} about {rng.choice(WORDS)}",
                    "state": "closed" if i % 10 == 0 else "open", "priority": 3,
                    "queue_id": queue_id, "customer_user_id": users[username],
                    "contact_email": f"{username}@example.com", "created": created,
                    "updated": created, "template_id": None, "owner_staff_id": None,
                    "reply_token": None, "closed": None})
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


def vacuum(app: Any, backend: str) -> None:
    """PostgreSQL: `VACUUM ANALYZE`, what autovacuum does after a bulk load (statistics,
    and the visibility map that index-only scans need)."""
    if backend == "postgresql":
        with app.db.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE")


def logged_in(app: Any) -> TestClient:
    """A client of the app, logged in as the measured customer through the real form."""
    client = TestClient(create_web_app(app), follow_redirects=False)
    login = client.get("/login").text
    csrf = login.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert client.post("/login", data={"username": "bench", "password": PASSWORD,
                                       "csrf": csrf}).status_code == 303
    return client


def parent_app(backend: str, tmp: Path, args: argparse.Namespace) -> Any:
    """A second database with the parent's FAQ schema, the same FAQ articles and the
    customer, for `faq-search (parent)`; dropped with the run."""
    (tmp / "parent").mkdir()
    url = exit_stack.enter_context(database(backend, tmp / "parent", args.pg_admin_url))
    app = build_app(settings_for(url, tmp / "parent"))
    prepare_database(app, migrate=True)
    with app.db.write() as session:
        save_articles(session, generate_faq(args.faq_articles))
        add_customer(session, NewCustomer("bench", "bench@example.com", "Bench User"))
        session.execute(table_of(CustomerUser).update().values(
            password_hash=hash_password(PASSWORD)))
    parent_schema(app)
    vacuum(app, backend)
    exit_stack.callback(app.close)
    return app


def settings_for(url: str, tmp: Path) -> Any:
    return settings_from_mapping({
        "database": {"url": url}, "storage": {"data_dir": str(tmp / "data")},
        "inbound": {"smtp": ""}, "web": {"listen": "", "rate_limit_per_user": 1000},
        "queue": [{"id": "servicedesk", "from": "Desk <desk@example.com>"}]}, "bench", tmp)


exit_stack = ExitStack()
parent: Callable[..., Any] | None = None      # the parent's faq search (`--before`)


def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory(prefix="tgw-bench-portal-") as tmp_name, exit_stack:
        tmp = Path(tmp_name)
        with database(backend, tmp, args.pg_admin_url) as url:
            app = build_app(settings_for(url, tmp))
            prepare_database(app, migrate=True)
            began = time.perf_counter()
            day = populate(app, args.tickets, args.articles)
            began = time.perf_counter()
            with app.db.write() as session:
                save_articles(session, generate_faq(args.faq_articles))
            print(f"{backend}: {args.faq_articles} FAQ articles imported in "
                  f"{time.perf_counter() - began:.1f} s", file=sys.stderr)
            vacuum(app, backend)
            print(f"{backend}: {2 * args.tickets} tickets written in "
                  f"{time.perf_counter() - began:.1f} s", file=sys.stderr)
            client = logged_in(app)
            urls = {"static": "/static/portal.css", "my-tickets": "/tickets",
                    "open-page-200": "/tickets?filter=open&page=200",
                    "search-text": f"/tickets?q={RARE}",
                    "search-number": f"/tickets?q={day}",
                    "search-common": f"/tickets?q={COMMON}",
                    "search-short": "/tickets?q=vp"}
            searches = [name for name in urls if name.startswith("search-")]
            for name in searches:            # the parent's query (before 0017), same request
                urls[f"{name} (scan)"] = urls[name]
            if args.drop_index:              # the parent's schema too: scans only
                with app.db.write() as session:
                    for statement in DROP_INDEX[backend]:
                        session.execute(text(statement))
                for name in searches:
                    del urls[name]
                searches = []
            faq = [f"/faq?lang=all&q={q.replace(' ', '+')}" for q in FAQ_QUERIES]
            urls["faq-search"] = faq[0]
            clients = {name: client for name in urls}
            if parent is not None:           # the parent's FAQ search on the parent's schema
                urls["faq-search (parent)"] = faq[0]
                clients["faq-search (parent)"] = logged_in(parent_app(backend, tmp, args))
            timings: dict[str, list[float]] = {name: [] for name in urls}
            indexed, faq_search = ticket_search.search_condition, web_faq.search

            def scan(q: str, dialect: str) -> Any:
                return ticket_search.scan_condition(q)

            def get(name: str, round_: int) -> tuple[float, Any]:
                path = faq[round_ % len(faq)] if name.startswith("faq-search") else urls[name]
                ticket_search.search_condition = scan if name.endswith("(scan)") else indexed
                web_faq.search = parent if name == "faq-search (parent)" else faq_search
                began = time.perf_counter()
                response = clients[name].get(path)
                elapsed = (time.perf_counter() - began) * 1000
                ticket_search.search_condition, web_faq.search = indexed, faq_search
                return elapsed, response

            for name in urls:
                for round_ in range(5):
                    assert get(name, round_)[1].status_code == 200, name
            for name in searches:            # both queries find the same tickets
                page = get(name, 0)[1].text
                found = re.findall(r"/tickets/(\d+)", page)
                scanned = re.findall(r"/tickets/(\d+)", get(f"{name} (scan)", 0)[1].text)
                if name == "search-short":   # titles and numbers only, and the page says so
                    assert found and "unter 3 Zeichen" in page, name
                else:
                    assert found == scanned, name
            for round_ in range(args.count):
                for name in urls:
                    elapsed, response = get(name, round_)
                    timings[name].append(elapsed)
                    assert response.status_code == 200
                    assert not name.startswith("faq-search") or 'class="hits"' in response.text
            if parent is not None:           # both searches show the same articles
                for round_ in range(len(faq)):
                    assert (re.findall(r'href="/faq/([^"]+)"', get("faq-search", round_)[1].text)
                            == re.findall(r'href="/faq/([^"]+)"',
                                          get("faq-search (parent)", round_)[1].text))
            assert "Other" not in get("search-text (scan)", 0)[1].text
            app.close()
    return {name: (statistics.median(values), percentile(values, 0.95))
            for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--faq-articles", type=int, default=10_000)
    parser.add_argument("--drop-index", action="store_true",
                        help="drop the article index of migration 0017 (the parent's schema) "
                             "and measure the scans only")
    parser.add_argument("--articles", type=int, default=10,
                        help="articles per ticket of the measured customer")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--before", metavar="REV",
                        help="also measure REV's FAQ search on REV's FAQ schema "
                             "(`faq-search (parent)`, a second database)")
    args = parser.parse_args()
    global parent
    parent = parent_search(args.before) if args.before else None
    print(f"| backend | request | median ms | p95 ms | median ÷ static |  ({args.tickets} "
          f"tickets, {args.articles} articles each, {args.faq_articles} FAQ articles, "
          f"{args.count} rounds)")
    print("|---|---|---:|---:|---:|")
    for backend in args.backends.split(","):
        results = bench_backend(backend.strip(), args)
        for name, (median, p95) in results.items():
            print(f"| {backend} | {name} | {median:.1f} | {p95:.1f} | "
                  f"{median / results['static'][0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
