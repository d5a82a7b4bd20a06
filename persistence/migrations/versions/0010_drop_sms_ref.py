"""euicc_ota.sms_ref dropped: it was written and never read. A packet's concatenation reference is its SCP80 counter
modulo 256, computed where the packet is segmented (smsr_core.sms_link.concatenation_reference).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('euicc_ota', schema=None) as batch_op:
        batch_op.drop_column('sms_ref')


def downgrade() -> None:
    with op.batch_alter_table('euicc_ota', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sms_ref', sa.Integer(), nullable=False, server_default='0'))
