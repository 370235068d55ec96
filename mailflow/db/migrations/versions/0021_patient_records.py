"""patients: the MRN's keyed lookup and merged records (issue #14 item 1)

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mailflow.db.types import UTCDateTime

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mrn_lookup", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("merged_at", UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("merged_by", sa.String(320), nullable=False,
                                      server_default=""))
        batch_op.create_foreign_key("fk_patients_merged_into", "patients",
                                    ["merged_into_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_constraint("fk_patients_merged_into", type_="foreignkey")
        batch_op.drop_column("merged_by")
        batch_op.drop_column("merged_at")
        batch_op.drop_column("merged_into_id")
        batch_op.drop_column("mrn_lookup")
