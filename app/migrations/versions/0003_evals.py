"""retrieval evaluation: datasets, runs, per-query results (core/tables_evals.py)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('eval_datasets',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=256), nullable=True),
    sa.Column('acl', sa.JSON(), nullable=False),
    sa.Column('split', sa.String(length=64), nullable=False),
    sa.Column('queries', sa.JSON(), nullable=False),
    sa.Column('qrels', sa.JSON(), nullable=False),
    sa.Column('filters', sa.JSON(), nullable=False),
    sa.Column('doc_count', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=256), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_eval_datasets_tenant', 'eval_datasets', ['tenant_id', 'created_at'], unique=False)
    op.create_table('eval_runs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('dataset_id', sa.String(length=32), nullable=False),
    sa.Column('principal', sa.JSON(), nullable=False),
    sa.Column('configs', sa.JSON(), nullable=False),
    sa.Column('ks', sa.JSON(), nullable=False),
    sa.Column('max_queries', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('is_baseline', sa.Boolean(), nullable=False),
    sa.Column('baseline_id', sa.String(length=32), nullable=True),
    sa.Column('regression_threshold', sa.Float(), nullable=False),
    sa.Column('regressions', sa.JSON(), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('created_by', sa.String(length=256), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['dataset_id'], ['eval_datasets.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_eval_runs_dataset', 'eval_runs', ['tenant_id', 'dataset_id', 'created_at'], unique=False)
    op.create_table('eval_query_results',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('config', sa.String(length=64), nullable=False),
    sa.Column('query_id', sa.String(length=256), nullable=False),
    sa.Column('ranked', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['eval_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'config', 'query_id')
    )


def downgrade() -> None:
    op.drop_table('eval_query_results')
    op.drop_index('ix_eval_runs_dataset', table_name='eval_runs')
    op.drop_table('eval_runs')
    op.drop_index('ix_eval_datasets_tenant', table_name='eval_datasets')
    op.drop_table('eval_datasets')
