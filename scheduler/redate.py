"""When a year's calendar changes (an imported notice, a `holidays` release that now knows the year),
every open occurrence that depends on it is planned again: its due date, `provisional` and pending
reminders. Each shift is recorded in the audit trail, and the owner is told once (截止日期调整).
Reminders already sent are not sent again; completed and waived occurrences keep their dates.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from rules.calendar import WorkCalendar
from rules.planner import Planner

from .materialize import delivery_row, effective_start, epoch, insert_ignore
from .models import DeliveryRow, OccurrenceRow, RuleChangeRow, RuleRow
from .state import get_state, set_state
from .store import load_calendar, load_events, load_ruleset, organisations

log = logging.getLogger("duban.redate")
FINGERPRINTS = "calendar_fingerprints"


@dataclass
class Shift:
    key: str
    title: str
    old_due: date
    new_due: date
    old_provisional: bool
    new_provisional: bool


@dataclass
class Redated:
    shifts: list[Shift] = field(default_factory=list)
    unflagged: int = 0  # no longer provisional, date unchanged


def redate_open(s: Session, now: datetime, tz, reason: str, years: set[int] | None = None) -> Redated:
    """Plan every open occurrence of every branch again under the current calendar; apply what changed."""
    out = Redated()
    cal = load_calendar(s)
    for org in organisations(s):
        _redate_org(s, org, cal, now, tz, reason, years, out)
    if out.shifts or out.unflagged:
        log.info("日历变化（%s）：%d 项截止日调整，%d 项不再是暂定日期", reason, len(out.shifts), out.unflagged)
    return out


def _redate_org(s: Session, org: str, cal: WorkCalendar, now: datetime, tz, reason: str, years: set[int] | None,
                out: Redated) -> None:
    rs = load_ruleset(s, org, only_enabled=False)
    rules = {r.id: r for r in rs.rules}
    added = {r.id: r.added_on for r in s.scalars(select(RuleRow).where(RuleRow.org == org))}
    planner = Planner(cal, rs.groups)
    events = load_events(s, tz, org)
    today = now.astimezone(tz).date()
    occs = s.scalars(select(OccurrenceRow).where(OccurrenceRow.org == org, OccurrenceRow.state == "open")).all()
    for occ in occs:
        if years is not None and not ({occ.due.year - 1, occ.due.year, occ.due.year + 1} & years):
            continue
        rule = rules.get(occ.rule_id)
        if rule is None:
            continue
        rule = dataclasses.replace(rule, start=effective_start(rule, added.get(rule.id, occ.opens)))
        window = (occ.due - timedelta(days=40), occ.due + timedelta(days=40))
        match = next((o for o in planner.plan([rule], *window, events) if o.key == occ.key), None)
        if match is None:
            continue
        if match.due == occ.due and match.provisional == occ.provisional:
            continue
        shift = Shift(occ.key, occ.title, occ.due, match.due, occ.provisional, match.provisional)
        occ.provisional = match.provisional
        if match.due == occ.due:
            out.unflagged += 1
            continue
        occ.due = match.due
        out.shifts.append(shift)
        _replan_reminders(s, occ, rule, rs, match.reminder_days, today, now, tz)
        s.add(RuleChangeRow(org=org, at=now, rule_id=occ.rule_id, action="redated",
                            before={"key": occ.key, "due": shift.old_due.isoformat()},
                            after={"key": occ.key, "due": shift.new_due.isoformat(),
                                   "provisional": match.provisional}, origin=reason))
        _notify_owner(s, occ, shift, rs, now)


def _replan_reminders(s: Session, occ: OccurrenceRow, rule, rs, reminder_days, today: date, now: datetime,
                      tz) -> None:
    """Drop pending reminders of the old dates; plan the new ones that are still ahead."""
    new_days = {d.isoformat() for d in reminder_days}
    s.execute(update(DeliveryRow).where(
        DeliveryRow.org == occ.org, DeliveryRow.occurrence_key == occ.key, DeliveryRow.kind == "reminder", DeliveryRow.status == "pending",
        DeliveryRow.slot.not_in(new_days)).values(status="skipped", last_error="截止日期调整，改按新日期提醒"))
    members = rs.members(occ.owner) if occ.owner else ()
    rows = [delivery_row(occ.org, occ.key, "reminder", d.isoformat(), pid, epoch(d, rule.at, tz), now)
            for d in reminder_days if d >= today for pid in members]
    insert_ignore(s, DeliveryRow, rows)


def _notify_owner(s: Session, occ: OccurrenceRow, shift: Shift, rs, now: datetime) -> None:
    slot = f"{shift.old_due.isoformat()}>{shift.new_due.isoformat()}"
    rows = [delivery_row(occ.org, occ.key, "redate", slot, pid, int(now.timestamp()), now)
            for pid in (rs.members(occ.owner) if occ.owner else ())]
    insert_ignore(s, DeliveryRow, rows)


def refresh_fingerprints(s: Session, now: datetime, tz) -> set[int]:
    """Store each nearby year's calendar fingerprint; returns the years whose fingerprint changed."""
    cal: WorkCalendar = load_calendar(s)
    today = now.astimezone(tz).date()
    current = {str(y): cal.fingerprint(y) for y in range(today.year - 1, today.year + 2)}
    stored = get_state(s, FINGERPRINTS) or {}
    changed = {int(y) for y, fp in current.items() if y in stored and stored[y] != fp}
    if any(stored.get(y) != fp for y, fp in current.items()):
        set_state(s, FINGERPRINTS, {**stored, **current})
    return changed


def check_library_calendar(s: Session, now: datetime, tz) -> Redated | None:
    """Notice a `holidays` release that changed a year (per-year fingerprints) and re-date if so."""
    changed = refresh_fingerprints(s, now, tz)
    if not changed:
        return None
    return redate_open(s, now, tz, f"工作日日历更新（{'、'.join(str(y) for y in sorted(changed))} 年）", changed)
