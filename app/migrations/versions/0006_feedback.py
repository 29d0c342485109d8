"""answer feedback and tuning proposals (core/tables_feedback.py)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 12:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('answer_feedback',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('workflow', sa.String(length=64), nullable=False),
    sa.Column('user', sa.String(length=256), nullable=False),
    sa.Column('rating', sa.String(length=8), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('corrected', sa.JSON(), nullable=True),
    sa.Column('question', sa.Text(), nullable=False),
    sa.Column('cited_doc_ids', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['workflow_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_answer_feedback_once', 'answer_feedback', ['tenant_id', 'run_id', 'user'], unique=True)
    op.create_index('ix_answer_feedback_tenant', 'answer_feedback', ['tenant_id', 'workflow', 'updated_at'],
                    unique=False)
    op.create_table('tuning_proposals',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('dataset_id', sa.String(length=32), nullable=False),
    sa.Column('principal', sa.JSON(), nullable=False),
    sa.Column('search_space', sa.JSON(), nullable=False),
    sa.Column('holdout', sa.Float(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('metric', sa.String(length=32), nullable=False),
    sa.Column('train_queries', sa.JSON(), nullable=False),
    sa.Column('holdout_queries', sa.JSON(), nullable=False),
    sa.Column('current', sa.JSON(), nullable=False),
    sa.Column('proposed', sa.JSON(), nullable=True),
    sa.Column('train_score', sa.Float(), nullable=True),
    sa.Column('holdout_score', sa.Float(), nullable=True),
    sa.Column('current_train_score', sa.Float(), nullable=True),
    sa.Column('current_holdout_score', sa.Float(), nullable=True),
    sa.Column('trials', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=256), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['dataset_id'], ['eval_datasets.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_tuning_proposals_tenant', 'tuning_proposals', ['tenant_id', 'created_at'], unique=False)
    op.create_table('tuning_active',
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('proposal_id', sa.String(length=32), nullable=True),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('activated_by', sa.String(length=256), nullable=False),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id')
    )


def downgrade() -> None:
    op.drop_table('tuning_active')
    op.drop_index('ix_tuning_proposals_tenant', table_name='tuning_proposals')
    op.drop_table('tuning_proposals')
    op.drop_index('ix_answer_feedback_tenant', table_name='answer_feedback')
    op.drop_index('ix_answer_feedback_once', table_name='answer_feedback')
    op.drop_table('answer_feedback')
