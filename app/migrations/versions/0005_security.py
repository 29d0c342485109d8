"""security: key rotation, audit chain, rate limits (core/tables_security.py)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 12:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_key_grace',
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('valid_until', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key_hash')
    )
    op.create_index('ix_api_key_grace_key_id', 'api_key_grace', ['key_id'], unique=False)
    op.create_table('api_key_usage',
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key_id')
    )
    op.create_table('audit_events',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('principal', sa.String(length=256), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=64), nullable=False),
    sa.Column('targets', sa.JSON(), nullable=False),
    sa.Column('retrieved', sa.JSON(), nullable=False),
    sa.Column('cited', sa.JSON(), nullable=False),
    sa.Column('models', sa.JSON(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'seq', name='uq_audit_events_tenant_seq')
    )
    op.create_index('ix_audit_events_tenant_action', 'audit_events', ['tenant_id', 'action'], unique=False)
    op.create_index('ix_audit_events_tenant_ts', 'audit_events', ['tenant_id', 'ts'], unique=False)
    op.create_table('audit_heads',
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id')
    )


def downgrade() -> None:
    op.drop_table('audit_heads')
    op.drop_index('ix_audit_events_tenant_ts', table_name='audit_events')
    op.drop_index('ix_audit_events_tenant_action', table_name='audit_events')
    op.drop_table('audit_events')
    op.drop_table('api_key_usage')
    op.drop_index('ix_api_key_grace_key_id', table_name='api_key_grace')
    op.drop_table('api_key_grace')
