"""`duban tick`, `run`, `digest`, `doctor`: the scheduler and its checks."""

from __future__ import annotations

from datetime import timedelta

import click

from .base import _app, cli, format_option, now_option


@cli.command("tick")
@now_option
def tick_cmd(now: str | None) -> None:
    """执行一次调度：生成到期事项，发送到期的提醒，重试失败的消息。"""
    from ..output import say
    from ..tick import tick

    app = _app(now)
    from ..db import require_schema

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

    from ..db import require_schema
    from ..service import run_service

    app = _app(now)
    require_schema(app.engine)
    offset = app.now - datetime.now(app.settings.tz) if now else timedelta(0)
    run_service(app, offset, interval)


@cli.command()
@click.option("--send", is_flag=True, help="立即发送（默认只显示）。")
@now_option
def digest(send: bool, now: str | None) -> None:
    """书记的每日汇总：逾期事项、7 天内到期的事项、发送失败的消息。"""
    from ..digest import plan_digest, render_digest
    from ..materialize import Materializer
    from ..output import say

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
    from ..tick import tick

    result = tick(app.engine, st, app.now, org=app.org)
    say("每日汇总已发送。" if result.dispatched.sent.get("digest") else "每日汇总今天已经发送过，未重复发送。")


@cli.command()
@click.option("--send-test", is_flag=True, help="通过每个已配置的渠道给 DUBAN_DIGEST_TO 发一条测试消息。")
@format_option
@now_option
def doctor(send_test: bool, fmt: str, now: str | None) -> None:
    """检查设置、数据库、各渠道、日历覆盖和规则，逐项给出“正常”或怎么修。"""
    from ..doctor import ERROR, WARN, run_checks
    from ..output import print_json, say

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
