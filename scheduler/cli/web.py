"""`duban web` and `duban web login-link`: the workbench."""

from __future__ import annotations

from datetime import timedelta

import click

from rules.errors import DubanError

from .base import _app, cli, now_option


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

    from ..db import require_schema
    from ..output import say
    from ..signing import base_url
    from ..web.serve import make_server, web_address

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
    from ..actions import audit
    from ..output import say
    from ..queries import ROLE_NAMES, role_of
    from ..signing import base_url
    from ..store import load_people_groups
    from ..web.auth import issue_login_token

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
