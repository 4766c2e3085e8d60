"""A message for one person, rendered from the Jinja2 templates (which a user may override)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

KIND_NAMES = {"reminder": "提醒", "overdue": "逾期提醒", "escalation": "督办通知", "digest": "每日汇总",
              "redate": "截止日期调整", "test": "测试消息", "login": "登录链接",
              "combined": "合并提醒", "combined_escalation": "督办通知（合并）"}
CHANNEL_LABELS = {"email": "邮件", "wecom-app": "企业微信应用消息", "wecom-robot": "企业微信群机器人", "console": "控制台"}
TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Recipient:
    id: str
    name: str
    email: str | None = None
    wecom: str | None = None
    mobile: str | None = None


class Message:
    """What one delivery says. `key` is the delivery's natural key: a resend carries the same tag.

    The HTML (email) and markdown (WeCom) bodies are rendered when a channel first asks for them:
    most messages go out through one channel and need only one of them.
    """

    __slots__ = ("kind", "subject", "text", "key", "url", "_html", "_markdown", "_render_other")

    def __init__(self, kind: str, subject: str, text: str, key: str, html: str | None = None,
                 markdown: str | None = None, render_other: Callable[[str], str] | None = None,
                 url: str | None = None):
        self.kind, self.subject, self.text, self.key = kind, subject, text, key
        self.url = url  # the action link: a WeCom card opens it
        self._html, self._markdown, self._render_other = html, markdown, render_other

    @property
    def tag(self) -> str:
        """A short label for the delivery, shown in the message so a repeat is recognisable."""
        return hashlib.sha1(self.key.encode()).hexdigest()[:8]

    @property
    def html(self) -> str | None:
        if self._html is None and self._render_other is not None:
            self._html = self._render_other("html")
        return self._html

    def card(self) -> str | None:
        """The few lines of a WeCom `textcard` (its own template), when this kind has one."""
        if self._render_other is None:
            return None
        try:
            return self._render_other("card")
        except LookupError:  # jinja2's TemplateNotFound: this kind goes as markdown
            return None

    @property
    def markdown(self) -> str | None:
        if self._markdown is None and self._render_other is not None:
            self._markdown = self._render_other("md")
        return self._markdown


@lru_cache(maxsize=16)
def _environment(user_dir: str | None, markdown: bool = False):
    """Templates from the user's directory first, then the bundled ones. HTML is autoescaped; in
    markdown templates every value is escaped so a title cannot inject formatting."""
    from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

    from .markdown import md_escape

    loaders = [FileSystemLoader(user_dir)] if user_dir else []
    loaders.append(FileSystemLoader(str(TEMPLATES)))
    env = Environment(loader=ChoiceLoader(loaders), undefined=StrictUndefined,
                      autoescape=lambda name: bool(name) and name.endswith((".html.j2", ".card.j2")),
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                      finalize=md_escape if markdown else None)
    env.filters["cn_date"] = lambda d: f"{d.year}年{d.month}月{d.day}日"
    return env


def render(kind: str, context: dict[str, Any], key: str, user_dir: str | None = None,
           url: str | None = None) -> Message:
    """Render the subject, plain text, HTML and WeCom markdown of one message kind. `url` is where a
    WeCom card leads (default: the context's action link)."""
    env = _environment(user_dir)
    ctx = {**context, "kind_name": KIND_NAMES.get(kind, kind),
           "tag": hashlib.sha1(key.encode()).hexdigest()[:8], "key_": key}
    # the subject is one line: CR/LF and runs of spaces collapse (no header injection)
    subject = " ".join(env.get_template(f"{kind}.subject.j2").render(ctx).split())
    ctx["subject"] = subject
    text = env.get_template(f"{kind}.txt.j2").render(ctx)

    def render_other(fmt: str) -> str:  # most messages need only one of these: render on demand
        return _environment(user_dir, markdown=fmt == "md").get_template(f"{kind}.{fmt}.j2").render(ctx)

    return Message(kind, subject, text, key, render_other=render_other,
                   url=url if url is not None else context.get("action_url"))
