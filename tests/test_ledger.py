"""The 台账: a month of reminders and completions scripted with the CLI, exported with
`duban ledger export` and read back with openpyxl (and the csv module), and `duban history`.

Time is always given with `--now` (local time, Asia/Shanghai); mail goes to a loopback SMTP server,
so what the ledger says was sent can be checked against what arrived.
"""

from __future__ import annotations

import csv
import textwrap
from datetime import date, timedelta

import openpyxl
import pytest
import sqlalchemy as sa

LEDGER_HEADERS = ["事项编号", "事项", "出处", "负责人", "开始", "截止日", "状态", "进度", "完成记录", "佐证材料",
                  "已发消息", "免办理由", "暂定日期"]
SENT, WAIVED = LEDGER_HEADERS.index("已发消息"), LEDGER_HEADERS.index("免办理由")
CHANGES_HEADERS = ["时间", "规则", "操作", "变更内容", "来源"]
ATTEMPTS_HEADERS = ["时间", "事项编号", "类型", "收件人", "渠道", "结果", "说明"]
EVIDENCE_HEADERS = ["事项编号", "文件名", "大小（字节）", "SHA-256", "上传人", "上传时间"]

PEOPLE = """\
    people:
      secretary: {name: 王书记, email: secretary@example.cn}
      office: {name: 张主任, email: office@example.cn}
    """

RULES = """\
    - id: monthly-report
      title: 月度工作报告
      source: "二(三)8"
      owner: secretary
      every: month
      due: {day: 15}
      remind: [-1d, 0d]
    - id: weekly-check
      title: 每周保密检查
      source: 保密工作要点第3条
      owner: office
      every: week
      due: {weekday: fri}
      remind: [0d]
    - id: year-end-review
      title: 年终述职
      owner: office
      every: year
      due: {month: 12, day: 22}
      start: 2026-01-01
      remind: [-1d]
    - id: doomed-duty
      title: 临时专项整治
      owner: office
      every: month
      due: {day: 28}
      remind: [-1d, 0d]
    """

WEEKLY_EDITED = RULES.replace("""\
      due: {weekday: fri}
      remind: [0d]""", """\
      due: {weekday: fri}
      remind: [-1d, 0d]""")

MONTH = "monthly-report@2026-12"
YEAR = "year-end-review@2026"
DOOMED = "doomed-duty@2026-12"
WAIVE_REASON = "区委统一组织述职，本支部不再单独开展"


def rule_file(workdir, rules: str, name: str = "rules.yaml"):
    p = workdir / name
    p.write_text(textwrap.dedent(PEOPLE) + "rules:\n" + textwrap.indent(textwrap.dedent(rules), "  "), encoding="utf-8")
    return p


def ok(r):
    assert r.code == 0, r.err
    return r


def working_days(first: date, last: date):
    d = first
    while d <= last:
        if d.weekday() < 5:  # December 2026 has no holidays and no adjusted working weekends
            yield d
        d += timedelta(days=1)


def script_month(duban, workdir, url: str | None = None) -> None:
    """December 2026: ticks every working morning, completions, a waiver, a rule edited, a rule disabled."""
    ok(duban("init", "--no-pack", url=url))
    ok(duban("rules", "import", rule_file(workdir, RULES), "--now", "2026-12-01T08:00", url=url))
    for d in working_days(date(2026, 12, 1), date(2026, 12, 31)):
        day = d.isoformat()
        if day == "2026-12-07":  # a rule edited by re-importing its file
            ok(duban("rules", "import", rule_file(workdir, WEEKLY_EDITED, "rules-v2.yaml"), "--now", f"{day}T08:30",
                     url=url))
        if day == "2026-12-10":
            ok(duban("rules", "disable", "doomed-duty", "--now", f"{day}T08:45", url=url))
        ok(duban("tick", "--now", f"{day}T09:05", url=url))
        if day == "2026-12-11":
            ok(duban("done", "weekly-check@2026-W50", "--by", "office", "--note", "检查了涉密计算机",
                     "--evidence", "检查记录表 2026-50", "--now", f"{day}T11:00", url=url))
        if day == "2026-12-16":  # a day late, after the overdue alert
            ok(duban("done", MONTH, "--by", "secretary", "--note", "已报送区委组织部", "--evidence", "区组〔2026〕88号",
                     "--now", f"{day}T10:00", url=url))
        if day == "2026-12-18":
            ok(duban("waive", YEAR, "--reason", WAIVE_REASON, "--by", "王书记", "--now", f"{day}T15:00", url=url))
        if day == "2026-12-21":
            ok(duban("digest", "--send", "--now", f"{day}T09:10", url=url))


