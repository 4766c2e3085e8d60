"""Claim → send → mark: every due delivery is sent at least once, and never by two workers at once.

A worker claims due deliveries in one short transaction (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite:
a compare-and-set update under its single writer), moving `due_at` to the end of its lease. It sends
outside any transaction, then marks the delivery sent only if the lease is still its own. A worker
that dies between send and mark leaves the delivery `sending`; when the lease runs out another worker
sends it again: a crash may repeat a message, never lose one. Every attempt is a row, written before
the send and completed after it.

One message per person per send time: with a due reminder, overdue alert or escalation, the claim
takes every other one of the same person and family (reminders with overdue alerts; escalations)
that is due too, and they go out as one message listing each duty. The promise holds per duty: each
delivery has its own lease (all renewed before the send), its own attempt row (all written before
the send) and is marked sent after it; a crash repeats the whole message (same Message-ID), a duty
closed by then is left out of the repeat. Claims take turns (PostgreSQL: an advisory lock; SQLite:
its one writer), so two workers never split a person's messages between them.
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
from .db import lock_for_write, session_scope
from .models import ACTIVE, AttemptRow, DeliveryRow, OccurrenceRow, RuleRow
from .pacing import reserve
from .routing import ConfiguredChannel, channels_for, recipient

log = logging.getLogger("duban.dispatch")

LEASE_SECONDS = 60  # renewed before each channel attempt; longer than any channel's timeout (SMTP 30 s)
BATCH = 20
MAX_ATTEMPTS = 8
BACKOFF_BASE, BACKOFF_CAP = 60, 3600
# the kinds that combine into one message per person: reminders with overdue alerts, escalations together
FAMILY = {"reminder": "duty", "overdue": "duty", "escalation": "escalation"}
GROUP_LIMIT = 100  # duties in one combined message at most; a longer list goes as several


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


def _lock(s: Session) -> None:
    """SQLite: take the write lock before reading what is about to change (PostgreSQL locks rows)."""
    lock_for_write(s)


def _for_update(s: Session, q):
    return q.with_for_update() if s.get_bind().dialect.name == "postgresql" else q


def _occurrence(s: Session, d: DeliveryRow) -> OccurrenceRow | None:
    return s.scalar(select(OccurrenceRow).where(OccurrenceRow.org == d.org, OccurrenceRow.key == d.occurrence_key))


class Dispatcher:
    def __init__(self, engine: Engine, channels: list[ConfiguredChannel], tz: ZoneInfo, *, worker: str | None = None,
                 template_dir: str | None = None, digest_renderer=None, lease_seconds: int = LEASE_SECONDS,
                 org: str | None = None, link_for=None, my_url: str | None = None):
        self.engine, self.configured, self.tz = engine, channels, tz
        self.link_for = link_for  # (org, person, occurrence key) -> the action link's URL
        self.my_url = my_url  # the workbench's "my duties" page: where a combined WeCom card leads
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
        """Claim due deliveries (see `claim_groups`); their ids."""
        return [did for group in self.claim_groups(now_ts, limit) for did in group]

    def claim_groups(self, now_ts: int, limit: int = BATCH) -> list[list[int]]:
        """Claim up to `limit` due deliveries, and with each reminder, overdue alert or escalation
        every other one of the same person and family that is due too: one short transaction.
        Returns them grouped: each group goes out as one message."""
        with session_scope(self.engine) as s:
            pg = s.get_bind().dialect.name == "postgresql"
            if pg:  # claims take turns (each a few ms): two workers never split one person's messages
                s.execute(text("SELECT pg_advisory_xact_lock(hashtext('duban-claim'))"))
            else:
                lock_for_write(s)  # SQLite: the one writer from the first read, so what is read stays due
            cols = (DeliveryRow.id, DeliveryRow.org, DeliveryRow.recipient, DeliveryRow.kind)
            base = select(*cols).where(DeliveryRow.due_at <= now_ts).where(_active())
            if self.org is not None:
                base = base.where(DeliveryRow.org == self.org)
            first = base.order_by(DeliveryRow.due_at, DeliveryRow.id).limit(limit)
            rows = list(s.execute(first.with_for_update(skip_locked=True) if pg else first))
            people = list(dict.fromkeys((r.org, r.recipient) for r in rows if r.kind in FAMILY))
            if people:
                # the same people's other due messages join them: one message per person per send time
                more = (base.where(DeliveryRow.kind.in_(list(FAMILY)), DeliveryRow.id.notin_([r.id for r in rows]),
                                   DeliveryRow.recipient.in_({p for _o, p in people}),
                                   DeliveryRow.org.in_({o for o, _p in people}))
                        .order_by(DeliveryRow.due_at, DeliveryRow.id).limit(GROUP_LIMIT * len(people)))
                wanted = set(people)
                rows += [r for r in s.execute(more.with_for_update(skip_locked=True) if pg else more)
                         if (r.org, r.recipient) in wanted]
            if not rows:
                return []
            lease = dict(status="sending", lease_owner=self.worker, due_at=self._clock() + self.lease,
                         attempts=DeliveryRow.attempts + 1)
            ids = [r.id for r in rows]
            for i in range(0, len(ids), 500):
                s.execute(update(DeliveryRow).where(DeliveryRow.id.in_(ids[i:i + 500])).values(**lease))
        groups: dict[tuple, list[int]] = {}
        for r in rows:
            family = FAMILY.get(r.kind)
            key = (r.org, r.recipient, family, 0) if family else ("", "", r.id, 0)
            while len(groups.get(key, ())) >= GROUP_LIMIT:  # a very long list goes as several messages
                key = (*key[:3], key[3] + 1)
            groups.setdefault(key, []).append(r.id)
        return list(groups.values())

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
            groups = self.claim_groups(now_ts)
            if not groups:
                break
            for group in groups:
                self._group(group, now, now_ts, people, result)
        return result

    def _group(self, dids: list[int], now: datetime, now_ts: int, people_by_org: dict[str, dict[str, Person]],
               result: Dispatched) -> None:
        """Send one message for these claimed deliveries (one, or several of one person combined)."""
        live = self._renew(dids)
        result.lost_lease += len(dids) - len(live)  # our claim lapsed while earlier sends of the batch ran
        if not live:
            return
        with session_scope(self.engine) as s:
            rows = sorted(s.scalars(select(DeliveryRow).where(DeliveryRow.id.in_(live))), key=lambda d: live.index(d.id))
            org = rows[0].org
            try:
                people = people_by_org[org]  # PeopleByOrg loads a branch on first use
            except KeyError:
                people = {}
            todo: list[DeliveryRow] = []
            for d in rows:
                reason = self._skip_reason(s, d, now)
                if reason:
                    s.add(AttemptRow(delivery_id=d.id, worker=self.worker, started_at=now, finished_at=now,
                                     outcome="skipped", error=reason))
                    d.status, d.last_error, d.lease_owner = "skipped", reason, None
                    result.skipped += 1
                    log.info("跳过%s（%s）delivery=%s", KIND_NAMES.get(d.kind, d.kind), reason, d.id)
                else:
                    todo.append(d)
            if not todo:
                return
            kinds = {d.id: d.kind for d in todo}
            rcpt_id = todo[0].recipient
            try:
                if len(todo) == 1:
                    message = self._render(s, todo[0], now, people)
                else:
                    message = self._render_combined(s, todo, now, people)
            except Exception as e:  # noqa: BLE001 - a broken (user) template must not stop the tick
                message, render_error = None, f"消息模板出错（{type(e).__name__}: {str(e)[:120]}）"
        ids = list(kinds)
        person = recipient(rcpt_id, people)
        if message is None:
            self._mark_failed(ids, {}, now, render_error, permanent=False, result=result, kinds=kinds)
            return
        # the sends happen outside any transaction: no lock is held while the network is slow
        errors: list[str] = []
        transient = False
        attempts: dict[int, int] = {}
        usable = channels_for(person, self.channels)
        if usable and usable[0].name == "console" and any(
                c.name != "console" and c.reaches(person) for c in self.blocked):
            # their channel is configured but blocked: wait for it to be fixed, do not divert to the log
            self._release(ids, now_ts + backoff_seconds(4), undo_attempt=True, note="渠道已停用，等待修正设置")
            result.deferred += len(ids)
            return
        for channel in usable:
            retry_at = self._reserve(channel, person, message, now_ts)
            if retry_at is not None:
                self._release(ids, retry_at, undo_attempt=True)
                result.deferred += len(ids)
                return
            still = self._renew(ids)  # every lease of the message, just before it goes
            if len(still) < len(ids):  # another worker took some over while we waited: it sends those
                result.lost_lease += len(ids) - len(still)
                if still:  # the rest, still ours, once more: as a message without them
                    self._group(still, now, now_ts, people_by_org, result)
                return
            attempts = self._start_attempts(ids, channel, now)
            try:
                sent = channel.send(message, person)
            except Exception as e:  # noqa: BLE001 - any failure of a channel is recorded, never fatal
                if not isinstance(e, ChannelError):
                    e = ChannelError(redact(f"{type(e).__name__}: {e}")[:200])
                msg = redact(e.message)
                errors.append(f"{channel.label}：{msg}")
                # a disabled channel is not the message's fault: it is retried once the channel is fixed
                transient = transient or not e.permanent or isinstance(e, ChannelDisabled)
                self._finish_attempts(list(attempts.values()), now, "failed", msg, e.detail)
                log.warning("发送失败：%s → %s，经%s：%s", KIND_NAMES.get(message.kind, message.kind), rcpt_id,
                            channel.label, msg)
                if isinstance(e, ChannelDisabled):
                    self._disable(channel, msg, now, result)
                continue
            self._mark_sent(ids, attempts, now, channel, sent, result, kinds, rcpt_id)
            return
        self._mark_failed(ids, attempts, now, "；".join(errors), permanent=not transient, result=result, kinds=kinds)

    def _renew(self, dids: list[int]) -> list[int]:
        """Extend our leases before a send; the ids (in order) that are still ours."""
        with session_scope(self.engine) as s:
            r = s.execute(update(DeliveryRow).where(*self._ours(dids)).values(due_at=self._clock() + self.lease))
            if r.rowcount == len(dids):
                return list(dids)
            ours = set(s.scalars(select(DeliveryRow.id).where(*self._ours(dids))))
            return [did for did in dids if did in ours]

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

    def _duty(self, s: Session, d: DeliveryRow, now: datetime, people: dict[str, Person]) -> dict:
        """What a message says about the duty of one delivery (its occurrence)."""
        occ = _occurrence(s, d)
        rule = s.get(RuleRow, (d.org, occ.rule_id))
        today = now.astimezone(self.tz).date()
        owner = people.get(occ.owner) if occ.owner else None
        return dict(title=occ.title, key=occ.key, due=occ.due, source=rule.definition.get("source") if rule else None,
                    quota=occ.quota, done_count=occ.done_count, provisional=occ.provisional,
                    days_left=(occ.due - today).days, days_overdue=max((today - occ.due).days, 0),
                    owner_name=owner.name if owner else (occ.owner or "未指定"),
                    required_by=self._workdays_after(s, today, 3),
                    action_url=MdSafe(self.link_for(d.org, d.recipient, occ.key)) if self.link_for else None)

    def _render(self, s: Session, d: DeliveryRow, now: datetime, people: dict[str, Person]) -> Message:
        person = recipient(d.recipient, people)
        if d.kind == "digest":
            ctx = self.digest_renderer(s, d, now)
        else:
            ctx = self._duty(s, d, now, people)
            if d.kind == "redate":
                old, _sep, new = d.slot.partition(">")
                ctx.update(old_due=date.fromisoformat(old), new_due=date.fromisoformat(new))
        return render(d.kind, {**ctx, "person": person}, d.key, self.template_dir)

    def _render_combined(self, s: Session, ds: list[DeliveryRow], now: datetime, people: dict[str, Person]) -> Message:
        """One message listing the duties of several deliveries to one person (`combined`, or
        `combined_escalation` for 督办通知): each with its due date, state, progress and action link."""
        person = recipient(ds[0].recipient, people)
        escalation = ds[0].kind == "escalation"
        items = []
        for d in ds:
            item = self._duty(s, d, now, people)
            if item["days_overdue"] > 0:
                state = f"已逾期 {item['days_overdue']} 天"
            elif item["days_left"] == 0:
                state = "今天到期"
            else:
                state = f"{item['days_left']} 天后到期"
            items.append({**item, "kind": d.kind, "state": state, "overdue": item["days_overdue"] > 0})
        # the most urgent first: the longest overdue, then the soonest due; escalations by owner
        items.sort(key=lambda i: ((i["owner_name"],) if escalation else ()) + (i["due"], i["key"]))
        owners = list(dict.fromkeys(i["owner_name"] for i in items))
        kind = "combined_escalation" if escalation else "combined"
        ctx = dict(items=items, count=len(items), overdue_count=sum(1 for i in items if i["overdue"]),
                   owners=owners, my_url=MdSafe(self.my_url) if self.my_url else None,
                   required_by=items[0]["required_by"], person=person)
        # the same duties give the same key (and so the same Message-ID) when a crash repeats the message
        key = "combined:" + "+".join(sorted(d.key for d in ds))
        return render(kind, ctx, key, self.template_dir, url=self.my_url)

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
    def _ours(self, dids: list[int]):
        return (DeliveryRow.id.in_(dids), DeliveryRow.lease_owner == self.worker, DeliveryRow.status == "sending")

    def _start_attempts(self, dids: list[int], channel: Channel, now: datetime) -> dict[int, int]:
        """One attempt row per delivery of the message, written (in one transaction) before the send."""
        with session_scope(self.engine) as s:
            rows = {did: AttemptRow(delivery_id=did, worker=self.worker, started_at=now, channel=channel.name,
                                    outcome="sending") for did in dids}
            s.add_all(rows.values())
            s.flush()
            return {did: a.id for did, a in rows.items()}

    def _finish_attempts(self, attempt_ids: list[int], now: datetime, outcome: str, error: str | None, detail) -> None:
        with session_scope(self.engine) as s:
            s.execute(update(AttemptRow).where(AttemptRow.id.in_(attempt_ids)).values(
                finished_at=now, outcome=outcome, error=error, detail=detail or None))

    def _mark_sent(self, dids: list[int], attempts: dict[int, int], now: datetime, channel: Channel, sent: SendResult,
                   result: Dispatched, kinds: dict[int, str], rcpt_id: str) -> None:
        """Mark each sent, but only if our lease still holds (else another worker has taken it over)."""
        with session_scope(self.engine) as s:
            s.execute(update(AttemptRow).where(AttemptRow.id.in_(list(attempts.values()))).values(
                finished_at=now, outcome="sent", detail=sent.detail or None))
            _lock(s)
            ours = set(s.scalars(_for_update(s, select(DeliveryRow.id).where(*self._ours(dids)))))
            if ours:
                s.execute(update(DeliveryRow).where(*self._ours(list(ours))).values(
                    status="sent", sent_at=now, channel=channel.name, last_error=None, lease_owner=None))
        for did in dids:
            kind = kinds[did]
            if did in ours:
                result.add_sent(kind)
            else:
                result.lost_lease += 1
                log.warning("发送后发现租约已被其他进程接手（delivery %s），该消息可能重复一次", did)
        if ours:
            what = KIND_NAMES.get(kinds[dids[0]], kinds[dids[0]]) if len(dids) == 1 else f"合并消息（{len(dids)} 项）"
            log.info("已发送%s → %s，经%s（delivery %s）", what, rcpt_id, channel.label,
                     "、".join(str(d) for d in dids if d in ours))

    def _mark_failed(self, dids: list[int], attempts: dict[int, int], now: datetime, error: str, *,
                     permanent: bool, result: Dispatched, kinds: dict[int, str]) -> None:
        with session_scope(self.engine) as s:
            _lock(s)
            rows = {d.id: d for d in s.scalars(_for_update(s, select(DeliveryRow).where(*self._ours(dids))))}
            for did in dids:
                d = rows.get(did)
                if d is None:
                    result.lost_lease += 1
                    continue
                dead = permanent or d.attempts >= MAX_ATTEMPTS
                if dead and did in attempts:
                    s.get(AttemptRow, attempts[did]).outcome = "dead"  # the attempt that ended it
                d.status, d.last_error, d.lease_owner = ("dead" if dead else "pending"), error, None
                d.due_at = int(now.timestamp()) + (0 if dead else backoff_seconds(d.attempts))
                if dead:
                    result.dead += 1
                    log.error("放弃发送%s（delivery %s）：%s", KIND_NAMES.get(kinds[did], kinds[did]), did, error)
                else:
                    result.retrying += 1

    def _release(self, dids: list[int], retry_at: int, undo_attempt: bool, note: str | None = None) -> None:
        """Give claimed deliveries back without an attempt (paced by a rate limit, or their channel blocked)."""
        values = dict(status="pending", due_at=retry_at, lease_owner=None,
                      attempts=DeliveryRow.attempts - (1 if undo_attempt else 0))
        if note:
            values["last_error"] = note
        with session_scope(self.engine) as s:
            s.execute(update(DeliveryRow).where(*self._ours(dids)).values(**values))

    def _disable(self, channel: Channel, reason: str, now: datetime, result: Dispatched) -> None:
        fp = next(c.fingerprint for c in self.configured if c.channel is channel)
        with session_scope(self.engine) as s:
            disable_channel(s, channel.name, channel.label, reason, fp, now)
        self.channels = [c for c in self.channels if c is not channel]
        self.blocked.append(channel)
        result.disabled.append(channel.name)
        log.error("渠道“%s”已停用：%s。修正设置后会自动恢复", channel.label, reason)
