"""The 台账 (ledger): every occurrence with what was done, what was sent and what was waived, the audit
trail of rule changes and every delivery attempt, exported as `.xlsx` or `.csv`.

A district holds hundreds of thousands of occurrences, so everything is read with a few set queries
(never one per occurrence) and written as a stream. The `.xlsx` file is written directly as Office Open
XML: openpyxl, even in write-only mode, manages about 100,000 cells a second, far too slow for a ledger
of 300,000 rows; this writer does the same job an order of magnitude faster, and openpyxl reads the
result back (the tests do).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import tempfile
import time
import unicodedata
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from notifications.message import CHANNEL_LABELS, KIND_NAMES
from rules.errors import DubanError
from rules.text import CONTROL_CHARS, UNSAFE_MULTILINE, clean_text

from .evidence import compressible, evidence_path, human_size, safe_filename
from .models import (
    DEFAULT_ORG,
    AttemptRow,
    CalendarYearRow,
    CompletionRow,
    DeliveryRow,
    EvidenceRow,
    OccurrenceRow,
    RuleChangeRow,
    RuleRow,
    WaiverRow,
)
from .occurrences import STATE_NAMES, state_name
from .store import load_people_groups

LEDGER_SHEET, CHANGES_SHEET, ATTEMPTS_SHEET, EVIDENCE_SHEET = "台账", "规则变更", "发送记录", "佐证材料"
LEDGER_HEADERS = ("事项编号", "事项", "出处", "负责人", "开始", "截止日", "状态", "进度", "完成记录", "佐证材料",
                  "已发消息", "免办理由", "暂定日期")
LEDGER_WRAP = {8, 9, 10, 11}  # columns (0-based) that hold several lines
EVIDENCE_HEADERS = ("事项编号", "文件名", "大小（字节）", "SHA-256", "上传人", "上传时间")
ARCHIVE_COLUMN = "压缩包内位置"  # the evidence sheet's extra column in a .zip export
EVIDENCE_DIR = "佐证材料"  # the folder of the evidence files in a .zip export
CHANGES_HEADERS = ("时间", "规则", "操作", "变更内容", "来源")
CHANGES_WRAP = {3, 4}
ATTEMPTS_HEADERS = ("时间", "事项编号", "类型", "收件人", "渠道", "结果", "说明")
ATTEMPTS_WRAP = {6}

ACTION_NAMES = {"added": "新增", "updated": "修改", "disabled": "停用", "enabled": "启用", "redated": "截止日调整",
                "calendar": "导入放假安排", "calendar-import": "导入放假安排"}
OUTCOME_NAMES = {"sent": "已发送", "failed": "失败", "dead": "放弃", "skipped": "跳过", "sending": "发送中"}
FORMATS = (".xlsx", ".csv", ".zip")
TEMP_PREFIX = ".duban-ledger-"
STALE_AFTER = 3600  # seconds: an older temp file of ours belongs to an export that died


@dataclass(frozen=True)
class LedgerFilter:
    """Occurrences whose due date is in [first, last] (either end open when None), of these rules (all when empty)."""

    first: date | None = None
    last: date | None = None
    rules: tuple[str, ...] = ()
    org: str = DEFAULT_ORG

    @property
    def narrowed(self) -> bool:
        """Whether only some of the branch's occurrences are selected (else no join is needed)."""
        return self.first is not None or self.last is not None or bool(self.rules)

    def conditions(self) -> list[Any]:
        out: list[Any] = [OccurrenceRow.org == self.org]
        if self.first is not None:
            out.append(OccurrenceRow.due >= self.first)
        if self.last is not None:
            out.append(OccurrenceRow.due <= self.last)
        if self.rules:
            out.append(OccurrenceRow.rule_id.in_(self.rules))
        return out


@dataclass
class Exported:
    occurrences: int
    changes: int
    attempts: int
    files: int = 0  # evidence files put in a .zip export
    missing: int = 0  # evidence files listed but not found on disk


def ledger_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise DubanError(f"不支持导出为“{ext or '无扩展名'}”文件：--out 的文件名应以 .xlsx（Excel 工作簿）、.csv "
                         f"或 .zip（工作簿加全部佐证材料文件）结尾，例如 台账.xlsx")
    return ext[1:]


# --- formatting ------------------------------------------------------------------------------
class _Local:
    """Instants as local text. Many messages share a send time, so each distinct value is formatted
    once; a value may also be the raw column (SQLite: text in UTC, see `_raw`), parsed only then."""

    def __init__(self, tz: ZoneInfo):
        self.tz = tz
        self._long: dict[datetime | str, str] = {}
        self._short: dict[datetime | str, str] = {}

    def _local(self, v: datetime | str) -> datetime:
        dt = datetime.fromisoformat(v) if isinstance(v, str) else v
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(self.tz)

    def __call__(self, v: datetime | str | None) -> str:
        """`2026-12-14 09:00`"""
        if v is None:
            return ""
        s = self._long.get(v)
        if s is None:
            s = self._long[v] = self._local(v).strftime("%Y-%m-%d %H:%M")
        return s

    def short(self, v: datetime | str) -> str:
        """`12-14 09:00`"""
        s = self._short.get(v)
        if s is None:
            s = self._short[v] = self._local(v).strftime("%m-%d %H:%M")
        return s


