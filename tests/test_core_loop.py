"""The core loop as a user notices it: rules in, `tick` at given instants, mail on a real loopback SMTP server.

Time is always given with `--now` (local time, Asia/Shanghai). Messages are counted on the server by
their subject: 【督办提醒】 reminder, 【逾期提醒】 overdue alert, 【督办通知】 escalation.
"""

from __future__ import annotations

import textwrap

import sqlalchemy as sa

SECRETARY = "secretary@example.cn"
LEADER = "leader@example.cn"

REMINDER, OVERDUE, ESCALATION = "【督办提醒】", "【逾期提醒】", "【督办通知】"

PEOPLE = """\
    people:
      secretary: {name: 王书记, email: secretary@example.cn}
      leader: {name: 李局长, email: leader@example.cn}
      office: {name: 张主任, email: office@example.cn}
      photo-assoc: {name: 摄影家协会, email: photo@example.cn}
      writers-assoc: {name: 作家协会, email: writers@example.cn}
      nobody: {name: 查无此人, email: x@example.cn}
    groups:
      associations: [photo-assoc, writers-assoc]
    """


# --- helpers ---------------------------------------------------------------------------------
def rule_file(workdir, rules: str, name: str = "rules.yaml"):
    """A rule file with the shared people and groups, then `rules:` followed by `rules` (YAML text)."""
    p = workdir / name
    p.write_text(textwrap.dedent(PEOPLE) + "rules:\n" + textwrap.indent(textwrap.dedent(rules), "  "),
                 encoding="utf-8")
    return p


def setup_rules(duban, workdir, rules: str, now: str, url: str | None = None):
    r = duban("init", "--no-pack", url=url)
    assert r.code == 0, r.err
    r = duban("rules", "import", rule_file(workdir, rules), "--now", now, url=url)
    assert r.code == 0, r.err


def tick(duban, now: str, url: str | None = None):
    r = duban("tick", "--now", now, url=url)
    assert r.code == 0, r.err
    return r


def subjects(smtp, address: str, marker: str | None = None) -> list[str]:
    got = [m.subject for m in smtp.handler.to(address)]
    return [s for s in got if marker is None or marker in s]


def about(smtp, address: str, key: str, marker: str | None = None) -> list[str]:
    """Subjects of the messages to `address` whose text names occurrence `key`."""
    return [m.subject for m in smtp.handler.to(address)
            if f"事项编号 {key}，" in m.text and (marker is None or marker in m.subject)]


def status_of(duban, key: str, now: str, url: str | None = None) -> dict:
    r = duban("status", "--format", "json", "--now", now, url=url)
    assert r.code == 0, r.err
    rows = {x["key"]: x for x in r.json()}
    assert key in rows, f"{key} not in status: {sorted(rows)}"
    return rows[key]


def attempts(workdir) -> list[tuple]:
    """(delivery_id, outcome, channel) of every attempt, oldest first, read from the SQLite file."""
    engine = sa.create_engine(f"sqlite:///{workdir / 'duban.db'}")
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(
                "SELECT delivery_id, outcome, channel FROM delivery_attempts ORDER BY id"))]
    finally:
        engine.dispose()


MONTHLY = """\
    - id: monthly-report
      title: 月度工作报告
      owner: secretary
      every: month
      due: {day: 15}
      remind: [-1d, 0d]
    """


# --- 1. the acceptance scenario on both databases -------------------------------------------
def test_acceptance_scenario(duban, workdir, smtp, db_url):
    url = db_url
    setup_rules(duban, workdir, MONTHLY, "2026-12-01T10:00", url=url)
    key = "monthly-report@2026-12"

    tick(duban, "2026-12-14T09:05", url=url)
    assert len(smtp.messages) == 1
    assert "月度工作报告" in smtp.messages[0].subject
    assert smtp.messages[0].recipients == [SECRETARY]

    tick(duban, "2026-12-14T09:40", url=url)
    assert len(smtp.messages) == 1

    tick(duban, "2026-12-15T09:05", url=url)
    assert len(smtp.messages) == 2
    assert "月度工作报告" in smtp.messages[1].subject

    tick(duban, "2026-12-16T09:05", url=url)
    assert len(smtp.messages) == 3
    assert "逾期" in smtp.messages[2].subject and "月度工作报告" in smtp.messages[2].subject
    st = status_of(duban, key, "2026-12-16T09:10", url=url)
    assert (st["state"], st["done_count"], st["quota"]) == ("overdue", 0, 1)

    r = duban("done", key, "--now", "2026-12-16T10:00", url=url)
    assert r.code == 0, r.err
    tick(duban, "2026-12-17T09:05", url=url)
    assert len(smtp.messages) == 3
    assert status_of(duban, key, "2026-12-17T09:10", url=url)["state"] == "done"


