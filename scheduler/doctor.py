"""`duban doctor`: each part of the installation checked, OK or what to fix, in Chinese."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from notifications.channels.base import ChannelError
from notifications.redact import redact
from rules.errors import DubanError

from .app import App

OK, WARN, ERROR = "正常", "警告", "错误"


@dataclass
class Check:
    level: str
    area: str
    text: str

    def as_dict(self) -> dict[str, str]:
        return {"level": {OK: "ok", WARN: "warning", ERROR: "error"}[self.level], "area": self.area, "text": self.text}


def run_checks(app: App, send_test: bool = False) -> list[Check]:
    out: list[Check] = []
    s = app.settings
    out.append(Check(OK, "设置", f"时区 {s.timezone}，现在是 {app.now:%Y-%m-%d %H:%M}"))
    if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", s.digest_at):
        out.append(Check(ERROR, "设置", f"DUBAN_DIGEST_AT“{s.digest_at}”无效，应写成 08:30"))

    from .routing import configured_channels

    try:
        channels = configured_channels(s)
    except DubanError as e:
        out.append(Check(ERROR, "渠道", e.message))
        channels = []

    db_ok = _check_database(app, out)
    _check_web(app, out)
    if db_ok:
        _check_data(app, out, [c.channel for c in channels])
    working = []
    for c in channels:
        check = _check_channel(c.channel, app, send_test)
        out.append(check)
        if check.level == OK and (c.channel.name in ("email", "wecom-app") or send_test):
            working.append(c.channel.name)  # the channel answers now: a block from earlier is lifted
    if db_ok and working:
        from .channel_state import disabled_channels, set_disabled
        from .db import session_scope

        with session_scope(app.engine) as session:
            blocked = disabled_channels(session)
            lifted = [n for n in working if n in blocked]
            if lifted:
                set_disabled(session, {n: v for n, v in blocked.items() if n not in lifted})
                out.append(Check(OK, "渠道", f"{'、'.join(blocked[n]['label'] for n in lifted)}已恢复使用（检查通过）"))
    if db_ok:
        from .channel_state import disabled_channels
        from .db import session_scope

        with session_scope(app.engine) as session:
            for name, v in disabled_channels(session).items():
                current = next((c for c in channels if c.channel.name == name), None)
                if current is not None and current.fingerprint == v.get("fingerprint"):
                    out.append(Check(ERROR, "渠道", f"{v['label']}已停用（{v['at'][:16]}）：{v['reason']}。修正设置后自动恢复"))
    return out


def _check_web(app: App, out: list[Check]) -> None:
    """The workbench's address, and files that hold secrets or personal data readable by others."""
    import os
    import stat

    from .paths import data_dir
    from .signing import KEY_FILE, base_url, is_https
    from .web.serve import web_address

    try:
        address = web_address(app.settings)
    except DubanError as e:
        out.append(Check(ERROR, "工作台", e.message))
        address = None
    if address is None:
        out.append(Check(OK, "工作台", "已关闭（DUBAN_WEB_PORT=off）；消息中的链接仍指向 " + base_url(app.settings)))
    else:
        host, port = address
        loopback = host in ("127.0.0.1", "localhost", "::1")
        if not loopback and not is_https(app.settings):
            out.append(Check(WARN, "工作台", f"监听 {host}:{port}，但 DUBAN_BASE_URL 不是 https 地址：登录会话和链接会以明文"
                                            "在网络上传输。请在前面放置提供 https 的反向代理（见 README），并把 DUBAN_BASE_URL 设为 https 地址"))
        elif not app.settings.get("DUBAN_BASE_URL") and not loopback:
            out.append(Check(WARN, "工作台", f"监听 {host}:{port}，但没有设置 DUBAN_BASE_URL：消息里的链接是 "
                                            f"{base_url(app.settings)}，别人的电脑打不开"))
        else:
            out.append(Check(OK, "工作台", f"监听 {host}:{port}，链接地址 {base_url(app.settings)}"))
    folder = data_dir(app.settings, create=False)
    paths = [folder, folder / KEY_FILE]
    url = app.settings.database_url
    if url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        db = make_url(url).database
        if db and db != ":memory:":
            paths.append(Path(db))
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            what = "数据目录" if path.is_dir() else "文件"
            out.append(Check(WARN, "文件权限", f"{what} {path} 可被其他用户读取（权限 {stat.filemode(mode)}），其中有人员信息"
                                            f"或密钥：请运行 chmod {'700' if path.is_dir() else '600'} {path}"))