def _fetch(conn, q, batch: int | None = None) -> Iterator[tuple]:
    """The rows of `q`, streamed in batches when `batch` is given."""
    if batch is None:
        yield from conn.execute(q)
        return
    with conn.execute(q.execution_options(yield_per=batch)) as result:
        yield from result


def _raw(column):
    """A UTC timestamp column without its per-row conversion (the `UTCDateTime` decorator costs
    microseconds a row, too many for a million attempts): SQLite gives its text, PostgreSQL an aware
    datetime; `_Local` reads both."""
    return type_coerce(column, NullType()).label(column.key)


class _Names:
    """Person and group ids as the names people know."""

    def __init__(self, session: Session, org: str = DEFAULT_ORG):
        people, groups = load_people_groups(session, org)
        self.people = {pid: p.name for pid, p in people.items()}
        self.groups = groups

    def __call__(self, ref: str | None) -> str:
        if not ref:
            return ""
        name = self.people.get(ref)
        if name is not None:
            return name
        if ref in self.groups:
            return "、".join(self.people.get(m, m) for m in self.groups[ref]) or ref
        return ref


def _flow(v: Any) -> str:
    """A value as YAML flow text, the way it is written in a rule file: `{day: 15}`, `[-3d, -1d]`."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return str(v)


def change_summary(action: str, before: Any, after: Any) -> str:
    """What changed, readably: `due: {day: 15} → {day: 20}；remind: [-1d] → [-3d, -1d]`."""
    if action == "redated" and isinstance(after, dict):
        old = before.get("due") if isinstance(before, dict) else None
        text = f"{after.get('key', '')}：截止日 {old or '？'} → {after.get('due', '？')}"
        return text + ("（暂定）" if after.get("provisional") else "")
    if action == "calendar-import" and isinstance(after, dict):
        workdays = "、".join(after.get("workdays") or []) or "无"
        how = f"按“{after['amendment']}”调整后的" if after.get("amendment") else ""
        return f"{after.get('year')} 年{how}放假安排：放假 {after.get('holidays', '？')} 天，调休上班日 {workdays}"
    if action == "added" and isinstance(after, dict):
        return "；".join(f"{k}: {_flow(v)}" for k, v in after.items() if k != "id" and v not in (None, [], {}))
    if isinstance(before, dict) and isinstance(after, dict):
        parts = []
        for k in [*after, *(k for k in before if k not in after)]:
            if before.get(k) != after.get(k) or (k in before) != (k in after):
                old = _flow(before[k]) if k in before else "（无）"
                new = _flow(after[k]) if k in after else "（无）"
                parts.append(f"{k}: {old} → {new}")
        return "；".join(parts) or "（无变化）"
    if isinstance(after, dict):
        return "；".join(f"{k}: {_flow(v)}" for k, v in after.items())
    return _flow(after) if after is not None else ""


# --- the audit trail -------------------------------------------------------------------------
def audit_entries(s: Session, rule_ids: Sequence[str] = (), org: str = DEFAULT_ORG) -> list[dict[str, Any]]:
    """A branch's audit trail, oldest first: rule changes and re-datings (`rule_changes`), and the
    calendar years imported (national: every branch sees them)."""
    q = (select(RuleChangeRow).where(or_(RuleChangeRow.org == org, RuleChangeRow.rule_id == ""))
         .order_by(RuleChangeRow.at, RuleChangeRow.id))
    if rule_ids:
        q = q.where(RuleChangeRow.rule_id.in_(rule_ids))
    rows = s.scalars(q).all()
    out = [{"at": r.at, "rule": r.rule_id, "action": r.action, "before": r.before, "after": r.after,
            "origin": r.origin} for r in rows]
    if not rule_ids and not s.scalar(select(RuleChangeRow.id).where(RuleChangeRow.action.like("calendar%")).limit(1)):
        for c in s.scalars(select(CalendarYearRow)):
            out.append({"at": c.imported_at, "rule": "", "action": "calendar", "before": None,
                        "after": {"year": c.year, "holidays": len(c.holidays), "workdays": len(c.workdays)},
                        "origin": c.source})
        out.sort(key=lambda e: e["at"])
    for e in out:
        if e["action"] == "calendar" and isinstance(e["after"], dict) and "year" in e["after"]:
            a = e["after"]
            e["summary"] = f"{a['year']} 年放假安排：放假 {a.get('holidays', '？')} 天，调休上班 {a.get('workdays', '？')} 天"
        else:
            e["summary"] = change_summary(e["action"], e["before"], e["after"])
    return out


def audit_rows(entries: Iterable[dict[str, Any]], local: _Local) -> Iterator[list[str]]:
    for e in entries:
        yield [local(e["at"]), e["rule"] or "（日历）", ACTION_NAMES.get(e["action"], e["action"]), e["summary"],
               e["origin"] or ""]


# --- the ledger ------------------------------------------------------------------------------
def _joined(q, model, flt: LedgerFilter):
    """Rows of `model` (keyed by occurrence_key) for the occurrences the filter selects."""
    if not flt.narrowed:
        return q.where(model.org == flt.org)
    return q.join(OccurrenceRow, (OccurrenceRow.key == model.occurrence_key) & (OccurrenceRow.org == model.org)
                  ).where(*flt.conditions())


def _completions(s: Session, flt: LedgerFilter, local: _Local, names: _Names) -> dict[str, list[str]]:
    q = _joined(select(CompletionRow.occurrence_key, CompletionRow.by, _raw(CompletionRow.at), CompletionRow.note,
                       CompletionRow.evidence), CompletionRow, flt).order_by(CompletionRow.at, CompletionRow.id)
    out: dict[str, list[str]] = defaultdict(list)
    for key, by, at, note, evidence in _fetch(s.connection(), q):
        text = f"{local(at)} {names(by) if by else '（未填完成人）'}"
        if note:
            text += f"：{note.strip()}"
        if evidence:
            text += f"（佐证：{evidence.strip()}）"
        out[key].append(text)
    return out


def _waivers(s: Session, flt: LedgerFilter, local: _Local, names: _Names) -> dict[str, list[str]]:
    q = _joined(select(WaiverRow.occurrence_key, WaiverRow.reason, WaiverRow.by, _raw(WaiverRow.at)), WaiverRow, flt
                ).order_by(WaiverRow.at, WaiverRow.id)
    out: dict[str, list[str]] = defaultdict(list)
    for key, reason, by, at in _fetch(s.connection(), q):
        out[key].append(f"{reason}（{names(by) + '，' if by else ''}{local(at)}）")
    return out


def _evidence(s: Session, flt: LedgerFilter) -> list[tuple]:
    """The evidence files of the selected occurrences, by occurrence then upload time:
    (occurrence_key, filename, size, sha256, content_type, uploaded_by, uploaded_at)."""
    q = _joined(select(EvidenceRow.occurrence_key, EvidenceRow.filename, EvidenceRow.size, EvidenceRow.sha256,
                       EvidenceRow.content_type, EvidenceRow.uploaded_by, _raw(EvidenceRow.uploaded_at)),
                EvidenceRow, flt).order_by(EvidenceRow.occurrence_key, EvidenceRow.uploaded_at, EvidenceRow.id)
    return list(_fetch(s.connection(), q))


def _evidence_lines(files: list[tuple]) -> dict[str, list[str]]:
    """`会议记录.pdf（1.2 MB，SHA-256 3f2a9c01d4e7…）` for each file, by occurrence (the full hash is in the
    佐证材料 sheet)."""
    out: dict[str, list[str]] = defaultdict(list)
    for key, name, size, sha, *_rest in files:
        out[key].append(f"{name}（{human_size(size)}，SHA-256 {sha[:12]}…）")
    return out


def evidence_rows(files: list[tuple], local: _Local, names: _Names,
                  places: list[str | None] | None = None) -> Iterator[list[str]]:
    """The 佐证材料 sheet (EVIDENCE_HEADERS), and where each file is in a .zip export."""
    for i, (key, name, size, sha, _ctype, by, at) in enumerate(files):
        row = [key, name, str(size), sha, names(by), local(at)]
        if places is not None:
            row.append(places[i] or "（服务器上缺少此文件，未放入压缩包）")
        yield row


def _attempts(s: Session, flt: LedgerFilter, tz: ZoneInfo) -> list[tuple]:
    """Every delivery attempt about the selected occurrences, and the digests of the period (no rule
    filter): (started_at, channel, outcome, error, occurrence_key, kind, recipient), oldest first."""
    conn = s.connection()
    cols = (_raw(AttemptRow.started_at), AttemptRow.channel, AttemptRow.outcome, AttemptRow.error,
            DeliveryRow.occurrence_key, DeliveryRow.kind, DeliveryRow.recipient)
    base = select(*cols).join(DeliveryRow, DeliveryRow.id == AttemptRow.delivery_id)
    order = (AttemptRow.started_at, AttemptRow.id)
    if not flt.narrowed:  # the whole branch, digests included: no join
        return list(_fetch(conn, base.where(DeliveryRow.org == flt.org).order_by(*order)))
    conds = flt.conditions()
    rows = list(_fetch(conn, base.join(OccurrenceRow, (OccurrenceRow.key == DeliveryRow.occurrence_key)
                                       & (OccurrenceRow.org == DeliveryRow.org)).where(*conds).order_by(*order)))
    if not flt.rules:  # messages about no occurrence (the digest) in the period
        q = base.where(DeliveryRow.org == flt.org, DeliveryRow.occurrence_key.is_(None))
        if flt.first is not None:
            q = q.where(AttemptRow.started_at >= datetime.combine(flt.first, datetime.min.time(), tz))
        if flt.last is not None:
            q = q.where(AttemptRow.started_at < datetime.combine(date.fromordinal(flt.last.toordinal() + 1),
                                                                 datetime.min.time(), tz))
        more = list(_fetch(conn, q.order_by(*order)))
        if more:
            rows = sorted([*rows, *more], key=lambda r: r[0])
    return rows


def _sent_lines(attempts: list[tuple], local: _Local, names: _Names) -> dict[str, list[str]]:
    """`12-14 09:00 提醒 → 王书记（邮件）` for each message that went out, by occurrence."""
    out: dict[str, list[str]] = defaultdict(list)
    tails: dict[tuple, str] = {}
    times = local._short
    for started, channel, outcome, _error, key, kind, rcpt in attempts:
        if outcome != "sent" or key is None:
            continue
        tail = tails.get((kind, rcpt, channel))
        if tail is None:
            tail = tails[(kind, rcpt, channel)] = (
                f" {KIND_NAMES.get(kind, kind)} → {names(rcpt)}（{CHANNEL_LABELS.get(channel or '', channel or '未知渠道')}）")
        out[key].append((times.get(started) or local.short(started)) + tail)
    return out


def attempt_rows(attempts: list[tuple], local: _Local, names: _Names) -> Iterator[list[str]]:
    middles: dict[tuple, tuple[str, ...]] = {}
    times = local._long
    for started, channel, outcome, error, key, kind, rcpt in attempts:
        mid = middles.get((kind, rcpt, channel, outcome))
        if mid is None:
            mid = middles[(kind, rcpt, channel, outcome)] = (
                KIND_NAMES.get(kind, kind), names(rcpt), CHANNEL_LABELS.get(channel, channel) if channel else "",
                OUTCOME_NAMES.get(outcome, outcome))
        yield (times.get(started) or local(started), key or "", *mid, error or "")


def ledger_rows(s: Session, flt: LedgerFilter, today: date, local: _Local, names: _Names,
                sent: dict[str, list[str]], evidence: dict[str, list[str]] | None = None) -> Iterator[list[str]]:
    """One row per occurrence, by due date then key (LEDGER_HEADERS)."""
    conn = s.connection()
    sources = {rid: (d or {}).get("source") or ""
               for rid, d in conn.execute(select(RuleRow.id, RuleRow.definition).where(RuleRow.org == flt.org))}
    done = _completions(s, flt, local, names)
    waived = _waivers(s, flt, local, names)
    evidence = evidence or {}
    q = (select(OccurrenceRow.key, OccurrenceRow.rule_id, OccurrenceRow.title, OccurrenceRow.owner,
                _raw_date(OccurrenceRow.opens), _raw_date(OccurrenceRow.due), OccurrenceRow.quota,
                OccurrenceRow.done_count, OccurrenceRow.state, OccurrenceRow.provisional)
         .where(*flt.conditions()).order_by(OccurrenceRow.due, OccurrenceRow.key))
    day_text: dict[Any, str] = {}  # a raw date (SQLite: its ISO text, PostgreSQL: a date) → ISO text
    shown_state: dict[tuple[str, Any], str] = {}  # (stored state, raw due) → what the ledger says
    owner_names: dict[str | None, str] = {}
    for key, rule_id, title, owner, opens, due, quota, done_count, state, provisional in _fetch(conn, q, 5000):
        st = shown_state.get((state, due))
        if st is None:
            st = state_name(state, _as_date(due), today)
            st = shown_state[(state, due)] = STATE_NAMES.get(st, st)
        who = owner_names.get(owner)
        if who is None:
            who = owner_names[owner] = names(owner)
        yield [key, title, sources.get(rule_id, ""), who,
               day_text.get(opens) or day_text.setdefault(opens, _as_date(opens).isoformat()),
               day_text.get(due) or day_text.setdefault(due, _as_date(due).isoformat()),
               st, f"{done_count}/{quota}",
               "\n".join(done.get(key, ())), "\n".join(evidence.get(key, ())), "\n".join(sent.get(key, ())),
               "\n".join(waived.get(key, ())),
               "是" if provisional else "否"]


def _raw_date(column):
    """A date column without its per-row parsing (SQLite stores ISO text): see `_raw`."""
    return type_coerce(column, NullType()).label(column.key)


def _as_date(v: date | str) -> date:
    return date.fromisoformat(v) if isinstance(v, str) else v




def _snapshot(s: Session) -> None:
    """Read the whole ledger from one snapshot: a `done` or a tick committing meanwhile must not
    leave a row counting a completion that its 完成记录 lacks. Call before the session's first query."""
    if s.get_bind().dialect.name == "postgresql":
        s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    else:  # pysqlite starts no transaction for a SELECT: each would see the latest commit
        conn = s.connection()
        if not conn.connection.dbapi_connection.in_transaction:
            conn.exec_driver_sql("BEGIN")


