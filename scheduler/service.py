"""`duban run`: APScheduler as a clock only. A tick every minute and the digest at its time, both in
a memory job store; what is due is always decided from duban's own tables, so a missed run loses
nothing and several processes can share one PostgreSQL database."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from datetime import datetime, timedelta

from .app import App
from .db import session_scope
from .digest import plan_digest
from .routing import configured_channels
from .tick import tick

log = logging.getLogger("duban.service")


def release_memory() -> None:
    """Give memory freed after a planning pass back to the system, so an idle service stays small."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the memory is reused, just not returned
        pass


def make_clock(app: App, offset: timedelta) -> Callable[[], datetime]:
    """Wall-clock time shifted by `offset` (non-zero when `--now` starts the service at another time)."""
    return lambda: datetime.now(app.settings.tz) + offset


def service_pass(app: App, now: datetime, channels, worker: str) -> None:
    """One run of the tick job: today's digest once its time has come, then a scheduler tick."""
    s = app.settings
    hh, mm = (int(x) for x in s.digest_at.split(":"))
    local = now.astimezone(s.tz)
    if (local.hour, local.minute) >= (hh, mm):
        with session_scope(app.engine) as session:
            if plan_digest(session, now, s.tz, s.digest_to, s.digest_at):
                log.info("已安排今天的每日汇总，发给 %s", s.digest_to)
    result = tick(app.engine, s, now, channels, worker=worker)
    if result.planned.occurrences or result.planned.deliveries:
        release_memory()  # after a planning pass only: an idle tick leaves nothing to give back
    sent = sum(result.dispatched.sent.values())
    if sent or result.dispatched.retrying or result.dispatched.dead:
        log.info("本次检查：发送 %d 条，待重试 %d 条，放弃 %d 条", sent, result.dispatched.retrying,
                 result.dispatched.dead)


def run_service(app: App, offset: timedelta, interval_seconds: int = 60) -> None:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    from .dispatch import worker_id

    s = app.settings
    clock = make_clock(app, offset)
    channels = configured_channels(s)
    worker = worker_id()

    def job() -> None:
        try:
            service_pass(app, clock(), channels, worker)
        except Exception:  # keep the service alive; the next tick retries from the tables
            log.exception("本次检查出错，下一次检查会重试")

    scheduler = BlockingScheduler(timezone=s.tz, jobstores={"default": MemoryJobStore()},
                                  executors={"default": ThreadPoolExecutor(1)},
                                  job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    scheduler.add_job(job, IntervalTrigger(seconds=interval_seconds, timezone=s.tz), id="tick",
                      next_run_time=datetime.now(s.tz))
    hh, mm = (int(x) for x in s.digest_at.split(":"))
    scheduler.add_job(job, CronTrigger(hour=hh, minute=mm, timezone=s.tz), id="digest")

    stopping = []

    def stop(signum, _frame) -> None:
        if stopping:  # a second signal while the first waits for the running check: already stopping
            return
        stopping.append(signum)
        log.info("收到信号 %s，正在停止（等待本次检查完成）", signal.Signals(signum).name)
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    web = start_web(app, clock)
    log.info("督办服务已启动：渠道 %s；每 %d 秒检查一次；每日汇总 %s 发给 %s；进程 %s",
             "、".join(c.channel.label for c in channels), interval_seconds, s.digest_at, s.digest_to, worker)
    try:
        scheduler.start()
    finally:
        if web:
            from .web.serve import stop as stop_web

            stop_web(*web)
    log.info("督办服务已停止")


def start_web(app: App, clock: Callable[[], datetime]):
    """The workbench beside the scheduler, unless `DUBAN_WEB_PORT=off`; prints where to open it."""
    from .output import say
    from .signing import base_url
    from .web.serve import make_server, start_in_thread, web_address

    address = web_address(app.settings)
    if address is None:
        log.info("工作台已关闭（DUBAN_WEB_PORT=off）")
        return None
    server = make_server(app.settings, app.engine, clock, *address)
    thread = start_in_thread(server)
    say(f"督办工作台已启动：{base_url(app.settings)}/ （监听 {address[0]}:{address[1]}）\n"
        f"登录：管理员运行 duban web login-link 人员编号 获取登录链接，或在登录页用邮箱获取。")
    return server, thread
