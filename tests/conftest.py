"""Shared fixtures: a fresh database per test (SQLite file, or a PostgreSQL schema) and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass

import pytest

PG_ENV = "DUBAN_TEST_POSTGRES_URL"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in an empty directory with no DUBAN_* settings inherited from the developer's shell."""
    for k in list(os.environ):
        if k.startswith("DUBAN_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def sqlite_url(workdir):
    return f"sqlite:///{workdir / 'duban.db'}"


# read once at start: the `workdir` fixture clears DUBAN_* settings for each test
_PG_BASE_URL = os.environ.get(PG_ENV)


def _pg_base_url() -> str | None:
    return _PG_BASE_URL


@pytest.fixture
def pg_url(workdir):
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    base = _pg_base_url()
    if not base:
        pytest.skip(f"PostgreSQL 测试已跳过：未设置 {PG_ENV}（例如 postgresql+psycopg://postgres@127.0.0.1:5432/test）")
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base)
    try:
        with engine.begin() as c:
            c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as e:
        pytest.skip(f"PostgreSQL 测试已跳过：无法连接 {PG_ENV}（{str(e.orig).splitlines()[0]}）")
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as c:
        c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, workdir):
    """Both supported databases: each test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{workdir / 'duban.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def duban(workdir, monkeypatch, capsys):
    """Run `duban ARGS...` in this process against the test's database; returns a Result."""
    from scheduler.cli import main

    state = {"url": f"sqlite:///{workdir / 'duban.db'}"}

    def run(*args: str, url: str | None = None) -> Result:
        monkeypatch.setenv("DUBAN_DATABASE_URL", url or state["url"])
        capsys.readouterr()
        code = main([str(a) for a in args])
        cap = capsys.readouterr()
        return Result(code, cap.out, cap.err)

    run.state = state
    return run


def run_process(*args: str, env: dict[str, str] | None = None, cwd=None) -> Result:
    """Run the installed CLI in a child process (for exit codes and stderr as a user sees them)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
    full_env.update(env or {})
    p = subprocess.run([sys.executable, "-m", "scheduler.cli", *map(str, args)], capture_output=True, text=True,
                       env=full_env, cwd=cwd, timeout=120)
    return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def smtp(monkeypatch, workdir):
    """A loopback SMTP server; its settings are in the environment of `duban` calls in this test."""
    from smtp_server import SMTPServer

    server = SMTPServer().start()
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    yield server
    server.stop()
