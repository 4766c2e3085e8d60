"""Fault injection: the rows of the fault table in /work/shared/reliability.md not covered elsewhere.

Invariants: **L** nothing lost (every expected reminder ends sent, or dead with an alert); **D** bounded
duplicates (one per delivery, plus at most one per ambiguous attempt — an attempt row left `sending`
because its process could not record the end); **E** never early; **V** every failure visible.
Time is always injected with `--now`; the tests wait only for effects of child processes.

| fault scenario                                   | where it is tested                                             |
|--------------------------------------------------|----------------------------------------------------------------|
| kill -9 between send and mark (once)             | test_delivery_guarantees::test_a_crash_between_send_and_mark…  |
| kill -9 at random points of dispatch, many times | here: test_kill_9_at_random_points_of_dispatch                 |
| SMTP down for an hour, then back                 | here: test_smtp_down_for_an_hour_then_back (backoff, L, D),    |
|                                                  | test_smtp_down_the_owner_is_told_through_the_wecom_robot,      |
|                                                  | test_smtp_down_for_an_hour_is_reported_through_the_wecom_app… |
| SMTP 451 retried / 550 dead / refused recipient  | test_core_loop::test_transient_failure_…, ::test_refused_…     |
| SMTP 421, drop after DATA                        | here: test_smtp_421_on_data_is_retried_and_an_error_after_…    |
| WeCom 45009, 150 messages to one robot           | test_wecom_channels::test_robot_rate_limit_…, ::…_paces_150_…  |
| WeCom invalid key / HTTP 500 / timeout           | test_wecom_channels::test_robot_invalid_key_…, ::…_http_500_…, |
|                                                  | ::test_robot_timeout_after_acceptance_repeats_at_most_once     |
| several services on one PostgreSQL, one killed   | test_multi_instance::test_three_services_share_the_work_…      |
| 30 days of downtime                              | test_core_loop::test_thirty_days_down_no_flood                 |
| clock jumps forward a day, backward an hour      | here: test_clock_jumps_forward_a_day_then_back_an_hour         |
| malformed rule file (refused whole)              | test_cli_rules::test_bad_file_is_refused_whole_…, and here:    |
|                                                  | test_malformed_rule_file_leaves_the_last_good_rules_working    |
| calendar data missing for next year              | test_doctor (warning), test_redate (digest), and here:         |
|                                                  | test_missing_calendar_for_next_year_is_flagged_provisional     |
| schema upgrade                                   | test_operations::test_upgrading_a_database_made_by_the_first…  |
| database locked during a tick                    | here: test_a_tick_waits_for_a_write_lock_and_then_sends_…,     |
|                                                  | test_a_tick_that_cannot_commit_because_the_database_is_locked… |
| disk full during a tick                          | here: test_disk_full_during_a_tick_marks_nothing_unsent…       |
| PostgreSQL restarted during dispatch             | here: test_postgresql_restarted_during_dispatch                |
| canary secrets                                   | test_secrets                                                   |
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import random
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from conftest import run_process

TZ = ZoneInfo("Asia/Shanghai")
REMINDER = "【督办提醒】"
# read at import: the `workdir` fixture clears DUBAN_* settings for each test
PG_BASE_URL = os.environ.get("DUBAN_TEST_POSTGRES_URL")


# --- helpers -----------------------------------------------------------------------------------
def team_rules(n: int, remind: str = "[-1d]") -> str:
    """One for_each rule over `n` people with email addresses: 月度报告, due on the 15th."""
    people = "\n".join(f"  p{i}: {{name: 干部{i}, email: p{i}@example.cn}}" for i in range(n))
    members = ", ".join(f"p{i}" for i in range(n))
    return (f"people:\n  secretary: {{name: 王书记}}\n{people}\ngroups:\n  team: [{members}]\n"
            "rules:\n  - id: monthly-report\n    title: 月度报告\n    every: month\n    due: {day: 15}\n"
            f"    remind: {remind}\n    for_each: team\n")


def env_for(url: str, smtp=None, **extra: str) -> dict[str, str]:
    return {"DUBAN_DATABASE_URL": url, **(smtp.env() if smtp else {}), **extra}


def setup_db(workdir, env: dict[str, str], rules_text: str, now: str = "2026-12-01T09:00", duban=None) -> None:
    """`duban init` and `duban rules import`: in this process with the `duban` fixture (faster), else in
    child processes (so that this process keeps no connection to the database)."""
    (workdir / "rules.yaml").write_text(rules_text, encoding="utf-8")
    for args in (["init", "--no-pack"], ["rules", "import", "rules.yaml", "--now", now]):
        r = duban(*args, url=env["DUBAN_DATABASE_URL"]) if duban else run_process(*args, env=env, cwd=workdir)
        assert r.code == 0, r.err


def start_cli(args: list[str], env: dict[str, str], cwd, *, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
              argv0: list[str] | None = None, preexec_fn=None) -> subprocess.Popen:
    """`duban ARGS` as a child process (not waited for)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
    full_env.update(env)
    cmd = [sys.executable, *(argv0 or ["-m", "scheduler.cli"]), *args]
    return subprocess.Popen(cmd, env=full_env, cwd=cwd, stdout=stdout, stderr=stderr, text=True,
                            preexec_fn=preexec_fn)


