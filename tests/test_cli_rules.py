"""`duban init`, `rules import/add/list/show/export/disable/enable` as an office would use them."""

from __future__ import annotations

import textwrap

import yaml
from conftest import run_process

RULES = textwrap.dedent("""\
    people:
      secretary: {name: 王书记, email: secretary@example.cn}
      office: {name: 张主任, wecom: ZhangZhuRen}
      photo-assoc: {name: 摄影家协会}
      writers-assoc: {name: 作家协会}
    groups:
      associations: [photo-assoc, writers-assoc]
    defaults:
      remind: [-3d, -1d]
      at: "09:30"
    rules:
      - id: party-day
        title: 主题党日
        source: "二(三)8"
        owner: secretary
        escalate_to: [secretary]
        every: month
        due: {weekday: fri, nth: 1}
        if_holiday: next-workday
        start: 2026-01-01
      - id: study-plan
        title: 制定学习计划
        owner: office
        event: document-received
        offset: +3wd
      - id: association-training
        title: 会员创作培训
        every: year
        for_each: associations
      - id: makeup-study
        title: 集中补学会议
        owner: office
        window: {from: 2025-08-28, to: 2025-10-28}
        quota: 2
    """)


def write(tmp, name, text):
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return p


def test_init_loads_the_bundled_pack_once(duban):
    r = duban("init", "--now", "2026-11-25T10:00")
    assert r.code == 0, r.err
    assert "已创建数据库" in r.out and "内置规则包" in r.out
    listed = duban("rules", "list", "--format", "json").json()
    ids = {x["id"] for x in listed}
    assert {"party-day", "study-materials", "study-plan", "secrecy-self-check", "ideology-seminar"} <= ids
    assert all(x["enabled"] for x in listed)
    again = duban("init")
    assert again.code == 0 and "无需升级" in again.out
    assert len(duban("rules", "list", "--format", "json").json()) == len(listed)


def test_import_then_list_and_show(duban, workdir):
    assert duban("init", "--no-pack").code == 0
    f = write(workdir, "r.yaml", RULES)
    r = duban("rules", "import", f, "--now", "2026-11-25T10:00")
    assert r.code == 0, r.err
    assert "新增 4 条" in r.out
    listed = {x["id"]: x for x in duban("rules", "list", "--format", "json").json()}
    assert listed["party-day"]["title"] == "主题党日" and listed["party-day"]["enabled"] is True
    shown = duban("rules", "show", "party-day", "--format", "json", "--now", "2026-11-25T10:00").json()
    assert shown["due"] == {"weekday": "fri", "nth": 1}
    assert shown["remind"] == ["-3d", "-1d"] and shown["at"] == "09:30"  # defaults applied
    assert shown["upcoming"][0]["key"] == "party-day@2026-12" and shown["upcoming"][0]["due"] == "2026-12-04"
    table = duban("rules", "list")
    assert "主题党日" in table.out and "每月" in table.out


def test_reimport_of_the_same_file_changes_nothing(duban, workdir):
    duban("init", "--no-pack")
    f = write(workdir, "r.yaml", RULES)
    duban("rules", "import", f)
    r = duban("rules", "import", f)
    assert "新增 0 条，更新 0 条，未变 4 条" in r.out


def test_export_round_trips_through_import(duban, workdir):
    duban("init", "--no-pack")
    duban("rules", "import", write(workdir, "r.yaml", RULES))
    duban("rules", "disable", "study-plan")
    first = duban("rules", "export").out
    # a second database, filled only from the export
    other = f"sqlite:///{workdir / 'other.db'}"
    duban("init", "--no-pack", url=other)
    r = duban("rules", "import", write(workdir, "export.yaml", first), url=other)
    assert r.code == 0, r.err
    second = duban("rules", "export", url=other).out
    strip = lambda t: t.split("\n", 1)[1]  # noqa: E731 - the first line is a dated header
    assert strip(first) == strip(second)
    listed = {x["id"]: x["enabled"] for x in duban("rules", "list", "--format", "json", url=other).json()}
    assert listed == {"association-training": True, "makeup-study": True, "party-day": True, "study-plan": False}
    doc = yaml.safe_load(first)
    assert doc["groups"]["associations"] == ["photo-assoc", "writers-assoc"]


def test_disable_and_enable(duban, workdir):
    duban("init", "--no-pack")
    duban("rules", "import", write(workdir, "r.yaml", RULES))
    assert "已停用" in duban("rules", "disable", "party-day").out
    assert "本来就是停用" in duban("rules", "disable", "party-day").out
    assert all(o["rule"] != "party-day" for o in
               duban("preview", "--from", "2026-12-01", "--to", "2026-12-31", "--format", "json").json())
    assert "已启用" in duban("rules", "enable", "party-day").out
    missing = duban("rules", "disable", "no-such-rule")
    assert missing.code == 2 and "没有 id 为“no-such-rule”的规则" in missing.err


