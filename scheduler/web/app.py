"""The workbench's routes. A view is short: load, check the role, call the application layer,
render one template. GET only shows (mail scanners fetch links); POST acts, with a CSRF token."""

from __future__ import annotations

import calendar as stdcal
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from urllib.parse import quote, urlencode

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from rules.errors import DubanError

from .. import actions, queries
from ..db import session_scope
from ..models import DEFAULT_ORG, OccurrenceRow
from ..settings import Settings
from ..signing import base_url, is_https, secret_key, signer_for
from . import auth, limits
from .security import BodyLimit, SecurityHeaders

log = logging.getLogger("duban.web")
HERE = Path(__file__).parent
STATE_LABELS = {"overdue": "已逾期", "due-soon": "即将到期", "open": "进行中", "done": "已完成", "waived": "已免办"}


@dataclass
class Web:
    """What every view needs: settings, the database, the clock."""

    settings: Settings
    engine: Engine
    clock: Callable[[], datetime]

    @cached_property
    def key(self) -> str:
        return secret_key(self.settings)

    @property
    def signer(self):
        return signer_for(self.key)

    def now(self) -> datetime:
        return self.clock()


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["cn_date"] = lambda d: f"{d.year}年{d.month}月{d.day}日" if d else ""
templates.env.globals["STATE_LABELS"] = STATE_LABELS
templates.env.globals["ROLE_NAMES"] = queries.ROLE_NAMES
templates.env.globals["VIA_NAMES"] = actions.VIA_NAMES


def keypath(key: str) -> str:
    return quote(key, safe="@")


templates.env.filters["keypath"] = keypath


def page(request: Request, name: str, status: int = 200, **ctx) -> Response:
    ctx.setdefault("viewer", getattr(request.state, "viewer", None))
    ctx.setdefault("csrf", getattr(request.state, "csrf", None))
    return templates.TemplateResponse(request, name, ctx, status_code=status)


def error_page(request: Request, status: int, title: str, text: str) -> Response:
    return page(request, "error.html", status=status, title=title, text=text)


# --- who is asking ---------------------------------------------------------------------------
def _signed_in(web: Web, request: Request):
    """(Viewer, session) from the session cookie, or (None, None)."""
    value = request.cookies.get(auth.COOKIE)
    if not value:
        return None, None
    with session_scope(web.engine) as s:
        row = auth.load_session(s, value, web.now())
        if row is None:
            return None, None
        viewer = queries.viewer_for(s, web.settings, row.org, row.person)
        return viewer, (row.csrf if viewer else None)


def require_viewer(request: Request):
    web: Web = request.app.state.web
    viewer, binding = _signed_in(web, request)
    if viewer is None:
        raise HTTPException(303, headers={"Location": "/login?next=" + quote(request.url.path)})
    request.state.viewer = viewer
    request.state.binding = binding
    request.state.csrf = auth.csrf_token(binding, web.key)
    return web, viewer


def check_form_csrf(request: Request, form, binding: str) -> str:
    nonce = auth.check_csrf(form.get("csrf"), binding, request.app.state.web.key)
    if nonce is None:
        raise HTTPException(403, "表单已失效或来源不明（缺少有效的安全校验码）。请返回上一页刷新后重新提交。")
    return nonce


def remote(request: Request) -> str | None:
    return request.client.host if request.client else None


def _limited(web: Web, *hits: tuple[str, tuple[int, int]]) -> int | None:
    """Count the request in each bucket in turn; minutes to wait at the first one that is full."""
    for name, limit in hits:
        wait = limits.hit(web, name, limit)
        if wait is not None:
            log.info("请求过于频繁：%s", name.rsplit(":", 1)[0])  # the bucket's kind, not the address
            return wait
    return None


def too_many(request: Request, minutes: int) -> Response:
    resp = error_page(request, 429, "请求过于频繁", f"请求过于频繁，请 {minutes} 分钟后再试。")
    resp.headers["Retry-After"] = str(minutes * 60)
    return resp


