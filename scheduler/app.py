"""What every command needs: settings, the clock, the database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from .clock import parse_now
from .settings import Settings, load_settings


class App:
    def __init__(self, now_text: str | None = None, settings: Settings | None = None, org: str = "default",
                 org_limited: bool = False):
        self.settings = settings or load_settings()
        self.now: datetime = parse_now(now_text, self.settings.tz)
        self.org = org  # the branch a command works on
        self.org_limited = org_limited  # --org/DUBAN_ORG given: the scheduler works on this branch only

    @cached_property
    def engine(self) -> Engine:
        from .db import make_engine

        return make_engine(self.settings.database_url)

    def database_exists(self) -> bool:
        """False for a SQLite file not yet created (so read-only commands don't create one)."""
        url = self.settings.database_url
        if url.startswith("sqlite"):
            from sqlalchemy.engine import make_url

            path = make_url(url).database
            return bool(path) and (path == ":memory:" or os.path.exists(path))
        return True

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction on an initialised, up-to-date database."""
        from .db import require_schema, session_scope

        require_schema(self.engine)
        with session_scope(self.engine) as s:
            yield s
