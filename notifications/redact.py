"""Keep secrets out of logs and messages: redact known secret values wherever text is produced."""

from __future__ import annotations

import logging
import re

_SECRETS: set[str] = set()
_QUERY_SECRET = re.compile(r"(\b(?:key|corpsecret|access_token)=)[^&\s\"']+", re.IGNORECASE)
# the token in an action link, a sign-in link or a calendar feed address (the path is the secret)
_TOKEN_PATH = re.compile(r"(/(?:a|login|cal)/)(?!wecom\b)[A-Za-z0-9._~%-]{20,}")


def register_secret(value: str | None) -> None:
    """Remember a secret value (a password, a webhook key, a corp secret) so it is always redacted."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """The text with every registered secret and every secret-looking URL parameter replaced by ***."""
    for s in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(s, "***")
    return _TOKEN_PATH.sub(r"\1***", _QUERY_SECRET.sub(r"\1***", text))


class RedactingFilter(logging.Filter):
    """A log filter that redacts the formatted message (and any exception text) of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if record.exc_info:
            formatter = logging.Formatter()
            clean += "\n" + redact(formatter.formatException(record.exc_info))
            record.exc_info = None
            record.exc_text = None
        if clean != message or record.args:
            record.msg, record.args = clean, ()
        return True


def install_log_redaction() -> None:
    """Redact on every handler of the root logger; silence libraries that log request URLs."""
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for noisy in ("urllib3", "requests"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
