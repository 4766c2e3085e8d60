"""The core loop: occurrences, completions, waivers, deliveries and their attempts, service state.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('pending', 'sending')"


def upgrade() -> None:
    op.create_table(
        "state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.JSON),
    )
    op.create_table(
        "occurrences",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("rule_id", sa.String(64), nullable=False, index=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("period", sa.String(100), nullable=False),
        sa.Column("owner", sa.String(64)),
        sa.Column("opens", sa.Date, nullable=False),
        sa.Column("due", sa.Date, nullable=False, index=True),
        sa.Column("quota", sa.Integer, nullable=False),
        sa.Column("provisional", sa.Boolean, nullable=False),
        sa.Column("event_id", sa.Integer),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("done_count", sa.Integer, nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "completions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("occurrence_key", sa.String(200), nullable=False, index=True),
        sa.Column("by", sa.String(200)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("evidence", sa.Text),
    )
    op.create_table(
        "waivers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("occurrence_key", sa.String(200), nullable=False, index=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("by", sa.String(200)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(300), nullable=False, unique=True),
        sa.Column("occurrence_key", sa.String(200), index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("slot", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("due_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(100)),
        sa.Column("channel", sa.String(32)),
        sa.Column("last_error", sa.Text),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    # the dispatcher's only question, "what is due now", reads this small partial index
    op.create_index("ix_deliveries_active_due", "deliveries", ["due_at"],
                    sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE))
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.Integer, nullable=False, index=True),
        sa.Column("worker", sa.String(100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("channel", sa.String(32)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("detail", sa.JSON),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_active_due", "deliveries")
    for t in ("delivery_attempts", "deliveries", "waivers", "completions", "occurrences", "state"):
        op.drop_table(t)
