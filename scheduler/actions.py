"""What a person can do, for both faces (CLI and web): record a completion, waive, and the checks
on an action link. Each function runs inside the caller's transaction and writes the audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from rules.errors import DubanError
from rules.model import NOTE_MAX  # a note is a paragraph, not a document: files go as evidence
from rules.text import text_problem

from .models import DEFAULT_ORG, AuditEventRow, CompletionRow, OccurrenceRow, WaiverRow
from .occurrences import record_done, record_waiver

LINK_GRACE = timedelta(days=30)  # an action link keeps working this long after its duty closes
VIA_NAMES = {"cli": "命令行", "web": "工作台", "link": "消息中的链接", "wecom": "企业微信", "email": "邮件"}


@dataclass
class Completed:
    occurrence: OccurrenceRow
    completion_id: int | None
    repeated: bool  # the same form was submitted before: nothing new recorded


def audit(s: Session, *, org: str, now: datetime, actor: str | None, via: str, action: str,
          target: str | None = None, remote: str | None = None, detail: dict[str, Any] | None = None) -> None:
    s.add(AuditEventRow(org=org, at=now, actor=actor, via=via, action=action, target=target,
                        remote=remote, detail=detail))


def note_problem(text: str, what: str = "完成情况说明") -> str | None:
    """What is wrong with a note (control characters, too long), in Chinese, or None."""
    problem = text_problem(text.strip(), NOTE_MAX, multiline=True)
    if problem and len(text.strip()) > NOTE_MAX:
        return f"{what}{problem}；较长的材料请作为佐证文件上传"
    return f"{what}{problem}" if problem else None


def clean_note(text: str | None, what: str = "完成情况说明") -> str | None:
    if text is None:
        return None
    problem = note_problem(text, what)
    if problem:
        raise DubanError(problem)
    return text.strip() or None


def complete(s: Session, key: str, *, now: datetime, by: str | None, note: str | None = None,
             evidence: str | None = None, org: str = DEFAULT_ORG, via: str = "cli",
             request_id: str | None = None, remote: str | None = None) -> Completed:
    """Record one completion. A `request_id` seen before (a second click on the same form) records nothing."""
    note = clean_note(note)
    if request_id:
        seen = s.scalar(select(CompletionRow).where(CompletionRow.org == org, CompletionRow.request_id == request_id))
        if seen is not None:
            occ = s.scalar(select(OccurrenceRow).where(OccurrenceRow.org == org, OccurrenceRow.key == seen.occurrence_key))
            return Completed(occ, seen.id, repeated=True)
    occ = record_done(s, key, now=now, by=by, note=note, evidence=evidence, org=org)
    row = s.scalar(select(CompletionRow).where(CompletionRow.org == org, CompletionRow.occurrence_key == key)
                   .order_by(CompletionRow.id.desc()).limit(1))
    # the row just added by record_done (this transaction holds the occurrence's lock)
    row.via, row.request_id = via, request_id
    s.flush()
    audit(s, org=org, now=now, actor=by, via=via, action="done", target=key, remote=remote,
          detail={"count": occ.done_count, "quota": occ.quota})
    return Completed(occ, row.id, repeated=False)


def waive(s: Session, key: str, *, now: datetime, reason: str, by: str | None, org: str = DEFAULT_ORG,
          via: str = "cli", remote: str | None = None) -> OccurrenceRow:
    reason = clean_note(reason, "免办理由") or ""
    occ = record_waiver(s, key, now=now, reason=reason, by=by, org=org)
    w = s.scalar(select(WaiverRow).where(WaiverRow.org == org, WaiverRow.occurrence_key == key)
                 .order_by(WaiverRow.id.desc()).limit(1))
    w.via = via
    audit(s, org=org, now=now, actor=by, via=via, action="waive", target=key, remote=remote, detail={"reason": reason})
    return occ


def link_usable(occ: OccurrenceRow | None, now: datetime) -> str | None:
    """Why an action link for this occurrence no longer works, or None while it does."""
    if occ is None:
        return "该事项不存在"
    if occ.state != "open" and occ.closed_at is not None and now - occ.closed_at > LINK_GRACE:
        return "该事项已办结超过 30 天，链接已失效"
    return None
