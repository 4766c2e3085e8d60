"""Where duban keeps its files: evidence, the generated secret key. One place decides."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from rules.errors import DubanError

from .settings import Settings


def data_dir(settings: Settings, create: bool = True) -> Path:
    """DUBAN_DATA_DIR, else `data` beside the SQLite file, else `data` in the working directory;
    created (owner only, 0700) if missing."""
    configured = settings.get("DUBAN_DATA_DIR")
    if configured:
        path = Path(configured).expanduser()
    else:
        path = Path("data")
        url = make_url(settings.database_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            path = Path(url.database).parent / "data"
    path = path.absolute()
    if not create:
        return path
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise DubanError(f"无法创建数据目录 {path}（{e.strerror or e}）。请检查 DUBAN_DATA_DIR 和目录权限") from None
    if not path.is_dir():
        raise DubanError(f"数据目录 {path} 不是目录。请检查 DUBAN_DATA_DIR")
    return path
