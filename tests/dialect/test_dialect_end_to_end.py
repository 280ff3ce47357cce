"""One hospital process that combines most of the dialect — a complaint from registration to closure:
start form and initiator, DMN chain (table + literal) through business rule tasks, a sandboxed
script with input/output mapping, `${…}` assignment and a working-day deadline, non-interrupting
reminder cycle and interrupting deadline timer, an inclusive gateway, an embedded sub-process whose
error end event is caught at its boundary, a multi-instance apology, a call activity with in/out
mappings, an external SMS task, an event-based gateway, and interrupting / non-interrupting message
event sub-processes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from engine.models import MessageSubscription, Timer
from tests.dialect.conftest import deploy, elements, open_tasks, task_at, variables

SHANGHAI = timezone(timedelta(hours=8))
FILES = ("complaint_rules.dmn", "complaint_callback.bpmn", "complaint.bpmn")


def start(engine, key, **values):
    base = {"complainantName": "陈女士", "category": "billing", "amount": 300, "urgent": False, "ticket": "7",
            "apologizers": [], "callbackAgent": "agent_li"}
    base.update(values)
    return engine.start("dx_complaint", business_key=key, variables=base, user="registrar_wu")


def do(engine, instance_id, element, values=None, user="staff"):
    engine.complete(task_at(engine, instance_id, element)["id"], values or {}, user=user)


def waits(engine, instance_id):
    with engine.db.reader() as s:
        subs = s.execute(select(func.count()).select_from(MessageSubscription)
                         .where(MessageSubscription.instance_id == instance_id)).scalar()
        timers = s.execute(select(func.count()).select_from(Timer).where(Timer.instance_id == instance_id)).scalar()
    return subs, timers


def test_urgent_complaint_with_refund_refused_apologies_callback_and_confirmation(any_engine, clock):
    deploy(any_engine, *FILES)
    form = any_engine.start_form("dx_complaint")
    assert [f.id for f in form.fields] == ["complainantName", "category", "amount", "urgent"]
    inst = start(any_engine, "TS-URGENT", urgent=True, apologizers=["nurse_a", "dr_b"])
    iid = inst["id"]
    values = variables(any_engine, iid)
    assert values["triage"] == {"dept": "medical", "tier": "A"} and values["deadlineDays"] == 1
    assert values["caseNo"] == "TS-A-0007" and "prefix" not in values and values["registrar"] == "registrar_wu"

    hotline = task_at(any_engine, iid, "Task_hotline")
    assert (hotline["assignee"], hotline["priority"]) == ("registrar_wu", 90)
    do(any_engine, iid, "Task_hotline", user="registrar_wu")
    investigate = task_at(any_engine, iid, "Task_investigate")
    assert investigate["candidate_groups"] == ["medical_head", "complaint_office"]
    assert investigate["due_at"] == datetime(2026, 3, 3, 17, 30, tzinfo=SHANGHAI)  # 1 working day
    assert investigate["priority"] == 80 and investigate["form_key"] == "embedded:app:forms/investigate.html"

    clock.advance(hours=4)
    assert any_engine.fire_due_timers() == 1  # the first reminder
    any_engine.correlate_message("supplement_received", business_key="TS-URGENT", variables={"pages": 3})
    assert elements(any_engine, iid) == ["Task_investigate", "Task_remind", "Task_review_supplement"]
    assert task_at(any_engine, iid, "Task_review_supplement")["candidate_groups"] == ["medical_head"]

    do(any_engine, iid, "Task_investigate", {"finding": "收费有误", "refund": True, "apology": True})
    assert elements(any_engine, iid) == ["Task_apology", "Task_apology", "Task_refund_approve", "Task_remind",
                                         "Task_review_supplement"]
    assert sorted(t["assignee"] for t in open_tasks(any_engine, iid) if t["element_id"] == "Task_apology") \
        == ["dr_b", "nurse_a"]
    do(any_engine, iid, "Task_refund_approve", {"approved": False}, user="finance_1")
    assert variables(any_engine, iid)["refundError"] == "REFUND_REJECTED"
    do(any_engine, iid, "Task_refund_explain", user="registrar_wu")
    for t in [t for t in open_tasks(any_engine, iid) if t["element_id"] == "Task_apology"]:
        any_engine.complete(t["id"], {}, user=t["assignee"])

    callback = task_at(any_engine, iid, "Task_call_back")  # the called process, by camunda:in mappings
    assert callback["assignee"] == "agent_li"
    do(any_engine, iid, "Task_call_back", {"satisfied": True, "remark": "满意"}, user="agent_li")
    values = variables(any_engine, iid)
    assert values["satisfied"] is True and "remark" not in values and "caller" not in values

    (job,) = any_engine.external_tasks.fetch_and_lock("sms", 1, [{"topicName": "sms", "lockDuration": 30000}])
    assert job["variables"]["text"]["value"] == "陈女士您好，投诉TS-A-0007已办结。"
    any_engine.external_tasks.complete(job["id"], "sms", {})
    any_engine.correlate_message("complainant_confirmed", business_key="TS-URGENT")
    # the main flow is done; the supplement review (non-interrupting) and a reminder still run
    assert any_engine.get_instance(iid)["status"] == "active"
    do(any_engine, iid, "Task_review_supplement")
    do(any_engine, iid, "Task_remind")
    info = any_engine.get_instance(iid)
    assert info["status"] == "completed"
    for element in ("Rule_triage", "Script_register", "Rule_deadline", "End_refund_rejected", "Call_callback",
                    "Catch_confirmed", "End_closed", "End_supplement"):
        assert element in info["path"], element
    assert waits(any_engine, iid) == (0, 0)


def test_withdrawn_complaint_interrupts_everything(engine, clock):
    deploy(engine, *FILES)
    inst = start(engine, "TS-W", category="attitude")
    iid = inst["id"]
    assert variables(engine, iid)["deadlineDays"] == 5
    investigate = task_at(engine, iid, "Task_investigate")
    assert investigate["candidate_groups"] == ["service_head", "complaint_office"]
    assert waits(engine, iid) == (2, 2)  # two message event sub-processes; reminder and deadline timers
    engine.correlate_message("complaint_withdrawn", business_key="TS-W", variables={"reason": "已和解"})
    assert elements(engine, iid) == ["Task_withdraw_record"]
    assert engine.get_task(investigate["id"])["status"] == "cancelled"
    assert waits(engine, iid) == (0, 0)
    do(engine, iid, "Task_withdraw_record")
    info = engine.get_instance(iid)
    assert info["status"] == "completed" and info["path"][-1] == "End_withdrawn"
    assert variables(engine, iid)["reason"] == "已和解"


def test_missed_deadline_escalates_then_closes_without_reply(engine, clock):
    deploy(engine, *FILES)
    inst = start(engine, "TS-LATE", category="billing", amount=5000)  # tier B: 3 working days
    iid = inst["id"]
    clock.advance(hours=8)
    assert engine.fire_due_timers() == 2  # both reminders (R2/PT4H)
    deadline = datetime(2026, 3, 5, 17, 30, tzinfo=SHANGHAI)
    clock.advance(seconds=(deadline - clock.now()).total_seconds())
    assert engine.fire_due_timers() == 1
    assert elements(engine, iid) == ["Task_escalate", "Task_remind", "Task_remind"]
    do(engine, iid, "Task_escalate", {"refund": False, "apology": False})
    do(engine, iid, "Task_call_back", {"satisfied": False}, user="agent_li")
    (job,) = engine.external_tasks.fetch_and_lock("sms", 1, [{"topicName": "sms", "lockDuration": 30000}])
    engine.external_tasks.complete(job["id"], "sms", {})
    clock.advance(days=3)
    assert engine.fire_due_timers() == 1
    for t in open_tasks(engine, iid):
        engine.complete(t["id"], {}, user="office")
    info = engine.get_instance(iid)
    assert info["status"] == "completed" and "End_closed_auto" in info["path"]
    assert variables(engine, iid)["satisfied"] is False
