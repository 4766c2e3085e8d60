"""Secrets never leave the process: canary values in the settings, DEBUG logging, successes and failures
on every channel; then every output, log record, table and the database file are searched for them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import Result, run_process
from smtp_server import Handler, free_port

SMTP_PASSWORD = "SmtpPw-canary-7f3a9c1e"
ROBOT_KEY = "RobotKey-canary-5d1e88b2"
WRONG_ROBOT_KEY = "WrongKey-canary-0c4d6a17"
CORP_SECRET = "CorpSecret-canary-2b9f41d3"
WRONG_CORP_SECRET = "WrongSecret-canary-93e1f5a0"
CANARIES = (SMTP_PASSWORD, ROBOT_KEY, WRONG_ROBOT_KEY, CORP_SECRET, WRONG_CORP_SECRET)

RULES = (("monthly-report", "月度工作报告", "secretary"), ("office-ledger", "办公室台账", "office"),
         ("biz-guide", "业务指导记录", "biz"), ("finance-check", "财务自查", "finance"))
PEOPLE_AND_RULES = """\
people:
  secretary: {name: 王书记, wecom: WangShuJi, email: secretary@example.cn}
  office: {name: 张主任, email: office@example.cn}
  biz: {name: 刘科长, mobile: "13800000003"}
  finance: {name: 陈会计, wecom: ZhangZhuRen}
rules:
""" + "".join(f"""\
  - id: {rid}
    title: {title}
    owner: {owner}
    every: month
    due: {{day: 15}}
    remind: [0d]
    escalate_after: none
