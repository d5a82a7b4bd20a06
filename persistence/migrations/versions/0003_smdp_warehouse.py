"""SM-DP profile warehouse

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('profile_type',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('mno_id', sa.String(length=64), nullable=False),
    sa.Column('template', sa.LargeBinary(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_profile_type')),
    sa.UniqueConstraint('name', name=op.f('uq_profile_type_name'))
    )
    with op.batch_alter_table('profile_type', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_profile_type_mno_id'), ['mno_id'], unique=False)

    op.create_table('profile_batch',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('profile_type_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['profile_type_id'], ['profile_type.id'], name=op.f('fk_profile_batch_profile_type_id_profile_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_profile_batch'))
    )
    with op.batch_alter_table('profile_batch', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_profile_batch_profile_type_id'), ['profile_type_id'], unique=False)

    op.create_table('stock_profile',
    sa.Column('iccid', sa.String(length=20), nullable=False),
    sa.Column('profile_type_id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('imsi', sa.String(length=15), nullable=False),
    sa.Column('msisdn', sa.String(length=15), nullable=True),
    sa.Column('secrets', sa.LargeBinary(), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('eid', sa.String(length=64), nullable=True),
    sa.Column('download_id', sa.Integer(), nullable=True),
    sa.Column('state_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('releases', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['profile_batch.id'], name=op.f('fk_stock_profile_batch_id_profile_batch')),
    sa.ForeignKeyConstraint(['profile_type_id'], ['profile_type.id'], name=op.f('fk_stock_profile_profile_type_id_profile_type')),
    sa.PrimaryKeyConstraint('iccid', name=op.f('pk_stock_profile'))
    )
    with op.batch_alter_table('stock_profile', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stock_profile_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stock_profile_download_id'), ['download_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stock_profile_eid'), ['eid'], unique=False)
        batch_op.create_index('ix_stock_profile_type_state', ['profile_type_id', 'state'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('stock_profile', schema=None) as batch_op:
        batch_op.drop_index('ix_stock_profile_type_state')
        batch_op.drop_index(batch_op.f('ix_stock_profile_eid'))
        batch_op.drop_index(batch_op.f('ix_stock_profile_download_id'))
        batch_op.drop_index(batch_op.f('ix_stock_profile_batch_id'))

    op.drop_table('stock_profile')
    with op.batch_alter_table('profile_batch', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_profile_batch_profile_type_id'))

    op.drop_table('profile_batch')
    with op.batch_alter_table('profile_type', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_profile_type_mno_id'))

    op.drop_table('profile_type')
