"""Logging for every command: stderr, one format, secrets redacted from every record."""

from __future__ import annotations

import logging


def setup_logging(level: str | None) -> None:
    """Log to stderr at `level`; every record passes the secret redaction filter."""
    from notifications.redact import install_log_redaction

    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel((level or "INFO").strip().upper())  # checked by load_settings
    for chatty in ("apscheduler", "alembic"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    install_log_redaction()
