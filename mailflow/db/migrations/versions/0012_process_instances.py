"""process instances: each claim names the worker process that holds it

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailflow.db.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "process_instances",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("machine", sa.String(length=100), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("pid_start", sa.BigInteger(), nullable=False),
        sa.Column("started_at", mailflow.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", mailflow.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=32), nullable=True))
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=32), nullable=True))
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            "report_claimed_at", mailflow.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("report_claimed_by", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.drop_column("report_claimed_by")
        batch_op.drop_column("report_claimed_at")
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
    op.drop_table("process_instances")
