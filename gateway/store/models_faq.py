"""The FAQ's tables: categories, articles, votes, the search vocabulary, answers by mail.

Only schema lives here (models.py holds the rest and is at its size limit); the code that
reads and writes these tables is in `gateway/faq/`. `store/schema.py` imports this module
with models.py, so the migrations' comparison test covers these tables too.

Not declared here, because they differ per database and are created by migration 0006
(`store/schema.py` names them, so the comparison leaves them out):
- SQLite: the FTS5 tables `faq_fts` (stemmed title, keywords and text of each article,
  rowid = article id) and `faq_head_fts` (title and keywords only), written by
  `faq/store.py` in the article's transaction; the FTS5 trigram table `faq_term_trgm` over
  `faq_term.word`, kept in step by triggers.
- PostgreSQL: the generated columns `faq_article.search_vector` and `head_vector`
  (`to_tsvector` in the article's language: german or english) with GIN indexes, and a
  `pg_trgm` GIN index on `faq_term.word`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Text
from sqlmodel import Field, SQLModel

from gateway.store.models import utcnow
from gateway.store.types import UtcDateTime


def _time(**kwargs: Any) -> Any:
    return Field(sa_type=UtcDateTime, **kwargs)


class FaqCategory(SQLModel, table=True):
    """A node of the category tree. `key` is the slug path ("arbeitsplatz/drucker"), stable
    across imports; `name` is the last segment as written in the front matter."""

    __tablename__ = "faq_category"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=400)
    name: str = Field(max_length=200)
    parent_id: int | None = Field(default=None, foreign_key="faq_category.id", index=True)


class FaqArticle(SQLModel, table=True):
    """One article. `key` (the slug) makes a re-import update instead of duplicate;
    `body` is the Markdown source, `body_html` its sanitized HTML and `body_text` its plain
    text (what search indexes and snippets are cut from), both derived at import."""

    __tablename__ = "faq_article"
    # the explorer's counts per category read this index alone (migration 0018)
    __table_args__ = (Index("ix_faq_article_listing", "category_id", "visibility", "language"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=200)
    category_id: int = Field(foreign_key="faq_category.id", index=True)
    title: str = Field(max_length=300)
    keywords: str = Field(default="", max_length=1000)       # comma-separated, as imported
    language: str = Field(default="de", max_length=8)        # de | en
    visibility: str = Field(default="public", max_length=16)  # public | customers
    helpful: int = Field(default=0)
    not_helpful: int = Field(default=0)
    created: datetime = _time(default_factory=utcnow)
    updated: datetime = _time(default_factory=utcnow)
    # the long texts last: SQLite reads a row's columns in order, so a search that filters
    # on visibility does not walk through the texts' overflow pages
    body: str = Field(default="", sa_type=Text)
    body_html: str = Field(default="", sa_type=Text)
    body_text: str = Field(default="", sa_type=Text)


class FaqVote(SQLModel, table=True):
    """One "was this helpful?" vote per browser and article (`voter` is the SHA-256 of the
    browser cookie); a second vote from the same browser replaces the first."""

    __tablename__ = "faq_vote"
    article_id: int = Field(foreign_key="faq_article.id", primary_key=True)
    voter: str = Field(primary_key=True, max_length=64)
    helpful: bool
    at: datetime = _time(default_factory=utcnow)


class FaqTerm(SQLModel, table=True):
    """A word (lower-case, as written) found in the articles, with the number of articles
    that contain it: the vocabulary typo correction chooses from. Kept in step with the
    articles in their transaction (`faq/store.py`)."""

    __tablename__ = "faq_term"
    id: int | None = Field(default=None, primary_key=True)
    word: str = Field(unique=True, max_length=64)
    articles: int = Field(default=0)


class FaqMailAnswer(SQLModel, table=True):
    """An answer we mailed to a question sent to the FAQ address: a reply to it that says
    "not solved" is found by its Message-ID and opens a ticket with the original question
    (`received_mail_id`)."""

    __tablename__ = "faq_mail_answer"
    message_id: str = Field(primary_key=True, max_length=1000)
    received_mail_id: int = Field(foreign_key="received_mail.id", index=True)
    address_key: str = Field(max_length=320)
    language: str = Field(default="de", max_length=8)
    articles: int = Field(default=0)                         # how many were suggested
    created: datetime = _time(default_factory=utcnow)
