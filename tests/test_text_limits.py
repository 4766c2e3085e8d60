"""Texts people write: bounded lengths, a `description` for long wording, no control characters.

Control characters (ESC, NUL, BEL, C1 controls, bidi overrides) are refused in every text of a rule file
and of the CLI, naming file, line and key; and text already stored (from before these checks) is
cleaned wherever duban shows it: terminal tables, the CSV and xlsx ledger, mail headers.
"""

from __future__ import annotations

import csv
import json
import re

import openpyxl
import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session

from rules.errors import RuleFileError, RuleFileErrors
from rules.loader import load_rule_file

CJK = re.compile(r"[\u4e00-\u9fff]")
# what must never reach a terminal, a spreadsheet or a header (newlines and tabs only where allowed)
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

HEAD = """\
people:
  secretary: {name: 王书记, email: secretary@example.cn}
rules:
  - id: monthly-report
    every: month
    due: {day: 15}
    remind: [0d]
    escalate_after: none
"""  # a rule's own keys follow from line 9 on


def rule_text(**keys: str) -> str:
    """HEAD with `keys` (YAML values, written as is) as the rule's keys; `title` defaults to 月度报告."""
    keys = {"title": "月度报告", **keys}
    return HEAD + "".join(f"    {k}: {v}\n" for k, v in keys.items())


def refused(tmp_path, text: str) -> RuleFileError:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises((RuleFileError, RuleFileErrors)) as info:
        load_rule_file(str(path))
    errors = info.value.errors if isinstance(info.value, RuleFileErrors) else [info.value]
    assert len(errors) == 1, [str(e) for e in errors]
    assert str(path) in str(errors[0]) and CJK.search(errors[0].message)
    return errors[0]


def ok(r):
    assert r.code == 0, r.err
    return r


# --- 1. lengths, and `description` for long wording ------------------------------------------
def test_title_over_200_characters_points_to_description(tmp_path):
    err = refused(tmp_path, rule_text(title="督" * 201))
    assert (err.line, err.key) == (9, "title")
    assert "201" in err.message and "200" in err.message and "description" in err.message
    assert load_rule_file(_write(tmp_path, rule_text(title="督" * 200))).rules[0].title == "督" * 200


@pytest.mark.parametrize("key, limit", [("description", 5000), ("source", 200), ("note", 2000)])
def test_other_rule_texts_are_bounded(tmp_path, key, limit):
    err = refused(tmp_path, rule_text(**{key: "督" * (limit + 1)}))
    assert err.key == key and f"{limit} 字" in err.message
    rule = load_rule_file(_write(tmp_path, rule_text(**{key: "督" * limit}))).rules[0]
    assert getattr(rule, key) == "督" * limit


def test_person_name_is_bounded(tmp_path):
    err = refused(tmp_path, HEAD.replace("name: 王书记", "name: " + "王" * 101) + "    title: 月度报告\n")
    assert (err.line, err.key) == (2, "people.secretary.name") and "100 字" in err.message


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "ok.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


DESCRIPTION = "对照整改报告逐项检查：\n\t一、会议记录是否完整；\n\t二、经费使用是否合规。"


def test_description_is_kept_through_import_show_export_and_reimport(duban, workdir):
    text = rule_text(title="季度专项检查", description=json.dumps(DESCRIPTION, ensure_ascii=False))  # YAML "…"
    (workdir / "rules.yaml").write_text(text, encoding="utf-8")
    ok(duban("init", "--no-pack"))
    ok(duban("rules", "import", "rules.yaml"))
    assert duban("rules", "show", "monthly-report", "--format", "json").json()["description"] == DESCRIPTION
    ok(duban("rules", "export", "--out", "export.yaml"))
    exported = yaml.safe_load((workdir / "export.yaml").read_text(encoding="utf-8"))
    assert exported["rules"][0]["description"] == DESCRIPTION
    r = ok(duban("rules", "import", "export.yaml"))
    assert "新增 0 条，更新 0 条，未变 1 条" in r.out


