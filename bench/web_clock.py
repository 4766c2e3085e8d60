"""A fixed "now" for benchmarks of the workbench (the pages show the state at that instant)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def fixed_clock(text: str, tz: str = "Asia/Shanghai"):
    now = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))
    return lambda: now
