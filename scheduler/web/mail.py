"""The sign-in page's "email me a link": one message, straight through the email channel."""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from notifications.markdown import MdSafe
from notifications.message import render

from ..actions import audit
from ..db import session_scope
from ..models import PersonRow
from ..routing import configured_channels, recipient
from ..signing import base_url
from ..store import load_people_groups
from . import auth

log = logging.getLogger("duban.web")


def send_login_link(web, address: str, client: str | None) -> bool:
    """Email a sign-in link to the person with this address; False (silently) when nobody has it."""
    now = web.now()
    with session_scope(web.engine) as s:
        row = s.execute(select(PersonRow.org, PersonRow.id).where(func.lower(PersonRow.email) == address.lower())
                        .limit(1)).first()
        if row is None:
            log.info("登录链接申请：邮箱不在人员名单中（不告知申请人）")
            return False
        org, pid = row
        people, _groups = load_people_groups(s, org)
        token = auth.issue_login_token(s, org, pid, now)
        audit(s, org=org, now=now, actor=pid, via="web", action="login-link", remote=client, detail={"by": "email"})
    person = recipient(pid, people)
    url = MdSafe(f"{base_url(web.settings)}/login/{token}")
    message = render("login", {"person": person, "login_url": url}, f"login|{org}|{pid}|{now.isoformat()}",
                     web.settings.get("DUBAN_TEMPLATE_DIR"))
    channels = [c.channel for c in configured_channels(web.settings) if c.channel.name == "email"]
    if not channels:  # no SMTP: the operator's console is the only way out, as for every message
        channels = [c.channel for c in configured_channels(web.settings) if c.channel.name == "console"]
    try:
        channels[0].send(message, person)
    except Exception as e:  # noqa: BLE001 - the page answers the same; the log says why
        log.warning("登录链接邮件发送失败（%s）：%s", pid, getattr(e, "message", type(e).__name__))
        return False
    return True