# --- sign-in ---------------------------------------------------------------------------------
def login_page(request: Request) -> Response:
    web: Web = request.app.state.web
    return page(request, "login.html", wecom=_wecom_configured(web.settings), next=_safe_next(request),
                csrf=auth.csrf_token("login-request", web.key))


def _safe_next(request: Request) -> str:
    nxt = request.query_params.get("next") or "/"
    return nxt if nxt.startswith("/") and not nxt.startswith("//") else "/"


def _wecom_configured(settings: Settings) -> bool:
    return bool(settings.get("DUBAN_WECOM_CORP_ID") and settings.get("DUBAN_WECOM_CORP_SECRET")
                and settings.get("DUBAN_WECOM_AGENT_ID"))


async def login_request(request: Request) -> Response:
    """Email a sign-in link; the same answer whether or not the address is known."""
    web: Web = request.app.state.web
    client = remote(request) or "-"
    wait = await run_in_threadpool(_limited, web, (limits.bucket("login", "ip", client), limits.LOGIN_PER_ADDRESS))
    if wait:
        return too_many(request, wait)
    form = await request.form(max_files=0, max_fields=5)
    check_form_csrf(request, form, "login-request")
    address = (form.get("email") or "").strip()[:320]
    # counted whether or not anybody has the address: the limit tells nothing either
    wait = address and await run_in_threadpool(
        _limited, web, (limits.bucket("login", "email", address.lower()), limits.LOGIN_PER_EMAIL))
    if wait:
        return too_many(request, wait)
    if address:
        await run_in_threadpool(_email_login_link, web, address, remote(request))
    return page(request, "login_sent.html", email=address)


def _email_login_link(web: Web, address: str, client: str | None) -> None:
    from .mail import send_login_link

    send_login_link(web, address, client)


def login_confirm(request: Request) -> Response:
    web: Web = request.app.state.web
    token = request.path_params["token"]
    with session_scope(web.engine) as s:
        ok = auth.peek_login_token(s, token, web.now()) is not None
    if not ok:
        return error_page(request, 410, "登录链接已失效", "这个登录链接已经用过、已过期（有效 15 分钟）或不完整。请重新获取登录链接。")
    return page(request, "login_confirm.html", token=token, csrf=auth.csrf_token("login:" + token, web.key))


async def login_finish(request: Request) -> Response:
    web: Web = request.app.state.web
    token = request.path_params["token"]
    now = web.now()
    check_form_csrf(request, await request.form(max_files=0, max_fields=5), "login:" + token)

    def go():
        with session_scope(web.engine) as s:
            row = auth.use_login_token(s, token, now)
            if row is None:
                return None
            value = auth.start_session(s, row.org, row.person, "link", now)
            actions.audit(s, org=row.org, now=now, actor=row.person, via="web", action="sign-in",
                          remote=remote(request), detail={"by": "link"})
            return value

    value = await run_in_threadpool(go)
    if value is None:
        return error_page(request, 410, "登录链接已失效", "这个登录链接已经用过、已过期（有效 15 分钟）或不完整。请重新获取登录链接。")
    return _signed_in_response(web, value)


def _signed_in_response(web: Web, value: str, to: str = "/") -> Response:
    resp = RedirectResponse(to, status_code=303)
    resp.set_cookie(auth.COOKIE, value, max_age=int(auth.SESSION_TTL.total_seconds()), httponly=True,
                    samesite="lax", secure=is_https(web.settings), path="/")
    return resp


async def logout(request: Request) -> Response:
    web, viewer = await run_in_threadpool(require_viewer, request)
    form = await request.form(max_files=0, max_fields=5)
    check_form_csrf(request, form, request.state.binding)
    now = web.now()

    def go():
        with session_scope(web.engine) as s:
            auth.end_session(s, request.cookies.get(auth.COOKIE), now)
            actions.audit(s, org=viewer.org, now=now, actor=viewer.person, via="web", action="sign-out",
                          remote=remote(request))

    await run_in_threadpool(go)
    resp = page(request, "signed_out.html", viewer=None)
    resp.delete_cookie(auth.COOKIE, path="/")
    return resp


