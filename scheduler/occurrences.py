"""Recording what was done (completions, waivers) and reading the state of occurrences."""

from __future__ import annotations

import dataclasses
import difflib
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.orm import Session

from rules.errors import DubanError
from rules.planner import Planner

from .db import lock_for_write
from .models import DEFAULT_ORG, CompletionRow, DeliveryRow, OccurrenceRow, RuleRow, WaiverRow
from .rows import effective_start, insert_ignore, occurrence_row
from .store import load_calendar, load_events, load_ruleset

DUE_SOON_DAYS = 7
STATE_NAMES = {"open": "进行中", "due-soon": "即将到期", "overdue": "已逾期", "done": "已完成", "waived": "已免办"}


def state_name(state: str, due: date, today: date) -> str:
    """What a user sees: a closed state as stored, else overdue / due-soon (7 days) / open."""
    if state != "open":
        return state
    if today > due:
        return "overdue"
    return "due-soon" if (due - today).days <= DUE_SOON_DAYS else "open"



def _by_key(org: str, key: str):
    return select(OccurrenceRow).where(OccurrenceRow.org == org, OccurrenceRow.key == key)


def find_occurrence(s: Session, key: str, now: datetime, org: str = DEFAULT_ORG) -> OccurrenceRow:
    """The stored occurrence, or one the rules produce that is not stored yet (done early)."""
    today = now.date()
    occ = s.scalar(_by_key(org, key))
    if occ is not None:
        return occ
    rule_id = key.partition("@")[0]
    rs = load_ruleset(s, org, only_enabled=True)
    rule = next((r for r in rs.rules if r.id == rule_id), None)
    if rule is not None:
        # the same start as the scheduler: nothing before the day the rule was added (or its `start`)
        added = s.scalar(select(RuleRow.added_on).where(RuleRow.org == org, RuleRow.id == rule_id))
        rule = dataclasses.replace(rule, start=effective_start(rule, added or today))
        planner = Planner(load_calendar(s), rs.groups)
        events = load_events(s, now.tzinfo, org)
        for o in planner.plan([rule], today - timedelta(days=400), today + timedelta(days=400), events):
            if o.key == key:
                insert_ignore(s, OccurrenceRow, [occurrence_row(org, o, rule.title, now)])
                return s.scalar(_by_key(org, key))
    known = list(s.scalars(select(OccurrenceRow.key).where(OccurrenceRow.org == org, OccurrenceRow.state == "open")))
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f"是不是：{'、'.join(close)}？" if close else "用 duban status 查看进行中的事项编号。"
    raise DubanError(f"没有编号为“{key}”的事项。{hint}")


def _locked(s: Session, org: str, key: str) -> OccurrenceRow:
    """The occurrence as last committed, locked until the transaction ends (a row lock on PostgreSQL;
    SQLite's write lock is taken by `lock_for_write`). `populate_existing`: an object loaded earlier
    in the session would otherwise keep its stale values."""
    return s.scalar(_by_key(org, key).with_for_update().execution_options(populate_existing=True))


def record_done(s: Session, key: str, *, now: datetime, by: str | None, note: str | None,
                evidence: str | None, org: str = DEFAULT_ORG) -> OccurrenceRow:
    """Record one completion; returns the occurrence with its count and state as stored after it.
    Safe against simultaneous completions and waivers in other processes: each counts once."""
    lock_for_write(s)
    find_occurrence(s, key, now, org)  # stores it if the rules produce it but it is not stored yet (done early)
    occ = _locked(s, org, key)
    if occ.state == "waived":
        raise DubanError(f"事项 {key} 已免办，不能再登记完成")
    s.add(CompletionRow(org=org, occurrence_key=key, by=by, at=now, note=note, evidence=evidence))
    s.flush()
    # the count is the completion rows themselves, in one statement: it cannot drift from them
    count = (select(func.count()).select_from(CompletionRow)
             .where(CompletionRow.org == org, CompletionRow.occurrence_key == key).scalar_subquery())
    closes = and_(OccurrenceRow.state == "open", count >= OccurrenceRow.quota)
    s.execute(update(OccurrenceRow).where(OccurrenceRow.id == occ.id).values(
        done_count=count,
        state=case((closes, "done"), else_=OccurrenceRow.state),
        closed_at=case((closes, literal(now, OccurrenceRow.closed_at.type)), else_=OccurrenceRow.closed_at),
    ).execution_options(synchronize_session=False))
    s.refresh(occ)
    return occ


def record_waiver(s: Session, key: str, *, now: datetime, reason: str, by: str | None,
                  org: str = DEFAULT_ORG) -> OccurrenceRow:
    if not reason.strip():
        raise DubanError("免办必须写明理由：--reason \"理由\"")
    lock_for_write(s)
    find_occurrence(s, key, now, org)
    occ = _locked(s, org, key)  # a completion committed meanwhile is seen here, and one after waits
    if occ.state != "open":
        raise DubanError(f"事项 {key} {STATE_NAMES[occ.state]}，无需免办")
    s.add(WaiverRow(org=org, occurrence_key=key, reason=reason.strip(), by=by, at=now))
    occ.state, occ.closed_at = "waived", now
    return occ


def status_rows(s: Session, now: datetime, *, closed_days: int = 30, org: str = DEFAULT_ORG) -> list[dict[str, Any]]:
    """A branch's open occurrences, and those closed in the last `closed_days` days, most urgent first."""
    today = now.date()
    since = now - timedelta(days=closed_days)
    occ = OccurrenceRow  # plain columns, not ORM objects: status may list tens of thousands
    occs = s.execute(select(occ.key, occ.rule_id, occ.title, occ.owner, occ.opens, occ.due, occ.state, occ.done_count, occ.quota,
        occ.provisional).where(occ.org == org, or_(occ.state == "open", occ.closed_at >= since))).all()
    escalated = set(s.scalars(select(DeliveryRow.occurrence_key).where(
        DeliveryRow.org == org, DeliveryRow.kind == "escalation", DeliveryRow.status == "sent")))
    order = {"overdue": 0, "due-soon": 1, "open": 2, "done": 3, "waived": 4}
    out = []
    for key, rule_id, title, owner, opens, due, state, done_count, quota, provisional in occs:
        st = state_name(state, due, today)
        out.append({"key": key, "rule": rule_id, "title": title, "owner": owner, "opens": opens.isoformat(),
                    "due": due.isoformat(), "state": st, "done_count": done_count, "quota": quota,
                    "days_overdue": (today - due).days if st == "overdue" else 0,
                    "escalated": key in escalated, "provisional": provisional})
    out.sort(key=lambda r: (order[r["state"]], r["due"], r["key"]))
    return out

