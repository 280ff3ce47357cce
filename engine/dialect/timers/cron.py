"""timeCycle as a Quartz cron expression: wall times in the hospital's zone, found by croniter."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import pairwise

from engine.dialect.timers.base import TimerExpressionError, TimerSchedule, _require_aware
from engine.dialect.timers.quartz import FIELD_NAMES, SEARCH_YEARS, QuartzError, quartz


class CronSchedule(TimerSchedule):
    """``timeCycle`` as a Quartz cron expression; fires without end (unless a year field ends it)."""

    def __init__(self, value: str, tz: tzinfo) -> None:
        self.kind = "timeCycle"
        self.value = value
        self.tz = tz
        self.repetitions = None
        self.fields = value.split()
        prefix = f"invalid cron expression {value!r}"
        if len(self.fields) not in (6, 7):
            raise TimerExpressionError(
                f"{prefix}: expected 6 or 7 fields (seconds minutes hours day-of-month month day-of-week "
                f"[year]), got {len(self.fields)}"
                + ("; Camunda uses Quartz syntax: add the seconds field first, e.g. '0 0 9 * * ?'"
                   if len(self.fields) == 5 else ""))
        try:
            self.cron = quartz(" ".join(self.fields))
        except QuartzError as exc:
            raise TimerExpressionError(
                f"{prefix}: {FIELD_NAMES[exc.field]} field {self.fields[exc.field]!r}: {exc}") from None
        self.seconds, self.minutes, self.hours = self.cron.seconds, self.cron.minutes, self.cron.hours
        self.years = self.cron.years
        first_year = 2000 if self.years is None else min(self.years)
        last_year = self.cron.last_year or 2000 + SEARCH_YEARS
        if self.cron.next_date(date(first_year, 1, 1) - timedelta(days=1), last_year) is None:
            raise TimerExpressionError(f"{prefix}: it can never fire (no date matches all fields)")

    def _next_after(self, moment: datetime) -> datetime | None:
        """The first firing after ``moment``: a wall time that exists in ``tz`` (times in a
        daylight-saving gap are skipped; a repeated hour fires at its first pass)."""
        after = moment.astimezone(self.tz).replace(tzinfo=None, microsecond=0)
        last_year = self.cron.last_year or after.year + SEARCH_YEARS
        while True:
            wall = self.cron.next_wall(after, last_year)
            if wall is None:
                return None
            due = wall.replace(tzinfo=self.tz).astimezone(UTC)
            exists = due.astimezone(self.tz).replace(tzinfo=None) == wall
            if exists and due > moment:
                return due
            after = wall

    def first_due(self, now: datetime) -> datetime:
        now = _require_aware(now, "now")
        due = self._next_after(now)
        if due is None:
            raise TimerExpressionError(f"cron expression {self.value!r} never fires after {now.isoformat()}")
        return due

    def next_due(self, previous_due: datetime, fired: int) -> datetime | None:
        self._check_fired(fired)
        return self._next_after(_require_aware(previous_due, "previous_due"))

    def _first_due_after(self, now: datetime) -> datetime | None:
        return self._next_after(now)

    def shortest_gap(self) -> timedelta | None:
        """Exact on the wall clock: the seconds, minutes and hours are a product (each matching
        day has the same times), so consecutive firings are closest within a minute, across a
        minute, across an hour, or across two matching days."""
        seconds, minutes, hours = self.seconds, self.minutes, self.hours
        first_of_day = hours[0] * 3600 + minutes[0] * 60 + seconds[0]
        last_of_day = hours[-1] * 3600 + minutes[-1] * 60 + seconds[-1]
        gaps = []
        if len(seconds) > 1:
            gaps.append(_smallest_step(seconds))
        if len(minutes) > 1:
            gaps.append(_smallest_step(minutes) * 60 - seconds[-1] + seconds[0])
        if len(hours) > 1:
            gaps.append(_smallest_step(hours) * 3600 - (minutes[-1] * 60 + seconds[-1])
                        + (minutes[0] * 60 + seconds[0]))
        days = self.cron.smallest_day_step
        if days is not None:
            gaps.append(days * 86400 - last_of_day + first_of_day)
        return timedelta(seconds=min(gaps)) if gaps else None


def _smallest_step(values: tuple[int, ...]) -> int:
    return min(later - earlier for earlier, later in pairwise(values))
