"""Evidence files (佐证材料): the store (size while streaming, type by content and name, names made safe,
content kept once, a full disk), `duban done --file`, and the ledger that lists them and packs them
in `duban ledger export --out FILE.zip`. Real files, real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile

import openpyxl
import pytest
from conftest import db_rows as rows

from rules.errors import DubanError
from scheduler.evidence import (
    CHUNK,
    MB,
    EvidenceRefused,
    EvidenceStorageError,
    StoredFile,
    attach_evidence,
    data_dir,
    evidence_for,
    evidence_path,
    max_bytes,
    safe_filename,
    store_file,
)
from scheduler.settings import Settings

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
BMP = b"BM" + (70).to_bytes(4, "little") + b"\0\0\0\0" + (54).to_bytes(4, "little") + (40).to_bytes(4, "little") + b"\0" * 52
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 16
OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504 + b"\xec\xa5\xc1\x00" + b"\0" * 512
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\0" * 48 + b"This program cannot be run in DOS mode"
RTF = rb"{\rtf1\ansi\deff0 {\fonttbl {\f0 SimSun;}} \f0 \u20250?\u35758? }"


def docx_bytes(*, document_first: bool = False) -> bytes:
    """A minimal real Word document; `document_first` orders the members as some other writers do."""
    parts = {
        "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
                               'package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/>'
                               '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
                               'officedocument.wordprocessingml.document.main+xml"/></Types>',
        "_rels/.rels": '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
                       'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
                       'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>',
        "word/document.xml": '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.'
                             'org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>主题党日会议记录</w:t></w:r></w:p>'
                             '</w:body></w:document>',
    }
    order = list(parts)
    if document_first:
        order = order[::-1]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in order:  # a fixed time: the same bytes each call
            z.writestr(zipfile.ZipInfo(name, (2026, 12, 10, 10, 0, 0)), parts[name], zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def xlsx_bytes() -> bytes:
    wb = openpyxl.Workbook()
    wb.active.append(["姓名", "签到"])
    wb.active.append(["王书记", "是"])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def odt_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text", compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", "<office:document-content/>")
    return buf.getvalue()


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("照片/1.txt", "一")
    return buf.getvalue()


class CountingStream:
    """A file-like upload that counts what was read from it (and the largest single read)."""

    def __init__(self, data: bytes):
        self._f = io.BytesIO(data)
        self.read_bytes = 0
        self.largest = 0

    def read(self, n: int = -1) -> bytes:
        chunk = self._f.read(n)
        self.read_bytes += len(chunk)
        self.largest = max(self.largest, len(chunk))
        return chunk


class Endless:
    """An upload that never ends: only a store that stops reading can refuse it."""

    def __init__(self):
        self.read_bytes = 0

    def read(self, n: int = -1) -> bytes:
        n = CHUNK if n is None or n < 0 else n
        self.read_bytes += n
        return b"%PDF-" + b"x" * (n - 5) if self.read_bytes == n else b"x" * n


def leftovers(directory) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.fixture
def store(tmp_path):
    d = tmp_path / "data"
    d.mkdir(mode=0o700)
    return d


# --- 1. size, while streaming ------------------------------------------------------------------
def test_a_file_over_the_limit_is_refused_as_soon_as_it_exceeds_it(store):
    upload = CountingStream(b"%PDF-1.4\n" + b"x" * (5 * MB))
    with pytest.raises(EvidenceRefused) as e:
        store_file(store, "年度报告.pdf", upload, 1 * MB)
    assert "太大：最大 1 MB" in str(e.value) and "年度报告.pdf" in str(e.value)
    assert upload.read_bytes <= 1 * MB + 1  # stopped at the limit, never read the other 4 MB
    assert upload.largest <= CHUNK  # and in chunks
    assert leftovers(store) == []

    endless = Endless()
    with pytest.raises(EvidenceRefused, match="太大"):
        store_file(store, "无尽.pdf", endless, 2 * MB)
    assert endless.read_bytes <= 2 * MB + CHUNK
    assert leftovers(store) == []


def test_a_file_of_exactly_the_limit_is_kept(store):
    data = PDF + b"%" * (MB - len(PDF))
    got = store_file(store, "a.pdf", io.BytesIO(data), MB)
    assert got.size == MB and got.sha256 == hashlib.sha256(data).hexdigest()


def test_an_empty_file_is_refused(store):
    with pytest.raises(EvidenceRefused, match="空文件"):
        store_file(store, "空.pdf", io.BytesIO(b""), MB)
    assert leftovers(store) == []


# --- 2. type, by content and by name -------------------------------------------------------------
@pytest.mark.parametrize("name, data, content_type", [
    ("会议记录.pdf", PDF, "application/pdf"),
    ("会议记录.docx", docx_bytes(), "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("另一种顺序.docx", docx_bytes(document_first=True),
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("签到表.xlsx", xlsx_bytes(), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("记录.odt", odt_bytes(), "application/vnd.oasis.opendocument.text"),
    ("旧版.doc", OLE, "application/msword"),
    ("旧版.xls", OLE, "application/vnd.ms-excel"),
    ("wps 文字.wps", OLE, "application/vnd.ms-works"),
    ("幻灯片.dps", OLE, "application/vnd.ms-powerpoint"),
    ("通知.rtf", RTF, "application/rtf"),
    ("照片.jpg", JPEG, "image/jpeg"),
    ("照片.JPEG", JPEG, "image/jpeg"),
    ("截图.png", PNG, "image/png"),
    ("动图.gif", GIF, "image/gif"),
    ("图.webp", WEBP, "image/webp"),
    ("图.bmp", BMP, "image/bmp"),
    ("手机照片.heic", HEIC, "image/heic"),
    ("材料.zip", zip_bytes(), "application/zip"),
    ("说明.txt", "学习了党章第三章。\n".encode(), "text/plain; charset=utf-8"),
    ("要点.md", "# 要点\n- 一\n".encode(), "text/markdown; charset=utf-8"),
    ("名单.csv", "姓名,签到\n王书记,是\n".encode("gb18030"), "text/csv; charset=gb18030"),
])
def test_allowed_types_are_kept(store, name, data, content_type):
    got = store_file(store, name, io.BytesIO(data), MB)
    assert got == StoredFile(hashlib.sha256(data).hexdigest(), len(data), name, content_type)
    assert evidence_path(store, got.sha256).read_bytes() == data


@pytest.mark.parametrize("name, data, why", [
    ("会议记录.pdf", PNG, "内容却是 PNG 图片"),  # a picture saved as .pdf
    ("安装包.pdf", EXE, "内容却是 Windows 程序"),  # a program renamed .pdf
    ("签到表.xlsx", docx_bytes(), "内容却是 Word 文档"),
    ("旧版.doc", docx_bytes(), "内容却是 Word 文档（.docx）"),  # renamed .docx → .doc
    ("新版.docx", OLE, "Office 97-2003"),
    ("材料.zip", b"PK\x03\x04" + b"\0" * 100, "内容却不是 zip 压缩包"),  # a broken archive
    ("记录.docx", zip_bytes(), "内容却是 zip 压缩包"),
    ("照片.jpg", b"just text", "内容却不是 JPEG 图片"),
    ("说明.txt", PDF + b"\x00\x01binary", "内容却是 PDF 文件"),
    ("说明.txt", b"abc\x00def", "不是 UTF-8 或 GB18030"),
    ("名单.csv", b"\xff\xfe\x00\x00\xff", "不是 UTF-8 或 GB18030"),
])
def test_content_that_disagrees_with_the_extension_is_refused(store, name, data, why):
    with pytest.raises(EvidenceRefused) as e:
        store_file(store, name, io.BytesIO(data), MB)
    assert "内容与扩展名不符" in str(e.value) and why in str(e.value), str(e.value)
    assert leftovers(store) == []


@pytest.mark.parametrize("name", ["setup.exe", "脚本.sh", "网页.html", "图.svg", "passwd", "宏.docm", "a.pdf.exe"])
def test_other_types_are_refused_by_name_before_a_byte_is_read(store, name):
    upload = CountingStream(PDF)
    with pytest.raises(EvidenceRefused) as e:
        store_file(store, name, upload, MB)
    assert "类型不允许" in str(e.value) and "docx" in str(e.value) and "PDF" in str(e.value)
    assert upload.read_bytes == 0
    assert leftovers(store) == []


# --- 3. names ----------------------------------------------------------------------------------
@pytest.mark.parametrize("given, shown", [
    ("../../etc/passwd", "passwd"),
    ("C:\\x\\y.pdf", "y.pdf"),
    ("..\\..\\Windows\\报告.pdf", "报告.pdf"),
    ("/tmp/../会议记录.docx", "会议记录.docx"),
    ("关于开展主题党日活动的通知（第二次）.docx", "关于开展主题党日活动的通知（第二次）.docx"),
    ("会议\x00记\r\n录\u202e.pdf", "会议记录.pdf"),  # control and bidi-override characters
    ("a:b?c*.pdf", "a_b_c_.pdf"),
    (".hidden.pdf", "hidden.pdf"),
    ("..", ""),
    ("../", ""),
    ("报告.pdf. . ", "报告.pdf"),
])
def test_names_are_made_safe(given, shown):
    assert safe_filename(given) == shown


def test_long_names_are_shortened_keeping_the_extension():
    name = safe_filename("很长的名字" * 50 + ".pdf")
    assert len(name) == 120 and name.endswith(".pdf") and name.startswith("很长的名字")


def test_a_path_in_the_name_never_leaves_the_store(store):
    got = store_file(store, "C:\\x\\..\\..\\y.pdf", io.BytesIO(PDF), MB)
    assert got.filename == "y.pdf"
    assert evidence_path(store, got.sha256).parent.parent == store
    with pytest.raises(EvidenceRefused, match="类型不允许"):
        store_file(store, "../../etc/passwd", io.BytesIO(b"root:x:0:0\n"), MB)
    with pytest.raises(EvidenceRefused, match="文件名"):
        store_file(store, "../", io.BytesIO(PDF), MB)
    with pytest.raises(ValueError):
        evidence_path(store, "../../etc/passwd")


# --- 4. kept once, owner only ---------------------------------------------------------------------
def test_the_same_content_is_kept_once(store):
    a = store_file(store, "会议记录.pdf", io.BytesIO(PDF), MB)
    b = store_file(store, "会议记录（副本）.pdf", io.BytesIO(PDF), MB)
    assert a.sha256 == b.sha256 and (a.filename, b.filename) == ("会议记录.pdf", "会议记录（副本）.pdf")
    path = evidence_path(store, a.sha256)
    assert leftovers(store) == [a.sha256[:2], f"{a.sha256[:2]}/{a.sha256[2:]}"]
    assert path.read_bytes() == PDF
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0


def test_data_dir_and_max_bytes_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "var" / "duban.db"
    db.parent.mkdir()
    d = data_dir(Settings(database_url=f"sqlite:///{db}"))
    assert d == tmp_path / "var" / "data" and stat.S_IMODE(d.stat().st_mode) == 0o700
    assert data_dir(Settings(database_url="sqlite:///duban.db")) == tmp_path / "data"
    assert data_dir(Settings(database_url="postgresql+psycopg://u@h/db")) == tmp_path / "data"
    own = tmp_path / "evidence"
    assert data_dir(Settings(env={"DUBAN_DATA_DIR": str(own)})) == own and own.is_dir()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DubanError, match="DUBAN_DATA_DIR"):
        data_dir(Settings(env={"DUBAN_DATA_DIR": str(tmp_path / "a-file")}))

    assert max_bytes(Settings()) == 20 * MB
    assert max_bytes(Settings(env={"DUBAN_EVIDENCE_MAX_MB": " 5 "})) == 5 * MB
    assert max_bytes(Settings(env={"DUBAN_EVIDENCE_MAX_MB": "0.5"})) == MB // 2
    for bad in ("abc", "0", "-1", "nan", "inf", "99999", "20MB"):
        with pytest.raises(DubanError, match="DUBAN_EVIDENCE_MAX_MB"):
            max_bytes(Settings(env={"DUBAN_EVIDENCE_MAX_MB": bad}))


# --- 5. a full disk -------------------------------------------------------------------------------
_FULL_DISK_CHILD = textwrap.dedent("""\
    import io, os, resource, signal, sys
    from scheduler.evidence import EvidenceStorageError, store_file
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past RLIMIT_FSIZE a write fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
    try:
        store_file(sys.argv[1], "大文件.pdf", io.BytesIO(b"%PDF-1.4\\n" + b"x" * (2 << 20)), 20 << 20)
    except EvidenceStorageError as e:
        print(e)
    """)


def _mount_tmpfs(path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_full_disk_refuses_the_file_in_chinese_and_leaves_nothing(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if _mount_tmpfs(disk):  # a real filesystem that fills up: ENOSPC
        try:
            with pytest.raises(EvidenceStorageError) as e:
                store_file(disk, "大文件.pdf", io.BytesIO(b"%PDF-1.4\n" + b"x" * (2 * MB)), 20 * MB)
            message = str(e.value)
            assert leftovers(disk) == []
            small = store_file(disk, "小文件.pdf", io.BytesIO(PDF), 20 * MB)  # space is back
            assert evidence_path(disk, small.sha256).read_bytes() == PDF
        finally:
            if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(disk)], capture_output=True)
    else:  # no mount: the file-size limit of a child process (EFBIG)
        r = subprocess.run([sys.executable, "-c", _FULL_DISK_CHILD, str(disk)], capture_output=True, text=True,
                           timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
        assert r.returncode == 0, r.stderr
        message = r.stdout
        assert leftovers(disk) == []
    assert "服务器磁盘已满" in message and "大文件.pdf" in message, message
    assert EvidenceStorageError.exit_code == 1 and issubclass(EvidenceStorageError, EvidenceRefused)


# --- 6. the CLI and the ledger ----------------------------------------------------------------------
RULES = textwrap.dedent("""\
    people:
      secretary: {name: 王书记}
      office: {name: 张主任}
    rules:
      - {id: party-day, title: 主题党日, source: "二(三)8", owner: secretary, every: month, due: {day: 15},
         start: 2026-12-01}
      - {id: seminar, title: 专题研讨, owner: office, every: year, quota: 2, start: 2026-01-01}
    """)
KEY = "party-day@2026-12"


def ok(r):
    assert r.code == 0, r.err
    return r


def refused(r, *words):
    assert r.code == 2, (r.out, r.err)
    assert "Traceback" not in r.err and r.err.startswith("错误：")
    for w in words:
        assert w in r.err, r.err
    return r


def setup(duban, workdir, url=None):
    ok(duban("init", "--no-pack", url=url))
    (workdir / "r.yaml").write_text(RULES, encoding="utf-8")
    ok(duban("rules", "import", "r.yaml", "--now", "2026-12-01T08:00", url=url))



def test_done_with_files_then_a_zip_export_holds_the_workbook_and_the_same_bytes(duban, workdir, db_url):
    setup(duban, workdir, db_url)
    (workdir / "会议记录.pdf").write_bytes(PDF)
    (workdir / "合影.jpg").write_bytes(JPEG)
    (workdir / "签到表.docx").write_bytes(docx_bytes())
    r = ok(duban("done", KEY, "--by", "secretary", "--note", "已召开", "--evidence", "党支部档案 2026-12",
                 "--file", "会议记录.pdf", "--file", "合影.jpg", "--now", "2026-12-10T10:00", url=db_url))
    assert "已登记完成：party-day@2026-12（1/1）" in r.out
    assert f"佐证材料：会议记录.pdf（{len(PDF)} 字节，SHA-256 {hashlib.sha256(PDF).hexdigest()[:12]}…）" in r.out
    # a later completion of another duty, and the same photo again (kept once)
    ok(duban("done", "seminar@2026", "--by", "office", "--file", str(workdir / "签到表.docx"), "--file", "合影.jpg",
             "--now", "2026-12-11T15:30", url=db_url))

    [(completion_id,)] = rows(db_url, f"SELECT id FROM completions WHERE occurrence_key = '{KEY}'")
    ev = rows(db_url, "SELECT occurrence_key, completion_id, filename, size, sha256, uploaded_by FROM evidence ORDER BY id")
    assert [(k, n, s, h) for k, _c, n, s, h, _b in ev] == [
        (KEY, "会议记录.pdf", len(PDF), hashlib.sha256(PDF).hexdigest()),
        (KEY, "合影.jpg", len(JPEG), hashlib.sha256(JPEG).hexdigest()),
        ("seminar@2026", "签到表.docx", len(docx_bytes()), hashlib.sha256(docx_bytes()).hexdigest()),
        ("seminar@2026", "合影.jpg", len(JPEG), hashlib.sha256(JPEG).hexdigest())]
    assert ev[0][1] == ev[1][1] == completion_id and ev[2][1] != completion_id
    assert rows(db_url, f"SELECT evidence FROM completions WHERE id = {completion_id}") == [("党支部档案 2026-12",)]
    stored = sorted(p for p in (workdir / "data").rglob("*") if p.is_file())
    assert len(stored) == 3  # the photo once

    r = ok(duban("ledger", "export", "--out", "台账.zip", "--now", "2026-12-31T18:00", url=db_url))
    assert "佐证材料 4 个 → 台账.zip" in r.out and r.err == ""
    archive = workdir / "台账.zip"
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert not [p for p in workdir.iterdir() if p.name.startswith(".duban-ledger-")]
    with zipfile.ZipFile(archive) as z:
        assert z.testzip() is None
        names = z.namelist()
        assert names[0] == "台账.xlsx" and names[-1] == "说明.txt"
        assert z.read(f"佐证材料/{KEY}/会议记录.pdf") == PDF
        assert z.read(f"佐证材料/{KEY}/合影.jpg") == JPEG
        assert z.read("佐证材料/seminar@2026/签到表.docx") == docx_bytes()
        assert z.read("佐证材料/seminar@2026/合影.jpg") == JPEG
        assert len(names) == 6
        wb = openpyxl.load_workbook(io.BytesIO(z.read("台账.xlsx")))
        readme = z.read("说明.txt").decode("utf-8-sig")
    assert "共收入佐证材料文件 4 个" in readme and "找不到" not in readme

    assert wb.sheetnames == ["台账", "规则变更", "发送记录", "佐证材料"]
    sheet = [[c if c is not None else "" for c in r] for r in wb["佐证材料"].iter_rows(values_only=True)]
    assert sheet[0] == ["事项编号", "文件名", "大小（字节）", "SHA-256", "上传人", "上传时间", "压缩包内位置"]
    assert sheet[1:] == [
        [KEY, "会议记录.pdf", str(len(PDF)), hashlib.sha256(PDF).hexdigest(), "王书记", "2026-12-10 10:00",
         f"佐证材料/{KEY}/会议记录.pdf"],
        [KEY, "合影.jpg", str(len(JPEG)), hashlib.sha256(JPEG).hexdigest(), "王书记", "2026-12-10 10:00",
         f"佐证材料/{KEY}/合影.jpg"],
        ["seminar@2026", "签到表.docx", str(len(docx_bytes())), hashlib.sha256(docx_bytes()).hexdigest(), "张主任",
         "2026-12-11 15:30", "佐证材料/seminar@2026/签到表.docx"],
        ["seminar@2026", "合影.jpg", str(len(JPEG)), hashlib.sha256(JPEG).hexdigest(), "张主任", "2026-12-11 15:30",
         "佐证材料/seminar@2026/合影.jpg"]]
    ledger = list(wb["台账"].iter_rows(values_only=True))
    col = ledger[0].index("佐证材料")
    month = next(r for r in ledger if r[0] == KEY)
    assert month[col] == (f"会议记录.pdf（{len(PDF)} 字节，SHA-256 {hashlib.sha256(PDF).hexdigest()[:12]}…）\n"
                          f"合影.jpg（{len(JPEG)} 字节，SHA-256 {hashlib.sha256(JPEG).hexdigest()[:12]}…）")
    assert month[ledger[0].index("完成记录")] == "2026-12-10 10:00 王书记：已召开（佐证：党支部档案 2026-12）"

    # the plain workbook and the CSV list the same, without the archive column
    ok(duban("ledger", "export", "--out", "台账.xlsx", "--now", "2026-12-31T18:00", url=db_url))
    plain = openpyxl.load_workbook(workdir / "台账.xlsx")["佐证材料"]
    assert [list(r) for r in plain.iter_rows(values_only=True)] == [r[:6] for r in sheet]
    ok(duban("ledger", "export", "--out", "台账.csv", "--now", "2026-12-31T18:00", url=db_url))
    with open(workdir / "台账.csv", encoding="utf-8-sig", newline="") as f:
        got = {r[0]: r for r in csv.reader(f)}
    assert got[KEY][col] == month[col]


def test_a_refused_file_records_nothing(duban, workdir, db_url, monkeypatch):
    setup(duban, workdir, db_url)
    (workdir / "会议记录.pdf").write_bytes(PDF)
    (workdir / "截图.pdf").write_bytes(PNG)
    (workdir / "空.pdf").write_bytes(b"")
    (workdir / "大.pdf").write_bytes(PDF + b"x" * MB)
    os.mkfifo(workdir / "管道.pdf")
    now = ("--now", "2026-12-10T10:00")
    refused(duban("done", KEY, "--file", "会议记录.pdf", "--file", "截图.pdf", *now, url=db_url),
            "截图.pdf", "内容与扩展名不符", "PNG 图片")
    refused(duban("done", KEY, "--file", "没有这个文件.pdf", *now, url=db_url), "找不到文件：没有这个文件.pdf")
    refused(duban("done", KEY, "--file", "管道.pdf", *now, url=db_url), "不是普通文件")
    refused(duban("done", KEY, "--file", "空.pdf", *now, url=db_url), "空文件")
    refused(duban("done", KEY, "--file", "r.yaml", *now, url=db_url), "类型不允许", "允许的类型")
    refused(duban("done", KEY, "--file", str(workdir), *now, url=db_url), "不是普通文件")
    monkeypatch.setenv("DUBAN_EVIDENCE_MAX_MB", "1")
    refused(duban("done", KEY, "--file", "大.pdf", *now, url=db_url), "太大：最大 1 MB")
    monkeypatch.setenv("DUBAN_EVIDENCE_MAX_MB", "二十")
    refused(duban("done", KEY, "--file", "会议记录.pdf", *now, url=db_url), "DUBAN_EVIDENCE_MAX_MB")
    monkeypatch.delenv("DUBAN_EVIDENCE_MAX_MB")
    refused(duban("done", "party-day@2099-01", "--file", "会议记录.pdf", *now, url=db_url), "没有编号为")
    assert rows(db_url, "SELECT count(*) FROM completions") == [(0,)]
    assert rows(db_url, "SELECT count(*) FROM evidence") == [(0,)]
    assert not [p for p in (workdir / "data").rglob(".upload-*")]


def test_the_archive_names_same_named_files_apart_and_lists_missing_ones(duban, workdir):
    setup(duban, workdir)
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    (workdir / "a" / "记录.pdf").write_bytes(PDF)
    other = PDF.replace(b"1.4", b"1.7")
    (workdir / "b" / "记录.PDF").write_bytes(other)
    (workdir / "说明.txt").write_text("会议说明", encoding="utf-8")
    ok(duban("done", "seminar@2026", "--file", "a/记录.pdf", "--file", "b/记录.PDF", "--file", "说明.txt",
             "--now", "2026-12-10T10:00"))
    ok(duban("done", "seminar@2026", "--file", "a/记录.pdf", "--now", "2026-12-11T10:00"))  # the same file again
    gone = evidence_path(workdir / "data", hashlib.sha256("会议说明".encode()).hexdigest())
    gone.unlink()

    r = ok(duban("ledger", "export", "--out", "检查.zip", "--now", "2026-12-31T18:00"))
    assert "佐证材料 2 个 → 检查.zip" in r.out
    assert "1 个佐证材料在服务器上找不到" in r.err and "说明.txt" in r.err
    with zipfile.ZipFile(workdir / "检查.zip") as z:
        assert sorted(n for n in z.namelist() if n.startswith("佐证材料/")) == [
            "佐证材料/seminar@2026/记录 (2).PDF", "佐证材料/seminar@2026/记录.pdf"]
        assert z.read("佐证材料/seminar@2026/记录.pdf") == PDF
        assert z.read("佐证材料/seminar@2026/记录 (2).PDF") == other
        readme = z.read("说明.txt").decode("utf-8-sig")
        places = [r[6] for r in openpyxl.load_workbook(io.BytesIO(z.read("检查.xlsx")))["佐证材料"].iter_rows(
            min_row=2, values_only=True)]
    assert "以下 1 个佐证材料在服务器上找不到" in readme
    assert f"seminar@2026  说明.txt（12 字节，SHA-256 {gone.parent.name}{gone.name}）" in readme
    assert places == ["佐证材料/seminar@2026/记录.pdf", "佐证材料/seminar@2026/记录 (2).PDF",
                      "（服务器上缺少此文件，未放入压缩包）", "佐证材料/seminar@2026/记录.pdf"]


def test_the_zip_export_streams_files(duban, workdir, monkeypatch):
    """A 16 MB evidence file goes into the archive without being held in memory."""
    setup(duban, workdir)
    big = workdir / "扫描件.pdf"
    with open(big, "wb") as f:
        f.write(b"%PDF-1.4\n")
        for _ in range(16):
            f.write(os.urandom(MB))
    ok(duban("done", KEY, "--file", "扫描件.pdf", "--now", "2026-12-10T10:00"))
    tracemalloc.start()
    try:
        ok(duban("ledger", "export", "--out", "x.zip", "--now", "2026-12-31T18:00"))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MB, peak
    with zipfile.ZipFile(workdir / "x.zip") as z, z.open(f"佐证材料/{KEY}/扫描件.pdf") as got, open(big, "rb") as want:
        while True:
            a, b = got.read(MB), want.read(MB)
            assert a == b
            if not a:
                break


def test_a_data_dir_that_cannot_be_made_is_a_chinese_error(duban, workdir, monkeypatch):
    setup(duban, workdir)
    (workdir / "会议记录.pdf").write_bytes(PDF)
    (workdir / "occupied").write_text("x")
    monkeypatch.setenv("DUBAN_DATA_DIR", str(workdir / "occupied"))
    refused(duban("done", KEY, "--file", "会议记录.pdf", "--now", "2026-12-10T10:00"), "DUBAN_DATA_DIR")
    refused(duban("ledger", "export", "--out", "x.zip"), "DUBAN_DATA_DIR")
    assert not (workdir / "x.zip").exists()


# --- 7. the API the workbench uses ---------------------------------------------------------------
def test_attach_and_read_evidence(duban, workdir, db_url, store):
    from datetime import UTC, datetime

    from scheduler.db import make_engine, session_scope

    setup(duban, workdir, db_url)
    a = store_file(store, "会议记录.pdf", io.BytesIO(PDF), MB)
    b = store_file(store, "合影.jpg", io.BytesIO(JPEG), MB)
    engine = make_engine(db_url)
    now = datetime(2026, 12, 10, 2, 0, tzinfo=UTC)
    try:
        with session_scope(engine) as s:
            got = attach_evidence(s, org="default", occurrence_key=KEY, completion_id=None, files=[a, b], by="office",
                                  now=now)
            assert all(r.id for r in got)
            attach_evidence(s, org="other", occurrence_key=KEY, completion_id=None, files=[b], by=None, now=now)
        with session_scope(engine) as s:
            found = evidence_for(s, "default", [KEY, "seminar@2026"])
            assert list(found) == [KEY, "seminar@2026"] and found["seminar@2026"] == []
            assert [(r.filename, r.size, r.sha256, r.content_type, r.uploaded_by, r.uploaded_at) for r in found[KEY]] == [
                ("会议记录.pdf", len(PDF), a.sha256, "application/pdf", "office", now),
                ("合影.jpg", len(JPEG), b.sha256, "image/jpeg", "office", now)]
            assert [r.uploaded_by for r in evidence_for(s, "other", [KEY])[KEY]] == [None]
            many = evidence_for(s, "default", [f"k@{i}" for i in range(1200)] + [KEY])  # past one IN list
            assert len(many) == 1201 and len(many[KEY]) == 2
    finally:
        engine.dispose()
    assert evidence_path(store, a.sha256).read_bytes() == PDF
