"""faq articles: an index for the explorer's per-category counts

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 03:10:00.000000

Every `/faq` page (the search page too) counts the visible articles of each category
(`faq/queries.categories`). Without this index that reads every article row: on SQLite the
rows, whose long texts fill the pages, cost ~9 ms for 10,000 articles (bench/portal.py
faq-search); with `(category_id, visibility, language)` both databases count from the index
alone (~0.6 ms) and list a category's articles through it.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_faq_article_listing', 'faq_article',
                    ['category_id', 'visibility', 'language'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_faq_article_listing', table_name='faq_article')
