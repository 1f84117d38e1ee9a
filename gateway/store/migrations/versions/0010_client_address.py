"""received mail: the IP address of the SMTP/LMTP client that handed it to us

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:00:00.000000

Written beside 0009 (the staff reply token) on another branch, both after 0008; chained
after 0009 when the branches met. Neither depends on the other.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('received_mail', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_address', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('received_mail', schema=None) as batch_op:
        batch_op.drop_column('client_address')
