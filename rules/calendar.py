"""Working days of the official Chinese calendar.

Statutory holidays are rest days and adjusted working weekends (调休) are working days, as the
State Council arranges them each year. The `holidays` package knows the arranged years; for a later
year it computes the statutory holidays by law, and everything that depends on such a year is
`provisional`. A year imported by the user (`YearOverride`) wins over the library.

Lookups are array indexing over a contiguous span of years, so planning stays cheap.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache

LIBRARY_SOURCE = "holidays 程序库"

# The seven statutory holidays (《全国年节及纪念日放假办法》), in the order a notice lists them.
STATUTORY_HOLIDAYS = ("元旦", "春节", "清明节", "劳动节", "端午节", "中秋节", "国庆节")
_LIBRARY_NAMES = {"农历除夕": "春节"}  # the library names New Year's Eve apart; it is part of 春节


@dataclass(frozen=True)
class YearOverride:
    """A year's arrangement supplied by the user: days off and adjusted working weekends."""

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date] = field(default_factory=frozenset)
    source: str = "用户日历文件"


@dataclass(frozen=True)
class Amendment:
    """A special notice that changes some days of a year already arranged, instead of replacing it.

    `holidays` and `workdays` are the days it names (off / adjusted working weekend). `replaces` is the
    holiday whose arrangement it redoes (关于调整2019年劳动节假期安排): that holiday's old days that the
    notice no longer names go back to normal. `extends` is (holiday, last day) for 关于延长2020年春节假期:
    the days from the end of that holiday's period through the last day become days off.
    """

    year: int
    source: str
    holidays: frozenset[date] = field(default_factory=frozenset)
    workdays: frozenset[date] = field(default_factory=frozenset)
    replaces: str | None = None
    extends: tuple[str, date] | None = None


@lru_cache(maxsize=64)
def _statutory(year: int) -> tuple[tuple[str, tuple[date, ...]], ...]:
    import holidays

    try:
        china = holidays.China(years=year, observed=False, language="zh_CN")
        items = sorted(china.items())
    except Exception:  # pragma: no cover - a year the library cannot compute
        return ()
    out: dict[str, list[date]] = {}
    for d, names in items:
        if d.year != year:
            continue
        for n in names.split("; "):
            n = _LIBRARY_NAMES.get(n, n)
            if n in STATUTORY_HOLIDAYS:
                out.setdefault(n, []).append(d)
    return tuple((n, tuple(out[n])) for n in STATUTORY_HOLIDAYS if n in out)


def statutory_days(year: int) -> dict[str, list[date]]:
    """The days off fixed by law for each statutory holiday of the year, before any 调休.

    元旦 1 day; 春节 3 days (除夕 and 初一–初三 = 4 from 2025); 清明节, 端午节, 中秋节 1 day each (from 2008);
    劳动节 1 day (3 in 2000–2007, 2 from 2025); 国庆节 3 days — as the `holidays` library computes them.
    Empty for a year the library cannot compute (its lunar tables end in 2100).
    """
    return {n: list(days) for n, days in _statutory(year)}


def library_official_through() -> int:
    """The last year whose official arrangement the installed `holidays` release carries."""
    try:
        from holidays.countries.china import ChinaStaticHolidays

        return max(ChinaStaticHolidays.special_public_holidays)
    except (ImportError, AttributeError, ValueError):  # pragma: no cover - library reshaped
        return 2026


