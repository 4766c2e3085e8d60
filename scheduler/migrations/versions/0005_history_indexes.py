"""Indexes for a district's history: completions and waivers by branch, recent failed attempts.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_completions_org_at", "completions", ["org", "at"])
    op.create_index("ix_completions_org_occurrence", "completions", ["org", "occurrence_key"])
    op.create_index("ix_waivers_org_occurrence", "waivers", ["org", "occurrence_key"])
    op.create_index("ix_attempts_outcome_started", "delivery_attempts", ["outcome", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_attempts_outcome_started", "delivery_attempts")
    op.drop_index("ix_waivers_org_occurrence", "waivers")
    op.drop_index("ix_completions_org_occurrence", "completions")
    op.drop_index("ix_completions_org_at", "completions")
