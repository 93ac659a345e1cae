"""outbox lease: who is delivering an event (claimed_by) and until when (claimed_until),
a short lease renewed while the delivery runs, so a dead worker's claim lapses in seconds

Revision ID: 0005_outbox_lease
Revises: 0004_counters
Create Date: 2026-12-02 14:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_outbox_lease"
down_revision = "0004_counters"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox_event", schema=None) as batch_op:
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("claimed_by")
