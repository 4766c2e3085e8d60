"""The workbench over HTTP: action links from real messages, signing in, roles, forms, escaping.

The database is set up through the CLI; the app runs in process (Starlette's TestClient); the clock
is the test's. Messages come from a real loopback SMTP server."""

from __future__ import annotations

from conftest import db_rows as _rows
from web_support import LINK, csrf_of, setup_branch, sign_in, workbench


def _state(url: str, key: str) -> tuple:
    return _rows(url, f"SELECT state, done_count FROM occurrences WHERE key = '{key}'")[0]


def _reminder_link(duban, smtp, address: str, now: str) -> str:
    assert duban("tick", "--now", now).code == 0
    texts = [m.text for m in smtp.handler.to(address)]
    assert texts, f"no message to {address}"
    found = LINK.findall(texts[-1])
    assert found, texts[-1]
    return found[0]


def test_a_reminder_email_carries_a_link_that_records_the_completion(duban, workdir, smtp, db_url):
    duban.state["url"] = db_url
    setup_branch(duban, workdir)
    link = _reminder_link(duban, smtp, "office@example.cn", "2026-12-12T09:05")  # 3 days before the 15th
    text = smtp.handler.to("office@example.cn")[-1].text
    assert "点击链接登记完成" in text and link.startswith("http://127.0.0.1:8080/a/")
    client, clock = workbench("2026-12-12T10:00")
    path = link.split("8080", 1)[1]

    # a mail scanner's HEAD and GET only look
    assert client.head(path).status_code == 200
    page = client.get(path)
    assert page.status_code == 200
    assert "主题党日" in page.text and "二(三)8" in page.text and "2026年12月15日" in page.text
    assert _state(db_url, "party-day@2026-12") == ("open", 0)

    # the form's POST records one completion by the link's person, with the note
    form = {"csrf": csrf_of(page.text), "note": "12月12日召开主题党日，18人参加"}
    done = client.post(path, data=form, files=[("evidence", ("签到表.txt", "签到：18人\n".encode(), "text/plain"))])
    assert done.status_code == 200, done.text
    assert "已登记完成" in done.text
    assert _state(db_url, "party-day@2026-12") == ("done", 1)
    assert _rows(db_url, "SELECT by, note, via FROM completions") == [("office", "12月12日召开主题党日，18人参加", "link")]

    # a second click on the same form records nothing more
    again = client.post(path, data=form)
    assert again.status_code == 200 and "已登记过" in again.text
    assert len(_rows(db_url, "SELECT id FROM completions")) == 1


def test_a_tampered_or_foreign_link_changes_nothing(duban, workdir, smtp):
    setup_branch(duban, workdir)
    link = _reminder_link(duban, smtp, "office@example.cn", "2026-12-12T09:05")
    client, _clock = workbench("2026-12-12T10:00")
    path = link.split("8080", 1)[1]
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    for bad in (tampered, "/a/not-a-token", path.replace("/a/", "/a/x")):
        r = client.get(bad)
        assert 400 <= r.status_code < 500 and "链接无效" in r.text
        assert client.post(bad, data={"note": "x"}).status_code in (403, 404)
    # signed with another secret key: another installation's link
    other, _ = workbench("2026-12-12T10:00", env={"DUBAN_SECRET_KEY": "another-installation-key"})
    assert other.get(path).status_code == 404
    assert _rows(duban.state["url"], "SELECT count(*) FROM completions") == [(0,)]


def test_a_post_without_the_csrf_token_is_refused(duban, workdir, smtp):
    setup_branch(duban, workdir)
    link = _reminder_link(duban, smtp, "office@example.cn", "2026-12-12T09:05")
    client, _ = workbench("2026-12-12T10:00")
    path = link.split("8080", 1)[1]
    r = client.post(path, data={"note": "没有校验码"})
    assert r.status_code == 403 and "安全校验码" in r.text
    r = client.post(path, data={"note": "别的页面的校验码", "csrf": "abc.def"})
    assert r.status_code == 403
    assert _rows(duban.state["url"], "SELECT count(*) FROM completions") == [(0,)]


