"""The whole schema in one place: every models module imported, and what the comparison of
migrations against the models leaves out.

In: nothing. Out: `metadata` (SQLModel's, with every table of `models`, `models_faq` and
`models_files` registered) and `include_name`, the Alembic hook that hides the full-text
search objects migrations 0006 and 0017 create per database (SQLite FTS5 tables and their
shadow tables, the PostgreSQL `search_vector` and `head_vector` columns and the GIN
indexes): SQLAlchemy cannot
declare them portably, so they are created with raw DDL and checked by their own tests.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import SQLModel

import gateway.store.models
import gateway.store.models_faq
import gateway.store.models_files  # noqa: F401  (and the file exchange's)

metadata = SQLModel.metadata

# created by 0006 (the FAQ) and 0017 (articles) with raw DDL, per database
SEARCH_TABLE_PREFIXES = ("faq_fts", "faq_head_fts", "faq_term_trgm",   # SQLite FTS5 (+ _data...)
                         "article_trgm")
SEARCH_INDEXES = frozenset({"ix_faq_article_search", "ix_faq_article_head",   # PostgreSQL GIN
                            "ix_faq_term_trgm", "ix_article_body_trgm"})
SEARCH_COLUMNS = frozenset({("faq_article", "search_vector"),                 # PostgreSQL
                            ("faq_article", "head_vector")})


def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Alembic's `include_name`: False for the database-specific search objects."""
    if name is None:
        return True
    if type_ == "table":
        return not name.startswith(SEARCH_TABLE_PREFIXES)
    if type_ == "index":
        return name not in SEARCH_INDEXES
    if type_ == "column":
        return (parent_names.get("table_name"), name) not in SEARCH_COLUMNS
    return True
