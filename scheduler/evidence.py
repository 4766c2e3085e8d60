"""Evidence files (佐证材料): stored once by content hash under the data directory, recorded per
occurrence in the `evidence` table. The CLI (`duban done --file`) and the workbench call the same
functions: `store_file` before the transaction, `attach_evidence` inside it.

File types are checked by a small signature table here rather than `filetype`/`puremagic`: those
sniff only the first few KB, so an OOXML file whose first zip members are not the usual ones (WPS,
LibreOffice, python-docx) comes out as a plain zip, and neither checks text (UTF-8/GB18030) nor WPS
formats. Office Open XML and OpenDocument are told apart by the zip's member names (its central
directory, nothing is unpacked); the OLE formats (doc/xls/ppt/wps/et/dps) share one signature.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import math
import os
import re
import stat
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from rules.errors import DubanError

from .models import EvidenceRow
from .paths import data_dir  # noqa: F401 - the evidence folder is the data folder
from .settings import Settings

MB = 1024 * 1024
DEFAULT_MAX_MB = 20
MAX_MB = 2048  # a sanity bound for DUBAN_EVIDENCE_MAX_MB
MAX_NAME = 120  # characters of a displayed file name
CHUNK = 1 << 16


class EvidenceRefused(DubanError):
    """A file that is not accepted as evidence; nothing of it is left on disk."""


class EvidenceStorageError(EvidenceRefused):
    """The server could not keep the file (disk full, no permission): not the uploader's fault."""

    exit_code = 1


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    size: int
    filename: str  # sanitised, as shown
    content_type: str


# --- settings --------------------------------------------------------------------------------
def max_bytes(settings: Settings) -> int:
    """DUBAN_EVIDENCE_MAX_MB (default 20) in bytes."""
    raw = settings.get("DUBAN_EVIDENCE_MAX_MB")
    if raw is None:
        return DEFAULT_MAX_MB * MB
    try:
        mb = float(raw.strip())
    except ValueError:
        mb = math.nan
    if not (0 < mb <= MAX_MB):  # also refuses nan and inf
        raise DubanError(f"设置 DUBAN_EVIDENCE_MAX_MB 的值“{raw}”无效：应为每个佐证材料的大小上限（MB），"
                         f"大于 0、不超过 {MAX_MB}，例如 20")
    return int(mb * MB)


# --- types -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Type:
    label: str  # what the content is, in words
    content_type: str
    signature: str  # what `_sniff` must find: ole, docx, xlsx, pptx, odt, ods, odp, zip, pdf, png, ..., text


