"""What the planner promises a user: keys, due dates, windows, quotas and reminder days of real duties.

Expected dates are computed here with `chinese_calendar` (not with the code under test) or written out.
"""

from __future__ import annotations

from datetime import date, timedelta

import chinese_calendar
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.calendar import WorkCalendar, YearOverride
from rules.loader import parse_rule_text
from rules.planner import Event, Occurrence, Planner

D = date.fromisoformat
Y2026 = (D("2026-01-01"), D("2026-12-31"))

HEAD = """\
people:
  secretary: {name: 王书记, email: secretary@example.cn}
  office: {name: 办公室}
  photo-assoc: {name: 摄影家协会}
  writers-assoc: {name: 作家协会}
groups:
  associations: [photo-assoc, writers-assoc]
defaults:
  owner: secretary
  escalate_to: [secretary]
rules:
"""


def plan(rules_yaml: str, first: date, last: date, events=(), overrides=()) -> list[Occurrence]:
    ruleset = parse_rule_text(HEAD + rules_yaml, "test.yaml")
    return Planner(WorkCalendar(overrides), ruleset.groups).plan(ruleset.rules, first, last, events)


def by_key(occurrences: list[Occurrence]) -> dict[str, Occurrence]:
    out = {o.key: o for o in occurrences}
    assert len(out) == len(occurrences), "keys must be unique"
    return out


def official_workday(d: date) -> bool:
    return chinese_calendar.is_workday(d)


def next_official_workday(d: date) -> date:
    while not official_workday(d):
        d += timedelta(days=1)
    return d


def previous_official_workday(d: date) -> date:
    while not official_workday(d):
        d -= timedelta(days=1)
    return d


PARTY_DAY = """\
  - id: party-day
    title: 主题党日
    source: "二(三)8"
    every: month
    due: {weekday: fri, nth: 1}
    if_holiday: next-workday
    remind: [-3d, -1d]
"""


# --- periodic duties ------------------------------------------------------------------------

def test_first_friday_party_day_every_month_of_2026():
    expected = {}
    for month in range(1, 13):
        d = date(2026, month, 1)
        while d.weekday() != 4:
            d += timedelta(days=1)
        expected[f"party-day@2026-{month:02d}"] = next_official_workday(d)
    got = {o.key: o.due for o in plan(PARTY_DAY, *Y2026)}
    assert got == expected


@pytest.mark.parametrize("month, due", [
    (1, "2026-01-04"),     # Jan 2 is a holiday, Jan 3 a Saturday off, Sunday Jan 4 is worked
    (2, "2026-02-06"),
    (5, "2026-05-06"),     # May 1 is Labour Day, off through May 5
    (10, "2026-10-08"),    # Oct 2 is National Day, off through Oct 7
    (12, "2026-12-04"),
])
def test_party_day_known_months(month, due):
    occ = by_key(plan(PARTY_DAY, *Y2026))[f"party-day@2026-{month:02d}"]
    assert occ.due == D(due)
    assert occ.opens == date(2026, month, 1)
    assert occ.owner == "secretary"
    assert occ.quota == 1


def test_month_end_duty_moves_to_previous_workday():
    occs = by_key(plan("""\
  - id: dues-collection
    title: 收缴党费
    every: month
    due: {day: last}
    if_holiday: previous-workday
""", *Y2026))
    assert occs["dues-collection@2026-05"].due == D("2026-05-29")   # May 31 is a Sunday
    assert occs["dues-collection@2026-02"].due == D("2026-02-28")   # a worked Saturday stays
    assert occs["dues-collection@2026-01"].due == D("2026-01-30")   # Jan 31 Saturday
    for month in range(1, 13):
        last = date(2026, month + 1, 1) - timedelta(days=1) if month < 12 else date(2026, 12, 31)
        assert occs[f"dues-collection@2026-{month:02d}"].due == previous_official_workday(last)


