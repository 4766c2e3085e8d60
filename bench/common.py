"""What the benchmarks share: fresh databases, the duban command, PostgreSQL and file-system facts."""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from scheduler.db import make_engine, upgrade


def pg_available(url: str | None) -> str | None:
    """None when PostgreSQL answers, else why not."""
    if not url:
        return "no URL"
    import sqlalchemy as sa

    try:
        e = sa.create_engine(url)
        with e.connect() as c:
            c.execute(text("select 1"))
        e.dispose()
        return None
    except (OperationalError, ImportError) as exc:
        return str(getattr(exc, "orig", exc)).strip().splitlines()[0][:120]


def pg_version(url: str) -> str:
    import sqlalchemy as sa

    e = sa.create_engine(url)
    with e.connect() as c:
        v = c.execute(text("show server_version")).scalar()
    e.dispose()
    return v.split()[0]


def fs_type(path: str) -> str:
    """The filesystem the temp directory is on (SQLite's commits cost what its fsync costs)."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def duban_exe() -> list[str]:
    exe = Path(sys.executable).with_name("duban")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("duban")
    return [found] if found else [sys.executable, "-m", "scheduler.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
    env.update(extra)
    return env


class Db:
    """A fresh database: a SQLite file in the temp directory, or a new PostgreSQL schema."""

    live: list[Db] = []  # dropped at the end whatever happens

    def __init__(self, kind: str, tmp: str, name: str, pg_base: str | None = None):
        self.kind, self.schema, self.dropped = kind, None, False
        Db.live.append(self)
        if kind == "sqlite":
            self.path = os.path.join(tmp, f"{name}-{uuid.uuid4().hex[:8]}.db")
            self.url = f"sqlite:///{self.path}"
        else:
            import sqlalchemy as sa

            self.schema = f"bench_{name}_{uuid.uuid4().hex[:8]}".lower()  # unquoted in search_path
            self._admin = sa.create_engine(pg_base)
            with self._admin.begin() as c:
                c.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            sep = "&" if "?" in pg_base else "?"
            self.url = f"{pg_base}{sep}options=-csearch_path%3D{self.schema}"
        self.engine = make_engine(self.url)
        upgrade(self.engine)

    def size(self) -> str:
        if self.kind == "sqlite":
            n = sum(os.path.getsize(self.path + s) for s in ("", "-wal") if os.path.exists(self.path + s))
        else:
            with self.engine.connect() as c:
                n = c.execute(text("select sum(pg_total_relation_size(format('%I.%I', schemaname, tablename)))"
                                   " from pg_tables where schemaname = :s"), {"s": self.schema}).scalar()
        return f"{float(n or 0) / 1e6:,.0f} MB"

    def drop(self) -> None:
        if self.dropped:
            return
        self.dropped = True
        if hasattr(self, "engine"):
            self.engine.dispose()
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.remove(self.path + suffix)
        if self.schema:
            for attempt in range(3):  # the server may have been restarted under us: try on a fresh connection
                try:
                    with self._admin.begin() as c:
                        c.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
                    break
                except OperationalError:
                    self._admin.dispose()
                    if attempt == 2:
                        raise
                    time.sleep(2)
            self._admin.dispose()