def count_occurrences(s: Session, flt: LedgerFilter) -> int:
    return s.scalar(select(func.count()).select_from(OccurrenceRow).where(*flt.conditions()))


def check_rules(s: Session, rule_ids: Sequence[str], org: str = DEFAULT_ORG) -> None:
    if not rule_ids:
        return
    known = set(s.scalars(select(RuleRow.id).where(RuleRow.org == org, RuleRow.id.in_(rule_ids))))
    missing = [r for r in rule_ids if r not in known]
    if missing:
        raise DubanError(f"没有 id 为“{'、'.join(missing)}”的规则。用 duban rules list 查看全部规则")


def export_ledger(s: Session, path: str, *, now: datetime, tz: ZoneInfo, flt: LedgerFilter,
                  data: Path | str | None = None) -> Exported:
    """Write the ledger to `path` atomically: .xlsx (four sheets), .csv (the 台账 sheet) or .zip (the
    .xlsx plus every evidence file kept in the data directory `data`)."""
    fmt = ledger_format(path)
    if fmt == "zip" and data is None:
        raise ValueError("a .zip export needs the data directory")
    _snapshot(s)
    check_rules(s, flt.rules, flt.org)
    local, names = _Local(tz), _Names(s, flt.org)
    today = now.astimezone(tz).date()
    attempts = _attempts(s, flt, tz)
    sent = _sent_lines(attempts, local, names)
    files = _evidence(s, flt)
    rows = ledger_rows(s, flt, today, local, names, sent, _evidence_lines(files))
    directory = os.path.dirname(os.path.abspath(path))
    remove_stale_temps(directory)
    try:
        # beside the target (os.replace is atomic within a file system), 0600 like the database: names, contacts
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix="." + fmt, dir=directory)
    except OSError as e:
        raise DubanError(f"无法写入 {path}：{e.strerror or e}。请检查目录是否存在、是否有写权限") from None
    os.close(fd)
    try:
        if fmt == "csv":
            result = Exported(write_csv(tmp, LEDGER_HEADERS, rows), 0, 0)
        elif fmt == "xlsx":
            result = _write_workbook(s, tmp, now, flt, rows, attempts, files, local, names)
        else:
            result = _write_archive(s, tmp, path, now, flt, rows, attempts, files, local, names, Path(data))
        os.replace(tmp, path)
    except OSError as e:
        _unlink(tmp)
        raise DubanError(f"无法写入 {path}：{e.strerror or e}") from None
    except BaseException:
        _unlink(tmp)
        raise
    return result


