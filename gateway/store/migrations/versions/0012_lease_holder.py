"""received and outbound mail: which instance holds a row's lease (`lease_holder`)

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-06 21:30:00.000000

Set when a row is leased (hostname:pid), cleared with every result; a row that is due while
it still names a holder was left by an instance that stopped without a result, and leasing
it again is a takeover (store/leases.py).
(There is no 0011: that number was set aside for a branch that needed no migration.)
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ('received_mail', 'outbound_mail'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('lease_holder', sa.String(length=100), nullable=True))


def downgrade() -> None:
    for table in ('received_mail', 'outbound_mail'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('lease_holder')
