"""MNOs name the SM-DPs that act for them (mno_smdp)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mno_smdp',
    sa.Column('mno_id', sa.String(length=64), nullable=False),
    sa.Column('smdp_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('mno_id', 'smdp_id', name=op.f('pk_mno_smdp'))
    )
    op.create_index(op.f('ix_mno_smdp_smdp_id'), 'mno_smdp', ['smdp_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_mno_smdp_smdp_id'), table_name='mno_smdp')
    op.drop_table('mno_smdp')
