"""`duban doctor`: tells what is wrong, in Chinese, without sending unless asked."""

from __future__ import annotations

import textwrap

RULES = textwrap.dedent("""\
    people:
      secretary: {name: 王书记, email: secretary@example.cn}
      office: {name: 张主任}
    rules:
      - {id: monthly-report, title: 月度报告, owner: office, every: month, due: {day: 15}}
      - {id: old-window, title: 过期的一次性任务, owner: office, window: {from: 2025-08-28, to: 2025-10-28}}
    """)


def test_doctor_on_a_database_not_yet_created(duban):
    r = duban("doctor")
    assert r.code == 1
    assert "[错误] 数据库" in r.out and "duban init" in r.out


def test_doctor_reports_calendar_rules_people_and_a_working_smtp(duban, smtp, workdir):
    duban("init", "--no-pack")
    (workdir / "r.yaml").write_text(RULES, encoding="utf-8")
    duban("rules", "import", "r.yaml", "--now", "2026-11-25T10:00")
    r = duban("doctor", "--now", "2026-11-25T10:00")
    assert r.code == 0, r.out
    assert "[正常] 数据库" in r.out
    assert "[警告] 日历：2027 年尚无官方放假安排" in r.out and "duban calendar import" in r.out
    assert "old-window" in r.out  # a rule that will never produce anything
    assert "office" in r.out and "没有已配置渠道的联系方式" in r.out
    assert "[正常] 渠道：邮件" in r.out
    assert smtp.messages == []  # checking never sends
    sent = duban("doctor", "--send-test", "--now", "2026-11-25T10:00")
    assert sent.code == 0 and "测试消息已发送" in sent.out
    assert [m.recipients for m in smtp.messages] == [["secretary@example.cn"]]


def test_doctor_names_an_unreachable_mail_server(duban, monkeypatch):
    duban("init", "--no-pack")
    monkeypatch.setenv("DUBAN_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("DUBAN_SMTP_PORT", "1")
    monkeypatch.setenv("DUBAN_SMTP_SECURITY", "none")
    r = duban("doctor", "--format", "json")
    assert r.code == 1
    errors = [c for c in r.json() if c["level"] == "error"]
    assert any(c["area"] == "渠道" and "邮件" in c["text"] for c in errors)
