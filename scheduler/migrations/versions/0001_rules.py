"""The first schema: people, groups, rules and their audit trail, user calendar years, events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("wecom", sa.String(128)),
        sa.Column("mobile", sa.String(32)),
    )
    op.create_table(
        "groups",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("members", sa.JSON, nullable=False),
    )
    op.create_table(
        "rules",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("added_on", sa.Date, nullable=False),
        sa.Column("origin", sa.String(500)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "rule_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("rule_id", sa.String(64), nullable=False, index=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("before", sa.JSON),
        sa.Column("after", sa.JSON),
        sa.Column("origin", sa.String(500)),
    )
    op.create_table(
        "calendar_years",
        sa.Column("year", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("holidays", sa.JSON, nullable=False),
        sa.Column("workdays", sa.JSON, nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("type", sa.String(64), nullable=False, index=True),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("title", sa.String(500)),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for t in ("events", "calendar_years", "rule_changes", "rules", "groups", "people"):
        op.drop_table(t)
