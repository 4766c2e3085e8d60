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
    row = session.get(StateRow, key)
    if row is None:
        session.add(StateRow(key=key, value=value))
    else:
        row.value = value


def bump_config(session: Session) -> None:
    """Rules, people, events or the calendar changed: the next tick plans again."""
    set_state(session, CONFIG_VERSION, int(get_state(session, CONFIG_VERSION, 0)) + 1)
