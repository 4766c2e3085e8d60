"""WeCom channels as a user notices them: rules in, `duban tick --now …`, messages on the loopback fake WeCom.

The fake's clock is set to the `--now` of every tick (`wecom.at`), so its rate limit (20 robot posts a
minute) and token lifetimes follow the injected time; nothing waits for a deadline. Preference order of
the channels: wecom-app → email → wecom-robot → console.
"""

from __future__ import annotations

import json
import textwrap
import time
from zoneinfo import ZoneInfo

import sqlalchemy as sa

ROBOT_PATH = "/cgi-bin/webhook/send"
MD_LIMIT = 4096


# --- helpers ---------------------------------------------------------------------------------
def monthly(rule_id: str, title: str, owner: str | None = None, for_each: str | None = None) -> str:
    who = f"for_each: {for_each}" if for_each else f"owner: {owner}"
    return textwrap.dedent(f"""\
        - id: {rule_id}
          title: {title}
          {who}
          every: month
          due: {{day: 15}}
          remind: [0d]
          escalate_after: none
        """)


def setup(duban, workdir, people: str, rules: str, now: str = "2026-12-01T10:00") -> None:
    """`duban init` and import a rule file made of `people` (YAML: people/groups) and `rules`."""
    p = workdir / "rules.yaml"
    p.write_text(textwrap.dedent(people) + "rules:\n" + textwrap.indent(rules, "  "), encoding="utf-8")
    r = duban("init", "--no-pack")
    assert r.code == 0, r.err
    r = duban("rules", "import", p, "--now", now)
    assert r.code == 0, r.err


def tick(duban, wecom, now: str):
    """One `duban tick` at `now`, with the fake WeCom's clock set to the same instant first."""
    wecom.at(now)
    r = duban("tick", "--now", now)
    assert r.code == 0, r.err
    return r


def query(workdir, sql: str) -> list[tuple]:
    """Rows from the test's database: the SQLite file in `workdir`, or a database URL."""
    engine = sa.create_engine(workdir if isinstance(workdir, str) else f"sqlite:///{workdir / 'duban.db'}")
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(sql))]
    finally:
        engine.dispose()


def attempts(workdir) -> list[tuple]:
    """(recipient, outcome, channel, error, detail) of every attempt, oldest first."""
    rows = query(workdir, "SELECT d.recipient, a.outcome, a.channel, a.error, a.detail FROM delivery_attempts a "
                          "JOIN deliveries d ON d.id = a.delivery_id ORDER BY a.id")
    return [(r, o, c, e, json.loads(d) if isinstance(d, str) else d) for r, o, c, e, d in rows]


def delivery_status(workdir) -> dict[str, tuple[str, str | None]]:
    """recipient → (status, channel) of the reminders for December 2026."""
    return {r: (s, c) for r, s, c in query(workdir, "SELECT recipient, status, channel FROM deliveries "
                                                    "WHERE kind = 'reminder' AND occurrence_key LIKE '%@2026-12%'")}


def robot_posts(wecom) -> int:
    """HTTP requests that reached the robot endpoint (accepted or not)."""
    return sum(1 for _m, path in wecom.requests_log if path.startswith(ROBOT_PATH))


def contents(wecom) -> list[str]:
    return [m[m["msgtype"]]["content"] for m in wecom.robot_messages]


