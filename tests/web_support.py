"""The workbench in tests: a real database set up through the CLI, the app served in process
(Starlette's TestClient speaks real HTTP semantics over ASGI), a clock the test moves."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")

PEOPLE = """\
people:
  secretary: {name: 王书记, email: secretary@example.cn, wecom: WangShuJi}
  office: {name: 张主任, email: office@example.cn, wecom: ZhangZhuRen}
  li: {name: 李干事, email: li@example.cn}
  inspector: {name: 巡察组赵组长, email: inspector@example.cn}
groups:
  office-team: [office, li]
"""

RULES = """\
rules:
  - id: party-day
    title: 主题党日
    source: "二(三)8"
    owner: office
    every: month
    due: {day: 15}
    remind: [-3d, 0d]
    start: 2026-12-01
  - id: ideology-seminar
    title: 意识形态工作专题研讨
    source: "二(一)2"
    owner: li
    every: year
    quota: 2
    start: 2026-01-01
  - id: secrecy-check
    title: 办公电脑保密自查
    owner: office-team
    every: half-year
    start: 2026-07-01
  - id: secretary-report
    title: 书记述职报告
    owner: secretary
    every: year
    start: 2026-01-01
"""

LINK = re.compile(r"https?://[^\s<>\"')\]]+/a/[A-Za-z0-9._~%-]+")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def setup_branch(duban, workdir, now: str = "2026-12-01T08:00", extra_rules: str = "") -> None:
    assert duban("init", "--no-pack", "--now", now).code == 0
    path = workdir / "branch.yaml"
    path.write_text(PEOPLE + RULES + extra_rules, encoding="utf-8")
    r = duban("rules", "import", path, "--now", now)
    assert r.code == 0, r.err


class Clock:
    def __init__(self, text: str):
        self.now = datetime.fromisoformat(text).replace(tzinfo=TZ)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)


def workbench(now: str = "2026-12-01T10:00", env: dict | None = None):
    """(TestClient, clock) for the database in DUBAN_DATABASE_URL and the test's settings."""
    import os

    from starlette.testclient import TestClient

    from scheduler.settings import load_settings
    from scheduler.web.app import create_app

    environ = {k: v for k, v in os.environ.items() if k.startswith("DUBAN_")}
    environ.update(env or {})
    clock = Clock(now)
    app = create_app(load_settings(environ, dotenv=False), clock=clock)
    return TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False), clock


def csrf_of(html: str) -> str:
    m = CSRF.search(html)
    assert m, "the page has no form with a CSRF token"
    return m.group(1)


def sign_in(client, duban, person: str, now: str = "2026-12-01T10:00") -> None:
    r = duban("web", "login-link", person, "--now", now)
    assert r.code == 0, r.err
    url = r.out.strip().splitlines()[-1]
    path = url.split("8080", 1)[1]
    page = client.get(path)
    assert page.status_code == 200, page.text
    done = client.post(path, data={"csrf": csrf_of(page.text)})
    assert done.status_code == 303, done.text


class Served:
    """The app served by a real uvicorn on a free loopback port, in a thread; `url` is its address."""

    def __init__(self, now: str = "2026-12-12T10:00", env: dict | None = None):
        import os
        import socket

        import uvicorn

        from scheduler.settings import load_settings
        from scheduler.web.app import create_app

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {k: v for k, v in os.environ.items() if k.startswith("DUBAN_")}
        environ.update(env or {})
        self.clock = Clock(now)
        app = create_app(load_settings(environ, dotenv=False), clock=self.clock)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    lifespan="off", access_log=False))

    def __enter__(self) -> Served:
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            assert self.thread.is_alive(), "the server did not start"
            self.thread.join(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
