"""Inclusive and parallel gateways, an embedded sub-process, messages (receive task, interrupting and
non-interrupting boundary message events, intermediate catch behind an event-based gateway, message
start event), all through the engine service."""

from __future__ import annotations

import pytest

from tests.dialect.conftest import deploy, elements, task_at, variables


def start(engine, key="JC-1", **values):
    base = {"needLab": False, "needImaging": False, "bodyPart": "", "doctor": "dr_sun"}
    base.update(values)
    return engine.start("dx_flow", business_key=key, variables=base, user="clinic")


def finish_checks(engine, inst):
    for element in elements(engine, inst["id"]):
        engine.complete(task_at(engine, inst["id"], element)["id"], {}, user="tech")


@pytest.mark.parametrize("values, expected", [
    ({"needLab": True, "needImaging": True, "bodyPart": "胸部"}, ["Task_imaging", "Task_lab"]),
    ({"needLab": True, "needImaging": True, "bodyPart": ""}, ["Task_lab"]),
    ({"needLab": False, "needImaging": False}, ["Task_general"]),  # no condition holds: the default flow
])
def test_inclusive_gateway_takes_every_flow_whose_condition_holds(engine, values, expected):
    deploy(engine, "flow_control.bpmn")
    inst = start(engine, **values)
    assert elements(engine, inst["id"]) == expected


def test_inclusive_join_waits_for_the_taken_flows_then_the_receive_task_waits(any_engine):
    deploy(any_engine, "flow_control.bpmn")
    inst = start(any_engine, needLab=True, needImaging=True, bodyPart="胸部")
    any_engine.complete(task_at(any_engine, inst["id"], "Task_lab")["id"], {}, user="lab")
    assert elements(any_engine, inst["id"]) == ["Task_imaging"]
    any_engine.complete(task_at(any_engine, inst["id"], "Task_imaging")["id"], {}, user="rad")
    assert elements(any_engine, inst["id"]) == []  # the receive task in the sub-process waits
    active = {a["element_id"] for a in any_engine.get_instance(inst["id"])["active"]}
    assert {"Sub_results", "Receive_report"} <= active
    any_engine.correlate_message("report_signed", business_key="JC-1", variables={"reportNo": "R-77"})
    assert elements(any_engine, inst["id"]) == ["Task_explain"]
    assert task_at(any_engine, inst["id"], "Task_explain")["assignee"] == "dr_sun"
    assert variables(any_engine, inst["id"])["reportNo"] == "R-77"


def test_non_interrupting_and_interrupting_boundary_messages(engine):
    deploy(engine, "flow_control.bpmn")
    inst = start(engine)
    finish_checks(engine, inst)
    engine.correlate_message("report_signed", business_key="JC-1")
    engine.correlate_message("family_question", business_key="JC-1", variables={"question": "要复查吗"})
    assert elements(engine, inst["id"]) == ["Task_answer_family", "Task_explain"]
    explain = task_at(engine, inst["id"], "Task_explain")
    engine.correlate_message("patient_left", business_key="JC-1")
    assert engine.get_task(explain["id"])["status"] == "cancelled"
    assert elements(engine, inst["id"]) == ["Task_answer_family"]
    engine.complete(task_at(engine, inst["id"], "Task_answer_family")["id"], {}, user="nurse")
    info = engine.get_instance(inst["id"])
    assert "End_left" in info["path"]
    assert {a["element_id"] for a in info["active"]} >= {"Gateway_reply"}  # the sub-process is done


def test_event_based_gateway_message_wins(engine, clock):
    deploy(engine, "flow_control.bpmn")
    inst = start(engine)
    finish_checks(engine, inst)
    engine.correlate_message("report_signed", business_key="JC-1")
    engine.complete(task_at(engine, inst["id"], "Task_explain")["id"], {}, user="dr_sun")
    engine.correlate_message("patient_reply", business_key="JC-1", variables={"reply": "已好转"})
    assert elements(engine, inst["id"]) == ["Task_record"]
    clock.advance(hours=3)
    assert engine.fire_due_timers() == 0


def test_event_based_gateway_timer_wins(engine, clock):
    deploy(engine, "flow_control.bpmn")
    inst = start(engine)
    finish_checks(engine, inst)
    engine.correlate_message("report_signed", business_key="JC-1")
    engine.complete(task_at(engine, inst["id"], "Task_explain")["id"], {}, user="dr_sun")
    clock.advance(hours=2)
    assert engine.fire_due_timers() == 1
    assert elements(engine, inst["id"]) == ["Task_call"]


def test_message_start_event_starts_an_instance_with_the_message_variables(engine):
    deploy(engine, "message_start.bpmn")
    (started,) = engine.correlate_message("transfer_request", business_key="ZK-3",
                                          variables={"targetDept": "cardiology", "patientName": "王五"})
    inst = started["instance"]
    assert inst["process_key"] == "dx_transfer" and inst["business_key"] == "ZK-3"
    assert task_at(engine, inst["id"], "Task_accept")["candidate_groups"] == ["cardiology_nurse"]
    assert engine.start_form("dx_transfer").fields == []