# --- 2. never early --------------------------------------------------------------------------
def test_nothing_before_the_reminder_time_and_date_only_means_noon(duban, workdir, smtp):
    setup_rules(duban, workdir, MONTHLY, "2026-12-01T10:00")
    tick(duban, "2026-12-14T08:00")
    assert smtp.messages == []
    tick(duban, "2026-12-14T08:59")
    assert smtp.messages == []
    tick(duban, "2026-12-14")  # 12:00
    assert len(subjects(smtp, SECRETARY, REMINDER)) == 1


# --- 3. overdue alerts each working day, one escalation --------------------------------------
def test_overdue_alerts_each_working_day_and_one_escalation(duban, workdir, smtp):
    setup_rules(duban, workdir, """\
        - id: year-end-review
          title: 年终总结
          owner: secretary
          escalate_to: [leader]
          escalate_after: 3wd
          every: year
          due: {month: 12, day: 15}
          start: 2026-01-01
          remind: [0d]
        """, "2026-12-01T10:00")
    key = "year-end-review@2026"

    def counts():
        return (len(about(smtp, SECRETARY, key, REMINDER)), len(about(smtp, SECRETARY, key, OVERDUE)),
                len(about(smtp, LEADER, key, ESCALATION)), len(smtp.messages))

    tick(duban, "2026-12-15T09:05")  # Tue, due day
    assert counts() == (1, 0, 0, 1)
    tick(duban, "2026-12-16T09:05")  # Wed: 1st working day overdue
    assert counts() == (1, 1, 0, 2)
    tick(duban, "2026-12-16T15:00")
    assert counts() == (1, 1, 0, 2)
    tick(duban, "2026-12-17T09:05")  # Thu
    assert counts() == (1, 2, 0, 3)
    tick(duban, "2026-12-18T09:05")  # Fri: 3rd working day after the due date → 督办通知
    assert counts() == (1, 3, 1, 5)
    assert about(smtp, LEADER, key, ESCALATION)[0].count("年终总结") == 1
    tick(duban, "2026-12-18T15:00")
    assert counts() == (1, 3, 1, 5)
    tick(duban, "2026-12-19T09:05")  # Sat
    tick(duban, "2026-12-20T09:05")  # Sun
    assert counts() == (1, 3, 1, 5)
    tick(duban, "2026-12-21T09:05")  # Mon: the daily alert again, the escalation not
    assert counts() == (1, 4, 1, 6)
    tick(duban, "2026-12-22T09:05")
    assert counts() == (1, 5, 1, 7)
    assert status_of(duban, key, "2026-12-22T09:10")["escalated"] is True


# --- 4. quota ------------------------------------------------------------------------------
def test_quota_two_needs_two_completions(duban, workdir, smtp):
    setup_rules(duban, workdir, """\
        - id: ideology-seminar
          title: 意识形态工作专题研讨
          owner: secretary
          every: year
          quota: 2
          due: {month: 12, day: 15}
          remind: [-1d, 0d]
        """, "2026-12-01T10:00")
    key = "ideology-seminar@2026"

    tick(duban, "2026-12-14T09:05")
    assert len(subjects(smtp, SECRETARY, REMINDER)) == 1
    r = duban("done", key, "--by", "王书记", "--now", "2026-12-14T10:00")
    assert r.code == 0, r.err
    st = status_of(duban, key, "2026-12-14T10:05")
    assert st["done_count"] == 1 and st["quota"] == 2 and st["state"] != "done"

    tick(duban, "2026-12-15T09:05")  # one completion is not enough: reminders continue
    assert len(subjects(smtp, SECRETARY, REMINDER)) == 2
    assert "已完成 1 次" in smtp.messages[-1].text

    r = duban("done", key, "--now", "2026-12-15T10:00")
    assert r.code == 0, r.err
    st = status_of(duban, key, "2026-12-15T10:05")
    assert (st["state"], st["done_count"]) == ("done", 2)
    for now in ("2026-12-16T09:05", "2026-12-17T09:05", "2026-12-21T09:05"):
        tick(duban, now)
    assert len(smtp.messages) == 2


