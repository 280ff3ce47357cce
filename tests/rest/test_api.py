"""Our own API under /api/v1: the OpenAPI document, authentication (Basic or the web session),
and what the web UI and integrations rely on: task work, instances, deployments, decisions and
the calendar, with errors that name what was wrong."""

from __future__ import annotations

import io

import pytest

from engine.service import TaskQuery
from tests.conftest import fixture_bytes
from tests.rest.conftest import ADMIN, DIRECTOR, FINANCE, FRONTDESK, OWNER, broken_inquiry, inquiry_bpmn
from tests.web.conftest import StaffClient

API = "/api/v1"


@pytest.fixture
def deployed(engine):
    engine.deploy([("inquiry.bpmn", inquiry_bpmn()), ("triage.dmn", fixture_bytes("dmn", "triage.dmn"))],
                  name="inquiry", user="owner")
    return engine


def start(client, key="ZX-1", headers=FRONTDESK, **variables):
    response = client.post(f"{API}/instances", headers=headers, json={
        "process_key": "inquiry", "business_key": key,
        "variables": {"dueAt": "2026-03-02T11:00:00+08:00", "urgent": False, **variables}})
    assert response.status_code == 201, response.json
    return response.json


def test_openapi_document_at_a_stable_url(client):
    assert client.get(f"{API}/openapi.json").status_code == 401  # staff only
    doc = client.get(f"{API}/openapi.json", headers=FRONTDESK)
    assert doc.status_code == 200 and doc.json["openapi"].startswith("3.")
    paths = doc.json["paths"]
    for path in ("/api/v1/tasks", "/api/v1/tasks/{task_id}/complete", "/api/v1/instances/{instance_id}",
                 "/api/v1/deployments", "/api/v1/definitions/{definition_id}/xml",
                 "/api/v1/decisions/{definition_id}/evaluate", "/api/v1/calendar/deadline-working-days",
                 "/api/v1/calendar/shift"):
        assert path in paths, path
    assert doc.json["components"]["securitySchemes"]["basicAuth"] == {"type": "http", "scheme": "basic"}


