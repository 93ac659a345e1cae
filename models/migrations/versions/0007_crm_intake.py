"""crm intake: received CRM events wait in the inbox for the worker (their canonical
event, apply attempts, an index to find them), and a tombstone per order cancelled before
it was ever created

Revision ID: 0007_crm_intake
Revises: 0006_web_sessions
Create Date: 2026-12-02 14:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_crm_intake"
down_revision = "0006_web_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index("ix_inbox_event_outcome", ["outcome", "id"], unique=False)
    op.create_table(
        "order_tombstone",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )


def downgrade() -> None:
    op.drop_table("order_tombstone")
    with op.batch_alter_table("inbox_event", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_event_outcome")
        batch_op.drop_column("attempts")
        batch_op.drop_column("event")
