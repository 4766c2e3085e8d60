"""`duban ledger export`, `history`, `backup`: the record for the inspection."""

from __future__ import annotations

import click

from rules.errors import DubanError

from .base import _app, cli, format_option, now_option


@cli.group()
def ledger() -> None:
    """台账：导出全部事项、完成记录、发送记录和规则变更。"""


@ledger.command("export")
@click.option("--out", "out", required=True, metavar="文件",
              help="写入的文件：.xlsx（Excel 工作簿：台账、规则变更、发送记录、佐证材料四张表）、.csv（只含台账表）"
                   "或 .zip（工作簿加全部佐证材料文件，供检查使用）。")
@click.option("--from", "from_", metavar="日期", help="只导出截止日不早于这天的事项（含）。")
@click.option("--to", "to", metavar="日期", help="只导出截止日不晚于这天的事项（含）。")
@click.option("--rule", "rule_ids", multiple=True, metavar="ID", help="只导出这条规则的事项（可多次）。")
@now_option
def ledger_export(out: str, from_: str | None, to: str | None, rule_ids: tuple[str, ...], now: str | None) -> None:
    """导出台账：每个事项一行，含负责人、截止日、状态、完成记录、已发消息和免办理由。

    \b
    例：duban ledger export --out 台账.xlsx
        duban ledger export --out 十二月.csv --from 2026-12-01 --to 2026-12-31
        duban ledger export --out 党日.xlsx --rule party-day
        duban ledger export --out 台账.zip           工作簿加佐证材料文件"""
    from ..clock import parse_date
    from ..ledger import LedgerFilter, export_ledger, ledger_format
    from ..materialize import Materializer
    from ..output import say, warn

    ledger_format(out)
    app = _app(now)
    first = parse_date(from_, "--from") if from_ else None
    last = parse_date(to, "--to") if to else None
    if first and last and last < first:
        raise DubanError(f"--to（{last}）早于 --from（{first}）")
    flt = LedgerFilter(first, last, tuple(dict.fromkeys(rule_ids)), app.org)
    data = None
    if ledger_format(out) == "zip":
        from ..evidence import data_dir

        data = data_dir(app.settings)
    with app.session() as s:
        Materializer(s, app.now, app.settings.tz, app.settings.digest_to).run()
    with app.session() as s:
        result = export_ledger(s, out, now=app.now, tz=app.settings.tz, flt=flt, data=data)
    if data is None:
        say(f"已导出台账：{result.occurrences} 项事项 → {out}")
        return
    say(f"已导出台账：{result.occurrences} 项事项、佐证材料 {result.files} 个 → {out}")
    if result.missing:
        warn(f"注意：{result.missing} 个佐证材料在服务器上找不到（{data}），已在压缩包的 说明.txt 中列出")


@cli.command()
@click.argument("rule_id", required=False, metavar="[规则]")
@format_option
@now_option
def history(rule_id: str | None, fmt: str, now: str | None) -> None:
    """变更记录：规则的新增、修改、停用、启用，放假安排的导入和截止日调整，按时间先后。

    给出规则 id 时只看这条规则。"""
    from ..ledger import ACTION_NAMES, audit_entries
    from ..models import RuleRow
    from ..output import print_json, print_table

    app = _app(now)
    tz = app.settings.tz
    with app.session() as s:
        entries = audit_entries(s, [rule_id] if rule_id else [], app.org)
        if rule_id and not entries and s.get(RuleRow, (app.org, rule_id)) is None:
            raise DubanError(f"没有 id 为“{rule_id}”的规则，也没有它的变更记录。用 duban rules list 查看全部规则")
    if fmt == "json":
        print_json([{"at": e["at"].astimezone(tz).isoformat(), "rule": e["rule"] or None, "action": e["action"],
                     "before": e["before"], "after": e["after"], "origin": e["origin"], "summary": e["summary"]}
                    for e in entries])
        return
    rows = [(f"{e['at'].astimezone(tz):%Y-%m-%d %H:%M}", e["rule"] or "（日历）", ACTION_NAMES.get(e["action"], e["action"]),
             e["summary"], e["origin"] or "") for e in entries]
    title = f"规则 {rule_id} 的变更记录" if rule_id else "变更记录"
    print_table(f"{title}（共 {len(rows)} 条）", ["时间", "规则", "操作", "变更内容", "来源"], rows,
                empty=f"{title}：暂无。")


@cli.command()
@click.option("--out", required=True, metavar="文件", help="备份写到这个文件（不能已存在）。")
@now_option
def backup(out: str, now: str | None) -> None:
    """备份 SQLite 数据库（服务运行时也可以安全备份）。PostgreSQL 请用 pg_dump。"""
    from ..db import backup_sqlite, require_schema
    from ..output import say

    app = _app(now)
    if not app.settings.database_url.startswith("sqlite"):
        raise DubanError("PostgreSQL 数据库请用 pg_dump 备份，例如：pg_dump -Fc -d 库名 -f duban.dump；"
                         "恢复：pg_restore -d 库名 duban.dump")
    require_schema(app.engine)
    size = backup_sqlite(app.engine, out)
    say(f"已备份到 {out}（{size / 1024:.0f} KB）。恢复：停止服务，用它替换 DUBAN_DATABASE_URL 指向的文件，再启动。")
