"""Rules + events + a date range → occurrences, with due dates and reminder days.

Pure and clock-free: the same inputs always give the same occurrences (and the same keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from operator import attrgetter

from .calendar import WorkCalendar
from .model import Rule
from .periods import Period, periods_between

# A due date moves at most this far off its period by `if_holiday` (the longest rest is 9 days).
_SLACK = timedelta(days=20)


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened or will happen: a study session, a document received..."""

    id: int | str
    type: str
    date: date
    title: str | None = None
    recorded_on: date | None = None  # the duty opens when the event is recorded, if that is earlier


@dataclass(slots=True)  # not frozen: planning makes ~10^5 of these and frozen init is slow
class Occurrence:
    """One time a duty falls due: `RULE@PERIOD`, its window, due date and reminder days."""

    rule: str
    key: str
    period: str
    opens: date
    due: date
    quota: int
    owner: str | None
    reminder_days: tuple[date, ...]
    at: str
    provisional: bool
    event_id: int | str | None = None

    @property
    def reminders(self) -> list[datetime]:
        """Reminder instants as local (naive) date-times in the rule's time zone."""
        hh, mm = self.at.split(":")
        t = time(int(hh), int(mm))
        return [datetime.combine(d, t) for d in self.reminder_days]


class Planner:
    """Plans occurrences over one calendar; caches what many rules share."""

    def __init__(self, calendar: WorkCalendar, groups: Mapping[str, Iterable[str]] | None = None):
        self.cal = calendar
        self.groups = {k: tuple(v) for k, v in (groups or {}).items()}
        self._periods: dict[tuple[str, int, int], list[Period]] = {}
        self._dues: dict[tuple, list[tuple[Period, int, int]]] = {}
        self._reminders: dict[tuple, tuple[date, ...]] = {}
        self._prov: dict[int, bool] = {}
        self._slots: dict[tuple, list[tuple]] = {}

    # --- shared pieces ----------------------------------------------------------------------
    def _provisional(self, lo: int, hi: int) -> bool:
        for y in range(date.fromordinal(lo).year, date.fromordinal(hi).year + 1):
            p = self._prov.get(y)
            if p is None:
                p = self._prov[y] = self.cal.is_provisional(y)
            if p:
                return True
        return False

    def move(self, ordinal: int, if_holiday: str) -> int:
        """Move a due date that is not a working day, as the rule's `if_holiday` says."""
        if if_holiday == "keep" or self.cal.is_workday_ordinal(ordinal):
            return ordinal
        if if_holiday == "next-workday":
            return self.cal.next_workday(ordinal)
        return self.cal.previous_workday(ordinal)

    def reminder_days(self, rule: Rule, due: int) -> tuple[date, ...]:
        """Reminder days of a due date; a reminder on a rest day moves to the working day before."""
        k = (rule.remind, due)
        r = self._reminders.get(k)
        if r is None:
            days = set()
            for off in rule.remind:
                o = off.apply(due, self.cal)
                if not self.cal.is_workday_ordinal(o):
                    o = self.cal.previous_workday(o)
                days.add(o)
            r = self._reminders[k] = tuple(date.fromordinal(o) for o in sorted(days))
        return r

    def _due_dates(self, rule: Rule, first: date, last: date) -> list[tuple[Period, int, int]]:
        k = (rule.every, rule.due, rule.if_holiday, first, last)
        out = self._dues.get(k)
        if out is None:
            pk = (rule.every, first.toordinal(), last.toordinal())
            periods = self._periods.get(pk)
            if periods is None:
                periods = self._periods[pk] = periods_between(rule.every, first - _SLACK, last + _SLACK)
            lo, hi = first.toordinal(), last.toordinal()
            out = []
            for p in periods:
                base = rule.due.due_in(p, self.cal) if rule.due else p.last
                due = self.move(base, rule.if_holiday)
                if lo <= due <= hi:
                    out.append((p, base, due))
            self._dues[k] = out
        return out

    # --- planning ---------------------------------------------------------------------------
    def plan(self, rules: Iterable[Rule], first: date, last: date, events: Iterable[Event] = ()) -> list[Occurrence]:
        """Every occurrence whose due date falls in [first, last], ordered by due date and key."""
        self.cal.ensure(first.year, last.year)
        by_type: dict[str, list[Event]] = {}
        for e in events:
            by_type.setdefault(e.type, []).append(e)
        out: list[Occurrence] = []
        for rule in rules:
            if rule.kind == "periodic":
                self._plan_periodic(rule, first, last, out)
            elif rule.kind == "event":
                self._plan_events(rule, by_type.get(rule.event, ()), first, last, out)
            else:
                self._plan_window(rule, first, last, out)
        out.sort(key=attrgetter("due", "key"))
        return out

    def _emit(self, rule: Rule, period: str, opens: int, base: int, due: int, out: list[Occurrence],
              event_id: int | str | None = None) -> None:
        reminders = self.reminder_days(rule, due)
        lo = min(opens, base, due, reminders[0].toordinal() if reminders else due)
        hi = max(base, due)
        prov = self._provisional(lo, hi)
        opens_d, due_d = date.fromordinal(opens), date.fromordinal(due)
        if rule.for_each:
            for member in self.groups.get(rule.for_each, ()):
                out.append(Occurrence(rule.id, f"{rule.id}@{period}/{member}", period, opens_d, due_d,
                                      rule.quota, member, reminders, rule.at, prov, event_id))
        else:
            out.append(Occurrence(rule.id, f"{rule.id}@{period}", period, opens_d, due_d, rule.quota,
                                  rule.owner, reminders, rule.at, prov, event_id))

    def _periodic_slots(self, rule: Rule, first: date, last: date) -> list[tuple]:
        """What every rule with the same schedule shares: per period its label, opening, due date,
        reminder days and provisional flag (computed once, reused by each such rule)."""
        k = (rule.every, rule.due, rule.if_holiday, rule.remind, first, last)
        slots = self._slots.get(k)
        if slots is None:
            slots = []
            for p, base, due in self._due_dates(rule, first, last):
                reminders = self.reminder_days(rule, due)
                opens = min(p.first, due)
                lo = min(opens, base, reminders[0].toordinal() if reminders else due)
                slots.append((p.label, date.fromordinal(opens), date.fromordinal(due), due, reminders,
                              self._provisional(lo, max(base, due))))
            self._slots[k] = slots
        return slots

    def _plan_periodic(self, rule: Rule, first: date, last: date, out: list[Occurrence]) -> None:
        start = rule.start.toordinal() if rule.start else None
        rid, quota, at = rule.id, rule.quota, rule.at
        members = self.groups.get(rule.for_each, ()) if rule.for_each else None
        for label, opens, due_d, due, reminders, prov in self._periodic_slots(rule, first, last):
            if start is not None and due < start:
                continue  # a rule makes nothing before its start
            if members is None:
                out.append(Occurrence(rid, f"{rid}@{label}", label, opens, due_d, quota, rule.owner, reminders, at, prov))
            else:
                for m in members:
                    out.append(Occurrence(rid, f"{rid}@{label}/{m}", label, opens, due_d, quota, m, reminders, at, prov))

    def _plan_events(self, rule: Rule, events: Iterable[Event], first: date, last: date,
                     out: list[Occurrence]) -> None:
        lo, hi = first.toordinal(), last.toordinal()
        for e in events:
            if rule.start and e.date < rule.start:
                continue
            day = e.date.toordinal()
            base = rule.offset.apply(day, self.cal)
            due = self.move(base, rule.if_holiday)
            if lo <= due <= hi:
                opens = min(day, due, e.recorded_on.toordinal() if e.recorded_on else day)
                self._emit(rule, f"event-{e.id}", opens, min(day, base), due, out, e.id)

    def _plan_window(self, rule: Rule, first: date, last: date, out: list[Occurrence]) -> None:
        opens, base = rule.window[0].toordinal(), rule.window[1].toordinal()
        due = self.move(base, rule.if_holiday)
        if rule.start and due < rule.start.toordinal():
            return
        if first.toordinal() <= due <= last.toordinal():
            self._emit(rule, "once", min(opens, due), base, due, out)