# --- 5. for_each ---------------------------------------------------------------------------
def test_for_each_member_has_its_own_occurrence(duban, workdir, smtp):
    setup_rules(duban, workdir, """\
        - id: association-training
          title: 会员创作培训
          every: year
          for_each: associations
          due: {month: 12, day: 15}
          remind: [-1d, 0d]
        """, "2026-12-01T10:00")
    photo, writers = "association-training@2026/photo-assoc", "association-training@2026/writers-assoc"

    tick(duban, "2026-12-14T09:05")
    assert len(about(smtp, "photo@example.cn", photo, REMINDER)) == 1
    assert len(about(smtp, "writers@example.cn", writers, REMINDER)) == 1
    assert len(smtp.messages) == 2
    rows = {x["key"]: x for x in duban("status", "--format", "json", "--now", "2026-12-14T09:10").json()}
    assert rows[photo]["owner"] == "photo-assoc" and rows[writers]["owner"] == "writers-assoc"

    assert duban("done", photo, "--now", "2026-12-14T10:00").code == 0
    tick(duban, "2026-12-15T09:05")
    tick(duban, "2026-12-16T09:05")
    assert len(smtp.handler.to("photo@example.cn")) == 1
    assert len(about(smtp, "writers@example.cn", writers, REMINDER)) == 2
    assert len(about(smtp, "writers@example.cn", writers, OVERDUE)) == 1
    assert status_of(duban, photo, "2026-12-16T09:10")["state"] == "done"
    assert status_of(duban, writers, "2026-12-16T09:10")["state"] == "overdue"


# --- 6. events -----------------------------------------------------------------------------
def test_event_makes_an_occurrence_due_on_the_third_working_day(duban, workdir, smtp):
    setup_rules(duban, workdir, """\
        - id: study-plan
          title: 制定学习计划
          owner: office
          event: document-received
          offset: +3wd
          remind: [-1d, 0d]
        """, "2026-09-30T09:00")
    r = duban("event", "add", "document-received", "--date", "2026-09-30", "--now", "2026-09-30T10:00")
    assert r.code == 0, r.err
    assert "study-plan@event-1" in r.out and "2026-10-10" in r.out  # 国庆 off, Sat 10-10 is a working day

    office = "office@example.cn"
    for now in ("2026-09-30T12:00", "2026-10-01T09:05", "2026-10-05T09:05", "2026-10-08T09:05"):
        tick(duban, now)
    assert smtp.messages == []
    tick(duban, "2026-10-09T09:05")
    assert len(about(smtp, office, "study-plan@event-1", REMINDER)) == 1
    tick(duban, "2026-10-10T09:05")
    assert len(about(smtp, office, "study-plan@event-1", REMINDER)) == 2
    assert "今天" in smtp.messages[-1].subject
    assert len(smtp.messages) == 2
    assert status_of(duban, "study-plan@event-1", "2026-10-10T09:10")["due"] == "2026-10-10"


# --- 7. waive, and wrong input ---------------------------------------------------------------
def test_waive_stops_messages_and_bad_input_exits_2(duban, workdir, smtp):
    setup_rules(duban, workdir, MONTHLY, "2026-12-01T10:00")
    key = "monthly-report@2026-12"
    tick(duban, "2026-12-14T09:05")
    assert len(smtp.messages) == 1

    r = duban("waive", key, "--now", "2026-12-14T10:00")
    assert r.code == 2
    assert "缺少选项" in r.err and "--reason" in r.err
    assert status_of(duban, key, "2026-12-14T10:01")["state"] == "due-soon"

    r = duban("waive", key, "--reason", "本月合并到季度报告", "--now", "2026-12-14T10:00")
    assert r.code == 0, r.err
    for now in ("2026-12-15T09:05", "2026-12-16T09:05", "2026-12-21T09:05"):
        tick(duban, now)
    assert len(smtp.messages) == 1
    assert status_of(duban, key, "2026-12-21T09:10")["state"] == "waived"
    table = duban("status", "--all", "--now", "2026-12-21T09:10")
    assert key in table.out and "已免办" in table.out
    assert key not in duban("status", "--now", "2026-12-21T09:10").out

    r = duban("done", "monthly-report@2031-13", "--now", "2026-12-21T09:10")
    assert r.code == 2
    assert "没有编号为" in r.err


