"""One sign-in lockout for SMTP AUTH and the web: counters keyed by (login, address), by
login and by address, and the addresses each login signed in from; the web's own per-account
counters go

Revision ID: 0011
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailflow.db.types

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signin_counters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("login", sa.String(length=320), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", mailflow.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", mailflow.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "login", "address", name="uq_signin_counters_key"),
    )
    op.create_index("ix_signin_counters_window_start", "signin_counters", ["window_start"])
    op.create_table(
        "signin_addresses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(length=320), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("last_success_at", mailflow.db.types.UTCDateTime(timezone=True),
                  nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("login", "address", name="uq_signin_addresses_key"),
    )
    op.create_index("ix_signin_addresses_last_success_at", "signin_addresses",
                    ["last_success_at"])
    # the web's per-account lock is replaced by the shared one above
    with op.batch_alter_table("web_logins", schema=None) as batch_op:
        batch_op.drop_column("failures")
        batch_op.drop_column("last_failure_at")
        batch_op.drop_column("locked_until")


def downgrade() -> None:
    with op.batch_alter_table("web_logins", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locked_until",
                                      mailflow.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_failure_at",
                                      mailflow.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("failures", sa.Integer(), nullable=False,
                                      server_default="0"))
    op.drop_index("ix_signin_addresses_last_success_at", table_name="signin_addresses")
    op.drop_table("signin_addresses")
    op.drop_index("ix_signin_counters_window_start", table_name="signin_counters")
    op.drop_table("signin_counters")