def _write_workbook(s: Session, target: str, now: datetime, flt: LedgerFilter, rows, attempts: list[tuple],
                    files: list[tuple], local: _Local, names: _Names,
                    places: list[str | None] | None = None) -> Exported:
    entries = audit_entries(s, flt.rules, flt.org)
    with XlsxWriter(target, now) as xw:
        n = xw.add_sheet(LEDGER_SHEET, LEDGER_HEADERS, rows, wrap=LEDGER_WRAP, count=count_occurrences(s, flt))
        xw.add_sheet(CHANGES_SHEET, CHANGES_HEADERS, audit_rows(entries, local), wrap=CHANGES_WRAP,
                     count=len(entries))
        xw.add_sheet(ATTEMPTS_SHEET, ATTEMPTS_HEADERS, attempt_rows(attempts, local, names), wrap=ATTEMPTS_WRAP,
                     count=len(attempts))
        headers = EVIDENCE_HEADERS + ((ARCHIVE_COLUMN,) if places is not None else ())
        xw.add_sheet(EVIDENCE_SHEET, headers, evidence_rows(files, local, names, places), count=len(files))
    return Exported(n, len(entries), len(attempts))


# --- the archive (.zip) ----------------------------------------------------------------------
def _archive_places(files: list[tuple], data: Path) -> list[str | None]:
    """Each file's path in the archive, `佐证材料/<事项编号>/<文件名>`, or None when it is not on disk.
    Different files of one occurrence with the same name become `名称 (2).pdf`…; the same file attached
    twice under one name is put in once. Names compare case-insensitively (Windows unpacks there)."""
    places: list[str | None] = []
    taken: dict[str, str] = {}  # lower-cased path → sha256 of the file there
    for key, name, _size, sha, *_rest in files:
        if not evidence_path(data, sha).is_file():
            places.append(None)
            continue
        folder = f"{EVIDENCE_DIR}/{safe_filename(key.replace('/', '_')) or '未编号'}"
        stem, ext = os.path.splitext(safe_filename(name) or "未命名")
        n, place = 1, f"{folder}/{stem}{ext}"
        while taken.get(place.lower(), sha) != sha:
            n += 1
            place = f"{folder}/{stem} ({n}){ext}"
        taken[place.lower()] = sha
        places.append(place)
    return places


