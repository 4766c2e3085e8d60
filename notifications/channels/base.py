"""The channel interface: `reaches(person)` and `send(message, person)`, failures as `ChannelError`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..message import Message, Recipient


class ChannelError(Exception):
    """A send that failed. `permanent` failures are not retried (a refused address, a bad password)."""

    def __init__(self, message: str, *, permanent: bool = False, detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.detail = detail or {}


class ChannelDisabled(ChannelError):
    """A failure that makes the whole channel unusable until its settings are fixed
    (an invalid webhook key, a wrong secret or password)."""

    def __init__(self, message: str, detail: dict[str, Any] | None = None):
        super().__init__(message, permanent=True, detail=detail)


@dataclass
class SendResult:
    """A send the channel accepted; `detail` holds what is worth keeping (message id, refusals)."""

    detail: dict[str, Any] = field(default_factory=dict)


class Channel(Protocol):
    name: str
    label: str  # Chinese, for people

    def reaches(self, person: Recipient) -> bool: ...

    def send(self, message: Message, person: Recipient) -> SendResult: ...
