"""投诉处理 (complaint): receive → tier → route → investigate → resolve → follow up, with the national
feedback deadlines, escalation of overdue steps and the "not handled but answered" branch; the
complainant gets a receipt SMS on acceptance and the director an SMS when an investigation is
escalated to the director (parallel branches: an SMS never holds up staff or deadlines)."""

from __future__ import annotations

from datetime import datetime

import pytest

from engine.notify import GatewayError, NotifyWorker
from engine.service import TaskQuery
from tests.processes.support import (
    SHANGHAI,
    WORKFLOWS,
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

REGISTRATION = {
    "complainantName": "王秀兰", "complainantPhone": "13812345678", "relation": "家属",
    "patientName": "李建国", "patientNo": "ZY20260301", "department": "内科", "category": "服务态度",
    "description": "夜班护士态度生硬，呼叫铃长时间无人应答", "demand": "希望科室道歉并改进",
    "channel": "电话", "multiDepartment": False, "safetyRisk": False, "medicalDispute": False,
    "patientCondition": "平稳",
}
INVESTIGATION = {"facts": "核实呼叫铃记录，夜班应答延迟约12分钟", "complaintFounded": "属实",
                 "responsibleUnit": "内科护理单元", "responsiblePerson": "当班护士",
                 "proposedMeasures": "约谈当班护士，调整夜班人力"}
RESOLUTION = {"measuresTaken": "科室道歉，夜班增加一名护士", "feedbackContent": "已电话告知处理结果",
              "feedbackChannel": "电话", "feedbackGiven": True}


def register(engine, key="TS-2026-0001", user="complaints", **changes):
    inst = engine.start("complaint", business_key=key, user=user, variables={**REGISTRATION, **changes})
    return inst["id"]


def accept(engine, iid):
    """The complaint office accepts: the investigation starts and the receipt SMS to the complainant
    is queued on a branch of its own (the case only closes once it is sent: `send_sms`)."""
    complete(engine, iid, "Activity_review", {"acceptDecision": "受理", "firstResponseNote": "已致电投诉人"},
             user="complaints")


def follow_up(engine, iid, satisfied: bool):
    complete(engine, iid, "Activity_followUp", {
        "problemSolved": satisfied, "complainantSatisfied": satisfied, "satisfactionScore": 5 if satisfied else 2,
        "improvementProblem": "夜班呼叫铃应答慢", "improvementUnit": "护理部",
        "improvementMeasure": "夜班弹性排班", "improvementDeadline": "2026-04-01"}, user="complaints")


# -- registration, tier and deadlines --------------------------------------------------------------

def test_tier_and_deadlines_are_process_variables_right_after_registration(hospital):
    iid = register(hospital, safetyRisk=True, category="诊疗效果", department="外科",
                   description="术后伤口出血，值班医生未及时处理")
    v = variables(hospital, iid)
    assert v["tier"] == "一级"
    assert v["receivedAt"] == iso(2026, 3, 2, 9, 0)  # defaulted to the time of registration
    assert v["receivedBy"] == "complaints"  # camunda:initiator
    assert v["firstResponseDue"] == iso(2026, 3, 2, 9, 30)  # 30 minutes
    assert v["resolutionDue"] == iso(2026, 3, 3, 9, 0)  # 24 hours
    assert v["feedbackDue"] == iso(2026, 3, 9, 17, 30)  # 5 working days
    assert v["escalationDue"] == iso(2026, 3, 3, 11, 0)  # 2 hours after the resolution deadline
    assert v["routing"]["responsibleGroup"] == "medical_affairs"
    review = the_task(hospital, iid, "Activity_review")
    assert review["candidate_groups"] == ["complaint_office"]
    assert review["due_at"] == shanghai(2026, 3, 2, 9, 30)
    assert review["priority"] == 90


def test_a_normal_complaint_gets_two_hours_and_one_working_day(hospital):
    iid = register(hospital, category="收费争议", department="收费处")
    v = variables(hospital, iid)
    assert v["tier"] == "二级"
    assert (v["firstResponseDue"], v["resolutionDue"], v["escalationDue"]) == (
        iso(2026, 3, 2, 11, 0), iso(2026, 3, 3, 17, 30), iso(2026, 3, 4, 17, 30))
    assert the_task(hospital, iid, "Activity_review")["priority"] == 60


def test_a_suggestion_gets_one_working_day_and_an_improvement_plan_in_five(hospital):
    iid = register(hospital, category="环境设施", department="门诊部", description="门诊候诊区座椅太少")
    v = variables(hospital, iid)
    assert v["tier"] == "三级"
    assert v["firstResponseDue"] == iso(2026, 3, 3, 17, 30)
    assert v["resolutionDue"] == v["feedbackDue"] == iso(2026, 3, 9, 17, 30)


@pytest.mark.parametrize("several_departments, due", [
    (False, iso(2026, 10, 13, 17, 30)),  # 5 working days: National Day skipped, make-up Sat 10-10 counts
    (True, iso(2026, 10, 20, 17, 30)),   # 10 working days
])
def test_feedback_deadline_counts_working_days_across_national_day(hospital, several_departments, due):
    iid = register(hospital, receivedAt="2026-09-30T10:00:00+08:00", multiDepartment=several_departments)
    assert variables(hospital, iid)["feedbackDue"] == due


def test_a_region_with_stricter_limits_edits_the_table(hospital):
    source = (WORKFLOWS / "dmn" / "complaint_deadlines.dmn").read_text(encoding="utf-8")
    stricter = (source.replace("<text>5</text>\n        </outputEntry>", "<text>3</text>\n        </outputEntry>")
                .replace("<text>10</text>", "<text>5</text>"))
    assert stricter != source
    hospital.deploy([("complaint_deadlines.dmn", stricter.encode())], name="地方规定")
    single = register(hospital, "TS-A", receivedAt="2026-09-30T10:00:00+08:00")
    several = register(hospital, "TS-B", receivedAt="2026-09-30T10:00:00+08:00", multiDepartment=True)
    assert variables(hospital, single)["feedbackDue"] == iso(2026, 10, 10, 17, 30)  # 3: the make-up Saturday
    assert variables(hospital, several)["feedbackDue"] == iso(2026, 10, 13, 17, 30)  # 5


# -- routing and the immediate task for medical affairs ---------------------------------------------

@pytest.mark.parametrize("category, department, changes, groups", [
    ("服务态度", "内科", {}, ["dept_head", "nursing"]),
    ("服务态度", "收费处", {}, ["finance"]),
    ("诊疗效果", "外科", {}, ["medical_affairs", "dept_head"]),
    ("收费争议", "门诊部", {}, ["finance"]),
    ("报告时效", "检验科", {}, ["dept_head"]),
    ("环境设施", "后勤保障部", {}, ["logistics"]),
    ("其他", "其他", {}, ["complaint_office"]),
    ("收费争议", "门诊部", {"medicalDispute": True}, ["finance", "dept_head"]),  # 一级: the head leads
])
def test_investigation_goes_to_the_unit_the_routing_table_names(hospital, category, department, changes, groups):
    iid = register(hospital, category=category, department=department, **changes)
    accept(hospital, iid)
    investigate = the_task(hospital, iid, "Activity_investigate")
    assert investigate["candidate_groups"] == groups
    assert investigate["due_at"] == datetime.fromisoformat(variables(hospital, iid)["resolutionDue"])


@pytest.mark.parametrize("safety, dispute, immediate", [
    (True, False, True), (False, True, True), (True, True, True), (False, False, False)])
def test_safety_or_dispute_raises_an_immediate_task_for_medical_affairs(hospital, safety, dispute, immediate):
    iid = register(hospital, safetyRisk=safety, medicalDispute=dispute)
    expected = ["Activity_medicalAffairs", "Activity_review"] if immediate else ["Activity_review"]
    assert open_elements(hospital, iid) == expected
    if immediate:
        task = the_task(hospital, iid, "Activity_medicalAffairs")
        assert task["candidate_groups"] == ["medical_affairs"] and task["priority"] == 95
        assert task["due_at"] == shanghai(2026, 3, 2, 9, 30)
        complete(hospital, iid, "Activity_medicalAffairs", {
            "immediateMeasures": "通知外科二线止血", "routesExplained": True}, user="medical")
        assert open_elements(hospital, iid) == ["Activity_review"]  # the complaint itself goes on


# -- paths ---------------------------------------------------------------------------------------

def test_accepted_complaint_is_investigated_resolved_followed_up_and_closed(hospital):
    iid = register(hospital)
    accept(hospital, iid)
    send_sms(hospital)
    complete(hospital, iid, "Activity_investigate", INVESTIGATION, user="head")
    complete(hospital, iid, "Activity_resolve", RESOLUTION, user="complaints")
    follow_up(hospital, iid, satisfied=True)
    assert status(hospital, iid) == "completed"
    taken = path(hospital, iid)
    for element in ("StartEvent_1", "Activity_initCase", "Activity_tier", "Activity_routing", "Activity_deadlines",
                    "Activity_feedbackDeadline", "Activity_computeDue", "Activity_review", "Activity_investigate",
                    "Activity_resolve", "Activity_followUp", "Event_closed", "Event_receiptSmsSent"):
        assert element in taken
    assert "Activity_notHandled" not in taken and "Activity_medicalAffairs" not in taken
    v = variables(hospital, iid)
    assert v["complainantSatisfied"] is True and v["reopenCount"] == 0
    assert v["improvementDeadline"] == "2026-04-01" and v["complaintFounded"] == "属实"
    # storage budget: a finished complaint keeps at most 8 KB of engine state
    assert hospital.get_instance(iid)["state_bytes"] <= 8 * 1024


@pytest.mark.parametrize("reason", ["已向人民法院起诉", "已申请医疗纠纷人民调解", "已由卫生健康行政部门或信访部门处理",
                                    "无明确投诉对象或事实", "涉及治安或刑事案件"])
def test_not_handled_but_answered_tells_the_complainant_why_and_where_to_turn(hospital, reason):
    iid = register(hospital)
    complete(hospital, iid, "Activity_review", {"acceptDecision": "不予处理", "notHandledReason": reason,
                                                "firstResponseNote": "已联系投诉人"}, user="complaints")
    notice = the_task(hospital, iid, "Activity_notHandled")
    assert notice["candidate_groups"] == ["complaint_office"]
    complete(hospital, iid, "Activity_notHandled", {
        "explanation": "该事项已进入司法或行政程序，本院不再受理", "referredTo": "人民法院/医疗纠纷人民调解委员会",
        "notifyChannel": "电话"}, user="complaints")
    assert status(hospital, iid) == "completed"
    taken = path(hospital, iid)
    assert "Event_notHandled" in taken and "Activity_investigate" not in taken
    assert send_sms(hospital) == 0  # no receipt SMS: the complainant was told in person
    assert variables(hospital, iid)["notHandledReason"] == reason


def test_unsatisfied_complainant_reopens_twice_then_the_director_reviews(hospital, clock):
    iid = register(hospital)
    accept(hospital, iid)
    send_sms(hospital)
    for round_ in (1, 2):
        complete(hospital, iid, "Activity_investigate", INVESTIGATION, user="head")
        complete(hospital, iid, "Activity_resolve", RESOLUTION, user="complaints")
        clock.advance(hours=1)
        follow_up(hospital, iid, satisfied=False)
        v = variables(hospital, iid)
        assert v["reopenCount"] == round_
        assert open_elements(hospital, iid) == ["Activity_investigate"]
        # deadlines run again from the reopening (二级: end of the next working day)
        assert v["reopenedAt"] == clock.now().astimezone(SHANGHAI).isoformat()
        assert v["resolutionDue"] == iso(2026, 3, 3, 17, 30)
    complete(hospital, iid, "Activity_investigate", INVESTIGATION, user="head")
    complete(hospital, iid, "Activity_resolve", RESOLUTION, user="complaints")
    follow_up(hospital, iid, satisfied=False)
    assert variables(hospital, iid)["reopenCount"] == 2
    review = the_task(hospital, iid, "Activity_directorReview")
    assert review["candidate_groups"] == ["director"]
    complete(hospital, iid, "Activity_directorReview", {"directorDecision": "维持处理结果，建议申请人民调解",
                                                        "furtherRoute": "人民调解"}, user="director")
    assert status(hospital, iid) == "completed"
    assert "Event_directorClosed" in path(hospital, iid)
    assert len(outbox(hospital, "complaint_receipt")) == 1  # a reopened case is not acknowledged again


def test_the_reopen_limit_is_a_variable(hospital):
    iid = register(hospital, maxReopens=0)
    accept(hospital, iid)
    complete(hospital, iid, "Activity_investigate", INVESTIGATION, user="head")
    complete(hospital, iid, "Activity_resolve", RESOLUTION, user="complaints")
    follow_up(hospital, iid, satisfied=False)
    assert open_elements(hospital, iid) == ["Activity_directorReview"]


# -- escalation of overdue steps (超时自动预警) -------------------------------------------------------

def test_first_response_overdue_warns_the_director_and_the_task_stays(hospital, clock):
    iid = register(hospital, safetyRisk=True)
    assert advance_and_fire(hospital, clock, minutes=29) == 0
    assert "Activity_firstResponseEscalation" not in open_elements(hospital, iid)
    advance_and_fire(hospital, clock, minutes=2)  # 09:31, the 30 minutes are over
    escalation = the_task(hospital, iid, "Activity_firstResponseEscalation")
    assert escalation["candidate_groups"] == ["director"]
    assert the_task(hospital, iid, "Activity_review")["sla_state"] == "overdue"
    complete(hospital, iid, "Activity_firstResponseEscalation", {"supervisionNote": "立即联系投诉人"},
             user="director")
    accept(hospital, iid)
    assert "Activity_investigate" in open_elements(hospital, iid)


def test_overdue_investigation_goes_to_the_department_head_then_to_the_director(hospital, clock):
    iid = register(hospital)  # 二级, received Monday 09:00
    accept(hospital, iid)
    advance_to(hospital, clock, shanghai(2026, 3, 3, 17, 29))
    assert "Activity_escalateHead" not in open_elements(hospital, iid)
    advance_to(hospital, clock, shanghai(2026, 3, 3, 17, 31))  # resolution deadline passed
    head = the_task(hospital, iid, "Activity_escalateHead")
    assert head["candidate_groups"] == ["dept_head"]
    assert "Activity_escalateDirector" not in open_elements(hospital, iid)
    advance_to(hospital, clock, shanghai(2026, 3, 4, 17, 31))  # one more working day
    director = the_task(hospital, iid, "Activity_escalateDirector")
    assert director["candidate_groups"] == ["director"]
    # non-interrupting: the investigation is still there and can be finished
    assert "Activity_investigate" in open_elements(hospital, iid)
    complete(hospital, iid, "Activity_investigate", INVESTIGATION, user="head")
    assert "Activity_resolve" in open_elements(hospital, iid)


def test_no_escalation_when_the_investigation_is_done_in_time(hospital, clock):
    iid = register(hospital)
    accept(hospital, iid)
    complete(hospital, iid, "Activity_investigate", INVESTIGATION, user="head")
    advance_to(hospital, clock, shanghai(2026, 3, 4, 18, 0))
    assert open_elements(hospital, iid) == ["Activity_resolve"]


def test_feedback_deadline_reached_before_feedback_warns_the_director(hospital, clock):
    iid = register(hospital)
    accept(hospital, iid)
    complete(hospital, iid, "Activity_investigate", INVESTIGATION, user="head")
    advance_to(hospital, clock, shanghai(2026, 3, 9, 17, 31))  # 5 working days after Monday 03-02
    escalation = the_task(hospital, iid, "Activity_feedbackEscalation")
    assert escalation["candidate_groups"] == ["director"]
    assert "Activity_resolve" in open_elements(hospital, iid)


# -- text messages (notify) ------------------------------------------------------------------------

def test_the_complainant_gets_a_receipt_sms_with_the_case_number_and_the_feedback_date(hospital):
    iid = register(hospital, "TS-20260302-0007")
    assert send_sms(hospital) == 0  # nothing before the complaint is accepted
    accept(hospital, iid)
    assert open_elements(hospital, iid) == ["Activity_investigate"]  # the investigation does not wait
    assert send_sms(hospital) == 1
    [sms] = outbox(hospital)
    assert (sms["template"], sms["status"], sms["business_key"]) == ("complaint_receipt", "sent", "TS-20260302-0007")
    assert sms["recipient_masked"] == "138****5678"  # what the pages show; the number itself is not listed
    assert "13812345678" not in repr(sms)
    assert sms["text"] == "您的投诉已受理，编号TS-20260302-0007。我们将在2026年3月9日前向您反馈处理结果。"
    assert "Event_receiptSmsSent" in path(hospital, iid)


def test_the_director_gets_an_sms_when_an_investigation_is_escalated(hospital, clock):
    iid = register(hospital)  # 二级: resolution due Tuesday 17:30, escalation one working day later
    accept(hospital, iid)
    send_sms(hospital)  # the receipt
    advance_to(hospital, clock, shanghai(2026, 3, 3, 17, 31))
    assert "Activity_escalateHead" in open_elements(hospital, iid)
    assert send_sms(hospital) == 0  # the department head is reminded by the task list only
    advance_to(hospital, clock, shanghai(2026, 3, 4, 17, 31))
    assert "Activity_escalateDirector" in open_elements(hospital, iid)
    assert send_sms(hospital) == 1
    texts = outbox(hospital, "overdue_escalation")
    # every member of the director group with a mobile number on file
    assert sorted(sms["recipient_masked"] for sms in texts) == ["139****0001", "139****0002"]
    assert {sms["text"] for sms in texts} == {
        "督办提醒：TS-2026-0001“投诉调查”已超过处理时限（3月3日 17:30），请尽快处理。"}
    complete(hospital, iid, "Activity_escalateDirector", {"supervisionNote": "今日内完成调查"}, user="director")
    assert "Activity_investigate" in open_elements(hospital, iid)


class GatewayDown:
    name = "down"

    def send(self, phone, text, *, reference, template=None):
        raise GatewayError("the SMS provider answered HTTP 503")


def test_an_sms_gateway_outage_holds_up_neither_the_staff_nor_the_case(hospital, clock):
    iid = register(hospital)
    accept(hospital, iid)
    assert NotifyWorker(hospital, GatewayDown(), worker_id="sms", hotline="").run_once() == 1
    [failed] = outbox(hospital)
    assert failed["status"] == "failed" and "503" in failed["result"]
    complete(hospital, iid, "Activity_investigate", INVESTIGATION, user="head")
    complete(hospital, iid, "Activity_resolve", RESOLUTION, user="complaints")
    follow_up(hospital, iid, satisfied=True)
    assert "Event_closed" in path(hospital, iid)
    assert status(hospital, iid) == "active"  # only the receipt is still to go
    clock.advance(minutes=1)  # the worker retries after its back-off; the provider is back
    assert send_sms(hospital) == 1
    assert [sms["status"] for sms in outbox(hospital)] == ["failed", "sent"]
    assert status(hospital, iid) == "completed"


def test_a_number_that_cannot_take_a_text_is_an_incident_and_the_complaint_goes_on(hospital):
    iid = register(hospital, complainantPhone="0571-87654321")  # a landline
    accept(hospital, iid)
    send_sms(hospital)
    [incident] = hospital.external_tasks.query_incidents()[0]
    assert incident["instance_id"] == iid and "not a mobile number" in incident["message"]
    assert outbox(hospital) == []
    assert open_elements(hospital, iid) == ["Activity_investigate"]


# -- referrals: the message start events ------------------------------------------------------------



def test_a_referred_complaint_is_completed_by_the_complaint_office_then_tiered(hospital):
    result = hospital.correlate_message("complaint_from_callback", business_key="TS-HF-1", variables={
        "patientName": "赵六", "patientNo": "ZY1", "department": "外科", "phone": "13900000000"})
    iid = result[0]["instance"]["id"]
    task = the_task(hospital, iid, "Activity_completeRegistration")
    assert task["candidate_groups"] == ["complaint_office"] and task["business_key"] == "TS-HF-1"
    assert "tier" not in variables(hospital, iid)
    complete(hospital, iid, "Activity_completeRegistration", {
        "complainantName": "赵六", "complainantPhone": "13900000000", "patientName": "赵六",
        "department": "外科", "category": "诊疗效果", "description": "出院后伤口反复渗液",
        "channel": "出院回访", "patientCondition": "病情变化"}, user="complaints")
    v = variables(hospital, iid)
    assert v["tier"] == "一级" and v["safetyRisk"] is False  # defaults filled in by 受理登记
    assert "Activity_review" in open_elements(hospital, iid)


def test_task_list_of_the_complaint_office(hospital):
    register(hospital, "TS-1")
    register(hospital, "TS-2", safetyRisk=True)
    tasks = hospital.list_tasks(TaskQuery(candidate_groups=["complaint_office"], sort="due"))
    assert [t["business_key"] for t in tasks] == ["TS-2", "TS-1"]  # the urgent one is due first




def test_closing_results_survive_a_medical_affairs_task_completed_later(hospital):
    iid = register(hospital, safetyRisk=True)
    accept(hospital, iid)
    send_sms(hospital)
    complete(hospital, iid, "Activity_investigate", INVESTIGATION, user="head")
    complete(hospital, iid, "Activity_resolve", RESOLUTION, user="complaints")
    follow_up(hospital, iid, satisfied=True)
    complete(hospital, iid, "Activity_medicalAffairs", {"immediateMeasures": "已处置"}, user="medical")
    assert status(hospital, iid) == "completed"
    v = variables(hospital, iid)
    assert v["complainantSatisfied"] is True and v["immediateMeasures"] == "已处置"


def test_closing_results_survive_an_escalation_completed_later(hospital, clock):
    iid = register(hospital)
    accept(hospital, iid)
    advance_to(hospital, clock, shanghai(2026, 3, 3, 17, 31))
    complete(hospital, iid, "Activity_investigate", INVESTIGATION, user="head")
    complete(hospital, iid, "Activity_resolve", RESOLUTION, user="complaints")
    follow_up(hospital, iid, satisfied=True)
    complete(hospital, iid, "Activity_escalateHead", {"supervisionNote": "已督促"}, user="head")
    v = variables(hospital, iid)
    assert v["complainantSatisfied"] is True and v["facts"] == INVESTIGATION["facts"]
