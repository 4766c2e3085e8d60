"""The secret that signs action links and sessions, and the signed action links themselves.

An action link carries (organisation, person, occurrence) signed with itsdangerous and a salt of
its own, so a token made for one purpose can never be used for another. It has no expiry of its
own: it is valid while the occurrence is open and for 30 days after it closes, which only the
database can tell (`scheduler.actions.check_link`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from notifications.redact import register_secret

from .paths import data_dir
from .settings import Settings

KEY_FILE = "secret.key"
ACTION_SALT = "duban.action-link.v1"
DEFAULT_BASE_URL = "http://127.0.0.1:8080"
ACTION_PATH = "/a/"


def secret_key(settings: Settings) -> str:
    """`DUBAN_SECRET_KEY`, else the key generated on first use and kept in the data folder (0600)."""
    key = settings.get("DUBAN_SECRET_KEY")
    if not key:
        key = _stored_key(str(data_dir(settings)))
    register_secret(key)
    return key


@lru_cache(maxsize=4)
def _stored_key(folder: str) -> str:
    path = Path(folder) / KEY_FILE
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key + "\n")
    try:
        os.link(tmp, path)  # two processes starting at once: the first key wins, the other reads it
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
    finally:
        os.unlink(tmp)
    return key


def base_url(settings: Settings) -> str:
    return (settings.get("DUBAN_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def is_https(settings: Settings) -> bool:
    return base_url(settings).startswith("https://")


@dataclass(frozen=True)
class ActionLink:
    org: str
    person: str
    key: str


class Signer:
    """Signs and reads action links for one secret key."""

    def __init__(self, key: str):
        from itsdangerous import URLSafeSerializer

        # no timestamp: the same message rendered again (a resend) carries the same link, which
        # WeCom's duplicate check needs; how long a link works is the occurrence's state's business
        self._action = URLSafeSerializer(key, salt=ACTION_SALT)

    def action_token(self, org: str, person: str, occurrence_key: str) -> str:
        return self._action.dumps([org, person, occurrence_key])

    def read_action(self, token: str) -> ActionLink | None:
        """The link's (org, person, key), or None when tampered with or made with another key."""
        from itsdangerous import BadData

        try:
            org, person, key = self._action.loads(token)
        except (BadData, ValueError, TypeError):
            return None
        if not all(isinstance(v, str) for v in (org, person, key)):
            return None
        return ActionLink(org, person, key)


@lru_cache(maxsize=4)
def signer_for(key: str) -> Signer:
    return Signer(key)


def signer(settings: Settings) -> Signer:
    return signer_for(secret_key(settings))


def action_links(settings: Settings):
    """(org, person, occurrence key) -> the signed action link every reminder carries."""
    prefix, sign = base_url(settings) + ACTION_PATH, signer(settings)
    return lambda org, person, key: prefix + quote(sign.action_token(org, person, key))


def new_token() -> tuple[str, str]:
    """A random token for a link, and the SHA-256 that is all the database keeps of it."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
