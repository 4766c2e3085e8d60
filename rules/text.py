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
