"""Retention and erasure (finding 12): a deployment deleted with cascade takes every row of its
instances with it; finished cases past their process's retention period are anonymized by the
daily job (counts, times and scores survive, no patient data anywhere); an administrator can export
what is held about a patient, and anonymize or erase one finished case, each act audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from engine import retention
from engine.audit import AuditQuery
from engine.errors import Conflict, InvalidInput
from engine.models import HistoryEvent, OutboxMessage
from tests.processes.support import complete, send_sms
from tests.retention.support import (
    COMPLAINANT,
    NEEDLES,
    PATIENT,
    PHONE,
    RECORD,
    answer_inquiry,
    closed_complaint,
    find_anywhere,
    inquiry_with,
    register,
    start_inquiry,
    tables_with_column,
    task_ids,
)

AUDIT_PATIENT = (("audit_events", "patient"),)  # the audit log names a patient by record number


def _audit(engine, action):
    return engine.audit.query(AuditQuery(action=action))[0]


def _count(engine, table, column, values) -> int:
    if not values:
        return 0
    with engine.db.engine.connect() as conn:
        t = sa.Table(table, sa.MetaData(), autoload_with=conn)
        return conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c[column].in_(values))).scalar_one()


# -- cascade --------------------------------------------------------------------------------------

def test_a_deployment_deleted_with_cascade_leaves_no_row_of_its_instances(hospital_any):
    engine = hospital_any
    closed = closed_complaint(engine)
    # a running complaint whose receipt SMS cannot go to a landline: an incident, a failed text
    running = register(engine, "TS-2026-0002", complainantPhone="0571-87654321")
    complete(engine, running, "Activity_review", {"acceptDecision": "受理", "firstResponseNote": "已联系"},
             user="complaints")
    send_sms(engine)
    assert engine.external_tasks.query_incidents()[0][0]["instance_id"] == running
    cancelled = register(engine, "TS-2026-0003")
    engine.cancel(cancelled, user="complaints", reason=f"{PATIENT}家属撤诉")
    doomed = [closed, running, cancelled]
    tasks = [t for iid in doomed for t in task_ids(engine, iid)]
    # a case of another deployment started from one of them keeps running on its own
    engine.deploy([("inquiry.bpmn", inquiry_with({}))], name="inquiry", user="owner")
    survivor = engine.start("inquiry", business_key="ZX-9", user="frontdesk", parent_instance_id=closed,
                            variables={"dueAt": "2026-03-02T11:00:00+08:00", "urgent": False})["id"]
    assert tasks and _count(engine, "history", "instance_id", doomed) > 50

    deployment = engine.list_definitions(key="complaint")[0]["deployment_id"]
    result = engine.delete_deployment(deployment, cascade=True, user="admin")

    assert result["instances_deleted"] == 3
    # no row of any table (introspected: a future table is covered too) names the instances,
    # except the audit log, which outlives the cases it names on purpose
    columns = tables_with_column(engine, lambda name: name == "instance_id" or name.endswith("_instance_id"))
    assert ("history", "instance_id") in columns and ("outbox", "instance_id") in columns
    left = {f"{table}.{column}": _count(engine, table, column, doomed) for table, column in columns
            if table != "audit_events"}
    assert left == dict.fromkeys(left, 0)
    by_task = {f"{table}.{column}": _count(engine, table, column, tasks)
               for table, column in tables_with_column(engine, lambda name: name == "task_id")}
    assert by_task == dict.fromkeys(by_task, 0)
    # nor does any column anywhere hold the patient's data
    assert find_anywhere(engine, NEEDLES) == []
    # the other deployment's case runs on, its link to the deleted case cleared
    child = engine.get_instance(survivor)
    assert child["status"] == "active" and child["parent_instance_id"] is None
    # what the deletion leaves: its own history record (no instance ids, no patient data) and an
    # "erase" line in the audit log
    [record] = [h for h in engine.history(limit=50) if h["action"] == "delete_deployment"]
    assert record["instance_id"] is None
    assert record["details"]["instances_deleted"] == 3 and record["details"]["cascade"] is True
    assert not set(doomed) & set(str(record["details"]).split("'"))
    [erase] = _audit(engine, "erase")
    assert (erase["resource_type"], erase["resource_id"], erase["user"]) == ("deployment", deployment, "admin")
    assert erase["details"]["instances_deleted"] == 3


def test_rows_orphaned_by_earlier_deletions_are_removed_by_the_retention_run(hospital, clock):
    kept = closed_complaint(hospital)
    with hospital.db.transaction() as s:
        for n in range(3):
            s.add(HistoryEvent(instance_id=f"gone-{n}", at=clock.now(), user="x", action="variables",
                               details={"changed": {"complainantPhone": PHONE}}))
        s.add(OutboxMessage(created_at=clock.now(), gateway="console", recipient=PHONE, recipient_masked="138****5678",
                            text="回执", status="sent", instance_id="gone-0"))
    result = retention.run_retention(hospital)
    assert result["orphaned_rows_deleted"] == 4
    assert _count(hospital, "history", "instance_id", ["gone-0", "gone-1", "gone-2"]) == 0
    assert _count(hospital, "history", "instance_id", [kept]) > 0  # the cases that exist keep theirs
    [audit] = _audit(hospital, "erase")
    assert audit["details"]["rows"] == {"history": 3, "outbox": 1}
    assert retention.run_retention(hospital)["orphaned_rows_deleted"] == 0


# -- anonymization -------------------------------------------------------------------------------

OTHER = {"complainantName": "赵六", "complainantPhone": "13900001111", "patientName": "钱七", "patientNo": "ZY999",
         "description": "门诊候诊时间过长", "demand": "缩短候诊时间"}


def test_anonymization_keeps_counts_times_and_scores_but_no_patient_data(hospital_any, clock):
    engine = hospital_any
    case = closed_complaint(engine)
    other = register(engine, "TS-2026-0009", **OTHER)  # another patient's running case
    before = engine.get_instance(case)
    outbox_before = _count(engine, "outbox", "instance_id", [case])
    assert outbox_before == 1 and find_anywhere(engine, [PHONE, COMPLAINANT])

    clock.advance(days=1095, hours=1)
    result = retention.run_retention(engine)
    assert result["anonymized"] == 1 and result["settings_errors"] == {}

    # nothing of the patient anywhere: variables, state, search text, tasks, history, SMS outbox ...
    assert find_anywhere(engine, NEEDLES, skip=AUDIT_PATIENT) == []
    # ... while the other patient's case is untouched
    assert {n for _t, _c, n in find_anywhere(engine, ["赵六", "13900001111", "门诊候诊时间过长"])} == {
        "赵六", "13900001111", "门诊候诊时间过长"}
    assert engine.get_variables(other)["complainantName"]["value"] == "赵六"

    after = engine.get_instance(case)
    assert (after["status"], after["started_at"], after["ended_at"]) == (
        before["status"], before["started_at"], before["ended_at"])
    assert after["business_key"] == "TS-2026-0001"  # a case number, not the patient's
    assert [(t["element_id"], t["status"], t["created_at"], t["completed_at"], t["completed_by"], t["due_at"])
            for t in after["tasks"]] == [
        (t["element_id"], t["status"], t["created_at"], t["completed_at"], t["completed_by"], t["due_at"])
        for t in before["tasks"]]
    assert len(after["history"]) == len(before["history"]) + 1
    assert [h["at"] for h in after["history"][:-1]] == [h["at"] for h in before["history"]]
    assert after["history"][-1]["action"] == "anonymized"
    assert after["path"] == before["path"]
    values = after["variables"]
    for name in ("tier", "category", "department", "satisfactionScore", "complainantSatisfied", "channel",
                 "feedbackDue", "receivedAt", "improvementDeadline", "complaintFounded"):
        assert values[name] == before["variables"][name], name
    assert values["satisfactionScore"] == 5 and values["tier"] == before["variables"]["tier"]
    for name in ("complainantName", "complainantPhone", "patientName", "patientNo", "description", "demand",
                 "facts", "measuresTaken", "followUpNote", "firstResponseNote"):
        assert values[name] == retention.ANONYMIZED, name
    assert after["summary"]["patientName"] == retention.ANONYMIZED
    assert _count(engine, "outbox", "instance_id", [case]) == outbox_before
    # a second run finds nothing to do
    assert retention.run_retention(engine)["anonymized"] == 0
    [audit] = _audit(engine, "anonymize")
    assert (audit["instance_id"], audit["patient"], audit["user"]) == (case, RECORD, "retention")
    assert audit["details"]["scheduled"] is True and audit["details"]["retention_days"] == 1095


def test_the_daily_job_anonymizes_only_cases_past_their_retention_period(hospital, clock):
    hospital.deploy([("inquiry.bpmn", inquiry_with({"retention.days": "30"}))], name="inquiry", user="owner")
    assert retention.retention_days(hospital, "inquiry") == 30
    assert retention.retention_days(hospital, "complaint") == 1095  # the service default
    inquiry = start_inquiry(hospital)
    answer_inquiry(hospital, inquiry)
    first = closed_complaint(hospital, "TS-A")
    ended = hospital.get_instance(first)["ended_at"]
    running = register(hospital, "TS-RUNNING")
    clock.advance(days=10)
    later = register(hospital, "TS-B")
    hospital.cancel(later, user="complaints", reason="投诉人撤回")

    clock.advance(days=21)  # the inquiry's 30 days are over; the complaints' 3 years are not
    assert retention.run_retention(hospital)["anonymized"] == 1
    assert retention.case_status(hospital, inquiry)["anonymized"] is True
    assert hospital.get_variables(inquiry)["patientName"]["value"] == retention.ANONYMIZED
    assert hospital.get_variables(inquiry)["minutesSpent"]["value"] == 5

    clock.set(ended + timedelta(days=1095) - timedelta(minutes=1))
    assert retention.run_retention(hospital)["anonymized"] == 0
    clock.advance(minutes=2)
    assert retention.run_retention(hospital)["anonymized"] == 1
    assert retention.case_status(hospital, first)["anonymized"] is True
    status = retention.case_status(hospital, later)
    assert status["anonymized"] is False and status["past_retention"] is False
    clock.advance(days=3650)  # a case still running is never anonymized, however old
    assert retention.run_retention(hospital)["anonymized"] == 1  # the cancelled one
    assert retention.case_status(hospital, running)["anonymized"] is False
    assert hospital.get_variables(running)["patientName"]["value"] == PATIENT


def test_an_unreadable_retention_setting_anonymizes_nothing_of_that_process(hospital, clock):
    hospital.deploy([("inquiry.bpmn", inquiry_with({"retention.days": "三年"}))], name="inquiry", user="owner")
    inquiry = start_inquiry(hospital)
    answer_inquiry(hospital, inquiry)
    clock.advance(days=4000)
    result = retention.run_retention(hospital)
    assert result["anonymized"] == 0
    assert "retention.days" in result["settings_errors"]["inquiry"]
    assert retention.case_status(hospital, inquiry)["retention_error"]
    assert hospital.get_variables(inquiry)["patientName"]["value"] == "张三"
    # an administrator may still anonymize the case by hand
    assert retention.anonymize(hospital, inquiry, user="admin", reason="患者申请")["anonymized"] is True
    assert hospital.get_variables(inquiry)["patientName"]["value"] == retention.ANONYMIZED


def test_a_process_declares_more_identifying_variables_and_what_text_to_keep(hospital, clock):
    hospital.deploy([("inquiry.bpmn", inquiry_with({"retention.days": "1", "privacy.identifying": "visitorCard",
                                                      "privacy.keep": "topic"}))], name="inquiry", user="owner")
    inquiry = start_inquiry(hospital, visitorCard=88123, topic="复诊预约")
    answer_inquiry(hospital, inquiry)
    clock.advance(days=2)
    retention.run_retention(hospital)
    values = {k: v["value"] for k, v in hospital.get_variables(inquiry).items()}
    assert values["visitorCard"] == retention.ANONYMIZED  # a number, but it identifies
    assert values["topic"] == "复诊预约"
    assert values["question"] == retention.ANONYMIZED  # free text by default
    assert values["solved"] is True and values["minutesSpent"] == 5


# -- the administrator's acts --------------------------------------------------------------------

def test_a_running_case_cannot_be_anonymized_or_erased(hospital):
    running = register(hospital)
    with pytest.raises(Conflict, match="still running"):
        retention.anonymize(hospital, running, user="admin", reason="测试")
    with pytest.raises(Conflict, match="still running"):
        retention.erase(hospital, running, user="admin", reason="测试", within_retention=True)
    assert hospital.get_variables(running)["complainantPhone"]["value"] == PHONE
    assert _audit(hospital, "erase") == [] and _audit(hospital, "anonymize") == []


def test_erasure_within_retention_needs_a_confirmed_legal_reason_then_removes_every_row(hospital_any):
    engine = hospital_any
    case = closed_complaint(engine)
    with pytest.raises(InvalidInput, match="reason"):
        retention.erase(engine, case, user="admin", reason="  ")
    with pytest.raises(Conflict, match="retention period"):
        retention.erase(engine, case, user="admin", reason="患者申请删除")
    assert engine.get_instance(case)["status"] == "completed"

    retention.erase(engine, case, user="admin", reason="患者依《个人信息保护法》第四十七条申请删除",
                    within_retention=True)
    columns = tables_with_column(engine, lambda name: name == "instance_id" or name.endswith("_instance_id"))
    left = {f"{t}.{c}": _count(engine, t, c, [case]) for t, c in columns if t != "audit_events"}
    assert left == dict.fromkeys(left, 0)
    assert find_anywhere(engine, NEEDLES, skip=AUDIT_PATIENT) == []
    [record] = [h for h in engine.history(limit=20) if h["action"] == "erase"]
    assert record["instance_id"] is None and record["details"] == {"process": "complaint", "instances_deleted": 1}
    [audit] = _audit(engine, "erase")
    assert (audit["instance_id"], audit["patient"], audit["user"]) == (case, RECORD, "admin")
    assert audit["details"]["within_retention"] is True and "第四十七条" in audit["details"]["reason"]


def test_an_administrator_anonymizes_one_finished_case_once(hospital):
    case = closed_complaint(hospital)
    with pytest.raises(InvalidInput, match="reason"):
        retention.anonymize(hospital, case, user="admin")
    first = retention.anonymize(hospital, case, user="admin", reason="患者申请")
    assert first["anonymized"] is True
    assert retention.anonymize(hospital, case, user="admin", reason="再次")["already"] is True
    assert len(_audit(hospital, "anonymize")) == 1
    assert find_anywhere(hospital, NEEDLES, skip=AUDIT_PATIENT) == []
    # an anonymized case past retention may be erased without confirmation
    hospital.clock.advance(days=1096)
    retention.erase(hospital, case, user="admin", reason="保存期满")
    assert retention.find_patient_cases(hospital, record=RECORD) == []


# -- export --------------------------------------------------------------------------------------

def test_export_finds_everything_held_about_a_patient_by_record_or_phone(hospital):
    case = closed_complaint(hospital)
    register(hospital, "TS-2026-0009", **OTHER)
    by_record = retention.export_patient(hospital, record=RECORD, user="admin", address="10.0.0.8")
    [exported] = by_record["cases"]
    assert exported["id"] == case and exported["process_key"] == "complaint"
    assert exported["variables"]["complainantPhone"] == PHONE
    assert exported["variables"]["patientName"] == PATIENT
    assert {t["element_id"] for t in exported["tasks"]} >= {"Activity_review", "Activity_investigate"}
    assert any(h["action"] == "complete" for h in exported["history"])
    assert [m["recipient"] for m in exported["text_messages"]] == [PHONE]
    assert by_record["records"] == [RECORD]
    by_phone = retention.export_patient(hospital, phone="138-1234-5678", user="admin")
    assert [c["id"] for c in by_phone["cases"]] == [case]
    events = _audit(hospital, "export")
    assert [(e["user"], e["patient"], e["details"]["cases"]) for e in events] == [
        ("admin", RECORD, 1), ("admin", RECORD, 1)]
    assert events[0]["details"]["phone"] == "138****5678" and PHONE not in str(events)
    assert events[1]["address"] == "10.0.0.8"
    # the access log of the patient is part of the export
    again = retention.export_patient(hospital, record=RECORD, user="admin")
    assert [a["action"] for a in again["access_log"]] == ["export", "export"]


@pytest.mark.parametrize("query, message", [
    ({}, "either"), ({"record": RECORD, "phone": PHONE}, "either"), ({"phone": "abc"}, "digits"),
    ({"phone": "12"}, "digits"), ({"record": "x" * 65}, "64"), ({"record": "ZY\x00"}, "64"),
])
def test_export_refuses_unclear_queries(hospital, query, message):
    with pytest.raises(InvalidInput, match=message):
        retention.export_patient(hospital, user="admin", **query)
    assert _audit(hospital, "export") == []


def test_the_scheduler_runs_the_retention_job_once_a_day(hospital, clock):
    from engine.scheduler import RETENTION_JOB_ID, TimerScheduler

    case = closed_complaint(hospital)
    scheduler = TimerScheduler(hospital)
    scheduler.start()
    try:
        job = scheduler._scheduler.get_job(RETENTION_JOB_ID)
        assert job is not None and "cron" in str(job.trigger) and "hour='3'" in str(job.trigger)
    finally:
        scheduler.shutdown()
    clock.advance(days=1096)
    assert scheduler.run_retention()["anonymized"] == 1
    assert retention.case_status(hospital, case)["anonymized"] is True
