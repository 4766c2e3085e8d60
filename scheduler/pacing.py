"""Pacing posts to rate-limited channels (WeCom robot: 20 a minute; a WeCom member: 30 a minute).

A sliding window kept in the database, so several processes together stay under the limit: a post is
reserved before it is made, and refused with the time to try again when the window is full. Stricter
than a token bucket: the limit is never exceeded in any 60 seconds.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from .models import ChannelPostRow


def reserve(s: Session, bucket: str, n: int, limit: int, window: int, now_ts: int) -> int | None:
    """Reserve `n` posts at `now_ts`; None when reserved, else the epoch second when room frees up."""
    if s.get_bind().dialect.name == "postgresql":
        # one reserver per bucket at a time (SQLite serialises writers by itself)
        s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:b))"), {"b": bucket})
    s.execute(delete(ChannelPostRow).where(ChannelPostRow.bucket == bucket, ChannelPostRow.at <= now_ts - 3600))
    # insert first, then count: under SQLite's write lock the count sees every other reservation
    s.add_all([ChannelPostRow(bucket=bucket, at=now_ts) for _ in range(n)])
    s.flush()
    in_window = select(ChannelPostRow.at).where(ChannelPostRow.bucket == bucket, ChannelPostRow.at > now_ts - window)
    used = s.scalar(select(func.count()).select_from(in_window.subquery()))
    if used <= limit:
        return None
    s.rollback()
    times = sorted(s.scalars(in_window.order_by(ChannelPostRow.at)))
    # room for n more once the oldest (used - limit) posts have left the window
    k = max(len(times) + n - limit, 1)
    return (times[k - 1] if k <= len(times) else now_ts) + window