def test_rules_add_ad_hoc(duban, workdir):
    duban("init", "--no-pack")
    duban("rules", "import", write(workdir, "r.yaml", RULES))
    r = duban("rules", "add", "--id", "monthly-report", "--title", "月度报告", "--every", "month", "--due", "15",
              "--remind", "-1d,0d", "--owner", "office")
    assert r.code == 0, r.err
    out = duban("preview", "--rule", "monthly-report", "--from", "2026-12-01", "--to", "2026-12-31",
                "--format", "json").json()
    assert [(o["key"], o["due"], o["reminders"]) for o in out] == [
        ("monthly-report@2026-12", "2026-12-15", ["2026-12-14T09:00:00", "2026-12-15T09:00:00"])]
    bad = duban("rules", "add", "--id", "x", "--title", "t", "--every", "month", "--due", "day=40")
    assert bad.code == 2 and "day" in bad.err and "不存在" in bad.err
    dup = duban("rules", "add", "--id", "monthly-report", "--title", "t", "--every", "month")
    assert dup.code == 2 and "已存在" in dup.err
    nobody = duban("rules", "add", "--id", "y", "--title", "t", "--every", "month", "--owner", "nobody")
    assert nobody.code == 2 and "nobody" in nobody.err


def test_bad_file_is_refused_whole_and_changes_nothing(duban, workdir):
    duban("init", "--no-pack")
    duban("rules", "import", write(workdir, "r.yaml", RULES))
    before = duban("rules", "export").out.split("\n", 1)[1]
    bad = RULES.replace("title: 主题党日", "title: 新标题").replace("quota: 2", "quota: 2\n    evry: month")
    r = duban("rules", "import", write(workdir, "bad.yaml", bad))
    assert r.code == 2
    assert "bad.yaml" in r.err and "evry" in r.err and "every" in r.err and "第 " in r.err
    assert "Traceback" not in r.err
    assert duban("rules", "export").out.split("\n", 1)[1] == before


def test_commands_before_init_say_what_to_do(duban):
    r = duban("rules", "list")
    assert r.code == 2 and "duban init" in r.err


def test_a_real_process_exits_2_without_a_traceback(workdir):
    (workdir / "bad.yaml").write_bytes("rules:\n  - id: 主题\n    title: x\n".encode("gbk"))
    env = {"DUBAN_DATABASE_URL": f"sqlite:///{workdir / 'duban.db'}"}
    assert run_process("init", "--no-pack", env=env, cwd=workdir).code == 0
    r = run_process("rules", "import", "bad.yaml", env=env, cwd=workdir)
    assert r.code == 2
    assert "UTF-8" in r.err and "bad.yaml" in r.err and "Traceback" not in r.err
    r = run_process("rules", "import", "missing.yaml", env=env, cwd=workdir)
    assert r.code == 2 and "不存在" in r.err
    r = run_process("preview", "--from", "2026-13-01", env=env, cwd=workdir)
    assert r.code == 2 and "--from" in r.err and "Traceback" not in r.err


def test_rules_on_postgresql(duban, pg_url, workdir):
    assert duban("init", "--no-pack", url=pg_url).code == 0
    r = duban("rules", "import", write(workdir, "r.yaml", RULES), url=pg_url)
    assert r.code == 0, r.err
    out = duban("preview", "--from", "2026-12-01", "--to", "2026-12-31", "--format", "json", url=pg_url).json()
    assert {"party-day@2026-12", "association-training@2026/photo-assoc"} <= {o["key"] for o in out}
    assert duban("rules", "import", write(workdir, "r.yaml", RULES), url=pg_url).out.count("未变 4 条") == 1


def test_editing_a_rule_moves_its_open_occurrences(duban, workdir, smtp):
    """Changing a rule's due day or owner updates what is already open, and reminders follow."""
    base = ("people:\n  secretary: {name: 王书记, email: secretary@example.cn}\n"
            "  office: {name: 张主任, email: office@example.cn}\n"
            "rules:\n  - {id: monthly-report, title: 月度报告, owner: secretary, every: month, due: {day: 20},"
            " remind: [-1d]}\n")
    duban("init", "--no-pack")
    write(workdir, "r.yaml", base)
    duban("rules", "import", "r.yaml", "--now", "2026-12-01T09:00")
    duban("tick", "--now", "2026-12-01T09:05")
    write(workdir, "r.yaml", base.replace("day: 20", "day: 28").replace("owner: secretary", "owner: office"))
    assert "更新 1 条" in duban("rules", "import", "r.yaml", "--now", "2026-12-02T09:00").out
    rows = {r["key"]: r for r in duban("status", "--format", "json", "--now", "2026-12-02T10:00").json()}
    assert rows["monthly-report@2026-12"]["due"] == "2026-12-28"
    duban("tick", "--now", "2026-12-19T09:05")  # the old reminder day: nothing
    assert smtp.messages == []
    duban("tick", "--now", "2026-12-25T09:05")  # -1d of Mon Dec 28 is Sun Dec 27: the Friday before
    assert [m.recipients for m in smtp.messages] == [["office@example.cn"]]
