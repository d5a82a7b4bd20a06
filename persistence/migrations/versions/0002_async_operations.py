"""asynchronous operations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('euicc_ota',
    sa.Column('eid', sa.String(length=64), nullable=False),
    sa.Column('counter', sa.BigInteger(), nullable=False),
    sa.Column('sms_ref', sa.Integer(), nullable=False),
    sa.Column('last_notification_seq', sa.Integer(), nullable=False),
    sa.Column('active_operation_id', sa.Integer(), nullable=True),
    sa.Column('dirty', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('eid', name=op.f('pk_euicc_ota'))
    )
    op.create_table('operation',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('eid', sa.String(length=64), nullable=False),
    sa.Column('function', sa.String(length=48), nullable=False),
    sa.Column('interface', sa.String(length=8), nullable=False),
    sa.Column('requester_id', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=400), nullable=True),
    sa.Column('function_call_id', sa.String(length=400), nullable=True),
    sa.Column('reply_to', sa.String(length=1000), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('step', sa.String(length=24), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('counter', sa.BigInteger(), nullable=True),
    sa.Column('sent_any', sa.Boolean(), nullable=False),
    sa.Column('result_status', sa.String(length=24), nullable=True),
    sa.Column('result_subject', sa.String(length=16), nullable=True),
    sa.Column('result_reason', sa.String(length=16), nullable=True),
    sa.Column('result_message', sa.Text(), nullable=True),
    sa.Column('euicc_response', sa.Text(), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_operation')),
    sa.UniqueConstraint('requester_id', 'function_call_id', name='uq_operation_function_call_id'),
    sa.UniqueConstraint('requester_id', 'message_id', name='uq_operation_message_id')
    )
    with op.batch_alter_table('operation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_operation_eid'), ['eid'], unique=False)
        batch_op.create_index(batch_op.f('ix_operation_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_operation_state'), ['state'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('wsdl', sa.String(length=64), nullable=False),
    sa.Column('operation', sa.String(length=64), nullable=False),
    sa.Column('sender_role', sa.String(length=8), nullable=False),
    sa.Column('target_oid', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=1000), nullable=True),
    sa.Column('message_id', sa.String(length=400), nullable=False),
    sa.Column('relates_to', sa.String(length=400), nullable=True),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('operation_id', sa.Integer(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_delivered_at'), ['delivered_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_operation_id'), ['operation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_target_oid'), ['target_oid'], unique=False)

    op.create_table('sms_inbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source_addr', sa.String(length=32), nullable=False),
    sa.Column('destination_addr', sa.String(length=32), nullable=False),
    sa.Column('user_data', sa.LargeBinary(), nullable=False),
    sa.Column('concat_ref', sa.Integer(), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_inbox'))
    )
    with op.batch_alter_table('sms_inbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sms_inbox_processed_at'), ['processed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sms_inbox_source_addr'), ['source_addr'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sms_inbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sms_inbox_source_addr'))
        batch_op.drop_index(batch_op.f('ix_sms_inbox_processed_at'))

    op.drop_table('sms_inbox')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_target_oid'))
        batch_op.drop_index(batch_op.f('ix_outbox_operation_id'))
        batch_op.drop_index(batch_op.f('ix_outbox_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_outbox_delivered_at'))

    op.drop_table('outbox')
    with op.batch_alter_table('operation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_operation_state'))
        batch_op.drop_index(batch_op.f('ix_operation_expires_at'))
        batch_op.drop_index(batch_op.f('ix_operation_eid'))

    op.drop_table('operation')
    op.drop_table('euicc_ota')
