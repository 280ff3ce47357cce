"""Engine throughput: one process (start → DMN business rule task → exclusive gateway → 4 user
tasks → end) run N times in four ways in the same run:

  a  raw SpiffWorkflow in memory, spec parsed once (the same dialect: our parser, DMN and
     expression language, no database)
  b  naive: the whole workflow (spec included) serialized to JSON into SQLite after every step
  c  this engine's service layer on SQLite: one transaction per command, tasks listed and
     completed through the calls the web UI makes
  d  the same on PostgreSQL when it answers at 127.0.0.1:5432

Prints instances/s, the ratios c/a and c/b, per command (start, list, complete) the statements,
transactions and on PostgreSQL round trips, and per instance their sums; peak RSS, and as its last
line one JSON object.

    .venv/bin/python bench/engine_throughput.py [N]
"""

from __future__ import annotations

import json
import resource
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import event

from engine.clock import FrozenClock
from engine.config import Settings
from engine.db import Database
from engine.dialect import dmn
from engine.dialect.parser import DialectParser, parse_xml
from engine.dialect.scripting import DialectScriptEngine, Runtime
from engine.serialization import _registry
from engine.service import TaskQuery, WorkflowEngine

BPMN = ROOT / "tests" / "fixtures" / "bpmn" / "triage_flow.bpmn"
DMN = ROOT / "tests" / "fixtures" / "dmn" / "triage.dmn"
PG_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
CASES = [
    {"category": "收费争议", "amount": 10, "urgent": True},
    {"category": "收费争议", "amount": 2000, "urgent": False},
    {"category": "服务态度", "amount": 0, "urgent": False},
    {"category": "环境设施", "amount": 0, "urgent": False},
]


def variables(i: int) -> dict:
    return dict(CASES[i % len(CASES)], patientName=f"患者{i}")


def in_memory_setup():
    parser = DialectParser()
    parser.add_bpmn_xml(parse_xml(BPMN.read_bytes(), BPMN.name), BPMN.name)
    spec = parser.get_spec("triage_flow")
    model = dmn.parse_dmn(DMN.read_bytes(), DMN.name)
    clock = FrozenClock()
    settings = Settings()

    def evaluate(key, binding, version, data, task):
        return model.evaluate(key, data)

    def new_workflow(i: int) -> BpmnWorkflow:
        wf = BpmnWorkflow(spec)
        wf.script_engine = DialectScriptEngine(Runtime(now=clock.now, tz=settings.tz,
                                                       evaluate_decision=evaluate))
        for t in wf.get_tasks(state=TaskState.READY):
            t.data.update(variables(i))
        return wf

    return new_workflow


def run_a(n: int) -> float:
    new_workflow = in_memory_setup()
    started = time.perf_counter()
    for i in range(n):
        wf = new_workflow(i)
        wf.do_engine_steps()
        while not wf.completed:
            task = wf.get_next_task(state=TaskState.READY, manual=True)
            task.run()
            wf.do_engine_steps()
    return n / (time.perf_counter() - started)


def run_b(n: int, directory: Path) -> float:
    new_workflow = in_memory_setup()
    serializer = BpmnWorkflowSerializer(_registry())
    conn = sqlite3.connect(directory / "naive.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE wf (id TEXT PRIMARY KEY, state TEXT)")
    started = time.perf_counter()
    for i in range(n):
        wf = new_workflow(i)
        wf.do_engine_steps()
        key = str(uuid.uuid4())
        with conn:
            conn.execute("INSERT INTO wf VALUES (?, ?)", (key, serializer.serialize_json(wf)))
        while not wf.completed:
            task = wf.get_next_task(state=TaskState.READY, manual=True)
            task.run()
            wf.do_engine_steps()
            with conn:
                conn.execute("UPDATE wf SET state = ? WHERE id = ?", (serializer.serialize_json(wf), key))
    conn.close()
    return n / (time.perf_counter() - started)


def run_instance(engine: WorkflowEngine, i: int, on_command=None) -> None:
    def note(command):
        if on_command is not None:
            on_command(command)

    inst = engine.start("triage_flow", business_key=f"B-{i}", variables=variables(i), user="frontdesk")
    note("start")
    while True:
        tasks = engine.list_tasks(TaskQuery(instance_id=inst["id"], limit=10))
        note("list")
        if not tasks:
            break
        engine.complete(tasks[0]["id"], {}, user="frontdesk")
        note("complete")


