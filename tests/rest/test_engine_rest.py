"""The Camunda 7 REST subset under /engine-rest: each endpoint with its filters, the answers'
shapes, who may do what (401/403), and Camunda's 404s."""

from __future__ import annotations

import json

import pytest

from engine.service import TaskQuery
from tests.conftest import fixture_bytes
from tests.rest.conftest import ADMIN, DIRECTOR, FINANCE, FRONTDESK, OWNER, changed_inquiry, inquiry_bpmn

BASE = "/engine-rest"
CAMUNDA_TASK_FIELDS = {"id", "name", "assignee", "created", "due", "followUp", "lastUpdated", "delegationState",
                       "description", "executionId", "owner", "parentTaskId", "priority", "processDefinitionId",
                       "processInstanceId", "taskDefinitionKey", "caseExecutionId", "caseInstanceId",
                       "caseDefinitionId", "suspended", "formKey", "camundaFormRef", "tenantId", "taskState"}


@pytest.fixture
def seeded(engine, clock):
    """inquiry v1 and v2, the triage decision and report_lookup; three inquiries and a report."""
    first = engine.deploy([("inquiry.bpmn", inquiry_bpmn()), ("triage.dmn", fixture_bytes("dmn", "triage.dmn"))],
                          name="inquiry", source="Camunda Modeler", user="owner")
    clock.advance(seconds=1)
    second = engine.deploy([("inquiry.bpmn", changed_inquiry())], name="inquiry", source="Camunda Modeler",
                           user="owner")
    clock.advance(seconds=1)
    report = engine.deploy([("wait_message.bpmn", fixture_bytes("bpmn", "wait_message.bpmn"))], name="report",
                           source="script", user="owner")
    old = engine.start(definition_id=first.process_definitions[0]["id"], business_key="ZX-OLD",
                       variables={"dueAt": "2026-03-03T11:00:00+08:00", "urgent": False}, user="frontdesk")
    for n, urgent in ((1, True), (2, False)):
        engine.start("inquiry", business_key=f"ZX-{n}", user="frontdesk",
                     variables={"dueAt": f"2026-03-02T1{n}:00:00+08:00", "urgent": urgent})
    waiting = engine.start("report_lookup", business_key="RP-1", user="frontdesk", variables={"reportNo": "R-77"})
    return {"v1": first, "v2": second, "report": report, "old": old, "waiting": waiting}


def tasks(client, query="", headers=FRONTDESK):
    response = client.get(f"{BASE}/task{query}", headers=headers)
    assert response.status_code == 200, response.json
    return response.json


# -- errors, auth --------------------------------------------------------------------------------