def _check_database(app: App, out: list[Check]) -> bool:
    from .db import current_revision, head_revision, safe_url

    url = safe_url(app.settings.database_url)
    if not app.database_exists():
        out.append(Check(ERROR, "数据库", f"数据库 {url} 不存在：请运行 duban init"))
        return False
    try:
        rev = current_revision(app.engine)
    except Exception as e:  # noqa: BLE001 - any driver error is a finding here
        out.append(Check(ERROR, "数据库", f"无法连接 {url}（{type(e).__name__}）：请检查 DUBAN_DATABASE_URL 和数据库服务"))
        return False
    head = head_revision()
    if rev is None:
        out.append(Check(ERROR, "数据库", f"{url} 尚未初始化：请运行 duban init"))
        return False
    if rev != head:
        out.append(Check(ERROR, "数据库", f"数据库结构是 {rev}，程序需要 {head}：请运行 duban init 升级（数据保留）"))
        return False
    out.append(Check(OK, "数据库", f"{url}，结构版本 {rev}（最新）"))
    return True


def _check_data(app: App, out: list[Check], channels) -> None:
    from rules.planner import Planner

    from .db import session_scope
    from .models import DeliveryRow
    from .routing import channels_for, recipient
    from .store import load_calendar, load_events, load_ruleset

    today = app.now.date()
    with session_scope(app.engine) as s:
        rs = load_ruleset(s, app.org, only_enabled=True)
        cal = load_calendar(s)
        events = load_events(s, app.settings.tz, app.org)
        dead = s.scalar(select(func.count()).select_from(DeliveryRow).where(
            DeliveryRow.status == "dead", DeliveryRow.created_at >= app.now - timedelta(days=30)))
        stuck = s.scalar(select(func.count()).select_from(DeliveryRow).where(
            DeliveryRow.status == "pending", DeliveryRow.due_at < int(app.now.timestamp()) - 900))

    # calendar coverage
    for year in (today.year, today.year + 1):
        if cal.is_provisional(year):
            level = ERROR if year == today.year else WARN
            out.append(Check(level, "日历", f"{year} 年尚无官方放假安排，{year} 年的截止日为暂定（按法定节假日推算）。"
                                            f"国务院办公厅通知公布后，写成日历文件并运行 duban calendar import 文件"))
        else:
            out.append(Check(OK, "日历", f"{year} 年：{cal.year_source(year)}"))

    # rules
    if not rs.rules:
        out.append(Check(WARN, "规则", "没有启用的规则：用 duban rules import 文件 导入"))
    else:
        planner = Planner(cal, rs.groups)
        horizon = today + timedelta(days=400)
        silent = [r.id for r in rs.rules if r.kind != "event"
                  and not planner.plan([r], today, horizon, events)]
        out.append(Check(OK, "规则", f"启用的规则 {len(rs.rules)} 条"))
        if silent:
            out.append(Check(WARN, "规则", f"这些规则在今后 400 天内不会产生任何事项：{'、'.join(silent)}（检查 start、window 或 due）"))
        unused = sorted({r.event for r in rs.rules if r.kind == "event"} - {e.type for e in events})
        if unused:
            out.append(Check(OK, "规则", f"尚未登记过的事件类型：{'、'.join(unused)}（登记后才产生待办：duban event add 类型 --date 日期）"))

    # people and their addresses
    involved = set()
    for r in rs.rules:
        for ref in [r.owner, *r.escalate_to, r.for_each]:
            if ref:
                involved.update(rs.members(ref))
    involved.add(app.settings.digest_to)
    real = [c for c in channels if c.name != "console"]
    unreachable = sorted(p for p in involved if real and all(c.name == "console" for c in
                                                             channels_for(recipient(p, rs.people), real + [_console()])))
    if app.settings.digest_to not in rs.people:
        out.append(Check(WARN, "人员", f"每日汇总的接收人 DUBAN_DIGEST_TO={app.settings.digest_to} 不在人员名单中"))
    if not real:
        out.append(Check(WARN, "渠道", "没有配置邮件或企业微信：所有消息只写到控制台（服务日志）。在 .env 中配置 DUBAN_SMTP_* 或 DUBAN_WECOM_*"))
    elif unreachable:
        out.append(Check(WARN, "人员", f"这些人员没有已配置渠道的联系方式，消息只写到日志：{'、'.join(unreachable)}"))

    # deliveries
    if dead:
        out.append(Check(WARN, "投递", f"最近 30 天有 {dead} 条消息最终发送失败（详见每日汇总：duban digest）"))
    if stuck:
        out.append(Check(WARN, "投递", f"有 {stuck} 条消息已到发送时间 15 分钟以上仍未发出：服务（duban run）可能没有运行"))
    if not dead and not stuck:
        out.append(Check(OK, "投递", "没有发送失败或积压的消息"))


