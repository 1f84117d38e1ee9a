"""What the portal's My-tickets search matches, as one SQL condition on `ticket`.

In: the query text (stripped, non-empty) and the database's dialect name. Out: a condition
for `queries.list_tickets`, which adds the user's visibility to it.

What matches (the same on every path below): a ticket whose title, or (for a query of 3
characters or more) the text of one of its visible (not internal) articles, contains the
query as a substring, compared as SQL's case-insensitive LIKE does it (`lower(x) LIKE` on
SQLite: ASCII letters only, so "Über" does not find "über" there; `ILIKE` on PostgreSQL:
the database's locale); for a query of digits (a leading "#" allowed), also a ticket whose
number begins with them.

A query shorter than `TRIGRAM` (3) characters matches titles and numbers only
(`short_condition`), never article texts: no trigram index can serve it, and reading every
text of the user cost ~0.5 s on PostgreSQL for 100,000 articles. Search engines do the same
(Elasticsearch/Zammad find words, not two letters inside them); the page says so
(`is_short`).

How the article texts are searched:
- `scan_condition`: every visible article of the user's tickets is read (`EXISTS ...
  LIKE '%q%'`); the cost grows with the user's text. What the portal did before migration
  0017, kept as the reference the tests and `bench/portal.py` compare against.
- `indexed_condition` (3 characters and more): the articles that contain the query are
  found first, through an index that migration 0017 creates, and the ticket is matched by
  `id IN (...)`:
  - PostgreSQL: the same `body ILIKE` on the `pg_trgm` GIN index `ix_article_body_trgm`;
    the index only narrows the rows, PostgreSQL rechecks the ILIKE on each, so the result
    is exactly the scan's;
  - SQLite: the FTS5 trigram table `article_trgm` (`tokenize="trigram"`, case folded for
    every letter) finds the articles that have every trigram of the query, a superset of
    what `lower(body) LIKE` matches; that LIKE then decides, so the result is exactly the
    scan's.
Never raises for any query text: LIKE wildcards are escaped, FTS5 quotes are doubled.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, or_, select, text

from gateway.store.models import Article, Ticket, table_of

_ticket = table_of(Ticket)
_article = table_of(Article)

TRIGRAM = 3    # the shortest query a trigram index can look up


def _number_prefix(q: str) -> list[ColumnElement[bool]]:
    digits = q.lstrip("#")
    if digits.isdigit():
        return [_ticket.c.number.startswith(digits, autoescape=True)]
    return []


def _body_contains(q: str) -> ColumnElement[bool]:
    return _article.c.body.icontains(q, autoescape=True)


def scan_condition(q: str) -> ColumnElement[bool]:
    """The search by reading each of the user's tickets' articles (any query length)."""
    visible_text = exists().where(_article.c.ticket_id == _ticket.c.id,
                                  _article.c.internal.is_(False), _body_contains(q))
    return or_(_ticket.c.title.icontains(q, autoescape=True), visible_text,
               *_number_prefix(q))


def _fts5_trigrams(q: str) -> str:
    """An FTS5 query for the texts that have every trigram of `q` (a superset of those
    containing `q`: the index has no positions, `detail = 'none'`)."""
    grams = sorted({q[i:i + TRIGRAM] for i in range(len(q) - TRIGRAM + 1)})
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


def indexed_condition(q: str, dialect: str) -> ColumnElement[bool]:
    """The same matches as `scan_condition`, article texts found through the index
    (`q` must have at least `TRIGRAM` characters)."""
    articles = select(_article.c.ticket_id).where(_article.c.internal.is_(False),
                                                  _body_contains(q))
    if dialect == "sqlite":
        candidates = text("SELECT rowid AS id FROM article_trgm WHERE article_trgm MATCH "
                          ":grams").bindparams(grams=_fts5_trigrams(q)).columns(_article.c.id)
        articles = articles.where(_article.c.id.in_(candidates))
    return or_(_ticket.c.title.icontains(q, autoescape=True), _ticket.c.id.in_(articles),
               *_number_prefix(q))


def is_short(q: str) -> bool:
    """True when `q` (stripped) is too short for the texts: titles and numbers only."""
    return 0 < len(q) < TRIGRAM


def short_condition(q: str) -> ColumnElement[bool]:
    """Title or number prefix only, for a query shorter than `TRIGRAM` characters."""
    return or_(_ticket.c.title.icontains(q, autoescape=True), *_number_prefix(q))


def search_condition(q: str, dialect: str) -> ColumnElement[bool]:
    """The portal's search for `q` (stripped, non-empty) on this database: titles and
    numbers only when `is_short(q)`, else texts too through the index."""
    if is_short(q):
        return short_condition(q)
    return indexed_condition(q, dialect)
