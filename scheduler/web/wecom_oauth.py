"""Signing in inside WeCom: OAuth `snsapi_base` gives the person's userid without a prompt."""

from __future__ import annotations

from urllib.parse import urlencode

from rules.errors import DubanError

from ..settings import Settings

OAUTH_BASE = "https://open.weixin.qq.com"


class WeComOAuthError(DubanError):
    pass


def authorize_url(settings: Settings, redirect_uri: str, state: str) -> str:
    base = (settings.get("DUBAN_WECOM_OAUTH_BASE") or OAUTH_BASE).rstrip("/")
    params = urlencode({"appid": settings.get("DUBAN_WECOM_CORP_ID"), "redirect_uri": redirect_uri,
                        "response_type": "code", "scope": "snsapi_base", "state": state,
                        "agentid": settings.get("DUBAN_WECOM_AGENT_ID")})
    return f"{base}/connect/oauth2/authorize?{params}#wechat_redirect"


def user_id_for_code(settings: Settings, code: str) -> str:
    """The userid for a one-time code (`auth/getuserinfo`), with the app's cached access token."""
    from notifications.channels.wecom_app import WeComAppChannel

    app = WeComAppChannel(settings.get("DUBAN_WECOM_CORP_ID"), settings.get("DUBAN_WECOM_CORP_SECRET"),
                          settings.get("DUBAN_WECOM_AGENT_ID"), settings.get("DUBAN_WECOM_API_BASE"))
    try:
        data = app.api_get("/cgi-bin/auth/getuserinfo", {"code": code})
    except Exception as e:  # noqa: BLE001 - any failure is one Chinese message on the page
        raise WeComOAuthError(f"无法向企业微信确认您的身份（{getattr(e, 'message', type(e).__name__)}），请稍后重试。") from None
    userid = data.get("userid") or data.get("UserId")
    if not userid:
        raise WeComOAuthError("企业微信没有返回成员账号（可能不是本企业成员，或应用可见范围不包含您）。")
    return userid
