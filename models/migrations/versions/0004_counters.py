"""counters: work_order.good and scrap as 64-bit integers

A well-formed progress message's counter above 2^31 - 1 used to overflow the worker's
checkpoint into these columns and halt every sweep (ISSUE8 item 1). Ingest now refuses
implausible counters at the edge; this keeps any value that still reaches SQL storable.

Revision ID: 0004_counters
Revises: 0003
Create Date: 2026-12-02 14:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_counters"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_order", schema=None) as batch_op:
        for column in ("good", "scrap"):
            batch_op.alter_column(
                column, existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False
            )


def downgrade() -> None:
    with op.batch_alter_table("work_order", schema=None) as batch_op:
        for column in ("good", "scrap"):
            batch_op.alter_column(
                column, existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False
            )
