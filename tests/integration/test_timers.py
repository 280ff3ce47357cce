"""Timers fire once and on time, with the injected clock: every kind, restarts, catch-up, and
several schedulers on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from engine.errors import TimerFiringError
from engine.models import HistoryEvent, ProcessInstance, Timer
from engine.scheduler import SchedulerAlreadyRunning, TimerScheduler
from engine.service import TIMER_BUSY, TaskQuery
from engine.timer_queue import DueTimerPlan
from tests.conftest import PG_AVAILABLE, PostgresSchema, fixture_bytes, make_engine


def deploy(engine):
    engine.deploy([("timer_kinds.bpmn", fixture_bytes("bpmn", "timer_kinds.bpmn"))])


def open_elements(engine, instance_id=None, process_key=None):
    tasks = engine.list_tasks(TaskQuery(instance_id=instance_id, process_key=process_key, limit=100))
    return sorted(t["element_id"] for t in tasks)


def test_intermediate_and_boundary_timers(any_engine, clock):
    deploy(any_engine)
    inst = any_engine.start("timer_kinds", business_key="T-1")
    assert open_elements(any_engine, inst["id"]) == []
    clock.advance(minutes=29, seconds=59)
    assert any_engine.fire_due_timers() == 0
    clock.advance(seconds=1)
    assert any_engine.fire_due_timers() == 1
    handle = any_engine.list_tasks(TaskQuery(instance_id=inst["id"]))[0]
    assert handle["element_id"] == "Handle"
    # due date from ${dateTime().plusHours(2).toDate()} evaluated with the engine's clock
    assert handle["due_at"] == clock.now() + timedelta(hours=2)

    # non-interrupting cycle R3/PT10M: a reminder each 10 minutes, three times, the task stays
    for n in range(1, 4):
        clock.advance(minutes=10)
        assert any_engine.fire_due_timers() == 1
        assert open_elements(any_engine, inst["id"]) == ["Handle"] + ["Reminder"] * n
    clock.advance(minutes=10)
    assert any_engine.fire_due_timers() == 0

    # interrupting PT2H: the task is cancelled and escalated
    clock.advance(minutes=90)
    assert any_engine.fire_due_timers() == 1
    assert open_elements(any_engine, inst["id"]) == ["Escalate", "Reminder", "Reminder", "Reminder"]
    assert any_engine.get_task(handle["id"])["status"] == "cancelled"


def test_completing_the_task_removes_its_boundary_timers(any_engine, clock):
    deploy(any_engine)
    inst = any_engine.start("timer_kinds", business_key="T-2")
    clock.advance(minutes=30)
    any_engine.fire_due_timers()
    handle = any_engine.list_tasks(TaskQuery(instance_id=inst["id"]))[0]
    any_engine.complete(handle["id"], {}, user="complaints")
    with any_engine.db.reader() as s:
        assert s.execute(select(func.count()).select_from(Timer).where(Timer.instance_id == inst["id"])) \
            .scalar() == 0
    clock.advance(hours=5)
    assert any_engine.fire_due_timers() == 0
    assert any_engine.get_instance(inst["id"])["status"] == "completed"


def test_event_based_gateway_takes_the_first_event(any_engine, clock):
    deploy(any_engine)
    replied = any_engine.start("await_reply", business_key="R-1")
    silent = any_engine.start("await_reply", business_key="R-2")
    any_engine.correlate_message("patient_reply", business_key="R-1", variables={"reply": "好多了"})
    assert open_elements(any_engine, replied["id"]) == ["RecordReply"]
    clock.advance(hours=1)
    assert any_engine.fire_due_timers() == 1  # the replied instance's timer was withdrawn
    assert open_elements(any_engine, silent["id"]) == ["CallAgain"]
    assert open_elements(any_engine, replied["id"]) == ["RecordReply"]


def test_timer_start_event_starts_a_new_instance_each_firing(any_engine, clock):
    deploy(any_engine)
    assert any_engine.count_instances(process_key="daily_check") == 0
    clock.advance(hours=23, minutes=59)  # Tuesday 08:59 in Shanghai
    assert any_engine.fire_due_timers() == 0
    clock.advance(minutes=1)
    assert any_engine.fire_due_timers() == 1
    clock.advance(days=1)
    assert any_engine.fire_due_timers() == 1
    assert any_engine.count_instances(process_key="daily_check") == 2
    assert len(open_elements(any_engine, process_key="daily_check")) == 2
    # a new version replaces the start timer of the old one: still one firing per day
    any_engine.deploy([("timer_kinds.bpmn", fixture_bytes("bpmn", "timer_kinds.bpmn").replace(
        "巡检".encode(), "日常巡检".encode()))])
    clock.advance(days=1)
    assert any_engine.fire_due_timers() == 1
    assert any_engine.count_instances(process_key="daily_check") == 3


def test_catch_up_after_downtime_fires_in_due_order_then_runs_on(engine, clock):
    deploy(engine)
    first = engine.start("timer_kinds", business_key="C-1")
    clock.advance(minutes=5)
    second = engine.start("timer_kinds", business_key="C-2")
    # the service was down for three hours
    clock.advance(hours=3)
    scheduler = TimerScheduler(engine)
    fired = scheduler.run_due()
    assert fired >= 2
    with engine.db.reader() as s:
        timer_events = s.execute(select(HistoryEvent.instance_id).where(HistoryEvent.action == "timer")
                                 .order_by(HistoryEvent.id)).scalars().all()
    assert timer_events[:2] == [first["id"], second["id"]]
    # the waits fired late, at start-up; what follows counts from then (as Camunda does)
    assert open_elements(engine, first["id"]) == ["Handle"]
    assert open_elements(engine, second["id"]) == ["Handle"]
    handle = engine.list_tasks(TaskQuery(instance_id=first["id"]))[0]
    assert handle["due_at"] == clock.now() + timedelta(hours=2)
    assert scheduler.run_due() == 0
    # and then the service runs on normally
    clock.advance(hours=2)
    scheduler.run_due()
    assert open_elements(engine, first["id"]) == ["Escalate", "Reminder", "Reminder", "Reminder"]


def test_a_firing_that_fails_midway_leaves_the_timer_to_fire_again(engine, clock, monkeypatch):
    deploy(engine)
    inst = engine.start("timer_kinds", business_key="X-1")
    clock.advance(minutes=30)
    original = engine._save

    def crash(*args, **kwargs):
        original(*args, **kwargs)
        raise RuntimeError("power cut before commit")

    monkeypatch.setattr(engine, "_save", crash)
    with pytest.raises(TimerFiringError) as err:
        engine.fire_next_due()
    assert "power cut" in str(err.value)
    monkeypatch.setattr(engine, "_save", original)
    assert open_elements(engine, inst["id"]) == []  # nothing of the half-done firing was kept
    assert engine.fire_due_timers() == 1
    assert open_elements(engine, inst["id"]) == ["Handle"]
    assert engine.fire_due_timers() == 0


def test_fire_due_timers_postpones_a_broken_timer_and_fires_the_ones_after_it(engine, clock, monkeypatch):
    """The CLI / demo loop: one timer that cannot fire is retried later with back-off (as the
    scheduler does) instead of stopping every timer due after it."""
    deploy(engine)
    broken = engine.start("timer_kinds", business_key="B-1")
    clock.advance(minutes=1)
    healthy = [engine.start("timer_kinds", business_key=f"B-{n}")["id"] for n in (2, 3)]
    clock.advance(minutes=30)
    original = engine._fire

    def fire(s, timer, now):
        if timer.instance_id == broken["id"]:
            raise RuntimeError("the decision table is missing")
        return original(s, timer, now)

    monkeypatch.setattr(engine, "_fire", fire)
    assert engine.fire_due_timers() == 2  # the two after the broken one fired
    assert [open_elements(engine, i) for i in healthy] == [["Handle"], ["Handle"]]
    assert open_elements(engine, broken["id"]) == []
    with engine.db.reader() as s:
        timer = s.execute(select(Timer).where(Timer.instance_id == broken["id"])).scalar_one()
    assert timer.status == "pending" and timer.attempts == 1
    assert timer.due_at == clock.now() + timedelta(minutes=1)  # back-off: 1, 2, 4 … minutes
    assert "decision table is missing" in timer.last_error
    (failed,) = [h for h in engine.get_instance(broken["id"])["history"] if h["action"] == "timer_failed"]
    assert "decision table is missing" in failed["details"]["error"]
    assert engine.fire_due_timers() == 0  # not retried at once
    clock.advance(minutes=1)
    assert engine.fire_due_timers() == 0
    with engine.db.reader() as s:
        assert s.execute(select(Timer.attempts).where(Timer.instance_id == broken["id"])).scalar() == 2
    monkeypatch.setattr(engine, "_fire", original)
    clock.advance(minutes=2)
    assert engine.fire_due_timers() == 1
    assert open_elements(engine, broken["id"]) == ["Handle"]


def test_the_scheduler_fires_through_the_same_loop_as_the_cli(engine, clock, monkeypatch):
    """One fire loop (Timers.fire_due): a scheduler pass postpones a broken timer with the same
    back-off as the CLI, fires the ones after it, and a shutdown stops a pass between firings."""
    deploy(engine)
    broken = engine.start("timer_kinds", business_key="S-1")
    clock.advance(minutes=1)
    healthy = [engine.start("timer_kinds", business_key=f"S-{n}")["id"] for n in (2, 3)]
    clock.advance(minutes=30)
    original = engine._fire
    passes = []
    loop = engine.timers.fire_due

    def fire_due(**kwargs):
        passes.append(kwargs)
        return loop(**kwargs)

    def fire(s, timer, now):
        if timer.instance_id == broken["id"]:
            raise RuntimeError("the decision table is missing")
        return original(s, timer, now)

    monkeypatch.setattr(engine, "_fire", fire)
    monkeypatch.setattr(engine.timers, "fire_due", fire_due)
    scheduler = TimerScheduler(engine)
    assert scheduler.run_due() == 2
    assert len(passes) == 1 and passes[0]["stop"] is scheduler._stopping
    assert [open_elements(engine, i) for i in healthy] == [["Handle"], ["Handle"]]
    with engine.db.reader() as s:
        timer = s.execute(select(Timer).where(Timer.instance_id == broken["id"])).scalar_one()
    assert timer.attempts == 1 and timer.due_at == clock.now() + timedelta(minutes=1)
    assert scheduler._claimed_at == clock.now()  # the pass ended with nothing due
    monkeypatch.setattr(engine, "_fire", original)
    clock.advance(minutes=1)
    scheduler._stopping.set()  # shutting down: the pass fires nothing more
    assert scheduler.run_due() == 0
    assert scheduler._claimed_at is None
    assert open_elements(engine, broken["id"]) == []


def test_sqlite_refuses_a_second_scheduler(engine):
    first = TimerScheduler(engine)
    first.start()
    try:
        with pytest.raises(SchedulerAlreadyRunning) as err:
            TimerScheduler(engine).start()
        assert "only one scheduler" in str(err.value)
    finally:
        first.shutdown()
    again = TimerScheduler(engine)
    again.start()
    again.shutdown()


def test_scheduler_wakes_when_the_next_timer_is_due(engine, clock):
    deploy(engine)
    scheduler = TimerScheduler(engine, max_sleep=60)
    engine.start("timer_kinds", business_key="W-1")
    due = scheduler.next_due()
    assert due == clock.now() + timedelta(minutes=30)


def test_sla_states_follow_the_clock(engine, clock):
    deploy(engine)
    inst = engine.start("timer_kinds", business_key="S-1")
    clock.advance(minutes=30)
    engine.fire_due_timers()
    task = engine.list_tasks(TaskQuery(instance_id=inst["id"]))[0]
    assert task["sla_state"] == "on_time"
    clock.advance(minutes=61)
    engine.refresh_sla()
    assert engine.list_tasks(TaskQuery(instance_id=inst["id"], sla_states=["due_soon"]))[0]["id"] == task["id"]
    clock.advance(minutes=60)
    engine.refresh_sla()
    assert [t["id"] for t in engine.list_tasks(TaskQuery(overdue=True, element_id="Handle"))] == [task["id"]]


@pytest.mark.skipif(not PG_AVAILABLE, reason="PostgreSQL does not answer at 127.0.0.1:5432")
def test_two_schedulers_on_postgresql_fire_each_of_1000_timers_once(tmp_path):
    start = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    from engine.clock import FrozenClock

    clock = FrozenClock(start)
    schema = PostgresSchema()
    try:
        engine_a = make_engine(schema.url, clock, tmp_path)
        engine_b = make_engine(schema.url, clock, tmp_path)  # a second process: its own engine and pool
        deploy(engine_a)
        for i in range(1000):
            engine_a.start("await_reply", business_key=f"P-{i}")
        clock.advance(hours=1)
        results = {}

        def run(name, eng):
            results[name] = TimerScheduler(eng).run_due()

        threads = [threading.Thread(target=run, args=(n, e)) for n, e in (("a", engine_a), ("b", engine_b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert results["a"] + results["b"] == 1000
        assert results["a"] > 0 and results["b"] > 0
        with engine_a.db.reader() as s:
            fired = s.execute(select(HistoryEvent.instance_id, func.count()).where(HistoryEvent.action == "timer")
                              .group_by(HistoryEvent.instance_id)).all()
        assert len(fired) == 1000 and all(count == 1 for _, count in fired)
        assert engine_a.count_tasks(TaskQuery(process_key="await_reply")) == 1000
        engine_a.db.dispose()
        engine_b.db.dispose()
    finally:
        schema.drop()


@pytest.mark.skipif(not PG_AVAILABLE, reason="PostgreSQL does not answer at 127.0.0.1:5432")
def test_a_firing_steps_aside_while_a_command_holds_the_instance(tmp_path):
    from sqlalchemy import create_engine, text

    from engine.clock import FrozenClock
    from engine.service import TIMER_BUSY

    clock = FrozenClock(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    schema = PostgresSchema()
    try:
        engine = make_engine(schema.url, clock, tmp_path)
        deploy(engine)
        inst = engine.start("await_reply", business_key="LOCK-1")
        clock.advance(hours=1)
        holder = create_engine(schema.url)
        with holder.connect() as conn:  # another command is inside this instance right now
            conn.execute(text("SELECT id FROM process_instances WHERE id = :id FOR UPDATE"), {"id": inst["id"]})
            assert engine.fire_next_due() == TIMER_BUSY
            with engine.db.reader() as s:
                assert s.execute(select(Timer.status).where(Timer.instance_id == inst["id"])).scalar() == "pending"
            conn.rollback()
        holder.dispose()
        assert engine.fire_due_timers() == 1
        assert open_elements(engine, inst["id"]) == ["CallAgain"]
        assert [h["action"] for h in engine.get_instance(inst["id"])["history"]].count("timer") == 1
        engine.db.dispose()
    finally:
        schema.drop()


# --------------------------------------------------------------------------- fairness: a runaway definition


def deploy_runaway(engine):
    engine.deploy([("timer_kinds.bpmn", fixture_bytes("bpmn", "timer_kinds.bpmn")),
                   ("runaway.bpmn", fixture_bytes("bpmn", "runaway.bpmn"))])


def due_pending(engine, process_key):
    with engine.db.reader() as s:
        return s.execute(select(func.count()).select_from(Timer)
                         .join(ProcessInstance, ProcessInstance.id == Timer.instance_id)
                         .where(ProcessInstance.process_key == process_key, Timer.status == "pending",
                                Timer.due_at <= engine.clock.now())).scalar()


def recording(engine, scheduler, stop_at):
    """Wrap fire_next_due: the ids fired, in order; the scheduler stops once `stop_at` fired."""
    fired = []
    original = engine.fire_next_due

    def fire_next_due():
        result = original()
        if result not in (None, TIMER_BUSY):
            fired.append(result)
            if result == stop_at():
                scheduler._stopping.set()
        return result

    engine.fire_next_due = fire_next_due
    return fired


def test_a_runaway_definition_does_not_hold_back_another_definitions_escalation(any_engine, clock):
    """Sixty ward rounds nudge every minute (the floor) and the service was down for two hours:
    7,200 nudges are due, most of them earlier than the callback's one-hour escalation. In due
    order the escalation would wait for 3,600 of them; it fires in the scheduler's first round."""
    engine = any_engine
    deploy_runaway(engine)
    rounds = [engine.start("ward_round", business_key=f"W-{i}")["id"] for i in range(60)]
    clock.advance(seconds=30)
    callback = engine.start("await_reply", business_key="CB-1")
    with engine.db.reader() as s:
        escalation = s.execute(select(Timer.id).where(Timer.instance_id == callback["id"])).scalar_one()
    clock.advance(hours=2)  # the service was down
    assert due_pending(engine, "ward_round") == 60

    scheduler = TimerScheduler(engine)
    fired = recording(engine, scheduler, lambda: escalation)
    scheduler.run_due()
    # one firing per definition with due timers (ward_round, minute_sweep, await_reply) in a round
    assert escalation in fired and fired.index(escalation) < 3, len(fired)
    assert open_elements(engine, callback["id"]) == ["CallAgain"]
    assert due_pending(engine, "ward_round") == 60  # the backlog is still there, it simply waited

    # the minute sweep missed 119 firings: it started one instance for all of them and goes on
    assert engine.count_instances(process_key="minute_sweep") == 1
    (sweep,) = engine.list_instances(process_key="minute_sweep")
    (catch_up,) = [h for h in engine.get_instance(sweep["id"])["history"] if h["action"] == "timer_catch_up"]
    assert catch_up["details"]["missed"] == 119
    with engine.db.reader() as s:
        start_timer = s.execute(select(Timer).where(Timer.instance_id.is_(None),
                                                    Timer.element_id == "EveryMinute")).scalar_one()
    assert clock.now() < start_timer.due_at <= clock.now() + timedelta(minutes=1)
    assert start_timer.fired_count == 120

    # the backlog then replays as before, oldest repetitions first, one repetition a firing
    del engine.fire_next_due
    for _ in range(5):
        assert engine.fire_next_due() is not None
    with engine.db.reader() as s:
        nudges = s.execute(select(HistoryEvent.instance_id, HistoryEvent.details)
                           .where(HistoryEvent.action == "timer", HistoryEvent.element_id == "Nudge")).all()
    assert len(nudges) >= 5 and len({instance for instance, _ in nudges}) == len(nudges)
    assert len({details["due_at"] for _, details in nudges}) == 1  # all the first minute's
    assert all(open_elements(engine, r) == ["Round"] for r in rounds)  # non-interrupting


