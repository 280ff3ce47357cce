"""The one clock of the engine.

SpiffWorkflow, the timers, the scheduler and the SLA computations all ask this clock for the
time, so tests and catch-up runs move time without sleeping.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class Clock:
    """Wall clock; every time it returns is aware and in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock(Clock):
    """A clock that only moves when told to (tests, benchmarks, simulations)."""

    def __init__(self, start: datetime | None = None):
        start = start or datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        with self._lock:
            self._now = when.astimezone(UTC)

    def advance(self, delta: timedelta | None = None, **kwargs) -> datetime:
        delta = delta if delta is not None else timedelta(**kwargs)
        with self._lock:
            self._now = self._now + delta
            return self._now
