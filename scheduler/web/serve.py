"""Serving the workbench with uvicorn: alone (`duban web`) or beside the scheduler (`duban run`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from rules.errors import DubanError

from ..settings import Settings

log = logging.getLogger("duban.web")
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8080


def web_address(settings: Settings, host: str | None = None, port: int | None = None) -> tuple[str, int] | None:
    """(host, port) to listen on, or None when `DUBAN_WEB_PORT=off`."""
    raw = settings.get("DUBAN_WEB_PORT")
    if port is None and raw is not None and raw.strip().lower() in ("off", "no", "false", "0"):
        return None
    if port is None:
        try:
            port = int(raw) if raw else DEFAULT_PORT
        except ValueError:
            raise DubanError(f"设置 DUBAN_WEB_PORT 的值“{raw}”无效：应为端口号（如 8080），或 off 关闭工作台") from None
    if not 0 < port < 65536:
        raise DubanError(f"端口 {port} 无效：应在 1–65535 之间")
    return host or settings.get("DUBAN_WEB_HOST") or DEFAULT_HOST, port


def make_server(settings: Settings, engine, clock: Callable[[], datetime], host: str, port: int):
    import uvicorn

    from .app import create_app

    app = create_app(settings, engine, clock)
    # we say in Chinese where the workbench listens; uvicorn's own English start/stop lines only at DEBUG
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    # access lines come from our own middleware (no query strings, no tokens), not uvicorn's
    config = uvicorn.Config(app, host=host, port=port, access_log=False, log_config=None, server_header=False,
                            proxy_headers=bool(settings.get("DUBAN_TRUST_PROXY")), lifespan="off")
    return uvicorn.Server(config)


def start_in_thread(server) -> threading.Thread:
    """Run the server beside the scheduler; `stop(server, thread)` ends it."""
    thread = threading.Thread(target=server.run, name="duban-web", daemon=True)
    thread.start()
    for _ in range(200):  # wait until it listens (or failed), up to 10 s
        if server.started or not thread.is_alive():
            break
        thread.join(0.05)
    if not server.started:
        raise DubanError(f"工作台无法在 {server.config.host}:{server.config.port} 上启动（端口可能已被占用）。"
                         "可在 .env 中设置 DUBAN_WEB_PORT 换一个端口，或设为 off 关闭工作台")
    return thread


def stop(server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(10)
