"""file exchange: areas and their files

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 01:05:43.245585

See gateway/store/models_files.py.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

# Chained onto 0005 on this branch; at the merge it follows 0006 (the FAQ's tables), which
# it does not depend on.
revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('file_area',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('mailed_to', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('expires', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('download_limit', sa.Integer(), nullable=True),
    sa.Column('download_count', sa.Integer(), nullable=False),
    sa.Column('revoked', gateway.store.types.UtcDateTime(), nullable=True),
    sa.Column('closed', gateway.store.types.UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('file_area', schema=None) as batch_op:
        batch_op.create_index('ix_file_area_open_expires', ['closed', 'expires'], unique=False)
        batch_op.create_index(batch_op.f('ix_file_area_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('file_area_file',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('area_id', sa.Integer(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('filename', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('content_type', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('uploaded', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('uploader', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['area_id'], ['file_area.id'], ),
    sa.ForeignKeyConstraint(['article_id'], ['article.id'], ),
    sa.ForeignKeyConstraint(['sha256'], ['blob.sha256'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('file_area_file', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_file_area_file_area_id'), ['area_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_file_area_file_sha256'), ['sha256'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('file_area_file', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_file_area_file_sha256'))
        batch_op.drop_index(batch_op.f('ix_file_area_file_area_id'))

    op.drop_table('file_area_file')
    with op.batch_alter_table('file_area', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_file_area_ticket_id'))
        batch_op.drop_index('ix_file_area_open_expires')

    op.drop_table('file_area')
