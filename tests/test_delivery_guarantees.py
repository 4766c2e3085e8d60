"""Nothing lost, nothing doubled: a crash between send and mark, ticks racing, the service's lifecycle.

These run the real `duban` in child processes against a real SMTP server on loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import sqlalchemy as sa
from conftest import run_process

ONE_RULE = textwrap.dedent("""\
    people:
      secretary: {name: 王书记, email: secretary@example.cn}
    rules:
      - id: monthly-report
        title: 月度报告
        owner: secretary
        every: month
        due: {day: 15}
        remind: [-1d, 0d]
    """)


def many_people_rules(n: int) -> str:
    people = "\n".join(f"  p{i}: {{name: 干部{i}, email: p{i}@example.cn}}" for i in range(n))
    members = ", ".join(f"p{i}" for i in range(n))
    return (f"people:\n  secretary: {{name: 王书记}}\n{people}\ngroups:\n  everyone: [{members}]\n"
            "rules:\n  - id: monthly-report\n    title: 月度报告\n    every: month\n    due: {day: 15}\n"
            "    remind: [-1d]\n    for_each: everyone\n")


def env_for(url: str, smtp) -> dict[str, str]:
    return {"DUBAN_DATABASE_URL": url, **smtp.env(), "DUBAN_WEB_PORT": "off"}


def setup_db(workdir, env, rules_text, now="2026-12-01T09:00"):
    (workdir / "rules.yaml").write_text(rules_text, encoding="utf-8")
    assert run_process("init", "--no-pack", env=env, cwd=workdir).code == 0
    r = run_process("rules", "import", "rules.yaml", "--now", now, env=env, cwd=workdir)
    assert r.code == 0, r.err


def wait_for(predicate, timeout=30.0):
    """Wait for an effect of a running process (not for a deadline); fail if it never comes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_a_crash_between_send_and_mark_resends_after_the_lease_not_before(db_url, smtp, workdir):
    """Invariant L (nothing lost) and D (at most one duplicate per crash, recognisable by Message-ID)."""
    env = env_for(db_url, smtp)
    setup_db(workdir, env, ONE_RULE)
    smtp.handler.hold_after_data = threading.Event()  # accept the message, then hold the 250 reply
    child = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "tick", "--now", "2026-12-14T09:05"],
                             env={**os.environ, **env}, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(smtp.handler.received_event.is_set)
    child.send_signal(signal.SIGKILL)  # killed after the server has the message, before duban marks it
    child.wait()
    smtp.handler.hold_after_data.set()
    smtp.handler.hold_after_data = None
    assert len(smtp.messages) == 1

    engine = sa.create_engine(db_url)
    with engine.connect() as c:
        status, attempts = c.execute(sa.text("SELECT status, attempts FROM deliveries WHERE slot = '2026-12-14'")).one()
        outcomes = [r[0] for r in c.execute(sa.text("SELECT outcome FROM delivery_attempts"))]
    assert (status, attempts) == ("sending", 1)
    assert outcomes == ["sending"]  # the attempt is visible even though its end was never written

    # within the lease (60 s) nobody resends: the first sender might still be alive
    assert run_process("tick", "--now", "2026-12-14T09:05:30", env=env, cwd=workdir).code == 0
    assert len(smtp.messages) == 1
    # after the lease another tick takes it over: sent again, with the same Message-ID
    r = run_process("tick", "--now", "2026-12-14T09:07", env=env, cwd=workdir)
    assert r.code == 0, r.err
    assert len(smtp.messages) == 2
    assert smtp.messages[0].message["Message-ID"] == smtp.messages[1].message["Message-ID"]
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT status FROM deliveries WHERE slot = '2026-12-14'")).scalar() == "sent"
    # and never again
    run_process("tick", "--now", "2026-12-14T09:30", env=env, cwd=workdir)
    assert len(smtp.messages) == 2
    engine.dispose()


