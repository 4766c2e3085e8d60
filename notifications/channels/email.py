"""Email over SMTP: SSL (465), STARTTLS (587) or plain, with the provider's authorization code.

Failures follow RFC 5321: 4xx and connection errors are transient, 5xx permanent. A message whose
DATA was answered 250 is delivered, even if closing the connection fails afterwards (QQ Mail).
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate

from rules.text import clean_text

from ..message import Message, Recipient
from .base import ChannelDisabled, ChannelError, SendResult

SECURITY = ("ssl", "starttls", "none")


class EmailChannel:
    name = "email"
    label = "邮件"

    def __init__(self, host: str, port: int | None = None, user: str | None = None, password: str | None = None,
                 security: str = "ssl", sender: str | None = None, timeout: float = 30.0):
        from ..redact import register_secret

        register_secret(password)
        if security not in SECURITY:
            raise ValueError(f"DUBAN_SMTP_SECURITY 应为 ssl、starttls 或 none，不能是“{security}”")
        self.host, self.user, self._password, self.security = host, user, password, security
        self.port = port or {"ssl": 465, "starttls": 587, "none": 25}[security]
        self.sender = sender or user or f"duban@{host}"
        self.timeout = timeout

    def __repr__(self) -> str:  # never show the password
        return f"EmailChannel({self.host}:{self.port}, {self.security})"

    def reaches(self, person: Recipient) -> bool:
        return bool(person.email)

    def build(self, message: Message, person: Recipient) -> EmailMessage:
        msg = EmailMessage()
        # headers show what people wrote: no control characters (a newline would even be refused)
        msg["Subject"] = clean_text(message.subject)
        msg["From"] = formataddr(("督办提醒", self.sender))
        msg["To"] = formataddr((clean_text(person.name), person.email))
        msg["Date"] = formatdate(localtime=True)
        domain = self.sender.rpartition("@")[2] or "duban.local"
        # stable per delivery: a resend after a crash is recognisable as the same message
        msg["Message-ID"] = f"<duban.{hashlib.sha1(message.key.encode()).hexdigest()[:20]}@{domain}>"
        msg.set_content(message.text)
        if message.html:
            msg.add_alternative(message.html, subtype="html")
        return msg

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        return smtp

    def send(self, message: Message, person: Recipient) -> SendResult:
        msg = self.build(message, person)
        try:
            smtp = self._connect()
        except (OSError, smtplib.SMTPException) as e:
            raise ChannelError(f"无法连接邮件服务器 {self.host}:{self.port}（{_reason(e)}）") from None
        try:
            if self.user and self._password:
                smtp.login(self.user, self._password)
            refused = smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as e:
            raise ChannelDisabled(f"邮件服务器拒绝登录（{e.smtp_code}）：请检查 DUBAN_SMTP_USER 和 DUBAN_SMTP_PASSWORD"
                                  "（多数邮箱要填授权码）") from None
        except smtplib.SMTPRecipientsRefused as e:
            codes = {addr: code for addr, (code, _msg) in e.recipients.items()}
            permanent = all(code >= 500 for code in codes.values())
            raise ChannelError(f"收件人被邮件服务器拒收：{_codes(codes)}", permanent=permanent,
                               detail={"refused": codes}) from None
        except smtplib.SMTPResponseException as e:
            raise ChannelError(f"邮件服务器返回错误 {e.smtp_code}（{_text(e.smtp_error)}）",
                               permanent=e.smtp_code >= 500) from None
        except (OSError, smtplib.SMTPException) as e:
            raise ChannelError(f"发送邮件时连接中断（{_reason(e)}）") from None
        finally:
            _quit_quietly(smtp)
        detail = {"message_id": msg["Message-ID"]}
        if refused:
            detail["refused"] = {addr: code for addr, (code, _m) in refused.items()}
        return SendResult(detail)


def _quit_quietly(smtp: smtplib.SMTP) -> None:
    """The message is already accepted; an error while closing changes nothing."""
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:200]


def _text(b: bytes | str) -> str:
    return (b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b))[:200]


def _codes(codes: dict[str, int]) -> str:
    return "、".join(f"{a}（{c}）" for a, c in codes.items())
