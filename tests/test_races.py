"""Simultaneous `duban done` and `duban waive` in real processes, on SQLite and PostgreSQL: every
completion counts once, the state follows the count, and a waiver and a completion never both win."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from conftest import run_process

NOW = "2026-12-10T09:00"
RULES = """\
people:
  secretary: {name: 王书记, email: secretary@example.cn}
rules:
  - id: many
    title: 走访群众
    every: month
    due: {day: 28}
    quota: 1000
    owner: secretary
  - id: twice
    title: 两次学习
    every: month
    due: {day: 28}
    quota: 2
    owner: secretary
  - id: once
    title: 一次报告
    every: month
    due: {day: 28}
    owner: secretary
"""
MANY, TWICE, ONCE = "many@2026-12", "twice@2026-12", "once@2026-12"


def setup(workdir, url: str) -> dict[str, str]:
    env = {"DUBAN_DATABASE_URL": url}
    (workdir / "rules.yaml").write_text(RULES, encoding="utf-8")
    assert run_process("init", "--no-pack", env=env, cwd=workdir).code == 0
    r = run_process("rules", "import", "rules.yaml", "--now", NOW, env=env, cwd=workdir)
    assert r.code == 0, r.err
    return env


def at_once(commands: list[list[str]], env: dict[str, str], cwd) -> list[subprocess.CompletedProcess]:
    """Start every command as its own process, all together, and wait for them all."""
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}, **env}
    procs = [subprocess.Popen([sys.executable, "-m", "scheduler.cli", *c], env=full, cwd=cwd, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands]
    with ThreadPoolExecutor(len(procs)) as pool:
        outs = list(pool.map(lambda p: p.communicate(timeout=180), procs))
    return [subprocess.CompletedProcess(p.args, p.returncode, o, e) for p, (o, e) in zip(procs, outs, strict=True)]


def stored(url: str, key: str) -> tuple[str, int, int, int, int]:
    """(state, done_count, completion rows, waiver rows, closed_at set) as the database holds them."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            state, done_count, closed = c.execute(sa.text(
                "SELECT state, done_count, closed_at IS NOT NULL FROM occurrences WHERE key = :k"), {"k": key}).one()
            completions = c.scalar(sa.text("SELECT count(*) FROM completions WHERE occurrence_key = :k"), {"k": key})
            waivers = c.scalar(sa.text("SELECT count(*) FROM waivers WHERE occurrence_key = :k"), {"k": key})
    finally:
        engine.dispose()
    return state, done_count, completions, waivers, int(closed)


def done(key: str, who: str) -> list[str]:
    return ["done", key, "--by", who, "--now", NOW]


def test_parallel_completions_all_count(db_url, workdir):
    env = setup(workdir, db_url)
    results = at_once([done(MANY, f"p{i}") for i in range(24)], env, workdir)
    assert [r.returncode for r in results] == [0] * 24, [r.stderr for r in results if r.returncode]
    assert stored(db_url, MANY) == ("open", 24, 24, 0, 0)


def test_two_parallel_completions_close_a_quota_of_two(db_url, workdir):
    env = setup(workdir, db_url)
    results = at_once([done(TWICE, "p1"), done(TWICE, "p2")], env, workdir)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert stored(db_url, TWICE) == ("done", 2, 2, 0, 1)
    outs = "".join(r.stdout for r in results)
    assert "（1/2），还需完成 1 次" in outs and "（2/2），该事项已办结" in outs  # each saw its own count


def test_sqlite_three_rounds_of_sixteen(sqlite_url, workdir):
    env = setup(workdir, sqlite_url)
    for rnd in range(3):
        results = at_once([done(MANY, f"r{rnd}p{i}") for i in range(16)], env, workdir)
        assert [r.returncode for r in results] == [0] * 16, [r.stderr for r in results if r.returncode]
    assert stored(sqlite_url, MANY) == ("open", 48, 48, 0, 0)


def test_waive_and_done_at_once_one_wins(db_url, workdir):
    env = setup(workdir, db_url)
    for _ in range(3):  # the order varies from run to run; every outcome must be consistent
        results = at_once([done(ONCE, "p1"), ["waive", ONCE, "--reason", "已合并办理", "--now", NOW]], env, workdir)
        codes = [r.returncode for r in results]
        assert sorted(codes) == [0, 2], [r.stderr for r in results]
        state, count, completions, waivers, closed = stored(db_url, ONCE)
        if codes[0] == 0:  # the completion won: the waiver was refused
            assert (state, count, completions, waivers) == ("done", 1, 1, 0)
            assert "已完成，无需免办" in results[1].stderr
        else:  # the waiver won: the completion was refused
            assert (state, count, completions, waivers) == ("waived", 0, 0, 1)
            assert "已免办，不能再登记完成" in results[0].stderr
        assert closed == 1
        r = run_process(*done(ONCE, "late"), env=env, cwd=workdir)
        if state == "waived":  # a completion after the waiver is refused and changes nothing
            assert r.code == 2 and stored(db_url, ONCE)[:4] == ("waived", 0, 0, 1)
        # next round on a fresh occurrence
        engine = sa.create_engine(db_url)
        with engine.begin() as c:
            for table in ("completions", "waivers"):
                c.execute(sa.text(f"DELETE FROM {table} WHERE occurrence_key = :k"), {"k": ONCE})
            c.execute(sa.text("UPDATE occurrences SET state = 'open', done_count = 0, closed_at = NULL WHERE key = :k"),
                      {"k": ONCE})
        engine.dispose()
