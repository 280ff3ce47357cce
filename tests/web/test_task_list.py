"""The task list: tabs and their counts, search, filters, sorting, paging, SLA countdowns and the
"next task" button."""

from __future__ import annotations

import re
from datetime import timedelta

from engine.errors import Conflict
from engine.service import TaskQuery
from tests.web.conftest import add_colleague, open_task, start_request, text


def row_keys(html: str) -> list[str]:
    return re.findall(r'data-business-key="([^"]*)"', html)


def active_tab(html: str) -> str:
    return re.search(r'class="tab active" data-tab="(\w+)"', html).group(1)


def tab_counts(html: str) -> dict[str, int]:
    return {tab: int(n) for tab, n in re.findall(r'data-count="(\w+)">(\d+)<', html)}


def test_tabs_show_mine_my_groups_and_due_with_counts(make_client, staff_engine, clock):
    for i in range(3):
        start_request(staff_engine, f"SR-{i}", urgent=(i == 0))
    staff_engine.start("lost_item", business_key="LI-1", variables={"itemName": "雨伞"}, user="frontdesk")
    staff_engine.claim(open_task(staff_engine, "SR-2")["id"], "complaints")

    client = make_client("complaints")
    html = text(client.get("/?tab=mine"))
    assert tab_counts(html) == {"mine": 1, "group": 2, "due": 1}
    assert row_keys(html) == ["SR-2"]
    assert 'data-tab="all"' not in html  # only the director and administrators see everything

    html = text(client.get("/?tab=group"))
    assert row_keys(html) == ["SR-0", "SR-1"]  # urgent first: due in 30 minutes
    assert "LI-1" not in html  # a front-desk task is not offered to the complaint office

    html = text(client.get("/?tab=due"))
    assert row_keys(html) == ["SR-0"]

    html = text(make_client("frontdesk").get("/?tab=group"))
    assert row_keys(html) == ["LI-1"]

    director = text(make_client("director").get("/?tab=all"))
    assert tab_counts(director)["all"] == 4
    assert sorted(row_keys(director)) == ["LI-1", "SR-0", "SR-1", "SR-2"]


def test_default_tab_is_mine_when_i_have_work_else_my_groups(make_client, staff_engine):
    start_request(staff_engine, "SR-1")
    client = make_client("complaints")
    assert active_tab(text(client.get("/"))) == "group"
    staff_engine.claim(open_task(staff_engine, "SR-1")["id"], "complaints")
    assert active_tab(text(client.get("/"))) == "mine"


def test_search_by_business_key_patient_name_or_number_and_filter_by_process(make_client, staff_engine):
    start_request(staff_engine, "SR-100", patient="王小明", patient_no="P7788")
    start_request(staff_engine, "SR-200", patient="李华", patient_no="P1234")
    client = make_client("director")
    assert row_keys(text(client.get("/?tab=all&q=王小明"))) == ["SR-100"]
    assert row_keys(text(client.get("/?tab=all&q=P1234"))) == ["SR-200"]
    assert row_keys(text(client.get("/?tab=all&q=SR-100"))) == ["SR-100"]
    html = text(client.get("/?tab=all&q=nobody"))
    assert row_keys(html) == [] and "没有符合条件的任务" in html
    assert tab_counts(html)["all"] == 0
    assert row_keys(text(client.get("/?tab=all&process=lost_item"))) == []
    assert len(row_keys(text(client.get("/?tab=all&process=service_request")))) == 2
    html = text(client.get("/?tab=all"))
    assert "王小明" in html and "P7788" in html  # the patient column comes from the instance summary


def test_sort_by_priority_and_created(make_client, staff_engine, clock):
    start_request(staff_engine, "SR-A")
    clock.advance(minutes=5)
    start_request(staff_engine, "SR-B", urgent=True)
    clock.advance(minutes=5)
    start_request(staff_engine, "SR-C")
    client = make_client("complaints")
    assert row_keys(text(client.get("/?tab=group&sort=priority")))[0] == "SR-B"
    assert row_keys(text(client.get("/?tab=group&sort=created"))) == ["SR-C", "SR-B", "SR-A"]
    assert row_keys(text(client.get("/?tab=group&sort=due"))) == ["SR-B", "SR-A", "SR-C"]


def test_paging(make_client, staff_engine, clock):
    for i in range(23):
        start_request(staff_engine, f"SR-{i:02}")
        clock.advance(minutes=1)
    client = make_client("complaints")
    first = text(client.get("/?tab=group"))
    assert len(row_keys(first)) == 20 and "第 1 / 2 页，共 23 条" in first
    second = text(client.get("/?tab=group&page=2"))
    assert row_keys(second) == ["SR-20", "SR-21", "SR-22"]
    assert row_keys(text(client.get("/?tab=group&page=99"))) == ["SR-20", "SR-21", "SR-22"]


