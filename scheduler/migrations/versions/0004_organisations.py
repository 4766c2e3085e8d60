"""Organisations (branches): rules, people, groups, events, occurrences and deliveries belong to one.

Existing rows go to the default organisation, so a single branch keeps working as before.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DEFAULT = "default"
NAMES = {"pk": "pk_%(table_name)s", "uq": "uq_%(table_name)s_%(column_0_name)s"}


def _org() -> sa.Column:
    return sa.Column("org", sa.String(64), nullable=False, server_default=DEFAULT)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    # tables keyed by (org, id): the same rule id in every branch
    for table in ("people", "groups", "rules"):
        with op.batch_alter_table(table, naming_convention=NAMES, recreate="always" if not pg else "auto") as b:
            b.add_column(_org())
            b.drop_constraint(f"{table}_pkey" if pg else f"pk_{table}", type_="primary")
            b.create_primary_key(f"pk_{table}", ["org", "id"])
    # occurrence keys are unique within an organisation
    with op.batch_alter_table("occurrences", naming_convention=NAMES, recreate="always" if not pg else "auto") as b:
        b.add_column(_org())
        b.drop_constraint("occurrences_key_key" if pg else "uq_occurrences_key", type_="unique")
        b.create_unique_constraint("uq_occurrences_org_key", ["org", "key"])
    # rows that only need to know their organisation
    for table in ("deliveries", "events", "completions", "waivers", "rule_changes"):
        op.add_column(table, _org())
    op.create_index("ix_deliveries_org_occurrence", "deliveries", ["org", "occurrence_key"])
    op.create_index("ix_rule_changes_org", "rule_changes", ["org"])


def downgrade() -> None:  # pragma: no cover - only the default organisation can go back
    raise NotImplementedError("organisations cannot be removed again")
