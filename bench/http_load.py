"""HTTP load on the service as `make run` serves it (`hospital-workflow-serve`: gunicorn, two web
workers, scheduler and SMS worker beside them), on SQLite and, with --postgres, on PostgreSQL.

  (i)  saturation: 1, 10 and 50 closed-loop clients completing tasks back to back, over the web
       form path (POST /tasks/<id>/complete, signed in, CSRF token; the 302 is the answer) and over
       /engine-rest (POST /engine-rest/task/<id>/complete, Basic auth); throughput and p50/p95, as
       ratios against a trivial endpoint (GET /engine-rest/version, Basic auth) measured at the
       same concurrency in the same run;
  (ii) a hospital's busy hour, open loop: 50 staff sessions each completing a task every 2 s on
       average (Poisson arrivals, ~25 completions/s, on the web form path) while 10 more page
       through the group task list (a page a second each, Poisson too); latency counts from the
       planned arrival, so a slow answer cannot hide the queue behind it. Target: completion
       p95 <= 50 ms on PostgreSQL.

The load generator (plain threads with `requests`) shares the machine with the service: its CPU
share is printed beside the figures (of the machine, and of the CPU that generator and service
used together). Tasks are made before the service starts (one user task per instance, assigned at
start to the account that completes it); each client signs in once per account and the clients of
an account share that sign-in (sign-in cost is not what is measured).

Prints a line per phase, peak RSS of the service's processes and of the generator, and as its last
line one JSON object.

    .venv/bin/python bench/http_load.py [--short] [--postgres] [--no-sqlite] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests
from sqlalchemy import create_engine, text

from engine.config import Settings
from engine.identity import IdentityService
from engine.service import WorkflowEngine

BIN = Path(sys.executable).parent
PG_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
PASSWORD = "Load-bench-2026"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
BPMN = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Definitions_load_step" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="load_step" name="\xe8\xb4\x9f\xe8\xbd\xbd\xe6\xb5\x8b\xe8\xaf\x95" isExecutable="true">
    <bpmn:startEvent id="StartEvent_1"><bpmn:outgoing>F1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="handle" name="handle" camunda:assignee="${assignee}" camunda:candidateGroups="front_desk">
      <bpmn:extensionElements><camunda:formData>
        <camunda:formField id="answer" label="answer" type="string" />
      </camunda:formData></bpmn:extensionElements>
      <bpmn:incoming>F1</bpmn:incoming><bpmn:outgoing>F2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="EndEvent_1"><bpmn:incoming>F2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="StartEvent_1" targetRef="handle" />
    <bpmn:sequenceFlow id="F2" sourceRef="handle" targetRef="EndEvent_1" />
  </bpmn:process>
</bpmn:definitions>
"""
WEB_USER, REST_USER, VIEW_USER = "bench_web", "bench_rest", "bench_view"