def read_sheet(ws) -> list[list[str]]:
    return [["" if v is None else str(v) for v in row] for row in ws.iter_rows(values_only=True)]


def occurrence_keys(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return [k for (k,) in c.execute(sa.text("SELECT key FROM occurrences"))]
    finally:
        engine.dispose()


def mails_about(smtp, address: str, key: str) -> list[str]:
    return [m.subject for m in smtp.handler.to(address) if f"事项编号 {key}，" in m.text]


# --- 1. the month, on both databases --------------------------------------------------------
def test_a_month_exported_as_xlsx_and_csv(duban, workdir, smtp, db_url):
    url = db_url
    script_month(duban, workdir, url)

    r = ok(duban("ledger", "export", "--out", "台账.xlsx", "--now", "2026-12-31T18:00", url=url))
    keys = occurrence_keys(url)
    assert f"已导出台账：{len(keys)} 项事项 → 台账.xlsx" in r.out
    wb = openpyxl.load_workbook(workdir / "台账.xlsx")
    assert wb.sheetnames == ["台账", "规则变更", "发送记录", "佐证材料"]
    for ws, headers in zip(wb.worksheets, (LEDGER_HEADERS, CHANGES_HEADERS, ATTEMPTS_HEADERS, EVIDENCE_HEADERS),
                           strict=True):
        assert [c.value for c in ws[1]] == headers
        assert ws.freeze_panes == "A2"
        assert all(c.font.b for c in ws[1])
        assert all(6 <= ws.column_dimensions[c.column_letter].width <= 60 for c in ws[1])

    # 台账: one row per occurrence, in due-date order
    rows = read_sheet(wb["台账"])[1:]
    by_key = {r[0]: dict(zip(LEDGER_HEADERS, r, strict=True)) for r in rows}
    assert len(rows) == len(by_key) == len(keys) and set(by_key) == set(keys)
    assert [r[5] for r in rows] == sorted(r[5] for r in rows)
    assert {MONTH, YEAR, DOOMED, "weekly-check@2026-W50", "weekly-check@2026-W51"} <= set(by_key)

    month = by_key[MONTH]
    assert (month["事项"], month["出处"], month["负责人"]) == ("月度工作报告", "二(三)8", "王书记")
    assert (month["开始"], month["截止日"], month["状态"], month["进度"], month["暂定日期"]) == \
        ("2026-12-01", "2026-12-15", "已完成", "1/1", "否")
    assert month["完成记录"] == "2026-12-16 10:00 王书记：已报送区委组织部（佐证：区组〔2026〕88号）"
    sent = month["已发消息"].split("\n")
    assert sent == ["12-14 09:05 提醒 → 王书记（邮件）", "12-15 09:05 提醒 → 王书记（邮件）",
                    "12-16 09:05 逾期提醒 → 王书记（邮件）"]
    assert len(sent) == len(mails_about(smtp, "secretary@example.cn", MONTH))
    assert month["免办理由"] == ""
    wrapped = wb["台账"].cell(row=rows.index(next(r for r in rows if r[0] == MONTH)) + 2, column=SENT + 1)
    assert wrapped.alignment.wrap_text

    weekly = by_key["weekly-check@2026-W50"]
    assert (weekly["负责人"], weekly["截止日"], weekly["状态"]) == ("张主任", "2026-12-11", "已完成")
    assert weekly["完成记录"] == "2026-12-11 11:00 张主任：检查了涉密计算机（佐证：检查记录表 2026-50）"
    w49 = by_key["weekly-check@2026-W49"]["已发消息"].split("\n")  # never done: alerted each working day
    assert w49[:3] == ["12-04 09:05 提醒 → 张主任（邮件）", "12-07 09:05 逾期提醒 → 张主任（邮件）",
                       "12-08 09:05 逾期提醒 → 张主任（邮件）"]
    assert len([x for x in w49 if "→ 张主任" in x]) == len(mails_about(smtp, "office@example.cn", "weekly-check@2026-W49"))
    assert [x for x in w49 if "→ 王书记" in x] == ["12-09 09:05 督办通知 → 王书记（邮件）"]  # after 3 working days
    # after the edit (12-07), the weekly duty is reminded the day before as well
    assert weekly["已发消息"].split("\n") == ["12-10 09:05 提醒 → 张主任（邮件）", "12-11 09:05 提醒 → 张主任（邮件）"]
    assert by_key["weekly-check@2026-W51"]["已发消息"].split("\n")[:3] == [
        "12-17 09:05 提醒 → 张主任（邮件）", "12-18 09:05 提醒 → 张主任（邮件）", "12-21 09:05 逾期提醒 → 张主任（邮件）"]
    assert by_key["weekly-check@2026-W52"]["状态"] == "已逾期"

    year = by_key[YEAR]
    assert (year["状态"], year["进度"], year["完成记录"]) == ("已免办", "0/1", "")
    assert year["免办理由"] == f"{WAIVE_REASON}（王书记，2026-12-18 15:00）"
    assert year["已发消息"] == ""  # waived before its reminder on the 21st

    assert by_key[DOOMED]["已发消息"] == ""  # disabled before its reminders were due

    # every duty of every message the server received is in the ledger once (a message lists several
    # duties of one person due together), and in the 发送记录 sheet (the digest too)
    listed = sum(len(r[SENT].split("\n")) for r in rows if r[SENT])
    digests = [m for m in smtp.messages if "汇总" in m.subject]
    assert len(digests) == 1
    assert listed == sum(m.text.count("事项编号 ") for m in smtp.messages if m not in digests)
    assert any("项事项需要办理" in m.subject for m in smtp.messages)  # some went out combined
    attempts = read_sheet(wb["发送记录"])[1:]
    sent_attempts = [a for a in attempts if a[5] == "已发送"]
    assert len(sent_attempts) == listed + len(digests)
    assert all(a[4] == "邮件" for a in sent_attempts)
    assert [a[0] for a in attempts] == sorted(a[0] for a in attempts)
    assert ["2026-12-16 09:05", MONTH, "逾期提醒", "王书记", "邮件", "已发送", ""] in attempts
    assert any(a[1] == "" and a[2] == "每日汇总" and a[3] == "王书记" for a in sent_attempts)

    # 规则变更: the audit trail, oldest first
    changes = read_sheet(wb["规则变更"])[1:]
    assert [(c[1], c[2]) for c in changes] == [
        ("monthly-report", "新增"), ("weekly-check", "新增"), ("year-end-review", "新增"), ("doomed-duty", "新增"),
        ("weekly-check", "修改"), ("doomed-duty", "停用")]
    assert changes[0][0] == "2026-12-01 08:00" and "due: {day: 15}" in changes[0][3]
    assert changes[4][0] == "2026-12-07 08:30"
    assert changes[4][3] == "remind: [0d] → [-1d, 0d]"
    assert changes[4][4].endswith("rules-v2.yaml")
    assert changes[5][3] == "enabled: true → false"

    # CSV: the 台账 sheet, UTF-8 with a BOM, the same rows
    r = ok(duban("ledger", "export", "--out", "台账.csv", "--now", "2026-12-31T18:00", url=url))
    assert f"已导出台账：{len(keys)} 项事项 → 台账.csv" in r.out
    raw = (workdir / "台账.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with open(workdir / "台账.csv", encoding="utf-8-sig", newline="") as f:
        got = list(csv.reader(f))
    assert got[0] == LEDGER_HEADERS
    assert got[1:] == rows

    # history: the same trail in the terminal
    r = ok(duban("history", "--format", "json", "--now", "2026-12-31T18:00", url=url))
    entries = r.json()
    assert [(e["rule"], e["action"]) for e in entries] == [
        ("monthly-report", "added"), ("weekly-check", "added"), ("year-end-review", "added"),
        ("doomed-duty", "added"), ("weekly-check", "updated"), ("doomed-duty", "disabled")]
    assert set(entries[0]) >= {"at", "rule", "action", "before", "after", "origin"}
    assert entries[0]["at"] == "2026-12-01T08:00:00+08:00"
    assert entries[4]["before"]["remind"] == ["0d"] and entries[4]["after"]["remind"] == ["-1d", "0d"]
    r = ok(duban("history", "weekly-check", "--now", "2026-12-31T18:00", url=url))
    assert "新增" in r.out and "修改" in r.out and "remind: [0d] → [-1d, 0d]" in r.out
    assert "doomed-duty" not in r.out
    assert r.out.index("新增") < r.out.index("修改")


# --- 2. filters ------------------------------------------------------------------------------
def _small_setup(duban, workdir):
    ok(duban("init", "--no-pack"))
    ok(duban("rules", "import", rule_file(workdir, RULES), "--now", "2026-12-01T08:00"))
    for day in ("2026-12-04", "2026-12-11", "2026-12-14", "2026-12-15"):
        ok(duban("tick", "--now", f"{day}T09:05"))


def _keys(path) -> list[str]:
    ws = openpyxl.load_workbook(path)["台账"]
    return [r[0] for r in read_sheet(ws)[1:]]


def test_filters_by_rule_and_due_dates(duban, workdir, smtp):
    _small_setup(duban, workdir)
    everything = _keys(ok(duban("ledger", "export", "--out", "all.xlsx", "--now", "2026-12-15T12:00")) and "all.xlsx")
    assert MONTH in everything and "weekly-check@2026-W49" in everything

    r = ok(duban("ledger", "export", "--out", "m.xlsx", "--rule", "monthly-report", "--now", "2026-12-15T12:00"))
    got = _keys("m.xlsx")
    assert got and all(k.startswith("monthly-report@") for k in got)
    assert f"已导出台账：{len(got)} 项事项" in r.out
    wb = openpyxl.load_workbook("m.xlsx")
    attempts = read_sheet(wb["发送记录"])[1:]
    assert attempts and all(a[1] == MONTH for a in attempts)  # no weekly reminders, no digests
    assert {c[1] for c in read_sheet(wb["规则变更"])[1:]} == {"monthly-report"}

    ok(duban("ledger", "export", "--out", "two.xlsx", "--rule", "monthly-report", "--rule", "weekly-check"))
    assert {k.split("@")[0] for k in _keys("two.xlsx")} == {"monthly-report", "weekly-check"}

    ok(duban("ledger", "export", "--out", "mid.csv", "--from", "2026-12-05", "--to", "2026-12-15",
             "--now", "2026-12-15T12:00"))
    with open("mid.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert sorted(r[0] for r in rows) == sorted([MONTH, "weekly-check@2026-W50"])
    assert all("2026-12-05" <= r[5] <= "2026-12-15" for r in rows)

    ok(duban("ledger", "export", "--out", "from.xlsx", "--from", "2026-12-16"))
    assert all(k not in _keys("from.xlsx") for k in (MONTH, "weekly-check@2026-W49", "weekly-check@2026-W50"))

    r = duban("ledger", "export", "--out", "x.xlsx", "--rule", "no-such-rule")
    assert r.code == 2 and "no-such-rule" in r.err
    r = duban("ledger", "export", "--out", "x.xlsx", "--from", "2026-12-20", "--to", "2026-12-01")
    assert r.code == 2 and "早于" in r.err
    r = duban("ledger", "export", "--out", "x.xlsx", "--from", "12/20")
    assert r.code == 2 and "--from" in r.err
    assert not (workdir / "x.xlsx").exists()


def test_unknown_extension_is_refused_and_nothing_is_written(duban, workdir):
    ok(duban("init", "--no-pack"))
    for name in ("台账.txt", "台账.xls", "台账"):
        r = duban("ledger", "export", "--out", name)
        assert r.code == 2 and ".xlsx" in r.err and ".csv" in r.err, r.err
        assert not (workdir / name).exists()
    r = duban("ledger", "export", "--out", workdir / "no-such-dir" / "台账.xlsx")
    assert r.code == 2 and "无法写入" in r.err, r.err
    assert [p.name for p in workdir.iterdir() if not p.name.startswith("duban.db")] == []


def test_an_empty_ledger_still_has_its_sheets_and_headers(duban, workdir):
    ok(duban("init", "--no-pack"))
    r = ok(duban("ledger", "export", "--out", "空.xlsx", "--now", "2026-12-01T10:00"))
    assert "已导出台账：0 项事项" in r.out
    wb = openpyxl.load_workbook("空.xlsx")
    assert [c.value for c in wb["台账"][1]] == LEDGER_HEADERS
    assert wb["台账"].max_row == 1 and wb["台账"].freeze_panes == "A2"
    ok(duban("ledger", "export", "--out", "空.csv"))
    assert (workdir / "空.csv").read_text(encoding="utf-8-sig").splitlines() == [",".join(LEDGER_HEADERS)]


def test_an_existing_file_is_replaced_whole(duban, workdir):
    ok(duban("init", "--no-pack"))
    (workdir / "台账.csv").write_text("old\n" * 1000, encoding="utf-8")
    ok(duban("ledger", "export", "--out", "台账.csv"))
    assert (workdir / "台账.csv").read_text(encoding="utf-8-sig").splitlines() == [",".join(LEDGER_HEADERS)]
    assert not [p for p in workdir.iterdir() if p.name.startswith(".duban-ledger-")]


def test_user_text_stays_text(duban, workdir):
    """Notes are data: in .xlsx never a formula, in .csv a leading =/+/-/@ is defused; markup survives."""
    ok(duban("init", "--no-pack"))
    ok(duban("rules", "import", rule_file(workdir, RULES), "--now", "2026-12-01T08:00"))
    ok(duban("tick", "--now", "2026-12-01T09:05"))
    ok(duban("waive", MONTH, "--reason", "=HYPERLINK(\"http://x\") <b>&", "--now", "2026-12-02T10:00"))
    ok(duban("ledger", "export", "--out", "t.xlsx", "--now", "2026-12-02T10:00"))
    ws = openpyxl.load_workbook("t.xlsx")["台账"]
    cell = next(row[WAIVED] for row in ws.iter_rows(min_row=2) if row[0].value == MONTH)
    assert cell.data_type == "s" and cell.value.startswith("=HYPERLINK(\"http://x\") <b>&（")
    ok(duban("ledger", "export", "--out", "t.csv", "--now", "2026-12-02T10:00"))
    with open("t.csv", encoding="utf-8-sig", newline="") as f:
        row = next(r for r in csv.reader(f) if r[0] == MONTH)
    assert row[WAIVED].startswith("'=HYPERLINK(")


# --- 3. history --------------------------------------------------------------------------------
def test_history(duban, workdir):
    ok(duban("init", "--no-pack"))
    r = ok(duban("history"))
    assert "暂无" in r.out
    ok(duban("rules", "import", rule_file(workdir, RULES), "--now", "2026-12-01T08:00"))
    ok(duban("rules", "disable", "doomed-duty", "--now", "2026-12-02T08:00"))
    ok(duban("rules", "enable", "doomed-duty", "--now", "2026-12-03T08:00"))
    r = ok(duban("history", "doomed-duty"))
    rows = [ln for ln in r.out.splitlines() if "2026-12-0" in ln]  # the first line of each row holds its time
    assert len(rows) == 3
    for ln, when, action in zip(rows, ("01", "02", "03"), ("新增", "停用", "启用"), strict=True):
        assert f"2026-12-{when} 08:00" in ln and action in ln
    assert "enabled: true → false" in rows[1] and "命令行" in rows[1]
    assert "title: 临时专项整治" in rows[0] and "due: {day: 28}" in r.out
    entries = ok(duban("history", "doomed-duty", "--format", "json")).json()
    assert [e["action"] for e in entries] == ["added", "disabled", "enabled"]
    assert entries[1]["before"] == {"enabled": True} and entries[1]["after"] == {"enabled": False}
    assert entries[0]["origin"].endswith("rules.yaml")

    r = duban("history", "no-such-rule")
    assert r.code == 2 and "no-such-rule" in r.err and r.out == ""
    assert ok(duban("history", "--help")).out.count("变更") >= 1


def test_history_lists_calendar_imports(duban, workdir):
    ok(duban("init", "--no-pack"))
    cal = workdir / "2027.yaml"
    cal.write_text(textwrap.dedent("""\
        # INVENTED TEST DATA — 虚构的 2027 年安排（同 test_notice.NOTICE_2027_INVENTED）
        year: 2027
        source: 国务院办公厅关于2027年部分节假日安排的通知
        holidays: [2027-01-01..2027-01-03, 2027-02-05..2027-02-13, 2027-04-03..2027-04-05, 2027-05-01..2027-05-05,
                   2027-06-09, 2027-09-15, 2027-10-01..2027-10-07]
        workdays: [2027-01-31, 2027-02-20, 2027-04-25, 2027-05-08, 2027-09-26, 2027-10-09]
        """), encoding="utf-8")
    ok(duban("calendar", "import", cal, "--now", "2026-12-05T10:00"))
    entries = ok(duban("history", "--format", "json")).json()
    assert any("2027" in str(e) for e in entries)


# --- 4. one snapshot ----------------------------------------------------------------------------
def test_the_export_reads_one_snapshot(duban, workdir, db_url):
    """A completion committed while the ledger is being read does not show up half-way through."""
    from sqlalchemy import func, select

    from scheduler.app import App
    from scheduler.ledger import _snapshot
    from scheduler.models import CompletionRow

    ok(duban("init", "--no-pack", url=db_url))  # leaves DUBAN_DATABASE_URL set for App()
    other = sa.create_engine(db_url)
    insert = sa.text("INSERT INTO completions (occurrence_key, at) VALUES ('x@1', CURRENT_TIMESTAMP)")
    try:
        app = App("2026-12-01T10:00")
        with app.session() as s:
            _snapshot(s)
            before = s.scalar(select(func.count()).select_from(CompletionRow))
            with other.begin() as c:
                c.execute(insert)
            assert s.scalar(select(func.count()).select_from(CompletionRow)) == before
        with app.session() as s:
            assert s.scalar(select(func.count()).select_from(CompletionRow)) == before + 1
    finally:
        other.dispose()


# --- 5. the writer -----------------------------------------------------------------------------
def test_xlsx_writer_widths_wrapping_and_long_sheets(tmp_path, monkeypatch):
    from datetime import UTC, datetime

    from scheduler import ledger

    assert ledger.display_width("abc") == 3 and ledger.display_width("王书记") == 6
    assert ledger.display_width("短\n较长的一行") == 10
    assert [ledger.column_letter(i) for i in (0, 25, 26, 51, 52)] == ["A", "Z", "AA", "AZ", "BA"]

    monkeypatch.setattr(ledger, "MAX_ROWS", 4)
    path = tmp_path / "w.xlsx"
    rows = [[f"k{i}", "中文" * (i + 1), "x\x01y" if i == 0 else None, "a\nb"] for i in range(7)]
    with ledger.XlsxWriter(str(path), datetime(2026, 12, 1, tzinfo=UTC)) as xw:
        assert xw.add_sheet("表", ["编号", "名称", "杂", "多行"], rows, wrap={3}) == 7
        assert xw.add_sheet("长" * 3, ["h"], [["v" * 200]], count=1) == 1  # known count: no temporary file
        with pytest.raises(ValueError):
            xw.add_sheet("错", ["h"], [["a"], ["b"]], count=1)
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["表", "表（2）", "表（3）", "长长长"]
    got = [r for ws in wb.worksheets[:3] for r in read_sheet(ws)[1:]]
    assert got == [["" if v is None else v.replace("\x01", "") for v in r] for r in rows]
    ws = wb["表"]
    assert ws.column_dimensions["B"].width == 2 * 2 * 7 + 2  # the widest name, CJK counted double
    assert ws.column_dimensions["A"].width == 6
    assert ws["D2"].alignment.wrap_text and not ws["B2"].alignment.wrap_text
    assert wb["长长长"].column_dimensions["A"].width == 60


@pytest.mark.parametrize("rows", [0, 3])
def test_csv_writer_rows(tmp_path, rows):
    from scheduler.ledger import write_csv

    p = tmp_path / "x.csv"
    assert write_csv(str(p), ["甲", "乙"], [["1", "多\n行"]] * rows) == rows
    with open(p, encoding="utf-8-sig", newline="") as f:
        assert list(csv.reader(f)) == [["甲", "乙"], *([["1", "多\n行"]] * rows)]
