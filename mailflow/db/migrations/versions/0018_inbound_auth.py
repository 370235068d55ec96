"""MX mode: the HELO name the SMTP door saw, and mailflow's own Authentication-Results

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("helo", sa.String(255), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("auth_results", sa.Text(), nullable=False,
                                      server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_column("auth_results")
        batch_op.drop_column("helo")
