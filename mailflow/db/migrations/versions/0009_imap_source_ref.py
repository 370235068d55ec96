"""IMAP intake: each spooled message remembers its mailbox, UIDVALIDITY and UID

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_ref", sa.String(length=500), nullable=True))
        batch_op.create_unique_constraint("uq_inbound_messages_source_ref", ["source_ref"])


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_constraint("uq_inbound_messages_source_ref", type_="unique")
        batch_op.drop_column("source_ref")
