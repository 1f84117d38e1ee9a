"""articles: a trigram index on their text for the portal's My-tickets search

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-06 22:20:00.000000

The portal searches the user's tickets for a substring of an article's text
(`web/ticket_search.py`). Without an index that reads every article of the user; these
indexes find the articles that contain the query (3 characters and more) directly. Raw DDL
per database (`store/schema.py` keeps them out of the models comparison):
- PostgreSQL: `pg_trgm` and the GIN index `ix_article_body_trgm` on `article.body`
  (`gin_trgm_ops`), which serves `body ILIKE '%q%'`. `CREATE EXTENSION` needs a role
  allowed to create it: pg_trgm is a trusted extension (PostgreSQL 13+), so the database's
  owner or a role with CREATE on it may; otherwise an administrator runs
  `CREATE EXTENSION pg_trgm` in the database first (0006 already needs it for the FAQ). The
  index keeps GIN's `fastupdate` on (unlike the FAQ's): articles are written with every
  mail, and the pending list makes that write cheap; searches read the list until it is
  merged (autovacuum, or 4 MB of it).
- SQLite: the FTS5 table `article_trgm` (`tokenize = "trigram"`, external content
  `article`, rowid = article id, `detail = 'none'`: which trigrams a text has, not where;
  a twentieth of the size with positions, and cheaper to write with every mail), kept in step by three triggers and filled from the
  existing articles here (`rebuild`). A later batch migration that recreates `article`
  must recreate those triggers.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0017'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRES_INDEX = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_article_body_trgm ON article USING gin (body gin_trgm_ops)",
)
POSTGRES_INDEX_DROP = ("DROP INDEX IF EXISTS ix_article_body_trgm",)
SQLITE_INDEX = (
    "CREATE VIRTUAL TABLE article_trgm USING fts5(body, content = 'article', "
    "content_rowid = 'id', tokenize = 'trigram', detail = 'none')",
    "CREATE TRIGGER article_trgm_insert AFTER INSERT ON article BEGIN "
    "INSERT INTO article_trgm (rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER article_trgm_delete AFTER DELETE ON article BEGIN "
    "INSERT INTO article_trgm (article_trgm, rowid, body) VALUES ('delete', old.id, old.body); "
    "END",
    "CREATE TRIGGER article_trgm_update AFTER UPDATE OF body ON article BEGIN "
    "INSERT INTO article_trgm (article_trgm, rowid, body) VALUES ('delete', old.id, old.body); "
    "INSERT INTO article_trgm (rowid, body) VALUES (new.id, new.body); END",
    "INSERT INTO article_trgm (article_trgm) VALUES ('rebuild')",
)
SQLITE_INDEX_DROP = (
    "DROP TRIGGER IF EXISTS article_trgm_update",
    "DROP TRIGGER IF EXISTS article_trgm_delete",
    "DROP TRIGGER IF EXISTS article_trgm_insert",
    "DROP TABLE IF EXISTS article_trgm",
)


def upgrade() -> None:
    statements = SQLITE_INDEX if op.get_bind().dialect.name == "sqlite" else POSTGRES_INDEX
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    statements = (SQLITE_INDEX_DROP if op.get_bind().dialect.name == "sqlite"
                  else POSTGRES_INDEX_DROP)
    for statement in statements:
        op.execute(statement)
