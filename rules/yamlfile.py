"""YAML reading that remembers the line of every key, for error messages that name it."""

from __future__ import annotations

import re
from typing import Any

import yaml

from .errors import RuleFileError
from .inputfile import read_bytes

Path = tuple[Any, ...]
# tags a mapping key may carry: plain text, numbers, dates (not <<, sets, custom !tags)
PLAIN_KEY_TAGS = {"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
# Aliases (*a) are expanded into copies: a few hundred bytes of nested aliases ("billion laughs")
# would expand into billions of values. What a file expands into (one per value, plus the length of
# each text) may exceed its own size only by this factor, plus a little for small files.
EXPANSION_FACTOR = 10
EXPANSION_FLOOR = 10_000


# libyaml's parser when available (several times faster); nodes carry line numbers either way
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):
    """SafeLoader without YAML 1.1 sexagesimal integers, so `at: 09:30` stays the text "09:30"."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:int"] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)


def read_text(path: str) -> str:
    """The file's text; a file that is not UTF-8 is refused with its name."""
    raw = read_bytes(path)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise RuleFileError("文件不是 UTF-8 编码。请用文本编辑器“另存为 UTF-8”后再导入", file=path, line=line) from None


def load_with_lines(text: str, filename: str) -> tuple[Any, dict[Path, int]]:
    """Parse YAML; return the data and a map from key path to 1-based line number."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        problem = e.problem or "格式错误"
        raise RuleFileError(
            f"YAML 语法错误（{problem}）。请检查缩进、冒号后的空格和引号是否成对", file=filename, line=line
        ) from None
    except yaml.YAMLError as e:
        raise RuleFileError(f"YAML 语法错误（{e}）", file=filename) from None
    finally:
        loader.dispose()
    lines: dict[Path, int] = {}
    if node is None:
        return None, lines
    constructors = loader.yaml_constructors
    budget = [EXPANSION_FACTOR * len(text) + EXPANSION_FLOOR]

    def build(n: yaml.Node, path: Path, parents: frozenset[int]) -> Any:
        budget[0] -= 1 + (len(n.value) if isinstance(n, yaml.ScalarNode) else 0)
        if budget[0] < 0:
            raise RuleFileError("锚点（&）和别名（*）展开后的内容远大于文件本身，不能导入。"
                                "请不要层层引用别名；共同的设置请写在 defaults 里", file=filename,
                                line=n.start_mark.line + 1)
        lines.setdefault(path, n.start_mark.line + 1)
        if id(n) in parents:  # an alias that refers to a node containing it
            raise RuleFileError("锚点（&）引用了它自己，无法展开", file=filename, line=n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            inner = parents | {id(n)}
            out: dict[Any, Any] = {}
            for k, v in n.value:
                if not isinstance(k, yaml.ScalarNode) or k.tag not in PLAIN_KEY_TAGS:
                    raise RuleFileError("键必须是简单的文字（不支持 <<、!标签 或复合键）", file=filename,
                                        line=k.start_mark.line + 1)
                key = scalar(k)
                if key in out:
                    raise RuleFileError(f"键“{key}”重复出现", file=filename, line=k.start_mark.line + 1, key=str(key))
                lines[path + (key,)] = k.start_mark.line + 1
                out[key] = build(v, path + (key,), inner)
            return out
        if isinstance(n, yaml.SequenceNode):
            inner = parents | {id(n)}
            return [build(v, path + (i,), inner) for i, v in enumerate(n.value)]
        return scalar(n)

    def scalar(n: yaml.Node) -> Any:
        if n.tag == "tag:yaml.org,2002:str":
            return n.value  # most scalars: skip the generic constructor machinery
        try:
            return constructors[n.tag](loader, n)
        except Exception:  # noqa: BLE001 - PyYAML raises many kinds for odd tags; all mean "not a value"
            raise RuleFileError(f"无法识别的取值“{str(n.value)[:60]}”（{n.tag.rpartition(':')[2]}）",
                                file=filename, line=n.start_mark.line + 1) from None

    return build(node, (), frozenset()), lines


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of `path`, or of its nearest ancestor that has one."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
