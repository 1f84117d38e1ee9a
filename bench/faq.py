"""Benchmark: FAQ search latency over 10,000 articles, against a primary-key lookup and a
static page of the same app, on SQLite and PostgreSQL.

What is measured, per backend (SQLite in a temp dir, PostgreSQL in a fresh database), after
importing `--articles` generated articles through the real `faq.store.save_articles` (half
German, half English, 60 categories, every fifth customers-only, 150-350 words each drawn
from a Zipf-distributed vocabulary per language (titles of 4-7 words from the same
distribution): the demo FAQ's words on the top ranks, then 20,000 made-up ones, so a query
word such as "drucker" or "printer" is in the text of 500-2,700 articles. The import time
is printed; then `VACUUM ANALYZE` on PostgreSQL, as autovacuum would do after a bulk
import):

in-process, one read transaction per operation, the real functions:
- pk-lookup:    `faq.queries.article_by_key` of a random article (the baseline: a primary-key
                read with its category path, what an article page reads);
- search:       `faq.search.search` (the web's search: vocabulary lookup, every word, snippet
                of up to 10 hits) for realistic queries such as "Drucker leere Seiten";
- search-typo:  the same with one misspelt word per query ("Passwrot", "Druckr"), which adds
                the trigram lookups of the typo correction;
- suggest:      `faq.search.suggest` on a ticket's title and first text, what every
                acknowledgment adds to the worker's path (one indexed query);
- suggest-empty: the same on an empty FAQ (a desk without FAQ content pays this);
- mail-answer:  `faq.search.answer_hits` on a mail question (any word, typo alternatives);

over HTTP, in-process through Starlette's TestClient (no login: public pages):
- static:       GET /static/portal.css (the web baseline: routing, middleware, client);
- faq-search:   GET /faq?q=... (the search page, rendered).

With `--before REV`, the A/B in one run: `search (parent)` and `faq-search (parent)` are
REV's `faq.search` (its `search` and `text` modules, read with git) on a third database
with the same articles and REV's FAQ schema (migration 0018's index dropped), each with
the same sequence of queries as its counterpart; the script checks that both find the same
articles for every query.

Rounds are interleaved (every kind once per step, `--count` steps per round, `--rounds`
rounds); the table gives the median and 95th percentile in milliseconds over all rounds and
the ratio of the medians to the baseline of the same layer. The script checks that every
search found something (the queries' words are in the generated text).

Run:  .venv/bin/python bench/faq.py [--backends sqlite,postgresql] [--articles N]
      [--count N] [--rounds R] [--before REV] [--pg-admin-url URL]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi.testclient import TestClient
from scratch import scratch_database  # bench/scratch.py
from sqlalchemy import text as sql_text

from gateway.app import build_app, prepare_database
from gateway.config.loading import settings_from_mapping
from gateway.faq.queries import article_by_key
from gateway.faq.search import PUBLIC, answer_hits, search, suggest
from gateway.faq.source import ArticleSource, faq_files, read_sources
from gateway.faq.store import save_articles
from gateway.faq.text import words
from gateway.web import faq as web_faq
from gateway.web.app import create_web_app

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEMO_FAQ = Path(__file__).resolve().parent.parent / "gateway" / "cli" / "demo" / "faq"
QUERIES = ["Drucker leere Seiten", "VPN Verbindung bricht ab", "Passwort abgelaufen",
           "printer blank pages", "password expired", "Druckers Toner", "Netzlaufwerk",
           "email phone Outlook"]
TYPOS = ["Passwrot abgelaufen", "Druckr Toner", "VPN Verbindng", "pasword reset",
         "Netzlaufwrek verbinden", "printr blank"]
TICKETS = [("Drucker im 2. OG druckt nicht\nSeit heute Morgen druckt der Drucker nur leere "
            "Seiten, obwohl der Toner neu ist.", "de"),
           ("VPN bricht ständig ab\nIm Homeoffice trennt sich die VPN-Verbindung alle paar "
            "Minuten, ich muss mich dann neu anmelden.", "de"),
           ("Neuer Monitor für den Empfang\nBitte einen zweiten Monitor für Frau Schmidt "
            "am Empfang bestellen.", "de"),
           ("Password expired\nMy Windows password expired during my holiday and I cannot "
            "log in any more.", "en")]
MAILS = ["Hallo, mein Passwort ist abgelaufen und ich komme nicht mehr rein. Was tun?",
         "Hi, the printer on floor 2 only prints blank pages since this morning. Thanks",
         "Die VPN Verbindung bricht im Homeoffice dauernd ab, Client ist neu installiert."]


def generate(count: int, seed: int = 7) -> list[ArticleSource]:
    """`count` articles: demo words (so the queries find something) among made-up ones."""
    rng = random.Random(seed)
    demo = read_sources(faq_files(DEMO_FAQ))
    real = {lang: sorted({w for s in demo if s.language == lang
                          for w in words(f"{s.title} {s.body}") if len(w) > 3})
            for lang in ("de", "en")}
    syllables = ["ka", "ro", "ne", "ti", "bal", "ser", "mun", "dra", "vel", "ost", "ing", "ur"]
    made_up = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
                      for _ in range(30_000)})[:20_000]
    categories = [(f"Bereich {i // 10}", f"Thema {i}") for i in range(60)]
    ranked = {}
    for language in ("de", "en"):          # one Zipf ranking per language, real words first
        top = list(real[language])
        rng.shuffle(top)
        vocabulary = top + made_up
        ranked[language] = (vocabulary, list(accumulate(1 / (r + 1)
                                                        for r in range(len(vocabulary)))))
    sources = []
    for i in range(count):
        language = "de" if i % 2 == 0 else "en"
        vocabulary, cumulative = ranked[language]
        body_words = rng.choices(vocabulary, cum_weights=cumulative, k=rng.randint(150, 350))
        sentences = [" ".join(body_words[j:j + 12]).capitalize() + "."
                     for j in range(0, len(body_words), 12)]
        title = " ".join(rng.choices(vocabulary, cum_weights=cumulative,
                                     k=rng.randint(4, 7))).capitalize()
        sources.append(ArticleSource(
            key=f"article-{i}", title=title, category=categories[i % len(categories)],
            keywords=tuple(rng.sample(vocabulary[:400], 3)), language=language,
            visibility="public" if i % 5 else "customers",
            body="\n\n".join(" ".join(sentences[j:j + 4]) for j in range(0, len(sentences), 4))))
    return sources


# what differs in a parent commit's FAQ search (the queries' module is the same since 0018)
PARENT_MODULES = ("text", "search")
PARENT_SCHEMA = {   # undoing migration 0018 (the UPDATE rewrites the vectors)
    "sqlite": ("DROP INDEX ix_faq_article_listing",),
    "postgresql": ("DROP INDEX ix_faq_article_listing",
                   "ALTER TABLE faq_article ALTER COLUMN search_vector SET STORAGE EXTENDED, "
                   "ALTER COLUMN head_vector SET STORAGE EXTENDED",
                   "UPDATE faq_article SET body_text = body_text")}


def parent_search(rev: str) -> Callable[..., Any]:
    """`faq.search.search` as commit `rev` had it: its `text` and `search` modules read with
    `git show` and loaded beside the current ones (as `faq_parent.*`), for an A/B in one
    run. Stop words still come from `gateway/faq`."""
    root = Path(__file__).resolve().parent.parent
    package = types.ModuleType("faq_parent")
    package.__path__ = []
    sys.modules["faq_parent"] = package
    for name in PARENT_MODULES:
        source = subprocess.run(["git", "show", f"{rev}:gateway/faq/{name}.py"], cwd=root,
                                check=True, capture_output=True, text=True).stdout
        for other in PARENT_MODULES:
            source = source.replace(f"gateway.faq.{other} ", f"faq_parent.{other} ")
        module = types.ModuleType(f"faq_parent.{name}")
        module.__package__ = "gateway.faq"
        sys.modules[module.__name__] = module
        exec(compile(source, f"{rev}:gateway/faq/{name}.py", "exec"), module.__dict__)  # noqa: S102
    search_function: Callable[..., Any] = sys.modules["faq_parent.search"].search
    return search_function


def parent_schema(app: Any) -> None:
    """Undo what migrations after the parent added to the FAQ's tables."""
    with app.db.write() as session:
        for statement in PARENT_SCHEMA[session.get_bind().dialect.name]:
            session.execute(sql_text(statement))