def wecom_start(request: Request) -> Response:
    from .wecom_oauth import authorize_url

    web: Web = request.app.state.web
    if not _wecom_configured(web.settings):
        return error_page(request, 404, "未开通企业微信登录", "本系统没有配置企业微信应用，请用邮件或管理员发送的登录链接登录。")
    state = auth.csrf_token("wecom-oauth", web.key)
    resp = RedirectResponse(authorize_url(web.settings, base_url(web.settings) + "/login/wecom/callback", state), 303)
    resp.set_cookie("duban_oauth", state, max_age=600, httponly=True, samesite="lax", secure=is_https(web.settings))
    return resp


def wecom_callback(request: Request) -> Response:
    from .wecom_oauth import WeComOAuthError, user_id_for_code

    web: Web = request.app.state.web
    state, code = request.query_params.get("state"), request.query_params.get("code")
    if not code or not state or state != request.cookies.get("duban_oauth") or \
            auth.check_csrf(state, "wecom-oauth", web.key) is None:
        return error_page(request, 400, "企业微信登录未完成", "登录请求已失效，请从企业微信工作台重新打开督办。")
    try:
        userid = user_id_for_code(web.settings, code)
    except WeComOAuthError as e:
        return error_page(request, 502, "企业微信登录失败", e.message)
    now = web.now()
    with session_scope(web.engine) as s:
        match = _person_by_wecom(s, userid)
        if match is None:
            return error_page(request, 403, "没有找到您的人员信息",
                              f"企业微信账号“{userid}”没有登记在督办的人员名单中。请联系管理员在规则文件的 people 里填写 wecom。")
        org, person = match
        value = auth.start_session(s, org, person, "wecom", now)
        actions.audit(s, org=org, now=now, actor=person, via="wecom", action="sign-in", remote=remote(request))
    resp = _signed_in_response(web, value)
    resp.delete_cookie("duban_oauth")
    return resp


def _person_by_wecom(s, userid: str):
    from ..models import PersonRow

    row = s.execute(select(PersonRow.org, PersonRow.id).where(PersonRow.wecom == userid).limit(1)).first()
    return tuple(row) if row else None


# --- pages -----------------------------------------------------------------------------------
def overview_page(request: Request) -> Response:
    web, viewer = require_viewer(request)
    q = request.query_params
    person, rule, state = q.get("person") or None, q.get("rule") or None, q.get("state") or None
    if state and state not in STATE_LABELS:
        state = None
    with session_scope(web.engine) as s:
        everything = queries.overview(s, web.now(), viewer)  # once: the counts and choices need all of it
        names = queries.names_of(s, viewer.org)
    rows = queries.filtered(everything, person=person, rule=rule, state=state)
    counts = {k: sum(r["state"] == k for r in everything) for k in STATE_LABELS}
    if not state:
        rows = [r for r in rows if r["state"] not in ("done", "waived")]
    owners = sorted({r["owner"] for r in everything if r["owner"]}, key=lambda o: names.get(o, o))
    rules = sorted({(r["rule"], r["title"]) for r in everything})
    return page(request, "overview.html", rows=rows, counts=counts, owners=[(o, names.get(o, o)) for o in owners],
                rules=rules, f={"person": person or "", "rule": rule or "", "state": state or ""},
                title="总览" if viewer.sees_all else "我的事项", today=web.now().date())


def my_page(request: Request) -> Response:
    web, viewer = require_viewer(request)
    with session_scope(web.engine) as s:
        rows = [r for r in queries.overview(s, web.now(), viewer) if viewer.owns(r["owner"])]
    open_rows = [r for r in rows if r["state"] not in ("done", "waived")]
    closed = [r for r in rows if r["state"] in ("done", "waived")]
    return page(request, "my.html", rows=open_rows, closed=closed, title="我的事项")


def _visible_occurrence(s, viewer, key: str) -> OccurrenceRow:
    occ = s.scalar(select(OccurrenceRow).where(OccurrenceRow.org == viewer.org, OccurrenceRow.key == key))
    if occ is None or not viewer.may_see(occ.owner):
        raise HTTPException(404, f"没有编号为“{key}”的事项，或您无权查看。")
    return occ