# ------------------------------------------------------------------------------ the service ---
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry.name))
    found, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Service:
    """`hospital-workflow setup`, the bench's accounts and tasks, then `hospital-workflow-serve`."""

    def __init__(self, database_url: str, workdir: Path, workers: int):
        self.url, self.workdir = database_url, workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, DATABASE_URL=database_url, PORT=str(self.port), HOST="127.0.0.1",
                        WEB_WORKERS=str(workers), LOG_LEVEL="WARNING", SECRET_KEY=uuid.uuid4().hex,
                        LOGIN_RATE_LIMIT="10000 per minute", LOGIN_ACCOUNT_RATE_LIMIT="10000 per minute")
        self.process: subprocess.Popen | None = None
        self.pool = {WEB_USER: deque(), REST_USER: deque()}

    def prepare(self, tasks_per_path: int) -> float:
        subprocess.run([str(BIN / "hospital-workflow"), "setup"], env=self.env, cwd=self.workdir, check=True,
                       capture_output=True)
        engine = WorkflowEngine.from_settings(Settings(database_url=self.url))
        identity = IdentityService(engine)
        for user in (WEB_USER, REST_USER, VIEW_USER):
            identity.create_user(user, user, PASSWORD, ["front_desk"])
        engine.deploy([("load_step.bpmn", BPMN)], name="http-load", user="bench")
        t0 = time.perf_counter()
        for i in range(tasks_per_path):
            for user in (WEB_USER, REST_USER):
                engine.start("load_step", business_key=f"HL-{user[6:]}-{i}", user=user,
                             variables={"assignee": user, "patientName": f"患者{i}"})
        seeded = 2 * tasks_per_path / (time.perf_counter() - t0)
        engine.db.dispose()
        db = create_engine(self.url)
        with db.connect() as conn:
            for user in (WEB_USER, REST_USER):
                ids = conn.execute(text("SELECT id FROM tasks WHERE process_key = 'load_step' AND status = 'open' "
                                        "AND assignee = :u"), {"u": user}).scalars().all()
                self.pool[user].extend(ids)
        db.dispose()
        return seeded

    def start(self) -> None:
        self.log = (self.workdir / "service.log").open("w")
        self.process = subprocess.Popen([str(BIN / "hospital-workflow-serve")], env=self.env, cwd=self.workdir,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the service ended: see {self.workdir / 'service.log'}")
            try:
                if requests.get(f"{self.base}/login", timeout=5).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.2)
        raise SystemExit("the service did not answer within 60 s")

    def cpu_seconds(self) -> float:
        total = 0
        for pid in _tree(self.process.pid):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        total = 0
        for pid in _tree(self.process.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            m = re.search(r"VmHWM:\s+(\d+) kB", status)
            total += int(m.group(1)) if m else 0
        return total / 1024

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        self.log.close()


# ------------------------------------------------------------------------------- clients ---
class Clients:
    """Signed-in sessions and the three operations the phases run."""

    def __init__(self, service: Service):
        self.service = service
        self.base = service.base
        self.cookies, self.token = self._sign_in(WEB_USER)
        self.view_cookies, _ = self._sign_in(VIEW_USER)
        self.local = threading.local()

    def _sign_in(self, user: str):
        s = requests.Session()
        token = TOKEN.search(s.get(f"{self.base}/login", timeout=30).text).group(1)
        answer = s.post(f"{self.base}/login", data={"username": user, "password": PASSWORD, "csrf_token": token},
                        timeout=30)
        assert answer.status_code == 200 and "/login" not in answer.url, answer.status_code
        token = TOKEN.search(answer.text).group(1)
        return s.cookies.get_dict(), token

    def session(self, kind: str) -> requests.Session:
        """One connection per client thread and kind (keep-alive, as a browser)."""
        sessions = getattr(self.local, "sessions", None)
        if sessions is None:
            sessions = self.local.sessions = {}
        if kind not in sessions:
            s = requests.Session()
            if kind == "web":
                s.cookies.update(self.cookies)
            elif kind == "view":
                s.cookies.update(self.view_cookies)
            else:
                s.auth = (REST_USER, PASSWORD)
            sessions[kind] = s
        return sessions[kind]

    def trivial(self) -> bool:
        return self.session("rest").get(f"{self.base}/engine-rest/version", timeout=60).status_code == 200

    def rest_complete(self) -> bool | None:
        try:
            task_id = self.service.pool[REST_USER].popleft()
        except IndexError:
            return None
        answer = self.session("rest").post(f"{self.base}/engine-rest/task/{task_id}/complete", timeout=60,
                                           json={"variables": {"answer": {"value": "已答复", "type": "String"}}})
        return answer.status_code == 204

    def web_complete(self) -> bool | None:
        try:
            task_id = self.service.pool[WEB_USER].popleft()
        except IndexError:
            return None
        answer = self.session("web").post(f"{self.base}/tasks/{task_id}/complete", timeout=60, allow_redirects=False,
                                          data={"csrf_token": self.token, "answer": "已答复"})
        return answer.status_code == 302

    def page(self) -> bool:
        page = random.randint(1, 10)
        return self.session("view").get(f"{self.base}/?tab=group&page={page}", timeout=60).status_code == 200


# -------------------------------------------------------------------------------- phases ---
def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _figures(latencies: list[float], errors: int, elapsed: float) -> dict:
    return {"rate": round(len(latencies) / elapsed, 1), "p50_ms": round(_pct(latencies, 0.5) * 1000, 1),
            "p95_ms": round(_pct(latencies, 0.95) * 1000, 1), "n": len(latencies), "errors": errors}


def closed_loop(op, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]
    exhausted = [False]

    def client() -> None:
        start.wait()
        mine, bad = [], 0
        while time.perf_counter() < stop_at[0]:
            t0 = time.perf_counter()
            try:
                ok = op()
            except requests.RequestException:
                ok = False
            if ok is None:
                exhausted[0] = True
                break
            if ok:
                mine.append(time.perf_counter() - t0)
            else:
                bad += 1
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join()
    figures = _figures(latencies, errors[0], time.perf_counter() - t0)
    if exhausted[0]:
        figures["tasks_ran_out"] = True
    return figures


def open_loop(clients: Clients, seconds: float, staff: int, staff_interval: float, viewers: int,
              view_interval: float) -> dict:
    """Poisson arrivals per session; each arrival runs on a pool thread at its planned time."""
    rng = random.Random(12)
    events = []
    for kind, sessions, mean in (("complete", staff, staff_interval), ("page", viewers, view_interval)):
        for _ in range(sessions):
            t = rng.expovariate(1 / mean)
            while t < seconds:
                events.append((t, kind))
                t += rng.expovariate(1 / mean)
    events.sort()
    results: dict[str, list[float]] = {"complete": [], "page": []}
    errors = {"complete": 0, "page": 0}
    lock = threading.Lock()
    late = [0.0]

    def run(planned: float, kind: str) -> None:
        try:
            ok = clients.web_complete() if kind == "complete" else clients.page()
        except requests.RequestException:
            ok = False
        took = time.perf_counter() - planned
        with lock:
            if ok:
                results[kind].append(took)
            elif ok is not None:
                errors[kind] += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=staff + viewers + 40) as pool:
        for offset, kind in events:
            planned = t0 + offset
            delay = planned - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                late[0] = max(late[0], -delay)
            pool.submit(run, planned, kind)
    elapsed = time.perf_counter() - t0
    out = {kind: _figures(results[kind], errors[kind], elapsed) for kind in results}
    out["planned_rate"] = round(sum(1 for _, k in events if k == "complete") / seconds, 1)
    out["generator_late_ms"] = round(late[0] * 1000, 1)
    return out