""" for rid, title, owner in RULES)


class AuthSMTP:
    """A loopback SMTP server that offers AUTH without TLS and accepts only the canary password."""

    def __init__(self):
        self.handler = Handler()
        self.port = free_port()
        self.logins: list[bool] = []
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     authenticator=self._auth, auth_require_tls=False)

    def _auth(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == SMTP_PASSWORD.encode()
        self.logins.append(ok)
        return AuthResult(success=ok, handled=False)  # a failure is answered 535

    def env(self, password: str = SMTP_PASSWORD) -> dict[str, str]:
        return {"DUBAN_SMTP_HOST": "127.0.0.1", "DUBAN_SMTP_PORT": str(self.port), "DUBAN_SMTP_SECURITY": "none",
                "DUBAN_SMTP_FROM": "duban@example.cn", "DUBAN_SMTP_USER": "duban@example.cn",
                "DUBAN_SMTP_PASSWORD": password}


@pytest.fixture
def auth_smtp(monkeypatch, workdir):
    server = AuthSMTP()
    server.controller.start()
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    yield server
    server.controller.stop()


def run_scenario(duban, workdir, wecom, auth_smtp, monkeypatch) -> dict[str, str]:
    """Every command, with failures on every channel; returns what each produced, by name."""
    wecom.server.robot_key, wecom.server.corp_secret = ROBOT_KEY, CORP_SECRET
    wecom.use_robot(ROBOT_KEY)
    wecom.use_app(CORP_SECRET)
    monkeypatch.setenv("DUBAN_LOG_LEVEL", "DEBUG")
    out: dict[str, str] = {}

    def run(name: str, *args: str, now: str | None = None) -> Result:
        if now:
            wecom.at(now)
            args = (*args, "--now", now)
        r = duban(*args)
        out[f"{name} stdout"], out[f"{name} stderr"] = r.out, r.err
        return r

    (workdir / "rules.yaml").write_text(PEOPLE_AND_RULES, encoding="utf-8")
    assert run("init", "init", "--no-pack").code == 0
    assert run("import", "rules", "import", "rules.yaml", now="2026-12-01T10:00").code == 0

    # failures everywhere: WeCom app busy, mail 451, robot HTTP 500
    wecom.app_errors.append({"errcode": -1, "errmsg": "system busy"})
    auth_smtp.handler.data_reply = "451 4.3.0 try again later"
    wecom.robot_errors.append({"http_status": 500})
    r = run("tick 1", "tick", now="2026-12-15T09:05")
    assert r.code == 0 and "待重试" in r.out, r.out
    auth_smtp.handler.data_reply = None
    r = run("tick 2", "tick", now="2026-12-15T10:00")
    assert r.code == 0, r.err
    assert wecom.robot_messages and wecom.app_messages
    # the canaries were really used (the fake saw them), so finding none elsewhere means something
    assert any(ROBOT_KEY in p for _m, p in wecom.requests_log)
    assert any(CORP_SECRET in p for _m, p in wecom.requests_log)

    # a wrong (but canary) robot key and corp secret: 93000 and 40001 disable both channels
    wecom.use_robot(WRONG_ROBOT_KEY)
    wecom.use_app(WRONG_CORP_SECRET)
    r = run("tick 3", "tick", now="2026-12-16T09:05")
    assert r.code == 0, r.err
    robot_calls = [p for _m, p in wecom.requests_log if "webhook" in p]
    assert any(WRONG_ROBOT_KEY in p for p in robot_calls)  # the fake was asked (and answered 93000)
    assert True in auth_smtp.logins and len(auth_smtp.handler.messages) >= 1  # mail went out after a login
    # a wrong mail password: the login is refused
    monkeypatch.setenv("DUBAN_SMTP_PASSWORD", WRONG_CORP_SECRET)
    r = run("tick 4", "tick", now="2026-12-17T09:05")
    assert r.code == 0, r.err
    assert False in auth_smtp.logins
    assert "拒绝登录" in "".join(e for (e,) in query(workdir, "SELECT error FROM delivery_attempts") if e)
    monkeypatch.setenv("DUBAN_SMTP_PASSWORD", SMTP_PASSWORD)

    assert run("digest", "digest", now="2026-12-17T10:00").code == 0
    assert "已停用" in out["digest stdout"]
    assert run("digest send", "digest", "--send", now="2026-12-17T10:05").code == 0
    assert run("status", "status", now="2026-12-17T10:10").code == 0
    assert run("status json", "status", "--format", "json", now="2026-12-17T10:10").code == 0
    assert run("rules export", "rules", "export", now="2026-12-17T10:10").code == 0
    run("doctor", "doctor", now="2026-12-17T10:10")

    # a child process, as the service runs: the right settings again, DEBUG logging to stderr
    wecom.at("2026-12-18T09:05")
    env = {k: v for k, v in os.environ.items() if k.startswith("DUBAN_")}
    env.update({"DUBAN_WECOM_ROBOT_KEY": ROBOT_KEY, "DUBAN_WECOM_CORP_SECRET": CORP_SECRET,
                "DUBAN_LOG_LEVEL": "DEBUG"})
    before = len(wecom.requests_log)
    child = run_process("tick", "--now", "2026-12-18T09:05", env=env, cwd=workdir)
    assert child.code == 0, child.err
    assert len(wecom.requests_log) > before  # it did talk to WeCom (robot and app)
    out["child tick stdout"], out["child tick stderr"] = child.out, child.err
    return out


def query(workdir: Path, sql: str) -> list[tuple]:
    engine = sa.create_engine(f"sqlite:///{workdir / 'duban.db'}")
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(sql))]
    finally:
        engine.dispose()


def leaks(named_texts: dict[str, str]) -> list[str]:
    return [f"{name}: {c}" for name, text in named_texts.items() for c in CANARIES if c in text]


def database_texts(workdir: Path) -> dict[str, str]:
    """Every text-like value of every row of every table, as text, plus the raw database files."""
    engine = sa.create_engine(f"sqlite:///{workdir / 'duban.db'}")
    found: dict[str, str] = {}
    try:
        tables = sa.inspect(engine).get_table_names()
        assert {"deliveries", "delivery_attempts", "state"} <= set(tables)
        with engine.connect() as c:
            for t in tables:
                cols = [col["name"] for col in sa.inspect(engine).get_columns(t)]
                rows = c.execute(sa.text(f'SELECT * FROM "{t}"')).all()
                found[f"table {t}"] = "\n".join(
                    f"{col}={v!s}" for row in rows for col, v in zip(cols, row, strict=True) if v is not None)
    finally:
        engine.dispose()
    for f in workdir.glob("duban.db*"):  # the file, its WAL and shared memory
        found[f"file {f.name}"] = f.read_bytes().decode("latin-1")
    return found


def message_texts(wecom, auth_smtp) -> dict[str, str]:
    return {"robot posts": repr(wecom.robot_messages), "app messages": repr(wecom.app_messages),
            "emails": "\n".join(m.message.as_string() for m in auth_smtp.handler.messages)}


def test_no_secret_in_output_database_or_messages(duban, workdir, wecom, auth_smtp, monkeypatch):
    out = run_scenario(duban, workdir, wecom, auth_smtp, monkeypatch)
    assert leaks({k: v for k, v in out.items() if "child tick stderr" not in k}) == []
    assert leaks(database_texts(workdir)) == []
    assert leaks(message_texts(wecom, auth_smtp)) == []


def test_no_secret_in_debug_logs(duban, workdir, wecom, auth_smtp, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    out = run_scenario(duban, workdir, wecom, auth_smtp, monkeypatch)
    # the product's records (the loopback SMTP test server logs as mail.log: not ours)
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]
    assert any(r.name.startswith("duban") for r in ours)  # the logs were captured
    records = {f"log {r.name} {r.levelname} #{i}": r.getMessage() + "\n" + (r.exc_text or "")
               for i, r in enumerate(ours)}
    assert leaks({**records, "child tick stderr": out["child tick stderr"]}) == []
