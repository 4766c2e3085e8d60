"""Where duban keeps its files: evidence, the generated secret key. One place decides."""

from __future__ import annotations

import os
from pathlib import Path

from .settings import Settings


def data_dir(settings: Settings, create: bool = True) -> Path:
    """`DUBAN_DATA_DIR`, else a `data` folder beside the SQLite file, else `./data`; made 0700."""
    configured = settings.get("DUBAN_DATA_DIR")
    if configured:
        path = Path(configured)
    elif settings.database_url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        db = make_url(settings.database_url).database
        path = Path(db).resolve().parent / "data" if db and db != ":memory:" else Path.cwd() / "data"
    else:
        path = Path.cwd() / "data"
    if create and not path.is_dir():
        old = os.umask(0o077)
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        finally:
            os.umask(old)
    return path