# --- 8. thirty days of downtime ------------------------------------------------------------
def test_thirty_days_down_no_flood(duban, workdir, smtp):
    setup_rules(duban, workdir, """\
        - id: monthly-report
          title: 月度工作报告
          owner: secretary
          escalate_to: [leader]
          every: month
          due: {day: 15}
          remind: [-3d, -1d, 0d]
        """, "2026-11-01T10:00")
    nov, dec = "monthly-report@2026-11", "monthly-report@2026-12"
    tick(duban, "2026-11-01")
    assert smtp.messages == []

    tick(duban, "2026-12-20T09:05")  # back after more than a month
    assert len(about(smtp, SECRETARY, nov, OVERDUE)) == 1
    assert len(about(smtp, SECRETARY, nov)) == 1
    assert len(about(smtp, SECRETARY, dec)) <= 1
    assert len(about(smtp, SECRETARY, dec, REMINDER)) == 0  # its reminders are past: collapsed
    assert len(about(smtp, SECRETARY, dec, OVERDUE)) == 1
    assert len(subjects(smtp, SECRETARY)) == 1  # both overdue alerts in one message
    # the escalation is due for both, once each, in one message
    assert len(about(smtp, LEADER, nov, ESCALATION)) == 1
    assert len(about(smtp, LEADER, dec, ESCALATION)) == 1
    assert len(smtp.messages) == 2

    tick(duban, "2026-12-20T09:06")
    tick(duban, "2026-12-20T10:00")
    assert len(smtp.messages) == 2


# --- 9. nothing before a rule's start --------------------------------------------------------
def test_no_occurrence_before_start(duban, workdir, smtp):
    setup_rules(duban, workdir, """\
        - id: monthly-report
          title: 月度工作报告
          owner: secretary
          every: month
          due: {day: 15}
          remind: [-1d, 0d]
          start: 2026-12-01
        """, "2026-11-10T10:00")
    tick(duban, "2026-11-14T09:05")
    tick(duban, "2026-11-20T09:05")
    assert smtp.messages == []
    tick(duban, "2026-12-14T09:05")
    assert len(about(smtp, SECRETARY, "monthly-report@2026-12", REMINDER)) == 1


def test_rule_added_late_sends_no_old_overdue_alerts(duban, workdir, smtp):
    setup_rules(duban, workdir, MONTHLY, "2026-12-20T10:00")
    for now in ("2026-12-20T10:05", "2026-12-21T09:05", "2026-12-22T09:05"):
        tick(duban, now)
    assert smtp.messages == []
    keys = {x["key"] for x in duban("status", "--format", "json", "--now", "2026-12-22T09:10").json()}
    assert not {k for k in keys if k <= "monthly-report@2026-12"}


# --- 10. a disabled rule is silent -----------------------------------------------------------
def test_disabled_rule_sends_nothing(duban, workdir, smtp):
    setup_rules(duban, workdir, MONTHLY, "2026-12-01T10:00")
    tick(duban, "2026-12-14T09:05")
    assert len(smtp.messages) == 1
    r = duban("rules", "disable", "monthly-report", "--now", "2026-12-14T10:00")
    assert r.code == 0, r.err
    for now in ("2026-12-15T09:05", "2026-12-16T09:05", "2026-12-21T09:05"):
        tick(duban, now)
    assert len(smtp.messages) == 1


# --- 11. every attempt is recorded -----------------------------------------------------------
def test_every_send_is_recorded(duban, workdir, smtp):
    setup_rules(duban, workdir, MONTHLY, "2026-12-01T10:00")
    tick(duban, "2026-12-14T09:05")
    assert len(smtp.messages) == 1
    assert [(o, c) for _d, o, c in attempts(workdir)] == [("sent", "email")]
    tick(duban, "2026-12-15T09:05")
    tick(duban, "2026-12-16T09:05")
    rows = attempts(workdir)
    assert len(smtp.messages) == 3
    assert [(o, c) for _d, o, c in rows] == [("sent", "email")] * 3
    assert len({d for d, _o, _c in rows}) == 3


