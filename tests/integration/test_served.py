"""The service as `make run` and production run it: `hospital-workflow-serve` (gunicorn, two web
workers, the timer scheduler and the SMS worker beside them), on SQLite and on PostgreSQL.

Each test sets up a database the way `make run` does (`hospital-workflow setup --demo`), starts the
service on a free port, deploys a small process over /engine-rest (tests/fixtures/bpmn/
served_check.bpmn: a step, an SMS, a one-second timer, a step) and works cases over HTTP: started and the first step completed
through /engine-rest (Basic auth), the second step claimed and completed on the web page (signed
in, CSRF token). The second step exists only once the SMS worker has sent the text and the
scheduler has fired the timer, both running beside the web workers. Requests land on both web
workers (their pids are in the access log), so each completes steps of instances the other one
has cached. Then the service stops on SIGTERM and leaves no process behind.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.conftest import PG_AVAILABLE, PostgresSchema

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FIXTURE = ROOT / "tests" / "fixtures" / "bpmn" / "served_check.bpmn"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
CASES = 4
SEARCHED = "13912345678"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> dict[int, str]:
    """The processes below `pid` (Linux /proc), with their start times (a pid may be reused)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        starts[int(entry.name)] = fields[19]
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def still_running(processes: dict[int, str]) -> list[int]:
    alive = []
    for pid, start in processes.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[19] == start and fields[0] != "Z":
            alive.append(pid)
    return alive


