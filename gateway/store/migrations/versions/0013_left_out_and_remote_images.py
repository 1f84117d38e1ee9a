"""received mail over the size limit: the attachments that were left out (name, type, size);
articles: how many remote images were removed from their HTML

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 21:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('received_mail', schema=None) as batch_op:
        batch_op.add_column(sa.Column('left_out', sa.JSON(), nullable=True))
    with op.batch_alter_table('article', schema=None) as batch_op:
        batch_op.add_column(sa.Column('remote_images', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('article', schema=None) as batch_op:
        batch_op.drop_column('remote_images')
    with op.batch_alter_table('received_mail', schema=None) as batch_op:
        batch_op.drop_column('left_out')
