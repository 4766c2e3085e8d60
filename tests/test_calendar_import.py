"""`duban calendar import`: a whole year must be whole; a special notice amends the year.

Run through the CLI on real files. The special notices are the published texts in
tests/fixtures/notices/special/ (sources in test_notice.SPECIAL_SOURCES); what `calendar show` prints
after each is compared day by day with `chinesecalendar`.
"""

from __future__ import annotations

import textwrap
from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import pytest

NOTICES = Path(__file__).parent / "fixtures" / "notices"
SPECIAL = NOTICES / "special"


def _workday_by_show(shown: dict, d: date) -> bool:
    """Whether `calendar show --format json` makes `d` a working day."""
    if d.isoformat() in shown["holidays"]:
        return False
    return d.weekday() < 5 or d.isoformat() in shown["workdays"]


def _differ_from_chinese_calendar(shown: dict) -> list[date]:
    d, out = date(shown["year"], 1, 1), []
    while d.year == shown["year"]:
        if _workday_by_show(shown, d) != chinese_calendar.is_workday(d):
            out.append(d)
        d += timedelta(days=1)
    return out


def _show(duban, year: int) -> dict:
    r = duban("calendar", "show", str(year), "--format", "json")
    assert r.code == 0, r.err
    return r.json()


def _history(duban) -> list:
    return duban("history", "--format", "json").json()


def _refused(r, filename: str) -> None:
    assert r.code == 2, (r.out, r.err)
    assert filename in r.err and "Traceback" not in r.err


# --- a whole year must be whole ---------------------------------------------------------------------
def test_a_notice_naming_only_new_year_does_not_make_2027_official(duban, workdir):
    duban("init", "--no-pack")
    before = _show(duban, 2027)
    (workdir / "2027.txt").write_text("国务院办公厅关于2027年部分节假日安排的通知\n"
                                      "一、元旦：1月1日（周五）至3日（周日）放假，共3天。\n", encoding="utf-8")
    r = duban("calendar", "import", "2027.txt", "--now", "2026-11-20T10:00")
    _refused(r, "2027.txt")
    assert "没有春节、清明节、劳动节、端午节、中秋节、国庆节的安排" in r.err and "请粘贴通知全文" in r.err
    assert _show(duban, 2027) == before and before["official"] is False
    assert _history(duban) == []


def test_a_yaml_year_with_no_holidays_is_refused_naming_the_statutory_days(duban, workdir):
    duban("init", "--no-pack")
    (workdir / "2027.yaml").write_text("year: 2027\nsource: 2027年安排\nholidays: []\nworkdays: []\n", encoding="utf-8")
    r = duban("calendar", "import", "2027.yaml", "--now", "2026-11-20T10:00")
    _refused(r, "2027.yaml")
    assert "元旦 2027-01-01" in r.err and "春节 2027-02-05、2027-02-06、2027-02-07、2027-02-08" in r.err
    assert "国庆节 2027-10-01、2027-10-02、2027-10-03" in r.err and "春节4天" in r.err and "劳动节2天" in r.err
    assert _show(duban, 2027)["official"] is False


def test_a_one_holiday_yaml_file_does_not_replace_the_librarys_2026(duban, workdir):
    duban("init", "--no-pack")
    before = _show(duban, 2026)
    (workdir / "2026.yaml").write_text("year: 2026\nholidays: [2026-01-01]\n", encoding="utf-8")
    r = duban("calendar", "import", "2026.yaml", "--now", "2026-11-20T10:00")
    _refused(r, "2026.yaml")
    assert "春节 2026-02-16、2026-02-17、2026-02-18、2026-02-19" in r.err
    assert _show(duban, 2026) == before and before["source"] == "holidays 程序库"
    assert _history(duban) == []


def test_a_yaml_year_listing_the_statutory_days_is_imported(duban, workdir):
    duban("init", "--no-pack")
    # INVENTED TEST DATA — 虚构的 2027 年安排：恰好是法定假日，不调休
    (workdir / "2027.yaml").write_text(textwrap.dedent("""\
        year: 2027
        holidays: [2027-01-01, 2027-02-05..2027-02-08, 2027-04-05, 2027-05-01..2027-05-02, 2027-06-09,
                   2027-09-15, 2027-10-01..2027-10-03]
        """), encoding="utf-8")
    r = duban("calendar", "import", "2027.yaml", "--now", "2026-11-20T10:00")
    assert r.code == 0, r.err
    assert _show(duban, 2027)["official"] is True


