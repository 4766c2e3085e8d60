"""Which channels are configured, and which of them reach a person."""

from __future__ import annotations

from dataclasses import dataclass

from notifications.channels.base import Channel
from notifications.channels.console import ConsoleChannel
from notifications.message import Recipient
from notifications.redact import register_secret
from rules.errors import DubanError
from rules.model import Person

from .channel_state import fingerprint
from .settings import SECRET_NAMES, Settings

# the order people are tried in: the most direct channel first, the console when nothing else reaches
PREFERENCE = ("wecom-app", "email", "wecom-robot", "console")


@dataclass(frozen=True)
class ConfiguredChannel:
    channel: Channel
    fingerprint: str  # of its settings: a block on the channel lapses when they change


def configured_channels(settings: Settings) -> list[ConfiguredChannel]:
    """The channels whose settings are present, in order of preference; the console comes last."""
    for name in SECRET_NAMES:
        register_secret(settings.get(name))
    get = settings.get
    out: list[ConfiguredChannel] = []
    try:
        if get("DUBAN_WECOM_CORP_ID") and get("DUBAN_WECOM_CORP_SECRET") and get("DUBAN_WECOM_AGENT_ID"):
            from notifications.channels.wecom_app import WeComAppChannel

            out.append(ConfiguredChannel(
                WeComAppChannel(get("DUBAN_WECOM_CORP_ID"), get("DUBAN_WECOM_CORP_SECRET"), get("DUBAN_WECOM_AGENT_ID"),
                                get("DUBAN_WECOM_API_BASE")),
                fingerprint(get("DUBAN_WECOM_CORP_ID"), get("DUBAN_WECOM_CORP_SECRET"), get("DUBAN_WECOM_AGENT_ID"),
                            get("DUBAN_WECOM_API_BASE"))))
        if get("DUBAN_SMTP_HOST"):
            from notifications.channels.email import EmailChannel

            port = get("DUBAN_SMTP_PORT")
            try:
                port_n = int(port) if port else None
            except ValueError:
                raise ValueError(f"DUBAN_SMTP_PORT 应为数字，不能是“{port}”") from None
            out.append(ConfiguredChannel(
                EmailChannel(get("DUBAN_SMTP_HOST"), port_n, get("DUBAN_SMTP_USER"), get("DUBAN_SMTP_PASSWORD"),
                             get("DUBAN_SMTP_SECURITY", "ssl"), get("DUBAN_SMTP_FROM")),
                # not the password: a person-chosen secret must not be guessable from a stored digest
                # (`duban doctor` lifts a block once the login works again)
                fingerprint(get("DUBAN_SMTP_HOST"), port, get("DUBAN_SMTP_USER"), get("DUBAN_SMTP_SECURITY"))))
        if get("DUBAN_WECOM_ROBOT_KEY"):
            from notifications.channels.wecom_robot import WeComRobotChannel

            out.append(ConfiguredChannel(WeComRobotChannel(get("DUBAN_WECOM_ROBOT_KEY"), get("DUBAN_WECOM_API_BASE")),
                                         fingerprint(get("DUBAN_WECOM_ROBOT_KEY"), get("DUBAN_WECOM_API_BASE"))))
    except ValueError as e:
        raise DubanError(f"渠道设置有误：{e}") from None
    out.append(ConfiguredChannel(ConsoleChannel(get("DUBAN_CONSOLE_FILE")), "console"))
    return out


def channels_for(person: Recipient, channels: list[Channel]) -> list[Channel]:
    """The channels that reach this person, best first; the console when nothing else does."""
    reaching = [c for c in channels if c.name != "console" and c.reaches(person)]
    return reaching or [c for c in channels if c.name == "console"]


def recipient(person_id: str, people: dict[str, Person]) -> Recipient:
    p = people.get(person_id)
    if p is None:
        return Recipient(person_id, person_id)
    return Recipient(p.id, p.name, p.email, p.wecom, p.mobile)
