"""Timer schedulers as real OS processes, on the wall clock: two share the work on PostgreSQL and
fire each timer exactly once; on SQLite a second one refuses to start."""

from __future__ import annotations

import multiprocessing
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from engine.clock import Clock, FrozenClock
from engine.config import Settings
from engine.db import Database
from engine.models import HistoryEvent, Task, Timer
from engine.scheduler import SchedulerAlreadyRunning, TimerScheduler
from engine.service import WorkflowEngine
from tests.conftest import PG_AVAILABLE, PostgresSchema, fixture_bytes, make_engine

TIMERS = 320
WAIT = timedelta(hours=1)  # the PT1H timer of await_reply


def scheduler_process(url: str, conn, max_sleep: float) -> None:
    """A scheduler process: its own engine on the wall clock; reports the timers it fired."""
    engine = WorkflowEngine(Database(url), Settings(database_url=url), Clock())
    fired: list[str] = []
    fire_next_due = engine.fire_next_due

    def recorded():
        timer_id = fire_next_due()
        if timer_id is not None:
            fired.append(timer_id)
        return timer_id

    engine.fire_next_due = recorded
    scheduler = TimerScheduler(engine, max_sleep=max_sleep)
    try:
        scheduler.start()
    except SchedulerAlreadyRunning as exc:
        conn.send(("refused", exc.message))
        return
    conn.send(("started", os.getpid()))
    conn.poll(120)  # until the test says stop
    scheduler.shutdown()
    conn.send(("fired", fired))
    engine.db.dispose()


class Processes:
    """Scheduler processes started with `spawn` (a fresh interpreter each, as in production)."""

    def __init__(self, url: str, count: int, max_sleep: float = 0.5):
        ctx = multiprocessing.get_context("spawn")
        self.pipes, self.procs = [], []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=scheduler_process, args=(url, child, max_sleep), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def answers(self, timeout: float = 60) -> list[tuple[str, object]]:
        out = []
        for pipe in self.pipes:
            assert pipe.poll(timeout), "a scheduler process did not answer"
            out.append(pipe.recv())
        return out

    def stop(self) -> list:
        for pipe in self.pipes:
            pipe.send("stop")
        return [value for _, value in self.answers()]

    def close(self) -> None:
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


def wait_for(condition, timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


@pytest.mark.postgres
@pytest.mark.skipif(not PG_AVAILABLE, reason="PostgreSQL does not answer at 127.0.0.1:5432")
def test_two_scheduler_processes_fire_each_timer_once(tmp_path):
    schema = PostgresSchema()
    processes = None
    clock = FrozenClock(datetime.now(UTC))
    engine = make_engine(schema.url, clock, tmp_path)
    try:
        engine.deploy([("timer_kinds.bpmn", fixture_bytes("bpmn", "timer_kinds.bpmn"))])
        processes = Processes(schema.url, 2)
        assert [kind for kind, _ in processes.answers()] == ["started", "started"]

        # Instances started with the clock one hour back: their PT1H timers fall due over two
        # seconds from one second from now, in the timers table and in their state alike.
        first = datetime.now(UTC) + timedelta(seconds=1)
        instances = set()
        for i in range(TIMERS):
            clock.set(first + timedelta(seconds=2) * i / TIMERS - WAIT)
            instances.add(engine.start("await_reply", business_key=f"P-{i}")["id"])

        def fired_count() -> int:
            with engine.db.reader() as s:
                return s.execute(select(func.count()).select_from(HistoryEvent)
                                 .where(HistoryEvent.action == "timer")).scalar()

        assert wait_for(lambda: fired_count() >= TIMERS, timeout=60), f"{fired_count()} of {TIMERS} fired"
        fired_by = processes.stop()

        assert all(len(fired) > 0 for fired in fired_by), [len(f) for f in fired_by]  # both did work
        ids = [timer_id for fired in fired_by for timer_id in fired]
        assert len(ids) == len(set(ids)) == TIMERS
        with engine.db.reader() as s:
            per_instance = dict(s.execute(select(HistoryEvent.instance_id, func.count())
                                          .where(HistoryEvent.action == "timer")
                                          .group_by(HistoryEvent.instance_id)).all())
            pending = s.execute(select(func.count()).select_from(Timer).where(Timer.instance_id.isnot(None))).scalar()
            call_again = s.execute(select(func.count()).select_from(Task).where(
                Task.element_id == "CallAgain", Task.status == "open")).scalar()
        assert set(per_instance) == instances
        assert set(per_instance.values()) == {1}
        assert pending == 0
        assert call_again == TIMERS
    finally:
        if processes is not None:
            processes.close()
        engine.db.dispose()
        schema.drop()


@pytest.mark.postgres
@pytest.mark.skipif(not PG_AVAILABLE, reason="PostgreSQL does not answer at 127.0.0.1:5432")
def test_a_timer_another_scheduler_is_firing_is_not_polled_in_a_loop(tmp_path):
    schema = PostgresSchema()
    clock = FrozenClock(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    engine = make_engine(schema.url, clock, tmp_path)
    try:
        engine.deploy([("timer_kinds.bpmn", fixture_bytes("bpmn", "timer_kinds.bpmn"))])
        held = engine.start("await_reply", business_key="H-1")
        clock.advance(minutes=10)
        engine.start("await_reply", business_key="H-2")
        clock.advance(minutes=51)  # the first timer is due, the second in nine minutes
        with engine.db.transaction() as other:  # another scheduler is firing the first one
            other.execute(select(Timer.id).where(Timer.instance_id == held["id"]).with_for_update())
            scheduler = TimerScheduler(engine, retry=1.0)
            assert scheduler.run_due() == 0
            now = clock.now()
            assert scheduler.next_due() < now  # still pending: the other one has not committed yet
            # the next look is not "now" again: it is after `retry`, or at the next timer if sooner
            assert scheduler._next_claimable(now) == now + timedelta(seconds=1)
            scheduler.retry = 3600
            assert scheduler._next_claimable(now) == now + timedelta(minutes=9)
        # the other one ended its transaction without firing it: the timer is ours
        assert scheduler.run_due() == 1
    finally:
        engine.db.dispose()
        schema.drop()


def test_a_second_scheduler_process_on_sqlite_refuses_to_start(tmp_path):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    make_engine(url, FrozenClock(), tmp_path).db.dispose()
    first = Processes(url, 1)
    try:
        assert first.answers()[0][0] == "started"
        second = Processes(url, 1)
        try:
            kind, message = second.answers()[0]
        finally:
            second.close()
        assert kind == "refused"
        assert "only one scheduler" in message and url in message
        assert first.stop() == [[]]
    finally:
        first.close()
    # once the first process has ended, another scheduler may start
    engine = WorkflowEngine(Database(url), Settings(database_url=url), Clock())
    again = TimerScheduler(engine)
    again.start()
    again.shutdown()
    engine.db.dispose()
