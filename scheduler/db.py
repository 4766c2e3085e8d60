"""Engine, sessions and schema migrations (alembic, run programmatically)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from rules.errors import DubanError

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseError(DubanError):
    exit_code = 1


def make_engine(url: str) -> Engine:
    """An engine that never logs bound parameters (they may hold personal data)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, hide_parameters=True, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            _secure_sqlite_file(engine)
        else:
            engine = create_engine(url, hide_parameters=True, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as e:
        raise DatabaseError(f"无法使用数据库地址 DUBAN_DATABASE_URL（{type(e).__name__}）。"
                            f"SQLite 写成 sqlite:///duban.db，PostgreSQL 写成 postgresql+psycopg://用户@主机/库名") from None
    return engine


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut may undo the last commit (a resend), never corrupt
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _secure_sqlite_file(engine: Engine) -> None:
    """Create the SQLite file readable by its owner only (0600)."""
    path = engine.url.database
    if path and path != ":memory:" and not os.path.exists(path):
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise DatabaseError(f"数据库文件所在目录不存在：{parent}")
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)


@lru_cache(maxsize=8)
def _sessionmaker(engine: Engine) -> sessionmaker:
    """One factory per engine: building one per transaction costs more than the transaction."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back on any error."""
    session = _sessionmaker(engine)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def lock_for_write(s: Session) -> None:
    """Make the session's transaction a writer now, before it reads what it will change.

    pysqlite starts a transaction only at the first INSERT/UPDATE, so reads before it see an older
    commit, and two processes could both act on that. BEGIN IMMEDIATE takes SQLite's one write lock
    up front (others wait, up to the busy timeout). PostgreSQL needs nothing here: callers lock rows."""
    if s.get_bind().dialect.name != "sqlite":
        return
    conn = s.connection()
    if not conn.connection.dbapi_connection.in_transaction:  # already writing: the lock is held
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _alembic_config(connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest migration; returns (revision before, revision after)."""
    from alembic import command

    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # several instances starting at once: one migrates, the others wait and find it done
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('duban-migrations'))"))
            from alembic.runtime.migration import MigrationContext

            before = MigrationContext.configure(conn).get_current_revision()
            command.upgrade(_alembic_config(conn), "head")
        return before, head_revision()
    except OperationalError as e:
        raise DatabaseError(f"无法连接或写入数据库：{_short(e)}") from None


def require_schema(engine: Engine) -> None:
    """Refuse to work on a database that `duban init` has not created or upgraded."""
    try:
        rev = current_revision(engine)
    except OperationalError as e:
        raise DatabaseError(f"无法连接数据库：{_short(e)}。请检查 DUBAN_DATABASE_URL") from None
    if rev is None:
        if inspect(engine).get_table_names():
            raise DatabaseError("数据库里已有别的表，但不是 duban 的数据库。请检查 DUBAN_DATABASE_URL")
        raise DubanError("数据库尚未初始化：请先运行 duban init")
    if rev != head_revision():
        raise DubanError("数据库结构需要升级：请先运行 duban init（会自动迁移，不会丢失数据）")


def _short(e: Exception) -> str:
    """The database's own reason, without SQL or parameters."""
    orig = getattr(e, "orig", None)
    return str(orig or e).strip().splitlines()[0][:200]


def safe_url(url: str) -> str:
    """The database URL without its password, for output."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as a placeholder
        return "（无法解析的 DUBAN_DATABASE_URL）"


def backup_sqlite(engine: Engine, out: str) -> int:
    """Copy a live SQLite database with SQLite's online backup API (safe while the service runs).
    Returns the size of the copy in bytes."""
    import sqlite3

    src_path = engine.url.database
    if os.path.exists(out):
        raise DubanError(f"{out} 已存在：请换一个文件名，或先删除它")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise DubanError(f"{out} 所在的目录不存在：请先创建它")
    src = sqlite3.connect(src_path, timeout=30)
    try:
        fd = os.open(out, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)  # the copy holds personal data
        os.close(fd)
        dst = sqlite3.connect(out)
        try:
            with dst:
                src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    return os.path.getsize(out)
