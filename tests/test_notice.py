"""`duban calendar import FILE` with the State Council notice pasted as text (rules/notice.py).

The fixtures tests/fixtures/notices/YYYY.txt are the notices for 2010–2026 in their published wording
(see NOTICE_SOURCES); each one parsed must give the `holidays` library's calendar for its year, day by
day. The library also carries three later notices that changed a year after its notice came out
(LATER_NOTICES): on those days, and only those, the notice and the library differ. Those special
notices are in tests/fixtures/notices/special/ (see SPECIAL_SOURCES); each one imported on top of its
year's notice gives `chinesecalendar`'s calendar for the year, day by day.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import holidays
import pytest

from rules.calendar import STATUTORY_HOLIDAYS, Amendment, WorkCalendar, YearOverride, amend, statutory_days
from rules.errors import RuleFileError, RuleFileErrors
from rules.notice import looks_like_notice, notice_items, parse_notice

FIXTURES = Path(__file__).parent / "fixtures" / "notices"
YEARS = range(2010, 2027)

# Where the published text of each fixture was read (the www.gov.cn original, or a faithful copy of it).
NOTICE_SOURCES = {
    2010: "http://dncc.cn/read-htm-tid-88865.htm (gov.cn: /zwgk/2009-12/08/content_1482691.htm)",
    2011: "https://zh.wikisource.org/zh-hant/国务院办公厅关于2011年部分节假日安排的通知",
    2012: "http://dbehualu.com/5092.html (gov.cn: /zwgk/2011-12/06/content_2012097.htm)",
    2013: "http://www.opticsky.cn/read-htm-tid-64629.html (gov.cn: /zwgk/2012-12/10/content_2286598.htm)",
    2014: "https://qydsj.cn/news/show-3796.html (gov.cn: /zwgk/2013-12/11/content_2546204.htm)",
    2015: "http://www.pipischool.com/jrnr/10935.html (gov.cn: /zhengce/content/2014-12/16/content_9302.htm)",
    2016: "http://www.gov.cn/zhengce/content/2015-12/10/content_10394.htm",
    2017: "https://zh.wikisource.org/zh/国务院办公厅关于2017年部分节假日安排的通知",
    2018: "https://zh.wikisource.org/zh-hans/国务院办公厅关于2018年部分节假日安排的通知",
    2019: "http://czj.gnzrmzf.gov.cn/info/1282/12573.htm",
    2020: "http://kaixinit.com/news/3681.html (gov.cn: /zhengce/content/2019-11/21/content_5454164.htm)",
    2021: "http://www.cncaprc.cn/?c=i&a=lList_mod&myid=3&id=3366",
    2022: "http://www.beijing.gov.cn/zhengce/zhengcefagui/202110/t20211026_2520500.html",
    2023: "https://zh.m.wikisource.org/zh/国务院办公厅关于2023年部分节假日安排的通知",
    2024: "http://paper.people.com.cn/rmrb/html/2023-10/26/nw.D110000renmrb_20231026_3-06.htm",
    2025: "https://m.gmw.cn/2024-11/12/content_1303894933.htm",
    2026: "https://politics.gmw.cn/2025-11/04/content_38391083.htm",
}

# Days a later notice changed after the year's notice was published; the library has the later state.
# date -> (working day by the year's notice, working day by the library)
LATER_NOTICES = {
    2015: {  # 国发明电〔2015〕1号：抗战胜利70周年纪念日 9月3日至5日调休放假，9月6日（星期日）上班
        date(2015, 9, 3): (True, False),
        date(2015, 9, 4): (True, False),
        date(2015, 9, 6): (False, True),
    },
    2019: {  # 国办发明电〔2019〕3号：调整劳动节为5月1日至4日，4月28日（星期日）、5月5日（星期日）上班
        date(2019, 4, 28): (False, True),
        date(2019, 5, 2): (True, False),
        date(2019, 5, 3): (True, False),
        date(2019, 5, 5): (False, True),
    },
    2020: {  # 国办发明电〔2020〕1号：延长春节假期至2月2日（星期日），原定2月1日（星期六）上班取消
        date(2020, 1, 31): (True, False),
        date(2020, 2, 1): (True, False),
    },
}


def _fixture(year: int) -> str:
    return (FIXTURES / f"{year}.txt").read_text(encoding="utf-8")


def _parse(year: int) -> YearOverride:
    return parse_notice(_fixture(year), f"{year}.txt")


def _days(year: int):
    d = date(year, 1, 1)
    while d.year == year:
        yield d
        d += timedelta(days=1)


def _notice_window(year: int) -> tuple[date, date]:
    """The span a year's notice arranges: its New Year may start in the last days of the year before."""
    return date(year - 1, 12, 25), date(year, 12, 24)