class CpuMeter:
    """CPU seconds of the generator (this process) and of the service's processes over a phase."""

    def __init__(self, service: Service):
        self.service = service

    def __enter__(self):
        self.wall = time.perf_counter()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.own = usage.ru_utime + usage.ru_stime
        self.svc = self.service.cpu_seconds()
        return self

    def __exit__(self, *exc):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - self.wall
        own = usage.ru_utime + usage.ru_stime - self.own
        svc = self.service.cpu_seconds() - self.svc
        cores = os.cpu_count() or 1
        self.figures = {"generator_cpu_of_machine": round(own / (wall * cores), 3),
                        "generator_cpu_of_used": round(own / max(own + svc, 1e-9), 3),
                        "service_cpu_of_machine": round(svc / (wall * cores), 3)}


def run_backend(name: str, url: str, args) -> dict:
    seconds = 3.0 if args.short else 10.0
    busy_seconds = 10.0 if args.short else 60.0
    tasks = 900 if args.short else 5000
    with tempfile.TemporaryDirectory(prefix="http-load-") as tmp:
        service = Service(url, Path(tmp), args.workers)
        seeded = service.prepare(tasks)
        print(f"[{name}] {2 * tasks} tasks made in-process at {seeded:.0f} starts/s; "
              f"{args.workers} web workers", flush=True)
        service.start()
        try:
            clients = Clients(service)
            for _ in range(20):  # warm both workers (app, caches, script pool)
                clients.trivial()
            out: dict = {"workers": args.workers, "saturation": {}}
            for concurrency in (1, 10, 50):
                row = {}
                for label, op in (("trivial", clients.trivial), ("web_complete", clients.web_complete),
                                  ("rest_complete", clients.rest_complete)):
                    with CpuMeter(service) as meter:
                        row[label] = closed_loop(op, concurrency, seconds)
                    row[label].update(meter.figures)
                for label in ("web_complete", "rest_complete"):
                    row[label]["rate_vs_trivial"] = round(row[label]["rate"] / max(row["trivial"]["rate"], 1e-9), 3)
                out["saturation"][concurrency] = row
                print(f"[{name}] {concurrency:>2} clients: trivial {row['trivial']['rate']}/s "
                      f"p50 {row['trivial']['p50_ms']} p95 {row['trivial']['p95_ms']} ms | "
                      f"web complete {row['web_complete']['rate']}/s ({row['web_complete']['rate_vs_trivial']}x) "
                      f"p50 {row['web_complete']['p50_ms']} p95 {row['web_complete']['p95_ms']} ms | "
                      f"rest complete {row['rest_complete']['rate']}/s ({row['rest_complete']['rate_vs_trivial']}x) "
                      f"p50 {row['rest_complete']['p50_ms']} p95 {row['rest_complete']['p95_ms']} ms | "
                      f"generator CPU {row['web_complete']['generator_cpu_of_machine']:.0%} of the machine",
                      flush=True)
            with CpuMeter(service) as meter:
                busy = open_loop(clients, busy_seconds, staff=50, staff_interval=2.0, viewers=10, view_interval=1.0)
            busy.update(meter.figures)
            out["busy_hour"] = busy
            print(f"[{name}] busy hour ({busy_seconds:.0f} s, planned {busy['planned_rate']} completions/s): "
                  f"completion {busy['complete']['rate']}/s p50 {busy['complete']['p50_ms']} "
                  f"p95 {busy['complete']['p95_ms']} ms (target p95 <= 50 ms on PostgreSQL); "
                  f"task list page p50 {busy['page']['p50_ms']} p95 {busy['page']['p95_ms']} ms; "
                  f"generator CPU {busy['generator_cpu_of_machine']:.0%} of the machine, "
                  f"{busy['generator_cpu_of_used']:.0%} of the CPU used", flush=True)
            out["service_peak_rss_mb"] = round(service.peak_rss_mb(), 1)
            errors = sum(r[k]["errors"] for r in out["saturation"].values() for k in r) + \
                busy["complete"]["errors"] + busy["page"]["errors"]
            out["errors"] = errors
        finally:
            service.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="3 s per saturation phase, a 10 s busy hour")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL at 127.0.0.1:5432")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="web workers (WEB_WORKERS)")
    args = parser.parse_args()
    result: dict = {"short": args.short, "cpus": os.cpu_count()}
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="http-load-db-") as tmp:
            result["sqlite"] = run_backend("sqlite", f"sqlite:///{tmp}/hospital.db", args)
    if args.postgres:
        schema = "hl_" + uuid.uuid4().hex[:10]
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            result["postgres"] = run_backend("postgres", f"{PG_URL}?options=-csearch_path%3D{schema}", args)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()
    result["generator_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    rss = {k: v["service_peak_rss_mb"] for k, v in result.items() if isinstance(v, dict)}
    print(f"peak RSS: service {rss} MB (all its processes), load generator {result['generator_peak_rss_mb']} MB")
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
