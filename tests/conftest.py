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
    """Run in an empty directory with no DUBAN_* settings inherited from the developer's shell,
    as a test database (DUBAN_TEST_MODE=1)."""
    for k in list(os.environ):
        if k.startswith("DUBAN_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("DUBAN_TEST_MODE", "1")  # test databases: --now may be years ahead
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


def db_rows(url: str, sql: str) -> list[tuple]:
    """The rows a query returns, read straight from the database (what a test checks was stored)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(sql))]
    finally:
        engine.dispose()


def run_process(*args: str, env: dict[str, str] | None = None, cwd=None, timeout: float = 120,
                max_memory: int | None = None) -> Result:
    """Run the installed CLI in a child process (for exit codes and stderr as a user sees them);
    `max_memory` bytes of address space at most, when given (a runaway input fails instead of swapping)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
    full_env.update({"DUBAN_TEST_MODE": "1", **(env or {})})

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))

    p = subprocess.run([sys.executable, "-m", "scheduler.cli", *map(str, args)], capture_output=True, text=True,
                       env=full_env, cwd=cwd, timeout=timeout, preexec_fn=limit if max_memory else None)
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


class FakeClock:
    """The fake WeCom server's clock: set to the `--now` of each tick, so its rate limits and token
    lifetimes follow the injected time (never the wall clock)."""

    def __init__(self, now: float = 1_767_225_600.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WeComFake:
    """The loopback fake WeCom (tests/wecom_server.py) plus helpers that put its settings in the
    environment of `duban` calls; attributes of the server (robot_messages, requests_log, …) pass through."""

    def __init__(self, server, clock: FakeClock, monkeypatch):
        self.server, self.clock, self._mp = server, clock, monkeypatch

    def __getattr__(self, name):
        return getattr(self.server, name)

    def use_robot(self, key: str | None = None) -> None:
        """Send through the group robot; `key` defaults to the one the fake accepts."""
        self._mp.setenv("DUBAN_WECOM_API_BASE", self.server.base_url)
        self._mp.setenv("DUBAN_WECOM_ROBOT_KEY", self.server.robot_key if key is None else key)

    def use_app(self, secret: str | None = None, agent_id: str | None = None) -> None:
        """Send application messages; `secret` defaults to the one the fake accepts."""
        self._mp.setenv("DUBAN_WECOM_API_BASE", self.server.base_url)
        self._mp.setenv("DUBAN_WECOM_CORP_ID", self.server.corp_id)
        self._mp.setenv("DUBAN_WECOM_CORP_SECRET", self.server.corp_secret if secret is None else secret)
        self._mp.setenv("DUBAN_WECOM_AGENT_ID", str(self.server.agent_id if agent_id is None else agent_id))

    def at(self, now: str) -> None:
        """Set the fake's clock to `now`, written as for `--now` (local time, Asia/Shanghai)."""
        from zoneinfo import ZoneInfo

        from scheduler.clock import parse_now

        self.clock.now = parse_now(now, ZoneInfo("Asia/Shanghai")).timestamp()


@pytest.fixture
def wecom(monkeypatch, workdir):
    """A loopback fake WeCom with an injected clock; call `use_robot()` / `use_app()` to configure duban."""
    from wecom_server import WeComServer

    clock = FakeClock()
    server = WeComServer(clock=clock).start()
    yield WeComFake(server, clock, monkeypatch)
    server.stop()