def wait_until(cond, timeout: float = 5.0) -> None:
    """Wait for the fake's handler thread (not for a deadline of the product)."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "the fake WeCom never got there"
        time.sleep(0.02)


ROBOT_PEOPLE = """\
    people:
      secretary: {name: 王书记, wecom: WangShuJi}
      office: {name: 张主任, mobile: "13800000001"}
    """


# --- 1. robot: markdown with a mention; mobile-only people mentioned by a text message ---------
def test_robot_markdown_mentions_the_responsible_person(duban, workdir, wecom):
    wecom.use_robot()
    setup(duban, workdir, ROBOT_PEOPLE, monthly("monthly-report", "月度工作报告", "secretary")
          + monthly("office-ledger", "办公室台账", "office"))
    r = tick(duban, wecom, "2026-12-15T09:05")
    assert "发送 提醒 2 条" in r.out

    md = [m["markdown"]["content"] for m in wecom.robot_messages if m["msgtype"] == "markdown"]
    wang = [c for c in md if "月度工作报告" in c]
    assert len(wang) == 1
    assert wang[0].startswith("<@WangShuJi>\n")
    assert "2026年12月15日" in wang[0] and "monthly-report@2026-12" in wang[0]

    # markdown cannot mention by mobile: a short text message with mentioned_mobile_list does it
    texts = [m["text"] for m in wecom.robot_messages if m["msgtype"] == "text"]
    assert len(texts) == 1
    assert texts[0]["mentioned_mobile_list"] == ["13800000001"]
    assert "办公室台账" in texts[0]["content"]
    office_md = [c for c in md if "办公室台账" in c]
    assert len(office_md) == 1 and "<@" not in office_md[0] and "2026年12月15日" in office_md[0]
    assert all(len(c.encode()) <= MD_LIMIT for c in md)
    assert len(wecom.robot_messages) == 3 == robot_posts(wecom)
    assert sorted((r, o, c) for r, o, c, _e, _d in attempts(workdir)) == [
        ("office", "sent", "wecom-robot"), ("secretary", "sent", "wecom-robot")]


# --- 2. robot pacing: 150 reminders at one minute, never more than 20 a minute ---------------
def many_people(n: int, contact: str) -> str:
    def card(i: int) -> str:
        extra = {"wecom": f", wecom: U{i:03d}", "mobile": f', mobile: "139{i:08d}"', "none": ""}[contact]
        return f"  p{i:03d}: {{name: 成员{i:03d}{extra}}}"
    return ("people:\n" + "\n".join(card(i) for i in range(n))
            + "\ngroups:\n  members: [" + ", ".join(f"p{i:03d}" for i in range(n)) + "]\n")


def test_robot_paces_150_reminders_at_20_a_minute(duban, workdir, wecom, db_url):
    duban.state["url"] = db_url  # on SQLite and on PostgreSQL (its pacing takes an advisory lock)
    wecom.use_robot()
    setup(duban, workdir, many_people(150, "wecom"), monthly("thought-report", "思想汇报", for_each="members"))
    per_tick = []
    for minute in range(10):
        before = len(wecom.robot_messages)
        tick(duban, wecom, f"2026-12-15T09:{minute:02d}")
        per_tick.append(len(wecom.robot_messages) - before)
        # the product paced itself: every post it made was accepted, none answered 45009
        assert robot_posts(wecom) == len(wecom.robot_messages), per_tick
        if minute == 0:
            assert 0 < per_tick[0] <= 20
    assert all(n <= 20 for n in per_tick), per_tick
    assert sum(per_tick[:8]) == 150, per_tick  # all of them within 8 minutes
    mentioned = [c.split("\n", 1)[0] for c in contents(wecom)]
    assert sorted(mentioned) == sorted(f"<@U{i:03d}>" for i in range(150))  # each exactly once
    assert {s for s, _c in delivery_status(db_url).values()} == {"sent"}
    # deferrals are not attempts: one attempt per reminder
    assert len(attempts(db_url)) == 150


def test_robot_pacing_counts_the_mention_text_of_mobile_only_people(duban, workdir, wecom):
    wecom.use_robot()
    setup(duban, workdir, many_people(25, "mobile"), monthly("thought-report", "思想汇报", for_each="members"))
    tick(duban, wecom, "2026-12-15T09:00")
    assert len(wecom.robot_messages) <= 20
    assert robot_posts(wecom) == len(wecom.robot_messages)  # nothing refused with 45009
    for minute in range(1, 4):
        tick(duban, wecom, f"2026-12-15T09:{minute:02d}")
    texts = [m["text"]["mentioned_mobile_list"][0] for m in wecom.robot_messages if m["msgtype"] == "text"]
    assert sorted(texts) == sorted(f"139{i:08d}" for i in range(25))  # one mention each, none repeated


# --- 3. robot 45009: nothing marked sent, retried later, arrives once ---------------------------
def test_robot_rate_limit_errcode_is_retried_later(duban, workdir, wecom):
    wecom.use_robot()
    setup(duban, workdir, ROBOT_PEOPLE, monthly("monthly-report", "月度工作报告", "secretary"))
    wecom.robot_errors.append({"errcode": 45009, "errmsg": "api freq out of limit"})
    r = tick(duban, wecom, "2026-12-15T09:05")
    assert "待重试 1 条" in r.out
    assert wecom.robot_messages == []
    assert delivery_status(workdir)["secretary"] == ("pending", None)
    [(_r, outcome, channel, error, detail)] = attempts(workdir)
    assert (outcome, channel, detail["errcode"]) == ("failed", "wecom-robot", 45009)
    assert "45009" in error

    tick(duban, wecom, "2026-12-15T09:05:30")  # backoff: about a minute, at least 48 s
    assert len(attempts(workdir)) == 1
    tick(duban, wecom, "2026-12-15T09:10")
    tick(duban, wecom, "2026-12-15T09:20")
    assert len(wecom.robot_messages) == 1 and "月度工作报告" in contents(wecom)[0]
    assert [(o, c) for _r, o, c, _e, _d in attempts(workdir)] == [("failed", "wecom-robot"), ("sent", "wecom-robot")]
    assert delivery_status(workdir)["secretary"] == ("sent", "wecom-robot")


# --- 4. robot invalid key: channel disabled, reported, other channels go on, key fix lifts it ----
KEY_PEOPLE = """\
    people:
      secretary: {name: 王书记, email: secretary@example.cn, wecom: WangShuJi}
      office: {name: 张主任, wecom: ZhangZhuRen}
    """


def test_robot_invalid_key_disables_the_channel_until_the_key_changes(duban, workdir, wecom, smtp, caplog):
    wecom.use_robot(key="not-the-right-key")
    setup(duban, workdir, KEY_PEOPLE, monthly("monthly-report", "月度工作报告", "secretary")
          + monthly("office-ledger", "办公室台账", "office"))
    r = tick(duban, wecom, "2026-12-15T09:05")
    assert robot_posts(wecom) == 1 and wecom.robot_messages == []
    # the office has only the robot: its message waits (not lost) until the key is fixed; the
    # secretary gets mail as usual
    assert "待重试 1 条" in r.out
    status = delivery_status(workdir)
    assert status["office"] == ("pending", None)
    assert status["secretary"] == ("sent", "email")
    assert [m.recipients for m in smtp.messages] == [["secretary@example.cn"]]
    [office] = [a for a in attempts(workdir) if a[0] == "office"]
    assert office[1:3] == ("failed", "wecom-robot") and "93000" in office[3] and "DUBAN_WECOM_ROBOT_KEY" in office[3]
    assert any("已停用" in rec.getMessage() and "群机器人" in rec.getMessage() for rec in caplog.records)
    [(state,)] = query(workdir, "SELECT value FROM state WHERE key = 'channels_disabled'")
    assert "wecom-robot" in state

    # the digest shows the disabled channel and the dead delivery; sent to the secretary by email
    r = duban("digest", "--now", "2026-12-15T10:00")
    assert r.code == 0, r.err
    assert "企业微信群机器人" in r.out and "已停用" in r.out and "DUBAN_WECOM_ROBOT_KEY" in r.out
    assert "发送失败" in r.out and "等待重试" in r.out
    wecom.at("2026-12-15T10:00")
    r = duban("digest", "--send", "--now", "2026-12-15T10:00")
    assert r.code == 0, r.err
    digest_mail = [m for m in smtp.messages if "每日督办汇总" in m.subject]
    assert len(digest_mail) == 1 and "已停用" in digest_mail[0].text and "群机器人" in digest_mail[0].text

    # later ticks leave the robot alone: the office's messages wait for the fix (not diverted to the log)
    tick(duban, wecom, "2026-12-16T09:05")
    tick(duban, wecom, "2026-12-16T11:00")
    assert robot_posts(wecom) == 1

    # the right key lifts the block: the next overdue alert goes through the robot
    wecom.use_robot()
    tick(duban, wecom, "2026-12-17T09:05")
    assert robot_posts(wecom) == 2
    assert len(wecom.robot_messages) == 1
    assert contents(wecom)[0].startswith("<@ZhangZhuRen>") and "办公室台账" in contents(wecom)[0]


def test_digest_stops_warning_once_the_key_is_fixed(duban, workdir, wecom):
    wecom.use_robot(key="not-the-right-key")
    setup(duban, workdir, KEY_PEOPLE, monthly("office-ledger", "办公室台账", "office"))
    tick(duban, wecom, "2026-12-15T09:05")
    assert "已停用" in duban("digest", "--now", "2026-12-15T10:00").out
    wecom.use_robot()
    tick(duban, wecom, "2026-12-17T09:05")
    assert len(wecom.robot_messages) == 1  # the robot works again
    r = duban("digest", "--now", "2026-12-17T10:00")
    assert r.code == 0, r.err
    assert "已停用" not in r.out


# --- 5. the whole webhook URL pasted as the key ------------------------------------------------
def test_robot_key_given_as_the_whole_webhook_url(duban, workdir, wecom):
    wecom.use_robot(key=f"{wecom.base_url}{ROBOT_PATH}?key={wecom.robot_key}")
    setup(duban, workdir, ROBOT_PEOPLE, monthly("monthly-report", "月度工作报告", "secretary"))
    tick(duban, wecom, "2026-12-15T09:05")
    assert len(wecom.robot_messages) == 1 and "月度工作报告" in contents(wecom)[0]
    assert wecom.requests_log == [("POST", f"{ROBOT_PATH}?key={wecom.robot_key}")]
    assert delivery_status(workdir)["secretary"] == ("sent", "wecom-robot")


# --- 6. HTTP 500 retried; a timeout after acceptance repeats at most once -----------------------
def test_robot_http_500_is_retried(duban, workdir, wecom):
    wecom.use_robot()
    setup(duban, workdir, ROBOT_PEOPLE, monthly("monthly-report", "月度工作报告", "secretary"))
    wecom.robot_errors.append({"http_status": 500})
    r = tick(duban, wecom, "2026-12-15T09:05")
    assert "待重试 1 条" in r.out and wecom.robot_messages == []
    tick(duban, wecom, "2026-12-15T09:15")
    tick(duban, wecom, "2026-12-15T09:30")
    assert len(wecom.robot_messages) == 1
    rows = attempts(workdir)
    assert [(o, c) for _r, o, c, _e, _d in rows] == [("failed", "wecom-robot"), ("sent", "wecom-robot")]
    assert "HTTP 500" in rows[0][3]


def test_robot_timeout_after_acceptance_repeats_at_most_once(duban, workdir, wecom, monkeypatch):
    import notifications.channels.wecom_common as common

    monkeypatch.setattr(common, "TIMEOUT", (2, 0.3))  # a short read timeout keeps the test fast
    wecom.use_robot()
    setup(duban, workdir, ROBOT_PEOPLE, monthly("monthly-report", "月度工作报告", "secretary"))
    wecom.robot_errors.append({"delay": 0.8, "accept": True})  # posted to the group, answered too late
    r = tick(duban, wecom, "2026-12-15T09:05")
    assert "待重试 1 条" in r.out
    assert "超时" in attempts(workdir)[0][3]
    wait_until(lambda: len(wecom.robot_messages) == 1)  # the fake accepts after its delay
    for now in ("2026-12-15T09:15", "2026-12-15T09:30", "2026-12-15T10:00"):
        tick(duban, wecom, now)
    assert 1 <= len(wecom.robot_messages) <= 2  # never lost; repeated at most once
    assert len(set(contents(wecom))) == 1  # a repeat is the same message (same 消息编号)
    assert delivery_status(workdir)["secretary"] == ("sent", "wecom-robot")
    assert [o for _r, o, _c, _e, _d in attempts(workdir)] == ["failed", "sent"]


# --- 7. a long digest through the robot: several posts, whole lines, within 4096 bytes ----------
def test_long_digest_is_split_at_line_ends_within_the_byte_limit(duban, workdir, wecom, smtp):
    wecom.use_robot()
    n = 80
    people = ("people:\n  secretary: {name: 王书记, wecom: WangShuJi}\n"
              + "".join(f"  p{i:02d}: {{name: 责任人{i:02d}, email: p{i:02d}@example.cn}}\n" for i in range(n)))
    titles = [f"整改事项第{i:02d}项：落实巡察反馈意见并建立长效机制台账" for i in range(n)]
    setup(duban, workdir, people, "".join(monthly(f"item-{i:02d}", titles[i], f"p{i:02d}") for i in range(n)))
    tick(duban, wecom, "2026-12-16T09:05")  # all 80 overdue: the owners are told by email
    assert len(smtp.messages) == n and wecom.robot_messages == []

    from scheduler.clock import parse_now
    from scheduler.db import make_engine, session_scope
    from scheduler.digest import render_digest

    now = "2026-12-16T10:00"
    wecom.at(now)
    engine = make_engine(f"sqlite:///{workdir / 'duban.db'}")
    with session_scope(engine) as s:
        expected = render_digest(s, parse_now(now, ZoneInfo("Asia/Shanghai")), "secretary").markdown
    engine.dispose()
    assert all(t in expected for t in titles)

    r = duban("digest", "--send", "--now", now)
    assert r.code == 0, r.err
    assert "每日汇总已发送" in r.out
    posts = contents(wecom)
    assert len(posts) >= 2
    assert robot_posts(wecom) == len(posts)  # none refused (40058 would mean too long)
    assert all(m["msgtype"] == "markdown" for m in wecom.robot_messages)
    assert all(len(p.encode("utf-8")) <= MD_LIMIT for p in posts)
    assert posts[0].startswith("<@WangShuJi>\n")
    expected_lines = set(expected.split("\n"))
    for p in posts:
        body = p.removeprefix("<@WangShuJi>\n")
        for line in body.split("\n"):
            assert line in expected_lines, f"a line was cut: {line!r}"
    joined = "\n".join(posts)
    assert all(t in joined for t in titles)


def test_robot_mention_never_pushes_a_post_over_the_limit(wecom):
    from notifications.channels.wecom_robot import WeComRobotChannel
    from notifications.message import Message, Recipient

    # one chunk of whole lines, 4090 bytes: within the limit until the mention is added
    line = "> " + "逾期事项说明" * 5  # 92 bytes
    lines = [line] * 43
    lines.append("> " + "x" * (4090 - len("\n".join(lines).encode()) - 3))
    markdown = "\n".join(lines)
    assert len(markdown.encode()) == 4090
    channel = WeComRobotChannel(wecom.robot_key, wecom.base_url)
    msg = Message("digest", "每日督办汇总", markdown, "-|digest|2026-12-16|secretary", markdown=markdown)
    channel.send(msg, Recipient("secretary", "王书记", wecom="WangShuJi"))
    assert all(len(c.encode()) <= MD_LIMIT for c in contents(wecom))
    assert "\n".join(contents(wecom)).count("逾期事项说明") == markdown.count("逾期事项说明")


# --- 8. application messages ----------------------------------------------------------------
APP_USERS = ("WangShuJi", "ZhangZhuRen", "LiuKeZhang", "ChenKuaiJi")
APP_PEOPLE = """\
    people:
      secretary: {name: 王书记, wecom: WangShuJi}
      office: {name: 张主任, wecom: ZhangZhuRen}
      biz: {name: 刘科长, wecom: LiuKeZhang}
      finance: {name: 陈会计, wecom: ChenKuaiJi}
      ghost-mail: {name: 调离人员甲, wecom: LeftTheUnit, email: ghost@example.cn}
      ghost: {name: 调离人员乙, wecom: AlsoGone}
    groups:
      staff: [secretary, office, biz, finance]
    """


def app_calls(wecom, path: str) -> int:
    return sum(1 for _m, p in wecom.requests_log if p.startswith(path))


def test_app_messages_go_to_each_user_id_with_one_token(duban, workdir, wecom):
    wecom.server.users = APP_USERS
    # a private deployment's base URL (trailing slash and all) is where every call goes
    wecom.server.base_url += "/"
    wecom.use_app()
    setup(duban, workdir, APP_PEOPLE, monthly("weekly-study", "理论学习", for_each="staff"))
    r = tick(duban, wecom, "2026-12-15T09:05")
    assert "发送 提醒 4 条" in r.out
    assert wecom.token_requests == 1  # fetched once, cached for the other three
    assert app_calls(wecom, "/cgi-bin/gettoken") == 1 and app_calls(wecom, "/cgi-bin/message/send") == 4
    assert all(m[0] in ("GET", "POST") and m[1].startswith("/cgi-bin/") for m in wecom.requests_log)
    for user in APP_USERS:
        [body] = wecom.app_inbox[user]
        # a card the person taps: the action page of their own duty
        assert body["touser"] == user and body["msgtype"] == "textcard" and body["agentid"] == wecom.agent_id
        card = body["textcard"]
        assert "理论学习" in card["title"] and "理论学习" in card["description"] and card["btntxt"] == "登记"
        assert card["url"].startswith("http://127.0.0.1:8080/a/")
        assert len(card["title"].encode()) <= 128 and len(card["description"].encode()) <= 512
    assert {c for _r, _o, c, _e, _d in attempts(workdir)} == {"wecom-app"}
    assert {s for s, _c in delivery_status(workdir).values()} == {"sent"}


def test_app_token_refreshed_on_expired_token_errcode(duban, workdir, wecom):
    wecom.server.users = APP_USERS
    wecom.use_app()
    setup(duban, workdir, APP_PEOPLE, monthly("monthly-report", "月度工作报告", "secretary"))
    wecom.app_errors.append({"errcode": 42001, "errmsg": "access_token expired"})
    r = tick(duban, wecom, "2026-12-15T09:05")
    assert "发送 提醒 1 条" in r.out
    assert wecom.token_requests == 2  # fetched, refused as expired, fetched again, sent
    assert len(wecom.app_inbox["WangShuJi"]) == 1
    assert [(o, c) for _r, o, c, _e, _d in attempts(workdir)] == [("sent", "wecom-app")]


def test_app_channel_caches_the_token_and_refreshes_it_after_expiry(wecom):
    from notifications.channels.wecom_app import WeComAppChannel
    from notifications.message import Message, Recipient

    channel = WeComAppChannel(wecom.corp_id, wecom.corp_secret, wecom.agent_id, wecom.base_url)
    wang, zhang = Recipient("secretary", "王书记", wecom="WangShuJi"), Recipient("office", "张主任", wecom="ZhangZhuRen")

    def msg(n: int) -> Message:
        return Message("reminder", f"提醒 {n}", f"第 {n} 条", f"k{n}", markdown=f"**第 {n} 条**")

    channel.send(msg(1), wang)
    channel.send(msg(2), zhang)
    assert wecom.token_requests == 1
    wecom.expire_tokens()
    channel.send(msg(3), wang)  # 42001 → a new token → sent
    assert wecom.token_requests == 2
    channel.send(msg(4), zhang)
    assert wecom.token_requests == 2
    assert len(wecom.app_inbox["WangShuJi"]) == 2 and len(wecom.app_inbox["ZhangZhuRen"]) == 2


def test_app_unknown_user_falls_back_to_email_or_is_dead_per_person(duban, workdir, wecom, smtp):
    wecom.server.users = APP_USERS
    wecom.use_app()
    setup(duban, workdir, APP_PEOPLE, monthly("monthly-report", "月度工作报告", "secretary")
          + monthly("handover", "工作交接", "ghost-mail") + monthly("archive", "档案移交", "ghost"))
    r = tick(duban, wecom, "2026-12-15T09:05")
    assert "放弃 1 条" in r.out
    status = delivery_status(workdir)
    assert status == {"secretary": ("sent", "wecom-app"), "ghost-mail": ("sent", "email"), "ghost": ("dead", None)}
    assert len(wecom.app_inbox["WangShuJi"]) == 1
    assert [m.recipients for m in smtp.messages] == [["ghost@example.cn"]]
    by_person: dict[str, list] = {}
    for rcpt, outcome, channel, error, _d in attempts(workdir):
        by_person.setdefault(rcpt, []).append((outcome, channel, error))
    assert [(o, c) for o, c, _e in by_person["ghost-mail"]] == [("failed", "wecom-app"), ("sent", "email")]
    [(outcome, channel, error)] = by_person["ghost"]
    assert (outcome, channel) == ("dead", "wecom-app")
    assert "81013" in error and "不存在" in error
    # one person's bad id does not disable the channel
    assert query(workdir, "SELECT value FROM state WHERE key = 'channels_disabled'") in ([], [("{}",)])
    r = duban("digest", "--now", "2026-12-15T10:00")
    assert "发送失败" in r.out and "archive@2026-12" in r.out
    tick(duban, wecom, "2026-12-15T11:00")
    assert len(by_person["ghost"]) == len([a for a in attempts(workdir) if a[0] == "ghost"])  # not retried


def test_app_wrong_corp_secret_disables_the_channel_and_mail_takes_over(duban, workdir, wecom, smtp):
    wecom.server.users = APP_USERS
    wecom.use_app(secret="wrong-secret")
    setup(duban, workdir, """\
        people:
          secretary: {name: 王书记, wecom: WangShuJi, email: secretary@example.cn}
          office: {name: 张主任, wecom: ZhangZhuRen, email: office@example.cn}
        """, monthly("monthly-report", "月度工作报告", "secretary") + monthly("office-ledger", "办公室台账", "office"))
    r = tick(duban, wecom, "2026-12-15T09:05")
    assert "发送 提醒 2 条" in r.out
    assert wecom.token_requests == 1 and app_calls(wecom, "/cgi-bin/message/send") == 0
    assert sorted(m.recipients[0] for m in smtp.messages) == ["office@example.cn", "secretary@example.cn"]
    errors = [e for _r, o, c, e, _d in attempts(workdir) if c == "wecom-app"]
    assert len(errors) == 1 and "40001" in errors[0] and "DUBAN_WECOM_CORP_SECRET" in errors[0]
    r = duban("digest", "--now", "2026-12-15T10:00")
    assert "企业微信应用消息" in r.out and "已停用" in r.out
    tick(duban, wecom, "2026-12-16T09:05")  # overdue alerts: by mail, WeCom not asked again
    assert wecom.token_requests == 1 and len(smtp.messages) == 4
    wecom.use_app()  # the right secret lifts the block
    tick(duban, wecom, "2026-12-17T09:05")
    assert len(wecom.app_inbox["WangShuJi"]) == 1 and len(wecom.app_inbox["ZhangZhuRen"]) == 1
    assert len(smtp.messages) == 4


def test_app_card_of_a_very_long_title_stays_within_the_limits(duban, workdir, wecom):
    """WeCom refuses a textcard whose title is over 128 bytes or description over 512 (the fake checks)."""
    wecom.server.users = APP_USERS
    wecom.use_app()
    long_title = "关于落实巡察反馈意见整改工作中意识形态工作责任制专项检查及问题整改情况报告" * 2
    setup(duban, workdir, APP_PEOPLE, monthly("long-one", long_title, "secretary"))
    r = tick(duban, wecom, "2026-12-15T09:05")
    assert "发送 提醒 1 条" in r.out, r.out + r.err
    [body] = wecom.app_messages
    card = body["textcard"]
    assert len(card["title"].encode()) <= 128 and card["title"].endswith("…")
    assert len(card["description"].encode()) <= 512


# --- 6. ids that would reach everybody: refused on import, and never used at send time --------
def store_contact(workdir, person: str, column: str, value: str) -> None:
    """Change a stored contact directly, as a version without the id checks could have stored it."""
    engine = sa.create_engine(f"sqlite:///{workdir / 'duban.db'}")
    with engine.begin() as c:
        c.execute(sa.text(f"UPDATE people SET {column} = :v WHERE id = :p"), {"v": value, "p": person})
    engine.dispose()


def test_robot_never_mentions_the_whole_group(duban, workdir, wecom):
    wecom.use_robot()
    setup(duban, workdir, ROBOT_PEOPLE, monthly("monthly-report", "<@all> 紧急[点此](http://x.cn)", "secretary")
          + monthly("office-ledger", "办公室台账", "office"))
    store_contact(workdir, "secretary", "wecom", "@all")
    store_contact(workdir, "office", "mobile", "@all")
    r = tick(duban, wecom, "2026-12-15T09:05")
    assert "发送 提醒 2 条" in r.out
    md = contents(wecom)
    assert len(md) == 2 and not any("<@" in c or "[点此]" in c for c in md), md  # no mention, no markup
    assert any("＜@all＞ 紧急" in c for c in md)  # the title is shown, escaped
    assert not [m for m in wecom.robot_messages if m["msgtype"] == "text"]  # "@all" is no mobile to mention


def test_app_never_sends_to_several_users_or_to_all(duban, workdir, wecom, smtp):
    wecom.server.users = APP_USERS
    wecom.use_app()
    people = """\
        people:
          secretary: {name: 王书记, wecom: WangShuJi, email: secretary@example.cn}
          office: {name: 张主任, wecom: ZhangZhuRen, email: office@example.cn}
        """
    setup(duban, workdir, people, monthly("monthly-report", "月度工作报告", "secretary")
          + monthly("office-ledger", "办公室台账", "office"))
    store_contact(workdir, "secretary", "wecom", "WangShuJi|LiuKeZhang|ChenKuaiJi")
    store_contact(workdir, "office", "wecom", "@ALL")
    r = tick(duban, wecom, "2026-12-15T09:05")
    assert "发送 提醒 2 条" in r.out
    assert wecom.app_messages == []  # neither id was used: nobody else got the reminders
    assert delivery_status(workdir) == {"secretary": ("sent", "email"), "office": ("sent", "email")}
    assert sorted(m.recipients[0] for m in smtp.messages) == ["office@example.cn", "secretary@example.cn"]
