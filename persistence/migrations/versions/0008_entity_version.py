"""entity_version: one number that every change to the entity registry moves (entities and MNO -> SM-DP pairings)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

Processes keep the entities they look up (persistence.entities.EntityCache) and read this one number at each lookup:
any change by any process, the CLI included, is seen at the next call. Triggers move it, so no writer can forget to.
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TABLES = ("entity", "mno_smdp")


def upgrade() -> None:
    op.create_table('entity_version',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('version', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('id', name=op.f('pk_entity_version')))
    op.execute("INSERT INTO entity_version (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE FUNCTION esx_bump_entity_version() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN UPDATE entity_version SET version = version + 1 WHERE id = 1; RETURN NULL; END $$")
        for table in TABLES:
            op.execute(f"CREATE TRIGGER {table}_moves_entity_version AFTER INSERT OR UPDATE OR DELETE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION esx_bump_entity_version()")
    else:
        for table in TABLES:
            for event in ("INSERT", "UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_{event.lower()}_moves_entity_version AFTER {event} ON {table} "
                           "BEGIN UPDATE entity_version SET version = version + 1 WHERE id = 1; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_moves_entity_version ON {table}")
        op.execute("DROP FUNCTION IF EXISTS esx_bump_entity_version()")
    else:
        for table in TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_{event}_moves_entity_version")
    op.drop_table('entity_version')
