"""connectors: order versions are 64-bit, so a CRM's change time in epoch milliseconds
(Jiandaoyun's updateTime, HubSpot's occurredAt, Salesforce's LastModifiedDate) can be the
version

Revision ID: 0012_connectors
Revises: 0010_followup
Create Date: 2026-12-03 07:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_connectors"
down_revision = "0010_followup"
branch_labels = None
depends_on = None

COLUMNS = [
    ("sales_order", "version", False),
    ("sales_order", "promise_version", True),
    ("inbox_event", "order_version", True),
    ("order_tombstone", "version", False),
    ("pending_change", "order_version", False),
]


def _retype(old: type[sa.types.TypeEngine], new: type[sa.types.TypeEngine]) -> None:
    # Batch mode: SQLite cannot alter a column's type in place (it copies the table).
    for table in dict.fromkeys(t for t, _, _ in COLUMNS):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for t, column, nullable in COLUMNS:
                if t == table:
                    batch_op.alter_column(
                        column, type_=new(), existing_type=old(), existing_nullable=nullable
                    )


def upgrade() -> None:
    _retype(sa.Integer, sa.BigInteger)


def downgrade() -> None:
    _retype(sa.BigInteger, sa.Integer)
