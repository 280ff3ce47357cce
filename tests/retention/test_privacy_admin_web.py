"""/admin/patients: an administrator finds a patient's cases, downloads everything held about the
patient, anonymizes or erases one finished case; nobody else gets there."""

from __future__ import annotations

import json

import pytest
from werkzeug.security import generate_password_hash

from engine import identity, retention
from engine.audit import AuditQuery
from engine.identity import IdentityService
from tests.retention.support import PATIENT, PHONE, RECORD, closed_complaint, register
from tests.web.conftest import StaffClient, text
from web import create_app

PASSWORD = "Kefu-Zhongxin-2026"


@pytest.fixture
def app(hospital, monkeypatch):
    monkeypatch.setattr(identity, "hash_password",
                        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1000"))
    staff = IdentityService(hospital)
    staff.ensure_groups()
    staff.create_user("admin", "系统管理员", PASSWORD, ["admin"])
    staff.create_user("director", "客服中心主任", PASSWORD, ["director"])
    staff.create_user("complaints", "投诉专员", PASSWORD, ["complaint_office"])
    return create_app({"TESTING": True, "SECRET_KEY": "retention-tests", "RATELIMIT_ENABLED": False},
                      engine=hospital)


@pytest.fixture
def client(app):
    def make(username: str | None = None) -> StaffClient:
        c = StaffClient(app.test_client())
        if username:
            assert c.login(username, PASSWORD).status_code == 302
        return c
    return make


def _audit(engine, action):
    return engine.audit.query(AuditQuery(action=action))[0]


def test_only_administrators_reach_the_patient_pages(hospital, client):
    case = closed_complaint(hospital)
    anonymous = client()
    response = anonymous.get("/admin/patients")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    for username in ("director", "complaints"):
        c = client(username)
        assert c.get("/admin/patients").status_code == 403
        assert c.get(f"/admin/patients/cases/{case}").status_code == 403
        assert c.post("/admin/patients/export", {"by": "record", "value": RECORD}).status_code == 403
        assert c.post("/admin/patients/search", {"by": "record", "value": RECORD}).status_code == 403
        assert c.post(f"/admin/patients/cases/{case}/erase",
                      {"reason": "x", "within_retention": "yes"}).status_code == 403
    assert _audit(hospital, "export") == [] and _audit(hospital, "search_patient") == []
    assert hospital.get_instance(case)["status"] == "completed"
    assert client("admin").get("/admin/patients/cases/no-such-case").status_code == 404


def test_an_administrator_finds_and_downloads_everything_held_about_a_patient(hospital, client):
    case = closed_complaint(hospital)
    register(hospital, "TS-OTHER", patientNo="ZY-OTHER", complainantPhone="13900001111")
    admin = client("admin")
    html = text(admin.get("/admin/patients"))
    assert "患者数据" in html and 'action="/admin/patients/search"' in html
    found = admin.post("/admin/patients/search", {"by": "phone", "value": "138 1234 5678"})
    assert found.status_code == 200
    html = text(found)
    assert "TS-2026-0001" in html and "TS-OTHER" not in html and f'data-instance="{case}"' in html
    assert _audit(hospital, "search_patient")[0]["details"]["phone"] == "138****5678"

    response = admin.post("/admin/patients/export", {"by": "record", "value": RECORD})
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f'attachment; filename="patient-{RECORD}-20260302.json"'
    assert response.headers["Cache-Control"] == "no-store"
    payload = json.loads(response.get_data(as_text=True))
    [exported] = payload["cases"]
    assert exported["id"] == case and exported["variables"]["complainantPhone"] == PHONE
    assert exported["variables"]["patientName"] == PATIENT
    assert exported["tasks"] and exported["history"]
    [event] = _audit(hospital, "export")
    assert (event["user"], event["patient"], event["details"]["cases"]) == ("admin", RECORD, 1)


def test_unclear_queries_are_answered_with_what_was_wrong(client):
    admin = client("admin")
    response = admin.post("/admin/patients/search", {"by": "phone", "value": "abc"})
    assert response.status_code == 422 and "电话号码格式不正确" in text(response)
    response = admin.post("/admin/patients/export", {"by": "record", "value": ""})
    assert response.status_code == 422 and "病历号或电话号码" in text(response)


def test_erasure_is_refused_while_running_and_within_retention_unless_confirmed(hospital, client):
    running = register(hospital, "TS-RUN")
    admin = client("admin")
    page = text(admin.get(f"/admin/patients/cases/{running}"))
    assert 'id="still-running"' in page and 'id="erase-form"' not in page
    response = admin.post(f"/admin/patients/cases/{running}/erase", {"reason": "患者申请", "within_retention": "yes"})
    assert response.status_code == 409 and "仍在办理中" in text(response)
    assert hospital.get_instance(running)["status"] == "active"

    case = closed_complaint(hospital)
    response = admin.post(f"/admin/patients/cases/{case}/erase", {"reason": "患者申请"})
    assert response.status_code == 409 and "保存期限内" in text(response)
    response = admin.post(f"/admin/patients/cases/{case}/erase", {"reason": "", "within_retention": "yes"})
    assert response.status_code == 422 and "请填写原因" in text(response)
    response = admin.post(f"/admin/patients/cases/{case}/erase",
                          {"reason": "患者依《个人信息保护法》第四十七条申请删除", "within_retention": "yes"})
    assert response.status_code == 302
    assert admin.get(f"/admin/patients/cases/{case}").status_code == 404
    [event] = _audit(hospital, "erase")
    assert (event["user"], event["instance_id"], event["patient"]) == ("admin", case, RECORD)


def test_an_administrator_anonymizes_a_finished_case(hospital, client):
    case = closed_complaint(hospital)
    admin = client("admin")
    response = admin.post(f"/admin/patients/cases/{case}/anonymize", {"reason": "患者申请匿名"}, follow=True)
    html = text(response)
    assert response.status_code == 200 and "已匿名化" in html and 'id="anonymized-badge"' in html
    values = {k: v["value"] for k, v in hospital.get_variables(case).items()}
    assert values["complainantPhone"] == retention.ANONYMIZED and values["satisfactionScore"] == 5
    again = admin.post(f"/admin/patients/cases/{case}/anonymize", {"reason": "再次"}, follow=True)
    assert "此前已匿名化" in text(again)
    assert len(_audit(hospital, "anonymize")) == 1


def test_the_pages_speak_english_on_request(hospital, client):
    case = closed_complaint(hospital)
    admin = client("admin")
    admin.get("/lang/en")
    html = text(admin.get(f"/admin/patients/cases/{case}"))
    assert "Erase permanently" in html and "Anonymize" in html
    response = admin.post(f"/admin/patients/cases/{case}/erase", {"reason": "request"})
    assert response.status_code == 409 and "within its retention period" in text(response)