def duty_page(request: Request, errors: dict | None = None, values: dict | None = None, status: int = 200,
              notice: str | None = None) -> Response:
    web, viewer = require_viewer(request)
    key = request.path_params["key"]
    with session_scope(web.engine) as s:
        occ = _visible_occurrence(s, viewer, key)
        story = queries.duty_story(s, viewer.org, key, web.now(), web.settings.tz)
        files = _evidence(s, viewer.org, [key]).get(key, [])
    return page(request, "duty.html", status=status, story=story, files=files, title=occ.title,
                may_complete=viewer.may_complete(occ.owner) and occ.state == "open",
                may_waive=viewer.is_admin and occ.state == "open", errors=errors or {}, values=values or {},
                notice=notice or _notice(request), limit_mb=_limit_mb(web))


def _notice(request: Request) -> str | None:
    return {"done": "已登记完成。", "waived": "已免办。", "repeat": "这次提交之前已经登记过，没有重复记录。"}.get(
        request.query_params.get("ok", ""))


def _evidence(s, org: str, keys: list[str]) -> dict[str, list]:
    from ..evidence import evidence_for

    return evidence_for(s, org, keys)


def _limit_mb(web: Web) -> int:
    from ..evidence import max_bytes

    return max_bytes(web.settings) // (1024 * 1024)


async def duty_done(request: Request) -> Response:
    web, viewer = await run_in_threadpool(require_viewer, request)
    key = request.path_params["key"]
    form = await request.form(max_files=10, max_fields=20)
    nonce = check_form_csrf(request, form, request.state.binding)
    result = await run_in_threadpool(_record, request, web, viewer, key, form, nonce, "web", viewer.may_complete)
    if isinstance(result, dict):  # field errors: the page again, with the messages next to the fields
        return await run_in_threadpool(duty_page, request, result, {"note": form.get("note") or ""},
                                       getattr(result, "status", 400))
    ok = "repeat" if result.repeated else "done"
    return RedirectResponse(f"/duty/{keypath(key)}?ok={ok}", status_code=303)


class FieldErrors(dict):
    """Messages by form field; `status` 400 for what the user sent, 507 when the server could not store it."""

    status = 400


def _record(request: Request, web: Web, viewer, key: str, form, nonce: str, via: str, allowed) -> object:
    """Store the uploaded files, then record the completion with them in one transaction."""
    from ..evidence import (
        EvidenceRefused,
        EvidenceStorageError,
        attach_evidence,
        data_dir,
        max_bytes,
        store_file,
    )

    now = web.now()
    errors = FieldErrors()
    note = form.get("note") or ""
    if not isinstance(note, str):
        note = ""
    problem = actions.note_problem(note)
    if problem:
        errors["note"] = problem
    uploads = [u for u in form.getlist("evidence") if hasattr(u, "filename") and u.filename]
    stored = []
    if not errors:
        folder, limit = data_dir(web.settings), max_bytes(web.settings)
        for u in uploads:
            try:
                stored.append(store_file(folder, u.filename, u.file, limit))
            except EvidenceStorageError as e:  # disk full, no permission: the server's fault, not the file's
                errors["evidence"], errors.status = e.message, 507
                break
            except EvidenceRefused as e:
                errors["evidence"] = f"{u.filename}：{e.message}"
                break
    if errors:
        return errors
    try:
        with session_scope(web.engine) as s:
            occ = s.scalar(select(OccurrenceRow).where(OccurrenceRow.org == viewer.org, OccurrenceRow.key == key))
            if occ is None or not allowed(occ.owner):
                raise HTTPException(403 if occ is not None else 404, "您无权为这个事项登记完成。")
            done = actions.complete(s, key, now=now, by=viewer.person, note=note, org=viewer.org, via=via,
                                    request_id=nonce, remote=remote(request))
            if not done.repeated and stored:
                attach_evidence(s, org=viewer.org, occurrence_key=key, completion_id=done.completion_id,
                                files=stored, by=viewer.person, now=now)
            return done
    except DubanError as e:
        return {"note": e.message}
    except IntegrityError:  # two clicks at once: the second insert of the same request id loses
        with session_scope(web.engine) as s:
            return actions.complete(s, key, now=now, by=viewer.person, org=viewer.org, via=via, request_id=nonce)


