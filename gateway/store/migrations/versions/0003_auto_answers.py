"""auto answers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 23:51:43.176723
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('auto_answer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address_key', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('event', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('sent', gateway.store.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('auto_answer', schema=None) as batch_op:
        batch_op.create_index('ix_auto_answer_address_sent', ['address_key', 'sent'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('auto_answer', schema=None) as batch_op:
        batch_op.drop_index('ix_auto_answer_address_sent')

    op.drop_table('auto_answer')
