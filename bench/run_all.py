"""Run every benchmark and write the report: bench/RESULTS.md, and the same table in README.md.

    python bench/run_all.py            # the full runs (several minutes)
    python bench/run_all.py --quick    # smaller data sets, for a quick look

Each benchmark prints its own table (figure, value, target, ratio against the baseline measured in
the same run); this collects them with the machine they ran on. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCHES = [
    ("规划：10,000 条规则的一年（对照 dateutil 展开）", "plan_bench.py", [], ["--no-cli"]),
    ("命令行与服务：--help、1 万条规则的 status、空闲内存与 CPU", "cli_bench.py", [], ["--quick"]),
    ("调度：100 万条待发记录中找出到期的 100 条（对照 APScheduler 逐条建任务）", "tick_bench.py", [], ["--quick"]),
    ("日历导入：10 万个未办结事项的重新计算", "redate_bench.py", [], ["--quick"]),
    ("全区：500 个支部 × 25 条规则、两年历史", "district_bench.py", [], ["--quick"]),
]
START, END = "<!-- bench-results -->", "<!-- /bench-results -->"


def machine() -> str:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.platform()}，{os.cpu_count()} 核 {cpu}，Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    opts = ap.parse_args()
    parts = [f"测得于 {datetime.now():%Y-%m-%d %H:%M}，机器：{machine()}"
             f"{'（--quick：较小的数据集）' if opts.quick else ''}。", ""]
    for title, script, full_args, quick_args in BENCHES:
        if not (HERE / script).exists():
            continue
        args = [*full_args, *(quick_args if opts.quick else [])]
        print(f"== {script} {' '.join(args)}", flush=True)
        t = time.perf_counter()
        p = subprocess.run([sys.executable, str(HERE / script), *args], cwd=ROOT, capture_output=True, text=True)
        took = time.perf_counter() - t
        out = p.stdout.strip() if p.returncode == 0 else f"(失败，退出码 {p.returncode})\n{p.stderr.strip()[-2000:]}"
        print(out, flush=True)
        parts += [f"### {title}", "", f"`python bench/{script} {' '.join(args)}`（用时 {took:.0f} 秒）", "", "```",
                  out, "```", ""]
    report = "\n".join(parts)
    (HERE / "RESULTS.md").write_text("# 性能测试结果\n\n" + report + "\n", encoding="utf-8")
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _m: f"{START}\n{report}\n{END}", text,
                      flags=re.S)
        readme.write_text(text, encoding="utf-8")
    print("\n已写入 bench/RESULTS.md" + ("，并更新 README.md" if START in text else ""))


if __name__ == "__main__":
    main()
