"""Camunda's /engine-rest/external-task and /engine-rest/incident: shapes, filters, errors, long
polling."""

from __future__ import annotations

import threading
import time

from engine.service import TaskQuery
from tests.external.conftest import WORKER, basic, start_simple, topic

LOCKED_FIELDS = {"activityId", "activityInstanceId", "errorMessage", "errorDetails", "executionId", "id",
                 "lockExpirationTime", "createTime", "processDefinitionId", "processDefinitionKey",
                 "processDefinitionVersionTag", "processInstanceId", "retries", "suspended", "workerId",
                 "topicName", "tenantId", "variables", "priority", "businessKey", "extensionProperties"}


def fetch(rest, worker="w1", topics=None, **extra):
    response = rest.post("/engine-rest/external-task/fetchAndLock",
                         json={"workerId": worker, "maxTasks": 10, "topics": topics or [topic("work")], **extra})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_fetch_and_lock_answers_camundas_shape(rest, ext_engine):
    inst = start_simple(ext_engine, "work", business_key="TS-0001", priority=30)
    [task] = fetch(rest, topics=[topic("work", 60_000, variables=["patientName", "priority"])])
    assert set(task) == LOCKED_FIELDS
    assert task["processInstanceId"] == inst["id"] and task["businessKey"] == "TS-0001"
    assert task["topicName"] == "work" and task["workerId"] == "w1" and task["priority"] == 30
    assert task["activityId"] == "Activity_work" and task["activityInstanceId"].startswith("Activity_work:")
    assert task["processDefinitionKey"] == "simple_external" and task["suspended"] is False
    assert task["retries"] is None and task["errorMessage"] is None
    # Camunda's date format in the hospital's zone (the frozen clock says 09:00 in Shanghai)
    assert task["createTime"] == "2026-03-02T09:00:00.000+0800"
    assert task["lockExpirationTime"] == "2026-03-02T09:01:00.000+0800"
    assert task["variables"] == {"patientName": {"type": "String", "value": "张三", "valueInfo": {}},
                                 "priority": {"type": "Integer", "value": 30, "valueInfo": {}}}


def test_complete_with_typed_variables_moves_the_process_on(rest, ext_engine):
    inst = start_simple(ext_engine)
    [task] = fetch(rest)
    response = rest.post(f"/engine-rest/external-task/{task['id']}/complete", json={
        "workerId": "w1",
        "variables": {"smsId": {"value": "m-1", "type": "String"}, "count": {"value": 3, "type": "Integer"},
                      "at": {"value": "2026-03-02T10:00:00.000+0800", "type": "Date"}}})
    assert response.status_code == 204, response.get_json()
    info = ext_engine.get_instance(inst["id"])
    assert info["status"] == "completed"
    assert info["variables"]["smsId"] == "m-1" and info["variables"]["count"] == 3
    assert info["variables"]["at"].startswith("2026-03-02T10:00:00+08:00")


def test_errors_in_camundas_words(rest, ext_engine, clock):
    start_simple(ext_engine)
    [task] = fetch(rest)
    url = f"/engine-rest/external-task/{task['id']}"

    response = rest.post(f"{url}/complete", json={"workerId": "other"})
    assert response.status_code == 400
    assert response.get_json() == {"type": "RestException", "message": (
        f"External Task {task['id']} cannot be completed by worker 'other'. It is locked by worker 'w1'.")}

    response = rest.post("/engine-rest/external-task/no-such-task/complete", json={"workerId": "w1"})
    assert response.status_code == 404
    assert response.get_json() == {"type": "RestException",
                                   "message": "External task with id no-such-task does not exist"}
    response = rest.get("/engine-rest/external-task/no-such-task")
    assert response.status_code == 404 and response.get_json()["type"] == "InvalidRequestException"

    response = rest.post(f"{url}/complete", json={"workerId": "w1", "variables": {"n": {"value": "x",
                                                                                        "type": "Integer"}}})
    assert response.status_code == 400 and response.get_json()["type"] == "InvalidRequestException"
    assert "'n'" in response.get_json()["message"]
    response = rest.post("/engine-rest/external-task/fetchAndLock", json={"workerId": "w1", "topics": []})
    assert response.status_code == 400 and "maxTasks" in response.get_json()["message"]
    response = rest.post("/engine-rest/external-task/fetchAndLock", json={
        "workerId": "w1", "maxTasks": 1, "topics": [{"topicName": "work"}]})
    assert response.status_code == 400 and "lockDuration" in response.get_json()["message"]
    response = rest.post("/engine-rest/external-task/fetchAndLock", json={
        "workerId": "w1", "maxTasks": 1, "asyncResponseTimeout": 1_800_001, "topics": [topic("work")]})
    assert response.status_code == 400
    response = rest.get("/engine-rest/external-task?colour=blue")
    assert response.status_code == 400 and "colour" in response.get_json()["message"]
    response = rest.raw.post(f"{url}/complete", data="not json", headers=basic(*WORKER))
    assert response.status_code == 400

    clock.advance(minutes=2)  # the lock ran out
    response = rest.post(f"{url}/complete", json={"workerId": "w1"})
    assert response.status_code == 400 and "expired" in response.get_json()["message"]


