"""Workbench benchmark on the district data set (500 branches × the bundled pack, two years of history).

    python bench/web_bench.py             # 500 branches, SQLite and PostgreSQL
    python bench/web_bench.py --quick     # 50 branches, fewer requests
    python bench/web_bench.py --no-pg     # SQLite only

Figures (targets from the workbench issue), for the secretary of one branch:
  1. in process (Starlette's TestClient, no network): the overview page and a duty's page, median of
     repeated renders (target ≤ 50 ms);
  2. over HTTP: `duban web` in its own process (uvicorn), 20 concurrent clients fetching the overview
     and duty pages: median and p95 (target p95 ≤ 100 ms); the server's RSS afterwards (≤ 100 MB);
  3. an action-link POST with a 1 MB evidence file (a PDF), over HTTP: median (≤ 150 ms).
Nothing here asserts a timing; each figure is printed beside its target.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Db, clean_env, duban_exe, pg_available  # noqa: E402
from district_bench import NOW_TEXT, branch_name, build_template, load_district, step  # noqa: E402

BRANCH = branch_name(0)
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ms"


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _sign_in(base: str, env: dict[str, str], tmp: str, session) -> None:
    import re

    out = subprocess.run(duban_exe() + ["--org", BRANCH, "web", "login-link", "secretary", "--now", NOW_TEXT],
                         env=env, cwd=tmp, capture_output=True, text=True, check=True).stdout
    path = out.strip().splitlines()[-1].split("/login/", 1)[1]
    page = session.get(f"{base}/login/{path}")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    session.post(f"{base}/login/{path}", data={"csrf": csrf}, allow_redirects=False)


def bench(kind: str, tmp: str, tpl, branches: int, requests_n: int, pg: str | None) -> list[tuple[str, str, str]]:
    import requests

    label = "SQLite" if kind == "sqlite" else "PostgreSQL"
    db = Db(kind, tmp, "web", pg)
    rows: list[tuple[str, str, str]] = []
    try:
        step(f"{label}: loading {branches} branches")
        load_district(db, tpl, branches)
        env = clean_env(DUBAN_DATABASE_URL=db.url, DUBAN_DATA_DIR=os.path.join(tmp, f"data-{kind}"),
                        DUBAN_TEST_MODE="1", DUBAN_ORG=BRANCH)
        from sqlalchemy import select

        from scheduler.db import session_scope
        from scheduler.models import OccurrenceRow

        with session_scope(db.engine) as s:
            key = s.scalar(select(OccurrenceRow.key).where(OccurrenceRow.org == BRANCH, OccurrenceRow.state == "open")
                           .order_by(OccurrenceRow.due).limit(1))
            targets = s.execute(select(OccurrenceRow.key, OccurrenceRow.owner).where(
                OccurrenceRow.org == BRANCH, OccurrenceRow.state == "open", OccurrenceRow.key != key)
                .order_by(OccurrenceRow.due.desc()).limit(requests_n)).all()

        # 1. in process
        step(f"{label}: rendering in process")
        from starlette.testclient import TestClient
        from web_clock import fixed_clock

        from scheduler.settings import load_settings
        from scheduler.web.app import create_app
        from scheduler.web.serve import DEFAULT_PORT  # noqa: F401 - the module the service uses

        port = _free_port()
        env["DUBAN_BASE_URL"] = f"http://127.0.0.1:{port}"
        app = create_app(load_settings(env, dotenv=False), clock=fixed_clock(NOW_TEXT))
        client = TestClient(app, base_url=env["DUBAN_BASE_URL"])
        _sign_in(env["DUBAN_BASE_URL"], env, tmp, _TestSession(client))
        for path, name in (("/", "overview"), (f"/duty/{key}", "duty page")):
            client.get(path)
            times = []
            for _ in range(requests_n):
                t0 = time.perf_counter()
                r = client.get(path)
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.status_code
            rows.append((f"{name}, in process (median)", _ms(times), "≤ 50 ms"))

        # 2. over HTTP, 20 clients, a real server process
        step(f"{label}: `duban web` and 20 concurrent clients")
        server = subprocess.Popen(duban_exe() + ["web", "--port", str(port), "--now", NOW_TEXT], env=env, cwd=tmp,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = env["DUBAN_BASE_URL"]
        try:
            for _ in range(200):
                try:
                    requests.get(base + "/healthz", timeout=1)
                    break
                except requests.RequestException:
                    time.sleep(0.05)
            cookies = requests.Session()
            _sign_in(base, env, tmp, cookies)
            jar = cookies.cookies.get_dict()
            times: list[float] = []
            lock = threading.Lock()

            def worker(n: int) -> None:
                sess = requests.Session()
                sess.cookies.update(jar)
                for i in range(n):
                    path = "/" if i % 2 == 0 else f"/duty/{key}"
                    t0 = time.perf_counter()
                    r = sess.get(base + path, timeout=30)
                    dt = time.perf_counter() - t0
                    assert r.status_code == 200, r.status_code
                    with lock:
                        times.append(dt)

            threads = [threading.Thread(target=worker, args=(max(requests_n // 4, 5),)) for _ in range(20)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            rows.append(("overview + duty page over HTTP, 20 clients: median / p95",
                         f"{statistics.median(times) * 1000:.0f} / {_p95(times) * 1000:.0f} ms", "p95 ≤ 100 ms"))
            rows.append(("  throughput", f"{len(times) / wall:.0f} pages/s", ""))

            # 3. action-link POSTs with a 1 MB PDF
            from scheduler.signing import signer

            sign = signer(load_settings(env, dotenv=False))
            pdf = b"%PDF-1.4\n" + os.urandom(1024 * 1024) + b"\n%%EOF\n"
            post_times = []
            import re

            for i, (target, owner) in enumerate(targets[:max(requests_n // 3, 5)]):
                link = base + "/a/" + sign.action_token(BRANCH, owner or "secretary", target)
                page = requests.get(link, timeout=30)
                csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
                if csrf is None:  # the duty closed (quota reached): nothing more to post
                    break
                t0 = time.perf_counter()
                r = requests.post(link, data={"csrf": csrf.group(1), "note": f"第 {i} 次"},
                                  files={"evidence": (f"材料{i}.pdf", pdf, "application/pdf")}, timeout=60)
                post_times.append(time.perf_counter() - t0)
                assert r.status_code == 200, (r.status_code, r.text[:300])
            if post_times:
                rows.append((f"action-link POST with 1 MB evidence (median of {len(post_times)})", _ms(post_times),
                             "≤ 150 ms"))
            rows.append(("server RSS after the requests", f"{_rss_mb(server.pid):.0f} MB", "≤ 100 MB"))
        finally:
            server.terminate()
            server.wait(30)
            err = server.stderr.read().decode()
            if "Traceback" in err:
                print(err, file=sys.stderr)
    finally:
        db.drop()
    return [(f"{label}: {a}", b, c) for a, b, c in rows]


class _TestSession:
    """requests-like get/post over a TestClient, for _sign_in."""

    def __init__(self, client):
        self.client = client

    def get(self, url):
        return self.client.get(url.split("8080", 1)[-1] if "8080" in url else url[url.index("/", 8):])

    def post(self, url, data=None, allow_redirects=False):
        return self.client.post(url[url.index("/", 8):], data=data, follow_redirects=allow_redirects)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--branches", type=int)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--pg", default=os.environ.get("DUBAN_TEST_POSTGRES_URL") or PG_DEFAULT)
    opts = ap.parse_args()
    branches = opts.branches or (50 if opts.quick else 500)
    requests_n = 20 if opts.quick else 60
    step("planning the template branch")
    tpl = build_template()
    kinds = ["sqlite"]
    if not opts.no_pg and pg_available(opts.pg) is None:
        kinds.append("postgresql")
    tmp = tempfile.mkdtemp(prefix="duban-web-")
    results = []
    try:
        for kind in kinds:
            results += bench(kind, tmp, tpl, branches, requests_n, opts.pg if kind == "postgresql" else None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nduban workbench benchmark — {branches} branches, one branch's secretary, now {NOW_TEXT}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    width = max(len(a) for a, _b, _c in results)
    for a, b, c in results:
        print(f"  {a:<{width}}  {b:>16}  {c}")


if __name__ == "__main__":
    main()
