"""Tests of the fake WeCom server itself, spoken to over HTTP with requests."""

from __future__ import annotations

import time

import pytest
import requests
from wecom_server import WeComServer

T = 5  # seconds: every request has a timeout


class FakeClock:
    def __init__(self, now: float = 1_767_225_600.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def wecom(clock):
    server = WeComServer(clock=clock).start()
    yield server
    server.stop()


def robot(server, body, key="test-robot-key", timeout=T):
    return requests.post(f"{server.base_url}/cgi-bin/webhook/send", params={"key": key}, json=body, timeout=timeout)


def text(content):
    return {"msgtype": "text", "text": {"content": content}}


def gettoken(server, corpid="ww-test-corp", secret="test-corp-secret"):
    r = requests.get(
        f"{server.base_url}/cgi-bin/gettoken", params={"corpid": corpid, "corpsecret": secret}, timeout=T
    )
    assert r.status_code == 200
    return r.json()


def app_send(server, token, touser="WangShuJi", content="请于本周五前报送整改台账", **extra):
    body = {"touser": touser, "msgtype": "text", "agentid": 1000002, "text": {"content": content}, **extra}
    r = requests.post(
        f"{server.base_url}/cgi-bin/message/send", params={"access_token": token}, json=body, timeout=T
    )
    assert r.status_code == 200
    return r.json()


# ---------------------------------------------------------------- robot
def test_robot_accepts_text_and_markdown(wecom):
    r = robot(wecom, text("督办提醒：整改期限还剩 3 天"))
    assert r.status_code == 200
    assert r.json() == {"errcode": 0, "errmsg": "ok"}
    md = {"msgtype": "markdown", "markdown": {"content": "**逾期** <font color=\"warning\">1 项</font>"}}
    assert robot(wecom, md).json()["errcode"] == 0
    assert wecom.robot_messages == [text("督办提醒：整改期限还剩 3 天"), md]
    assert ("POST", "/cgi-bin/webhook/send?key=test-robot-key") in wecom.requests_log


def test_robot_wrong_key_is_93000_in_a_200(wecom):
    r = robot(wecom, text("hi"), key="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=test-robot-key")
    assert r.status_code == 200
    body = r.json()
    assert body["errcode"] == 93000
    assert body["errmsg"].startswith("invalid webhook url, hint: [")
    assert wecom.robot_messages == []


def test_robot_rejects_unknown_type_and_bad_json(wecom):
    assert robot(wecom, {"msgtype": "voice", "voice": {}}).json()["errcode"] == 40008
    r = requests.post(
        f"{wecom.base_url}/cgi-bin/webhook/send", params={"key": "test-robot-key"}, data=b"not json", timeout=T
    )
    assert r.json()["errcode"] == 40008


def test_robot_counts_bytes_not_characters(wecom):
    chinese = "督" * 1500  # 1500 characters, 4500 UTF-8 bytes
    r = robot(wecom, {"msgtype": "markdown", "markdown": {"content": chinese}})
    assert r.json()["errcode"] == 40058
    assert "markdown.content exceed max length 4096" in r.json()["errmsg"]
    assert robot(wecom, text("督" * 683)).json()["errcode"] == 40058  # 2049 bytes
    assert robot(wecom, text("督" * 682)).json()["errcode"] == 0  # 2046 bytes
    assert robot(wecom, {"msgtype": "markdown", "markdown": {"content": "督" * 1365}}).json()["errcode"] == 0
    assert len(wecom.robot_messages) == 2


def test_robot_rate_limit_20_per_minute(wecom, clock):
    for i in range(20):
        assert robot(wecom, text(f"第{i}条")).json()["errcode"] == 0
        clock.advance(1)
    r = robot(wecom, text("第21条"))
    assert r.json()["errcode"] == 45009
    assert "api freq out of limit" in r.json()["errmsg"]
    assert len(wecom.robot_messages) == 20
    clock.advance(60)
    assert robot(wecom, text("第21条")).json()["errcode"] == 0
    assert len(wecom.robot_messages) == 21


def test_robot_injected_faults(wecom):
    wecom.robot_errors = [{"errcode": 45009, "errmsg": "api freq out of limit"}, {"http_status": 500}]
    assert robot(wecom, text("a")).json()["errcode"] == 45009
    assert robot(wecom, text("a")).status_code == 500
    assert wecom.robot_messages == []
    assert robot(wecom, text("a")).json()["errcode"] == 0  # queue drained
    assert len(wecom.robot_messages) == 1


def test_robot_timeout_after_acceptance(wecom):
    wecom.robot_errors = [{"delay": 0.5, "accept": True}, {"delay": 0.5}]
    with pytest.raises(requests.exceptions.ReadTimeout):
        robot(wecom, text("已送达但超时"), timeout=0.1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        robot(wecom, text("未送达且超时"), timeout=0.1)
    time.sleep(0.8)  # both handlers finish their (real-time) delay
    assert wecom.robot_messages == [text("已送达但超时")]


# ---------------------------------------------------------------- application messages
def test_gettoken_and_send(wecom):
    tok = gettoken(wecom)
    assert tok["errcode"] == 0 and tok["expires_in"] == 7200 and tok["access_token"]
    assert gettoken(wecom)["access_token"] == tok["access_token"]  # same token while valid
    assert wecom.token_requests == 2
    answer = app_send(wecom, tok["access_token"])
    assert answer["errcode"] == 0 and answer["msgid"]
    assert "invaliduser" not in answer
    assert wecom.app_messages[0]["text"]["content"] == "请于本周五前报送整改台账"
    assert ("POST", f"/cgi-bin/message/send?access_token={tok['access_token']}") in wecom.requests_log


def test_gettoken_wrong_credentials(wecom):
    assert gettoken(wecom, corpid="ww-other")["errcode"] == 40013
    assert gettoken(wecom, secret="wrong")["errcode"] == 40001
    assert wecom.token_requests == 2


def test_unknown_and_expired_tokens(wecom, clock):
    assert app_send(wecom, "made-up")["errcode"] == 40014
    token = gettoken(wecom)["access_token"]
    clock.advance(7199)
    assert app_send(wecom, token)["errcode"] == 0
    clock.advance(1)
    expired = app_send(wecom, token)
    assert expired["errcode"] == 42001 and "access_token expired" in expired["errmsg"]
    fresh = gettoken(wecom)["access_token"]
    assert fresh != token
    assert app_send(wecom, fresh)["errcode"] == 0
    wecom.expire_tokens()
    assert app_send(wecom, fresh)["errcode"] == 42001
    assert gettoken(wecom)["access_token"] not in (token, fresh)
    assert len(wecom.app_messages) == 2


def test_wrong_agentid(wecom):
    token = gettoken(wecom)["access_token"]
    body = {"touser": "WangShuJi", "msgtype": "text", "agentid": 1, "text": {"content": "x"}}
    r = requests.post(f"{wecom.base_url}/cgi-bin/message/send", params={"access_token": token}, json=body, timeout=T)
    assert r.json()["errcode"] == 40056


def test_invaliduser_partial_and_total_failure(wecom):
    token = gettoken(wecom)["access_token"]
    partial = app_send(wecom, token, touser="WangShuJi|LiKeZhang|ZhaoGanShi")
    assert partial["errcode"] == 0
    assert partial["invaliduser"] == "likezhang|zhaoganshi"  # the real service lowercases them
    assert wecom.app_inbox["WangShuJi"] and not wecom.app_inbox["ZhangZhuRen"]
    total = app_send(wecom, token, touser="LiKeZhang")
    assert total["errcode"] == 81013
    assert total["errmsg"].startswith("user & party & tag all invalid")
    assert total["invaliduser"] == "likezhang"
    assert len(wecom.app_messages) == 1


def test_duplicate_check_drops_silently(wecom, clock):
    token = gettoken(wecom)["access_token"]
    dup = {"enable_duplicate_check": 1, "duplicate_check_interval": 600}
    assert app_send(wecom, token, **dup)["errcode"] == 0
    assert app_send(wecom, token, **dup)["errcode"] == 0
    assert app_send(wecom, token, touser="ZhangZhuRen", **dup)["errcode"] == 0  # another recipient
    assert len(wecom.app_messages) == 2 and wecom.app_duplicates_dropped == 1
    clock.advance(600)
    assert app_send(wecom, token, **dup)["errcode"] == 0
    assert len(wecom.app_messages) == 3


def test_per_member_limit_drops_without_error(wecom, clock):
    token = gettoken(wecom)["access_token"]
    for i in range(31):
        assert app_send(wecom, token, content=f"提醒{i}")["errcode"] == 0
    assert len(wecom.app_messages) == 30 and wecom.app_dropped_rate == 1
    clock.advance(60)
    assert app_send(wecom, token, content="一分钟后")["errcode"] == 0
    assert len(wecom.app_messages) == 31


def test_app_injected_faults(wecom):
    token = gettoken(wecom)["access_token"]
    wecom.app_errors = [{"errcode": -1, "errmsg": "system busy"}, {"http_status": 502}]
    assert app_send(wecom, token)["errcode"] == -1
    r = requests.post(
        f"{wecom.base_url}/cgi-bin/message/send", params={"access_token": token}, json={}, timeout=T
    )
    assert r.status_code == 502
    assert app_send(wecom, token)["errcode"] == 0
    assert len(wecom.app_messages) == 1