def test_a_timer_falling_due_during_a_backlog_waits_a_bounded_number_of_firings(engine, clock):
    """While the nudges' backlog is worked off, the callback's escalation falls due: it fires within
    one plan (at most `per_definition` firings of each other definition), not after the backlog."""
    deploy_runaway(engine)
    for i in range(40):
        engine.start("ward_round", business_key=f"W-{i}")
    callback = engine.start("await_reply", business_key="CB-2")
    with engine.db.reader() as s:
        escalation = s.execute(select(Timer.id).where(Timer.instance_id == callback["id"])).scalar_one()
    clock.advance(minutes=59, seconds=59)  # 40 rounds × 59 nudges due; the escalation in 1 s
    engine.timer_plan = DueTimerPlan(per_definition=5, max_age=3600)
    fired = [engine.fire_next_due() for _ in range(20)]
    assert escalation not in fired
    clock.advance(seconds=1)
    after = []
    while escalation not in after:
        after.append(engine.fire_next_due())
        assert len(after) <= 5 * 2 + 3, after  # the rest of this plan, then the first round of the next
    assert open_elements(engine, callback["id"]) == ["CallAgain"]
    assert due_pending(engine, "ward_round") == 40


def test_a_planned_firing_fires_its_instances_earliest_due_timer(any_engine, clock):
    """Whatever timer of an instance a plan names, the instance's oldest due timer fires first: the
    three reminders (10, 20, 30 min) before the two-hour escalation that interrupts the task."""
    from engine.timer_queue import PlannedFiring

    deploy(any_engine)
    inst = any_engine.start("timer_kinds", business_key="H-1")
    clock.advance(minutes=30)
    assert any_engine.fire_due_timers() == 1  # Wait30: now at Handle, with Remind and Overdue
    clock.advance(hours=3)
    with any_engine.db.reader() as s:
        overdue = s.execute(select(Timer).where(Timer.instance_id == inst["id"], Timer.element_id == "Overdue")) \
            .scalar_one()
    entry = PlannedFiring(overdue.id, inst["id"], None)
    fired = [any_engine._fire_planned(entry) for _ in range(4)]
    assert fired[-1] == overdue.id and overdue.id not in fired[:3]
    assert open_elements(any_engine, inst["id"]) == ["Escalate", "Reminder", "Reminder", "Reminder"]
    assert any_engine._fire_planned(entry) is None
