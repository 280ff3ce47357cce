"""Patient data through /api/v1, /engine-rest and the external-task API: the same masks as the
pages, full values for the step that needs them and for integration accounts in
UNMASKED_API_USERS, an audited reveal, and an audit line for every read of variables."""

from __future__ import annotations

import base64

import pytest

from engine.audit import AuditQuery
from engine.identity import IdentityService
from tests.privacy.conftest import MASKED, PATIENT_NO, PHONE, callback_due, discharge

STRONG = "Huifang-2026-mima"


def basic(username: str, password: str = "demo") -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Accept": "application/json"}


@pytest.fixture
def client(app):
    return app.test_client()


def test_the_nurse_reads_the_phone_masked_on_both_apis(hospital, client):
    iid = discharge(hospital)
    nurse = basic("nurse")
    body = client.get(f"/api/v1/instances/{iid}", headers=nurse).get_json()
    assert body["variables"]["phone"] == MASKED and body["variables"]["patientNo"] == PATIENT_NO
    assert PHONE not in str(body)  # nor in the history's submitted values
    assert client.get(f"/api/v1/instances/{iid}/variables", headers=nurse).get_json()["phone"] == \
        {"value": MASKED, "type": "String"}
    rest = client.get(f"/engine-rest/process-instance/{iid}/variables", headers=nurse).get_json()
    assert rest["phone"]["value"] == MASKED and rest["phone"]["type"] == "String"
    one = client.get(f"/engine-rest/process-instance/{iid}/variables/phone", headers=nurse).get_json()
    assert one["value"] == MASKED


def test_the_director_reads_masks_too(hospital, client):
    iid = discharge(hospital)
    body = client.get(f"/engine-rest/process-instance/{iid}/variables", headers=basic("director")).get_json()
    assert body["phone"]["value"] == MASKED


def test_finance_reads_a_masked_phone_and_cannot_read_a_case_that_is_not_hers(hospital, client):
    iid = discharge(hospital)
    assert client.get(f"/engine-rest/process-instance/{iid}/variables", headers=basic("finance")).status_code == 404
    assert client.get(f"/api/v1/instances/{iid}/variables", headers=basic("finance")).status_code == 404


def test_the_caller_on_her_callback_task_reads_the_phone_in_full(hospital, clock, client):
    iid, task = callback_due(hospital, clock)
    caller = basic("caller")
    assert client.get(f"/engine-rest/task/{task['id']}/variables", headers=caller).get_json()["phone"]["value"] \
        == PHONE
    assert client.get(f"/api/v1/instances/{iid}/variables", headers=caller).get_json()["phone"]["value"] == PHONE
    assert client.get(f"/api/v1/instances/{iid}", headers=caller).get_json()["variables"]["phone"] == PHONE


def test_once_a_colleague_claims_the_callback_the_others_read_the_mask(hospital, clock, client):
    IdentityService(hospital).create_user("caller2", "回访专员 王敏", STRONG, ["callback_team"])
    _iid, task = callback_due(hospital, clock)
    hospital.claim(task["id"], "caller")
    url = f"/engine-rest/task/{task['id']}/variables"
    assert client.get(url, headers=basic("caller2", STRONG)).get_json()["phone"]["value"] == MASKED
    assert client.get(url, headers=basic("caller")).get_json()["phone"]["value"] == PHONE


def test_completing_with_variables_in_return_masks_for_a_caller_without_a_next_step(hospital, clock, client):
    _iid, task = callback_due(hospital, clock)
    hospital.claim(task["id"], "caller")
    response = client.post(f"/engine-rest/task/{task['id']}/complete", headers=basic("caller"), json={
        "withVariablesInReturn": True, "variables": {
            "reached": {"value": True}, "recovery": {"value": "良好"}, "medicationOk": {"value": True},
            "followUpKnown": {"value": True}, "satisfied": {"value": True}, "satisfactionScore": {"value": 5},
            "clinicalConcern": {"value": False}, "callNote": {"value": "恢复良好"}}})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["phone"]["value"] == MASKED  # her step is done