def test_sla_countdown_and_colours_follow_the_clock(make_client, staff_engine, clock):
    start_request(staff_engine, "SR-N")  # due in 2 hours
    start_request(staff_engine, "SR-U", urgent=True)  # due in 30 minutes
    client = make_client("complaints")
    html = text(client.get("/?tab=group"))
    assert 'data-sla="due_soon">剩余 30分钟<' in html
    assert 'data-sla="on_time">剩余 2小时<' in html
    assert "03-02 09:30" in html and "03-02 11:00" in html  # Shanghai time, not UTC

    clock.advance(minutes=65)
    html = text(client.get("/?tab=group"))
    assert 'data-sla="overdue">超时 35分钟<' in html
    assert 'data-sla="due_soon">剩余 55分钟<' in html
    assert tab_counts(html)["due"] == 2

    clock.advance(hours=26, minutes=20)
    client = make_client("complaints")  # a day without a request: the idle session has ended
    assert 'data-sla="overdue">超时 1天1小时<' in text(client.get("/?tab=group"))


def test_next_task_claims_the_most_urgent_and_opens_it(make_client, staff_engine):
    start_request(staff_engine, "SR-LATER")
    start_request(staff_engine, "SR-URGENT", urgent=True)
    client = make_client("complaints")
    response = client.post("/next")
    urgent = open_task(staff_engine, "SR-URGENT")
    assert response.headers["Location"] == f"/tasks/{urgent['id']}"
    assert urgent["assignee"] == "complaints"
    assert "已领取" in text(client.get(response.headers["Location"]))


def test_next_task_takes_the_following_one_when_a_colleague_was_quicker(make_client, staff_engine,
                                                                         monkeypatch):
    add_colleague(staff_engine)
    start_request(staff_engine, "SR-1", urgent=True)
    start_request(staff_engine, "SR-2")
    first, second = open_task(staff_engine, "SR-1"), open_task(staff_engine, "SR-2")
    real_claim = staff_engine.claim

    def colleague_first(task_id, user, **kwargs):
        # the colleague's claim lands between our list and our claim
        if task_id == first["id"] and staff_engine.get_task(task_id)["assignee"] is None:
            real_claim(task_id, "complaints2")
        return real_claim(task_id, user, **kwargs)

    monkeypatch.setattr(staff_engine, "claim", colleague_first)
    response = make_client("complaints").post("/next")
    assert response.headers["Location"] == f"/tasks/{second['id']}"
    assert staff_engine.get_task(first["id"])["assignee"] == "complaints2"
    assert staff_engine.get_task(second["id"])["assignee"] == "complaints"


def test_next_task_when_there_is_none(make_client):
    client = make_client("complaints")
    response = client.post("/next")
    assert response.headers["Location"] == "/?tab=group"
    assert "当前没有可领取的任务" in text(client.get("/?tab=group"))


def test_claim_from_the_list_and_a_claim_lost_to_a_colleague(make_client, staff_engine):
    add_colleague(staff_engine)
    start_request(staff_engine, "SR-1")
    task = open_task(staff_engine, "SR-1")
    me, colleague = make_client("complaints"), make_client("complaints2")
    assert me.post(f"/tasks/{task['id']}/claim").status_code == 302
    response = colleague.post(f"/tasks/{task['id']}/claim", follow=True)
    assert response.status_code == 200
    assert "该任务已被 投诉专员 陈静 领取" in text(response)
    assert staff_engine.get_task(task["id"])["assignee"] == "complaints"
    assert staff_engine.count_tasks(TaskQuery(assignee="complaints2")) == 0


def test_claim_conflict_from_the_engine_is_a_message(make_client, staff_engine, monkeypatch):
    start_request(staff_engine, "SR-1")
    task = open_task(staff_engine, "SR-1")

    def lost(*args, **kwargs):
        staff_engine.__class__.claim(staff_engine, task["id"], "director")
        raise Conflict("claimed meanwhile")

    monkeypatch.setattr(staff_engine, "claim", lost)
    response = make_client("complaints").post(f"/tasks/{task['id']}/claim", follow=True)
    assert response.status_code == 200 and "该任务已被 客服中心主任 李主任 领取" in text(response)


def test_overdue_filter_uses_the_frozen_clock_not_the_wall_clock(make_client, staff_engine, clock):
    start_request(staff_engine, "SR-1")
    clock.advance(timedelta(days=400, hours=2))
    html = text(make_client("complaints").get("/?tab=due"))
    assert row_keys(html) == ["SR-1"] and "超时 400天" in html
