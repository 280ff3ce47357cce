"""Which due timer fires next: a fair order across process definitions.

Firing the due timers strictly in due order lets one definition with a large backlog (thousands of
boundary-cycle repetitions after a downtime, a runaway cycle deployed before the minimum interval
existed) hold back every other definition's timers, escalations included, until its whole
backlog is worked off. Instead the engine fires from a *plan*: one query over the due timers takes
up to `per_definition` of each definition's earliest, and deals them out round-robin — the first
of every definition (most overdue definition first), then the second of every definition, and so
on. A timer that falls due while a plan is worked off waits for the next plan, which is made when
the current one is used up or `max_age` seconds old, whichever comes first; so a due timer of a
definition waits behind at most `per_definition` firings of each other definition (and at most
`max_age` seconds plus one firing per definition), never behind a whole backlog.

Within a definition the plan keeps due order, and an instance's timers still fire in the order they
fell due: a plan entry for an instance fires that instance's earliest due timer when its turn
comes (an instance with five due timers has five entries and they fire its timers oldest first).

The plan is only a hint: each firing claims its timer again in its own transaction (still pending,
still due; `FOR UPDATE SKIP LOCKED` on PostgreSQL), so entries another scheduler fired meanwhile are
skipped and each timer still fires exactly once however many schedulers run.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.models import ProcessInstance, Timer


@dataclass(frozen=True)
class PlannedFiring:
    timer_id: str
    instance_id: str | None  # None: a timer start event (it starts an instance)
    definition_id: str | None


class DueTimerPlan:
    def __init__(self, per_definition: int = 100, max_age: float = 1.0):
        if per_definition < 1:
            raise ValueError("per_definition must be at least 1")
        self.per_definition = per_definition
        self.max_age = max_age
        self._entries: deque[PlannedFiring] = deque()
        self._made_at = 0.0
        self._lock = threading.Lock()

    @staticmethod
    def due_firings(s: Session, now: datetime, per_definition: int) -> list[PlannedFiring]:
        """Up to `per_definition` due timers of each definition, dealt out round-robin."""
        definition = func.coalesce(Timer.definition_id, ProcessInstance.definition_id)
        ranked = (select(Timer.id, Timer.instance_id, Timer.due_at, definition.label("definition_id"),
                         func.row_number().over(partition_by=definition, order_by=(Timer.due_at, Timer.id))
                         .label("turn"))
                  .outerjoin(ProcessInstance, ProcessInstance.id == Timer.instance_id)
                  .where(Timer.status == "pending", Timer.due_at <= now)
                  .subquery())
        rows = s.execute(select(ranked.c.id, ranked.c.instance_id, ranked.c.definition_id)
                         .where(ranked.c.turn <= per_definition)
                         .order_by(ranked.c.turn, ranked.c.due_at, ranked.c.id)).all()
        return [PlannedFiring(*row) for row in rows]

    def take(self) -> PlannedFiring | None:
        """The next planned firing; None when the plan is used up or too old (make a new one)."""
        with self._lock:
            if self._entries and time.monotonic() - self._made_at > self.max_age:
                self._entries.clear()
            return self._entries.popleft() if self._entries else None

    def replace(self, entries: list[PlannedFiring]) -> None:
        with self._lock:
            self._entries = deque(entries)
            self._made_at = time.monotonic()

    def put_back(self, entries: list[PlannedFiring]) -> None:
        """Entries whose instance was busy: tried again on the next call (at the front, so they
        keep their turn)."""
        with self._lock:
            self._entries.extendleft(reversed(entries))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