def tick_process(now: str, env: dict[str, str], cwd, timeout: float = 60):
    """One `duban tick --now NOW` in a child; a hang fails the test instead of blocking it."""
    p = start_cli(["tick", "--now", now], env, cwd)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError(f"duban tick --now {now} did not finish within {timeout} s") from None
    return p.returncode, out, err


def wait_for(predicate, timeout: float = 30.0, what: str = "an effect") -> None:
    """Wait for an effect of a running process (never for a product deadline)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def query(url: str, sql: str, **params) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def reminders_to(smtp) -> Counter:
    """address → number of 督办提醒 mails the loopback server accepted for it."""
    return Counter(r for m in smtp.messages if m.subject.startswith(REMINDER) for r in m.recipients)


def unfinished_attempts(url: str) -> Counter:
    """recipient → attempts left `sending` (their process never recorded how they ended): ambiguous."""
    return Counter(r for (r,) in query(url, "SELECT d.recipient FROM delivery_attempts a JOIN deliveries d "
                                            "ON d.id = a.delivery_id WHERE a.outcome = 'sending'"))


def statuses(url: str, slot: str = "2026-12-14", kind: str = "reminder") -> dict[str, str]:
    """recipient → status of the `kind` deliveries of day `slot` (the December reminders by default)."""
    return dict(query(url, "SELECT recipient, status FROM deliveries WHERE kind = :k AND slot = :s",
                      k=kind, s=slot))


def message_id_hash(m) -> str:
    return re.search(r"<duban\.([0-9a-f]+)@", m.message["Message-ID"]).group(1)


def keys_by_message_id(url: str) -> dict[str, tuple[str, str, str]]:
    """Message-ID hash → (delivery key, kind, slot): the email channel derives the id from the key."""
    return {hashlib.sha1(k.encode()).hexdigest()[:20]: (k, kind, slot)
            for k, kind, slot in query(url, "SELECT key, kind, slot FROM deliveries")}


def on_data(smtp, after_store) -> None:
    """Run `await after_store(count)` after the loopback server stored a message, before its 250 reply."""
    handler = smtp.handler
    original = type(handler).handle_DATA

    async def handle_DATA(server, session, envelope):
        reply = await original(handler, server, session, envelope)
        await after_store(len(handler.messages))
        return reply

    handler.handle_DATA = handle_DATA  # aiosmtpd looks the hook up on the handler object per connection


class HoldAt:
    """The loopback SMTP server stores the k-th message, then holds its 250 reply until `release()`:
    the sender is between send and mark."""

    def __init__(self, smtp, k: int):
        self.reached, self.released = threading.Event(), threading.Event()

        async def after_store(count: int) -> None:
            if count == k:
                self.reached.set()
                while not self.released.is_set():
                    await asyncio.sleep(0.02)

        on_data(smtp, after_store)

    def release(self) -> None:
        self.released.set()


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def dump(url: str) -> dict[str, list[str]]:
    """Every row of every table, order-independent: to show that nothing changed."""
    engine = sa.create_engine(url)
    try:
        out = {}
        with engine.connect() as c:
            for table in sorted(sa.inspect(engine).get_table_names()):
                out[table] = sorted(repr(tuple(r)) for r in c.execute(sa.text(f'SELECT * FROM "{table}"')))
        return out
    finally:
        engine.dispose()


# --- 1. kill -9 at random points of dispatch, many times -----------------------------------------
def test_kill_9_at_random_points_of_dispatch(db_url, duban, smtp, workdir):
    """L: every one of 30 people gets the reminder although 12 ticks in a row are killed with SIGKILL at
    random points (while planning, claiming, sending or marking). D: each delivery is marked sent once,
    and a person receives at most one extra copy per attempt a kill left unfinished (`sending`), so the
    duplicates are bounded by the kills that hit a message in flight; a copy has the same Message-ID."""
    n, rounds = 30, 12
    env = env_for(db_url, smtp)
    setup_db(workdir, env, team_rules(n), duban=duban)

    async def slow(_count: int) -> None:  # a slow server widens the window between send and mark
        await asyncio.sleep(0.03)

    on_data(smtp, slow)
    rng = random.Random(20261214)
    start = datetime(2026, 12, 14, 9, 5)
    kills = in_flight_kills = 0
    ambiguous = 0
    for rnd in range(rounds):
        now = (start + timedelta(minutes=2 * rnd)).isoformat(timespec="minutes")  # leases (60 s) lapse
        before = len(smtp.messages)
        child = start_cli(["tick", "--now", now], env, workdir, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        if rng.random() < 0.25:  # anywhere in the run: start-up, planning, claiming, sending
            time.sleep(rng.uniform(0.0, 1.5))
        else:  # while dispatching: a random moment after the first message of this round arrived
            wait_for(lambda b=before, c=child: len(smtp.messages) > b or c.poll() is not None, 60, "dispatch")
            time.sleep(rng.uniform(0.0, 0.3))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait()
            kills += 1
            now_ambiguous = sum(unfinished_attempts(db_url).values())
            assert now_ambiguous - ambiguous <= 1  # one send at a time: a kill leaves at most one
            in_flight_kills += now_ambiguous - ambiguous
            ambiguous = now_ambiguous
        else:
            assert child.returncode == 0
    assert kills >= 3, f"only {kills} of {rounds} ticks were killed: the scenario did not happen"

    for extra in range(3):  # then ticks without kills
        now = (start + timedelta(minutes=2 * (rounds + extra))).isoformat(timespec="minutes")
        code, _out, err = tick_process(now, env, workdir)
        assert code == 0, err
        if len(reminders_to(smtp)) == n:
            break

    got = reminders_to(smtp)
    assert set(got) == {f"p{i}@example.cn" for i in range(n)}, f"lost: {n - len(got)}"  # L
    assert set(statuses(db_url).values()) == {"sent"}
    sent_attempts = Counter(r for (r,) in query(db_url, "SELECT d.recipient FROM delivery_attempts a JOIN "
                                                        "deliveries d ON d.id = a.delivery_id WHERE a.outcome = 'sent'"))
    assert all(c == 1 for c in sent_attempts.values()) and len(sent_attempts) == n
    unfinished = unfinished_attempts(db_url)
    for i in range(n):  # D, per delivery
        assert got[f"p{i}@example.cn"] <= 1 + unfinished[f"p{i}"], (i, got[f"p{i}@example.cn"], unfinished[f"p{i}"])
    duplicates = sum(got.values()) - n
    assert duplicates <= in_flight_kills <= kills, (duplicates, in_flight_kills, kills)
    for address in got:  # a repeat is recognisable: the same Message-ID
        assert len({m.message["Message-ID"] for m in smtp.handler.to(address)}) == 1


# --- 2. SMTP server down for an hour of injected time ------------------------------------------
DOWN_PEOPLE = """\
    people:
      secretary: {name: 王书记, email: secretary@example.cn, wecom: WangShuJi}
      p0: {name: 干部0, email: p0@example.cn}
      p1: {name: 干部1, email: p1@example.cn}
      p2: {name: 干部2, email: p2@example.cn}
    groups:
      team: [p0, p1, p2]
    rules:
      - {id: monthly-report, title: 月度报告, for_each: team, every: month, due: {day: 15}, remind: [-1d]}
      - {id: party-dues, title: 党费收缴, owner: secretary, every: month, due: {day: 15}, remind: [-1d]}
    """
DOWN_START = datetime(2026, 12, 14, 9, 5, tzinfo=TZ)


def smtp_down(smtp) -> None:
    smtp.controller.stop()


def smtp_back(smtp) -> None:
    """The server comes back on the same port (the fixture's teardown stops it)."""
    from aiosmtpd.controller import Controller

    smtp.controller = Controller(smtp.handler, hostname="127.0.0.1", port=smtp.port)
    smtp.controller.start()


def down_setup(duban, workdir) -> str:
    (workdir / "rules.yaml").write_text(textwrap.dedent(DOWN_PEOPLE), encoding="utf-8")
    assert duban("init", "--no-pack").code == 0
    r = duban("rules", "import", "rules.yaml", "--now", "2026-12-01T09:00")
    assert r.code == 0, r.err
    return duban.state["url"]


def attempt_rows(url: str) -> list[tuple]:
    """(recipient, outcome, channel, error) of the December reminders' attempts, oldest first."""
    return query(url, "SELECT d.recipient, a.outcome, a.channel, a.error FROM delivery_attempts a "
                      "JOIN deliveries d ON d.id = a.delivery_id ORDER BY a.id")


def test_smtp_down_for_an_hour_then_back(duban, smtp, workdir):
    """Email is the only channel and the mail server refuses connections for an hour (ticks every 10
    injected minutes): nothing is marked sent; every attempt is recorded with its reason (V); a
    delivery is retried only once its backoff has passed and the backoff doubles (about 1, 2, 4, 8, 16,
    32 minutes, ±20 %). When the server is back: L, and each person gets exactly one mail (D)."""
    url = down_setup(duban, workdir)

    def p0() -> tuple[int, int, str]:
        [(attempts, due_at, status)] = query(url, "SELECT attempts, due_at, status FROM deliveries "
                                                  "WHERE recipient = 'p0' AND kind = 'reminder' AND slot = '2026-12-14'")
        return attempts, due_at, status

    smtp_down(smtp)
    try:
        gaps = []
        prev_attempts, prev_due = 0, 0
        for k in range(7):  # 09:05 … 10:05
            now = DOWN_START + timedelta(minutes=10 * k)
            r = duban("tick", "--now", now.isoformat(timespec="minutes"))
            assert r.code == 0, r.err
            attempts, due_at, status = p0()
            assert status == "pending"
            if prev_due > now.timestamp():
                assert attempts == prev_attempts, f"retried at {now:%H:%M}, before its backoff ran out"
            else:
                assert attempts == prev_attempts + 1, f"not retried at {now:%H:%M} although due"
                gap = due_at - now.timestamp()
                base = min(60 * 2 ** (attempts - 1), 3600)
                assert 0.8 * base <= gap <= 1.2 * base + 1, (attempts, gap)
                gaps.append(gap)
            prev_attempts, prev_due = attempts, due_at
        assert len(gaps) >= 5 and all(a < b for a, b in zip(gaps, gaps[1:], strict=False)), gaps
        assert set(statuses(url).values()) == {"pending"}  # nothing marked sent
        rows = attempt_rows(url)
        assert Counter(r for r, *_ in rows) == Counter({p: len(gaps) for p in ("p0", "p1", "p2", "secretary")})
        assert all(o == "failed" and c == "email" and "无法连接邮件服务器" in e for _r, o, c, e in rows)
    finally:
        smtp_back(smtp)

    for k in range(7, 19):  # 10:15 … 12:05, every 10 minutes
        r = duban("tick", "--now", (DOWN_START + timedelta(minutes=10 * k)).isoformat(timespec="minutes"))
        assert r.code == 0, r.err
    assert reminders_to(smtp) == Counter({f"{p}@example.cn": 1 for p in ("p0", "p1", "p2", "secretary")})
    assert set(statuses(url).values()) == {"sent"}


def test_smtp_down_the_owner_is_told_through_the_wecom_robot(duban, smtp, wecom, workdir):
    """The group robot is configured too: while the mail server is down, each reminder is posted once
    through the robot after the failed mail attempt (recorded, V), the owner who has a WeCom id is
    mentioned, and the delivery is marked sent by `wecom-robot`. When the server is back no mail
    repeats what the robot already said (D), and nothing is retried."""
    wecom.use_robot()
    url = down_setup(duban, workdir)
    smtp_down(smtp)
    try:
        for k in range(7):  # 09:05 … 10:05, every 10 minutes
            now = (DOWN_START + timedelta(minutes=10 * k)).isoformat(timespec="minutes")
            wecom.at(now)
            r = duban("tick", "--now", now)
            assert r.code == 0, r.err
    finally:
        smtp_back(smtp)
    posts = [m["markdown"]["content"] for m in wecom.robot_messages if m["msgtype"] == "markdown"]
    assert len(posts) == 4
    [owner_post] = [p for p in posts if "党费收缴" in p]
    assert owner_post.startswith("<@WangShuJi>\n")
    assert sum("月度报告" in p for p in posts) == 3
    assert dict(query(url, "SELECT recipient, channel FROM deliveries WHERE kind = 'reminder' AND "
                           "slot = '2026-12-14' AND status = 'sent'")) == {
        p: "wecom-robot" for p in ("p0", "p1", "p2", "secretary")}
    rows = attempt_rows(url)
    for p in ("p0", "p1", "p2", "secretary"):
        assert [(o, c) for r_, o, c, _e in rows if r_ == p] == [("failed", "email"), ("sent", "wecom-robot")]

    for k in range(7, 10):
        now = (DOWN_START + timedelta(minutes=10 * k)).isoformat(timespec="minutes")
        wecom.at(now)
        assert duban("tick", "--now", now).code == 0
    assert smtp.messages == [] and len(wecom.robot_messages) == 4
    assert len(attempt_rows(url)) == 8


def test_smtp_down_for_an_hour_is_reported_through_the_wecom_app(duban, smtp, wecom, workdir):
    """V: the secretary has WeCom (application messages), her team only email. After an hour in which
    every mail to the team failed to connect, the digest she receives through WeCom says that mail is
    failing (the three reminders are still waiting for a retry)."""
    wecom.use_app()
    url = down_setup(duban, workdir)
    smtp_down(smtp)
    try:
        for k in range(7):  # 09:05 … 10:05
            now = (DOWN_START + timedelta(minutes=10 * k)).isoformat(timespec="minutes")
            wecom.at(now)
            assert duban("tick", "--now", now).code == 0
        assert statuses(url) == {"p0": "pending", "p1": "pending", "p2": "pending", "secretary": "sent"}
        wecom.at("2026-12-14T10:10")
        r = duban("digest", "--send", "--now", "2026-12-14T10:10")
        assert r.code == 0, r.err
    finally:
        smtp_back(smtp)
    [digest] = [b["markdown"]["content"] for b in wecom.app_inbox["WangShuJi"]
                if b["msgtype"] == "markdown" and "每日督办汇总" in b["markdown"]["content"]]
    assert "邮件" in digest, digest


# --- 3. clock jumps -----------------------------------------------------------------------------
JUMP_RULES = """\
    people:
      secretary: {name: 王书记, email: secretary@example.cn}
      leader: {name: 李局长, email: leader@example.cn}
      p0: {name: 干部0, email: p0@example.cn}
      p1: {name: 干部1, email: p1@example.cn}
      p2: {name: 干部2, email: p2@example.cn}
      p3: {name: 干部3, email: p3@example.cn}
    groups:
      team: [p0, p1, p2, p3]
    rules:
      - {id: monthly-report, title: 月度报告, for_each: team, every: month, due: {day: 15}, remind: [-2d, -1d, 0d]}
      - {id: safety-check, title: 安全检查, owner: leader, every: month, due: {day: 11}, remind: [0d],
         escalate_after: none}
    """


def test_clock_jumps_forward_a_day_then_back_an_hour(db_url, duban, smtp, workdir):
    """Ticks at T = Mon 00:30, at T + 1 day (forward: a day of ticks skipped), at T + 1 day − 1 hour
    (backward, across midnight, so planning runs again for the earlier day), then at 09:05.
    E: every message's reminder time (its slot at 09:00) is at or before the `--now` of the tick that
    sent it; D: no delivery is sent twice (Message-ID); no flood: at most one new message per person
    per tick; the tick after the backward jump (a child process) finishes."""
    env = env_for(db_url, smtp)
    setup_db(workdir, env, textwrap.dedent(JUMP_RULES), duban=duban)
    sent_by: dict[str, list] = {}

    def tick(now: str, child: bool = False) -> list:
        before = len(smtp.messages)
        if child:
            code, _out, err = tick_process(now, env, workdir)
        else:
            r = duban("tick", "--now", now, url=db_url)
            code, err = r.code, r.err
        assert code == 0, err
        new = smtp.messages[before:]
        sent_by[now] = new
        per_person = Counter(r for m in new for r in m.recipients)
        assert all(c == 1 for c in per_person.values()), (now, per_person)  # no flood
        return new

    team = {f"p{i}@example.cn" for i in range(4)}
    assert {r for m in tick("2026-12-14T00:30") for r in m.recipients} == team  # the -2d reminder of Sunday
    jumped = tick("2026-12-15T00:30")  # forward a day: yesterday's -1d reminder and overdue alert, once
    assert {r for m in jumped for r in m.recipients} == team | {"leader@example.cn"}
    assert tick("2026-12-14T23:30", child=True) == []  # back an hour, across midnight: nothing early, nothing again
    assert {r for m in tick("2026-12-15T09:05") for r in m.recipients} == team | {"leader@example.cn"}

    keys = keys_by_message_id(db_url)
    seen = Counter(message_id_hash(m) for m in smtp.messages)
    assert all(c == 1 for c in seen.values()), seen  # D: no delivery twice
    for now, msgs in sent_by.items():  # E
        injected = datetime.fromisoformat(now).replace(tzinfo=TZ)
        for m in msgs:
            key, kind, slot = keys[message_id_hash(m)]
            scheduled = datetime.fromisoformat(slot).replace(hour=9, tzinfo=TZ)
            assert scheduled <= injected, f"{kind} {key} for {scheduled} sent at {injected}"
    assert len(smtp.messages) == 4 * 3 + 2
    # the overdue item's own reminder (due before the first tick) was collapsed into its overdue alert
    assert statuses(db_url, slot="2026-12-11")["leader"] == "skipped"


# --- 4. a locked database during a tick (SQLite) ---------------------------------------------------
SHORT_BUSY_TIMEOUT = """\
import sys

import scheduler.db as db

_pragmas = db._sqlite_pragmas


def _short_busy_timeout(conn, record):  # the product waits 30 s for a lock; the test cannot
    _pragmas(conn, record)
    conn.execute("PRAGMA busy_timeout=300")


db._sqlite_pragmas = _short_busy_timeout
from scheduler.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
"""


def has_open(pid: int, path: str) -> bool:
    """Whether process `pid` has the file open (Linux /proc; elsewhere assume it has)."""
    fd_dir = f"/proc/{pid}/fd"
    if not os.path.isdir("/proc/self/fd"):
        return True
    try:
        return any(os.path.realpath(os.path.join(fd_dir, fd)) == os.path.realpath(path) for fd in os.listdir(fd_dir))
    except OSError:  # the process ended, or a descriptor closed while looking
        return False


def hold_write_lock(url: str) -> sqlite3.Connection:
    """Another connection takes the database's write lock (`BEGIN EXCLUSIVE`; WAL still lets readers in)."""
    conn = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=5)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def test_a_tick_waits_for_a_write_lock_and_then_sends_everything(duban, smtp, sqlite_url, workdir):
    """While another connection holds the write lock (for 2 s after the tick has opened the database),
    the tick waits (SQLite busy timeout): nothing is sent before it could write its plan and claims;
    after the release it completes (exit 0) and L, D hold."""
    env = env_for(sqlite_url, smtp)
    setup_db(workdir, env, team_rules(5), duban=duban)
    lock = hold_write_lock(sqlite_url)
    try:
        child = start_cli(["tick", "--now", "2026-12-14T09:05"], env, workdir)
        wait_for(lambda: has_open(child.pid, sqlite_path(sqlite_url)) or child.poll() is not None, 60,
                 "the tick to open the database")
        time.sleep(2.0)  # the lock is held this long while the tick wants to write
        assert child.poll() is None, child.communicate()
        assert smtp.messages == []
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert "发送 提醒 5 条" in out
    assert reminders_to(smtp) == Counter({f"p{i}@example.cn": 1 for i in range(5)})
    assert set(statuses(sqlite_url).values()) == {"sent"}


