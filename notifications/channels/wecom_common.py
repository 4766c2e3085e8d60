"""What the WeCom robot and application clients share: the HTTP call and errcode classification."""

from __future__ import annotations

from typing import Any

import requests

from ..redact import redact
from .base import ChannelDisabled, ChannelError

DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"
TIMEOUT = (5, 15)  # connect, read (seconds)

# errcode → (permanent?, the channel itself is unusable?, Chinese explanation)
ERRCODES: dict[int, tuple[bool, bool, str]] = {
    -1: (False, False, "企业微信系统繁忙"),
    45009: (False, False, "调用频率超过企业微信的限制，稍后重试"),
    45033: (False, False, "并发调用超过限制，稍后重试"),
    40001: (True, True, "应用 Secret 无效：请检查 DUBAN_WECOM_CORP_SECRET"),
    40013: (True, True, "企业 ID 无效：请检查 DUBAN_WECOM_CORP_ID"),
    40056: (True, True, "应用 AgentId 无效：请检查 DUBAN_WECOM_AGENT_ID"),
    60020: (True, True, "服务器 IP 不在企业微信应用的可信 IP 列表中"),
    93000: (True, True, "群机器人 webhook 无效：请检查 DUBAN_WECOM_ROBOT_KEY（只填 key= 后面的部分，或整个地址）"),
    40058: (True, False, "消息内容超过企业微信的长度限制"),
    81013: (True, False, "收件人在企业微信中都不存在"),
}


def post_or_get(session: requests.Session, method: str, url: str, **kw: Any) -> dict[str, Any]:
    """One HTTP call; transport problems and HTTP errors become transient ChannelErrors (redacted)."""
    try:
        resp = session.request(method, url, timeout=TIMEOUT, **kw)
    except requests.Timeout:
        raise ChannelError("连接企业微信超时") from None
    except requests.RequestException as e:
        raise ChannelError(redact(f"无法连接企业微信（{type(e).__name__}）")) from None
    if resp.status_code == 429 or resp.status_code >= 500:
        raise ChannelError(f"企业微信服务器返回 HTTP {resp.status_code}")
    if resp.status_code != 200:
        raise ChannelError(f"企业微信服务器返回 HTTP {resp.status_code}", permanent=resp.status_code in (400, 404))
    try:
        return resp.json()
    except ValueError:
        raise ChannelError("企业微信返回的不是 JSON（请检查 DUBAN_WECOM_API_BASE）") from None


def raise_for_errcode(body: dict[str, Any], detail: dict[str, Any] | None = None) -> None:
    """WeCom answers HTTP 200 with an errcode: 0 is success, anything else is a failure."""
    code = body.get("errcode", -1)
    if code == 0:
        return
    permanent, disables, text = ERRCODES.get(code, (True, False, "企业微信拒绝了请求"))
    msg = f"{text}（errcode {code}：{redact(str(body.get('errmsg', '')))[:120]}）"
    info = {"errcode": code, **(detail or {})}
    if disables:
        raise ChannelDisabled(msg, info)
    raise ChannelError(msg, permanent=permanent, detail=info)