# --- special notices amend the year ----------------------------------------------------------------------
@pytest.mark.parametrize(("fixture", "year", "said"), [
    ("2015-victory-day.txt", 2015, "放假 9月3日、9月4日；调休上班 9月6日"),
    ("2019-labour-day.txt", 2019, "放假 5月2日、5月3日；调休上班 4月28日、5月5日"),
    ("2020-spring-festival.txt", 2020, "放假 1月31日、2月1日"),
])
def test_each_special_notice_amends_its_years_notice_to_chinese_calendar(duban, fixture, year, said):
    duban("init", "--no-pack")
    assert duban("calendar", "import", str(NOTICES / f"{year}.txt")).code == 0
    assert duban("calendar", "import", str(NOTICES / f"{year + 1}.txt")).code == 0  # its last days of December
    assert _differ_from_chinese_calendar(_show(duban, year))  # the year's notice alone: before the change
    r = duban("calendar", "import", str(SPECIAL / fixture), "--now", f"{year}-01-10T10:00")
    assert r.code == 0, r.err
    assert f"调整 {year} 年放假安排，其余日期不变：{said}。" in r.out
    shown = _show(duban, year)
    assert _differ_from_chinese_calendar(shown) == []
    assert shown["official"] is True
    title = (SPECIAL / fixture).read_text(encoding="utf-8").splitlines()[0]
    assert shown["source"] == f"国务院办公厅关于{year}年部分节假日安排的通知；{title}"
    [entry] = [e for e in _history(duban) if e["action"] == "calendar-import" and "amendment" in e["after"]]
    assert entry["after"]["amendment"] == title
    assert entry["summary"].startswith(f"{year} 年按“{title}”调整后的放假安排")
    again = duban("calendar", "import", str(SPECIAL / fixture))
    assert again.code == 0 and "未做更改" in again.out and _show(duban, year) == shown
    # the year's notice imported again replaces the whole year, and says what was lost
    r = duban("calendar", "import", str(NOTICES / f"{year}.txt"))
    assert "已被这份全年安排整体替换" in r.out and "再导入一次调整通知" in r.out
    assert _differ_from_chinese_calendar(_show(duban, year))


@pytest.mark.parametrize("fixture", ["2015-victory-day.txt", "2019-labour-day.txt", "2020-spring-festival.txt"])
def test_a_special_notice_the_library_already_has_changes_nothing(duban, fixture):
    duban("init", "--no-pack")
    year = int(fixture[:4])
    before = _show(duban, year)
    assert _differ_from_chinese_calendar(before) == []
    r = duban("calendar", "import", str(SPECIAL / fixture))
    assert r.code == 0 and "已包含" in r.out and "未做更改" in r.out
    assert _show(duban, year) == before and _history(duban) == []


RULES = textwrap.dedent("""\
    people:
      secretary: {name: 王书记, email: secretary@example.cn}
    rules:
      - {id: may-report, title: 五月报告, owner: secretary, every: month, due: {day: 2}, if_holiday: next-workday,
         remind: [0d]}
    """)


def test_the_2019_labour_day_change_re_dates_open_duties(duban, smtp, workdir):
    duban("init", "--no-pack")
    assert duban("calendar", "import", str(NOTICES / "2019.txt"), "--now", "2019-04-20T10:00").code == 0
    (workdir / "r.yaml").write_text(RULES, encoding="utf-8")
    assert duban("rules", "import", "r.yaml", "--now", "2019-04-20T10:00").code == 0
    assert duban("tick", "--now", "2019-04-20T10:00").code == 0
    status = {x["key"]: x for x in duban("status", "--format", "json", "--now", "2019-04-20T10:05").json()}
    assert status["may-report@2019-05"]["due"] == "2019-05-02"  # a working Thursday under the year's notice
    r = duban("calendar", "import", str(SPECIAL / "2019-labour-day.txt"), "--now", "2019-04-21T10:00")
    assert r.code == 0, r.err
    assert "may-report@2019-05：2019-05-02 → 2019-05-05" in r.out  # Sunday May 5 is worked
    status = {x["key"]: x for x in duban("status", "--format", "json", "--now", "2019-04-21T10:05").json()}
    assert status["may-report@2019-05"]["due"] == "2019-05-05"
    duban("tick", "--now", "2019-04-21T10:06")
    assert [m.subject for m in smtp.messages if m.subject.startswith("【截止日期调整】")]


def test_a_wrong_special_notice_is_refused_and_changes_nothing(duban, workdir):
    duban("init", "--no-pack")
    duban("calendar", "import", str(NOTICES / "2019.txt"))
    before = _show(duban, 2019)
    bad = (SPECIAL / "2019-labour-day.txt").read_text(encoding="utf-8").replace("5月5日（星期日）", "5月6日（星期一）")
    (workdir / "bad.txt").write_text(bad, encoding="utf-8")
    r = duban("calendar", "import", "bad.txt")
    _refused(r, "bad.txt")
    assert "不是周末" in r.err and "第 6 行" in r.err
    assert _show(duban, 2019) == before


def test_preview_with_a_special_notice_amends_the_year_without_importing(duban, workdir):
    duban("init", "--no-pack")
    duban("calendar", "import", str(NOTICES / "2019.txt"))
    (workdir / "r.yaml").write_text(RULES, encoding="utf-8")
    args = ("preview", "--rules", "r.yaml", "--from", "2019-05-01", "--to", "2019-05-31", "--format", "json")
    assert [o["due"] for o in duban(*args).json()] == ["2019-05-02"]
    amended = duban(*args, "--calendar", str(SPECIAL / "2019-labour-day.txt")).json()
    assert [o["due"] for o in amended] == ["2019-05-05"]
    assert _show(duban, 2019)["source"] == "国务院办公厅关于2019年部分节假日安排的通知"
