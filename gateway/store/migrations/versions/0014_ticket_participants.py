"""ticket participants: who besides the customer writes to a ticket and gets its answers

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 22:00:00.000000

See `TicketParticipant` in gateway/store/models.py.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ticket_participant',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('address_key', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('added_by', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('added', gateway.store.types.UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ticket_id', 'address_key')
    )
    with op.batch_alter_table('ticket_participant', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_participant_address_key'), ['address_key'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_participant_ticket_id'), ['ticket_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ticket_participant', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_participant_ticket_id'))
        batch_op.drop_index(batch_op.f('ix_ticket_participant_address_key'))
    op.drop_table('ticket_participant')
