"""faq articles: an index for the explorer's per-category counts; on PostgreSQL the search
vectors kept in the row

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 03:10:00.000000

Two costs of the FAQ search page (`/faq?q=...`, bench/portal.py faq-search):
- Every `/faq` page counts the visible articles of each category (`faq/queries.categories`).
  Without this index that reads every article row: on SQLite the rows, whose long texts
  fill the pages, cost ~9 ms for 10,000 articles; with `(category_id, visibility,
  language)` both databases count from the index alone (~0.6 ms; PostgreSQL once the
  table is vacuumed) and list a category's articles through it.
- PostgreSQL: `ts_rank` reads each match's `search_vector` (~2.8 kB for a 150-350 word
  article, which pglz does not shrink), so with the default storage every ranked row cost a
  fetch from the TOAST table: ranking 3,500 matches took 17 ms, 8 ms with the vector in the
  row (`STORAGE MAIN`: kept in the row, compressed only when the row would not fit on a
  page; the long texts still move out first). The heap grows by the vectors (16 to 33 MB
  for 10,000 articles). Storage applies to values written after the change, so the
  articles are rewritten once here (`UPDATE`, which also recomputes the generated
  vectors: ~10 s for 10,000 articles, well under a second for a few hundred).
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _vector_storage(storage: str) -> None:
    op.execute(f"ALTER TABLE faq_article ALTER COLUMN search_vector SET STORAGE {storage}, "
               f"ALTER COLUMN head_vector SET STORAGE {storage}")
    op.execute("UPDATE faq_article SET body_text = body_text")


def upgrade() -> None:
    op.create_index('ix_faq_article_listing', 'faq_article',
                    ['category_id', 'visibility', 'language'], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        _vector_storage("MAIN")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _vector_storage("EXTENDED")
    op.drop_index('ix_faq_article_listing', table_name='faq_article')
