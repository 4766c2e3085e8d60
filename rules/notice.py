"""A year's arrangement read from the State Council notice itself, pasted into a text file.

    国务院办公厅关于2026年部分节假日安排的通知
    ……
    一、元旦：1月1日（周四）至3日（周六）放假调休，共3天。1月4日（周日）上班。
    二、春节：2月15日（农历腊月二十八、周日）至23日（农历正月初七、周一）放假调休，共9天。……

The wording of every notice since 2010 is understood: `放假`/`放假调休`/`放假公休`/`放假1天`, `补休`,
`与周末连休`, `不调休`, ranges within a month (`2月15日…至23日`) and across months (`9月29日至10月6日`),
several `上班` days joined by `、` (a bare `21日` keeps the month before it), weekdays written `星期六` or
`周六`, and a date of the neighbouring year written with its year (`2011年12月31日（星期六）上班`).
Full-width and half-width digits and punctuation are alike.

Only the numbered items (`一、元旦：……`) carry dates; the preamble, the closing paragraph, the signature
and advisory sentences (`鼓励……`) are read past. What is read is checked — every date exists, `共N天`
matches the range, the weekday in parentheses is the date's weekday, an adjusted working day is a
Saturday or Sunday, no day is both off and worked, and a notice titled as the year's arrangement
names every statutory holiday of its year — and anything wrong refuses the whole file, each problem
with its line.

A special notice, one that changes only some days of a year already arranged, is read as an
`Amendment` (its title says what it is, and its dates may stand in any sentence of the body):

    国务院关于中国人民抗日战争暨世界反法西斯战争胜利70周年纪念日调休放假的通知   (days named: off / worked)
    国务院办公厅关于调整2019年劳动节假期安排的通知     (劳动节's arrangement redone)
    国务院办公厅关于延长2020年春节假期的通知           (延长2020年春节假期至2月2日)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta

from rules.calendar import STATUTORY_HOLIDAYS, Amendment, YearOverride, statutory_days
from rules.errors import RuleFileError, RuleFileErrors
from rules.text import clean_text

_WEEKDAYS = "一二三四五六日"
_WEEKDAY_NAMES = [f"星期{c}" for c in _WEEKDAYS]
_MAX_RANGE_DAYS = 31

_TITLE_YEAR = re.compile(r"关于(\d{4})年")
_SPECIAL_TITLE = re.compile(r"(?:国务院办公厅|国务院)?关于.*?通知")
_SPECIAL_KIND = re.compile(r"(调整|延长)(?:(\d{4})年)?(元旦|春节|清明节|清明|劳动节|五一|端午节|端午|中秋节|中秋|国庆节|国庆)")
_ANY_YEAR = re.compile(r"(\d{4})年\d{1,2}月\d{1,2}日")
_SIGNATURE_DATE = re.compile(r"^\d{4}年\d{1,2}月\d{1,2}日$")
_NUMBERING = re.compile(r"^[一二三四五六七八九十]{1,3}、")
_ALIASES = {"清明": "清明节", "劳动": "劳动节", "五一": "劳动节", "端午": "端午节", "中秋": "中秋节", "国庆": "国庆节",
            "十一": "国庆节", "新年": "元旦"}
_TITLE = re.compile(r"(?:国务院办公厅)?关于\d{4}年[^。,:;]*?通知")
_BODY_YEAR = re.compile(r"现将(\d{4})年")
_ITEM = re.compile(r"^([一二三四五六七八九十]{1,3})、([^:]{1,30}?):(.*)$")
_DATE_SHAPE = re.compile(r"\d{1,2}日")
# After NFKC normalisation and with whitespace removed: a date, a parenthesised note, or a connector.
_TOKEN = re.compile(
    r"(?P<date>(?:(?P<y>\d{4})年)?(?:(?P<m>\d{1,2})月)?(?P<d>\d{1,2})日)"
    r"|(?P<paren>\([^()]*\))"
    r"|(?P<to>至|—|~|-)"
    r"|(?P<sep>、)"
)
_PAREN_WEEKDAY = re.compile(r"(?:星期|周)([一二三四五六日天])")
_COUNT = re.compile(r"共(\d+)天")
_INLINE_COUNT = re.compile(r"放假(\d+)天")


@dataclass
class _Clause:
    """One comma-separated part of a sentence of an item, with where it starts."""

    text: str
    line: int
    sentence: str


@dataclass
class _Off:
    days: list[date]
    desc: str
    line: int
    count: int | None = None
    count_line: int = 0


@dataclass
class _State:
    year: int
    filename: str
    errors: list[RuleFileError] = field(default_factory=list)
    off: dict[date, int] = field(default_factory=dict)  # day -> line
    worked: dict[date, int] = field(default_factory=dict)
    special: bool = False  # a special notice: `延长……至` and a bare `调休` are read too
    extends: list[tuple[str, date, int]] = field(default_factory=list)  # (clause, last day, line)
    item_off: set[date] = field(default_factory=set)  # the days of the item being read
    item_worked: set[date] = field(default_factory=set)

    def err(self, message: str, line: int) -> None:
        self.errors.append(RuleFileError(message, file=self.filename, line=line))

    def fmt(self, d: date) -> str:
        return f"{d.month}月{d.day}日" if d.year == self.year else f"{d.year}年{d.month}月{d.day}日"


def _show(text: str) -> str:
    """Normalised text as the notice prints it, for messages."""
    return text.translate(str.maketrans({"(": "（", ")": "）", ",": "，", ":": "：", ";": "；"}))


def _normalise(line: str) -> str:
    """Full-width digits and punctuation to their ASCII forms; whitespace dropped."""
    s = unicodedata.normalize("NFKC", line)
    s = s.replace("～", "~").replace("－", "-").replace("–", "-")
    return re.sub(r"\s+", "", s)


def looks_like_notice(text: str) -> bool:
    """True when the text is a pasted notice rather than a YAML calendar file."""
    t = unicodedata.normalize("NFKC", text.lstrip("\ufeff"))
    if re.search(r"^\s*(year|holidays|workdays)\s*:", t, re.M):
        return False
    has_title = bool(re.search(r"关于\s*\d{4}\s*年", t) or re.search(r"关于[^。]{0,80}?(放假|假期)[^。\n]{0,6}通知", t))
    has_item = bool(re.search(r"^\s*[一二三四五六七八九十]{1,3}\s*、[^:\n]{1,30}:.*(放假|上班|补休)", t, re.M))
    return has_item or (has_title and ("放假" in t or "假期" in t))


def _holiday_name(name: str) -> str:
    return _ALIASES.get(name, name)


def parse_notice(text: str, filename: str) -> YearOverride | Amendment:
    """The notice's year, every day off and every adjusted working day, with source = its title.

    `holidays` holds every day of each 放假 range (weekend days included) and each 补休 day;
    `workdays` the 上班 days, which may fall in the neighbouring year when it is written out.
    A special notice (see the module's docstring) gives an `Amendment` to apply to the year.
    """
    return _parse(text, filename)[0]


def notice_items(text: str, filename: str) -> list[tuple[tuple[str, ...], frozenset[date], frozenset[date]]]:
    """Each numbered item of a year's notice: (holiday names, days off, adjusted working days)."""
    return _parse(text, filename)[1]


def _parse(text: str, filename: str):
    raw = text.lstrip("\ufeff").splitlines()
    lines = [_normalise(s) for s in raw]
    first = next((i + 1 for i, s in enumerate(lines) if s), 1)

    # --- the title and the year ---------------------------------------------------------
    first_item = next((i for i, s in enumerate(lines) if _ITEM.match(s)), len(lines))
    title_at = next((i for i in range(first_item) if _TITLE_YEAR.search(lines[i])), None)
    if title_at is None:
        special = _special_title(lines)
        if special is not None:
            return _parse_special(lines, filename, *special), []
        raise RuleFileError("找不到通知标题中的年份：标题应为“国务院办公厅关于YYYY年部分节假日安排的通知”"
                            "（只调整个别日期的通知，如“国务院办公厅关于调整2019年劳动节假期安排的通知”，也可以导入）",
                            file=filename, line=first)
    year = int(_TITLE_YEAR.search(lines[title_at]).group(1))
    head = lines[title_at]
    if "通知" not in head and title_at + 1 < first_item and lines[title_at + 1].endswith("通知"):
        head += lines[title_at + 1]  # a title laid out on two lines
    m = _TITLE.search(head)
    title = clean_text(m.group(0) if m else head)[:200]  # the source shown everywhere: one clean line
    st = _State(year, filename)
    if not 1950 <= year <= 2200:
        raise RuleFileError(f"标题中的年份 {year} 不合理", file=filename, line=title_at + 1)
    for i in range(title_at + 1, first_item):
        b = _BODY_YEAR.search(lines[i])
        if b and int(b.group(1)) != year:
            st.err(f"正文写的是 {b.group(1)} 年，与标题的 {year} 年不符", i + 1)

    # --- the numbered items, with any line that continues one -----------------------------
    items: list[list[tuple[int, str]]] = []
    names: list[tuple[str, ...]] = []
    for i in range(first_item, len(lines)):
        s = lines[i]
        im = _ITEM.match(s)
        if im:
            items.append([(i + 1, im.group(3))])
            names.append(tuple(_holiday_name(n) for n in re.split("[、和与及]", im.group(2)) if n))
        elif items and _DATE_SHAPE.search(s) and re.search("放假|上班|补休", s):
            items[-1].append((i + 1, s))
    if not items:
        raise RuleFileError("找不到放假安排条目，应为“一、元旦：1月1日放假……”这样的编号条目",
                            file=filename, line=title_at + 1)

    read: list[tuple[tuple[str, ...], frozenset[date], frozenset[date]]] = []
    for segments, item_names in zip(items, names, strict=True):
        st.item_off, st.item_worked = set(), set()
        for clause_group in _sentences(segments):
            _read_sentence(clause_group, st)
        read.append((item_names, frozenset(st.item_off), frozenset(st.item_worked)))

    # --- a year's arrangement names every statutory holiday of its year ---------------------------
    named = {n for item_names in names for n in item_names}
    required = list(statutory_days(year)) or list(STATUTORY_HOLIDAYS)
    missing = [n for n in required if n not in named]
    if missing:
        listed = "、".join(n for n in STATUTORY_HOLIDAYS if n in named) or "无"
        st.err(f"这是{year}年全年的放假安排，却没有{'、'.join(missing)}的安排（读到的只有：{listed}）。"
               f"全年安排须逐项列出{'、'.join(required)}；请粘贴通知全文。只调整个别节日的通知，"
               f"标题应如“国务院办公厅关于调整{year}年劳动节假期安排的通知”", title_at + 1)

    # --- checks across the whole notice ------------------------------------------------------
    _check_days(st)
    if not st.off and not st.errors:
        st.err("通知里没有读到任何放假日期", title_at + 1)
    _raise(st)
    return YearOverride(year, frozenset(st.off), frozenset(st.worked), title), read


def _raise(st: _State) -> None:
    if st.errors:
        if len(st.errors) == 1:
            raise st.errors[0]
        raise RuleFileErrors(st.errors)


def _check_days(st: _State) -> None:
    for d, line in sorted(st.worked.items()):
        if d.weekday() < 5:
            st.err(f"{d.year}年{d.month}月{d.day}日（{_WEEKDAY_NAMES[d.weekday()]}）不是周末，不能是调休上班日",
                   line)
        if d in st.off:
            st.err(f"{st.fmt(d)}既放假又上班", line)


def _special_title(lines: list[str]) -> tuple[int, int, str] | None:
    """(first line, line after the title, title) of a special notice's title, which may span lines."""
    for i, s in enumerate(lines):
        if "关于" not in s:
            continue
        joined, j = s, i + 1
        while "通知" not in joined and j < len(lines) and j < i + 4 and lines[j]:
            joined += lines[j]
            j += 1
        m = _SPECIAL_TITLE.search(joined)
        if m and re.search("放假|假期|调休", m.group(0)):
            return i, j, m.group(0)
        return None
    return None


def _parse_special(lines: list[str], filename: str, title_at: int, body_at: int, title: str) -> Amendment:
    """A notice that changes some days: every dated sentence of its body is read."""
    kind = _SPECIAL_KIND.search(title)
    ym = _TITLE_YEAR.search(title) or re.search(r"(\d{4})年", title)
    body = [(i + 1, _NUMBERING.sub("", lines[i])) for i in range(body_at, len(lines))
            if _DATE_SHAPE.search(lines[i]) and not _SIGNATURE_DATE.match(lines[i])]
    if ym is None:
        ym = next((m for _line, s in body for m in [_ANY_YEAR.search(s)] if m), None)
    if ym is None:
        raise RuleFileError(f"看不出“{_show(title)}”调整的是哪一年：标题或正文应写明年份，如“2015年9月3日”",
                            file=filename, line=title_at + 1)
    year = int(ym.group(1))
    if not 1950 <= year <= 2200:
        raise RuleFileError(f"通知中的年份 {year} 不合理", file=filename, line=title_at + 1)
    st = _State(year, filename, special=True)
    for line, s in body:
        if re.search("放假|上班|补休|调休|延长", s):
            for clause_group in _sentences([(line, s)]):
                _read_sentence(clause_group, st)
    _check_days(st)
    holiday = _holiday_name(kind.group(3)) if kind else None
    extends = None
    if (kind and kind.group(1) == "延长") or st.extends:
        if not st.extends:
            st.err(f"“{_show(title)}”没有写明延长到哪一天，应为“延长{year}年{holiday}假期至X月X日”", title_at + 1)
        else:
            clause, until, line = st.extends[-1]
            named = next((_holiday_name(n) for n in re.findall("|".join(list(_ALIASES) + list(STATUTORY_HOLIDAYS)),
                                                                  clause)), holiday)
            if named not in STATUTORY_HOLIDAYS:
                st.err(f"看不出“{_show(clause)}”延长的是哪个节日的假期", line)
            extends = (named, until)
    replaces = holiday if kind and kind.group(1) == "调整" else None
    if replaces and st.off:
        for d in statutory_days(year).get(replaces, []):
            if d not in st.off:
                st.err(f"调整后的{replaces}安排没有{st.fmt(d)}：这是法定假日，必须放假", title_at + 1)
    if not st.off and not st.worked and extends is None and not st.errors:
        st.err("通知里没有读到任何放假或调休上班的日期", title_at + 1)
    _raise(st)
    return Amendment(year, title, frozenset(st.off), frozenset(st.worked), replaces, extends)


def _sentences(segments: list[tuple[int, str]]) -> list[list[_Clause]]:
    """An item's text cut into sentences (at 。) and clauses (at , and ;), outside parentheses."""
    sentences: list[list[_Clause]] = []
    clauses: list[_Clause] = []
    buf, buf_line, depth = "", 0, 0

    def close_clause() -> None:
        nonlocal buf
        if buf:
            clauses.append(_Clause(buf, buf_line, ""))
        buf = ""

    def close_sentence() -> None:
        nonlocal clauses
        close_clause()
        if clauses:
            whole = "".join(c.text for c in clauses)
            for c in clauses:
                c.sentence = whole
            sentences.append(clauses)
        clauses = []

    for line, text in segments:
        for ch in text:
            if not buf:
                buf_line = line
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth = max(0, depth - 1)
            if depth == 0 and ch in "。;":
                close_sentence()
            elif depth == 0 and ch == ",":
                close_clause()
            else:
                buf += ch
    close_sentence()
    return sentences


def _read_sentence(clauses: list[_Clause], st: _State) -> None:
    last_off: _Off | None = None
    offs: list[_Off] = []
    broken = False
    for c in clauses:
        outside = re.sub(r"\([^()]*\)", "", c.text)
        groups = _dates(c, st)
        if groups is None:  # already reported; its 共N天 cannot be checked
            broken = True
            continue
        days = [d for g in groups for d in g]
        count = _COUNT.search(outside) or _INLINE_COUNT.search(outside)
        if st.special and "延长" in outside and days:
            st.extends.append((outside, days[-1], c.line))  # 延长2020年春节假期至2月2日
            continue
        if "正常上班" in outside:
            continue  # 2月3日（星期一）起正常上班: an ordinary working day, nothing to arrange
        if "上班" in outside:
            for d in days:
                st.worked.setdefault(d, c.line)
                st.item_worked.add(d)
        elif "放假" in outside or "补休" in outside or ("调休" in outside and "不调休" not in outside):
            if days:
                desc = "、".join(f"{st.fmt(g[0])}至{st.fmt(g[-1])}" if len(g) > 1 else st.fmt(g[0])
                                for g in groups)
                last_off = _Off(days, desc, c.line)
                offs.append(last_off)
                for d in days:
                    st.off.setdefault(d, c.line)
                    st.item_off.add(d)
        elif days:
            if "鼓励" not in c.sentence:
                st.err(f"看不懂“{_show(c.text)}”：日期后应写“放假”“补休”或“上班”", c.line)
            continue
        if count:
            n = int(count.group(1))
            if last_off is None:
                if not broken:
                        st.err(f"“共{n}天”前面没有放假日期", c.line)
            else:
                last_off.count, last_off.count_line = n, c.line
    for o in offs:
        if o.count is not None and o.count != len(set(o.days)):
            st.err(f"共{o.count}天与 {o.desc}（{len(set(o.days))}天）不符", o.count_line)


def _dates(c: _Clause, st: _State) -> list[list[date]] | None:
    """The dates of a clause: single days and ranges, in order; None when one is wrong."""
    groups: list[list[date]] = []
    prev: date | None = None  # the last date read, for a bare `23日`
    pending_range_start: date | None = None
    last_end = 0
    for tok in _TOKEN.finditer(c.text):
        gap = c.text[last_end:tok.start()]
        last_end = tok.end()
        if tok.group("paren"):
            if prev is not None and not gap and groups:
                wd = _PAREN_WEEKDAY.search(tok.group("paren"))
                if wd:
                    want = _WEEKDAYS.index("日" if wd.group(1) == "天" else wd.group(1))
                    if prev.weekday() != want:
                        st.err(f"{st.fmt(prev)}是{_WEEKDAY_NAMES[prev.weekday()]}，括号里却写着“{wd.group(0)}”",
                               c.line)
            continue
        if tok.group("to"):
            if prev is None or gap or not groups:
                continue  # a dash elsewhere in the text
            pending_range_start = groups[-1][0] if len(groups[-1]) == 1 else None
            if pending_range_start is None:
                st.err(f"看不懂“{_show(c.text)}”：“至”前后应各是一个日期", c.line)
                return None
            continue
        if tok.group("sep"):
            continue
        if groups and gap and pending_range_start is None:
            st.err(f"看不懂“{_show(c.text)}”：一句里的几个日期应以“、”或“至”相连", c.line)
            return None
        y, m, d = tok.group("y"), tok.group("m"), tok.group("d")
        if m is None:
            if prev is None:
                st.err(f"“{tok.group(0)}”缺少月份", c.line)
                return None
            yy, mm = prev.year, prev.month
        else:
            yy, mm = (int(y) if y else st.year), int(m)
        try:
            day = date(yy, mm, int(d))
        except ValueError:
            shown = f"{mm}月{d}日" if yy == st.year else f"{yy}年{mm}月{d}日"
            st.err(f"{shown}不存在", c.line)
            return None
        if abs(day.year - st.year) > 1:
            st.err(f"{st.fmt(day)}不在 {st.year} 年前后一年之内，不是这份通知能安排的日期", c.line)
            return None
        if pending_range_start is not None:
            start = pending_range_start
            pending_range_start = None
            if day < start:
                st.err(f"{st.fmt(day)}早于{st.fmt(start)}，区间的结束日不能早于开始日", c.line)
                return None
            if (day - start).days + 1 > _MAX_RANGE_DAYS:
                st.err(f"{st.fmt(start)}至{st.fmt(day)}超过 {_MAX_RANGE_DAYS} 天，请检查", c.line)
                return None
            groups[-1] = [start + timedelta(days=i) for i in range((day - start).days + 1)]
        else:
            groups.append([day])
        prev = day
    if pending_range_start is not None:
        st.err(f"看不懂“{_show(c.text)}”：“至”后面缺少日期", c.line)
        return None
    return groups