def test_a_tick_that_cannot_commit_because_the_database_is_locked_marks_nothing_unsent(duban, smtp, sqlite_url,
                                                                                     workdir):
    """The write lock is taken while the 3rd message is on the server and its sender waits for the 250;
    the tick cannot record the send (its busy timeout is shortened to 0.3 s by a wrapper, the product's
    30 s is fixed): it exits 1 with one Chinese line naming 'database is locked', no traceback (V). The
    committed state: the first two sent, the third still `sending` with an unfinished attempt — nothing
    marked sent without a commit. After the release a tick past the lease sends the rest: L, and the
    only repeat is the ambiguous third (D)."""
    env = env_for(sqlite_url, smtp)
    setup_db(workdir, env, team_rules(5), duban=duban)
    hold = HoldAt(smtp, 3)
    child = start_cli(["tick", "--now", "2026-12-14T09:05"], env, workdir, argv0=["-c", SHORT_BUSY_TIMEOUT])
    lock = None
    try:
        wait_for(hold.reached.is_set, 60, "the third message")
        lock = hold_write_lock(sqlite_url)
        hold.release()
        out, err = child.communicate(timeout=60)
        assert child.returncode == 1, (out, err)
        assert "错误：数据库操作失败" in err and "database is locked" in err
        assert "Traceback" not in err
        assert len(smtp.messages) == 3
        # read while the lock is still held (WAL readers see the last commit): the two whose marks were
        # committed are sent; the rest of the claimed batch is `sending` under the dead tick's lease, one
        # of them with an attempt that never ended — the message on the server
        st = statuses(sqlite_url)
        assert sorted(st.values()) == ["sending"] * 3 + ["sent"] * 2, st
        received = [m.recipients[0] for m in smtp.messages]
        assert set(received[:2]) == {f"{r}@example.cn" for r, s in st.items() if s == "sent"}
        [in_flight] = unfinished_attempts(sqlite_url)
        assert received[2] == f"{in_flight}@example.cn" and unfinished_attempts(sqlite_url)[in_flight] == 1
    finally:
        hold.release()
        if lock is not None:
            lock.execute("ROLLBACK")
            lock.close()
        if child.poll() is None:
            child.kill()
            child.communicate()
    code, _out, err = tick_process("2026-12-14T09:07", env, workdir)
    assert code == 0, err
    got = reminders_to(smtp)
    assert set(got) == {f"p{i}@example.cn" for i in range(5)}  # L
    assert got == Counter({f"p{i}@example.cn": 2 if f"p{i}" == in_flight else 1 for i in range(5)})  # D
    assert set(statuses(sqlite_url).values()) == {"sent"}


