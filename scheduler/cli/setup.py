"""`duban init`: create or upgrade the database, load the bundled pack."""

from __future__ import annotations

import click

from .base import _app, cli, now_option
from .rules import _import_files


@cli.command()
@click.option("--no-pack", is_flag=True, help="新数据库不载入内置规则包。")
@now_option
def init(no_pack: bool, now: str | None) -> None:
    """创建或升级数据库；新数据库会载入内置规则包。"""
    from ..db import upgrade
    from ..output import say

    app = _app(now)
    before, after = upgrade(app.engine)
    if before is not None:  # an upgrade may bring a `holidays` release that knows a new year
        from ..db import session_scope
        from ..redate import check_library_calendar

        with session_scope(app.engine) as s:
            redated = check_library_calendar(s, app.now, app.settings.tz)
        if redated and redated.shifts:
            say(f"工作日日历已更新：{len(redated.shifts)} 项未办结事项的截止日期已调整，负责人会收到通知。")
    if before is None:
        say(f"已创建数据库（结构版本 {after}）：{_safe_url(app.settings.database_url)}")
    elif before != after:
        say(f"已升级数据库结构：{before} → {after}，数据保留不变。")
    else:
        say(f"数据库已是最新结构（版本 {after}），无需升级。")
    if before is None and not no_pack:
        from ..packs import bundled_pack_paths

        summary = _import_files(app, bundled_pack_paths(), origin="内置规则包")
        say(f"已载入内置规则包：{len(summary.added)} 条规则。人员信息是占位符，请编辑后用 duban rules import 重新导入。")


def _safe_url(url: str) -> str:
    from ..db import safe_url

    return safe_url(url)
