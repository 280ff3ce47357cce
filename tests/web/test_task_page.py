"""The task page: the generated form, server-side validation shown next to the fields, claim,
delegate, complete, and every way a colleague or a double click can get in the way."""

from __future__ import annotations

import re

from engine.service import TaskQuery
from tests.web.conftest import add_colleague, open_task, start_request, text


def claimed_task(engine, client_user="complaints", key="SR-1", **kwargs):
    start_request(engine, key, **kwargs)
    task = open_task(engine, key)
    engine.claim(task["id"], client_user)
    return task


def field_html(html: str, field_id: str) -> str:
    match = re.search(rf'<div class="field[^"]*" data-field="{field_id}">(.*?)\n</div>', html, re.DOTALL)
    assert match, field_id
    return match.group(1)


def test_form_is_generated_from_camunda_form_data(make_client, staff_engine):
    task = claimed_task(staff_engine)
    html = text(make_client("complaints").get(f"/tasks/{task['id']}"))
    resolution = field_html(html, "resolution")
    assert "<textarea" in resolution  # maxlength 500 > 200
    assert 'required minlength="2" maxlength="500"' in resolution
    minutes = field_html(html, "minutesSpent")
    assert 'type="number"' in minutes and 'min="0" max="600"' in minutes
    assert 'type="date"' in field_html(html, "callbackDate")
    solved = field_html(html, "solved")
    assert 'type="hidden" name="solved" value="false"' in solved
    assert 'type="checkbox"' in solved and "checked" in solved  # defaultValue="true"
    patient = field_html(html, "patientName")  # read-only: shown, not editable
    assert "张三" in patient and "<input" not in patient and 'name="patientName"' not in html
    assert 'id="complete"' in html


def test_enum_select_and_textarea_property_on_the_start_form(make_client):
    html = text(make_client("frontdesk").get("/start/service_request"))
    category = field_html(html, "category")
    assert "<select" in category and "required" in category
    assert '<option value="billing">收费咨询</option>' in category
    assert "<textarea" in field_html(html, "description")  # camunda:property multiline=true
    assert 'type="text"' in field_html(html, "patientNo") and 'maxlength="20"' in field_html(html, "patientNo")


def test_form_is_read_only_until_claimed(make_client, staff_engine):
    start_request(staff_engine, "SR-1")
    task = open_task(staff_engine, "SR-1")
    client = make_client("complaints")
    html = text(client.get(f"/tasks/{task['id']}"))
    assert "请先领取任务" in html and 'id="claim"' in html and 'id="complete"' not in html
    assert "disabled" in field_html(html, "resolution")
    response = client.post(f"/tasks/{task['id']}/complete", {"resolution": "已处理"})
    assert response.status_code == 409 and "请先领取该任务再办理" in text(response)
    assert staff_engine.get_task(task["id"])["status"] == "open"


def test_validation_errors_are_shown_next_to_the_fields_with_the_values_kept(make_client, staff_engine):
    task = claimed_task(staff_engine)
    client = make_client("complaints")
    response = client.post(f"/tasks/{task['id']}/complete",
                           {"resolution": "好", "minutesSpent": "999", "callbackDate": "2026-03-09"})
    assert response.status_code == 422
    html = text(response)
    assert "表单有误" in html
    resolution = field_html(html, "resolution")
    assert "至少填写 2 个字" in resolution and ">好</textarea>" in resolution
    minutes = field_html(html, "minutesSpent")
    assert "请输入 0 到 600 之间的整数" in minutes and 'value="999"' in minutes
    assert 'value="2026-03-09"' in field_html(html, "callbackDate")
    assert "checked" not in field_html(html, "solved")  # the user unticked it: stays unticked
    assert staff_engine.get_task(task["id"])["status"] == "open"

    response = client.post(f"/tasks/{task['id']}/complete", {"resolution": "", "minutesSpent": "abc"})
    html = text(response)
    assert "此项为必填项" in field_html(html, "resolution")
    assert "请输入整数" in field_html(html, "minutesSpent")


def test_complete_stores_typed_values_and_the_next_group_gets_the_task(make_client, staff_engine):
    task = claimed_task(staff_engine)
    client = make_client("complaints")
    response = client.post(f"/tasks/{task['id']}/complete",
                           {"resolution": "已解释收费明细", "minutesSpent": "15", "callbackDate": "2026-03-05",
                            "solved": ["false", "true"]})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    page = text(client.get("/"))
    assert "已完成：处理诉求（SR-1）" in page
    assert "下一步：回访确认 → 客户管理部（回访），期限 03-03 09:00" in page
    variables = staff_engine.get_variables(task["instance_id"])
    assert variables["minutesSpent"]["value"] == 15
    assert variables["solved"]["value"] is True
    assert variables["callbackDate"]["value"] == "2026-03-05"

    follow = open_task(staff_engine, "SR-1")
    assert follow["name"] == "回访确认" and follow["candidate_groups"] == ["callback_team"]
    caller = text(make_client("caller").get("/?tab=group"))
    assert 'data-business-key="SR-1"' in caller
    assert 'data-business-key="SR-1"' not in text(make_client("complaints").get("/?tab=group"))


def test_unticked_checkbox_is_sent_as_false(make_client, staff_engine):
    task = claimed_task(staff_engine)
    make_client("complaints").post(f"/tasks/{task['id']}/complete", {"resolution": "已处理"})
    assert staff_engine.get_variables(task["instance_id"])["solved"]["value"] is False


def test_double_completion_is_a_message_not_an_error(make_client, staff_engine):
    task = claimed_task(staff_engine)
    client = make_client("complaints")
    data = {"resolution": "已处理完毕", "solved": "true"}
    assert client.post(f"/tasks/{task['id']}/complete", data).status_code == 302
    response = client.post(f"/tasks/{task['id']}/complete", data)
    assert response.status_code == 302
    assert "您已完成该任务" in text(client.get(response.headers["Location"]))
    completes = [h for h in staff_engine.get_instance(task["instance_id"])["history"] if h["action"] == "complete"]
    assert len(completes) == 1
    assert staff_engine.count_tasks(TaskQuery(instance_id=task["instance_id"])) == 1


def test_a_colleague_completed_it_first_my_typed_text_stays_on_the_page(make_client, staff_engine):
    add_colleague(staff_engine)
    task = claimed_task(staff_engine)
    me = make_client("complaints")
    assert me.get(f"/tasks/{task['id']}").status_code == 200  # my page is open
    staff_engine.unclaim(task["id"], "complaints")
    staff_engine.claim(task["id"], "complaints2")
    staff_engine.complete(task["id"], {"resolution": "同事已处理"}, user="complaints2")

    response = me.post(f"/tasks/{task['id']}/complete", {"resolution": "我写的处理意见"})
    assert response.status_code == 409
    html = text(response)
    assert "该任务已被 投诉专员 何敏 完成" in html
    assert "我写的处理意见" in html  # nothing typed is lost
    assert "该任务已由 投诉专员 何敏 于 03-02 09:00 完成" in html
    assert 'id="complete"' not in html
    assert staff_engine.get_variables(task["instance_id"])["resolution"]["value"] == "同事已处理"


def test_completed_task_page_shows_who_and_the_submitted_values(make_client, staff_engine):
    task = claimed_task(staff_engine)
    staff_engine.complete(task["id"], {"resolution": "已回电说明", "minutesSpent": 7}, user="complaints")
    html = text(make_client("complaints").get(f"/tasks/{task['id']}"))
    assert "该任务已由 投诉专员 陈静 于 03-02 09:00 完成" in html
    assert ">已回电说明</textarea>" in html and 'value="7"' in html


def test_task_of_a_cancelled_instance(make_client, staff_engine):
    task = claimed_task(staff_engine)
    staff_engine.cancel(task["instance_id"], user="director", reason="重复登记")
    response = make_client("complaints").post(f"/tasks/{task['id']}/complete", {"resolution": "已处理"})
    assert response.status_code == 409
    assert "该任务已不再需要办理" in text(response)


def test_delegate_to_a_colleague_of_the_group_only(make_client, staff_engine):
    add_colleague(staff_engine)
    task = claimed_task(staff_engine)
    client = make_client("complaints")
    html = text(client.get(f"/tasks/{task['id']}"))
    options = re.findall(r'<option value="(\w+)"', html.split('id="delegate-to"')[1].split("</select>")[0])
    assert options == ["complaints", "complaints2"]
    response = client.post(f"/tasks/{task['id']}/assign", {"assignee": "frontdesk"}, follow=True)
    assert "请选择本任务所属组的同事" in text(response)
    assert staff_engine.get_task(task["id"])["assignee"] == "complaints"
    response = client.post(f"/tasks/{task['id']}/assign", {"assignee": "complaints2"}, follow=True)
    assert "已转交给 投诉专员 何敏" in text(response)
    assert staff_engine.get_task(task["id"])["assignee"] == "complaints2"
    assert 'data-business-key="SR-1"' in text(make_client("complaints2").get("/?tab=mine"))


def test_unclaim_returns_the_task_to_the_group_and_only_the_assignee_may(make_client, staff_engine):
    add_colleague(staff_engine)
    task = claimed_task(staff_engine)
    assert make_client("complaints2").post(f"/tasks/{task['id']}/unclaim").status_code == 403
    response = make_client("complaints").post(f"/tasks/{task['id']}/unclaim")
    assert response.status_code == 302
    assert staff_engine.get_task(task["id"])["assignee"] is None


def test_side_panels_show_variables_with_labels_history_and_the_diagram(make_client, staff_engine):
    task = claimed_task(staff_engine)
    response = make_client("complaints").get(f"/tasks/{task['id']}")
    assert response.headers["Cache-Control"] == "no-store"  # patient data stays out of the cache
    html = text(response)
    assert '<dt title="patientName">患者姓名</dt>' in html
    assert '<dt title="category">诉求类别</dt>' in html and "<dd>收费咨询</dd>" in html  # enum name, not id
    assert '<dt title="tier">等级</dt>' in html and "<dd>三级</dd>" in html
    assert '<dt title="urgent">加急</dt>' in html and "<dd>否</dd>" in html
    assert "发起流程" in html and "领取了任务" in html and "前台 张丽" in html
    assert f'data-diagram-url="/instances/{task["instance_id"]}/diagram.json"' in html
    assert 'data-current="Handle"' in html
    assert "bpmn-navigated-viewer.production.min.js" in html


def test_visibility_another_groups_task_is_404_in_the_page_and_json(make_client, staff_engine):
    task = claimed_task(staff_engine)
    frontdesk_lost = staff_engine.start("lost_item", business_key="LI-1", variables={"itemName": "钥匙"},
                                        user="admin")
    outsider = make_client("escort")
    for url in (f"/tasks/{task['id']}", f"/instances/{task['instance_id']}",
                f"/instances/{task['instance_id']}/diagram.json"):
        assert outsider.get(url).status_code == 404, url
    for url in (f"/tasks/{task['id']}/claim", f"/tasks/{task['id']}/complete", f"/tasks/{task['id']}/assign",
                f"/tasks/{task['id']}/unclaim"):
        assert outsider.post(url, {"resolution": "x", "assignee": "escort"}).status_code == 404, url
    assert staff_engine.get_task(task["id"])["assignee"] == "complaints"
    json_404 = outsider.get(f"/instances/{task['instance_id']}/diagram.json")
    assert json_404.is_json and json_404.get_json()["error"] == "404"

    # the starter and those who may see the tasks see the instance; admin and director see all
    frontdesk = make_client("frontdesk")
    assert frontdesk.get(f"/instances/{task['instance_id']}").status_code == 200  # started it
    assert frontdesk.get(f"/tasks/{task['id']}").status_code == 404  # but not the complaint task
    assert frontdesk.get(f"/instances/{frontdesk_lost['id']}").status_code == 200  # a front-desk task
    for user in ("director", "admin"):
        client = make_client(user)
        assert client.get(f"/tasks/{task['id']}").status_code == 200
        assert client.get(f"/instances/{task['instance_id']}/diagram.json").status_code == 200


def test_closed_tasks_stay_visible_to_those_who_worked_on_them(make_client, staff_engine):
    task = claimed_task(staff_engine)
    staff_engine.complete(task["id"], {"resolution": "已处理"}, user="complaints")
    client = make_client("complaints")
    assert client.get(f"/tasks/{task['id']}").status_code == 200
    assert client.get(f"/instances/{task['instance_id']}").status_code == 200
    callback = open_task(staff_engine, "SR-1")
    assert client.get(f"/tasks/{callback['id']}").status_code == 404  # the callback team's task


def test_diagram_json_has_the_xml_path_and_active_elements(make_client, staff_engine):
    task = claimed_task(staff_engine)
    data = make_client("complaints").get(f"/instances/{task['instance_id']}/diagram.json").get_json()
    assert data["xml"].startswith("<?xml") and 'id="Handle"' in data["xml"]
    assert data["path"] == ["StartEvent_1", "Decide_tier"]
    assert data["active"] == ["Handle"] and data["status"] == "active"


def test_unknown_task_is_404(make_client):
    assert make_client("complaints").get("/tasks/00000000-0000-0000-0000-000000000000").status_code == 404
