"""factory materials: line calendars and changeovers, materials, BOMs, purchase orders
and the purchase requests a plan raises

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "material",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("on_hand", sa.Float(), nullable=False),
        sa.Column("lead_time_days", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "bom_line",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("material_id", sa.String(length=64), nullable=False),
        sa.Column("qty_per_unit", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["material_id"], ["material.id"]),
        sa.ForeignKeyConstraint(["sku"], ["product.sku"]),
        sa.PrimaryKeyConstraint("sku", "material_id"),
    )
    op.create_table(
        "purchase_order",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("material_id", sa.String(length=64), nullable=False),
        sa.Column("qty", sa.Float(), nullable=False),
        sa.Column("arrives_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(["material_id"], ["material.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("purchase_order", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_purchase_order_material_id"), ["material_id"], unique=False
        )
    op.create_table(
        "purchase_request",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("material_id", sa.String(length=64), nullable=False),
        sa.Column("qty", sa.Float(), nullable=False),
        sa.Column("needed_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("arrives_if_ordered_now", sa.DateTime(timezone=True), nullable=False),
        sa.Column("jobs", sa.JSON(), nullable=False),
        sa.Column("plan_revision_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["material_id"], ["material.id"]),
        sa.ForeignKeyConstraint(["plan_revision_id"], ["plan_revision.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("purchase_request", schema=None) as batch_op:
        batch_op.create_index("ix_purchase_request_status", ["status", "material_id"], unique=False)
    with op.batch_alter_table("line", schema=None) as batch_op:
        batch_op.add_column(sa.Column("calendar", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("changeovers", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("line", schema=None) as batch_op:
        batch_op.drop_column("changeovers")
        batch_op.drop_column("calendar")
    with op.batch_alter_table("purchase_request", schema=None) as batch_op:
        batch_op.drop_index("ix_purchase_request_status")
    op.drop_table("purchase_request")
    with op.batch_alter_table("purchase_order", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_purchase_order_material_id"))
    op.drop_table("purchase_order")
    op.drop_table("bom_line")
    op.drop_table("material")
