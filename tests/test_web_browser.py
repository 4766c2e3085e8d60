"""The workbench in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by
selenium against the app served by uvicorn on loopback. Screenshots of every page, 1280 px and
390 px wide, go to `tests/screenshots/` (DUBAN_SCREENSHOTS overrides) for people to look at."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from web_support import Clock, setup_branch

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(os.environ.get("DUBAN_SCREENSHOTS") or Path(__file__).parent / "screenshots")

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)) or shutil.which("chromedriver") is None
    and not os.path.exists(DRIVER),
    reason="浏览器测试已跳过：没有安装 Debian 的 chromium 和 chromium-driver（apt-get install chromium chromium-driver）")


@pytest.fixture
def served(duban, workdir):
    """The branch's workbench on a free loopback port, with a clock the test holds."""
    import socket

    import uvicorn

    from scheduler.settings import load_settings
    from scheduler.web.app import create_app

    setup_branch(duban, workdir)
    assert duban("tick", "--now", "2026-12-16T10:00").code == 0  # the party day is overdue
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    environ = {k: v for k, v in os.environ.items() if k.startswith("DUBAN_")}
    environ["DUBAN_BASE_URL"] = f"http://127.0.0.1:{port}"
    clock = Clock("2026-12-16T10:00")
    app = create_app(load_settings(environ, dotenv=False), clock=clock)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    os.environ["DUBAN_BASE_URL"] = environ["DUBAN_BASE_URL"]
    yield f"http://127.0.0.1:{port}"
    del os.environ["DUBAN_BASE_URL"]
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chrome'}", "--lang=zh-CN"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_window_size(1280, 900)
    yield driver
    driver.quit()


def shoot(driver, name: str) -> None:
    """A full-page screenshot at 1280 px and at 390 px (a phone inside WeCom)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        driver.set_window_size(width, 900)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(max(height, 600), 4000))
        driver.save_screenshot(str(SHOTS / f"{name}-{width}.png"))
    driver.set_window_size(1280, 900)


def wait_text(browser, text: str, timeout: float = 10) -> str:
    """The page's text once it shows `text` (a click starts a navigation; this waits for its page)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(d):
        try:
            body = d.find_element(By.TAG_NAME, "body").text
        except WebDriverException:  # the old page is being replaced
            return False
        return body if text in body else False

    return WebDriverWait(browser, timeout).until(shown)


def sign_in(browser, duban, base: str, person: str) -> None:
    from selenium.webdriver.common.by import By

    r = duban("web", "login-link", person, "--now", "2026-12-16T10:00")
    url = r.out.strip().splitlines()[-1]
    assert url.startswith(base)
    browser.get(url)
    shoot(browser, "login-confirm")
    browser.find_element(By.CSS_SELECTOR, "button.primary").click()
    wait_text(browser, "退出")


def test_secretary_signs_in_reads_the_overview_and_waives(served, browser, duban, workdir):
    from selenium.webdriver.common.by import By

    browser.get(served + "/login")
    shoot(browser, "login")
    sign_in(browser, duban, served, "secretary")
    assert "总览" in browser.title
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "主题党日" in body and "已逾期" in body and "0/2" in body
    shoot(browser, "overview")
    browser.find_element(By.LINK_TEXT, "主题党日").click()
    wait_text(browser, "完成记录")
    assert "主题党日" in browser.title
    shoot(browser, "duty")
    browser.find_element(By.TAG_NAME, "summary").click()
    browser.find_element(By.CSS_SELECTOR, "button.danger").click()  # no reason: refused next to the field
    wait_text(browser, "请填写免办理由")
    shoot(browser, "duty-waive-refused")
    browser.find_element(By.NAME, "reason").send_keys("与区委组织的主题党日合并进行")
    browser.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait_text(browser, "已免办")
    for path, name in (("/rules", "rules"), ("/calendar/2026", "calendar"), ("/ledger", "ledger"),
                       ("/digest", "digest"), ("/my", "my")):
        browser.get(served + path)
        assert "出错" not in browser.title
        shoot(browser, name)
    state = _db(duban, "SELECT state FROM occurrences WHERE key = 'party-day@2026-12'")
    assert state == [("waived",)]


def test_staff_member_records_a_completion_with_evidence(served, browser, duban, workdir):
    from selenium.webdriver.common.by import By

    sign_in(browser, duban, served, "li")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "主题党日" not in body  # another person's duty
    browser.get(served + "/duty/party-day@2026-12")
    wait_text(browser, "找不到")
    shoot(browser, "not-found")
    browser.get(served + "/my")
    browser.find_element(By.LINK_TEXT, "意识形态工作专题研讨").click()
    wait_text(browser, "完成记录")
    evidence = workdir / "研讨记录.txt"
    evidence.write_text("12月16日专题研讨，讨论意识形态工作责任制落实情况。\n", encoding="utf-8")
    browser.find_element(By.NAME, "note").send_keys("第一次专题研讨，9人参加")
    browser.find_element(By.NAME, "evidence").send_keys(str(evidence))
    browser.find_element(By.CSS_SELECTOR, "button.primary").click()
    body = wait_text(browser, "已登记完成")
    assert "1/2" in body and "研讨记录.txt" in body
    shoot(browser, "duty-after-done")
    assert _db(duban, "SELECT done_count, state FROM occurrences WHERE key = 'ideology-seminar@2026'") == [(1, "open")]


def test_a_post_without_csrf_token_is_refused_in_the_browser(served, browser, duban):
    """A form on another page (an attacker's) posts to the workbench: refused, nothing changes."""
    from selenium.webdriver.common.by import By

    sign_in(browser, duban, served, "secretary")
    browser.execute_script("""
        const f = document.createElement('form'); f.method = 'post';
        f.action = '/duty/party-day@2026-12/waive';
        const r = document.createElement('input'); r.name = 'reason'; r.value = '伪造'; f.appendChild(r);
        document.body.appendChild(f); f.submit();""")
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def refused(d) -> bool:
        try:
            return "安全校验码" in d.find_element(By.TAG_NAME, "body").text
        except WebDriverException:  # the page is being replaced
            return False

    WebDriverWait(browser, 10).until(refused)
    shoot(browser, "csrf-refused")
    assert _db(duban, "SELECT state FROM occurrences WHERE key = 'party-day@2026-12'") == [("open",)]


def test_the_action_link_page_on_a_phone(served, browser, duban, smtp):
    from selenium.webdriver.common.by import By
    from web_support import LINK

    assert duban("tick", "--now", "2027-01-12T09:05").code == 0  # January's party day, 3 days ahead
    links = [LINK.findall(m.text) for m in smtp.handler.to("office@example.cn")]
    link = [x for x in links if x][-1][0]
    browser.get(link)
    shoot(browser, "action")
    browser.find_element(By.NAME, "note").send_keys("1月12日召开主题党日")
    browser.find_element(By.CSS_SELECTOR, "button.primary").click()
    wait_text(browser, "已登记完成")
    shoot(browser, "action-done")


def _db(duban, sql: str):
    engine = sa.create_engine(duban.state["url"])
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(sql))]
    finally:
        engine.dispose()
