"""Settings from the environment and `.env` (every name starts with DUBAN_)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rules.errors import DubanError

DEFAULT_DATABASE_URL = "sqlite:///duban.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SECRET_NAMES = ("DUBAN_SMTP_PASSWORD", "DUBAN_WECOM_ROBOT_KEY", "DUBAN_WECOM_CORP_SECRET")


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    timezone: str = "Asia/Shanghai"
    digest_to: str = "secretary"
    digest_at: str = "08:30"
    env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def get(self, name: str, default: str | None = None) -> str | None:
        v = self.env.get(name, default)
        return v if v not in ("", None) else default


def load_settings(environ: dict[str, str] | None = None, dotenv: bool = True) -> Settings:
    """Read DUBAN_* from the environment; a `.env` in the working directory fills what is unset."""
    if dotenv and environ is None:
        from dotenv import find_dotenv, load_dotenv

        path = find_dotenv(usecwd=True)
        if path:
            load_dotenv(path, override=False)
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k.startswith("DUBAN_")}
    tz = env.get("DUBAN_TIMEZONE") or "Asia/Shanghai"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise DubanError(f"设置 DUBAN_TIMEZONE 的时区“{tz}”无效，例如 Asia/Shanghai") from None
    level = env.get("DUBAN_LOG_LEVEL")
    if level and level.strip().upper() not in LOG_LEVELS:
        raise DubanError(f"设置 DUBAN_LOG_LEVEL 的日志级别“{level}”无效，可用：{'、'.join(LOG_LEVELS)}")
    return Settings(
        database_url=env.get("DUBAN_DATABASE_URL") or DEFAULT_DATABASE_URL,
        timezone=tz,
        digest_to=env.get("DUBAN_DIGEST_TO") or "secretary",
        digest_at=env.get("DUBAN_DIGEST_AT") or "08:30",
        env=env,
    )
