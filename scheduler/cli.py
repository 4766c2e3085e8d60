"""The `duban` command line. Thin: parse, call, print. Errors become Chinese messages here, once."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import click

from rules.errors import DubanError

from . import cli_i18n

cli_i18n.install()

FORMATS = click.Choice(["table", "json"])
# commands that never write: a far-future --now cannot leave anything behind
READ_ONLY = {"preview", "rules list", "rules show", "rules export", "calendar show", "history", "backup"}


def now_option(f: Callable) -> Callable:
    return click.option("--now", "now", metavar="时间",
                        help="假定当前时间（本地时间，ISO 格式，如 2026-12-14T09:00；只写日期按当天 12:00）。")(f)


def format_option(f: Callable) -> Callable:
    return click.option("--format", "fmt", type=FORMATS, default="table", show_default=True,
                        help="输出格式：table（中文表格）或 json（供脚本使用）。")(f)


def _option_text(value: str | None, option: str, limit: int, multiline: bool = False) -> str | None:
    """A text option as typed, refused when it has control characters or is too long (as in rule files)."""
    from rules.text import text_problem

    problem = None if value is None else text_problem(value, limit, multiline)
    if problem:
        raise DubanError(f"{option} {problem}")
    return value


def _app(now: str | None):
    from rules.model import ID_RE

    from .app import App

    ctx = click.get_current_context().find_root()
    org = ctx.params.get("org") or "default"
    if not ID_RE.match(org):
        raise DubanError(f"单位 id“{org}”无效：只能用小写英文字母、数字和连字符，例如 branch-01")
    limited = ctx.get_parameter_source("org") not in (None, click.core.ParameterSource.DEFAULT)
    app = App(now, org=org, org_limited=limited)  # reads .env
    if now is not None and click.get_current_context().command_path.partition(" ")[2] not in READ_ONLY:
        from .clock import check_far_ahead

        check_far_ahead(app.now, allowed=ctx.params.get("force") or app.settings.get("DUBAN_TEST_MODE") == "1")
    from .logs import setup_logging

    # every command logs warnings (failed sends…) to stderr, redacted; the service logs INFO by default
    setup_logging(app.settings.get("DUBAN_LOG_LEVEL") or ("INFO" if ctx.invoked_subcommand == "run" else "WARNING"))
    return app


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             options_metavar="[选项]", subcommand_metavar="命令 [参数]...")
@click.version_option(package_name="duban", message="duban %(version)s")
@click.option("--org", envvar="DUBAN_ORG", default="default", show_default=True, metavar="单位",
              help="只处理这个单位（支部）的规则、人员和事项；一个单位使用时不用写。也可设 DUBAN_ORG。")
@click.option("--force", is_flag=True, help="允许写入数据的命令使用比现在晚一年以上的 --now（正式数据库上慎用）。")
@click.pass_context
def cli(ctx: click.Context, org: str, force: bool) -> None:
    """督办（duban）：把整改承诺和周期性工作变成按时提醒、逾期督办和可查台账。

    \b
    常用流程：
      duban init                          创建数据库并载入内置规则包
      duban rules import 规则.yaml         导入或更新规则
      duban preview --from 2026-12-01 --to 2027-03-31   预览到期日和提醒时间
    所有命令都支持 --now 假定当前时间；设置写在 .env 中（见 .env.example）。
    """


# --- init ------------------------------------------------------------------------------------
@cli.command()
@click.option("--no-pack", is_flag=True, help="新数据库不载入内置规则包。")
@now_option
def init(no_pack: bool, now: str | None) -> None:
    """创建或升级数据库；新数据库会载入内置规则包。"""
    from .db import upgrade
    from .output import say

    app = _app(now)
    before, after = upgrade(app.engine)
    if before is not None:  # an upgrade may bring a `holidays` release that knows a new year
        from .db import session_scope
        from .redate import check_library_calendar

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
        from .packs import bundled_pack_paths

        summary = _import_files(app, bundled_pack_paths(), origin="内置规则包")
        say(f"已载入内置规则包：{len(summary.added)} 条规则。人员信息是占位符，请编辑后用 duban rules import 重新导入。")


def _safe_url(url: str) -> str:
    from .db import safe_url

    return safe_url(url)


# --- rules -----------------------------------------------------------------------------------
@cli.group()
def rules() -> None:
    """管理规则：导入、添加、查看、导出、停用、启用。"""


def _parse_files(app, paths: list[str], session=None):
    from rules.errors import RuleFileError
    from rules.loader import RuleSet, load_rule_file

    from .store import load_people_groups

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
    from .output import warn

    for w in merged.warnings:
        warn(f"注意：{w}")
    return merged


def _import_files(app, paths: list[str], origin: str | None = None):
    from .redate import replan_rules
    from .store import import_ruleset

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
    from .output import say

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

    from .output import say
    from .store import RuleSet, import_ruleset, load_people_groups, rule_rows

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
    from .output import print_json, print_table
    from .store import load_ruleset

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

    from .output import print_json, say
    from .store import load_calendar, load_events, load_ruleset, rule_of

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

    from .output import say
    from .store import export_document

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
    from .output import say
    from .store import set_enabled

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

    from .calendar_import import read_arrangement
    from .clock import parse_date
    from .output import print_json, print_table, reminder_text
    from .store import load_calendar, load_events, load_ruleset

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
        from .calendar_import import apply_arrangement

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
        from .output import say

        say("注：标“暂定”的日期所在年份尚无国务院办公厅的放假安排，按法定节假日推算；安排公布后用 duban calendar import 导入。")


# --- calendar --------------------------------------------------------------------------------
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

    from .calendar_import import render_year
    from .output import print_json, say
    from .store import load_calendar

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

    from .calendar_import import changed_days, import_year, read_arrangement
    from .output import say

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


# --- events, completions, status ------------------------------------------------------------
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

    from .clock import parse_date
    from .models import EventRow
    from .output import say, warn
    from .state import bump_config
    from .store import load_calendar, load_ruleset

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

    from .actions import complete
    from .evidence import attach_evidence, data_dir, human_size, max_bytes, store_local_files
    from .output import say

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

    from .actions import waive as waive_occurrence
    from .output import say

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
    from .materialize import Materializer
    from .occurrences import STATE_NAMES, status_rows
    from .output import print_json, print_table
    from .store import load_people_groups

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


# --- the scheduler ---------------------------------------------------------------------------
@cli.command("tick")
@now_option
def tick_cmd(now: str | None) -> None:
    """执行一次调度：生成到期事项，发送到期的提醒，重试失败的消息。"""
    from .output import say
    from .tick import tick

    app = _app(now)
    from .db import require_schema

    require_schema(app.engine)
    result = tick(app.engine, app.settings, app.now, org=app.org if app.org_limited else None)
    d = result.dispatched
    from notifications.message import KIND_NAMES

    sent = "、".join(f"{KIND_NAMES.get(k, k)} {n} 条" for k, n in sorted(d.sent.items())) or "无"
    say(f"{app.now:%Y-%m-%d %H:%M} 调度完成：新建事项 {result.planned.occurrences} 项；发送 {sent}；"
        f"跳过 {d.skipped} 条；待重试 {d.retrying} 条；放弃 {d.dead} 条。")
    if d.disabled:
        say(f"注意：渠道 {'、'.join(d.disabled)} 因设置错误已停用，消息改由其他渠道发送。运行 duban doctor 查看原因。")


@cli.command()
@click.option("--interval", default=60, show_default=True, help="检查间隔（秒）。")
@now_option
def run(interval: int, now: str | None) -> None:
    """启动督办服务：每分钟检查一次，按时发送提醒和每日汇总，直到收到停止信号。"""
    from datetime import datetime

    from .db import require_schema
    from .service import run_service

    app = _app(now)
    require_schema(app.engine)
    offset = app.now - datetime.now(app.settings.tz) if now else timedelta(0)
    run_service(app, offset, interval)


@cli.command()
@click.option("--send", is_flag=True, help="立即发送（默认只显示）。")
@now_option
def digest(send: bool, now: str | None) -> None:
    """书记的每日汇总：逾期事项、7 天内到期的事项、发送失败的消息。"""
    from .digest import plan_digest, render_digest
    from .materialize import Materializer
    from .output import say

    app = _app(now)
    st = app.settings
    with app.session() as s:
        Materializer(s, app.now, st.tz, st.digest_to).run()
        if send:
            plan_digest(s, app.now, st.tz, st.digest_to, st.digest_at, force=True, orgs=[app.org])
        else:
            message = render_digest(s, app.now, st.digest_to, st.get("DUBAN_TEMPLATE_DIR"), app.org)
    if not send:
        say(f"主题：{message.subject}\n")
        say(message.text.rstrip())
        return
    from .tick import tick

    result = tick(app.engine, st, app.now, org=app.org)
    say("每日汇总已发送。" if result.dispatched.sent.get("digest") else "每日汇总今天已经发送过，未重复发送。")


@cli.command()
@click.option("--send-test", is_flag=True, help="通过每个已配置的渠道给 DUBAN_DIGEST_TO 发一条测试消息。")
@format_option
@now_option
def doctor(send_test: bool, fmt: str, now: str | None) -> None:
    """检查设置、数据库、各渠道、日历覆盖和规则，逐项给出“正常”或怎么修。"""
    from .doctor import ERROR, WARN, run_checks
    from .output import print_json, say

    app = _app(now)
    checks = run_checks(app, send_test)
    if fmt == "json":
        print_json([c.as_dict() for c in checks])
    else:
        for c in checks:
            say(f"[{c.level}] {c.area}：{c.text}")
        errors = sum(c.level == ERROR for c in checks)
        warnings = sum(c.level == WARN for c in checks)
        say(f"\n共 {len(checks)} 项检查：{errors} 个错误，{warnings} 个警告。" if errors or warnings else "\n一切正常。")
    if any(c.level == ERROR for c in checks):
        click.get_current_context().exit(1)


# --- the workbench ---------------------------------------------------------------------------
@cli.group("web", invoke_without_command=True)
@click.option("--host", metavar="地址", help="监听地址（默认 DUBAN_WEB_HOST 或 127.0.0.1）。")
@click.option("--port", type=int, metavar="端口", help="监听端口（默认 DUBAN_WEB_PORT 或 8080）。")
@now_option
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None, now: str | None) -> None:
    """督办工作台（网页）：不带子命令时单独启动工作台，直到收到停止信号。

    \b
    例：duban web                         启动工作台（http://127.0.0.1:8080）
        duban web login-link secretary    为人员生成一次性登录链接"""
    if ctx.invoked_subcommand is not None:
        return
    from datetime import datetime

    from .db import require_schema
    from .output import say
    from .signing import base_url
    from .web.serve import make_server, web_address

    app = _app(now)
    require_schema(app.engine)
    address = web_address(app.settings, host, port) or web_address(app.settings, host, 8080)
    offset = app.now - datetime.now(app.settings.tz) if now else timedelta(0)
    server = make_server(app.settings, app.engine, lambda: datetime.now(app.settings.tz) + offset, *address)
    say(f"督办工作台：{base_url(app.settings)}/ （监听 {address[0]}:{address[1]}，按 Ctrl+C 停止）")
    server.run()


@web.command("login-link")
@click.argument("person", metavar="人员")
@now_option
def web_login_link(person: str, now: str | None) -> None:
    """为一位人员生成一次性登录链接（15 分钟内有效，只能用一次），链接在最后一行。"""
    from .actions import audit
    from .output import say
    from .queries import ROLE_NAMES, role_of
    from .signing import base_url
    from .store import load_people_groups
    from .web.auth import issue_login_token

    app = _app(now)
    with app.session() as s:
        people, _groups = load_people_groups(s, app.org)
        if person not in people:
            known = "、".join(sorted(people)[:20]) or "（无）"
            raise DubanError(f"没有编号为“{person}”的人员。已登记的人员：{known}。人员在规则文件的 people 中登记")
        token = issue_login_token(s, app.org, person, app.now)
        audit(s, org=app.org, now=app.now, actor=person, via="cli", action="login-link")
    p = people[person]
    say(f"{p.name}（{ROLE_NAMES[role_of(app.settings, app.org, person)]}）的登录链接，15 分钟内有效，只能使用一次：")
    click.echo(f"{base_url(app.settings)}/login/{token}")


# --- ledger, history -------------------------------------------------------------------------
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
    from .clock import parse_date
    from .ledger import LedgerFilter, export_ledger, ledger_format
    from .materialize import Materializer
    from .output import say, warn

    ledger_format(out)
    app = _app(now)
    first = parse_date(from_, "--from") if from_ else None
    last = parse_date(to, "--to") if to else None
    if first and last and last < first:
        raise DubanError(f"--to（{last}）早于 --from（{first}）")
    flt = LedgerFilter(first, last, tuple(dict.fromkeys(rule_ids)), app.org)
    data = None
    if ledger_format(out) == "zip":
        from .evidence import data_dir

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
    from .ledger import ACTION_NAMES, audit_entries
    from .models import RuleRow
    from .output import print_json, print_table

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
    from .db import backup_sqlite, require_schema
    from .output import say

    app = _app(now)
    if not app.settings.database_url.startswith("sqlite"):
        raise DubanError("PostgreSQL 数据库请用 pg_dump 备份，例如：pg_dump -Fc -d 库名 -f duban.dump；"
                         "恢复：pg_restore -d 库名 duban.dump")
    require_schema(app.engine)
    size = backup_sqlite(app.engine, out)
    say(f"已备份到 {out}（{size / 1024:.0f} KB）。恢复：停止服务，用它替换 DUBAN_DATABASE_URL 指向的文件，再启动。")


def _chinese_metavars(group: click.Group) -> None:
    """`[OPTIONS]` and `COMMAND [ARGS]...` in every usage line, in Chinese."""
    for cmd in group.commands.values():
        cmd.options_metavar = "[选项]"
        if isinstance(cmd, click.Group):
            cmd.subcommand_metavar = "命令 [参数]..."
            _chinese_metavars(cmd)


_chinese_metavars(cli)


# --- entry point -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every user error is one Chinese message on stderr and a non-zero exit code."""
    try:
        code = cli.main(args=argv, prog_name="duban", standalone_mode=False)
        if isinstance(code, int):
            return code
    except DubanError as e:
        from rules.text import clean_text

        # messages quote what the user wrote: never let it move the cursor or recolour the terminal
        click.echo(f"错误：{clean_text(e.message, multiline=True)}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("已取消。", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug or an environment problem: one line, the traceback only at DEBUG
        import os

        from sqlalchemy.exc import SQLAlchemyError

        if os.environ.get("DUBAN_LOG_LEVEL", "").upper() == "DEBUG":
            import traceback

            from notifications.redact import redact

            click.echo(redact(traceback.format_exc()), err=True)  # the details, without any secret
            return 1
        if isinstance(e, SQLAlchemyError):
            orig = getattr(e, "orig", None)
            click.echo(f"错误：数据库操作失败（{type(orig or e).__name__}：{str(orig or e).splitlines()[0][:200]}）。"
                       "请检查 DUBAN_DATABASE_URL 和数据库服务。", err=True)
        else:
            from notifications.redact import redact

            click.echo(f"错误：程序内部出错（{type(e).__name__}：{redact(str(e))[:200]}）。"
                       "设置 DUBAN_LOG_LEVEL=DEBUG 后重试可看到详细信息，请报告给维护者。", err=True)
        return 1
    return 0


def console_main() -> None:
    import gc

    # a command makes many small objects and few cycles: collect rarely (measured: ~30 % faster)
    gc.set_threshold(100_000, 50, 100)
    sys.exit(main())


if __name__ == "__main__":
    console_main()
