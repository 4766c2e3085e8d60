"""WeCom markdown: escaping user text, and splitting long messages at line ends within a byte limit."""

from __future__ import annotations

# characters that WeCom markdown would interpret, replaced by full-width look-alikes
_ESCAPES = str.maketrans({"*": "＊", "_": "＿", "`": "｀", "[": "［", "]": "］", "<": "＜", ">": "＞", "#": "＃"})


class MdSafe(str):
    """A value we made ourselves (an action link's URL): written into markdown as it is."""


def md_escape(text: object) -> str:
    if isinstance(text, MdSafe):
        return text
    return str(text).translate(_ESCAPES)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def split_by_bytes(text: str, limit: int) -> list[str]:
    """Chunks of at most `limit` UTF-8 bytes, each made of whole lines (a line longer than the limit,
    which no template produces, is cut at a character boundary as the only exception)."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.rstrip("\n").split("\n"):
        n = utf8_len(line) + 1
        if n > limit:  # a single overlong line: cut it rather than be refused
            b = line.encode("utf-8")[: limit - 4]
            line = b.decode("utf-8", "ignore") + "…"
            n = utf8_len(line) + 1
        if current and size + n > limit:
            chunks.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += n
    if current:
        chunks.append("\n".join(current))
    return chunks