def suggest_for(session: Any, ticket: tuple[str, str]) -> Any:
    """What an acknowledgment adds: suggestions for the ticket's text in its language."""
    text, language = ticket
    return suggest(session, text, visibilities=PUBLIC, language=language)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def bench_backend(backend: str, args: argparse.Namespace,
                  sources: list[ArticleSource]) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="tgw-bench-faq-") as tmp_name:
        tmp = Path(tmp_name)
        with scratch_database(backend, tmp, args.pg_admin_url, "faq.db") as url, \
                scratch_database(backend, tmp, args.pg_admin_url, "empty.db") as empty_url, \
                scratch_database(backend, tmp, args.pg_admin_url, "parent.db") as parent_url:
            apps = []
            for database_url in (url, empty_url, parent_url)[:3 if parent else 2]:
                settings = settings_from_mapping({
                    "database": {"url": database_url},
                    "storage": {"data_dir": str(tmp / "data")},
                    "inbound": {"smtp": ""}, "web": {"listen": ""},
                    "queue": [{"id": "servicedesk", "from": "Desk <desk@example.com>"}]},
                    "bench", tmp)
                app = build_app(settings)
                prepare_database(app, migrate=True)
                apps.append(app)
            app, empty, before = apps[0], apps[1], apps[-1]
            for filled in apps[::2]:
                began = time.perf_counter()
                with filled.db.write() as session:
                    save_articles(session, sources)
                print(f"{backend}: {len(sources)} articles imported in "
                      f"{time.perf_counter() - began:.1f} s", file=sys.stderr)
            if parent:
                parent_schema(before)
            if backend != "sqlite":      # what autovacuum does after a bulk import
                for filled in apps[::2]:
                    with filled.db.engine.connect() as connection:
                        connection.execution_options(isolation_level="AUTOCOMMIT"
                                                     ).exec_driver_sql("VACUUM ANALYZE faq_article")
            client = TestClient(create_web_app(app), follow_redirects=False)
            parent_client = TestClient(create_web_app(before), follow_redirects=False)
            rng = random.Random(11)
            same = {name: random.Random(3) for name in     # A and B: the same queries
                    ("search", "search (parent)", "faq-search", "faq-search (parent)")}

            def read(work: Callable[[Any], Any], db: Any = None) -> Callable[[], Any]:
                def run() -> Any:
                    with (db or app).db.read() as session:
                        return work(session)
                return run

            def found(result: Any) -> Any:
                assert result, "a benchmark query found nothing"
                return result

            def get(path: str, parent_page: bool = False) -> Callable[[], Any]:
                def run() -> Any:
                    current = web_faq.search
                    web_faq.search = parent if parent_page else current
                    try:
                        response = (parent_client if parent_page else client).get(path)
                    finally:
                        web_faq.search = current
                    assert response.status_code == 200, path
                return run

            kinds: dict[str, Callable[[], Any]] = {
                "pk-lookup": lambda: read(lambda s: found(article_by_key(
                    s, f"article-{rng.randrange(len(sources))}")))(),
                "search": lambda: read(lambda s: found(search(
                    s, same["search"].choice(QUERIES), visibilities=PUBLIC).hits))(),
                "search-typo": lambda: read(lambda s: found(search(
                    s, rng.choice(TYPOS), visibilities=PUBLIC).hits))(),
                "suggest": lambda: read(lambda s: suggest_for(s, rng.choice(TICKETS)))(),
                "suggest-empty": lambda: read(
                    lambda s: suggest_for(s, rng.choice(TICKETS)), empty)(),
                "mail-answer": lambda: read(lambda s: answer_hits(
                    s, rng.choice(MAILS), visibilities=PUBLIC, limit=3))(),
                "static": get("/static/portal.css"),
                "faq-search": lambda: get(
                    "/faq?q=" + same["faq-search"].choice(QUERIES).replace(" ", "+"))(),
            }
            if parent:
                kinds["search (parent)"] = lambda: read(lambda s: found(parent(
                    s, same["search (parent)"].choice(QUERIES), visibilities=PUBLIC).hits),
                    before)()
                kinds["faq-search (parent)"] = lambda: get("/faq?q=" + same[
                    "faq-search (parent)"].choice(QUERIES).replace(" ", "+"), True)()
                for query in QUERIES:       # both find the same articles
                    with app.db.read() as session, before.db.read() as old_session:
                        assert ([h.key for h in search(session, query, visibilities=PUBLIC).hits]
                                == [h.key for h in parent(old_session, query,
                                                          visibilities=PUBLIC).hits]), query
            timings: dict[str, list[float]] = {name: [] for name in kinds}
            for work in kinds.values():      # warm-up: connections, statement caches
                for _ in range(5):
                    work()
            for round_number in range(args.rounds):
                for _ in range(args.count):
                    for name, work in kinds.items():
                        began = time.perf_counter()
                        work()
                        timings[name].append((time.perf_counter() - began) * 1000)
                print(f"{backend} round {round_number + 1}: " + ", ".join(
                    f"{n} {statistics.median(v[-args.count:]):.2f}" for n, v in timings.items()),
                    file=sys.stderr)
            for opened in apps:
                opened.close()
    return timings


