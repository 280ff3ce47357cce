"""Memory and storage budgets of the service.

Builds a SQLite database with 100,000 stored instances (90,000 finished, 10,000 running with an
open task each), then measures in a fresh process the peak resident memory of the service doing a
working day's mix — task-list queries for every group, instance pages, task completions, starts and
a scheduler pass — against a baseline process that only imports and builds the service. Also
reports the stored engine state of finished and running instances.

Budgets: the service stays under 250 MB resident; a finished instance stores at most 8 KB of
engine state.

    .venv/bin/python bench/service_memory.py [--running 10000] [--finished 90000]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIXTURES = ROOT / "tests" / "fixtures"
GROUPS = ["front_desk", "complaint_office", "dept_head", "callback_team"]


def build(db_path: Path, running: int, finished: int) -> dict:
    from sqlalchemy import func, insert, select

    from engine.clock import FrozenClock
    from engine.config import Settings
    from engine.db import Database
    from engine.models import HistoryEvent, InstanceVariable, ProcessInstance
    from engine.service import TaskQuery, WorkflowEngine

    url = f"sqlite:///{db_path}"
    engine = WorkflowEngine(Database(url), Settings(database_url=url), FrozenClock())
    engine.init_db()
    engine.deploy([("triage.dmn", (FIXTURES / "dmn" / "triage.dmn").read_bytes()),
                   ("triage_flow.bpmn", (FIXTURES / "bpmn" / "triage_flow.bpmn").read_bytes())])
    started = time.perf_counter()
    categories = ["收费争议", "服务态度", "环境设施", "候诊时间"]
    for i in range(running):
        inst = engine.start("triage_flow", business_key=f"R-{i:06}", user="frontdesk", variables={
            "category": categories[i % 4], "amount": i % 3000, "urgent": i % 7 == 0,
            "patientName": f"患者{i}", "patientNo": f"P{i:07}"})
        # spread the open tasks over the four steps (and so over four groups)
        for _ in range(i % 4):
            task = engine.list_tasks(TaskQuery(instance_id=inst["id"], limit=1))[0]
            engine.complete(task["id"], {}, user="worker")
    running_s = time.perf_counter() - started

    # one real finished instance, copied as the template of the finished ones
    done = engine.start("triage_flow", business_key="DONE-0", variables={
        "category": "服务态度", "amount": 0, "urgent": False, "patientName": "患者", "patientNo": "P0"})
    for _ in range(4):
        task = engine.list_tasks(TaskQuery(instance_id=done["id"], limit=1))[0]
        engine.complete(task["id"], {"note": "已处理"}, user="worker")
    with engine.db.transaction() as s:
        template = s.get(ProcessInstance, done["id"])
        history = s.execute(select(HistoryEvent).where(HistoryEvent.instance_id == done["id"])).scalars().all()
        variables = s.execute(select(InstanceVariable).where(InstanceVariable.instance_id == done["id"])) \
            .scalars().all()
        finished_state_bytes = len(template.state)
        batch = 5000
        for first in range(0, finished, batch):
            rows, hist, vars_ = [], [], []
            for i in range(first, min(first + batch, finished)):
                iid = str(uuid.uuid4())
                rows.append({"id": iid, "definition_id": template.definition_id,
                             "process_key": template.process_key, "business_key": f"D-{i:06}",
                             "status": "completed", "state": template.state, "version": template.version,
                             "started_at": template.started_at, "ended_at": template.ended_at,
                             "started_by": "frontdesk", "parent_instance_id": None,
                             "search_text": f"D-{i:06} 患者{i}", "summary": template.summary})
                hist += [{"instance_id": iid, "at": h.at, "user": h.user, "action": h.action,
                          "element_id": h.element_id, "element_name": h.element_name, "task_id": h.task_id,
                          "details": h.details} for h in history]
                vars_ += [{"instance_id": iid, "name": v.name, "value": v.value, "text_value": v.text_value,
                           "type_name": v.type_name} for v in variables]
            s.execute(insert(ProcessInstance), rows)
            s.execute(insert(HistoryEvent), hist)
            s.execute(insert(InstanceVariable), vars_)
        total = s.execute(select(func.count(ProcessInstance.id))).scalar()
        running_states = s.execute(select(func.avg(func.length(ProcessInstance.state))).where(
            ProcessInstance.status == "active")).scalar()
    open_tasks = engine.count_tasks(TaskQuery())
    engine.db.dispose()
    return {"instances": total, "open_tasks": open_tasks, "finished_state_bytes": finished_state_bytes,
            "running_state_bytes_avg": round(running_states or 0), "setup_running_s": round(running_s, 1),
            "db_mb": round(db_path.stat().st_size / 2**20, 1)}


WORKLOAD = r'''
import random, resource, sys, json
# a forked child inherits its parent's high-water mark: reset it, then read VmHWM at the end
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
sys.path.insert(0, {root!r})
from engine.config import Settings
from engine.service import TaskQuery, WorkflowEngine
from engine.scheduler import TimerScheduler
from web import create_app
settings = Settings(database_url={url!r})
engine = WorkflowEngine.from_settings(settings)
app = create_app(engine=engine, test_config={{"TESTING": True}})
if {work}:
    rnd = random.Random(7)
    groups = {groups!r}
    for i in range(600):
        g = groups[i % len(groups)]
        engine.count_tasks(TaskQuery(candidate_groups=[g]))
        engine.list_tasks(TaskQuery(candidate_groups=[g], offset=rnd.randrange(0, 2000), limit=50))
        engine.list_tasks(TaskQuery(search="患者" + str(rnd.randrange(10000)), limit=20))
    ids = [i["id"] for i in engine.list_instances(limit=1000, offset=rnd.randrange(0, 90000))]
    for iid in ids[:300]:
        engine.get_instance(iid)
    for task in engine.list_tasks(TaskQuery(candidate_groups=["front_desk"], limit=200)):
        engine.complete(task["id"], {{}}, user="worker")
    for i in range(200):
        engine.start("triage_flow", business_key="NEW-%d" % i, variables={{
            "category": "服务态度", "amount": 1, "urgent": False}})
    TimerScheduler(engine).run_due()
    with app.test_client() as client:
        for _ in range(100):
            client.get("/login")
def peak_mb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"peak_rss_mb": peak_mb()}}))
'''


def measure(url: str, work: bool) -> float:
    code = WORKLOAD.format(root=str(ROOT), url=url, work=work, groups=GROUPS)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--running", type=int, default=10_000)
    parser.add_argument("--finished", type=int, default=90_000)
    args = parser.parse_args()
    random.seed(1)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "memory.db"
        facts = build(db, args.running, args.finished)
        print(f"stored instances {facts['instances']}, open tasks {facts['open_tasks']}, "
              f"database {facts['db_mb']} MB")
        print(f"engine state: finished instance {facts['finished_state_bytes']} bytes "
              f"(budget 8192), running instance {facts['running_state_bytes_avg']} bytes on average")
        url = f"sqlite:///{db}"
        baseline = measure(url, work=False)
        peak = measure(url, work=True)
        print(f"peak RSS: service after a working day's mix {peak:.0f} MB; baseline (imports + app) "
              f"{baseline:.0f} MB; ratio {peak / baseline:.2f}; budget 250 MB")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({**facts, "service_peak_rss_mb": round(peak, 1), "baseline_rss_mb": round(baseline, 1),
                          "rss_ratio": round(peak / baseline, 2), "rss_budget_mb": 250,
                          "finished_state_budget_bytes": 8192, "bench_process_peak_rss_mb": round(own, 1)}))


if __name__ == "__main__":
    main()