def test_starting_with_variables_in_return_masks_the_phone_for_the_registering_nurse(hospital, client):
    from tests.privacy.conftest import DISCHARGE

    variables = {k: {"value": v} for k, v in DISCHARGE.items()}
    response = client.post("/engine-rest/process-definition/key/discharge_callback/start", headers=basic("nurse"),
                           json={"businessKey": "HF-0009", "variables": variables, "withVariablesInReturn": True})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["variables"]["phone"]["value"] == MASKED


def test_reveal_through_the_api_is_audited(hospital, client):
    iid = discharge(hospital)
    response = client.post(f"/api/v1/instances/{iid}/variables/phone/reveal", headers=basic("nurse"))
    assert response.status_code == 200
    assert response.get_json() == {"name": "phone", "value": PHONE}
    [event], _total = hospital.audit.query(AuditQuery(action="reveal"))
    assert (event["user"], event["instance_id"], event["patient"], event["details"]["variable"]) == \
        ("nurse", iid, PATIENT_NO, "phone")
    missing = client.post(f"/api/v1/instances/{iid}/variables/nothing/reveal", headers=basic("nurse"))
    assert missing.status_code == 404 and "nothing" in missing.get_json()["message"]
    assert client.post(f"/api/v1/instances/{iid}/variables/phone/reveal", headers=basic("finance")).status_code == 404
    assert hospital.audit.query(AuditQuery(action="reveal"))[1] == 1


def test_every_read_of_variables_is_audited_with_the_patient(hospital, clock, client):
    iid, task = callback_due(hospital, clock)
    client.get(f"/api/v1/instances/{iid}", headers=basic("nurse"))
    client.get(f"/api/v1/instances/{iid}/variables", headers=basic("nurse"))
    client.get(f"/engine-rest/process-instance/{iid}/variables", headers=basic("director"))
    client.get(f"/engine-rest/task/{task['id']}/variables", headers=basic("caller"))
    client.get(f"/engine-rest/task/{task['id']}/form-variables", headers=basic("caller"))
    events, total = hospital.audit.query(AuditQuery(patient=PATIENT_NO))
    assert total == 5
    assert [(e["user"], e["action"], e["resource_type"]) for e in events][::-1] == [
        ("nurse", "read_instance", "instance"), ("nurse", "read_variables", "instance"),
        ("director", "read_variables", "instance"), ("caller", "read_variables", "task"),
        ("caller", "read_variables", "task")]
    assert all(e["instance_id"] == iid for e in events)


def test_integration_accounts_read_full_values_only_when_listed(hospital, app, client):
    IdentityService(hospital).create_user("sms_gateway", "短信网关", STRONG, ["external_worker"])
    discharge(hospital)
    fetch = {"workerId": "gw-1", "maxTasks": 5, "topics": [{"topicName": "notify", "lockDuration": 60_000}]}
    [task] = client.post("/engine-rest/external-task/fetchAndLock", headers=basic("sms_gateway", STRONG), json=fetch).get_json()
    assert task["variables"]["phone"]["value"] == MASKED
    client.post(f"/engine-rest/external-task/{task['id']}/unlock", headers=basic("sms_gateway", STRONG))
    hospital.settings.unmasked_api_users = ("sms_gateway",)
    [task] = client.post("/engine-rest/external-task/fetchAndLock", headers=basic("sms_gateway", STRONG), json=fetch).get_json()
    assert task["variables"]["phone"]["value"] == PHONE
    events, total = hospital.audit.query(AuditQuery(user="sms_gateway", action="read_variables"))
    assert total == 2 and {e["resource_type"] for e in events} == {"external_task"}
    assert {e["patient"] for e in events} == {PATIENT_NO}
