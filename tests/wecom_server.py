"""A fake WeCom (企业微信) API on loopback: group robot + application messages, able to fail on purpose.

It speaks the network contract of the real service so that our clients can be tested end to end:

* ``POST /cgi-bin/webhook/send?key=KEY`` — group robot (doc 91770).
* ``GET  /cgi-bin/gettoken?corpid=ID&corpsecret=SECRET`` — access token (doc 91039).
* ``POST /cgi-bin/message/send?access_token=TOKEN`` — application message (doc 90236).

Like the real service, every answer is HTTP 200 with an ``errcode`` in the JSON body (unless a fault
injects another HTTP status), and error messages carry the ``hint: [...] ... more info at ...`` tail.
Time comes from an injectable ``clock`` so rate limits and token expiry are tested without sleeping.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROBOT_TEXT_MAX_BYTES = 2048
ROBOT_MARKDOWN_MAX_BYTES = 4096
ROBOT_PER_MINUTE = 20
APP_PER_MEMBER_PER_MINUTE = 30
APP_PER_MEMBER_PER_HOUR = 1000
DUPLICATE_CHECK_DEFAULT = 1800  # seconds, doc 90236
DUPLICATE_CHECK_MAX = 4 * 3600


class WeComServer:
    """Start with ``WeComServer().start()``; point ``DUBAN_WECOM_API_BASE`` at ``base_url``."""

    def __init__(
        self,
        robot_key: str = "test-robot-key",
        corp_id: str = "ww-test-corp",
        corp_secret: str = "test-corp-secret",
        agent_id: int = 1000002,
        users=("WangShuJi", "ZhangZhuRen"),
        clock: Callable[[], float] | None = None,
    ):
        self.robot_key = robot_key
        self.corp_id = corp_id
        self.corp_secret = corp_secret
        self.agent_id = agent_id
        self.users = tuple(users)
        self.clock = clock or time.time
        self.token_ttl: int = 7200

        self.robot_messages: list[dict] = []
        self.app_messages: list[dict] = []
        # userid (as configured) → app message bodies actually delivered to that member
        self.app_inbox: dict[str, list[dict]] = {u: [] for u in self.users}
        self.app_duplicates_dropped: int = 0
        self.app_dropped_rate: int = 0  # one per recipient left out by the per-member limit
        self.token_requests: int = 0
        self.requests_log: list[tuple[str, str]] = []

        self.robot_errors: list[dict] = []
        self.app_errors: list[dict] = []

        self.lock = threading.RLock()
        self._robot_sent: deque[float] = deque()
        self._tokens: dict[str, float] = {}  # token → issue time (by clock)
        self._revoked: set[str] = set()
        self._member_sent: dict[str, deque[float]] = {u.lower(): deque() for u in self.users}
        self._recent_app: dict[str, float] = {}  # canonical request JSON → time accepted
        # OAuth (snsapi_base): who "is using the WeCom client" when it opens the authorize URL
        self.oauth_user: str | None = None
        self._oauth_codes: dict[str, tuple[str, float]] = {}  # code → (userid, issued)
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> WeComServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="wecom-fake", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wake handlers sleeping on an injected delay
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> WeComServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- helpers for tests
    def expire_tokens(self) -> None:
        """Invalidate every token issued so far: their next use answers 42001."""
        with self.lock:
            self._revoked.update(self._tokens)

    @property
    def current_token(self) -> str | None:
        """The token gettoken would hand out now, if one is still valid."""
        with self.lock:
            return self._valid_token(self.clock())

    # ---------------------------------------------------------------- internals
    def _err(self, code: int, msg: str, **extra: Any) -> dict:
        hint = f"{int(self.clock() * 1000)}{secrets.randbelow(10**9):09d}"
        body = {
            "errcode": code,
            "errmsg": f"{msg}, hint: [{hint}], from ip: 127.0.0.1, "
            f"more info at https://open.work.weixin.qq.com/devtool/query?e={code}",
        }
        body.update(extra)
        return body

    def _valid_token(self, now: float) -> str | None:
        for tok, issued in self._tokens.items():
            if tok not in self._revoked and now < issued + self.token_ttl:
                return tok
        return None

    # robot ---------------------------------------------------------------------
    def robot_send(self, query: dict[str, str], raw: bytes) -> dict:
        with self.lock:
            if query.get("key") != self.robot_key:
                return self._err(93000, "invalid webhook url")
            body = _parse_json(raw)
            if body is None or body.get("msgtype") not in ("text", "markdown"):
                return self._err(40008, "invalid message type")
            mtype = body["msgtype"]
            part = body.get(mtype)
            content = part.get("content") if isinstance(part, dict) else None
            if not isinstance(content, str) or not content:
                return self._err(44004, "empty content")
            limit = ROBOT_TEXT_MAX_BYTES if mtype == "text" else ROBOT_MARKDOWN_MAX_BYTES
            if len(content.encode("utf-8")) > limit:
                return self._err(40058, f"{mtype}.content exceed max length {limit}. invalid Request Parameter")
            now = self.clock()
            while self._robot_sent and self._robot_sent[0] <= now - 60:
                self._robot_sent.popleft()
            if len(self._robot_sent) >= ROBOT_PER_MINUTE:
                return self._err(45009, "api freq out of limit")
            self._robot_sent.append(now)
            self.robot_messages.append(body)
            return {"errcode": 0, "errmsg": "ok"}

    # app -----------------------------------------------------------------------
    def gettoken(self, query: dict[str, str]) -> dict:
        with self.lock:
            self.token_requests += 1
            corpid, secret = query.get("corpid"), query.get("corpsecret")
            if not corpid:
                return self._err(41002, "corpid missing")
            if corpid != self.corp_id:
                return self._err(40013, "invalid corpid")
            if not secret:
                return self._err(41004, "corpsecret missing")
            if secret != self.corp_secret:
                return self._err(40001, "invalid credential, access_token is invalid or not latest")
            now = self.clock()
            # "有效期内重复获取返回相同结果": the same token, its lifetime not extended
            tok = self._valid_token(now)
            if tok is None:
                tok = secrets.token_urlsafe(96)
                self._tokens[tok] = now
            remaining = int(self._tokens[tok] + self.token_ttl - now)
            return {"errcode": 0, "errmsg": "ok", "access_token": tok, "expires_in": remaining}

    # OAuth ---------------------------------------------------------------------
    def oauth_authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """The WeCom client's redirect: back to `redirect_uri` with a one-time code (5 minutes)."""
        from urllib.parse import urlencode

        with self.lock:
            if query.get("appid") != self.corp_id or query.get("scope") != "snsapi_base" or not query.get("redirect_uri"):
                return 400, {}, "参数错误".encode()
            if query.get("agentid") != str(self.agent_id):
                return 400, {}, "agentid 错误".encode()
            if self.oauth_user is None:  # opened outside the WeCom client
                return 403, {}, "请在企业微信客户端打开链接".encode()
            code = secrets.token_urlsafe(24)
            self._oauth_codes[code] = (self.oauth_user, self.clock())
            sep = "&" if "?" in query["redirect_uri"] else "?"
            target = f"{query['redirect_uri']}{sep}{urlencode({'code': code, 'state': query.get('state', '')})}"
            return 302, {"Location": target}, b""

    def getuserinfo(self, query: dict[str, str]) -> dict:
        with self.lock:
            tok = query.get("access_token")
            if not tok:
                return self._err(41001, "access_token missing")
            issued = self._tokens.get(tok)
            if issued is None or tok in self._revoked:
                return self._err(40014, "invalid access_token")
            if self.clock() >= issued + self.token_ttl:
                return self._err(42001, "access_token expired")
            entry = self._oauth_codes.pop(query.get("code", ""), None)  # single use
            if entry is None or self.clock() > entry[1] + 300:
                return self._err(40029, "invalid code")
            userid = entry[0]
            if userid.lower() not in self._member_sent:
                return {"errcode": 0, "errmsg": "ok", "openid": "o" + userid, "external_userid": ""}
            return {"errcode": 0, "errmsg": "ok", "userid": userid, "user_ticket": ""}

    def message_send(self, query: dict[str, str], raw: bytes) -> dict:
        with self.lock:
            now = self.clock()
            tok = query.get("access_token")
            if not tok:
                return self._err(41001, "access_token missing")
            if tok not in self._tokens:
                return self._err(40014, "invalid access_token")
            if tok in self._revoked or now >= self._tokens[tok] + self.token_ttl:
                return self._err(42001, "access_token expired")
            body = _parse_json(raw)
            if body is None:
                return self._err(40008, "invalid message type")
            agentid = body.get("agentid")
            if agentid is None or agentid == "":
                return self._err(41011, "missing agentid")
            if str(agentid).strip() != str(self.agent_id):
                return self._err(40056, "invalid agentid")
            mtype = body.get("msgtype")
            if mtype not in ("text", "markdown", "textcard") or not isinstance(body.get(mtype), dict):
                return self._err(40008, "invalid message type")
            if mtype == "textcard":  # limits as documented (and modelled by wechatpy)
                card = body["textcard"]
                for field, limit in (("title", 128), ("description", 512), ("url", 2048)):
                    value = card.get(field)
                    if not isinstance(value, str) or not value:
                        return self._err(41016 if field == "title" else 41017 if field == "description" else 41018,
                                         f"missing textcard {field}")
                    if len(value.encode("utf-8")) > limit:
                        return self._err(40058, f"textcard.{field} exceed max length {limit}. invalid Request Parameter")
                if len(str(card.get("btntxt") or "")) > 4:
                    return self._err(40058, "textcard.btntxt exceed max length 4. invalid Request Parameter")

            known = {u.lower(): u for u in self.users}
            touser = [u.strip() for u in str(body.get("touser") or "").split("|") if u.strip()]
            if "@all" in touser:
                valid, invalid = list(self.users), []
            else:
                valid = list(dict.fromkeys(known[u.lower()] for u in touser if u.lower() in known))
                invalid = [u.lower() for u in touser if u.lower() not in known]
            # the fake has no departments or tags: every one named is invalid
            parties = [p.strip() for p in str(body.get("toparty") or "").split("|") if p.strip()]
            tags = [t.strip() for t in str(body.get("totag") or "").split("|") if t.strip()]
            extra = {}
            if invalid:
                extra["invaliduser"] = "|".join(invalid)
            if parties:
                extra["invalidparty"] = "|".join(parties)
            if tags:
                extra["invalidtag"] = "|".join(tags)
            if not valid:
                return self._err(81013, "user & party & tag all invalid", **extra)

            answer = {"errcode": 0, "errmsg": "ok", **extra, "msgid": secrets.token_urlsafe(48)}

            # duplicate check: "同样内容(请求json)的消息" within the interval is not delivered again
            key = json.dumps(body, sort_keys=True, ensure_ascii=False)
            for k, t in list(self._recent_app.items()):
                if t <= now - DUPLICATE_CHECK_MAX:
                    del self._recent_app[k]
            if _truthy(body.get("enable_duplicate_check")):
                interval = _int(body.get("duplicate_check_interval"), DUPLICATE_CHECK_DEFAULT)
                interval = max(0, min(interval, DUPLICATE_CHECK_MAX))
                seen = self._recent_app.get(key)
                if seen is not None and now - seen < interval:
                    self.app_duplicates_dropped += 1
                    return answer

            # per-member limits: "超过部分会被丢弃不下发" — dropped, still answered ok
            delivered = []
            for user in valid:
                sent = self._member_sent.setdefault(user.lower(), deque())
                while sent and sent[0] <= now - 3600:
                    sent.popleft()
                last_minute = sum(1 for t in sent if t > now - 60)
                if last_minute >= APP_PER_MEMBER_PER_MINUTE or len(sent) >= APP_PER_MEMBER_PER_HOUR:
                    self.app_dropped_rate += 1
                    continue
                sent.append(now)
                delivered.append(user)
            if delivered:
                self.app_messages.append(body)
                self._recent_app[key] = now
                for user in delivered:
                    self.app_inbox.setdefault(user, []).append(body)
            return answer

    def _take_fault(self, queue: list[dict]) -> dict | None:
        with self.lock:
            return queue.pop(0) if queue else None


