"""Which channels are configured, and which of them reach a person."""

from __future__ import annotations

from notifications.channels.base import Channel
from notifications.channels.console import ConsoleChannel
from notifications.message import Recipient
from rules.errors import DubanError
from rules.model import Person

from .settings import Settings


def configured_channels(settings: Settings) -> list[Channel]:
    """The channels whose settings are present, in order of preference; the console comes last."""
    channels: list[Channel] = []
    host = settings.get("DUBAN_SMTP_HOST")
    if host:
        from notifications.channels.email import EmailChannel

        port = settings.get("DUBAN_SMTP_PORT")
        try:
            channels.append(EmailChannel(
                host, int(port) if port else None, settings.get("DUBAN_SMTP_USER"), settings.get("DUBAN_SMTP_PASSWORD"),
                settings.get("DUBAN_SMTP_SECURITY", "ssl"), settings.get("DUBAN_SMTP_FROM")))
        except ValueError as e:
            raise DubanError(f"邮件设置有误：{e}") from None
    channels.append(ConsoleChannel(settings.get("DUBAN_CONSOLE_FILE")))
    return channels


def channels_for(person: Recipient, channels: list[Channel]) -> list[Channel]:
    """The channels that reach this person, best first; the console when nothing else does."""
    reaching = [c for c in channels if c.name != "console" and c.reaches(person)]
    return reaching or [c for c in channels if c.name == "console"]


def recipient(person_id: str, people: dict[str, Person]) -> Recipient:
    p = people.get(person_id)
    if p is None:
        return Recipient(person_id, person_id)
    return Recipient(p.id, p.name, p.email, p.wecom, p.mobile)
