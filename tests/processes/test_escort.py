"""陪检与病人运送 (escort_request): dispatch proposal by table, the dispatcher assigns an escort who is
told by SMS, pickup on time or escalation, incidents reported at once to dispatcher and ward,
cancellation by the ward, billing recorded."""

from __future__ import annotations

import pytest

from engine.errors import NotFound
from engine.identity import IdentityService
from tests.processes.support import (
    advance_and_fire,
    complete,
    iso,
    open_elements,
    outbox,
    path,
    send_sms,
    shanghai,
    status,
    the_task,
    variables,
)

REQUEST = {"patientName": "孙桂芳", "patientNo": "ZY20260288", "ward": "心内科一病区", "bedNo": "12",
           "destination": "影像科", "destinationRoom": "CT2室", "mobility": "轮椅", "oxygen": True,
           "drips": False, "isolation": False, "urgency": "普通", "wardPhone": "6021"}


def request(engine, key="PJ-0001", **changes):
    return engine.start("escort_request", business_key=key, user="nurse", variables={**REQUEST, **changes})["id"]


def assign(engine, iid, escort="escort"):
    """The dispatcher assigns an escort; the assignment SMS to the escort is queued on a branch of its
    own (the instance only ends once it is sent: `send_sms`)."""
    complete(engine, iid, "Activity_assign", {"escortUser": escort, "escortName": "孙伟"}, user="dispatcher")


def pick_up(engine, iid):
    complete(engine, iid, "Activity_pickup", {"identityChecked": True, "tubesChecked": True})


def transport(engine, iid, **values):
    complete(engine, iid, "Activity_transport", {"delivered": True, "incident": False, "needReturn": False,
                                                 **values})


def test_the_dispatch_table_proposes_team_priority_and_pickup_deadline(hospital):
    iid = request(hospital, urgency="紧急", mobility="担架")
    v = variables(hospital, iid)
    assert (v["escortGroup"], v["dispatchPriority"], v["pickupMinutes"]) == ("担架队", 100, 10)
    assert v["pickupDue"] == iso(2026, 3, 2, 9, 10)
    assert v["dutyShift"] == "early"
    assert "shift" not in v  # the table's input parameter does not leak into the process
    task = the_task(hospital, iid, "Activity_assign")
    assert task["candidate_groups"] == ["dispatcher"]
    assert (task["priority"], task["due_at"]) == (100, shanghai(2026, 3, 2, 9, 10))


def test_urgent_requests_jump_the_dispatchers_queue(hospital):
    request(hospital, "PJ-1")
    request(hospital, "PJ-2", urgency="紧急")
    request(hospital, "PJ-3", urgency="加急")
    queue = hospital.list_tasks(candidate_groups=["dispatcher"], sort="priority")
    assert [t["business_key"] for t in queue] == ["PJ-2", "PJ-3", "PJ-1"]


def test_at_night_the_shift_on_duty_decides_the_team(hospital, clock):
    clock.advance(hours=14, minutes=30)  # 23:30, 夜班
    iid = request(hospital, urgency="加急", mobility="轮椅")
    v = variables(hospital, iid)
    assert (v["dutyShift"], v["escortGroup"], v["pickupMinutes"]) == ("night", "急诊组", 20)


def test_a_booked_time_gives_until_15_minutes_before_it(hospital):
    iid = request(hospital, timeNeeded="2026-03-02T14:00:00+08:00")
    assert variables(hospital, iid)["pickupDue"] == iso(2026, 3, 2, 13, 45)


def test_the_dispatcher_assigns_an_escort_who_picks_up_delivers_and_returns_the_patient(hospital):
    iid = request(hospital)
    assign(hospital, iid, escort="escort")
    send_sms(hospital)
    pickup = the_task(hospital, iid, "Activity_pickup")
    assert pickup["assignee"] == "escort"
    pick_up(hospital, iid)
    assert the_task(hospital, iid, "Activity_transport")["assignee"] == "escort"
    transport(hospital, iid, needReturn=True)
    assert the_task(hospital, iid, "Activity_return")["assignee"] == "escort"
    complete(hospital, iid, "Activity_return", {"returnedSafely": True, "returnNote": "已与责任护士交接"})
    assert status(hospital, iid) == "completed"
    v = variables(hospital, iid)
    assert (v["billable"], v["billingItem"]) == (True, "轮椅陪检")
    taken = path(hospital, iid)
    assert "Activity_return" in taken and "Activity_incidentDispatcher" not in taken
    assert taken[-1] == "Event_completed"


@pytest.mark.parametrize("mobility, billable, item", [
    ("步行", False, "步行陪检（免费）"), ("平车", True, "平车转运"), ("担架", True, "担架转运")])
def test_what_is_billable_is_recorded(hospital, mobility, billable, item):
    iid = request(hospital, mobility=mobility)
    assign(hospital, iid)
    send_sms(hospital)
    pick_up(hospital, iid)
    transport(hospital, iid)
    assert status(hospital, iid) == "completed"
    assert "Activity_return" not in path(hospital, iid)
    v = variables(hospital, iid)
    assert (v["billable"], v["billingItem"]) == (billable, item)


def test_an_undelivered_transport_is_not_billed(hospital):
    iid = request(hospital, mobility="平车")
    assign(hospital, iid)
    pick_up(hospital, iid)
    transport(hospital, iid, delivered=False, needReturn=True)
    complete(hospital, iid, "Activity_return", {"returnedSafely": True})
    v = variables(hospital, iid)
    assert (v["billable"], v["billingItem"]) == (False, "未完成转运，不计费")


