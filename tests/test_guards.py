"""Guards against settings and inputs that would leave damage behind: an unknown log level, a `--now`
years ahead on a live database, personal data in files others can read, temp files of killed exports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from conftest import run_process

RULES = """\
people:
  secretary: {name: 王书记, email: secretary@example.cn, mobile: "13800000000"}
rules:
  - id: report
    title: 月度报告
    every: month
    due: {day: 28}
    owner: secretary
"""


def ok(r):
    assert r.code == 0, r.err
    return r


def setup(duban, workdir, url: str | None = None):
    (workdir / "rules.yaml").write_text(RULES, encoding="utf-8")
    ok(duban("init", "--no-pack", url=url))
    ok(duban("rules", "import", "rules.yaml", url=url))


def count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return c.scalar(sa.text(f"SELECT count(*) FROM {table}"))
    finally:
        engine.dispose()


def mode(path) -> int:
    return os.stat(path).st_mode & 0o777


# --- DUBAN_LOG_LEVEL -----------------------------------------------------------------------------
def test_an_unknown_log_level_is_a_settings_error(sqlite_url, workdir):
    env = {"DUBAN_DATABASE_URL": sqlite_url}
    assert run_process("init", "--no-pack", env=env, cwd=workdir).code == 0
    r = run_process("status", env={**env, "DUBAN_LOG_LEVEL": "VERBOSE"}, cwd=workdir)
    assert r.code == 2, r.err
    assert "DUBAN_LOG_LEVEL" in r.err and "VERBOSE" in r.err and "DEBUG、INFO、WARNING、ERROR" in r.err
    assert "程序内部出错" not in r.err and "Traceback" not in r.err
    assert run_process("status", env={**env, "DUBAN_LOG_LEVEL": "warning"}, cwd=workdir).code == 0


# --- --now far ahead -----------------------------------------------------------------------------
def test_a_now_years_ahead_needs_force_on_a_live_database(duban, db_url, workdir, monkeypatch):
    monkeypatch.delenv("DUBAN_TEST_MODE")  # a live database
    setup(duban, workdir, db_url)
    far = (date.today() + timedelta(days=800)).isoformat()
    before = count(db_url, "occurrences")
    for args in (["tick"], ["status"], ["done", "report@2026-12"], ["event", "add", "meeting", "--date", far],
                 ["digest", "--send"], ["rules", "import", "rules.yaml"]):
        r = duban(*args, "--now", far, url=db_url)
        assert r.code == 2, (args, r.err)
        assert "晚一年以上" in r.err and "--force" in r.err and "DUBAN_TEST_MODE=1" in r.err, r.err
    assert count(db_url, "occurrences") == before and count(db_url, "events") == 0  # nothing changed
    # reading commands may look ahead; a date within a year needs nothing
    ok(duban("preview", "--now", far, url=db_url))
    ok(duban("rules", "list", "--now", far, url=db_url))
    ok(duban("status", "--now", (date.today() + timedelta(days=300)).isoformat(), url=db_url))
    # --force, or a test database, allows it
    r = ok(duban("--force", "tick", "--now", far, url=db_url))
    assert "调度完成" in r.out
    assert count(db_url, "occurrences") > before
    monkeypatch.setenv("DUBAN_TEST_MODE", "1")
    ok(duban("tick", "--now", far, url=db_url))


def test_the_refusal_as_a_user_sees_it(sqlite_url, workdir):
    env = {"DUBAN_DATABASE_URL": sqlite_url, "DUBAN_TEST_MODE": ""}
    assert run_process("init", "--no-pack", env=env, cwd=workdir).code == 0
    r = run_process("tick", "--now", "2199-01-01", env=env, cwd=workdir)
    assert r.code == 2 and r.err.startswith("错误：--now 2199-01-01 比现在晚一年以上") and "Traceback" not in r.err
    assert run_process("--force", "tick", "--now", "2199-01-01", env=env, cwd=workdir).code == 0
