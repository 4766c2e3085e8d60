"""Text a user writes (titles, names, notes) and what duban prints: control characters and lengths.

Control characters (Unicode Cc: NUL, BEL, ESC, the C1 range…) and the bidi embeddings, overrides
and isolates can rewrite a terminal, hide text in a spreadsheet or disguise a title, so they are
refused on input and stripped on output. Newlines and tabs are allowed in multi-line texts only.
"""

from __future__ import annotations

import re

CONTROL_CHARS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"  # Cc without \t \n, and bidi controls
UNSAFE_MULTILINE = re.compile(f"[{CONTROL_CHARS}]")
UNSAFE_LINE = re.compile(f"[\t\n{CONTROL_CHARS}]")

# WeCom user ids: 1–64 of letters, digits, _ - . @ (never @all, which would reach everybody)
_WECOM_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
# a mainland mobile number, optionally written with +86 / 86 in front
_MOBILE_RE = re.compile(r"(?:\+?86)?(1[3-9]\d{9})")


def clean_text(text: str, multiline: bool = False) -> str:
    """`text` without control characters (newlines and tabs kept when `multiline`): for output."""
    pattern = UNSAFE_MULTILINE if multiline else UNSAFE_LINE
    return pattern.sub("", text) if pattern.search(text) else text


def text_problem(text: str, limit: int, multiline: bool = False) -> str | None:
    """What is wrong with a user's text, in Chinese, or None."""
    m = (UNSAFE_MULTILINE if multiline else UNSAFE_LINE).search(text)
    if m:
        where = "（换行只能用在说明 description 和备注里）" if m.group() == "\n" else ""
        return f"含有不可见的控制字符 U+{ord(m.group()):04X}{where}，请删除后重试"
    if len(text) > limit:
        return f"有 {len(text)} 个字，超过 {limit} 字的上限"
    return None


def check_text(text: str, limit: int, multiline: bool = False) -> str:
    """`text` itself, or ValueError (Chinese) when it has control characters or is too long."""
    problem = text_problem(text, limit, multiline)
    if problem:
        raise ValueError(problem)
    return text


def valid_wecom_id(v: str | None) -> bool:
    return bool(v) and _WECOM_RE.fullmatch(v) is not None and v.lower() != "@all"


def mobile_number(v: str | None) -> str | None:
    """The 11 digits of a mainland mobile number (+86 / 86 dropped), or None when it is not one."""
    m = _MOBILE_RE.fullmatch(v or "")
    return m.group(1) if m else None
