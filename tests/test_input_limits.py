"""Limits on input files (spec "Limits on input"): only regular files of at most 10 MB are read, and YAML
aliases may not expand far beyond the file's own size. Every refusal: exit 2, Chinese naming the file,
no traceback, nothing changed.

The FIFO, /dev/zero and alias-bomb cases run the CLI in a child process with a timeout and a 2 GB
address-space limit: a regression hangs or runs out of memory there, not in the test runner.
"""

from __future__ import annotations

import os
import re
import time

import pytest
from conftest import run_process

from rules.errors import DubanError
from rules.inputfile import MAX_BYTES
from rules.loader import parse_rule_text

CJK = re.compile(r"[\u4e00-\u9fff]")
MEMORY = 2 * 1024**3

RULES = """\
people:
  secretary: {name: 王书记}
rules:
  - id: party-day
    title: 主题党日
    owner: secretary
    every: month
"""
CALENDAR = "year: 2027\nholidays: [2027-01-01..2027-01-03]\n"

# every way the CLI reads a rule or calendar file
COMMANDS = {
    "rules-import": ("rules", "import"),
    "preview-rules": ("preview", "--rules"),
    "preview-calendar": ("preview", "--calendar"),
    "calendar-import": ("calendar", "import"),
}


def bomb(levels: int = 9) -> str:
    """"Billion laughs": each level lists the previous one nine times, 9**9 values from ~500 bytes."""
    lines = ['a0: &a0 ["哈哈", "哈哈", "哈哈", "哈哈", "哈哈", "哈哈", "哈哈", "哈哈", "哈哈"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\nrules:\n  - id: lol\n    title: *a{levels - 1}\n    every: month\n"


@pytest.fixture
def cli_env(duban, workdir):
    """An initialised database without rules; the environment for a child `duban` using it."""
    assert duban("init", "--no-pack").code == 0
    return {"DUBAN_DATABASE_URL": duban.state["url"]}


def assert_refused(r, path, *words) -> None:
    assert r.code == 2, (r.code, r.out, r.err)
    assert "Traceback" not in r.err and CJK.search(r.err), r.err
    assert str(path) in r.err, r.err
    for w in words:
        assert w in r.err, r.err


def assert_nothing_stored(duban) -> None:
    assert duban("rules", "list", "--format", "json").json() == []
    assert duban("calendar", "show", "2027", "--format", "json").json()["official"] is False


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_fifo_is_refused_without_opening_it(duban, workdir, cli_env, command):
    path = workdir / "rules.yaml"
    os.mkfifo(path)  # nobody ever writes to it: opening it to read would block forever
    r = run_process(*command, path, env=cli_env, cwd=workdir, timeout=60)
    assert_refused(r, path, "不是普通文件")
    assert_nothing_stored(duban)


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_symlink_to_dev_zero_is_refused(duban, workdir, cli_env, command):
    path = workdir / "rules.yaml"
    path.symlink_to("/dev/zero")  # endless: reading "the whole file" would exhaust memory
    r = run_process(*command, path, env=cli_env, cwd=workdir, timeout=60, max_memory=MEMORY)
    assert_refused(r, path, "不是普通文件")
    assert_nothing_stored(duban)


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_directory_is_refused(duban, workdir, cli_env, command):
    r = duban(*command, workdir)
    assert_refused(r, workdir, "不是普通文件")


def test_symlink_to_a_rule_file_is_read(duban, workdir, cli_env):
    (workdir / "real.yaml").write_text(RULES, encoding="utf-8")
    (workdir / "link.yaml").symlink_to(workdir / "real.yaml")
    assert duban("rules", "import", "link.yaml").code == 0
    assert [r["id"] for r in duban("rules", "list", "--format", "json").json()] == ["party-day"]


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_file_over_10_mb_is_refused(duban, workdir, cli_env, command):
    path = workdir / "big.yaml"
    text = RULES if command[-1] != "--calendar" and command[0] != "calendar" else CALENDAR
    path.write_text(text + "#" * (MAX_BYTES - len(text.encode()) - 1) + "\n\n", encoding="utf-8")  # limit + 1
    assert path.stat().st_size == MAX_BYTES + 1
    assert_refused(duban(*command, path), path, "10 MB")
    assert_nothing_stored(duban)


def test_file_of_exactly_10_mb_is_read(duban, workdir, cli_env):
    path = workdir / "big.yaml"
    path.write_text(RULES + "#" * (MAX_BYTES - len(RULES.encode()) - 1) + "\n", encoding="utf-8")
    assert path.stat().st_size == MAX_BYTES
    assert duban("rules", "import", path).code == 0


def test_alias_bomb_is_refused_quickly():
    text = bomb()
    assert len(text.encode()) < 600
    start = time.monotonic()
    with pytest.raises(DubanError) as info:
        parse_rule_text(text, "lol.yaml")
    assert time.monotonic() - start < 1.0
    assert "lol.yaml" in info.value.message and "别名" in info.value.message


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_alias_bomb_is_refused_by_the_cli_within_bounded_memory(duban, workdir, cli_env, command):
    path = workdir / "lol.yaml"
    path.write_text(bomb(), encoding="utf-8")
    r = run_process(*command, path, env=cli_env, cwd=workdir, timeout=60, max_memory=MEMORY)
    assert_refused(r, path, "别名")
    assert_nothing_stored(duban)


def test_ordinary_aliases_are_accepted():
    """Anchors shared by many rules are what aliases are for: still read."""
    rules = "".join(f"  - id: r{i}\n    title: 报告{i}\n    every: month\n    remind: *remind\n" for i in range(50))
    rs = parse_rule_text("defaults:\n  remind: &remind [-3d, -1d, 0d]\nrules:\n" + rules, "ok.yaml")
    assert len(rs.rules) == 50 and all(len(r.remind) == 3 for r in rs.rules)
