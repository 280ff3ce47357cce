"""首问负责 (first_contact): the first staff member owns the request, answers on the spot or hands it
over to a colleague or unit that must accept; no silent drop, the owner closes the loop."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.processes.support import (
    advance_and_fire,
    complete,
    open_elements,
    path,
    status,
    the_task,
    variables,
)

REQUEST = {"requestType": "报告查询", "patientName": "陈明", "patientNo": "MZ0088", "contactPhone": "13700001111",
           "location": "门诊大厅前台", "description": "查询上周的CT报告为何还未出具"}


def open_request(engine, key="SW-0001", user="frontdesk", **changes):
    return engine.start("first_contact", business_key=key, user=user, variables={**REQUEST, **changes})["id"]


def chain(engine, iid):
    return [(link["action"], link["user"]) for link in variables(engine, iid)["ownerChain"]]


def hand_over(engine, iid, to=None, group=None):
    complete(engine, iid, "Activity_answer", {"handling": "移交他人或部门", "handoverTo": to, "handoverGroup": group,
                                              "handoverNote": "需影像科核实报告进度"}, user="frontdesk")


def test_the_first_staff_member_owns_the_request_and_answers_on_the_spot(hospital):
    iid = open_request(hospital)
    answer = the_task(hospital, iid, "Activity_answer")
    assert answer["assignee"] == "frontdesk" and answer["candidate_groups"] == []
    complete(hospital, iid, "Activity_answer", {"handling": "当场答复办结", "answer": "报告已出具，可自助机打印"})
    assert status(hospital, iid) == "completed"
    assert "Event_closed" in path(hospital, iid)
    v = variables(hospital, iid)
    assert v["owner"] == "frontdesk" and v["requestStatus"] == "已办结"
    assert chain(hospital, iid) == [("受理", "frontdesk"), ("办结", "frontdesk")]


def test_handover_to_a_named_colleague_who_accepts_resolves_and_the_owner_closes(hospital):
    iid = open_request(hospital)
    hand_over(hospital, iid, to="head")
    accept = the_task(hospital, iid, "Activity_accept")
    assert accept["assignee"] == "head"
    complete(hospital, iid, "Activity_accept", {"acceptDecision": "接收", "receiverName": "周医生"}, user="head")
    resolve = the_task(hospital, iid, "Activity_resolveHandover")
    assert resolve["assignee"] == "head"
    complete(hospital, iid, "Activity_resolveHandover", {"resolution": "报告已审核发出", "resolvedOk": True},
             user="head")
    confirm = the_task(hospital, iid, "Activity_confirm")
    assert confirm["assignee"] == "frontdesk"  # the owner hears the outcome and closes the loop
    complete(hospital, iid, "Activity_confirm", {"patientInformed": True, "patientSatisfied": True})
    assert status(hospital, iid) == "completed"
    assert chain(hospital, iid) == [("受理", "frontdesk"), ("移交待接收", "head"), ("已接收", "周医生"),
                                    ("办结", "frontdesk")]
    v = variables(hospital, iid)
    assert v["handoverCount"] == 1 and v["currentOwner"] == "周医生"


def test_handover_to_a_unit_is_offered_to_the_unit(hospital):
    iid = open_request(hospital)
    hand_over(hospital, iid, group="logistics")
    accept = the_task(hospital, iid, "Activity_accept")
    assert accept["assignee"] is None and accept["candidate_groups"] == ["logistics"]


def test_a_rejected_handover_returns_to_the_owner_with_the_reason(hospital):
    iid = open_request(hospital)
    hand_over(hospital, iid, group="finance")
    complete(hospital, iid, "Activity_accept", {"acceptDecision": "拒绝", "rejectReason": "非收费问题，应由影像科处理"},
             user="finance")
    answer = the_task(hospital, iid, "Activity_answer")
    assert answer["assignee"] == "frontdesk"
    assert chain(hospital, iid)[-1] == ("拒绝接收，退回", "frontdesk")
    assert variables(hospital, iid)["ownerChain"][-1]["note"] == "非收费问题，应由影像科处理"
    # the owner hands it over again, this time it is accepted
    hand_over(hospital, iid, to="head")
    complete(hospital, iid, "Activity_accept", {"acceptDecision": "接收"}, user="head")
    assert open_elements(hospital, iid) == ["Activity_resolveHandover"]
    assert variables(hospital, iid)["handoverCount"] == 2


def test_a_handover_nobody_accepts_in_time_escalates_to_the_dispatcher(hospital, clock):
    iid = open_request(hospital, handoverMinutes=10)
    hand_over(hospital, iid, group="logistics")
    assert the_task(hospital, iid, "Activity_accept")["due_at"] == clock.now() + timedelta(minutes=10)
    assert advance_and_fire(hospital, clock, minutes=9) == 0
    assert open_elements(hospital, iid) == ["Activity_accept"]
    advance_and_fire(hospital, clock, minutes=2)
    dispatch = the_task(hospital, iid, "Activity_dispatch")
    assert dispatch["candidate_groups"] == ["dispatcher"]
    assert open_elements(hospital, iid) == ["Activity_dispatch"]  # the unaccepted handover is withdrawn
    assert chain(hospital, iid)[-1] == ("超时未接收，升级调度", "dispatcher")
    complete(hospital, iid, "Activity_dispatch", {"handoverTo": "logistics", "handoverNote": "请冯师傅接收"},
             user="dispatcher")
    accept = the_task(hospital, iid, "Activity_accept")
    assert accept["assignee"] == "logistics" and accept["candidate_groups"] == []
    assert chain(hospital, iid)[-1] == ("移交待接收", "logistics")


def test_the_handover_time_limit_defaults_to_30_minutes(hospital, clock):
    iid = open_request(hospital)
    hand_over(hospital, iid, to="head")
    assert advance_and_fire(hospital, clock, minutes=29) == 0
    advance_and_fire(hospital, clock, minutes=2)
    assert open_elements(hospital, iid) == ["Activity_dispatch"]


def test_a_handover_naming_nobody_goes_to_the_dispatcher(hospital):
    iid = open_request(hospital)
    hand_over(hospital, iid)
    assert the_task(hospital, iid, "Activity_accept")["candidate_groups"] == ["dispatcher"]


def test_a_request_without_an_owner_is_offered_to_the_front_desk(hospital):
    iid = hospital.start("first_contact", business_key="SW-API", variables=REQUEST)["id"]
    answer = the_task(hospital, iid, "Activity_answer")
    assert answer["assignee"] is None and answer["candidate_groups"] == ["front_desk"]


@pytest.mark.parametrize("category, department", [("服务态度", "急诊科"), (None, None)])
def test_a_complaint_at_the_desk_starts_a_linked_complaint(hospital, category, department):
    iid = open_request(hospital, key="SW-0002", requestType="投诉", description="急诊候诊3小时无人理会，护士态度差",
                       businessKey="SW-0002", complaintCategory=category, department=department)
    assert status(hospital, iid) == "completed"
    assert "Event_complaintHandedOver" in path(hospital, iid)
    assert chain(hospital, iid)[-1] == ("移交投诉办", "complaint_office")
    [child] = hospital.list_instances(process_key="complaint", parent_instance_id=iid)
    assert child["business_key"] == "TS-SW-0002"
    v = variables(hospital, child["id"])
    assert v["channel"] == "首问转办" and v["complainantName"] == "陈明"
    assert v["category"] == (category or "其他") and v["department"] == (department or "其他")
    assert v["receivedBy"] == "frontdesk"


def test_the_complaint_office_completes_the_registration_of_a_desk_complaint(hospital):
    iid = open_request(hospital, key="SW-0003", requestType="投诉", businessKey="SW-0003")
    [child] = hospital.list_instances(process_key="complaint", parent_instance_id=iid)
    assert open_elements(hospital, child["id"]) == ["Activity_completeRegistration"]
