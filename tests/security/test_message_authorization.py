"""Message correlation is authorized like any command on an instance: a caller reaches only the
instances they may act on, and "not allowed" answers exactly like "no such instance"."""

from __future__ import annotations

import pytest

from tests.conftest import fixture_bytes
from tests.rest.conftest import DIRECTOR, FINANCE, FRONTDESK

BASE = "/engine-rest"


def declared(sender: str) -> bytes:
    """report_lookup whose message catch event names `sender` among its message senders."""
    return fixture_bytes("bpmn", "wait_message.bpmn").replace(
        b'<bpmn:intermediateCatchEvent id="WaitReport" name="\xe7\xad\x89\xe5\xbe\x85\xe6\x8a\xa5\xe5\x91\x8a\xe5\x87\xba\xe5\x85\xb7">',
        b'<bpmn:intermediateCatchEvent id="WaitReport" name="waiting"><bpmn:extensionElements><camunda:properties>'
        b'<camunda:property name="message.senders" value="' + sender.encode() + b'" /></camunda:properties>'
        b'</bpmn:extensionElements>')


@pytest.fixture
def waiting(engine):
    engine.deploy([("wait_message.bpmn", fixture_bytes("bpmn", "wait_message.bpmn"))], name="report", user="owner")
    return engine.start("report_lookup", business_key="RP-1", user="frontdesk",
                        variables={"reportNo": "R-77", "patientPhone": "13912345678"})


def correlate(client, headers, **body):
    return client.post(f"{BASE}/message", headers=headers, json={"messageName": "report_ready", **body})


def still_waiting(engine, instance_id) -> bool:
    return "WaitReport" in [a["element_id"] for a in engine.get_instance(instance_id)["active"]]


@pytest.mark.parametrize("selector", [
    {"businessKey": "RP-1"},
    {"correlationKeys": {"reportNo": {"value": "R-77", "type": "String"}}},
    {"businessKey": "RP-1", "all": True},
    {"businessKey": "RP-1", "resultEnabled": True, "variablesInResultEnabled": True,
     "processVariables": {"reportNo": {"value": "FORGED", "type": "String"}}},
])
def test_an_outsider_cannot_deliver_read_or_overwrite(client, engine, waiting, selector):
    refused = correlate(client, FINANCE, **selector)
    assert refused.status_code == 400
    assert "13912345678" not in refused.get_data(as_text=True)
    assert still_waiting(engine, waiting["id"])
    assert engine.get_variables(waiting["id"])["reportNo"]["value"] == "R-77"
    assert [h for h in engine.get_instance(waiting["id"])["history"] if h["action"] == "message"] == []


def test_not_allowed_answers_exactly_like_no_such_instance(client, waiting):
    """A patient number's existence does not leak: same status, same body."""
    hidden = correlate(client, FINANCE, businessKey="RP-1")
    missing = correlate(client, FINANCE, businessKey="RP-404")
    assert hidden.status_code == missing.status_code == 400
    assert hidden.json["message"].replace("RP-1", "X") == missing.json["message"].replace("RP-404", "X")
    by_key = correlate(client, FINANCE, correlationKeys={"reportNo": {"value": "R-77", "type": "String"}})
    by_missing_key = correlate(client, FINANCE, correlationKeys={"reportNo": {"value": "R-78", "type": "String"}})
    assert by_key.status_code == by_missing_key.status_code == 400
    assert by_key.json == by_missing_key.json


def test_the_starter_and_the_director_may_deliver(client, engine, waiting):
    delivered = correlate(client, FRONTDESK, businessKey="RP-1", resultEnabled=True, variablesInResultEnabled=True)
    assert delivered.status_code == 200, delivered.json
    assert delivered.json[0]["variables"]["reportNo"]["value"] == "R-77"
    assert not still_waiting(engine, waiting["id"])
    other = engine.start("report_lookup", business_key="RP-2", user="frontdesk")
    assert correlate(client, DIRECTOR, businessKey="RP-2").status_code == 204
    assert not still_waiting(engine, other["id"])


def test_all_reaches_only_the_callers_instances(client, engine, waiting):
    theirs = engine.start("report_lookup", business_key="RP-N", user="nurse")
    response = correlate(client, FRONTDESK, all=True, resultEnabled=True)
    assert response.status_code == 200
    assert [r["execution"]["processInstanceId"] for r in response.json] == [waiting["id"]]
    assert still_waiting(engine, theirs["id"])


def test_ambiguity_is_judged_among_reachable_instances_only(client, engine, waiting):
    engine.start("report_lookup", business_key="RP-N", user="nurse", variables={"reportNo": "R-77"})
    # two instances wait for R-77, but frontdesk reaches one: no ambiguity, no hint of the other
    response = correlate(client, FRONTDESK, correlationKeys={"reportNo": {"value": "R-77", "type": "String"}})
    assert response.status_code == 204
    assert not still_waiting(engine, waiting["id"])


def test_a_process_may_declare_senders(client, engine):
    engine.deploy([("wait_message.bpmn", declared("finance"))], name="report", user="owner")
    started = engine.start("report_lookup", business_key="RP-7", user="frontdesk", variables={"secret": "x"})
    response = correlate(client, FINANCE, businessKey="RP-7", resultEnabled=True, variablesInResultEnabled=True)
    assert response.status_code == 200, response.json
    assert not still_waiting(engine, started["id"])
    assert response.json[0]["variables"] == {}  # delivered, but finance may not read the case
    # a sender named in another process's declaration gains nothing here
    engine.deploy([("wait_message.bpmn", declared("logistics"))], name="report", user="owner")
    again = engine.start("report_lookup", business_key="RP-8", user="frontdesk")
    assert correlate(client, FINANCE, businessKey="RP-8").status_code == 400
    assert still_waiting(engine, again["id"])


def test_api_v1_messages_follow_the_same_rule(client, engine, waiting):
    api = "/api/v1/messages"
    hidden = client.post(api, headers=FINANCE, json={"message_name": "report_ready", "business_key": "RP-1"})
    missing = client.post(api, headers=FINANCE, json={"message_name": "report_ready", "business_key": "RP-404"})
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json["message"].replace("RP-1", "X") == missing.json["message"].replace("RP-404", "X")
    assert still_waiting(engine, waiting["id"])
    delivered = client.post(api, headers=FRONTDESK, json={"message_name": "report_ready", "business_key": "RP-1",
                                                          "variables": {"pages": 3}})
    assert delivered.status_code == 200, delivered.json
    assert delivered.json[0]["instance"]["business_key"] == "RP-1"
    assert engine.get_variables(waiting["id"])["pages"]["value"] == 3
    bad = client.post(api, headers=FRONTDESK, json={"message_name": "", "business_key": 5})
    assert bad.status_code == 422 or bad.status_code == 400
