"""A year's arrangement written by the user (YAML): days off and adjusted working weekends.

    year: 2027
    source: 国务院办公厅关于2027年部分节假日安排的通知
    holidays: [2027-01-01..2027-01-03, 2027-02-05..2027-02-13]
    workdays: [2027-01-31, 2027-02-20]
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from .calendar import YearOverride, statutory_days
from .errors import RuleFileError, RuleFileErrors
from .model import SOURCE_MAX
from .text import text_problem
from .yamlfile import line_of, load_with_lines, read_text

_KEYS = ("year", "source", "holidays", "workdays")


def _parse_day(v: Any) -> date:
    if isinstance(v, datetime):
        raise ValueError(f"“{v}”带有时间，应只写日期 YYYY-MM-DD")
    if isinstance(v, date):
        return v
    return date.fromisoformat(str(v).strip())


def _expand(item: Any) -> list[date]:
    """A date, or an inclusive range written `A..B`."""
    if isinstance(item, str) and ".." in item:
        a, b = (_parse_day(x) for x in item.split("..", 1))
        if b < a:
            raise ValueError(f"范围 {item} 的结束日早于开始日")
        if (b - a).days > 60:
            raise ValueError(f"范围 {item} 超过 60 天，请检查")
        return [a + timedelta(days=i) for i in range((b - a).days + 1)]
    return [_parse_day(item)]


def parse_calendar_text(text: str, filename: str) -> YearOverride:
    data, lines = load_with_lines(text, filename)
    if not isinstance(data, dict):
        raise RuleFileError("日历文件顶层应为“键: 值”的映射：year、source、holidays、workdays", file=filename, line=1)
    errors: list[RuleFileError] = []

    def err(msg: str, *path: Any) -> None:
        errors.append(RuleFileError(msg, file=filename, line=line_of(lines, path),
                                    key=".".join(str(p) for p in path if not isinstance(p, int)) or None))

    for k in data:
        if k not in _KEYS:
            err(f"未知的键“{k}”，可用的键：{'、'.join(_KEYS)}", k)
    year = data.get("year")
    if not isinstance(year, int) or not 1950 <= year <= 2200:
        err("缺少或无效的年份 year，例如 year: 2027", "year")
        raise RuleFileErrors(errors)
    days: dict[str, set[date]] = {"holidays": set(), "workdays": set()}
    for key in ("holidays", "workdays"):
        items = data.get(key) or []
        if not isinstance(items, list):
            err(f"{key} 应为列表，例如 [{year}-01-01..{year}-01-03]", key)
            continue
        for i, item in enumerate(items):
            try:
                for d in _expand(item):
                    if abs(d.year - year) > 1:
                        raise ValueError(f"日期 {d} 不属于 {year} 年（只允许相邻年份的调休日）")
                    days[key].add(d)
            except ValueError as e:
                msg = str(e) if ("日" in str(e) or "时间" in str(e)) else f"“{item}”不是有效日期，应写成 YYYY-MM-DD 或 A..B 范围"
                err(msg, key, i)
    for d in sorted(days["workdays"]):
        if d.weekday() < 5:
            err(f"{d} 是工作日（周一至周五），调休上班日应是周六或周日", "workdays")
    for d in sorted(days["holidays"] & days["workdays"]):
        err(f"{d} 不能既放假又上班", "workdays")
    law = statutory_days(year)
    missing = {name: [d for d in ds if d not in days["holidays"]] for name, ds in law.items()}
    missing = {name: ds for name, ds in missing.items() if ds}
    if missing and not errors:
        listed = "；".join(f"{name} {'、'.join(d.isoformat() for d in ds)}" for name, ds in missing.items())
        law_text = "、".join(f"{name}{len(ds)}天" for name, ds in law.items())
        err(f"holidays 没有列出 {year} 年的这些法定假日：{listed}。日历文件写的是全年的安排，须至少列出全部法定假日"
            f"（{year} 年：{law_text}），再加上调休放假的日子；请按国务院办公厅的通知补全，或直接导入通知原文（.txt）",
            "holidays")
    source = str(data.get("source") or f"{year} 年节假日安排（用户日历文件 {filename}）")
    problem = text_problem(source, SOURCE_MAX) if "source" in data else None
    if problem:
        err(problem, "source")
    if errors:
        raise RuleFileErrors(errors)
    return YearOverride(year, frozenset(days["holidays"]), frozenset(days["workdays"]), source)


def load_calendar_file(path: str) -> YearOverride:
    return parse_calendar_text(read_text(path), path)