def test_authentication_and_who_may_work(rest, app):
    client = app.test_client()
    response = client.post("/engine-rest/external-task/fetchAndLock", json={"workerId": "x", "maxTasks": 1})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic")
    response = client.post("/engine-rest/external-task/fetchAndLock", json={"workerId": "x", "maxTasks": 1},
                           headers=basic("frontdesk"))
    assert response.status_code == 403 and response.get_json()["type"] == "AuthorizationException"
    assert client.get("/engine-rest/external-task", headers=basic("director")).status_code == 200
    assert client.get("/engine-rest/incident", headers=basic("frontdesk")).status_code == 403
    # a worker may not set retries; an administrator may
    assert rest.put("/engine-rest/external-task/x/retries", json={"retries": 1}).status_code == 403
    response = client.put("/engine-rest/external-task/x/retries", json={"retries": 1}, headers=basic("admin"))
    assert response.status_code == 404
    # a NUL character is a bad request (no database stores it), in a query and in a body
    bad = client.get("/engine-rest/external-task?topicName=a%00b", headers=basic("admin"))
    assert bad.status_code == 400 and bad.get_json()["type"] == "InvalidRequestException"
    bad = rest.post("/engine-rest/external-task/fetchAndLock",
                    json={"workerId": "w\u0000", "maxTasks": 1, "topics": [{"topicName": "notify", "lockDuration": 1000}]})
    assert bad.status_code == 400
    # least privilege: administrators and process owners see external tasks but do not fetch work
    for who in ("admin", "owner"):
        assert client.get("/engine-rest/external-task", headers=basic(who)).status_code == 200
        refused = client.post("/engine-rest/external-task/fetchAndLock", headers=basic(who),
                              json={"workerId": "w", "maxTasks": 1, "topics": [{"topicName": "notify", "lockDuration": 1}]})
        assert refused.status_code == 403


def test_list_and_count_with_filters(rest, ext_engine, clock):
    a = start_simple(ext_engine, "work", priority=10, business_key="A")
    start_simple(ext_engine, "work", priority=50, business_key="B")
    start_simple(ext_engine, "mail", priority=70, business_key="C")
    [locked] = fetch(rest, "w1", maxTasks=1, topics=[topic("work", 60_000)], usePriority=True)
    assert locked["businessKey"] == "B"

    def ids(query):
        response = rest.get(f"/engine-rest/external-task?{query}")
        assert response.status_code == 200, response.get_json()
        return [t["businessKey"] for t in response.get_json()]

    def count(query):
        return rest.get(f"/engine-rest/external-task/count?{query}").get_json()["count"]

    assert count("") == 3
    assert sorted(ids("topicName=work")) == ["A", "B"]
    assert ids("workerId=w1") == ["B"] and ids("locked=true") == ["B"]
    assert sorted(ids("notLocked=true")) == ["A", "C"]
    assert ids(f"processInstanceId={a['id']}") == ["A"]
    assert count("activityId=Activity_work") == 3 and count("activityIdIn=Activity_x,Activity_y") == 0
    assert ids("priorityHigherThanOrEquals=50&sortBy=taskPriority&sortOrder=desc") == ["C", "B"]
    assert ids("sortBy=taskPriority&sortOrder=asc&firstResult=1&maxResults=1") == ["B"]
    assert count("withRetriesLeft=true") == 3 and count("noRetriesLeft=true") == 0
    assert count("suspended=true") == 0 and count("active=true") == 3
    response = rest.post("/engine-rest/external-task", json={"topicName": "work", "sorting": [
        {"sortBy": "taskPriority", "sortOrder": "desc"}]})
    assert [t["businessKey"] for t in response.get_json()] == ["B", "A"]
    assert rest.post("/engine-rest/external-task/count", json={"workerId": "w1"}).get_json() == {"count": 1}
    assert rest.get("/engine-rest/external-task/topic-names").get_json() == ["mail", "work"]
    one = rest.get(f"/engine-rest/external-task/{locked['id']}").get_json()
    assert one["id"] == locked["id"] and one["workerId"] == "w1" and "variables" not in one
    assert rest.get("/engine-rest/external-task?sortBy=colour&sortOrder=asc").status_code == 400