# --- every published notice, 2010–2026 --------------------------------------------------------------
@pytest.mark.parametrize("year", YEARS)
def test_notice_gives_the_library_calendar_day_by_day(year):
    override = _parse(year)
    assert override.year == year
    assert override.source == f"国务院办公厅关于{year}年部分节假日安排的通知"
    # The last days of December belong to the next year's notice (2018-12-29…31 are in the 2019 one),
    # so the next notice is imported alongside, as a user would.
    overrides = [override] + ([_parse(year + 1)] if year + 1 in YEARS else [])
    imported, library = WorkCalendar(overrides), WorkCalendar()
    differ = {d: (imported.is_workday(d), library.is_workday(d))
              for d in _days(year) if imported.is_workday(d) != library.is_workday(d)}
    assert differ == LATER_NOTICES.get(year, {})


@pytest.mark.parametrize("year", YEARS)
def test_notice_days_match_the_library_lists(year):
    override = _parse(year)
    first, last = _notice_window(year)
    china = holidays.China(years=[year - 1, year])
    later = LATER_NOTICES.get(year, {})
    lib_worked = {d for d in china.weekend_workdays if first <= d <= last}
    assert override.workdays ^ lib_worked == {d for d in later if d.weekday() >= 5}
    lib_off = {d for d in china if first <= d <= last and d.weekday() < 5}
    notice_off = {d for d in override.holidays if d.weekday() < 5}
    assert notice_off ^ lib_off == {d for d in later if d.weekday() < 5}
    assert all(first <= d <= last for d in override.holidays | override.workdays)


def test_2026_has_exactly_six_adjusted_working_days():
    override = _parse(2026)
    assert sorted(override.workdays) == [date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28),
                                         date(2026, 5, 9), date(2026, 9, 20), date(2026, 10, 10)]
    assert date(2026, 2, 15) in override.holidays and date(2026, 2, 23) in override.holidays
    assert date(2026, 2, 24) not in override.holidays


def test_neighbouring_year_dates_written_with_their_year():
    assert date(2011, 12, 31) in _parse(2012).workdays
    o2019 = _parse(2019)
    assert {date(2018, 12, 30), date(2018, 12, 31), date(2019, 1, 1)} <= o2019.holidays
    assert date(2018, 12, 29) in o2019.workdays
    assert date(2022, 12, 31) in _parse(2023).holidays


def test_bare_day_after_a_comma_keeps_the_month():
    o = _parse(2010)  # 2月20日（星期六）、21日（星期日）上班
    assert {date(2010, 2, 20), date(2010, 2, 21), date(2010, 9, 19), date(2010, 9, 25)} <= o.workdays


@pytest.mark.parametrize("year", YEARS)
def test_fixtures_look_like_notices(year):
    assert looks_like_notice(_fixture(year))


def test_yaml_calendar_does_not_look_like_a_notice():
    yaml_text = ("year: 2027\nsource: 国务院办公厅关于2027年部分节假日安排的通知\n"
                 "holidays: [2027-01-01..2027-01-03]  # 元旦放假\nworkdays: []\n")
    assert not looks_like_notice(yaml_text)


# --- the same notice, typed differently ---------------------------------------------------------------
def _same(a: YearOverride, b: YearOverride) -> bool:
    return (a.year, a.holidays, a.workdays) == (b.year, b.holidays, b.workdays)


