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


# --- file modes ----------------------------------------------------------------------------------
def test_exports_are_readable_by_their_owner_only(duban, workdir):
    setup(duban, workdir)
    old = os.umask(0o022)  # a usual umask: without care the files would be world-readable
    try:
        for name in ("台账.xlsx", "台账.csv"):
            ok(duban("ledger", "export", "--out", name))
            assert mode(workdir / name) == 0o600, name
        ok(duban("rules", "export", "--out", "规则.yaml"))
        assert mode(workdir / "规则.yaml") == 0o600
        # an existing file, even one others could read, is replaced by one they cannot
        for name in ("台账.csv", "规则.yaml"):
            os.chmod(workdir / name, 0o644)
        ok(duban("ledger", "export", "--out", "台账.csv"))
        ok(duban("rules", "export", "--out", "规则.yaml"))
        assert mode(workdir / "台账.csv") == mode(workdir / "规则.yaml") == 0o600
        assert "13800000000" in (workdir / "规则.yaml").read_text(encoding="utf-8")
    finally:
        os.umask(old)


# --- temp files of a killed ledger export --------------------------------------------------------
def temps(workdir) -> list[str]:
    return sorted(p.name for p in workdir.iterdir() if p.name.startswith(".duban-ledger-"))


def test_stale_temp_files_are_removed_by_the_next_export(duban, workdir):
    setup(duban, workdir)
    hours_ago = time.time() - 2 * 3600
    for name in (".duban-ledger-old1.xlsx", ".duban-ledger-old2.csv", ".duban-ledger-notes.txt"):
        (workdir / name).write_text("x")
        os.utime(workdir / name, (hours_ago, hours_ago))
    (workdir / ".duban-ledger-running.xlsx").write_text("x")  # another export, still writing
    ok(duban("ledger", "export", "--out", "台账.xlsx"))
    assert temps(workdir) == [".duban-ledger-notes.txt", ".duban-ledger-running.xlsx"]  # not ours / not stale


def test_an_export_killed_midway_leaves_a_temp_file_the_next_one_removes(duban, workdir, sqlite_url):
    setup(duban, workdir)
    from scheduler.models import OccurrenceRow

    engine = sa.create_engine(sqlite_url)  # a large ledger, so the export is still writing when killed
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with engine.begin() as c:
        c.execute(sa.insert(OccurrenceRow.__table__), [
            {"org": "default", "key": f"bulk-{i}@2026-12", "rule_id": "bulk", "title": f"批量事项 {i}",
             "period": "2026-12", "owner": "secretary", "opens": date(2026, 12, 1), "due": date(2026, 12, 28),
             "quota": 1, "provisional": False, "state": "open", "done_count": 0, "created_at": now}
            for i in range(150_000)])
    engine.dispose()
    env = {**os.environ, "DUBAN_DATABASE_URL": sqlite_url}
    p = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "ledger", "export", "--out", "台账.xlsx"],
                         env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.monotonic() + 60
    while not any(os.path.getsize(workdir / t) > 0 for t in temps(workdir) if (workdir / t).exists()):
        assert p.poll() is None and time.monotonic() < end, "the export ended before it could be killed"
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    left = temps(workdir)
    assert len(left) == 1 and not (workdir / "台账.xlsx").exists()  # nothing could clean up after kill -9
    assert mode(workdir / left[0]) == 0o600  # even the half-written file holds the names privately
    ok(duban("ledger", "export", "--out", "台账.csv"))  # within the hour: it may be another export, kept
    assert temps(workdir) == left
    hours_ago = time.time() - 2 * 3600
    os.utime(workdir / left[0], (hours_ago, hours_ago))
    ok(duban("ledger", "export", "--out", "台账.csv"))
    assert temps(workdir) == [] and mode(workdir / "台账.csv") == 0o600
