"""Card key values sealed apart from the key sets (security_domain.sealed_keys)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

The key values an older database holds in clear are sealed by ``esx init`` (smsr_core.models.seal_clear_keys),
which has the instance's secrets key; a migration does not.
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('security_domain', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sealed_keys', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('security_domain', schema=None) as batch_op:
        batch_op.drop_column('sealed_keys')