def test_quarterly_half_yearly_and_yearly_keys():
    occs = by_key(plan("""\
  - id: supervision-check
    title: 督查检查
    every: quarter
  - id: secrecy-self-check
    title: 保密自查
    every: half-year
  - id: ideology-seminar
    title: 意识形态工作专题研讨
    every: year
    quota: 2
""", *Y2026))
    expected = {
        "supervision-check@2026-Q1": ("2026-01-01", "2026-03-31"),
        "supervision-check@2026-Q2": ("2026-04-01", "2026-06-30"),
        "supervision-check@2026-Q3": ("2026-07-01", "2026-09-30"),
        "supervision-check@2026-Q4": ("2026-10-01", "2026-12-31"),
        "secrecy-self-check@2026-H1": ("2026-01-01", "2026-06-30"),
        "secrecy-self-check@2026-H2": ("2026-07-01", "2026-12-31"),
        "ideology-seminar@2026": ("2026-01-01", "2026-12-31"),
    }
    assert set(occs) == set(expected)
    for key, (opens, due) in expected.items():
        assert (occs[key].opens, occs[key].due) == (D(opens), next_official_workday(D(due))), key
    assert occs["ideology-seminar@2026"].quota == 2
    assert occs["supervision-check@2026-Q1"].quota == 1


@pytest.mark.parametrize("due, key, expected", [
    ("{month: 1, day: 31}", "annual-report@2026", "2026-02-02"),     # Sat Jan 31 → Mon Feb 2
    ("{month: 10, day: 1}", "annual-report@2026", "2026-10-08"),     # National Day → after the week off
    ("{month: 6, day: 19}", "annual-report@2026", "2026-06-22"),     # Dragon Boat Festival (Fri) → Monday
])
def test_yearly_due_day_moves_off_holidays(due, key, expected):
    occs = by_key(plan(f"""\
  - id: annual-report
    title: 年度报告
    every: year
    due: {due}
""", *Y2026))
    assert occs[key].due == D(expected)


@pytest.mark.parametrize("every, due, key, expected_due", [
    ("month", "{day: 1}", "report@2026-10", "2026-09-30"),     # Oct 1 is National Day
    ("week", "{weekday: sun}", "report@2026-W08", "2026-02-14"),  # Feb 16–22: the whole week is off
])
def test_duty_moved_before_its_period_is_open_by_its_due_date(every, due, key, expected_due):
    occ = by_key(plan(f"""\
  - id: report
    title: 报送材料
    every: {every}
    due: {due}
    if_holiday: previous-workday
""", *Y2026))[key]
    assert occ.due == D(expected_due)
    assert occ.opens <= occ.due


# --- duties relative to events --------------------------------------------------------------

@pytest.mark.parametrize("rule, event_type, event_day, expected", [
    ("  - id: study-plan\n    title: 制定学习计划\n    event: document-received\n    offset: +3wd\n",
     "document-received", "2026-09-30", "2026-10-10"),   # 3rd working day after: the worked Saturday
    ("  - id: major-decision-report\n    title: 重大事项请示报告\n    event: major-decision\n    offset: -1d\n",
     "major-decision", "2026-10-08", "2026-09-30"),      # Oct 7 is off: the working day before it
    ("  - id: study-materials\n    title: 中心组学习材料发放\n    event: study-session\n    offset: -3d\n",
     "study-session", "2026-03-05", "2026-03-02"),
])
def test_event_relative_due_dates(rule, event_type, event_day, expected):
    occs = plan(rule, *Y2026, events=[Event(17, event_type, D(event_day))])
    assert len(occs) == 1
    occ = occs[0]
    rule_id = rule.split("id: ")[1].split("\n")[0]
    assert occ.key == f"{rule_id}@event-17"
    assert occ.due == D(expected)
    assert occ.event_id == 17


def test_events_of_other_types_make_nothing():
    occs = plan("  - id: study-plan\n    title: 制定学习计划\n    event: document-received\n    offset: +3wd\n",
                *Y2026, events=[Event(1, "study-session", D("2026-03-05"))])
    assert occs == []


# --- for_each, windows, start ---------------------------------------------------------------

def test_for_each_makes_one_occurrence_per_member():
    occs = by_key(plan("""\
  - id: association-training
    title: 会员创作培训
    every: year
    for_each: associations
""", *Y2026))
    assert set(occs) == {"association-training@2026/photo-assoc", "association-training@2026/writers-assoc"}
    for member in ("photo-assoc", "writers-assoc"):
        occ = occs[f"association-training@2026/{member}"]
        assert occ.owner == member
        assert occ.due == D("2026-12-31")


