"""The process pages through the Flask client: who may open them, upload and deploy with the
refusal shown at its element, versions and activity counts, the XML download, decision tests."""

from __future__ import annotations

import io
import json
import re

import pytest

from tests.conftest import fixture_bytes
from tests.rest.conftest import broken_inquiry, changed_inquiry, inquiry_bpmn
from tests.web.conftest import StaffClient
from web.processes import _input_fields


@pytest.fixture
def owner(app):
    browser = StaffClient(app.test_client())
    browser.login("owner")
    return browser


def upload(browser: StaffClient, *files: tuple[str, bytes], changed_only: bool = True, name: str = ""):
    data = {"csrf_token": browser.token(), "name": name, "files": [(io.BytesIO(c), n) for n, c in files]}
    if changed_only:
        data["changed_only"] = "on"
    return browser.client.post("/processes/deploy", data=data, content_type="multipart/form-data")


def embedded(html: str, element_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.DOTALL)
    return json.loads(match.group(1))


def test_only_process_owners_and_administrators(app):
    anonymous = app.test_client().get("/processes/")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    for username, status in (("frontdesk", 403), ("director", 403), ("owner", 200), ("admin", 200)):
        browser = StaffClient(app.test_client())
        browser.login(username)
        assert browser.get("/processes/").status_code == status, username


def test_a_refused_upload_shows_the_file_element_and_reason_with_the_diagram(owner, engine):
    response = upload(owner, ("inquiry.bpmn", broken_inquiry()), ("triage.dmn", fixture_bytes("dmn", "triage.dmn")))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'id="refused-file">inquiry.bpmn<' in html and 'id="refused-element">Flow_no<' in html
    diagram = embedded(html, "refused-diagram-data")
    assert diagram["refused"] == "Flow_no" and "${not solved +}" in diagram["message"]
    assert diagram["xml"] == broken_inquiry().decode()
    assert engine.list_definitions() == [] and engine.list_decisions() == []


def test_malformed_xml_is_refused_with_its_line_and_no_diagram(owner):
    broken = inquiry_bpmn().replace(b"</bpmn:userTask>", b"</bpmn:userTaskX>", 1)
    html = upload(owner, ("inquiry.bpmn", broken)).get_data(as_text=True)
    assert "refused-reason" in html and "refused-diagram-data" not in html
    assert re.search(r"<dt>行号</dt><dd>\d+</dd>", html)


def test_upload_deploys_and_lists_the_new_version(owner, engine):
    first = upload(owner, ("inquiry.bpmn", inquiry_bpmn()), ("triage.dmn", fixture_bytes("dmn", "triage.dmn")))
    assert first.status_code == 302 and first.headers["Location"].endswith("/processes/inquiry?version=1")
    again = upload(owner, ("inquiry.bpmn", inquiry_bpmn()))
    assert again.status_code == 302 and again.headers["Location"].endswith("/processes/")
    assert "未产生新版本" in owner.get("/processes/").get_data(as_text=True)
    second = upload(owner, ("inquiry.bpmn", changed_inquiry()), name="咨询流程")
    assert second.headers["Location"].endswith("/processes/inquiry?version=2")
    engine.start("inquiry", business_key="ZX-1", variables={"dueAt": "2026-03-02T11:00:00+08:00", "urgent": True})

    page = owner.get("/processes/inquiry").get_data(as_text=True)
    assert 'id="shown-version">v2<' in page and page.count('data-version="') == 2
    data = embedded(page, "process-diagram-data")
    assert data["activity"] == {"answer": {"tasks": 1, "timers": 0, "messages": 0}}
    assert data["xmlUrl"].endswith("/xml")
    assert "咨询流程" in page  # the deployment name
    older = owner.get("/processes/inquiry?version=1").get_data(as_text=True)
    assert 'id="shown-version">v1<' in older and embedded(older, "process-diagram-data")["activity"] == {}
    assert owner.get("/processes/inquiry?version=7").status_code == 404
    assert owner.get("/processes/nothing").status_code == 404

    listing = owner.get("/processes/").get_data(as_text=True)
    assert 'data-process="inquiry"' in listing and 'data-decision="triage"' in listing

    definition_id = engine.list_definitions("inquiry")[0]["id"]
    download = owner.get(f"/processes/definitions/{definition_id}/xml?download=1")
    assert download.status_code == 200 and download.data == changed_inquiry()
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert owner.get("/processes/definitions/nope/xml").status_code == 404


def test_upload_needs_files_and_a_csrf_token(owner):
    response = owner.client.post("/processes/deploy", data={"csrf_token": owner.token()},
                                 content_type="multipart/form-data")
    assert response.status_code == 400 and "请选择" in response.get_data(as_text=True)
    forged = owner.client.post("/processes/deploy", content_type="multipart/form-data",
                               data={"files": [(io.BytesIO(inquiry_bpmn()), "inquiry.bpmn")]})
    assert forged.status_code == 400


def test_evaluate_a_decision_with_test_inputs(owner, engine):
    engine.deploy([("triage.dmn", fixture_bytes("dmn", "triage.dmn"))], name="triage")
    page = owner.get("/processes/decisions/triage").get_data(as_text=True)
    for name in ("in-category", "in-amount", "in-urgent"):
        assert f'name="{name}"' in page
    result = owner.post("/processes/decisions/triage", {"in-category": "收费争议", "in-amount": "2000",
                                                        "in-urgent": "false"})
    assert result.status_code == 200
    assert re.search(r'id="result-table">.*<td>finance</td>', result.get_data(as_text=True), re.DOTALL)
    catch_all = owner.post("/processes/decisions/triage", {"in-category": "其他", "in-amount": "", "in-urgent": ""})
    assert re.search(r'id="result-table">.*<td>desk</td>', catch_all.get_data(as_text=True), re.DOTALL)
    wrong = owner.post("/processes/decisions/triage", {"in-category": "x", "in-amount": "many", "in-urgent": ""})
    assert wrong.status_code == 400 and "请输入数字" in wrong.get_data(as_text=True)
    assert owner.get("/processes/decisions/nothing").status_code == 404


def test_test_form_fields_come_from_the_input_expressions():
    table = {"inputs": [
        {"variable": "category", "label": "类别", "expression": "category", "type_ref": "string"},
        {"variable": None, "label": "年龄", "expression": 'patient.age + offset * 2 + string length("x")',
         "type_ref": "integer"},
        {"variable": None, "label": "科室", "expression": 'if ward = "ICU" then true else false', "type_ref": None},
    ]}
    assert [f["name"] for f in _input_fields(table)] == ["category", "patient", "offset", "ward"]


def test_english_is_available(owner):
    owner.get("/lang/en")
    page = owner.get("/processes/deploy").get_data(as_text=True)
    assert "Upload and deploy" in page and "New versions only for changed processes and decisions" in page
