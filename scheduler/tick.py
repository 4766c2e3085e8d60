"""One pass of the scheduler: plan what is due into the tables, then send what is due."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from .db import session_scope
from .digest import digest_renderer
from .dispatch import LEASE_SECONDS, Dispatched, Dispatcher
from .materialize import Materializer, Planned
from .routing import ConfiguredChannel, configured_channels
from .settings import Settings
from .signing import action_links
from .store import load_people_groups


def my_duties_url(settings: Settings) -> str:
    """The workbench's "my duties" page, where a message listing several duties leads."""
    from .signing import base_url

    return base_url(settings) + MY_PATH


MY_PATH = "/my"
log = logging.getLogger("duban.tick")


class PeopleByOrg(dict):
    """Each branch's people, loaded the first time a delivery of that branch needs them."""

    def __init__(self, engine: Engine):
        super().__init__()
        self.engine = engine

    def __missing__(self, org: str):
        with session_scope(self.engine) as s:
            people = self[org] = load_people_groups(s, org)[0]
        return people


@dataclass
class TickResult:
    planned: Planned
    dispatched: Dispatched


def tick(engine: Engine, settings: Settings, now: datetime, channels: list[ConfiguredChannel] | None = None,
         worker: str | None = None, org: str | None = None) -> TickResult:
    """Create occurrences and deliveries up to `now`, then claim, send and mark what is due
    (for every branch, or only `org`)."""
    with session_scope(engine) as s:
        m = Materializer(s, now, settings.tz, settings.digest_to)
        m.check_calendar()
        todo = [o for o in m.pending_orgs() if org is None or o == org]
    planned = Planned()
    for o in todo:  # one transaction per branch: a district's plan never holds the write lock for long
        with session_scope(engine) as s:
            p = Materializer(s, now, settings.tz, settings.digest_to).plan_org(o)
        planned.occurrences += p.occurrences
        planned.deliveries += p.deliveries
    people = PeopleByOrg(engine)
    if planned.occurrences or planned.deliveries:
        log.info("计划：新建事项 %d 项，新建待发消息 %d 条", planned.occurrences, planned.deliveries)
    dispatcher = Dispatcher(engine, channels or configured_channels(settings), settings.tz, worker=worker,
                            template_dir=settings.get("DUBAN_TEMPLATE_DIR"), digest_renderer=digest_renderer,
                            lease_seconds=int(settings.get("DUBAN_LEASE_SECONDS", str(LEASE_SECONDS))), org=org,
                            link_for=action_links(settings), my_url=my_duties_url(settings))
    return TickResult(planned, dispatcher.run(now, people))
