"""The group queue ("my groups"): the fast list and count give what the general query gives, claims
keep it in step, and two users claiming at once cannot both win."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from engine.errors import Conflict, InvalidInput
from engine.identity import IdentityService
from engine.service import TaskQuery
from tests.conftest import fixture_bytes

# the answer task offered to two groups and to one user directly
TWO_GROUPS = fixture_bytes("bpmn", "inquiry.bpmn").replace(
    b'camunda:candidateGroups="front_desk"',
    b'camunda:candidateGroups="front_desk,complaint_office" camunda:candidateUsers="frontdesk"')
ME, MY_GROUPS = "frontdesk", ["front_desk", "complaint_office"]


def start_many(engine, clock, n: int) -> list[str]:
    IdentityService(engine).create_demo_staff()
    engine.deploy([("inquiry.bpmn", TWO_GROUPS)])
    ids = []
    for i in range(n):
        due = (clock.now() + timedelta(hours=i % 5 - 2)).isoformat()
        inst = engine.start("inquiry", business_key=f"Q-{i:02}", variables={"dueAt": due, "urgent": i % 3 == 0})
        ids.append(engine.list_tasks(TaskQuery(instance_id=inst["id"]))[0]["id"])
    return ids


def queue(engine, sort: str = "due", offset: int = 0, limit: int = 50):
    q = TaskQuery(visible_to_user=ME, visible_to_groups=MY_GROUPS, unassigned=True, sort=sort,
                  offset=offset, limit=limit)
    return [t["id"] for t in engine.list_tasks(q)], engine.count_tasks(q)


def expected(engine, sort: str = "due", offset: int = 0, limit: int = 50):
    """The same question through the general query (not the queue's fast path)."""
    every = engine.list_tasks(TaskQuery(visible_to_user=ME, visible_to_groups=MY_GROUPS, sort=sort, limit=1000))
    free = [t["id"] for t in every if t["assignee"] is None]
    return free[offset:offset + limit], len(free)


def test_the_fast_queue_agrees_with_the_general_query(any_engine, clock):
    ids = start_many(any_engine, clock, 12)
    for sort in ("due", "priority", "created"):
        assert queue(any_engine, sort) == expected(any_engine, sort)
        assert queue(any_engine, sort, offset=5, limit=4) == expected(any_engine, sort, offset=5, limit=4)
    listed, count = queue(any_engine)
    assert count == 12 and len(listed) == len(set(listed)) == 12  # offered three ways, listed once

    any_engine.claim(ids[0], "complaints")
    any_engine.assign(ids[1], "frontdesk", "admin")
    assert queue(any_engine) == expected(any_engine) and queue(any_engine)[1] == 10
    any_engine.unclaim(ids[0], "complaints")
    any_engine.assign(ids[1], None, "admin")
    assert queue(any_engine) == expected(any_engine) and queue(any_engine)[1] == 12

    instance = any_engine.get_task(ids[2])["instance_id"]
    any_engine.cancel(instance, user="admin")
    any_engine.complete(ids[3], {"answerText": "好", "solved": True}, user="frontdesk")
    listed, count = queue(any_engine)
    assert count == 10 and ids[2] not in listed and ids[3] not in listed
    assert (listed, count) == expected(any_engine)


def test_two_users_claiming_at_once_one_wins(any_engine, clock):
    ids = start_many(any_engine, clock, 30)
    for task_id in ids:
        barrier = threading.Barrier(2)
        outcomes: list = [None, None]

        def claim(i: int, user: str) -> None:
            barrier.wait()
            try:
                any_engine.claim(task_id, user)
                outcomes[i] = user
            except Conflict as exc:
                outcomes[i] = exc

        threads = [threading.Thread(target=claim, args=(i, u)) for i, u in enumerate(("frontdesk", "complaints"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        winners = [o for o in outcomes if isinstance(o, str)]
        assert len(winners) == 1, outcomes
        loser = next(o for o in outcomes if isinstance(o, Conflict))
        assert winners[0] in str(loser)
        assert any_engine.get_task(task_id)["assignee"] == winners[0]
        claims = [h for h in any_engine.get_instance(any_engine.get_task(task_id)["instance_id"])["history"]
                  if h["action"] == "claim"]
        assert len(claims) == 1
    assert queue(any_engine)[1] == 0


def test_a_task_finished_late_stays_overdue(engine, clock):
    [task_id] = start_many(engine, clock, 1)  # due two hours ago
    assert engine.get_task(task_id)["sla_state"] == "overdue"
    engine.complete(task_id, {"answerText": "迟了", "solved": True}, user="frontdesk")
    assert engine.get_task(task_id)["sla_state"] == "overdue"
    [on_time_task] = start_many(engine, clock, 1)
    clock.advance(hours=-5)  # done long before it fell due
    engine.complete(on_time_task, {"answerText": "及时", "solved": True}, user="frontdesk")
    clock.advance(hours=5)
    assert engine.get_task(on_time_task)["sla_state"] == "on_time"


def test_set_variables_changes_the_instance_scope(any_engine, clock):
    [task_id] = start_many(any_engine, clock, 1)
    instance = any_engine.get_task(task_id)["instance_id"]
    any_engine.set_variables(instance, {"patientNo": "P-42", "note": "家属来电"}, user="frontdesk")
    variables = any_engine.get_variables(instance)
    assert variables["patientNo"]["value"] == "P-42" and variables["note"]["value"] == "家属来电"
    assert any_engine.count_tasks(TaskQuery(search="P-42")) == 1  # searchable at once
    changed = [h for h in any_engine.get_instance(instance)["history"] if h["action"] == "variables"]
    assert changed[-1]["details"]["changed"] == {"patientNo": "P-42", "note": "家属来电"}
    with pytest.raises(InvalidInput):
        any_engine.set_variables(instance, {"_hidden": 1})
    any_engine.complete(task_id, {"answerText": "好", "solved": True}, user="frontdesk")
    assert any_engine.get_variables(instance)["note"]["value"] == "家属来电"
    with pytest.raises(Conflict):
        any_engine.set_variables(instance, {"note": "太晚了"})
