"""indexes for the overview, met today and the charts at 100,000 cases

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_state_deadline", "cases", ["state", "sla_deadline"])
    op.create_index("ix_cases_sla_stopped_at", "cases", ["sla_stopped_at"])
    op.create_index("ix_consults_created_at", "consults", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_consults_created_at", table_name="consults")
    op.drop_index("ix_cases_sla_stopped_at", table_name="cases")
    op.drop_index("ix_cases_state_deadline", table_name="cases")
