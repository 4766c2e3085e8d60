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
from .store import load_people_groups, organisations

log = logging.getLogger("duban.tick")


@dataclass
class TickResult:
    planned: Planned
    dispatched: Dispatched


def tick(engine: Engine, settings: Settings, now: datetime, channels: list[ConfiguredChannel] | None = None,
         worker: str | None = None, org: str | None = None) -> TickResult:
    """Create occurrences and deliveries up to `now`, then claim, send and mark what is due
    (for every branch, or only `org`)."""
    with session_scope(engine) as s:
        planned = Materializer(s, now, settings.tz, settings.digest_to).run(orgs=[org] if org else None)
        people = {o: load_people_groups(s, o)[0] for o in ([org] if org else organisations(s))}
    if planned.occurrences or planned.deliveries:
        log.info("计划：新建事项 %d 项，新建待发消息 %d 条", planned.occurrences, planned.deliveries)
    dispatcher = Dispatcher(engine, channels or configured_channels(settings), settings.tz, worker=worker,
                            template_dir=settings.get("DUBAN_TEMPLATE_DIR"), digest_renderer=digest_renderer,
                            lease_seconds=int(settings.get("DUBAN_LEASE_SECONDS", str(LEASE_SECONDS))), org=org)
    return TickResult(planned, dispatcher.run(now, people))
