"""The workbench: sessions, one-time sign-in and calendar tokens, the audit of actions, and where a
completion or waiver came from (CLI, web, action link) with a request id that stops double submission.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _at(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the cookie's value
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("person", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        _at("created_at", False), _at("seen_at", False), _at("expires_at", False), _at("ended_at"),
    )
    op.create_table(
        "web_tokens",
        sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the token in the link
        sa.Column("purpose", sa.String(16), nullable=False),  # login | calendar
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("person", sa.String(64), nullable=False),
        _at("created_at", False), _at("expires_at"), _at("used_at"), _at("revoked_at"),
    )
    op.create_index("ix_web_tokens_person", "web_tokens", ["org", "person", "purpose"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("org", sa.String(64), nullable=False),
        _at("at", False),
        sa.Column("actor", sa.String(64)),
        sa.Column("via", sa.String(16), nullable=False),  # cli | web | link | wecom
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(200)),
        sa.Column("remote", sa.String(64)),
        sa.Column("detail", sa.JSON),
    )
    op.create_index("ix_audit_events_org_at", "audit_events", ["org", "at"])
    with op.batch_alter_table("completions") as b:
        b.add_column(sa.Column("via", sa.String(16)))
        b.add_column(sa.Column("request_id", sa.String(64)))
    op.create_index("uq_completions_org_request", "completions", ["org", "request_id"], unique=True)
    with op.batch_alter_table("waivers") as b:
        b.add_column(sa.Column("via", sa.String(16)))


def downgrade() -> None:
    op.drop_index("uq_completions_org_request", "completions")
    with op.batch_alter_table("waivers") as b:
        b.drop_column("via")
    with op.batch_alter_table("completions") as b:
        b.drop_column("request_id")
        b.drop_column("via")
    op.drop_table("audit_events")
    op.drop_table("web_tokens")
    op.drop_table("web_sessions")
