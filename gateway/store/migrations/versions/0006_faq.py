"""faq: categories, articles, votes, the search vocabulary, answers by mail; full-text search

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 01:06:27.982728

Besides the tables of `store/models_faq.py`, the search objects of each database, in raw DDL
(`store/schema.py` keeps them out of the models comparison):
- SQLite: FTS5 `faq_fts` (stemmed title, keywords, text; rowid = article id; written by
  `faq/store.py`) and `faq_head_fts` (title and keywords only: what suggestions search, so
  a word common in texts costs them nothing), FTS5 trigram `faq_term_trgm` over `faq_term` (external content, kept in
  step by three triggers). A later batch migration that recreates `faq_term` must recreate
  those triggers.
- PostgreSQL: `pg_trgm` (a trusted extension since PostgreSQL 13: the database owner may
  create it), the generated column `faq_article.search_vector` (german or english by the
  article's language; title weight A, keywords B, text D) with a GIN index, the same for
  title and keywords only (`head_vector`, for suggestions), and a trigram
  GIN index on `faq_term.word`. The GIN indexes have `fastupdate = off`: the FAQ is written
  seldom and read often, and a pending list left by a bulk import (until autovacuum) made
  every search scan it (47 ms instead of 1 ms over 10,000 articles).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_LANGUAGE_CONFIG = ("CASE WHEN language = 'en' THEN 'english'::regconfig "
                    "ELSE 'german'::regconfig END")
POSTGRES_SEARCH = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "ALTER TABLE faq_article ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    f"setweight(to_tsvector({_LANGUAGE_CONFIG}, coalesce(title, '')), 'A') || "
    f"setweight(to_tsvector({_LANGUAGE_CONFIG}, coalesce(keywords, '')), 'B') || "
    f"setweight(to_tsvector({_LANGUAGE_CONFIG}, coalesce(body_text, '')), 'D')) STORED",
    "CREATE INDEX ix_faq_article_search ON faq_article USING gin (search_vector) WITH (fastupdate = off)",
    "ALTER TABLE faq_article ADD COLUMN head_vector tsvector GENERATED ALWAYS AS ("
    f"setweight(to_tsvector({_LANGUAGE_CONFIG}, coalesce(title, '')), 'A') || "
    f"setweight(to_tsvector({_LANGUAGE_CONFIG}, coalesce(keywords, '')), 'B')) STORED",
    "CREATE INDEX ix_faq_article_head ON faq_article USING gin (head_vector) WITH (fastupdate = off)",
    "CREATE INDEX ix_faq_term_trgm ON faq_term USING gin (word gin_trgm_ops) WITH (fastupdate = off)",
)
POSTGRES_SEARCH_DROP = (
    "DROP INDEX IF EXISTS ix_faq_term_trgm",
    "DROP INDEX IF EXISTS ix_faq_article_head",
    "ALTER TABLE faq_article DROP COLUMN IF EXISTS head_vector",
    "DROP INDEX IF EXISTS ix_faq_article_search",
    "ALTER TABLE faq_article DROP COLUMN IF EXISTS search_vector",
)
SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE faq_fts USING fts5(title, keywords, body, "
    "tokenize = 'unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE faq_head_fts USING fts5(title, keywords, "
    "tokenize = 'unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE faq_term_trgm USING fts5(word, content = 'faq_term', "
    "content_rowid = 'id', tokenize = 'trigram')",
    "CREATE TRIGGER faq_term_trgm_insert AFTER INSERT ON faq_term BEGIN "
    "INSERT INTO faq_term_trgm (rowid, word) VALUES (new.id, new.word); END",
    "CREATE TRIGGER faq_term_trgm_delete AFTER DELETE ON faq_term BEGIN "
    "INSERT INTO faq_term_trgm (faq_term_trgm, rowid, word) VALUES ('delete', old.id, old.word); "
    "END",
    "CREATE TRIGGER faq_term_trgm_update AFTER UPDATE OF word ON faq_term BEGIN "
    "INSERT INTO faq_term_trgm (faq_term_trgm, rowid, word) VALUES ('delete', old.id, old.word); "
    "INSERT INTO faq_term_trgm (rowid, word) VALUES (new.id, new.word); END",
)
SQLITE_SEARCH_DROP = (
    "DROP TRIGGER IF EXISTS faq_term_trgm_update",
    "DROP TRIGGER IF EXISTS faq_term_trgm_delete",
    "DROP TRIGGER IF EXISTS faq_term_trgm_insert",
    "DROP TABLE IF EXISTS faq_term_trgm",
    "DROP TABLE IF EXISTS faq_head_fts",
    "DROP TABLE IF EXISTS faq_fts",
)


def upgrade() -> None:
    op.create_table('faq_category',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['parent_id'], ['faq_category.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('faq_category', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_faq_category_parent_id'), ['parent_id'], unique=False)

    op.create_table('faq_term',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('word', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('articles', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('word')
    )
    op.create_table('faq_article',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('category_id', sa.Integer(), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('keywords', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('visibility', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('helpful', sa.Integer(), nullable=False),
    sa.Column('not_helpful', sa.Integer(), nullable=False),
    sa.Column('created', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('updated', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('body_html', sa.Text(), nullable=False),
    sa.Column('body_text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['category_id'], ['faq_category.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('faq_article', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_faq_article_category_id'), ['category_id'], unique=False)

    op.create_table('faq_vote',
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('voter', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('helpful', sa.Boolean(), nullable=False),
    sa.Column('at', gateway.store.types.UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['article_id'], ['faq_article.id'], ),
    sa.PrimaryKeyConstraint('article_id', 'voter')
    )
    op.create_table('faq_mail_answer',
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('received_mail_id', sa.Integer(), nullable=False),
    sa.Column('address_key', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('articles', sa.Integer(), nullable=False),
    sa.Column('created', gateway.store.types.UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['received_mail_id'], ['received_mail.id'], ),
    sa.PrimaryKeyConstraint('message_id')
    )
    with op.batch_alter_table('faq_mail_answer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_faq_mail_answer_received_mail_id'), ['received_mail_id'], unique=False)

    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_SEARCH:
            op.execute(statement)
    else:
        for statement in POSTGRES_SEARCH:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_SEARCH_DROP:
            op.execute(statement)
    else:
        for statement in POSTGRES_SEARCH_DROP:
            op.execute(statement)
    with op.batch_alter_table('faq_mail_answer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_faq_mail_answer_received_mail_id'))

    op.drop_table('faq_mail_answer')
    op.drop_table('faq_vote')
    with op.batch_alter_table('faq_article', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_faq_article_category_id'))

    op.drop_table('faq_article')
    op.drop_table('faq_term')
    with op.batch_alter_table('faq_category', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_faq_category_parent_id'))

    op.drop_table('faq_category')
