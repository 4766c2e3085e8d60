"""Plan what is due from the rules into the database: occurrences and the deliveries they need.

Everything is created with its natural key (INSERT … ON CONFLICT DO NOTHING), so planning twice, or
in two processes at once, creates nothing twice. Work is decided from the tables up to `now`: a tick
that did not run (the service was down) loses nothing, the next one catches up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from rules.calendar import WorkCalendar
from rules.loader import RuleSet
from rules.model import Rule
from rules.planner import Planner

from .models import DEFAULT_ORG, DeliveryRow, OccurrenceRow, RuleRow
from .redate import check_library_calendar
from .rows import delivery_key, delivery_row, effective_start, epoch, insert_ignore, occurrence_row  # noqa: F401
from .state import CONFIG_VERSION, get_state, set_state, states_with_prefix
from .store import load_calendar, load_events, load_ruleset, organisations

LOOKBACK = timedelta(days=400)  # how far back a returning service still creates missed occurrences
HORIZON = timedelta(days=45)  # occurrences due this soon are stored (and shown) even before they open
MARKER = "materialized"
CALENDAR_CHECKED = "calendar_checked"


@dataclass
class Planned:
    occurrences: int = 0
    deliveries: int = 0


def _lead_days(rule: Rule) -> int:
    """How many days before the due date the rule's earliest reminder can fall."""
    worst = 0
    for off in rule.remind:
        if off.days < 0:
            worst = max(worst, -off.days * (2 if off.working else 1) + (20 if off.working else 10))
    return worst + 10


