"""A real SMTP server on loopback (aiosmtpd), recording what it accepts, able to fail on purpose."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content()


@dataclass
class Handler:
    messages: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address → SMTP reply, e.g. "550 5.1.1 no such user"
    data_reply: str | None = None  # reply to DATA instead of 250 (e.g. "451 4.3.0 try later")
    hold_after_data: threading.Event | None = None  # store the message, then wait before answering
    received_event: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg))
        self.received_event.set()
        if self.hold_after_data is not None:
            import asyncio

            while not self.hold_after_data.is_set():
                await asyncio.sleep(0.02)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address in m.recipients]


class SMTPServer:
    def __init__(self):
        self.handler = Handler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.handler.hold_after_data is not None:
            self.handler.hold_after_data.set()
        self.controller.stop()

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def env(self) -> dict[str, str]:
        """The duban settings that send mail through this server."""
        return {"DUBAN_SMTP_HOST": "127.0.0.1", "DUBAN_SMTP_PORT": str(self.port), "DUBAN_SMTP_SECURITY": "none",
                "DUBAN_SMTP_FROM": "duban@example.cn"}
