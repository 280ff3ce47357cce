"""The task list in a real Chromium: a day's work by two groups, form validation, the language
switch, forbidden pages, a race between two browsers, and the diagram."""

from __future__ import annotations

import re

import pytest

from engine.identity import IdentityService
from tests.web.conftest import open_task, start_request

pytestmark = pytest.mark.browser


def flash_text(page) -> str:
    return " ".join(page.locator(".flash").all_inner_texts())


def test_a_request_from_registration_to_closure_by_three_staff(login_as, live_server):
    desk = login_as("frontdesk")
    desk.click("#start-menu summary")
    desk.click("#start-menu >> text=患者诉求处理")
    desk.fill("#field-patientName", "张三")
    desk.fill("#field-patientNo", "P20260302")
    desk.select_option("#field-category", "billing")
    desk.fill("#field-description", "住院押金退款进度咨询")
    desk.click("#submit-start")
    desk.wait_for_url(re.compile(r"/instances/.+\?started=1"))
    assert "已登记，业务编号 SR-20260302-0001" in flash_text(desk)
    next_steps = desk.locator("#next-steps")
    assert "处理诉求" in next_steps.inner_text() and "客户管理部（投诉）" in next_steps.inner_text()
    assert desk.locator('#key-values [data-var="tier"] dd').inner_text() == "三级"
    instance_url = desk.url.split("?")[0]

    office = login_as("complaints")
    office.click('.tab[data-tab="group"]')
    row = office.locator('tr[data-business-key="SR-20260302-0001"]')
    assert "张三" in row.inner_text() and "剩余 2小时" in row.inner_text()
    office.click("#next-task")
    office.wait_for_url(re.compile(r"/tasks/"))
    assert office.locator("#assignee").inner_text() == "投诉专员 陈静"
    office.fill("#field-resolution", "已核对押金，财务三个工作日内退回")
    office.fill("#field-minutesSpent", "12")
    office.fill("#field-callbackDate", "2026-03-05")
    office.click("#complete")
    office.wait_for_url(re.compile(r"/$"))
    assert "下一步：回访确认 → 客户管理部（回访）" in flash_text(office)

    caller = login_as("caller")
    caller.click('.tab[data-tab="group"]')
    caller.locator('tr[data-business-key="SR-20260302-0001"] button', has_text="领取").click()
    caller.wait_for_url(re.compile(r"/tasks/"))
    caller.select_option("#field-satisfaction", "satisfied")
    caller.fill("#field-callbackNote", "患者表示满意")
    caller.click("#complete")
    caller.wait_for_url(re.compile(r"/$"))
    assert "流程已结束" in flash_text(caller)

    desk.goto(instance_url)
    assert desk.locator("#instance-status").get_attribute("data-status") == "completed"
    assert "流程结束" in desk.locator(".timeline").inner_text()


def test_form_validation_in_the_browser_and_on_the_server(login_as, live_server):
    engine = live_server.engine
    start_request(engine, "SR-V")
    engine.claim(open_task(engine, "SR-V")["id"], "complaints")
    page = login_as("complaints")
    page.goto(f"/tasks/{open_task(engine, 'SR-V')['id']}")

    # the browser refuses an empty required field (HTML attributes from camunda:validation)
    page.fill("#field-minutesSpent", "999")
    page.click("#complete")
    assert page.evaluate("document.getElementById('field-resolution').validity.valueMissing")
    assert page.evaluate("document.getElementById('field-minutesSpent').validity.rangeOverflow")
    assert "/tasks/" in page.url and page.locator(".field-error").count() == 0

    # and the server says the same, next to each field, keeping what was typed
    page.evaluate("document.getElementById('task-form').noValidate = true")
    page.fill("#field-resolution", "好")
    page.click("#complete")
    page.wait_for_selector(".field-error")
    errors = {el.get_attribute("data-field"): el.locator(".field-error").inner_text()
              for el in page.locator(".field.has-error").all()}
    assert errors == {"resolution": "至少填写 2 个字", "minutesSpent": "请输入 0 到 600 之间的整数"}
    assert page.input_value("#field-resolution") == "好"
    assert page.input_value("#field-minutesSpent") == "999"
    assert page.evaluate("document.activeElement.id") == "field-resolution"
    assert engine.get_task(open_task(engine, "SR-V")["id"])["status"] == "open"