async def duty_waive(request: Request) -> Response:
    web, viewer = await run_in_threadpool(require_viewer, request)
    key = request.path_params["key"]
    form = await request.form(max_files=0, max_fields=10)
    check_form_csrf(request, form, request.state.binding)
    if not viewer.is_admin:
        raise HTTPException(403, "只有管理员可以免办事项。")
    reason = (form.get("reason") or "").strip()
    if not reason:
        return await run_in_threadpool(duty_page, request, {"reason": "请填写免办理由（将记入台账）。"}, {}, 400)

    def go():
        with session_scope(web.engine) as s:
            _visible_occurrence(s, viewer, key)
            actions.waive(s, key, now=web.now(), reason=reason, by=viewer.person, org=viewer.org, via="web",
                          remote=remote(request))

    try:
        await run_in_threadpool(go)
    except DubanError as e:
        return await run_in_threadpool(duty_page, request, {"reason": e.message}, {"reason": reason}, 400)
    return RedirectResponse(f"/duty/{keypath(key)}?ok=waived", status_code=303)


def evidence_download(request: Request) -> Response:
    from ..evidence import EvidenceRow, data_dir, evidence_path

    web, viewer = require_viewer(request)
    try:
        eid = int(request.path_params["id"])
    except ValueError:
        raise HTTPException(404, "没有这个文件。") from None
    with session_scope(web.engine) as s:
        row = s.get(EvidenceRow, eid)
        if row is None or row.org != viewer.org:
            raise HTTPException(404, "没有这个文件。")
        _visible_occurrence(s, viewer, row.occurrence_key)
        path = evidence_path(data_dir(web.settings), row.sha256)
        name = row.filename
    if not path.exists():
        raise HTTPException(410, "文件已不在服务器上，请联系管理员。")
    return FileResponse(path, media_type="application/octet-stream", filename=name,
                        content_disposition_type="attachment")


def rules_page(request: Request) -> Response:
    from ..store import load_ruleset

    web, viewer = require_viewer(request)
    with session_scope(web.engine) as s:
        rs = load_ruleset(s, viewer.org)
        names = queries.names_of(s, viewer.org)
    rows = [{"id": r.id, "title": r.title, "schedule": r.schedule_text(), "owner": names.get(r.for_each or r.owner, r.owner),
             "quota": r.quota, "source": r.source or "", "enabled": r.enabled} for r in rs.rules
            if viewer.sees_all or viewer.owns(r.owner) or (r.for_each and r.for_each in viewer.groups)]
    return page(request, "rules.html", rows=rows, title="规则")


def calendar_page(request: Request) -> Response:
    from ..store import load_calendar

    web, viewer = require_viewer(request)
    try:
        year = int(request.path_params.get("year") or web.now().year)
    except ValueError:
        raise HTTPException(404, "年份无效。") from None
    if not 1950 <= year <= 2200:
        raise HTTPException(404, "年份应在 1950–2200 年之间。")
    with session_scope(web.engine) as s:
        cal = load_calendar(s)
    off, worked = cal.year_table(year)
    off_s, worked_s = set(off), set(worked)
    today = web.now().date()
    months = []
    for m in range(1, 13):
        weeks = []
        for week in stdcal.Calendar().monthdatescalendar(year, m):
            weeks.append([None if d.month != m else
                          {"day": d.day, "mark": "休" if d in off_s else "班" if d in worked_s else "",
                           "weekend": d.weekday() >= 5, "today": d == today} for d in week])
        months.append({"month": m, "weeks": weeks})
    return page(request, "calendar.html", year=year, months=months, provisional=cal.is_provisional(year),
                source=cal.year_source(year), title=f"{year} 年日历")


def ledger_page(request: Request) -> Response:
    web, viewer = require_viewer(request)
    if not viewer.sees_all:
        raise HTTPException(403, "只有管理员和查看人可以下载台账。")
    return page(request, "ledger.html", title="台账")


