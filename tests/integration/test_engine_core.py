"""The engine core as a user of the service layer sees it, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import Conflict, DeploymentError, InvalidInput, NotFound, ProcessError
from engine.service import TaskQuery
from tests.conftest import fixture_bytes

SHANGHAI_9AM = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def deploy_inquiry(engine, content: bytes | None = None):
    return engine.deploy([("inquiry.bpmn", content or fixture_bytes("bpmn", "inquiry.bpmn"))],
                         name="inquiry", user="owner")


def start_inquiry(engine, business_key="ZX-001", urgent=False, user="frontdesk", **extra):
    variables = {"dueAt": "2026-03-02T11:00:00+08:00", "urgent": urgent, "patientName": "张三", **extra}
    return engine.start("inquiry", business_key=business_key, variables=variables, user=user)


def only_task(engine, **filters):
    tasks = engine.list_tasks(TaskQuery(**filters))
    assert len(tasks) == 1, tasks
    return tasks[0]


# -- deploy ------------------------------------------------------------------------------------

def test_unchanged_file_is_not_a_new_version_and_changed_one_is(any_engine):
    first = deploy_inquiry(any_engine)
    assert first.created and [d["version"] for d in first.process_definitions] == [1]

    again = deploy_inquiry(any_engine)
    assert not again.created
    assert again.deployment_id == first.deployment_id
    assert len(any_engine.list_definitions("inquiry")) == 1

    changed = fixture_bytes("bpmn", "inquiry.bpmn").replace("回答咨询".encode(), "答复咨询".encode())
    second = deploy_inquiry(any_engine, changed)
    assert [d["version"] for d in second.process_definitions] == [2]


def test_running_instances_stay_on_their_version(any_engine):
    deploy_inquiry(any_engine)
    old = start_inquiry(any_engine, "ZX-OLD")
    changed = fixture_bytes("bpmn", "inquiry.bpmn").replace("回答咨询".encode(), "答复咨询".encode())
    deploy_inquiry(any_engine, changed)
    new = start_inquiry(any_engine, "ZX-NEW")
    assert old["definition_id"].startswith("inquiry:1:")
    assert new["definition_id"].startswith("inquiry:2:")
    assert only_task(any_engine, business_key="ZX-OLD")["name"] == "回答咨询"
    assert only_task(any_engine, business_key="ZX-NEW")["name"] == "答复咨询"


@pytest.mark.parametrize("mutate, element, words", [
    (lambda x: x.replace(b"${not solved}", b"${not solved +}"), "Flow_no", "conditionExpression"),
    (lambda x: x.replace(b'camunda:priority="${urgent ? 80 : 50}"', b'camunda:priority="${urgent ?? 80}"'),
     "answer", "camunda:priority"),
    (lambda x: x.replace(b"</bpmn:process>", b"<bpmn:scriptTask id=\"Evil\" scriptFormat=\"groovy\">"
                                             b"<bpmn:script>x = 1</bpmn:script></bpmn:scriptTask></bpmn:process>"),
     "Evil", "groovy"),
    (lambda x: x.replace(b"</bpmn:process>", b"<bpmn:serviceTask id=\"Java\" camunda:class=\"org.Foo\" />"
                                             b"</bpmn:process>"), "Java", "external"),
])
def test_bad_file_is_refused_whole_with_the_element_named(engine, mutate, element, words):
    good_dmn = fixture_bytes("dmn", "triage.dmn")
    bad = mutate(fixture_bytes("bpmn", "inquiry.bpmn"))
    with pytest.raises(DeploymentError) as err:
        engine.deploy([("triage.dmn", good_dmn), ("inquiry.bpmn", bad)], name="bad")
    message = str(err.value)
    assert "inquiry.bpmn" in message and element in message and words in message
    # nothing half-deployed: the good DMN file in the same deployment was not stored either
    assert engine.list_decisions() == [] and engine.list_definitions() == []


def test_malformed_xml_names_the_line(engine):
    broken = fixture_bytes("bpmn", "inquiry.bpmn").replace(b"</bpmn:userTask>", b"</bpmn:userTaskX>", 1)
    with pytest.raises(DeploymentError) as err:
        engine.deploy([("inquiry.bpmn", broken)])
    assert err.value.line is not None and err.value.line > 1
    assert "inquiry.bpmn" in str(err.value)


def test_script_with_import_is_refused_at_deploy(engine):
    content = fixture_bytes("bpmn", "script_flow.bpmn").replace(
        b'total = sum(item["price"] for item in items)', b"import os\nos.system('touch /tmp/pwned')")
    with pytest.raises(DeploymentError) as err:
        engine.deploy([("script_flow.bpmn", content)])
    assert "Compute" in str(err.value) and "import" in str(err.value)


# -- run ---------------------------------------------------------------------------------------

def test_start_creates_a_task_with_assignment_from_the_diagram(any_engine):
    deploy_inquiry(any_engine)
    inst = start_inquiry(any_engine, urgent=True)
    task = only_task(any_engine, candidate_groups=["front_desk"])
    assert task["instance_id"] == inst["id"]
    assert task["name"] == "回答咨询" and task["element_id"] == "answer"
    assert task["candidate_groups"] == ["front_desk"]
    assert task["priority"] == 80
    assert task["due_at"] == datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    assert task["assignee"] is None
    assert any_engine.list_tasks(TaskQuery(candidate_groups=["finance"])) == []


def test_task_list_filters_and_paging(any_engine, clock):
    deploy_inquiry(any_engine)
    for i in range(7):
        start_inquiry(any_engine, f"ZX-{i:03}", dueAt=(SHANGHAI_9AM + timedelta(hours=i - 2)).isoformat())
    assert any_engine.count_tasks(TaskQuery(candidate_groups=["front_desk"])) == 7
    page1 = any_engine.list_tasks(TaskQuery(candidate_groups=["front_desk"], limit=3))
    page3 = any_engine.list_tasks(TaskQuery(candidate_groups=["front_desk"], limit=3, offset=6))
    assert [t["business_key"] for t in page1] == ["ZX-000", "ZX-001", "ZX-002"]  # by due time
    assert [t["business_key"] for t in page3] == ["ZX-006"]
    overdue = any_engine.list_tasks(TaskQuery(overdue=True))
    assert [t["business_key"] for t in overdue] == ["ZX-000", "ZX-001", "ZX-002"]
    assert {t["sla_state"] for t in overdue} == {"overdue"}
    assert only_task(any_engine, business_key="ZX-004")["business_key"] == "ZX-004"
    assert any_engine.count_tasks(TaskQuery(process_key="other")) == 0
    assert any_engine.count_tasks(TaskQuery(search="张三")) == 7

    first = page1[0]
    any_engine.claim(first["id"], "frontdesk")
    assert [t["id"] for t in any_engine.list_tasks(TaskQuery(assignee="frontdesk"))] == [first["id"]]
    mine_or_offered = any_engine.list_tasks(TaskQuery(visible_to_user="nobody", visible_to_groups=["x"]))
    assert mine_or_offered == []


def test_claim_unclaim_assign(any_engine):
    deploy_inquiry(any_engine)
    start_inquiry(any_engine)
    task = only_task(any_engine)
    any_engine.claim(task["id"], "frontdesk")
    with pytest.raises(Conflict) as err:
        any_engine.claim(task["id"], "complaints")
    assert "frontdesk" in str(err.value)
    any_engine.unclaim(task["id"], "frontdesk")
    assert any_engine.get_task(task["id"])["assignee"] is None
    with pytest.raises(InvalidInput):
        any_engine.assign(task["id"], "ghost", "admin")


def test_complete_validates_the_form_and_follows_the_gateway(any_engine):
    deploy_inquiry(any_engine)
    inst = start_inquiry(any_engine, user="frontdesk")
    task = only_task(any_engine)
    with pytest.raises(InvalidInput) as err:
        any_engine.complete(task["id"], {"solved": False, "minutesSpent": 9999}, user="frontdesk")
    assert set(err.value.details["fields"]) == {"answerText", "minutesSpent"}
    # nothing changed: the task is still open and the instance has no answer
    assert any_engine.get_task(task["id"])["status"] == "open"

    any_engine.complete(task["id"], {"answerText": "已转交", "solved": "false", "minutesSpent": "5"},
                        user="frontdesk")
    follow = only_task(any_engine, instance_id=inst["id"])
    assert follow["element_id"] == "followUp"
    assert follow["assignee"] == "frontdesk"  # ${initiator}
    variables = any_engine.get_variables(inst["id"])
    assert variables["solved"]["value"] is False and variables["minutesSpent"]["value"] == 5

    any_engine.complete(follow["id"], {}, user="frontdesk")
    info = any_engine.get_instance(inst["id"])
    assert info["status"] == "completed"
    assert info["path"] == ["StartEvent_1", "answer", "Gateway_solved", "followUp", "End_followed"]
    actions = [h["action"] for h in info["history"]]
    assert actions[0] == "start" and "complete" in actions and actions[-1] in ("end", "variables")
    completes = [h for h in info["history"] if h["action"] == "complete"]
    assert completes[0]["user"] == "frontdesk" and completes[0]["details"]["variables"]["answerText"] == "已转交"


def test_completing_twice_or_by_another_user_is_a_conflict(any_engine):
    deploy_inquiry(any_engine)
    start_inquiry(any_engine)
    task = only_task(any_engine)
    any_engine.claim(task["id"], "frontdesk")
    with pytest.raises(Conflict) as err:
        any_engine.complete(task["id"], {"answerText": "x"}, user="complaints")
    assert "frontdesk" in str(err.value)
    any_engine.complete(task["id"], {"answerText": "好的", "solved": True}, user="frontdesk")
    with pytest.raises(Conflict) as err:
        any_engine.complete(task["id"], {"answerText": "again", "solved": True}, user="frontdesk")
    assert "already completed" in str(err.value)
    with pytest.raises(NotFound):
        any_engine.complete("00000000-0000-0000-0000-000000000000", {}, user="frontdesk")


def test_business_rule_task_routes_by_decision(any_engine):
    any_engine.deploy([("triage.dmn", fixture_bytes("dmn", "triage.dmn")),
                       ("triage_flow.bpmn", fixture_bytes("bpmn", "triage_flow.bpmn"))])
    fast = any_engine.start("triage_flow", business_key="A",
                            variables={"category": "收费争议", "amount": 10, "urgent": True})
    billing = any_engine.start("triage_flow", business_key="B",
                               variables={"category": "收费争议", "amount": 2000, "urgent": False})
    assert any_engine.get_variables(fast["id"])["lane"]["value"] == "fast"
    assert any_engine.get_variables(billing["id"])["lane"]["value"] == "finance"
    for key, group in (("A", "dept_head"), ("B", "complaint_office")):
        step1 = only_task(any_engine, business_key=key)
        any_engine.complete(step1["id"], {}, user="frontdesk")
        assert only_task(any_engine, business_key=key)["candidate_groups"] == [group]


def test_messages_correlate_by_business_key_and_by_variables(any_engine):
    any_engine.deploy([("wait_message.bpmn", fixture_bytes("bpmn", "wait_message.bpmn"))])
    a = any_engine.start("report_lookup", business_key="R-1", variables={"patientNo": "P100"})
    b = any_engine.start("report_lookup", business_key="R-2", variables={"patientNo": "P200"})
    assert any_engine.list_tasks(TaskQuery(process_key="report_lookup")) == []
    with pytest.raises(Conflict):
        any_engine.correlate_message("report_ready")  # two instances wait: ambiguous
    any_engine.correlate_message("report_ready", business_key="R-1", variables={"reportNo": "CT-9"})
    assert only_task(any_engine, process_key="report_lookup")["instance_id"] == a["id"]
    assert any_engine.get_variables(a["id"])["reportNo"]["value"] == "CT-9"
    any_engine.correlate_message("report_ready", correlation_keys={"patientNo": "P200"})
    assert any_engine.count_tasks(TaskQuery(instance_id=b["id"])) == 1
    with pytest.raises(NotFound):
        any_engine.correlate_message("report_ready", business_key="R-1")


def test_cancel_removes_tasks_and_subscriptions(any_engine):
    any_engine.deploy([("wait_message.bpmn", fixture_bytes("bpmn", "wait_message.bpmn"))])
    deploy_inquiry(any_engine)
    inst = start_inquiry(any_engine)
    waiting = any_engine.start("report_lookup", business_key="R-9")
    any_engine.cancel(inst["id"], user="admin", reason="重复登记")
    any_engine.cancel(waiting["id"], user="admin")
    assert any_engine.count_tasks(TaskQuery()) == 0
    assert any_engine.get_instance(inst["id"])["status"] == "cancelled"
    with pytest.raises(NotFound):
        any_engine.correlate_message("report_ready", business_key="R-9")
    with pytest.raises(Conflict):
        any_engine.cancel(inst["id"], user="admin")


# -- sandbox -----------------------------------------------------------------------------------

def test_loaded_instance_still_runs_scripts_in_the_sandbox(any_engine):
    any_engine.deploy([("script_flow.bpmn", fixture_bytes("bpmn", "script_flow.bpmn"))])
    ok = any_engine.start("script_flow", business_key="S1", variables={
        "items": [{"price": 12}, {"price": 30}], "attribute": ""})
    task = only_task(any_engine, business_key="S1")
    any_engine.complete(task["id"], {}, user="frontdesk")
    variables = any_engine.get_variables(ok["id"])
    assert variables["total"]["value"] == 42 and variables["label"]["value"] == "共2项"

    evil = any_engine.start("script_flow", business_key="S2", variables={
        "items": [{"price": 1}], "attribute": "__class__"})
    task = only_task(any_engine, business_key="S2")
    with pytest.raises(ProcessError) as err:
        any_engine.complete(task["id"], {}, user="frontdesk")  # the instance was loaded from the database
    assert "Compute" in str(err.value)
    # the failed command changed nothing
    assert any_engine.get_task(task["id"])["status"] == "open"
    assert "total" not in any_engine.get_variables(evil["id"])


# -- storage -----------------------------------------------------------------------------------

def test_state_refers_to_the_spec_and_a_finished_instance_is_small(engine):
    from sqlalchemy import select

    from engine.models import ProcessInstance

    deploy_inquiry(engine)
    inst = start_inquiry(engine)
    with engine.db.reader() as s:
        state = s.execute(select(ProcessInstance.state).where(ProcessInstance.id == inst["id"])).scalar_one()
    document = json.loads(zlib.decompress(state))
    assert "spec" not in document and "subprocess_specs" not in document
    assert "task_specs" not in json.dumps(document)
    task = only_task(engine)
    engine.complete(task["id"], {"answerText": "好", "solved": True}, user="frontdesk")
    assert engine.get_instance(inst["id"])["state_bytes"] <= 8 * 1024
