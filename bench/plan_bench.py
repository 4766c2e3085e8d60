"""Planning benchmark: a year of occurrences for 10,000 mixed rules, against a bare dateutil expansion.

    python bench/plan_bench.py            # print the figures
    python bench/plan_bench.py --profile  # and a cProfile (top 15 cumulative) of every missed target

The rule file is generated (seeded, so every run plans the same schedules) into a temporary directory.
The baseline is python-dateutil's rrule expanding the same schedules over 2026 with no holiday
adjustment; the planner is timed with its working-day adjustment and reminder days included.
Timings are the best of several runs (time.perf_counter). Nothing here asserts: it prints.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import redirect_stdout
from datetime import date, datetime

from common import duban_exe  # noqa: E402
from dateutil import __version__ as dateutil_version
from dateutil.rrule import FR, MO, MONTHLY, TH, TU, WE, WEEKLY, YEARLY, rrule

N_RULES = 10_000
SEED = 20260101
FIRST, LAST = date(2026, 1, 1), date(2026, 12, 31)
PLAN_TARGET_S = 0.5
CLI_TARGET_S = 2.0

# How many rules of each schedule (sums to N_RULES); weighted so that 2026 has about 144,000 occurrences.
MIX = {
    "month-nth-weekday": 4000,  # every: month, due: {weekday, nth 1..4}      12 a year
    "month-day": 2000,          # every: month, due: {day: 1..28 | last}      12 a year
    "quarter-end": 1000,        # every: quarter (no due / day: last)          4 a year
    "half-year": 750,           # every: half-year (end, or month + day)       2 a year
    "year": 1000,               # every: year, due: {month, day}               1 a year
    "week": 1250,               # every: week, due: {weekday}                 52–53 a year
}
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri")
DU_WEEKDAYS = (MO, TU, WE, TH, FR)
IF_HOLIDAY = ("next-workday", "previous-workday", "keep", None)  # None: the default (next-workday)
REMINDS = (("-3d", "-1d", "0d"), ("-1d", "0d"), ("-5wd", "-1wd", "0d"), ("0d",), ("-7d", "-2wd", "0d"), ())
ATS = ("09:00", "08:30", "14:00", None)


# --- the rules -----------------------------------------------------------------------------------
def make_rules(rng: random.Random) -> list[dict]:
    """Schedules as plain dicts: what goes in the YAML file and what the dateutil baseline expands."""
    kinds = [k for k, n in MIX.items() for _ in range(n)]
    rng.shuffle(kinds)
    out = []
    for i, kind in enumerate(kinds):
        r: dict = {"id": f"r{i:05d}", "kind": kind}
        if kind == "month-nth-weekday":
            r |= {"every": "month", "due": {"weekday": rng.randrange(5), "nth": rng.randint(1, 4)}}
        elif kind == "month-day":
            r |= {"every": "month", "due": {"day": "last" if rng.random() < 0.15 else rng.randint(1, 28)}}
        elif kind == "quarter-end":
            r |= {"every": "quarter", "due": {"day": "last"} if rng.random() < 0.5 else None}
        elif kind == "half-year":
            due = None if rng.random() < 0.5 else {"month": rng.randint(1, 6), "day": rng.randint(1, 28)}
            r |= {"every": "half-year", "due": due}
        elif kind == "year":
            r |= {"every": "year", "due": {"month": rng.randint(1, 12), "day": rng.randint(1, 28)}}
        else:
            r |= {"every": "week", "due": {"weekday": rng.randrange(5)}}
        r["if_holiday"] = rng.choice(IF_HOLIDAY)
        r["remind"] = rng.choice(REMINDS)
        r["at"] = rng.choice(ATS)
        out.append(r)
    return out


def _due_yaml(due: dict) -> str:
    parts = []
    for k, v in due.items():
        parts.append(f"{k}: {WEEKDAY_NAMES[v] if k == 'weekday' else v}")
    return "{" + ", ".join(parts) + "}"


def rule_file_text(rules: list[dict]) -> str:
    lines = [
        "timezone: Asia/Shanghai",
        "people:",
        "  secretary: {name: 王书记, email: secretary@example.cn}",
        "rules:",
    ]
    for r in rules:
        lines += [f"  - id: {r['id']}", f"    title: 基准规则 {r['id']}", "    owner: secretary",
                  "    escalate_to: [secretary]", f"    every: {r['every']}"]
        if r["due"]:
            lines.append(f"    due: {_due_yaml(r['due'])}")
        if r["if_holiday"]:
            lines.append(f"    if_holiday: {r['if_holiday']}")
        lines.append(f"    remind: [{', '.join(r['remind'])}]")
        if r["at"]:
            lines.append(f'    at: "{r["at"]}"')
    return "\n".join(lines) + "\n"


# --- the dateutil baseline -------------------------------------------------------------------------
def make_rrule(r: dict, start: datetime, until: datetime) -> rrule:
    """The same schedule as a dateutil rrule (the due date before any holiday adjustment)."""
    due, kw = r["due"] or {}, {"dtstart": start, "until": until, "cache": False}
    kind = r["kind"]
    if kind == "month-nth-weekday":
        return rrule(MONTHLY, byweekday=DU_WEEKDAYS[due["weekday"]](+due["nth"]), **kw)
    if kind == "month-day":
        return rrule(MONTHLY, bymonthday=-1 if due["day"] == "last" else due["day"], **kw)
    if kind == "quarter-end":
        return rrule(YEARLY, bymonth=(3, 6, 9, 12), bymonthday=-1, **kw)
    if kind == "half-year":
        if not due:
            return rrule(YEARLY, bymonth=(6, 12), bymonthday=-1, **kw)
        return rrule(YEARLY, bymonth=(due["month"], due["month"] + 6), bymonthday=due["day"], **kw)
    if kind == "year":
        return rrule(YEARLY, bymonth=due["month"], bymonthday=due["day"], **kw)
    return rrule(WEEKLY, byweekday=DU_WEEKDAYS[due["weekday"]], **kw)


# --- timing helpers ------------------------------------------------------------------------------
def best_of(n: int, fn) -> tuple[float, object]:
    """The fastest of n runs of fn(), and the last result."""
    best, result = float("inf"), None
    for _ in range(n):
        result = None  # the previous run's objects must not weigh on this one's garbage collection
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def step(text: str) -> None:
    print(f"… {text}", file=sys.stderr, flush=True)


def run_cli(args: list[str], env: dict[str, str], cwd: str, stdout=subprocess.DEVNULL) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    p = subprocess.run(duban_exe() + args, env=env, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"duban {' '.join(args)} failed ({p.returncode}):\n{p.stderr.decode(errors='replace')}")
    return dt, p.stdout or b""


def best_cli(n: int, args: list[str], env: dict[str, str], cwd: str) -> float:
    return min(run_cli(args, env, cwd)[0] for _ in range(n))


def profile(label: str, fn) -> None:
    prof = cProfile.Profile()
    with redirect_stdout(io.StringIO()):
        prof.enable()
        fn()
        prof.disable()
    s = io.StringIO()
    # the click and benchmark wrappers would fill the top of the list: leave them out
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(r"^(?!.*(click/|plan_bench\.py))", 15)
    print(f"\n=== cProfile: {label} (top 15 cumulative, click and bench wrappers left out) ===")
    print("\n".join(line for line in s.getvalue().splitlines() if line.strip()))


# --- main ------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", action="store_true", help="profile whatever misses its target")
    ap.add_argument("--no-cli", action="store_true", help="skip the command-line runs")
    opts = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="duban-bench-")
    try:
        bench(tmp, opts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench(tmp: str, opts: argparse.Namespace) -> None:
    rows: list[tuple[str, str, str, str, str]] = []  # figure, value, target, ratio, verdict
    missed: list[str] = []

    specs = make_rules(random.Random(SEED))
    text = rule_file_text(specs)
    rule_path = os.path.join(tmp, "rules.yaml")
    with open(rule_path, "w", encoding="utf-8") as f:
        f.write(text)

    step("dateutil baseline")
    # 1. baseline: dateutil expansion of the same schedules, no adjustment
    start, until = datetime.combine(FIRST, datetime.min.time()), datetime.combine(LAST, datetime.min.time())
    t_build, rrules = best_of(3, lambda: [make_rrule(r, start, until) for r in specs])
    t_base, expanded = best_of(5, lambda: [list(rr) for rr in rrules])
    n_base = sum(map(len, expanded))
    keep = {r["id"] for r in specs if r["if_holiday"] == "keep"}
    base_keep = Counter((r["id"], d.date()) for r, ds in zip(specs, expanded, strict=True) if r["id"] in keep for d in ds)
    del expanded
    t_base_all, _ = best_of(3, lambda: [list(make_rrule(r, start, until)) for r in specs])

    # 2. parse + validate (once; imports of pydantic etc. are already done or counted here)
    from rules.calendar import WorkCalendar
    from rules.loader import parse_rule_text

    step("parse")
    t0 = time.perf_counter()
    rs = parse_rule_text(text, rule_path)
    t_parse = time.perf_counter() - t0
    assert len(rs.rules) == N_RULES, len(rs.rules)

    from rules.planner import Planner

    def plan(cal):
        return Planner(cal, rs.groups).plan(rs.rules, FIRST, LAST)

    step("planner")
    # 3a. cold: the very first calendar in this process (includes `import holidays` and building 2025–2027)
    holidays_loaded = "holidays" in sys.modules
    t0 = time.perf_counter()
    occs = plan(WorkCalendar())
    t_cold_first = time.perf_counter() - t0
    # 3b. cold, module already imported: a fresh WorkCalendar each run
    del occs
    t_cold, _ = best_of(5, lambda: plan(WorkCalendar()))
    # 3c. warm calendar, fresh Planner each run
    cal = WorkCalendar()
    cal.ensure(FIRST.year - 1, LAST.year + 1)
    t_plan, occs = best_of(5, lambda: plan(cal))
    n_occ = len(occs)
    # diagnostic: the same with the garbage collector paused (how much of the plan is GC)
    gc.disable()
    try:
        t_plan_nogc, _ = best_of(5, lambda: plan(cal))
    finally:
        gc.enable()
    # 3d. the reminder instants (what the JSON output prints)
    t_rem, _ = best_of(5, lambda: [o.reminders for o in occs])
    n_rem = sum(len(o.reminder_days) for o in occs)

    # 3e. the JSON rendering the CLI does, in process (to explain the CLI figure)
    from scheduler.cli.rules import _occ_json
    from scheduler.output import print_json

    by_id = {r.id: r for r in rs.rules}

    def render():
        with redirect_stdout(io.StringIO()) as buf:
            print_json([_occ_json(o, by_id.get(o.rule)) for o in occs])
        return buf.getvalue()

    t_json, out_json = best_of(3, render)

    # cross-check: for `if_holiday: keep` rules the planner's dues are exactly dateutil's dates
    planner_keep = Counter((o.rule, o.due) for o in occs if o.rule in keep)
    agree = planner_keep == base_keep

    def fmt_s(s: float) -> str:
        return f"{s * 1000:7.1f} ms" if s < 1 else f"{s:7.2f} s "

    def ratio(s: float) -> str:
        return f"{s / t_base:6.2f}×"

    def add(fig: str, s: float, target: str = "—", ok: bool | None = None, extra: str = "") -> None:
        verdict = "" if ok is None else ("ok" if ok else "MISSED")
        if ok is False:
            missed.append(fig)
        rows.append((fig, fmt_s(s) + extra, target, ratio(s), verdict))

    per = lambda s, n: f"  ({s / n * 1e6:5.2f} µs/occ)"  # noqa: E731
    add("dateutil: build 10k rrules", t_build)
    add("dateutil: expand 2026 (baseline)", t_base, extra=per(t_base, n_base))
    add("dateutil: build + expand", t_base_all, extra=per(t_base_all, n_base))
    add("parse + validate rule file", t_parse)
    add("plan, cold (first; +import holidays)" if not holidays_loaded else "plan, cold (first calendar)",
        t_cold_first, extra=per(t_cold_first, n_occ))
    add("plan, cold (fresh WorkCalendar)", t_cold, extra=per(t_cold, n_occ))
    plan_target = min(PLAN_TARGET_S, t_base)
    add("plan, warm calendar (the target)", t_plan, f"≤ {plan_target * 1000:.0f} ms",
        t_plan <= plan_target, per(t_plan, n_occ))
    add("  (same, garbage collector paused)", t_plan_nogc, extra=per(t_plan_nogc, n_occ))
    add("occurrence .reminders, all", t_rem, extra=f"  ({n_rem} instants)")
    add("plan + .reminders", t_plan + t_rem, extra=per(t_plan + t_rem, n_occ))
    add("JSON rendering in process", t_json, extra=f"  ({len(out_json) / 1e6:.1f} MB)")

    # 4. the command line, end to end
    n_cli = n_db = None
    if not opts.no_cli:
        step("command line (each run takes a while)")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
        env_nodb = dict(env, DUBAN_DATABASE_URL=f"sqlite:///{os.path.join(tmp, 'absent.db')}")
        preview = ["preview", "--from", FIRST.isoformat(), "--to", LAST.isoformat(), "--format", "json"]
        _, out = run_cli(preview + ["--rules", rule_path], env_nodb, tmp, stdout=subprocess.PIPE)  # warm-up, check
        n_cli = len(json.loads(out))
        assert not os.path.exists(os.path.join(tmp, "absent.db")), "preview --rules created a database"
        t_cli = best_cli(3, preview + ["--rules", rule_path], env_nodb, tmp)
        add("duban preview --rules F --format json", t_cli, f"≤ {CLI_TARGET_S:.0f} s", t_cli <= CLI_TARGET_S)
        t_help = best_cli(3, ["--version"], env_nodb, tmp)
        add("  (duban --version: start-up alone)", t_help)

        env_db = dict(env, DUBAN_DATABASE_URL=f"sqlite:///{os.path.join(tmp, 'bench.db')}")
        run_cli(["init", "--no-pack"], env_db, tmp)
        t_import, _ = run_cli(["rules", "import", rule_path], env_db, tmp)
        t_reimport, _ = run_cli(["rules", "import", rule_path], env_db, tmp)
        _, out = run_cli(preview, env_db, tmp, stdout=subprocess.PIPE)
        n_db = len(json.loads(out))
        t_cli_db = best_cli(3, preview, env_db, tmp)
        add("duban rules import F (new database)", t_import)
        add("duban rules import F (again, unchanged)", t_reimport)
        add("duban preview --format json (database)", t_cli_db, f"≤ {CLI_TARGET_S:.0f} s", t_cli_db <= CLI_TARGET_S)

    # 5. the table
    mix = ", ".join(f"{k} {v}" for k, v in MIX.items())
    print(f"duban planning benchmark — {N_RULES:,} rules ({mix}), {FIRST} … {LAST}")
    print(f"occurrences: planner {n_occ:,}; dateutil (unadjusted) {n_base:,}"
          + (f"; preview --rules {n_cli:,}" if n_cli is not None else "")
          + (f"; preview from database {n_db:,}" if n_db is not None else ""))
    print(f"cross-check, {len(keep):,} `if_holiday: keep` rules: planner dues == dateutil dates: {'yes' if agree else 'NO'}")
    print(f"rule file: {len(text) / 1e6:.2f} MB, {text.count(chr(10)):,} lines; best of 5 (plan, dateutil), 3 (CLI)")
    print()
    heads = ("figure", "value", "target", "÷ baseline", "")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    print(line(heads))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))
    print()
    print(f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{platform.python_implementation()} {platform.python_version()}, dateutil {dateutil_version}")
    if missed:
        print("missed: " + "; ".join(missed) + ("" if opts.profile else "  (run with --profile for hotspots)"))

    if opts.profile:
        if any(m.startswith("plan") for m in missed):
            profile("Planner.plan, warm calendar", lambda: plan(cal))
        if any(m.startswith("duban") for m in missed):
            from scheduler.cli import main as cli_main

            os.environ["DUBAN_DATABASE_URL"] = f"sqlite:///{os.path.join(tmp, 'absent.db')}"
            args = ["preview", "--from", FIRST.isoformat(), "--to", LAST.isoformat(), "--format", "json",
                    "--rules", rule_path]
            profile("duban preview --rules F --format json (in process, warm imports)", lambda: cli_main(args))
            os.environ["DUBAN_DATABASE_URL"] = f"sqlite:///{os.path.join(tmp, 'bench.db')}"
            profile("duban preview --format json from the database (in process)", lambda: cli_main(args[:-2]))


if __name__ == "__main__":
    main()
