"""The one place that reads the wall clock; everything else takes `now` as an argument."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from rules.errors import DubanError
from rules.model import YEARS

# A date given without a time means midday: after the usual reminder times, within office hours.
DATE_ONLY_TIME = time(12, 0)


def parse_now(text: str | None, tz: ZoneInfo) -> datetime:
    """`--now` (ISO date-time in local time, or a date) → an aware datetime; None → the wall clock."""
    if text is None:
        return datetime.now(tz)
    s = text.strip()
    try:
        if len(s) == 10:
            dt = datetime.combine(date.fromisoformat(s), DATE_ONLY_TIME, tz)
        else:
            dt = datetime.fromisoformat(s)
    except ValueError:
        raise DubanError(f"--now 的取值“{text}”无效，应写成 2026-12-14T09:00 或 2026-12-14") from None
    _sane(dt.date(), "--now")
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt.astimezone(tz)


FAR_AHEAD = timedelta(days=366)


def check_far_ahead(now: datetime, *, allowed: bool) -> None:
    """Refuse a `--now` more than a year ahead of the wall clock unless `allowed` (--force, or a test
    database): what a command writes then (occurrences, reminders) stays open once time returns."""
    if not allowed and now - datetime.now(now.tzinfo) > FAR_AHEAD:
        raise DubanError(f"--now {now:%Y-%m-%d} 比现在晚一年以上。用这样的时间执行写入数据的命令，会在数据库里生成远期的事项和提醒，"
                         "时间回到现在后它们会一直显示为“进行中”。如确需如此，请在命令名前加 --force，"
                         "例如 duban --force tick --now …；测试用的数据库请设置 DUBAN_TEST_MODE=1")


def parse_date(text: str, option: str) -> date:
    try:
        d = date.fromisoformat(text.strip())
    except ValueError:
        raise DubanError(f"{option} 的取值“{text}”不是有效日期，应写成 YYYY-MM-DD，例如 2026-12-15") from None
    return _sane(d, option)


def _sane(d: date, option: str) -> date:
    if not YEARS[0] <= d.year <= YEARS[1]:
        raise DubanError(f"{option} 的年份 {d.year} 不合理（应在 {YEARS[0]}–{YEARS[1]} 年之间）")
    return d
