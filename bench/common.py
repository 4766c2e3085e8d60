"""What the benchmarks share: is PostgreSQL there, which version, which file system."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import OperationalError


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