def test_unknown_paths_and_bad_bodies_answer_camunda_errors(client, seeded):
    missing = client.get(f"{BASE}/job", headers=OWNER)
    assert missing.status_code == 404 and missing.json["type"] == "RestException"
    bad_json = client.post(f"{BASE}/process-definition/key/inquiry/start", data="{not json",
                           headers={**OWNER, "Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json["type"] == "InvalidRequestException"
    unsupported = client.get(f"{BASE}/process-definition?versionTag=1", headers=OWNER)
    assert unsupported.status_code == 400 and "versionTag" in unsupported.json["message"]
    nul = client.get(f"{BASE}/task?assignee=a%00b", headers=OWNER)
    assert nul.status_code == 400


@pytest.mark.parametrize("method, path", [("get", "/deployment"), ("get", "/task"), ("post", "/message"),
                                          ("get", "/process-instance"), ("delete", "/deployment/x")])
def test_every_endpoint_needs_credentials(client, method, path):
    response = getattr(client, method)(BASE + path)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == 'Basic realm="default"'


# -- deployment ----------------------------------------------------------------------------------

def test_deployment_list_filters_sorting_and_paging(client, seeded):
    rows = client.get(f"{BASE}/deployment?sortBy=deploymentTime&sortOrder=asc", headers=OWNER).json
    assert [d["name"] for d in rows] == ["inquiry", "inquiry", "report"]
    assert set(rows[0]) == {"links", "id", "name", "source", "deploymentTime", "tenantId"}
    assert len(client.get(f"{BASE}/deployment?name=inquiry", headers=OWNER).json) == 2
    assert [d["name"] for d in client.get(f"{BASE}/deployment?nameLike=rep%25", headers=OWNER).json] == ["report"]
    assert [d["name"] for d in client.get(f"{BASE}/deployment?source=script", headers=OWNER).json] == ["report"]
    page = client.get(f"{BASE}/deployment?sortBy=name&sortOrder=desc&firstResult=1&maxResults=1", headers=OWNER)
    assert [d["name"] for d in page.json] == ["inquiry"]
    assert client.get(f"{BASE}/deployment/count?name=inquiry", headers=OWNER).json == {"count": 2}
    only_sort_by = client.get(f"{BASE}/deployment?sortBy=name", headers=OWNER)
    assert only_sort_by.status_code == 400 and "sortOrder" in only_sort_by.json["message"]
    assert client.get(f"{BASE}/deployment?sortBy=size&sortOrder=asc", headers=OWNER).status_code == 400
    assert client.get(f"{BASE}/deployment?maxResults=-1", headers=OWNER).status_code == 400
    assert client.get(f"{BASE}/deployment?maxResults=5000", headers=OWNER).status_code == 400


def test_deployment_get_resources_and_404(client, seeded):
    deployment_id = seeded["v1"].deployment_id
    got = client.get(f"{BASE}/deployment/{deployment_id}", headers=FRONTDESK).json
    assert got["id"] == deployment_id and got["name"] == "inquiry" and got["source"] == "Camunda Modeler"
    resources = client.get(f"{BASE}/deployment/{deployment_id}/resources", headers=OWNER).json
    assert sorted(r["name"] for r in resources) == ["inquiry.bpmn", "triage.dmn"]
    bpmn = next(r for r in resources if r["name"] == "inquiry.bpmn")
    data = client.get(f"{BASE}/deployment/{deployment_id}/resources/{bpmn['id']}/data", headers=OWNER)
    assert data.status_code == 200 and data.data == inquiry_bpmn()
    missing = client.get(f"{BASE}/deployment/nope", headers=OWNER)
    assert missing.status_code == 404 and missing.json["type"] == "InvalidRequestException"
    assert client.get(f"{BASE}/deployment/{deployment_id}/resources/nope/data", headers=OWNER).status_code == 404


def test_delete_deployment_refuses_with_instances_and_cascades(client, engine, seeded):
    deployment_id = seeded["v1"].deployment_id
    refused = client.delete(f"{BASE}/deployment/{deployment_id}", headers=OWNER)
    assert refused.status_code == 409 and refused.json["type"] == "ProcessEngineException"
    assert "cascade" in refused.json["message"]
    assert client.delete(f"{BASE}/deployment/{deployment_id}?cascade=true", headers=FRONTDESK).status_code == 403
    assert client.delete(f"{BASE}/deployment/{deployment_id}?cascade=true", headers=OWNER).status_code == 204
    assert client.get(f"{BASE}/deployment/{deployment_id}", headers=OWNER).status_code == 404
    assert client.get(f"{BASE}/process-instance/{seeded['old']['id']}", headers=OWNER).status_code == 404
    assert client.get(f"{BASE}/decision-definition/count", headers=OWNER).json == {"count": 0}
    assert [d["version"] for d in client.get(f"{BASE}/process-definition?key=inquiry", headers=OWNER).json] == [2]
    assert engine.count_tasks(TaskQuery(business_key="ZX-OLD")) == 0
    assert client.delete(f"{BASE}/deployment/{deployment_id}", headers=OWNER).status_code == 404


def test_delete_deployment_without_instances(client, seeded):
    report = seeded["report"].deployment_id
    client.delete(f"{BASE}/process-instance/{seeded['waiting']['id']}", headers=OWNER)
    # the cancelled instance still holds the definition: history is not thrown away without cascade
    assert client.delete(f"{BASE}/deployment/{report}", headers=OWNER).status_code == 409
    assert client.delete(f"{BASE}/deployment/{report}?cascade=true", headers=ADMIN).status_code == 204


# -- process definition --------------------------------------------------------------------------

def test_process_definition_list_filters(client, seeded):
    def keys_versions(query):
        response = client.get(f"{BASE}/process-definition{query}", headers=FRONTDESK)
        assert response.status_code == 200, response.json
        return [(d["key"], d["version"]) for d in response.json]

    assert keys_versions("?sortBy=version&sortOrder=desc&key=inquiry") == [("inquiry", 2), ("inquiry", 1)]
    assert keys_versions("?latestVersion=true&sortBy=key&sortOrder=asc") == [("inquiry", 2), ("report_lookup", 1)]
    assert keys_versions("?keyLike=rep%25") == [("report_lookup", 1)]
    assert keys_versions("?name=报告查询") == [("report_lookup", 1)]
    assert keys_versions("?nameLike=%25咨询%25&version=1") == [("inquiry", 1)]
    assert keys_versions(f"?deploymentId={seeded['v2'].deployment_id}") == [("inquiry", 2)]
    assert keys_versions("?keysIn=report_lookup,nothing") == [("report_lookup", 1)]
    assert keys_versions("?suspended=true") == []
    assert keys_versions("?key=inquiry&sortBy=version&sortOrder=desc&firstResult=1&maxResults=1") == \
        [("inquiry", 1)]
    assert client.get(f"{BASE}/process-definition/count?key=inquiry", headers=OWNER).json == {"count": 2}
    assert client.get(f"{BASE}/process-definition?version=x", headers=OWNER).status_code == 400


def test_process_definition_get_xml_and_404s(client, seeded):
    definition_id = seeded["v1"].process_definitions[0]["id"]
    got = client.get(f"{BASE}/process-definition/{definition_id}", headers=OWNER).json
    assert got["id"] == definition_id and got["version"] == 1 and got["startableInTasklist"] is True
    latest = client.get(f"{BASE}/process-definition/key/inquiry", headers=OWNER).json
    assert latest["version"] == 2
    xml = client.get(f"{BASE}/process-definition/{definition_id}/xml", headers=OWNER).json
    assert xml["id"] == definition_id and xml["bpmn20Xml"] == inquiry_bpmn().decode()
    by_key = client.get(f"{BASE}/process-definition/key/inquiry/xml", headers=OWNER).json
    assert "答复咨询" in by_key["bpmn20Xml"]
    for path in ("/process-definition/nope", "/process-definition/key/nope", "/process-definition/nope/xml",
                 "/process-definition/key/nope/xml"):
        response = client.get(BASE + path, headers=OWNER)
        assert response.status_code == 404 and response.json["type"] == "InvalidRequestException", path
    assert "nope" in client.get(f"{BASE}/process-definition/nope", headers=OWNER).json["message"]


def test_start_by_key_with_variables_in_return(client, seeded):
    response = client.post(f"{BASE}/process-definition/key/report_lookup/start", headers=FRONTDESK, json={
        "businessKey": "RP-2", "variables": {"reportNo": {"value": "R-78", "type": "String"}},
        "withVariablesInReturn": True})
    assert response.status_code == 200, response.json
    assert response.json["variables"]["reportNo"] == {"type": "String", "value": "R-78", "valueInfo": {}}
    assert response.json["definitionKey"] == "report_lookup"
    missing = client.post(f"{BASE}/process-definition/key/nope/start", headers=FRONTDESK, json={})
    assert missing.status_code == 404
    bad = client.post(f"{BASE}/process-definition/key/report_lookup/start", headers=FRONTDESK,
                      json={"variables": {"n": {"value": "many", "type": "Integer"}}})
    assert bad.status_code == 400 and "'n'" in bad.json["message"]
    bad_key = client.post(f"{BASE}/process-definition/key/report_lookup/start", headers=FRONTDESK,
                          json={"businessKey": 5})
    assert bad_key.status_code == 400


def test_start_form_variables(client, engine):
    engine.deploy([("service_request.bpmn", fixture_bytes("web", "service_request.bpmn"))], name="sr")
    form = client.get(f"{BASE}/process-definition/key/service_request/form-variables", headers=OWNER)
    assert form.status_code == 200
    assert form.json and all(set(v) == {"type", "value", "valueInfo"} for v in form.json.values())


# -- decision definition -------------------------------------------------------------------------

def test_decision_definitions_and_evaluate(client, seeded):
    rows = client.get(f"{BASE}/decision-definition", headers=FRONTDESK).json
    assert [(d["key"], d["version"]) for d in rows] == [("triage", 1)]
    decision_id = rows[0]["id"]
    assert client.get(f"{BASE}/decision-definition/count?key=triage", headers=OWNER).json == {"count": 1}
    assert client.get(f"{BASE}/decision-definition/{decision_id}", headers=OWNER).json["key"] == "triage"
    assert client.get(f"{BASE}/decision-definition/key/triage", headers=OWNER).json["id"] == decision_id
    xml = client.get(f"{BASE}/decision-definition/key/triage/xml", headers=OWNER).json
    assert xml["id"] == decision_id and xml["dmnXml"].startswith("<?xml")
    variables = {"category": {"value": "收费争议", "type": "String"}, "amount": {"value": 2000, "type": "Double"},
                 "urgent": {"value": False, "type": "Boolean"}}
    for path in (f"/decision-definition/{decision_id}/evaluate", "/decision-definition/key/triage/evaluate"):
        result = client.post(BASE + path, headers=FRONTDESK, json={"variables": variables})
        assert result.status_code == 200, result.json
        assert result.json == [{"lane": {"type": "String", "value": "finance", "valueInfo": {}}}]
    assert client.get(f"{BASE}/decision-definition/nope", headers=OWNER).status_code == 404
    assert client.post(f"{BASE}/decision-definition/key/nope/evaluate", headers=OWNER, json={}).status_code == 404
    bad = client.post(f"{BASE}/decision-definition/key/triage/evaluate", headers=OWNER,
                      json={"variables": {"amount": {"value": "lots", "type": "Double"}}})
    assert bad.status_code == 400


# -- task ----------------------------------------------------------------------------------------

def test_task_list_shape_and_filters(client, seeded):
    rows = tasks(client, "?processDefinitionKey=inquiry&sortBy=dueDate&sortOrder=asc")
    assert [t["priority"] for t in rows] == [80, 50, 50]
    assert set(rows[0]) == CAMUNDA_TASK_FIELDS
    assert rows[0]["taskDefinitionKey"] == "answer" and rows[0]["due"] == "2026-03-02T11:00:00.000+0800"
    assert [t["processInstanceId"] for t in tasks(client, f"?processInstanceId={seeded['old']['id']}")] == \
        [seeded["old"]["id"]]
    assert len(tasks(client, "?processInstanceBusinessKey=ZX-1")) == 1
    assert len(tasks(client, "?taskDefinitionKey=answer")) == 3
    assert len(tasks(client, "?candidateGroup=front_desk")) == 3
    assert len(tasks(client, "?candidateGroups=finance,front_desk")) == 3
    assert tasks(client, "?candidateGroup=finance") == []
    assert len(tasks(client, "?candidateUser=frontdesk")) == 3
    assert len(tasks(client, "?name=回答咨询")) == 1  # v1's task name
    assert len(tasks(client, "?nameLike=%25咨询")) == 3
    assert len(tasks(client, f"?processDefinitionId={seeded['v1'].process_definitions[0]['id']}")) == 1
    page = tasks(client, "?sortBy=priority&sortOrder=desc&firstResult=0&maxResults=2")
    assert [t["priority"] for t in page] == [80, 50]
    assert client.get(f"{BASE}/task/count?candidateGroup=front_desk", headers=FRONTDESK).json == {"count": 3}
    assert client.get(f"{BASE}/task?sortBy=description&sortOrder=asc", headers=FRONTDESK).status_code == 400


def test_task_query_by_post_body_with_sorting(client, seeded):
    body = {"candidateGroups": ["front_desk"], "processDefinitionKey": "inquiry",
            "sorting": [{"sortBy": "priority", "sortOrder": "asc"}, {"sortBy": "dueDate", "sortOrder": "desc"}]}
    response = client.post(f"{BASE}/task?firstResult=0&maxResults=10", headers=FRONTDESK, json=body)
    assert response.status_code == 200, response.json
    assert [(t["priority"], t["due"][:16]) for t in response.json] == [
        (50, "2026-03-03T11:00"), (50, "2026-03-02T12:00"), (80, "2026-03-02T11:00")]
    count = client.post(f"{BASE}/task/count", headers=FRONTDESK, json={"processInstanceBusinessKey": "ZX-2"})
    assert count.json == {"count": 1}
    assert client.post(f"{BASE}/task", headers=FRONTDESK, json={"sorting": "priority"}).status_code == 400


def test_staff_see_only_tasks_of_their_groups(client, seeded):
    assert tasks(client, headers=FINANCE) == []
    assert client.get(f"{BASE}/task/count", headers=FINANCE).json == {"count": 0}
    task_id = tasks(client)[0]["id"]
    assert client.get(f"{BASE}/task/{task_id}", headers=FINANCE).status_code == 404
    assert client.post(f"{BASE}/task/{task_id}/claim", headers=FINANCE, json={"userId": "finance"}).status_code == 404
    assert len(tasks(client, headers=DIRECTOR)) == 3  # the director sees every open task
    assert tasks(client, headers=OWNER) == []  # a process owner is no member of front_desk


def test_claim_unclaim_assignee(client, seeded):
    task_id = tasks(client, "?processInstanceBusinessKey=ZX-1")[0]["id"]
    assert client.post(f"{BASE}/task/{task_id}/claim", headers=FRONTDESK, json={"userId": "frontdesk"}).status_code \
        == 204
    assert client.get(f"{BASE}/task/{task_id}", headers=FRONTDESK).json["assignee"] == "frontdesk"
    assert len(tasks(client, "?assignee=frontdesk")) == 1
    assert len(tasks(client, "?unassigned=true")) == 2
    assert len(tasks(client, "?candidateGroup=front_desk")) == 2  # Camunda: candidates are unassigned tasks
    assert len(tasks(client, "?candidateGroup=front_desk&includeAssignedTasks=true")) == 3
    taken = client.post(f"{BASE}/task/{task_id}/claim", headers=ADMIN, json={"userId": "admin"})
    assert taken.status_code == 409 and "frontdesk" in taken.json["message"]
    other = client.post(f"{BASE}/task/{task_id}/claim", headers=FRONTDESK, json={"userId": "caller"})
    assert other.status_code == 403 and other.json["type"] == "AuthorizationException"
    assert client.post(f"{BASE}/task/{task_id}/claim", headers=FRONTDESK, json={}).status_code == 400
    assert client.post(f"{BASE}/task/{task_id}/unclaim", headers=FRONTDESK).status_code == 204
    assert client.get(f"{BASE}/task/{task_id}", headers=FRONTDESK).json["assignee"] is None
    # a task goes only to someone it is offered to: caller is not of the front desk
    outsider = client.post(f"{BASE}/task/{task_id}/assignee", headers=FRONTDESK, json={"userId": "caller"})
    assert outsider.status_code == 400 and "caller" in outsider.json["message"]
    assert client.post(f"{BASE}/task/{task_id}/assignee", headers=FRONTDESK, json={"userId": "director"}).status_code \
        == 204
    assert client.get(f"{BASE}/task/{task_id}", headers=ADMIN).json["assignee"] == "director"
    # a colleague of the group cannot take a claimed task away from its assignee, nor move it
    taken_away = client.post(f"{BASE}/task/{task_id}/unclaim", headers=FRONTDESK)
    assert taken_away.status_code == 403 and taken_away.json["type"] == "AuthorizationException"
    moved = client.post(f"{BASE}/task/{task_id}/assignee", headers=FRONTDESK, json={"userId": "frontdesk"})
    assert moved.status_code == 403 and moved.json["type"] == "AuthorizationException"
    assert client.get(f"{BASE}/task/{task_id}", headers=ADMIN).json["assignee"] == "director"
    ghost = client.post(f"{BASE}/task/{task_id}/assignee", headers=ADMIN, json={"userId": "ghost"})
    assert ghost.status_code == 400
    assert client.post(f"{BASE}/task/{task_id}/assignee", headers=ADMIN, json={"userId": None}).status_code == 204
    assert client.get(f"{BASE}/task/nope", headers=ADMIN).status_code == 404


def test_complete_with_form_validation_and_variables_in_return(client, seeded):
    task_id = tasks(client, "?processInstanceBusinessKey=ZX-1")[0]["id"]
    form = client.get(f"{BASE}/task/{task_id}/form-variables", headers=FRONTDESK).json
    assert form == {"answerText": {"type": "String", "value": None, "valueInfo": {}},
                    "solved": {"type": "Boolean", "value": True, "valueInfo": {}},
                    "minutesSpent": {"type": "Long", "value": None, "valueInfo": {}}}
    some = client.get(f"{BASE}/task/{task_id}/form-variables?variableNames=solved", headers=FRONTDESK).json
    assert list(some) == ["solved"]
    assert client.get(f"{BASE}/task/{task_id}/form", headers=FRONTDESK).json["key"] is None
    invalid = client.post(f"{BASE}/task/{task_id}/complete", headers=FRONTDESK,
                          json={"variables": {"minutesSpent": {"value": 9999, "type": "Long"}}})
    assert invalid.status_code == 400 and invalid.json["type"] == "InvalidRequestException"
    assert "answerText" in invalid.json["message"] and "minutesSpent" in invalid.json["message"]
    done = client.post(f"{BASE}/task/{task_id}/complete", headers=FRONTDESK, json={
        "variables": {"answerText": {"value": "已告知", "type": "String"}, "solved": {"value": True, "type": "Boolean"},
                      "minutesSpent": {"value": 5, "type": "Long"}},
        "withVariablesInReturn": True})
    assert done.status_code == 200, done.json
    assert done.json["answerText"] == {"type": "String", "value": "已告知", "valueInfo": {}}
    assert done.json["minutesSpent"]["value"] == 5
    assert client.get(f"{BASE}/task/{task_id}", headers=FRONTDESK).status_code == 404  # no longer a runtime task
    again = client.post(f"{BASE}/task/{task_id}/complete", headers=FRONTDESK, json={})
    assert again.status_code == 404


def test_complete_without_return_and_task_variables(client, seeded):
    task_id = tasks(client, "?processInstanceBusinessKey=ZX-2")[0]["id"]
    variables = client.get(f"{BASE}/task/{task_id}/variables", headers=FRONTDESK).json
    assert variables["urgent"] == {"type": "Boolean", "value": False, "valueInfo": {}}
    response = client.post(f"{BASE}/task/{task_id}/submit-form", headers=FRONTDESK,
                           json={"variables": {"answerText": {"value": "好"}, "solved": {"value": True}}})
    assert response.status_code == 204 and response.data == b""


# -- message -------------------------------------------------------------------------------------

def test_message_correlation(client, seeded):
    assert client.post(f"{BASE}/message", headers=FRONTDESK,
                       json={"messageName": "report_ready", "businessKey": "RP-1"}).status_code == 204
    assert len(tasks(client, "?processInstanceBusinessKey=RP-1")) == 1
    nothing = client.post(f"{BASE}/message", headers=FRONTDESK,
                          json={"messageName": "report_ready", "businessKey": "RP-1"})
    assert nothing.status_code == 400 and "report_ready" in nothing.json["message"]
    assert client.post(f"{BASE}/message", headers=FRONTDESK, json={"businessKey": "x"}).status_code == 400


def test_message_correlation_with_keys_and_result(client, seeded):
    response = client.post(f"{BASE}/message", headers=FRONTDESK, json={
        "messageName": "report_ready", "correlationKeys": {"reportNo": {"value": "R-77", "type": "String"}},
        "processVariables": {"pages": {"value": 3, "type": "Integer"}}, "resultEnabled": True,
        "variablesInResultEnabled": True})
    assert response.status_code == 200, response.json
    (result,) = response.json
    assert result["resultType"] == "Execution" and result["processInstance"] is None
    assert result["execution"]["processInstanceId"] == seeded["waiting"]["id"]
    assert result["variables"]["pages"] == {"type": "Integer", "value": 3, "valueInfo": {}}
    wrong = client.post(f"{BASE}/message", headers=FRONTDESK, json={"messageName": "report_ready", "foo": 1})
    assert wrong.status_code == 400


# -- process instance ----------------------------------------------------------------------------

def test_process_instance_list_count_get(client, seeded):
    def business_keys(query, headers=OWNER):
        response = client.get(f"{BASE}/process-instance{query}", headers=headers)
        assert response.status_code == 200, response.json
        return sorted(i["businessKey"] for i in response.json)

    assert business_keys("", ADMIN) == ["RP-1", "ZX-1", "ZX-2", "ZX-OLD"]
    assert business_keys("", FRONTDESK) == ["RP-1", "ZX-1", "ZX-2", "ZX-OLD"]  # started them
    assert business_keys("", FINANCE) == []
    assert business_keys("?processDefinitionKey=inquiry", ADMIN) == ["ZX-1", "ZX-2", "ZX-OLD"]
    assert business_keys("?businessKey=ZX-1", ADMIN) == ["ZX-1"]
    assert business_keys("?businessKeyLike=ZX-_", ADMIN) == ["ZX-1", "ZX-2"]
    assert business_keys(f"?processDefinitionId={seeded['v1'].process_definitions[0]['id']}", ADMIN) == ["ZX-OLD"]
    assert business_keys(f"?processInstanceIds={seeded['old']['id']},{seeded['waiting']['id']}", ADMIN) == \
        ["RP-1", "ZX-OLD"]
    assert business_keys(f"?deploymentId={seeded['report'].deployment_id}", ADMIN) == ["RP-1"]
    ordered = client.get(f"{BASE}/process-instance?sortBy=businessKey&sortOrder=desc&maxResults=2", headers=ADMIN)
    assert [i["businessKey"] for i in ordered.json] == ["ZX-OLD", "ZX-2"]
    assert client.get(f"{BASE}/process-instance/count?processDefinitionKey=inquiry", headers=ADMIN).json == \
        {"count": 3}
    posted = client.post(f"{BASE}/process-instance", headers=ADMIN, json={"businessKey": "RP-1"})
    assert [i["businessKey"] for i in posted.json] == ["RP-1"]
    assert client.post(f"{BASE}/process-instance/count", headers=ADMIN, json={}).json == {"count": 4}
    got = client.get(f"{BASE}/process-instance/{seeded['waiting']['id']}", headers=FRONTDESK).json
    assert got["businessKey"] == "RP-1" and got["ended"] is False and got["definitionKey"] == "report_lookup"
    assert client.get(f"{BASE}/process-instance/{seeded['waiting']['id']}", headers=FINANCE).status_code == 404
    assert client.get(f"{BASE}/process-instance/nope", headers=ADMIN).status_code == 404


def test_process_instance_variables_and_delete(client, seeded):
    instance_id = seeded["waiting"]["id"]
    variables = client.get(f"{BASE}/process-instance/{instance_id}/variables", headers=FRONTDESK).json
    assert variables["reportNo"] == {"type": "String", "value": "R-77", "valueInfo": {}}
    one = client.get(f"{BASE}/process-instance/{instance_id}/variables/reportNo", headers=FRONTDESK)
    assert one.json == {"type": "String", "value": "R-77", "valueInfo": {}}
    assert client.get(f"{BASE}/process-instance/{instance_id}/variables/nope", headers=FRONTDESK).status_code == 404
    assert client.delete(f"{BASE}/process-instance/{instance_id}", headers=FRONTDESK).status_code == 403
    assert client.delete(f"{BASE}/process-instance/{instance_id}", headers=OWNER).status_code == 403  # deploys only
    assert client.delete(f"{BASE}/process-instance/nope", headers=ADMIN).status_code == 404
    assert client.delete(f"{BASE}/process-instance/{instance_id}", headers=ADMIN).status_code == 204
    assert client.get(f"{BASE}/process-instance/{instance_id}", headers=ADMIN).status_code == 404
    assert client.delete(f"{BASE}/process-instance/{instance_id}", headers=ADMIN).status_code == 404


def test_json_and_date_variables_round_trip(client, seeded):
    started = client.post(f"{BASE}/process-definition/key/report_lookup/start", headers=FRONTDESK, json={
        "variables": {"meta": {"value": json.dumps({"楼层": 3}, ensure_ascii=False), "type": "Json"},
                      "at": {"value": "2026-03-05T08:00:00.000+0800", "type": "Date"}}}).json
    stored = client.get(f"{BASE}/process-instance/{started['id']}/variables", headers=FRONTDESK).json
    assert json.loads(stored["meta"]["value"]) == {"楼层": 3}
    assert stored["at"] == {"type": "Date", "value": "2026-03-05T08:00:00.000+0800", "valueInfo": {}}


def test_on_both_databases(any_client, any_engine):
    any_engine.deploy([("wait_message.bpmn", fixture_bytes("bpmn", "wait_message.bpmn"))], name="report")
    started = any_client.post(f"{BASE}/process-definition/key/report_lookup/start", headers=FRONTDESK,
                              json={"businessKey": "RP-9", "variables": {"n": {"value": 2**40, "type": "Long"}}})
    assert started.status_code == 200, started.json
    assert any_client.get(f"{BASE}/task/count", headers=FRONTDESK).json == {"count": 0}
    delivered = any_client.post(f"{BASE}/message", headers=FRONTDESK,
                                json={"messageName": "report_ready", "businessKey": "RP-9", "resultEnabled": True})
    assert delivered.status_code == 200 and delivered.json[0]["resultType"] == "Execution"
    assert any_client.get(f"{BASE}/task/count", headers=FRONTDESK).json == {"count": 1}
    nul = any_client.post(f"{BASE}/process-definition/key/report_lookup/start", headers=FRONTDESK,
                          json={"businessKey": "a\u0000b"})
    assert nul.status_code == 400
