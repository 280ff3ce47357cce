"""The process pages in a real Chromium: a process owner uploads a diagram the engine refuses
(the refusal is shown at the element in the diagram), then a good one (the new version is listed,
its diagram renders with the running instances on it), and tests a decision table."""

from __future__ import annotations

import re

import pytest

from tests.rest.conftest import broken_inquiry, changed_inquiry

pytestmark = pytest.mark.browser


def upload(page, name: str, content: bytes) -> None:
    page.goto("/processes/deploy")
    page.set_input_files("#deploy-files", files=[{"name": name, "mimeType": "text/xml", "buffer": content}])
    page.click("#deploy-submit")


def test_upload_a_refused_then_a_good_diagram(login_as, live_server):
    owner = login_as("owner")

    upload(owner, "inquiry.bpmn", broken_inquiry())
    refusal = owner.locator("#refusal")
    refusal.wait_for()
    assert owner.locator("#refused-file").inner_text() == "inquiry.bpmn"
    assert owner.locator("#refused-element").inner_text() == "Flow_no"
    assert "${not solved +}" in owner.locator("#refused-reason").inner_text()
    diagram = owner.locator('#refused-diagram[data-rendered="true"]')
    diagram.wait_for()
    assert diagram.get_attribute("data-marked") == "true"
    assert owner.locator('#refused-diagram g.djs-element.refused[data-element-id="Flow_no"]').count() == 1
    note = owner.locator('.refusal-note[data-element="Flow_no"]')
    assert note.is_visible() and "cannot be evaluated" in note.inner_text()

    upload(owner, "inquiry.bpmn", changed_inquiry())
    owner.wait_for_url(re.compile(r"/processes/inquiry\?version=2$"))
    assert "部署成功" in owner.locator(".flash").inner_text()
    assert owner.locator("#shown-version").inner_text() == "v2"
    assert owner.locator("#version-table tbody tr").count() == 2
    owner.locator('#process-diagram[data-rendered="true"]').wait_for()
    assert owner.locator('#process-diagram g.djs-element[data-element-id="answer"]').count() == 1
    assert "答复咨询" in owner.locator("#process-diagram").inner_text()

    # a running instance of version 2 shows up as a number on its task
    live_server.engine.start("inquiry", business_key="ZX-B1", user="frontdesk",
                             variables={"dueAt": "2026-03-02T11:00:00+08:00", "urgent": False})
    owner.reload()
    owner.locator('#process-diagram[data-rendered="true"]').wait_for()
    badge = owner.locator('.activity-overlay[data-element="answer"] .activity-tasks')
    assert badge.inner_text() == "1"

    with owner.expect_download() as download:
        owner.click("#download-xml")
    assert download.value.suggested_filename == "inquiry.bpmn"
    owner.goto("/processes/")
    assert owner.locator('#process-table tr[data-process="inquiry"]').inner_text().count("v2") == 1


def test_a_decision_table_renders_and_evaluates(login_as):
    owner = login_as("owner")
    owner.goto("/processes/decisions/service_tier")
    owner.locator('#decision-view[data-rendered="true"]').wait_for()
    assert owner.locator("#decision-view .tjs-table").count() == 1
    owner.select_option("#in-urgent", "false")
    owner.fill("#in-category", "attitude")
    owner.click("#evaluate-submit")
    assert owner.locator("#result-table tbody").inner_text().strip() == "二级"


def test_staff_cannot_open_the_process_pages(login_as):
    desk = login_as("frontdesk")
    response = desk.goto("/processes/deploy")
    assert response.status == 403
