"""Bad rule files are refused whole, with a Chinese message naming the file, the line and the key."""

from __future__ import annotations

import re
from datetime import date

import pytest

from rules.errors import RuleFileError, RuleFileErrors
from rules.loader import load_rule_file

HEAD = """\
people:
  secretary: {name: 王书记}
  photo-assoc: {name: 摄影家协会}
groups:
  associations: [photo-assoc]
rules:
"""  # the first rule starts on line 7

CJK = re.compile(r"[\u4e00-\u9fff]")


def refused(path) -> list[RuleFileError]:
    """Load `path`, expecting a refusal; the problems it names."""
    with pytest.raises((RuleFileErrors, RuleFileError)) as info:
        load_rule_file(str(path))
    exc = info.value
    assert CJK.search(str(exc)), f"message is not Chinese: {exc}"
    assert str(path) in str(exc), f"message does not name the file: {exc}"
    return exc.errors if isinstance(exc, RuleFileErrors) else [exc]


CASES = [
    # name, rule file text, line, key (... = not checked), words the message must contain
    ("yaml-syntax", HEAD + "  - id: party-day\n    title: 主题党日\n     every: month\n", 9, None, "YAML 语法错误"),
    ("yaml-tab", "rules:\n\t- id: party-day\n", 2, None, "YAML 语法错误"),
    ("misspelt-key", HEAD + "  - id: party-day\n    title: 主题党日\n    owner: secretary\n    evry: month\n",
     10, "evry", "“every”"),
    ("unknown-top-key", "rule:\n  - id: party-day\n    title: 主题党日\n", 1, "rule", "“rules”"),
    ("feb-30", HEAD + "  - id: annual-report\n    title: 年度报告\n    owner: secretary\n    every: year\n"
     "    due: {month: 2, day: 30}\n", 11, "due", "2 月没有 30 日"),
    ("day-32", HEAD + "  - id: dues-collection\n    title: 收缴党费\n    owner: secretary\n    every: month\n"
     "    due:\n      day: 32\n", 12, "due.day", "32"),
    ("duplicate-id", HEAD + "  - id: party-day\n    title: 主题党日\n    owner: secretary\n    every: month\n"
     "  - id: party-day\n    title: 主题党日（重复）\n    owner: secretary\n    every: month\n", 11, "id", "重复"),
    ("unknown-owner", HEAD + "  - id: party-day\n    title: 主题党日\n    owner: zhangsan\n    every: month\n",
     9, "owner", "zhangsan"),
    ("unknown-escalate-to", HEAD + "  - id: party-day\n    title: 主题党日\n    owner: secretary\n"
     "    escalate_to: [secretary, lisi]\n    every: month\n", 10, "escalate_to", "lisi"),
    ("unknown-group", HEAD + "  - id: association-training\n    title: 会员创作培训\n    every: year\n"
     "    for_each: writers\n", 10, "for_each", "writers"),
    ("offset-without-unit", HEAD + "  - id: study-materials\n    title: 中心组学习材料发放\n    owner: secretary\n"
     "    event: study-session\n    offset: 3\n", 11, "offset", "+3d"),
    ("offset-bad-unit", HEAD + "  - id: study-materials\n    title: 中心组学习材料发放\n    owner: secretary\n"
     "    event: study-session\n    offset: -3x\n", 11, "offset", "-3x"),
    ("bad-timezone-in-rule", HEAD + "  - id: party-day\n    title: 主题党日\n    owner: secretary\n    every: month\n"
     "    timezone: Asia/Beijing\n", 11, "timezone", "Asia/Beijing"),
    ("every-and-event", HEAD + "  - id: study-plan\n    title: 制定学习计划\n    owner: secretary\n    every: month\n"
     "    event: document-received\n", 11, "event", "不能同时"),
    ("bad-at", HEAD + "  - id: party-day\n    title: 主题党日\n    owner: secretary\n    every: month\n"
     "    at: \"25:00\"\n", 11, "at", "25:00"),
    ("id-with-capitals", HEAD + "  - id: Party-Day\n    title: 主题党日\n    owner: secretary\n    every: month\n",
     7, "id", "小写"),
    ("window-backwards", HEAD + "  - id: makeup-study\n    title: 集中补学会议\n    owner: secretary\n"
     "    window: {from: 2025-10-28, to: 2025-08-28}\n", 10, "window", "早于"),
    # the whole rule lacks a schedule: the line of its `- id`, no particular key
    ("no-schedule", HEAD + "  - id: party-day\n    title: 主题党日\n    owner: secretary\n", 7, ..., "every"),
    ("bad-if-holiday", HEAD + "  - id: party-day\n    title: 主题党日\n    owner: secretary\n    every: month\n"
     "    if_holiday: next-working-day\n", 11, "if_holiday", "next-workday"),
]


