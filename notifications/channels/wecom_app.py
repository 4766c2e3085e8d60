"""WeCom application messages (应用消息) to each person's WeCom user id.

The access token is fetched once and cached for its lifetime (fetching per message is itself
rate-limited), refreshed early, and fetched again when WeCom says it is invalid or expired.
`DUBAN_WECOM_API_BASE` makes private deployments such as 政务微信 work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests

from rules.text import valid_wecom_id

from ..message import Message, Recipient
from ..redact import register_secret
from .base import ChannelError, SendResult
from .wecom_common import DEFAULT_API_BASE, post_or_get, raise_for_errcode

TOKEN_ERRCODES = (40014, 42001, 40082)
DUPLICATE_CHECK_SECONDS = 1800  # WeCom drops an identical message within this interval: a resend after a crash
MARKDOWN_LIMIT = 2048
CARD_TITLE_LIMIT, CARD_DESCRIPTION_LIMIT = 128, 512  # bytes (textcard)


def _cut(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut at a character boundary with an ellipsis."""
    if len(text.encode("utf-8")) <= limit:
        return text
    return text.encode("utf-8")[: limit - 3].decode("utf-8", "ignore") + "…"


def _cut_lines(text: str, limit: int) -> str:
    """Whole lines (a card's <div>s) within `limit` bytes; the first line cut if it alone is too long."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    out: list[str] = []
    for line in lines:
        if len("".join([*out, line]).encode("utf-8")) > limit:
            break
        out.append(line)
    return "".join(out) or _cut(lines[0] if lines else text, limit)


class WeComAppChannel:
    name = "wecom-app"
    label = "企业微信应用消息"
    rate_limit_per_person = (30, 60)  # WeCom silently drops messages over this to one member

    def __init__(self, corp_id: str, corp_secret: str, agent_id: str | int, api_base: str | None = None,
                 clock: Callable[[], float] = time.time):
        register_secret(corp_secret)
        self.corp_id, self._secret = corp_id, corp_secret
        try:
            self.agent_id = int(agent_id)
        except (TypeError, ValueError):
            raise ValueError(f"DUBAN_WECOM_AGENT_ID 应为数字，不能是“{agent_id}”") from None
        self.api_base = (api_base or DEFAULT_API_BASE).rstrip("/")
        self.http = requests.Session()
        self.clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()
        self.token_fetches = 0

    def __repr__(self) -> str:
        return f"WeComAppChannel({self.api_base}, corp={self.corp_id}, agent={self.agent_id})"

    def reaches(self, person: Recipient) -> bool:
        # a `touser` of "a|b" or "@all" would reach other people: such an id is not used
        return valid_wecom_id(person.wecom)

    def token(self, refresh: bool = False) -> str:
        with self._lock:
            if refresh or self._token is None or self.clock() >= self._expires:
                body = post_or_get(self.http, "GET", f"{self.api_base}/cgi-bin/gettoken",
                                   params={"corpid": self.corp_id, "corpsecret": self._secret})
                raise_for_errcode(body)
                self._token = body["access_token"]
                register_secret(self._token)
                # refresh five minutes early so a token never expires mid-send
                self._expires = self.clock() + int(body.get("expires_in", 7200)) - 300
                self.token_fetches += 1
            return self._token

    def send(self, message: Message, person: Recipient) -> SendResult:
        if not valid_wecom_id(person.wecom):
            raise ChannelError(f"企业微信账号“{person.wecom}”无效，未发送", permanent=True)
        content = message.markdown or message.text
        if len(content.encode("utf-8")) > MARKDOWN_LIMIT:
            from ..markdown import split_by_bytes

            content = split_by_bytes(content, MARKDOWN_LIMIT - 60)[0] + "\n\n（内容较长，完整内容见邮件或 duban status）"
        card = message.card() if message.url else None
        if card:  # a card the person taps to open the action page
            body_part = {"msgtype": "textcard", "textcard": {
                "title": _cut(message.subject, CARD_TITLE_LIMIT), "description": _cut_lines(card, CARD_DESCRIPTION_LIMIT),
                "url": message.url, "btntxt": "登记"}}
        else:
            body_part = {"msgtype": "markdown", "markdown": {"content": content}}
        payload = {"touser": person.wecom, "agentid": self.agent_id, **body_part, "enable_duplicate_check": 1,
                   "duplicate_check_interval": DUPLICATE_CHECK_SECONDS}
        body = self._post(payload)
        if body.get("errcode", -1) in TOKEN_ERRCODES:
            body = self._post(payload, refresh=True)  # the token was invalid or expired: once more
        raise_for_errcode(body)
        invalid = [u for u in str(body.get("invaliduser") or "").split("|") if u]
        if person.wecom in invalid:
            raise ChannelError(f"企业微信中没有账号“{person.wecom}”（或不在应用可见范围内）", permanent=True,
                               detail={"invaliduser": invalid})
        return SendResult({"msgid": body.get("msgid")})

    def api_get(self, path: str, params: dict) -> dict:
        """A GET of another API of the app (e.g. OAuth's auth/getuserinfo), refreshing a stale token once."""
        url = f"{self.api_base}{path}"
        body = post_or_get(self.http, "GET", url, params={**params, "access_token": self.token()})
        if body.get("errcode", -1) in TOKEN_ERRCODES:
            body = post_or_get(self.http, "GET", url, params={**params, "access_token": self.token(refresh=True)})
        raise_for_errcode(body)
        return body

    def _post(self, payload: dict, refresh: bool = False) -> dict:
        token = self.token(refresh=refresh)
        return post_or_get(self.http, "POST", f"{self.api_base}/cgi-bin/message/send",
                           params={"access_token": token}, json=payload)