def run_cli(env: dict, *args: str, cwd: Path) -> None:
    done = subprocess.run([str(BIN / "hospital-workflow"), *args], check=False, env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


@contextmanager
def served(tmp_path: Path, database_url: str):
    """`make run`'s two steps on this database: setup --demo, then the serve command."""
    port = free_port()
    env = dict(os.environ, DATABASE_URL=database_url, PORT=str(port), HOST="127.0.0.1", WEB_WORKERS="2",
               WEB_THREADS="4", LOG_LEVEL="INFO", SMS_GATEWAY="console")
    env.pop("SECRET_KEY", None)
    run_cli(env, "setup", "--demo", cwd=tmp_path)
    log_path = tmp_path / "service.log"
    with log_path.open("w") as log:
        service = subprocess.Popen([str(BIN / "hospital-workflow-serve")], env=env, cwd=tmp_path, stdout=log,
                                   stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert service.poll() is None, log_path.read_text()[-3000:]
            try:
                if requests.get(f"{base}/login", timeout=5).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not listening yet / the app loading
                pass
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        deployed = requests.post(f"{base}/engine-rest/deployment/create", auth=("owner", "demo"), timeout=30,
                                 data={"deployment-name": "served-check"},
                                 files={"served_check.bpmn": (FIXTURE.name, FIXTURE.read_bytes())})
        assert deployed.status_code == 200, deployed.text
        yield base, service, log_path
    finally:
        processes = descendants(service.pid)
        if service.poll() is None:
            service.send_signal(signal.SIGTERM)
        try:
            code = service.wait(40)
        except subprocess.TimeoutExpired:
            service.kill()
            raise
        assert code == 0, log_path.read_text()[-3000:]
        time.sleep(0.5)
        assert still_running(processes) == [], ("left behind", processes, log_path.read_text()[-2000:])


def sign_in(base: str, username: str) -> requests.Session:
    web = requests.Session()
    web.headers["Connection"] = "close"
    token = TOKEN.search(web.get(f"{base}/login", timeout=10).text).group(1)
    answer = web.post(f"{base}/login", data={"username": username, "password": "demo", "csrf_token": token},
                      timeout=10)
    assert answer.status_code == 200 and "/login" not in answer.url, answer.text[:500]
    return web


def open_task(rest: requests.Session, base: str, instance_id: str, key: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        tasks = rest.get(f"{base}/engine-rest/task", params={"processInstanceId": instance_id}, timeout=10).json()
        found = [t for t in tasks if t["taskDefinitionKey"] == key]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no open step '{key}' of {instance_id}: {tasks}"
        time.sleep(0.2)


def work_cases(base: str, database_url: str, log_path: Path) -> None:
    # a new connection for every request (no keep-alive), so that requests spread over both web
    # workers instead of following one connection
    rest = requests.Session()
    rest.auth = ("frontdesk", "demo")
    rest.headers["Connection"] = "close"
    web = sign_in(base, "frontdesk")
    instances = []
    for i in range(CASES):
        phone = f"1380013800{i}"
        started = rest.post(f"{base}/engine-rest/process-definition/key/served_check/start", timeout=10, json={
            "businessKey": f"SC-{i}",
            "variables": {"phone": {"value": phone, "type": "String"},
                          "patientName": {"value": f"患者{i}", "type": "String"},
                          "callbackDue": {"value": "2026-12-20", "type": "String"}}})
        assert started.status_code == 200, started.text
        instances.append((started.json()["id"], phone))
    for instance_id, _phone in instances:  # the first step over /engine-rest
        task = open_task(rest, base, instance_id, "register")
        done = rest.post(f"{base}/engine-rest/task/{task['id']}/complete", timeout=10,
                         json={"variables": {"note": {"value": f"登记 {instance_id[:8]}", "type": "String"}}})
        assert done.status_code == 204, done.text
    for instance_id, _phone in instances:  # after the SMS and the timer: the second step on the page
        task = open_task(rest, base, instance_id, "confirm")
        page = web.get(f"{base}/tasks/{task['id']}", timeout=10)
        assert page.status_code == 200, page.text[:500]
        token = TOKEN.search(page.text).group(1)
        claimed = web.post(f"{base}/tasks/{task['id']}/claim", data={"csrf_token": token}, timeout=10)
        assert claimed.status_code == 200 and "已领取任务" in claimed.text, claimed.text[:1000]
        done = web.post(f"{base}/tasks/{task['id']}/complete", data={"csrf_token": token, "confirmed": "true"},
                        timeout=10)
        assert done.status_code == 200 and "已完成" in done.text, done.text[:1000]
    # a search for a phone number reaches the log only as ?q=…
    assert web.get(f"{base}/", params={"q": SEARCHED}, timeout=10).status_code == 200

    db = create_engine(database_url)
    try:
        with db.connect() as conn:
            for instance_id, phone in instances:
                status = conn.execute(text("SELECT status FROM process_instances WHERE id = :id"),
                                      {"id": instance_id}).scalar()
                assert status == "completed", (instance_id, status)
                names = dict(conn.execute(text("SELECT name, text_value FROM instance_variables "
                                               "WHERE instance_id = :id"), {"id": instance_id}).all())
                assert instance_id[:8] in str(names.get("note")), names
                assert str(names.get("confirmed")).lower() in ("true", "1"), names
                sent = conn.execute(text("SELECT status FROM outbox WHERE instance_id = :id AND recipient = :p"),
                                    {"id": instance_id, "p": phone}).scalars().all()
                assert sent == ["sent"], sent
            fired = conn.execute(text("SELECT count(*) FROM timers WHERE status = 'pending' AND instance_id IN "
                                      "(SELECT id FROM process_instances WHERE process_key = 'served_check')"))
            assert fired.scalar() == 0
    finally:
        db.dispose()
    log = log_path.read_text()
    workers = set(re.findall(r'"(?:GET|POST) /(?:engine-rest|tasks)[^"]*" \d{3} \S+ \S+ <(\d+)>', log))
    assert len(workers) == 2, f"requests should reach both web workers: {workers}"
    assert SEARCHED not in log and '"GET /?q=… HTTP/1.1" 200' in log


def test_make_run_shape_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'var' / 'hospital.db'}"
    with served(tmp_path, url) as (base, _service, log_path):
        work_cases(base, url, log_path)
    log = log_path.read_text()
    assert log.count("timer scheduler") == 1 and "Booting worker" in log
    assert "Shutting down: Master" in log
    # running the service changes no tracked file: the compiled catalog is made at start, ignored by git
    if (ROOT / ".git").exists():
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", "web/translations"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout
        assert status == "", status


@pytest.mark.postgres
def test_production_shape_on_postgresql_with_two_workers(tmp_path):
    if not PG_AVAILABLE:
        pytest.skip("PostgreSQL does not answer at 127.0.0.1:5432")
    schema = PostgresSchema()
    try:
        with served(tmp_path, schema.url) as (base, _service, log_path):
            work_cases(base, schema.url, log_path)
        # no SECRET_KEY set: one key for the run, shared by both workers (the page steps above
        # went to either worker with the same sign-in)
        assert "SECRET_KEY is not set" in log_path.read_text()
    finally:
        schema.drop()


@pytest.mark.parametrize(("env", "expected"), [
    ({"WEB_WORKERS": "zwei"}, "WEB_WORKERS must be a whole number, not 'zwei'"),
    ({"WEB_WORKERS": "0"}, "WEB_WORKERS must be between 1 and 64, not 0"),
    ({"PORT": "70000"}, "PORT must be between 1 and 65535, not 70000"),
    ({"WEB_THREADS": "-1"}, "WEB_THREADS must be between 1 and 64, not -1"),
    ({"HOST": "127.0.0.1 8000"}, "HOST must be an address or host name"),
    ({"DATABASE_URL": "sqlite://"}, "an in-memory SQLite database cannot be shared by the web workers"),
    ({"DATABASE_URL": "sqlite:///{tmp}/new.db"}, "has no schema yet: run `hospital-workflow setup` first"),
    ({"DATABASE_URL": "postgresql+psycopg://hospital:secret@127.0.0.1:9/none"},
     "cannot reach the database postgresql+psycopg://hospital:***@127.0.0.1:9/none"),
])
def test_serve_refuses_settings_it_cannot_use(tmp_path, monkeypatch, capsys, env, expected):
    """A wrong setting stops the serve command before anything starts, naming the setting."""
    from web import serve

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'unused.db'}")
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    started = []
    monkeypatch.setattr(serve.subprocess, "Popen", lambda *a, **k: started.append(a))
    assert serve.main([]) == 2
    err = capsys.readouterr().err
    assert expected in err and "secret" not in err  # a database password is never printed
    assert started == []


def test_the_engine_command_line_hands_serve_over_to_the_web_package():
    """`hospital-workflow serve` (the README's older command) runs `hospital-workflow-serve` with the
    same options; the engine itself never imports the web layer."""
    done = subprocess.run([str(BIN / "hospital-workflow"), "serve", "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and "usage: hospital-workflow-serve" in done.stdout, done.stderr
    assert "--workers" in done.stdout and "--no-scheduler" in done.stdout
    engine_sources = "\n".join(p.read_text() for p in (ROOT / "engine").rglob("*.py"))
    assert not re.search(r"^\s*(from web[ .]|import web\b)", engine_sources, re.MULTILINE)


def test_killing_the_serve_process_leaves_no_web_worker_behind(tmp_path):
    """The serve process killed outright (no chance to stop gunicorn): the kernel sends gunicorn
    SIGTERM (PR_SET_PDEATHSIG), which stops its workers; the port is free again."""
    port = free_port()
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'hospital.db'}", PORT=str(port), WEB_WORKERS="2",
               LOG_LEVEL="WARNING")
    run_cli(env, "setup", cwd=tmp_path)
    service = subprocess.Popen([str(BIN / "hospital-workflow-serve")], env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:  # serving
            assert service.poll() is None and time.monotonic() < deadline
            try:
                if requests.get(f"http://127.0.0.1:{port}/login", timeout=5).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.2)
        processes = descendants(service.pid)
        assert len(processes) >= 3  # gunicorn and its two workers at least
    finally:
        service.kill()
        service.wait(10)
    deadline = time.monotonic() + 30
    while still_running(processes):
        assert time.monotonic() < deadline, ("left behind", still_running(processes))
        time.sleep(0.2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