def _write_archive(s: Session, target: str, path: str, now: datetime, flt: LedgerFilter, rows,
                   attempts: list[tuple], files: list[tuple], local: _Local, names: _Names, data: Path) -> Exported:
    """The .xlsx ledger, then each evidence file copied in chunks (never whole in memory), then 说明.txt."""
    places = _archive_places(files, data)
    fd, book = tempfile.mkstemp(prefix=".duban-ledger-", suffix=".xlsx", dir=os.path.dirname(target))
    os.close(fd)
    missing: list[tuple] = []
    damaged: list[tuple] = []
    written: set[str] = set()
    try:
        result = _write_workbook(s, book, now, flt, rows, attempts, files, local, names, places)
        with zipfile.ZipFile(target, "w", allowZip64=True) as z:
            book_name = f"{safe_filename(Path(path).stem) or '台账'}.xlsx"
            stamp = now.astimezone(local.tz).timetuple()[:6]
            with open(book, "rb") as src:  # already deflated: stored as it is
                _copy_in(z, src, zipfile.ZipInfo(book_name, stamp), zipfile.ZIP_STORED, os.path.getsize(book))
            for f, place in zip(files, places, strict=True):
                if place is None:
                    missing.append(f)
                elif place not in written:
                    got = _copy_evidence(z, f, place, data, local)
                    if got is None:
                        missing.append(f)
                        continue
                    written.add(place)
                    if got != f[3]:
                        damaged.append(f)
            z.writestr(zipfile.ZipInfo("说明.txt", stamp),
                       _readme(book_name, now, local, len(written), missing, damaged),
                       compress_type=zipfile.ZIP_DEFLATED)
    finally:
        _unlink(book)
    result.files, result.missing = len(written), len(missing)
    return result


