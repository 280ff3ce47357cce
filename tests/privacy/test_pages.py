"""Patient data on the pages: masked for everyone but the step that needs it, the audited "显示"
action, and an audit line for every task or case page opened."""

from __future__ import annotations

from engine.audit import AuditQuery
from engine.service import TaskQuery
from tests.privacy.conftest import MASKED, PATIENT_NO, PHONE, callback_due, discharge, text


def test_the_ward_nurse_sees_the_phone_masked_on_the_case_she_registered(hospital, make_client):
    iid = discharge(hospital)
    page = text(make_client("nurse").get(f"/instances/{iid}"))
    assert MASKED in page and PHONE not in page
    assert "周淑英" in page and PATIENT_NO in page  # names and record numbers identify the case
    assert f'action="/instances/{iid}/reveal/phone"' in page  # the show action


def test_the_caller_on_her_callback_task_sees_the_phone_in_full(hospital, clock, make_client):
    iid, task = callback_due(hospital, clock)
    caller = make_client("caller")
    page = text(caller.get(f"/tasks/{task['id']}"))
    assert PHONE in page and MASKED not in page and "/reveal/phone" not in page
    # the nurse still sees the mask on the same case: her step is done
    assert MASKED in text(make_client("nurse").get(f"/instances/{iid}"))


def test_once_the_callback_is_done_the_caller_sees_the_mask(hospital, clock, make_client):
    _iid, task = callback_due(hospital, clock)
    hospital.claim(task["id"], "caller")
    hospital.complete(task["id"], {"reached": True, "recovery": "良好", "medicationOk": True,
                                   "followUpKnown": True, "satisfied": True, "satisfactionScore": 5,
                                   "clinicalConcern": False, "callNote": "恢复良好"}, user="caller")
    page = text(make_client("caller").get(f"/tasks/{task['id']}"))
    assert MASKED in page and PHONE not in page


def test_director_and_admin_see_masks_and_may_reveal(hospital, make_client):
    iid = discharge(hospital)
    for who in ("director", "admin"):
        page = text(make_client(who).get(f"/instances/{iid}"))
        assert MASKED in page and PHONE not in page, who


def test_show_reveals_one_value_and_is_audited(hospital, make_client):
    iid = discharge(hospital)
    nurse = make_client("nurse")
    nurse.get(f"/instances/{iid}")
    response = nurse.client.post(f"/instances/{iid}/reveal/phone", data={"csrf_token": nurse.token()},
                                 headers={"X-Requested-With": "fetch"})
    assert response.status_code == 200
    assert response.get_json()["text"] == PHONE
    events, total = hospital.audit.query(AuditQuery(action="reveal"))
    assert total == 1
    event = events[0]
    assert (event["user"], event["instance_id"], event["patient"]) == ("nurse", iid, PATIENT_NO)
    assert event["details"] == {"variable": "phone", "kind": "phone"}
    assert event["address"] == "127.0.0.1"
    # without JavaScript the form opens a page with the value
    page = nurse.post(f"/instances/{iid}/reveal/phone")
    assert page.status_code == 200 and PHONE in text(page)
    assert hospital.audit.query(AuditQuery(action="reveal"))[1] == 2


def test_show_needs_the_case_the_csrf_token_and_an_existing_variable(hospital, make_client):
    iid = discharge(hospital)
    finance = make_client("finance")
    assert finance.post(f"/instances/{iid}/reveal/phone").status_code == 404  # not her case
    nurse = make_client("nurse")
    assert nurse.post(f"/instances/{iid}/reveal/nothing").status_code == 404
    assert nurse.post(f"/instances/{iid}/reveal/phone", csrf=False).status_code == 400
    assert hospital.audit.query(AuditQuery(action="reveal"))[1] == 0


def test_opening_a_task_page_writes_one_audit_line_with_the_patient(hospital, clock, make_client):
    iid, task = callback_due(hospital, clock)
    make_client("caller").get(f"/tasks/{task['id']}")
    events, total = hospital.audit.query(AuditQuery(user="caller", action="read_task"))
    assert total == 1
    e = events[0]
    assert (e["action"], e["resource_type"], e["resource_id"]) == ("read_task", "task", task["id"])
    assert (e["instance_id"], e["patient"]) == (iid, PATIENT_NO)
    make_client("nurse").get(f"/instances/{iid}")
    events, total = hospital.audit.query(AuditQuery(patient=PATIENT_NO))
    assert [(e["user"], e["action"]) for e in events] == [("nurse", "read_instance"), ("caller", "read_task")]
    assert total == 2


def test_a_page_the_user_may_not_see_is_not_audited_as_a_read(hospital, make_client):
    iid = discharge(hospital)
    assert make_client("finance").get(f"/instances/{iid}").status_code == 404
    assert hospital.audit.query(AuditQuery(user="finance", action="read_instance"))[1] == 0


def test_the_task_list_shows_no_phone_and_search_results_are_masked(hospital, clock, make_client):
    callback_due(hospital, clock)
    listing = text(make_client("caller").get("/?tab=group&q=周淑英"))
    assert "周淑英" in listing and PHONE not in listing
    assert hospital.list_tasks(TaskQuery(search="周淑英"))
