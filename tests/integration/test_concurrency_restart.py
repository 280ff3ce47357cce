"""Never lose or double work: races between workers, and state that survives a new process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from engine.errors import Conflict
from engine.service import TaskQuery
from tests.conftest import fixture_bytes

ROOT = Path(__file__).resolve().parents[2]


def _race(engine, task_id: str, users: tuple[str, str]) -> list:
    barrier = threading.Barrier(2)
    outcomes: list = [None, None]

    def worker(i: int) -> None:
        barrier.wait()
        try:
            engine.complete(task_id, {"answerText": f"答复{i}", "solved": True}, user=users[i])
            outcomes[i] = "ok"
        except Conflict as exc:
            outcomes[i] = exc
        except Exception as exc:  # anything else is a defect the test must show
            outcomes[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_two_workers_complete_the_same_task_exactly_one_wins(any_engine):
    any_engine.deploy([("inquiry.bpmn", fixture_bytes("bpmn", "inquiry.bpmn"))])
    trials = 100
    for n in range(trials):
        inst = any_engine.start("inquiry", business_key=f"RACE-{n}",
                                variables={"dueAt": "2026-03-02T11:00:00+08:00", "urgent": False})
        task = any_engine.list_tasks(TaskQuery(instance_id=inst["id"]))[0]
        outcomes = _race(any_engine, task["id"], ("frontdesk", "complaints"))
        wins = [o for o in outcomes if o == "ok"]
        losses = [o for o in outcomes if isinstance(o, Conflict)]
        assert len(wins) == 1 and len(losses) == 1, f"trial {n}: {outcomes!r}"
        info = any_engine.get_instance(inst["id"])
        assert info["status"] == "completed"
        completions = [h for h in info["history"] if h["action"] == "complete"]
        assert len(completions) == 1, f"trial {n}: completed {len(completions)} times"


def _cli(db_url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": db_url, "LOG_LEVEL": "WARNING"}
    result = subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_state_survives_a_new_process(engine, tmp_path):
    url = engine.db.url
    engine.deploy([("inquiry.bpmn", fixture_bytes("bpmn", "inquiry.bpmn"))])
    inst = engine.start("inquiry", business_key="RESTART-1", user="frontdesk",
                        variables={"dueAt": "2026-03-02T11:00:00+08:00", "urgent": True})
    task = engine.list_tasks(TaskQuery(instance_id=inst["id"]))[0]
    engine.db.dispose()

    # another process completes the task through the command line
    out = _cli(url, "complete", task["id"], "--user", "frontdesk",
               "--json", json.dumps({"answerText": "请稍候", "solved": False}))
    assert json.loads(out)["status"] == "active"

    listed = json.loads(_cli(url, "tasks", "--json"))
    assert [t["element_id"] for t in listed] == ["followUp"]
    assert listed[0]["assignee"] == "frontdesk"

    # and this process sees what the other one did
    info = engine.get_instance(inst["id"])
    assert [a["element_id"] for a in info["active"]] == ["followUp"]
    assert info["variables"]["answerText"] == "请稍候"
