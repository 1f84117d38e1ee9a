"""bouncing addresses

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 23:29:26.827479
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('bouncing_address',
    sa.Column('address_key', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('permanent', sa.Boolean(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('first_bounce', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('last_bounce', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('last_ticket_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['last_ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('address_key')
    )


def downgrade() -> None:
    op.drop_table('bouncing_address')
