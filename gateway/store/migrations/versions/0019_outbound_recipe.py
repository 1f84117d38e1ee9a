"""outbound mail: the recipe it is rendered from at delivery; its bytes only once rendered

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 06:00:00.000000

An answer used to be rendered (Jinja templates, quoted-printable, headers) in the
transaction that caused it: on the worker's path, a fifth of its time per new ticket. Now
that transaction stores a recipe (`outbound/recipe.py`: event, language, context, the
headers fixed at queue time), and the outbox renders it and stores the bytes before it
sends them, so every attempt sends the same bytes. `raw` is empty (NULL) until then.

SQLite cannot drop a NOT NULL in place: the table is copied once (batch mode).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbound_mail', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recipe', sa.Text(), nullable=True))
        batch_op.alter_column('raw', existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    # an older release cannot render a recipe: refuse rather than drop those mails
    waiting = op.get_bind().execute(
        sa.text("SELECT count(*) FROM outbound_mail WHERE raw IS NULL")).scalar()
    if waiting:
        raise RuntimeError(
            f"{waiting} queued mails are not rendered yet; let `ticketgw serve` send them "
            "(its outbox renders them) before downgrading below 0019")
    with op.batch_alter_table('outbound_mail', schema=None) as batch_op:
        batch_op.alter_column('raw', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column('recipe')
