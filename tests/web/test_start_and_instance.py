"""Start pages (forms from the start event's camunda:formData) and the instance page that shows
what happens next."""

from __future__ import annotations

import re

from tests.web.conftest import open_task, start_request, text


def test_start_menu_lists_the_deployed_processes(make_client):
    html = text(make_client("frontdesk").get("/start"))
    for key, name in (("service_request", "患者诉求处理"), ("lost_item", "失物登记"), ("inquiry", "咨询处理")):
        assert f'data-process="{key}"' in html and name in html
    header = text(make_client("frontdesk").get("/"))
    assert 'href="/start/service_request">患者诉求处理</a>' in header  # the 新建 menu


def test_start_form_errors_keep_the_values(make_client, staff_engine):
    client = make_client("frontdesk")
    response = client.post("/start/service_request", {"patientName": "", "patientNo": "P1", "category": "bogus",
                                                      "description": "想咨询报告", "urgent": ["false", "true"]})
    assert response.status_code == 422
    html = text(response)
    assert re.search(r'data-field="patientName">.*?此项为必填项', html, re.DOTALL)
    assert re.search(r'data-field="category">.*?请从列表中选择', html, re.DOTALL)
    assert 'value="P1"' in html and ">想咨询报告</textarea>" in html
    assert re.search(r'id="field-urgent" name="urgent" value="true" checked', html)
    assert staff_engine.list_instances() == []


def test_start_shows_what_happens_next(make_client, staff_engine):
    client = make_client("frontdesk")
    response = client.post("/start/service_request", {"patientName": "赵敏", "patientNo": "P9", "category": "attitude",
                                                      "description": "挂号窗口态度差", "urgent": "false"})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert re.fullmatch(r"/instances/[0-9a-f-]+\?started=1", location)
    html = text(client.get(location))
    assert "已登记，业务编号 SR-20260302-0001" in html
    assert "已提交，接下来：" in html
    next_steps = html.split('id="next-steps"')[1].split("</section>")[0]
    assert "处理诉求" in next_steps and "客户管理部（投诉）" in next_steps and "03-02 11:00" in next_steps
    assert re.search(r'data-var="tier"><dt>等级</dt><dd>二级</dd>', next_steps)
    instance = staff_engine.list_instances()[0]
    assert instance["business_key"] == "SR-20260302-0001" and instance["started_by"] == "frontdesk"
    variables = staff_engine.get_variables(instance["id"])
    assert variables["urgent"]["value"] is False and variables["category"]["value"] == "attitude"

    client.post("/start/service_request", {"patientName": "钱多", "category": "report"})
    keys = sorted(i["business_key"] for i in staff_engine.list_instances())
    assert keys == ["SR-20260302-0001", "SR-20260302-0002"]


def test_business_key_from_the_form_field_or_generated(make_client, staff_engine):
    client = make_client("frontdesk")
    client.post("/start/lost_item", {"businessKey": "SW-手写-7", "itemName": "雨伞"})
    client.post("/start/lost_item", {"businessKey": "", "itemName": "钥匙"})
    keys = sorted(i["business_key"] for i in staff_engine.list_instances())
    assert keys == ["LI-20260302-0001", "SW-手写-7"]
    for instance in staff_engine.list_instances():
        variables = staff_engine.get_variables(instance["id"])
        assert variables["businessKey"]["value"] == instance["business_key"]


def test_process_that_cannot_start_gives_a_message_not_a_500(make_client, staff_engine):
    # inquiry needs dueAt and urgent, which it has no start form for
    response = make_client("frontdesk").post("/start/inquiry", {})
    assert response.status_code == 422
    assert "流程无法启动" in text(response)
    assert staff_engine.list_instances() == []


def test_unknown_process_is_404(make_client):
    client = make_client("frontdesk")
    assert client.get("/start/nope").status_code == 404
    assert client.post("/start/nope", {}).status_code == 404
    assert client.get("/start/nope/diagram.json").status_code == 404


def test_process_diagram_for_the_start_page(make_client):
    data = make_client("frontdesk").get("/start/service_request/diagram.json").get_json()
    assert 'id="service_request"' in data["xml"] and data["path"] == []


def test_instance_page_status_variables_history_and_related(make_client, staff_engine):
    parent = start_request(staff_engine, "SR-P")
    child = staff_engine.start("lost_item", business_key="LI-C", variables={"itemName": "病历本"},
                               user="complaints", parent_instance_id=parent["id"])
    task = open_task(staff_engine, "SR-P")
    staff_engine.claim(task["id"], "complaints")
    staff_engine.complete(task["id"], {"resolution": "已处理"}, user="complaints")

    html = text(make_client("director").get(f"/instances/{parent['id']}"))
    assert 'data-status="active"' in html and "办理中" in html
    assert "回访确认" in html and "客户管理部（回访）" in html
    assert "已办任务" in html and "投诉专员 陈静" in html
    assert '<dt title="resolution">处理结果</dt>' in html  # labels from the task forms too
    assert "完成了任务" in html and "生成任务" in html
    assert f'href="/instances/{child["id"]}">LI-C</a>' in html and "失物登记" in html
    child_html = text(make_client("director").get(f"/instances/{child['id']}"))
    assert f'href="/instances/{parent["id"]}">SR-P</a>' in child_html

    # the front desk sees the child (a front-desk task) but not the link to the parent it cannot open
    frontdesk = make_client("frontdesk")
    other = start_request(staff_engine, "SR-X", user="complaints")
    child_as_frontdesk = text(frontdesk.get(f"/instances/{child['id']}"))
    assert f'href="/instances/{parent["id"]}"' in child_as_frontdesk  # frontdesk started the parent
    assert frontdesk.get(f"/instances/{other['id']}").status_code == 404


def test_finished_instance(make_client, staff_engine):
    instance = staff_engine.start("lost_item", business_key="LI-1", variables={"itemName": "伞"}, user="frontdesk")
    task = open_task(staff_engine, "LI-1")
    staff_engine.claim(task["id"], "frontdesk")
    client = make_client("frontdesk")
    response = client.post(f"/tasks/{task['id']}/complete", {})
    assert response.status_code == 302
    assert "流程已结束：已结束" in text(client.get("/"))
    html = text(client.get(f"/instances/{instance['id']}"))
    assert 'data-status="completed"' in html and "流程已结束，没有待办任务。" in html and "流程结束" in html