@pytest.mark.parametrize("name, text, line, key, words", CASES, ids=[c[0] for c in CASES])
def test_bad_rule_file_is_refused_with_file_line_and_key(tmp_path, name, text, line, key, words):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    errors = refused(path)
    assert len(errors) == 1, [str(e) for e in errors]
    err = errors[0]
    assert err.file == str(path)
    assert err.line == line, str(err)
    if key is not ...:
        assert err.key == key, str(err)
    assert words in err.message
    assert CJK.search(err.message)
    assert f"第 {line} 行" in str(err)


def test_bad_file_timezone_is_reported_once_at_its_line(tmp_path):
    path = tmp_path / "timezone.yaml"
    path.write_text("timezone: Asia/Beijing\n" + HEAD
                    + "  - id: party-day\n    title: 主题党日\n    owner: secretary\n    every: month\n"
                    + "  - id: dues-collection\n    title: 收缴党费\n    owner: secretary\n    every: month\n",
                    encoding="utf-8")
    errors = refused(path)
    assert [(e.line, e.key) for e in errors] == [(1, "timezone")]


def test_not_utf8_is_refused(tmp_path):
    path = tmp_path / "gbk.yaml"
    path.write_bytes((HEAD + "  - id: party-day\n    title: 主题党日\n    every: month\n").encode("gbk"))
    [err] = refused(path)
    assert err.file == str(path)
    assert err.line == 2      # the first line with a non-ASCII byte
    assert "UTF-8" in err.message


@pytest.mark.parametrize("text", ["", "\n\n", "# 只有注释\n"])
def test_empty_file_is_refused(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text, encoding="utf-8")
    [err] = refused(path)
    assert err.file == str(path)
    assert "空" in err.message


def test_every_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(HEAD
                    + "  - id: party-day\n    title: 主题党日\n    owner: zhangsan\n    every: month\n"   # line 9
                    + "  - id: study-plan\n    title: 制定学习计划\n    owner: secretary\n"
                    + "    event: document-received\n    offset: 3\n",                              # line 15
                    encoding="utf-8")
    errors = refused(path)
    assert [(e.line, e.key) for e in errors] == [(9, "owner"), (15, "offset")]
    assert "2 处错误" in str(RuleFileErrors(errors))


def test_missing_file_is_refused(tmp_path):
    [err] = refused(tmp_path / "nope.yaml")
    assert "不存在" in err.message


# The example of spec.md ("Rule files"), completed with what it leaves out: the association members
# as people (groups hold person ids) and a default owner for the rules that name none.
SPEC_EXAMPLE = """\
timezone: Asia/Shanghai            # default
people:
  secretary: {name: 王书记, email: secretary@example.cn, wecom: WangShuJi, mobile: "13800000000"}
  photo-assoc: {name: 摄影家协会}
  writers-assoc: {name: 作家协会}
groups:
  associations: [photo-assoc, writers-assoc]   # each member is a person id
defaults:
  owner: secretary
  remind: [-3d, -1d, 0d]           # offsets from the due date
  at: "09:00"                      # local time reminders are sent
rules:
  - id: party-day                  # [a-z0-9-]+, unique, stable
    title: 主题党日
    source: "二(三)8"              # where the duty comes from
    owner: secretary               # a person or group id: who is reminded
    escalate_to: [secretary]       # who gets overdue escalations
    every: month                   # week | month | quarter | half-year | year
    due: {weekday: fri, nth: 1}    # first Friday of each month; also {day: 15}, {day: last},
                                   # {month: 1, day: 31} in a year; default: the period's last day
    if_holiday: next-workday       # keep | previous-workday | next-workday
    remind: [-3d, -1d]
    start: 2026-01-01              # first period; default: the day the rule is added
    escalate_after: 3wd            # default; then a 督办通知 goes to escalate_to
  - id: study-materials
    title: 中心组学习材料发放
    event: study-session           # due relative to each event of this type
    offset: -3d                    # 3 calendar days before the event's date
  - id: study-plan
    title: 制定学习计划
    event: document-received
    offset: +3wd                   # the 3rd working day after the event's date
  - id: ideology-seminar
    title: 意识形态工作专题研讨
    every: year
    quota: 2                       # done twice in each period
  - id: association-training
    title: 会员创作培训
    every: year
    for_each: associations         # one occurrence per member per period
  - id: makeup-study
    title: 集中补学会议
    window: {from: 2025-08-28, to: 2025-10-28}   # a one-off duty
    quota: 2
"""


