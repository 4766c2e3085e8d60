"""Tick benchmark: one scheduler pass over a large deliveries table, bulk reminders against APScheduler 3,
and the idle service's memory.

    python bench/tick_bench.py              # 10k / 100k / 1M deliveries, SQLite and PostgreSQL
    python bench/tick_bench.py --quick      # 10k / 100k, fewer APScheduler jobs, fewer repeats
    python bench/tick_bench.py --profile    # and a cProfile (top 15) of every missed time target
    python bench/tick_bench.py --no-pg      # SQLite only (PostgreSQL: --pg URL or DUBAN_TEST_POSTGRES_URL)

1. Tick. For each size N a fresh database (a SQLite file; a PostgreSQL schema, dropped afterwards) is
   migrated, a tiny rule file is imported (one person, one rule that plans nothing before 2030) and one
   tick runs on the empty deliveries table, so the materializer's "nothing changed" marker is set as a
   running service leaves it. Then N pending deliveries are bulk-inserted (executemany / COPY): ~100 due
   before `now` (each of its own occurrence, due in 3 days) and the rest spread over the next year
   (referencing 1,000 occurrences). Timed: the claim SELECT exactly as Dispatcher.claim sends it (captured
   from the engine), Dispatcher.claim(limit=1000) taking all the due rows, a full tick() that sends the due
   ones to the console channel (writing to a temp file), and the idle tick right after (nothing due: the
   service's steady state every minute). The due rows are put back to `pending` between repeats; the
   table shows the best run and, at the largest size, the median (the targets are judged on it).
   PostgreSQL gets ANALYZE after the bulk load (autovacuum would, soon after).
2. Bulk reminders. A rule file (1,000 people in a group, 5 weekly rules with `for_each`) whose first
   tick plans ~100,000 future reminder deliveries: `rules import` + that tick (in process, and as the CLI)
   against APScheduler 3's BackgroundScheduler (started paused) adding the same reminders, one
   add_job(func, 'date', run_date=…) each, to a SQLAlchemyJobStore on a SQLite file. APScheduler is timed
   on the first 10,000 (quick: 2,000) and extrapolated linearly to the same count from its median tenth;
   the issue's own figure (1.1 ms per add_job) is shown as a second baseline. duban: best of 3 (quick: 1).
3. Idle memory. `duban run --interval 60` on the SQLite databases of 1 and 2 (the largest tick database
   and the bulk one); once its first tick is done (startup line on stderr, then CPU time flat) VmRSS is
   read from /proc and the process gets SIGTERM.

Timings use time.perf_counter with the garbage collector at its defaults. Nothing here asserts a
timing: the figures are printed, with the targets from the issue beside them.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import platform
import pstats
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from common import Db, clean_env, duban_exe, fs_type, pg_available, pg_version  # noqa: E402 - bench/ is the script directory
from sqlalchemy import event, func, select, text

from rules.loader import parse_rule_text
from scheduler.db import make_engine, session_scope
from scheduler.dispatch import BATCH, Dispatcher
from scheduler.models import DeliveryRow, OccurrenceRow
from scheduler.routing import configured_channels
from scheduler.settings import Settings
from scheduler.store import import_ruleset
from scheduler.tick import tick

TZ_NAME = "Asia/Shanghai"
TZ = ZoneInfo(TZ_NAME)
NOW_TEXT = "2026-03-02T07:00"  # a Monday, a working day; before the 08:30 digest and the 09:00 reminders
NOW = datetime.fromisoformat(NOW_TEXT).replace(tzinfo=TZ)
SEED = 20260302
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

SIZES, QUICK_SIZES = (10_000, 100_000, 1_000_000), (10_000, 100_000)
N_DUE = 100  # due before `now` in every tick database
N_FAR_OCC = 1_000  # occurrences the far-future deliveries point at
CLAIM_LIMIT = 1_000  # "a large limit": all the due rows in one claim

TICK_TARGET_MS = 20.0
BULK_TARGET_RATIO = 50.0
RSS_TARGET_MB = 80.0
APS_JOBS, APS_JOBS_QUICK = 10_000, 2_000
APS_ISSUE_MS = 1.1  # add_job per job as measured in the issue (11 s for 10,000)
BULK_PEOPLE, BULK_RULES = 1_000, 5  # weekly rules due wed/thu/fri/wed/thu, remind -2d, -1d, 0d

SEED_RULES = f"""timezone: {TZ_NAME}
people:
  p0001: {{name: 基准人员}}
rules:
  - id: bench
    title: 基准事项
    owner: p0001
    every: week
    due: {{weekday: fri}}
    start: 2030-01-01
