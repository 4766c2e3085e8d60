"""The official Chinese working-day calendar as a user meets it: holidays, 调休 and `Nwd` arithmetic."""

from __future__ import annotations

from datetime import date, timedelta

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.calendar import WorkCalendar, YearOverride

D = date.fromisoformat


def loaded_calendar(*overrides: YearOverride) -> WorkCalendar:
    """A calendar with 2009–2028 loaded up front (see test_fresh_calendar_answers_any_year)."""
    cal = WorkCalendar(overrides)
    cal.ensure(2009, 2028)
    return cal


CAL = loaded_calendar()


def add_wd(cal: WorkCalendar, d: date, n: int) -> date:
    return date.fromordinal(cal.add_workdays(d.toordinal(), n))


def days(first: date, last: date):
    d = first
    while d <= last:
        yield d
        d += timedelta(days=1)


# --- the calendar agrees with the official arrangements -------------------------------------

def test_matches_chinese_calendar_every_day_2010_to_2026():
    cal = WorkCalendar()  # fresh: it loads the years as they are asked about
    for d in days(D("2010-01-01"), D("2026-12-31")):
        expected = chinese_calendar.is_workday(d)
        assert cal.is_workday(d) == expected, f"first mismatch on {d}: expected workday={expected}"


@pytest.mark.parametrize("loaded, day, workday", [
    (None, "2026-01-04", True),         # fresh calendar, first question
    (2026, "2024-01-02", True),         # loaded for 2026, then asked about an ordinary Tuesday of 2024
    (2026, "2011-12-31", True),
    (2010, "2026-10-10", True),
])
def test_fresh_calendar_answers_any_year(loaded, day, workday):
    cal = WorkCalendar()
    if loaded:
        cal.ensure(loaded, loaded)
    assert cal.is_workday(D(day)) is workday


OFF_2026 = [
    *days(D("2026-01-01"), D("2026-01-03")),    # 元旦
    *days(D("2026-02-15"), D("2026-02-23")),    # 春节
    *days(D("2026-04-04"), D("2026-04-06")),    # 清明节
    *days(D("2026-05-01"), D("2026-05-05")),    # 劳动节
    D("2026-06-19"),                            # 端午节
    D("2026-09-25"),                            # 中秋节
    *days(D("2026-10-01"), D("2026-10-07")),    # 国庆节
]
WORKED_WEEKENDS_2026 = ["2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"]


@pytest.mark.parametrize("day", OFF_2026, ids=str)
def test_2026_holidays_are_days_off(day):
    assert not CAL.is_workday(day)


@pytest.mark.parametrize("day", WORKED_WEEKENDS_2026)
def test_2026_adjusted_weekends_are_worked(day):
    assert D(day).weekday() >= 5
    assert CAL.is_workday(D(day))


def test_2026_has_exactly_these_exceptions():
    """The year as the notice lists it: each holiday period whole (its weekend days included)."""
    off, worked = CAL.year_table(2026)
    # the notice: 端午节 6月19日至21日、中秋节 9月25日至27日放假，共3天 (Friday + the weekend)
    assert set(off) == set(OFF_2026) | {D("2026-06-20"), D("2026-06-21"), D("2026-09-26"), D("2026-09-27")}
    assert worked == [D(d) for d in WORKED_WEEKENDS_2026]


def test_2012_notice_makes_saturday_2011_12_31_a_working_day():
    assert D("2011-12-31").weekday() == 5
    assert CAL.is_workday(D("2011-12-31"))


# --- years without an official arrangement yet ----------------------------------------------

def test_2027_is_provisional_until_imported():
    cal = WorkCalendar()
    assert cal.is_provisional(2027) is True
    assert cal.is_provisional(2026) is False


def test_imported_2027_wins_and_is_official():
    notice = YearOverride(
        2027,
        holidays=frozenset([*days(D("2027-01-01"), D("2027-01-03")), *days(D("2027-02-05"), D("2027-02-13"))]),
        workdays=frozenset([D("2027-01-31"), D("2027-02-20")]),
        source="国务院办公厅关于2027年部分节假日安排的通知",
    )
    library = loaded_calendar()
    imported = loaded_calendar(notice)
    # what the library guesses, before the notice
    assert library.is_provisional(2027)
    assert not library.is_workday(D("2027-02-20"))      # a Saturday
    assert library.is_workday(D("2027-02-11"))          # a Thursday after the guessed holiday
    # after the notice
    assert not imported.is_provisional(2027)
    assert imported.is_workday(D("2027-02-20"))
    assert imported.is_workday(D("2027-01-31"))
    assert not imported.is_workday(D("2027-02-11"))
    assert not imported.is_workday(D("2027-01-01"))
    assert imported.year_source(2027) == "国务院办公厅关于2027年部分节假日安排的通知"
    # neighbouring years are untouched
    assert imported.is_workday(D("2026-10-10"))
    assert not imported.is_workday(D("2026-10-07"))


# --- working-day arithmetic -----------------------------------------------------------------

@pytest.mark.parametrize("start, n, expected", [
    ("2026-09-30", 3, "2026-10-10"),    # Wednesday before National Day → the worked Saturday after it
    ("2026-02-13", 1, "2026-02-14"),    # Friday → Saturday Feb 14, a worked day before Spring Festival
    ("2026-10-08", -1, "2026-09-30"),   # the day before the meeting, skipping the whole holiday
    ("2026-10-03", 0, "2026-10-08"),    # 0wd of a holiday: the next working day
    ("2026-10-08", 0, "2026-10-08"),    # 0wd of a working day: the day itself
    ("2026-02-13", 2, "2026-02-24"),    # over Spring Festival
    ("2026-01-01", 1, "2026-01-04"),    # New Year's Day → the worked Sunday
    ("2026-01-05", -1, "2026-01-04"),
])
def test_add_workdays(start, n, expected):
    assert add_wd(CAL, D(start), n) == D(expected)


@settings(max_examples=300, deadline=None)
@given(d=st.dates(min_value=date(2010, 1, 1), max_value=date(2027, 12, 31)), n=st.integers(1, 30))
def test_add_workdays_counts_exactly_n_working_days(d, n):
    result = add_wd(CAL, d, n)
    assert result > d
    assert CAL.is_workday(result)
    assert sum(CAL.is_workday(x) for x in days(d + timedelta(days=1), result)) == n
    assert add_wd(CAL, result, -n) <= d
