"""One message per person per send time: a person's reminders and overdue alerts that fall due together
go out as one message listing every duty; escalations to one recipient likewise. Real SMTP on loopback,
the fake WeCom, real databases; the crash is a real SIGKILL of a child process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading

from conftest import db_rows as rows
from conftest import run_process

OFFICE, SECRETARY = "office@example.cn", "secretary@example.cn"
LINK = re.compile(r"http://127\.0\.0\.1:8080/a/[^\s\"<>)]+")

PEOPLE = """\
    people:
      secretary: {name: 王书记, email: secretary@example.cn}
      leader: {name: 李局长, email: leader@example.cn}
      office: {name: 张主任, email: office@example.cn}
    """


def rule(rule_id: str, title: str, owner: str = "office", day: int = 15,
         extra: tuple[str, ...] = ("escalate_after: none",)) -> str:
    """One monthly rule (YAML), due on `day`, with a reminder on the due day at 09:00."""
    lines = [f"- id: {rule_id}", f"  title: {title}", f"  owner: {owner}", "  every: month",
             f"  due: {{day: {day}}}", "  remind: [0d]", *(f"  {e}" for e in extra)]
    return "\n".join(lines) + "\n"


THREE = rule("party-fees", "党费收缴") + rule("study-plan", "理论学习") + rule("org-life", "组织生活会")
KEYS = ["party-fees@2026-12", "study-plan@2026-12", "org-life@2026-12"]


def setup(duban, workdir, rules: str, url: str | None = None, now: str = "2026-12-01T10:00",
          people: str = PEOPLE) -> None:
    p = workdir / "rules.yaml"
    p.write_text(textwrap.dedent(people) + "rules:\n" + textwrap.indent(rules, "  "), encoding="utf-8")
    assert duban("init", "--no-pack", url=url).code == 0
    r = duban("rules", "import", p, "--now", now, url=url)
    assert r.code == 0, r.err


def tick(duban, now: str, url: str | None = None):
    r = duban("tick", "--now", now, url=url)
    assert r.code == 0, r.err
    return r



def html_of(m) -> str:
    return m.message.get_body(("html",)).get_content()


# --- 1. three reminders at 09:00: one email ---------------------------------------------------
def test_three_reminders_due_together_go_as_one_email_with_three_links(duban, workdir, smtp, db_url, monkeypatch):
    monkeypatch.setenv("DUBAN_SECRET_KEY", "combined-test-key")
    setup(duban, workdir, THREE, url=db_url)
    r = tick(duban, "2026-12-15T09:05", url=db_url)
    assert "提醒 3 条" in r.out  # counted per duty
    [m] = smtp.handler.to(OFFICE)
    assert len(smtp.messages) == 1
    assert m.subject == "【督办提醒】您有 3 项事项需要办理"
    text, html = m.text, html_of(m)
    for title, key in zip(("党费收缴", "理论学习", "组织生活会"), KEYS, strict=True):
        assert title in text and title in html
        assert f"事项编号 {key}，" in text
    assert text.count("：今天到期") == 3 and "截止 2026年12月15日" in text
    links = LINK.findall(text)
    assert len(links) == 3 and len(set(links)) == 3  # each duty its own action link
    assert set(LINK.findall(html)) == set(links)
    # each link opens its own duty
    from urllib.parse import unquote

    from scheduler.signing import Signer

    opened = {Signer("combined-test-key").read_action(unquote(link.rsplit("/", 1)[1])).key for link in links}
    assert opened == set(KEYS)
    # at least once per duty: every delivery sent, one attempt row each
    assert sorted(rows(db_url, "SELECT status, channel FROM deliveries WHERE slot = '2026-12-15'")) == [("sent", "email")] * 3
    assert sorted(o for (o,) in rows(db_url, "SELECT outcome FROM delivery_attempts")) == ["sent"] * 3
    tick(duban, "2026-12-15T10:00", url=db_url)
    assert len(smtp.messages) == 1


def test_a_single_duty_still_reads_as_today(duban, workdir, smtp):
    setup(duban, workdir, rule("party-fees", "党费收缴"))
    tick(duban, "2026-12-15T09:05")
    [m] = smtp.messages
    assert m.subject == "【督办提醒】党费收缴 将于 2026年12月15日 到期（今天）"
    assert "您负责的事项“党费收缴”今天到期。" in m.text and "事项编号 party-fees@2026-12，" in m.text
    assert "项事项需要办理" not in m.text


def test_people_with_one_duty_each_get_their_own_single_message(duban, workdir, smtp):
    setup(duban, workdir, rule("party-fees", "党费收缴") + rule("study-plan", "理论学习", owner="leader"))
    tick(duban, "2026-12-15T09:05")
    assert sorted(m.subject for m in smtp.messages) == [
        "【督办提醒】党费收缴 将于 2026年12月15日 到期（今天）", "【督办提醒】理论学习 将于 2026年12月15日 到期（今天）"]


# --- 2. overdue alerts and a reminder together ------------------------------------------------
def test_two_overdue_alerts_and_a_reminder_are_one_message(duban, workdir, smtp, db_url):
    setup(duban, workdir, rule("party-fees", "党费收缴", day=10) + rule("study-plan", "理论学习", day=11)
          + rule("org-life", "组织生活会", day=15), url=db_url)
    tick(duban, "2026-12-15T09:05", url=db_url)
    [m] = smtp.handler.to(OFFICE)
    assert len(smtp.messages) == 1
    assert m.subject == "【督办提醒】您有 3 项事项需要办理（其中 2 项已逾期）"
    text = m.text
    assert "“党费收缴”：已逾期 5 天" in text and "“理论学习”：已逾期 4 天" in text and "“组织生活会”：今天到期" in text
    assert text.index("党费收缴") < text.index("理论学习") < text.index("组织生活会")  # the most urgent first
    assert len(set(LINK.findall(text))) == 3
    sent = rows(db_url, "SELECT kind, status FROM deliveries WHERE status = 'sent' ORDER BY kind")
    assert sent == [("overdue", "sent"), ("overdue", "sent"), ("reminder", "sent")]


def test_only_overdue_alerts_say_so_in_the_subject(duban, workdir, smtp):
    setup(duban, workdir, rule("party-fees", "党费收缴", day=10) + rule("study-plan", "理论学习", day=11))
    tick(duban, "2026-12-15T09:05")
    [m] = smtp.messages
    assert m.subject == "【逾期提醒】您有 2 项事项已逾期，请尽快办理"


def test_a_reminder_due_later_in_the_day_is_a_message_of_its_own(duban, workdir, smtp):
    """Combined are the messages due together: a reminder at 15:00 is not held back for the 09:00 one."""
    setup(duban, workdir, rule("party-fees", "党费收缴")
          + rule("study-plan", "理论学习", extra=("escalate_after: none", "at: '15:00'")))
    tick(duban, "2026-12-15T09:05")
    assert [m.subject for m in smtp.messages] == ["【督办提醒】党费收缴 将于 2026年12月15日 到期（今天）"]
    tick(duban, "2026-12-15T15:05")
    assert smtp.messages[-1].subject == "【督办提醒】理论学习 将于 2026年12月15日 到期（今天）"


# --- 3. escalations to one recipient ----------------------------------------------------------
def test_escalations_for_two_owners_are_one_message_naming_both(duban, workdir, smtp, db_url):
    esc = ("escalate_after: 1wd", "escalate_to: [secretary]")
    setup(duban, workdir, rule("party-fees", "党费收缴", day=10, extra=esc)
          + rule("study-plan", "理论学习", owner="leader", day=10, extra=esc), url=db_url)
    tick(duban, "2026-12-11T09:05", url=db_url)  # Fri, one working day after Thu the 10th
    [m] = smtp.handler.to(SECRETARY)
    assert m.subject.startswith("【督办通知】2 项事项逾期未完成")
    assert "张主任" in m.subject and "李局长" in m.subject
    text = m.text
    assert text.startswith("督办通知") and "责任人：张主任" in text and "责任人：李局长" in text
    assert "党费收缴" in text and "理论学习" in text and len(set(LINK.findall(text))) == 2
    assert "张主任" in html_of(m) and "李局长" in html_of(m)
    # the owners get their own overdue alert, single
    assert [x.subject for x in smtp.handler.to(OFFICE)] == ["【逾期提醒】党费收缴 已逾期 1 天"]
    assert len(smtp.messages) == 3
    assert rows(db_url, "SELECT count(*) FROM deliveries WHERE kind = 'escalation' AND status = 'sent'") == [(2,)]


# --- 4. a duty completed just before the tick is left out -------------------------------------
def test_a_duty_completed_just_before_the_tick_is_left_out(duban, workdir, smtp, db_url):
    setup(duban, workdir, THREE, url=db_url)
    assert duban("done", "study-plan@2026-12", "--now", "2026-12-15T08:59", url=db_url).code == 0
    tick(duban, "2026-12-15T09:05", url=db_url)
    [m] = smtp.messages
    assert m.subject == "【督办提醒】您有 2 项事项需要办理"
    assert "党费收缴" in m.text and "组织生活会" in m.text and "理论学习" not in m.text
    got = dict(rows(db_url, "SELECT occurrence_key, status FROM deliveries WHERE slot = '2026-12-15'"))
    assert got == {"party-fees@2026-12": "sent", "study-plan@2026-12": "skipped", "org-life@2026-12": "sent"}


def test_two_left_of_which_one_completed_reads_as_a_single_message(duban, workdir, smtp):
    setup(duban, workdir, rule("party-fees", "党费收缴") + rule("study-plan", "理论学习"))
    assert duban("done", "study-plan@2026-12", "--now", "2026-12-15T08:59").code == 0
    tick(duban, "2026-12-15T09:05")
    [m] = smtp.messages
    assert m.subject == "【督办提醒】党费收缴 将于 2026年12月15日 到期（今天）"


# --- 5. WeCom ---------------------------------------------------------------------------------
WECOM_PEOPLE = """\
    people:
      secretary: {name: 王书记, wecom: WangShuJi}
      office: {name: 张主任, wecom: ZhangZhuRen}
    """


def test_wecom_app_sends_one_card_to_my_duties(duban, workdir, wecom):
    wecom.use_app()
    setup(duban, workdir, THREE, people=WECOM_PEOPLE)
    wecom.at("2026-12-15T09:05")
    tick(duban, "2026-12-15T09:05")
    [body] = wecom.app_inbox["ZhangZhuRen"]
    assert body["msgtype"] == "textcard"
    card = body["textcard"]
    assert card["title"] == "【督办提醒】您有 3 项事项需要办理"
    assert card["url"] == "http://127.0.0.1:8080/my"
    assert all(t in card["description"] for t in ("党费收缴", "理论学习", "组织生活会", "共 3 项"))
    assert len(card["title"].encode()) <= 128 and len(card["description"].encode()) <= 512


def test_wecom_app_card_of_many_duties_stays_within_the_limits(duban, workdir, wecom):
    wecom.use_app()
    rules = "".join(rule(f"duty-{i}", f"第{i}项很长的整改任务名称需要认真落实到位", day=15) for i in range(12))
    setup(duban, workdir, rules, people=WECOM_PEOPLE)
    wecom.at("2026-12-15T09:05")
    tick(duban, "2026-12-15T09:05")
    [body] = wecom.app_inbox["ZhangZhuRen"]  # accepted by the fake, which checks the limits
    card = body["textcard"]
    assert "共 12 项" in card["description"] and len(card["description"].encode()) <= 512


def test_wecom_robot_posts_one_markdown_with_a_link_per_duty(duban, workdir, wecom):
    wecom.use_robot()
    setup(duban, workdir, THREE, people=WECOM_PEOPLE)
    wecom.at("2026-12-15T09:05")
    tick(duban, "2026-12-15T09:05")
    [post] = wecom.robot_messages
    md = post["markdown"]["content"]
    assert md.startswith("<@ZhangZhuRen>\n**【督办提醒】您有 3 项事项需要办理**")
    assert len(set(re.findall(r"\]\((http://127\.0\.0\.1:8080/a/[^)]+)\)", md))) == 3


# --- 6. a crash between send and mark ----------------------------------------------------------
def test_a_crash_between_send_and_mark_resends_the_combined_message_with_every_duty(db_url, smtp, workdir, duban):
    env = {"DUBAN_DATABASE_URL": db_url, **smtp.env(), "DUBAN_WEB_PORT": "off"}
    setup(duban, workdir, THREE, url=db_url)
    smtp.handler.hold_after_data = threading.Event()  # accept the message, then hold the 250 reply
    child = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "tick", "--now", "2026-12-15T09:05"],
                             env={**os.environ, "DUBAN_TEST_MODE": "1", **env}, cwd=workdir,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert smtp.handler.received_event.wait(60)
    finally:
        child.send_signal(signal.SIGKILL)  # the server has the message; duban never marked it
        child.communicate()
    smtp.handler.hold_after_data.set()
    smtp.handler.hold_after_data = None
    assert len(smtp.messages) == 1
    # the attempt of every duty is visible before the send
    assert sorted(rows(db_url, "SELECT status, attempts FROM deliveries WHERE slot = '2026-12-15'")) == [("sending", 1)] * 3
    assert sorted(o for (o,) in rows(db_url, "SELECT outcome FROM delivery_attempts")) == ["sending"] * 3

    assert run_process("tick", "--now", "2026-12-15T09:05:30", env=env, cwd=workdir).code == 0
    assert len(smtp.messages) == 1  # within the lease nobody resends
    r = run_process("tick", "--now", "2026-12-15T09:07", env=env, cwd=workdir)
    assert r.code == 0, r.err
    assert len(smtp.messages) == 2
    first, again = smtp.messages
    assert again.subject == first.subject == "【督办提醒】您有 3 项事项需要办理"
    assert first.message["Message-ID"] == again.message["Message-ID"]  # recognisably the same message
    for key in KEYS:
        assert f"事项编号 {key}，" in again.text  # nothing lost from it
    assert sorted(rows(db_url, "SELECT status FROM deliveries WHERE slot = '2026-12-15'")) == [("sent",)] * 3
    run_process("tick", "--now", "2026-12-15T09:30", env=env, cwd=workdir)
    assert len(smtp.messages) == 2


# --- 7. workers racing --------------------------------------------------------------------------
def test_workers_racing_send_each_person_one_combined_message(db_url, smtp, workdir, duban):
    n = 30
    people = "people:\n" + "".join(f"  p{i}: {{name: 干部{i}, email: p{i}@example.cn}}\n" for i in range(n)) + (
        "groups:\n  everyone: [" + ", ".join(f"p{i}" for i in range(n)) + "]\n")
    rules = "".join(textwrap.dedent(f"""\
        - id: duty-{j}
          title: 任务{j}
          for_each: everyone
          every: month
          due: {{day: 15}}
          remind: [0d]
          escalate_after: none
        """) for j in range(3))
    setup(duban, workdir, rules, url=db_url, people=people)
    env = {"DUBAN_DATABASE_URL": db_url, **smtp.env(), "DUBAN_WEB_PORT": "off", "DUBAN_TEST_MODE": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "scheduler.cli", "tick", "--now", "2026-12-15T09:05"],
                              env={**os.environ, **env}, cwd=workdir, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    recipients = sorted(r for m in smtp.messages for r in m.recipients)
    assert recipients == sorted(f"p{i}@example.cn" for i in range(n))  # one message each, never twice
    for m in smtp.messages:
        assert m.subject == "【督办提醒】您有 3 项事项需要办理"
        assert all(f"任务{j}" in m.text for j in range(3))
    assert rows(db_url, "SELECT status, count(*) FROM deliveries WHERE slot = '2026-12-15' GROUP BY status") == [("sent", 3 * n)]
    assert rows(db_url, "SELECT count(*) FROM delivery_attempts WHERE outcome = 'sent'") == [(3 * n,)]


# --- 8. limits and overrides --------------------------------------------------------------------
def test_a_very_long_list_goes_as_several_messages_and_loses_nothing(duban, workdir, smtp):
    from scheduler.dispatch import GROUP_LIMIT

    setup(duban, workdir, "".join(rule(f"duty-{i}", f"任务{i}") for i in range(GROUP_LIMIT + 1)))
    tick(duban, "2026-12-15T09:05")
    big, single = sorted((m.subject for m in smtp.messages), key=lambda x: "项事项" not in x)
    assert big == f"【督办提醒】您有 {GROUP_LIMIT} 项事项需要办理"
    assert re.fullmatch(r"【督办提醒】任务\d+ 将于 2026年12月15日 到期（今天）", single)
    named = {k for m in smtp.messages for k in re.findall(r"事项编号 (duty-\d+@2026-12)，", m.text)}
    assert named == {f"duty-{i}@2026-12" for i in range(GROUP_LIMIT + 1)}


def test_the_combined_templates_can_be_overridden(duban, workdir, smtp, monkeypatch):
    own = workdir / "templates"
    own.mkdir()
    (own / "combined.subject.j2").write_text("【本单位督办】{{ person.name }}：{{ count }} 项待办", encoding="utf-8")
    monkeypatch.setenv("DUBAN_TEMPLATE_DIR", str(own))
    setup(duban, workdir, THREE)
    tick(duban, "2026-12-15T09:05")
    [m] = smtp.messages
    assert m.subject == "【本单位督办】张主任：3 项待办" and "组织生活会" in m.text