"""


# --- small helpers -------------------------------------------------------------------------------
def step(msg: str) -> None:
    print(f"… {msg}", file=sys.stderr, flush=True)


def ms(seconds: float) -> float:
    return seconds * 1000.0


def timed(fn):
    gc.collect()
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms" if v < 1000 else f"{v / 1000:.2f} s"


def fmt_n(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def cpu_pressure() -> str:
    """Share of the last minute in which some runnable task waited for a CPU (Linux PSI), or ''."""
    try:
        with open("/proc/pressure/cpu") as f:
            some = f.readline().split()
        return next(x.split("=")[1] for x in some if x.startswith("avg60=")) + " %"
    except (OSError, StopIteration, IndexError):
        return ""


def profile(label: str, fn, setup=None, filt: str = r"^(?!.*tick_bench\.py)") -> None:
    if setup:
        setup()
    prof = cProfile.Profile()
    with redirect_stdout(io.StringIO()):
        prof.enable()
        fn()
        prof.disable()
    for order in ("cumulative", "tottime"):
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats(order).print_stats(filt, 15)
        print(f"\n=== cProfile: {label} (top 15 by {order}) ===")
        lines = s.getvalue().splitlines()
        start = next((i for i, ln in enumerate(lines) if "function calls" in ln), 0)
        print("\n".join(ln for ln in lines[start:] if ln.strip()))


# --- databases -----------------------------------------------------------------------------------


def import_rules(engine, text_: str, filename: str) -> None:
    rs = parse_rule_text(text_, filename)
    with session_scope(engine) as s:
        import_ruleset(s, rs, now=NOW, origin=filename)


def stored(engine, column, value):
    """A Python value as the engine stores it (UTCDateTime → naive UTC text on SQLite, Date → text …)."""
    proc = column.type.bind_processor(engine.dialect)
    return proc(value) if proc else value


def bulk_insert(engine, table: str, columns: list[str], rows) -> None:
    """executemany on SQLite, COPY on PostgreSQL: the rows go in without the ORM."""
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            with raw.driver_connection.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
        else:
            cur = raw.cursor()
            cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
            cur.close()
        raw.commit()
    finally:
        raw.close()


# --- 1. the tick ---------------------------------------------------------------------------------
DELIVERY_COLS = ["key", "occurrence_key", "kind", "slot", "recipient", "due_at", "status", "attempts", "created_at"]
OCC_COLS = ["key", "rule_id", "title", "period", "owner", "opens", "due", "quota", "provisional", "state",
            "done_count", "created_at"]


def seed_tick_db(db: Db, n: int, settings: Settings) -> dict:
    """Migrated database, the tiny rule file, one tick on empty tables (sets the marker), then N rows."""
    engine = db.engine
    import_rules(engine, SEED_RULES, "bench-seed.yaml")
    first = tick(engine, settings, NOW, worker="bench")
    assert not first.planned.deliveries and not first.dispatched.sent, "the seed rule should plan nothing"

    now_ts = int(NOW.timestamp())
    today = NOW.date()
    created = stored(engine, DeliveryRow.__table__.c.created_at, NOW)
    occ_created = stored(engine, OccurrenceRow.__table__.c.created_at, NOW)
    d = lambda day: stored(engine, OccurrenceRow.__table__.c.opens, day)  # noqa: E731
    prov = stored(engine, OccurrenceRow.__table__.c.provisional, False)

    occ_rows = [(f"bench-due@{k:03d}", "bench", "基准事项", f"due-{k:03d}", "p0001", d(today), d(today + timedelta(days=3)),
                 1, prov, "open", 0, occ_created) for k in range(N_DUE)]
    occ_rows += [(f"bench-far@{j:04d}", "bench", "基准事项", f"far-{j:04d}", "p0001", d(today + timedelta(days=30)),
                  d(today + timedelta(days=60)), 1, prov, "open", 0, occ_created) for j in range(N_FAR_OCC)]

    epoch_ord = date(1970, 1, 1).toordinal()
    utc_offset = int(NOW.utcoffset().total_seconds())
    slots: dict[int, str] = {}

    def slot_of(ts: int) -> str:
        day = (ts + utc_offset) // 86400
        s = slots.get(day)
        if s is None:
            s = slots[day] = date.fromordinal(epoch_ord + day).isoformat()
        return s

    n_far = n - N_DUE
    rng = random.Random(SEED)

    def rows():
        today_iso = today.isoformat()
        for k in range(N_DUE):
            occ = f"bench-due@{k:03d}"
            yield (f"{occ}|reminder|{today_iso}|p0001", occ, "reminder", today_iso, "p0001", now_ts - 60 * (k + 1),
                   "pending", 0, created)
        for i in range(n_far):
            occ = f"bench-far@{i * N_FAR_OCC // n_far:04d}"
            due_at = now_ts + rng.randrange(86_400, 366 * 86_400)  # due times in random order, the next year
            slot = slot_of(due_at)
            yield (f"{occ}|reminder|{slot}|u{i:07d}", occ, "reminder", slot, f"u{i:07d}", due_at, "pending", 0, created)

    bulk_insert(engine, "occurrences", OCC_COLS, occ_rows)
    t_insert, _ = timed(lambda: bulk_insert(engine, "deliveries", DELIVERY_COLS, rows()))
    if engine.dialect.name == "postgresql":
        with engine.begin() as c:
            c.execute(text("ANALYZE deliveries"))
            c.execute(text("ANALYZE occurrences"))
    with engine.connect() as c:
        due = c.execute(select(DeliveryRow.id, DeliveryRow.due_at).where(DeliveryRow.due_at <= now_ts)).all()
        total = c.scalar(select(func.count()).select_from(DeliveryRow))
    assert total == n and len(due) == N_DUE, (total, len(due))
    return {"insert_s": t_insert, "due": [(i, t) for i, t in due]}


def reset_due(engine, due: list[tuple[int, int]]) -> None:
    """Put the due rows back as they were before any claim or send; forget the attempts."""
    with engine.begin() as c:
        c.execute(text("UPDATE deliveries SET status = 'pending', due_at = :due_at, attempts = 0, lease_owner = NULL, "
                       "channel = NULL, sent_at = NULL, last_error = NULL WHERE id = :id"),
                  [{"id": i, "due_at": t} for i, t in due])
        c.execute(text("DELETE FROM delivery_attempts"))


def capture_claim_select(engine, dispatcher: Dispatcher, now_ts: int) -> tuple[str, object]:
    """The SELECT that Dispatcher.claim sends, with its parameters, taken from the engine."""
    seen: list[tuple[str, object]] = []

    def listen(_conn, _cursor, statement, parameters, _context, _executemany):
        if statement.lstrip().upper().startswith("SELECT") and "deliveries" in statement and not seen:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        dispatcher.claim(now_ts)
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    return seen[0]


def explain(engine, statement: str, params) -> tuple[str, bool]:
    """The plan of the claim SELECT, and whether it uses the partial index."""
    with engine.connect() as c:
        if engine.dialect.name == "postgresql":
            rows = c.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).all()
            plan = "\n".join(r[0] for r in rows)
        else:
            rows = c.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            plan = "\n".join(str(r[-1]) for r in rows)
        c.rollback()
    return plan, "ix_deliveries_active_due" in plan


def bench_tick(kind: str, n: int, tmp: str, pg_base: str | None, opts, console_file: str, keep: bool = False,
               warm_up: bool = False) -> dict:
    settings = Settings(database_url="", timezone=TZ_NAME, env={"DUBAN_CONSOLE_FILE": console_file})
    db = Db(kind, tmp, f"tick{fmt_n(n)}", pg_base)
    try:
        if not warm_up:
            step(f"{kind} {fmt_n(n)}: bulk insert")
        seeded = seed_tick_db(db, n, settings)
        engine, due = db.engine, seeded["due"]
        now_ts = int(NOW.timestamp())
        channels = configured_channels(settings)
        dispatcher = Dispatcher(engine, channels, TZ, worker="bench")
        reps = 1 if warm_up else 3 if opts.quick else 5

        step(f"{kind} {fmt_n(n)}: claim")
        statement, params = capture_claim_select(engine, dispatcher, now_ts)
        reset_due(engine, due)
        plan, uses_index = explain(engine, statement, params)

        def run_select():
            with engine.connect() as c:  # the claim's transaction: on PostgreSQL FOR UPDATE SKIP LOCKED
                out = c.exec_driver_sql(statement, params).all()
                c.rollback()
            return out

        run_select()  # warm the page cache and the pool
        sel = [ms(timed(run_select)[0]) for _ in range(30 if opts.quick else 50)]
        got = len(run_select())

        claims = []
        for _ in range(reps):
            dt, ids = timed(lambda: dispatcher.claim(now_ts, limit=CLAIM_LIMIT))
            assert len(ids) == N_DUE, len(ids)
            claims.append(ms(dt))
            reset_due(engine, due)

        step(f"{kind} {fmt_n(n)}: ticks")
        sends = []
        for r in range(reps):
            dt, res = timed(lambda: tick(engine, settings, NOW, channels, worker="bench"))
            sent = sum(res.dispatched.sent.values())
            assert sent == N_DUE and not res.planned.deliveries, (sent, res)
            sends.append(ms(dt))
            if r < reps - 1:
                reset_due(engine, due)
        idle = []
        for _ in range(10 if opts.quick else 20):
            dt, res = timed(lambda: tick(engine, settings, NOW, channels, worker="bench"))
            assert not res.dispatched.sent and not res.planned.deliveries
            idle.append(ms(dt))
        out = {
            "kind": kind, "n": n, "insert_ms": [ms(seeded["insert_s"])], "select_ms": sel, "select_rows": got,
            "claim_ms": claims, "tick_ms": sends, "idle_ms": idle, "plan": plan, "uses_index": uses_index,
            "statement": statement,
        }
        if opts.profile and keep:
            out["profile_tick"] = (lambda: tick(engine, settings, NOW, channels, worker="bench"),
                                   lambda: reset_due(engine, due))
            out["profile_idle"] = (lambda: tick(engine, settings, NOW, channels, worker="bench"), None)
        if keep:
            out["db"] = db
        return out
    finally:
        if not keep:
            db.drop()


# --- 2. bulk reminders ---------------------------------------------------------------------------
def bulk_rule_text() -> str:
    people = [f"s{i:04d}" for i in range(BULK_PEOPLE)]
    lines = [f"timezone: {TZ_NAME}", "people:"]
    lines += [f"  {p}: {{name: 人员{i:04d}, email: {p}@example.cn}}" for i, p in enumerate(people)]
    lines += ["groups:", f"  staff: [{', '.join(people)}]", "rules:"]
    for r in range(BULK_RULES):
        lines += [f"  - id: weekly-{r}", f"    title: 每周工作台账 {r}", "    for_each: staff", "    every: week",
                  f"    due: {{weekday: {('wed', 'thu', 'fri')[r % 3]}}}", "    remind: [-2d, -1d, 0d]", '    at: "09:00"']
    return "\n".join(lines) + "\n"


def count_deliveries(engine) -> tuple[int, int]:
    now_ts = int(NOW.timestamp())
    with engine.connect() as c:
        total = c.scalar(select(func.count()).select_from(DeliveryRow))
        future = c.scalar(select(func.count()).select_from(DeliveryRow).where(DeliveryRow.due_at > now_ts))
    return total, future


def duban_bulk(kind: str, tmp: str, pg_base: str | None, rule_path: str, console_file: str, keep: bool) -> dict:
    settings = Settings(database_url="", timezone=TZ_NAME, env={"DUBAN_CONSOLE_FILE": console_file})
    db = Db(kind, tmp, "bulk", pg_base)
    try:
        def do_import():
            with open(rule_path, encoding="utf-8") as f:
                import_rules(db.engine, f.read(), rule_path)

        t_import, _ = timed(do_import)
        t_tick, res = timed(lambda: tick(db.engine, settings, NOW, worker="bench"))
        total, future = count_deliveries(db.engine)
        assert res.planned.deliveries == total, (res.planned, total)
        out = {"import_s": t_import, "tick_s": t_tick, "deliveries": total, "future": future,
               "occurrences": res.planned.occurrences, "sent": sum(res.dispatched.sent.values())}
        if keep:
            out["db"] = db
        return out
    finally:
        if not keep:
            db.drop()


def run_cli(args: list[str], env: dict[str, str], cwd: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(duban_exe() + args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"duban {' '.join(args)} failed ({p.returncode}):\n{p.stderr.decode(errors='replace')}")
    return dt


def cli_bulk(tmp: str, rule_path: str, console_file: str) -> dict:
    path = os.path.join(tmp, "bulk-cli.db")
    env = clean_env(DUBAN_DATABASE_URL=f"sqlite:///{path}", DUBAN_CONSOLE_FILE=console_file, DUBAN_TIMEZONE=TZ_NAME)
    run_cli(["init", "--no-pack", "--now", NOW_TEXT], env, tmp)
    t_import = run_cli(["rules", "import", rule_path, "--now", NOW_TEXT], env, tmp)
    t_tick = run_cli(["tick", "--now", NOW_TEXT], env, tmp)
    engine = make_engine(f"sqlite:///{path}")
    total, future = count_deliveries(engine)
    engine.dispose()
    return {"import_s": t_import, "tick_s": t_tick, "deliveries": total, "future": future}


def send_reminder(key: str, person: str) -> None:  # what each APScheduler job would call
    pass


def apscheduler_bulk(tmp: str, reminders: list[tuple[str, str, int]]) -> dict:
    """add_job for each reminder into a SQLAlchemyJobStore on a SQLite file, scheduler started paused."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    path = os.path.join(tmp, "apscheduler.db")
    sched = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{path}")}, timezone=TZ)
    sched.start(paused=True)  # jobs go straight to the store (a scheduler not started keeps them in memory)
    try:
        # the same reminders, moved by whole weeks so that they lie ahead of the wall clock too
        behind = datetime.now(TZ) - NOW
        shift = timedelta(weeks=behind.days // 7 + 1) if behind > timedelta(0) else timedelta(0)
        jobs = [(key, person, datetime.fromtimestamp(due_at, TZ) + shift) for key, person, due_at in reminders]
        tenth = max(len(jobs) // 10, 1)
        marks = []
        gc.collect()
        t0 = time.perf_counter()
        for i, (key, person, run_date) in enumerate(jobs):
            if i % tenth == 0:
                marks.append(time.perf_counter())
            sched.add_job(send_reminder, "date", run_date=run_date, args=(key, person), id=key)
        dt = time.perf_counter() - t0
        marks.append(time.perf_counter())
        stored_jobs = len(sched.get_jobs())
    finally:
        sched.shutdown(wait=False)
    sizes = [tenth] * (len(marks) - 2) + [len(jobs) - tenth * (len(marks) - 2)]
    rates = [(b - a) / k for a, b, k in zip(marks[:-1], marks[1:], sizes, strict=True) if k]
    return {"jobs": len(jobs), "seconds": dt, "mean_s": dt / len(jobs), "median_s": statistics.median(rates),
            "first_tenth_s": rates[0], "last_tenth_s": rates[-1], "stored": stored_jobs}


# --- 3. idle memory ------------------------------------------------------------------------------
def proc_status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def idle_rss(db_path: str, tmp: str, console_file: str, label: str) -> dict:
    err_path = os.path.join(tmp, f"run-{label}.log")
    env = clean_env(DUBAN_DATABASE_URL=f"sqlite:///{db_path}", DUBAN_CONSOLE_FILE=console_file,
                    DUBAN_TIMEZONE=TZ_NAME, DUBAN_LOG_LEVEL="INFO")
    with open(err_path, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(duban_exe() + ["run", "--interval", "60", "--now", NOW_TEXT], env=env, cwd=tmp,
                             stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while "督办服务已启动" not in Path(err_path).read_text(encoding="utf-8", errors="replace"):
            if p.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"duban run did not start ({p.poll()}):\n{Path(err_path).read_text(errors='replace')}")
            time.sleep(0.05)
        t_started = time.perf_counter() - t0
        # the first tick runs right after the startup line: wait until CPU time stops moving
        time.sleep(1.0)
        last, flat_since = cpu_ticks(p.pid), time.monotonic()
        while time.monotonic() - flat_since < 2.0 and time.monotonic() < deadline:
            time.sleep(0.25)
            now_ticks = cpu_ticks(p.pid)
            if now_ticks != last:
                last, flat_since = now_ticks, time.monotonic()
        st = proc_status(p.pid)
        rss = int(st["VmRSS"].split()[0]) / 1024
        hwm = int(st["VmHWM"].split()[0]) / 1024
        threads = int(st.get("Threads", "0"))
        log_text = Path(err_path).read_text(encoding="utf-8", errors="replace")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            code = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            code = p.wait()
    problems = [ln for ln in log_text.splitlines() if " ERROR " in ln or "Traceback" in ln]
    return {"rss_mb": rss, "hwm_mb": hwm, "threads": threads, "exit": code, "startup_s": t_started,
            "problems": problems}


def baseline_rss() -> list[tuple[str, float]]:
    """RSS of a bare interpreter after importing what `duban run` imports, step by step (for findings)."""
    code = r"""
import sys
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'):
            return int(line.split()[1]) / 1024
print('python', rss())
import sqlalchemy, sqlalchemy.orm; print('+ sqlalchemy', rss())
import pydantic, rules.loader; print('+ pydantic, rules.loader', rss())
import holidays; from rules.calendar import WorkCalendar; WorkCalendar().ensure(2025, 2027); print('+ holidays (2025-2027)', rss())
import jinja2, notifications.message; print('+ jinja2, notifications', rss())
import apscheduler.schedulers.blocking, apscheduler.triggers.cron; print('+ apscheduler', rss())
import scheduler.cli, scheduler.service, scheduler.tick, scheduler.digest; print('+ scheduler (all)', rss())
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env())
    out = []
    for line in p.stdout.splitlines():
        name, _, v = line.rpartition(" ")
        out.append((name, float(v)))
    if p.returncode:
        out.append((f"(failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode})", 0.0))
    return out


# --- main ----------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k / 100k only, fewer APScheduler jobs and repeats")
    ap.add_argument("--profile", action="store_true", help="cProfile (top 15) whatever misses its time target")
    ap.add_argument("--pg", default=os.environ.get("DUBAN_TEST_POSTGRES_URL") or PG_DEFAULT, help="PostgreSQL URL")
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    opts = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="duban-tick-bench-")
    try:
        bench(tmp, opts)
    finally:
        for db in Db.live:
            try:
                db.drop()
            except Exception as e:  # noqa: BLE001 - report and go on cleaning up
                print(f"could not drop {db.schema or db.url}: {e}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


def bench(tmp: str, opts: argparse.Namespace) -> None:
    load_before, psi_before = os.getloadavg()[0], cpu_pressure()
    sizes = QUICK_SIZES if opts.quick else SIZES
    console_file = os.path.join(tmp, "console.txt")
    pg_base = None if opts.no_pg else opts.pg
    pg_why = "--no-pg" if opts.no_pg else pg_available(pg_base)
    kinds = ["sqlite"] + (["postgresql"] if pg_why is None else [])
    if pg_why is not None:
        step(f"PostgreSQL skipped: {pg_why}")
        pg_base = None

    # 1. ticks (after an unreported small run per database: compiled-statement and template caches warm)
    for kind in kinds:
        step(f"{kind}: warm-up")
        bench_tick(kind, 1_000, tmp, pg_base, opts, console_file, warm_up=True)
    ticks: dict[tuple[str, int], dict] = {}
    for kind in kinds:
        for n in sizes:
            keep = n == sizes[-1]
            r = bench_tick(kind, n, tmp, pg_base, opts, console_file, keep=keep)
            ticks[(kind, n)] = r

    # 2. bulk reminders
    step("bulk reminders: duban")
    rule_path = os.path.join(tmp, "bulk-rules.yaml")
    Path(rule_path).write_text(bulk_rule_text(), encoding="utf-8")
    runs = [duban_bulk("sqlite", tmp, None, rule_path, console_file, keep=False) for _ in range(0 if opts.quick else 2)]
    runs.append(duban_bulk("sqlite", tmp, None, rule_path, console_file, keep=True))  # kept for 3.
    bulk = dict(runs[-1])
    best = min(runs, key=lambda r: r["import_s"] + r["tick_s"])
    bulk.update(import_s=best["import_s"], tick_s=best["tick_s"], runs=len(runs),
                all_s=[r["import_s"] + r["tick_s"] for r in runs])
    bulk_pg = duban_bulk("postgresql", tmp, pg_base, rule_path, console_file, keep=False) if pg_base else None
    step("bulk reminders: duban CLI")
    bulk_cli = cli_bulk(tmp, rule_path, console_file)
    n_aps = APS_JOBS_QUICK if opts.quick else APS_JOBS
    with bulk["db"].engine.connect() as c:
        reminders = c.execute(select(DeliveryRow.key, DeliveryRow.recipient, DeliveryRow.due_at)
                              .order_by(DeliveryRow.id).limit(n_aps)).all()
    step(f"bulk reminders: APScheduler, {n_aps:,} add_job calls")
    aps = apscheduler_bulk(tmp, [tuple(r) for r in reminders])
    aps_total = aps["median_s"] * bulk["future"]  # the median tenth: robust to bursts of load on the machine
    issue_total = APS_ISSUE_MS / 1000 * bulk["future"]

    # 3. idle memory
    step("idle memory: duban run")
    mem = []
    largest = ticks[("sqlite", sizes[-1])]
    mem.append((f"{fmt_n(sizes[-1])} deliveries (tick database)", idle_rss(largest["db"].path, tmp, console_file, "tick")))
    mem.append((f"{bulk['deliveries']:,} reminders from rules (bulk database)",
                idle_rss(bulk["db"].path, tmp, console_file, "bulk")))

    # --- report ----------------------------------------------------------------------------------
    missed: list[str] = []
    reps = "3" if opts.quick else "5"
    print(f"duban tick benchmark — now = {NOW_TEXT} {TZ_NAME}; {N_DUE} deliveries due, the rest pending over the next "
          f"year. Best of {reps} (claim, sending tick), {'10' if opts.quick else '20'} (idle tick), "
          f"{'30' if opts.quick else '50'} (SELECT); targets judged on the median at the largest size.")
    print()
    print("1. one tick, by the number of pending deliveries")
    big = fmt_n(sizes[-1])
    heads = ["database / figure", *(fmt_n(n) for n in sizes), f"{big}÷{fmt_n(sizes[0])}", f"median {big}", "target", ""]
    trows = []
    figures = [
        ("bulk insert (setup, once)", "insert_ms", None),
        (f"(a) claim SELECT, limit {BATCH}", "select_ms", None),
        (f"(a) Dispatcher.claim(limit={CLAIM_LIMIT}), {N_DUE} due", "claim_ms", None),
        (f"(b) tick sending {N_DUE} (console → file)", "tick_ms", TICK_TARGET_MS),
        ("(c) tick, nothing due (steady state)", "idle_ms", TICK_TARGET_MS),
    ]
    for kind in kinds:
        db_name = "SQLite" if kind == "sqlite" else "PostgreSQL"
        for name, key, target in figures:
            best = [min(ticks[(kind, n)][key]) for n in sizes]
            med = statistics.median(ticks[(kind, sizes[-1])][key])
            growth = best[-1] / best[0] if best[0] else float("nan")
            verdict = ""
            if target is not None:
                ok = med <= target
                verdict = "ok" if ok else "MISSED"
                if not ok:
                    missed.append(f"{db_name} {name.strip()}")
            trows.append([f"{db_name}: {name}", *(fmt_ms(v) for v in best), f"×{growth:.2f}", fmt_ms(med),
                          f"≤ {target:.0f} ms" if target else "—", verdict])
        trows.append([f"{db_name}: claim uses ix_deliveries_active_due",
                      *("yes" if ticks[(kind, n)]["uses_index"] else "NO" for n in sizes), "", "", "", ""])
    print_table(heads, trows)
    print(f"   per message sent, ((b) − (c)) / {N_DUE}, best: " + "; ".join(
        f"{'SQLite' if k == 'sqlite' else 'PostgreSQL'} "
        + " / ".join(f"{(min(ticks[(k, n)]['tick_ms']) - min(ticks[(k, n)]['idle_ms'])) / N_DUE:.2f}" for n in sizes)
        + " ms" for k in kinds) + f" (at {' / '.join(fmt_n(n) for n in sizes)})")

    print()
    print("2. bulk reminders (one rule import, SQLite unless said) and idle memory")
    srows = []
    duban_s = bulk["import_s"] + bulk["tick_s"]
    ratio, ratio_issue = aps_total / duban_s, issue_total / duban_s
    srows.append([f"duban: rules import + first tick, {bulk['future']:,} future reminders (best of {bulk['runs']})",
                  fmt_ms(ms(duban_s)), "", "", ""])
    srows.append(["    rules import (parse, validate, store)", fmt_ms(ms(bulk["import_s"])), "", "", ""])
    srows.append([f"    first tick (plans {bulk['occurrences']:,} occurrences, {bulk['deliveries']:,} deliveries)",
                  fmt_ms(ms(bulk["tick_s"])), "", "", ""])
    srows.append(["    per reminder; every run", f"{duban_s / bulk['future'] * 1e6:.1f} µs; "
                  + ", ".join(f"{v:.2f}" for v in bulk["all_s"]) + " s", "", "", ""])
    cli_s = bulk_cli["import_s"] + bulk_cli["tick_s"]
    srows.append([f"duban CLI: rules import + tick, wall incl. start-up ({bulk_cli['future']:,})", fmt_ms(ms(cli_s)),
                  "", f"{aps_total / cli_s:.0f}×", ""])
    if bulk_pg:
        pg_s = bulk_pg["import_s"] + bulk_pg["tick_s"]
        srows.append([f"duban, PostgreSQL: rules import + first tick ({bulk_pg['future']:,})", fmt_ms(ms(pg_s)), "",
                      f"{aps_total / pg_s:.0f}×", ""])
        srows.append(["    rules import; first tick", f"{fmt_ms(ms(bulk_pg['import_s']))}; "
                      f"{fmt_ms(ms(bulk_pg['tick_s']))}", "", "", ""])
    srows.append([f"APScheduler 3, SQLAlchemyJobStore (SQLite): add_job × {aps['jobs']:,}", fmt_ms(ms(aps["seconds"])),
                  "", "", ""])
    srows.append(["    per job: median tenth (mean; first / last tenth)", f"{aps['median_s'] * 1000:.2f} ms "
                  f"({aps['mean_s'] * 1000:.2f}; {aps['first_tenth_s'] * 1000:.2f} / {aps['last_tenth_s'] * 1000:.2f})",
                  "", "", ""])
    ok = ratio >= BULK_TARGET_RATIO
    if not ok:
        missed.append("bulk reminders vs APScheduler measured here")
    srows.append([f"APScheduler × {bulk['future']:,}, extrapolated from the median tenth", fmt_ms(ms(aps_total)),
                  f"≥ {BULK_TARGET_RATIO:.0f}× duban", f"{ratio:.0f}×", "ok" if ok else "MISSED"])
    ok = ratio_issue >= BULK_TARGET_RATIO
    if not ok:
        missed.append(f"bulk reminders vs the issue's {APS_ISSUE_MS} ms/job")
    srows.append([f"APScheduler × {bulk['future']:,} at the issue's {APS_ISSUE_MS} ms per job", fmt_ms(ms(issue_total)),
                  f"≥ {BULK_TARGET_RATIO:.0f}× duban", f"{ratio_issue:.0f}×", "ok" if ok else "MISSED"])
    for label, m in mem:
        ok = m["rss_mb"] <= RSS_TARGET_MB
        if not ok:
            missed.append(f"idle RSS, {label}")
        srows.append([f"duban run idle, VmRSS — {label}", f"{m['rss_mb']:.1f} MB", f"≤ {RSS_TARGET_MB:.0f} MB",
                      f"{m['rss_mb'] / RSS_TARGET_MB:.2f}", "ok" if ok else "MISSED"])
        srows.append(["    peak VmHWM; threads; start-up; exit code", f"{m['hwm_mb']:.1f} MB; {m['threads']}; "
                      f"{m['startup_s']:.1f} s; {m['exit']}", "", "", ""])
        for line in m["problems"][:3]:
            srows.append([f"    log: {line[:100]}", "", "", "", ""])
    print_table(["figure", "value", "target", "ratio", ""], srows)
    if aps["stored"] != aps["jobs"]:
        print(f"   warning: APScheduler store holds {aps['stored']} jobs, expected {aps['jobs']}")
    print()
    for kind in kinds:
        r = ticks[(kind, sizes[-1])]
        how = "EXPLAIN (ANALYZE, BUFFERS)" if kind == "postgresql" else "EXPLAIN QUERY PLAN"
        print(f"{how} of the claim SELECT, {kind}, {fmt_n(sizes[-1])} deliveries:")
        print("   " + " ".join(r["statement"].split()))
        for line in r["plan"].splitlines():
            print("   " + line)
        print()

    import apscheduler
    import sqlalchemy

    pgv = f", PostgreSQL {pg_version(pg_base)}" if pg_base else f" (PostgreSQL skipped: {pg_why})"
    print(f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{platform.python_implementation()} {platform.python_version()}; SQLAlchemy {sqlalchemy.__version__}, "
          f"APScheduler {apscheduler.__version__}, SQLite {sqlite3.sqlite_version}{pgv}; "
          f"temp dir on {fs_type(os.path.realpath(tmp))}")
    psi = f"; CPU pressure (PSI some avg60) {psi_before} → {cpu_pressure()}" if psi_before else ""
    print(f"load: load average {load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end{psi}"
          + ("  — other processes competed for the CPUs: timings may be inflated"
             if max(load_before, os.getloadavg()[0]) > (os.cpu_count() or 1) * 0.75 else ""))
    if missed:
        print("missed: " + "; ".join(missed) + ("" if opts.profile else "  (run with --profile for hotspots)"))

    if opts.profile:
        if any("tick sending" in m for m in missed):
            profile(f"tick sending {N_DUE}, SQLite {fmt_n(sizes[-1])}", *largest["profile_tick"])
            if "postgresql" in kinds:
                profile(f"tick sending {N_DUE}, PostgreSQL {fmt_n(sizes[-1])}",
                        *ticks[("postgresql", sizes[-1])]["profile_tick"])
        if any("nothing due" in m for m in missed):
            profile(f"idle tick, SQLite {fmt_n(sizes[-1])}", *largest["profile_idle"])
        if any("bulk reminders" in m for m in missed):
            profile("bulk reminders: rules import + first tick, SQLite",
                    lambda: duban_bulk("sqlite", tmp, None, rule_path, console_file, keep=False))
        if any("RSS" in m for m in missed) or max(m["rss_mb"] for _l, m in mem) > 0.8 * RSS_TARGET_MB:
            print("\n=== memory: RSS after each import, bare interpreter (what `duban run` carries before any work) ===")
            for name, v in baseline_rss():
                print(f"   {name:<32} {v:6.1f} MB")


def print_table(heads: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    print(line(heads))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))


if __name__ == "__main__":
    main()
