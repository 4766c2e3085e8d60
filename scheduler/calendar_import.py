"""Importing a year's official arrangement, and showing a year month by month."""

from __future__ import annotations

import calendar as stdcal
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.orm import Session

from rules.calendar import WorkCalendar, YearOverride
from rules.errors import RuleFileError
from rules.yamlfile import read_text

from .models import CalendarYearRow, RuleChangeRow
from .redate import Redated, redate_open, refresh_fingerprints
from .state import bump_config

CALENDAR_RULE_ID = ""  # audit rows about the calendar itself belong to no rule


def read_arrangement(path: str) -> tuple[YearOverride, str]:
    """The State Council notice as published (.txt) or the YAML form; returns (year, source text)."""
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


@dataclass
class Imported:
    changed: bool
    redated: Redated | None


def import_year(s: Session, o: YearOverride, text: str, now: datetime, tz) -> Imported:
    """Store the year (it then wins over the library) and re-date what depends on it. Idempotent."""
    row = s.get(CalendarYearRow, o.year)
    holidays = sorted(d.isoformat() for d in o.holidays)
    workdays = sorted(d.isoformat() for d in o.workdays)
    if row is not None and row.holidays == holidays and row.workdays == workdays:
        return Imported(False, None)
    row = row or CalendarYearRow(year=o.year)
    row.source, row.holidays, row.workdays, row.text, row.imported_at = o.source, holidays, workdays, text, now
    s.add(row)
    s.add(RuleChangeRow(at=now, rule_id=CALENDAR_RULE_ID, action="calendar-import", before=None,
                        after={"year": o.year, "source": o.source, "holidays": len(holidays), "workdays": workdays},
                        origin=o.source))
    s.flush()
    bump_config(s)
    redated = redate_open(s, now, tz, f"导入 {o.year} 年放假安排（{o.source}）", {o.year})
    refresh_fingerprints(s, now, tz)
    return Imported(True, redated)


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
