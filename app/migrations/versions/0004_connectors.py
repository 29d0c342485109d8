"""connectors: configuration, per-item state and sync runs (core/tables_connectors.py)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('connectors',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('acl_default', sa.JSON(), nullable=False),
    sa.Column('interval_s', sa.Integer(), nullable=True),
    sa.Column('owner', sa.String(length=256), nullable=False),
    sa.Column('owner_groups', sa.JSON(), nullable=False),
    sa.Column('owner_role', sa.String(length=16), nullable=False),
    sa.Column('checkpoint', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'name', name='uq_connectors_tenant_name')
    )
    op.create_table('connector_items',
    sa.Column('connector_id', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=512), nullable=False),
    sa.Column('doc_id', sa.String(length=256), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('acl', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('job_id', sa.String(length=32), nullable=True),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connector_id'], ['connectors.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('connector_id', 'external_id')
    )
    op.create_table('connector_syncs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('connector_id', sa.String(length=32), nullable=False),
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('full', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('seen', sa.Integer(), nullable=False),
    sa.Column('indexed', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('deleted', sa.Integer(), nullable=False),
    sa.Column('errors', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['connector_id'], ['connectors.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_connector_syncs_connector', 'connector_syncs', ['connector_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_connector_syncs_connector', table_name='connector_syncs')
    op.drop_table('connector_syncs')
    op.drop_table('connector_items')
    op.drop_table('connectors')
