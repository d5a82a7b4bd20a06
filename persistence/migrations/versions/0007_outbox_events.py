"""The outbox holds domain events, rendered per channel at delivery (outbox.event_type, payload, channel, interface)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10

``body`` becomes nullable: rows written from now on hold an event instead; rows written before keep their rendered
SOAP body, which delivery still sends as it is.
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_type', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('payload', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('channel', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('interface', sa.String(length=8), nullable=True))
        batch_op.alter_column('body', existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    # Event rows have no body a revision 0006 reader could send: a downgrade drops them, delivered or not.
    op.execute("DELETE FROM outbox WHERE body IS NULL")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('body', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column('interface')
        batch_op.drop_column('channel')
        batch_op.drop_column('payload')
        batch_op.drop_column('event_type')
