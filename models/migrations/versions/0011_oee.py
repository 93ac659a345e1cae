"""oee: the downtime reason tree, each stop of a line with its reason, when each line first
reported, OEE per line and shift

Revision ID: 0011_oee
Revises: 0012_connectors
Create Date: 2026-12-03 07:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_oee"
down_revision = "0012_connectors"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oee_config",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "line_stop",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("line_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("sensor_reason", sa.Text(), nullable=True),
        sa.Column("sensor_code", sa.String(length=64), nullable=True),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("assigned_by", sa.String(length=100), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["line_id"], ["line.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("line_id", "started_at"),
    )
    with op.batch_alter_table("line_stop", schema=None) as batch_op:
        batch_op.create_index("ix_line_stop_open", ["line_id", "ended_at"], unique=False)
    op.create_table(
        "oee_line_start",
        sa.Column("line_id", sa.String(length=64), nullable=False),
        sa.Column("first_report_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["line_id"], ["line.id"]),
        sa.PrimaryKeyConstraint("line_id"),
    )
    op.create_table(
        "shift_oee",
        sa.Column("line_id", sa.String(length=64), nullable=False),
        sa.Column("shift_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shift_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shift_name", sa.String(length=64), nullable=False),
        sa.Column("planned_s", sa.Float(), nullable=False),
        sa.Column("run_s", sa.Float(), nullable=False),
        sa.Column("ideal_s", sa.Float(), nullable=False),
        sa.Column("good", sa.BigInteger(), nullable=False),
        sa.Column("scrap", sa.BigInteger(), nullable=False),
        sa.Column("availability", sa.Float(), nullable=True),
        sa.Column("performance", sa.Float(), nullable=True),
        sa.Column("quality", sa.Float(), nullable=True),
        sa.Column("oee", sa.Float(), nullable=True),
        sa.Column("losses", sa.JSON(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["line_id"], ["line.id"]),
        sa.PrimaryKeyConstraint("line_id", "shift_start"),
    )


def downgrade() -> None:
    op.drop_table("shift_oee")
    op.drop_table("oee_line_start")
    with op.batch_alter_table("line_stop", schema=None) as batch_op:
        batch_op.drop_index("ix_line_stop_open")
    op.drop_table("line_stop")
    op.drop_table("oee_config")
