"""District benchmark: 500 branches × the bundled pack (27 rules), two years of history, on one database.

    python bench/district_bench.py             # 500 branches, SQLite and PostgreSQL
    python bench/district_bench.py --quick     # 50 branches, fewer repeats, no command-line runs
    python bench/district_bench.py --profile   # and a cProfile (top 15) of every figure, not only missed ones
    python bench/district_bench.py --no-pg     # SQLite only (PostgreSQL: --pg URL or DUBAN_TEST_POSTGRES_URL)

The data set. Branch `branch-001` imports rules/packs/kuancheng-wenlian.yaml with import_ruleset (every
person given an e-mail address), added on 2025-01-01; its people, groups, rules and audit rows are then
copied to the other branches with bulk inserts. Each branch records the same calendar of events (a
study session and a received document a month, a post every two weeks, payments, meetings …), each
event under its own id. The occurrences of 2025-01-01 … 2026-12-31 (and those the materializer would
already hold beyond, up to its horizon) are planned once with the real Planner, the way
Materializer.occurrences plans them, and written for every branch with its own fates (seeded): done in
time, done late, waived, still open (some overdue), done early. With them, as the service would have
left them: completions and waivers; every reminder delivery (sent, skipped once the occurrence was
closed, pending when still ahead), an overdue alert every working day an occurrence stayed open past
its due date, the escalation, a digest every working day; and one delivery attempt per send (a few
failed first, a few dead). Rows go in with executemany (SQLite) or COPY (PostgreSQL); PostgreSQL gets
ANALYZE afterwards (autovacuum would), SQLite nothing (the product never runs ANALYZE).

`now` is Wednesday 2026-12-30 07:00 Asia/Shanghai: before the 08:30 digest and the 09:00 reminders.

Timed, on each database:
  1. Materializer(s, now, tz).run(force=True) over the district: what the first tick of every day does,
     and every tick after a change in any branch. Its new rows check the data set (0 = consistent).
  2. tick(), steady state (marker up to date, nothing due): the service's every minute; median of many.
     Then a tick with 100 deliveries due across the branches (pending reminders of open occurrences
     moved to just before `now`; put back between repeats), sent to the console channel (a temp file).
     Then a tick right after a change in one branch (a config bump, as `duban event add` makes).
  3. render_digest(s, now, "secretary", org=…) for 20 branches, each in a new session: the median.
  4. The ledger of one branch: export_ledger in process (.xlsx, .csv, .xlsx --from 2025-01-01 --to
     2026-12-31; best of 3), and `duban --org B ledger export --out X` as a command (best of 3).
A target missed is profiled (cProfile, top 15 cumulative and by own time). Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import os
import platform
import pstats
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from common import Db, clean_env, duban_exe, fs_type, pg_available, pg_version  # noqa: E402
from sqlalchemy import delete, event, func, insert, select, update
from sqlalchemy.exc import OperationalError

from rules.calendar import WorkCalendar
from rules.loader import RuleSet, load_rule_file
from rules.model import Rule
from rules.planner import Event, Planner
from scheduler.db import make_engine, session_scope
from scheduler.digest import render_digest
from scheduler.ledger import LedgerFilter, export_ledger
from scheduler.materialize import (
    HORIZON,
    Materializer,
    _lead_days,
    effective_start,
    epoch,
    escalation_day,
    first_overdue_day,
)
from scheduler.models import (
    AttemptRow,
    DeliveryRow,
    GroupRow,
    OccurrenceRow,
    PersonRow,
    RuleChangeRow,
    RuleRow,
)
from scheduler.routing import configured_channels
from scheduler.settings import load_settings
from scheduler.state import bump_config
from scheduler.store import import_ruleset
from scheduler.tick import tick

PACK = Path(__file__).resolve().parent.parent / "rules" / "packs" / "kuancheng-wenlian.yaml"
TZ_NAME = "Asia/Shanghai"
TZ = ZoneInfo(TZ_NAME)
NOW_TEXT = "2026-12-30T07:00"  # a Wednesday, a working day
NOW = datetime.fromisoformat(NOW_TEXT).replace(tzinfo=TZ)
DIGEST_NOW = NOW.replace(hour=8, minute=30)
TODAY = NOW.date()
IMPORTED = datetime(2025, 1, 1, 8, 0, tzinfo=TZ)  # the rules' added_on: history starts 2025-01-01
HISTORY_FROM, HISTORY_TO = date(2025, 1, 1), date(2026, 12, 31)
SEED = 20261230
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

BRANCHES, QUICK_BRANCHES = 500, 50
CHUNK = 25  # branches generated and inserted per transaction
N_DUE = 100
N_DIGEST_BRANCHES = 20

EXPORT_TARGET_S = 10.0
DIGEST_TARGET_MS = 200.0
TICK_TARGET_MS = 50.0

WORKERS = ("duban-app1:2231:3fa9c1", "duban-app1:2231:77d0e2", "duban-app2:1987:b41c55")
NOTES = ("已按要求完成", "已完成，材料已归档", "会议已召开，纪要已上报", "已完成，详见台账附件")
FAILED = "邮件：SMTP 服务器暂时不可用（421 Service not available）"
DEAD = "邮件：收件地址被拒绝（550 Mailbox unavailable）"
WAIVE_REASONS = ("上级通知本期暂停开展", "与区委统一部署合并开展", "人员调整，经书记同意本期免办")


def branch_name(i: int) -> str:
    return f"branch-{i + 1:03d}"


# --- small helpers -------------------------------------------------------------------------------
def step(msg: str) -> None:
    print(f"… {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def fmt_s(v: float | None) -> str:
    if v is None:
        return "—"
    ms = v * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 1000 else f"{v:.2f} s"


PROFILES: list[str] = []  # printed after the tables


def profile(label: str, fn: Callable[[], Any], setup: Callable[[], Any] | None = None) -> None:
    step(f"profiling: {label}")
    if setup:
        setup()
    prof = cProfile.Profile()
    with redirect_stdout(io.StringIO()):
        prof.enable()
        fn()
        prof.disable()
    for order in ("cumulative", "tottime"):
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats(order).print_stats(r"^(?!.*district_bench\.py)", 15)
        lines = s.getvalue().splitlines()
        start = next((i for i, ln in enumerate(lines) if "function calls" in ln), 0)
        PROFILES.append(f"\n=== cProfile: {label} (top 15 by {order}) ===\n"
                        + "\n".join(ln for ln in lines[start:] if ln.strip()))


class QueryCount:
    """Statements the engine sends (a figure of its own: a tick's cost on a remote database)."""

    def __init__(self, engine):
        self.n = 0
        event.listen(engine, "before_cursor_execute", self._one)

    def _one(self, *_a) -> None:
        self.n += 1


# --- databases -----------------------------------------------------------------------------------


class Stored:
    """Python values as the engine stores them (the models' own bind processors), cached: a district
    holds millions of timestamps but few distinct ones."""

    def __init__(self, engine):
        dialect = engine.dialect
        c = OccurrenceRow.__table__.c
        self._dt = c.closed_at.type.bind_processor(dialect) or (lambda v: v)
        self._d = c.due.type.bind_processor(dialect) or (lambda v: v)
        self._b = c.provisional.type.bind_processor(dialect) or (lambda v: v)
        self._ts: dict[int, Any] = {}
        self._days: dict[date, Any] = {}

    def at(self, ts: int | None) -> Any:
        if ts is None:
            return None
        v = self._ts.get(ts)
        if v is None:
            v = self._ts[ts] = self._dt(datetime.fromtimestamp(ts, UTC))
        return v

    def day(self, d: date) -> Any:
        v = self._days.get(d)
        if v is None:
            v = self._days[d] = self._d(d)
        return v

    def flag(self, b: bool) -> Any:
        return self._b(b)


def bulk_insert(raw, dialect: str, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """executemany on SQLite, COPY on PostgreSQL, on an open raw connection (committed by the caller)."""
    if not rows:
        return
    if dialect == "postgresql":
        with raw.driver_connection.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
    else:
        cur = raw.cursor()
        cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
        cur.close()


# --- the template: one branch's plan, computed once ----------------------------------------------
@dataclass
class TOcc:
    """One planned occurrence of the template branch, with everything the history needs."""

    rule: Rule
    key: str  # for an event occurrence, "{}" stands for the branch's event id
    ev: int | None  # the template event number (1-based) or None
    period: str
    opens: date
    due: date
    quota: int
    owner: str | None
    provisional: bool
    members: tuple[str, ...]
    reminders: list[tuple[str, int]]  # (slot, epoch) per reminder day
    created_ts: int
    overdue: list[tuple[date, str, int]] = field(default_factory=list)  # every overdue-alert day up to today
    esc: tuple[date, str, int] | None = None
    esc_targets: tuple[str, ...] = ()


@dataclass
class Template:
    rs: RuleSet
    cal: WorkCalendar
    events: list[tuple[str, date, str, int]]  # (type, date, title, recorded epoch)
    occs: list[TOcc]
    digest_days: list[tuple[str, int]]


def minute_ts(d: date, hh: int, mm: int) -> int:
    return int(datetime(d.year, d.month, d.day, hh, mm, tzinfo=TZ).timestamp())


def pack_ruleset() -> RuleSet:
    rs = load_rule_file(str(PACK))
    people = {pid: dataclasses.replace(p, email=f"{pid}@{branch_name(0)}.example.cn") for pid, p in rs.people.items()}
    return dataclasses.replace(rs, people=people)


def event_calendar(cal: WorkCalendar) -> list[tuple[str, date, str, int]]:
    """Every branch's events of 2025–2026, recorded ahead of time (a received document: that day)."""
    def wd(d: date) -> date:
        return d if cal.is_workday(d) else date.fromordinal(cal.next_workday(d.toordinal()))

    out: list[tuple[str, date, str]] = []
    n_study = 0
    for y in (2025, 2026):
        for m in range(1, 13):
            n_study += 1
            out.append(("study-session", wd(date(y, m, 10)), f"中心组第{n_study}次学习"))
            out.append(("document-received", wd(date(y, m, 3)), f"上级文件（{y}年{m}月）"))
            out.append(("payment", wd(date(y, m, 8)), "办公用品采购"))
            out.append(("payment", wd(date(y, m, 22)), "活动场地租用"))
            if m % 2 == 1:
                out.append(("major-decision-meeting", wd(date(y, m, 26)), "“三重一大”事项集体决策会议"))
            if m % 3 == 0:
                out.append(("party-lecture", wd(date(y, m, 25)), "书记讲党课"))
                out.append(("training-held", wd(date(y, m - 1, 20)), "会员创作培训"))
    d = date(2025, 1, 6)
    while d <= HISTORY_TO:
        out.append(("post-publish", wd(d), "公众号文章"))
        d += timedelta(days=14)
    events = []
    for typ, day, title in sorted(out, key=lambda e: (e[1], e[0])):
        rec = day if typ == "document-received" else day - timedelta(days=14)
        if rec >= TODAY:
            continue  # not recorded yet
        events.append((typ, day, title, minute_ts(rec, 10, 0)))
    return events


def build_template() -> Template:
    """Plan the template branch the way Materializer.occurrences does, over the whole history."""
    rs = pack_ruleset()
    cal = WorkCalendar()
    cal.ensure(2024, 2028)
    events = event_calendar(cal)
    planner_events = [Event(j, typ, d, title, datetime.fromtimestamp(rec, TZ).date())
                      for j, (typ, d, title, rec) in enumerate(events, 1)]
    planner = Planner(cal, rs.groups)
    start_ts = minute_ts(HISTORY_FROM, 0, 1)  # the service's first tick
    occs: list[TOcc] = []
    for rule in rs.rules:
        if not rule.enabled:
            continue
        start = effective_start(rule, IMPORTED.date())
        last = TODAY + max(timedelta(days=_lead_days(rule)), HORIZON)
        for o in planner.plan([dataclasses.replace(rule, start=start)], start, last, planner_events):
            active_from = min([o.opens, *o.reminder_days, o.due - HORIZON])
            if active_from > TODAY and o.event_id is None:
                continue  # the materializer has not created it yet
            if o.event_id is not None:
                j = int(o.event_id)
                prefix = f"{o.rule}@event-{j}"
                key = f"{o.rule}@event-{{}}" + o.key[len(prefix):]
                created = events[j - 1][3] + 60  # the tick after the event was recorded
            else:
                j, key = None, o.key
                created = max(minute_ts(active_from, 0, 1), start_ts)
            members = rs.members(o.owner) if o.owner else ()
            t = TOcc(rule, key, j, o.period, o.opens, o.due, o.quota, o.owner, o.provisional, members,
                     [(d.isoformat(), epoch(d, rule.at, TZ)) for d in o.reminder_days], created)
            if o.due < TODAY:
                slot = first_overdue_day(o.due, cal)
                while slot <= TODAY:
                    t.overdue.append((slot, slot.isoformat(), epoch(slot, rule.at, TZ)))
                    if rule.repeat_overdue is None:
                        break
                    nxt = rule.repeat_overdue.apply(slot.toordinal(), cal)
                    if not cal.is_workday_ordinal(nxt):
                        nxt = cal.next_workday(nxt)
                    if nxt <= slot.toordinal():
                        break
                    slot = date.fromordinal(nxt)
                esc = escalation_day(o.due, rule, cal)
                if esc is not None and esc <= TODAY:
                    t.esc = (esc, esc.isoformat(), epoch(esc, rule.at, TZ))
                    t.esc_targets = tuple(dict.fromkeys(m for ref in (rule.escalate_to or ("secretary",))
                                                        for m in rs.members(ref)))
            occs.append(t)
    digest_days = []
    d = HISTORY_FROM
    while d < TODAY:
        if cal.is_workday(d):
            digest_days.append((d.isoformat(), epoch(d, "08:30", TZ)))
        d += timedelta(days=1)
    return Template(rs, cal, events, occs, digest_days)


# --- one branch's history ------------------------------------------------------------------------
EVENT_COLS = ("id", "org", "type", "date", "title", "recorded_at")
OCC_COLS = ("org", "key", "rule_id", "title", "period", "owner", "opens", "due", "quota", "provisional", "event_id",
            "state", "done_count", "closed_at", "created_at")
COMPLETION_COLS = ("org", "occurrence_key", "by", "at", "note", "evidence")
WAIVER_COLS = ("org", "occurrence_key", "reason", "by", "at")
DELIVERY_COLS = ("id", "org", "key", "occurrence_key", "kind", "slot", "recipient", "due_at", "status", "attempts",
                 "lease_owner", "channel", "last_error", "sent_at", "created_at")
ATTEMPT_COLS = ("delivery_id", "worker", "started_at", "finished_at", "channel", "outcome", "error", "detail")


@dataclass
class Rows:
    events: list[tuple] = field(default_factory=list)
    occurrences: list[tuple] = field(default_factory=list)
    completions: list[tuple] = field(default_factory=list)
    waivers: list[tuple] = field(default_factory=list)
    deliveries: list[tuple] = field(default_factory=list)
    attempts: list[tuple] = field(default_factory=list)


class History:
    """Writes what the service would have recorded for a branch over the two years."""

    def __init__(self, tpl: Template, st: Stored):
        self.tpl, self.st = tpl, st
        self.next_delivery = 1
        self.now_ts = int(NOW.timestamp())
        self.yesterday = TODAY - timedelta(days=1)
        self.counts = {"open": 0, "overdue": 0, "done": 0, "waived": 0}

    def _send(self, rows: Rows, rng: random.Random, org: str, occ_key: str | None, kind: str, slot: str, pid: str,
              ts: int, created: int, closed_ts: int | None, closed_reason: str) -> None:
        did = self.next_delivery
        self.next_delivery += 1
        at = self.st.at
        key = f"{org}|{occ_key or '-'}|{kind}|{slot}|{pid}"
        if ts > self.now_ts:
            rows.deliveries.append((did, org, key, occ_key, kind, slot, pid, ts, "pending", 0, None, None, None, None,
                                    at(created)))
            return
        started = max(ts, created) + rng.randint(1, 40)
        worker = WORKERS[rng.randrange(len(WORKERS))]
        if closed_ts is not None and ts >= closed_ts:
            rows.attempts.append((did, worker, at(started), at(started), None, "skipped", closed_reason, None))
            rows.deliveries.append((did, org, key, occ_key, kind, slot, pid, started + 60, "skipped", 1, None, None,
                                    closed_reason, None, at(created)))
            return
        r = rng.random()
        if r < 0.002:  # the address was refused: given up
            rows.attempts.append((did, worker, at(started), at(started + 2), "email", "dead", DEAD, None))
            rows.deliveries.append((did, org, key, occ_key, kind, slot, pid, started + 2, "dead", 1, None, None, DEAD,
                                    None, at(created)))
            return
        n = 1
        if r < 0.03:  # a transient failure, sent on the retry a minute later
            rows.attempts.append((did, worker, at(started), at(started + 30), "email", "failed", FAILED, None))
            started += 60 + rng.randint(0, 30)
            n = 2
        sent = started + 1
        rows.attempts.append((did, worker, at(started), at(sent), "email", "sent", None, None))
        rows.deliveries.append((did, org, key, occ_key, kind, slot, pid, started + 60, "sent", n, None, "email", None,
                                at(sent), at(created)))

    def branch(self, i: int, rows: Rows) -> None:
        tpl, st, cal = self.tpl, self.st, self.tpl.cal
        org = branch_name(i)
        rng = random.Random(SEED * 1000 + i)
        base = i * len(tpl.events)
        for j, (typ, d, title, rec) in enumerate(tpl.events, 1):
            rows.events.append((base + j, org, typ, st.day(d), title, st.at(rec)))
        today, yesterday = TODAY, self.yesterday
        for o in tpl.occs:
            key = o.key if o.ev is None else o.key.format(base + o.ev)
            created_day = datetime.fromtimestamp(o.created_ts, TZ).date()
            # what became of it
            r = rng.random()
            close_day = None
            if o.due < today:
                if (today - o.due).days > 60:
                    fate = "ontime" if r < 0.92 else "late" if r < 0.97 else "waived"
                else:
                    fate = "ontime" if r < 0.80 else "late" if r < 0.88 else "waived" if r < 0.90 else "open"
            else:
                fate = "early" if o.opens < yesterday and created_day < yesterday and r < 0.2 else "open"
            if fate == "ontime":
                lo = max(o.opens, o.due - timedelta(days=10), created_day)
                close_day = lo + timedelta(days=rng.randint(0, max((o.due - lo).days, 0)))
            elif fate in ("late", "waived"):
                close_day = date.fromordinal(cal.add_workdays(o.due.toordinal(), rng.randint(1, 8 if fate == "late" else 5)))
                if close_day >= today:
                    fate, close_day = "open", None
            elif fate == "early":
                lo = max(o.opens, created_day)
                close_day = lo + timedelta(days=rng.randint(0, (yesterday - lo).days))
            closed_ts = minute_ts(close_day, rng.randint(9, 17), rng.randint(0, 59)) if close_day else None
            if closed_ts is not None and closed_ts < o.created_ts:
                closed_ts = o.created_ts + 3600
            by = o.members[0] if o.members else None
            done_count, state, reason = 0, "open", ""
            if fate in ("ontime", "late", "early"):
                state, done_count, reason = "done", o.quota, "事项已完成"
                for k in range(o.quota):
                    at = max(closed_ts - (o.quota - 1 - k) * rng.randint(3, 30) * 86400, o.created_ts + 60)
                    rows.completions.append((org, key, by if rng.random() < 0.9 else None, st.at(at),
                                             rng.choice(NOTES) if rng.random() < 0.4 else None,
                                             f"会议记录 {close_day:%Y-%m}-{k + 1}" if rng.random() < 0.2 else None))
            elif fate == "waived":
                state, reason = "waived", "事项已免办"
                rows.waivers.append((org, key, rng.choice(WAIVE_REASONS), "secretary", st.at(closed_ts)))
            elif o.quota > 1 and o.opens < yesterday and rng.random() < 0.5:
                done_count = rng.randint(1, o.quota - 1)
                for _k in range(done_count):
                    day = o.opens + timedelta(days=rng.randint(0, (yesterday - o.opens).days))
                    rows.completions.append((org, key, by, st.at(max(minute_ts(day, 15, 0), o.created_ts + 60)),
                                             None, None))
            if state == "open":
                self.counts["overdue" if o.due < today else "open"] += 1
            else:
                self.counts[state] += 1
            rows.occurrences.append((org, key, o.rule.id, o.rule.title, o.period if o.ev is None else f"event-{base + o.ev}",
                                     o.owner, st.day(o.opens), st.day(o.due), o.quota, st.flag(o.provisional),
                                     base + o.ev if o.ev is not None else None, state, done_count, st.at(closed_ts),
                                     st.at(o.created_ts)))
            # what was sent about it
            for slot, ts in o.reminders:
                for pid in o.members:
                    self._send(rows, rng, org, key, "reminder", slot, pid, ts, o.created_ts, closed_ts, reason)
            if fate in ("late", "waived", "open"):
                end = close_day or today
                for day, slot, ts in o.overdue:
                    if day > end:
                        break
                    created = minute_ts(day, 0, 1)
                    for pid in o.members:
                        self._send(rows, rng, org, key, "overdue", slot, pid, ts, created, closed_ts, reason)
                if o.esc is not None and o.esc[0] <= end:
                    day, slot, ts = o.esc
                    for pid in o.esc_targets:
                        self._send(rows, rng, org, key, "escalation", slot, pid, ts, minute_ts(day, 0, 1), closed_ts,
                                   reason)
        for slot, ts in tpl.digest_days:
            self._send(rows, rng, org, None, "digest", slot, "secretary", ts, ts, None, "")


# --- loading the district ------------------------------------------------------------------------
def load_district(db: Db, tpl: Template, n_branches: int) -> dict[str, Any]:
    engine = db.engine
    dialect = engine.dialect.name
    st = Stored(engine)
    t0 = time.perf_counter()
    # the template branch as `duban --org branch-001 rules import` would store it
    with session_scope(engine) as s:
        import_ruleset(s, tpl.rs, now=IMPORTED, origin=str(PACK.name), org=branch_name(0))
    # its people, groups, rules and audit rows for every other branch
    with engine.begin() as c:
        people = c.execute(select(PersonRow.__table__)).mappings().all()
        groups = c.execute(select(GroupRow.__table__)).mappings().all()
        rules = c.execute(select(RuleRow.__table__)).mappings().all()
        changes = c.execute(select(RuleChangeRow.__table__)).mappings().all()
        for i in range(1, n_branches):
            org = branch_name(i)
            c.execute(insert(PersonRow.__table__), [
                {**p, "org": org, "email": f"{p['id']}@{org}.example.cn"} for p in people])
            c.execute(insert(GroupRow.__table__), [{**g, "org": org} for g in groups])
            c.execute(insert(RuleRow.__table__), [{**r, "org": org} for r in rules])
            c.execute(insert(RuleChangeRow.__table__), [
                {k: v for k, v in ch.items() if k != "id"} | {"org": org} for ch in changes])
    t_setup = time.perf_counter() - t0
    # the history, branch by branch
    hist = History(tpl, st)
    totals = {k: 0 for k in ("events", "occurrences", "completions", "waivers", "deliveries", "attempts")}
    t_gen = t_ins = 0.0
    raw = engine.raw_connection()
    try:
        for lo in range(0, n_branches, CHUNK):
            step(f"  branches {lo + 1}–{min(lo + CHUNK, n_branches)} of {n_branches}")
            t1 = time.perf_counter()
            rows = Rows()
            for i in range(lo, min(lo + CHUNK, n_branches)):
                hist.branch(i, rows)
            t2 = time.perf_counter()
            bulk_insert(raw, dialect, "events", EVENT_COLS, rows.events)
            bulk_insert(raw, dialect, "occurrences", OCC_COLS, rows.occurrences)
            bulk_insert(raw, dialect, "completions", COMPLETION_COLS, rows.completions)
            bulk_insert(raw, dialect, "waivers", WAIVER_COLS, rows.waivers)
            bulk_insert(raw, dialect, "deliveries", DELIVERY_COLS, rows.deliveries)
            bulk_insert(raw, dialect, "delivery_attempts", ATTEMPT_COLS, rows.attempts)
            raw.commit()
            t_gen += t2 - t1
            t_ins += time.perf_counter() - t2
            for k in totals:
                totals[k] += len(getattr(rows, k))
        if dialect == "postgresql":
            cur = raw.cursor()
            for table in ("events", "deliveries"):  # ids given explicitly: move the sequences past them
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            raw.commit()
            cur.execute("ANALYZE")
            raw.commit()
            cur.close()
    finally:
        raw.close()
    with engine.connect() as c:
        by_status = dict(c.execute(select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)).all())
    return {"setup_s": t_setup, "gen_s": t_gen, "insert_s": t_ins, "totals": totals, "fates": hist.counts,
            "by_status": by_status, "load_s": time.perf_counter() - t0}


# --- measurements --------------------------------------------------------------------------------
@dataclass
class Figures:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # figure, value, target, verdict
    missed: list[str] = field(default_factory=list)

    def add(self, name: str, value: str, target: str = "—", ok: bool | None = None) -> None:
        verdict = "" if ok is None else ("ok" if ok else "MISSED")
        if ok is False:
            self.missed.append(name)
        self.rows.append((name, value, target, verdict))


def run_cli(args: list[str], env: dict[str, str], cwd: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(duban_exe() + args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"duban {' '.join(args)} failed ({p.returncode}):\n{p.stderr.decode(errors='replace')}")
    return dt


def pick_due(engine, n_branches: int) -> list[tuple[int, int]]:
    """N_DUE pending reminders of open occurrences, spread over the branches (distinct occurrence and
    person within a branch, so none merges into another): [(delivery id, its due_at)]."""
    q = (select(DeliveryRow.id, DeliveryRow.org, DeliveryRow.occurrence_key, DeliveryRow.recipient, DeliveryRow.due_at)
         .join(OccurrenceRow, (OccurrenceRow.key == DeliveryRow.occurrence_key) & (OccurrenceRow.org == DeliveryRow.org))
         .where(DeliveryRow.status == "pending", DeliveryRow.kind == "reminder", OccurrenceRow.state == "open",
                OccurrenceRow.due >= TODAY)
         .order_by(DeliveryRow.due_at, DeliveryRow.id))
    by_org: dict[str, list[tuple]] = {}
    with engine.connect() as c:
        for did, org, occ, rcpt, due_at in c.execute(q):
            lst = by_org.setdefault(org, [])
            if len(lst) < 8 and all(o != occ and r != rcpt for _d, o, r, _t in lst):
                lst.append((did, occ, rcpt, due_at))
    orgs = sorted(by_org)
    step_ = max(1, len(orgs) // N_DUE)
    chosen: list[tuple[int, int]] = []
    round_ = 0
    while len(chosen) < N_DUE and round_ < 8:
        for org in orgs[::step_]:
            if round_ < len(by_org[org]) and len(chosen) < N_DUE:
                did, _occ, _r, due_at = by_org[org][round_]
                chosen.append((did, due_at))
        round_ += 1
    return chosen


def make_due(engine, chosen: list[tuple[int, int]], now_ts: int) -> None:
    with engine.begin() as c:
        c.execute(delete(AttemptRow).where(AttemptRow.delivery_id.in_([d for d, _ in chosen])))
        for k, (did, _due) in enumerate(chosen):
            c.execute(update(DeliveryRow).where(DeliveryRow.id == did).values(
                status="pending", due_at=now_ts - 60 * (k + 1), attempts=0, sent_at=None, channel=None, lease_owner=None,
                last_error=None))


def restore_due(engine, chosen: list[tuple[int, int]]) -> None:
    with engine.begin() as c:
        c.execute(delete(AttemptRow).where(AttemptRow.delivery_id.in_([d for d, _ in chosen])))
        for did, due_at in chosen:
            c.execute(update(DeliveryRow).where(DeliveryRow.id == did).values(
                status="pending", due_at=due_at, attempts=0, sent_at=None, channel=None, lease_owner=None,
                last_error=None))


def bench_db(kind: str, tmp: str, tpl: Template, opts: argparse.Namespace, pg_base: str | None) -> dict[str, Any]:
    n = opts.branches
    label = "SQLite" if kind == "sqlite" else "PostgreSQL"
    figs = Figures()
    step(f"{label}: migrating a new database")
    db = Db(kind, tmp, "district", pg_base)
    engine = db.engine
    try:
        step(f"{label}: loading {n} branches")
        info = load_district(db, tpl, n)
        tot = info["totals"]
        figs.add("load: rules, people (import + copies)", fmt_s(info["setup_s"]))
        figs.add("load: history generated / inserted", f"{fmt_s(info['gen_s'])} / {fmt_s(info['insert_s'])}")
        queries = QueryCount(engine)
        settings = load_settings(environ={"DUBAN_DATABASE_URL": db.url, "DUBAN_TIMEZONE": TZ_NAME,
                                          "DUBAN_CONSOLE_FILE": os.path.join(tmp, f"console-{kind}.txt")})
        channels = configured_channels(settings)
        now_ts = int(NOW.timestamp())

        # 1. the daily re-plan of the whole district (sets the marker the steady tick relies on)
        step(f"{label}: Materializer.run(force=True) over {n} branches")

        def replan():
            with session_scope(engine) as s:
                return Materializer(s, NOW, TZ, settings.digest_to).run(force=True)

        q0 = queries.n
        t_replan, planned = timed(replan)
        q_replan = queries.n - q0
        figs.add(f"re-plan, all {n} branches (Materializer force)", fmt_s(t_replan) + f"  ({q_replan:,} statements)")
        figs.add("  new rows it made (0 = data set consistent)", f"{planned.occurrences} occ., {planned.deliveries} deliv.")

        # 2. ticks
        step(f"{label}: ticks")
        first = tick(engine, settings, NOW, channels, worker="bench")  # anything the re-plan made due
        repeats = 10 if opts.quick else 30
        times, counts = [], []
        for _ in range(repeats):
            q0 = queries.n
            dt, res = timed(lambda: tick(engine, settings, NOW, channels, worker="bench"))
            counts.append(queries.n - q0)
            assert not res.planned.occurrences and not res.planned.deliveries and not res.dispatched.sent, res
            times.append(dt)
        t_steady = statistics.median(times)
        figs.add("tick, steady state (median)", f"{fmt_s(t_steady)}  (best {fmt_s(min(times))}, {counts[-1]:,} statements)",
                 f"≤ {TICK_TARGET_MS:.0f} ms", t_steady * 1000 <= TICK_TARGET_MS)
        if first.dispatched.sent:
            figs.add("  (first tick after the re-plan sent)", f"{sum(first.dispatched.sent.values())} messages")

        chosen = pick_due(engine, n)
        due_times, due_sent, q_due = [], 0, 0
        for _ in range(2 if opts.quick else 3):
            make_due(engine, chosen, now_ts)
            q0 = queries.n
            dt, res = timed(lambda: tick(engine, settings, NOW, channels, worker="bench"))
            q_due = queries.n - q0
            due_times.append(dt)
            due_sent = sum(res.dispatched.sent.values())
        restore_due(engine, chosen)
        t_due = statistics.median(due_times)
        figs.add(f"tick, {len(chosen)} due → console (median)",
                 f"{fmt_s(t_due)}  ({due_sent} sent, {t_due / max(due_sent, 1) * 1000:.1f} ms each, {q_due:,} statements)")

        def changed_tick():
            with session_scope(engine) as s:
                bump_config(s)  # what `duban --org X event add …` (or rules import) leaves behind
            return tick(engine, settings, NOW, channels, worker="bench")

        # meanwhile another process records a completion (`duban done`: a one-row write): how long it waits
        done: dict[str, Any] = {}
        worker_thread = threading.Thread(target=lambda: done.update(t=timed(changed_tick)[0]))
        worker_thread.start()
        time.sleep(1.0)
        writer = make_engine(db.url)
        t0 = time.perf_counter()
        try:
            with session_scope(writer) as s:
                s.execute(update(OccurrenceRow).where(OccurrenceRow.org == branch_name(n - 1), OccurrenceRow.state == "open")
                          .values(done_count=OccurrenceRow.done_count))
            wait = f"{fmt_s(time.perf_counter() - t0)}"
        except OperationalError as e:
            wait = f"failed after {fmt_s(time.perf_counter() - t0)}: {str(e.orig).splitlines()[0][:40]}"
        finally:
            writer.dispose()
        worker_thread.join()
        figs.add("tick after a change in one branch", fmt_s(done["t"]) + "  (re-plans every branch)")
        figs.add("  a one-row write meanwhile (duban done) waited", wait)

        # 3. digests
        step(f"{label}: digests")
        orgs = [branch_name(i * n // N_DIGEST_BRANCHES) for i in range(min(N_DIGEST_BRANCHES, n))]

        def digest(org: str):
            with session_scope(engine) as s:
                return render_digest(s, DIGEST_NOW, "secretary", org=org)

        digest(orgs[0])  # warm: imports, template compilation
        d_times, d_queries, msg = [], 0, None
        for org in orgs:
            q0 = queries.n
            dt, msg = timed(lambda org=org: digest(org))
            d_queries = queries.n - q0
            d_times.append(dt)
        t_digest = statistics.median(d_times)
        figs.add(f"digest, one branch (median of {len(orgs)})",
                 f"{fmt_s(t_digest)}  (max {fmt_s(max(d_times))}, {d_queries} statements, {len(msg.text):,} chars)",
                 f"≤ {DIGEST_TARGET_MS:.0f} ms", t_digest * 1000 <= DIGEST_TARGET_MS)

        # 4. the ledger of one branch
        step(f"{label}: ledger exports")
        ledger_org = branch_name(n // 2)
        out_dir = os.path.join(tmp, f"ledger-{kind}")
        os.makedirs(out_dir, exist_ok=True)
        exports = {
            "xlsx": ("ledger.xlsx", LedgerFilter(org=ledger_org), []),
            "csv": ("ledger.csv", LedgerFilter(org=ledger_org), []),
            "xlsx --from/--to 2 yrs": ("range.xlsx", LedgerFilter(HISTORY_FROM, HISTORY_TO, org=ledger_org),
                                       ["--from", HISTORY_FROM.isoformat(), "--to", HISTORY_TO.isoformat()]),
        }
        ledger_fns: dict[str, Callable[[], Any]] = {}
        t_ledger: dict[str, float] = {}
        for name, (fname, flt, cli_extra) in exports.items():
            path = os.path.join(out_dir, fname)

            def export(path=path, flt=flt):
                with session_scope(engine) as s:
                    return export_ledger(s, path, now=NOW, tz=TZ, flt=flt)

            ledger_fns[name] = export
            best, result = float("inf"), None
            for _ in range(1 if opts.quick else 3):
                dt, result = timed(export)
                best = min(best, dt)
            t_ledger[name] = best
            size = os.path.getsize(path) / 1e6
            figs.add(f"ledger {name}, one branch, in process", f"{fmt_s(best)}  ({result.occurrences} occ., "
                     f"{result.attempts:,} attempts, {size:.1f} MB)", f"≤ {EXPORT_TARGET_S:.0f} s", best <= EXPORT_TARGET_S)
            if not opts.no_cli:
                env = clean_env(DUBAN_DATABASE_URL=db.url, DUBAN_TIMEZONE=TZ_NAME)
                args = ["--org", ledger_org, "ledger", "export", "--out", path, "--now", NOW_TEXT, *cli_extra]
                t_cli = min(run_cli(args, env, out_dir) for _ in range(1 if opts.quick else 3))
                figs.add(f"  duban ledger export ({name.split()[0]}{' --from/--to' if cli_extra else ''})", fmt_s(t_cli),
                         f"≤ {EXPORT_TARGET_S:.0f} s", t_cli <= EXPORT_TARGET_S)
        figs.add(f"  all {n} ledgers one after another (extrapolated)", fmt_s(t_ledger["xlsx"] * n))
        t_cli_version = None
        if not opts.no_cli:
            t_cli_version = min(run_cli(["--version"], clean_env(), out_dir) for _ in range(3))
            figs.add("  (duban --version: start-up alone)", fmt_s(t_cli_version))

        # profiles
        prof = opts.profile
        if prof or t_steady * 1000 > TICK_TARGET_MS:
            profile(f"{label}: steady tick", lambda: tick(engine, settings, NOW, channels, worker="bench"))
        if prof:
            profile(f"{label}: tick, {len(chosen)} due", lambda: tick(engine, settings, NOW, channels, worker="bench"),
                    setup=lambda: make_due(engine, chosen, now_ts))
            restore_due(engine, chosen)
            profile(f"{label}: re-plan of the district", replan)
        if prof or t_digest * 1000 > DIGEST_TARGET_MS:
            profile(f"{label}: digest of {orgs[len(orgs) // 2]}", lambda: digest(orgs[len(orgs) // 2]))
        if prof or t_ledger["xlsx"] > EXPORT_TARGET_S:
            profile(f"{label}: ledger xlsx of {ledger_org}", ledger_fns["xlsx"])
        return {"label": label, "figs": figs, "info": info, "size": db.size(), "totals": tot}
    finally:
        db.drop()


# --- main ----------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_BRANCHES} branches, fewer repeats, no CLI runs")
    ap.add_argument("--branches", type=int, help=f"how many branches (default {BRANCHES}, quick {QUICK_BRANCHES})")
    ap.add_argument("--profile", action="store_true", help="profile every figure, not only the missed ones")
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument("--no-cli", action="store_true", help="skip the command-line ledger exports")
    ap.add_argument("--pg", default=os.environ.get("DUBAN_TEST_POSTGRES_URL") or PG_DEFAULT, help="PostgreSQL URL")
    opts = ap.parse_args()
    opts.branches = opts.branches or (QUICK_BRANCHES if opts.quick else BRANCHES)
    if opts.quick:
        opts.no_cli = True

    load_start = f"{os.getloadavg()[0]:.1f}"
    step("planning the template branch")
    t_tpl, tpl = timed(build_template)
    kinds = ["sqlite"]
    pg_skip = None
    if not opts.no_pg:
        pg_skip = pg_available(opts.pg)
        if pg_skip is None:
            kinds.append("postgresql")
    n = opts.branches
    pg_text = f"PostgreSQL {pg_version(opts.pg)}" if "postgresql" in kinds else f"PostgreSQL skipped ({pg_skip or '--no-pg'})"
    tmp = tempfile.mkdtemp(prefix="duban-district-")
    results = []
    try:
        for kind in kinds:
            r = bench_db(kind, tmp, tpl, opts, opts.pg if kind == "postgresql" else None)
            results.append(r)
            if len(results) == 1:  # the data set (the same on every database)
                info = r["info"]
                print(f"duban district benchmark — {n} branches × {len(tpl.rs.rules)} rules ({PACK.name}), "
                      f"history {HISTORY_FROM} … {HISTORY_TO}, now {NOW_TEXT} {TZ_NAME}")
                print(f"per branch: {len(tpl.occs)} occurrences, {len(tpl.events)} events, {len(tpl.digest_days)} "
                      f"digests; template planned in {fmt_s(t_tpl)}")
                print("rows: " + ", ".join(f"{k} {v:,}" for k, v in r["totals"].items()))
                print("occurrences: " + ", ".join(f"{k} {v:,}" for k, v in info["fates"].items())
                      + "; deliveries: " + ", ".join(f"{k} {v:,}" for k, v in sorted(info["by_status"].items())))
            print_table(r)
    finally:
        for db in Db.live:
            try:
                db.drop()
            except Exception as e:  # noqa: BLE001 - cleaning up: report, go on
                print(f"could not drop {db.url}: {e}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{platform.python_implementation()} {platform.python_version()}, SQLite {sqlite3.sqlite_version} "
          f"(temp dir on {fs_type(tempfile.gettempdir())}), {pg_text}; load average at start {load_start}, "
          f"at end {os.getloadavg()[0]:.1f} (other processes on the machine inflate every figure)")
    missed = [f"{r['label']}: {m}" for r in results for m in r["figs"].missed]
    if missed:
        print("missed: " + "; ".join(missed) + "  (profiles below)")
    for p in PROFILES:
        print(p)


def print_table(r: dict[str, Any]) -> None:
    print(f"\n{r['label']} (database {r['size']}, loaded in {fmt_s(r['info']['load_s'])})")
    rows = r["figs"].rows
    heads = ("figure", "value", "target", "")
    widths = [max(len(h), *(len(x[i]) for x in rows)) for i, h in enumerate(heads)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    print(line(heads))
    print(line(["-" * w for w in widths]))
    for x in rows:
        print(line(x))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
