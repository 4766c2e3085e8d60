"""WeCom group robot (群机器人): markdown into a group chat, mentioning the responsible person.

The key is a secret (whoever has it can post to the group): it is never logged or stored.
Messages are cut at line ends to stay within 4096 bytes; the dispatcher paces posts to the
robot's limit of 20 a minute.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import requests

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

    def posts_needed(self, message: Message) -> int:
        return len(self.chunks(message))

    def chunks(self, message: Message) -> list[str]:
        return split_by_bytes(message.markdown or message.text, MARKDOWN_LIMIT)

    def send(self, message: Message, person: Recipient) -> SendResult:
        url = f"{self.api_base}/cgi-bin/webhook/send"
        posts = 0
        for i, chunk in enumerate(self.chunks(message)):
            if i == 0 and person.wecom:
                chunk = f"<@{person.wecom}>\n{chunk}"
            elif i == 0 and person.mobile:
                # markdown cannot mention by mobile: a short text message does it
                body = post_or_get(self.http, "POST", url, params={"key": self.key}, json={
                    "msgtype": "text", "text": {"content": f"{message.subject}"[:600],
                                                "mentioned_mobile_list": [person.mobile]}})
                raise_for_errcode(body, {"posts": posts})
                posts += 1
            body = post_or_get(self.http, "POST", url, params={"key": self.key},
                               json={"msgtype": "markdown", "markdown": {"content": chunk}})
            raise_for_errcode(body, {"posts": posts})
            posts += 1
        return SendResult({"posts": posts})
