"""The validated rule file: people, groups, defaults and rules (pydantic), and the compiled `Rule`.

`RuleFileModel` checks shapes and single values; `loader.py` checks what spans several entries
(duplicate ids, unknown people) and turns every problem into a Chinese message with a line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .periods import MONTHS_IN, WEEKDAYS, DueSpec, Offset
from .text import check_text, mobile_number, text_problem, valid_wecom_id

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_OWNER = "secretary"  # who is responsible when a rule names nobody
DEFAULT_REMIND = ("-3d", "-1d", "0d")
DEFAULT_AT = "09:00"
DEFAULT_ESCALATE_AFTER = "3wd"
DEFAULT_REPEAT_OVERDUE = "1wd"
IF_HOLIDAY = ("keep", "previous-workday", "next-workday")
# \Z, not $: `$` also matches before a final newline ("party-day\n"); 64 is the width of the id columns
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\Z")
REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
# the longest texts accepted (characters): short enough for tables, headers and the database columns
TITLE_MAX = 200
DESCRIPTION_MAX = 5000
NOTE_MAX = 2000
SOURCE_MAX = 200
NAME_MAX = 100
EMAIL_MAX = 254
EVIDENCE_MAX = 1000
_AT_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_LEAP = 2024
YEARS = (1950, 2200)  # dates outside this span are typing mistakes, and date arithmetic overflows near 1 and 9999


def check_year(d: date, what: str) -> date:
    if not YEARS[0] <= d.year <= YEARS[1]:
        raise ValueError(f"{what} {d} 的年份不合理（应在 {YEARS[0]}–{YEARS[1]} 年之间）")
    return d


def _offset_text(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        raise ValueError(f"偏移量“{v}”缺少单位：写成 {v:+d}d（自然日）或 {v:+d}wd（工作日）")
    Offset.parse(str(v))
    return str(v).strip()


def _at_text(v: Any) -> str:
    m = _AT_RE.match(str(v).strip())
    if not m:
        raise ValueError(f"时间“{v}”无效，应写成 24 小时制的 \"09:00\"（建议加引号）")
    return f"{int(m.group(1)):02d}:{m.group(2)}"


def _str_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


def _as_text(v: Any) -> Any:
    """A number written where text is expected (`source: 8`, `wecom: 10086`) is that text."""
    return str(v) if isinstance(v, int | float) else v


def _stored(info: ValidationInfo) -> bool:
    """Validating a rule already in the database: it was accepted when stored (perhaps before a text
    limit existed) and must keep working; what is printed is cleaned on output."""
    return bool(info.context and info.context.get("stored"))


def _title(v: str, info: ValidationInfo) -> str:
    if _stored(info):
        return v
    if len(v) > TITLE_MAX and text_problem(v, len(v)) is None:  # only too long: say where long text goes
        raise ValueError(f"标题有 {len(v)} 个字，超过 {TITLE_MAX} 字的上限。标题只写简短的名称，"
                         "较长的说明（如整改措施原文）请写在 description 键里")
    return check_text(v, TITLE_MAX)


def Limited(limit: int, multiline: bool = False) -> Any:  # noqa: N802 - used like a type
    """Text of at most `limit` characters without control characters (newlines only if `multiline`)."""
    def check(v: str, info: ValidationInfo) -> str:
        return v if _stored(info) else check_text(v, limit, multiline)

    return Annotated[str, BeforeValidator(_as_text), AfterValidator(check)]


OffsetText = Annotated[str, BeforeValidator(_offset_text)]
AtText = Annotated[str, BeforeValidator(_at_text)]
RefList = Annotated[list[str], BeforeValidator(_str_list)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PersonModel(_Strict):
    name: Limited(NAME_MAX)
    email: Limited(EMAIL_MAX) | None = None
    wecom: Annotated[str, BeforeValidator(_as_text)] | None = None
    mobile: Annotated[str, BeforeValidator(_as_text)] | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z", v):
            raise ValueError(f"“{v}”不是有效的电子邮箱地址")
        return v

    @field_validator("wecom")
    @classmethod
    def _wecom(cls, v: str | None) -> str | None:
        if v is not None and not valid_wecom_id(v):
            raise ValueError(f"企业微信账号“{v}”无效：应为 1–64 位英文字母、数字或 _ - . @"
                             "（企业微信管理后台成员详情里的“账号”），不能是 @all")
        return v

    @field_validator("mobile")
    @classmethod
    def _mobile(cls, v: str | None) -> str | None:
        if v is None:
            return None
        number = mobile_number(re.sub(r"[\s-]", "", v))  # "138 0000 0000", "+86-138-0000-0000"
        if number is None:
            raise ValueError(f"手机号“{v}”无效：应为 11 位手机号，如 \"13800000000\"（可带 +86，建议加引号）")
        return number


class DueModel(_Strict):
    month: int | None = Field(None, ge=1, le=12)
    day: int | Literal["last"] | None = None
    weekday: str | None = None
    nth: int | Literal["last"] | None = None
    workday: int | None = None

    @field_validator("day")
    @classmethod
    def _day(cls, v: Any) -> Any:
        if isinstance(v, int) and not 1 <= v <= 31:
            raise ValueError(f"日期 {v} 不存在：day 应为 1–31 或 last")
        return v

    @field_validator("weekday", mode="before")
    @classmethod
    def _weekday(cls, v: Any) -> Any:
        if v is not None and str(v).lower()[:3] not in WEEKDAYS:
            raise ValueError(f"星期“{v}”无效，可选：{'、'.join(WEEKDAYS)}")
        return None if v is None else str(v).lower()[:3]

    @field_validator("nth")
    @classmethod
    def _nth(cls, v: Any) -> Any:
        if v == "last":
            return -1
        if v is not None and not (1 <= v <= 5 or v == -1):
            raise ValueError(f"nth 应为 1–5（第几个），或 -1 / last（最后一个），不能是 {v}")
        return v

    @field_validator("workday")
    @classmethod
    def _workday(cls, v: Any) -> Any:
        if v is not None and (v == 0 or not -23 <= v <= 23):
            raise ValueError(f"workday 应为 1–23（第几个工作日）或 -1（最后一个工作日），不能是 {v}")
        return v

    @model_validator(mode="after")
    def _combination(self) -> DueModel:
        kinds = [k for k in ("day", "weekday", "workday") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"due 里 {' 和 '.join(kinds)} 只能选一个")
        if self.nth is not None and self.weekday is None:
            raise ValueError("nth 需要和 weekday 一起用，例如 {weekday: fri, nth: 1}")
        if self.month is not None and isinstance(self.day, int):
            last = date(_LEAP, self.month % 12 + 1, 1).toordinal() - 1 if self.month < 12 else date(_LEAP, 12, 31).toordinal()
            if self.day > date.fromordinal(last).day:
                raise ValueError(f"{self.month} 月没有 {self.day} 日")
        return self

    def check_for(self, every: str) -> str | None:
        """A problem of this due expression for a rule of period `every`, or None."""
        if every == "week":
            if self.month is not None or self.day is not None or self.nth is not None:
                return "每周的规则只能用 {weekday: fri} 或 {workday: N} 指定截止日"
            return None
        if every == "month" and self.month is not None:
            return "每月的规则不能指定 month"
        if self.month is not None and self.month > MONTHS_IN[every]:
            return f"month 在{'季度' if every == 'quarter' else '半年'}里只能是 1–{MONTHS_IN[every]}（期内第几个月）"
        return None

    def to_spec(self) -> DueSpec:
        wd = WEEKDAYS.index(self.weekday) if self.weekday else None
        return DueSpec(self.month, self.day, wd, self.nth, self.workday)


class WindowModel(_Strict):
    from_: date = Field(alias="from")
    to: date

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("from_", "to")
    @classmethod
    def _year(cls, v: date) -> date:
        return check_year(v, "日期")

    @model_validator(mode="after")
    def _order(self) -> WindowModel:
        if self.to < self.from_:
            raise ValueError(f"window 的结束日 {self.to} 早于开始日 {self.from_}")
        return self


class DefaultsModel(_Strict):
    owner: str | None = None
    escalate_to: RefList | None = None
    remind: list[OffsetText] | None = None
    at: AtText | None = None
    if_holiday: Literal["keep", "previous-workday", "next-workday"] | None = None
    escalate_after: OffsetText | Literal["none"] | None = None
    repeat_overdue: OffsetText | Literal["none"] | None = None


class RuleModel(_Strict):
    id: str
    title: Annotated[str, BeforeValidator(_as_text), Field(min_length=1), AfterValidator(_title)]
    description: Limited(DESCRIPTION_MAX, multiline=True) | None = None
    source: Limited(SOURCE_MAX) | None = None
    owner: str | None = None
    escalate_to: RefList | None = None
    every: Literal["week", "month", "quarter", "half-year", "year"] | None = None
    due: DueModel | None = None
    if_holiday: Literal["keep", "previous-workday", "next-workday"] | None = None
    event: str | None = None
    offset: OffsetText | None = None
    window: WindowModel | None = None
    quota: int = Field(1, ge=1, le=1000)
    for_each: str | None = None
    start: date | None = None
    remind: list[OffsetText] | None = None
    at: AtText | None = None
    escalate_after: OffsetText | Literal["none"] | None = None
    repeat_overdue: OffsetText | Literal["none"] | None = None
    timezone: str | None = None
    enabled: bool = True
    note: Limited(NOTE_MAX, multiline=True) | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID_RE.match(v):
            raise ValueError(f"id“{v}”无效：只能用小写英文字母、数字和连字符（-），例如 party-day")
        return v

    @field_validator("start")
    @classmethod
    def _start(cls, v: date | None) -> date | None:
        return None if v is None else check_year(v, "start")

    @field_validator("event")
    @classmethod
    def _event(cls, v: str | None) -> str | None:
        if v is not None and not ID_RE.match(v):
            raise ValueError(f"事件类型“{v}”无效：只能用小写英文字母、数字和连字符，例如 study-session")
        return v


class RuleFileModel(_Strict):
    timezone: str = DEFAULT_TIMEZONE
    people: dict[str, PersonModel] = Field(default_factory=dict)
    groups: dict[str, RefList] = Field(default_factory=dict)
    defaults: DefaultsModel = Field(default_factory=DefaultsModel)
    rules: list[dict[str, Any]] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str
    email: str | None = None
    wecom: str | None = None
    mobile: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "email": self.email, "wecom": self.wecom, "mobile": self.mobile}
        return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule with every default applied: what the planner and the database work with."""

    id: str
    title: str
    kind: str  # "periodic" | "event" | "window"
    owner: str | None
    escalate_to: tuple[str, ...]
    source: str | None = None
    description: str | None = None
    every: str | None = None
    due: DueSpec | None = None
    due_raw: dict[str, Any] | None = None
    if_holiday: str = "next-workday"
    event: str | None = None
    offset: Offset | None = None
    window: tuple[date, date] | None = None
    quota: int = 1
    for_each: str | None = None
    start: date | None = None
    remind: tuple[Offset, ...] = ()
    at: str = DEFAULT_AT
    escalate_after: Offset | None = None
    repeat_overdue: Offset | None = None
    timezone: str = DEFAULT_TIMEZONE
    enabled: bool = True
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The rule as it is written in a rule file, every value explicit (for export and storage)."""
        d: dict[str, Any] = {"id": self.id, "title": self.title}
        if self.description:
            d["description"] = self.description
        if self.source is not None:
            d["source"] = self.source
        if self.owner is not None:
            d["owner"] = self.owner
        d["escalate_to"] = list(self.escalate_to)
        if self.kind == "periodic":
            d["every"] = self.every
            if self.due_raw:
                d["due"] = dict(self.due_raw)
        elif self.kind == "event":
            d["event"] = self.event
            d["offset"] = str(self.offset)
        else:
            d["window"] = {"from": self.window[0], "to": self.window[1]}
        d["if_holiday"] = self.if_holiday
        d["quota"] = self.quota
        if self.for_each is not None:
            d["for_each"] = self.for_each
        if self.start is not None:
            d["start"] = self.start
        d["remind"] = [str(o) for o in self.remind]
        d["at"] = self.at
        d["escalate_after"] = str(self.escalate_after) if self.escalate_after else "none"
        d["repeat_overdue"] = str(self.repeat_overdue) if self.repeat_overdue else "none"
        d["timezone"] = self.timezone
        if not self.enabled:
            d["enabled"] = False
        if self.note:
            d["note"] = self.note
        return d

    def schedule_text(self) -> str:
        """How often / when, in Chinese, for tables."""
        from .periods import PERIOD_NAMES

        if self.kind == "periodic":
            return f"{PERIOD_NAMES[self.every]}，{self.due.describe(self.every) if self.due else '期末最后一天'}"
        if self.kind == "event":
            n = self.offset.days
            unit = "个工作日" if self.offset.working else "天"
            when = "当天" if n == 0 else (f"前 {-n} {unit}" if n < 0 else f"后 {n} {unit}")
            return f"事件 {self.event} {when}"
        return f"一次性：{self.window[0]} 至 {self.window[1]}"
