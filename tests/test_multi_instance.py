"""Several `duban run` processes on one PostgreSQL database: the work is shared, no message is sent
twice, the digest goes out once a day, and when one process is killed the others carry on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

from conftest import run_process

N = 200


def rules_text(n: int) -> str:
    people = "\n".join(f"  p{i}: {{name: 干部{i}, email: p{i}@example.cn}}" for i in range(n))
    members = ", ".join(f"p{i}" for i in range(n))
    return (f"people:\n  secretary: {{name: 王书记, email: secretary@example.cn}}\n{people}\n"
            f"groups:\n  everyone: [{members}]\n"
            "rules:\n  - id: monthly-report\n    title: 月度报告\n    every: month\n    due: {day: 15}\n"
            "    remind: [-1d]\n    for_each: everyone\n")


def wait_for(predicate, timeout: float) -> bool:
    """Wait for an effect of the running services (they work on their own clock), polling."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_three_services_share_the_work_and_survive_a_kill(pg_url, smtp, workdir):
    env = {"DUBAN_DATABASE_URL": pg_url, **smtp.env(), "DUBAN_LEASE_SECONDS": "5", "DUBAN_WEB_PORT": "off"}
    (workdir / "rules.yaml").write_text(rules_text(N), encoding="utf-8")
    assert run_process("init", "--no-pack", env=env, cwd=workdir).code == 0
    assert run_process("rules", "import", "rules.yaml", "--now", "2026-12-01T09:00", env=env, cwd=workdir).code == 0

    def start():
        return subprocess.Popen([sys.executable, "-m", "scheduler.cli", "run", "--now", "2026-12-14T09:05",
                                 "--interval", "1"], env={**os.environ, **env}, cwd=workdir,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    services = [start() for _ in range(3)]
    try:
        assert wait_for(lambda: len(smtp.messages) >= N // 4, 60), "the services sent nothing"
        services[0].send_signal(signal.SIGKILL)  # killed in the middle of the work
        services[0].wait()

        def reminded() -> set[str]:
            return {r for m in smtp.messages if m.subject.startswith("【督办提醒】") for r in m.recipients}

        assert wait_for(lambda: len(reminded()) == N, 90), f"only {len(reminded())} of {N} reminded"
        assert wait_for(lambda: any(m.subject.startswith("【每日督办汇总】") for m in smtp.messages), 30)
        time.sleep(3)  # a few more ticks of the survivors: nothing more may arrive
    finally:
        for p in services[1:]:
            p.send_signal(signal.SIGTERM)
        outputs = [p.communicate(timeout=60) for p in services[1:]]
    for p, (_out, err) in zip(services[1:], outputs, strict=True):
        assert p.returncode == 0, err
    per_person = Counter(r for m in smtp.messages if m.subject.startswith("【督办提醒】") for r in m.recipients)
    assert set(per_person) == {f"p{i}@example.cn" for i in range(N)}  # nothing lost
    # at most the one message the killed process was sending when it died is repeated
    assert sum(per_person.values()) - N <= 1
    digests = [m for m in smtp.messages if m.subject.startswith("【每日督办汇总】")]
    assert len(digests) == 1 and digests[0].recipients == ["secretary@example.cn"]
