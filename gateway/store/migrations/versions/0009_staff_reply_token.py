"""tickets: a staff reply address with its own secret (`+s-TOKEN`), apart from the customer's

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00.000000

Every existing ticket gets its token here, from Python's `secrets` (the same
`token_urlsafe(18)` new tickets get), so staff notices of old tickets carry a staff address
too. Staff reply addresses of old notices do not exist: such replies reach the ticket by
its customer address or headers and are kept as internal notes (docs/admin.md 5.2).
"""
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('staff_token', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    ticket = sa.table('ticket', sa.column('id', sa.Integer()), sa.column('staff_token', sa.String()))
    connection = op.get_bind()
    ids = connection.execute(sa.select(ticket.c.id).where(ticket.c.staff_token.is_(None))).scalars().all()
    for start in range(0, len(ids), 1000):
        connection.execute(
            sa.update(ticket).where(ticket.c.id == sa.bindparam('ticket_id'))
            .values(staff_token=sa.bindparam('token')),
            [{'ticket_id': i, 'token': secrets.token_urlsafe(18)} for i in ids[start:start + 1000]])
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_ticket_staff_token', ['staff_token'])


def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_constraint('uq_ticket_staff_token', type_='unique')
        batch_op.drop_column('staff_token')
