"""Typed errors of bad input, rendered once (in Chinese) at the CLI edge."""

from __future__ import annotations


class DubanError(Exception):
    """An error the user can fix; `exit_code` is what the CLI exits with."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class RuleFileError(DubanError):
    """A rule or calendar file that cannot be accepted; names file, line and key."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None, rule: str | None = None):
        self.file, self.line, self.key, self.reason = file, line, key, message
        where = []
        if file:
            where.append(f"文件 {file}")
        if line:
            where.append(f"第 {line} 行")
        if rule:
            where.append(f"规则 {rule}")
        if key:
            where.append(f"键 {key}")
        prefix = "，".join(where)
        super().__init__(f"{prefix}：{message}" if prefix else message)


class RuleFileErrors(DubanError):
    """Several problems in one file: all are reported, none is applied."""

    def __init__(self, errors: list[RuleFileError]):
        errors = sorted(errors, key=lambda e: (e.line or 0))
        self.errors = errors
        lines = [f"规则文件有 {len(errors)} 处错误，未做任何更改："] if len(errors) > 1 else []
        lines += [f"  {e.message}" if len(errors) > 1 else e.message for e in errors]
        super().__init__("\n".join(lines))
