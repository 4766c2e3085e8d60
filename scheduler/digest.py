"""The branch secretary's daily digest: what is overdue, what is due soon, what failed."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from notifications.message import KIND_NAMES, Message, render

from .materialize import epoch, insert_ignore
from .models import DeliveryRow
from .occurrences import status_rows
from .routing import recipient
from .store import load_calendar, load_people_groups


def digest_context(s: Session, now: datetime) -> dict[str, Any]:
    people, _groups = load_people_groups(s)
    rows = status_rows(s, now, closed_days=0)

    def named(r: dict[str, Any]) -> dict[str, Any]:
        owner = people.get(r["owner"]) if r["owner"] else None
        return {**r, "owner_name": owner.name if owner else (r["owner"] or "未指定")}

    dead = s.scalars(select(DeliveryRow).where(DeliveryRow.status == "dead").order_by(DeliveryRow.id.desc()).limit(20))
    failures = [f"{KIND_NAMES.get(d.kind, d.kind)} → {d.recipient}（{d.occurrence_key or d.slot}）：{d.last_error}"
                for d in dead]
    return {"today": now.date(), "overdue": [named(r) for r in rows if r["state"] == "overdue"],
            "due_soon": [named(r) for r in rows if r["state"] == "due-soon"], "failures": failures}


def digest_renderer(s: Session, delivery: DeliveryRow, now: datetime) -> dict[str, Any]:
    return digest_context(s, now)


def render_digest(s: Session, now: datetime, person_id: str, template_dir: str | None = None) -> Message:
    people, _ = load_people_groups(s)
    ctx = {**digest_context(s, now), "person": recipient(person_id, people)}
    return render("digest", ctx, f"-|digest|{now.date().isoformat()}|{person_id}", template_dir)


def plan_digest(s: Session, now: datetime, tz: ZoneInfo, digest_to: str, digest_at: str, *,
                force: bool = False) -> bool:
    """Create today's digest delivery (once per day: its key is unique). Working days only, unless forced."""
    today: date = now.astimezone(tz).date()
    if not force and not load_calendar(s).is_workday(today):
        return False
    key = f"-|digest|{today.isoformat()}|{digest_to}"
    due_at = int(now.timestamp()) if force else epoch(today, digest_at, tz)
    return insert_ignore(s, DeliveryRow, [dict(key=key, occurrence_key=None, kind="digest", slot=today.isoformat(),
                                               recipient=digest_to, due_at=due_at, status="pending", attempts=0,
                                               created_at=now)]) == 1
