"""Signals thrown and caught within an instance, an error end event in a sub-process caught by a
boundary error event (with camunda:errorCodeVariable / errorMessageVariable), escalations (a
non-interrupting intermediate throw and an interrupting escalation end event), terminate end events."""

from __future__ import annotations

from tests.dialect.conftest import deploy, elements, task_at, variables


def start(engine, scenario, **values):
    return engine.start("dx_exceptions", variables={"scenario": scenario, **values}, user="ward")


def test_signals_from_an_intermediate_throw_and_a_signal_end_event_reach_the_other_branches(any_engine):
    deploy(any_engine, "exceptions.bpmn")
    inst = start(any_engine, "signal")
    other = start(any_engine, "signal")
    assert elements(any_engine, inst["id"]) == ["Task_close_ward"]  # both catch events wait
    any_engine.complete(task_at(any_engine, inst["id"], "Task_close_ward")["id"], {}, user="head")
    # caught by the intermediate catch event and by a non-interrupting signal event sub-process
    assert elements(any_engine, inst["id"]) == ["Task_disinfect", "Task_notify_families", "Task_reroute"]
    assert elements(any_engine, other["id"]) == ["Task_close_ward"]  # a signal stays within its instance
    any_engine.complete(task_at(any_engine, inst["id"], "Task_disinfect")["id"], {}, user="icn")
    # the signal end event "ward_reopened" woke the third branch
    assert elements(any_engine, inst["id"]) == ["Task_notify_families", "Task_reroute", "Task_resume_admission"]
    for element in ("Task_reroute", "Task_resume_admission", "Task_notify_families"):
        any_engine.complete(task_at(any_engine, inst["id"], element)["id"], {}, user="beds")
    info = any_engine.get_instance(inst["id"])
    assert info["status"] == "completed"
    assert {"End_rerouted", "End_ward_reopened", "End_resumed"} <= set(info["path"])


def test_error_end_event_in_a_sub_process_is_caught_by_the_boundary_error_event(any_engine):
    deploy(any_engine, "exceptions.bpmn")
    inst = start(any_engine, "error")
    any_engine.complete(task_at(any_engine, inst["id"], "Task_ask_allergy")["id"], {"allergic": True},
                        user="pharmacist")
    assert elements(any_engine, inst["id"]) == ["Task_alternative"]
    values = variables(any_engine, inst["id"])
    assert values["allergyCode"] == "ALLERGY"
    assert values["allergyMessage"] == "患者对该药过敏"
    any_engine.complete(task_at(any_engine, inst["id"], "Task_alternative")["id"], {}, user="doctor")
    info = any_engine.get_instance(inst["id"])
    assert info["status"] == "completed"
    assert "Task_dispense" not in info["path"] and "End_allergy" in info["path"]


def test_no_error_leaves_the_sub_process_normally(engine):
    deploy(engine, "exceptions.bpmn")
    inst = start(engine, "error")
    engine.complete(task_at(engine, inst["id"], "Task_ask_allergy")["id"], {"allergic": False}, user="ph")
    assert elements(engine, inst["id"]) == ["Task_dispense"]
    assert "allergyCode" not in variables(engine, inst["id"])


def test_non_interrupting_escalation_runs_alongside_the_sub_process(engine):
    deploy(engine, "exceptions.bpmn")
    inst = start(engine, "escalation")
    engine.complete(task_at(engine, inst["id"], "Task_examine")["id"], {"next": "senior"}, user="doctor")
    assert elements(engine, inst["id"]) == ["Task_senior_review", "Task_treat"]
    engine.complete(task_at(engine, inst["id"], "Task_treat")["id"], {}, user="doctor")
    assert elements(engine, inst["id"]) == ["Task_senior_review"]
    engine.complete(task_at(engine, inst["id"], "Task_senior_review")["id"], {}, user="senior")
    info = engine.get_instance(inst["id"])
    assert info["status"] == "completed"
    assert {"End_reviewed", "End_consulted"} <= set(info["path"])


def test_escalation_end_event_interrupts_through_the_boundary(engine):
    deploy(engine, "exceptions.bpmn")
    inst = start(engine, "escalation")
    engine.complete(task_at(engine, inst["id"], "Task_examine")["id"], {"next": "refer"}, user="doctor")
    assert elements(engine, inst["id"]) == ["Task_transfer"]
    engine.complete(task_at(engine, inst["id"], "Task_transfer")["id"], {}, user="desk")
    info = engine.get_instance(inst["id"])
    assert info["status"] == "completed" and "Task_senior_review" not in info["path"]


def test_terminate_end_event_ends_every_branch(any_engine):
    deploy(any_engine, "exceptions.bpmn")
    inst = start(any_engine, "terminate")
    assert elements(any_engine, inst["id"]) == ["Task_discharge", "Task_education"]
    education = task_at(any_engine, inst["id"], "Task_education")
    any_engine.complete(task_at(any_engine, inst["id"], "Task_discharge")["id"], {}, user="desk")
    assert any_engine.get_instance(inst["id"])["status"] == "completed"
    assert any_engine.get_task(education["id"])["status"] == "cancelled"
