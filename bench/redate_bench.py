"""Re-dating benchmark: importing the 2027 notice with ~100,000 open occurrences stored, ~a tenth of which move.

    python bench/redate_bench.py              # ~100,000 open occurrences, SQLite and PostgreSQL
    python bench/redate_bench.py --quick      # ~10,000 open occurrences
    python bench/redate_bench.py --profile    # and a cProfile (top 15) of every missed time target
    python bench/redate_bench.py --no-pg      # SQLite only (PostgreSQL: --pg URL or DUBAN_TEST_POSTGRES_URL)

The data set is made by the product itself, in process (no CLI): a seeded rule file of ~3,000 rules
(weekly, monthly and quarterly schedules; most with `for_each` over groups of 10–60 people without
addresses, the rest owned by one person) is stored with scheduler.store.import_ruleset, and
Materializer.run(force=True) at 2027-01-25 09:00 (Asia/Shanghai) plans every occurrence due from the
rules' start (2027-01-01) to the 45-day horizon, with its pending reminder deliveries (bulk
INSERT … ON CONFLICT DO NOTHING, 500 rows a statement). The `holidays` library knows no official 2027
arrangement yet, so all of these are provisional. PostgreSQL gets ANALYZE after the load.

Before timing, the occurrences that must move are counted independently: every rule planned again
under the library calendar plus the invented 2027 notice (tests/test_notice.py, NOTICE_2027_INVENTED:
Spring Festival 5–13 Feb instead of the library's 5–10 Feb, 31 Jan and 20 Feb worked) and compared with
the stored due dates. Then, as `duban calendar import 2027.txt` does it: one transaction with
import_year(parsed notice) and the commit, timed (time.perf_counter; the CPU time of this process,
time.process_time, beside it: on a shared machine the wall time includes waiting for a CPU, and on
PostgreSQL the server's work is not in it) — the re-dating figure; then the same import again in a new
transaction (the no-op: the year is already stored as it is).

Nothing here asserts a timing: the figures are printed with the targets of the issue beside them.
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
import sys
import tempfile
import time
from collections import Counter
from contextlib import redirect_stdout
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from rules.calendar import WorkCalendar
from rules.loader import parse_rule_text
from rules.notice import parse_notice
from rules.planner import Planner
from scheduler.calendar_import import import_year
from scheduler.db import session_scope
from scheduler.materialize import Materializer, effective_start
from scheduler.models import CalendarYearRow, DeliveryRow, OccurrenceRow, RuleChangeRow, RuleRow
from scheduler.store import import_ruleset, load_calendar, load_events, load_ruleset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import Db, fs_type, pg_available, pg_version  # noqa: E402
from test_notice import NOTICE_2027_INVENTED  # noqa: E402 - the invented 2027 notice the tests use

TZ_NAME = "Asia/Shanghai"
TZ = ZoneInfo(TZ_NAME)
MATERIALIZE_AT = datetime(2027, 1, 25, 9, 0, tzinfo=TZ)  # a Monday: the service has planned up to ~11 March
IMPORT_AT = datetime(2027, 1, 26, 10, 0, tzinfo=TZ)  # the notice arrives the next morning
RULE_START = date(2027, 1, 1)
SEED = 20270126
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

REDATE_TARGET_S = 5.0
NOOP_TARGET_S = 0.05  # "close to zero"

# (full, quick): the rule mix. Occurrences per rule between 2027-01-01 and the horizon (~11 March):
# a weekly rule ~10, a monthly rule ~2–3, a quarterly one (due in the quarter's first two months) 1–2;
# for_each rules multiply that by the group's size.
SCALE = {
    False: dict(people=2000, groups=60, group_size=(10, 60), fe_week=150, fe_month=500, fe_quarter=100,
                one_week=500, one_month=1500, one_quarter=250),
    True: dict(people=200, groups=6, group_size=(10, 60), fe_week=15, fe_month=50, fe_quarter=10,
               one_week=50, one_month=150, one_quarter=25),
}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
IF_HOLIDAY = ("next-workday",) * 6 + ("previous-workday",) * 3 + ("keep",)
REMINDS = ("[-1d, 0d]", "[-3d, 0d]", "[-2wd, 0d]", "[0d]", "[-1wd]", "[-5d, -1d, 0d]")


# --- small helpers -------------------------------------------------------------------------------
def step(msg: str) -> None:
    print(f"… {msg}", file=sys.stderr, flush=True)


def fmt_s(v: float) -> str:
    return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"


def print_table(heads: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    print(line(heads))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))


def profile_report(label: str, prof: cProfile.Profile) -> None:
    for order in ("cumulative", "tottime"):
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats(order).print_stats(r"^(?!.*redate_bench\.py)", 15)
        print(f"\n=== cProfile: {label} (top 15 by {order}) ===")
        lines = s.getvalue().splitlines()
        start = next((i for i, ln in enumerate(lines) if "function calls" in ln), 0)
        print("\n".join(ln for ln in lines[start:] if ln.strip()))


# --- the rule file -------------------------------------------------------------------------------
def rule_text(quick: bool) -> str:
    sc = SCALE[quick]
    rng = random.Random(SEED)
    people = [f"u{i:04d}" for i in range(sc["people"])]
    lines = [f"timezone: {TZ_NAME}", "people:"]
    lines += [f"  {p}: {{name: 成员{p[1:]}}}" for p in people]  # no email, WeCom or mobile: reminders go to the log
    lines.append("groups:")
    groups = [f"g{i:02d}" for i in range(sc["groups"])]
    for g in groups:
        lines.append(f"  {g}: [{', '.join(rng.sample(people, rng.randint(*sc['group_size'])))}]")
    lines.append("rules:")

    def due(every: str) -> str:
        r = rng.random()
        if every == "week":
            if r < 0.75:
                return f"{{weekday: {rng.choice(WEEKDAYS)}}}"
            return f"{{workday: {rng.choice((1, 2, 3, -1))}}}"
        if every == "month":
            if r < 0.5:
                return f"{{day: {rng.choice(('last', *range(1, 29)))}}}"
            if r < 0.8:
                return f"{{weekday: {rng.choice(WEEKDAYS)}, nth: {rng.randint(1, 4)}}}"
            return f"{{workday: {rng.choice((1, 2, 3, 5, 8, 10, -1))}}}"
        return f"{{month: {rng.randint(1, 2)}, day: {rng.randint(1, 28)}}}"

    n = 0
    for every, fe_count, one_count in (("week", sc["fe_week"], sc["one_week"]),
                                       ("month", sc["fe_month"], sc["one_month"]),
                                       ("quarter", sc["fe_quarter"], sc["one_quarter"])):
        for who in ["for_each"] * fe_count + ["owner"] * one_count:
            n += 1
            target = rng.choice(groups) if who == "for_each" else rng.choice(people)
            lines += [f"  - id: r{n:05d}", f"    title: 基准事项 {n}", f"    {who}: {target}", f"    every: {every}",
                      f"    due: {due(every)}", f"    if_holiday: {rng.choice(IF_HOLIDAY)}",
                      f"    remind: {rng.choice(REMINDS)}", f'    at: "{rng.choice(("09:00", "14:30"))}"',
                      f"    start: {RULE_START.isoformat()}"]
    return "\n".join(lines) + "\n"


# --- databases -----------------------------------------------------------------------------------


# --- the data set --------------------------------------------------------------------------------
def build(kind: str, tmp: str, pg_base: str | None, rules_yaml: str) -> tuple[Db, dict]:
    """Migrated database, rules imported, occurrences and reminders planned by the materializer."""
    db = Db(kind, tmp, "redate", pg_base)
    rs = parse_rule_text(rules_yaml, "redate-bench.yaml")
    t0 = time.perf_counter()
    with session_scope(db.engine) as s:
        import_ruleset(s, rs, now=MATERIALIZE_AT, origin="redate-bench.yaml")
    t1 = time.perf_counter()
    with session_scope(db.engine) as s:
        planned = Materializer(s, MATERIALIZE_AT, TZ).run(force=True)
    t2 = time.perf_counter()
    if kind == "postgresql":
        with db.engine.begin() as c:
            c.execute(text("ANALYZE"))
    with db.engine.connect() as c:
        open_ = c.scalar(select(func.count()).select_from(OccurrenceRow).where(OccurrenceRow.state == "open"))
        prov = c.scalar(select(func.count()).select_from(OccurrenceRow).where(OccurrenceRow.provisional.is_(True)))
        pending = c.scalar(select(func.count()).select_from(DeliveryRow).where(DeliveryRow.status == "pending"))
    return db, {"rules": len(rs.rules), "people": len(rs.people), "import_s": t1 - t0, "materialize_s": t2 - t1,
                "occurrences": planned.occurrences, "open": open_, "provisional": prov, "pending": pending}


def expected_moves(engine, notice) -> tuple[int, Counter]:
    """Open occurrences whose due date differs once the notice is in: planned independently of redate.py."""
    with Session(engine) as s:
        stored_due = dict(s.execute(select(OccurrenceRow.key, OccurrenceRow.due).where(OccurrenceRow.state == "open")).all())
        cal = load_calendar(s)
        rs = load_ruleset(s, only_enabled=True)
        added = {r.id: r.added_on for r in s.scalars(select(RuleRow))}
        events = load_events(s, TZ)
    cal = WorkCalendar([*cal.overrides.values(), notice])
    rules = [dataclasses.replace(r, start=effective_start(r, added[r.id])) for r in rs.rules]
    planned = {o.key: o.due for o in Planner(cal, rs.groups).plan(rules, date(2026, 11, 1), date(2027, 5, 31), events)}
    moved = [(k, d, planned[k]) for k, d in stored_due.items() if k in planned and planned[k] != d]
    return len(moved), Counter(f"{old:%m-%d}→{new:%m-%d}" for _k, old, new in moved)


def run_import(engine, notice, prof: cProfile.Profile | None = None) -> dict:
    """One `duban calendar import`: a transaction with import_year and its commit."""
    gc.collect()
    s = Session(engine, expire_on_commit=False)
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        with redirect_stdout(io.StringIO()):
            res = import_year(s, notice, NOTICE_2027_INVENTED, IMPORT_AT, TZ)
        t1 = time.perf_counter()
        s.commit()
        t2, c2 = time.perf_counter(), time.process_time()
        if prof:
            prof.disable()
    finally:
        s.close()
    red = res.redated
    return {"call_s": t1 - t0, "commit_s": t2 - t1, "total_s": t2 - t0, "cpu_s": c2 - c0, "changed": res.changed,
            "moved": len(red.shifts) if red else 0, "unflagged": red.unflagged if red else 0}


def after_counts(engine) -> dict:
    with engine.connect() as c:
        return {
            "redated_audit": c.scalar(select(func.count()).select_from(RuleChangeRow)
                                      .where(RuleChangeRow.action == "redated")),
            "redate_notices": c.scalar(select(func.count()).select_from(DeliveryRow).where(DeliveryRow.kind == "redate")),
            "skipped": c.scalar(select(func.count()).select_from(DeliveryRow).where(DeliveryRow.status == "skipped")),
            "provisional": c.scalar(select(func.count()).select_from(OccurrenceRow)
                                    .where(OccurrenceRow.provisional.is_(True), OccurrenceRow.state == "open")),
            "year_stored": c.scalar(select(func.count()).select_from(CalendarYearRow)),
        }


def bench_db(kind: str, tmp: str, pg_base: str | None, rules_yaml: str, notice, want_profile: bool) -> dict:
    step(f"{kind}: building the data set (import_ruleset + Materializer.run)")
    db, info = build(kind, tmp, pg_base, rules_yaml)
    try:
        step(f"{kind}: {info['open']:,} open occurrences, {info['pending']:,} pending deliveries "
             f"(materialize {info['materialize_s']:.1f} s); counting expected moves")
        info["expected_moved"], info["moves"] = expected_moves(db.engine, notice)
        step(f"{kind}: importing the 2027 notice (timed)")
        first = run_import(db.engine, notice)
        step(f"{kind}: re-dating took {first['total_s']:.2f} s; importing it again (no-op)")
        noop = run_import(db.engine, notice)
        info |= {"first": first, "noop": noop, "after": after_counts(db.engine)}
    finally:
        db.drop()
    if want_profile and first["total_s"] > REDATE_TARGET_S:
        step(f"{kind}: profiling the re-dating on a fresh copy of the data set")
        db, _ = build(kind, tmp, pg_base, rules_yaml)
        try:
            prof = cProfile.Profile()
            r = run_import(db.engine, notice, prof)
            info["profile"] = (prof, r["total_s"])
        finally:
            db.drop()
    return info


# --- main ----------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="~10,000 open occurrences instead of ~100,000")
    ap.add_argument("--profile", action="store_true", help="cProfile (top 15) of a re-dating that misses its target")
    ap.add_argument("--pg", default=os.environ.get("DUBAN_TEST_POSTGRES_URL") or PG_DEFAULT, help="PostgreSQL URL")
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    opts = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="duban-redate-bench-")
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
    load_before = os.getloadavg()[0]
    pg_base = None if opts.no_pg else opts.pg
    pg_why = "--no-pg" if opts.no_pg else pg_available(pg_base)
    kinds = ["sqlite"] + (["postgresql"] if pg_why is None else [])
    if pg_why is not None:
        step(f"PostgreSQL skipped: {pg_why}")
        pg_base = None
    notice = parse_notice(NOTICE_2027_INVENTED, "2027.txt")
    rules_yaml = rule_text(opts.quick)
    results = {kind: bench_db(kind, tmp, pg_base, rules_yaml, notice, opts.profile) for kind in kinds}

    import sqlalchemy

    cpus = f"{os.cpu_count()} CPUs"
    machines = {"sqlite": f"SQLite {sqlite3.sqlite_version}, file on {fs_type(os.path.realpath(tmp))}, {cpus}",
                "postgresql": f"PostgreSQL {pg_version(pg_base)} local, {cpus}" if pg_base else ""}
    first_info = next(iter(results.values()))
    print(f"duban re-dating benchmark — {first_info['rules']:,} rules, {first_info['people']:,} people without "
          f"addresses; materialized at {MATERIALIZE_AT:%Y-%m-%d %H:%M}, the invented 2027 notice imported at "
          f"{IMPORT_AT:%Y-%m-%d %H:%M} {TZ_NAME}")
    print()
    rows, missed = [], []
    for kind, r in results.items():
        name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[kind]
        f, n, a = r["first"], r["noop"], r["after"]
        share = f["moved"] / r["open"] if r["open"] else 0.0
        rows += [
            [f"{name}: open occurrences (provisional)", f"{r['open']:,} ({r['provisional']:,})", "~100,000", machines[kind]],
            [f"{name}: pending deliveries", f"{r['pending']:,}", "", machines[kind]],
            [f"{name}: occurrences moved (expected)", f"{f['moved']:,} = {share:.1%} ({r['expected_moved']:,})",
             "~10%", machines[kind]],
            [f"{name}: no longer provisional, same date", f"{f['unflagged']:,}", "", machines[kind]],
            [f"{name}: re-dating import (import_year + commit)", f"{fmt_s(f['total_s'])} "
             f"({fmt_s(f['call_s'])} + {fmt_s(f['commit_s'])}; CPU {fmt_s(f['cpu_s'])})", f"≤ {REDATE_TARGET_S:.0f} s",
             machines[kind]],
            [f"{name}: no-op re-import (import_year + commit)", f"{fmt_s(n['total_s'])} (CPU {fmt_s(n['cpu_s'])})", "≈ 0",
             machines[kind]],
        ]
        if f["total_s"] > REDATE_TARGET_S:
            missed.append(f"{name} re-dating {fmt_s(f['total_s'])} > {REDATE_TARGET_S:.0f} s")
        if n["total_s"] > NOOP_TARGET_S:
            missed.append(f"{name} no-op {fmt_s(n['total_s'])} > {fmt_s(NOOP_TARGET_S)}")
        if f["moved"] != r["expected_moved"] or n["changed"] or n["moved"]:
            missed.append(f"{name}: moved {f['moved']} but expected {r['expected_moved']}; no-op changed={n['changed']}")
        if a["provisional"] or a["redated_audit"] != f["moved"]:
            missed.append(f"{name}: after import {a['provisional']} still provisional, {a['redated_audit']} audit rows")
    print_table(["figure", "value", "target", "machine"], rows)
    print()
    for kind, r in results.items():
        top = ", ".join(f"{k} ×{v:,}" for k, v in r["moves"].most_common(6))
        a = r["after"]
        print(f"{kind}: setup import_ruleset {fmt_s(r['import_s'])}, materialize {fmt_s(r['materialize_s'])}; "
              f"moves {top}; after: {a['redate_notices']:,} 截止日期调整 notices, {a['skipped']:,} reminders skipped")
    print(f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{platform.python_implementation()} {platform.python_version()}; SQLAlchemy {sqlalchemy.__version__}; "
          f"load average {load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    if missed:
        print("missed: " + "; ".join(missed) + ("" if opts.profile else "  (run with --profile for hotspots)"))
    for kind, r in results.items():
        if "profile" in r:
            prof, secs = r["profile"]
            profile_report(f"re-dating import, {kind} (profiled run {fmt_s(secs)})", prof)


if __name__ == "__main__":
    main()
