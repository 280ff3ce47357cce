"""timeDate, timeDuration and ISO 8601 timeCycle schedules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo

from engine.dialect.timers.base import TimerExpressionError, TimerSchedule, _require_aware
from engine.dialect.timers.iso import IsoDuration

# --------------------------------------------------------------------------- schedules


def _first_index(predicate: Callable[[int], bool], count: int | None) -> int | None:
    """Smallest ``k`` in ``[0, count)`` with ``predicate(k)`` (monotone False→True), else None."""
    if count is not None and count <= 0:
        return None
    if predicate(0):
        return 0
    low, step = 0, 1
    while True:
        high = low + step
        if count is not None and high >= count:
            high = count
            break
        if predicate(high):
            break
        low, step = high, step * 2
    while high - low > 1:
        middle = (low + high) // 2
        if predicate(middle):
            high = middle
        else:
            low = middle
    if count is not None and high >= count:
        return None
    return high


class DateSchedule(TimerSchedule):
    """``timeDate``: fires once at a fixed instant."""

    def __init__(self, due: datetime, value: str, tz: tzinfo) -> None:
        self.kind = "timeDate"
        self.due = due
        self.value = value
        self.tz = tz
        self.repetitions = 1

    def first_due(self, now: datetime) -> datetime:
        _require_aware(now, "now")
        return self.due

    def next_due(self, previous_due: datetime, fired: int) -> datetime | None:
        self._check_fired(fired)
        return None


class DurationSchedule(TimerSchedule):
    """``timeDuration``: fires once, a duration after the timer is reached."""

    def __init__(self, duration: IsoDuration, value: str, tz: tzinfo) -> None:
        self.kind = "timeDuration"
        self.duration = duration
        self.value = value
        self.tz = tz
        self.repetitions = 1

    def first_due(self, now: datetime) -> datetime:
        return _add_or_fail(self.duration, _require_aware(now, "now"), self.tz, self.value)

    def next_due(self, previous_due: datetime, fired: int) -> datetime | None:
        self._check_fired(fired)
        return None


def _add_or_fail(duration: IsoDuration, moment: datetime, tz: tzinfo, value: str, times: int = 1) -> datetime:
    try:
        return duration.add_to(moment, tz, times)
    except (OverflowError, ValueError) as exc:
        raise TimerExpressionError(f"timer {value!r} is due outside the supported date range") from exc


class CycleSchedule(TimerSchedule):
    """``timeCycle`` as an ISO 8601 repeating interval (``R3/PT10M``, ``R/start/PT1H``, …)."""

    def __init__(self, repetitions: int | None, duration: IsoDuration, value: str, tz: tzinfo,
                 start: datetime | None = None, end: datetime | None = None) -> None:
        self.kind = "timeCycle"
        self.repetitions = repetitions
        self.duration = duration
        self.value = value
        self.tz = tz
        self.start = start
        self.end = end

    def _occurrence(self, index: int) -> datetime | None:
        """The ``index``-th firing counted from the anchor (backwards from an end); None if unrepresentable."""
        try:
            if self.start is not None:
                return self.duration.add_to(self.start, self.tz, index)
            assert self.end is not None
            return self.duration.add_to(self.end, self.tz, -index)
        except (OverflowError, ValueError):
            return None

    def _first_after(self, moment: datetime) -> datetime | None:
        if self.start is not None:
            def later(k: int) -> bool:
                occurrence = self._occurrence(k)
                return occurrence is None or occurrence > moment
            index = _first_index(later, self.repetitions)
            return None if index is None else self._occurrence(index)

        def not_later(j: int) -> bool:
            occurrence = self._occurrence(j)
            return occurrence is None or occurrence <= moment
        boundary = _first_index(not_later, self.repetitions)
        if boundary == 0:
            return None
        assert boundary is not None or self.repetitions is not None
        return self._occurrence(self.repetitions - 1 if boundary is None else boundary - 1)

    def first_due(self, now: datetime) -> datetime:
        now = _require_aware(now, "now")
        if self.start is None and self.end is None:
            return _add_or_fail(self.duration, now, self.tz, self.value)
        due = self._first_after(now)
        if due is None:  # every firing is in the past: fire once, late (like a past timeDate)
            due = self.end if self.start is None else self._occurrence((self.repetitions or 1) - 1)
        if due is None:
            raise TimerExpressionError(f"timer {self.value!r} is due outside the supported date range")
        return due

    def next_due(self, previous_due: datetime, fired: int) -> datetime | None:
        self._check_fired(fired)
        previous_due = _require_aware(previous_due, "previous_due")
        if self.repetitions is not None and fired >= self.repetitions:
            return None
        if self.start is None and self.end is None:
            try:
                return self.duration.add_to(previous_due, self.tz)
            except (OverflowError, ValueError):
                return None
        return self._first_after(previous_due)

    def shortest_gap(self) -> timedelta | None:
        if self.repetitions == 1:
            return None
        duration = self.duration
        gap = timedelta(microseconds=duration.exact_microseconds)
        days = duration.years * 365 + duration.months * 28 + duration.weeks * 7 + duration.days
        if days:  # calendar days: the shortest month, a day shortened by a daylight-saving jump
            gap += timedelta(days=days) - timedelta(hours=1)
        return gap

    def next_after(self, previous_due: datetime, fired: int, now: datetime) -> tuple[datetime | None, int]:
        now = _require_aware(now, "now")
        previous_due = _require_aware(previous_due, "previous_due")
        if self.duration.has_calendar_part or self.start is not None or self.end is not None:
            return super().next_after(previous_due, fired, now)
        # R/PTnS from a previous firing: the missed ones are counted, not stepped through
        step = self.duration.exact_microseconds
        behind = (now - previous_due) // timedelta(microseconds=1)
        missed = max(behind // step, 0)
        if self.repetitions is not None:
            missed = min(missed, max(self.repetitions - fired, 0))
        if self.repetitions is not None and fired + missed >= self.repetitions:
            return None, missed
        try:
            due = self.duration.add_to(previous_due, self.tz, missed + 1)
        except (OverflowError, ValueError):
            return None, missed
        return due, missed

    def _first_due_after(self, now: datetime) -> datetime | None:
        if self.start is None and self.end is None:  # calendar steps: a day or more from now
            return self.next_due(now, 0)
        return self._first_after(now)
