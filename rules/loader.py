"""Rule files → validated rules, with every problem named by file, line and key (in Chinese).

A file is accepted whole or refused whole: all problems are collected and reported together.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError

from .errors import RuleFileError, RuleFileErrors
from .model import (
    DEFAULT_AT,
    DEFAULT_ESCALATE_AFTER,
    DEFAULT_OWNER,
    DEFAULT_REMIND,
    DEFAULT_REPEAT_OVERDUE,
    REF_RE,
    DefaultsModel,
    Person,
    Rule,
    RuleFileModel,
    RuleModel,
)
from .periods import Offset
from .yamlfile import Path, line_of, load_with_lines, read_text

_TYPE_WORDS = {
    "int_parsing": "应为整数", "int_type": "应为整数", "int_from_float": "应为整数",
    "string_type": "应为文字", "bool_type": "应为 true 或 false", "bool_parsing": "应为 true 或 false",
    "list_type": "应为列表，例如 [a, b]", "dict_type": "应为“键: 值”的映射", "model_type": "应为“键: 值”的映射",
    "model_attributes_type": "应为“键: 值”的映射",
    "date_type": "应为日期，格式 YYYY-MM-DD", "date_parsing": "应为日期，格式 YYYY-MM-DD",
    "date_from_datetime_parsing": "应为存在的日期，格式 YYYY-MM-DD", "date_from_datetime_inexact": "应为日期，不带时间",
    "string_too_short": "不能为空",
}


@dataclass
class RuleSet:
    """What one rule file (or the database) holds."""

    timezone: str = "Asia/Shanghai"
    people: dict[str, Person] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # accepted, but worth telling the user

    def members(self, ref: str) -> tuple[str, ...]:
        """The person ids behind a person or group id."""
        return self.groups.get(ref, (ref,))


def _model_fields(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _unknown_key_message(key: str, model: type[BaseModel] | None) -> str:
    msg = f"未知的键“{key}”"
    if model is not None:
        close = difflib.get_close_matches(str(key), _model_fields(model), n=1, cutoff=0.6)
        if close:
            msg += f"，是不是想写“{close[0]}”？"
        else:
            msg += f"。可用的键：{'、'.join(_model_fields(model))}"
    return msg



def _model_for(loc: tuple[Any, ...], top: type[BaseModel]) -> type[BaseModel] | None:
    from .model import DueModel, PersonModel, WindowModel

    if not loc:
        return top
    parent = loc[-1] if not isinstance(loc[-1], int) else (loc[-2] if len(loc) > 1 else None)
    return {"defaults": DefaultsModel, "due": DueModel, "window": WindowModel}.get(parent) or (
        PersonModel if len(loc) >= 2 and loc[0] == "people" else top)


def _translate(e: dict[str, Any], top: type[BaseModel]) -> tuple[tuple[Any, ...], str]:
    loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and ("[" in x or x in ("str", "int", "function-before"))))
    typ = e["type"]
    key = loc[-1] if loc else None
    if typ == "extra_forbidden":
        return loc, _unknown_key_message(str(key), _model_for(loc[:-1], top))
    if typ == "missing":
        return loc, f"缺少必填的键“{key}”"
    if typ in ("value_error", "assertion_error"):
        err = e.get("ctx", {}).get("error")
        return loc, str(err) if err else e["msg"]
    if typ in ("literal_error", "enum"):
        expected = e.get("ctx", {}).get("expected", "")
        return loc, f"取值“{e.get('input')}”无效，可选：{expected.replace(' or ', '、').replace(chr(39), '')}"
    if typ in ("greater_than_equal", "greater_than"):
        return loc, f"取值 {e.get('input')} 太小，至少为 {e['ctx'].get('ge', e['ctx'].get('gt'))}"
    if typ in ("less_than_equal", "less_than"):
        return loc, f"取值 {e.get('input')} 太大，最多为 {e['ctx'].get('le', e['ctx'].get('lt'))}"
    if typ in _TYPE_WORDS:
        return loc, f"取值“{e.get('input')}”{_TYPE_WORDS[typ]}"
    return loc, f"取值无效（{e['msg']}）"


def _key_of(path: Path) -> str | None:
    """The key a user sees: dotted, without the list indexes and the leading `rules`."""
    parts = [str(p) for p in path if not isinstance(p, int)]
    if parts[:1] == ["rules"] and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or None


def _errors_of(exc: ValidationError, top: type[BaseModel], filename: str, lines: dict[Path, int],
               prefix: Path, rule: str | None = None) -> list[RuleFileError]:
    out, seen = [], set()
    for e in exc.errors(include_url=False):
        loc, msg = _translate(e, top)
        # a union reports once per member; the first message is the useful one
        if loc in seen:
            continue
        seen.add(loc)
        path = prefix + loc
        out.append(RuleFileError(msg, file=filename, line=line_of(lines, path), key=_key_of(path), rule=rule))
    return out


class RuleContext:
    """People, groups and defaults that rules refer to while they are compiled."""

    def __init__(self, people: Mapping[str, Person], groups: Mapping[str, Iterable[str]],
                 defaults: DefaultsModel | None = None, timezone: str = "Asia/Shanghai",
                 default_owner: str = DEFAULT_OWNER):
        self.people = dict(people)
        self.groups = {k: tuple(v) for k, v in groups.items()}
        self.defaults = defaults or DefaultsModel()
        self.timezone = timezone
        self.default_owner = default_owner
        self.warnings: list[str] = []

    def knows(self, ref: str) -> bool:
        return ref in self.people or ref in self.groups

    def known_list(self) -> str:
        names = sorted(self.people) + sorted(self.groups)
        return "、".join(names[:12]) + ("等" if len(names) > 12 else "") if names else "（尚未定义任何人员）"


def compile_rule(raw: Any, ctx: RuleContext, *, filename: str, lines: dict[Path, int] | None = None,
                 prefix: Path = (), stored: bool = False) -> Rule:
    """One rule mapping → `Rule`, defaults applied; raises `RuleFileErrors` listing every problem.
    A `stored` rule (from the database) is not held to the text limits again."""
    lines = lines or {}
    errors: list[RuleFileError] = []

    rule_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None

    def err(msg: str, *path: Any) -> None:
        full = prefix + path
        errors.append(RuleFileError(msg, file=filename, line=line_of(lines, full), key=_key_of(full), rule=rule_id))

    if not isinstance(raw, dict):
        err("每条规则应为“键: 值”的映射，以 - id: ... 开头")
        raise RuleFileErrors(errors)
    try:
        m = RuleModel.model_validate(raw, context={"stored": stored})
    except ValidationError as exc:
        raise RuleFileErrors(_errors_of(exc, RuleModel, filename, lines, prefix, rule_id)) from None

    d = ctx.defaults
    kinds = [k for k in ("every", "event", "window") if getattr(m, k) is not None]
    if len(kinds) > 1:
        err(f"规则不能同时是{'、'.join(kinds)}：周期性规则用 every，事件触发的规则用 event + offset，一次性任务用 window",
            kinds[1])
    elif not kinds:
        err("规则缺少时间安排：请写 every（周期）、event + offset（事件前后）或 window（一次性时段）之一")
    if m.offset is not None and m.event is None:
        err("offset 只能和 event 一起使用", "offset")
    if m.due is not None and m.every is None:
        err("due 只能和 every 一起使用", "due")
    if m.due is not None and m.every is not None:
        problem = m.due.check_for(m.every)
        if problem:
            err(problem, "due")
    # with for_each each member owns its own occurrence: no default owner for the rule
    owner = m.owner if (m.owner is not None or m.for_each) else d.owner
    implicit_owner = owner is None and not m.for_each
    if implicit_owner:  # no owner written anywhere: the branch secretary is responsible
        owner = ctx.default_owner
        if not ctx.knows(owner):
            ctx.warnings.append(f"规则 {m.id} 没有写负责人 owner，默认由“{owner}”负责，但 people 里没有这个人员，提醒只会写入日志")
    if m.for_each is not None:
        if m.for_each not in ctx.groups:
            err(f"for_each 的“{m.for_each}”不是已定义的组（groups）。已有的组：{'、'.join(ctx.groups) or '无'}", "for_each")
    if owner is not None and not implicit_owner and not ctx.knows(owner):
        err(f"负责人“{owner}”不是已定义的人员或组。已有：{ctx.known_list()}", "owner")
    escalate_to = m.escalate_to if m.escalate_to is not None else (d.escalate_to or [])
    for i, ref in enumerate(escalate_to):
        if not ctx.knows(ref):
            err(f"督办对象“{ref}”不是已定义的人员或组。已有：{ctx.known_list()}", "escalate_to", i)
    tz = m.timezone or ctx.timezone
    if m.timezone is not None:  # the file's own timezone is checked once, by the file
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            err(f"时区“{tz}”无效，例如 Asia/Shanghai", "timezone")
    if errors:
        raise RuleFileErrors(errors)

    offset = Offset.parse(m.offset) if m.offset is not None else (Offset(0, False) if m.event else None)
    before_event = offset is not None and offset.days < 0
    if_holiday = m.if_holiday or d.if_holiday or ("previous-workday" if before_event else "next-workday")
    remind = m.remind if m.remind is not None else (d.remind if d.remind is not None else list(DEFAULT_REMIND))
    esc = m.escalate_after or d.escalate_after or DEFAULT_ESCALATE_AFTER
    rep = m.repeat_overdue or d.repeat_overdue or DEFAULT_REPEAT_OVERDUE
    due_raw = m.due.model_dump(exclude_none=True) if m.due else None
    if due_raw and due_raw.get("nth") == -1:
        due_raw["nth"] = "last"
    return Rule(
        id=m.id, title=m.title, kind=kinds[0] if kinds[0] != "every" else "periodic",
        owner=owner, escalate_to=tuple(escalate_to), source=m.source, description=m.description, every=m.every,
        due=m.due.to_spec() if m.due else None, due_raw=due_raw, if_holiday=if_holiday,
        event=m.event, offset=offset if m.event else None,
        window=(m.window.from_, m.window.to) if m.window else None, quota=m.quota, for_each=m.for_each,
        start=m.start, remind=tuple(sorted({Offset.parse(r) for r in remind}, key=lambda o: (o.days, o.working))),
        at=m.at or d.at or DEFAULT_AT,
        escalate_after=None if esc == "none" else Offset.parse(esc),
        repeat_overdue=None if rep == "none" else Offset.parse(rep),
        timezone=tz, enabled=m.enabled, note=m.note,
    )


def parse_rule_text(text: str, filename: str, *, known_people: Mapping[str, Person] | None = None,
                    known_groups: Mapping[str, Iterable[str]] | None = None) -> RuleSet:
    """Validate a rule file's text. People and groups already known (in the database) may be referred to."""
    data, lines = load_with_lines(text, filename)
    if data is None:
        raise RuleFileError("文件是空的：至少需要 rules: 列表", file=filename)
    if not isinstance(data, dict):
        raise RuleFileError("文件顶层应为“键: 值”的映射（timezone、people、groups、defaults、rules）", file=filename, line=1)
    try:
        top = RuleFileModel.model_validate(data)
    except ValidationError as exc:
        raise RuleFileErrors(_errors_of(exc, RuleFileModel, filename, lines, ())) from None

    errors: list[RuleFileError] = []
    try:
        ZoneInfo(top.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(RuleFileError(f"时区“{top.timezone}”无效，例如 Asia/Shanghai", file=filename,
                                    line=line_of(lines, ("timezone",)), key="timezone"))
    people = dict(known_people or {})
    groups = {k: tuple(v) for k, v in (known_groups or {}).items()}
    warnings: list[str] = []
    for pid, p in top.people.items():
        if not REF_RE.match(str(pid)):
            errors.append(RuleFileError(f"人员 id“{pid}”无效：只能用英文字母、数字、-、_ 和 .", file=filename,
                                        line=line_of(lines, ("people", pid)), key=f"people.{pid}"))
        people[str(pid)] = Person(str(pid), p.name, p.email, p.wecom, p.mobile)
    for gid, members in top.groups.items():
        if not REF_RE.match(str(gid)):
            errors.append(RuleFileError(f"组 id“{gid}”无效：只能用英文字母、数字、-、_ 和 .", file=filename,
                                        line=line_of(lines, ("groups", gid)), key=f"groups.{gid}"))
        if str(gid) in top.people:
            errors.append(RuleFileError(f"组 id“{gid}”与人员 id 重名，请改名", file=filename,
                                        line=line_of(lines, ("groups", gid)), key=f"groups.{gid}"))
        bad = [i for i, m in enumerate(members) if not REF_RE.match(m)]
        for i in bad:
            errors.append(RuleFileError(f"组成员“{members[i]}”不是有效的人员 id：只能用英文字母、数字、-、_ 和 .，"
                                        "人员的姓名写在 people 里", file=filename,
                                        line=line_of(lines, ("groups", gid, i)), key=f"groups.{gid}"))
        members = [m for i, m in enumerate(members) if i not in bad]
        undefined = [m for m in members if m not in people and m not in top.people]
        for member in undefined:  # a member without contacts: accepted, reminders only reach the log
            people[member] = Person(member, member)
        if undefined:
            warnings.append(f"组 {gid} 的成员 {'、'.join(undefined)} 没有在 people 中定义（没有联系方式），"
                            "给他们的提醒只会写入日志")
        groups[str(gid)] = tuple(members)
    ctx = RuleContext(people, groups, top.defaults, top.timezone)
    rules: list[Rule] = []
    first_index: dict[str, int] = {}  # where each id first appeared (its line is looked up only on error)
    for i, raw in enumerate(top.rules):
        try:
            rule = compile_rule(raw, ctx, filename=filename, lines=lines, prefix=("rules", i))
        except RuleFileErrors as e:
            errors.extend(e.errors)
            continue
        if rule.id in first_index:
            first = line_of(lines, ("rules", first_index[rule.id], "id"))
            errors.append(RuleFileError(f"规则 id“{rule.id}”重复（第一次出现在第 {first} 行），每条规则的 id 必须唯一",
                                        file=filename, line=line_of(lines, ("rules", i, "id")), key="id", rule=rule.id))
            continue
        first_index[rule.id] = i
        rules.append(rule)
    if errors:
        raise RuleFileErrors(errors)
    return RuleSet(top.timezone, people, groups, rules, warnings + ctx.warnings)


def load_rule_file(path: str, **known: Any) -> RuleSet:
    """Read and validate one rule file."""
    return parse_rule_text(read_text(path), path, **known)