def ledger_download(request: Request) -> Response:
    import os
    import tempfile

    from starlette.background import BackgroundTask

    from ..ledger import LedgerFilter, export_ledger
    from ..paths import data_dir

    web, viewer = require_viewer(request)
    if not viewer.sees_all:
        raise HTTPException(403, "只有管理员和查看人可以下载台账。")
    fmt = request.path_params["fmt"]
    if fmt not in ("xlsx", "csv", "zip"):
        raise HTTPException(404, "不支持的格式。")
    now = web.now()
    folder = tempfile.mkdtemp(prefix="duban-web-ledger-")
    path = os.path.join(folder, f"台账.{fmt}")
    with session_scope(web.engine) as s:
        export_ledger(s, path, now=now, tz=web.settings.tz, flt=LedgerFilter(org=viewer.org),
                      data=data_dir(web.settings) if fmt == "zip" else None)

    def cleanup():
        import shutil

        shutil.rmtree(folder, ignore_errors=True)

    return FileResponse(path, filename=f"台账-{now:%Y%m%d}.{fmt}", media_type="application/octet-stream",
                        background=BackgroundTask(cleanup))


def digest_page(request: Request) -> Response:
    from ..digest import render_digest

    web, viewer = require_viewer(request)
    if not viewer.sees_all:
        raise HTTPException(403, "只有管理员和查看人可以查看每日汇总。")
    with session_scope(web.engine) as s:
        message = render_digest(s, web.now(), web.settings.digest_to, web.settings.get("DUBAN_TEMPLATE_DIR"), viewer.org)
    return page(request, "digest.html", message=message, title="每日汇总")


# --- the action link ---------------------------------------------------------------------------
def _link_target(request: Request):
    """(web, link, viewer, occurrence) for a valid action link, else an HTTPException."""
    web: Web = request.app.state.web
    token = request.path_params["token"]
    link = web.signer.read_action(token)
    if link is None:
        raise HTTPException(404, "这个链接无效：可能不完整、被改动过，或不是督办发出的。请打开消息里的原始链接。")
    with session_scope(web.engine) as s:
        viewer = queries.viewer_for(s, web.settings, link.org, link.person)
        occ = s.scalar(select(OccurrenceRow).where(OccurrenceRow.org == link.org, OccurrenceRow.key == link.key))
        why = actions.link_usable(occ, web.now()) if viewer else "链接对应的人员已不在名单中"
        if why:
            raise HTTPException(410, f"这个链接已失效：{why}。如有疑问请联系管理员。")
    request.state.viewer = None  # the link shows one duty; it signs nobody in
    return web, link, viewer, occ, token


def action_page(request: Request, errors: dict | None = None, values: dict | None = None, status: int = 200,
                done=None) -> Response:
    web, link, viewer, occ, token = _link_target(request)
    with session_scope(web.engine) as s:
        story = queries.duty_story(s, link.org, link.key, web.now(), web.settings.tz)
        files = _evidence(s, link.org, [link.key]).get(link.key, [])
    return page(request, "action.html", status=status, story=story, files=files, person=viewer, token=token,
                csrf=auth.csrf_token("link:" + token, web.key), errors=errors or {}, values=values or {},
                done=done, limit_mb=_limit_mb(web), title=occ.title)


async def action_post(request: Request) -> Response:
    web: Web = request.app.state.web
    # before the token is even read: guessing links from one address is slowed down too
    wait = await run_in_threadpool(_limited, web, (limits.bucket("link", "ip", remote(request) or "-"),
                                                   limits.LINK_PER_ADDRESS))
    if wait:
        return too_many(request, wait)
    web, link, viewer, occ, token = await run_in_threadpool(_link_target, request)
    wait = await run_in_threadpool(_limited, web, (limits.bucket("link", "person", f"{link.org}/{link.person}"),
                                                   limits.LINK_PER_PERSON))
    if wait:
        return too_many(request, wait)
    form = await request.form(max_files=10, max_fields=20)
    nonce = check_form_csrf(request, form, "link:" + token)
    if occ.state == "waived":
        return await run_in_threadpool(action_page, request, {"note": "该事项已免办，无需登记完成。"}, {}, 409)
    result = await run_in_threadpool(_record, request, web, viewer, link.key, form, nonce, "link", lambda _o: True)
    if isinstance(result, dict):
        return await run_in_threadpool(action_page, request, result, {"note": form.get("note") or ""},
                                       getattr(result, "status", 400))
    return await run_in_threadpool(action_page, request, None, None, 200, result)


