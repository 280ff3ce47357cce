"""The entry point parse_timer and the minimum-interval check (TIMER_MIN_INTERVAL)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal

from engine.dialect.timers.base import TIMER_KINDS, TimerExpressionError, TimerSchedule, _format_number
from engine.dialect.timers.cron import CronSchedule
from engine.dialect.timers.iso import (
    IsoDuration,
    _duration_from_timedelta,
    _timedate_value,
    parse_iso_datetime,
    parse_iso_duration,
)
from engine.dialect.timers.schedules import CycleSchedule, DateSchedule, DurationSchedule


def describe_gap(gap: timedelta) -> str:
    """``timedelta(seconds=10)`` → ``"10 seconds"``, ``timedelta(minutes=90)`` → ``"1 hour 30 minutes"``."""
    seconds = Decimal(gap // timedelta(microseconds=1)) / Decimal(1_000_000)
    parts: list[tuple[str, Decimal | int]] = [("second", seconds)]
    if seconds >= 60 and seconds == seconds.to_integral_value():
        whole = int(seconds)
        parts = [("hour", whole // 3600), ("minute", whole % 3600 // 60), ("second", whole % 60)]
    words = [f"{_format_number(value)} {unit}{'' if value == 1 else 's'}" for unit, value in parts if value]
    return " ".join(words) or "0 seconds"


def check_min_interval(schedule: TimerSchedule, minimum: timedelta) -> None:
    """Refuse a schedule whose consecutive firings can be closer than ``minimum`` (the setting
    TIMER_MIN_INTERVAL): a timer repeating every few milliseconds starts instances or tokens faster
    than anything can handle them.  One-shot timers (dates, durations, ``R1/…``) always pass."""
    if minimum <= timedelta(0):
        return
    gap = schedule.shortest_gap()
    if gap is None or gap >= minimum:
        return
    what = f"cron expression {schedule.value!r}" if isinstance(schedule, CronSchedule) \
        else f"timer cycle {schedule.value!r}"
    raise TimerExpressionError(
        f"{what} would fire again only {describe_gap(gap)} after a firing; a timer may repeat at most "
        f"once every {describe_gap(minimum)} (setting TIMER_MIN_INTERVAL)")


# --------------------------------------------------------------------------- entry point


def _parse_cycle(source: str, tz: tzinfo) -> TimerSchedule:
    prefix = f"invalid timer cycle {source!r}"
    if not source.startswith(("R", "r")):
        if len(source.split()) >= 5:
            return CronSchedule(source, tz)
        if source.upper().startswith("P"):
            raise TimerExpressionError(
                f"{prefix}: a cycle needs a repetition count: write 'R/{source}' to repeat without end "
                f"or 'R3/{source}' for three firings (use timeDuration for a single firing)")
        raise TimerExpressionError(
            f"{prefix}: expected an ISO 8601 repeating interval such as 'R3/PT10M' "
            "or a Quartz cron expression such as '0 0 9 * * ?'")
    parts = source.split("/")
    count_text = parts[0][1:]
    if count_text and not (count_text.isascii() and count_text.isdigit()):
        raise TimerExpressionError(f"{prefix}: repetition count {parts[0]!r} must be 'R' or 'R' and a number")
    repetitions = int(count_text) if count_text else None
    if repetitions == 0:
        raise TimerExpressionError(f"{prefix}: the repetition count must be at least 1")
    if len(parts) not in (2, 3):
        raise TimerExpressionError(
            f"{prefix}: expected 'R<n>/<duration>', 'R<n>/<start>/<duration>' or 'R<n>/<duration>/<end>'")

    def is_duration(text: str) -> bool:
        return text.strip().upper().startswith(("P", "-P"))

    def duration_of(text: str) -> IsoDuration:
        try:
            duration = parse_iso_duration(text)
        except TimerExpressionError as exc:
            raise TimerExpressionError(f"{prefix}: {exc}") from None
        if duration.is_zero():
            raise TimerExpressionError(f"{prefix}: the interval {text!r} must be longer than zero")
        return duration

    def moment_of(text: str) -> datetime:
        try:
            return parse_iso_datetime(text, tz)
        except TimerExpressionError as exc:
            raise TimerExpressionError(f"{prefix}: {exc}") from None

    if len(parts) == 2:
        if not is_duration(parts[1]):
            raise TimerExpressionError(
                f"{prefix}: {parts[1]!r} is not a duration; write 'R<n>/<start>/<duration>' for a start time")
        return CycleSchedule(repetitions, duration_of(parts[1]), source, tz)
    first, second = parts[1], parts[2]
    if is_duration(first) and is_duration(second):
        raise TimerExpressionError(f"{prefix}: give one duration and one date-time, not two durations")
    if is_duration(first):
        return CycleSchedule(repetitions, duration_of(first), source, tz, end=moment_of(second))
    start = moment_of(first)
    if is_duration(second):
        return CycleSchedule(repetitions, duration_of(second), source, tz, start=start)
    end = moment_of(second)
    if end <= start:
        raise TimerExpressionError(f"{prefix}: the end {second!r} must be after the start {first!r}")
    return CycleSchedule(repetitions, _duration_from_timedelta(end - start), source, tz, start=start)


def parse_timer(kind: str, value: str | datetime | date | timedelta, tz: tzinfo) -> TimerSchedule:
    """Parse a timer definition of ``kind`` (``timeDate``, ``timeDuration``, ``timeCycle``).

    ``value`` is the definition text or what its expression evaluated to; ``tz`` is the
    hospital's zone, used for wall times without offset, calendar arithmetic and cron.
    Raises :class:`TimerExpressionError` naming what was wrong.
    """
    if not isinstance(tz, tzinfo):
        raise TypeError(f"tz must be a tzinfo such as zoneinfo.ZoneInfo('Asia/Shanghai'), not {tz!r}")
    if kind not in TIMER_KINDS:
        raise TimerExpressionError(f"unknown timer kind {kind!r}; expected one of {', '.join(TIMER_KINDS)}")
    if isinstance(value, str) and not value.strip():
        raise TimerExpressionError(f"empty {kind} timer definition")
    if kind == "timeDate":
        due, canonical = _timedate_value(value, tz)
        return DateSchedule(due, canonical, tz)
    if kind == "timeDuration":
        if isinstance(value, timedelta):
            duration = _duration_from_timedelta(value)
            return DurationSchedule(duration, duration.to_iso(), tz)
        if not isinstance(value, str):
            raise TimerExpressionError(
                f"timeDuration needs an ISO 8601 duration such as 'PT30M' or a timedelta, "
                f"got {type(value).__name__} {value!r}")
        source = value.strip()
        return DurationSchedule(parse_iso_duration(source), source, tz)
    if not isinstance(value, str):
        raise TimerExpressionError(
            f"timeCycle needs text such as 'R3/PT10M' or '0 0 9 * * ?', got {type(value).__name__} {value!r}")
    return _parse_cycle(value.strip(), tz)
