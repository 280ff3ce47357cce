"""Camunda Modeler's requests, replayed byte for byte as its Camunda 7 client sends them.

Taken from camunda/camunda-modeler, client/src/plugins/camunda-plugin/shared/CamundaAPI.js and
RestAPI.js: every request carries `accept: application/json` and `authorization: Basic …`;
checkConnection is `GET /deployment?maxResults=0`, getVersion `GET /version`; deployDiagram
posts a browser FormData to `/deployment/create` with `deployment-name`, `deployment-source`
("Camunda Modeler"), `enable-duplicate-filtering` ("true"; before Modeler 4.7
`deploy-changed-only`), an optional `tenant-id`, the diagram as a part named by its file name
(Blob type text/xml) and attachments as parts without a type; it reads `id` and
`deployedProcessDefinitions` of the answer and, on failure, `message`. startInstance posts JSON
`{businessKey, variables}` to `/process-definition/{id}/start`.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import fixture_bytes
from tests.rest.conftest import FRONTDESK, OWNER, basic, broken_inquiry, changed_inquiry, inquiry_bpmn

BASE = "/engine-rest"


def form_data(fields: list[tuple[str, str]], files: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart body as Chromium's FormData writes it (the Modeler runs in Electron)."""
    boundary = f"----WebKitFormBoundary{uuid.uuid4().hex[:16]}"
    parts = []
    for name, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, content, content_type in files:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
        head += f"Content-Type: {content_type or 'application/octet-stream'}\r\n\r\n"
        parts.append(head.encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def deploy_diagram(client, name: str, diagram: tuple[str, bytes], *, flag: str = "enable-duplicate-filtering",
                   tenant_id: str | None = None, attachments: list[tuple[str, bytes]] = (), headers=OWNER):
    """CamundaAPI.deployDiagram (flag="deploy-changed-only" for Modeler versions before 4.7)."""
    fields = [("deployment-name", name), ("deployment-source", "Camunda Modeler"), (flag, "true")]
    if tenant_id:
        fields.append(("tenant-id", tenant_id))
    files = [(diagram[0], diagram[1], "text/xml"), *[(n, c, None) for n, c in attachments]]
    body, content_type = form_data(fields, files)
    return client.post(f"{BASE}/deployment/create", data=body, headers={**headers, "Content-Type": content_type})


def start_instance(client, definition_id: str, business_key, variables, headers=OWNER):
    """CamundaAPI.startInstance: JSON.stringify({businessKey, variables})."""
    return client.post(f"{BASE}/process-definition/{definition_id}/start",
                       data=json.dumps({"businessKey": business_key, "variables": variables}),
                       headers={**headers, "content-type": "application/json"})


def only_definition(answer: dict) -> dict:
    definitions = answer["deployedProcessDefinitions"]
    assert definitions is not None and len(definitions) == 1, answer
    (definition,) = definitions.values()
    return definition


def test_connection_check_and_version(client):
    check = client.get(f"{BASE}/deployment?maxResults=0", headers=OWNER)
    assert check.status_code == 200 and check.json == []
    version = client.get(f"{BASE}/version", headers=OWNER)
    assert version.status_code == 200 and version.json == {"version": "7.22.0"}


@pytest.mark.parametrize("headers", [{"Accept": "application/json"}, basic("owner", "wrong"), basic("nobody"),
                                     {"Authorization": "Bearer some-token", "Accept": "application/json"}])
def test_connection_check_without_valid_credentials_is_401_with_a_basic_challenge(client, headers):
    response = client.get(f"{BASE}/deployment?maxResults=0", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="')


def test_deploy_answers_as_camunda_does(client):
    response = deploy_diagram(client, "inquiry", ("inquiry.bpmn", inquiry_bpmn()))
    assert response.status_code == 200, response.json
    answer = response.json
    assert set(answer) == {"links", "id", "name", "source", "deploymentTime", "tenantId",
                           "deployedProcessDefinitions", "deployedCaseDefinitions", "deployedDecisionDefinitions",
                           "deployedDecisionRequirementsDefinitions"}
    assert answer["name"] == "inquiry" and answer["source"] == "Camunda Modeler" and answer["tenantId"] is None
    assert answer["deploymentTime"] == "2026-03-02T09:00:00.000+0800"
    assert answer["links"] == [{"method": "GET", "rel": "self",
                                "href": f"http://localhost{BASE}/deployment/{answer['id']}"}]
    assert answer["deployedCaseDefinitions"] is None and answer["deployedDecisionDefinitions"] is None
    assert answer["deployedDecisionRequirementsDefinitions"] is None
    definition = only_definition(answer)
    assert definition["key"] == "inquiry" and definition["version"] == 1 and definition["name"] == "咨询处理"
    assert definition["deploymentId"] == answer["id"] and definition["resource"] == "inquiry.bpmn"
    assert definition["suspended"] is False
    assert set(definition) >= {"id", "key", "category", "description", "name", "version", "resource", "deploymentId",
                               "diagram", "suspended", "tenantId", "versionTag", "historyTimeToLive"}


@pytest.mark.parametrize("flag", ["enable-duplicate-filtering", "deploy-changed-only"])
def test_the_same_file_twice_is_one_version_and_a_changed_one_version_2(client, flag):
    first = deploy_diagram(client, "inquiry", ("inquiry.bpmn", inquiry_bpmn()), flag=flag).json
    again = deploy_diagram(client, "inquiry", ("inquiry.bpmn", inquiry_bpmn()), flag=flag)
    assert again.status_code == 200
    assert again.json["id"] == first["id"]
    assert again.json["deployedProcessDefinitions"] is None  # Camunda: nothing new was deployed
    count = client.get(f"{BASE}/process-definition/count?key=inquiry", headers=OWNER).json
    assert count == {"count": 1}

    changed = deploy_diagram(client, "inquiry", ("inquiry.bpmn", changed_inquiry()), flag=flag)
    assert changed.status_code == 200
    assert changed.json["id"] != first["id"]
    assert only_definition(changed.json)["version"] == 2
    versions = client.get(f"{BASE}/process-definition?key=inquiry&sortBy=version&sortOrder=asc", headers=OWNER).json
    assert [d["version"] for d in versions] == [1, 2]


def test_without_a_duplicate_flag_every_deploy_is_a_new_version(client):
    fields = [("deployment-name", "inquiry")]
    for expected in (1, 2):
        body, content_type = form_data(fields, [("inquiry.bpmn", inquiry_bpmn(), "text/xml")])
        answer = client.post(f"{BASE}/deployment/create", data=body, headers={**OWNER, "Content-Type": content_type})
        assert only_definition(answer.json)["version"] == expected


def test_duplicate_filtering_deploys_every_file_when_one_changed_and_changed_only_just_that_one(client):
    dmn = fixture_bytes("dmn", "triage.dmn")
    deploy_diagram(client, "both", ("inquiry.bpmn", inquiry_bpmn()), attachments=[("triage.dmn", dmn)])
    # duplicate filtering: one file changed → both files are deployed again (as Camunda does)
    answer = deploy_diagram(client, "both", ("inquiry.bpmn", changed_inquiry()), attachments=[("triage.dmn", dmn)])
    assert only_definition(answer.json)["version"] == 2
    assert [d["version"] for d in answer.json["deployedDecisionDefinitions"].values()] == [2]
    # changed-only: only the changed one gets a new version
    answer = deploy_diagram(client, "both", ("inquiry.bpmn", inquiry_bpmn()), attachments=[("triage.dmn", dmn)],
                            flag="deploy-changed-only")
    assert only_definition(answer.json)["version"] == 3
    assert answer.json["deployedDecisionDefinitions"] is None


def test_attachments_and_tenant_id_are_taken(client):
    answer = deploy_diagram(client, "with-table", ("inquiry.bpmn", inquiry_bpmn()), tenant_id="hospital-a",
                            attachments=[("triage.dmn", fixture_bytes("dmn", "triage.dmn"))]).json
    assert answer["tenantId"] == "hospital-a"
    (decision,) = answer["deployedDecisionDefinitions"].values()
    assert decision["key"] == "triage" and decision["tenantId"] == "hospital-a"
    assert only_definition(answer)["tenantId"] == "hospital-a"


def test_start_with_the_typed_variables_the_modeler_form_takes(client):
    definition = only_definition(deploy_diagram(client, "inquiry", ("inquiry.bpmn", inquiry_bpmn())).json)
    variables = {
        "patientName": {"value": "张三", "type": "String"},
        "dueAt": {"value": "2026-03-02T11:00:00+08:00", "type": "String"},
        "visits": {"value": 3, "type": "Integer"},
        "urgent": {"value": True, "type": "Boolean"},
        "receivedAt": {"value": "2026-03-02T08:30:00.000+0800", "type": "Date"},
        "complaint": {"value": json.dumps({"category": "服务态度", "wards": [3, 5]}), "type": "Json"},
    }
    response = start_instance(client, definition["id"], "ZX-2026-0001", variables)
    assert response.status_code == 200, response.json
    instance = response.json
    assert set(instance) == {"links", "id", "definitionId", "definitionKey", "businessKey", "caseInstanceId",
                             "ended", "suspended", "tenantId"}
    assert instance["definitionId"] == definition["id"] and instance["businessKey"] == "ZX-2026-0001"
    assert instance["ended"] is False and instance["suspended"] is False
    stored = client.get(f"{BASE}/process-instance/{instance['id']}/variables", headers=OWNER).json
    assert stored["patientName"] == {"type": "String", "value": "张三", "valueInfo": {}}
    assert stored["visits"] == {"type": "Integer", "value": 3, "valueInfo": {}}
    assert stored["urgent"] == {"type": "Boolean", "value": True, "valueInfo": {}}
    assert stored["receivedAt"] == {"type": "Date", "value": "2026-03-02T08:30:00.000+0800", "valueInfo": {}}
    assert stored["complaint"]["type"] == "Json"
    assert json.loads(stored["complaint"]["value"]) == {"category": "服务态度", "wards": [3, 5]}
    # the typed values reached the process: priority ${urgent ? 80 : 50}, due date from dueAt
    (task,) = client.get(f"{BASE}/task?processInstanceId={instance['id']}", headers=FRONTDESK).json
    assert task["priority"] == 80 and task["due"] == "2026-03-02T11:00:00.000+0800"


def test_start_with_neither_business_key_nor_variables(client):
    """The Modeler sends `null` for both when the start form is left empty."""
    diagram = ("wait_message.bpmn", fixture_bytes("bpmn", "wait_message.bpmn"))
    definition = only_definition(deploy_diagram(client, "report", diagram).json)
    response = start_instance(client, definition["id"], None, None)
    assert response.status_code == 200, response.json
    assert response.json["businessKey"] is None and response.json["definitionKey"] == "report_lookup"


def test_refused_file_is_a_camunda_parse_error_naming_file_and_element(client):
    response = deploy_diagram(client, "inquiry", ("inquiry.bpmn", broken_inquiry()))
    assert response.status_code == 400
    body = response.json
    assert body["type"] == "ParseException"
    # the Modeler recognizes a diagram the engine could not take by this prefix; it shows `message`
    assert body["message"].startswith("ENGINE-09005 Could not parse BPMN process.")
    assert "inquiry.bpmn" in body["message"] and "Flow_no" in body["message"]
    assert "conditionExpression" in body["message"]
    (problem,) = body["details"]["inquiry.bpmn"]["errors"]
    assert problem["mainBpmnElementId"] == "Flow_no" and problem["bpmnElementIds"] == ["Flow_no"]
    assert problem["line"] > 1
    assert client.get(f"{BASE}/process-definition/count", headers=OWNER).json == {"count": 0}


def test_staff_without_the_process_owner_role_may_not_deploy(client):
    response = deploy_diagram(client, "inquiry", ("inquiry.bpmn", inquiry_bpmn()), headers=FRONTDESK)
    assert response.status_code == 403
    assert response.json["type"] == "AuthorizationException" and response.json["userId"] == "frontdesk"


def test_a_form_part_without_a_file_name_is_refused_like_camunda(client):
    body, content_type = form_data([("deployment-name", "x"), ("diagram.bpmn", "<xml/>")], [])
    response = client.post(f"{BASE}/deployment/create", data=body, headers={**OWNER, "Content-Type": content_type})
    assert response.status_code == 400 and response.json["type"] == "InvalidRequestException"
    assert "No file name found" in response.json["message"]
    body, content_type = form_data([("deployment-name", "x")], [])
    response = client.post(f"{BASE}/deployment/create", data=body, headers={**OWNER, "Content-Type": content_type})
    assert response.status_code == 400
    assert response.json["message"] == "No deployment resources contained in the form upload."
