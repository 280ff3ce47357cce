"""Timers: the timer rows of instances and start events, and firing them. Every firing goes
through `fire_next_due`, called by the one fire loop `fire_due` (the CLI, the demo and the
scheduler's wake-ups, engine/scheduler.py, which only decides when a pass runs and when it stops);
which due timer fires next is the fair plan of engine/timer_queue.py; a timer that fails is
postponed with back-off."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, or_, select, text, update
from sqlalchemy.orm import Session

from engine.deployment import DeploymentResult
from engine.dialect import juel
from engine.dialect import timers as timer_lang
from engine.dialect.scripting import budgets_from
from engine.errors import EngineError, TimerFiringError
from engine.models import ProcessDefinition, ProcessInstance, Task, Timer
from engine.store import Command, UseCase
from engine.timer_queue import DueTimerPlan

log = logging.getLogger(__name__)

TIMER_BUSY = "busy"
BUSY_PAUSE = 0.01  # seconds between two tries of a timer whose instance another command holds
BUSY_GIVE_UP = 200  # tries in a row after which a pass leaves a busy timer to a later pass


@dataclass(frozen=True)
class FirePass:
    """What one pass of the fire loop did: how many timers fired, and the engine clock just before
    the claim that found nothing due (None when the pass ended otherwise: stopped, limit, busy)."""

    fired: int
    idle_at: datetime | None


class _InstanceBusy(Exception):
    """The instance of a due timer is held by another command at this moment."""


class Timers(UseCase):
    """Timer rows and firing; each firing is one transaction."""

    def schedule_start_timers(self, s: Session, result: DeploymentResult) -> None:
        """The timer rows of the timer start events of newly deployed definitions."""
        for d in result.process_definitions:
            row = s.get(ProcessDefinition, d["id"])
            # A new version replaces the start timers of the older ones (as Camunda does).
            older = select(ProcessDefinition.id).where(ProcessDefinition.key == row.key,
                                                       ProcessDefinition.id != row.id)
            s.execute(delete(Timer).where(Timer.instance_id.is_(None), Timer.definition_id.in_(older)))
            for st in row.start_timers or []:
                expression = st["expression"]
                try:
                    value = expression
                    if juel.is_expression(expression):
                        value = juel.compile_template(expression).evaluate(
                            {}, functions=self.engine.functions(), now=self.clock.now(), tz=self.settings.tz,
                            time_limit=budgets_from(self.settings).juel_time)
                    schedule = timer_lang.parse_timer(st["kind"], value, self.settings.tz)
                    timer_lang.check_min_interval(schedule, timedelta(seconds=self.settings.timer_min_interval))
                except Exception as exc:
                    raise EngineError(f"{row.resource_name}, element '{st['element']}': timer start event "
                                      f"'{expression}' cannot be scheduled: {exc}") from exc
                due = schedule.first_due(self.clock.now())
                s.add(Timer(id=str(uuid.uuid4()), instance_id=None, definition_id=row.id, task_id=None,
                            element_id=st["element"], due_at=due, status="pending", fired_count=0,
                            schedule=schedule.to_dict()))

    def fire_next_due(self) -> str | None:
        """Fire one due timer, in its own transaction. Returns the timer's id, TIMER_BUSY when every
        due timer's instance is held by another command right now (try again shortly), or None when
        nothing is due.

        Which one: round-robin across process definitions (engine/timer_queue.py), so one
        definition's backlog cannot hold back another definition's timers; within a definition in
        due order, and an instance's timers in the order they fell due (a catch-up after downtime
        replays them so). On PostgreSQL the claim is `FOR UPDATE SKIP LOCKED`, so several schedulers
        share the work and each timer fires once."""
        plan = self.engine.timer_plan
        busy: list = []
        planned = False
        try:
            while True:
                entry = plan.take()
                if entry is None:
                    if planned:
                        break
                    with self.db.reader() as s:
                        plan.replace(DueTimerPlan.due_firings(s, self.clock.now(), plan.per_definition))
                    planned = True
                    continue
                result = self.fire_planned(entry)
                if result == TIMER_BUSY:
                    busy.append(entry)
                elif result is not None:
                    return result
        finally:
            if busy:
                plan.put_back(busy)
        return TIMER_BUSY if busy else None

    def fire_planned(self, entry) -> str | None:
        """Claim and fire one planned entry: the start timer itself, or the instance's earliest due
        timer. None when there is nothing to fire for it any more (fired meanwhile, or another
        scheduler holds it)."""
        try:
            with self.store.command() as s:
                if not self.db.is_sqlite:
                    # A firing lost in a server crash is simply redone: its timer row is still pending
                    # and everything the firing changed was in the same transaction: never doubled.
                    s.execute(text("SET LOCAL synchronous_commit TO OFF"))
                now = self.clock.now()
                claimable = and_(Timer.status == "pending", Timer.due_at <= now)
                q = select(Timer).where(Timer.id == entry.timer_id, claimable)
                if entry.instance_id is not None:  # the planned timer if it is its instance's earliest due one
                    earlier = Timer.__table__.alias("earlier")
                    q = q.where(~exists().where(
                        earlier.c.instance_id == Timer.instance_id, earlier.c.status == "pending",
                        earlier.c.due_at <= now, or_(earlier.c.due_at < Timer.due_at,
                                                     and_(earlier.c.due_at == Timer.due_at, earlier.c.id < Timer.id))))
                timer = s.execute(q if self.db.is_sqlite else q.with_for_update(skip_locked=True)).scalar_one_or_none()
                if timer is None and entry.instance_id is not None:
                    # else the instance's earliest due timer (unless that is the planned one: fired meanwhile,
                    # or another scheduler is firing it)
                    head = s.execute(select(Timer.id).where(Timer.instance_id == entry.instance_id, claimable)
                                     .order_by(Timer.due_at, Timer.id).limit(1)).scalar()
                    if head is not None and head != entry.timer_id:
                        q = select(Timer).where(Timer.id == head, claimable)
                        timer = s.execute(q if self.db.is_sqlite else q.with_for_update(skip_locked=True)) \
                            .scalar_one_or_none()
                if timer is None:
                    return None
                if timer.instance_id is not None and not self.db.is_sqlite:
                    # Commands lock the instance, then change its timer rows; a firing holding the timer
                    # row must not wait for the instance (the two would deadlock): step aside instead.
                    held = s.execute(select(ProcessInstance.id).where(ProcessInstance.id == timer.instance_id)
                                     .with_for_update(skip_locked=True)).first()
                    if held is None:
                        raise _InstanceBusy()
                try:
                    self.fire(s, timer, now)
                except Exception as exc:
                    raise TimerFiringError(f"timer at element '{timer.element_id}' could not fire: {exc}",
                                           timer_id=timer.id, instance_id=timer.instance_id) from exc
                return timer.id
        except _InstanceBusy:
            return TIMER_BUSY

    def fire(self, s: Session, timer: Timer, now: datetime) -> None:
        if timer.instance_id is None:
            self.fire_start_timer(s, timer, now)
            return
        loaded = self.store.load(s, timer.instance_id)
        # the firing time is the argument of this firing's script engine: the timer specs fire what
        # is due at or before it (engine/dialect/specs.py), later timers wait for their own firing
        loaded.workflow.script_engine = loaded.workflow.script_engine.firing(timer.due_at)
        cmd = Command("scheduler", "timer")
        cmd.events.append({"action": "timer", "element_id": timer.element_id, "task_id": timer.task_id,
                           "details": {"due_at": timer.due_at.isoformat()}})
        self.store.run_engine(loaded.workflow, loaded.definition, cmd)
        self.store.save(s, loaded, cmd)

    def fire_start_timer(self, s: Session, timer: Timer, now: datetime) -> bool:
        """Start an instance; a cycle that missed firings (the service was down) fires once for all
        of them, as Quartz's and Camunda's misfire handling do, and goes on at its next due time
        after now: the missed ones are counted, noted in the new instance's history, not replayed."""
        schedule = timer_lang.TimerSchedule.from_dict(timer.schedule) if timer.schedule else None
        if schedule is not None:
            # a start timer deployed before the minimum interval existed (or before it was raised)
            # does not fire; it is postponed with back-off and shows as a failed timer until a new
            # version of the process replaces it
            timer_lang.check_min_interval(schedule, timedelta(seconds=self.settings.timer_min_interval))
        definition = s.get(ProcessDefinition, timer.definition_id)
        started = self.engine.instances.start_in(s, None, definition.id, None, {}, "scheduler", None, start_event=timer.element_id)
        timer.fired_count += 1
        following, missed = (schedule.next_after(timer.due_at, timer.fired_count, now)
                             if schedule else (None, 0))
        if missed:
            timer.fired_count += missed
            self.store.record(s, started["id"], "scheduler", "timer_catch_up", element_id=timer.element_id,
                              details={"due_at": timer.due_at.isoformat(), "missed": missed,
                                       "next_due": following.isoformat() if following else None})
        if following is None:
            s.delete(timer)
        else:
            timer.due_at = following
            timer.attempts = 0
            timer.last_error = None
            timer.lease_owner = timer.lease_until = None
        return True

    def fire_due(self, *, limit: int | None = None, stop: threading.Event | None = None,
                 max_busy: int | None = BUSY_GIVE_UP) -> FirePass:
        """The one fire loop (the CLI's `fire-timers`, the demo and the scheduler's wake-ups):
        fire every timer that is due now, each in its own transaction, in the fair order of
        engine/timer_queue.py. A timer that fails is postponed with back-off (`postpone`), so it
        cannot keep the timers after it from firing. A due timer whose instance another command
        holds (TIMER_BUSY) is tried again after a short pause; after `max_busy` such pauses in a row
        (None: no limit) the pass leaves it to a later one. The pass ends when nothing is due, after
        `limit` firings, or once `stop` is set (between two firings).

        Each firing goes through the facade's `fire_next_due`, so whatever wraps it (a test, a
        benchmark's recorder) sees every firing."""
        fired = busy = 0
        idle_at = None
        while limit is None or fired < limit:
            if stop is not None and stop.is_set():
                break
            claimed_at = self.clock.now()
            try:
                result = self.engine.fire_next_due()
            except TimerFiringError as exc:  # a broken instance must not stop the others
                log.error("%s", exc.message)
                self.postpone(exc.details["timer_id"], exc.message)
                continue
            if result is None:
                idle_at = claimed_at
                break
            if result == TIMER_BUSY:  # its instance is in another command for a moment
                busy += 1
                if max_busy is not None and busy > max_busy:
                    break
                if stop is not None:
                    stop.wait(BUSY_PAUSE)
                else:
                    time.sleep(BUSY_PAUSE)
                continue
            busy = 0
            fired += 1
        return FirePass(fired, idle_at)

    def fire_due_timers(self, limit: int = 100_000) -> int:
        """Fire every timer that is due now (`fire_due`); returns how many fired."""
        return self.fire_due(limit=limit).fired

    def postpone(self, timer_id: str, error: str) -> None:
        """A timer that failed to fire is retried later (1, 2, 4 … minutes, at most an hour)."""
        with self.store.command() as s:
            timer = s.get(Timer, timer_id)
            if timer is None:
                return
            timer.attempts += 1
            timer.last_error = error[:2000]
            delay = min(60 * 2 ** min(timer.attempts - 1, 6), 3600)
            timer.due_at = self.clock.now() + timedelta(seconds=delay)
            self.store.record(s, timer.instance_id, "scheduler", "timer_failed", element_id=timer.element_id,
                              details={"error": error[:500], "retry_at": timer.due_at.isoformat()})

    def refresh_sla(self) -> int:
        """Recompute due-soon / overdue on open tasks; returns how many changed."""
        now = self.clock.now()
        soon = now + timedelta(minutes=self.settings.due_soon_minutes)
        with self.store.command() as s:
            n = s.execute(update(Task).where(Task.status == "open", Task.due_at <= now,
                                             Task.sla_state != "overdue").values(sla_state="overdue")).rowcount
            n += s.execute(update(Task).where(Task.status == "open", Task.due_at > now, Task.due_at <= soon,
                                              Task.sla_state != "due_soon").values(sla_state="due_soon")).rowcount
            n += s.execute(update(Task).where(Task.status == "open", Task.due_at > soon,
                                              Task.sla_state != "on_time").values(sla_state="on_time")).rowcount
        return n