def _copy_evidence(z: zipfile.ZipFile, f: tuple, place: str, data: Path, local: _Local) -> str | None:
    """Copy one kept file into the archive; its SHA-256 as read, or None if it is gone."""
    _key, _name, size, sha, ctype, _by, at = f
    try:
        src = open(evidence_path(data, sha), "rb")  # opened before the entry exists: a gone file adds none
    except FileNotFoundError:
        return None
    with src:
        info = zipfile.ZipInfo(place, max(local._local(at).timetuple()[:6], (1980, 1, 1, 0, 0, 0)))
        return _copy_in(z, src, info, zipfile.ZIP_DEFLATED if compressible(ctype) else zipfile.ZIP_STORED, size)


def _copy_in(z: zipfile.ZipFile, src, info: zipfile.ZipInfo, compress: int, size: int) -> str:
    """Stream `src` into the archive as `info`, 1 MB at a time; returns the SHA-256 of what was copied."""
    info.compress_type = compress
    info.file_size = size  # lets zipfile choose zip64 up front
    digest = hashlib.sha256()
    with z.open(info, "w") as out:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _readme(book: str, now: datetime, local: _Local, count: int, missing: list[tuple], damaged: list[tuple]) -> bytes:
    lines = [f"督办台账（导出时间 {local(now)}）", "",
             f"{book}：台账、规则变更、发送记录、佐证材料四张表。",
             f"{EVIDENCE_DIR}/<事项编号>/：各事项的佐证材料文件，位置见“佐证材料”表的“{ARCHIVE_COLUMN}”一列；",
             "  表中的 SHA-256 可用来核对文件未被改动。",
             f"共收入佐证材料文件 {count} 个。"]

    def listed(title: str, fs: list[tuple]) -> None:
        lines.extend(["", title])
        lines.extend(f"  {key}  {name}（{human_size(size)}，SHA-256 {sha}）" for key, name, size, sha, *_ in fs)

    if missing:
        listed(f"以下 {len(missing)} 个佐证材料在服务器上找不到，未放入压缩包：", missing)
    if damaged:
        listed(f"以下 {len(damaged)} 个佐证材料与登记的 SHA-256 不符（服务器上的文件可能已损坏），已按现状放入：", damaged)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8-sig")  # Notepad on older Windows needs the BOM



