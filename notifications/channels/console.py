"""The console/file channel: the default when no email or WeCom is configured."""

from __future__ import annotations

import sys
from typing import TextIO

from ..message import KIND_NAMES, Message, Recipient
from .base import SendResult


class ConsoleChannel:
    """Writes each message to standard output, or appends it to a file (DUBAN_CONSOLE_FILE)."""

    name = "console"
    label = "控制台"

    def __init__(self, path: str | None = None, stream: TextIO | None = None):
        self.path = path
        self.stream = stream

    def reaches(self, person: Recipient) -> bool:
        return True

    def send(self, message: Message, person: Recipient) -> SendResult:
        block = (f"──── {KIND_NAMES.get(message.kind, message.kind)} → {person.name}（{person.id}） ────\n"
                 f"主题：{message.subject}\n{message.text.rstrip()}\n\n")
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(block)
        else:
            out = self.stream or sys.stdout
            out.write(block)
            out.flush()
        return SendResult({"file": self.path} if self.path else {})