def _parse_json(raw: bytes) -> dict | None:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _truthy(v: Any) -> bool:
    return v not in (None, 0, "0", "", False)


def _int(v: Any, default: int) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


class _Handler(BaseHTTPRequestHandler):
    fake: WeComServer
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        with fake.lock:
            fake.requests_log.append((method, self.path))
        raw = self._read_body()
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        route = parts.path
        if route == "/cgi-bin/gettoken":
            if method != "GET":
                return self._json(fake._err(43001, "require GET method"))
            return self._json(fake.gettoken(query))
        if route == "/connect/oauth2/authorize":
            status, headers, body = fake.oauth_authorize(query)
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        if route == "/cgi-bin/auth/getuserinfo":
            if method != "GET":
                return self._json(fake._err(43001, "require GET method"))
            return self._json(fake.getuserinfo(query))
        if route == "/cgi-bin/webhook/send":
            queue, handler = fake.robot_errors, fake.robot_send
        elif route == "/cgi-bin/message/send":
            queue, handler = fake.app_errors, fake.message_send
        else:
            return self._json({"errcode": 404, "errmsg": "not found"}, status=404)
        if method != "POST":
            return self._json(fake._err(43002, "require POST method"))

        fault = fake._take_fault(queue)
        if fault is None:
            return self._json(handler(query, raw))
        if fault.get("delay"):
            fake._stopping.wait(float(fault["delay"]))
        answer = handler(query, raw) if fault.get("accept") else None
        if "http_status" in fault:
            status = int(fault["http_status"])
            return self._send(status, fault.get("body", f"<html><body>{status}</body></html>").encode(), "text/html")
        if "errcode" in fault:
            injected = {"errcode": fault["errcode"], "errmsg": fault.get("errmsg", "injected error")}
            return self._json(injected)
        if answer is not None:
            return self._json(answer)
        return self._json(fake._err(-1, "system busy"))

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _json(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self._send(status, data, "application/json; charset=UTF-8")

    def _send(self, status: int, data: bytes, ctype: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer
