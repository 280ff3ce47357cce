"""Multi-instance user tasks as Camunda 7 runs them: camunda:collection + camunda:elementVariable
and loopCardinality, parallel and sequential, one user task per element; the element variable and
loopCounter are the instance's own; completion conditions see nrOf…Instances."""

from __future__ import annotations

import pytest

from engine.errors import ProcessError
from tests.dialect.conftest import deploy, elements, open_tasks, task_data, variables


def start(engine, part, **values):
    return engine.start("dx_multi_instance", variables={"part": part, **values}, user="doctor")


def test_parallel_collection_one_task_per_element_assigned_by_the_element_variable(any_engine):
    deploy(any_engine, "multi_instance.bpmn")
    inst = start(any_engine, "parallel", reviewers=["dr_li", "dr_wang", "dr_zhao"], reviewer="chief")
    tasks = open_tasks(any_engine, inst["id"])
    assert sorted(t["assignee"] for t in tasks) == ["dr_li", "dr_wang", "dr_zhao"]
    assert {t["element_id"] for t in tasks} == {"Task_opinion"}
    assert all(t["candidate_groups"] == ["mdt"] for t in tasks)
    # the element variable and loopCounter are in each task's data ...
    seen = sorted((task_data(any_engine, t["id"])["reviewer"], task_data(any_engine, t["id"])["loopCounter"])
                  for t in tasks)
    assert seen == [("dr_li", 0), ("dr_wang", 1), ("dr_zhao", 2)]
    # ... but not process variables; a process variable of the same name is left alone
    assert variables(any_engine, inst["id"])["reviewer"] == "chief"
    assert "loopCounter" not in variables(any_engine, inst["id"])
    for t in tasks:
        any_engine.complete(t["id"], {f"opinion_{t['assignee']}": "同意手术"}, user=t["assignee"])
    final = variables(any_engine, inst["id"])
    assert any_engine.get_instance(inst["id"])["status"] == "completed"
    assert final["reviewer"] == "chief" and "loopCounter" not in final
    assert {k for k in final if k.startswith("opinion_")} == {"opinion_dr_li", "opinion_dr_wang", "opinion_dr_zhao"}


def test_sequential_collection_named_by_a_plain_variable(engine):
    deploy(engine, "multi_instance.bpmn")
    inst = start(engine, "sequential", signers=["nurse_a", "doctor_b", "director_c"])
    order = []
    for _ in range(3):
        (task,) = open_tasks(engine, inst["id"])
        order.append((task["assignee"], task["priority"]))
        engine.complete(task["id"], {}, user=task["assignee"])
    assert order == [("nurse_a", 50), ("doctor_b", 51), ("director_c", 52)]  # ${50 + loopCounter}
    assert engine.get_instance(inst["id"])["status"] == "completed"
    assert "signer" not in variables(engine, inst["id"])


def test_parallel_loop_cardinality_from_an_expression(engine):
    deploy(engine, "multi_instance.bpmn")
    inst = start(engine, "copies", copies=3)
    tasks = open_tasks(engine, inst["id"])
    assert sorted(t["priority"] for t in tasks) == [0, 1, 2]  # ${loopCounter}
    for t in tasks:
        engine.complete(t["id"], {}, user="archivist")
    assert engine.get_instance(inst["id"])["status"] == "completed"


def test_completion_condition_with_nr_of_completed_instances_cancels_the_rest(engine):
    deploy(engine, "multi_instance.bpmn")
    inst = start(engine, "vote", panel={"voters": ["a", "b", "c", "d"]}, vote=None)
    tasks = {t["assignee"]: t for t in open_tasks(engine, inst["id"])}
    assert sorted(tasks) == ["a", "b", "c", "d"]
    engine.complete(tasks["c"]["id"], {"vote": "yes"}, user="c")
    assert len(open_tasks(engine, inst["id"])) == 3
    engine.complete(tasks["a"]["id"], {"vote": "yes"}, user="a")
    assert open_tasks(engine, inst["id"]) == []
    assert engine.get_task(tasks["b"]["id"])["status"] == "cancelled"
    assert engine.get_instance(inst["id"])["status"] == "completed"


def test_completion_condition_sees_the_completed_instance_data(engine):
    deploy(engine, "multi_instance.bpmn")
    inst = start(engine, "vote", panel={"voters": ["a", "b", "c"]}, vote=None)
    first = open_tasks(engine, inst["id"])[0]
    engine.complete(first["id"], {"vote": "veto"}, user=first["assignee"])
    assert engine.get_instance(inst["id"])["status"] == "completed"


def test_sequential_cardinality_with_a_completion_condition(engine):
    deploy(engine, "multi_instance.bpmn")
    inst = start(engine, "steps", stable=False)
    (step,) = open_tasks(engine, inst["id"])
    engine.complete(step["id"], {"stable": False}, user="nurse")
    (step,) = open_tasks(engine, inst["id"])
    engine.complete(step["id"], {"stable": True}, user="nurse")
    assert engine.get_instance(inst["id"])["status"] == "completed"


def test_an_empty_collection_makes_no_instance(engine):
    deploy(engine, "multi_instance.bpmn")
    inst = start(engine, "parallel", reviewers=[])
    assert elements(engine, inst["id"]) == []
    assert engine.get_instance(inst["id"])["status"] == "completed"


def test_a_collection_that_is_not_a_list_is_an_error_naming_the_element(engine):
    deploy(engine, "multi_instance.bpmn")
    with pytest.raises(ProcessError) as err:
        start(engine, "parallel", reviewers="dr_li")
    assert "Task_opinion" in str(err.value) and "camunda:collection" in str(err.value)
    assert engine.count_instances(process_key="dx_multi_instance") == 0


def test_an_activity_without_outgoing_flow_ends_its_path(engine):
    # an implicit end, as Camunda allows: here the multi-instance task is the last element
    deploy(engine, "multi_instance.bpmn", replace={"multi_instance.bpmn": [
        (b"      <bpmn:outgoing>Flow_0c2</bpmn:outgoing>\n", b""),
        (b'    <bpmn:sequenceFlow id="Flow_0c2" sourceRef="Task_copy" targetRef="End_copies" />\n', b""),
        (b'      <bpmn:incoming>Flow_0c2</bpmn:incoming>\n', b"")]})
    inst = start(engine, "copies", copies=2)
    for t in open_tasks(engine, inst["id"]):
        engine.complete(t["id"], {}, user="archivist")
    info = engine.get_instance(inst["id"])
    assert info["status"] == "completed" and info["path"][-1] == "Task_copy"
