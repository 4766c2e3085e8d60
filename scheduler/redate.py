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

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from rules.calendar import WorkCalendar
from rules.planner import Planner

from .models import DeliveryRow, OccurrenceRow, RuleChangeRow, RuleRow
from .rows import delivery_row, effective_start, epoch, insert_ignore
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
class _Open:
    """What re-dating reads and changes of an open occurrence."""

    id: int
    key: str
    rule_id: str
    title: str
    owner: str | None
    quota: int
    opens: date
    due: date
    provisional: bool
    org: str

    def values(self) -> dict:
        return {"oid": self.id, "new_due": self.due, "new_provisional": self.provisional, "new_title": self.title,
                "new_owner": self.owner, "new_quota": self.quota}


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


def replan_rules(s: Session, org: str, rule_ids: list[str], now: datetime, tz, origin: str) -> Redated:
    """After rules were edited: their open occurrences take the new due date, owner and title, and
    pending reminders follow (no notice: the office changed the rule itself)."""
    out = Redated()
    _redate_org(s, org, load_calendar(s), now, tz, f"规则修改（{origin}）", None, out, set(rule_ids), notify=False)
    return out


def _redate_org(s: Session, org: str, cal: WorkCalendar, now: datetime, tz, reason: str, years: set[int] | None,
                out: Redated, only_rules: set[str] | None = None, notify: bool = True) -> None:
    rs = load_ruleset(s, org, only_enabled=False)
    rules = {r.id: r for r in rs.rules if only_rules is None or r.id in only_rules}
    added = {r.id: r.added_on for r in s.scalars(select(RuleRow).where(RuleRow.org == org))}
    events = load_events(s, tz, org)
    today = now.astimezone(tz).date()
    t = OccurrenceRow.__table__  # plain rows, not ORM objects: a district re-dates 10^5 of them
    occs = [_Open(*r) for r in s.execute(select(t.c.id, t.c.key, t.c.rule_id, t.c.title, t.c.owner, t.c.quota,
                                                 t.c.opens, t.c.due, t.c.provisional, t.c.org)
                                          .where(t.c.org == org, t.c.state == "open"))]
    occs = [o for o in occs if o.rule_id in rules
            and (years is None or {o.due.year - 1, o.due.year, o.due.year + 1} & years)]
    # plan each rule once, over the span of its open occurrences, and find them by key
    by_rule: dict[str, list[_Open]] = {}
    for o in occs:
        by_rule.setdefault(o.rule_id, []).append(o)
    planner = Planner(cal, rs.groups)
    planned = {}
    for rule_id, group in by_rule.items():
        rule = rules[rule_id]
        rule = dataclasses.replace(rule, start=effective_start(rule, added.get(rule_id, min(o.opens for o in group))))
        first = min(o.due for o in group) - timedelta(days=40)
        last = max(o.due for o in group) + timedelta(days=40)
        planned.update((o.key, (rule, o)) for o in planner.plan([rule], first, last, events))
    moved: list[tuple[_Open, object, Shift]] = []
    changes: list[dict] = []
    for occ in occs:
        rule, match = planned.get(occ.key, (None, None))
        if match is None:
            continue
        edited = only_rules is not None and (occ.title, occ.owner, occ.quota) != (rule.title, match.owner, match.quota)
        if edited:  # an edited rule: its title and owner may have changed too
            occ.title, occ.owner, occ.quota = rule.title, match.owner, match.quota
        if match.due == occ.due and match.provisional == occ.provisional:
            if edited:
                changes.append(occ.values())
            continue
        shift = Shift(occ.key, occ.title, occ.due, match.due, occ.provisional, match.provisional)
        occ.provisional = match.provisional
        if match.due == occ.due:
            out.unflagged += 1
        else:
            occ.due = match.due
            out.shifts.append(shift)
            moved.append((occ, (rule, match), shift))
        changes.append(occ.values())
    for i in range(0, len(changes), 5000):  # one executemany, not an ORM flush of each row
        s.execute(update(t).where(t.c.id == bindparam("oid")).values(
            due=bindparam("new_due"), provisional=bindparam("new_provisional"), title=bindparam("new_title"),
            owner=bindparam("new_owner"), quota=bindparam("new_quota")), changes[i:i + 5000])
    if moved:
        _apply_moves(s, org, rs, moved, today, now, tz, reason, notify)


def _apply_moves(s: Session, org: str, rs, moved, today: date, now: datetime, tz, reason: str,
                 notify: bool = True) -> None:
    """For the moved occurrences, in a few set-based statements: drop the pending reminders of old
    days, plan the new reminder days still ahead, tell each owner once, record each shift."""
    new_days = {occ.key: {d.isoformat() for d in match.reminder_days} for occ, (_rule, match), _sh in moved}
    stale: list[int] = []
    keys = list(new_days)
    for i in range(0, len(keys), 500):
        rows = s.execute(select(DeliveryRow.id, DeliveryRow.occurrence_key, DeliveryRow.slot).where(
            DeliveryRow.org == org, DeliveryRow.kind == "reminder", DeliveryRow.status == "pending",
            DeliveryRow.occurrence_key.in_(keys[i:i + 500]))).all()
        stale += [did for did, key, slot in rows if slot not in new_days[key]]
    for i in range(0, len(stale), 500):
        s.execute(update(DeliveryRow).where(DeliveryRow.id.in_(stale[i:i + 500]))
                  .values(status="skipped", last_error="截止日期调整，改按新日期提醒")
                  .execution_options(synchronize_session=False))
    deliveries, audit = [], []
    stamp = int(now.timestamp())
    for occ, (rule, match), shift in moved:
        members = rs.members(occ.owner) if occ.owner else ()
        deliveries += [delivery_row(org, occ.key, "reminder", d.isoformat(), pid, epoch(d, rule.at, tz), now)
                       for d in match.reminder_days if d >= today for pid in members]
        if notify:
            slot = f"{shift.old_due.isoformat()}>{shift.new_due.isoformat()}"
            deliveries += [delivery_row(org, occ.key, "redate", slot, pid, stamp, now) for pid in members]
        audit.append(dict(org=org, at=now, rule_id=occ.rule_id, action="redated", origin=reason,
                          before={"key": occ.key, "due": shift.old_due.isoformat()},
                          after={"key": occ.key, "due": shift.new_due.isoformat(), "provisional": match.provisional}))
    insert_ignore(s, DeliveryRow, deliveries)
    s.execute(insert(RuleChangeRow), audit)


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
