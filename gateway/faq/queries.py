"""Reading the FAQ for the web pages, `faq list` and `faq export`.

In: a session, and for the web which visibilities the visitor may see (`search.PUBLIC` for
anonymous visitors) and which language they browse in (None: all). Out: frozen read models.
Read-only; an article the visitor may not see is never returned by the listing functions
(`article_by_key` returns it with its visibility: the page decides between a login and 404).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from gateway.faq.source import ArticleSource
from gateway.store.models import table_of
from gateway.store.models_faq import FaqArticle, FaqCategory

_article = table_of(FaqArticle)
_category = table_of(FaqCategory)


@dataclass(frozen=True)
class Category:
    id: int
    key: str
    name: str
    parent_id: int | None
    articles: int                      # visible articles here and below


@dataclass(frozen=True)
class ArticleLink:
    key: str
    title: str
    language: str
    visibility: str


@dataclass(frozen=True)
class CategoryPage:
    category: Category | None          # None: the root
    path: tuple[Category, ...]         # from the root down to `category`
    children: tuple[Category, ...]     # sub-categories with visible articles
    articles: tuple[ArticleLink, ...]  # directly in `category`


@dataclass(frozen=True)
class ArticleView:
    id: int
    key: str
    title: str
    body_html: str
    language: str
    visibility: str
    keywords: tuple[str, ...]
    helpful: int
    not_helpful: int
    updated: datetime
    path: tuple[Category, ...]


def _visible(visibilities: Sequence[str], language: str | None) -> list[Any]:
    conditions: list[Any] = [_article.c.visibility.in_(list(visibilities))]
    if language:
        conditions.append(_article.c.language == language)
    return conditions


def _category_rows(session: Session) -> list[Any]:
    return list(session.execute(select(_category.c.id, _category.c.key, _category.c.name,
                                       _category.c.parent_id)).all())


def _names(session: Session) -> dict[int, Category]:
    """Every category, without counting articles (for paths)."""
    return {row.id: Category(row.id, row.key, row.name, row.parent_id, 0)
            for row in _category_rows(session)}


def categories(session: Session, visibilities: Sequence[str],
               language: str | None) -> dict[int, Category]:
    """Every category with its count of visible articles (its own and its descendants')."""
    rows = _category_rows(session)
    own = dict(session.execute(
        select(_article.c.category_id, func.count()).where(*_visible(visibilities, language))
        .group_by(_article.c.category_id)).all())
    parents = {row.id: row.parent_id for row in rows}
    totals: dict[int, int] = {row.id: 0 for row in rows}
    for category_id, count in own.items():
        node: int | None = category_id
        while node is not None and node in totals:
            totals[node] += count
            node = parents.get(node)
    return {row.id: Category(row.id, row.key, row.name, row.parent_id, totals[row.id])
            for row in rows}


def _path(found: dict[int, Category], category: Category | None) -> tuple[Category, ...]:
    path: list[Category] = []
    while category is not None:
        path.insert(0, category)
        category = found.get(category.parent_id) if category.parent_id else None
    return tuple(path)


def category_page(session: Session, key: str | None, *, visibilities: Sequence[str],
                  language: str | None) -> CategoryPage | None:
    """A level of the explorer (the root when `key` is None); None for an unknown key."""
    found = categories(session, visibilities, language)
    current = None
    if key:
        current = next((c for c in found.values() if c.key == key), None)
        if current is None:
            return None
    parent_id = current.id if current else None
    children = sorted((c for c in found.values() if c.parent_id == parent_id and c.articles),
                      key=lambda c: c.name.casefold())
    articles: tuple[ArticleLink, ...] = ()
    if current is not None:
        articles = tuple(ArticleLink(*row) for row in session.execute(
            select(_article.c.key, _article.c.title, _article.c.language,
                   _article.c.visibility)
            .where(_article.c.category_id == current.id, *_visible(visibilities, language))
            .order_by(_article.c.title)))
    return CategoryPage(current, _path(found, current), tuple(children), articles)


def article_by_key(session: Session, key: str) -> ArticleView | None:
    row = session.execute(select(_article).where(_article.c.key == key)).first()
    if row is None:
        return None
    found = _names(session)
    keywords = tuple(k.strip() for k in row.keywords.split(",") if k.strip())
    return ArticleView(row.id, row.key, row.title, row.body_html, row.language,
                       row.visibility, keywords, row.helpful, row.not_helpful, row.updated,
                       _path(found, found.get(row.category_id)))


def list_articles(session: Session) -> list[dict[str, Any]]:
    """Every article, by category and title, for `faq list` (stable field names)."""
    names = _names(session)
    rows = session.execute(select(_article.c.key, _article.c.title, _article.c.category_id,
                                  _article.c.language, _article.c.visibility,
                                  _article.c.keywords, _article.c.helpful,
                                  _article.c.not_helpful, _article.c.updated)).all()
    listed = [{"slug": row.key, "title": row.title,
               "category": "/".join(c.name for c in _path(names, names.get(row.category_id))),
               "language": row.language, "visibility": row.visibility,
               "keywords": [k.strip() for k in row.keywords.split(",") if k.strip()],
               "helpful": row.helpful, "not_helpful": row.not_helpful,
               "updated": row.updated} for row in rows]
    return sorted(listed, key=lambda a: (a["category"].casefold(), a["title"].casefold()))


def export_sources(session: Session) -> list[ArticleSource]:
    """Every article as the source `faq import` would read back unchanged."""
    names = _names(session)
    rows = session.execute(select(_article).order_by(_article.c.key)).all()
    return [ArticleSource(
        key=row.key, title=row.title,
        category=tuple(c.name for c in _path(names, names.get(row.category_id))),
        keywords=tuple(k.strip() for k in row.keywords.split(",") if k.strip()),
        language=row.language, visibility=row.visibility, body=row.body) for row in rows]


def article_count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(_article)).scalar_one())