def test_ticks_racing_send_each_message_exactly_once(db_url, smtp, workdir):
    """Invariant D without crashes: three processes tick at once; every person gets exactly one mail."""
    n = 40
    env = env_for(db_url, smtp)
    setup_db(workdir, env, many_people_rules(n))
    procs = [subprocess.Popen([sys.executable, "-m", "scheduler.cli", "tick", "--now", "2026-12-14T09:05"],
                              env={**os.environ, **env}, cwd=workdir, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    recipients = sorted(r for m in smtp.messages for r in m.recipients)
    assert recipients == sorted(f"p{i}@example.cn" for i in range(n))
    engine = sa.create_engine(db_url)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM deliveries WHERE status = 'sent'")).scalar() == n
        assert c.execute(sa.text("SELECT count(*) FROM occurrences WHERE period = '2026-12'")).scalar() == n
    engine.dispose()


def test_the_service_sends_then_stops_cleanly_on_sigterm(smtp, workdir):
    env = env_for(f"sqlite:///{workdir / 'duban.db'}", smtp)
    setup_db(workdir, env, ONE_RULE)
    child = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "run", "--now", "2026-12-14T09:05",
                              "--interval", "1"], env={**os.environ, **env}, cwd=workdir,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(smtp.messages) >= 2)  # the reminder, and the digest (after 08:30)
    finally:
        child.send_signal(signal.SIGTERM)
        _out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert "督办服务已启动" in err and "督办服务已停止" in err
    assert "Traceback" not in err
    reminders = [m for m in smtp.messages if m.subject.startswith("【督办提醒】月度报告")]
    digests = [m for m in smtp.messages if m.subject.startswith("【每日督办汇总】")]
    assert len(reminders) == 1 and len(digests) == 1 and len(smtp.messages) == 2
    assert "月度报告" in digests[0].text  # due tomorrow: listed under "7 天内到期"


def test_a_reminder_due_while_the_service_was_down_is_sent_once_when_it_returns(smtp, workdir):
    env = env_for(f"sqlite:///{workdir / 'duban.db'}", smtp)
    setup_db(workdir, env, ONE_RULE)
    # down from before the 14th's reminder until the afternoon of the 14th
    assert run_process("tick", "--now", "2026-12-13T09:00", env=env, cwd=workdir).code == 0
    assert smtp.messages == []
    run_process("tick", "--now", "2026-12-14T16:00", env=env, cwd=workdir)
    run_process("tick", "--now", "2026-12-14T16:01", env=env, cwd=workdir)
    assert len(smtp.messages) == 1


def test_reminders_missed_while_down_collapse_into_one(smtp, workdir):
    """No flood after downtime: three reminders fell due while nothing ran (-3d, -1d, 0d); the first
    tick sends one, the latest, even though all three are claimed in the same batch."""
    env = env_for(f"sqlite:///{workdir / 'duban.db'}", smtp)
    setup_db(workdir, env, ONE_RULE.replace("remind: [-1d, 0d]", "remind: [-3d, -1d, 0d]"))
    assert run_process("tick", "--now", "2026-12-15T16:00", env=env, cwd=workdir).code == 0
    assert len(smtp.messages) == 1 and "今天" in smtp.messages[0].subject
    run_process("tick", "--now", "2026-12-15T16:05", env=env, cwd=workdir)
    assert len(smtp.messages) == 1


def test_the_service_serves_the_workbench_and_says_where(smtp, workdir):
    import socket

    import requests

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**env_for(f"sqlite:///{workdir / 'duban.db'}", smtp), "DUBAN_WEB_PORT": str(port),
           "DUBAN_BASE_URL": f"http://127.0.0.1:{port}"}
    setup_db(workdir, env, ONE_RULE)
    child = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "run", "--now", "2026-12-14T09:05",
                              "--interval", "1"], env={**os.environ, **env}, cwd=workdir,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(f"127.0.0.1:{port}/a/" in m.text for m in smtp.messages))  # the reminder
        login = requests.get(f"http://127.0.0.1:{port}/login", timeout=5)
        assert login.status_code == 200 and "登录督办工作台" in login.text
        link = next(w for m in smtp.messages for w in m.text.split() if f"127.0.0.1:{port}/a/" in w)
        page = requests.get(link, timeout=5)
        assert page.status_code == 200 and "月度报告" in page.text
    finally:
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert f"督办工作台已启动：http://127.0.0.1:{port}/" in out and "login-link" in out
    token = link.rsplit("/a/", 1)[1]
    assert "GET /a/*** 200" in err and token not in err  # the access log never holds a token


def test_the_service_refuses_to_start_when_the_workbench_port_is_taken(smtp, workdir):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    env = {**env_for(f"sqlite:///{workdir / 'duban.db'}", smtp), "DUBAN_WEB_PORT": str(port)}
    setup_db(workdir, env, ONE_RULE)
    try:
        r = run_process("run", "--now", "2026-12-14T09:05", env=env, cwd=workdir)
    finally:
        sock.close()
    assert r.code == 2 and "端口可能已被占用" in r.err and "DUBAN_WEB_PORT" in r.err and "Traceback" not in r.err
