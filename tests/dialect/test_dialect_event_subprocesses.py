"""Event sub-processes: message- and timer-started, interrupting (the rest of the scope is cancelled)
and non-interrupting (runs alongside, again for each message), an error-started one inside an
embedded sub-process; all withdrawn when their scope ends."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine.errors import NotFound
from engine.models import MessageSubscription, Timer
from tests.dialect.conftest import deploy, elements, open_tasks, task_at, variables


def start(engine, key="ZY-1", **values):
    return engine.start("dx_event_subprocesses", business_key=key, variables={"maxDays": 10, **values},
                        user="admission")


def waits(engine, instance_id):
    with engine.db.reader() as s:
        subs = s.execute(select(MessageSubscription.message_name).where(
            MessageSubscription.instance_id == instance_id)).scalars().all()
        timers = s.execute(select(func.count()).select_from(Timer).where(Timer.instance_id == instance_id)).scalar()
    return sorted(subs), timers


def complete(engine, instance_id, element, values=None):
    engine.complete(task_at(engine, instance_id, element)["id"], values or {}, user="staff")


def test_the_scope_ends_normally_and_withdraws_its_event_sub_processes(any_engine):
    deploy(any_engine, "event_subprocesses.bpmn")
    inst = start(any_engine)
    assert elements(any_engine, inst["id"]) == ["Task_operate"]
    assert waits(any_engine, inst["id"]) == (["family_visit", "patient_deceased"], 2)
    complete(any_engine, inst["id"], "Task_operate", {"complication": False})
    complete(any_engine, inst["id"], "Task_treat")
    complete(any_engine, inst["id"], "Task_discharge")
    assert any_engine.get_instance(inst["id"])["status"] == "completed"
    assert waits(any_engine, inst["id"]) == ([], 0)
    with pytest.raises(NotFound):
        any_engine.correlate_message("family_visit", business_key="ZY-1")


def test_interrupting_message_cancels_everything_else_in_the_scope(any_engine):
    deploy(any_engine, "event_subprocesses.bpmn")
    inst = start(any_engine)
    complete(any_engine, inst["id"], "Task_operate", {"complication": False})
    any_engine.correlate_message("family_visit", business_key="ZY-1")
    treat = task_at(any_engine, inst["id"], "Task_treat")
    visit = task_at(any_engine, inst["id"], "Task_arrange_visit")
    any_engine.correlate_message("patient_deceased", business_key="ZY-1", variables={"timeOfDeath": "03:10"})
    assert elements(any_engine, inst["id"]) == ["Task_death_record"]
    assert any_engine.get_task(treat["id"])["status"] == "cancelled"
    assert any_engine.get_task(visit["id"])["status"] == "cancelled"  # a running non-interrupting one too
    assert waits(any_engine, inst["id"]) == ([], 0)  # other subscriptions and timers withdrawn
    complete(any_engine, inst["id"], "Task_death_record")
    info = any_engine.get_instance(inst["id"])
    assert info["status"] == "completed"
    assert "Task_discharge" not in info["path"] and info["path"][-1] == "End_deceased"
    assert variables(any_engine, inst["id"])["timeOfDeath"] == "03:10"


def test_non_interrupting_message_runs_alongside_each_time(engine):
    deploy(engine, "event_subprocesses.bpmn")
    inst = start(engine)
    complete(engine, inst["id"], "Task_operate", {"complication": False})
    engine.correlate_message("family_visit", business_key="ZY-1", variables={"visitor": "女儿"})
    engine.correlate_message("family_visit", business_key="ZY-1", variables={"visitor": "儿子"})
    assert elements(engine, inst["id"]) == ["Task_arrange_visit", "Task_arrange_visit", "Task_treat"]
    assert waits(engine, inst["id"])[0] == ["family_visit", "patient_deceased"]  # armed again
    first, second = [t for t in open_tasks(engine, inst["id"]) if t["element_id"] == "Task_arrange_visit"]
    engine.complete(first["id"], {"visitSlot": "周六下午"}, user="nurse")
    # a variable set by the event sub-process is a process variable: the main flow sees it
    assert variables(engine, inst["id"])["visitSlot"] == "周六下午"
    complete(engine, inst["id"], "Task_treat")
    complete(engine, inst["id"], "Task_discharge")
    # the main flow has ended but an event sub-process still runs: the scope (and with it its
    # event sub-processes, as in Camunda) stays until it is done
    assert engine.get_instance(inst["id"])["status"] == "active"
    assert waits(engine, inst["id"])[0] == ["family_visit", "patient_deceased"]
    engine.complete(second["id"], {}, user="nurse")
    assert engine.get_instance(inst["id"])["status"] == "completed"
    assert waits(engine, inst["id"]) == ([], 0)


def test_non_interrupting_timer(engine, clock):
    deploy(engine, "event_subprocesses.bpmn")
    inst = start(engine)
    clock.advance(hours=48)
    assert engine.fire_due_timers() == 1
    assert elements(engine, inst["id"]) == ["Task_assess", "Task_operate"]


def test_interrupting_timer_from_an_expression(engine, clock):
    deploy(engine, "event_subprocesses.bpmn")
    inst = start(engine, maxDays=3)
    complete(engine, inst["id"], "Task_operate", {"complication": False})
    clock.advance(hours=48)
    engine.fire_due_timers()
    clock.advance(days=1)  # P${maxDays}D = P3D after admission
    assert engine.fire_due_timers() == 1
    assert elements(engine, inst["id"]) == ["Task_overstay_review"]  # Task_treat and Task_assess cancelled
    complete(engine, inst["id"], "Task_overstay_review")
    assert engine.get_instance(inst["id"])["status"] == "completed"


def test_error_event_sub_process_inside_an_embedded_sub_process(any_engine):
    deploy(any_engine, "event_subprocesses.bpmn")
    inst = start(any_engine)
    complete(any_engine, inst["id"], "Task_operate", {"complication": True})
    assert elements(any_engine, inst["id"]) == ["Task_rescue"]
    assert variables(any_engine, inst["id"])["complicationCode"] == "COMPLICATION"
    complete(any_engine, inst["id"], "Task_rescue")
    # the error was handled inside the sub-process, which then completed: the process goes on
    assert elements(any_engine, inst["id"]) == ["Task_treat"]
