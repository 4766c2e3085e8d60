"""Periods (week, month, quarter, half-year, year), due-date expressions and offsets.

All arithmetic is on proleptic ordinals (`date.toordinal()`), which keeps planning cheap.
"""

from __future__ import annotations

import calendar as _stdcal
import re
from dataclasses import dataclass
from datetime import date

from .calendar import WorkCalendar

PERIOD_KINDS = ("week", "month", "quarter", "half-year", "year")
PERIOD_NAMES = {"week": "每周", "month": "每月", "quarter": "每季度", "half-year": "每半年", "year": "每年"}
MONTHS_IN = {"month": 1, "quarter": 3, "half-year": 6, "year": 12}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")

_OFFSET_RE = re.compile(r"^([+-]?)(\d{1,4})(d|wd)$")


@dataclass(frozen=True, slots=True)
class Offset:
    """`Nd` (calendar days) or `Nwd` (working days of the official calendar)."""

    days: int
    working: bool

    @classmethod
    def parse(cls, text: str) -> Offset:
        m = _OFFSET_RE.match(str(text).strip())
        if not m:
            raise ValueError(f"“{text}”不是有效的偏移量，应写成 -3d、+1d、0d（自然日）或 +3wd、-2wd（工作日）")
        n = int(m.group(2)) * (-1 if m.group(1) == "-" else 1)
        return cls(n, m.group(3) == "wd")

    def apply(self, ordinal: int, cal: WorkCalendar) -> int:
        return cal.add_workdays(ordinal, self.days) if self.working else ordinal + self.days

    def __str__(self) -> str:
        sign = "+" if self.days > 0 else ("-" if self.days < 0 else "")
        return f"{sign}{abs(self.days)}{'wd' if self.working else 'd'}"


@dataclass(frozen=True, slots=True)
class Period:
    """One period of a periodic rule: its label (the key's PERIOD part) and its days."""

    label: str
    first: int  # ordinal of the first day
    last: int  # ordinal of the last day
    first_month: tuple[int, int]  # (year, month) of the first month; (0, 0) for weeks


def _month_start(year: int, month: int) -> int:
    return date(year, month, 1).toordinal()


def _month_end(year: int, month: int) -> int:
    return date(year, month, _stdcal.monthrange(year, month)[1]).toordinal()


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    k = year * 12 + (month - 1) + n
    return k // 12, k % 12 + 1


def period_of(kind: str, d: date) -> Period:
    """The period of `kind` that contains the day `d`."""
    if kind == "week":
        iso = d.isocalendar()
        first = d.toordinal() - (iso.weekday - 1)
        return Period(f"{iso.year}-W{iso.week:02d}", first, first + 6, (0, 0))
    if kind == "year":
        return Period(f"{d.year}", _month_start(d.year, 1), _month_end(d.year, 12), (d.year, 1))
    n = MONTHS_IN[kind]
    m0 = (d.month - 1) // n * n + 1
    y = d.year
    if kind == "month":
        label = f"{y}-{d.month:02d}"
    elif kind == "quarter":
        label = f"{y}-Q{(d.month - 1) // 3 + 1}"
    else:
        label = f"{y}-H{(d.month - 1) // 6 + 1}"
    ye, me = _add_months(y, m0, n - 1)
    return Period(label, _month_start(y, m0), _month_end(ye, me), (y, m0))


def periods_between(kind: str, first: date, last: date) -> list[Period]:
    """Every period of `kind` that overlaps [first, last], in order."""
    out = []
    p = period_of(kind, first)
    last_o = last.toordinal()
    while p.first <= last_o:
        out.append(p)
        p = period_of(kind, date.fromordinal(p.last + 1))
    return out


@dataclass(frozen=True, slots=True)
class DueSpec:
    """When in its period a periodic duty is due (before moving it off rest days).

    `month` is the n-th month of the period (the calendar month for `year`); `day` is a day of
    the month or "last"; `weekday` + `nth` is the n-th (or, with -1, the last) such weekday of
    the month (of the week for weekly rules); `workday` is the n-th working day (-1: the last).
    With nothing set, the duty is due on the period's last day.
    """

    month: int | None = None
    day: int | str | None = None
    weekday: int | None = None
    nth: int | None = None
    workday: int | None = None

    def due_in(self, p: Period, cal: WorkCalendar) -> int:
        if p.first_month == (0, 0):  # a week
            if self.weekday is not None:
                return p.first + self.weekday
            first, last = p.first, p.last
        else:
            months = (date.fromordinal(p.last).year * 12 + date.fromordinal(p.last).month) - (
                p.first_month[0] * 12 + p.first_month[1]) + 1
            if self.month is not None:
                y, m = _add_months(*p.first_month, self.month - 1)
                first, last = _month_start(y, m), _month_end(y, m)
            elif months == 1 or self.day not in (None, "last") or self.weekday is not None:
                # a day or weekday without a month means the period's single / last month
                y, m = _add_months(*p.first_month, months - 1)
                first, last = _month_start(y, m), _month_end(y, m)
            else:
                first, last = p.first, p.last
            if self.day is not None:
                if self.day == "last":
                    return last
                return min(first + int(self.day) - 1, last)
            if self.weekday is not None:
                nth = self.nth or 1
                if nth > 0:
                    o = first + (self.weekday - date.fromordinal(first).weekday()) % 7 + 7 * (nth - 1)
                    return o if o <= last else o - 7  # a 5th weekday that a month lacks: its last
                return last - (date.fromordinal(last).weekday() - self.weekday) % 7 + 7 * (nth + 1)
        if self.workday is not None:
            days = cal.workdays_between(first, last)
            if not days:
                return last
            k = self.workday - 1 if self.workday > 0 else self.workday
            return days[max(-len(days), min(k, len(days) - 1))]
        return last

    def describe(self, kind: str) -> str:
        parts = []
        if self.month is not None:
            parts.append(f"第{self.month}个月" if kind in ("quarter", "half-year") else f"{self.month}月")
        if self.day is not None:
            parts.append("最后一天" if self.day == "last" else f"{self.day}日")
        if self.weekday is not None:
            if kind == "week":
                parts.append(WEEKDAY_NAMES[self.weekday])
            else:
                nth = self.nth or 1
                parts.append(("最后一个" if nth == -1 else f"第{nth}个") + WEEKDAY_NAMES[self.weekday])
        if self.workday is not None:
            parts.append("最后一个工作日" if self.workday == -1 else f"第{self.workday}个工作日")
        return "".join(parts) or "期末最后一天"