def test_window_one_off():
    rule = """\
  - id: makeup-study
    title: 集中补学会议
    window: {from: 2025-08-28, to: 2025-10-28}
    quota: 2
"""
    occs = plan(rule, D("2025-01-01"), D("2026-12-31"))
    assert [(o.key, o.opens, o.due, o.quota) for o in occs] == [
        ("makeup-study@once", D("2025-08-28"), D("2025-10-28"), 2)]
    assert plan(rule, *Y2026) == []


@pytest.mark.parametrize("start", ["2026-07-01", "2026-07-15", "2026-03-31"])
def test_no_occurrence_due_before_start(start):
    occs = plan(f"""\
  - id: dues-collection
    title: 收缴党费
    every: month
    due: {{day: 10}}
    start: {start}
  - id: study-materials
    title: 中心组学习材料发放
    event: study-session
    offset: -3d
    start: {start}
""", D("2025-01-01"), D("2026-12-31"),
        events=[Event(1, "study-session", D("2026-03-05")), Event(2, "study-session", D("2026-09-10"))])
    assert occs
    assert all(o.due >= D(start) for o in occs)
    monthly = [o for o in occs if o.rule == "dues-collection"]
    first_month = D(start).month if D(start).day <= 10 else D(start).month + 1
    assert monthly[0].key == f"dues-collection@2026-{first_month:02d}"
    assert monthly[-1].key == "dues-collection@2026-12"


@pytest.mark.parametrize("start, keys", [
    ("2025-09-01", ["makeup-study@once"]),
    ("2025-10-28", ["makeup-study@once"]),     # due on its start day: still made
    ("2025-10-29", []),                        # added after the window closed: no overdue alert
])
def test_one_off_window_respects_start(start, keys):
    occs = plan(f"""\
  - id: makeup-study
    title: 集中补学会议
    window: {{from: 2025-08-28, to: 2025-10-28}}
    start: {start}
""", D("2025-01-01"), D("2026-12-31"))
    assert [o.key for o in occs] == keys


# --- provisional years ----------------------------------------------------------------------

def test_2027_occurrences_are_provisional_until_the_year_is_imported():
    occs = plan(PARTY_DAY, D("2026-01-01"), D("2027-12-31"))
    assert {o.key for o in occs if o.provisional} == {f"party-day@2027-{m:02d}" for m in range(1, 13)}
    notice = YearOverride(2027, holidays=frozenset([D("2027-01-01"), D("2027-02-11")]),
                          workdays=frozenset([D("2027-02-20")]))
    occs = plan(PARTY_DAY, D("2026-01-01"), D("2027-12-31"), overrides=[notice])
    assert not any(o.provisional for o in occs)


# --- reminders ------------------------------------------------------------------------------

SEVERAL_RULES = PARTY_DAY + """\
  - id: dues-collection
    title: 收缴党费
    every: month
    due: {day: last}
    if_holiday: keep
    remind: [-7d, -3d, -1d, 0d]
  - id: weekly-study
    title: 每周学习
    every: week
    due: {weekday: mon}
    remind: [-2d, -1wd, 0d]
  - id: supervision-check
    title: 督查检查
    every: quarter
    remind: [-10d, -3d]
  - id: study-plan
    title: 制定学习计划
    event: document-received
    offset: +3wd
    remind: [-2d, -1d, 0d]
"""


def test_reminders_never_fall_on_a_rest_day():
    events = [Event(i, "document-received", D("2026-01-01") + timedelta(days=9 * i)) for i in range(40)]
    occs = plan(SEVERAL_RULES, *Y2026, events=events)
    assert len(occs) > 100
    for occ in occs:
        assert occ.reminder_days, occ.key
        for day in occ.reminder_days:
            assert official_workday(day), f"{occ.key}: reminder on {day}, a rest day"
        assert list(occ.reminder_days) == sorted(set(occ.reminder_days))
        assert all(r.hour == 9 and r.minute == 0 for r in occ.reminders)


