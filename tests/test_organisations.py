"""A district: several branches (organisations) on one database, each with its own rules and people."""

from __future__ import annotations

import openpyxl


def branch_rules(name: str) -> str:
    return (f"people:\n  secretary: {{name: {name}书记, email: secretary@{name}.example.cn}}\n"
            f"  office: {{name: {name}办公室, email: office@{name}.example.cn}}\n"
            "rules:\n"
            "  - {id: party-day, title: 主题党日, owner: office, every: month, due: {day: 15}, remind: [-1d]}\n")


def test_branches_share_a_database_but_not_their_duties(db_url, duban, smtp, workdir):
    assert duban("init", "--no-pack", url=db_url).code == 0
    for name in ("east", "west"):
        (workdir / f"{name}.yaml").write_text(branch_rules(name), encoding="utf-8")
        r = duban("--org", name, "rules", "import", f"{name}.yaml", "--now", "2026-12-01T09:00", url=db_url)
        assert r.code == 0, r.err
    # the same rule id lives in both branches; the default organisation stays empty
    assert duban("rules", "list", "--format", "json", url=db_url).json() == []
    assert [x["id"] for x in duban("--org", "east", "rules", "list", "--format", "json", url=db_url).json()] == ["party-day"]

    # one tick serves every branch: each office is reminded of its own duty
    assert duban("tick", "--now", "2026-12-14T09:05", url=db_url).code == 0
    assert sorted(r for m in smtp.messages for r in m.recipients) == ["office@east.example.cn", "office@west.example.cn"]

    # completing east's duty does not touch west's
    assert duban("--org", "east", "done", "party-day@2026-12", "--now", "2026-12-15T10:00", url=db_url).code == 0
    east = {x["key"]: x["state"] for x in duban("--org", "east", "status", "--all", "--format", "json",
                                                 "--now", "2026-12-16T10:00", url=db_url).json()}
    west = {x["key"]: x["state"] for x in duban("--org", "west", "status", "--format", "json",
                                                 "--now", "2026-12-16T10:00", url=db_url).json()}
    assert east["party-day@2026-12"] == "done" and west["party-day@2026-12"] == "overdue"

    # each branch's secretary gets only their branch's digest
    smtp.messages.clear()
    for name in ("east", "west"):
        assert duban("--org", name, "digest", "--send", "--now", "2026-12-16T10:05", url=db_url).code == 0
    digests = {m.recipients[0]: m.text for m in smtp.messages if m.subject.startswith("【每日督办汇总】")}
    assert set(digests) == {"secretary@east.example.cn", "secretary@west.example.cn"}
    assert "逾期事项（0 项）" in digests["secretary@east.example.cn"]
    assert "逾期事项（1 项）" in digests["secretary@west.example.cn"] and "west办公室" in digests["secretary@west.example.cn"]
    assert "east" not in digests["secretary@west.example.cn"]

    # the ledger of a branch holds only that branch
    assert duban("--org", "west", "ledger", "export", "--out", "west.xlsx", "--now", "2026-12-16T11:00",
                 url=db_url).code == 0
    sheet = openpyxl.load_workbook(workdir / "west.xlsx")["台账"]
    rows = list(sheet.iter_rows(min_row=2, values_only=True))
    assert [r[0] for r in rows if r[0] and r[0].startswith("party-day@2026-12")] == ["party-day@2026-12"]
    assert all("east" not in str(c) for r in rows for c in r if c)


def test_a_tick_limited_to_one_branch_sends_only_its_messages(duban, smtp, workdir):
    duban("init", "--no-pack")
    for name in ("east", "west"):
        (workdir / f"{name}.yaml").write_text(branch_rules(name), encoding="utf-8")
        duban("--org", name, "rules", "import", f"{name}.yaml", "--now", "2026-12-01T09:00")
    assert duban("--org", "east", "tick", "--now", "2026-12-14T09:05").code == 0
    assert [m.recipients for m in smtp.messages] == [["office@east.example.cn"]]
    assert duban("tick", "--now", "2026-12-14T09:06").code == 0
    assert sorted(r for m in smtp.messages for r in m.recipients) == ["office@east.example.cn", "office@west.example.cn"]


def test_an_invalid_branch_name_is_refused(duban):
    duban("init", "--no-pack")
    r = duban("--org", "East Branch", "rules", "list")
    assert r.code == 2 and "单位" in r.err