# --- 2. control characters refused in every text of a rule file -------------------------------
CONTROL_CASES = [
    # name, rule file text, line, key
    ("title-esc", rule_text(title='"\\e[31m月度报告"'), 9, "title"),
    ("title-nul", rule_text(title='"月度\\0报告"'), 9, "title"),
    ("title-bel", rule_text(title='"月度\\a报告"'), 9, "title"),
    ("title-c1-csi", rule_text(title='"月度\\x9b2J报告"'), 9, "title"),
    ("title-bidi-override", rule_text(title="月度\u202e告报"), 9, "title"),
    ("title-bidi-isolate", rule_text(title="月度\u2066报告"), 9, "title"),
    ("title-newline", rule_text(title='"月度\\n报告"'), 9, "title"),
    ("title-tab", rule_text(title='"月度\\t报告"'), 9, "title"),
    ("source-esc", rule_text(source='"二(三)\\e8"'), 10, "source"),
    ("description-esc", rule_text(description='"第一行\\n第二行\\e[2J"'), 10, "description"),
    ("note-bidi", rule_text(note="备注\u202d"), 10, "note"),
    ("person-name-esc", HEAD.replace("name: 王书记", 'name: "王\\e]0;x\\a书记"') + "    title: 月度报告\n", 2,
     "people.secretary.name"),
    ("email-esc", HEAD.replace("secretary@example.cn", '"secre\\etary@example.cn"') + "    title: 月度报告\n", 2,
     "people.secretary.email"),
    ("group-member", HEAD.replace("rules:\n", 'groups:\n  team: [secretary, "王\\e书记"]\nrules:\n')
     + "    title: 月度报告\n", 4, "groups.team"),
]


@pytest.mark.parametrize("name, text, line, key", CONTROL_CASES, ids=[c[0] for c in CONTROL_CASES])
def test_control_characters_are_refused_naming_line_and_key(tmp_path, name, text, line, key):
    err = refused(tmp_path, text)
    assert (err.line, err.key) == (line, key), str(err)


def test_control_character_is_named_by_its_code_and_the_cli_exits_2(duban, workdir):
    (workdir / "rules.yaml").write_text(rule_text(title='"\\e[31m月度报告"'), encoding="utf-8")
    ok(duban("init", "--no-pack"))
    r = duban("rules", "import", "rules.yaml")
    assert r.code == 2 and "U+001B" in r.err and "第 9 行" in r.err and "键 title" in r.err
    assert "\x1b" not in r.err
    assert duban("rules", "list", "--format", "json").json() == []


def test_description_and_note_may_have_newlines_and_tabs(tmp_path):
    rule = load_rule_file(_write(tmp_path, rule_text(description='"一\\n\\t二"', note='"三\\n四"'))).rules[0]
    assert (rule.description, rule.note) == ("一\n\t二", "三\n四")


# --- 3. control characters refused in what the CLI records -----------------------------------
CLI_RULES = rule_text() + "  - id: study-plan\n    title: 制定学习计划\n    owner: secretary\n" \
                          "    event: document-received\n    offset: +3wd\n"
KEY = "monthly-report@2026-12"


@pytest.fixture
def branch(duban, workdir):
    (workdir / "rules.yaml").write_text(CLI_RULES, encoding="utf-8")
    ok(duban("init", "--no-pack"))
    ok(duban("rules", "import", "rules.yaml", "--now", "2026-12-01T08:00"))
    ok(duban("tick", "--now", "2026-12-01T09:05"))
    return duban


@pytest.mark.parametrize("args, option", [
    (("event", "add", "document-received", "--date", "2026-12-10", "--title", "\x1b[2J文件"), "--title"),
    (("event", "add", "document-received", "--date", "2026-12-10", "--title", "文" * 201), "--title"),
    (("event", "add", "document-received\n", "--date", "2026-12-10"), "document-received"),
    (("done", KEY, "--note", "已完成\u202e"), "--note"),
    (("done", KEY, "--by", "张\x07主任"), "--by"),
    (("done", KEY, "--by", "张\n主任"), "--by"),
    (("done", KEY, "--evidence", "档案\x00室"), "--evidence"),
    (("waive", KEY, "--reason", "\x9b2J不需要"), "--reason"),
    (("waive", KEY, "--reason", "不需要", "--by", "\u2067王"), "--by"),
    (("rules", "add", "--id", "x-1", "--title", "\x1b[31m临时", "--every", "month"), "title"),
])
def test_cli_texts_with_control_characters_are_refused(branch, args, option):
    before = branch("status", "--format", "json", "--now", "2026-12-02T10:00").json()
    r = branch(*args, "--now", "2026-12-02T10:00")
    assert r.code == 2 and option in r.err and CJK.search(r.err), r.err
    assert not UNSAFE.search(r.err)
    assert branch("status", "--format", "json", "--now", "2026-12-02T10:00").json() == before
    assert [x["id"] for x in branch("rules", "list", "--format", "json").json()] == ["monthly-report", "study-plan"]


def test_a_note_may_have_several_lines(branch):
    ok(branch("done", KEY, "--note", "第一项已办\n第二项已办", "--now", "2026-12-02T10:00"))


# --- 4. text stored before these checks is cleaned on output ----------------------------------
LEGACY_TITLE = "[bold]加粗[/bold]\x1b[31m月度\u202e报告\x07"
LEGACY_NAME = "王\x1b\x07书记\u2066"


