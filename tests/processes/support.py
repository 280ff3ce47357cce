"""Helpers that let the process tests read like the hospital's rules."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from engine.notify import ConsoleGateway, NotifyWorker, list_outbox
from engine.service import TaskQuery

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def shanghai(year, month, day, hour=0, minute=0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def iso(year, month, day, hour=0, minute=0) -> str:
    return shanghai(year, month, day, hour, minute).isoformat()


def open_tasks(engine, instance_id: str) -> list[dict]:
    return engine.list_tasks(TaskQuery(instance_id=instance_id, limit=1000))


def open_elements(engine, instance_id: str) -> list[str]:
    return sorted(t["element_id"] for t in open_tasks(engine, instance_id))


def the_task(engine, instance_id: str, element_id: str) -> dict:
    found = [t for t in open_tasks(engine, instance_id) if t["element_id"] == element_id]
    assert len(found) == 1, f"expected one open '{element_id}', open: {open_elements(engine, instance_id)}"
    return found[0]


def complete(engine, instance_id: str, element_id: str, values: dict | None = None, user: str | None = None):
    task = the_task(engine, instance_id, element_id)
    return engine.complete(task["id"], values or {}, user=user or task["assignee"])


def variables(engine, instance_id: str) -> dict:
    return {name: v["value"] for name, v in engine.get_variables(instance_id).items()}


def status(engine, instance_id: str) -> str:
    return engine.get_instance(instance_id)["status"]


def path(engine, instance_id: str) -> list[str]:
    return engine.get_instance(instance_id)["path"]


def advance_and_fire(engine, clock, **delta) -> int:
    """Move the injected clock and let the scheduler fire what is due."""
    clock.advance(**delta)
    return engine.fire_due_timers()


def advance_to(engine, clock, moment: datetime) -> int:
    delta = moment - clock.now()
    assert delta.total_seconds() >= 0, f"cannot go back in time to {moment}"
    clock.advance(seconds=delta.total_seconds())
    return engine.fire_due_timers()


def send_sms(engine) -> int:
    """One round of the notification worker: the text messages waiting on topic `notify` go out
    through the console gateway and are recorded in the outbox. Returns how many it handled.

    The processes send their SMS on parallel branches, so staff tasks and timers never wait for
    them; an instance that sent one is only completed once the message is out."""
    return NotifyWorker(engine, ConsoleGateway(), worker_id="sms-worker", hotline="").run_once()


def outbox(engine, template: str | None = None) -> list[dict]:
    """The outbox as the admin page lists it (numbers masked), oldest first."""
    rows, _total = list_outbox(engine, template=template, limit=500)
    return rows[::-1]
