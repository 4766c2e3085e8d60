"""Sign-in links, sessions and CSRF tokens.

Sessions live in the database (the cookie carries a random value, the table its SHA-256), so
signing out really ends one. Sign-in links are random, single-use and valid 15 minutes. A form's
CSRF token is `nonce.mac`: the MAC binds it to the session (or to the action link it was rendered
for), and the nonce doubles as the request id that stops a second click from recording twice.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from ..models import WebSessionRow, WebTokenRow
from ..signing import new_token, token_hash

LOGIN_TTL = timedelta(minutes=15)
SESSION_TTL = timedelta(days=14)
SESSION_IDLE = timedelta(days=3)
COOKIE = "duban_session"


def issue_login_token(s: Session, org: str, person: str, now: datetime) -> str:
    token, digest = new_token()
    s.add(WebTokenRow(id=digest, purpose="login", org=org, person=person, created_at=now,
                      expires_at=now + LOGIN_TTL))
    return token


def peek_login_token(s: Session, token: str, now: datetime) -> WebTokenRow | None:
    """The unused, unexpired sign-in token (GET: shows the button, uses nothing)."""
    row = s.get(WebTokenRow, token_hash(token))
    if row is None or row.purpose != "login" or row.used_at is not None or row.revoked_at is not None:
        return None
    return row if row.expires_at and now < row.expires_at else None


def use_login_token(s: Session, token: str, now: datetime) -> WebTokenRow | None:
    """Spend the token: a compare-and-set, so two presses of the button sign in once."""
    row = peek_login_token(s, token, now)
    if row is None:
        return None
    r = s.execute(update(WebTokenRow).where(WebTokenRow.id == row.id, WebTokenRow.used_at.is_(None))
                  .values(used_at=now))
    return row if r.rowcount == 1 else None


def start_session(s: Session, org: str, person: str, via: str, now: datetime) -> str:
    """A new session (a fresh value at every sign-in: a planted cookie is never promoted)."""
    value = secrets.token_urlsafe(32)
    s.add(WebSessionRow(id=token_hash(value), org=org, person=person, csrf=secrets.token_hex(32), via=via,
                        created_at=now, seen_at=now, expires_at=now + SESSION_TTL))
    return value


def load_session(s: Session, value: str | None, now: datetime) -> WebSessionRow | None:
    if not value or len(value) > 100:
        return None
    row = s.get(WebSessionRow, token_hash(value))
    if row is None or row.ended_at is not None or now >= row.expires_at or now - row.seen_at > SESSION_IDLE:
        return None
    if now - row.seen_at > timedelta(minutes=5):  # not a write per page view
        row.seen_at = now
    return row


def end_session(s: Session, value: str | None, now: datetime) -> None:
    if value:
        s.execute(update(WebSessionRow).where(WebSessionRow.id == token_hash(value)).values(ended_at=now))


def csrf_token(binding: str, key: str) -> str:
    nonce = secrets.token_urlsafe(12)
    return f"{nonce}.{_mac(binding, key, nonce)}"


def check_csrf(value: str | None, binding: str, key: str) -> str | None:
    """The form's nonce (its request id) when the token is valid for this binding, else None."""
    if not value or len(value) > 200 or "." not in value:
        return None
    nonce, _, mac = value.partition(".")
    return nonce if hmac.compare_digest(mac, _mac(binding, key, nonce)) else None


def _mac(binding: str, key: str, nonce: str) -> str:
    return hmac.new(key.encode(), f"csrf|{binding}|{nonce}".encode(), hashlib.sha256).hexdigest()[:32]
