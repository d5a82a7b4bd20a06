"""handover_in: the new SM-SR's side of an SM-SR change (smsr_core.handover); operation.awaiting_message_id: the
current SM-SR's (the ES7-HandoverEUICC its SMSRChange operation awaits the callback of)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('handover_in',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('requester_id', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=400), nullable=True),
    sa.Column('function_call_id', sa.String(length=400), nullable=True),
    sa.Column('reply_to', sa.String(length=1000), nullable=True),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('step', sa.String(length=24), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result_status', sa.String(length=24), nullable=True),
    sa.Column('result_subject', sa.String(length=16), nullable=True),
    sa.Column('result_reason', sa.String(length=16), nullable=True),
    sa.Column('result_message', sa.Text(), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('eid', sa.String(length=64), nullable=False),
    sa.Column('current_smsr_id', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('awaiting_message_id', sa.String(length=400), nullable=True),
    sa.Column('handover_message_id', sa.String(length=400), nullable=True),
    sa.Column('handover_reply_to', sa.String(length=1000), nullable=True),
    sa.Column('handover_received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('eis', sa.Text(), nullable=True),
    sa.Column('progress', sa.JSON(), nullable=False),
    sa.Column('secrets', sa.LargeBinary(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_handover_in')),
    sa.UniqueConstraint('requester_id', 'function_call_id', name='uq_handover_in_function_call_id'),
    sa.UniqueConstraint('requester_id', 'message_id', name='uq_handover_in_message_id')
    )
    with op.batch_alter_table('handover_in', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_handover_in_awaiting_message_id'), ['awaiting_message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_handover_in_eid'), ['eid'], unique=False)
        batch_op.create_index(batch_op.f('ix_handover_in_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_handover_in_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_handover_in_state'), ['state'], unique=False)
    with op.batch_alter_table('operation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('awaiting_message_id', sa.String(length=400), nullable=True))
        batch_op.create_index(batch_op.f('ix_operation_awaiting_message_id'), ['awaiting_message_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('operation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_operation_awaiting_message_id'))
        batch_op.drop_column('awaiting_message_id')
    op.drop_table('handover_in')
