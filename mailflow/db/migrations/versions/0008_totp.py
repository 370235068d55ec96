"""TOTP: an optional second sign-in step (an encrypted secret per account, replay guard)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailflow.db.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_secret", mailflow.db.types.EncryptedText(),
                                      nullable=True))
    with op.batch_alter_table("web_logins", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_last_step", sa.Integer(), server_default="0",
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("web_logins", schema=None) as batch_op:
        batch_op.drop_column("totp_last_step")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("totp_secret")