class WorkCalendar:
    """Answers "is this a working day" and does working-day arithmetic."""

    def __init__(self, overrides: Iterable[YearOverride] = (), official_through: int | None = None):
        self.overrides = {o.year: o for o in overrides}
        self.official_through = library_official_through() if official_through is None else official_through
        self._lo = self._hi = 0  # the span of years loaded, inclusive
        self._base = 0  # ordinal of Jan 1 of _lo
        self._work = bytearray()  # 1 = working day, indexed by ordinal - _base
        self._workdays: list[int] = []  # ordinals of working days, ascending

    # --- which years are certain -------------------------------------------------------------
    def is_provisional(self, year: int) -> bool:
        """True when the year's official arrangement is not known (no import, library guesses)."""
        return year not in self.overrides and year > self.official_through

    def year_source(self, year: int) -> str:
        if year in self.overrides:
            return self.overrides[year].source
        if year <= self.official_through:
            return LIBRARY_SOURCE
        return f"{LIBRARY_SOURCE}（按法定节假日推算，尚无官方安排）"

    # --- loading ----------------------------------------------------------------------------
    def ensure(self, first_year: int, last_year: int) -> None:
        """Load the years [first_year, last_year] (with a year of margin either side)."""
        if self._work and self._lo <= first_year - 1 and last_year + 1 <= self._hi:
            return
        lo = min(first_year - 1, self._lo) if self._work else first_year - 1
        hi = max(last_year + 1, self._hi) if self._work else last_year + 1
        self._build(lo, hi)

    def _build(self, lo: int, hi: int) -> None:
        import holidays  # imported here: it is slow to import and only planning needs it

        base = date(lo, 1, 1).toordinal()
        end = date(hi, 12, 31).toordinal()
        work = bytearray(1 if date.fromordinal(o).weekday() < 5 else 0 for o in range(base, end + 1))
        lib_years = [y for y in range(lo, hi + 1) if y not in self.overrides]
        if lib_years:
            china = holidays.China(years=lib_years)
            for d in china:
                if lo <= d.year <= hi and d.year not in self.overrides:
                    work[d.toordinal() - base] = 0
            for d in china.weekend_workdays:
                if lo <= d.year <= hi and d.year in lib_years:
                    work[d.toordinal() - base] = 1
        for o in self.overrides.values():
            for d in o.holidays:
                if lo <= d.year <= hi:
                    work[d.toordinal() - base] = 0
            for d in o.workdays:
                if lo <= d.year <= hi:
                    work[d.toordinal() - base] = 1
        self._lo, self._hi, self._base, self._work = lo, hi, base, work
        self._workdays = [base + i for i, w in enumerate(work) if w]

    def _index(self, ordinal: int) -> int:
        i = ordinal - self._base
        if i < 0 or i >= len(self._work):
            y = date.fromordinal(ordinal).year
            self.ensure(y, y)
            i = ordinal - self._base
        return i

    # --- questions --------------------------------------------------------------------------
    def is_workday(self, d: date) -> bool:
        return self.is_workday_ordinal(d.toordinal())

    def is_workday_ordinal(self, ordinal: int) -> bool:
        i = self._index(ordinal)  # first: it may load more years and replace the table
        return bool(self._work[i])

    def next_workday(self, ordinal: int) -> int:
        """The first working day on or after `ordinal`."""
        self._index(ordinal)
        k = bisect.bisect_left(self._workdays, ordinal)
        if k >= len(self._workdays):
            self.ensure(self._hi + 1, self._hi + 1)
            return self.next_workday(ordinal)
        return self._workdays[k]

    def previous_workday(self, ordinal: int) -> int:
        """The last working day on or before `ordinal`."""
        self._index(ordinal)
        k = bisect.bisect_right(self._workdays, ordinal) - 1
        if k < 0:
            self.ensure(self._lo - 1, self._lo - 1)
            return self.previous_workday(ordinal)
        return self._workdays[k]

    def add_workdays(self, ordinal: int, n: int) -> int:
        """`+Nwd`: the N-th working day after the day (before it when N < 0).

        `0wd` is the day itself when it is a working day, else the next working day.
        """
        self._index(ordinal)
        if n > 0:
            k = bisect.bisect_right(self._workdays, ordinal) + n - 1
        elif n < 0:
            k = bisect.bisect_left(self._workdays, ordinal) + n
        else:
            return self.next_workday(ordinal)
        if k >= len(self._workdays):
            self.ensure(self._lo, self._hi + 1 + n // 200)
            return self.add_workdays(ordinal, n)
        if k < 0:
            self.ensure(self._lo - 1 + n // 200, self._hi)
            return self.add_workdays(ordinal, n)
        return self._workdays[k]

    def workdays_between(self, first: int, last: int) -> list[int]:
        """Ordinals of the working days in [first, last]."""
        self._index(first)
        self._index(last)
        return self._workdays[bisect.bisect_left(self._workdays, first):bisect.bisect_right(self._workdays, last)]

    def year_table(self, year: int) -> tuple[list[date], list[date]]:
        """(days off, adjusted working weekends) of one year, as a notice lists them.

        Days off are the holiday periods: for an imported year, the days it lists plus any weekday
        off; otherwise each run of consecutive rest days that holds a weekday off (the weekend days
        inside a holiday period count, an ordinary weekend does not).
        """
        self.ensure(year, year)
        first, last = date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal()
        rest = [not self.is_workday_ordinal(o) for o in range(first - 10, last + 11)]
        weekend = [date.fromordinal(o).weekday() >= 5 for o in range(first - 10, last + 11)]
        worked = [date.fromordinal(first + i) for i in range(last - first + 1)
                  if weekend[i + 10] and not rest[i + 10]]
        override = self.overrides.get(year)
        if override is not None:
            off = {d for d in override.holidays if d.year == year}
            off |= {date.fromordinal(first + i) for i in range(last - first + 1) if rest[i + 10] and not weekend[i + 10]}
            return sorted(off), worked
        off: list[date] = []
        i = 0
        n = len(rest)
        while i < n:
            if not rest[i]:
                i += 1
                continue
            j = i
            while j < n and rest[j]:
                j += 1
            if any(not weekend[k] for k in range(i, j)):
                off.extend(date.fromordinal(first - 10 + k) for k in range(i, j) if first <= first - 10 + k <= last)
            i = j
        return off, worked

    # --- one year as an arrangement, and its holiday periods -----------------------------------
    def year_override(self, year: int) -> YearOverride:
        """The year as it stands: the imported arrangement, or the library's days written out as one."""
        if year in self.overrides:
            return self.overrides[year]
        off, worked = self.year_table(year)
        return YearOverride(year, frozenset(off), frozenset(worked), self.year_source(year))

    def _rest_run(self, d: date) -> set[date]:
        """The consecutive days off around a day off."""
        run = {d}
        for step in (-1, 1):
            x = d + timedelta(days=step)
            while not self.is_workday(x):
                run.add(x)
                x += timedelta(days=step)
        return run

    def holiday_period(self, year: int, name: str) -> tuple[set[date], set[date]]:
        """The days off and the adjusted working weekends that belong to one statutory holiday.

        The days off are the run of consecutive days off around the holiday's statutory days. The
        adjusted working weekends are shared out among the holiday periods that need them: a period
        needs one for each weekday off beyond its statutory days (a statutory day on a weekend gives
        a weekday off, 补休, that needs none), and each working weekend goes to a period so that the
        total distance is least. (This gives every item of every notice 2010–2026 — its days off and
        its 上班 days — from the year alone; tests/test_notice.py checks it.)
        """
        self.ensure(year - 1, year + 1)
        off: set[date] = set()
        for d in statutory_days(year).get(name, []):
            if d not in off and not self.is_workday(d):
                off |= self._rest_run(d)
        if not off:
            return off, set()
        statutory = {d for y in (year - 1, year, year + 1) for days in statutory_days(y).values() for d in days}
        runs: list[tuple[date, date, int]] = []  # (first, last, working weekends it needs)
        worked: list[date] = []
        d, last = date(year, 1, 1) - timedelta(days=70), date(year, 12, 31) + timedelta(days=70)
        near = (date(year, 1, 1) - timedelta(days=40), date(year, 12, 31) + timedelta(days=40))
        while d <= last:
            if self.is_workday(d):
                if d.weekday() >= 5 and near[0] <= d <= near[1]:
                    worked.append(d)
                d += timedelta(days=1)
                continue
            run = self._rest_run(d)
            need = sum(1 for x in run if x.weekday() < 5) - len(run & statutory)
            if need > 0:
                runs.append((min(run), max(run), need))
            d = max(run) + timedelta(days=1)
        owner = _share_out(worked, runs)
        first_off = min(off)
        return off, {w for w, k in owner.items() if runs[k][0] <= first_off <= runs[k][1]}

    def fingerprint(self, year: int) -> str:
        """A digest of the year's working days: it changes when the year's arrangement changes."""
        import hashlib

        self.ensure(year, year)
        first = date(year, 1, 1).toordinal() - self._base
        last = date(year, 12, 31).toordinal() - self._base
        return hashlib.sha256(bytes(self._work[first:last + 1])).hexdigest()[:16]


def _share_out(worked: list[date], runs: list[tuple[date, date, int]]) -> dict[date, int]:
    """worked day -> index of its run: least total distance, at most `need` days a run, in order."""
    import sys

    def dist(w: date, r: tuple[date, date, int]) -> int:
        return (r[0] - w).days if w < r[0] else (w - r[1]).days

    skip = 10_000  # a working weekend that no period needs (it stays with none)
    memo: dict[tuple[int, int, int], tuple[int, tuple[int, ...]]] = {}
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * (len(worked) + len(runs)) + 100))

    def best(i: int, j: int, used: int) -> tuple[int, tuple[int, ...]]:
        if i == len(worked):
            return 0, ()
        key = (i, j, used)
        if key not in memo:
            cost, rest = best(i + 1, j, used)
            options = [(cost + skip, (-1, *rest))]
            if j < len(runs):
                if used < runs[j][2]:
                    cost, rest = best(i + 1, j, used + 1)
                    options.append((cost + dist(worked[i], runs[j]), (j, *rest)))
                options.append(best(i, j + 1, 0))
            memo[key] = min(options)
        return memo[key]

    return {w: k for w, k in zip(worked, best(0, 0, 0)[1], strict=True) if k >= 0}


