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


def bump_config(session: Session) -> None:
    """Rules, people, events or the calendar changed: the next tick plans again."""
    set_state(session, CONFIG_VERSION, int(get_state(session, CONFIG_VERSION, 0)) + 1)