def test_failure_incident_and_retry_over_rest(rest, app, ext_engine, clock):
    inst = start_simple(ext_engine, business_key="TS-9")
    [task] = fetch(rest)
    url = f"/engine-rest/external-task/{task['id']}"
    response = rest.post(f"{url}/failure", json={"workerId": "w1", "errorMessage": "SMS gateway timeout",
                                                 "errorDetails": "java.net.SocketTimeoutException …",
                                                 "retries": 0, "retryTimeout": 0})
    assert response.status_code == 204
    assert rest.get(f"{url}/errorDetails").get_data(as_text=True) == "java.net.SocketTimeoutException …"
    assert rest.get(f"{url}/errorDetails").mimetype == "text/plain"
    listed = rest.get("/engine-rest/external-task?noRetriesLeft=true").get_json()
    assert [t["id"] for t in listed] == [task["id"]] and listed[0]["errorMessage"] == "SMS gateway timeout"

    admin = basic("admin")
    client = app.test_client()
    incidents = client.get("/engine-rest/incident", headers=admin).get_json()
    assert len(incidents) == 1
    incident = incidents[0]
    assert incident["incidentType"] == "failedExternalTask" and incident["configuration"] == task["id"]
    assert incident["processInstanceId"] == inst["id"] and incident["incidentMessage"] == "SMS gateway timeout"
    assert incident["activityId"] == "Activity_work"
    assert client.get(f"/engine-rest/incident/count?processInstanceId={inst['id']}",
                      headers=admin).get_json() == {"count": 1}
    assert client.get(f"/engine-rest/incident/{incident['id']}", headers=admin).get_json()["id"] == incident["id"]
    response = client.put(f"/engine-rest/incident/{incident['id']}/annotation", json={"annotation": "网关已修复"},
                          headers=admin)
    assert response.status_code == 204
    response = client.delete(f"/engine-rest/incident/{incident['id']}", headers=admin)
    assert response.status_code == 400 and "failedExternalTask" in response.get_json()["message"]

    response = client.put(f"{url}/retries", json={"retries": 2}, headers=admin)
    assert response.status_code == 204
    assert client.get("/engine-rest/incident/count", headers=admin).get_json() == {"count": 0}
    assert client.get(f"/engine-rest/incident/{incident['id']}", headers=admin).status_code == 404
    [again] = fetch(rest, "w2")
    assert again["id"] == task["id"] and again["retries"] == 2
    assert rest.post(f"{url}/complete", json={"workerId": "w2"}).status_code == 204
    assert ext_engine.get_instance(inst["id"])["status"] == "completed"


def test_bpmn_error_extend_lock_unlock_over_rest(rest, ext_engine):
    inst = ext_engine.start("payment", variables={"fee": 5})
    [task] = fetch(rest, topics=[topic("charge", 10_000)])
    url = f"/engine-rest/external-task/{task['id']}"
    assert rest.post(f"{url}/extendLock", json={"workerId": "w1", "newDuration": 120_000}).status_code == 204
    assert rest.get(url).get_json()["lockExpirationTime"] == "2026-03-02T09:02:00.000+0800"
    assert rest.post(f"{url}/unlock").status_code == 204
    assert rest.get(url).get_json()["workerId"] is None
    assert rest.post(f"{url}/lock", json={"workerId": "w3", "lockDuration": 5_000}).status_code == 204
    response = rest.post(f"{url}/bpmnError", json={"workerId": "w3", "errorCode": "DECLINED",
                                                   "errorMessage": "余额不足",
                                                   "variables": {"balance": {"value": 0, "type": "Integer"}}})
    assert response.status_code == 204, response.get_json()
    assert ext_engine.list_tasks(TaskQuery(instance_id=inst["id"]))[0]["element_id"] == "Activity_callPatient"
    assert ext_engine.get_instance(inst["id"])["variables"]["balance"] == 0


def test_long_polling_waits_and_wakes_early_without_spinning(rest, ext_engine, monkeypatch):
    service = ext_engine.external_tasks
    calls = []
    original = service._fetch_once

    def counted(*args, **kwargs):
        calls.append(time.monotonic())
        return original(*args, **kwargs)

    monkeypatch.setattr(service, "_fetch_once", counted)
    monkeypatch.setattr(service, "recheck_seconds", 10.0)  # so only the commit's signal can wake it early

    # nothing to do: the request waits out its timeout and answers an empty list
    began = time.monotonic()
    assert fetch(rest, asyncResponseTimeout=800) == []
    waited = time.monotonic() - began
    assert 0.75 <= waited < 3 and len(calls) <= 2, (waited, len(calls))

    # a task that appears while the worker waits wakes it at once
    calls.clear()
    answer = {}

    def poll():
        answer["tasks"] = fetch(rest, asyncResponseTimeout=20_000)
        answer["at"] = time.monotonic()

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.4)
    started_at = time.monotonic()
    inst = start_simple(ext_engine)
    poller.join(20)
    assert [t["processInstanceId"] for t in answer["tasks"]] == [inst["id"]]
    assert answer["at"] - started_at < 3
    assert len(calls) <= 3, len(calls)