class Materializer:
    def __init__(self, session: Session, now: datetime, tz: ZoneInfo, digest_to: str = "secretary"):
        self.s, self.now, self.tz, self.digest_to = session, now, tz, digest_to
        self.org = DEFAULT_ORG
        self.today = now.astimezone(tz).date()

    # --- when to plan again ------------------------------------------------------------------
    def pending_orgs(self) -> list[str]:
        """The branches to plan: each once a day, and again after its rules, people or events (or the
        shared calendar) changed. Two queries, however many branches."""
        versions = states_with_prefix(self.s, CONFIG_VERSION)
        markers = states_with_prefix(self.s, MARKER + ":")
        shared = versions.get(CONFIG_VERSION, 0)
        day = self.today.isoformat()
        return [org for org in organisations(self.s)
                if markers.get(f"{MARKER}:{org}") != {"date": day, "shared": shared,
                                                       "own": versions.get(f"{CONFIG_VERSION}:{org}", 0)}]

    def needed(self) -> bool:
        return bool(self.pending_orgs())

    def check_calendar(self) -> None:
        """A `holidays` release that changed a year re-dates what depends on it (see redate.py).
        Once a day is enough: a new release arrives with an upgrade, not between two ticks."""
        if get_state(self.s, CALENDAR_CHECKED) == self.today.isoformat():
            return
        check_library_calendar(self.s, self.now, self.tz)
        set_state(self.s, CALENDAR_CHECKED, self.today.isoformat())

    def run(self, force: bool = False, orgs: list[str] | None = None) -> Planned:
        """Plan the branches that need it (`force`: all of them; `orgs`: those of them that need it)."""
        self.check_calendar()
        todo = organisations(self.s) if force else self.pending_orgs()
        if orgs is not None:
            todo = [o for o in todo if o in orgs]
        result = Planned()
        cal = load_calendar(self.s) if todo else None  # the calendar (and its library) only when planning
        for org in todo:
            planned = self.plan_org(org, cal)
            result.occurrences += planned.occurrences
            result.deliveries += planned.deliveries
        return result

    def plan_org(self, org: str, cal: WorkCalendar | None = None) -> Planned:
        """Plan one branch: its occurrences, reminders, overdue alerts and escalations up to today."""
        versions = states_with_prefix(self.s, CONFIG_VERSION)
        marker = {"date": self.today.isoformat(), "shared": versions.get(CONFIG_VERSION, 0),
                  "own": versions.get(f"{CONFIG_VERSION}:{org}", 0)}
        cal = cal or load_calendar(self.s)
        self.org = org
        rs = load_ruleset(self.s, org, only_enabled=True)
        planned = self.occurrences(rs, cal)
        planned.deliveries += self.overdue(rs, cal)
        set_state(self.s, f"{MARKER}:{org}", marker)
        return planned

    # --- occurrences and their reminders -----------------------------------------------------
    def occurrences(self, rs: RuleSet, cal: WorkCalendar) -> Planned:
        added = {r.id: r.added_on for r in self.s.scalars(select(RuleRow).where(RuleRow.org == self.org))}
        events = load_events(self.s, self.tz, self.org)
        planner = Planner(cal, rs.groups)
        by_window: dict[tuple[date, date], list[Rule]] = {}
        for rule in rs.rules:
            start = effective_start(rule, added.get(rule.id, self.today))
            first = max(start, self.today - LOOKBACK)
            last = self.today + max(timedelta(days=_lead_days(rule)), HORIZON)
            by_window.setdefault((first, last), []).append(dataclasses.replace(rule, start=start))
        rules = {r.id: r for r in rs.rules}
        occ_rows, reminder_rows = [], []
        for (first, last), group in by_window.items():
            for o in planner.plan(group, first, last, events):
                rule = rules[o.rule]
                active_from = min([o.opens, *o.reminder_days, o.due - HORIZON])
                if active_from > self.today and o.event_id is None:
                    continue  # not yet open, no reminder yet, not due soon: created on a later day
                occ_rows.append(occurrence_row(self.org, o, rule.title, self.now))
                for day in o.reminder_days:
                    for pid in rs.members(o.owner) if o.owner else ():
                        reminder_rows.append(self._delivery(o.key, "reminder", day, pid, epoch(day, rule.at, self.tz)))
        planned = Planned()
        planned.occurrences = insert_ignore(self.s, OccurrenceRow, occ_rows)
        planned.deliveries = insert_ignore(self.s, DeliveryRow, reminder_rows)
        return planned

    def _delivery(self, occ_key: str | None, kind: str, slot: date, pid: str, due_at: int) -> dict[str, Any]:
        return delivery_row(self.org, occ_key, kind, slot.isoformat(), pid, due_at, self.now)

    # --- overdue alerts and escalations ------------------------------------------------------
    def overdue(self, rs: RuleSet, cal: WorkCalendar) -> int:
        rules = {r.id: r for r in rs.rules}
        rows = []
        open_overdue = self.s.scalars(select(OccurrenceRow).where(
            OccurrenceRow.org == self.org, OccurrenceRow.state == "open", OccurrenceRow.due < self.today))
        for occ in open_overdue:
            rule = rules.get(occ.rule_id)
            if rule is None:
                continue  # disabled or removed: no new alerts
            slot = latest_overdue_slot(occ.due, rule, cal, self.today)
            if slot is not None:
                for pid in rs.members(occ.owner) if occ.owner else ():
                    rows.append(self._delivery(occ.key, "overdue", slot, pid, epoch(slot, rule.at, self.tz)))
            esc = escalation_day(occ.due, rule, cal)
            if esc is not None and esc <= self.today:
                targets = [m for ref in (rule.escalate_to or (self.digest_to,)) for m in rs.members(ref)]
                for pid in dict.fromkeys(targets):
                    rows.append(self._delivery(occ.key, "escalation", esc, pid, epoch(esc, rule.at, self.tz)))
        return insert_ignore(self.s, DeliveryRow, rows)


def first_overdue_day(due: date, cal: WorkCalendar) -> date:
    """Overdue alerts start the next working morning after the due date."""
    return date.fromordinal(cal.add_workdays(due.toordinal(), 1))


def latest_overdue_slot(due: date, rule: Rule, cal: WorkCalendar, today: date) -> date | None:
    """The most recent overdue-alert day on or before today (earlier ones collapse into it)."""
    slot = first_overdue_day(due, cal)
    if slot > today:
        return None
    if rule.repeat_overdue is None:
        return slot
    while True:
        nxt = rule.repeat_overdue.apply(slot.toordinal(), cal)
        if not cal.is_workday_ordinal(nxt):
            nxt = cal.next_workday(nxt)
        if nxt <= slot.toordinal() or nxt > today.toordinal():
            return slot
        slot = date.fromordinal(nxt)


def escalation_day(due: date, rule: Rule, cal: WorkCalendar) -> date | None:
    """The day the 督办通知 goes out: `escalate_after` past the due date, on a working day."""
    if rule.escalate_after is None:
        return None
    o = rule.escalate_after.apply(due.toordinal(), cal)
    if not cal.is_workday_ordinal(o):
        o = cal.next_workday(o)
    return date.fromordinal(max(o, first_overdue_day(due, cal).toordinal()))
