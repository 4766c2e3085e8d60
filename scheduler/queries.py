"""What a person can see, for both faces: overview rows, one duty's whole story, roles."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from notifications.message import CHANNEL_LABELS, KIND_NAMES

from .models import (
    AuditEventRow,
    CompletionRow,
    DeliveryRow,
    OccurrenceRow,
    RuleChangeRow,
    RuleRow,
    WaiverRow,
)
from .occurrences import state_name, status_rows
from .settings import Settings
from .store import load_people_groups

ROLE_NAMES = {"admin": "管理员", "viewer": "查看人", "staff": "工作人员"}


@dataclass(frozen=True)
class Viewer:
    """A signed-in person (or the person an action link was made for) and what they may do."""

    org: str
    person: str
    name: str
    role: str  # admin | viewer | staff
    groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def sees_all(self) -> bool:
        return self.role in ("admin", "viewer")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def owns(self, owner: str | None) -> bool:
        """A duty is this person's when they own it or one of their groups does."""
        return owner is not None and (owner == self.person or owner in self.groups)

    def may_see(self, owner: str | None) -> bool:
        return self.sees_all or self.owns(owner)

    def may_complete(self, owner: str | None) -> bool:
        return self.is_admin or self.owns(owner)


def _ids(settings: Settings, name: str, org: str) -> set[str]:
    """Person ids from a comma-separated setting; `org:id` limits an entry to one organisation."""
    out = set()
    for item in (settings.get(name) or "").replace("，", ",").split(","):
        item = item.strip()
        if not item:
            continue
        o, sep, pid = item.rpartition(":")
        if not sep or o == org:
            out.add(pid)
    return out


def role_of(settings: Settings, org: str, person: str) -> str:
    if person == settings.digest_to or person in _ids(settings, "DUBAN_ADMINS", org):
        return "admin"
    if person in _ids(settings, "DUBAN_VIEWERS", org):
        return "viewer"
    return "staff"


def viewer_for(s: Session, settings: Settings, org: str, person: str) -> Viewer | None:
    """The Viewer for a person id of an organisation, or None when no such person exists."""
    people, groups = load_people_groups(s, org)
    p = people.get(person)
    if p is None:
        return None
    mine = frozenset(g for g, members in groups.items() if person in members)
    return Viewer(org, person, p.name, role_of(settings, org, person), mine)


def names_of(s: Session, org: str) -> dict[str, str]:
    people, groups = load_people_groups(s, org)
    out = {pid: p.name for pid, p in people.items()}
    out.update({g: f"{g}（组）" for g in groups})
    return out


def overview(s: Session, now: datetime, viewer: Viewer, *, person: str | None = None, rule: str | None = None,
             state: str | None = None, closed_days: int = 30) -> list[dict[str, Any]]:
    """The occurrences a viewer may see, most urgent first, with owner names; filters are optional."""
    names = names_of(s, viewer.org)
    rows = [{**r, "owner_name": names.get(r["owner"], r["owner"] or "未指定")}
            for r in status_rows(s, now, closed_days=closed_days, org=viewer.org) if viewer.may_see(r["owner"])]
    return filtered(rows, person=person, rule=rule, state=state)


def filtered(rows: list[dict[str, Any]], *, person: str | None = None, rule: str | None = None,
             state: str | None = None) -> list[dict[str, Any]]:
    """Overview rows of one owner, rule and state (each filter optional)."""
    return [r for r in rows if (not person or r["owner"] == person) and (not rule or r["rule"] == rule)
            and (not state or r["state"] == state)]


def duty_story(s: Session, org: str, key: str, now: datetime, tz) -> dict[str, Any] | None:
    """One occurrence with everything the ledger knows about it, for its page."""
    occ = s.scalar(select(OccurrenceRow).where(OccurrenceRow.org == org, OccurrenceRow.key == key))
    if occ is None:
        return None
    names = names_of(s, org)
    rule = s.get(RuleRow, (org, occ.rule_id))
    definition = rule.definition if rule else {}
    today = now.astimezone(tz).date()
    st = state_name(occ.state, occ.due, today)

    def local(dt):
        return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M") if dt else ""

    completions = [{"id": c.id, "by": names.get(c.by, c.by) if c.by else "（未填）", "at": local(c.at),
                    "note": c.note, "evidence": c.evidence, "via": c.via}
                   for c in s.scalars(select(CompletionRow).where(CompletionRow.org == org,
                                                                  CompletionRow.occurrence_key == key)
                                      .order_by(CompletionRow.at, CompletionRow.id))]
    waivers = [{"by": names.get(w.by, w.by) if w.by else "", "at": local(w.at), "reason": w.reason}
               for w in s.scalars(select(WaiverRow).where(WaiverRow.org == org, WaiverRow.occurrence_key == key))]
    deliveries = []
    for d in s.scalars(select(DeliveryRow).where(DeliveryRow.org == org, DeliveryRow.occurrence_key == key)
                       .order_by(DeliveryRow.due_at, DeliveryRow.id)):
        if d.status in ("sent", "dead", "pending"):  # skipped ones (merged, duty closed) say nothing to a reader
            deliveries.append({"kind": KIND_NAMES.get(d.kind, d.kind), "to": names.get(d.recipient, d.recipient),
                               "status": {"sent": "已发送", "dead": "发送失败",
                                          "pending": "待发送" if not d.attempts else "重试中"}[d.status],
                               "channel": CHANNEL_LABELS.get(d.channel or "", d.channel or ""),
                               "at": local(d.sent_at) if d.sent_at else datetime.fromtimestamp(d.due_at, tz).strftime(
                                   "%Y-%m-%d %H:%M"),
                               "error": d.last_error if d.status in ("dead", "pending") else None})
    changes = [{"at": local(c.at), "text": f"截止日期由 {c.before['due']} 调整为 {c.after['due']}", "why": c.origin or ""}
               for c in s.scalars(select(RuleChangeRow).where(
                   RuleChangeRow.org == org, RuleChangeRow.action == "redated",
                   RuleChangeRow.rule_id == occ.rule_id).order_by(RuleChangeRow.at))
               if (c.after or {}).get("key") == key]
    events = [{"at": local(e.at), "actor": names.get(e.actor, e.actor or ""), "action": e.action, "via": e.via}
              for e in s.scalars(select(AuditEventRow).where(AuditEventRow.org == org, AuditEventRow.target == key)
                                 .order_by(AuditEventRow.at, AuditEventRow.id))]
    return {"occ": occ, "state": st, "rule": definition, "owner_name": names.get(occ.owner, occ.owner or "未指定"),
            "days_overdue": (today - occ.due).days if st == "overdue" else 0, "days_left": (occ.due - today).days,
            "completions": completions, "waivers": waivers, "deliveries": deliveries, "changes": changes,
            "events": events}
