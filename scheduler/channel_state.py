"""Channels disabled by a permanent failure (an invalid webhook key, a wrong secret), kept in the
database so every instance, `status`, `doctor` and the digest know. A change of the channel's
settings (a different fingerprint) lifts the block."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from .state import get_state, set_state

KEY = "channels_disabled"


def fingerprint(*settings: str | None) -> str:
    """A short one-way digest of a channel's settings: tells a changed key apart, reveals nothing."""
    return hashlib.sha256("\0".join(s or "" for s in settings).encode()).hexdigest()[:12]


def disabled_channels(s: Session) -> dict[str, dict[str, Any]]:
    return dict(get_state(s, KEY, {}) or {})


def disable_channel(s: Session, name: str, label: str, reason: str, fp: str, now: datetime) -> None:
    current = disabled_channels(s)
    current[name] = {"label": label, "reason": reason, "fingerprint": fp, "at": now.isoformat()}
    set_state(s, KEY, current)


def set_disabled(s: Session, value: dict[str, dict[str, Any]]) -> None:
    set_state(s, KEY, value)


def clear_stale(s: Session, fingerprints: dict[str, str]) -> list[str]:
    """Lift blocks whose channel settings changed since; returns the names re-enabled."""
    current = disabled_channels(s)
    lifted = [n for n, v in current.items() if fingerprints.get(n) != v.get("fingerprint")]
    if lifted:
        set_state(s, KEY, {n: v for n, v in current.items() if n not in lifted})
    return lifted
