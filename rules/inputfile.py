"""Reading a file the user names (a rule file, a calendar file): a regular file of at most 10 MB.

A FIFO would block the command forever and /dev/zero (or a symlink to it) never ends, so the
kind of file is checked with os.stat before opening, the open cannot block (O_NONBLOCK) and at
most limit+1 bytes are read.
"""

from __future__ import annotations

import os
import stat

from .errors import RuleFileError

MAX_BYTES = 10 * 1024 * 1024


def read_bytes(path: str, limit: int = MAX_BYTES) -> bytes:
    """The file's bytes; anything but a regular file, or a file over `limit` bytes, is refused."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise _not_regular(path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise RuleFileError("文件不存在，请检查路径", file=path) from None
    except IsADirectoryError:
        raise _not_regular(path) from None
    except OSError as e:
        raise RuleFileError(f"无法读取文件（{e.strerror}）", file=path) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between stat and open
            raise _not_regular(path)
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise RuleFileError(f"无法读取文件（{e.strerror}）", file=path) from None
    finally:
        os.close(fd)
    if len(raw) > limit:
        raise RuleFileError(f"文件超过 {limit // (1024 * 1024)} MB 的上限，不像是规则或日历文件。请检查是否选错了文件",
                            file=path)
    return raw


def _not_regular(path: str) -> RuleFileError:
    return RuleFileError("不是普通文件（可能是目录、管道或设备），请指定一个规则或日历文件（.yaml 或 .txt）", file=path)