_OLE = "ole"
TYPES: dict[str, _Type] = {
    # documents
    "doc": _Type("Word 97-2003 文档", "application/msword", _OLE),
    "docx": _Type("Word 文档", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"),
    "odt": _Type("OpenDocument 文档", "application/vnd.oasis.opendocument.text", "odt"),
    "wps": _Type("WPS 文字文档", "application/vnd.ms-works", _OLE),
    "rtf": _Type("RTF 文档", "application/rtf", "rtf"),
    # spreadsheets
    "xls": _Type("Excel 97-2003 工作簿", "application/vnd.ms-excel", _OLE),
    "xlsx": _Type("Excel 工作簿", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    "ods": _Type("OpenDocument 表格", "application/vnd.oasis.opendocument.spreadsheet", "ods"),
    "et": _Type("WPS 表格", "application/vnd.ms-excel", _OLE),
    "csv": _Type("CSV 表格", "text/csv", "text"),
    # presentations
    "ppt": _Type("PowerPoint 97-2003 演示文稿", "application/vnd.ms-powerpoint", _OLE),
    "pptx": _Type("PowerPoint 演示文稿",
                  "application/vnd.openxmlformats-officedocument.presentationml.presentation", "pptx"),
    "odp": _Type("OpenDocument 演示文稿", "application/vnd.oasis.opendocument.presentation", "odp"),
    "dps": _Type("WPS 演示文稿", "application/vnd.ms-powerpoint", _OLE),
    # images
    "jpg": _Type("JPEG 图片", "image/jpeg", "jpeg"),
    "jpeg": _Type("JPEG 图片", "image/jpeg", "jpeg"),
    "png": _Type("PNG 图片", "image/png", "png"),
    "gif": _Type("GIF 图片", "image/gif", "gif"),
    "webp": _Type("WebP 图片", "image/webp", "webp"),
    "bmp": _Type("BMP 图片", "image/bmp", "bmp"),
    "heic": _Type("HEIC 图片", "image/heic", "heic"),
    "heif": _Type("HEIF 图片", "image/heif", "heic"),
    # the rest
    "pdf": _Type("PDF 文件", "application/pdf", "pdf"),
    "txt": _Type("文本文件", "text/plain", "text"),
    "md": _Type("Markdown 文本", "text/markdown", "text"),
    "zip": _Type("zip 压缩包", "application/zip", "zip"),
}
ALLOWED_TEXT = ("文档（doc、docx、odt、wps、rtf）、表格（xls、xlsx、ods、et、csv）、演示文稿（ppt、pptx、odp、dps）、"
                "图片（jpg、jpeg、png、gif、webp、bmp、heic）、PDF、文本（txt、md）和 zip 压缩包")
# what a signature found in the content is called when it disagrees with the extension
_SIGNATURE_LABELS = {_OLE: "Office 97-2003 / WPS 文件", "docx": "Word 文档（.docx）", "xlsx": "Excel 工作簿（.xlsx）",
                     "pptx": "PowerPoint 演示文稿（.pptx）", "odt": "OpenDocument 文档（.odt）",
                     "ods": "OpenDocument 表格（.ods）", "odp": "OpenDocument 演示文稿（.odp）", "zip": "zip 压缩包",
                     "rtf": "RTF 文档", "pdf": "PDF 文件", "png": "PNG 图片", "jpeg": "JPEG 图片", "gif": "GIF 图片",
                     "webp": "WebP 图片", "bmp": "BMP 图片", "heic": "HEIC 图片", "exe": "Windows 程序（exe/dll）",
                     "elf": "Linux 程序"}
_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_ODF = {"application/vnd.oasis.opendocument.text": "odt", "application/vnd.oasis.opendocument.spreadsheet": "ods",
        "application/vnd.oasis.opendocument.presentation": "odp"}
# already compressed types are stored as they are in an archive; these are worth deflating
_COMPRESSIBLE = {"text/plain", "text/csv", "text/markdown", "application/rtf", "application/msword",
                 "application/vnd.ms-works", "application/vnd.ms-excel", "application/vnd.ms-powerpoint", "image/bmp"}


def compressible(content_type: str) -> bool:
    return content_type.split(";")[0] in _COMPRESSIBLE


def _sniff(f: BinaryIO) -> str | None:
    """The signature of the file's content (a key of _SIGNATURE_LABELS), or None if none is known."""
    f.seek(0)
    head = f.read(4096)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return _OLE
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(f)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in (12, 40, 52, 56, 108, 124):
        return "bmp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIC_BRANDS:
        return "heic"
    if head.startswith(b"{\\rtf"):
        return "rtf"
    if b"%PDF-" in head[:1024]:  # readers accept a little junk before the header
        return "pdf"
    if head.startswith(b"MZ"):
        return "exe"
    if head.startswith(b"\x7fELF"):
        return "elf"
    return None


def _zip_kind(f: BinaryIO) -> str | None:
    """docx/xlsx/pptx, odt/ods/odp or zip, from the member names in the central directory (no member is
    unpacked but ODF's tiny `mimetype`); None for a broken archive."""
    try:
        with zipfile.ZipFile(f) as z:
            names = z.namelist()
            if "[Content_Types].xml" in names:
                for prefix, kind in (("word/", "docx"), ("xl/", "xlsx"), ("ppt/", "pptx")):
                    if any(n.startswith(prefix) for n in names):
                        return kind
            if "mimetype" in names and z.getinfo("mimetype").file_size <= 100:
                kind = _ODF.get(z.read("mimetype").decode("ascii", "replace").strip())
                if kind:
                    return kind
            return "zip"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, ValueError, EOFError, OSError,
            RuntimeError):  # RuntimeError: an encrypted `mimetype`
        return None


class _TextCheck:
    """Whether a stream, fed in chunks, is text: no NUL, valid UTF-8 or else valid GB18030."""

    def __init__(self) -> None:
        self.decoders = {"utf-8": codecs.getincrementaldecoder("utf-8")(),
                         "gb18030": codecs.getincrementaldecoder("gb18030")()}
        self.nul = False

    def feed(self, chunk: bytes, final: bool = False) -> None:
        if self.nul or not self.decoders:
            return
        if b"\0" in chunk:
            self.nul = True
            return
        for name, dec in list(self.decoders.items()):
            try:
                dec.decode(chunk, final)
            except UnicodeDecodeError:
                del self.decoders[name]

    @property
    def charset(self) -> str | None:
        if self.nul:
            return None
        return next(iter(self.decoders), None)  # UTF-8 first: ASCII is both


# --- names -----------------------------------------------------------------------------------
_WINDOWS_RESERVED = re.compile(r'[<>:"|?*]')


def safe_filename(name: str) -> str:
    """The name to show and to put in an archive: its last path part (either slash), without control
    or format characters and characters Windows refuses, no leading dots, at most MAX_NAME characters
    (the extension kept). Chinese is kept. May be empty."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith("C"))
    name = _WINDOWS_RESERVED.sub("_", name).strip().lstrip(".").rstrip(". ")
    if len(name) > MAX_NAME:
        stem, ext = os.path.splitext(name)
        ext = ext if len(ext) <= 16 else ""
        name = stem[:MAX_NAME - len(ext)].rstrip(". ") + ext
    return name


def _extension(name: str) -> str:
    return name.rsplit(".", 1)[1].lower() if "." in name else ""


def check_name(filename: str) -> tuple[str, _Type]:
    """The sanitised name and its type, or EvidenceRefused if the name's type is not allowed."""
    name = safe_filename(filename)
    if not name:
        shown = "".join(ch if ch.isprintable() else "?" for ch in (filename or "")[:MAX_NAME])
        raise EvidenceRefused(f"文件名“{shown}”无效：请使用带扩展名的文件名，例如 会议记录.pdf")
    kind = TYPES.get(_extension(name))
    if kind is None:
        ext = _extension(name)
        raise EvidenceRefused(f"文件“{name}”的类型不允许（{'.' + ext if ext else '没有扩展名'}）：允许的类型为 {ALLOWED_TEXT}")
    return name, kind


def _mb(limit: int) -> str:
    return f"{limit / MB:g}"


def human_size(n: int) -> str:
    """`512 字节`, `12.3 KB`, `4.5 MB`"""
    if n < 1024:
        return f"{n} 字节"
    if n < MB:
        return f"{n / 1024:.1f} KB"
    return f"{n / MB:.1f} MB"


# --- storing ---------------------------------------------------------------------------------
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def evidence_path(directory: Path | str, sha256: str) -> Path:
    """Where the file with this SHA-256 is kept: `directory/ab/cdef…`."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return Path(directory) / sha256[:2] / sha256[2:]


def store_file(directory: Path | str, filename: str, stream: BinaryIO, limit: int) -> StoredFile:
    """Keep one uploaded file: read `stream` in chunks into a temporary file in `directory`, hashing as
    it goes and stopping as soon as it exceeds `limit` bytes; check its type by name and by content;
    move it to its place by hash (the same content is kept once). Any refusal is an EvidenceRefused and
    leaves nothing behind."""
    name, kind = check_name(filename)  # before reading a byte: an .exe is refused at once
    directory = Path(directory)
    digest, size = hashlib.sha256(), 0
    text = _TextCheck() if kind.signature == "text" else None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=directory)  # 0600, same filesystem as the target
    except OSError as e:
        raise _storage_error(name, directory, e) from None
    try:
        # any OSError here is the server's (the temp file, the store); the upload's own are caught at read
        with os.fdopen(fd, "w+b") as out:
            while True:
                try:
                    chunk = stream.read(min(CHUNK, limit + 1 - size))  # never more than limit + 1 bytes
                except OSError as e:
                    raise EvidenceRefused(f"读取文件“{name}”时出错（{e.strerror or e}），请重新上传") from None
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise EvidenceRefused(f"文件“{name}”太大：最大 {_mb(limit)} MB，请压缩或拆分后再上传")
                digest.update(chunk)
                if text is not None:
                    text.feed(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())  # the database will say the file exists: it must survive a crash
            if size == 0:
                raise EvidenceRefused(f"文件“{name}”是空文件（0 字节），请检查后重新上传")
            if text is not None:
                text.feed(b"", final=True)
            content_type = _check_content(name, kind, out, text)
        sha = digest.hexdigest()
        target = evidence_path(directory, sha)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        if target.exists():  # the same content is already kept
            os.unlink(tmp)
        else:
            os.replace(tmp, target)
            _fsync_dir(target.parent)
    except OSError as e:
        _unlink(tmp)
        raise _storage_error(name, directory, e) from None
    except BaseException:
        _unlink(tmp)
        raise
    return StoredFile(sha, size, name, content_type)


def _check_content(name: str, kind: _Type, f: BinaryIO, text: _TextCheck | None) -> str:
    """The content type to record, or EvidenceRefused when the content is not what the extension says."""
    found = _sniff(f)
    ext = "." + _extension(name)
    if text is not None:
        if found is None and text.charset:
            return f"{kind.content_type}; charset={text.charset}"
        what = _SIGNATURE_LABELS[found] if found else "二进制数据"
        raise EvidenceRefused(f"文件“{name}”的内容与扩展名不符：扩展名是 {ext}（文本），内容却是 {what}，"
                              f"不是 UTF-8 或 GB18030 编码的文本。请用正确的扩展名重新保存后上传")
    if found == kind.signature:
        return kind.content_type
    if found is None:
        raise EvidenceRefused(f"文件“{name}”的内容与扩展名不符：扩展名是 {ext}，内容却不是 {kind.label}"
                              f"（文件可能已损坏，或是改了扩展名的其他文件）")
    raise EvidenceRefused(f"文件“{name}”的内容与扩展名不符：扩展名是 {ext}，内容却是 {_SIGNATURE_LABELS[found]}。"
                          f"请用正确的扩展名重新保存后上传")


def _storage_error(name: str, directory: Path, e: OSError) -> EvidenceStorageError:
    if e.errno in _DISK_FULL:
        return EvidenceStorageError(f"服务器磁盘已满，无法保存文件“{name}”。请联系管理员清理磁盘（{directory}）后重试")
    return EvidenceStorageError(f"无法保存文件“{name}”到 {directory}（{e.strerror or e}）。"
                                f"请检查 DUBAN_DATA_DIR 和目录权限")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def store_local_files(directory: Path | str, paths: Sequence[str], limit: int) -> list[StoredFile]:
    """Files named on the command line: all checked first (exists, a regular file, allowed name, not
    empty, not too large), so a typo refuses the command before anything is stored; then stored."""
    opened: list[tuple[str, BinaryIO]] = []
    try:
        for path in dict.fromkeys(paths):  # the same file named twice is attached once
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block
            except FileNotFoundError:
                raise EvidenceRefused(f"找不到文件：{path}") from None
            except OSError as e:
                raise EvidenceRefused(f"无法读取文件 {path}（{e.strerror or e}）") from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # a directory, a FIFO, a device
                os.close(fd)
                raise EvidenceRefused(f"{path} 不是普通文件，不能作为佐证材料")
            f = os.fdopen(fd, "rb")
            opened.append((path, f))
            name, _kind = check_name(os.path.basename(path))
            if st.st_size == 0:
                raise EvidenceRefused(f"文件“{name}”是空文件（0 字节），请检查后重新上传")
            if st.st_size > limit:
                raise EvidenceRefused(f"文件“{name}”太大：最大 {_mb(limit)} MB，请压缩或拆分后再上传")
        return [store_file(directory, os.path.basename(path), f, limit) for path, f in opened]
    finally:
        for _path, f in opened:
            f.close()


# --- recording -------------------------------------------------------------------------------
def attach_evidence(s: Session, *, org: str, occurrence_key: str, completion_id: int | None,
                    files: Iterable[StoredFile], by: str | None, now: datetime) -> list[EvidenceRow]:
    """Record stored files as evidence of an occurrence (and of one completion, if given), in the
    caller's transaction."""
    rows = [EvidenceRow(org=org, occurrence_key=occurrence_key, completion_id=completion_id, filename=f.filename,
                        size=f.size, sha256=f.sha256, content_type=f.content_type, uploaded_by=by, uploaded_at=now)
            for f in files]
    s.add_all(rows)
    s.flush()
    return rows


def evidence_for(s: Session, org: str, keys: Iterable[str]) -> dict[str, list[EvidenceRow]]:
    """Each occurrence's evidence, oldest first (an empty list for none)."""
    out: dict[str, list[EvidenceRow]] = {k: [] for k in keys}
    wanted = list(out)
    for i in range(0, len(wanted), 500):  # bounded IN lists
        q = (select(EvidenceRow).where(EvidenceRow.org == org, EvidenceRow.occurrence_key.in_(wanted[i:i + 500]))
             .order_by(EvidenceRow.uploaded_at, EvidenceRow.id))
        for row in s.scalars(q):
            out[row.occurrence_key].append(row)
    return out