def test_a_link_expires_30_days_after_its_duty_closes(duban, workdir, smtp):
    setup_branch(duban, workdir)
    link = _reminder_link(duban, smtp, "office@example.cn", "2026-12-12T09:05")
    path = link.split("8080", 1)[1]
    assert duban("done", "party-day@2026-12", "--by", "office", "--now", "2026-12-13T10:00").code == 0
    client, clock = workbench("2027-01-10T10:00")
    page = client.get(path)
    assert page.status_code == 200 and "已办结" in page.text and 'name="note"' not in page.text
    clock.advance(days=30)
    r = client.get(path)
    assert r.status_code == 410 and "已失效" in r.text


def test_sign_in_link_is_single_use_and_short_lived(duban, workdir):
    setup_branch(duban, workdir)
    client, clock = workbench()
    r = duban("web", "login-link", "office", "--now", "2026-12-01T10:00")
    assert r.code == 0
    url = r.out.strip().splitlines()[-1]
    assert url.startswith("http://127.0.0.1:8080/login/")
    path = url.split("8080", 1)[1]
    page = client.get(path)  # a scanner's GET signs nobody in and spends nothing
    assert page.status_code == 200 and "登录" in page.text and "set-cookie" not in page.headers
    again = client.get(path)
    resp = client.post(path, data={"csrf": csrf_of(again.text)})
    assert resp.status_code == 303
    cookie = resp.headers["set-cookie"]
    assert "duban_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "Secure" not in cookie  # http base URL
    assert client.get("/my").status_code == 200
    # used once: the same link no longer works
    fresh, _ = workbench()
    assert fresh.get(path).status_code == 410
    # a link older than 15 minutes does not work
    r = duban("web", "login-link", "office", "--now", "2026-12-01T10:00")
    late_path = r.out.strip().splitlines()[-1].split("8080", 1)[1]
    late, late_clock = workbench("2026-12-01T10:16")
    assert late.get(late_path).status_code == 410


def test_login_link_for_an_unknown_person_is_a_clear_error(duban, workdir):
    setup_branch(duban, workdir)
    r = duban("web", "login-link", "nobody")
    assert r.code == 2 and "没有编号为“nobody”的人员" in r.err and "office" in r.err


def test_session_cookie_is_secure_on_https(duban, workdir, monkeypatch):
    monkeypatch.setenv("DUBAN_BASE_URL", "https://duban.example.cn")
    setup_branch(duban, workdir)
    client, _ = workbench()
    r = duban("web", "login-link", "office", "--now", "2026-12-01T10:00")
    path = r.out.strip().splitlines()[-1].split("example.cn", 1)[1]
    page = client.get(path)
    resp = client.post(path, data={"csrf": csrf_of(page.text)})
    assert "Secure" in resp.headers["set-cookie"]


def test_sign_out_ends_the_session(duban, workdir):
    setup_branch(duban, workdir)
    client, _ = workbench()
    sign_in(client, duban, "office")
    page = client.get("/my")
    cookie = client.cookies.get("duban_session")
    assert client.post("/logout", data={"csrf": csrf_of(page.text)}).status_code == 200
    client.cookies.set("duban_session", cookie)  # the old cookie, replayed
    assert client.get("/my").status_code == 303


def test_staff_see_their_own_and_their_groups_duties_only(duban, workdir):
    setup_branch(duban, workdir)
    assert duban("tick", "--now", "2026-12-01T10:00").code == 0
    client, _ = workbench()
    sign_in(client, duban, "li")
    mine = client.get("/my").text
    assert "意识形态工作专题研讨" in mine and "办公电脑保密自查" in mine  # own, and office-team's
    assert "主题党日" not in mine and "书记述职报告" not in mine
    assert client.get("/duty/party-day@2026-12").status_code == 404
    overview = client.get("/").text
    assert "主题党日" not in overview
    assert client.get("/ledger").status_code == 403
    assert client.get("/ledger/download.xlsx").status_code == 403


