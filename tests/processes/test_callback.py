"""出院回访 (discharge_callback): the plan table sets when and who calls, and the patient is told by SMS
when the call will come; the call's outcome is recorded; a dissatisfied patient gets a linked
complaint, a clinical concern goes to the ward, an unreachable patient is retried a day apart and then
marked lost to follow-up (失访)."""

from __future__ import annotations

import pytest

from tests.processes.support import (
    advance_and_fire,
    advance_to,
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

DISCHARGE = {"patientName": "周淑英", "patientNo": "ZY20260211", "phone": "13566667777", "department": "内科",
             "ward": "内科二病区", "diagnosisGroup": "一般", "dischargeDate": "2026-03-02", "highRisk": False,
             "elderly": False, "attendingDoctor": "吴医生"}
FINE = {"reached": True, "recovery": "良好", "medicationOk": True, "followUpKnown": True, "satisfied": True,
        "satisfactionScore": 5, "clinicalConcern": False, "callNote": "恢复良好"}


def discharge(engine, key="HF-0001", **changes):
    """Discharge registered: the callback is planned and the SMS announcing it queued on a branch of
    its own (the callback only ends once it is sent: `send_sms`)."""
    return engine.start("discharge_callback", business_key=key, user="nurse",
                        variables={**DISCHARGE, **changes})["id"]


def call_day(engine, clock, iid):
    """Wait for the planned callback day and let the timer fire."""
    advance_to(engine, clock, shanghai(*_ymdhm(variables(engine, iid)["callbackDue"])))


def _ymdhm(text):
    from datetime import datetime

    moment = datetime.fromisoformat(text)
    return moment.year, moment.month, moment.day, moment.hour, moment.minute


def test_a_general_patient_is_called_a_week_after_discharge_by_the_service_center(hospital, clock):
    iid = discharge(hospital)
    v = variables(hospital, iid)
    assert (v["planDays"], v["callerGroup"], v["secondCall"]) == (7, "callback_team", False)
    assert v["callbackDue"] == iso(2026, 3, 9, 9, 0)
    assert open_elements(hospital, iid) == []  # waiting for the day
    # the announcing SMS is not sent here: the callback day comes all the same
    assert advance_and_fire(hospital, clock, days=7, minutes=-1) == 0
    advance_and_fire(hospital, clock, minutes=1)
    call = the_task(hospital, iid, "Activity_call")
    assert call["candidate_groups"] == ["callback_team"]
    assert call["due_at"] == shanghai(2026, 3, 9, 17, 30)  # by the end of that working day


@pytest.mark.parametrize("changes, days, caller, second", [
    ({"diagnosisGroup": "慢病"}, 14, "callback_team", True),
    ({"diagnosisGroup": "肿瘤", "department": "肿瘤科"}, 21, "callback_team", True),
    ({"diagnosisGroup": "术后", "department": "外科"}, 7, "ward_nurse", True),
    ({"highRisk": True}, 3, "ward_nurse", True),
])
def test_the_plan_table_sets_day_and_caller(hospital, clock, changes, days, caller, second):
    iid = discharge(hospital, **changes)
    v = variables(hospital, iid)
    assert (v["planDays"], v["callerGroup"], v["secondCall"]) == (days, caller, second)
    call_day(hospital, clock, iid)
    assert the_task(hospital, iid, "Activity_call")["candidate_groups"] == [caller]


def test_a_callback_day_in_the_national_day_holiday_moves_to_the_next_working_day(hospital):
    iid = discharge(hospital, dischargeDate="2026-09-28")  # + 7 days = 10-05, a holiday
    assert variables(hospital, iid)["callbackDue"] == iso(2026, 10, 8, 8, 0)


def test_the_patient_is_told_by_sms_when_the_call_will_come(hospital):
    iid = discharge(hospital)
    assert send_sms(hospital) == 1
    [sms] = outbox(hospital)
    assert (sms["template"], sms["status"], sms["recipient_masked"]) == ("callback_notice", "sent", "135****7777")
    assert sms["text"] == "周淑英您好，客服中心将于2026年3月9日前后致电回访您出院后的康复情况，请留意来电。"
    assert "Event_callbackNoticeSent" in path(hospital, iid)
    assert status(hospital, iid) == "active"  # waiting for the callback day


def test_reached_and_fine_is_recorded_for_the_satisfaction_figures(hospital, clock):
    iid = discharge(hospital)
    send_sms(hospital)
    call_day(hospital, clock, iid)
    complete(hospital, iid, "Activity_call", FINE, user="caller")
    assert status(hospital, iid) == "completed"
    v = variables(hospital, iid)
    assert (v["reached"], v["satisfied"], v["satisfactionScore"]) == (True, True, 5)
    assert v["callOutcome"] == "已接通，情况良好" and v["lostToFollowUp"] is False
    assert [entry["result"] for entry in v["callLog"]] == ["已接通，情况良好"]
    assert path(hospital, iid)[-1] == "Event_done"


def test_a_dissatisfied_patient_gets_a_complaint_linked_to_the_callback(hospital, clock):
    # the start page passes its businessKey field both as the business key and as a variable
    iid = discharge(hospital, key="HF-0002", businessKey="HF-0002")
    send_sms(hospital)
    call_day(hospital, clock, iid)
    complete(hospital, iid, "Activity_call", {**FINE, "satisfied": False, "satisfactionScore": 1,
                                              "complaintCategory": "服务态度",
                                              "complaintDescription": "出院结算时收费处态度恶劣"}, user="caller")
    assert status(hospital, iid) == "completed"
    assert "Event_throwComplaint" in path(hospital, iid)
    v = variables(hospital, iid)
    assert v["callOutcome"] == "不满意，已转投诉" and v["complaintNo"] == "TS-HF-0002"
    [child] = hospital.list_instances(process_key="complaint", parent_instance_id=iid)
    assert child["business_key"] == "TS-HF-0002"
    assert child["status"] == "active"
    info = hospital.get_instance(iid)
    assert [c["id"] for c in info["children"]] == [child["id"]]
    cv = variables(hospital, child["id"])
    assert (cv["category"], cv["description"], cv["channel"]) == ("服务态度", "出院结算时收费处态度恶劣", "出院回访")
    assert (cv["complainantName"], cv["complainantPhone"], cv["patientNo"]) == ("周淑英", "13566667777", "ZY20260211")
    assert cv["receivedBy"] == "caller"


def test_without_a_business_key_the_complaint_number_comes_from_patient_and_discharge_date(hospital, clock):
    iid = discharge(hospital, key=None)
    call_day(hospital, clock, iid)
    complete(hospital, iid, "Activity_call", {**FINE, "satisfied": False}, user="caller")
    [child] = hospital.list_instances(process_key="complaint", parent_instance_id=iid)
    assert child["business_key"] == "TS-HF-ZY20260211-20260302"
    assert variables(hospital, child["id"])["category"] == "其他"


def test_the_complaint_from_a_callback_starts_at_its_message_start_event(hospital, clock):
    iid = discharge(hospital, key="HF-0003")
    call_day(hospital, clock, iid)
    complete(hospital, iid, "Activity_call", {**FINE, "satisfied": False}, user="caller")
    [child] = hospital.list_instances(process_key="complaint", parent_instance_id=iid)
    assert path(hospital, child["id"])[0] == "StartEvent_fromCallback"
    assert open_elements(hospital, child["id"]) == ["Activity_completeRegistration"]


def test_a_clinical_concern_goes_to_the_wards_nurse(hospital, clock):
    iid = discharge(hospital)
    send_sms(hospital)
    call_day(hospital, clock, iid)
    complete(hospital, iid, "Activity_call", {**FINE, "clinicalConcern": True,
                                              "concernDescription": "下肢水肿加重"}, user="caller")
    follow = the_task(hospital, iid, "Activity_clinicalFollowUp")
    assert follow["candidate_groups"] == ["ward_nurse"] and follow["priority"] == 80
    assert "Event_done" in path(hospital, iid)  # the callback itself is finished
    assert status(hospital, iid) == "active"  # until the ward has followed up
    complete(hospital, iid, "Activity_clinicalFollowUp", {"clinicalAction": "嘱次日心内科门诊复诊",
                                                          "doctorInformed": True}, user="nurse")
    assert status(hospital, iid) == "completed"


def test_an_unreachable_patient_is_retried_a_day_apart_then_marked_lost(hospital, clock):
    iid = discharge(hospital)
    send_sms(hospital)
    call_day(hospital, clock, iid)
    for attempt in (1, 2):
        complete(hospital, iid, "Activity_call", {"reached": False, "callNote": "无人接听"}, user="caller")
        assert variables(hospital, iid)["attempts"] == attempt
        assert open_elements(hospital, iid) == []
        assert advance_and_fire(hospital, clock, hours=23) == 0
        advance_and_fire(hospital, clock, hours=1)
        assert open_elements(hospital, iid) == ["Activity_call"]
    complete(hospital, iid, "Activity_call", {"reached": False}, user="caller")
    assert status(hospital, iid) == "completed"
    assert path(hospital, iid)[-1] == "Event_lost"
    v = variables(hospital, iid)
    assert v["lostToFollowUp"] is True and v["callOutcome"] == "失访" and v["reached"] is False
    assert [entry["result"] for entry in v["callLog"]] == ["未接通"] * 3


def test_reached_on_a_retry_ends_normally(hospital, clock):
    iid = discharge(hospital)
    send_sms(hospital)
    call_day(hospital, clock, iid)
    complete(hospital, iid, "Activity_call", {"reached": False}, user="caller")
    advance_and_fire(hospital, clock, days=1)
    complete(hospital, iid, "Activity_call", FINE, user="caller")
    v = variables(hospital, iid)
    assert v["lostToFollowUp"] is False and v["attempts"] == 1
    assert status(hospital, iid) == "completed"


def test_critical_patients_get_a_second_call(hospital, clock):
    iid = discharge(hospital, diagnosisGroup="危重", department="急诊科")
    v = variables(hospital, iid)
    assert (v["planDays"], v["secondCallDays"]) == (3, 30)
    assert v["callbackDue"] == iso(2026, 3, 5, 9, 0)
    send_sms(hospital)
    call_day(hospital, clock, iid)
    assert the_task(hospital, iid, "Activity_call")["candidate_groups"] == ["ward_nurse"]
    complete(hospital, iid, "Activity_call", FINE, user="nurse")
    assert status(hospital, iid) == "active"
    v = variables(hospital, iid)
    assert v["callRound"] == 2 and v["callbackDue"] == iso(2026, 4, 1, 9, 0)  # 30 days after discharge
    assert v["satisfied"] is None  # the outcome of the first call does not carry over
    assert send_sms(hospital) == 1  # every round is announced
    first, second = (sms["text"] for sms in outbox(hospital, "callback_notice"))
    assert "将于2026年3月5日前后致电回访" in first and "将于2026年4月1日前后致电回访" in second
    call_day(hospital, clock, iid)
    complete(hospital, iid, "Activity_call", {**FINE, "satisfactionScore": 4}, user="nurse")
    assert status(hospital, iid) == "completed"
    assert [entry["round"] for entry in variables(hospital, iid)["callLog"]] == [1, 2]




def test_the_outcome_recorded_while_the_ward_follows_up_is_kept(hospital, clock):
    iid = discharge(hospital)
    call_day(hospital, clock, iid)
    complete(hospital, iid, "Activity_call", {**FINE, "clinicalConcern": True}, user="caller")
    complete(hospital, iid, "Activity_clinicalFollowUp", {"clinicalAction": "电话指导用药"}, user="nurse")
    v = variables(hospital, iid)
    assert v["callOutcome"] == "已接通，临床问题转病区" and len(v["callLog"]) == 1
    assert v["clinicalAction"] == "电话指导用药"
