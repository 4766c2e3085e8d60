"""Claim → send → mark: every due delivery is sent at least once, and never by two workers at once.

A worker claims due deliveries in one short transaction (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite:
a compare-and-set update under its single writer), moving `due_at` to the end of its lease. It sends
outside any transaction, then marks the delivery sent only if the lease is still its own. A worker
that dies between send and mark leaves the delivery `sending`; when the lease runs out another worker
sends it again: a crash may repeat a message, never lose one. Every attempt is a row, written before
the send and completed after it.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, and_, or_, select, text, update
from sqlalchemy.orm import Session

from notifications.channels.base import Channel, ChannelDisabled, ChannelError, SendResult
from notifications.markdown import MdSafe
from notifications.message import KIND_NAMES, Message, Recipient, render
from notifications.redact import redact
from rules.model import Person

from .channel_state import clear_stale, disable_channel, disabled_channels
from .db import session_scope
from .models import ACTIVE, AttemptRow, DeliveryRow, OccurrenceRow, RuleRow
from .pacing import reserve
from .routing import ConfiguredChannel, channels_for, recipient

log = logging.getLogger("duban.dispatch")

LEASE_SECONDS = 60  # renewed before each channel attempt; longer than any channel's timeout (SMTP 30 s)
BATCH = 20
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
    deferred: int = 0  # paced: the channel's rate limit is reached for now
    dead: int = 0
    lost_lease: int = 0
    disabled: list[str] = field(default_factory=list)

    def add_sent(self, kind: str) -> None:
        self.sent[kind] = self.sent.get(kind, 0) + 1


def _active():
    return text(ACTIVE)


def _occurrence(s: Session, d: DeliveryRow) -> OccurrenceRow | None:
    return s.scalar(select(OccurrenceRow).where(OccurrenceRow.org == d.org, OccurrenceRow.key == d.occurrence_key))


class Dispatcher:
    def __init__(self, engine: Engine, channels: list[ConfiguredChannel], tz: ZoneInfo, *, worker: str | None = None,
                 template_dir: str | None = None, digest_renderer=None, lease_seconds: int = LEASE_SECONDS,
                 org: str | None = None, link_for=None):
        self.engine, self.configured, self.tz = engine, channels, tz
        self.link_for = link_for  # (org, person, occurrence key) -> the action link's URL
        self.lease = lease_seconds
        self.org = org  # None: every branch
        self._clock = lambda: int(time.time())  # run() replaces it with the injected time that passes
        self.channels: list[Channel] = [c.channel for c in channels]
        self.blocked: list[Channel] = []
        self.worker = worker or worker_id()
        self.template_dir = template_dir
        self.digest_renderer = digest_renderer  # (session, delivery, now) -> template context

    # --- claim -------------------------------------------------------------------------------
    def claim(self, now_ts: int, limit: int = BATCH) -> list[int]:
        with session_scope(self.engine) as s:
            q = (select(DeliveryRow.id).where(DeliveryRow.due_at <= now_ts).where(_active())
                 .order_by(DeliveryRow.due_at, DeliveryRow.id).limit(limit))
            if self.org is not None:
                q = q.where(DeliveryRow.org == self.org)
            lease = dict(status="sending", lease_owner=self.worker, due_at=self._clock() + self.lease,
                         attempts=DeliveryRow.attempts + 1)
            if s.get_bind().dialect.name == "postgresql":
                ids = list(s.scalars(q.with_for_update(skip_locked=True)))
                if ids:
                    s.execute(update(DeliveryRow).where(DeliveryRow.id.in_(ids)).values(**lease))
                return ids
            won = []
            for did in s.scalars(q).all():
                r = s.execute(update(DeliveryRow).where(DeliveryRow.id == did, DeliveryRow.due_at <= now_ts, _active())
                              .values(**lease))
                if r.rowcount == 1:
                    won.append(did)
            return won

    # --- one pass ----------------------------------------------------------------------------
    def run(self, now: datetime, people: dict[str, dict[str, Person]], max_batches: int = 1000) -> Dispatched:
        """Send what is due at `now`; `people` holds each organisation's people by id."""
        result = Dispatched()
        now_ts = int(now.timestamp())
        started = time.monotonic()
        # `now` may be injected; leases still have to follow the time that really passes while sending
        self._clock = lambda: now_ts + int(time.monotonic() - started)
        with session_scope(self.engine) as s:
            lifted = clear_stale(s, {c.channel.name: c.fingerprint for c in self.configured})
            blocked = disabled_channels(s)
        for name in lifted:
            log.info("渠道 %s 的设置已修改，恢复使用", name)
        self.channels: list[Channel] = [c.channel for c in self.configured
                                        if blocked.get(c.channel.name, {}).get("fingerprint") != c.fingerprint]
        self.blocked: list[Channel] = [c.channel for c in self.configured if c.channel not in self.channels]
        for _ in range(max_batches):
            ids = self.claim(now_ts)
            if not ids:
                break
            for did in ids:
                self._one(did, now, now_ts, people, result)
        return result

    def _one(self, did: int, now: datetime, now_ts: int, people_by_org: dict[str, dict[str, Person]],
             result: Dispatched) -> None:
        if not self._renew(did):
            result.lost_lease += 1  # our claim lapsed while earlier sends of the batch ran
            return
        with session_scope(self.engine) as s:
            d = s.get(DeliveryRow, did)
            try:
                people = people_by_org[d.org]  # PeopleByOrg loads a branch on first use
            except KeyError:
                people = {}
            reason = self._skip_reason(s, d, now)
            if reason:
                s.add(AttemptRow(delivery_id=d.id, worker=self.worker, started_at=now, finished_at=now,
                                 outcome="skipped", error=reason))
                d.status, d.last_error, d.lease_owner = "skipped", reason, None
                result.skipped += 1
                log.info("跳过%s（%s）delivery=%s", KIND_NAMES.get(d.kind, d.kind), reason, d.id)
                return
            kind, rcpt_id = d.kind, d.recipient
            try:
                message = self._render(s, d, now, people)
            except Exception as e:  # noqa: BLE001 - a broken (user) template must not stop the tick
                message, render_error = None, f"消息模板出错（{type(e).__name__}: {str(e)[:120]}）"
        person = recipient(rcpt_id, people)
        if message is None:
            self._mark_failed(did, None, now, render_error, permanent=False, result=result, kind=kind)
            return
        # the sends happen outside any transaction: no lock is held while the network is slow
        errors: list[str] = []
        transient = False
        attempt_id = None
        usable = channels_for(person, self.channels)
        if usable and usable[0].name == "console" and any(
                c.name != "console" and c.reaches(person) for c in self.blocked):
            # their channel is configured but blocked: wait for it to be fixed, do not divert to the log
            self._release(did, now_ts + backoff_seconds(4), undo_attempt=True, note="渠道已停用，等待修正设置")
            result.deferred += 1
            return
        for channel in usable:
            retry_at = self._reserve(channel, person, message, now_ts)
            if retry_at is not None:
                self._release(did, retry_at, undo_attempt=True)
                result.deferred += 1
                return
            if not self._renew(did):  # another worker took it over while we waited: it sends
                result.lost_lease += 1
                return
            attempt_id = self._start_attempt(did, channel, now)
            try:
                sent = channel.send(message, person)
            except Exception as e:  # noqa: BLE001 - any failure of a channel is recorded, never fatal
                if not isinstance(e, ChannelError):
                    e = ChannelError(redact(f"{type(e).__name__}: {e}")[:200])
                msg = redact(e.message)
                errors.append(f"{channel.label}：{msg}")
                # a disabled channel is not the message's fault: it is retried once the channel is fixed
                transient = transient or not e.permanent or isinstance(e, ChannelDisabled)
                self._finish_attempt(attempt_id, now, "failed", msg, e.detail)
                log.warning("发送失败：%s → %s，经%s：%s", KIND_NAMES.get(kind, kind), rcpt_id, channel.label, msg)
                if isinstance(e, ChannelDisabled):
                    self._disable(channel, msg, now, result)
                continue
            self._mark_sent(did, attempt_id, now, channel, sent, result, kind, rcpt_id)
            return
        self._mark_failed(did, attempt_id, now, "；".join(errors), permanent=not transient, result=result, kind=kind)

    def _renew(self, did: int) -> bool:
        """Extend our lease before a send; False when the delivery is no longer ours."""
        with session_scope(self.engine) as s:
            r = s.execute(update(DeliveryRow).where(*self._ours(did)).values(due_at=self._clock() + self.lease))
            return r.rowcount == 1

    # --- decisions ---------------------------------------------------------------------------
    def _skip_reason(self, s: Session, d: DeliveryRow, now: datetime) -> str | None:
        """Why this delivery no longer needs sending (closed, superseded), or None."""
        if d.occurrence_key:
            occ = _occurrence(s, d)
            if occ is None:
                return "事项不存在"
            if occ.state == "done":
                return "事项已完成"
            if occ.state == "waived":
                return "事项已免办"
            rule = s.get(RuleRow, (d.org, occ.rule_id))
            if rule is None or not rule.enabled:
                return "规则已停用"
            today = now.astimezone(self.tz).date()
            if d.kind == "reminder" and today > occ.due:
                return "已逾期，改发逾期提醒"
            if d.kind in ("overdue", "escalation") and today <= occ.due:
                return "截止日期已调整，尚未逾期"
        if d.kind in ("escalation", "redate"):
            return None
        # a later message of the same kind to the same person, also due now, says it all
        later = s.scalar(select(DeliveryRow.id).where(
            DeliveryRow.org == d.org,
            DeliveryRow.occurrence_key == d.occurrence_key if d.occurrence_key else DeliveryRow.occurrence_key.is_(None),
            DeliveryRow.kind == d.kind, DeliveryRow.recipient == d.recipient, DeliveryRow.slot > d.slot,
            or_(and_(DeliveryRow.status == "pending", DeliveryRow.due_at <= int(now.timestamp())),
                and_(DeliveryRow.status == "sending", DeliveryRow.lease_owner == self.worker))).limit(1))
        return "已合并到较晚的一条" if later is not None else None

    def _render(self, s: Session, d: DeliveryRow, now: datetime, people: dict[str, Person]) -> Message:
        person = recipient(d.recipient, people)
        if d.kind == "digest":
            ctx = self.digest_renderer(s, d, now)
        else:
            occ = _occurrence(s, d)
            rule = s.get(RuleRow, (d.org, occ.rule_id))
            today = now.astimezone(self.tz).date()
            owner = people.get(occ.owner) if occ.owner else None
            ctx = dict(title=occ.title, key=occ.key, due=occ.due, source=rule.definition.get("source") if rule else None,
                       quota=occ.quota, done_count=occ.done_count, provisional=occ.provisional,
                       days_left=(occ.due - today).days, days_overdue=max((today - occ.due).days, 0),
                       owner_name=owner.name if owner else (occ.owner or "未指定"),
                       required_by=self._workdays_after(s, today, 3),
                       action_url=MdSafe(self.link_for(d.org, d.recipient, occ.key)) if self.link_for else None)
            if d.kind == "redate":
                old, _sep, new = d.slot.partition(">")
                ctx.update(old_due=date.fromisoformat(old), new_due=date.fromisoformat(new))
        return render(d.kind, {**ctx, "person": person}, d.key, self.template_dir)

    def _workdays_after(self, s: Session, day: date, n: int) -> date:
        """The 督办通知's deadline: n working days of the official calendar after `day`."""
        if getattr(self, "_calendar", None) is None:
            from .store import load_calendar

            self._calendar = load_calendar(s)
        return date.fromordinal(self._calendar.add_workdays(day.toordinal(), n))

    # --- pacing ------------------------------------------------------------------------------
    def _reserve(self, channel: Channel, person: Recipient, message: Message, now_ts: int) -> int | None:
        buckets = []
        if getattr(channel, "rate_limit", None):
            limit, window = channel.rate_limit
            buckets.append((channel.name, min(channel.posts_needed(message, person), limit), limit, window))
        if getattr(channel, "rate_limit_per_person", None) and person.wecom:
            limit, window = channel.rate_limit_per_person
            buckets.append((f"{channel.name}:{person.wecom}", 1, limit, window))
        for bucket, n, limit, window in buckets:
            with session_scope(self.engine) as s:
                retry_at = reserve(s, bucket, n, limit, window, now_ts)
            if retry_at is not None:
                log.info("%s已达频率上限，%d 秒后再发", channel.label, retry_at - now_ts)
                return retry_at
        return None

    # --- recording ---------------------------------------------------------------------------
    def _ours(self, did: int):
        return (DeliveryRow.id == did, DeliveryRow.lease_owner == self.worker, DeliveryRow.status == "sending")

    def _start_attempt(self, did: int, channel: Channel, now: datetime) -> int:
        with session_scope(self.engine) as s:
            a = AttemptRow(delivery_id=did, worker=self.worker, started_at=now, channel=channel.name, outcome="sending")
            s.add(a)
            s.flush()
            return a.id

    def _finish_attempt(self, attempt_id: int, now: datetime, outcome: str, error: str | None, detail) -> None:
        with session_scope(self.engine) as s:
            a = s.get(AttemptRow, attempt_id)
            a.finished_at, a.outcome, a.error, a.detail = now, outcome, error, detail or None

    def _mark_sent(self, did: int, attempt_id: int, now: datetime, channel: Channel, sent: SendResult,
                   result: Dispatched, kind: str, rcpt_id: str) -> None:
        """Mark sent, but only if our lease still holds (else another worker has taken it over)."""
        with session_scope(self.engine) as s:
            a = s.get(AttemptRow, attempt_id)
            a.finished_at, a.outcome, a.detail = now, "sent", sent.detail or None
            r = s.execute(update(DeliveryRow).where(*self._ours(did)).values(
                status="sent", sent_at=now, channel=channel.name, last_error=None, lease_owner=None))
        if r.rowcount == 1:
            result.add_sent(kind)
            log.info("已发送%s → %s，经%s（delivery %s）", KIND_NAMES.get(kind, kind), rcpt_id, channel.label, did)
        else:
            result.lost_lease += 1
            log.warning("发送后发现租约已被其他进程接手（delivery %s），该消息可能重复一次", did)

    def _mark_failed(self, did: int, last_attempt: int | None, now: datetime, error: str, *, permanent: bool,
                     result: Dispatched, kind: str) -> None:
        with session_scope(self.engine) as s:
            d = s.get(DeliveryRow, did)
            dead = permanent or d.attempts >= MAX_ATTEMPTS
            if dead and last_attempt is not None:
                s.get(AttemptRow, last_attempt).outcome = "dead"  # the attempt that ended it
            next_at = int(now.timestamp()) + (0 if dead else backoff_seconds(d.attempts))
            r = s.execute(update(DeliveryRow).where(*self._ours(did)).values(
                status="dead" if dead else "pending", last_error=error, due_at=next_at, lease_owner=None))
        if r.rowcount != 1:
            result.lost_lease += 1
        elif dead:
            result.dead += 1
            log.error("放弃发送%s（delivery %s）：%s", KIND_NAMES.get(kind, kind), did, error)
        else:
            result.retrying += 1

    def _release(self, did: int, retry_at: int, undo_attempt: bool, note: str | None = None) -> None:
        """Give a claimed delivery back without an attempt (paced by a rate limit, or its channel blocked)."""
        values = dict(status="pending", due_at=retry_at, lease_owner=None,
                      attempts=DeliveryRow.attempts - (1 if undo_attempt else 0))
        if note:
            values["last_error"] = note
        with session_scope(self.engine) as s:
            s.execute(update(DeliveryRow).where(*self._ours(did)).values(**values))

    def _disable(self, channel: Channel, reason: str, now: datetime, result: Dispatched) -> None:
        fp = next(c.fingerprint for c in self.configured if c.channel is channel)
        with session_scope(self.engine) as s:
            disable_channel(s, channel.name, channel.label, reason, fp, now)
        self.channels = [c for c in self.channels if c is not channel]
        self.blocked.append(channel)
        result.disabled.append(channel.name)
        log.error("渠道“%s”已停用：%s。修正设置后会自动恢复", channel.label, reason)