def count_per_command(engine: WorkflowEngine, directory: Path, instances: int = 5) -> dict:
    """Statements and transactions (SQLAlchemy events) and, on PostgreSQL, round trips (libpq's
    trace: each Sync or simple Query sent; psycopg's one-time PREPARE not counted) per command,
    averaged over a few instances after the timed run (warm caches, as in steady state)."""
    sa_engine = engine.db.engine
    counts = {"statements": 0, "transactions": 0, "round_trips": 0}
    per: dict[str, list[dict]] = {}
    trace = None if engine.db.is_sqlite else open(directory / "libpq.trace", "w+")  # noqa: SIM115

    def statement(conn, cursor, text, parameters, context, executemany):
        if not text.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            counts["statements"] += 1

    def begin(conn):
        counts["transactions"] += 1

    def checkout(dbapi_connection, _record, _proxy):
        from psycopg import pq

        dbapi_connection.pgconn.trace(trace.fileno())
        dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def checkin(dbapi_connection, _record):
        if dbapi_connection is not None:
            dbapi_connection.pgconn.untrace()

    def round_trips() -> int:
        trace.flush()
        trace.seek(0)
        trips, batch = 0, []
        for line in trace.read().splitlines():
            parts = line.split("\t")
            if parts[0] != "F" or len(parts) < 3:
                continue
            named = parts[2] == "Parse" and not parts[3].strip().startswith('""')
            batch.append("Parse:named" if named else parts[2])
            if parts[2] in ("Sync", "Query"):
                trips += 0 if "Parse:named" in batch and "Execute" not in batch else 1
                batch = []
        trace.seek(0)
        trace.truncate()
        return trips

    def on_command(command):
        if trace is not None:
            counts["round_trips"] = round_trips()
        per.setdefault(command, []).append(dict(counts))
        counts.update(statements=0, transactions=0, round_trips=0)

    event.listen(sa_engine, "before_cursor_execute", statement)
    event.listen(sa_engine, "begin", begin)
    if trace is not None:
        event.listen(sa_engine.pool, "checkout", checkout)
        event.listen(sa_engine.pool, "checkin", checkin)
    try:
        for i in range(instances):
            run_instance(engine, 10**6 + i, on_command)
    finally:
        event.remove(sa_engine, "before_cursor_execute", statement)
        event.remove(sa_engine, "begin", begin)
        if trace is not None:
            event.remove(sa_engine.pool, "checkout", checkout)
            event.remove(sa_engine.pool, "checkin", checkin)
            trace.close()
    out = {command: {k: round(sum(c[k] for c in seen) / len(seen), 2) for k in counts}
           for command, seen in per.items()}
    total = {k: sum(c[k] for seen in per.values() for c in seen) / instances for k in counts}
    out["per_instance"] = {k: round(v, 1) for k, v in total.items()}
    if trace is None:
        for command in out.values():
            command.pop("round_trips")
    return out


def run_service(n: int, url: str, directory: Path) -> tuple[float, dict]:
    settings = Settings(database_url=url, workflows_dir=directory)
    engine = WorkflowEngine(Database(url), settings, FrozenClock())
    engine.init_db()
    engine.deploy([(DMN.name, DMN.read_bytes()), (BPMN.name, BPMN.read_bytes())])
    started = time.perf_counter()
    for i in range(n):
        run_instance(engine, i)
    rate = n / (time.perf_counter() - started)
    counted = count_per_command(engine, directory)
    engine.db.dispose()
    return rate, counted


def print_counts(counted: dict) -> None:
    for command, c in counted.items():
        print(f"     {command:12s} " + ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in c.items()))


def postgres_url() -> str | None:
    try:
        from sqlalchemy import create_engine, text

        eng = create_engine(PG_URL)
        schema = "bench_" + uuid.uuid4().hex[:8]
        with eng.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            conn.commit()
        eng.dispose()
        return f"{PG_URL}?options=-csearch_path%3D{schema}"
    except Exception:
        return None


def drop_schema(url: str) -> None:
    from sqlalchemy import create_engine, text

    schema = url.rsplit("%3D", 1)[1]
    eng = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    eng.dispose()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        run_a(50)  # warm up imports and caches
        a = run_a(n)
        print(f"a  raw SpiffWorkflow in memory:       {a:8.1f} instances/s")
        b = run_b(n, directory)
        print(f"b  naive JSON into SQLite each step:   {b:8.1f} instances/s   (b/a {b / a:.3f})")
        c, c_counts = run_service(n, f"sqlite:///{directory / 'service.db'}", directory)
        print(f"c  service layer on SQLite:            {c:8.1f} instances/s   (c/a {c / a:.3f}, c/b {c / b:.3f})")
        print_counts(c_counts)
        d, d_counts = None, None
        url = postgres_url()
        if url:
            try:
                d, d_counts = run_service(n, url, directory)
                print(f"d  service layer on PostgreSQL:        {d:8.1f} instances/s   (d/a {d / a:.3f})")
                print_counts(d_counts)
            finally:
                drop_schema(url)
        else:
            print("d  PostgreSQL does not answer: skipped")
        rss = peak_rss_mb()
        print(f"peak RSS {rss:.0f} MB; N = {n}")
        print(json.dumps({"n": n, "a": round(a, 1), "b": round(b, 1), "c": round(c, 1),
                          "d": round(d, 1) if d else None, "c_over_a": round(c / a, 3),
                          "c_over_b": round(c / b, 3), "d_over_a": round(d / a, 3) if d else None,
                          "peak_rss_mb": round(rss, 1), "counts_sqlite": c_counts, "counts_postgresql": d_counts}))


if __name__ == "__main__":
    main()