def amend(cal: WorkCalendar, a: Amendment, filename: str | None = None) -> YearOverride:
    """The year as `cal` has it (imported or library), with the days the special notice names changed."""
    from .errors import RuleFileError

    base = cal.year_override(a.year)
    off, worked = set(base.holidays), set(base.workdays)
    if a.replaces:
        old_off, old_worked = cal.holiday_period(a.year, a.replaces)
        off -= old_off
        worked -= old_worked
    if a.extends:
        name, until = a.extends
        period, _ = cal.holiday_period(a.year, name)
        if not period:
            raise RuleFileError(f"要延长的{a.year}年{name}假期在现有安排里找不到：请先导入{a.year}年的全年放假安排",
                                file=filename)
        if until < min(period):
            raise RuleFileError(f"延长至{until.month}月{until.day}日，却早于{name}假期的开始"
                                f"（{min(period).month}月{min(period).day}日）", file=filename)
        d = max(period) + timedelta(days=1)
        while d <= until:
            off.add(d)
            worked.discard(d)
            d += timedelta(days=1)
    off |= a.holidays
    worked -= a.holidays
    worked |= a.workdays
    off -= a.workdays
    source = a.source if a.source in base.source else f"{base.source}；{a.source}"
    return YearOverride(a.year, frozenset(off), frozenset(worked), source[:500])
