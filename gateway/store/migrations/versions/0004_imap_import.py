"""imap import

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 00:17:38.437682
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('mailbox_state',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('folder', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=True),
    sa.Column('last_uid', sa.BigInteger(), nullable=False),
    sa.Column('messages', sa.Integer(), nullable=True),
    sa.Column('backlog', sa.Integer(), nullable=False),
    sa.Column('imported', sa.Integer(), nullable=False),
    sa.Column('last_check', gateway.store.types.UtcDateTime(), nullable=True),
    sa.Column('last_attempt', gateway.store.types.UtcDateTime(), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('error_kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('error_since', gateway.store.types.UtcDateTime(), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('imap_import',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mailbox', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('folder', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('uid', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('received_mail_id', sa.Integer(), nullable=False),
    sa.Column('duplicate', sa.Boolean(), nullable=False),
    sa.Column('imported', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('done', gateway.store.types.UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['received_mail_id'], ['received_mail.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mailbox', 'folder', 'uidvalidity', 'uid')
    )
    with op.batch_alter_table('imap_import', schema=None) as batch_op:
        batch_op.create_index('ix_imap_import_mailbox_done', ['mailbox', 'done'], unique=False)
        batch_op.create_index('ix_imap_import_mailbox_sha256', ['mailbox', 'sha256'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('imap_import', schema=None) as batch_op:
        batch_op.drop_index('ix_imap_import_mailbox_sha256')
        batch_op.drop_index('ix_imap_import_mailbox_done')

    op.drop_table('imap_import')
    op.drop_table('mailbox_state')
