"""Small named values in the `state` table, and the config version that tells the tick to re-plan."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from .models import StateRow

CONFIG_VERSION = "config_version"


def get_state(session: Session, key: str, default: Any = None) -> Any:
    row = session.get(StateRow, key)
    return default if row is None else row.value


def set_state(session: Session, key: str, value: Any) -> None:
    """Upsert: two processes setting the same new key at once must not collide."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(StateRow).values(key=key, value=value)
    session.execute(stmt.on_conflict_do_update(index_elements=[StateRow.key], set_={"value": stmt.excluded.value}))
    for obj in list(session.identity_map.values()):
        if isinstance(obj, StateRow) and obj.key == key:
            session.expire(obj)  # a row loaded before now no longer says what the table holds


def bump_config(session: Session, org: str | None = None) -> None:
    """Something the plan depends on changed: a branch's rules, people or events (`org`), or the
    calendar that every branch shares (no `org`). The next tick plans the branches concerned again."""
    key = CONFIG_VERSION if org is None else f"{CONFIG_VERSION}:{org}"
    # lock the row (PostgreSQL) so two processes bumping at once both count
    row = session.get(StateRow, key, with_for_update=True)
    set_state(session, key, int(row.value if row is not None else 0) + 1)


def states_with_prefix(session: Session, prefix: str) -> dict[str, Any]:
    from sqlalchemy import select

    return {r.key: r.value for r in session.scalars(select(StateRow).where(StateRow.key.like(prefix + "%")))}
