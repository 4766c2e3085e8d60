"""Tables. Every change to them is an alembic migration in `migrations/versions/`."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ACTIVE = "status IN ('pending', 'sending')"  # deliveries the dispatcher still has to look at


class UTCDateTime(TypeDecorator):
    """An instant: stored in UTC (SQLite keeps no zone, so naive UTC there), always read back aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


DEFAULT_ORG = "default"


def org_column(primary_key: bool = False) -> Mapped[str]:
    """The organisation (branch) a row belongs to; one office uses only the default one."""
    return mapped_column(String(64), primary_key=primary_key, default=DEFAULT_ORG, server_default=DEFAULT_ORG)


class PersonRow(Base):
    __tablename__ = "people"
    org: Mapped[str] = org_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    wecom: Mapped[str | None] = mapped_column(String(128))
    mobile: Mapped[str | None] = mapped_column(String(32))


class GroupRow(Base):
    __tablename__ = "groups"
    org: Mapped[str] = org_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    members: Mapped[list[str]] = mapped_column(JSON)


class RuleRow(Base):
    __tablename__ = "rules"
    org: Mapped[str] = org_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)  # the rule as written, every value explicit
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    added_on: Mapped[date] = mapped_column(Date)  # the implicit `start` when the rule has none
    origin: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RuleChangeRow(Base):
    """The audit trail of rule changes."""

    __tablename__ = "rule_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org: Mapped[str] = org_column()
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    rule_id: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32))  # added | updated | disabled | enabled
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    origin: Mapped[str | None] = mapped_column(String(500))


class CalendarYearRow(Base):
    """A year's official arrangement supplied by the user; wins over the library."""

    __tablename__ = "calendar_years"
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(String(500))
    holidays: Mapped[list[str]] = mapped_column(JSON)
    workdays: Mapped[list[str]] = mapped_column(JSON)
    text: Mapped[str | None] = mapped_column(Text)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org: Mapped[str] = org_column()
    type: Mapped[str] = mapped_column(String(64), index=True)
    date: Mapped[date] = mapped_column(Date)
    title: Mapped[str | None] = mapped_column(String(500))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StateRow(Base):
    """Small facts the service keeps between ticks (what was materialised, the config version)."""

    __tablename__ = "state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class OccurrenceRow(Base):
    """One time a duty falls due; `key` is RULE@PERIOD, unique, so creating it twice is a no-op."""

    __tablename__ = "occurrences"
    __table_args__ = (UniqueConstraint("org", "key", name="uq_occurrences_org_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org: Mapped[str] = org_column()
    key: Mapped[str] = mapped_column(String(200))
    rule_id: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(500))
    period: Mapped[str] = mapped_column(String(100))
    owner: Mapped[str | None] = mapped_column(String(64))
    opens: Mapped[date] = mapped_column(Date)
    due: Mapped[date] = mapped_column(Date, index=True)
    quota: Mapped[int] = mapped_column(Integer)
    provisional: Mapped[bool] = mapped_column(Boolean, default=False)
    event_id: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)  # open | done | waived
    done_count: Mapped[int] = mapped_column(Integer, default=0)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CompletionRow(Base):
    __tablename__ = "completions"
    __table_args__ = (Index("ix_completions_org_at", "org", "at"),
                      Index("ix_completions_org_occurrence", "org", "occurrence_key"),
                      Index("uq_completions_org_request", "org", "request_id", unique=True))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org: Mapped[str] = org_column()
    occurrence_key: Mapped[str] = mapped_column(String(200), index=True)
    by: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[str | None] = mapped_column(Text)
    via: Mapped[str | None] = mapped_column(String(16))  # cli | web | link
    request_id: Mapped[str | None] = mapped_column(String(64))  # a form's one-time id: two clicks record once


class EvidenceRow(Base):
    """One evidence file (佐证材料) attached to an occurrence; the bytes live in the data directory under
    their SHA-256 (`scheduler.evidence.evidence_path`), so the same file attached twice is stored once."""

    __tablename__ = "evidence"
    __table_args__ = (Index("ix_evidence_org_occurrence", "org", "occurrence_key"),
                      Index("ix_evidence_sha256", "sha256"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org: Mapped[str] = org_column()
    occurrence_key: Mapped[str] = mapped_column(String(200))
    completion_id: Mapped[int | None] = mapped_column(Integer)  # the completion it proves, if any
    filename: Mapped[str] = mapped_column(String(200))  # as shown, sanitised
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(100))
    uploaded_by: Mapped[str | None] = mapped_column(String(200))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WaiverRow(Base):
    __tablename__ = "waivers"
    __table_args__ = (Index("ix_waivers_org_occurrence", "org", "occurrence_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org: Mapped[str] = org_column()
    occurrence_key: Mapped[str] = mapped_column(String(200), index=True)
    reason: Mapped[str] = mapped_column(Text)
    by: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    via: Mapped[str | None] = mapped_column(String(16))


class DeliveryRow(Base):
    """A message planned for one person. `key` = occurrence|kind|slot|recipient, unique.

    `due_at` (epoch seconds) is when to look at it next: the send time, a retry time, or, while
    `sending`, when the sender's lease runs out and another worker may take it over.
    """

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_active_due", "due_at", sqlite_where=text(ACTIVE), postgresql_where=text(ACTIVE)),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org: Mapped[str] = org_column()
    key: Mapped[str] = mapped_column(String(300), unique=True)
    occurrence_key: Mapped[str | None] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # reminder | overdue | escalation | digest
    slot: Mapped[str] = mapped_column(String(32))  # the day it belongs to
    recipient: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # pending | sending | sent | skipped | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str | None] = mapped_column(String(32))  # the channel that delivered it
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AttemptRow(Base):
    """Every delivery attempt, written before the send and completed after it."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_attempts_outcome_started", "outcome", "started_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(Integer, index=True)
    worker: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    channel: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))  # sending | sent | failed | dead | skipped
    error: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[Any] = mapped_column(JSON, nullable=True)


class ChannelPostRow(Base):
    """One post to a rate-limited channel (the robot, a WeCom member), for pacing across processes."""

    __tablename__ = "channel_posts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(String(200))
    at: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index("ix_channel_posts_bucket_at", "bucket", "at"),)


class WebSessionRow(Base):
    """A signed-in browser. The cookie holds a random value; only its SHA-256 is stored."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org: Mapped[str] = mapped_column(String(64))
    person: Mapped[str] = mapped_column(String(64))
    csrf: Mapped[str] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(16))  # link | email | wecom
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebTokenRow(Base):
    """A one-time sign-in token or a calendar feed address, stored as its SHA-256."""

    __tablename__ = "web_tokens"
    __table_args__ = (Index("ix_web_tokens_person", "org", "person", "purpose"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))  # login | calendar
    org: Mapped[str] = mapped_column(String(64))
    person: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEventRow(Base):
    """Who did what, from where: completions, waivers, sign-ins, sign-in links issued."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_org_at", "org", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str | None] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(16))  # cli | web | link | wecom
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(200))
    remote: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[Any] = mapped_column(JSON, nullable=True)
