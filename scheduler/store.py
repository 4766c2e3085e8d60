"""Rules, people, groups, events and calendar years in the database."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from rules.calendar import WorkCalendar, YearOverride
from rules.errors import DubanError
from rules.loader import RuleContext, RuleSet, compile_rule
from rules.model import Person, Rule
from rules.planner import Event

from .models import DEFAULT_ORG, CalendarYearRow, EventRow, GroupRow, PersonRow, RuleChangeRow, RuleRow
from .state import bump_config


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """Dates as ISO text, so definitions compare equal whatever database stored them."""
    return json.loads(json.dumps(d, default=lambda v: v.isoformat(), ensure_ascii=False))


@dataclass
class ImportSummary:
    added: list[str]
    updated: list[str]
    unchanged: list[str]
    people: int
    groups: int


def organisations(session: Session) -> list[str]:
    """Every organisation that has rules or people (the default one always)."""
    orgs = set(session.scalars(select(RuleRow.org).distinct())) | set(session.scalars(select(PersonRow.org).distinct()))
    return sorted(orgs | {DEFAULT_ORG})


def load_people_groups(session: Session, org: str = DEFAULT_ORG) -> tuple[dict[str, Person], dict[str, tuple[str, ...]]]:
    people = {p.id: Person(p.id, p.name, p.email, p.wecom, p.mobile)
              for p in session.scalars(select(PersonRow).where(PersonRow.org == org))}
    groups = {g.id: tuple(g.members) for g in session.scalars(select(GroupRow).where(GroupRow.org == org))}
    return people, groups


def load_ruleset(session: Session, org: str = DEFAULT_ORG, *, only_enabled: bool = False) -> RuleSet:
    """The organisation's rules as stored, compiled again (they were valid when stored)."""
    people, groups = load_people_groups(session, org)
    ctx = RuleContext(people, groups)
    rows = session.scalars(select(RuleRow).where(RuleRow.org == org).order_by(RuleRow.id)).all()
    rules = []
    for row in rows:
        if only_enabled and not row.enabled:
            continue
        definition = dict(row.definition, enabled=row.enabled)
        rules.append(compile_rule(definition, ctx, filename=f"数据库中的规则 {row.id}", stored=True))
    return RuleSet(people=people, groups=groups, rules=rules)


def rule_rows(session: Session, org: str = DEFAULT_ORG) -> dict[str, RuleRow]:
    return {r.id: r for r in session.scalars(select(RuleRow).where(RuleRow.org == org))}


def import_ruleset(session: Session, rs: RuleSet, *, now: datetime, origin: str,
                   org: str = DEFAULT_ORG) -> ImportSummary:
    """Add or update people, groups and rules (by id); unchanged rules are left alone."""
    for p in rs.people.values():
        row = session.get(PersonRow, (org, p.id)) or PersonRow(org=org, id=p.id)
        row.name, row.email, row.wecom, row.mobile = p.name, p.email, p.wecom, p.mobile
        session.add(row)
    for gid, members in rs.groups.items():
        row = session.get(GroupRow, (org, gid)) or GroupRow(org=org, id=gid)
        row.members = list(members)
        session.add(row)
    added, updated, unchanged = [], [], []
    existing = rule_rows(session, org)
    for rule in rs.rules:
        new = _jsonable(rule.to_dict())
        new.pop("enabled", None)
        row = existing.get(rule.id)
        if row is None:
            session.add(RuleRow(org=org, id=rule.id, title=rule.title, definition=new, enabled=rule.enabled,
                                added_on=now.date(), origin=origin, created_at=now, updated_at=now))
            _audit(session, org, now, rule.id, "added", None, dict(new, enabled=rule.enabled), origin)
            added.append(rule.id)
        elif row.definition != new or row.enabled != rule.enabled:
            before = dict(row.definition, enabled=row.enabled)
            row.title, row.definition, row.enabled = rule.title, new, rule.enabled
            row.origin, row.updated_at = origin, now
            _audit(session, org, now, rule.id, "updated", before, dict(new, enabled=rule.enabled), origin)
            updated.append(rule.id)
        else:
            unchanged.append(rule.id)
    bump_config(session, org)  # people or groups may have changed too
    session.flush()
    return ImportSummary(added, updated, unchanged, len(rs.people), len(rs.groups))


def set_enabled(session: Session, rule_id: str, enabled: bool, *, now: datetime, org: str = DEFAULT_ORG) -> bool:
    """Enable or disable a rule; False when it already was so."""
    row = session.get(RuleRow, (org, rule_id))
    if row is None:
        raise DubanError(f"没有 id 为“{rule_id}”的规则。用 duban rules list 查看全部规则")
    if row.enabled == enabled:
        return False
    row.enabled, row.updated_at = enabled, now
    bump_config(session, org)
    _audit(session, org, now, rule_id, "enabled" if enabled else "disabled", {"enabled": not enabled},
           {"enabled": enabled}, "命令行")
    return True


def _audit(session: Session, org: str, now: datetime, rule_id: str, action: str, before: Any, after: Any,
           origin: str) -> None:
    session.add(RuleChangeRow(org=org, at=now, rule_id=rule_id, action=action, before=before, after=after,
                              origin=origin))


def export_document(session: Session, org: str = DEFAULT_ORG) -> dict[str, Any]:
    """Everything a rule file can hold, as stored: re-importing it changes nothing."""
    rs_people, rs_groups = load_people_groups(session, org)
    rows = session.scalars(select(RuleRow).where(RuleRow.org == org).order_by(RuleRow.id)).all()
    rules = []
    for row in rows:
        d = dict(row.definition)
        for k in ("start",):
            if isinstance(d.get(k), str):
                d[k] = date.fromisoformat(d[k])
        if isinstance(d.get("window"), dict):
            d["window"] = {k: date.fromisoformat(v) if isinstance(v, str) else v for k, v in d["window"].items()}
        if not row.enabled:
            d["enabled"] = False
        rules.append(d)
    return {
        "people": {pid: p.to_dict() for pid, p in sorted(rs_people.items())},
        "groups": {gid: list(m) for gid, m in sorted(rs_groups.items())},
        "rules": rules,
    }


# --- events ------------------------------------------------------------------------------------
def load_events(session: Session, tz=None, org: str = DEFAULT_ORG) -> list[Event]:
    return [Event(e.id, e.type, e.date, e.title, e.recorded_at.astimezone(tz).date() if tz else e.recorded_at.date())
            for e in session.scalars(select(EventRow).where(EventRow.org == org).order_by(EventRow.id))]


# --- calendar ----------------------------------------------------------------------------------
def load_calendar(session: Session) -> WorkCalendar:
    """The working-day calendar: the library, with the years the user imported winning."""
    overrides = [
        YearOverride(r.year, frozenset(date.fromisoformat(d) for d in r.holidays),
                     frozenset(date.fromisoformat(d) for d in r.workdays), r.source)
        for r in session.scalars(select(CalendarYearRow))
    ]
    return WorkCalendar(overrides)


def rule_of(session: Session, rule_id: str, org: str = DEFAULT_ORG) -> Rule:
    rs = load_ruleset(session, org)
    for r in rs.rules:
        if r.id == rule_id:
            return r
    raise DubanError(f"没有 id 为“{rule_id}”的规则。用 duban rules list 查看全部规则")
