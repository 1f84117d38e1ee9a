"""web portal: sessions and rate-limit attempts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 12:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('web_session',
    sa.Column('id_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('customer_user_id', sa.Integer(), nullable=False),
    sa.Column('created', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('last_seen', gateway.store.types.UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_user_id'], ['customer_user.id'], ),
    sa.PrimaryKeyConstraint('id_hash')
    )
    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_session_customer_user_id'), ['customer_user_id'], unique=False)

    op.create_table('web_attempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('at', gateway.store.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('web_attempt', schema=None) as batch_op:
        batch_op.create_index('ix_web_attempt_kind_key_at', ['kind', 'key', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('web_attempt', schema=None) as batch_op:
        batch_op.drop_index('ix_web_attempt_kind_key_at')

    op.drop_table('web_attempt')
    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_session_customer_user_id'))

    op.drop_table('web_session')
