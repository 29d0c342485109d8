"""data governance: PII vault and tenant policies (core/tables_governance.py)

Also adds `api_keys.permissions` (e.g. ["pii:read"]).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21 12:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tenant_pii_policies',
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('policy', sa.JSON(), nullable=False),
    sa.Column('updated_by', sa.String(length=256), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id')
    )
    op.create_table('pii_vault',
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('token', sa.String(length=96), nullable=False),
    sa.Column('pii_type', sa.String(length=16), nullable=False),
    sa.Column('value_hmac', sa.String(length=64), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'token')
    )
    op.create_index('ix_pii_vault_hash', 'pii_vault', ['tenant_id', 'value_hmac'], unique=True)
    op.create_table('pii_occurrences',
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('doc_id', sa.String(length=256), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('value_hmac', sa.String(length=64), nullable=False),
    sa.Column('pii_type', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('token', sa.String(length=96), nullable=True),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'doc_id', 'version', 'value_hmac')
    )
    op.create_index('ix_pii_occurrences_hash', 'pii_occurrences', ['tenant_id', 'value_hmac'], unique=False)
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('permissions', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('permissions')
    op.drop_index('ix_pii_occurrences_hash', table_name='pii_occurrences')
    op.drop_table('pii_occurrences')
    op.drop_index('ix_pii_vault_hash', table_name='pii_vault')
    op.drop_table('pii_vault')
    op.drop_table('tenant_pii_policies')
