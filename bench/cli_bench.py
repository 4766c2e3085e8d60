"""Command-line and service figures: `duban --help`, `duban status` with 10,000 rules, and the
service's idle memory and CPU.

    python bench/cli_bench.py [--quick]

Targets (issue 6): --help ≤ 150 ms, status ≤ 300 ms with 10,000 rules, idle service ≤ 80 MB RSS
and CPU near zero. Timings are medians of repeated runs of the real command in a child process.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_bench import SEED, make_rules, rule_file_text  # noqa: E402 - the same 10,000 rules

NOW = "2026-12-14T09:05"


def duban(args: list[str], env: dict[str, str], cwd: str) -> float:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "scheduler.cli", *args], env=env, cwd=cwd, capture_output=True)
    if p.returncode not in (0,):
        raise SystemExit(f"duban {' '.join(args)} failed: {p.stderr.decode()[:500]}")
    return time.perf_counter() - t


def median_of(n: int, args: list[str], env: dict[str, str], cwd: str) -> float:
    return statistics.median(duban(args, env, cwd) for _ in range(n))


def proc_stat(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds so far) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / ticks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, a shorter idle period")
    opts = ap.parse_args()
    reps = 5 if opts.quick else 20
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")},
               "DUBAN_DATABASE_URL": f"sqlite:///{tmp}/duban.db", "DUBAN_CONSOLE_FILE": f"{tmp}/messages.log"}
        rows.append(("duban --help", f"{median_of(reps, ['--help'], env, tmp) * 1000:.0f} ms", "≤ 150 ms"))
        Path(tmp, "rules.yaml").write_text(rule_file_text(make_rules(random.Random(SEED))), encoding="utf-8")
        duban(["init", "--no-pack"], env, tmp)
        t = duban(["rules", "import", "rules.yaml", "--now", "2026-12-01T09:00"], env, tmp)
        rows.append(("rules import (10,000 rules)", f"{t:.2f} s", "—"))
        first = duban(["status", "--format", "json", "--now", NOW], env, tmp)
        rows.append(("status, first of the day (plans 10,000 rules)", f"{first * 1000:.0f} ms", "—"))
        later = median_of(reps, ["status", "--format", "json", "--now", NOW], env, tmp)
        rows.append(("status with 10,000 rules", f"{later * 1000:.0f} ms", "≤ 300 ms"))
        tick = duban(["tick", "--now", NOW], env, tmp)
        rows.append(("tick sending the day's messages to the console file", f"{tick:.2f} s", "—"))

        # the service, idle: ticks that find nothing to do
        idle_s = 20 if opts.quick else 60
        svc = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "run", "--now", NOW, "--interval", "2"],
                               env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(6)  # start-up and the first tick
            rss0, cpu0 = proc_stat(svc.pid)
            time.sleep(idle_s)
            rss1, cpu1 = proc_stat(svc.pid)
        finally:
            svc.send_signal(signal.SIGTERM)
            svc.communicate(timeout=60)
        ticks = idle_s / 2
        rows.append(("service idle RSS (10,000 rules stored)", f"{rss1:.0f} MB", "≤ 80 MB"))
        per_tick = (cpu1 - cpu0) / ticks
        rows.append(("service idle CPU per tick", f"{per_tick * 1000:.1f} ms", "near zero"))
        rows.append(("service idle CPU over 10 minutes (1 tick/min)", f"{per_tick * 10:.2f} s of CPU (0.0{per_tick * 10 / 6:.0f} %)",
                     "near zero"))
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'value':<28}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<28}  {target}")
    print(f"\nmachine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
