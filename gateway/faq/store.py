"""Writing the FAQ: articles with their categories, search index and vocabulary; votes.

In: `ArticleSource`s (from `source.py`) and the session of the caller's transaction. Out:
what changed (`SaveReport`). Nothing is committed here: the caller's transaction makes an
import all or nothing.

Guarantees:
- An article is keyed by its slug: saving the same source again changes nothing (not even
  `updated`); a changed one is updated in place (id, votes and links stay).
- The search index never disagrees with the articles after a commit: PostgreSQL computes
  `search_vector` and `head_vector` itself (generated columns); on SQLite the FTS5 rows of
  each saved article are replaced here, in the same transaction. The vocabulary
  (`faq_term`: word -> number of articles) is adjusted by the difference between each
  article's old and new words.
- A vote is one per browser and article; voting again the other way moves the count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, text, update
from sqlmodel import Session

from gateway.faq.markdown import html_to_text, render_markdown
from gateway.faq.source import ArticleSource
from gateway.faq.text import Analyzer, vocabulary
from gateway.store.models import table_of, utcnow
from gateway.store.models_faq import FaqArticle, FaqCategory, FaqTerm, FaqVote
from gateway.store.upsert import upsert_for

_article = table_of(FaqArticle)
_category = table_of(FaqCategory)
_term = table_of(FaqTerm)
_vote = table_of(FaqVote)
_COMPARED = ("title", "body", "keywords", "language", "visibility", "category_id")
_CHUNK = 500


@dataclass(frozen=True)
class SaveReport:
    added: int
    updated: int
    unchanged: int


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def save_articles(session: Session, sources: Sequence[ArticleSource],
                  progress: Callable[[Iterable[ArticleSource]], Iterable[ArticleSource]]
                  | None = None) -> SaveReport:
    """Add or update every source (see the module docstring)."""
    analyzer = Analyzer()
    categories = _ensure_categories(session, sources)
    existing: dict[str, Any] = {}
    keys = [s.key for s in sources]
    for start in range(0, len(keys), _CHUNK):
        for row in session.execute(select(_article).where(
                _article.c.key.in_(keys[start:start + _CHUNK]))):
            existing[row.key] = row
    words = Counter[str]()
    added = updated = 0
    now = utcnow()
    for source in (progress(sources) if progress else sources):
        values: dict[str, Any] = {"title": source.title, "body": source.body,
                  "keywords": ", ".join(source.keywords), "language": source.language,
                  "visibility": source.visibility,
                  "category_id": categories[source.category_keys[-1]]}
        old = existing.get(source.key)
        if old is not None and all(getattr(old, k) == values[k] for k in _COMPARED):
            continue
        html = render_markdown(source.body)
        values |= {"body_html": html, "body_text": html_to_text(html),
                   "updated": now}
        if old is None:
            article_id = session.execute(insert(_article).values(
                key=source.key, created=now, helpful=0, not_helpful=0, **values)
                .returning(_article.c.id)).scalar_one()
            added += 1
        else:
            article_id = old.id
            session.execute(update(_article).where(_article.c.id == old.id).values(**values))
            words.subtract(vocabulary(_searchable(old.title, old.keywords, old.body_text)))
            updated += 1
        words.update(vocabulary(_searchable(values["title"], values["keywords"],
                                            values["body_text"])))
        if is_sqlite(session):
            _index_sqlite(session, analyzer, article_id, values, replace=old is not None)
    _adjust_vocabulary(session, words)
    return SaveReport(added, updated, len(sources) - added - updated)


def _searchable(title: str, keywords: str, body_text: str) -> str:
    return f"{title}\n{keywords}\n{body_text}"


def _ensure_categories(session: Session, sources: Sequence[ArticleSource]) -> dict[str, int]:
    """Every category path of `sources` exists; key -> id."""
    known = {row.key: row.id for row in session.execute(select(_category.c.key,
                                                               _category.c.id))}
    for source in sources:
        parent = None
        for key, name in zip(source.category_keys, source.category, strict=True):
            if key not in known:
                known[key] = session.execute(insert(_category).values(
                    key=key, name=name, parent_id=parent).returning(_category.c.id)
                ).scalar_one()
            parent = known[key]
    return known


_FTS_DELETE = (text("DELETE FROM faq_fts WHERE rowid = :id"),
               text("DELETE FROM faq_head_fts WHERE rowid = :id"))
_FTS_INSERT = (text("INSERT INTO faq_fts (rowid, title, keywords, body) "
                    "VALUES (:id, :title, :keywords, :body)"),
               text("INSERT INTO faq_head_fts (rowid, title, keywords) "
                    "VALUES (:id, :title, :keywords)"))


def _index_sqlite(session: Session, analyzer: Analyzer, article_id: int,
                  values: dict[str, Any], *, replace: bool) -> None:
    """The article's FTS5 rows: its stems in its own language (FTS5 has no German stemmer)."""
    language = values["language"]
    if replace:
        for statement in _FTS_DELETE:
            session.execute(statement, {"id": article_id})
    row = {"id": article_id, "title": analyzer.index_text(values["title"], language),
           "keywords": analyzer.index_text(values["keywords"], language),
           "body": analyzer.index_text(values["body_text"], language)}
    for statement in _FTS_INSERT:
        session.execute(statement, row)


def _adjust_vocabulary(session: Session, delta: Counter[str]) -> None:
    """Add the per-word article counts in `delta`; words no article has any more go."""
    changes = [{"word": word, "articles": count} for word, count in sorted(delta.items())
               if count and len(word) <= 64]
    if not changes:
        return
    statement = upsert_for(session)(_term)
    statement = statement.on_conflict_do_update(
        index_elements=["word"], set_={"articles": _term.c.articles + statement.excluded.articles})
    for start in range(0, len(changes), _CHUNK):
        session.execute(statement, changes[start:start + _CHUNK])
    if any(count < 0 for count in delta.values()):
        session.execute(delete(_term).where(_term.c.articles <= 0))


def record_vote(session: Session, article_id: int, voter: str, helpful: bool) -> None:
    """One vote per `voter` (a hash of the browser cookie) and article."""
    inserted = session.execute(
        upsert_for(session)(_vote).values(article_id=article_id, voter=voter, helpful=helpful,
                                          at=utcnow())
        .on_conflict_do_nothing(index_elements=["article_id", "voter"])
        .returning(_vote.c.voter)).first()
    counter = _article.c.helpful if helpful else _article.c.not_helpful
    if inserted is not None:
        session.execute(update(_article).where(_article.c.id == article_id)
                        .values({counter: counter + 1}))
        return
    previous = session.execute(select(_vote.c.helpful).where(
        _vote.c.article_id == article_id, _vote.c.voter == voter).with_for_update()
    ).scalar_one()
    if previous == helpful:
        return
    other = _article.c.not_helpful if helpful else _article.c.helpful
    session.execute(update(_vote).where(_vote.c.article_id == article_id,
                                        _vote.c.voter == voter)
                    .values(helpful=helpful, at=utcnow()))
    session.execute(update(_article).where(_article.c.id == article_id)
                    .values({counter: counter + 1, other: other - 1}))