def test_full_width_digits_half_width_parentheses_and_xingqi():
    text = _fixture(2026)
    text = text.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    text = text.replace("（", "(").replace("）", ")").replace("周", "星期")
    assert _same(parse_notice(text, "x.txt"), _parse(2026))


def test_items_broken_across_lines_and_indented():
    text = _fixture(2012).replace("：", "：\n    ").replace("。3月31日", "。\n3月31日")
    assert _same(parse_notice(text, "x.txt"), _parse(2012))


def test_news_lead_before_the_title():
    text = "新华社北京11月4日电 " + _fixture(2026).replace("的通知\n", "的通知，全文如下：\n", 1)
    o = parse_notice(text, "x.txt")
    assert o.source == "国务院办公厅关于2026年部分节假日安排的通知" and _same(o, _parse(2026))


# --- refused, whole, with the line ------------------------------------------------------------------
def _line_of(text: str, fragment: str) -> int:
    return next(i + 1 for i, s in enumerate(text.splitlines()) if fragment in s)


BAD = [
    ("impossible date", "6月19日（周五）至21日（周日）放假", "2月30日放假", "2月30日不存在"),
    ("count mismatch", "放假调休，共9天", "放假调休，共8天", "共8天与 2月15日至2月23日（9天）不符"),
    ("weekday worked", "5月9日（周六）上班", "5月11日（周一）上班",
     "2026年5月11日（星期一）不是周末，不能是调休上班日"),
    ("off and worked", "2月14日（周六）、2月28日（周六）上班", "2月14日（周六）、2月21日（周六）上班",
     "2月21日既放假又上班"),
    ("wrong weekday", "1月4日（周日）上班", "1月4日（周六）上班", "1月4日是星期日，括号里却写着“周六”"),
    ("end before start", "9月25日（周五）至27日（周日）", "9月25日（周五）至9月2日（周三）", "早于9月25日"),
    ("unknown wording", "5月9日（周六）上班", "5月9日（周六）调班", "看不懂"),
]


