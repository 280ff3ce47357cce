"""The living demo of `hospital-workflow setup --demo`."""

from __future__ import annotations

from engine.demo import seed_demo_instances
from engine.identity import IdentityService
from engine.notify import list_outbox
from engine.service import TaskQuery
from tests.processes.support import WORKFLOWS


def test_a_new_installation_shows_a_real_task_list_at_once(engine):
    engine.deploy_directory(WORKFLOWS)
    IdentityService(engine).create_demo_staff()
    started = seed_demo_instances(engine)
    assert started == engine.count_instances() >= 16
    by_process = {key: engine.count_instances(process_key=key)
                  for key in ("complaint", "first_contact", "escort_request", "discharge_callback")}
    assert min(by_process.values()) >= 3
    assert engine.count_instances(status="completed") >= 3  # closed ones too
    tasks = engine.list_tasks(TaskQuery(limit=1000))
    assert len(tasks) >= 12
    assert any(t["sla_state"] == "overdue" for t in tasks)
    assert any(t["assignee"] == "complaints" for t in tasks)  # claimed by a demo user
    assert any(t["element_id"] == "Activity_firstResponseEscalation" for t in tasks)  # the overdue warning
    waiting = [i for i in engine.list_instances(process_key="discharge_callback", status="active")
               if not engine.list_tasks(TaskQuery(instance_id=i["id"]))]
    assert waiting, "one callback waits for its day"
    children = [i for i in engine.list_instances(process_key="complaint") if i["parent_instance_id"]]
    assert children, "a complaint raised from a callback"
    # the demo's text messages are handled at once through the console gateway: recorded in the
    # outbox, never left queued for a real SMS provider
    assert engine.external_tasks.count() == 0 and engine.external_tasks.count_open_incidents() == 0
    texts, total = list_outbox(engine)
    assert total >= 5 and {(t["status"], t["gateway"]) for t in texts} == {("sent", "console")}
    assert {t["template"] for t in texts} == {"complaint_receipt", "escort_assigned", "callback_notice"}
    assert seed_demo_instances(engine) == 0  # only ever on a new database


def test_missing_processes_are_skipped(engine):
    engine.deploy([(p.name, p.read_bytes()) for p in sorted((WORKFLOWS / "bpmn").glob("first_contact.bpmn"))])
    assert seed_demo_instances(engine) == 3
    assert seed_demo_instances(engine) == 0
