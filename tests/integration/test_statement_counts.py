"""How many database statements and transactions each engine command costs, counted with a
SQLAlchemy event listener on the benchmark's own workload (bench/engine_throughput.py: start →
decision → gateway → user tasks, each listed and completed as the task list does).

The bounds are what the engine costs today: a change that adds statements to the hot path fails
here as a number, not a feeling. Lower them when the save path gets leaner."""

from __future__ import annotations

import base64
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event

from engine.service import TaskQuery
from tests.web.conftest import app, fast_password_hashing, make_client, staff_engine  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
BPMN = ROOT / "tests" / "fixtures" / "bpmn" / "triage_flow.bpmn"
DMN = ROOT / "tests" / "fixtures" / "dmn" / "triage.dmn"

# per command: statements sent (BEGIN and PRAGMA not counted), transactions begun (read ones
# included: on PostgreSQL a read runs in AUTOCOMMIT, which SQLAlchemy still counts as begun but
# sends nothing for), of which committed — the same on SQLite and PostgreSQL. Completing is one
# locking read (the task joined with its instance) and the writes.
BOUNDS = {
    "start": (7, 1, 1),
    "list": (1, 1, 0),
    "complete": (7, 1, 1),
}
# per command on PostgreSQL: round trips to the server, counted from libpq's trace (each Sync of
# the extended protocol or simple Query is one): BEGIN, the statements, COMMIT — no pre-ping, no
# BEGIN/ROLLBACK/DEALLOCATE ALL around reads
ROUND_TRIPS = {"start": 9, "list": 1, "complete": 9}