def _console():
    from notifications.channels.console import ConsoleChannel

    return ConsoleChannel()


def _check_channel(channel, app: App, send_test: bool) -> Check:
    name = channel.label
    try:
        if channel.name == "email":
            import smtplib

            smtp = channel._connect()
            try:
                if channel.user and channel._password:
                    smtp.login(channel.user, channel._password)
            except smtplib.SMTPAuthenticationError as e:
                return Check(ERROR, "渠道", f"{name}：服务器拒绝登录（{e.smtp_code}）。请检查 DUBAN_SMTP_USER，密码应为邮箱的授权码")
            finally:
                smtp.close()
            detail = f"{channel.host}:{channel.port}（{channel.security}）连接{'并登录' if channel.user else ''}成功"
        elif channel.name == "wecom-app":
            channel.token()
            detail = f"{channel.api_base} 获取 access_token 成功"
        elif channel.name == "wecom-robot":
            if not channel.key:
                return Check(ERROR, "渠道", f"{name}：DUBAN_WECOM_ROBOT_KEY 里找不到 key")
            detail = f"已配置（填的是{channel.key_form}）；群机器人无法在不发消息的情况下检查"
        else:
            detail = "消息写到" + ("文件 " + channel.path if channel.path else "标准输出（服务日志）")
        if send_test and channel.name != "console":
            _send_test(channel, app)
            detail += "；测试消息已发送"
        return Check(OK, "渠道", f"{name}：{detail}")
    except ChannelError as e:
        return Check(ERROR, "渠道", f"{name}：{redact(e.message)}")
    except (OSError, Exception) as e:  # noqa: BLE001 - a connection problem of any kind is the finding
        return Check(ERROR, "渠道", f"{name}：{redact(f'{type(e).__name__}: {e}')[:200]}")


def _send_test(channel, app: App) -> None:
    from notifications.message import Message

    from .db import session_scope
    from .routing import recipient
    from .store import load_people_groups

    with session_scope(app.engine) as s:
        people, _ = load_people_groups(s, app.org)
    person = recipient(app.settings.digest_to, people)
    stamp = f"{datetime.now(app.settings.tz):%Y-%m-%d %H:%M}"
    text = f"这是督办（duban）的测试消息，发送于 {stamp}。收到即说明{channel.label}配置正确。"
    channel.send(Message("test", f"【督办】{channel.label}测试消息", text, f"doctor-test|{stamp}", markdown=text), person)
