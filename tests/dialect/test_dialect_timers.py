"""Timers as Camunda Modeler writes them, through the engine and its scheduler entry point: ISO dates
with and without offset, `${…}` giving a date (calendar functions) or a duration, cycles with a
start date, Quartz cron on boundary events, a timer start event with an anchored cycle.
(tests/integration/test_timers.py covers durations, R3/PT10M, a daily cron start and catch-up.)"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engine.errors import DeploymentError, EngineError, ProcessError
from tests.dialect.conftest import deploy, elements

SHANGHAI = timezone(timedelta(hours=8))


def start(engine, kind, **values):
    return engine.start("dx_timers", variables={"kind": kind, **values}, user="desk")


def advance_to(clock, moment):
    clock.advance(seconds=(moment - clock.now()).total_seconds())


@pytest.mark.parametrize("kind, due, values", [
    ("date_offset", datetime(2026, 3, 2, 10, 30, tzinfo=SHANGHAI), {}),
    ("date_local", datetime(2026, 3, 2, 11, 0, tzinfo=SHANGHAI), {}),  # no offset: hospital time
    # ${addWorkingDays(receivedAt, 1)}: Friday's next working day is Monday, at 17:30
    ("date_expr", datetime(2026, 3, 9, 17, 30, tzinfo=SHANGHAI), {"receivedAt": "2026-03-06T10:00:00+08:00"}),
    # PT${waitMinutes}M: a composite template giving the ISO duration PT45M
    ("duration_expr", datetime(2026, 3, 2, 9, 45, tzinfo=SHANGHAI), {"waitMinutes": 45}),
])
def test_intermediate_timer_fires_at_its_due_time(any_engine, clock, kind, due, values):
    deploy(any_engine, "timers.bpmn")
    inst = start(any_engine, kind, **values)
    advance_to(clock, due - timedelta(seconds=1))
    assert any_engine.fire_due_timers() == 0
    clock.advance(seconds=1)
    assert any_engine.fire_due_timers() == 1
    assert elements(any_engine, inst["id"]) == ["Task_after_timer"]


def test_a_date_already_past_fires_at_once(engine, clock):
    deploy(engine, "timers.bpmn", replace={"timers.bpmn": [(b"2026-03-02T10:30:00+08:00", b"2026-03-01T08:00:00Z")]})
    inst = start(engine, "date_offset")
    assert elements(engine, inst["id"]) == ["Task_after_timer"]  # passed on when the token arrived
    assert engine.fire_due_timers() == 0


def test_cycle_with_a_start_date_fires_from_the_start_date(engine, clock):
    deploy(engine, "timers.bpmn")
    inst = start(engine, "cycle_start")
    advance_to(clock, datetime(2026, 3, 2, 9, 59, tzinfo=SHANGHAI))
    assert engine.fire_due_timers() == 0
    clock.advance(minutes=1)
    assert engine.fire_due_timers() == 1
    assert elements(engine, inst["id"]) == ["Task_round", "Task_watch"]
    clock.advance(hours=1)
    assert engine.fire_due_timers() == 1
    clock.advance(hours=5)
    assert engine.fire_due_timers() == 0  # R2: twice only
    assert elements(engine, inst["id"]) == ["Task_round", "Task_round", "Task_watch"]


def test_quartz_cron_boundary_and_an_expression_date_boundary(engine, clock):
    deploy(engine, "timers.bpmn")
    inst = start(engine, "cron", shiftEnd="2026-03-03T17:00:00+08:00")
    advance_to(clock, datetime(2026, 3, 2, 12, 0, tzinfo=SHANGHAI))  # Monday noon
    assert engine.fire_due_timers() == 1
    assert elements(engine, inst["id"]) == ["Task_duty", "Task_lunch_check"]
    advance_to(clock, datetime(2026, 3, 3, 12, 0, tzinfo=SHANGHAI))  # Tuesday noon
    assert engine.fire_due_timers() == 1
    advance_to(clock, datetime(2026, 3, 3, 17, 0, tzinfo=SHANGHAI))  # ${shiftEnd}: the task is interrupted
    assert engine.fire_due_timers() == 1
    assert elements(engine, inst["id"]) == ["Task_handover", "Task_lunch_check", "Task_lunch_check"]
    advance_to(clock, datetime(2026, 3, 4, 12, 0, tzinfo=SHANGHAI))
    assert engine.fire_due_timers() == 0  # the cron went with its task


def test_timer_start_event_with_an_anchored_cycle(engine, clock):
    deploy(engine, "timer_start.bpmn")
    advance_to(clock, datetime(2026, 3, 2, 20, 0, tzinfo=SHANGHAI))
    assert engine.fire_due_timers() == 1
    advance_to(clock, datetime(2026, 3, 3, 20, 0, tzinfo=SHANGHAI))
    assert engine.fire_due_timers() == 1
    advance_to(clock, datetime(2026, 3, 6, 20, 0, tzinfo=SHANGHAI))
    assert engine.fire_due_timers() == 0
    instances = engine.list_instances(process_key="dx_evening_report")
    assert len(instances) == 2
    (task,) = engine.list_tasks(engine_query(instances[0]["id"]))
    assert task["due_at"] == datetime(2026, 3, 3, 22, 0, tzinfo=SHANGHAI)  # ${addHours(now(), 2)}


def engine_query(instance_id):
    from engine.service import TaskQuery

    return TaskQuery(instance_id=instance_id)


@pytest.mark.parametrize("old, new, kind", [
    (b"2026-03-02T10:30:00+08:00", b"2026-02-30T10:30:00+08:00", "timeDate"),
    (b"PT${waitMinutes}M", b"PT45X", "timeDuration"),
    (b"0 0 12 ? * MON-FRI", b"0 0 25 ? * MON-FRI", "timeCycle"),
    (b"R2/2026-03-02T10:00:00+08:00/PT1H", b"PT1H", "timeCycle"),
    (b"${addWorkingDays(receivedAt, 1)}", b"${addWorkDays(receivedAt, 1)}", "timeDate"),
])
def test_a_timer_that_cannot_be_read_is_refused_at_deploy(engine, old, new, kind):
    with pytest.raises(DeploymentError) as err:
        deploy(engine, "timers.bpmn", replace={"timers.bpmn": [(old, new)]})
    assert err.value.file == "timers.bpmn" and err.value.attribute == kind
    assert err.value.element and err.value.element.startswith("Timer_")


def test_a_cycle_given_by_an_expression(engine, clock):
    deploy(engine, "timers.bpmn", replace={"timers.bpmn": [(b"R2/2026-03-02T10:00:00+08:00/PT1H", b"${rounds}")]})
    inst = start(engine, "cycle_start", rounds="R3/PT20M")
    for n in range(1, 4):
        clock.advance(minutes=20)
        assert engine.fire_due_timers() == 1
        assert elements(engine, inst["id"]).count("Task_round") == n
    clock.advance(hours=1)
    assert engine.fire_due_timers() == 0


# -- the minimum interval of repeating timers (TIMER_MIN_INTERVAL, 60 s by default) -------------

@pytest.mark.parametrize("new, shown", [
    (b"R/PT0.001S", "would fire again only 0.001 seconds after a firing"),
    (b"R5/2026-03-02T10:00:00+08:00/PT30S", "would fire again only 30 seconds after a firing"),
    (b"R/2026-03-02T10:00:00+08:00/2026-03-02T10:00:20+08:00", "only 20 seconds after a firing"),
])
def test_a_cycle_below_the_minimum_interval_is_refused_at_deploy(engine, new, shown):
    with pytest.raises(DeploymentError) as err:
        deploy(engine, "timers.bpmn", replace={"timers.bpmn": [(b"R2/2026-03-02T10:00:00+08:00/PT1H", new)]})
    assert (err.value.file, err.value.element, err.value.attribute) == ("timers.bpmn", "Timer_rounds", "timeCycle")
    assert shown in err.value.reason and "TIMER_MIN_INTERVAL" in err.value.reason
    assert engine.list_definitions(key="dx_timers") == []


@pytest.mark.parametrize("cron, shown", [
    (b"* * * * * ?", "only 1 second after a firing"),
    (b"0/10 * * * * ?", "only 10 seconds after a firing"),
    (b"0,30 0 12 ? * MON-FRI", "only 30 seconds after a firing"),  # twice within a minute, once a day
])
def test_a_cron_firing_more_often_than_the_minimum_is_refused_at_deploy(engine, cron, shown):
    with pytest.raises(DeploymentError) as err:
        deploy(engine, "timers.bpmn", replace={"timers.bpmn": [(b"0 0 12 ? * MON-FRI", cron)]})
    assert (err.value.element, err.value.attribute) == ("Timer_noon", "timeCycle")
    assert f"cron expression '{cron.decode()}' {'would fire again ' + shown}" in err.value.reason


def test_a_timer_start_event_below_the_minimum_is_refused_at_deploy(engine):
    with pytest.raises(DeploymentError) as err:
        deploy(engine, "timer_start.bpmn",
               replace={"timer_start.bpmn": [(b"R2/2026-03-02T20:00:00+08:00/P1D", b"R/PT1S")]})
    assert (err.value.element, err.value.attribute) == ("StartEvent_evening", "timeCycle")
    # given by an expression it is evaluated at deploy and refused just the same
    with pytest.raises(EngineError) as err:
        deploy(engine, "timer_start.bpmn",
               replace={"timer_start.bpmn": [(b"R2/2026-03-02T20:00:00+08:00/P1D", b"${'R/PT1S'}")]})
    assert "StartEvent_evening" in err.value.message and "TIMER_MIN_INTERVAL" in err.value.message
    assert engine.list_definitions(key="dx_evening_report") == []


def test_one_shot_timers_and_cycles_at_the_minimum_deploy(engine, clock):
    deploy(engine, "timers.bpmn", replace={"timers.bpmn": [
        (b"PT${waitMinutes}M", b"PT1S"),  # a duration is not a cycle: one firing, a second later
        (b"R2/2026-03-02T10:00:00+08:00/PT1H", b"R2/2026-03-02T10:00:00+08:00/PT1M"),
        (b"0 0 12 ? * MON-FRI", b"0 * * ? * MON-FRI")]})
    inst = start(engine, "duration_expr")
    clock.advance(seconds=1)
    assert engine.fire_due_timers() == 1
    assert elements(engine, inst["id"]) == ["Task_after_timer"]


def test_the_minimum_interval_is_a_setting(engine):
    engine.settings.timer_min_interval = 2 * 3600
    with pytest.raises(DeploymentError) as err:
        deploy(engine, "timers.bpmn")  # R2/…/PT1H: hourly is now too often
    assert err.value.element == "Timer_rounds"
    assert "only 1 hour after a firing; a timer may repeat at most once every 2 hours" in err.value.reason


def test_a_cycle_expression_below_the_minimum_fails_the_command_that_reaches_it(engine, clock):
    """`${rounds}` cannot be checked at deploy: the start that reaches the timer fails, naming the
    element, and nothing of the instance is kept (the person who gave the value learns it at once;
    clamping would silently run another schedule than the one entered)."""
    deploy(engine, "timers.bpmn", replace={"timers.bpmn": [(b"R2/2026-03-02T10:00:00+08:00/PT1H", b"${rounds}")]})
    with pytest.raises(ProcessError) as err:
        start(engine, "cycle_start", rounds="R/PT1S")
    assert err.value.details["element"] == "Timer_rounds"
    assert "timer cycle 'R/PT1S' would fire again only 1 second after a firing" in err.value.message
    assert "TIMER_MIN_INTERVAL" in err.value.message
    assert engine.count_instances(process_key="dx_timers") == 0
    inst = start(engine, "cycle_start", rounds="R/PT1M")  # at the minimum: allowed
    clock.advance(minutes=1)
    assert engine.fire_due_timers() == 1
    assert elements(engine, inst["id"]) == ["Task_round", "Task_watch"]


def test_a_legacy_start_timer_below_the_minimum_is_postponed_not_fired(engine, clock):
    """A start timer stored before the minimum existed (or before it was raised) does not start
    instances: it is postponed with back-off and shows as a failed timer until a new version
    replaces it."""
    deploy(engine, "timer_start.bpmn",
           replace={"timer_start.bpmn": [(b"R2/2026-03-02T20:00:00+08:00/P1D", b"R/PT1M")]})
    engine.settings.timer_min_interval = 3600
    clock.advance(minutes=1)
    assert engine.fire_due_timers() == 0
    assert engine.count_instances(process_key="dx_evening_report") == 0
    (failed,) = [h for h in engine.history() if h["action"] == "timer_failed"]
    assert "TIMER_MIN_INTERVAL" in failed["details"]["error"]


def test_a_timer_firing_passes_its_due_time_to_its_own_script_engine():
    """The firing time is an argument of the firing's script engine, not a field set on the
    command's runtime afterwards: the command's own script engine still fires what is due now,
    and a firing never fires later than now."""
    from zoneinfo import ZoneInfo

    from engine.dialect.scripting import DialectScriptEngine, Runtime

    now = datetime(2026, 3, 2, 12, 0, tzinfo=SHANGHAI)
    runtime = Runtime(now=lambda: now, tz=ZoneInfo("Asia/Shanghai"))
    command = DialectScriptEngine(runtime)
    firing = command.firing(now - timedelta(hours=2))
    assert firing.fire_until() == now - timedelta(hours=2)
    assert firing.runtime is runtime
    assert command.fire_until() == now
    assert command.firing(now + timedelta(hours=1)).fire_until() == now
    assert not hasattr(runtime, "fire_until")