# --- errors ----------------------------------------------------------------------------------
async def http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code in (301, 302, 303, 307) and exc.headers:
        return RedirectResponse(exc.headers["Location"], status_code=exc.status_code)
    titles = {400: "请求有误", 403: "无权操作", 404: "找不到页面", 405: "不支持的操作", 409: "无法办理", 410: "链接已失效",
              413: "文件太大", 429: "请求过于频繁"}
    detail = exc.detail if isinstance(exc.detail, str) and any("\u4e00" <= ch <= "\u9fff" for ch in exc.detail) \
        else "请检查地址是否完整，或返回首页。"
    return error_page(request, exc.status_code, titles.get(exc.status_code, "出错了"), detail)


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("页面出错：%s %s", request.method, request.url.path)
    return error_page(request, 500, "服务器内部出错", "请稍后重试；如果一再出现，请联系管理员查看服务日志。")


def body_limit(settings: Settings) -> int:
    """The largest request body: up to 10 files of DUBAN_EVIDENCE_MAX_MB, plus 1 MB for the form."""
    from ..evidence import DEFAULT_MAX_MB, MB, max_bytes

    try:
        each = max_bytes(settings)
    except DubanError:  # a bad setting is reported where it is used (the upload's own check)
        each = DEFAULT_MAX_MB * MB
    return each * 10 + MB


def _body_too_large(scope) -> Response:
    request = Request(scope)
    limit = body_limit(request.app.state.web.settings)
    resp = error_page(request, 413, "提交的内容太大",
                      f"一次提交的内容合计不能超过 {limit // (1024 * 1024)} MB（最多 10 个文件，每个最大 "
                      f"{(limit - 1024 * 1024) // 10 / (1024 * 1024):g} MB）。请压缩或分几次上传。")
    resp.headers["Connection"] = "close"  # the rest of the body is never read
    return resp


def healthz(_request: Request) -> Response:
    return Response("ok\n", media_type="text/plain")


def create_app(settings: Settings, engine: Engine | None = None, clock: Callable[[], datetime] | None = None) -> Starlette:
    """The workbench for these settings; `clock` gives "now" (tests and `--now` pass their own)."""
    from ..db import make_engine

    if clock is None:
        def clock() -> datetime:
            return datetime.now(settings.tz)
    web = Web(settings, engine or make_engine(settings.database_url), clock)
    routes = [
        Route("/", overview_page), Route("/my", my_page),
        Route("/duty/{key:path}/done", duty_done, methods=["POST"]),
        Route("/duty/{key:path}/waive", duty_waive, methods=["POST"]),
        Route("/duty/{key:path}", duty_page),
        Route("/evidence/{id}", evidence_download),
        Route("/rules", rules_page), Route("/calendar", calendar_page), Route("/calendar/{year}", calendar_page),
        Route("/ledger", ledger_page), Route("/ledger/download.{fmt}", ledger_download),
        Route("/digest", digest_page),
        Route("/a/{token}", action_page, methods=["GET", "HEAD"]), Route("/a/{token}", action_post, methods=["POST"]),
        Route("/login", login_page), Route("/login", login_request, methods=["POST"]),
        Route("/login/wecom", wecom_start), Route("/login/wecom/callback", wecom_callback),
        Route("/login/{token}", login_confirm), Route("/login/{token}", login_finish, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})
    app.add_middleware(BodyLimit, limit=body_limit(settings), refuse=_body_too_large)
    app.add_middleware(SecurityHeaders)  # outermost: a refused body gets the headers and a log line too
    app.state.web = web
    return app


def query(**params) -> str:
    return urlencode({k: v for k, v in params.items() if v})


templates.env.globals["query"] = query
templates.env.globals["DEFAULT_ORG"] = DEFAULT_ORG
templates.env.globals["today_year"] = lambda: date.today().year
