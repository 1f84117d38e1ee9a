"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 23:02:12.885147
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.types

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('blob',
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('created', gateway.store.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_table('meta',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('organisation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created', gateway.store.types.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_table('queue',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('from_address', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_table('staff',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('email_key', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email')
    )
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_email_key'), ['email_key'], unique=False)

    op.create_table('ticket_counter',
    sa.Column('day', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('day')
    )
    op.create_table('customer_user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('email_key', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=True),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('must_change_password', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('password_changed', gateway.store.types.UtcDateTime(), nullable=True),
    sa.Column('created', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('updated', gateway.store.types.UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    with op.batch_alter_table('customer_user', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_user_email_key'), ['email_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_customer_user_organisation_id'), ['organisation_id'], unique=False)

    op.create_table('queue_staff',
    sa.Column('queue_id', sa.Integer(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['queue_id'], ['queue.id'], ),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], ),
    sa.PrimaryKeyConstraint('queue_id', 'staff_id')
    )
    op.create_table('template',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('group', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('names', sa.JSON(), nullable=False),
    sa.Column('addresses', sa.JSON(), nullable=False),
    sa.Column('queue_id', sa.Integer(), nullable=False),
    sa.Column('default_priority', sa.Integer(), nullable=False),
    sa.Column('organisations', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['queue_id'], ['queue.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_table('guide_question',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('required', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['template_id'], ['template.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('template_id', 'key')
    )
    with op.batch_alter_table('guide_question', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_guide_question_template_id'), ['template_id'], unique=False)

    op.create_table('ticket',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=True),
    sa.Column('queue_id', sa.Integer(), nullable=False),
    sa.Column('customer_user_id', sa.Integer(), nullable=True),
    sa.Column('contact_email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('owner_staff_id', sa.Integer(), nullable=True),
    sa.Column('reply_token', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('created', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('updated', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('closed', gateway.store.types.UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['customer_user_id'], ['customer_user.id'], ),
    sa.ForeignKeyConstraint(['owner_staff_id'], ['staff.id'], ),
    sa.ForeignKeyConstraint(['queue_id'], ['queue.id'], ),
    sa.ForeignKeyConstraint(['template_id'], ['template.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number'),
    sa.UniqueConstraint('reply_token')
    )
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.create_index('ix_ticket_customer_number', ['customer_user_id', 'number'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_queue_id'), ['queue_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_state'), ['state'], unique=False)

    op.create_table('guide_answer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ticket_id', 'key')
    )
    with op.batch_alter_table('guide_answer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_guide_answer_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('outbound_mail',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('event', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('envelope_from', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('recipients', sa.JSON(), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('next_attempt', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('deadline', gateway.store.types.UtcDateTime(), nullable=True),
    sa.Column('sent', gateway.store.types.UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbound_mail', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbound_mail_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbound_mail_ticket_id'), ['ticket_id'], unique=False)
        batch_op.create_index('ix_outbound_mail_work', ['status', 'next_attempt'], unique=False)

    op.create_table('received_mail',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('envelope_from', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('envelope_to', sa.JSON(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('raw_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('from_address', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('next_attempt', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('processed', gateway.store.types.UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('received_mail', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_received_mail_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_received_mail_raw_sha256'), ['raw_sha256'], unique=False)
        batch_op.create_index('ix_received_mail_work', ['status', 'next_attempt'], unique=False)

    op.create_table('ticket_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('at', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('field', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('old_value', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('new_value', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ticket_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_history_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('ticket_message_id',
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('message_id')
    )
    with op.batch_alter_table('ticket_message_id', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_message_id_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('customer_user_id', sa.Integer(), nullable=True),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('created', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('expires', gateway.store.types.UtcDateTime(), nullable=False),
    sa.Column('used', gateway.store.types.UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['customer_user_id'], ['customer_user.id'], ),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('article',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('direction', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('internal', sa.Boolean(), nullable=False),
    sa.Column('sender', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('from_address', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('to_addresses', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('body', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('body_html', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('quote_start', sa.Integer(), nullable=True),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('received_mail_id', sa.Integer(), nullable=True),
    sa.Column('outbound_mail_id', sa.Integer(), nullable=True),
    sa.Column('created', gateway.store.types.UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['outbound_mail_id'], ['outbound_mail.id'], ),
    sa.ForeignKeyConstraint(['received_mail_id'], ['received_mail.id'], ),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('article', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_article_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_article_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('attachment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('filename', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('content_type', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('content_id', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('inline', sa.Boolean(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['article_id'], ['article.id'], ),
    sa.ForeignKeyConstraint(['sha256'], ['blob.sha256'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachment_article_id'), ['article_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachment_sha256'), ['sha256'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachment_sha256'))
        batch_op.drop_index(batch_op.f('ix_attachment_article_id'))

    op.drop_table('attachment')
    with op.batch_alter_table('article', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_article_ticket_id'))
        batch_op.drop_index(batch_op.f('ix_article_message_id'))

    op.drop_table('article')
    op.drop_table('token')
    with op.batch_alter_table('ticket_message_id', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_message_id_ticket_id'))

    op.drop_table('ticket_message_id')
    with op.batch_alter_table('ticket_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_history_ticket_id'))

    op.drop_table('ticket_history')
    with op.batch_alter_table('received_mail', schema=None) as batch_op:
        batch_op.drop_index('ix_received_mail_work')
        batch_op.drop_index(batch_op.f('ix_received_mail_raw_sha256'))
        batch_op.drop_index(batch_op.f('ix_received_mail_message_id'))

    op.drop_table('received_mail')
    with op.batch_alter_table('outbound_mail', schema=None) as batch_op:
        batch_op.drop_index('ix_outbound_mail_work')
        batch_op.drop_index(batch_op.f('ix_outbound_mail_ticket_id'))
        batch_op.drop_index(batch_op.f('ix_outbound_mail_message_id'))

    op.drop_table('outbound_mail')
    with op.batch_alter_table('guide_answer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_guide_answer_ticket_id'))

    op.drop_table('guide_answer')
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_state'))
        batch_op.drop_index(batch_op.f('ix_ticket_queue_id'))
        batch_op.drop_index('ix_ticket_customer_number')

    op.drop_table('ticket')
    with op.batch_alter_table('guide_question', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_guide_question_template_id'))

    op.drop_table('guide_question')
    op.drop_table('template')
    op.drop_table('queue_staff')
    with op.batch_alter_table('customer_user', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_user_organisation_id'))
        batch_op.drop_index(batch_op.f('ix_customer_user_email_key'))

    op.drop_table('customer_user')
    op.drop_table('ticket_counter')
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_email_key'))

    op.drop_table('staff')
    op.drop_table('queue')
    op.drop_table('organisation')
    op.drop_table('meta')
    op.drop_table('blob')
