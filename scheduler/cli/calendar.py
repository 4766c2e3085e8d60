"""`duban calendar show|import`: the working-day calendar of a year."""

from __future__ import annotations

import click

from .base import _app, cli, format_option, now_option


@cli.group()
def calendar() -> None:
    """工作日日历：查看某年的放假与调休，导入新一年的放假安排。"""


@calendar.command("show")
@click.argument("year", type=click.IntRange(1950, 2200), metavar="年份")
@format_option
@now_option
def calendar_show(year: int, fmt: str, now: str | None) -> None:
    """逐月显示某年的放假日（休）和调休上班日（班），以及是官方安排还是暂定。"""
    from rules.calendar import WorkCalendar

    from ..calendar_import import render_year
    from ..output import print_json, say
    from ..store import load_calendar

    app = _app(now)
    if app.database_exists():
        with app.session() as s:
            cal = load_calendar(s)
    else:
        cal = WorkCalendar()
    if fmt == "json":
        off, worked = cal.year_table(year)
        print_json({"year": year, "official": not cal.is_provisional(year), "source": cal.year_source(year),
                    "holidays": [d.isoformat() for d in off], "workdays": [d.isoformat() for d in worked]})
        return
    say(render_year(cal, year))


@calendar.command("import")
@click.argument("file", metavar="文件")
@now_option
def calendar_import(file: str, now: str | None) -> None:
    """导入某一年的放假安排：国务院办公厅通知原文（.txt）或 YAML 文件。导入的年份优先于程序库，
    依赖它的未办结事项会重新计算截止日期，并通知负责人。

    全年安排须列出全部法定节日；只调整个别日期的通知（如调整劳动节、延长春节假期）只改它写明的日子。"""
    from rules.calendar import Amendment

    from ..calendar_import import changed_days, import_year, read_arrangement
    from ..output import say

    app = _app(now)
    arrangement, text = read_arrangement(file)
    with app.session() as s:
        result = import_year(s, arrangement, text, app.now, app.settings.tz, file)
    o = result.year
    if not result.changed:
        if isinstance(arrangement, Amendment):
            say(f"{o.year} 年的现有安排（{result.before.year_source(o.year)}）已包含“{arrangement.source}”的调整，未做更改。")
        else:
            say(f"{o.year} 年的安排与已导入的相同，未做更改。")
        return
    if isinstance(arrangement, Amendment):
        diff = changed_days(result.before, o)
        parts = [f"{label} {'、'.join(d.strftime('%-m月%-d日') for d in days)}" for label, days in diff.items() if days]
        say(f"已按“{arrangement.source}”调整 {o.year} 年放假安排，其余日期不变：{'；'.join(parts) or '无变化'}。")
    else:
        off = len(o.holidays)
        say(f"已导入 {o.year} 年放假安排（{o.source}）：放假 {off} 天，调休上班 {len(o.workdays)} 天"
            f"（{'、'.join(d.strftime('%-m月%-d日') for d in sorted(o.workdays)) or '无'}）。")
        if result.replaced_amended:
            say(f"注意：此前 {o.year} 年的安排（{result.replaced_amended}）含有调整通知，已被这份全年安排整体替换；"
                "如那份调整仍然有效，请再导入一次调整通知。")
    shifts = result.redated.shifts if result.redated else []
    if shifts:
        say(f"{len(shifts)} 项未办结事项的截止日期已调整，负责人会收到通知：")
        for sh in shifts:
            say(f"  {sh.key}：{sh.old_due} → {sh.new_due}")
    else:
        say("没有未办结事项的截止日期需要调整。")
    if result.redated and result.redated.unflagged:
        say(f"{result.redated.unflagged} 项事项的日期不变，不再是暂定日期。")
