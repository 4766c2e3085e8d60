"""The workbench on a bad day: huge and chunked bodies, a full disk, two writers at once, 20 hostile
uploads. A real uvicorn on loopback (in a thread, or `duban web` in its own process), real databases,
plain sockets and `requests` as clients."""

from __future__ import annotations

import select
import socket
import time

from conftest import db_rows as _rows
from web_support import LINK, Served, csrf_of, setup_branch

MB = 1024 * 1024



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


# --- `duban web` in its own process ---------------------------------------------------------------
class DubanWeb:
    """`duban web` as a child process on a free port (the test's DUBAN_* settings), until closed."""

    def __init__(self, cwd, now: str = "2026-12-12T10:00", preexec_fn=None):
        import os
        import subprocess
        import sys

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        self.proc = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "web", "--port", str(self.port),
                                      "--now", now], env=env, cwd=cwd, preexec_fn=preexec_fn,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        import requests

        for _ in range(200):
            try:
                requests.get(self.url + "/healthz", timeout=1)
                return
            except requests.ConnectionError:
                assert self.proc.poll() is None, self.proc.stderr.read().decode()
                time.sleep(0.05)
        raise AssertionError("duban web did not start")

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def test_an_upload_on_a_full_disk_says_so_and_records_nothing(duban, workdir, smtp, db_url, monkeypatch):
    import resource

    import requests

    evidence = workdir / "evidence"
    evidence.mkdir()
    monkeypatch.setenv("DUBAN_DATA_DIR", str(evidence))
    duban.state["url"] = db_url
    setup_branch(duban, workdir)
    path = _link_path(duban, smtp)

    def small_disk():  # the child may write no file past 512 KB: a full disk, as the kernel tells it (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))

    web = DubanWeb(workdir, preexec_fn=small_disk)
    try:
        csrf = csrf_of(requests.get(web.url + path, timeout=10).text)
        r = requests.post(web.url + path, data={"csrf": csrf, "note": "见附件"}, timeout=30,
                          files=[("evidence", ("会议记录.txt", "会议记录\n".encode() * 70000, "text/plain"))])
    finally:
        web.close()
    assert r.status_code == 507, r.text
    assert "服务器磁盘已满" in r.text and 'class="error"' in r.text
    assert _rows(db_url, "SELECT count(*) FROM completions") == [(0,)]
    assert _rows(db_url, "SELECT count(*) FROM evidence") == [(0,)]
    assert [p.name for p in evidence.rglob("*") if p.is_file() and p.name != "secret.key"] == []  # no half file


# --- two writers at once ------------------------------------------------------------------------
def _at_once(*calls):
    """Run the calls in threads released together; their results in order."""
    import threading

    gate = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        gate.wait()
        try:
            results[i] = call()
        except Exception as e:  # noqa: BLE001 - reported by the assertion that reads it
            results[i] = e

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_the_same_form_posted_twice_at_once_records_one_completion(duban, workdir, smtp, db_url):
    import requests

    duban.state["url"] = db_url
    setup_branch(duban, workdir)
    path = _link_path(duban, smtp)
    with Served() as web:
        csrf = csrf_of(requests.get(web.url + path, timeout=10).text)

        def post():
            return requests.post(web.url + path, data={"csrf": csrf, "note": "已召开"}, timeout=30,
                                 files=[("evidence", ("签到表.txt", "签到：18人\n".encode(), "text/plain"))])

        results = _at_once(post, post)
    for r in results:
        assert isinstance(r, requests.Response), r
        assert r.status_code == 200, r.text
    assert sorted("已登记过" in r.text for r in results) == [False, True]  # one recorded, one told it was
    assert _rows(db_url, "SELECT count(*) FROM completions") == [(1,)]
    assert _rows(db_url, "SELECT count(*) FROM evidence") == [(1,)]
    assert _rows(db_url, "SELECT count(*) FROM audit_events WHERE action = 'done'") == [(1,)]


def test_a_waive_and_a_done_at_once_leave_one_winner(duban, workdir, smtp, db_url):
    import requests

    duban.state["url"] = db_url
    setup_branch(duban, workdir)
    path = _link_path(duban, smtp)
    key = "party-day@2026-12"
    with Served() as web:
        admin = requests.Session()
        login = duban("web", "login-link", "secretary", "--now", "2026-12-12T10:00").out.strip().splitlines()[-1]
        login = login.split("8080", 1)[1]
        assert admin.post(web.url + login, data={"csrf": csrf_of(admin.get(web.url + login).text)},
                          timeout=10).status_code == 200  # followed to the overview
        waive_csrf = csrf_of(admin.get(f"{web.url}/duty/{key}", timeout=10).text)
        done_csrf = csrf_of(requests.get(web.url + path, timeout=10).text)
        waive, done = _at_once(
            lambda: admin.post(f"{web.url}/duty/{key}/waive", data={"csrf": waive_csrf, "reason": "合并召开"},
                               timeout=30, allow_redirects=False),
            lambda: requests.post(web.url + path, data={"csrf": done_csrf, "note": "已召开"}, timeout=30))
    state = _rows(db_url, f"SELECT state, done_count FROM occurrences WHERE key = '{key}'")[0]
    completions = _rows(db_url, "SELECT count(*) FROM completions")[0][0]
    waivers = _rows(db_url, "SELECT count(*) FROM waivers")[0][0]
    assert isinstance(waive, requests.Response) and isinstance(done, requests.Response), (waive, done)
    if state[0] == "waived":  # the waive won: no completion, and the link says why
        assert (completions, waivers) == (0, 1) and waive.status_code == 303
        assert done.status_code in (400, 409) and "免办" in done.text
    else:  # the done won: no waiver, and the admin is told
        assert state == ("done", 1) and (completions, waivers) == (1, 0)
        assert done.status_code == 200 and "已登记完成" in done.text
        assert waive.status_code in (400, 409) and any("\u4e00" <= ch <= "\u9fff" for ch in waive.text)


# --- memory under hostile uploads ---------------------------------------------------------------
def test_twenty_uploads_of_19_9_mb_at_once_stay_within_200_mb(duban, workdir, smtp, record_property):
    import io
    import os
    import zipfile

    import requests

    setup_branch(duban, workdir)
    path = _link_path(duban, smtp)
    buf = io.BytesIO()  # a real zip (so it is accepted), of random bytes (so nothing compresses)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("照片.bin", os.urandom(int(19.9 * MB) - 200))
    upload = buf.getvalue()
    assert 19.8 * MB < len(upload) < 20 * MB
    web = DubanWeb(workdir)
    try:
        forms = [csrf_of(requests.get(web.url + path, timeout=10).text) for _ in range(20)]
        idle = web.peak_rss_mb()

        def post(csrf):
            return lambda: requests.post(web.url + path, data={"csrf": csrf, "note": "见附件"}, timeout=120,
                                         files=[("evidence", ("现场照片.zip", upload, "application/zip"))])

        results = _at_once(*[post(c) for c in forms])
        peak = web.peak_rss_mb()
    finally:
        web.close()
    record_property("peak_rss_mb", round(peak, 1))
    print(f"duban web: {idle:.0f} MB before, peak {peak:.0f} MB with 20 uploads of 19.9 MB at once")
    for r in results:
        assert isinstance(r, requests.Response), r
        assert r.status_code in (200, 400, 409, 429), r.status_code
        assert any("\u4e00" <= ch <= "\u9fff" for ch in r.text)
    assert any(r.status_code == 200 and "已登记完成" in r.text for r in results)
    assert peak <= 200, f"peak RSS {peak:.0f} MB"
