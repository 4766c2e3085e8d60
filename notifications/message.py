"""A message for one person, rendered from the Jinja2 templates (which a user may override)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

KIND_NAMES = {"reminder": "提醒", "overdue": "逾期提醒", "escalation": "督办通知", "digest": "每日汇总",
              "redate": "截止日期调整", "test": "测试消息"}
TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Recipient:
    id: str
    name: str
    email: str | None = None
    wecom: str | None = None
    mobile: str | None = None


@dataclass(frozen=True)
class Message:
    """What one delivery says. `key` is the delivery's natural key: a resend carries the same tag."""

    kind: str
    subject: str
    text: str
    key: str
    html: str | None = None
    markdown: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        """A short label for the delivery, shown in the message so a repeat is recognisable."""
        return hashlib.sha1(self.key.encode()).hexdigest()[:8]


@lru_cache(maxsize=16)
def _environment(user_dir: str | None, markdown: bool = False):
    """Templates from the user's directory first, then the bundled ones. HTML is autoescaped; in
    markdown templates every value is escaped so a title cannot inject formatting."""
    from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

    from .markdown import md_escape

    loaders = [FileSystemLoader(user_dir)] if user_dir else []
    loaders.append(FileSystemLoader(str(TEMPLATES)))
    env = Environment(loader=ChoiceLoader(loaders), undefined=StrictUndefined,
                      autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                      finalize=md_escape if markdown else None)
    env.filters["cn_date"] = lambda d: f"{d.year}年{d.month}月{d.day}日"
    return env


def render(kind: str, context: dict[str, Any], key: str, user_dir: str | None = None) -> Message:
    """Render the subject, plain text, HTML and WeCom markdown of one message kind."""
    env = _environment(user_dir)
    ctx = {**context, "kind_name": KIND_NAMES.get(kind, kind),
           "tag": hashlib.sha1(key.encode()).hexdigest()[:8], "key_": key}
    # the subject is one line: CR/LF and runs of spaces collapse (no header injection)
    subject = " ".join(env.get_template(f"{kind}.subject.j2").render(ctx).split())
    ctx["subject"] = subject
    text = env.get_template(f"{kind}.txt.j2").render(ctx)
    html = env.get_template(f"{kind}.html.j2").render(ctx)
    markdown = _environment(user_dir, markdown=True).get_template(f"{kind}.md.j2").render(ctx)
    return Message(kind, subject, text, key, html=html, markdown=markdown)