def test_admin_sees_everything_and_waives_with_a_reason(duban, workdir):
    setup_branch(duban, workdir)
    assert duban("tick", "--now", "2026-12-01T10:00").code == 0
    client, _ = workbench()
    sign_in(client, duban, "secretary")
    overview = client.get("/")
    assert overview.status_code == 200
    for title in ("主题党日", "意识形态工作专题研讨", "办公电脑保密自查", "书记述职报告"):
        assert title in overview.text
    assert "0/2" in overview.text  # progress of the quota-2 seminar
    filtered = client.get("/?person=li").text
    assert "ideology-seminar@2026" in filtered and "party-day@2026-12" not in filtered
    page = client.get("/duty/party-day@2026-12")
    assert page.status_code == 200 and 'name="reason"' in page.text
    # an empty reason is refused next to the field, nothing changes
    r = client.post("/duty/party-day@2026-12/waive", data={"csrf": csrf_of(page.text), "reason": "  "})
    assert r.status_code == 400 and "请填写免办理由" in r.text
    assert _state(duban.state["url"], "party-day@2026-12") == ("open", 0)
    r = client.post("/duty/party-day@2026-12/waive", data={"csrf": csrf_of(page.text), "reason": "与区委主题党日合并"})
    assert r.status_code == 303
    assert _state(duban.state["url"], "party-day@2026-12")[0] == "waived"
    assert _rows(duban.state["url"], "SELECT via, actor, action FROM audit_events WHERE action = 'waive'") == [
        ("web", "secretary", "waive")]


def test_viewers_see_everything_and_change_nothing(duban, workdir, monkeypatch):
    monkeypatch.setenv("DUBAN_VIEWERS", "inspector")
    setup_branch(duban, workdir)
    assert duban("tick", "--now", "2026-12-01T10:00").code == 0
    client, _ = workbench()
    sign_in(client, duban, "inspector")
    assert "主题党日" in client.get("/").text
    page = client.get("/duty/party-day@2026-12")
    assert page.status_code == 200 and 'name="reason"' not in page.text and 'name="note"' not in page.text
    csrf = csrf_of(page.text)
    assert client.post("/duty/party-day@2026-12/waive", data={"csrf": csrf, "reason": "x"}).status_code == 403
    assert client.post("/duty/party-day@2026-12/done", data={"csrf": csrf, "note": "x"}).status_code == 403
    assert _state(duban.state["url"], "party-day@2026-12") == ("open", 0)
    assert client.get("/ledger/download.xlsx").status_code == 200


def test_pages_escape_what_users_typed(duban, workdir):
    evil = """\
  - id: evil
    title: "<script>alert(1)</script>主题"
    owner: office
    every: year
    start: 2026-01-01
"""
    setup_branch(duban, workdir, extra_rules=evil)
    assert duban("tick", "--now", "2026-12-01T10:00").code == 0
    client, _ = workbench()
    sign_in(client, duban, "secretary")
    for path in ("/", "/duty/evil@2026", "/rules"):
        body = client.get(path).text
        assert "<script>alert(1)</script>" not in body and "&lt;script&gt;" in body


