"""Rows as the planner, re-dating and completions insert them: one builder each, below all of them."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from rules.model import Rule
from rules.planner import Occurrence

from .models import DEFAULT_ORG


def insert_ignore(session: Session, model: type, rows: list[dict[str, Any]]) -> int:
    """Insert rows, skipping those whose unique key exists; returns how many were new."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(dialect)
    # Core, not the ORM: no objects are built for rows that are only written (10^5 reminders at a time)
    table = model.__table__
    stmt = insert(table).on_conflict_do_nothing().returning(table.c.id)
    conn = session.connection()
    total = 0
    for i in range(0, len(rows), 2000):
        total += len(conn.execute(stmt, rows[i:i + 2000]).all())
    return total


def epoch(day: date, at: str, tz: ZoneInfo) -> int:
    hh, mm = at.split(":")
    return int(datetime.combine(day, time(int(hh), int(mm)), tz).timestamp())


def effective_start(rule: Rule, added_on: date) -> date:
    """A rule makes nothing before its `start`, by default the day it was added."""
    return rule.start or added_on


def occurrence_row(org: str, o: Occurrence, title: str, now: datetime) -> dict[str, Any]:
    """A planned occurrence as a new, open row of `occurrences`."""
    return dict(org=org, key=o.key, rule_id=o.rule, title=title, period=o.period, owner=o.owner, opens=o.opens,
                due=o.due, quota=o.quota, provisional=o.provisional,
                event_id=o.event_id if isinstance(o.event_id, int) else None, state="open", done_count=0,
                created_at=now)


def delivery_key(org: str, occ_key: str | None, kind: str, slot: str, pid: str) -> str:
    """The natural key of a message: occurrence, kind, day and person (and branch, if not the default)."""
    key = f"{occ_key or '-'}|{kind}|{slot}|{pid}"
    return key if org == DEFAULT_ORG else f"{org}|{key}"


def delivery_row(org: str, occ_key: str | None, kind: str, slot: str, pid: str, due_at: int,
                 now: datetime) -> dict[str, Any]:
    return dict(org=org, key=delivery_key(org, occ_key, kind, slot, pid), occurrence_key=occ_key, kind=kind,
                slot=slot, recipient=pid, due_at=due_at, status="pending", attempts=0, created_at=now)
