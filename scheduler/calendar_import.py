"""Importing a year's official arrangement, and showing a year month by month."""

from __future__ import annotations

import calendar as stdcal
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.orm import Session

from rules.calendar import Amendment, WorkCalendar, YearOverride, amend
from rules.errors import RuleFileError
from rules.yamlfile import read_text

from .models import CalendarYearRow, RuleChangeRow
from .redate import Redated, redate_open, refresh_fingerprints
from .state import bump_config

CALENDAR_RULE_ID = ""  # audit rows about the calendar itself belong to no rule


def read_arrangement(path: str) -> tuple[YearOverride | Amendment, str]:
    """The State Council notice as published (.txt) or the YAML form; returns (year, source text).

    A special notice that changes only some days comes back as an `Amendment`: apply it to the year
    as it stands (`apply_arrangement`)."""
    text = read_text(path)
    from rules.notice import looks_like_notice, parse_notice

    if looks_like_notice(text):
        return parse_notice(text, path), text
    from rules.calendar_file import parse_calendar_text

    try:
        return parse_calendar_text(text, path), text
    except RuleFileError as e:
        if e.line is None or "YAML" in e.reason:
            raise RuleFileError("既不是国务院办公厅放假安排通知的原文，也不是日历 YAML 文件（year、holidays、workdays）",
                                file=path) from None
        raise


def apply_arrangement(cal: WorkCalendar, arrangement: YearOverride | Amendment, path: str) -> YearOverride:
    """The year to store: a whole year's arrangement as it is; an amendment applied to the year as `cal`
    has it (imported before, or the library's)."""
    if isinstance(arrangement, Amendment):
        return amend(cal, arrangement, path)
    return arrangement


@dataclass
class Imported:
    changed: bool
    redated: Redated | None
    year: YearOverride | None = None  # what was stored
    before: WorkCalendar | None = None  # the calendar before the import
    replaced_amended: str | None = None  # the source of an amended year that a whole year's notice replaced


def import_year(s: Session, arrangement: YearOverride | Amendment, text: str, now: datetime, tz,
                path: str = "") -> Imported:
    """Store the year (it then wins over the library) and re-date what depends on it. Idempotent.

    An amendment changes only the days it names: it is applied to the year as it stands and the
    result is stored as the year, with both sources and both texts."""
    from .store import load_calendar

    before = load_calendar(s)
    o = apply_arrangement(before, arrangement, path)
    row = s.get(CalendarYearRow, o.year)
    holidays = sorted(d.isoformat() for d in o.holidays)
    workdays = sorted(d.isoformat() for d in o.workdays)
    if row is not None and row.holidays == holidays and row.workdays == workdays:
        return Imported(False, None, o, before)
    if row is None and isinstance(arrangement, Amendment) and before.fingerprint(o.year) == \
            WorkCalendar([*before.overrides.values(), o]).fingerprint(o.year):
        return Imported(False, None, o, before)  # the library already has this notice's days
    amended = isinstance(arrangement, Amendment)
    replaced = row.source if row is not None and not amended and "；" in row.source else None
    if amended and row is not None and row.text:
        text = f"{row.text.rstrip()}\n\n{text}"
    row = row or CalendarYearRow(year=o.year)
    row.source, row.holidays, row.workdays, row.text, row.imported_at = o.source, holidays, workdays, text, now
    s.add(row)
    after = {"year": o.year, "source": o.source, "holidays": len(holidays), "workdays": workdays}
    if amended:
        after["amendment"] = arrangement.source
    s.add(RuleChangeRow(at=now, rule_id=CALENDAR_RULE_ID, action="calendar-import", before=None,
                        after=after, origin=arrangement.source))
    s.flush()
    bump_config(s)
    redated = redate_open(s, now, tz, f"导入 {o.year} 年放假安排（{arrangement.source}）", {o.year})
    refresh_fingerprints(s, now, tz)
    return Imported(True, redated, o, before, replaced)


def changed_days(before: WorkCalendar, after: YearOverride) -> dict[str, list[date]]:
    """What importing `after` changed in its year, day by day: now off, now an adjusted working
    weekend, back to normal (a weekday worked again, or a weekend rested again)."""
    cal = WorkCalendar([*(o for y, o in before.overrides.items() if y != after.year), after])
    out: dict[str, list[date]] = {"放假": [], "调休上班": [], "恢复正常": []}
    d = date(after.year, 1, 1)
    while d.year == after.year:
        was, now_ = before.is_workday(d), cal.is_workday(d)
        if was and not now_:
            out["放假" if d.weekday() < 5 or d in after.holidays else "恢复正常"].append(d)
        elif now_ and not was:
            out["调休上班" if d.weekday() >= 5 else "恢复正常"].append(d)
        d = date.fromordinal(d.toordinal() + 1)
    return out


def render_year(cal: WorkCalendar, year: int) -> str:
    """A readable month-by-month view: 休 marks a day off, 班 an adjusted working weekend."""
    off, worked = cal.year_table(year)
    off_s, worked_s = set(off), set(worked)
    lines = [f"{year} 年工作日日历 —— {'官方安排' if not cal.is_provisional(year) else '暂定（尚无官方安排）'}，"
             f"来源：{cal.year_source(year)}", "（休＝放假，班＝调休上班）", ""]
    heads = "一  二  三  四  五  六  日"
    for row_start in range(1, 13, 3):
        months = range(row_start, row_start + 3)
        lines.append("".join(f"{m:>2} 月{'':<25}" for m in months).rstrip())
        lines.append("".join(f"{heads:<29}" for _ in months).rstrip())
        weeks = [stdcal.Calendar().monthdatescalendar(year, m) for m in months]
        for w in range(max(len(x) for x in weeks)):
            cells = []
            for mi, m in enumerate(months):
                if w >= len(weeks[mi]):
                    cells.append(" " * 29)
                    continue
                txt = ""
                for d in weeks[mi][w]:
                    if d.month != m:
                        txt += "    "
                    elif d in off_s:
                        txt += "休  "
                    elif d in worked_s:
                        txt += "班  "
                    else:
                        txt += f"{d.day:>2}  "
                cells.append(f"{txt:<29}")
            lines.append("".join(cells).rstrip())
        lines.append("")
    lines.append("放假：" + ("、".join(_ranges(off)) or "无"))
    lines.append("调休上班：" + ("、".join(d.strftime("%-m月%-d日") for d in worked) or "无"))
    return "\n".join(lines)


def _ranges(days: list[date]) -> list[str]:
    out: list[str] = []
    start = prev = None
    for d in days + [None]:
        if d is not None and prev is not None and (d - prev).days == 1:
            prev = d
            continue
        if start is not None:
            out.append(start.strftime("%-m月%-d日") + ("" if start == prev else "至" + prev.strftime("%-m月%-d日")))
        start = prev = d
    return out