def remove_stale_temps(directory: str, now: float | None = None) -> list[str]:
    """Delete our temp files older than STALE_AFTER in `directory`: left by an export that was killed
    (kill -9, power cut) before it could clean up. A running export writes its file all along, so
    its mtime stays fresh. Returns the names removed."""
    limit = (time.time() if now is None else now) - STALE_AFTER
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed  # the export itself reports an unusable directory
    for e in entries:
        if e.name.startswith(TEMP_PREFIX) and e.name.endswith(FORMATS):
            try:
                if e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mtime < limit:
                    os.unlink(e.path)
                    removed.append(e.name)
            except OSError:
                pass  # another export removed it first, or it is not ours to remove
    return removed


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --- CSV ---------------------------------------------------------------------------------------
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def write_csv(path: str, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """UTF-8 with a BOM (so Excel reads the Chinese), CRLF rows; a cell that Excel would take for a
    formula (=, +, -, @) gets a leading apostrophe. Returns the number of data rows."""
    n = 0
    unsafe = UNSAFE_MULTILINE.search
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(headers)
        for row in rows:
            if unsafe("".join(filter(None, row))):  # one search per row; cleaned cell by cell when needed
                row = [clean_text(v, multiline=True) if v else v for v in row]
            w.writerow(["'" + v if v and v.startswith(_FORMULA_START) else v for v in row])
            n += 1
    return n


# --- XLSX --------------------------------------------------------------------------------------
MAX_ROWS = 1_048_576  # Excel's limit per sheet, header included; longer sheets continue in “名称（2）”
MAX_CELL = 32_767
MAX_WIDTH, MIN_WIDTH = 60, 6
WIDTH_SAMPLE = 2000  # widths fit the header and the first rows (a ledger's rows are alike)
_NOT_XML = re.compile("[\ufffe\uffff]")  # not characters of XML (controls are removed by clean_text)
_NEEDS_CARE = re.compile(f"[&<>\ufffe\uffff{CONTROL_CHARS}]")  # a row to escape cell by cell
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_CT_SHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
# cell styles (cellXfs): 0 default, 1 header (bold, shaded), 2 wrapped text, 3 top-aligned
_HEADER, _WRAP, _TOP = 1, 2, 3
_PRESERVE = ' xml:space="preserve"'
_STYLES = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="{_MAIN}">
<fonts count="2"><font><sz val="11"/><name val="宋体"/><family val="2"/><charset val="134"/></font><font><b/><sz val="11"/><name val="宋体"/><family val="2"/><charset val="134"/></font></fonts>
<fills count="3"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill><fill><patternFill patternType="solid"><fgColor rgb="FFDDEBF7"/><bgColor indexed="64"/></patternFill></fill></fills>
<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>
<cellXfs count="4"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/><xf numFmtId="0" fontId="1" fillId="2" borderId="0" xfId="0" applyFont="1" applyFill="1" applyAlignment="1"><alignment vertical="center"/></xf><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" applyAlignment="1"><alignment vertical="top" wrapText="1"/></xf><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" applyAlignment="1"><alignment vertical="top"/></xf></cellXfs>
<cellStyles count="1"><cellStyle name="常规" xfId="0" builtinId="0"/></cellStyles>
</styleSheet>"""


def display_width(text: str) -> int:
    """Columns the longest line takes: CJK and full-width characters count double."""
    best = 0
    for line in text.split("\n"):
        w = len(line)
        if not line.isascii():
            w += sum(1 for ch in line if unicodedata.east_asian_width(ch) in "WF")
        best = max(best, w)
    return best


def column_letter(i: int) -> str:
    """0 → A, 25 → Z, 26 → AA."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _xml_text(v: str) -> str:
    if len(v) > MAX_CELL:
        v = v[:MAX_CELL - 1] + "…"
    v = clean_text(v, multiline=True)
    if _NOT_XML.search(v):
        v = _NOT_XML.sub("", v)
    if "&" in v:
        v = v.replace("&", "&amp;")
    if "<" in v:
        v = v.replace("<", "&lt;")
    if ">" in v:
        v = v.replace(">", "&gt;")
    return v


class XlsxWriter:
    """A streaming `.xlsx` writer for sheets of text: bold shaded header row, frozen under it, an
    autofilter, column widths fitted to the content, wrapped text where asked. Cells are inline strings."""

    def __init__(self, path: str, created: datetime):
        self.zip = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1)
        self.created = created
        self.sheets: list[tuple[str, int, str]] = []  # (title, rows including the header, last column)

    def __enter__(self) -> XlsxWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            self.zip.close()

    def add_sheet(self, title: str, headers: Sequence[str], rows: Iterable[Sequence[str]], *,
                  wrap: set[int] = frozenset(), count: int | None = None) -> int:
        """Write the rows (text; None or "" for an empty cell), `count` of them if known (faster);
        returns how many data rows were written. Past Excel's limit the sheet continues in “标题（2）”…"""
        it = iter(rows)
        head = list(islice(it, WIDTH_SAMPLE))
        widths = [display_width(h) for h in headers]
        for row in head:
            for i, v in enumerate(row):
                if v and len(v) * 2 > widths[i]:  # only measure what could be wider
                    widths[i] = max(widths[i], display_width(v))
        widths = [min(max(w + 2, MIN_WIDTH), MAX_WIDTH) for w in widths]
        styles = [_WRAP if i in wrap else _TOP for i in range(len(headers))]
        letters = [column_letter(i) for i in range(len(headers))]
        source = _Rows(head, it)
        total, part = 0, 1
        while True:
            name = title if part == 1 else f"{title}（{part}）"
            n, more = self._write_sheet(name, headers, source, widths, styles, letters, count if part == 1 else None)
            total += n
            if not more:
                return total
            part += 1

    def _write_sheet(self, title: str, headers, rows: _Rows, widths, styles, letters,
                     count: int | None) -> tuple[int, bool]:
        """One worksheet part. The <dimension> comes before the rows, so when their number is not known
        in advance (`count`) the rows go to a temporary file first."""
        index = len(self.sheets) + 1
        name = f"xl/worksheets/sheet{index}.xml"
        if count is not None and count < MAX_ROWS:
            with self.zip.open(name, "w") as out:
                out.write(self._sheet_start(index, widths, letters, count + 1))
                r, more = self._sheet_rows(out.write, headers, rows, styles, letters)
                if r != count + 1:
                    raise ValueError(f"sheet {title}: {r - 1} rows written, {count} announced")
                out.write(self._sheet_end(letters, r))
        else:
            with tempfile.TemporaryFile("w+b") as body:
                r, more = self._sheet_rows(body.write, headers, rows, styles, letters)
                body.seek(0)
                with self.zip.open(name, "w") as out:
                    out.write(self._sheet_start(index, widths, letters, r))
                    while chunk := body.read(1 << 20):
                        out.write(chunk)
                    out.write(self._sheet_end(letters, r))
        self.sheets.append((title, r, letters[-1]))
        return r - 1, more

    @staticmethod
    def _sheet_start(index: int, widths, letters, last_row: int) -> bytes:
        selected = ' tabSelected="1"' if index == 1 else ""
        cols = "".join(f'<col min="{i + 1}" max="{i + 1}" width="{w}" customWidth="1"/>' for i, w in enumerate(widths))
        return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                f'<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}">'
                f'<dimension ref="A1:{letters[-1]}{last_row}"/>'
                f'<sheetViews><sheetView workbookViewId="0"{selected}>'
                f'<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
                f'<selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews>'
                f'<sheetFormatPr defaultRowHeight="15"/><cols>{cols}</cols><sheetData>').encode()

    @staticmethod
    def _sheet_end(letters, last_row: int) -> bytes:
        return (f'</sheetData><autoFilter ref="A1:{letters[-1]}{last_row}"/>'
                f'<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
                f'</worksheet>').encode()

    @staticmethod
    def _sheet_rows(write_bytes, headers, rows: _Rows, styles, letters) -> tuple[int, bool]:
        """The header row and then the rows, up to MAX_ROWS; returns (last row number, whether rows remain)."""
        def write(text: str) -> None:
            write_bytes(text.encode("utf-8", "replace"))

        write('<row r="1">' + "".join(
            f'<c r="{letters[i]}1" t="inlineStr" s="{_HEADER}"><is><t>{_xml_text(h)}</t></is></c>'
            for i, h in enumerate(headers)) + "</row>")
        r = 1
        more = False
        buf: list[str] = []
        # one str.format per row: a template for each pattern of filled cells (a ledger has few)
        templates: dict[tuple[bool, ...], str] = {}
        needs_care, limit = _NEEDS_CARE.search, MAX_CELL
        for row in rows:
            r += 1
            text = "".join(filter(None, row))
            if needs_care(text) or len(text) > limit:
                row = [_xml_text(v) if v else "" for v in row]
            filled = tuple(map(bool, row))
            tpl = templates.get(filled)
            if tpl is None:  # {0} the row number, {1}… the cells; empty cells are left out
                tpl = templates[filled] = '<row r="{0}">' + "".join(
                    f'<c r="{letters[i]}{{0}}" t="inlineStr" s="{styles[i]}"><is>'
                    f'<t{_PRESERVE if styles[i] == _WRAP else ""}>{{{i + 1}}}</t></is></c>'
                    for i, f in enumerate(filled) if f) + "</row>"
            buf.append(tpl.format(r, *row))
            if len(buf) >= 2000:
                write("".join(buf))
                buf.clear()
            if r >= MAX_ROWS:
                more = rows.more()
                break
        write("".join(buf))
        return r, more

    def _finish(self) -> None:
        n = len(self.sheets)
        sheets = "".join(f'<sheet name={quoteattr(t)} sheetId="{i}" r:id="rId{i}"/>'
                         for i, (t, _rows, _col) in enumerate(self.sheets, 1))
        names = "".join(
            f'<definedName name="_xlnm._FilterDatabase" localSheetId="{i}" hidden="1">'
            f"{_xml_text(_quote_sheet(t))}!$A$1:${col}${rows}</definedName>"
            for i, (t, rows, col) in enumerate(self.sheets))
        self.zip.writestr("[Content_Types].xml", (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            + "".join(f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="{_CT_SHEET}"/>'
                      for i in range(1, n + 1))
            + '<Override PartName="/xl/styles.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            '<Override PartName="/docProps/core.xml" '
            'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
            '<Override PartName="/docProps/app.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.extended-properties+xml"/>'
            '</Types>'))
        self.zip.writestr("_rels/.rels", (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="{_PKG_REL}">'
            f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
            '<Relationship Id="rId2" '
            'Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" '
            'Target="docProps/core.xml"/>'
            f'<Relationship Id="rId3" Type="{_REL}/extended-properties" Target="docProps/app.xml"/>'
            '</Relationships>'))
        self.zip.writestr("docProps/core.xml", (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            '<dc:title>督办台账</dc:title><dc:creator>duban</dc:creator>'
            f'<dcterms:created xsi:type="dcterms:W3CDTF">{self.created.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}'
            '</dcterms:created></cp:coreProperties>'))
        self.zip.writestr("docProps/app.xml", (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">'
            '<Application>duban</Application></Properties>'))
        self.zip.writestr("xl/workbook.xml", (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook xmlns="{_MAIN}" xmlns:r="{_REL}">'
            f'<bookViews><workbookView activeTab="0"/></bookViews><sheets>{sheets}</sheets>'
            f'{"<definedNames>" + names + "</definedNames>" if names else ""}</workbook>'))
        self.zip.writestr("xl/_rels/workbook.xml.rels", (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="{_PKG_REL}">'
            + "".join(f'<Relationship Id="rId{i}" Type="{_REL}/worksheet" Target="worksheets/sheet{i}.xml"/>'
                      for i in range(1, n + 1))
            + f'<Relationship Id="rId{n + 1}" Type="{_REL}/styles" Target="styles.xml"/></Relationships>'))
        self.zip.writestr("xl/styles.xml", _STYLES)

def _quote_sheet(title: str) -> str:
    return "'" + title.replace("'", "''") + "'"


class _Rows:
    """An iterator of rows that can tell whether another row follows."""

    _END = object()

    def __init__(self, head: list, rest: Iterator):
        self._head, self._rest, self._next = iter(head), rest, self._END

    def __iter__(self) -> _Rows:
        return self

    def __next__(self):
        if self._next is not self._END:
            row, self._next = self._next, self._END
            return row
        for row in self._head:
            return row
        return next(self._rest)

    def more(self) -> bool:
        if self._next is self._END:
            self._next = next(self, self._END)
        return self._next is not self._END