def store_as_before(duban, title: str, source: str | None = None, name: str | None = None) -> None:
    """Change stored texts directly, as an older version (without these checks) could have stored them."""
    from scheduler.models import PersonRow, RuleRow

    engine = sa.create_engine(duban.state["url"])
    with Session(engine) as s, s.begin():
        rule = s.get(RuleRow, ("default", "monthly-report"))
        rule.title = title
        rule.definition = {**rule.definition, "title": title, **({"source": source} if source else {})}
        if name:
            s.get(PersonRow, ("default", "secretary")).name = name
    engine.dispose()


def test_a_stored_rule_over_the_new_limits_still_works(duban, workdir):
    (workdir / "rules.yaml").write_text(rule_text(), encoding="utf-8")
    ok(duban("init", "--no-pack"))
    ok(duban("rules", "import", "rules.yaml", "--now", "2026-12-01T08:00"))
    store_as_before(duban, "长" * 300)
    assert ok(duban("rules", "list", "--format", "json")).json()[0]["title"] == "长" * 300
    ok(duban("tick", "--now", "2026-12-15T09:05"))
    # exported, it is refused until shortened: the user is told why
    ok(duban("rules", "export", "--out", "export.yaml"))
    r = duban("rules", "import", "export.yaml")
    assert r.code == 2 and "description" in r.err


def test_stored_control_characters_are_stripped_on_output(duban, workdir, smtp):
    (workdir / "rules.yaml").write_text(rule_text(source="二(三)8"), encoding="utf-8")
    ok(duban("init", "--no-pack"))
    ok(duban("rules", "import", "rules.yaml", "--now", "2026-12-01T08:00"))
    store_as_before(duban, LEGACY_TITLE, source="二\x1b(三)8\u202e", name=LEGACY_NAME)
    ok(duban("tick", "--now", "2026-12-15T09:05"))
    [mail] = smtp.messages
    assert not UNSAFE.search(mail.subject) and "月度报告" in mail.subject
    assert not UNSAFE.search(str(mail.message["To"])) and "王书记" in str(mail.message["To"])

    for args in (("status",), ("rules", "list"), ("preview", "--from", "2026-12-01", "--to", "2026-12-31")):
        out = ok(duban(*args, "--now", "2026-12-15T10:00")).out
        assert not UNSAFE.search(out), args
        assert "[bold]加粗[/bold][31m月度报告" in out, args  # shown as written: not rich markup
    assert not UNSAFE.search(ok(duban("rules", "show", "monthly-report")).out)

    ok(duban("ledger", "export", "--out", "台账.csv", "--now", "2026-12-15T10:00"))
    with open(workdir / "台账.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    row = next(r for r in rows if r[0] == KEY)
    assert (row[1], row[2], row[3]) == ("[bold]加粗[/bold][31m月度报告", "二(三)8", "王书记")
    assert not any(UNSAFE.search(c) for r in rows for c in r)

    ok(duban("ledger", "export", "--out", "台账.xlsx", "--now", "2026-12-15T10:00"))
    wb = openpyxl.load_workbook(workdir / "台账.xlsx")
    cells = [str(c.value) for ws in wb for r in ws.iter_rows() for c in r if c.value is not None]
    assert "[bold]加粗[/bold][31m月度报告" in cells
    assert not any(UNSAFE.search(c) for c in cells)


def test_error_messages_do_not_echo_control_characters(duban, workdir):
    (workdir / "rules.yaml").write_text(rule_text(owner='"nobody\\e[2J"'), encoding="utf-8")
    r = duban("preview", "--rules", "rules.yaml")
    assert r.code == 2 and "nobody" in r.err and not UNSAFE.search(r.err), r.err


# --- 5. calendar files ------------------------------------------------------------------------
def test_calendar_file_source_with_control_characters_is_refused(duban, workdir):
    (workdir / "2027.yaml").write_text('year: 2027\nsource: "国务院办公厅\\e[8m通知"\n'
                                       "holidays: [2027-01-01..2027-01-03]\n", encoding="utf-8")
    ok(duban("init", "--no-pack"))
    r = duban("calendar", "import", "2027.yaml")
    assert r.code == 2 and "第 2 行" in r.err and "键 source" in r.err and "U+001B" in r.err, r.err
    assert duban("calendar", "show", "2027", "--format", "json").json()["official"] is False


def test_notice_title_is_stored_without_control_characters(duban, workdir):
    from pathlib import Path

    notice = (Path(__file__).parent / "fixtures" / "notices" / "2026.txt").read_text(encoding="utf-8")
    (workdir / "2026.txt").write_text(notice.replace("部分节假日", "部分\x1b[8m节假日\u202e", 1), encoding="utf-8")
    ok(duban("init", "--no-pack"))
    ok(duban("calendar", "import", "2026.txt"))
    source = duban("calendar", "show", "2026", "--format", "json").json()["source"]
    assert source == "国务院办公厅关于2026年部分[8m节假日安排的通知"
