"""Headers on every response, and an access log that never holds a token or a query string."""

from __future__ import annotations

import logging
import re
import time

access_log = logging.getLogger("duban.web.access")

HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                 b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),  # the token in an action link must not leak to other sites
    (b"cache-control", b"no-store"),
]
# /a/<token>, /login/<token>, /cal/<token>: the secret part of a path is never logged
_TOKEN_PATH = re.compile(r"^/(a|login|cal)/(?!wecom\b)[^/]+")


def loggable_path(path: str) -> str:
    return _TOKEN_PATH.sub(r"/\1/***", path)


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.monotonic()
        status = {}

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                have = {k.lower() for k, _ in message.get("headers", [])}
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [h for h in HEADERS if h[0] not in have]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            client = scope.get("client") or ("-", 0)
            access_log.info("%s %s %s %s %.0fms", client[0], scope["method"], loggable_path(scope["path"]),
                            status.get("code", "-"), (time.monotonic() - started) * 1000)


class BodyLimit:
    """Refuses a request body over `limit` bytes before it fills memory or the disk: at once when
    Content-Length says so, else (chunked) as soon as the bytes read pass it. `refuse(scope)` is the
    413 response (a Chinese page)."""

    def __init__(self, app, limit: int, refuse):
        self.app, self.limit, self.refuse = app, limit, refuse

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        try:
            too_long = length is not None and int(length) > self.limit
        except ValueError:
            too_long = False  # the server refuses a malformed length itself
        if too_long:  # not a byte of the body is read
            return await self.refuse(scope)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # stop reading: the view's form parsing ends with a 413
                    raise BodyTooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLarge:  # only when nothing was answered yet: a view that read the body itself
            await self.refuse(scope)(scope, receive, send)


class BodyTooLarge(Exception):
    pass
