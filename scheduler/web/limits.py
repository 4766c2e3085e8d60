"""Rate limits on the workbench's open doors (the sign-in form, action-link POSTs).

Counted with the channels' sliding window (`pacing.reserve`) in the `channel_posts` table, so
several `duban web` processes share one count. Time is the app's clock, so tests can move it.
"""

from __future__ import annotations

import hashlib
import math

from ..db import session_scope
from ..pacing import reserve

# (requests, window in seconds)
LOGIN_PER_ADDRESS = (5, 15 * 60)
LOGIN_PER_EMAIL = (3, 60 * 60)
LINK_PER_ADDRESS = (30, 10 * 60)
LINK_PER_PERSON = (30, 10 * 60)


def bucket(door: str, kind: str, value: str) -> str:
    """`web-login:ip:1.2.3.4`; an email or a person is hashed (no contact details in this table)."""
    if kind != "ip":
        value = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"web-{door}:{kind}:{value[:100]}"


def hit(web, name: str, limit: tuple[int, int]) -> int | None:
    """Count one request in bucket `name`; None while under the limit, else minutes to wait."""
    now_ts = int(web.now().timestamp())
    with session_scope(web.engine) as s:
        retry_at = reserve(s, name, 1, limit[0], limit[1], now_ts)
    return None if retry_at is None else max(1, math.ceil((retry_at - now_ts) / 60))
