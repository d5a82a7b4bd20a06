"""initial schema: entities, EIS registry, audit trails

Revision ID: 0001
Revises: 
Create Date: 2026-11-21
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('call_audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('function', sa.String(length=64), nullable=False),
    sa.Column('requester_id', sa.String(length=64), nullable=True),
    sa.Column('message_id', sa.String(length=400), nullable=True),
    sa.Column('function_call_id', sa.String(length=400), nullable=True),
    sa.Column('eid', sa.String(length=64), nullable=True),
    sa.Column('iccid', sa.String(length=24), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('subject', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.String(length=16), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_audit'))
    )
    with op.batch_alter_table('call_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_audit_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_audit_eid'), ['eid'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_audit_function'), ['function'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_audit_requester_id'), ['requester_id'], unique=False)

    op.create_table('entity',
    sa.Column('oid', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=8), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('endpoint', sa.String(length=400), nullable=True),
    sa.Column('notification_endpoint', sa.String(length=400), nullable=True),
    sa.Column('cert_pem', sa.Text(), nullable=True),
    sa.Column('cert_sha256', sa.String(length=64), nullable=True),
    sa.Column('signing_cert_pem', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('oid', name=op.f('pk_entity'))
    )
    with op.batch_alter_table('entity', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_entity_cert_sha256'), ['cert_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_entity_role'), ['role'], unique=False)

    op.create_table('euicc',
    sa.Column('eid', sa.String(length=64), nullable=False),
    sa.Column('eum_id', sa.String(length=64), nullable=False),
    sa.Column('production_date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('platform_type', sa.String(length=100), nullable=False),
    sa.Column('platform_version', sa.String(length=32), nullable=False),
    sa.Column('isd_p_loadfile_aid', sa.String(length=32), nullable=False),
    sa.Column('isd_p_module_aid', sa.String(length=32), nullable=False),
    sa.Column('cattp_support', sa.Boolean(), nullable=False),
    sa.Column('cattp_version', sa.String(length=32), nullable=True),
    sa.Column('http_support', sa.Boolean(), nullable=False),
    sa.Column('http_version', sa.String(length=32), nullable=True),
    sa.Column('secure_packet_version', sa.String(length=32), nullable=False),
    sa.Column('remote_provisioning_version', sa.String(length=32), nullable=False),
    sa.Column('signed_info_xml', sa.LargeBinary(), nullable=False),
    sa.Column('eum_signature_xml', sa.LargeBinary(), nullable=False),
    sa.Column('remaining_memory', sa.BigInteger(), nullable=False),
    sa.Column('available_memory_for_profiles', sa.BigInteger(), nullable=False),
    sa.Column('last_audit_date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('smsr_id', sa.String(length=64), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('eid', name=op.f('pk_euicc'))
    )
    with op.batch_alter_table('euicc', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_euicc_eum_id'), ['eum_id'], unique=False)

    op.create_table('eis_audit_record',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('eid', sa.String(length=64), nullable=False),
    sa.Column('smsr_id', sa.String(length=64), nullable=False),
    sa.Column('operation_date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('operation_type', sa.String(length=4), nullable=False),
    sa.Column('requester_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=True),
    sa.Column('subject', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.String(length=16), nullable=True),
    sa.Column('isd_p_aid', sa.String(length=32), nullable=True),
    sa.Column('iccid', sa.String(length=24), nullable=True),
    sa.Column('imei', sa.String(length=32), nullable=True),
    sa.Column('meid', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['eid'], ['euicc.eid'], name=op.f('fk_eis_audit_record_eid_euicc'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_eis_audit_record'))
    )
    with op.batch_alter_table('eis_audit_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_eis_audit_record_eid'), ['eid'], unique=False)

    op.create_table('eis_property',
    sa.Column('eid', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('value', sa.String(length=2000), nullable=False),
    sa.ForeignKeyConstraint(['eid'], ['euicc.eid'], name=op.f('fk_eis_property_eid_euicc'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('eid', 'key', name=op.f('pk_eis_property'))
    )
    op.create_table('profile',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('eid', sa.String(length=64), nullable=False),
    sa.Column('iccid', sa.String(length=24), nullable=False),
    sa.Column('isd_p_aid', sa.String(length=32), nullable=False),
    sa.Column('mno_id', sa.String(length=64), nullable=False),
    sa.Column('fallback_attribute', sa.Boolean(), nullable=False),
    sa.Column('imsi', sa.String(length=15), nullable=True),
    sa.Column('msisdn', sa.String(length=15), nullable=True),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('smdp_id', sa.String(length=64), nullable=True),
    sa.Column('profile_type', sa.String(length=100), nullable=True),
    sa.Column('allocated_memory', sa.BigInteger(), nullable=False),
    sa.Column('free_memory', sa.BigInteger(), nullable=True),
    sa.Column('pol2', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['eid'], ['euicc.eid'], name=op.f('fk_profile_eid_euicc'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_profile')),
    sa.UniqueConstraint('eid', 'isd_p_aid', name=op.f('uq_profile_eid')),
    sa.UniqueConstraint('iccid', name=op.f('uq_profile_iccid'))
    )
    with op.batch_alter_table('profile', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_profile_eid'), ['eid'], unique=False)
        batch_op.create_index(batch_op.f('ix_profile_mno_id'), ['mno_id'], unique=False)

    op.create_table('security_domain',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('eid', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=8), nullable=False),
    sa.Column('aid', sa.String(length=32), nullable=False),
    sa.Column('tars', sa.JSON(), nullable=False),
    sa.Column('sin', sa.String(length=32), nullable=False),
    sa.Column('sdin', sa.String(length=32), nullable=False),
    sa.Column('keysets', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['eid'], ['euicc.eid'], name=op.f('fk_security_domain_eid_euicc'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_security_domain')),
    sa.UniqueConstraint('eid', 'role', name=op.f('uq_security_domain_eid'))
    )
    with op.batch_alter_table('security_domain', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_security_domain_eid'), ['eid'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('security_domain', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_security_domain_eid'))

    op.drop_table('security_domain')
    with op.batch_alter_table('profile', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_profile_mno_id'))
        batch_op.drop_index(batch_op.f('ix_profile_eid'))

    op.drop_table('profile')
    op.drop_table('eis_property')
    with op.batch_alter_table('eis_audit_record', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_eis_audit_record_eid'))

    op.drop_table('eis_audit_record')
    with op.batch_alter_table('euicc', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_euicc_eum_id'))

    op.drop_table('euicc')
    with op.batch_alter_table('entity', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_entity_role'))
        batch_op.drop_index(batch_op.f('ix_entity_cert_sha256'))

    op.drop_table('entity')
    with op.batch_alter_table('call_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_audit_requester_id'))
        batch_op.drop_index(batch_op.f('ix_call_audit_function'))
        batch_op.drop_index(batch_op.f('ix_call_audit_eid'))
        batch_op.drop_index(batch_op.f('ix_call_audit_at'))

    op.drop_table('call_audit')
