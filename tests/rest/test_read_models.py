"""The engine's read models for the REST APIs and process pages (the delimited section at the end
of WorkflowEngine), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.deployment import content_hash
from engine.errors import Conflict, InvalidInput, NotFound
from engine.service import TaskQuery
from tests.conftest import fixture_bytes
from tests.rest.conftest import changed_inquiry, inquiry_bpmn


def start(engine, key="ZX-1", user="frontdesk", urgent=False):
    return engine.start("inquiry", business_key=key, user=user,
                        variables={"dueAt": "2026-03-02T11:00:00+08:00", "urgent": urgent})


def test_deployments_listing_and_detail(any_engine, clock):
    first = any_engine.deploy([("inquiry.bpmn", inquiry_bpmn()), ("triage.dmn", fixture_bytes("dmn", "triage.dmn"))],
                              name="inquiry", source="Camunda Modeler", user="owner")
    clock.advance(minutes=1)
    any_engine.deploy([("wait_message.bpmn", fixture_bytes("bpmn", "wait_message.bpmn"))], name="report")
    assert [d["name"] for d in any_engine.list_deployments()] == ["inquiry", "report"]
    assert [d["name"] for d in any_engine.list_deployments(name_like="rep%")] == ["report"]
    assert [d["id"] for d in any_engine.list_deployments(source="Camunda Modeler")] == [first.deployment_id]
    assert any_engine.list_deployments(deployment_id="nope") == []
    detail = any_engine.get_deployment(first.deployment_id)
    assert detail["deployed_by"] == "owner"
    assert sorted(r["name"] for r in detail["resources"]) == ["inquiry.bpmn", "triage.dmn"]
    assert [p["key"] for p in detail["process_definitions"]] == ["inquiry"]
    assert [d["key"] for d in detail["decision_definitions"]] == ["triage"]
    resource = next(r for r in detail["resources"] if r["name"] == "inquiry.bpmn")
    assert any_engine.deployment_resource(first.deployment_id, resource["id"]) == ("inquiry.bpmn", inquiry_bpmn())
    with pytest.raises(NotFound):
        any_engine.get_deployment("nope")
    with pytest.raises(NotFound):
        any_engine.deployment_resource("nope", resource["id"])


def test_latest_resource_hashes_follow_the_newest_deployment_of_the_name(any_engine, clock):
    any_engine.deploy([("inquiry.bpmn", inquiry_bpmn())], name="inquiry", source="Camunda Modeler")
    clock.advance(minutes=1)
    any_engine.deploy([("inquiry.bpmn", changed_inquiry())], name="inquiry", source="Camunda Modeler")
    hashes = any_engine.latest_resource_hashes("inquiry", ["inquiry.bpmn", "other.bpmn"], source="Camunda Modeler")
    assert hashes == {"inquiry.bpmn": content_hash(changed_inquiry())}
    assert any_engine.latest_resource_hashes("inquiry", ["inquiry.bpmn"]) == {}  # another source
    assert any_engine.latest_resource_hashes("other", ["inquiry.bpmn"], source="Camunda Modeler") == {}


def test_query_tasks_orders_restricts_and_counts(any_engine, clock):
    any_engine.deploy([("inquiry.bpmn", inquiry_bpmn())], name="inquiry")
    for n in range(3):
        start(any_engine, f"ZX-{n}", urgent=n == 1)
        clock.advance(minutes=1)
    rows, total = any_engine.query_tasks(TaskQuery(limit=2), order=[("priority", True), ("created", True)])
    assert total == 3 and [t["business_key"] for t in rows] == ["ZX-1", "ZX-2"]
    rows, total = any_engine.query_tasks(TaskQuery(), visible_to=("finance", ["finance"]))
    assert (rows, total) == ([], 0)
    rows, total = any_engine.query_tasks(TaskQuery(), visible_to=("frontdesk", ["front_desk"]), name_like="回答%")
    assert total == 3
    assert any_engine.query_tasks(TaskQuery(), definition_id="nope") == ([], 0)
    with pytest.raises(InvalidInput):
        any_engine.query_tasks(TaskQuery(), order=[("password", False)])


def test_query_instances_visibility_search_and_paging(any_engine, clock):
    any_engine.deploy([("inquiry.bpmn", inquiry_bpmn())], name="inquiry")
    mine = start(any_engine, "ZX-A", user="frontdesk")
    clock.advance(minutes=1)
    theirs = start(any_engine, "ZX-B", user="admin")
    rows, total = any_engine.query_instances(order=[("started_at", True)], limit=1)
    assert total == 2 and [r["id"] for r in rows] == [theirs["id"]]
    # frontdesk started one and can see the front_desk task of both; finance sees neither
    assert any_engine.query_instances(visible_to=("frontdesk", ["front_desk"]))[1] == 2
    assert any_engine.query_instances(visible_to=("finance", ["finance"]))[1] == 0
    assert any_engine.query_instances(visible_to=("frontdesk", []))[0][0]["id"] == mine["id"]
    assert any_engine.query_instances(business_key_like="ZX-_", search="ZX-B")[1] == 1
    assert any_engine.query_instances(status="completed") == ([], 0)


def test_element_activity_counts_tasks_timers_and_messages(any_engine, clock):
    any_engine.deploy([("inquiry.bpmn", inquiry_bpmn())], name="inquiry")
    result = any_engine.deploy([("wait_message.bpmn", fixture_bytes("bpmn", "wait_message.bpmn"))], name="r")
    for n in range(2):
        start(any_engine, f"ZX-{n}")
    any_engine.start("report_lookup", business_key="RP-1")
    inquiry = any_engine.list_definitions("inquiry")[0]["id"]
    assert any_engine.element_activity(inquiry) == {"answer": {"tasks": 2, "timers": 0, "messages": 0}}
    report = result.process_definitions[0]["id"]
    assert any_engine.element_activity(report) == {"WaitReport": {"tasks": 0, "timers": 0, "messages": 1}}
    feedback = any_engine.deploy([("feedback_deadline.bpmn", fixture_bytes("bpmn", "feedback_deadline.bpmn"))],
                                 name="f")
    assert any_engine.element_activity(feedback.process_definitions[0]["id"]) == {}
    assert any_engine.element_activity("nope") == {}


def test_delete_deployment(any_engine, clock):
    first = any_engine.deploy([("inquiry.bpmn", inquiry_bpmn())], name="inquiry")
    instance = start(any_engine)
    with pytest.raises(Conflict):
        any_engine.delete_deployment(first.deployment_id)
    done = any_engine.delete_deployment(first.deployment_id, cascade=True, user="owner")
    assert done["instances_deleted"] == 1
    assert any_engine.list_definitions() == [] and any_engine.list_deployments() == []
    assert any_engine.count_tasks(TaskQuery(status="")) == 0
    with pytest.raises(NotFound):
        any_engine.get_instance(instance["id"])
    # every row of the instance went with it (its cancellation too); the deletion's own record stays
    history = any_engine.history(limit=50)
    assert [h["action"] for h in history if h["instance_id"] == instance["id"]] == []
    assert "delete_deployment" in [h["action"] for h in history]
    with pytest.raises(NotFound):
        any_engine.delete_deployment(first.deployment_id)


def test_deleting_the_newest_version_brings_back_the_start_timers_of_the_one_before(any_engine, clock):
    from engine.models import Timer

    content = fixture_bytes("bpmn", "timer_kinds.bpmn")
    any_engine.deploy([("timer_kinds.bpmn", content)], name="timers")
    clock.advance(timedelta(minutes=1))
    newer = any_engine.deploy([("timer_kinds.bpmn", content.replace(b"</bpmn:definitions>",
                                                                     b"<!-- v2 --></bpmn:definitions>"))],
                              name="timers")

    def start_timers():
        with any_engine.db.reader() as s:
            return s.query(Timer).filter(Timer.instance_id.is_(None)).count()

    before = start_timers()
    assert before > 0
    any_engine.delete_deployment(newer.deployment_id)
    assert start_timers() == before
