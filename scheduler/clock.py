"""The one place that reads the wall clock; everything else takes `now` as an argument."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from rules.errors import DubanError

# A date given without a time means midday: after the usual reminder times, within office hours.
DATE_ONLY_TIME = time(12, 0)


def parse_now(text: str | None, tz: ZoneInfo) -> datetime:
    """`--now` (ISO date-time in local time, or a date) → an aware datetime; None → the wall clock."""
    if text is None:
        return datetime.now(tz)
    s = text.strip()
    try:
        if len(s) == 10:
            return datetime.combine(date.fromisoformat(s), DATE_ONLY_TIME, tz)
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise DubanError(f"--now 的取值“{text}”无效，应写成 2026-12-14T09:00 或 2026-12-14") from None
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt.astimezone(tz)


def parse_date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise DubanError(f"{option} 的取值“{text}”不是有效日期，应写成 YYYY-MM-DD，例如 2026-12-15") from None
