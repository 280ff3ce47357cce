"""The administrators' audit page: newest first, filters by patient, user, action and date, paging;
nobody else can open it, and nothing in the app edits or deletes an event."""

from __future__ import annotations

from tests.privacy.conftest import PATIENT_NO, discharge, text


def test_the_admin_sees_the_reads_of_a_patient_newest_first(hospital, make_client):
    iid = discharge(hospital)
    other = discharge(hospital, "HF-0002", patientNo="ZY20269999", patientName="王五")
    make_client("nurse").get(f"/instances/{iid}")
    make_client("director").get(f"/instances/{iid}")
    make_client("nurse").get(f"/instances/{other}")
    admin = make_client("admin")
    page = admin.get(f"/admin/audit?patient={PATIENT_NO}")
    assert page.status_code == 200
    html = text(page)
    assert html.count('data-action="read_instance"') == 2 and "ZY20269999" not in html
    assert html.index("客服中心主任 李主任") < html.index("护士长 郑护士")  # newest first
    assert 'id="tab-audit"' in text(admin.get("/admin/users"))  # linked from the admin menu
    only_nurse = text(admin.get("/admin/audit?user=nurse&action=read_instance"))
    assert only_nurse.count('data-action="read_instance"') == 2 and "ZY20269999" in only_nurse


def test_date_filters_and_a_bad_date(hospital, make_client):
    iid = discharge(hospital)
    make_client("nurse").get(f"/instances/{iid}")
    admin = make_client("admin")
    assert 'data-action="read_instance"' in text(admin.get("/admin/audit?since=2026-03-02&until=2026-03-02"))
    assert 'data-action="read_instance"' not in text(admin.get("/admin/audit?since=2026-03-03"))
    bad = admin.get("/admin/audit?since=2026-13-01")
    assert bad.status_code == 400 and "日期格式应为" in text(bad)


def test_paging(hospital, make_client):
    iid = discharge(hospital)
    for _ in range(55):
        hospital.audit.record("read_instance", user="nurse", instance_id=iid, patient=PATIENT_NO)
    admin = make_client("admin")
    first = text(admin.get(f"/admin/audit?patient={PATIENT_NO}"))
    assert first.count("data-event=") == 50 and "第 1 / 2 页，共 55 条" in first
    assert text(admin.get(f"/admin/audit?patient={PATIENT_NO}&page=2")).count("data-event=") == 5


def test_only_administrators_open_it_and_nothing_edits_it(hospital, make_client):
    for who in ("director", "nurse", "owner"):
        assert make_client(who).get("/admin/audit").status_code == 403, who
    assert make_client().get("/admin/audit").status_code in (302, 401)
    admin = make_client("admin")
    for method in ("post", "put", "delete"):
        assert getattr(admin.client, method)("/admin/audit").status_code == 405


def test_the_page_and_the_show_action_in_english(hospital, make_client):
    iid = discharge(hospital)
    nurse = make_client("nurse")
    with nurse.client.session_transaction() as session:
        session["lang"] = "en"
    page = text(nurse.get(f"/instances/{iid}"))
    assert ">Show</button>" in page and "136****2222" in page
    admin = make_client("admin")
    with admin.client.session_transaction() as session:
        session["lang"] = "en"
    html = text(admin.get(f"/admin/audit?patient={PATIENT_NO}"))
    assert "Audit log" in html and "Opened a case" in html
