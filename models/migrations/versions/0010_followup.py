"""follow-up: each order's delivery, and the sales rep's follow-up tasks after it
(delivery confirmation, satisfaction score and note)

Revision ID: 0010_followup
Revises: 0009_notifications
Create Date: 2026-12-03 07:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_followup"
down_revision = "0009_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_delivery",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["sales_order.id"]),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_order_delivery_at", "order_delivery", ["delivered_at"])
    op.create_table(
        "followup_task",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("assignee", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_by", sa.String(length=100), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["sales_order.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "kind"),
    )
    op.create_index("ix_followup_task_order_id", "followup_task", ["order_id"])
    op.create_index("ix_followup_task_assignee", "followup_task", ["assignee", "status"])


def downgrade() -> None:
    op.drop_index("ix_followup_task_assignee", table_name="followup_task")
    op.drop_index("ix_followup_task_order_id", table_name="followup_task")
    op.drop_table("followup_task")
    op.drop_index("ix_order_delivery_at", table_name="order_delivery")
    op.drop_table("order_delivery")
