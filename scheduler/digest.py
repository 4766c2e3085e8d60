"""The branch secretary's daily digest: what is overdue, what is due soon, what failed."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from notifications.message import CHANNEL_LABELS, KIND_NAMES, Message, render
from rules.calendar import WorkCalendar

from .channel_state import disabled_channels
from .models import DEFAULT_ORG, AttemptRow, CompletionRow, DeliveryRow, OccurrenceRow, RuleChangeRow
from .occurrences import status_rows
from .routing import recipient
from .rows import delivery_key, delivery_row, epoch, insert_ignore
from .store import load_calendar, load_people_groups, organisations


def digest_context(s: Session, now: datetime, tz: ZoneInfo | None = None, org: str = DEFAULT_ORG) -> dict[str, Any]:
    """Everything one branch's digest shows: overdue first, then due within 7 days, progress,
    completions since the last digest, delivery failures, date shifts and calendar warnings."""
    people, _groups = load_people_groups(s, org)
    rows = status_rows(s, now, closed_days=0, org=org)
    today = now.astimezone(tz).date() if tz else now.date()

    def named(r: dict[str, Any]) -> dict[str, Any]:
        owner = people.get(r["owner"]) if r["owner"] else None
        return {**r, "owner_name": owner.name if owner else (r["owner"] or "未指定")}

    last_digest = s.scalar(select(func.max(DeliveryRow.sent_at)).where(
        DeliveryRow.org == org, DeliveryRow.kind == "digest", DeliveryRow.status == "sent"))
    since = last_digest or (now - timedelta(days=1))
    done = s.execute(select(CompletionRow, OccurrenceRow.title).join(
        OccurrenceRow, (OccurrenceRow.key == CompletionRow.occurrence_key) & (OccurrenceRow.org == CompletionRow.org))
        .where(CompletionRow.org == org, CompletionRow.at > since).order_by(CompletionRow.at)).all()
    completions = [{"title": title, "by": c.by, "note": c.note,
                    "at": c.at.astimezone(tz or now.tzinfo).strftime("%m-%d %H:%M")} for c, title in done]
    shifts = s.scalars(select(RuleChangeRow).where(RuleChangeRow.org == org, RuleChangeRow.action == "redated",
                                                   RuleChangeRow.at > since).order_by(RuleChangeRow.at)).all()
    titles = dict(s.execute(select(OccurrenceRow.key, OccurrenceRow.title).where(
        OccurrenceRow.org == org, OccurrenceRow.key.in_([c.after["key"] for c in shifts]))).all()) if shifts else {}
    redated = [{"title": titles.get(c.after["key"], c.after["key"]), "old": c.before["due"], "new": c.after["due"],
                "why": c.origin} for c in shifts]
    dead = s.scalars(select(DeliveryRow).where(DeliveryRow.org == org, DeliveryRow.status == "dead")
                     .order_by(DeliveryRow.id.desc()).limit(20))
    failures = [f"{KIND_NAMES.get(d.kind, d.kind)} → {d.recipient}（{d.occurrence_key or d.slot}）：{d.last_error}"
                for d in dead]
    warnings = [f"渠道“{v['label']}”已停用：{v['reason']}" for v in disabled_channels(s).values()]
    warnings += channel_trouble(s, now, org)
    warnings += calendar_warnings(load_calendar(s), today)
    if any(r["provisional"] for r in rows) and not any("暂定" in w for w in warnings):
        warnings.append("部分截止日所在年份尚无官方放假安排，日期为暂定（标“暂定”），安排公布后请导入")
    return {"today": today, "overdue": [named(r) for r in rows if r["state"] == "overdue"],
            "due_soon": [named(r) for r in rows if r["state"] == "due-soon"],
            "progress": [named(r) for r in rows if r["quota"] > 1 and r["state"] not in ("overdue", "due-soon")],
            "completions": completions, "failures": failures, "warnings": warnings, "redated": redated}


def channel_trouble(s: Session, now: datetime, org: str) -> list[str]:
    """A channel that failed in the last 24 hours is reported (through whichever channel delivers
    the digest), even while its messages are still being retried."""
    rows = s.execute(select(AttemptRow.channel, func.count(), func.max(AttemptRow.id)).join(
        DeliveryRow, DeliveryRow.id == AttemptRow.delivery_id).where(
        DeliveryRow.org == org, AttemptRow.outcome.in_(("failed", "dead")),
        AttemptRow.started_at > now - timedelta(days=1)).group_by(AttemptRow.channel)).all()
    if not rows:
        return []
    pending = s.scalar(select(func.count()).select_from(DeliveryRow).where(
        DeliveryRow.org == org, DeliveryRow.status == "pending", DeliveryRow.attempts > 0,
        DeliveryRow.last_error.is_not(None)))
    out = []
    for channel, n, last_id in rows:
        error = s.get(AttemptRow, last_id).error or ""
        label = CHANNEL_LABELS.get(channel or "", channel or "未知渠道")
        out.append(f"{label}最近 24 小时发送失败 {n} 次（{error[:80]}）"
                   + (f"，{pending} 条消息等待重试" if pending else ""))
    return out


def calendar_warnings(cal: WorkCalendar, today: date) -> list[str]:
    """From December on, warn when next year's official arrangement is not known yet."""
    nxt = today.year + 1
    if today.month == 12 and cal.is_provisional(nxt):
        return [f"{nxt} 年的放假安排尚未导入，{nxt} 年的截止日均为暂定。国务院办公厅的通知公布后，"
                f"请写成日历文件并运行 duban calendar import 文件"]
    return []


def digest_renderer(s: Session, delivery: DeliveryRow, now: datetime) -> dict[str, Any]:
    return digest_context(s, now, now.tzinfo, delivery.org)


def render_digest(s: Session, now: datetime, person_id: str, template_dir: str | None = None,
                  org: str = DEFAULT_ORG) -> Message:
    people, _ = load_people_groups(s, org)
    ctx = {**digest_context(s, now, now.tzinfo, org), "person": recipient(person_id, people)}
    return render("digest", ctx, delivery_key(org, None, "digest", now.date().isoformat(), person_id), template_dir)


def plan_digest(s: Session, now: datetime, tz: ZoneInfo, digest_to: str, digest_at: str, *,
                force: bool = False, orgs: list[str] | None = None) -> int:
    """Create today's digest for each branch's secretary (once a day: the key is unique).
    Working days only, unless forced. Returns how many were created."""
    today: date = now.astimezone(tz).date()
    if not force and not load_calendar(s).is_workday(today):
        return 0
    due_at = int(now.timestamp()) if force else epoch(today, digest_at, tz)
    rows = [delivery_row(org, None, "digest", today.isoformat(), digest_to, due_at, now)
            for org in (orgs if orgs is not None else organisations(s))]
    return insert_ignore(s, DeliveryRow, rows)
