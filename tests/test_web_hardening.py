"""The workbench on a bad day: huge and chunked bodies, a full disk, two writers at once, 20 hostile
uploads. A real uvicorn on loopback (in a thread, or `duban web` in its own process), real databases,
plain sockets and `requests` as clients."""

from __future__ import annotations

import select
import socket

import sqlalchemy as sa
from web_support import LINK, Served, csrf_of, setup_branch

MB = 1024 * 1024


def _rows(url: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(sql))]
    finally:
        engine.dispose()


def _link_path(duban, smtp, address: str = "office@example.cn", now: str = "2026-12-12T09:05") -> str:
    assert duban("tick", "--now", now).code == 0
    found = LINK.findall(smtp.handler.to(address)[-1].text)
    assert found
    return found[0].split("8080", 1)[1]


def _read_response(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _upload_head(boundary: str, csrf: str, name: str = "材料.zip") -> bytes:
    return (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="evidence"; filename="{name}"\r\n'
            f"Content-Type: application/zip\r\n\r\n").encode()


# --- the request body, checked while it streams -------------------------------------------------
def test_a_body_announced_too_large_is_refused_before_it_is_read(duban, workdir, smtp, monkeypatch):
    monkeypatch.setenv("DUBAN_EVIDENCE_MAX_MB", "1")  # at most 10 × 1 MB + 1 MB in one request
    setup_branch(duban, workdir)
    path = _link_path(duban, smtp)
    with Served() as web:
        sock = socket.create_connection(("127.0.0.1", web.port))
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     f"Content-Length: {200 * MB}\r\n\r\n".encode())  # and not a byte of the body
        answer = _read_response(sock, timeout=5).decode("utf-8", "replace")
        sock.close()
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "提交的内容太大" in answer and "11 MB" in answer
    assert _rows(duban.state["url"], "SELECT count(*) FROM completions") == [(0,)]


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(duban, workdir, smtp, monkeypatch):
    monkeypatch.setenv("DUBAN_EVIDENCE_MAX_MB", "1")
    setup_branch(duban, workdir)
    path = _link_path(duban, smtp)
    with Served() as web:
        import requests

        csrf = csrf_of(requests.get(web.url + path, timeout=10).text)
        sock = socket.create_connection(("127.0.0.1", web.port))
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        head = _upload_head("b", csrf)
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        sent, piece = 0, b"\0" * 65536
        sock.settimeout(5)
        try:
            while sent < 100 * MB and not select.select([sock], [], [], 0)[0]:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: what we wanted
        answer = _read_response(sock).decode("utf-8", "replace")
        sock.close()
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "提交的内容太大" in answer
    assert sent < 11 * MB + 16 * MB  # the limit, plus what the sockets' buffers hold
    assert _rows(duban.state["url"], "SELECT count(*) FROM completions") == [(0,)]