def test_spec_example_loads(tmp_path):
    path = tmp_path / "spec-example.yaml"
    path.write_text(SPEC_EXAMPLE, encoding="utf-8")
    ruleset = load_rule_file(str(path))
    rules = {r.id: r for r in ruleset.rules}
    assert list(rules) == ["party-day", "study-materials", "study-plan", "ideology-seminar",
                           "association-training", "makeup-study"]
    assert ruleset.timezone == "Asia/Shanghai"
    assert ruleset.people["secretary"].mobile == "13800000000"
    assert ruleset.groups["associations"] == ("photo-assoc", "writers-assoc")

    party = rules["party-day"]
    assert (party.kind, party.every, party.if_holiday, party.start) == ("periodic", "month", "next-workday",
                                                                        date(2026, 1, 1))
    assert [str(o) for o in party.remind] == ["-3d", "-1d"]
    assert str(party.escalate_after) == "+3wd"
    assert party.source == "二(三)8"
    assert party.escalate_to == ("secretary",)

    assert (rules["study-materials"].kind, str(rules["study-materials"].offset)) == ("event", "-3d")
    assert rules["study-materials"].if_holiday == "previous-workday"      # before an event
    assert (rules["study-plan"].event, str(rules["study-plan"].offset)) == ("document-received", "+3wd")
    assert rules["study-plan"].if_holiday == "next-workday"
    assert [str(o) for o in rules["study-plan"].remind] == ["-3d", "-1d", "0d"]   # from defaults
    assert rules["ideology-seminar"].quota == 2
    assert rules["association-training"].for_each == "associations"
    assert rules["makeup-study"].window == (date(2025, 8, 28), date(2025, 10, 28))
    assert rules["makeup-study"].owner == "secretary"                       # from defaults
    assert all(r.at == "09:00" for r in ruleset.rules)


def test_spec_example_loads_verbatim_with_warnings(tmp_path):
    """The spec's example as printed: group members without a person entry and rules without an owner
    are accepted (the branch secretary is responsible) and the user is warned, not refused."""
    verbatim = (SPEC_EXAMPLE.replace("  photo-assoc: {name: 摄影家协会}\n  writers-assoc: {name: 作家协会}\n", "")
                .replace("defaults:\n  owner: secretary\n", "defaults:\n"))
    path = tmp_path / "spec-verbatim.yaml"
    path.write_text(verbatim, encoding="utf-8")
    ruleset = load_rule_file(str(path))
    rules = {r.id: r for r in ruleset.rules}
    assert rules["study-plan"].owner == "secretary"
    assert rules["association-training"].owner is None
    assert any("photo-assoc" in w and "writers-assoc" in w for w in ruleset.warnings)
    assert not any("study-plan" in w for w in ruleset.warnings)  # secretary exists: nothing to warn


# --- contacts: a WeCom id that could reach the whole group, a mobile that is no mobile number -------
@pytest.mark.parametrize("contact, value", [
    ("wecom", '"A|B|C"'), ("wecom", "'@all'"), ("wecom", "'@ALL'"), ("wecom", '"<@all>"'), ("wecom", "王书记"),
    ("wecom", '"Wang Shu"'), ("wecom", "a" * 65), ("wecom", '""'),
    ("mobile", '"12345"'), ("mobile", '"1380000000"'), ("mobile", '"138000000001"'), ("mobile", '"23800000000"'),
    ("mobile", "'@all'"), ("mobile", '"+1 13800000000"'),
])
def test_bad_wecom_id_or_mobile_is_refused(tmp_path, contact, value):
    path = tmp_path / "contacts.yaml"
    path.write_text(f"people:\n  secretary: {{name: 王书记, {contact}: {value}}}\n"
                    "rules:\n  - id: party-day\n    title: 主题党日\n    every: month\n", encoding="utf-8")
    [err] = refused(path)
    assert (err.line, err.key) == (2, f"people.secretary.{contact}"), str(err)
    assert ("企业微信账号" if contact == "wecom" else "手机号") in err.message


@pytest.mark.parametrize("contact, value, stored", [
    ("wecom", "WangShuJi", "WangShuJi"), ("wecom", "zhang.san@corp", "zhang.san@corp"), ("wecom", "a_b-c", "a_b-c"),
    ("wecom", "10086", "10086"), ("wecom", "a" * 64, "a" * 64),
    ("mobile", '"13800000000"', "13800000000"), ("mobile", "13800000000", "13800000000"),
    ("mobile", '"+8613800000000"', "13800000000"), ("mobile", '"86 138-0000-0000"', "13800000000"),
])
def test_good_wecom_id_and_mobile_are_accepted(tmp_path, contact, value, stored):
    path = tmp_path / "contacts.yaml"
    path.write_text(f"people:\n  secretary: {{name: 王书记, {contact}: {value}}}\n"
                    "rules:\n  - id: party-day\n    title: 主题党日\n    every: month\n", encoding="utf-8")
    assert getattr(load_rule_file(str(path)).people["secretary"], contact) == stored
