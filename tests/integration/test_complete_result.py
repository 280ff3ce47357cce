"""What `complete` returns: the instance and `next_tasks`, the instance's open tasks after the
command, as the task list shows them — the next-step hints of the task page come from it, with no
read of their own."""

from __future__ import annotations

from engine.service import TaskQuery

PARALLEL = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Defs_split" targetNamespace="http://example.org/split">
  <bpmn:process id="split_review" name="Split review" isExecutable="true">
    <bpmn:startEvent id="StartEvent_1" />
    <bpmn:sequenceFlow id="f1" sourceRef="StartEvent_1" targetRef="Fork" />
    <bpmn:parallelGateway id="Fork" />
    <bpmn:sequenceFlow id="f2" sourceRef="Fork" targetRef="Desk" />
    <bpmn:sequenceFlow id="f3" sourceRef="Fork" targetRef="Billing" />
    <bpmn:userTask id="Desk" name="Desk check" camunda:candidateGroups="front_desk" />
    <bpmn:userTask id="Billing" name="Billing check" camunda:candidateGroups="finance"
        camunda:dueDate="2030-01-05T10:00:00+08:00" />
    <bpmn:sequenceFlow id="f4" sourceRef="Desk" targetRef="Join" />
    <bpmn:sequenceFlow id="f5" sourceRef="Billing" targetRef="Join" />
    <bpmn:parallelGateway id="Join" />
    <bpmn:sequenceFlow id="f6" sourceRef="Join" targetRef="Close" />
    <bpmn:userTask id="Close" name="Close case" camunda:assignee="${initiator}" camunda:priority="70" />
    <bpmn:sequenceFlow id="f7" sourceRef="Close" targetRef="EndEvent_1" />
    <bpmn:endEvent id="EndEvent_1" />
  </bpmn:process>
</bpmn:definitions>
"""

KEYS = ("id", "name", "element_id", "assignee", "candidate_users", "candidate_groups", "due_at", "priority")


def listed(engine, instance_id: str) -> list[dict]:
    """The instance's open tasks as the task list reads them, in its order."""
    return [{k: t[k] for k in KEYS} for t in engine.list_tasks(TaskQuery(instance_id=instance_id, limit=50))]


def test_next_tasks_are_the_open_tasks_after_the_command(any_engine):
    engine = any_engine
    engine.deploy([("split.bpmn", PARALLEL)])
    instance = engine.start("split_review", business_key="SPLIT-1", variables={"initiator": "frontdesk"},
                            user="frontdesk")
    first = listed(engine, instance["id"])
    assert [t["name"] for t in first] == ["Billing check", "Desk check"]  # the due one first
    billing = next(t for t in first if t["element_id"] == "Billing")
    desk = next(t for t in first if t["element_id"] == "Desk")
    engine.claim(billing["id"], "finance")  # a change of the task row the workflow does not know

    # a parallel branch ends: the other branch's task stays open, with its assignee of now
    result = engine.complete(desk["id"], {}, user="frontdesk")
    assert result["status"] == "active" and result["business_key"] == "SPLIT-1"
    assert result["next_tasks"] == listed(engine, instance["id"])
    assert result["next_tasks"][0]["assignee"] == "finance"
    assert result["next_tasks"][0]["due_at"] is not None

    # the join: a new task, to the initiator
    result = engine.complete(billing["id"], {}, user="finance")
    assert result["next_tasks"] == listed(engine, instance["id"])
    assert [(t["name"], t["assignee"], t["priority"]) for t in result["next_tasks"]] == [("Close case", "frontdesk", 70)]

    # the end: no open task, the instance completed
    result = engine.complete(result["next_tasks"][0]["id"], {}, user="frontdesk")
    assert result["status"] == "completed" and result["next_tasks"] == []
    assert listed(engine, instance["id"]) == []
