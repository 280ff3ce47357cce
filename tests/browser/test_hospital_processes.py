"""The hospital's own diagrams (workflows/bpmn) worked through the task list in Chromium: a
complaint from the front desk to closure, and an escort request from the ward to the return."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


@pytest.fixture
def hospital(live_server):
    needed = [WORKFLOWS / "bpmn" / "complaint.bpmn", WORKFLOWS / "bpmn" / "escort_request.bpmn"]
    if not all(p.exists() for p in needed):
        pytest.skip("the hospital diagrams are not in workflows/bpmn yet")
    live_server.engine.deploy_directory(WORKFLOWS, user="owner")
    return live_server


def flash_text(page) -> str:
    return " ".join(page.locator(".flash").all_inner_texts())


def take_next_task(page, expected: str) -> None:
    page.goto("/?tab=group")
    page.click("#next-task")
    page.wait_for_url(re.compile(r"/tasks/"))
    assert page.locator("h1").inner_text().startswith(expected)


def complete(page) -> str:
    page.click("#complete")
    page.wait_for_url(re.compile(r"/$"))
    return flash_text(page)


def test_complaint_day_from_the_front_desk_to_closure(login_as, hospital):
    desk = login_as("frontdesk")
    desk.goto("/start/complaint")
    desk.fill("#field-complainantName", "王先生")
    desk.fill("#field-complainantPhone", "13900001111")
    desk.select_option("#field-relation", "家属")
    desk.fill("#field-patientName", "王大爷")
    desk.fill("#field-patientNo", "ZY20260301")
    desk.select_option("#field-department", "收费处")
    desk.select_option("#field-category", "收费争议")
    desk.fill("#field-description", "出院结算单上检查费重复收取")
    desk.fill("#field-demand", "退还多收的费用")
    desk.select_option("#field-channel", "前台")
    desk.click("#submit-start")
    desk.wait_for_url(re.compile(r"/instances/.+\?started=1"))
    assert re.search(r"已登记，业务编号 TS-20260302-\d{4}", flash_text(desk))
    steps = desk.locator("#next-steps").inner_text()
    assert "受理审查与首次响应" in steps and "客户管理部（投诉）" in steps
    assert desk.locator('#key-values [data-var="tier"] dd').inner_text() == "二级"
    assert desk.locator('#key-values [data-var="firstResponseDue"] dd').inner_text() == "2026-03-02 11:00"
    assert desk.locator('#key-values [data-var="feedbackDue"]').count() == 1
    instance_url = desk.url.split("?")[0]

    office = login_as("complaints")
    take_next_task(office, "受理审查与首次响应")
    office.fill("#field-firstResponseNote", "已电话联系王先生，说明将核查收费明细")
    assert "投诉调查 → 财务科" in complete(office)

    finance = login_as("finance")
    take_next_task(finance, "投诉调查")
    finance.fill("#field-facts", "结算系统重复计费一次")
    finance.select_option("#field-complaintFounded", "属实")
    finance.fill("#field-responsibleUnit", "财务科")
    finance.fill("#field-proposedMeasures", "退还重复收费并修正计费规则")
    assert "投诉处理与反馈 → 客户管理部（投诉）" in complete(finance)

    take_next_task(office, "投诉处理与反馈")
    office.fill("#field-measuresTaken", "已退费")
    office.fill("#field-feedbackContent", "已告知退费到账时间")
    office.select_option("#field-feedbackChannel", "电话")
    assert "投诉跟踪回访" in complete(office)

    take_next_task(office, "投诉跟踪回访")
    office.check("#field-problemSolved")
    office.check("#field-complainantSatisfied")
    office.fill("#field-satisfactionScore", "5")
    assert "流程已结束" in complete(office)

    desk.goto(instance_url)
    assert desk.locator("#instance-status").get_attribute("data-status") == "completed"


def test_escort_request_from_the_ward_to_the_return(login_as, hospital):
    nurse = login_as("nurse")
    nurse.goto("/start/escort_request")
    nurse.fill("#field-patientName", "李奶奶")
    nurse.fill("#field-patientNo", "ZY99")
    nurse.fill("#field-ward", "内科一病区")
    nurse.fill("#field-bedNo", "12")
    nurse.select_option("#field-destination", "影像科")
    nurse.select_option("#field-mobility", "轮椅")
    nurse.check("#field-drips")
    nurse.click("#submit-start")
    nurse.wait_for_url(re.compile(r"/instances/.+\?started=1"))
    assert re.search(r"业务编号 PJ-20260302-\d{4}", flash_text(nurse))
    assert "调度派单" in nurse.locator("#next-steps").inner_text()
    instance_url = nurse.url.split("?")[0]

    dispatcher = login_as("dispatcher")
    take_next_task(dispatcher, "调度派单")
    dispatcher.fill("#field-escortUser", "escort")
    dispatcher.fill("#field-escortName", "孙伟")
    assert "接到患者 → 陪检员 孙伟" in complete(dispatcher)

    escort = login_as("escort")
    escort.goto("/?tab=mine")
    escort.locator(".task-link", has_text="接到患者").click()
    escort.check("#field-identityChecked")
    escort.check("#field-tubesChecked")
    assert "陪同检查并交接" in complete(escort)
    escort.locator(".task-link", has_text="陪同检查并交接").click()
    # the diagram set delivered=false when the request was made: the current value wins over
    # the field's defaultValue, as in Camunda's generated forms
    assert not escort.is_checked("#field-delivered")
    escort.check("#field-delivered")
    assert "送回病区" in complete(escort)
    escort.locator(".task-link", has_text="送回病区").click()
    assert "流程已结束" in complete(escort)

    nurse.goto(instance_url)
    assert nurse.locator("#instance-status").get_attribute("data-status") == "completed"
