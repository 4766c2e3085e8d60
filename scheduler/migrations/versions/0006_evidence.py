"""Evidence files (佐证材料): one row per file attached to an occurrence, the file itself kept by content
hash under DUBAN_DATA_DIR.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("org", sa.String(64), nullable=False, server_default="default"),
        sa.Column("occurrence_key", sa.String(200), nullable=False),
        sa.Column("completion_id", sa.Integer),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("uploaded_by", sa.String(200)),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_evidence_org_occurrence", "evidence", ["org", "occurrence_key"])
    op.create_index("ix_evidence_sha256", "evidence", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_evidence_sha256", "evidence")
    op.drop_index("ix_evidence_org_occurrence", "evidence")
    op.drop_table("evidence")
