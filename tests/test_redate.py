"""When the 2027 arrangement arrives: `duban calendar import` and the re-dating of what depends on it."""

from __future__ import annotations

import textwrap

from test_notice import NOTICE_2027_INVENTED

RULES = textwrap.dedent("""\
    people:
      secretary: {name: 王书记, email: secretary@example.cn}
    rules:
      - id: party-day
        title: 主题党日
        owner: secretary
        every: month
        due: {weekday: fri, nth: 1}
        if_holiday: next-workday
        remind: [-1d, 0d]
      - id: study-plan
        title: 制定学习计划
        owner: secretary
        event: document-received
        offset: +3wd
        remind: [0d]
      - id: monthly-check
        title: 月度检查
        owner: secretary
        every: month
        due: {day: 8}
        remind: [0d]
    """)


def by_key(rows):
    return {r["key"]: r for r in rows}


def setup(duban, workdir):
    duban("init", "--no-pack")
    (workdir / "r.yaml").write_text(RULES, encoding="utf-8")
    assert duban("rules", "import", "r.yaml", "--now", "2027-01-20T10:00").code == 0
    r = duban("event", "add", "document-received", "--date", "2027-02-03", "--now", "2027-01-25T10:00")
    assert "study-plan@event-1" in r.out and "2027-02-12" in r.out
    assert duban("tick", "--now", "2027-01-25T10:00").code == 0


def test_importing_the_notice_re_dates_open_duties_and_tells_the_owner(duban, smtp, workdir):
    setup(duban, workdir)
    before = by_key(duban("status", "--format", "json", "--now", "2027-01-25T10:05").json())
    # under the provisional calendar (library: Feb 5–10 off)
    assert before["party-day@2027-02"]["due"] == "2027-02-11" and before["party-day@2027-02"]["provisional"]
    assert before["study-plan@event-1"]["due"] == "2027-02-12"
    assert before["monthly-check@2027-02"]["due"] == "2027-02-11"
    duban("done", "monthly-check@2027-02", "--by", "王书记", "--now", "2027-01-25T11:00")
    assert smtp.messages == []

    (workdir / "2027.txt").write_text(NOTICE_2027_INVENTED, encoding="utf-8")
    r = duban("calendar", "import", "2027.txt", "--now", "2027-01-26T10:00")
    assert r.code == 0, r.err
    assert "已导入 2027 年放假安排" in r.out and "2 项未办结事项的截止日期已调整" in r.out
    assert "party-day@2027-02：2027-02-11 → 2027-02-15" in r.out
    assert "study-plan@event-1：2027-02-12 → 2027-02-16" in r.out

    after = by_key(duban("status", "--all", "--format", "json", "--now", "2027-01-26T10:05").json())
    assert after["party-day@2027-02"]["due"] == "2027-02-15" and not after["party-day@2027-02"]["provisional"]
    assert after["study-plan@event-1"]["due"] == "2027-02-16"
    assert after["monthly-check@2027-02"]["due"] == "2027-02-11"  # done before: keeps its date
    preview = duban("preview", "--rule", "party-day", "--from", "2027-02-01", "--to", "2027-02-28",
                    "--format", "json").json()
    assert [(o["due"], o["provisional"]) for o in preview] == [("2027-02-15", False)]
    shown = duban("calendar", "show", "2027", "--format", "json").json()
    assert shown["official"] is True and "2027年部分节假日安排" in shown["source"]
    assert shown["workdays"] == ["2027-01-31", "2027-02-20", "2027-04-25", "2027-05-08", "2027-09-26", "2027-10-09"]
    assert {f"2027-02-{d:02d}" for d in range(5, 14)} <= set(shown["holidays"])

    # one short notice per moved duty, by the owner's usual channel
    duban("tick", "--now", "2027-01-26T10:01")
    subjects = sorted(m.subject for m in smtp.messages)
    assert len(subjects) == 2 and all(s.startswith("【截止日期调整】") for s in subjects)
    assert any("主题党日" in s and "2027年2月11日" in s and "2027年2月15日" in s for s in subjects)
    # importing the same notice again changes nothing and tells nobody
    again = duban("calendar", "import", "2027.txt", "--now", "2027-01-27T10:00")
    assert "未做更改" in again.out
    duban("tick", "--now", "2027-01-27T10:01")
    assert len(smtp.messages) == 2
    # the reminder follows the new date: -1d of Mon Feb 15 is in the holiday, so the last working
    # day before it (Thu Feb 4); the old reminder day (Feb 10) sends nothing
    duban("tick", "--now", "2027-02-04T09:30")
    assert len(smtp.messages) == 3
    assert smtp.messages[2].subject == "【督办提醒】主题党日 将于 2027年2月15日 到期"
    duban("tick", "--now", "2027-02-10T09:30")
    assert len(smtp.messages) == 3


def test_a_bad_notice_is_refused_whole_and_changes_nothing(duban, workdir):
    setup(duban, workdir)
    bad = NOTICE_2027_INVENTED.replace("2月20日（周六）上班", "2月30日（周六）上班")
    (workdir / "bad.txt").write_text(bad, encoding="utf-8")
    r = duban("calendar", "import", "bad.txt", "--now", "2027-01-26T10:00")
    assert r.code == 2 and "bad.txt" in r.err and "行" in r.err and "Traceback" not in r.err
    shown = duban("calendar", "show", "2027", "--format", "json").json()
    assert shown["official"] is False
    status = by_key(duban("status", "--format", "json", "--now", "2027-01-26T10:05").json())
    assert status["party-day@2027-02"]["due"] == "2027-02-11"


def test_the_real_2026_notice_gives_its_six_working_weekends(duban, workdir):
    from pathlib import Path

    duban("init", "--no-pack")
    notice = Path(__file__).parent / "fixtures" / "notices" / "2026.txt"
    r = duban("calendar", "import", str(notice), "--now", "2026-11-25T10:00")
    assert r.code == 0, r.err
    shown = duban("calendar", "show", "2026", "--format", "json").json()
    assert shown["workdays"] == ["2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"]
    assert shown["official"] is True
    table = duban("calendar", "show", "2026")
    assert "休" in table.out and "班" in table.out and "2月15日至2月23日" in table.out


def test_the_digest_lists_the_shifts_and_doctor_warns_before_the_year(duban, workdir):
    setup(duban, workdir)
    digest = duban("digest", "--now", "2026-12-01T09:00")
    assert "2027 年的放假安排尚未导入" in digest.out and "duban calendar import" in digest.out
    (workdir / "2027.txt").write_text(NOTICE_2027_INVENTED, encoding="utf-8")
    duban("calendar", "import", "2027.txt", "--now", "2027-01-26T10:00")
    digest = duban("digest", "--now", "2027-01-26T10:30")
    assert "截止日期调整" in digest.out and "2027-02-11 → 2027-02-15" in digest.out
