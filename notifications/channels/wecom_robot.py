"""WeCom group robot (群机器人): markdown into a group chat, mentioning the responsible person.

The key is a secret (whoever has it can post to the group): it is never logged or stored.
Messages are cut at line ends to stay within 4096 bytes; the dispatcher paces posts to the
robot's limit of 20 a minute.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import requests

from rules.text import mobile_number, valid_wecom_id

from ..markdown import split_by_bytes
from ..message import Message, Recipient
from ..redact import register_secret
from .base import SendResult
from .wecom_common import DEFAULT_API_BASE, post_or_get, raise_for_errcode

MARKDOWN_LIMIT = 4096
TEXT_LIMIT = 2048


def robot_key(setting: str) -> tuple[str, str]:
    """Accept the key or the whole webhook URL pasted by mistake; returns (key, what was found)."""
    s = setting.strip()
    if s.startswith("http"):
        key = parse_qs(urlparse(s).query).get("key", [""])[0]
        return key, "整个 webhook 地址（已从中取出 key）"
    return s, "key"


class WeComRobotChannel:
    name = "wecom-robot"
    label = "企业微信群机器人"
    rate_limit = (20, 60)  # posts per window of seconds, per robot

    def __init__(self, key_setting: str, api_base: str | None = None):
        self.key, self.key_form = robot_key(key_setting)
        register_secret(self.key)
        register_secret(key_setting)
        self.api_base = (api_base or DEFAULT_API_BASE).rstrip("/")
        self.http = requests.Session()

    def __repr__(self) -> str:
        return f"WeComRobotChannel({self.api_base})"

    def reaches(self, person: Recipient) -> bool:
        return True  # it posts to a group; the person is mentioned when they can be

    def posts_needed(self, message: Message, person: Recipient) -> int:
        """How many posts this message takes: its markdown chunks, plus a text post to mention a
        person known only by mobile number (markdown cannot mention by mobile)."""
        return len(self.chunks(message, person)) + (1 if self._mention_by_mobile(person) else 0)

    @staticmethod
    def _mention_by_mobile(person: Recipient) -> bool:
        return mobile_number(person.mobile) is not None and not valid_wecom_id(person.wecom)

    def chunks(self, message: Message, person: Recipient) -> list[str]:
        """Markdown posts within the byte limit, cut at line ends; the first one mentions the person.
        The id is checked again here (people stored before ids were validated): `<@all>`, `<@a|b>`
        or markup would mention the whole group or change the message, so such a person is not mentioned."""
        prefix = f"<@{person.wecom}>\n" if valid_wecom_id(person.wecom) else ""
        parts = split_by_bytes(message.markdown or message.text, MARKDOWN_LIMIT - len(prefix.encode("utf-8")))
        return [prefix + parts[0], *parts[1:]] if parts else []

    def send(self, message: Message, person: Recipient) -> SendResult:
        url = f"{self.api_base}/cgi-bin/webhook/send"
        posts = 0
        if self._mention_by_mobile(person):
            mention = {"content": message.subject[:600], "mentioned_mobile_list": [mobile_number(person.mobile)]}
            body = post_or_get(self.http, "POST", url, params={"key": self.key},
                               json={"msgtype": "text", "text": mention})
            raise_for_errcode(body, {"posts": posts})
            posts += 1
        for chunk in self.chunks(message, person):
            body = post_or_get(self.http, "POST", url, params={"key": self.key},
                               json={"msgtype": "markdown", "markdown": {"content": chunk}})
            raise_for_errcode(body, {"posts": posts})
            posts += 1
        return SendResult({"posts": posts})