def test_credentials_are_required(client):
    response = client.get(f"{API}/tasks")
    assert response.status_code == 401 and response.json["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get(f"{API}/tasks", headers={"Authorization": "Basic Zm9vOmJhcg=="}).status_code == 401


def test_the_web_session_works_and_unsafe_requests_need_a_header(app, deployed):
    browser = StaffClient(app.test_client())
    browser.login("frontdesk")
    assert browser.get(f"{API}/tasks").status_code == 200
    instance = browser.client.post(f"{API}/instances", json={
        "process_key": "inquiry", "variables": {"dueAt": "2026-03-02T11:00:00+08:00", "urgent": False}})
    assert instance.status_code == 201  # a JSON body cannot come from a cross-site form
    (task,) = deployed.list_tasks(TaskQuery())
    forged = browser.client.post(f"{API}/tasks/{task['id']}/claim", data={"x": "1"})
    assert forged.status_code == 403
    claimed = browser.client.post(f"{API}/tasks/{task['id']}/claim", headers={"X-Requested-With": "fetch"})
    assert claimed.status_code == 200 and claimed.json["assignee"] == "frontdesk"


def test_task_work_from_list_to_completion(client, deployed):
    instance = start(client)
    page = client.get(f"{API}/tasks?candidate_group=front_desk&sort=priority", headers=FRONTDESK).json
    assert page["total"] == 1 and page["offset"] == 0 and page["limit"] == 50
    (task,) = page["items"]
    assert task["instance_id"] == instance["id"] and task["due_at"] == "2026-03-02T11:00:00+08:00"
    assert client.get(f"{API}/tasks", headers=FINANCE).json["total"] == 0
    assert client.get(f"{API}/tasks/{task['id']}", headers=FINANCE).status_code == 404
    detail = client.get(f"{API}/tasks/{task['id']}", headers=FRONTDESK).json
    assert [f["id"] for f in detail["form"]] == ["answerText", "solved", "minutesSpent"]
    assert detail["form"][0]["required"] is True and detail["form"][2]["maximum"] == 600

    assert client.post(f"{API}/tasks/{task['id']}/claim", headers=FRONTDESK).json["assignee"] == "frontdesk"
    assert client.get(f"{API}/tasks?assignee=me", headers=FRONTDESK).json["total"] == 1
    taken = client.post(f"{API}/tasks/{task['id']}/claim", headers=ADMIN)
    assert taken.status_code == 409 and taken.json["error"] == "conflict" and taken.json["assignee"] == "frontdesk"
    assert client.post(f"{API}/tasks/{task['id']}/unclaim", headers=ADMIN).json["assignee"] is None
    outsider = client.post(f"{API}/tasks/{task['id']}/assign", headers=FRONTDESK, json={"assignee": "caller"})
    assert outsider.status_code == 400 and outsider.json["field"] == "assignee"
    handed = client.post(f"{API}/tasks/{task['id']}/assign", headers=FRONTDESK, json={"assignee": "director"})
    assert handed.json["assignee"] == "director"
    refused = client.post(f"{API}/tasks/{task['id']}/unclaim", headers=FRONTDESK)
    assert refused.status_code == 403
    assert client.post(f"{API}/tasks/{task['id']}/assign", headers=ADMIN, json={"assignee": "ghost"}).status_code \
        == 400

    someone_elses = client.post(f"{API}/tasks/{task['id']}/complete", headers=FRONTDESK, json={"variables": {}})
    assert someone_elses.status_code == 409 and someone_elses.json["assignee"] == "director"
    client.post(f"{API}/tasks/{task['id']}/assign", headers=ADMIN, json={"assignee": None})
    invalid = client.post(f"{API}/tasks/{task['id']}/complete", headers=FRONTDESK,
                          json={"variables": {"minutesSpent": 9999}})
    assert invalid.status_code == 400 and invalid.json["error"] == "invalid_input"
    assert set(invalid.json["fields"]) == {"answerText", "minutesSpent"}
    done = client.post(f"{API}/tasks/{task['id']}/complete", headers=FRONTDESK,
                       json={"variables": {"answerText": "已答复", "solved": True}})
    assert done.status_code == 200 and done.json["status"] == "completed"
    again = client.post(f"{API}/tasks/{task['id']}/complete", headers=FRONTDESK, json={"variables": {}})
    assert again.status_code == 409


def test_bad_requests_say_which_field(client, deployed):
    assert client.get(f"{API}/tasks?limit=0", headers=FRONTDESK).json["fields"] == {
        "limit": "Must be greater than or equal to 1 and less than or equal to 500."}
    bad = client.post(f"{API}/instances", headers=FRONTDESK, json={"variables": {"x": 1}})
    assert bad.status_code == 400 and "process_key" in bad.json["fields"]
    nan = client.post(f"{API}/instances", headers=FRONTDESK,
                      data='{"process_key": "inquiry", "variables": {"x": NaN}}',
                      content_type="application/json")
    assert nan.status_code == 400 and "variables.x" in nan.json["fields"]
    nul = client.post(f"{API}/instances", headers=FRONTDESK, json={"process_key": "in\u0000quiry"})
    assert nul.status_code == 400
    unknown = client.post(f"{API}/instances", headers=FRONTDESK, json={"process_key": "inquiry", "colour": 1})
    assert unknown.status_code == 400 and "colour" in unknown.json["fields"]
    assert client.post(f"{API}/instances", headers=FRONTDESK, data="{", content_type="application/json") \
        .status_code == 400


def test_instances_list_detail_variables_cancel(client, deployed):
    instance = start(client, "ZX-9", patientName="李四")
    listed = client.get(f"{API}/instances?process_key=inquiry&search=李四", headers=FRONTDESK).json
    assert listed["total"] == 1 and listed["items"][0]["summary"] == {"patientName": "李四"}
    assert client.get(f"{API}/instances", headers=FINANCE).json["total"] == 0
    detail = client.get(f"{API}/instances/{instance['id']}", headers=FRONTDESK).json
    assert detail["active"][0]["element_id"] == "answer" and detail["path"] == ["StartEvent_1"]
    assert detail["variables"]["patientName"] == "李四" and detail["history"][0]["action"] == "start"
    assert detail["tasks"][0]["status"] == "open"
    variables = client.get(f"{API}/instances/{instance['id']}/variables", headers=FRONTDESK).json
    assert variables["urgent"] == {"value": False, "type": "Boolean"}
    assert client.get(f"{API}/instances/{instance['id']}", headers=FINANCE).status_code == 404
    assert client.post(f"{API}/instances/{instance['id']}/cancel", headers=FRONTDESK, json={}).status_code == 403
    assert client.post(f"{API}/instances/{instance['id']}/cancel", headers=OWNER, json={}).status_code == 403
    cancelled = client.post(f"{API}/instances/{instance['id']}/cancel", headers=DIRECTOR, json={"reason": "重复登记"})
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert client.post(f"{API}/instances/{instance['id']}/cancel", headers=ADMIN, json={}).status_code == 409


def test_deploy_upload_and_refusal(client, engine):
    refused = client.post(f"{API}/deployments", headers=OWNER, content_type="multipart/form-data",
                          data={"files": [(io.BytesIO(broken_inquiry()), "inquiry.bpmn")]})
    assert refused.status_code == 400
    assert refused.json["error"] == "deployment_error" and refused.json["element"] == "Flow_no"
    assert refused.json["file"] == "inquiry.bpmn" and refused.json["line"] > 1
    staff = client.post(f"{API}/deployments", headers=FRONTDESK, content_type="multipart/form-data",
                        data={"files": [(io.BytesIO(inquiry_bpmn()), "inquiry.bpmn")]})
    assert staff.status_code == 403
    upload = {"name": "咨询", "files": [(io.BytesIO(inquiry_bpmn()), "inquiry.bpmn"),
                                       (io.BytesIO(fixture_bytes("dmn", "triage.dmn")), "triage.dmn")]}
    deployed = client.post(f"{API}/deployments", headers=OWNER, content_type="multipart/form-data", data=upload)
    assert deployed.status_code == 201 and deployed.json["created"] is True
    assert [d["key"] for d in deployed.json["process_definitions"]] == ["inquiry"]
    again = client.post(f"{API}/deployments", headers=OWNER, content_type="multipart/form-data",
                        data={"files": [(io.BytesIO(inquiry_bpmn()), "inquiry.bpmn")]})
    assert again.json["created"] is False and len(again.json["unchanged"]) == 1
    deployments = client.get(f"{API}/deployments", headers=FRONTDESK).json
    assert deployments[0]["name"] == "咨询" and deployments[0]["deployed_by"] == "owner"
    detail = client.get(f"{API}/deployments/{deployed.json['deployment_id']}", headers=OWNER).json
    assert sorted(r["name"] for r in detail["resources"]) == ["inquiry.bpmn", "triage.dmn"]

    definition = client.get(f"{API}/definitions?latest_only=true", headers=FRONTDESK).json[0]
    xml = client.get(f"{API}/definitions/{definition['id']}/xml", headers=FRONTDESK)
    assert xml.status_code == 200 and xml.mimetype == "application/xml" and xml.data == inquiry_bpmn()
    start(client)
    info = client.get(f"{API}/definitions/{definition['id']}", headers=OWNER).json
    assert info["active_instances"] == 1
    assert info["element_activity"] == {"answer": {"tasks": 1, "timers": 0, "messages": 0}}
    assert client.delete(f"{API}/deployments/{deployed.json['deployment_id']}", headers=OWNER).status_code == 409
    assert client.delete(f"{API}/deployments/{deployed.json['deployment_id']}?cascade=true",
                         headers=OWNER).status_code == 204
    assert client.get(f"{API}/definitions", headers=OWNER).json == []


def test_decisions_list_inputs_and_evaluate(client, deployed):
    (decision,) = client.get(f"{API}/decisions", headers=FRONTDESK).json
    detail = client.get(f"{API}/decisions/{decision['id']}", headers=FRONTDESK).json
    assert [(i["variable"], i["type_ref"]) for i in detail["inputs"]] == [
        ("category", "string"), ("amount", "double"), ("urgent", "boolean")]
    assert detail["outputs"] == [{"name": "lane", "label": "通道", "type_ref": "string"}]
    result = client.post(f"{API}/decisions/{decision['id']}/evaluate", headers=FRONTDESK,
                         json={"variables": {"category": "收费争议", "amount": 2000, "urgent": False}})
    assert result.json == {"results": [{"lane": "finance"}]}
    assert client.post(f"{API}/decisions/nope/evaluate", headers=FRONTDESK, json={}).status_code == 404


def test_calendar(client):
    deadline = client.get(f"{API}/calendar/deadline-working-days?start=2026-09-30T10:00:00%2B08:00&days=5",
                          headers=FRONTDESK).json
    assert deadline == {"at": "2026-10-13T17:30:00+08:00", "confirmed": True, "unconfirmed_years": []}
    added = client.get(f"{API}/calendar/add-working-days?start=2026-09-30T10:00:00&days=5", headers=FRONTDESK)
    assert added.json == {"at": "2026-10-13T17:30:00+08:00"}
    day = client.get(f"{API}/calendar/working-day?day=2026-10-10", headers=FRONTDESK).json
    assert day["is_working"] is True and day["name"] == "国庆节调休上班"
    shift = client.get(f"{API}/calendar/shift?at=2026-10-02T03:00:00%2B08:00", headers=FRONTDESK).json
    assert shift["shift"]["code"] == "night" and shift["shift_date"] == "2026-10-01"
    unknown = client.get(f"{API}/calendar/shift?at=2026-10-02T03:00:00&rota=moon", headers=FRONTDESK)
    assert unknown.status_code == 400 and "moon" in unknown.json["message"]
    far = client.get(f"{API}/calendar/add-working-days?start=9999-12-31T00:00:00&days=5", headers=FRONTDESK)
    assert far.status_code == 400