@pytest.mark.parametrize(("old", "new", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_notice_is_refused_with_its_line(old, new, message):
    text = _fixture(2026)
    assert old in text
    bad = text.replace(old, new, 1)
    with pytest.raises(RuleFileError) as e:
        parse_notice(bad, "2026.txt")
    assert message in e.value.reason
    assert e.value.line == _line_of(bad, new)
    assert e.value.file == "2026.txt"
    assert f"第 {e.value.line} 行" in str(e.value)


def test_title_without_a_year_is_refused():
    bad = _fixture(2026).replace("关于2026年部分节假日", "关于部分节假日", 1)
    with pytest.raises(RuleFileError) as e:
        parse_notice(bad, "n.txt")
    assert e.value.line == 1 and "年份" in e.value.reason


def test_text_without_items_is_refused():
    with pytest.raises(RuleFileError, match="编号条目"):
        parse_notice("国务院办公厅关于2026年部分节假日安排的通知\n元旦放假三天。\n", "n.txt")


def test_every_problem_is_reported_and_nothing_is_kept():
    bad = (_fixture(2026).replace("共9天", "共8天").replace("5月9日（周六）", "5月11日（周一）")
           .replace("6月19日", "6月31日"))
    with pytest.raises(RuleFileErrors) as e:
        parse_notice(bad, "n.txt")
    lines = [err.line for err in e.value.errors]
    assert lines == sorted(lines) and len(lines) == 3
    assert "3 处错误" in str(e.value)


def test_neighbouring_year_range_without_its_years_is_refused():
    bad = _fixture(2019).replace("2018年12月30日至2019年1月1日", "12月30日至1月1日")
    with pytest.raises(RuleFileError, match="结束日不能早于开始日"):
        parse_notice(bad, "n.txt")


# --- a year's arrangement must be whole ------------------------------------------------------------
@pytest.mark.parametrize("year", YEARS)
def test_every_published_notice_names_every_statutory_holiday_and_its_days(year):
    o = _parse(year)
    named = {n for names, _off, _worked in notice_items(_fixture(year), "n.txt") for n in names}
    assert named == set(STATUTORY_HOLIDAYS)
    assert {d for days in statutory_days(year).values() for d in days} <= o.holidays


def test_a_notice_naming_only_new_year_is_refused_naming_what_is_missing():
    text = "国务院办公厅关于2027年部分节假日安排的通知\n一、元旦：1月1日（周五）至3日（周日）放假，共3天。\n"
    with pytest.raises(RuleFileError) as e:
        parse_notice(text, "2027.txt")
    assert e.value.file == "2027.txt" and e.value.line == 1
    assert "没有春节、清明节、劳动节、端午节、中秋节、国庆节的安排" in e.value.reason
    assert "读到的只有：元旦" in e.value.reason


def test_a_notice_missing_one_item_is_refused_with_the_other_problems():
    text = _fixture(2026)
    line = next(s for s in text.splitlines() if s.startswith("五、端午节"))
    bad = text.replace(line + "\n", "").replace("共9天", "共8天")
    with pytest.raises(RuleFileErrors) as e:
        parse_notice(bad, "2026.txt")
    reasons = [err.reason for err in e.value.errors]
    assert any("没有端午节的安排" in r for r in reasons) and any("共8天" in r for r in reasons)


def test_mid_autumn_and_national_day_in_one_item_count_as_both():
    items = notice_items(_fixture(2023), "2023.txt")
    assert ("中秋节", "国庆节") in [names for names, _off, _worked in items]
    o = _parse(2020)  # 六、国庆节、中秋节：10月1日至8日放假调休
    assert {date(2020, 10, d) for d in range(1, 9)} <= o.holidays


@pytest.mark.parametrize("year", YEARS)
def test_holiday_periods_are_the_items_of_the_notice(year):
    """What an amendment replaces is a holiday's period as the calendar has it: the run of days off
    around its statutory days and the working weekends that pay for it. From the year alone, this
    gives each item of the published notice — from the imported notice and from the library."""
    imported = WorkCalendar([_parse(y) for y in (year - 1, year, year + 1) if y in YEARS])
    calendars = [imported] if year in LATER_NOTICES else [imported, WorkCalendar()]
    for names, off, worked in notice_items(_fixture(year), f"{year}.txt"):
        for name in names:
            for cal in calendars:
                period, paid_by = cal.holiday_period(year, name)
                assert off <= period and all(d in off or d.weekday() >= 5 for d in period), (name, sorted(period))
                assert paid_by == worked, (name, sorted(paid_by))


# --- special notices: they amend a year ---------------------------------------------------------------
SPECIAL = FIXTURES / "special"
# Where the published text of each special notice was read (several copies agree word for word).
SPECIAL_SOURCES = {
    "2015-victory-day.txt": "国发明电〔2015〕1号, 2015年5月13日: https://wanbao.xyxww.com.cn/html/2015-05/14/content_199427.htm"
                            " and http://m.xuexila.com/news/164029.html (gov.cn, 2015-05-13)",
    "2019-labour-day.txt": "国办发明电〔2019〕3号, 2019年3月22日: http://hmsrbp.cn/rlzy/2019-03-29/513.html,"
                           " http://www.hxnews.com/news/gn/szxw/201903/22/1727059.shtml (中国政府网)",
    "2020-spring-festival.txt": "国办发明电〔2020〕1号, 2020年1月26日: https://www.farmer.com.cn/2020/01/27/99847578.html"
                                " (新华社北京1月27日电)",
}


def _special(name: str) -> str:
    return (SPECIAL / name).read_text(encoding="utf-8")


def test_special_notices_are_read_as_amendments():
    v = parse_notice(_special("2015-victory-day.txt"), "v.txt")
    assert isinstance(v, Amendment) and v.year == 2015 and v.replaces is None and v.extends is None
    assert v.source == "国务院关于中国人民抗日战争暨世界反法西斯战争胜利70周年纪念日调休放假的通知"
    assert v.holidays == {date(2015, 9, 3), date(2015, 9, 4), date(2015, 9, 5)}
    assert v.workdays == {date(2015, 9, 6)}
    lab = parse_notice(_special("2019-labour-day.txt"), "l.txt")
    assert isinstance(lab, Amendment) and lab.year == 2019 and lab.replaces == "劳动节"
    assert lab.holidays == {date(2019, 5, d) for d in range(1, 5)}
    assert lab.workdays == {date(2019, 4, 28), date(2019, 5, 5)}
    ext = parse_notice(_special("2020-spring-festival.txt"), "e.txt")
    assert isinstance(ext, Amendment) and ext.year == 2020
    assert ext.extends == ("春节", date(2020, 2, 2)) and not ext.holidays and not ext.workdays  # 2月3日起正常上班
    assert all(looks_like_notice(_special(n)) for n in SPECIAL_SOURCES)


def test_a_title_laid_out_on_three_lines_as_published():
    text = _special("2015-victory-day.txt").replace("抗日战争暨", "抗日战争暨\n", 1).replace("纪念日调休", "纪念日\n调休", 1)
    assert parse_notice(text, "v.txt") == parse_notice(_special("2015-victory-day.txt"), "v.txt")


def _days_differing_from_chinese_calendar(cal: WorkCalendar, year: int) -> list[date]:
    return [d for d in _days(year) if cal.is_workday(d) != chinese_calendar.is_workday(d)]


@pytest.mark.parametrize(("name", "year"), [("2015-victory-day.txt", 2015), ("2019-labour-day.txt", 2019),
                                            ("2020-spring-festival.txt", 2020)])
def test_the_year_notice_then_its_special_notice_give_chinese_calendar_day_by_day(name, year):
    notices = [_parse(year), _parse(year + 1)]
    before = WorkCalendar(notices)
    assert _days_differing_from_chinese_calendar(before, year) == sorted(LATER_NOTICES[year])
    amended = amend(before, parse_notice(_special(name), name))
    assert amended.source == f"国务院办公厅关于{year}年部分节假日安排的通知；{parse_notice(_special(name), name).source}"
    assert _days_differing_from_chinese_calendar(WorkCalendar([amended, notices[1]]), year) == []
    # on top of the library, which already has the special notice, nothing changes
    library = WorkCalendar()
    on_library = amend(library, parse_notice(_special(name), name))
    assert WorkCalendar([on_library]).fingerprint(year) == library.fingerprint(year)


def test_an_amendment_applied_twice_changes_nothing_more():
    for name, year in [("2019-labour-day.txt", 2019), ("2020-spring-festival.txt", 2020)]:
        a = parse_notice(_special(name), name)
        once = amend(WorkCalendar([_parse(year)]), a)
        twice = amend(WorkCalendar([once]), a)
        assert (twice.holidays, twice.workdays) == (once.holidays, once.workdays)


# INVENTED TEST DATA — 虚构的测试数据：2026 年没有调整劳动节的通知。它让劳动节只放 3 天，看原安排里
# 不再放假的 5月4日、5月5日 是否恢复上班，原来为劳动节调休上班的 5月9日（周六）是否恢复休息。
LABOUR_DAY_2026_INVENTED = """国务院办公厅关于调整2026年劳动节假期安排的通知
各省、自治区、直辖市人民政府，国务院各部委、各直属机构：
经国务院批准，现将调整2026年劳动节放假安排通知如下。
一、2026年5月1日至3日放假，共3天。
国务院办公厅
2026年3月1日
"""


def test_replacing_a_holiday_puts_its_old_days_back_to_normal():
    library = WorkCalendar()
    assert not library.is_workday(date(2026, 5, 5)) and library.is_workday(date(2026, 5, 9))
    o = amend(library, parse_notice(LABOUR_DAY_2026_INVENTED, "n.txt"))
    cal = WorkCalendar([o])
    # Fri 1 – Sun 3 off; Mon 4 and Tue 5 worked again; Sat 9 no longer a working day
    assert [cal.is_workday(date(2026, 5, d)) for d in range(1, 11)] == [
        False, False, False, True, True, True, True, True, False, False]
    assert cal.is_workday(date(2026, 2, 14)) and not cal.is_workday(date(2026, 10, 7))  # the rest stays
    assert cal.is_workday(date(2026, 9, 20)) and cal.is_workday(date(2026, 10, 10))


def test_an_adjusted_holiday_must_keep_its_statutory_days():
    bad = LABOUR_DAY_2026_INVENTED.replace("5月1日至3日放假，共3天", "5月2日至3日放假，共2天")
    with pytest.raises(RuleFileError, match="调整后的劳动节安排没有5月1日"):
        parse_notice(bad, "n.txt")


def test_a_special_notice_is_checked_like_any_notice():
    bad = _special("2019-labour-day.txt").replace("5月5日（星期日）上班", "5月6日（星期一）上班")
    with pytest.raises(RuleFileError) as e:
        parse_notice(bad, "l.txt")
    assert "不是周末" in e.value.reason and e.value.line == _line_of(bad, "5月6日")
    bad = _special("2015-victory-day.txt").replace("共3天", "共4天")
    with pytest.raises(RuleFileError, match="共4天与"):
        parse_notice(bad, "v.txt")


def test_an_extension_before_the_holiday_is_refused():
    a = parse_notice(_special("2020-spring-festival.txt").replace("至2月2日（农历正月初九，星期日）", "至1月20日"), "e.txt")
    with pytest.raises(RuleFileError, match="早于春节假期的开始"):
        amend(WorkCalendar([_parse(2020)]), a, "e.txt")


# --- a year the library does not know yet -----------------------------------------------------------
# INVENTED TEST DATA — 虚构的测试数据，不是真实通知：2027 年的安排尚未公布。
NOTICE_2027_INVENTED = """国务院办公厅关于2027年部分节假日安排的通知
国办发明电〔2026〕99号

各省、自治区、直辖市人民政府，国务院各部委、各直属机构：
经国务院批准，现将2027年元旦、春节、清明节、劳动节、端午节、中秋节和国庆节放假调休日期的具体安排通知如下。
一、元旦：1月1日（周五）至3日（周日）放假，共3天。
二、春节：2月5日（农历除夕、周五）至13日（农历正月初八、周六）放假调休，共9天。1月31日（周日）、2月20日（周六）上班。
三、清明节：4月3日（周六）至5日（周一）放假，共3天。
四、劳动节：5月1日（周六）至5日（周三）放假调休，共5天。4月25日（周日）、5月8日（周六）上班。
五、端午节：6月9日（周三）放假1天，不调休。
六、中秋节：9月15日（周三）放假1天，不调休。
七、国庆节：10月1日（周五）至7日（周四）放假调休，共7天。9月26日（周日）、10月9日（周六）上班。
节假日期间，各地区、各部门要妥善安排好值班和安全、保卫、疫情防控等工作，遇有重大突发事件，要按规定及时报告并妥善处置，确保人民群众祥和平安度过节日假期。

国务院办公厅
2026年11月1日
"""


def test_invented_2027_notice_becomes_a_year_override():
    o = parse_notice(NOTICE_2027_INVENTED, "2027.txt")
    assert o.year == 2027 and o.source == "国务院办公厅关于2027年部分节假日安排的通知"
    assert sorted(o.workdays) == [date(2027, 1, 31), date(2027, 2, 20), date(2027, 4, 25),
                                  date(2027, 5, 8), date(2027, 9, 26), date(2027, 10, 9)]
    cal = WorkCalendar([o], official_through=2026)
    assert not cal.is_provisional(2027)
    assert cal.year_source(2027) == o.source
    assert not cal.is_workday(date(2027, 2, 8))  # Monday inside the Spring Festival
    assert cal.is_workday(date(2027, 2, 20))  # Saturday worked
    assert not cal.is_workday(date(2027, 6, 9))
    assert cal.is_workday(date(2027, 6, 10))
