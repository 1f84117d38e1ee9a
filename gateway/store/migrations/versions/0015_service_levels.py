"""tickets: service-level due times, the first response and the paused clock

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 22:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store.types import UtcDateTime

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_response_due', UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column('solution_due', UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column('first_response_at', UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column('sla_paused_at', UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column('sla_paused_seconds', sa.Integer(), nullable=False,
                                      server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        for column in ('sla_paused_seconds', 'sla_paused_at', 'first_response_at',
                       'solution_due', 'first_response_due'):
            batch_op.drop_column(column)