BASELINES = {"pk-lookup": "pk-lookup", "search": "pk-lookup", "search-typo": "pk-lookup",
             "suggest": "pk-lookup", "suggest-empty": "pk-lookup", "mail-answer": "pk-lookup",
             "static": "static", "faq-search": "static", "search (parent)": "pk-lookup",
             "faq-search (parent)": "static"}
parent: Callable[..., Any] | None = None      # REV's faq.search (`--before REV`)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--before", metavar="REV",
                        help="also measure REV's search and search page on REV's FAQ "
                             "schema (a third database with the same articles)")
    args = parser.parse_args()
    global parent
    parent = parent_search(args.before) if args.before else None
    sources = generate(args.articles)
    print(f"| backend | operation | median ms | p95 ms | ratio to baseline |  ({args.articles} "
          f"articles, {args.rounds} rounds x {args.count})")
    print("|---|---|---:|---:|---:|")
    for backend in args.backends.split(","):
        timings = bench_backend(backend.strip(), args, sources)
        for name, values in timings.items():
            median = statistics.median(values)
            base = statistics.median(timings[BASELINES[name]])
            print(f"| {backend} | {name} | {median:.2f} | {percentile(values, 0.95):.2f} | "
                  f"{median / base:.1f} |", flush=True)


if __name__ == "__main__":
    main()
