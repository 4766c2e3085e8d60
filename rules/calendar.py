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
from datetime import date

LIBRARY_SOURCE = "holidays 程序库"


@dataclass(frozen=True)
class YearOverride:
    """A year's arrangement supplied by the user: days off and adjusted working weekends."""

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date] = field(default_factory=frozenset)
    source: str = "用户日历文件"


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

    def fingerprint(self, year: int) -> str:
        """A digest of the year's working days: it changes when the year's arrangement changes."""
        import hashlib

        self.ensure(year, year)
        first = date(year, 1, 1).toordinal() - self._base
        last = date(year, 12, 31).toordinal() - self._base
        return hashlib.sha256(bytes(self._work[first:last + 1])).hexdigest()[:16]