# --- 12. a refused recipient is dead, not retried, and shown ---------------------------------
def test_refused_recipient_is_dead_and_in_the_digest(duban, workdir, smtp):
    setup_rules(duban, workdir, """\
        - id: monthly-report
          title: 月度工作报告
          owner: nobody
          every: month
          due: {day: 15}
          remind: [-1d, 0d]
        """, "2026-12-01T10:00")
    smtp.handler.refuse["x@example.cn"] = "550 5.1.1 no such user"
    r = tick(duban, "2026-12-14T09:05")
    assert "放弃 1 条" in r.out
    assert smtp.messages == []
    assert [o for _d, o, _c in attempts(workdir)] == ["dead"]

    tick(duban, "2026-12-14T10:05")
    tick(duban, "2026-12-14T13:00")
    assert [o for _d, o, _c in attempts(workdir)] == ["dead"]  # no second attempt

    r = duban("digest", "--now", "2026-12-14T14:00")
    assert r.code == 0, r.err
    assert "发送失败" in r.out and "550" in r.out and "monthly-report@2026-12" in r.out


# --- 13. a temporary failure is retried after a backoff --------------------------------------
def test_transient_failure_is_retried_after_backoff(duban, workdir, smtp):
    setup_rules(duban, workdir, MONTHLY, "2026-12-01T10:00")
    smtp.handler.data_reply = "451 4.3.0 try again later"
    r = tick(duban, "2026-12-14T09:05")
    assert "待重试 1 条" in r.out
    assert smtp.messages == []
    assert [o for _d, o, _c in attempts(workdir)] == ["failed"]

    # the first backoff is about a minute (±20 % jitter, so at least 48 s): 30 s later, no attempt
    tick(duban, "2026-12-14T09:05:30")
    assert [o for _d, o, _c in attempts(workdir)] == ["failed"]

    smtp.handler.data_reply = None
    tick(duban, "2026-12-14T11:05")
    assert len(smtp.messages) == 1 and "月度工作报告" in smtp.messages[0].subject
    rows = attempts(workdir)
    assert [(o, c) for _d, o, c in rows] == [("failed", "email"), ("sent", "email")]  # each attempt names its channel
    assert rows[0][0] == rows[1][0]  # the same delivery
    tick(duban, "2026-12-14T13:00")
    assert len(smtp.messages) == 1


def test_transient_failure_a_minute_later_sends_nothing_twice(duban, workdir, smtp):
    """A tick one minute after a 451 either waits (backoff, jittered around 60 s) or tries once more and
    fails again; no message arrives, and once the server accepts, exactly one does."""
    setup_rules(duban, workdir, MONTHLY, "2026-12-01T10:00")
    smtp.handler.data_reply = "451 4.3.0 try again later"
    tick(duban, "2026-12-14T09:05")
    tick(duban, "2026-12-14T09:06")
    assert smtp.messages == []
    assert len(attempts(workdir)) <= 2
    smtp.handler.data_reply = None
    tick(duban, "2026-12-14T11:05")
    tick(duban, "2026-12-14T11:06")
    assert len(smtp.messages) == 1


def test_done_cannot_create_an_occurrence_before_the_rule_existed(duban, workdir):
    """A rule added on 2026-12-01 has no November occurrence: `done` for it is refused, not invented."""
    duban("init", "--no-pack")
    (workdir / "r.yaml").write_text(
        "people:\n  secretary: {name: 王书记}\n"
        "rules:\n  - {id: monthly-report, title: 月度报告, owner: secretary, every: month, due: {day: 15}}\n",
        encoding="utf-8")
    duban("rules", "import", "r.yaml", "--now", "2026-12-01T09:00")
    r = duban("done", "monthly-report@2026-11", "--now", "2026-12-02T09:00")
    assert r.code == 2 and "没有编号为" in r.err
    assert duban("done", "monthly-report@2027-01", "--now", "2026-12-02T09:00").code == 0  # early is fine