@pytest.mark.parametrize("due_day, remind, expected", [
    ("2026-10-08", "[-3d, 0d]", ["2026-09-30", "2026-10-08"]),    # Oct 5 is off → Sep 30
    ("2026-02-24", "[-3d, 0d]", ["2026-02-14", "2026-02-24"]),    # Feb 21 is off → the worked Saturday Feb 14
    ("2026-05-06", "[-1d]", ["2026-04-30"]),                      # May 5 is off → Apr 30
])
def test_reminder_on_a_holiday_moves_to_previous_workday(due_day, remind, expected):
    occs = plan(f"""\
  - id: report
    title: 报送材料
    window: {{from: 2026-01-01, to: {due_day}}}
    remind: {remind}
""", *Y2026)
    assert [o.due for o in occs] == [D(due_day)]
    assert list(occs[0].reminder_days) == [D(d) for d in expected]


# --- properties -----------------------------------------------------------------------------

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MONTHS_IN = {"quarter": 3, "half-year": 6, "year": 12}


@st.composite
def due_expression(draw, every: str) -> str | None:
    """A valid `due:` for a rule of period `every`, as written in a rule file (or None)."""
    if every == "week":
        kind = draw(st.sampled_from([None, "weekday", "workday"]))
        if kind == "weekday":
            return f"{{weekday: {draw(st.sampled_from(WEEKDAYS))}}}"
        return f"{{workday: {draw(st.sampled_from([1, 2, 5, -1]))}}}" if kind else None
    parts = []
    if every in MONTHS_IN and draw(st.booleans()):
        parts.append(f"month: {draw(st.integers(1, MONTHS_IN[every]))}")
    kind = draw(st.sampled_from([None, "day", "weekday", "workday"]))
    if kind == "day":
        day = draw(st.one_of(st.integers(1, 28 if parts else 31), st.just("last")))
        parts.append(f"day: {day}")
    elif kind == "weekday":
        nth = draw(st.sampled_from([1, 2, 3, 4, 5, -1, "last"]))
        parts.append(f"weekday: {draw(st.sampled_from(WEEKDAYS))}, nth: {nth}")
    elif kind == "workday":
        parts.append(f"workday: {draw(st.one_of(st.integers(1, 23), st.just(-1)))}")
    return "{" + ", ".join(parts) + "}" if parts else None


@st.composite
def periodic_rule(draw, i: int) -> str:
    every = draw(st.sampled_from(["week", "month", "quarter", "half-year", "year"]))
    due = draw(due_expression(every))
    if_holiday = draw(st.sampled_from(["previous-workday", "next-workday"]))
    remind = draw(st.lists(st.sampled_from(["-7d", "-3d", "-1d", "0d", "-2wd", "-1wd"]), min_size=1, max_size=3))
    lines = [f"  - id: r{i}-{every}", "    title: 测试", f"    every: {every}", f"    if_holiday: {if_holiday}",
             f"    remind: [{', '.join(remind)}]"]
    if due:
        lines.append(f"    due: {due}")
    return "\n".join(lines) + "\n"


@st.composite
def rule_file(draw) -> str:
    n = draw(st.integers(1, 4))
    return "".join(draw(periodic_rule(i)) for i in range(n))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rule_file(), first=st.dates(date(2010, 1, 1), date(2026, 12, 31)), length=st.integers(0, 500))
def test_planning_is_repeatable_and_due_dates_are_working_days(rules, first, length):
    last = min(first + timedelta(days=length), date(2026, 12, 31))
    ruleset = parse_rule_text(HEAD + rules, "hypothesis.yaml")
    planner = Planner(WorkCalendar(), ruleset.groups)
    once = planner.plan(ruleset.rules, first, last)
    again = planner.plan(ruleset.rules, first, last)
    fresh = Planner(WorkCalendar(), ruleset.groups).plan(ruleset.rules, first, last)
    assert [o.key for o in once] == [o.key for o in again] == [o.key for o in fresh]
    assert once == again == fresh
    by_key(once)
    for occ in once:
        assert first <= occ.due <= last
        assert official_workday(occ.due), f"{occ.key} due on {occ.due}, a rest day"
        assert all(official_workday(d) for d in occ.reminder_days)
