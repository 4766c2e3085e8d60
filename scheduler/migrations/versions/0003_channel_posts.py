"""Posts to rate-limited channels, so several processes together keep WeCom's limits.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_posts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("bucket", sa.String(200), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_channel_posts_bucket_at", "channel_posts", ["bucket", "at"])


def downgrade() -> None:
    op.drop_index("ix_channel_posts_bucket_at", "channel_posts")
    op.drop_table("channel_posts")
