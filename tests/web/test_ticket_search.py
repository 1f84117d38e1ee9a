"""My-tickets search through the trigram indexes (migration 0017) finds exactly what the
plain scan finds: the same tickets, in the same order, under the same access rules; a query
under 3 characters finds titles and numbers only, and the page says so.

Each query of 3 characters or more runs through `queries.list_tickets` (the indexed path)
and through `ticket_search.scan_condition` (what the portal did before the index), on the
real database; both must equal the tickets the test expects.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import and_, insert, select, text
from sqlmodel import Session

from gateway.app import App
from gateway.store.models import Article, CustomerUser, Queue, Ticket, table_of
from gateway.tickets.customers import NewCustomer, add_customer
from gateway.web import queries, ticket_search
from gateway.web.sessions import PortalUser
from tests.web.conftest import log_in, new_browser, set_password

_ticket = table_of(Ticket)
_article = table_of(Article)
_customer = table_of(CustomerUser)

# number suffix -> (owner, title, [(text, internal), ...])
TICKETS: dict[str, tuple[str, str, list[tuple[str, bool]]]] = {
    "001": ("max", "Drucker druckt leere Seiten", [("Seit heute kommt nur Papier.", False)]),
    "002": ("max", "VPN", [("Die Verbindung bricht ab, Größe der Datei 3 GB.", False),
                           ("Grüße aus Köln", False)]),
    "003": ("max", "Laptop", [("ÜBER das Wochenende kaputt", False),
                              ("interne Notiz: zeppelin", True)]),
    "004": ("max", "Rechnung 100%", [("Betrag: 100% statt 50_% Rabatt", False)]),
    "005": ("kurt", "Zeppelin-Anfrage", [("Bitte um Rückruf", False)]),
    "006": ("kurt", "Monitor", [('Er sagt "flackert" und zeppelin', False)]),
    "007": ("jane", "Zeppelin printer", [("zeppelin zeppelin über", False)]),
    "008": ("max", "Mailbox voll", [("Postfach ist voll", False),
                                    ("Nachtrag: ZEPPELIN hilft nicht", False)]),
}
QUERIES = ["zeppelin", "ZEPP", "Zeppelin-", "eppeli", "über", "ÜBER", "Über", "Größe",
           "grüße", "GRÜSSE", "leere Seiten", "druckt leere", "100%", "50_%", "_%",
           '"flackert"', 'sagt "', "ab", "vp", "ü", "%", "_", "Nachtrag: ZEP",
           "20260102", "#2026010210", "2026010210001", "202601011", "0001", "nothing-here"]


def _setup(app: App) -> dict[str, PortalUser]:
    with app.db.write() as session:
        add_customer(session, NewCustomer("max", "max@acme.example", "Max", "acme"))
        add_customer(session, NewCustomer("kurt", "kurt@acme.example", "Kurt", "acme"))
        add_customer(session, NewCustomer("jane", "jane@globex.example", "Jane", "globex",
                                          "en"))
        queue_id = session.execute(select(table_of(Queue).c.id)).scalars().first()
        users = {row.username: PortalUser(row.id, row.username, row.email, row.username, "de",
                                          row.organisation_id, "", False)
                 for row in session.execute(select(_customer))}
        start = datetime(2026, 1, 2, 9, tzinfo=UTC)
        for suffix, (owner, title, texts) in TICKETS.items():
            created = start + timedelta(minutes=int(suffix))
            ticket_id = session.execute(insert(_ticket).values(
                number=f"2026010210{suffix.zfill(6)}", title=title, state="open", priority=3,
                queue_id=queue_id, customer_user_id=users[owner].id,
                contact_email="x@example.com", created=created, updated=created,
            ).returning(_ticket.c.id)).scalar_one()
            for body, internal in texts:
                session.execute(insert(_article).values(
                    ticket_id=ticket_id, direction="in", channel="mail", internal=internal,
                    sender="customer", from_address="x@example.com", body=body,
                    created=created))
    return users


def _numbers(session: Session, user: PortalUser, q: str, *, organisation: bool) -> list[str]:
    page = queries.list_tickets(session, user, organisation=organisation, q=q, page_size=100)
    return [row.number[-3:] for row in page.rows]


def _scanned(session: Session, user: PortalUser, q: str, *, organisation: bool) -> list[str]:
    where = and_(queries.visible_to(user, organisation=organisation),
                 ticket_search.scan_condition(q.strip()))
    return [n[-3:] for n in session.execute(
        select(_ticket.c.number).where(where).order_by(_ticket.c.number.desc())).scalars()]


def test_indexed_search_finds_what_the_scan_finds(app: App, backend: str) -> None:
    users = _setup(app)
    with app.db.read() as session:
        for username in ("max", "jane"):
            for organisation in (False, True):
                for q in [q for q in QUERIES if not ticket_search.is_short(q)]:
                    found = _numbers(session, users[username], q, organisation=organisation)
                    assert found == _scanned(session, users[username], q,
                                             organisation=organisation), (username, q)


def test_what_a_search_matches(app: App, backend: str) -> None:
    users = _setup(app)
    with app.db.read() as session:
        def mine(q: str, organisation: bool = False) -> list[str]:
            return _numbers(session, users["max"], q, organisation=organisation)

        # a word in a visible text or title, any case; never an internal note, never
        # another customer's or (without organisation tickets) a colleague's ticket
        assert mine("zeppelin") == ["008"]
        assert mine("zeppelin", organisation=True) == ["008", "006", "005"]
        assert mine("ZEPP") == mine("zepp") == ["008"]
        assert mine("leere Seiten") == ["001"]          # a substring across words
        assert mine("100%") == ["004"] and mine("50_%") == ["004"]   # wildcards are text
        assert mine("0_%") == ["004"] and mine("_%") == []     # "_%": 2 characters
        assert mine("Größe") == ["002"] and mine("rüße") == ["002"]
        assert mine('sagt "', organisation=True) == ["006"]          # FTS5 quotes
        # "Grüße", and "ÜBER" where the case of non-ASCII letters is folded: PostgreSQL's
        # ILIKE does, SQLite's lower() LIKE does not (as before the index)
        assert mine("üBE") == (["003"] if backend == "postgresql" else [])
        assert mine("rüß") == ["002"]
        # under 3 characters: titles and numbers only, never the texts
        assert mine("ab") == [] and mine("ü") == [] and mine("50") == []
        assert mine("vp") == mine("VP") == ["002"] and mine("e") == ["004", "001"]
        assert mine("%") == ["004"] and mine("_") == []
        assert mine("20") == mine("#2") == ["008", "004", "003", "002", "001"]
        # numbers: a prefix of the ticket number (also with "#")
        assert mine("#2026010210") == ["008", "004", "003", "002", "001"]
        assert mine("2026010210000001") == ["001"]
        assert mine("0001") == []                       # not a prefix, in no text
        assert mine("nothing-here") == []


def test_a_short_search_finds_titles_and_numbers_and_says_so(app: App, backend: str,
                                                             web: FastAPI) -> None:
    _setup(app)
    pages = {}
    for username in ("max", "jane"):
        set_password(app, username)
        pages[username] = new_browser(web)
        log_in(pages[username], username)

    def found(username: str, q: str) -> tuple[list[str], str]:
        page = pages[username].get("/tickets", params={"q": q})
        assert page.status_code == 200
        return [n[-3:] for n in re.findall(r'href="/tickets/(\d+)"', page.text)][::2], page.text

    german = "Suchbegriffe unter 3 Zeichen werden nur in Ticketnummer und Betreff gesucht"
    english = "Search terms under 3 characters are looked up in ticket numbers and subjects"
    numbers, page = found("max", "vp")                 # the title "VPN"
    assert numbers == ["002"] and german in page and english not in page
    numbers, page = found("max", "ab")                 # only in texts: not found
    assert numbers == [] and "Keine Tickets gefunden." in page and german in page
    numbers, page = found("max", " 20 ")               # a number prefix
    assert numbers == ["008", "004", "003", "002", "001"] and german in page
    numbers, page = found("max", "bri")                # 3 characters: the texts too
    assert numbers == ["002"] and german not in page
    numbers, page = found("max", "")
    assert len(numbers) == 5 and german not in page
    numbers, page = found("jane", "pr")                # "Zeppelin printer", in English
    assert numbers == ["007"] and english in page and german not in page
    numbers, page = found("jane", "üb")                # her text has "über"
    assert numbers == [] and english in page


def test_the_index_serves_the_search(app: App, backend: str) -> None:
    users = _setup(app)
    user = users["max"]
    condition = and_(queries.visible_to(user, organisation=False),
                     ticket_search.search_condition("zeppelin", backend))
    statement = select(_ticket.c.id).where(condition)
    with app.db.read() as session:
        compiled = statement.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        if backend == "sqlite":
            plan = " ".join(str(row[-1]) for row in session.execute(
                text(f"EXPLAIN QUERY PLAN {compiled}")))
            assert "article_trgm VIRTUAL TABLE INDEX" in plan, plan
        else:
            session.execute(text("SET LOCAL enable_seqscan = off"))   # 8 rows: force it
            plan = " ".join(row[0] for row in session.execute(text(f"EXPLAIN {compiled}")))
            assert "ix_article_body_trgm" in plan, plan


@pytest.mark.backends("sqlite")
def test_the_sqlite_index_follows_changed_and_deleted_articles(app: App) -> None:
    users = _setup(app)
    with app.db.write() as session:
        article_id = session.execute(select(_article.c.id).where(
            _article.c.body == "Postfach ist voll")).scalar_one()
        session.execute(_article.update().where(_article.c.id == article_id)
                        .values(body="Postfach läuft über"))
    with app.db.read() as session:
        assert _numbers(session, users["max"], "läuft", organisation=False) == ["008"]
        assert _numbers(session, users["max"], "Postfach ist", organisation=False) == []
    with app.db.write() as session:
        session.execute(_article.delete().where(_article.c.id == article_id))
    with app.db.read() as session:
        assert _numbers(session, users["max"], "läuft", organisation=False) == []
        rows = session.execute(text(
            "SELECT count(*) FROM article_trgm WHERE article_trgm MATCH '\"äuf\"'")).scalar()
        assert rows == 0


def test_a_search_is_paged_like_the_list(app: App, backend: str) -> None:
    users = _setup(app)
    with app.db.read() as session:
        pages = [queries.list_tickets(session, users["max"], organisation=True, q="2026010210",
                                      sort="title", page=n, page_size=2) for n in (1, 2, 3, 4, 9)]
    assert [p.total for p in pages] == [7] * 5 and [p.pages for p in pages] == [4] * 5
    assert [p.page for p in pages] == [1, 2, 3, 4, 4]          # past the end: the last page
    titles = [row.title for p in pages[:4] for row in p.rows]
    assert titles == sorted(t for owner, t, _ in TICKETS.values() if owner != "jane")
    assert pages[4].rows == pages[3].rows
