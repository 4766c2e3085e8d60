"""`duban rules …` and `duban preview`: rule files in, rules out, due dates ahead."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click

from rules.errors import DubanError

from .base import _app, cli, format_option, now_option


@cli.group()
def rules() -> None:
    """管理规则：导入、添加、查看、导出、停用、启用。"""


def _parse_files(app, paths: list[str], session=None):
    from rules.errors import RuleFileError
    from rules.loader import RuleSet, load_rule_file

    from ..store import load_people_groups

    people, groups = load_people_groups(session, app.org) if session is not None else ({}, {})
    merged = RuleSet()
    seen: dict[str, str] = {}
    for path in paths:
        rs = load_rule_file(path, known_people=people, known_groups=groups)
        for r in rs.rules:
            if r.id in seen:
                raise RuleFileError(f"规则 id“{r.id}”在 {seen[r.id]} 中已出现，多个文件里的 id 也必须唯一", file=path, key="id")
            seen[r.id] = path
        people, groups = rs.people, rs.groups
        merged.rules.extend(rs.rules)
        merged.warnings.extend(rs.warnings)
        merged.timezone = rs.timezone
    merged.people, merged.groups = dict(people), dict(groups)
    from ..output import warn

    for w in merged.warnings:
        warn(f"注意：{w}")
    return merged


def _import_files(app, paths: list[str], origin: str | None = None):
    from ..redate import replan_rules
    from ..store import import_ruleset

    with app.session() as s:
        rs = _parse_files(app, paths, s)
        summary = import_ruleset(s, rs, now=app.now, origin=origin or "、".join(paths), org=app.org)
        if summary.updated:  # open occurrences follow the edited rules
            replan_rules(s, app.org, summary.updated, app.now, app.settings.tz, origin or "、".join(paths))
        return summary


@rules.command("import")
@click.argument("files", nargs=-1, required=True, metavar="文件...")
@now_option
def rules_import(files: tuple[str, ...], now: str | None) -> None:
    """校验后导入规则文件（按 id 新增或更新），全部成功才生效。"""
    from ..output import say

    app = _app(now)
    summary = _import_files(app, list(files))
    say(f"导入完成：新增 {len(summary.added)} 条，更新 {len(summary.updated)} 条，未变 {len(summary.unchanged)} 条规则；"
        f"人员 {summary.people} 位，组 {summary.groups} 个。")
    for rid in summary.added:
        say(f"  + {rid}")
    for rid in summary.updated:
        say(f"  ~ {rid}")


def _due_option(text: str) -> dict[str, Any]:
    """`--due 15`, `--due last`, `--due fri`, `--due weekday=fri,nth=1`, `--due month=1,day=31`."""
    t = text.strip()
    if "=" not in t:
        if t.isdigit():
            return {"day": int(t)}
        if t == "last":
            return {"day": "last"}
        return {"weekday": t}
    out: dict[str, Any] = {}
    for part in t.split(","):
        if "=" not in part:
            raise DubanError(f"--due 的“{part}”无效，应写成 键=值，例如 --due weekday=fri,nth=1")
        k, v = (x.strip() for x in part.split("=", 1))
        out[k] = int(v) if v.lstrip("-").isdigit() else v
    return out


@rules.command("add")
@click.option("--id", "rule_id", required=True, help="规则 id：小写字母、数字和连字符，如 party-day。")
@click.option("--title", required=True, help="中文名称，如 主题党日。")
@click.option("--every", type=click.Choice(["week", "month", "quarter", "half-year", "year"]), help="周期。")
@click.option("--due", help="截止日：15、last、fri、weekday=fri,nth=1、month=1,day=31、workday=-1。")
@click.option("--event", help="事件类型（事件触发的规则），如 study-session。")
@click.option("--offset", help="相对事件日期的偏移，如 -3d、+3wd。")
@click.option("--window", help="一次性时段：开始..结束，如 2025-08-28..2025-10-28。")
@click.option("--quota", type=int, help="每期需完成的次数（默认 1）。")
@click.option("--owner", help="负责人（人员或组的 id），默认 DUBAN_DIGEST_TO。")
@click.option("--escalate-to", "escalate_to", multiple=True, help="逾期督办对象（可多次）。")
@click.option("--for-each", "for_each", help="按组成员逐一生成（组 id）。")
@click.option("--remind", help="提醒偏移，逗号分隔，如 -3d,-1d,0d。")
@click.option("--at", "at_", help="提醒时间，如 09:00。")
@click.option("--if-holiday", "if_holiday", type=click.Choice(["keep", "previous-workday", "next-workday"]),
              help="截止日遇节假日如何处理。")
@click.option("--source", help="出处，如 二(三)8。")
@click.option("--start", help="首个周期的开始日期（默认今天）。")
@now_option
def rules_add(rule_id, title, every, due, event, offset, window, quota, owner, escalate_to, for_each, remind, at_,
              if_holiday, source, start, now) -> None:
    """临时添加一条规则（与规则文件同样校验）。"""
    from rules.loader import RuleContext, compile_rule

    from ..output import say
    from ..store import RuleSet, import_ruleset, load_people_groups, rule_rows

    app = _app(now)
    raw: dict[str, Any] = {"id": rule_id, "title": title}
    for k, v in (("every", every), ("event", event), ("offset", offset), ("quota", quota), ("for_each", for_each),
                 ("at", at_), ("if_holiday", if_holiday), ("source", source), ("start", start)):
        if v is not None:
            raw[k] = v
    if due:
        raw["due"] = _due_option(due)
    if window:
        a, sep, b = window.partition("..")
        if not sep:
            raise DubanError("--window 应写成 开始..结束，如 2025-08-28..2025-10-28")
        raw["window"] = {"from": a.strip(), "to": b.strip()}
    if remind:
        raw["remind"] = [x.strip() for x in remind.split(",") if x.strip()]
    if escalate_to:
        raw["escalate_to"] = list(escalate_to)
    if not for_each:
        raw["owner"] = owner or app.settings.digest_to
    elif owner:
        raw["owner"] = owner
    with app.session() as s:
        if rule_id in rule_rows(s, app.org):
            raise DubanError(f"规则“{rule_id}”已存在。修改已有规则请编辑规则文件后用 duban rules import 导入")
        people, groups = load_people_groups(s, app.org)
        rule = compile_rule(raw, RuleContext(people, groups, timezone=app.settings.timezone), filename="命令行参数")
        import_ruleset(s, RuleSet(rules=[rule]), now=app.now, origin="命令行 rules add", org=app.org)
    say(f"已添加规则 {rule.id}：{rule.title}（{rule.schedule_text()}）")


@rules.command("list")
@format_option
@now_option
def rules_list(fmt: str, now: str | None) -> None:
    """列出全部规则。"""
    from ..output import print_json, print_table
    from ..store import load_ruleset

    app = _app(now)
    with app.session() as s:
        rs = load_ruleset(s, app.org)
    if fmt == "json":
        print_json([{"id": r.id, "title": r.title, "enabled": r.enabled, "source": r.source, "owner": r.owner,
                     "for_each": r.for_each, "schedule": r.schedule_text(), "quota": r.quota} for r in rs.rules])
        return
    rows = [(r.id, r.title, r.schedule_text(), _who(rs, r.for_each or r.owner), r.quota, r.source or "",
             "启用" if r.enabled else "已停用") for r in rs.rules]
    print_table(f"规则（共 {len(rows)} 条）", ["id", "名称", "安排", "负责人", "次数", "出处", "状态"], rows,
                empty="还没有规则。用 duban rules import 文件 导入，或 duban rules add 添加。")


def _who(rs, ref: str | None) -> str:
    if ref is None:
        return ""
    if ref in rs.groups:
        return f"{ref}（组）"
    p = rs.people.get(ref)
    return p.name if p else ref


@rules.command("show")
@click.argument("rule_id", metavar="ID")
@format_option
@now_option
def rules_show(rule_id: str, fmt: str, now: str | None) -> None:
    """显示一条规则的完整定义和接下来的到期日。"""
    import yaml

    from rules.planner import Planner

    from ..output import print_json, say
    from ..store import load_calendar, load_events, load_ruleset, rule_of

    app = _app(now)
    with app.session() as s:
        rule = rule_of(s, rule_id, app.org)
        rs, cal, events = load_ruleset(s, app.org), load_calendar(s), load_events(s, app.settings.tz, app.org)
    today = app.now.date()
    upcoming = Planner(cal, rs.groups).plan([rule], today, today + timedelta(days=400), events)[:6]
    if fmt == "json":
        print_json({**rule.to_dict(), "enabled": rule.enabled, "upcoming": [_occ_json(o, rule) for o in upcoming]})
        return
    say(f"规则 {rule.id}：{rule.title}（{'启用' if rule.enabled else '已停用'}）")
    say(f"安排：{rule.schedule_text()}")
    say(yaml.safe_dump(rule.to_dict(), allow_unicode=True, sort_keys=False).rstrip())
    say("接下来的到期日：" + ("无" if not upcoming else ""))
    for o in upcoming:
        say(f"  {o.key}  截止 {o.due}{'（暂定）' if o.provisional else ''}")


@rules.command("export")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="写入文件（默认输出到屏幕）。")
@now_option
def rules_export(out: str | None, now: str | None) -> None:
    """导出全部规则、人员和组为规则文件（可原样重新导入）。"""
    import os

    import yaml

    from ..output import say
    from ..store import export_document

    app = _app(now)
    with app.session() as s:
        doc = export_document(s, app.org)
    header = f"# duban 规则导出，{app.now:%Y-%m-%d %H:%M}。可用 duban rules import 原样导入。\n"
    text = header + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120)
    if out:
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # names and contacts: owner only
            os.fchmod(fd, 0o600)  # also when the file existed with wider permissions
            with open(fd, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise DubanError(f"无法写入 {out}（{e.strerror}）：请检查目录是否存在、是否有写权限") from None
        say(f"已导出 {len(doc['rules'])} 条规则到 {out}")
    else:
        sys.stdout.write(text)


def _toggle(rule_id: str, now: str | None, enabled: bool) -> None:
    from ..output import say
    from ..store import set_enabled

    app = _app(now)
    with app.session() as s:
        changed = set_enabled(s, rule_id, enabled, now=app.now, org=app.org)
    word = "启用" if enabled else "停用"
    say(f"已{word}规则 {rule_id}。" if changed else f"规则 {rule_id} 本来就是{word}状态，未做更改。")


@rules.command("disable")
@click.argument("rule_id", metavar="ID")
@now_option
def rules_disable(rule_id: str, now: str | None) -> None:
    """停用一条规则（不再生成新的到期事项和提醒）。"""
    _toggle(rule_id, now, False)


@rules.command("enable")
@click.argument("rule_id", metavar="ID")
@now_option
def rules_enable(rule_id: str, now: str | None) -> None:
    """重新启用一条规则。"""
    _toggle(rule_id, now, True)


# --- preview ---------------------------------------------------------------------------------
_REMINDER_TEXT: dict[tuple, list[str]] = {}


def _occ_json(o, rule) -> dict[str, Any]:
    k = (o.reminder_days, o.at)
    reminders = _REMINDER_TEXT.get(k)
    if reminders is None:  # many occurrences share their reminder days: format them once
        reminders = _REMINDER_TEXT[k] = [f"{d.isoformat()}T{o.at}:00" for d in o.reminder_days]
    return {"rule": o.rule, "key": o.key, "title": rule.title if rule else None, "period": o.period,
            "opens": o.opens.isoformat(), "due": o.due.isoformat(), "quota": o.quota, "owner": o.owner,
            "provisional": o.provisional, "reminders": reminders, "event": o.event_id}


@cli.command()
@click.option("--rules", "rules_file", metavar="文件", help="预览这个规则文件（不导入），而不是数据库中的规则。")
@click.option("--rule", "rule_ids", multiple=True, metavar="ID", help="只看这条规则（可多次）。")
@click.option("--from", "from_", metavar="日期", help="起始日期（含），默认今天。")
@click.option("--to", "to", metavar="日期", help="结束日期（含），默认起始日期后 90 天。")
@click.option("--event", "events", multiple=True, metavar="类型:日期",
              help="假设的事件，如 study-session:2026-12-10（可多次）。")
@click.option("--calendar", "calendar_files", multiple=True, metavar="文件", help="附加的年度节假日安排文件（YAML）。")
@format_option
@now_option
def preview(rules_file, rule_ids, from_, to, events, calendar_files, fmt, now) -> None:
    """预览规则在某段时间内的到期事项（截止日、提醒时间），不做任何更改。

    列出截止日落在 --from 与 --to 之间的事项。"""
    from rules.calendar import WorkCalendar
    from rules.planner import Event, Planner

    from ..calendar_import import read_arrangement
    from ..clock import parse_date
    from ..output import print_json, print_table, reminder_text
    from ..store import load_calendar, load_events, load_ruleset

    app = _app(now)
    first = parse_date(from_, "--from") if from_ else app.now.date()
    last = parse_date(to, "--to") if to else first + timedelta(days=90)
    if last < first:
        raise DubanError(f"--to（{last}）早于 --from（{first}）")
    hypothetical = []
    for i, text in enumerate(events, 1):
        etype, sep, day = text.partition(":")
        if not sep or not etype.strip():
            raise DubanError(f"--event 的“{text}”无效，应写成 类型:日期，如 study-session:2026-12-10")
        hypothetical.append(Event(f"h{i}", etype.strip(), parse_date(day, "--event")))

    use_db = app.database_exists() if rules_file else True
    cal, stored_events = WorkCalendar(), []
    if use_db:
        with app.session() as s:
            rs = _parse_files(app, [rules_file], s) if rules_file else load_ruleset(s, app.org, only_enabled=True)
            cal = load_calendar(s)
            stored_events = [] if rules_file else load_events(s, app.settings.tz, app.org)
    else:
        rs = _parse_files(app, [rules_file])
    if calendar_files:
        from ..calendar_import import apply_arrangement

        for path in calendar_files:
            arrangement, _text = read_arrangement(path)
            o = apply_arrangement(cal, arrangement, path)  # an amendment changes the year as it stands
            cal = WorkCalendar([*(x for y, x in cal.overrides.items() if y != o.year), o])
    chosen = rs.rules
    if rule_ids:
        known = {r.id for r in rs.rules}
        missing = [r for r in rule_ids if r not in known]
        if missing:
            raise DubanError(f"没有 id 为“{'、'.join(missing)}”的规则")
        chosen = [r for r in rs.rules if r.id in rule_ids]
    occs = Planner(cal, rs.groups).plan(chosen, first, last, [*stored_events, *hypothetical])
    by_id = {r.id: r for r in chosen}
    if fmt == "json":
        print_json([_occ_json(o, by_id.get(o.rule)) for o in occs])
        return
    rows = [(o.due.isoformat() + ("（暂定）" if o.provisional else ""), o.key, by_id[o.rule].title,
             _who(rs, o.owner), o.quota, reminder_text(o.reminders)) for o in occs]
    print_table(f"{first} 至 {last} 到期的事项（共 {len(rows)} 项）", ["截止日", "事项", "名称", "负责人", "次数", "提醒"],
                rows, empty=f"{first} 至 {last} 没有到期的事项。")
    if any(o.provisional for o in occs):
        from ..output import say

        say("注：标“暂定”的日期所在年份尚无国务院办公厅的放假安排，按法定节假日推算；安排公布后用 duban calendar import 导入。")
