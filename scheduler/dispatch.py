"""Claim → send → mark: every due delivery is sent at least once, and never by two workers at once.

A worker claims due deliveries in one short transaction (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite:
a compare-and-set update under its single writer), moving `due_at` to the end of its lease. It sends
outside any transaction, then marks the delivery sent only if the lease is still its own. A worker
that dies between send and mark leaves the delivery `sending`; when the lease runs out another worker
sends it again: a crash may repeat a message, never lose one.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from notifications.channels.base import Channel, ChannelError
from notifications.message import KIND_NAMES, Message, render
from rules.model import Person

from .db import session_scope
from .models import ACTIVE, AttemptRow, DeliveryRow, OccurrenceRow, RuleRow
from .routing import channels_for, recipient

log = logging.getLogger("duban.dispatch")

LEASE_SECONDS = 300  # longer than any channel's timeout
BATCH = 50
MAX_ATTEMPTS = 8
BACKOFF_BASE, BACKOFF_CAP = 60, 3600


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def backoff_seconds(attempts: int, rng: random.Random | None = None) -> int:
    """Exponential backoff with ±20 % jitter, capped: 1, 2, 4 … 60 minutes."""
    base = min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_CAP)
    return int(base * (rng or random).uniform(0.8, 1.2))


@dataclass
class Dispatched:
    sent: dict[str, int] = field(default_factory=dict)  # kind → count
    skipped: int = 0
    retrying: int = 0
    dead: int = 0
    lost_lease: int = 0

    def add_sent(self, kind: str) -> None:
        self.sent[kind] = self.sent.get(kind, 0) + 1


class Dispatcher:
    def __init__(self, engine: Engine, channels: list[Channel], tz: ZoneInfo, *, worker: str | None = None,
                 template_dir: str | None = None, digest_renderer=None):
        self.engine, self.channels, self.tz = engine, channels, tz
        self.worker = worker or worker_id()
        self.template_dir = template_dir
        self.digest_renderer = digest_renderer  # (session, delivery, now) -> context, from digest.py

    # --- claim -----------------------------------------------------------------------------
    def claim(self, now_ts: int, limit: int = BATCH) -> list[int]:
        with session_scope(self.engine) as s:
            q = (select(DeliveryRow.id).where(DeliveryRow.due_at <= now_ts).where(_active())
                 .order_by(DeliveryRow.due_at, DeliveryRow.id).limit(limit))
            if s.get_bind().dialect.name == "postgresql":
                ids = list(s.scalars(q.with_for_update(skip_locked=True)))
                if ids:
                    s.execute(update(DeliveryRow).where(DeliveryRow.id.in_(ids)).values(
                        status="sending", lease_owner=self.worker, due_at=now_ts + LEASE_SECONDS,
                        attempts=DeliveryRow.attempts + 1))
                return ids
            won = []
            for did in s.scalars(q).all():
                r = s.execute(update(DeliveryRow).where(DeliveryRow.id == did, DeliveryRow.due_at <= now_ts, _active())
                              .values(status="sending", lease_owner=self.worker, due_at=now_ts + LEASE_SECONDS,
                                      attempts=DeliveryRow.attempts + 1))
                if r.rowcount == 1:
                    won.append(did)
            return won

    # --- one pass ----------------------------------------------------------------------------
    def run(self, now: datetime, people: dict[str, Person], limit_batches: int = 1000) -> Dispatched:
        result = Dispatched()
        now_ts = int(now.timestamp())
        for _ in range(limit_batches):
            ids = self.claim(now_ts)
            if not ids:
                break
            for did in ids:
                self._one(did, now, now_ts, people, result)
        return result

    def _one(self, did: int, now: datetime, now_ts: int, people: dict[str, Person], result: Dispatched) -> None:
        with session_scope(self.engine) as s:
            d = s.get(DeliveryRow, did)
            reason = self._skip_reason(s, d, now_ts)
            if reason:
                self._finish(s, d, now, "skipped", None, reason)
                result.skipped += 1
                log.info("跳过 %s（%s）key=%s", KIND_NAMES.get(d.kind, d.kind), reason, d.key)
                return
            message = self._render(s, d, now, people)
            attempt = AttemptRow(delivery_id=d.id, worker=self.worker, started_at=now, outcome="sending")
            s.add(attempt)
            s.flush()
            attempt_id, d_kind, d_key, rcpt_id = attempt.id, d.kind, d.key, d.recipient
        # the send happens outside any transaction: no lock is held while the network is slow
        person = recipient(rcpt_id, people)
        errors: list[str] = []
        permanent, detail = False, {}
        for channel in channels_for(person, self.channels):
            try:
                sent = channel.send(message, person)
            except ChannelError as e:
                errors.append(f"{channel.label}：{e.message}")
                log.warning("发送失败 %s → %s 通过 %s：%s key=%s", KIND_NAMES.get(d_kind, d_kind), rcpt_id,
                            channel.name, e.message, d_key)
                permanent = e.permanent
                detail = e.detail
                continue
            self._mark(did, attempt_id, now, "sent", channel.name, None, sent.detail, result, d_kind)
            return
        self._mark(did, attempt_id, now, "failed", None, "；".join(errors), detail, result, d_kind,
                   permanent=permanent)

    # --- decisions ---------------------------------------------------------------------------
    def _skip_reason(self, s: Session, d: DeliveryRow, now_ts: int) -> str | None:
        """Why this delivery no longer needs sending (closed, superseded), or None."""
        if d.occurrence_key:
            occ = s.scalar(select(OccurrenceRow).where(OccurrenceRow.key == d.occurrence_key))
            if occ is None:
                return "事项不存在"
            if occ.state == "done":
                return "事项已完成"
            if occ.state == "waived":
                return "事项已免办"
            rule = s.get(RuleRow, occ.rule_id)
            if rule is None or not rule.enabled:
                return "规则已停用"
            if d.kind == "reminder" and datetime.fromtimestamp(now_ts, self.tz).date() > occ.due:
                return "已逾期，改发逾期提醒"
        # a later message of the same kind to the same person, also due, says it all
        later = s.scalar(select(DeliveryRow.id).where(
            DeliveryRow.occurrence_key == d.occurrence_key, DeliveryRow.kind == d.kind,
            DeliveryRow.recipient == d.recipient, DeliveryRow.slot > d.slot, _active(),
            DeliveryRow.id != d.id).limit(1)) if d.kind != "escalation" else None
        if later is not None:
            later_row = s.get(DeliveryRow, later)
            if later_row.status == "pending" and later_row.due_at <= now_ts:
                return "已合并到较晚的一条"
        return None

    def _render(self, s: Session, d: DeliveryRow, now: datetime, people: dict[str, Person]) -> Message:
        person = recipient(d.recipient, people)
        if d.kind == "digest":
            ctx = self.digest_renderer(s, d, now)
        else:
            occ = s.scalar(select(OccurrenceRow).where(OccurrenceRow.key == d.occurrence_key))
            rule = s.get(RuleRow, occ.rule_id)
            today = now.astimezone(self.tz).date()
            owner = people.get(occ.owner) if occ.owner else None
            ctx = dict(title=occ.title, key=occ.key, due=occ.due, source=rule.definition.get("source") if rule else None,
                       quota=occ.quota, done_count=occ.done_count, provisional=occ.provisional,
                       days_left=(occ.due - today).days, days_overdue=max((today - occ.due).days, 0),
                       owner_name=owner.name if owner else (occ.owner or "未指定"),
                       required_by=today + timedelta(days=3))
        return render(d.kind, {**ctx, "person": person}, d.key, self.template_dir)

    def _mark(self, did: int, attempt_id: int, now: datetime, outcome: str, channel: str | None, error: str | None,
              detail, result: Dispatched, kind: str, permanent: bool = False) -> None:
        """Record the outcome, but change the delivery only if our lease still holds."""
        with session_scope(self.engine) as s:
            attempt = s.get(AttemptRow, attempt_id)
            attempt.finished_at, attempt.channel, attempt.error, attempt.detail = now, channel, error, detail or None
            ours = (DeliveryRow.id == did, DeliveryRow.lease_owner == self.worker, DeliveryRow.status == "sending")
            if outcome == "sent":
                values = dict(status="sent", sent_at=now, channel=channel, last_error=None)
                attempt.outcome = "sent"
            else:
                d = s.get(DeliveryRow, did)
                dead = permanent or d.attempts >= MAX_ATTEMPTS
                attempt.outcome = "dead" if dead else "failed"
                values = dict(status="dead" if dead else "pending", last_error=error,
                              due_at=int(now.timestamp()) + (0 if dead else backoff_seconds(d.attempts)))
            r = s.execute(update(DeliveryRow).where(*ours).values(lease_owner=None, **values))
            if r.rowcount != 1:
                result.lost_lease += 1
                log.warning("租约已失效，另一个进程已接手 delivery=%s（可能重复发送一次）", did)
            elif outcome == "sent":
                result.add_sent(kind)
                log.info("已发送 %s → %s 通过 %s delivery=%s", KIND_NAMES.get(kind, kind), channel, channel, did)
            elif values["status"] == "dead":
                result.dead += 1
                log.error("放弃发送 %s delivery=%s：%s", KIND_NAMES.get(kind, kind), did, error)
            else:
                result.retrying += 1

    def _finish(self, s: Session, d: DeliveryRow, now: datetime, outcome: str, channel: str | None, note: str) -> None:
        s.add(AttemptRow(delivery_id=d.id, worker=self.worker, started_at=now, finished_at=now, outcome=outcome,
                         error=note))
        d.status, d.last_error, d.lease_owner = outcome, note, None


def _active():
    return text(ACTIVE)