# --- 5. a full disk during a tick -----------------------------------------------------------------
class SmallDisk:
    """A directory whose filesystem can be filled: a 4 MB tmpfs (as root), or, if mounting is not
    possible, an ordinary directory where `fill(pid)` lowers the child's RLIMIT_FSIZE to the current
    size of its write-ahead log (writes beyond fail with EFBIG; SIGXFSZ is ignored in the child)."""

    def __init__(self, path):
        self.path = path
        path.mkdir()
        self.filler = path / "filler"
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)],
                           capture_output=True, text=True) if os.geteuid() == 0 and shutil.which("mount") else None
        self.tmpfs = r is not None and r.returncode == 0

    @staticmethod
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def fill(self, pid: int) -> None:
        if not self.tmpfs:  # the write-ahead log cannot grow any more
            wal = self.path / "duban.db-wal"
            size = wal.stat().st_size if wal.exists() else 0
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (size, size))
            return
        fd = os.open(self.filler, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            for chunk in (1 << 20, 1 << 12, 1):
                while True:
                    try:
                        os.write(fd, b"\0" * chunk)
                    except OSError as e:
                        assert e.errno in (errno.ENOSPC, errno.EFBIG), e
                        break
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        if self.tmpfs:
            if subprocess.run(["umount", str(self.path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def small_disk(workdir):
    disk = SmallDisk(workdir / "disk")
    yield disk
    disk.close()


def test_disk_full_during_a_tick_marks_nothing_unsent_and_recovers(smtp, workdir, small_disk):
    """The SQLite database lives on a small filesystem that fills up while the 3rd message is on the
    server: the tick cannot record that send, exits 1 with a Chinese message naming the database error
    (V), and the committed state marks sent exactly the two messages whose marks were committed — the
    third stays `sending`. With space back, a tick past the lease sends everything (L), repeating only
    the ambiguous third (D)."""
    url = f"sqlite:///{small_disk.path / 'duban.db'}"
    env = env_for(url, smtp)
    setup_db(workdir, env, team_rules(10))
    hold = HoldAt(smtp, 3)
    child = start_cli(["tick", "--now", "2026-12-14T09:05"], env, workdir, preexec_fn=SmallDisk.preexec)
    try:
        wait_for(hold.reached.is_set, 60, "the third message")
        small_disk.fill(child.pid)
        hold.release()
        out, err = child.communicate(timeout=60)
    finally:
        hold.release()
        if child.poll() is None:
            child.kill()
            child.communicate()
        small_disk.free()
    assert child.returncode == 1, (out, err)
    assert "错误：数据库操作失败" in err and "Traceback" not in err
    assert "disk is full" in err or "disk I/O error" in err, err
    assert len(smtp.messages) == 3
    st = statuses(url)  # the claimed batch is `sending`; only the two committed marks say sent
    assert sorted(st.values()) == ["sending"] * 8 + ["sent"] * 2, st
    received = [m.recipients[0] for m in smtp.messages]
    assert set(received[:2]) == {f"{r}@example.cn" for r, s in st.items() if s == "sent"}
    [in_flight] = unfinished_attempts(url)
    assert received[2] == f"{in_flight}@example.cn" and unfinished_attempts(url)[in_flight] == 1

    code, _out, err = tick_process("2026-12-14T09:07", env, workdir)
    assert code == 0, err
    got = reminders_to(smtp)
    assert got == Counter({f"p{i}@example.cn": 2 if f"p{i}" == in_flight else 1 for i in range(10)})  # L, D
    assert set(statuses(url).values()) == {"sent"}


# --- 6. PostgreSQL restarted during dispatch --------------------------------------------------------
def local_cluster(url: str) -> tuple[str, str] | None:
    """(version, name) of the local Debian PostgreSQL cluster serving `url`, if this test may restart it."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if (u.host or "localhost") not in ("127.0.0.1", "localhost", "::1") or os.geteuid() != 0:
        return None
    if not (shutil.which("pg_lsclusters") and shutil.which("pg_ctlcluster")):
        return None
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == str(u.port or 5432) and parts[3] == "online":
            return parts[0], parts[1]
    return None


def pg_ctl(cluster: tuple[str, str], action: str) -> None:
    r = subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def restartable_pg(workdir):
    """A fresh schema on the test PostgreSQL, and the local cluster serving it (skipped if it cannot
    be restarted here). Own fixture: its teardown reconnects after the restart (pool_pre_ping)."""
    if not PG_BASE_URL:
        pytest.skip("PostgreSQL 重启测试已跳过：未设置 DUBAN_TEST_POSTGRES_URL")
    cluster = local_cluster(PG_BASE_URL)
    if cluster is None:
        pytest.skip("PostgreSQL 重启测试已跳过：数据库不在本机、不是 root，或没有 pg_ctlcluster，无法重启")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(PG_BASE_URL, pool_pre_ping=True)
    with engine.begin() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_BASE_URL else "?"
    yield f"{PG_BASE_URL}{sep}options=-csearch_path%3D{schema}", cluster
    with engine.begin() as c:
        c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def test_postgresql_restarted_during_dispatch(restartable_pg, duban, smtp, workdir):
    """A `duban run --interval 1` service sends 40 reminders through a slow mail server; while the 5th
    is on the server (its 250 held), PostgreSQL is stopped, the 250 released, and PostgreSQL started
    again once the service has logged the failed check (V: "本次检查出错"). The service stays up,
    reconnects (pool_pre_ping) and finishes: L; D — at most one extra copy per attempt the outage left
    unfinished; it stops cleanly on SIGTERM."""
    url, cluster = restartable_pg
    n = 40
    env = env_for(url, smtp, DUBAN_LEASE_SECONDS="3", DUBAN_WEB_PORT="off")  # the service's leases run on the real clock
    setup_db(workdir, env, team_rules(n), duban=duban)
    hold = HoldAt(smtp, 5)
    log_path = workdir / "service.log"
    log = open(log_path, "w", encoding="utf-8")  # a file, not a pipe: a long log cannot block the child
    child = start_cli(["run", "--now", "2026-12-14T09:05", "--interval", "1"], env, workdir, stdout=log, stderr=log)

    def logged() -> str:
        return log_path.read_text(encoding="utf-8")

    try:
        wait_for(hold.reached.is_set, 60, "the fifth message")
        try:
            pg_ctl(cluster, "stop")
            hold.release()
            wait_for(lambda: "本次检查出错" in logged(), 30, "the service to notice the outage")
        finally:
            pg_ctl(cluster, "start")
        wait_for(lambda: len(reminders_to(smtp)) == n, 120, "all reminders after the restart")
        assert child.poll() is None, logged()  # the service survived the outage
    finally:
        hold.release()
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            log.close()
    assert child.returncode == 0, logged()
    assert "督办服务已停止" in logged()
    got = reminders_to(smtp)
    assert set(got) == {f"p{i}@example.cn" for i in range(n)}  # L
    assert set(statuses(url).values()) == {"sent"}
    unfinished = unfinished_attempts(url)
    assert sum(unfinished.values()) >= 1  # the held send's end could not be recorded
    for i in range(n):  # D
        assert got[f"p{i}@example.cn"] <= 1 + unfinished[f"p{i}"], i
    assert sum(got.values()) - n <= sum(unfinished.values())


# --- 7. a malformed rule file after good rules ---------------------------------------------------
GOOD = """\
    people:
      secretary: {name: 王书记, email: secretary@example.cn}
      office: {name: 张主任, email: office@example.cn}
    rules:
      - {id: monthly-report, title: 月度报告, owner: secretary, every: month, due: {day: 15}, remind: [-1d, 0d]}
      - {id: office-ledger, title: 办公室台账, owner: office, every: month, due: {day: 15}, remind: [0d]}
    """
CHANGED = GOOD.replace("月度报告", "改过的标题").replace("office@example.cn", "new-office@example.cn")
MALFORMED = {
    "syntax.yaml": CHANGED + "      - {id: broken, title: [未闭合, owner: office\n",  # YAML syntax error
    "schema.yaml": CHANGED + "      - {id: typo, title: 拼写错误, owner: office, evry: month, due: {day: 15}}\n",
    "truncated.yaml": CHANGED[: CHANGED.index("remind: [-1d") + 10],  # a half-written file
}


def test_malformed_rule_file_leaves_the_last_good_rules_working(duban, db_url, smtp, workdir):
    """After good rules are in use, importing malformed files (a YAML syntax error, an unknown key, a
    half-written file, and a valid file together with a bad one) is refused with exit 2 and a Chinese
    message naming the file (V); every table is unchanged, row for row; the next ticks still send the
    good rules' reminders, with the good titles and addresses."""
    duban.state["url"] = db_url
    (workdir / "good.yaml").write_text(textwrap.dedent(GOOD), encoding="utf-8")
    assert duban("init", "--no-pack").code == 0
    assert duban("rules", "import", "good.yaml", "--now", "2026-12-01T09:00").code == 0
    assert duban("tick", "--now", "2026-12-14T09:05").code == 0
    assert [m.subject for m in smtp.messages] == ["【督办提醒】月度报告 将于 2026年12月15日 到期"]
    before = dump(db_url)

    (workdir / "changed.yaml").write_text(textwrap.dedent(CHANGED), encoding="utf-8")
    attempts = [[name] for name in MALFORMED] + [["changed.yaml", "schema.yaml"]]
    for name, text in MALFORMED.items():
        (workdir / name).write_text(textwrap.dedent(text), encoding="utf-8")
    for files in attempts:
        r = duban("rules", "import", *files, "--now", "2026-12-14T10:00")
        assert r.code == 2, (files, r.out, r.err)
        assert r.err.startswith("错误：") and files[-1] in r.err and "Traceback" not in r.err, r.err
        assert dump(db_url) == before, files

    r = duban("tick", "--now", "2026-12-15T09:05")
    assert r.code == 0, r.err
    assert sorted((m.recipients[0], m.subject) for m in smtp.messages[1:]) == [
        ("office@example.cn", "【督办提醒】办公室台账 将于 2026年12月15日 到期（今天）"),
        ("secretary@example.cn", "【督办提醒】月度报告 将于 2026年12月15日 到期（今天）")]


# --- 8. calendar data missing for next year ------------------------------------------------------
CAL_RULES = """\
    people:
      secretary: {name: 王书记, email: secretary@example.cn}
    rules:
      - {id: monthly-report, title: 月度报告, owner: secretary, every: month, due: {day: 15}, remind: [-1d, 0d]}
    """


def test_missing_calendar_for_next_year_is_flagged_provisional(duban, smtp, workdir):
    """With no official 2027 arrangement: `status` and `preview` (JSON and tables) flag every 2027 due
    date provisional and no 2026 one; `doctor` warns in December 2026 and reports an error once 2027
    has begun without it (exit 1); a reminder for a 2027 date says the date is provisional (V)."""
    (workdir / "r.yaml").write_text(textwrap.dedent(CAL_RULES), encoding="utf-8")
    assert duban("init", "--no-pack").code == 0
    assert duban("rules", "import", "r.yaml", "--now", "2026-12-01T09:00").code == 0
    now = "2026-12-10T10:00"

    rows = {x["key"]: x for x in duban("status", "--format", "json", "--now", now).json()}
    assert rows["monthly-report@2026-12"]["provisional"] is False
    assert rows["monthly-report@2027-01"]["provisional"] is True
    table = duban("status", "--now", now).out
    assert "2027-01-15（暂定）" in table and "2026-12-15（暂定）" not in table

    pv = duban("preview", "--from", "2026-12-01", "--to", "2027-03-31", "--format", "json", "--now", now).json()
    assert [(o["due"][:4], o["provisional"]) for o in pv] == [("2026", False), ("2027", True), ("2027", True),
                                                              ("2027", True)]
    pv_table = duban("preview", "--from", "2026-12-01", "--to", "2027-03-31", "--now", now).out
    assert pv_table.count("（暂定）") == 3 and "尚无国务院办公厅的放假安排" in pv_table

    r = duban("doctor", "--now", now)
    assert r.code == 0, r.out
    assert "[警告] 日历：2027 年尚无官方放假安排" in r.out
    r = duban("doctor", "--now", "2027-01-05T10:00")
    assert r.code == 1 and "[错误] 日历：2027 年尚无官方放假安排" in r.out

    assert duban("done", "monthly-report@2026-12", "--now", "2026-12-15T10:00").code == 0
    assert duban("tick", "--now", "2027-01-14T09:05").code == 0
    [mail] = smtp.messages
    assert "2027年1月15日" in mail.subject and "日期为暂定" in mail.text


def test_smtp_421_on_data_is_retried_and_an_error_after_acceptance_is_not_a_resend(duban, smtp, workdir):
    """L and D for two SMTP quirks: `421 service not available` is transient (retried later, then
    delivered once); and a connection dropped at QUIT after the server accepted the message (the
    QQ Mail quirk) counts as delivered: it is marked sent and never sent again."""
    duban("init", "--no-pack")
    (workdir / "r.yaml").write_text(
        "people:\n  secretary: {name: 王书记, email: secretary@example.cn}\n"
        "rules:\n  - {id: monthly-report, title: 月度报告, owner: secretary, every: month, due: {day: 15},"
        " remind: [-1d, 0d]}\n", encoding="utf-8")
    duban("rules", "import", "r.yaml", "--now", "2026-12-01T09:00")

    smtp.handler.data_reply = "421 4.3.2 Service not available, closing transmission channel"
    r = duban("tick", "--now", "2026-12-14T09:05")
    assert "待重试 1 条" in r.out and smtp.messages == []
    smtp.handler.data_reply = None
    duban("tick", "--now", "2026-12-14T11:05")
    assert len(smtp.messages) == 1

    async def drop_at_quit(server, session, envelope):
        session.transport.abort()  # no reply to QUIT: the client sees the connection die
        return None

    smtp.handler.handle_QUIT = drop_at_quit
    r = duban("tick", "--now", "2026-12-15T09:05")
    assert r.code == 0 and "发送 提醒 1 条" in r.out
    assert len(smtp.messages) == 2
    duban("tick", "--now", "2026-12-15T10:05")
    assert len(smtp.messages) == 2  # accepted before the drop: not sent again
