"""web sign-up and forgot-password: rate-limit events

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailflow.db.types

revision = "0016"
# the task said "0009"; main already has 0015 on 0009, and two heads cannot be upgraded
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_rate_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=320), nullable=False),
        sa.Column("at", mailflow.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("web_rate_events", schema=None) as batch_op:
        batch_op.create_index("ix_web_rate_events_scope_key_at", ["scope", "key", "at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("web_rate_events", schema=None) as batch_op:
        batch_op.drop_index("ix_web_rate_events_scope_key_at")
    op.drop_table("web_rate_events")
