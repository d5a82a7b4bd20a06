"""SM-DP asynchronous operations (downloads and relayed ES2 functions)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('smdp_operation',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('function', sa.String(length=32), nullable=False),
    sa.Column('requester_id', sa.String(length=64), nullable=False),
    sa.Column('eid', sa.String(length=64), nullable=False),
    sa.Column('smsr_id', sa.String(length=64), nullable=False),
    sa.Column('iccid', sa.String(length=24), nullable=True),
    sa.Column('profile_type', sa.String(length=200), nullable=True),
    sa.Column('enable', sa.Boolean(), nullable=False),
    sa.Column('message_id', sa.String(length=400), nullable=True),
    sa.Column('function_call_id', sa.String(length=400), nullable=True),
    sa.Column('reply_to', sa.String(length=1000), nullable=True),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('step', sa.String(length=24), nullable=True),
    sa.Column('phase', sa.String(length=8), nullable=True),
    sa.Column('awaiting_message_id', sa.String(length=400), nullable=True),
    sa.Column('callback', sa.JSON(), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('isd_p_aid', sa.String(length=32), nullable=True),
    sa.Column('progress', sa.JSON(), nullable=False),
    sa.Column('secrets', sa.LargeBinary(), nullable=True),
    sa.Column('failure', sa.JSON(), nullable=True),
    sa.Column('result_status', sa.String(length=24), nullable=True),
    sa.Column('result_subject', sa.String(length=16), nullable=True),
    sa.Column('result_reason', sa.String(length=16), nullable=True),
    sa.Column('result_message', sa.Text(), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_smdp_operation')),
    sa.UniqueConstraint('requester_id', 'function_call_id', name='uq_smdp_operation_function_call_id'),
    sa.UniqueConstraint('requester_id', 'message_id', name='uq_smdp_operation_message_id')
    )
    with op.batch_alter_table('smdp_operation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_smdp_operation_awaiting_message_id'), ['awaiting_message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_smdp_operation_eid'), ['eid'], unique=False)
        batch_op.create_index(batch_op.f('ix_smdp_operation_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_smdp_operation_state'), ['state'], unique=False)


def downgrade() -> None:
    op.drop_table('smdp_operation')