def test_language_switch(login_as, live_server):
    page = login_as("frontdesk")
    assert page.locator('.tab[data-tab="mine"]').inner_text().startswith("我的任务")
    page.click("#lang-en")
    page.wait_for_selector("html[lang=en]")
    assert page.locator('.tab[data-tab="mine"]').inner_text().startswith("My tasks")
    assert page.locator("#next-task").inner_text().startswith("Next task")
    page.click("#lang-zh_CN")
    page.wait_for_selector("html[lang=zh-CN]")
    assert page.locator("#next-task").inner_text().startswith("下一个任务")


def test_wrong_role_gets_a_friendly_forbidden_page(login_as, live_server):
    engine = live_server.engine
    start_request(engine, "SR-F")
    page = login_as("frontdesk")
    response = page.goto("/admin/users")
    assert response.status == 403
    assert page.locator("h1").inner_text() == "无权访问"
    assert page.locator(".error-card a.btn-primary").inner_text() == "返回任务列表"
    response = page.goto(f"/tasks/{open_task(engine, 'SR-F')['id']}")
    assert response.status == 404 and "未找到" in page.locator("h1").inner_text()
    assert "Traceback" not in page.content()


def test_two_browsers_complete_the_same_task_one_wins(login_as, live_server):
    engine = live_server.engine
    IdentityService(engine).create_demo_user("complaints2", "投诉专员 何敏", ["complaint_office"])
    start_request(engine, "SR-R")
    task = open_task(engine, "SR-R")
    engine.claim(task["id"], "complaints")

    # the same counter account on two front-desk PCs, both pressing "complete" at once
    first, second = login_as("complaints"), login_as("complaints")
    for page, text in ((first, "第一台电脑的处理意见"), (second, "第二台电脑的处理意见")):
        page.goto(f"/tasks/{task['id']}")
        page.fill("#field-resolution", text)
    first.click("#complete", no_wait_after=True)
    second.click("#complete", no_wait_after=True)
    for page in (first, second):
        page.wait_for_load_state()
        page.wait_for_selector(".flash")
    messages = sorted([flash_text(first), flash_text(second)])
    assert any("已完成：处理诉求" in m for m in messages)
    assert any("您已完成该任务" in m for m in messages)
    completes = [h for h in engine.get_instance(task["instance_id"])["history"] if h["action"] == "complete"]
    assert len(completes) == 1

    # a colleague took the next task over and finished it while my page was open
    follow_up = start_request(engine, "SR-R2")
    task2 = open_task(engine, "SR-R2")
    engine.claim(task2["id"], "complaints")
    first.goto(f"/tasks/{task2['id']}")
    first.fill("#field-resolution", "我写了一半的处理意见")
    colleague = login_as("complaints2")
    engine.assign(task2["id"], "complaints2", "director")
    colleague.goto(f"/tasks/{task2['id']}")
    colleague.fill("#field-resolution", "同事的处理意见")
    colleague.click("#complete")
    colleague.wait_for_url(re.compile(r"/$"))
    first.click("#complete")
    first.wait_for_selector("#alert")
    assert first.locator("#alert").inner_text() == "该任务已被 投诉专员 何敏 完成"
    assert first.input_value("#field-resolution") == "我写了一半的处理意见"
    assert engine.get_variables(follow_up["id"])["resolution"]["value"] == "同事的处理意见"


def test_diagram_renders_with_the_current_task_and_path_marked(login_as, live_server):
    engine = live_server.engine
    start_request(engine, "SR-D")
    task = open_task(engine, "SR-D")
    engine.claim(task["id"], "complaints")
    page = login_as("complaints")
    page.goto(f"/tasks/{task['id']}")
    page.wait_for_selector('.diagram[data-rendered="true"] svg')
    assert page.locator('.diagram g.djs-element.hl-current[data-element-id="Handle"]').count() == 1
    assert page.locator('.diagram g.djs-element.hl-done[data-element-id="StartEvent_1"]').count() == 1
    assert page.locator('.diagram g.djs-element.hl-done[data-element-id="Flow_1"]').count() == 1
    assert page.locator('.diagram g.djs-element.hl-current[data-element-id="Callback"]').count() == 0
