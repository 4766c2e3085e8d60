"""`duban event add`, `done`, `waive`, `status`: what happens to duties."""

from __future__ import annotations

from datetime import timedelta

import click

from rules.errors import DubanError

from .base import _app, _option_text, cli, format_option, now_option
from .rules import _who


@cli.group()
def event() -> None:
    """登记事件（学习、会议、收到文件……），事件触发的规则据此产生待办。"""


@event.command("add")
@click.argument("etype", metavar="类型")
@click.option("--date", "day", required=True, metavar="日期", help="事件日期，如 2026-12-10。")
@click.option("--title", help="说明，如 “中心组第3次学习”。")
@now_option
def event_add(etype: str, day: str, title: str | None, now: str | None) -> None:
    """登记一个事件，并显示它产生的待办事项。"""
    from rules.model import ID_RE, TITLE_MAX
    from rules.planner import Event, Planner

    from ..clock import parse_date
    from ..models import EventRow
    from ..output import say, warn
    from ..state import bump_config
    from ..store import load_calendar, load_ruleset

    app = _app(now)
    if not ID_RE.match(etype):
        raise DubanError(f"事件类型“{etype}”无效：只能用小写英文字母、数字和连字符，例如 study-session")
    d = parse_date(day, "--date")
    title = _option_text(title, "--title", TITLE_MAX)
    with app.session() as s:
        rs = load_ruleset(s, app.org, only_enabled=True)
        used = sorted({r.event for r in rs.rules if r.event})
        row = EventRow(org=app.org, type=etype, date=d, title=title, recorded_at=app.now)
        s.add(row)
        s.flush()
        bump_config(s, app.org)
        occs = Planner(load_calendar(s), rs.groups).plan([r for r in rs.rules if r.event == etype],
                                                          d - timedelta(days=400), d + timedelta(days=400),
                                                          [Event(row.id, etype, d, title)])
        event_id = row.id
    say(f"已登记事件 {event_id}：{etype} {d}{'（' + title + '）' if title else ''}")
    if etype not in used:
        warn(f"注意：没有启用的规则使用事件类型“{etype}”，这个事件不会产生待办。已使用的类型：{'、'.join(used) or '无'}")
    for o in occs:
        say(f"  待办 {o.key}：截止 {o.due}{'（暂定）' if o.provisional else ''}")


@cli.command()
@click.argument("key", metavar="事项编号")
@click.option("--by", help="完成人。")
@click.option("--note", help="完成情况说明。")
@click.option("--evidence", help="佐证材料的说明（文件编号、链接、存放位置）。")
@click.option("--file", "files", multiple=True, metavar="文件",
              help="上传佐证材料文件（可多次）：文档、表格、演示文稿、图片、PDF、文本或 zip，"
                   "每个不超过 DUBAN_EVIDENCE_MAX_MB（默认 20 MB）。")
@now_option
def done(key: str, by: str | None, note: str | None, evidence: str | None, files: tuple[str, ...],
         now: str | None) -> None:
    """登记一次完成（需完成多次的事项按次计数）。

    \b
    例：duban done party-day@2026-12 --by secretary --note "已召开" --file 会议记录.pdf --file 签到表.jpg"""
    from rules.model import EVIDENCE_MAX, NAME_MAX, NOTE_MAX

    from ..actions import complete
    from ..evidence import attach_evidence, data_dir, human_size, max_bytes, store_local_files
    from ..output import say

    by, note = _option_text(by, "--by", NAME_MAX), _option_text(note, "--note", NOTE_MAX, multiline=True)
    evidence = _option_text(evidence, "--evidence", EVIDENCE_MAX)
    app = _app(now)
    stored = []
    if files:  # kept before the transaction: a refused file changes nothing in the database
        stored = store_local_files(data_dir(app.settings), files, max_bytes(app.settings))
    with app.session() as s:
        done = complete(s, key, now=app.now, by=by, note=note, evidence=evidence, org=app.org, via="cli")
        if stored:
            attach_evidence(s, org=app.org, occurrence_key=key, completion_id=done.completion_id,
                            files=stored, by=by, now=app.now)
        occ = done.occurrence
        count, quota, state = occ.done_count, occ.quota, occ.state
    if state == "done" and count == quota:
        say(f"已登记完成：{key}（{count}/{quota}），该事项已办结，不再提醒。")
    elif state == "done":
        say(f"已登记完成：{key}（{count}/{quota}，已超过要求次数）。")
    else:
        say(f"已登记完成：{key}（{count}/{quota}），还需完成 {quota - count} 次。")
    for f in stored:
        say(f"  佐证材料：{f.filename}（{human_size(f.size)}，SHA-256 {f.sha256[:12]}…）")


@cli.command()
@click.argument("key", metavar="事项编号")
@click.option("--reason", required=True, help="免办理由（必填，记入台账）。")
@click.option("--by", help="决定人。")
@now_option
def waive(key: str, reason: str, by: str | None, now: str | None) -> None:
    """免办一个事项（不做也关闭），理由记入台账。"""
    from rules.model import NAME_MAX, NOTE_MAX

    from ..actions import waive as waive_occurrence
    from ..output import say

    reason = _option_text(reason, "--reason", NOTE_MAX, multiline=True)
    by = _option_text(by, "--by", NAME_MAX)
    app = _app(now)
    with app.session() as s:
        waive_occurrence(s, key, now=app.now, reason=reason, by=by, org=app.org, via="cli")
    say(f"已免办：{key}。理由：{reason.strip()}")


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="同时列出最近 30 天内办结的事项。")
@format_option
@now_option
def status(show_all: bool, fmt: str, now: str | None) -> None:
    """进行中的事项：已逾期、即将到期（7 天内）、进行中，以及完成进度。"""
    from ..materialize import Materializer
    from ..occurrences import STATE_NAMES, status_rows
    from ..output import print_json, print_table
    from ..store import load_people_groups

    app = _app(now)
    with app.session() as s:
        Materializer(s, app.now, app.settings.tz, app.settings.digest_to).run()
        rows = status_rows(s, app.now, org=app.org)
        people, groups = load_people_groups(s, app.org)
    if fmt == "json":
        print_json(rows)
        return
    if not show_all:
        rows = [r for r in rows if r["state"] not in ("done", "waived")]
    from rules.loader import RuleSet

    rs = RuleSet(people=people, groups=groups)
    table = []
    for r in rows:
        note = f"逾期 {r['days_overdue']} 天" if r["state"] == "overdue" else ""
        if r["escalated"]:
            note += "，已督办"
        table.append((STATE_NAMES[r["state"]], r["key"], r["title"], _who(rs, r["owner"]),
                      r["due"] + ("（暂定）" if r["provisional"] else ""), f"{r['done_count']}/{r['quota']}", note))
    print_table(f"{app.now:%Y-%m-%d} 督办事项（共 {len(table)} 项）", ["状态", "事项", "名称", "负责人", "截止日", "进度", "备注"],
                table, empty="没有进行中的事项。")
