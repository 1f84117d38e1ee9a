"""received mail over the size limit: the size it had when only its beginning was kept

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 02:40:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('received_mail', schema=None) as batch_op:
        batch_op.add_column(sa.Column('truncated_from', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('received_mail', schema=None) as batch_op:
        batch_op.drop_column('truncated_from')
