"""Printing: Chinese tables for people, JSON for scripts (stdout holds nothing else)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from rules.text import clean_text


def _default(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    raise TypeError(type(v).__name__)


def print_json(data: Any) -> None:
    """A list prints one object per line (readable, and fast for 10^5 objects); anything else indented."""
    if isinstance(data, list):
        sys.stdout.write("[\n" if data else "[")
        sys.stdout.write(",\n".join(json.dumps(x, ensure_ascii=False, default=_default) for x in data))
        sys.stdout.write("\n]\n" if data else "]\n")
    else:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=_default))
        sys.stdout.write("\n")


def print_table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str = "（无）") -> None:
    """A table that keeps Chinese columns aligned."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(soft_wrap=False)
    if not console.is_terminal:  # piped or redirected: no terminal width to respect
        console = Console(soft_wrap=False, width=200)
    if not rows:
        if title:
            console.print(title)
        console.print(empty)
        return
    table = Table(title=title, show_lines=False, header_style="bold", title_justify="left")
    for h in headers:
        table.add_column(h, overflow="fold")
    for r in rows:  # cells as plain Text: a title like "[red]…" is not rich markup, controls are dropped
        table.add_row(*(Text("" if v is None else clean_text(str(v), multiline=True)) for v in r))
    console.print(table)


def say(text: str) -> None:
    """A line for people (stdout), without control characters that would act on the terminal."""
    sys.stdout.write(clean_text(text, multiline=True) + "\n")


def warn(text: str) -> None:
    sys.stderr.write(clean_text(text, multiline=True) + "\n")


def reminder_text(reminders: Sequence[datetime]) -> str:
    """`12-01、12-03、12-04 09:00`: the days, then the time once when all share it."""
    if not reminders:
        return "无"
    times = {d.strftime("%H:%M") for d in reminders}
    if len(times) == 1:
        return "、".join(d.strftime("%m-%d") for d in reminders) + " " + times.pop()
    return "、".join(d.strftime("%m-%d %H:%M") for d in reminders)
