"""What the person running the server does: back up a live database, upgrade an old one."""

from __future__ import annotations

import sqlite3
import textwrap

import sqlalchemy as sa

RULES = textwrap.dedent("""\
    people:
      secretary: {name: 王书记, email: secretary@example.cn}
    rules:
      - {id: monthly-report, title: 月度报告, owner: secretary, every: month, due: {day: 15}, remind: [-1d]}
    """)


def test_backup_of_a_database_in_use(duban, workdir):
    duban("init", "--no-pack")
    (workdir / "r.yaml").write_text(RULES, encoding="utf-8")
    duban("rules", "import", "r.yaml", "--now", "2026-12-01T09:00")
    duban("tick", "--now", "2026-12-14T09:05")
    # another connection is in the middle of a write transaction while we back up
    busy = sqlite3.connect(workdir / "duban.db")
    busy.execute("BEGIN")
    busy.execute("UPDATE people SET name = name")
    r = duban("backup", "--out", "copy.db")
    busy.rollback()
    busy.close()
    assert r.code == 0, r.err
    assert (workdir / "copy.db").stat().st_mode & 0o077 == 0  # readable by its owner only
    copy = duban("status", "--format", "json", "--now", "2026-12-14T10:00", url=f"sqlite:///{workdir / 'copy.db'}")
    assert [x["key"] for x in copy.json()][:1] == ["monthly-report@2026-12"]
    again = duban("backup", "--out", "copy.db")
    assert again.code == 2 and "已存在" in again.err


def test_backup_refers_postgresql_users_to_pg_dump(duban, pg_url):
    duban("init", "--no-pack", url=pg_url)
    r = duban("backup", "--out", "x.dump", url=pg_url)
    assert r.code == 2 and "pg_dump" in r.err


def test_upgrading_a_database_made_by_the_first_schema_keeps_every_row(db_url, duban, workdir):
    """A database created by revision 0001 (rules, people, groups, audit, calendar, events) is
    upgraded by `duban init` to the current schema without losing a row, and then works."""
    from alembic import command

    from scheduler.db import _alembic_config, head_revision

    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
        conn.execute(sa.text("INSERT INTO people (id, name, email) VALUES ('secretary', '王书记', 'secretary@example.cn')"))
        conn.execute(sa.text("INSERT INTO groups (id, members) VALUES ('leaders', :m)"), {"m": '["secretary"]'})
        definition = ('{"id": "monthly-report", "title": "月度报告", "owner": "secretary", "escalate_to": [], '
                      '"every": "month", "due": {"day": 15}, "if_holiday": "next-workday", "quota": 1, '
                      '"remind": ["-1d"], "at": "09:00", "escalate_after": "3wd", "repeat_overdue": "1wd", '
                      '"timezone": "Asia/Shanghai"}')
        conn.execute(sa.text("INSERT INTO rules (id, title, definition, enabled, added_on, origin, created_at, updated_at) "
                             "VALUES ('monthly-report', '月度报告', :d, true, '2026-11-01', 'old.yaml', "
                             "'2026-11-01 01:00:00', '2026-11-01 01:00:00')"), {"d": definition})
        conn.execute(sa.text("INSERT INTO rule_changes (at, rule_id, action, after, origin) VALUES "
                             "('2026-11-01 01:00:00', 'monthly-report', 'added', :d, 'old.yaml')"), {"d": definition})
        conn.execute(sa.text("INSERT INTO events (type, date, title, recorded_at) VALUES "
                             "('study-session', '2026-11-20', '第3次学习', '2026-11-01 01:00:00')"))
        conn.execute(sa.text("INSERT INTO calendar_years (year, source, holidays, workdays, imported_at) VALUES "
                             "(2027, '测试', :h, '[]', '2026-11-01 01:00:00')"), {"h": '["2027-01-01"]'})
    counts_before = _counts(engine, ["people", "groups", "rules", "rule_changes", "events", "calendar_years"])

    r = duban("init", url=db_url)
    assert r.code == 0, r.err
    assert "已升级数据库结构：0001 → " + head_revision() in r.out
    assert _counts(engine, list(counts_before)) == counts_before
    listed = duban("rules", "list", "--format", "json", url=db_url).json()
    assert [(x["id"], x["enabled"]) for x in listed] == [("monthly-report", True)]
    assert duban("tick", "--now", "2026-12-14T09:05", url=db_url).code == 0
    engine.dispose()


def _counts(engine, tables):
    with engine.connect() as c:
        return {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in tables}
