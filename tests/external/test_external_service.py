"""External tasks through the engine's service: locking, expiry, failures and incidents, BPMN
errors, and workers competing for the same tasks (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from engine.errors import NotFound, ProcessError
from engine.external import ExternalTaskLockError, ExternalTaskQuery, IncidentQuery
from engine.service import TaskQuery
from tests.external.conftest import deploy_external, start_simple, topic


def only(items):
    assert len(items) == 1, items
    return items[0]


# -- fetch and lock --------------------------------------------------------------------------

def test_fetch_returns_the_requested_variables_and_locks(ext_engine, clock):
    inst = start_simple(ext_engine, "work", business_key="BK-1", patientNo="P001")
    service = ext_engine.external_tasks
    task = only(service.fetch_and_lock("w1", 5, [topic("work", 30_000, variables=["patientName", "greeting"])]))
    assert task["instance_id"] == inst["id"] and task["business_key"] == "BK-1"
    assert task["activity_id"] == "Activity_work" and task["activity_name"] == "外部处理"
    assert task["worker_id"] == "w1" and task["lock_expires_at"] == clock.now() + timedelta(seconds=30)
    # the input mapping is evaluated when the task becomes ready
    assert task["variables"] == {"patientName": {"value": "张三", "type": "String"},
                                 "greeting": {"value": "您好 张三", "type": "String"}}
    # locked: nobody else gets it
    assert service.fetch_and_lock("w2", 5, [topic("work")]) == []
    assert service.fetch_and_lock("w1", 5, [topic("work")]) == []


def test_fetch_filters_priority_and_local_variables(ext_engine):
    start_simple(ext_engine, "work", priority=10, business_key="LOW")
    start_simple(ext_engine, "work", priority=90, business_key="HIGH")
    start_simple(ext_engine, "other", business_key="OTHER", ward="3病区")
    service = ext_engine.external_tasks
    got = service.fetch_and_lock("w1", 1, [topic("work")], use_priority=True)
    assert [t["business_key"] for t in got] == ["HIGH"]
    assert service.fetch_and_lock("w1", 5, [topic("work", businessKey="NOPE")]) == []
    got = service.fetch_and_lock("w1", 5, [topic("other", processVariables={"ward": "3病区"}, localVariables=True,
                                                  includeExtensionProperties=True)])
    task = only(got)
    assert task["variables"] == {"greeting": {"value": "您好 张三", "type": "String"}}
    assert task["extension_properties"] == {"channel": "test"}
    assert service.fetch_and_lock("w1", 5, [topic("work", processDefinitionKey="payment")]) == []
    assert [t["business_key"] for t in service.fetch_and_lock("w1", 5, [topic("work", processDefinitionKeyIn=[
        "simple_external"])])] == ["LOW"]


def test_lock_expiry_frees_the_task_and_the_late_worker_is_refused(ext_engine, clock):
    inst = start_simple(ext_engine)
    service = ext_engine.external_tasks
    task = only(service.fetch_and_lock("slow", 1, [topic("work", 10_000)]))
    clock.advance(seconds=9)
    assert service.fetch_and_lock("fast", 1, [topic("work")]) == []
    clock.advance(seconds=2)  # the slow worker's lock has run out
    with pytest.raises(ExternalTaskLockError, match="expired"):
        service.complete(task["id"], "slow", {"result": "late"})
    again = only(service.fetch_and_lock("fast", 1, [topic("work", 10_000)]))
    assert again["id"] == task["id"] and again["worker_id"] == "fast"
    with pytest.raises(ExternalTaskLockError) as err:
        service.complete(task["id"], "slow", {"result": "late"})
    assert str(err.value) == (f"External Task {task['id']} cannot be completed by worker 'slow'. "
                              "It is locked by worker 'fast'.")
    service.complete(task["id"], "fast", {"result": "done"})
    assert ext_engine.get_instance(inst["id"])["status"] == "completed"
    assert ext_engine.get_instance(inst["id"])["variables"]["result"] == "done"
    with pytest.raises(NotFound, match="does not exist"):
        service.complete(task["id"], "fast", {})


def test_extend_lock_unlock_and_lock(ext_engine, clock):
    start_simple(ext_engine)
    service = ext_engine.external_tasks
    task = only(service.fetch_and_lock("w1", 1, [topic("work", 5_000)]))
    with pytest.raises(ExternalTaskLockError, match="cannot be extended by worker 'w2'"):
        service.extend_lock(task["id"], "w2", 60_000)
    service.extend_lock(task["id"], "w1", 60_000)
    clock.advance(seconds=30)
    assert service.fetch_and_lock("w2", 1, [topic("work")]) == []
    with pytest.raises(ExternalTaskLockError, match="cannot be locked by worker 'w2'"):
        service.lock(task["id"], "w2", 1_000)
    service.unlock(task["id"])
    assert service.get(task["id"])["worker_id"] is None
    service.lock(task["id"], "w2", 1_000)
    assert service.get(task["id"])["worker_id"] == "w2"
    clock.advance(seconds=2)
    with pytest.raises(ExternalTaskLockError, match="expired"):
        service.extend_lock(task["id"], "w2", 1_000)


def test_failure_retries_then_incident_then_retry_after_the_fix(ext_engine, clock):
    inst = start_simple(ext_engine)
    service = ext_engine.external_tasks
    task = only(service.fetch_and_lock("w1", 1, [topic("work")]))
    service.handle_failure(task["id"], "w1", "gateway down", "Traceback …", retries=1, retry_timeout=60_000)
    row = service.get(task["id"])
    assert row["retries"] == 1 and row["error_message"] == "gateway down"
    assert service.error_details(task["id"]) == "Traceback …"
    assert service.fetch_and_lock("w1", 1, [topic("work")]) == []  # the retry timeout holds it back
    clock.advance(seconds=61)
    task = only(service.fetch_and_lock("w2", 1, [topic("work")]))
    assert task["retries"] == 1
    service.handle_failure(task["id"], "w2", "gateway still down", None, retries=0, retry_timeout=0)

    # no retries left: an incident, and the task is not handed out any more
    incident = only(service.query_incidents()[0])
    assert incident["incident_type"] == "failedExternalTask" and incident["configuration"] == task["id"]
    assert incident["message"] == "gateway still down" and incident["instance_id"] == inst["id"]
    assert service.count(ExternalTaskQuery(no_retries_left=True)) == 1
    assert service.count(ExternalTaskQuery(with_retries_left=True)) == 0
    clock.advance(minutes=5)
    assert service.fetch_and_lock("w1", 1, [topic("work")]) == []
    history = [h["action"] for h in ext_engine.get_instance(inst["id"])["history"]]
    assert history.count("external_failure") == 2 and "incident" in history

    # the administrator fixed the cause and retries
    service.retry_incident(incident["id"], user="admin")
    assert service.count_open_incidents() == 0
    resolved = service.get_incident(incident["id"])
    assert resolved["state"] == "resolved" and resolved["resolved_by"] == "admin"
    task = only(service.fetch_and_lock("w1", 1, [topic("work")]))
    service.complete(task["id"], "w1")
    assert ext_engine.get_instance(inst["id"])["status"] == "completed"


def test_local_variables_feed_output_mappings_only(ext_engine):
    inst = ext_engine.start("payment", variables={"fee": 12.5})
    service = ext_engine.external_tasks
    task = only(service.fetch_and_lock("w1", 1, [topic("charge", localVariables=True)]))
    assert task["variables"] == {"amount": {"value": 12.5, "type": "Double"}}
    service.complete(task["id"], "w1", {"paid": True}, {"receipt": "R-0001"})
    variables = ext_engine.get_instance(inst["id"])["variables"]
    assert variables["paid"] is True and variables["receiptNo"] == "R-0001"
    assert "receipt" not in variables and "amount" not in variables


def test_completion_the_process_cannot_continue_from_becomes_an_incident(ext_engine):
    inst = ext_engine.start("payment", variables={"fee": 1})
    service = ext_engine.external_tasks
    task = only(service.fetch_and_lock("w1", 1, [topic("charge")]))
    with pytest.raises(ProcessError, match="receipt"):
        service.complete(task["id"], "w1")  # the output mapping needs ${receipt}
    row = service.get(task["id"])
    assert row["retries"] == 0 and "could not continue" in row["error_message"]
    assert only(service.query_incidents(IncidentQuery(instance_id=inst["id"]))[0])["configuration"] == task["id"]
    # nothing of the failed completion was kept
    assert ext_engine.get_instance(inst["id"])["status"] == "active"


# -- BPMN errors -----------------------------------------------------------------------------

def test_bpmn_error_is_caught_by_the_boundary_event_of_the_task(ext_engine):
    inst = ext_engine.start("payment", variables={"fee": 30})
    service = ext_engine.external_tasks
    task = only(service.fetch_and_lock("w1", 1, [topic("charge")]))
    outcome = service.handle_bpmn_error(task["id"], "w1", "DECLINED", "卡被拒绝", {"cardLast4": "1234"})
    assert outcome == {"caught": True, "incident_id": None}
    follow_up = only(ext_engine.list_tasks(TaskQuery(instance_id=inst["id"])))
    assert follow_up["element_id"] == "Activity_callPatient"
    variables = ext_engine.get_instance(inst["id"])["variables"]
    assert variables["declineCode"] == "DECLINED" and variables["declineMessage"] == "卡被拒绝"
    assert variables["cardLast4"] == "1234"
    assert service.list() == []  # the external task ended with the error
    assert service.count_open_incidents() == 0


def test_bpmn_error_is_caught_by_the_boundary_event_of_the_enclosing_subprocess(ext_engine):
    inst = ext_engine.start("payment", variables={"fee": 30})
    service = ext_engine.external_tasks
    charge = only(service.fetch_and_lock("w1", 1, [topic("charge")]))
    service.complete(charge["id"], "w1", local_variables={"receipt": "R-1"})
    lookup = only(service.fetch_and_lock("w1", 1, [topic("lookup")]))
    service.handle_bpmn_error(lookup["id"], "w1", "REPORT_MISSING")
    info = ext_engine.get_instance(inst["id"])
    assert info["status"] == "completed"
    assert "Event_lookupFailedEnd" in info["path"] and "Event_done" not in info["path"]


def test_uncaught_bpmn_error_raises_an_incident(ext_engine):
    inst = ext_engine.start("payment", variables={"fee": 30})
    service = ext_engine.external_tasks
    task = only(service.fetch_and_lock("w1", 1, [topic("charge")]))
    outcome = service.handle_bpmn_error(task["id"], "w1", "UNKNOWN_CODE", "??")
    assert outcome["caught"] is False and outcome["incident_id"]
    incident = service.get_incident(outcome["incident_id"])
    assert "UNKNOWN_CODE" in incident["message"] and incident["activity_id"] == "Activity_charge"
    assert ext_engine.get_instance(inst["id"])["status"] == "active"
    assert service.get(task["id"])["retries"] == 0


def test_bpmn_error_needs_the_lock(ext_engine):
    ext_engine.start("payment", variables={"fee": 30})
    service = ext_engine.external_tasks
    task = only(service.fetch_and_lock("w1", 1, [topic("charge")]))
    with pytest.raises(ExternalTaskLockError, match="Bpmn error of External Task"):
        service.handle_bpmn_error(task["id"], "intruder", "DECLINED")
    with pytest.raises(ExternalTaskLockError, match="Failure of External Task"):
        service.handle_failure(task["id"], "intruder", "x")


def test_cancelling_the_instance_ends_its_task_and_incident(ext_engine):
    inst = start_simple(ext_engine)
    service = ext_engine.external_tasks
    task = only(service.fetch_and_lock("w1", 1, [topic("work")]))
    service.handle_failure(task["id"], "w1", "broken", retries=0)
    incident = only(service.query_incidents()[0])
    ext_engine.cancel(inst["id"], user="admin", reason="duplicate")
    assert service.list() == []
    assert service.get_incident(incident["id"])["state"] == "deleted"
    with pytest.raises(NotFound):
        service.complete(task["id"], "w1")


# -- competing workers -----------------------------------------------------------------------

def test_two_workers_share_1000_tasks_and_none_is_done_twice(any_engine):
    deploy_external(any_engine)
    for i in range(1000):
        start_simple(any_engine, "work", business_key=f"RACE-{i:04}")
    service = any_engine.external_tasks
    done: dict[str, list[str]] = {"A": [], "B": []}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(name: str) -> None:
        try:
            barrier.wait()
            while True:
                tasks = service.fetch_and_lock(f"worker-{name}", 10, [topic("work", 600_000)])
                if not tasks:
                    return
                for task in tasks:
                    service.complete(task["id"], f"worker-{name}", {"doneBy": name})
                    done[name].append(task["id"])
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in done]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    all_done = done["A"] + done["B"]
    assert len(all_done) == 1000 and len(set(all_done)) == 1000
    assert done["A"] and done["B"], "both workers got a share"
    assert any_engine.count_instances(status="completed") == 1000
    assert service.count() == 0
