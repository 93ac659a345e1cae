"""pending changes: CRM order changes parked for a production manager's approval

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 10:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pending_change',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.String(length=64), nullable=False),
    sa.Column('order_version', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('webhook_id', sa.String(length=200), nullable=False),
    sa.Column('event', sa.JSON(), nullable=False),
    sa.Column('impact', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.String(length=100), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('pending_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_change_order_id'), ['order_id'], unique=False)
        batch_op.create_index('ix_pending_change_status', ['status', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('pending_change', schema=None) as batch_op:
        batch_op.drop_index('ix_pending_change_status')
        batch_op.drop_index(batch_op.f('ix_pending_change_order_id'))

    op.drop_table('pending_change')
