"""Deadlines in Chinese working days, end to end: the diagram's ${addWorkingDays(...)} lands where
a person expects, administrators' overrides change it, and an unconfirmed year is flagged."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from engine.service import TaskQuery
from tests.conftest import fixture_bytes

SHANGHAI = ZoneInfo("Asia/Shanghai")


def start(engine, received: str, several: bool = False):
    engine.deploy([("feedback_deadline.bpmn", fixture_bytes("bpmn", "feedback_deadline.bpmn"))])
    inst = engine.start("feedback_deadline", business_key=f"TS-{received}-{several}",
                        variables={"receivedAt": received, "severalDepartments": several})
    task = engine.list_tasks(TaskQuery(instance_id=inst["id"]))[0]
    return inst, task["due_at"].astimezone(SHANGHAI)


def test_five_and_ten_working_days_across_national_day(any_engine):
    _, five = start(any_engine, "2026-09-30T10:00:00+08:00")
    _, ten = start(any_engine, "2026-09-30T10:00:00+08:00", several=True)
    assert five == datetime(2026, 10, 13, 17, 30, tzinfo=SHANGHAI)
    assert ten == datetime(2026, 10, 20, 17, 30, tzinfo=SHANGHAI)


def test_a_local_closure_moves_the_deadline(engine):
    engine.set_calendar_day(date(2026, 10, 12), False, "台风停诊", user="admin")
    _, five = start(engine, "2026-09-30T10:00:00+08:00")
    assert five == datetime(2026, 10, 14, 17, 30, tzinfo=SHANGHAI)
    assert {"day": date(2026, 10, 12), "is_working": False, "name": "台风停诊"} in \
        engine.calendar_overrides()["days"]


def test_a_deadline_in_an_unconfirmed_year_is_flagged_until_an_admin_confirms_it(engine):
    inst, due = start(engine, "2026-12-28T10:00:00+08:00")
    assert due.year == 2027
    warnings = [h for h in engine.get_instance(inst["id"])["history"] if h["action"] == "calendar_warning"]
    assert warnings and warnings[0]["details"]["unconfirmed_years"] == [2027]

    # the State Council published 2027: the admin enters New Year's Day and confirms the year
    engine.set_calendar_day(date(2027, 1, 1), False, "元旦", user="admin")
    engine.confirm_calendar_year(2027, "国务院办公厅通知", user="admin")
    inst2, due2 = start(engine, "2026-12-28T11:00:00+08:00")
    assert [h for h in engine.get_instance(inst2["id"])["history"] if h["action"] == "calendar_warning"] == []
    # Dec 29, 30, 31, (Jan 1 holiday), Jan 4, Jan 5 → the 5th working day is Tuesday 2027-01-05
    assert due2 == datetime(2027, 1, 5, 17, 30, tzinfo=SHANGHAI)