class StatementCounter:
    def __init__(self, engine, trace_dir: Path | None = None):
        self.counts: Counter[str] = Counter()
        self._engine = engine.db.engine
        # on PostgreSQL: libpq traces every message of the connections checked out meanwhile
        self._trace = None
        if trace_dir is not None and not engine.db.is_sqlite:
            self._trace = open(trace_dir / "libpq.trace", "w+")  # noqa: SIM115 (closed in close())

    def _checkout(self, dbapi_connection, _record, _proxy):
        from psycopg import pq

        dbapi_connection.pgconn.trace(self._trace.fileno())
        dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def _checkin(self, dbapi_connection, _record):
        if dbapi_connection is not None:
            dbapi_connection.pgconn.untrace()

    def round_trips(self) -> int:
        """Round trips since the last call; psycopg's one-time PREPARE of a statement it has run
        `prepare_threshold` times (a Parse of a named statement, sent and awaited alone) is not
        counted: it happens once per connection and statement."""
        self._trace.flush()
        self._trace.seek(0)
        sent = [line.split("\t") for line in self._trace.read().splitlines() if line.startswith("F\t")]
        self._trace.seek(0)
        self._trace.truncate()
        trips, batch = 0, []
        for parts in sent:
            kind = parts[2] if len(parts) > 2 else ""
            batch.append(kind)
            if kind in ("Sync", "Query"):
                prepare_alone = "Parse:named" in batch and "Execute" not in batch
                trips += 0 if prepare_alone else 1
                batch = []
            elif kind == "Parse":
                batch[-1] = "Parse:named" if not parts[3].strip().startswith('""') else "Parse"
        return trips

    def close(self) -> None:
        if self._trace is not None:
            self._trace.close()

    def _statement(self, conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            self.counts["statements"] += 1

    def _begin(self, conn):
        self.counts["transactions"] += 1

    def _commit(self, conn):
        self.counts["commits"] += 1

    @contextmanager
    def __call__(self):
        self.counts.clear()
        event.listen(self._engine, "before_cursor_execute", self._statement)
        event.listen(self._engine, "begin", self._begin)
        event.listen(self._engine, "commit", self._commit)
        if self._trace is not None:
            event.listen(self._engine.pool, "checkout", self._checkout)
            event.listen(self._engine.pool, "checkin", self._checkin)
        try:
            yield self.counts
        finally:
            event.remove(self._engine, "before_cursor_execute", self._statement)
            event.remove(self._engine, "begin", self._begin)
            event.remove(self._engine, "commit", self._commit)
            if self._trace is not None:
                event.remove(self._engine.pool, "checkout", self._checkout)
                event.remove(self._engine.pool, "checkin", self._checkin)
                self.counts["round_trips"] = self.round_trips()


def test_statements_and_transactions_per_command(any_engine, tmp_path):
    engine = any_engine
    engine.deploy([(DMN.name, DMN.read_bytes()), (BPMN.name, BPMN.read_bytes())])
    counter = StatementCounter(engine, tmp_path)
    variables = {"category": "收费争议", "amount": 10, "urgent": True, "patientName": "患者"}
    # a first instance warms the caches (definitions, specs, compiled statements)
    first = engine.start("triage_flow", business_key="W-1", variables=variables, user="frontdesk")
    for task in engine.list_tasks(TaskQuery(instance_id=first["id"], limit=10)):
        engine.complete(task["id"], {}, user="frontdesk")

    seen: dict[str, list[tuple[int, int, int]]] = {"start": [], "list": [], "complete": []}
    trips: dict[str, list[int]] = {"start": [], "list": [], "complete": []}

    def note(command, counts):
        seen[command].append((counts["statements"], counts["transactions"], counts["commits"]))
        trips[command].append(counts["round_trips"])

    with counter() as counts:
        instance = engine.start("triage_flow", business_key="B-1", variables=variables, user="frontdesk")
    note("start", counts)
    completed = 0
    while True:
        with counter() as counts:
            tasks = engine.list_tasks(TaskQuery(instance_id=instance["id"], limit=10))
        note("list", counts)
        if not tasks:
            break
        with counter() as counts:
            engine.complete(tasks[0]["id"], {}, user="frontdesk")
        note("complete", counts)
        completed += 1
    counter.close()
    assert completed >= 1 and engine.get_instance(instance["id"])["status"] == "completed"
    if not engine.db.is_sqlite:
        print("round trips", trips)
        heavier = {command: n for command, n in trips.items() if max(n) > ROUND_TRIPS[command]}
        assert not heavier, f"more round trips than {ROUND_TRIPS}: {trips}"

    over = []
    for command, observed in seen.items():
        bound = BOUNDS[command]
        for counted in observed:
            if any(n > limit for n, limit in zip(counted, bound, strict=True)):
                over.append(f"{command}: {counted} statements / transactions / commits (bound {bound})")
    print({command: observed for command, observed in seen.items()})
    assert not over, "the hot path got heavier:\n" + "\n".join(over)


def test_transactions_of_one_click_on_complete(make_client, staff_engine):  # noqa: F811 (fixtures)
    """A staff member's click on "complete" in the task list: the transactions it opens, from the
    sign-in check to the next-step hint. Two: the sign-in check (one read) and the command, which
    checks the task is the user's, reads the form and returns the next steps itself."""
    from tests.web.test_task_page import claimed_task

    client = make_client("complaints")
    # a first click warms what the app keeps (the group names of the hints, read once)
    warm = claimed_task(staff_engine, key="SR-0")
    client.post(f"/tasks/{warm['id']}/complete", {"resolution": "已解释收费明细", "minutesSpent": "15"})
    task = claimed_task(staff_engine)
    client.token()
    counter = StatementCounter(staff_engine)
    with counter() as counts:
        response = client.post(f"/tasks/{task['id']}/complete", {"resolution": "已解释收费明细", "minutesSpent": "15"})
    assert response.status_code == 302
    assert staff_engine.get_task(task["id"])["status"] == "completed"
    print(dict(counts))
    assert counts["transactions"] <= CLICK_TRANSACTIONS, dict(counts)
    assert counts["commits"] == 1, dict(counts)
    # what the user sees is unchanged: the completed task and the next step, from the command's result
    html = client.get("/").get_data(as_text=True)
    assert "已完成：" in html and "SR-1" in html and "下一步：" in html


def test_transactions_of_one_rest_complete(app, staff_engine):  # noqa: F811 (fixtures)
    """A REST complete (/engine-rest and /api/v1): the credentials check (one read), the visibility
    check of the API (one read) and the command."""
    from tests.web.test_task_page import claimed_task

    client = app.test_client()
    headers = {"Authorization": "Basic " + base64.b64encode(b"complaints:demo").decode(),
               "Accept": "application/json"}
    warm = claimed_task(staff_engine, key="R-0")  # the first request audits the sign-in
    client.post(f"/engine-rest/task/{warm['id']}/complete", json={}, headers=headers)
    counter = StatementCounter(staff_engine)
    for n, (url, body) in enumerate([
            ("/engine-rest/task/{}/complete", {"variables": {"resolution": {"value": "已解释"},
                                                             "minutesSpent": {"value": 15}}}),
            ("/api/v1/tasks/{}/complete", {"variables": {"resolution": "已解释", "minutesSpent": 15}})], 1):
        task = claimed_task(staff_engine, key=f"R-{n}")
        with counter() as counts:
            response = client.post(url.format(task["id"]), json=body, headers=headers)
        assert response.status_code in (200, 204), response.get_data(as_text=True)
        assert staff_engine.get_task(task["id"])["status"] == "completed"
        print(url, dict(counts))
        assert counts["transactions"] <= REST_TRANSACTIONS, (url, dict(counts))
        assert counts["commits"] == 1, (url, dict(counts))


CLICK_TRANSACTIONS = 2  # the sign-in check, the command (its result has the next steps)
REST_TRANSACTIONS = 3  # the credentials check, the API's visibility check, the command


def test_sqlite_command_runs_the_engine_without_holding_the_write_lock(engine):
    """On SQLite a complete loads and runs the engine before BEGIN IMMEDIATE (its version guard
    checks what it read), so another command commits while the first one is still working, instead
    of queueing behind the write lock for the whole command."""
    import threading

    engine.deploy([(DMN.name, DMN.read_bytes()), (BPMN.name, BPMN.read_bytes())])
    variables = {"category": "收费争议", "amount": 10, "urgent": True, "patientName": "患者"}
    first = engine.start("triage_flow", business_key="L-1", variables=variables, user="frontdesk")
    second = engine.start("triage_flow", business_key="L-2", variables=variables, user="frontdesk")
    slow_task = engine.list_tasks(TaskQuery(instance_id=first["id"], limit=1))[0]
    quick_task = engine.list_tasks(TaskQuery(instance_id=second["id"], limit=1))[0]

    working, release = threading.Event(), threading.Event()
    run_engine = engine.store.run_engine

    def held_run_engine(*args, **kwargs):
        if threading.current_thread() is slow:
            working.set()
            release.wait(5)
        return run_engine(*args, **kwargs)

    engine.store.run_engine = held_run_engine
    outcome = {}

    def complete_slowly():
        try:
            outcome["slow"] = engine.complete(slow_task["id"], {}, user="frontdesk")
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            outcome["slow"] = exc

    slow = threading.Thread(target=complete_slowly)
    slow.start()
    try:
        assert working.wait(10)
        engine.complete(quick_task["id"], {}, user="frontdesk")
        # the other command committed while the first one was still in its engine work
        assert not release.is_set() and slow.is_alive()
    finally:
        release.set()
        slow.join(30)
    assert isinstance(outcome["slow"], dict), outcome
    assert engine.get_task(slow_task["id"])["status"] == "completed"
    assert engine.get_task(quick_task["id"])["status"] == "completed"


def test_a_complete_whose_instance_changed_meanwhile_runs_again_on_the_fresh_state(engine):
    """SQLite: while a complete is in its engine work (before the write lock), another command
    changes the same instance. The complete's version guard notices and it runs again on the fresh
    state, as it would had it queued for the lock: the user sees success, and nothing is lost."""
    import threading

    engine.deploy([(DMN.name, DMN.read_bytes()), (BPMN.name, BPMN.read_bytes())])
    variables = {"category": "收费争议", "amount": 10, "urgent": True, "patientName": "患者"}
    instance = engine.start("triage_flow", business_key="S-1", variables=variables, user="frontdesk")
    task = engine.list_tasks(TaskQuery(instance_id=instance["id"], limit=1))[0]

    working, release = threading.Event(), threading.Event()
    run_engine = engine.store.run_engine
    runs = []

    def held_run_engine(*args, **kwargs):
        runs.append(threading.current_thread().name)
        if threading.current_thread() is slow and len(runs) == 1:
            working.set()
            release.wait(5)
        return run_engine(*args, **kwargs)

    engine.store.run_engine = held_run_engine
    outcome = {}

    def complete_slowly():
        try:
            outcome["slow"] = engine.complete(task["id"], {}, user="frontdesk")
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            outcome["slow"] = exc

    slow = threading.Thread(target=complete_slowly, name="slow")
    slow.start()
    try:
        assert working.wait(10)
        engine.set_variables(instance["id"], {"note": "家属来电"}, user="director")
    finally:
        release.set()
        slow.join(30)
    assert isinstance(outcome["slow"], dict), outcome
    assert len(runs) >= 2  # the first run met the changed instance and ran again
    assert engine.get_task(task["id"])["status"] == "completed"
    assert engine.get_variables(instance["id"])["note"]["value"] == "家属来电"