def test_security_headers_on_every_page(duban, workdir):
    setup_branch(duban, workdir)
    client, _ = workbench()
    r = client.get("/login")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_pages_need_sign_in(duban, workdir):
    setup_branch(duban, workdir)
    client, _ = workbench()
    for path in ("/", "/my", "/rules", "/calendar", "/ledger", "/digest", "/duty/party-day@2026-12"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_the_sign_in_page_answers_the_same_for_unknown_addresses(duban, workdir, smtp):
    setup_branch(duban, workdir)
    client, _ = workbench()
    page = client.get("/login")
    known = client.post("/login", data={"csrf": csrf_of(page.text), "email": "office@example.cn"})
    unknown = client.post("/login", data={"csrf": csrf_of(page.text), "email": "stranger@example.cn"})
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace("office@example.cn", "X") == unknown.text.replace("stranger@example.cn", "X")
    mails = smtp.handler.to("office@example.cn")
    assert len(mails) == 1 and "登录链接" in mails[0].subject
    assert not smtp.handler.to("stranger@example.cn")
    path = mails[0].text.split("http://127.0.0.1:8080", 1)[1].split()[0]
    confirm = client.get(path)
    assert client.post(path, data={"csrf": csrf_of(confirm.text)}).status_code == 303
    assert "张主任" in client.get("/my").text


def test_wecom_sign_in_inside_the_wecom_client(duban, workdir, wecom, monkeypatch):
    wecom.use_app()
    monkeypatch.setenv("DUBAN_WECOM_OAUTH_BASE", wecom.base_url)
    setup_branch(duban, workdir)
    client, _ = workbench()
    start = client.get("/login/wecom")
    assert start.status_code == 303
    authorize = start.headers["location"]
    assert authorize.startswith(wecom.base_url + "/connect/oauth2/authorize?") and "snsapi_base" in authorize
    import requests

    wecom.server.oauth_user = "ZhangZhuRen"
    back = requests.get(authorize.split("#")[0], allow_redirects=False, timeout=5)
    assert back.status_code == 302
    callback = back.headers["Location"].split("8080", 1)[1]
    done = client.get(callback)
    assert done.status_code == 303, done.text
    assert "张主任" in client.get("/my").text
    # the code is single-use: replaying the callback signs nobody in
    replay, _ = workbench()
    replay.cookies.set("duban_oauth", client.cookies.get("duban_oauth") or "")
    assert replay.get(callback).status_code >= 400


def test_calendar_page_marks_days_off_and_adjusted_working_days(duban, workdir):
    setup_branch(duban, workdir)
    client, _ = workbench()
    sign_in(client, duban, "office")
    r = client.get("/calendar/2026")
    assert r.status_code == 200 and "官方安排" in r.text
    assert 'title="2026-10-1">休' in r.text  # National Day
    assert 'title="2026-9-20">班' in r.text  # an adjusted working Sunday


def test_digest_page_shows_what_the_secretary_would_get(duban, workdir):
    setup_branch(duban, workdir)
    assert duban("tick", "--now", "2026-12-16T10:00").code == 0
    client, _ = workbench("2026-12-16T10:00")
    sign_in(client, duban, "secretary", now="2026-12-16T10:00")
    r = client.get("/digest")
    assert r.status_code == 200 and "主题党日" in r.text and "逾期" in r.text


def test_the_ledger_download_holds_the_evidence_uploaded_through_a_link(duban, workdir, smtp):
    import io
    import zipfile

    setup_branch(duban, workdir)
    link = _reminder_link(duban, smtp, "office@example.cn", "2026-12-12T09:05")
    client, _ = workbench("2026-12-12T10:00")
    path = link.split("8080", 1)[1]
    page = client.get(path)
    photo = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    r = client.post(path, data={"csrf": csrf_of(page.text), "note": "已召开"},
                    files=[("evidence", ("现场照片.png", photo, "image/png"))])
    assert r.status_code == 200 and "现场照片.png" in r.text
    sign_in(client, duban, "secretary", now="2026-12-12T10:00")
    archive = client.get("/ledger/download.zip")
    assert archive.status_code == 200
    assert "attachment" in archive.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        names = z.namelist()
        photo_name = next(n for n in names if n.endswith("现场照片.png"))
        assert z.read(photo_name) == photo
        assert any(n.endswith(".xlsx") for n in names)
    # the file itself, for people who may see the duty: a download, never shown inline
    duty = client.get("/duty/party-day@2026-12").text
    eid = duty.split('href="/evidence/', 1)[1].split('"', 1)[0]
    f = client.get(f"/evidence/{eid}")
    assert f.status_code == 200 and f.content == photo
    assert f.headers["content-disposition"].startswith("attachment")
    assert f.headers["content-type"] == "application/octet-stream"


def test_a_refused_upload_says_why_next_to_the_field_and_records_nothing(duban, workdir, smtp):
    setup_branch(duban, workdir)
    link = _reminder_link(duban, smtp, "office@example.cn", "2026-12-12T09:05")
    client, _ = workbench("2026-12-12T10:00")
    path = link.split("8080", 1)[1]
    page = client.get(path)
    r = client.post(path, data={"csrf": csrf_of(page.text), "note": "见附件"},
                    files=[("evidence", ("报告.pdf", b"MZ\x90\x00 this is a program", "application/pdf"))])
    assert r.status_code == 400 and "报告.pdf" in r.text and 'class="error"' in r.text
    r = client.post(path, data={"csrf": csrf_of(page.text), "note": "长" * 6000})
    assert r.status_code == 400 and "超过 2000 字的上限" in r.text
    r = client.post(path, data={"csrf": csrf_of(page.text), "note": "完成\x1b[2J\x07"})
    assert r.status_code == 400 and "控制字符" in r.text
    assert _rows(duban.state["url"], "SELECT count(*) FROM completions") == [(0,)]


def _from(client, address: str):
    """Another TestClient on the same app, as if from another client address."""
    from starlette.testclient import TestClient

    return TestClient(client.app, base_url="http://127.0.0.1:8080", follow_redirects=False, client=(address, 50000))


def test_sign_in_requests_are_limited_per_address_and_per_email(duban, workdir, smtp):
    setup_branch(duban, workdir)
    client, clock = workbench()
    csrf = csrf_of(client.get("/login").text)
    one = _from(client, "198.51.100.1")
    for i in range(5):
        assert one.post("/login", data={"csrf": csrf, "email": f"x{i}@example.cn"}).status_code == 200
    r = one.post("/login", data={"csrf": csrf, "email": "office@example.cn"})
    assert r.status_code == 429 and "请求过于频繁，请 15 分钟后再试" in r.text
    assert r.headers["retry-after"] == "900"
    assert not smtp.handler.to("office@example.cn")  # refused: nothing sent
    # per email, from changing addresses; the same for a known and an unknown address
    answers = {}
    for email in ("office@example.cn", "stranger@example.cn"):
        got = [_from(client, f"203.0.113.{i}").post("/login", data={"csrf": csrf, "email": email})
               for i in range(4)]
        assert [g.status_code for g in got] == [200, 200, 200, 429]
        answers[email] = [g.text.replace(email, "X") for g in got]
    assert answers["office@example.cn"] == answers["stranger@example.cn"]
    assert len(smtp.handler.to("office@example.cn")) == 3
    # the window slides on the app's clock
    clock.advance(minutes=16)
    assert one.post("/login", data={"csrf": csrf, "email": "x@example.cn"}).status_code == 200
    assert _from(client, "203.0.113.9").post("/login", data={"csrf": csrf, "email": "office@example.cn"}).status_code == 429
    clock.advance(minutes=45)
    assert _from(client, "203.0.113.9").post("/login", data={"csrf": csrf, "email": "office@example.cn"}).status_code == 200


def test_action_link_posts_are_limited_per_address_and_per_person(duban, workdir, smtp):
    setup_branch(duban, workdir)
    link = _reminder_link(duban, smtp, "office@example.cn", "2026-12-12T09:05")
    client, clock = workbench("2026-12-12T10:00")
    path = link.split("8080", 1)[1]
    csrf = csrf_of(client.get(path).text)
    one = _from(client, "198.51.100.7")
    for _ in range(30):  # a guesser: forged links from one address
        assert one.post("/a/not-a-token", data={"note": "x"}).status_code == 404
    r = one.post(path, data={"csrf": csrf, "note": "已召开"})
    assert r.status_code == 429 and "请求过于频繁，请 10 分钟后再试" in r.text
    assert _rows(duban.state["url"], "SELECT count(*) FROM completions") == [(0,)]
    # the same person's link from 30 addresses: the 31st waits too
    for i in range(30):
        assert _from(client, f"203.0.113.{i}").post(path, data={"note": "x"}).status_code == 403
    r = _from(client, "203.0.113.200").post(path, data={"csrf": csrf, "note": "已召开"})
    assert r.status_code == 429 and "分钟后再试" in r.text
    assert _rows(duban.state["url"], "SELECT count(*) FROM completions") == [(0,)]
    clock.advance(minutes=11)
    r = _from(client, "203.0.113.200").post(path, data={"csrf": csrf, "note": "已召开"})
    assert r.status_code == 200 and "已登记完成" in r.text