def test_an_incident_is_reported_at_once_to_the_dispatcher_and_the_ward(hospital):
    iid = request(hospital)
    assign(hospital, iid)
    send_sms(hospital)
    pick_up(hospital, iid)
    transport(hospital, iid, incident=True, incidentType="管路脱落", incidentDescription="输液管在电梯口脱出",
              needReturn=True)
    assert open_elements(hospital, iid) == ["Activity_incidentDispatcher", "Activity_incidentWard"]
    dispatcher = the_task(hospital, iid, "Activity_incidentDispatcher")
    ward = the_task(hospital, iid, "Activity_incidentWard")
    assert dispatcher["candidate_groups"] == ["dispatcher"] and ward["candidate_groups"] == ["ward_nurse"]
    assert dispatcher["priority"] == ward["priority"] == 100
    complete(hospital, iid, "Activity_incidentWard", {"wardAction": "护士到场重新置管", "adverseEventReported": True},
             user="nurse")
    assert open_elements(hospital, iid) == ["Activity_incidentDispatcher"]  # both must act (parallel join)
    complete(hospital, iid, "Activity_incidentDispatcher", {"dispatcherAction": "通知影像科顺延检查"},
             user="dispatcher")
    assert open_elements(hospital, iid) == ["Activity_return"]
    complete(hospital, iid, "Activity_return", {"returnedSafely": True})
    assert status(hospital, iid) == "completed"
    assert variables(hospital, iid)["incidentType"] == "管路脱落"


@pytest.mark.parametrize("stage", ["before dispatch", "before pickup"])
def test_the_ward_cancels_by_message_correlated_by_business_key(hospital, stage):
    iid = request(hospital, "PJ-CANCEL")
    other = request(hospital, "PJ-OTHER")
    if stage == "before pickup":
        assign(hospital, iid)
        send_sms(hospital)  # the escort has been told already
    hospital.correlate_message("escort_cancelled", business_key="PJ-CANCEL",
                               variables={"cancelReason": "患者检查改期"})
    assert status(hospital, iid) == "completed"
    assert open_elements(hospital, iid) == []
    assert path(hospital, iid)[-1] == "Event_cancelled"
    v = variables(hospital, iid)
    assert v["cancelled"] is True and v["cancelReason"] == "患者检查改期"
    assert (v["billable"], v["billingItem"]) == (False, "申请已取消，不计费")
    assert open_elements(hospital, other) == ["Activity_assign"]  # the other request is untouched


def test_the_escort_gets_the_job_by_sms_and_the_pickup_does_not_wait_for_it(hospital):
    iid = request(hospital)
    assign(hospital, iid, escort="escort")
    assert open_elements(hospital, iid) == ["Activity_pickup"]  # already the escort's task, SMS or not
    assert send_sms(hospital) == 1
    [sms] = outbox(hospital)
    assert (sms["template"], sms["status"], sms["business_key"]) == ("escort_assigned", "sent", "PJ-0001")
    assert sms["recipient_masked"] == "139****0003"  # the escort's mobile number on file, masked
    assert sms["text"] == "陪检任务：心内科一病区12床 孙桂芳，请于3月2日 10:00前接到患者，送至影像科。"
    assert send_sms(hospital) == 0  # once
    assert "Event_escortSmsSent" in path(hospital, iid)


def test_an_escort_without_a_mobile_number_on_file_is_an_incident_not_a_stop(hospital):
    iid = request(hospital)
    assign(hospital, iid, escort="temp01")  # a stand-in who is not in the staff directory
    send_sms(hospital)
    [incident] = hospital.external_tasks.query_incidents()[0]
    assert incident["instance_id"] == iid and "temp01" in incident["message"]  # for the administrator
    assert outbox(hospital) == []
    pick_up(hospital, iid)
    transport(hospital, iid)
    assert "Event_completed" in path(hospital, iid)  # the transport itself is done and billed
    assert variables(hospital, iid)["billable"] is True
    assert status(hospital, iid) == "active"  # until the SMS incident is resolved:
    IdentityService(hospital).create_demo_user("temp01", "临时陪检员 马强", ["escort"], phone="13922220004")
    hospital.external_tasks.retry_incident(incident["id"], user="admin")  # the number is on file now
    assert send_sms(hospital) == 1
    assert [sms["recipient_masked"] for sms in outbox(hospital)] == ["139****0004"]
    assert status(hospital, iid) == "completed"


def test_once_the_patient_is_on_the_way_the_request_cannot_be_cancelled(hospital):
    iid = request(hospital, "PJ-ONWAY")
    assign(hospital, iid)
    pick_up(hospital, iid)
    with pytest.raises(NotFound):
        hospital.correlate_message("escort_cancelled", business_key="PJ-ONWAY")
    assert open_elements(hospital, iid) == ["Activity_transport"]


def test_a_pickup_not_done_in_time_escalates_to_the_dispatcher(hospital, clock):
    iid = request(hospital, urgency="加急", mobility="轮椅")  # 20 minutes
    assign(hospital, iid)
    send_sms(hospital)
    assert advance_and_fire(hospital, clock, minutes=19) == 0
    advance_and_fire(hospital, clock, minutes=2)
    overdue = the_task(hospital, iid, "Activity_pickupOverdue")
    assert overdue["candidate_groups"] == ["dispatcher"] and overdue["priority"] == 90
    assert the_task(hospital, iid, "Activity_pickup")["sla_state"] == "overdue"  # still the escort's task
    complete(hospital, iid, "Activity_pickupOverdue", {"overdueAction": "催促陪检员"}, user="dispatcher")
    pick_up(hospital, iid)
    transport(hospital, iid)
    assert status(hospital, iid) == "completed"
