"""Timer definitions as Camunda Modeler writes them: ``timeDate``, ``timeDuration``, ``timeCycle``.

:func:`parse_timer` turns the text of a timer event definition (or the value an
expression produced) into a :class:`TimerSchedule`, which computes due times.  No
function here reads the wall clock: every computation takes ``now`` or the previous
due time, and every result is an aware UTC ``datetime``.

timeDate
    ISO 8601 date-time with or without offset (``2026-12-01T09:00:00``,
    ``2026-12-01T09:00:00+08:00``, ``…Z``, fractional seconds) or a date
    (``2026-12-01``, midnight).  Without an offset the wall time is read in the
    hospital's zone ``tz``.  Expression results may be a ``datetime`` (naive → ``tz``)
    or a ``date``.  A due time in the past stays in the past: the scheduler fires it
    at once, as Camunda does.

timeDuration
    ISO 8601 duration ``PnYnMnWnDTnHnMnS`` (``PT30M``, ``P5D``, ``P1DT2H``, ``P1W``,
    ``P1Y2M``, ``PT0.5S``; the last component may carry a fraction if it is hours,
    minutes or seconds) or a ``timedelta``.  Years, months, weeks and days move the
    *calendar* date in ``tz`` (``P1M`` from Jan 31 09:00 is Feb 28/29 09:00; the
    date is the hospital's local date, so 20:00 UTC on Jan 31 is already Feb 1 in
    Shanghai and ``P1M`` gives Mar 1), hours/minutes/seconds add exact time.

timeCycle
    * ``R3/PT10M``: three firings, the first at now + 10 min, then every 10 min.
      ``R/P1D``: every day without end.  A cycle without ``R`` is refused (Camunda
      would fire it once, which is rarely what the modeller meant).
    * ``R5/2026-12-01T09:00:00+08:00/PT1H``: anchored at the start, firing at
      start, start + 1 h, … (5 times); occurrences already past when the timer is
      reached are skipped, as in Camunda.
    * ``R2/PT1H/2026-12-01T10:00:00Z``: anchored at the end: the last firing is
      at the end, the others one duration apart before it (09:00 and 10:00 UTC).
    * ``R/2026-12-01T09:00/2026-12-01T10:00``: start and end: the duration is
      their difference.
    * Anchored cycles whose firings are all past fire once, at once (first_due
      returns the last, past occurrence), like a past ``timeDate``.
    * Quartz cron (what Camunda 7 uses): six or seven fields ``seconds minutes
      hours day-of-month month day-of-week [year]`` with ``*``, ``?``, lists,
      ranges (also wrapping, ``FRI-MON``), steps (``*/5``, ``0/15``, ``10-40/10``),
      ``JAN``-``DEC`` and ``SUN``-``SAT`` names, day-of-month ``L``, ``L-3``,
      ``15W``, ``LW``, day-of-week ``L``, ``6L`` (last Friday), ``2#1`` (first
      Monday).  Day-of-week numbers are Quartz's: **1 = Sunday … 7 = Saturday**.
      One of day-of-month / day-of-week must be ``?`` as in Quartz; as a leniency,
      ``*`` in one of them lets the other decide.  Cron times are wall times in
      ``tz``; times that do not exist (DST gaps) are skipped.  A cron expression
      that can never fire is refused.

The schedule persists as a small JSON-safe dict (:meth:`TimerSchedule.to_dict`)
holding the kind, the canonical text and the zone name; :meth:`TimerSchedule.from_dict`
parses it again.
"""

from __future__ import annotations

import calendar
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta

__all__ = [
    "TIMER_KINDS",
    "CronSchedule",
    "CycleSchedule",
    "DateSchedule",
    "DurationSchedule",
    "IsoDuration",
    "TimerExpressionError",
    "TimerSchedule",
    "check_min_interval",
    "describe_gap",
    "parse_iso_datetime",
    "parse_iso_duration",
    "parse_timer",
]

TIMER_KINDS = ("timeDate", "timeDuration", "timeCycle")
_MAX_DURATION_SECONDS = 200 * 366 * 86400  # refuse durations longer than ~200 years
_CRON_SEARCH_YEARS = 30  # every day-of-week / leap-year combination recurs within 28 years
_CATCH_UP_STEPS = 5000  # missed firings counted one by one before a catch-up jumps ahead


class TimerExpressionError(ValueError):
    """A timer definition could not be understood; the message names what was wrong."""


# --------------------------------------------------------------------------- helpers


def _require_aware(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC)


def _localize(local: datetime, tz: tzinfo) -> datetime:
    """Attach ``tz`` to a naive wall time and convert to UTC."""
    return local.replace(tzinfo=tz).astimezone(UTC)


def _format_number(value: int | Decimal) -> str:
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text
    return str(value)


def _tz_to_text(tz: tzinfo) -> str:
    key = getattr(tz, "key", None)
    if isinstance(key, str) and key:
        return key
    if isinstance(tz, timezone):
        offset = tz.utcoffset(None)
        if offset == timedelta(0):
            return "UTC"
        sign = "-" if offset < timedelta(0) else "+"
        minutes = abs(offset) // timedelta(minutes=1)
        return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    raise TimerExpressionError(
        f"cannot persist time zone {tz!r}: use zoneinfo.ZoneInfo or datetime.timezone")


def _tz_from_text(text: Any) -> tzinfo:
    if not isinstance(text, str) or not text:
        raise TimerExpressionError(f"invalid time zone {text!r} in stored timer")
    if text == "UTC":
        return UTC
    match = re.fullmatch(r"([+-])(\d{2}):(\d{2})", text)
    if match:
        offset = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
        return timezone(-offset if match.group(1) == "-" else offset)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimerExpressionError(f"unknown time zone {text!r} in stored timer") from exc


# --------------------------------------------------------------------------- ISO 8601 durations

_DATE_UNITS = "YMWD"
_TIME_UNITS = "HMS"


@dataclass(frozen=True)
class IsoDuration:
    """An ISO 8601 duration.  Calendar parts (years … days) move the local calendar date;
    time parts (hours, minutes, seconds, possibly fractional) add exact time."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: Decimal = Decimal(0)
    minutes: Decimal = Decimal(0)
    seconds: Decimal = Decimal(0)

    @property
    def exact_microseconds(self) -> int:
        total = (self.hours * 3600 + self.minutes * 60 + self.seconds) * 1_000_000
        return int(total.to_integral_value())

    @property
    def has_calendar_part(self) -> bool:
        return bool(self.years or self.months or self.weeks or self.days)

    @property
    def approx_seconds(self) -> float:
        days = self.years * 365.2425 + self.months * 30.436875 + self.weeks * 7 + self.days
        return days * 86400 + self.exact_microseconds / 1_000_000

    def is_zero(self) -> bool:
        return not self.has_calendar_part and self.exact_microseconds == 0

    def add_to(self, moment: datetime, tz: tzinfo, times: int = 1) -> datetime:
        """``moment`` + ``times`` × this duration (``times`` may be negative), aware UTC.

        Raises ``OverflowError`` or ``ValueError`` past the ``datetime`` range.
        """
        result = moment.astimezone(UTC)
        if self.has_calendar_part:
            local = result.astimezone(tz).replace(tzinfo=None)
            local += relativedelta(years=self.years * times, months=self.months * times,
                                   days=(self.weeks * 7 + self.days) * times)
            result = _localize(local, tz)
        micros = self.exact_microseconds * times
        if micros:
            result += timedelta(microseconds=micros)
        return result

    def to_iso(self) -> str:
        date_part = "".join(
            f"{value}{unit}" for value, unit in
            ((self.years, "Y"), (self.months, "M"), (self.weeks, "W"), (self.days, "D")) if value)
        time_part = "".join(
            f"{_format_number(value)}{unit}" for value, unit in
            ((self.hours, "H"), (self.minutes, "M"), (self.seconds, "S")) if value)
        if not date_part and not time_part:
            return "PT0S"
        return "P" + date_part + ("T" + time_part if time_part else "")


_NUMBER_AT = re.compile(r"[0-9]+(?:[.,][0-9]+)?")


def parse_iso_duration(text: str) -> IsoDuration:
    """Parse ``PnYnMnWnDTnHnMnS``; raise :class:`TimerExpressionError` naming the problem."""
    prefix = f"invalid ISO 8601 duration {text!r}"
    source = text.strip()
    if not source:
        raise TimerExpressionError(f"{prefix}: the text is empty")
    upper = source.upper()
    if upper[0] == "-":
        raise TimerExpressionError(f"{prefix}: negative durations are not supported")
    if upper[0] != "P":
        raise TimerExpressionError(f"{prefix}: expected 'P' at position 0, found {source[0]!r}")
    values: dict[str, Any] = {}
    in_time = False
    time_marker = -1
    last_rank = -1
    fraction_at = -1
    i = 1
    while i < len(upper):
        char = upper[i]
        if char == "T":
            if in_time:
                raise TimerExpressionError(f"{prefix}: unexpected second 'T' at position {i}")
            in_time, time_marker, last_rank = True, i, -1
            i += 1
            continue
        match = _NUMBER_AT.match(upper, i)
        if match is None:
            raise TimerExpressionError(f"{prefix}: unexpected {source[i]!r} at position {i}")
        if fraction_at >= 0:
            raise TimerExpressionError(
                f"{prefix}: only the last component may have a fraction (see position {fraction_at})")
        number = match.group()
        j = match.end()
        if j >= len(upper):
            expected = "H, M or S" if in_time else "Y, M, W or D"
            raise TimerExpressionError(
                f"{prefix}: number {number!r} at position {i} has no unit (expected {expected})")
        unit = upper[j]
        units = _TIME_UNITS if in_time else _DATE_UNITS
        if unit not in units:
            if not in_time and unit in "HS":
                raise TimerExpressionError(
                    f"{prefix}: {source[j]!r} at position {j} needs a 'T' before the time part (e.g. 'PT30M')")
            if in_time and unit in "YWD":
                raise TimerExpressionError(
                    f"{prefix}: {source[j]!r} at position {j} belongs before the 'T' (e.g. 'P1DT2H')")
            raise TimerExpressionError(f"{prefix}: unexpected {source[j]!r} at position {j}")
        rank = units.index(unit)
        if rank <= last_rank:
            raise TimerExpressionError(f"{prefix}: {source[j]!r} at position {j} is repeated or out of order")
        last_rank = rank
        name = {"Y": "years", "W": "weeks", "D": "days", "H": "hours", "S": "seconds"}.get(
            unit, "minutes" if in_time else "months")
        if "." in number or "," in number:
            if not in_time:
                raise TimerExpressionError(
                    f"{prefix}: a fraction is only allowed in hours, minutes or seconds (position {i})")
            fraction_at = i
            values[name] = Decimal(number.replace(",", "."))
        elif in_time:
            values[name] = Decimal(int(number))
        else:
            values[name] = int(number)
        i = j + 1
    if not values:
        raise TimerExpressionError(f"{prefix}: no duration components after 'P' (e.g. 'PT30M', 'P1D')")
    if in_time and not any(name in values for name in ("hours", "minutes", "seconds")):
        raise TimerExpressionError(
            f"{prefix}: 'T' at position {time_marker} must be followed by hours, minutes or seconds")
    duration = IsoDuration(**values)
    if duration.approx_seconds > _MAX_DURATION_SECONDS:
        raise TimerExpressionError(f"{prefix}: longer than 200 years")
    return duration


def _duration_from_timedelta(delta: timedelta) -> IsoDuration:
    if delta < timedelta(0):
        raise TimerExpressionError(f"negative duration {delta} is not supported")
    micros = delta // timedelta(microseconds=1)
    return IsoDuration(seconds=Decimal(micros) / Decimal(1_000_000))


# --------------------------------------------------------------------------- ISO 8601 date-times


class _Scanner:
    def __init__(self, text: str, prefix: str) -> None:
        self.text = text
        self.prefix = prefix
        self.pos = 0

    def fail(self, detail: str) -> TimerExpressionError:
        return TimerExpressionError(f"{self.prefix}: {detail}")

    def found(self) -> str:
        return f"found {self.text[self.pos]!r}" if self.pos < len(self.text) else "found the end"

    def digits(self, count: int, label: str) -> int:
        chunk = self.text[self.pos:self.pos + count]
        if len(chunk) != count or not chunk.isascii() or not chunk.isdigit():
            shown = f"found {chunk!r}" if chunk else "found the end"
            raise self.fail(f"expected {label} ({count} digits) at position {self.pos}, {shown}")
        self.pos += count
        return int(chunk)

    def literal(self, chars: str, what: str) -> None:
        if self.pos >= len(self.text) or self.text[self.pos] not in chars:
            raise self.fail(f"expected {what} at position {self.pos}, {self.found()}")
        self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""


def parse_iso_datetime(text: str, tz: tzinfo) -> datetime:
    """Parse an ISO 8601 date or date-time; without an offset it is a wall time in ``tz``.

    Returns an aware UTC ``datetime``.
    """
    source = text.strip()
    scan = _Scanner(source, f"invalid ISO 8601 date-time {text!r}")
    if not source:
        raise scan.fail("the text is empty")
    year = scan.digits(4, "the year")
    scan.literal("-", "'-' after the year")
    month = scan.digits(2, "the month")
    scan.literal("-", "'-' after the month")
    day = scan.digits(2, "the day")
    if year < 1:
        raise scan.fail("year 0000 does not exist")
    if not 1 <= month <= 12:
        raise scan.fail(f"month {month} is out of range 01-12")
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise scan.fail(f"day {day} does not exist in {year:04d}-{month:02d}")
    hour = minute = second = micro = 0
    offset: timedelta | None = None
    if scan.peek():
        scan.literal("Tt", "'T' between the date and the time")
        hour = scan.digits(2, "the hour")
        scan.literal(":", "':' after the hour")
        minute = scan.digits(2, "the minutes")
        if scan.peek() == ":":
            scan.pos += 1
            second = scan.digits(2, "the seconds")
            if scan.peek() in (".", ","):
                scan.pos += 1
                start = scan.pos
                while scan.peek().isascii() and scan.peek().isdigit():
                    scan.pos += 1
                fraction = source[start:scan.pos]
                if not fraction or len(fraction) > 9:
                    raise scan.fail(f"expected 1 to 9 digits of fractional seconds at position {start}")
                micro = int(fraction[:6].ljust(6, "0"))
        if hour > 23:
            raise scan.fail(f"hour {hour} is out of range 00-23")
        if minute > 59:
            raise scan.fail(f"minute {minute} is out of range 00-59")
        if second > 59:
            raise scan.fail(f"second {second} is out of range 00-59")
        marker = scan.peek()
        if marker in ("Z", "z"):
            scan.pos += 1
            offset = timedelta(0)
        elif marker in ("+", "-"):
            scan.pos += 1
            offset_hours = scan.digits(2, "the offset hours")
            offset_minutes = 0
            if scan.peek() == ":":
                scan.pos += 1
                offset_minutes = scan.digits(2, "the offset minutes")
            elif scan.peek():
                offset_minutes = scan.digits(2, "the offset minutes")
            if offset_hours > 23 or offset_minutes > 59:
                raise scan.fail(f"offset {source[scan.pos - 5:scan.pos]!r} is out of range")
            offset = timedelta(hours=offset_hours, minutes=offset_minutes)
            if marker == "-":
                offset = -offset
        if scan.peek():
            raise scan.fail(f"unexpected {scan.peek()!r} at position {scan.pos}")
    wall = datetime(year, month, day, hour, minute, second, micro)
    if offset is None:
        return _localize(wall, tz)
    return wall.replace(tzinfo=timezone(offset)).astimezone(UTC)


def _timedate_value(value: Any, tz: tzinfo) -> tuple[datetime, str]:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return _localize(value, tz), value.isoformat()
        return value.astimezone(UTC), value.isoformat()
    if isinstance(value, date):
        return _localize(datetime(value.year, value.month, value.day), tz), value.isoformat()
    if isinstance(value, str):
        source = value.strip()
        return parse_iso_datetime(source, tz), source
    raise TimerExpressionError(
        f"timeDate needs an ISO 8601 date-time such as '2026-12-01T09:00:00' or a datetime, "
        f"got {type(value).__name__} {value!r}")


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


class TimerSchedule(ABC):
    """When a timer fires.  ``repetitions`` is the total number of firings (None = no end)."""

    kind: str
    value: str
    tz: tzinfo
    repetitions: int | None

    @abstractmethod
    def first_due(self, now: datetime) -> datetime:
        """The first due time (aware UTC) for a timer reached at ``now``."""

    @abstractmethod
    def next_due(self, previous_due: datetime, fired: int) -> datetime | None:
        """The due time after ``previous_due`` once ``fired`` firings happened; None when done."""

    def shortest_gap(self) -> timedelta | None:
        """The shortest time there can be between two consecutive firings (wall-clock arithmetic
        in ``tz``; a daylight-saving jump can bring two firings up to an hour closer once); None
        when the timer fires at most once."""
        return None

    def next_after(self, previous_due: datetime, fired: int, now: datetime) -> tuple[datetime | None, int]:
        """Catch-up: the first due time after ``now`` that follows ``previous_due`` (which just
        fired as the ``fired``-th firing), and how many due times in between were missed
        (they fall in ``(previous_due, now]``).  ``(None, missed)`` when the schedule ends.

        The missed firings count as used: ``R5/PT1H`` that missed three fires at most once more.
        """
        now = _require_aware(now, "now")
        missed = 0
        due = self.next_due(previous_due, fired)
        while due is not None and due <= now and missed < _CATCH_UP_STEPS:
            missed += 1
            due = self.next_due(due, fired + missed)
        if due is not None and due <= now:
            # far behind (a legacy every-second schedule after a long downtime): jump, and
            # estimate the missed count from the shortest gap instead of stepping through them all
            gap = self.shortest_gap()
            if gap:
                missed = max(missed, (now - previous_due) // gap)
            if self.repetitions is not None:
                missed = min(missed, max(self.repetitions - fired, 0))
            due = self._first_due_after(now)
        return due, missed

    def _first_due_after(self, now: datetime) -> datetime | None:
        """The first due time after ``now`` (only used for schedules that can fire often)."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: ``{"version": 1, "kind": …, "value": …, "tz": …}``."""
        return {"version": 1, "kind": self.kind, "value": self.value, "tz": _tz_to_text(self.tz)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimerSchedule:
        """Rebuild a schedule stored with :meth:`to_dict`."""
        if not isinstance(data, dict) or not {"kind", "value", "tz"} <= set(data):
            raise TimerExpressionError(f"stored timer must have kind, value and tz: {data!r}")
        return parse_timer(data["kind"], data["value"], _tz_from_text(data["tz"]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind}={self.value!r}, tz={_tz_label(self.tz)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimerSchedule):
            return NotImplemented
        return type(self) is type(other) and self.kind == other.kind and self.value == other.value \
            and _tz_label(self.tz) == _tz_label(other.tz)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.kind, self.value, _tz_label(self.tz)))

    @staticmethod
    def _check_fired(fired: int) -> None:
        if isinstance(fired, bool) or not isinstance(fired, int) or fired < 0:
            raise ValueError(f"fired must be a non-negative integer, got {fired!r}")


def _tz_label(tz: tzinfo) -> str:
    try:
        return _tz_to_text(tz)
    except TimerExpressionError:
        return repr(tz)


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


# --------------------------------------------------------------------------- Quartz cron

_MONTH_NAMES = {name: number for number, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_DAY_NAMES = {name: number for number, name in enumerate(
    ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}
_FIELD_NAMES = ("seconds", "minutes", "hours", "day-of-month", "month", "day-of-week", "year")
_FIELD_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (1, 7), (1970, 2099))


def _quartz_weekday(day: date) -> int:
    """Quartz day-of-week of ``day``: 1 = Sunday … 7 = Saturday."""
    return (day.weekday() + 1) % 7 + 1


@dataclass(frozen=True)
class _DayOfMonthRule:
    days: frozenset[int]
    last_offsets: frozenset[int]  # L = 0, L-3 = 3
    nearest_weekday: frozenset[int]  # 15W
    last_weekday: bool  # LW

    def matches(self, year: int, month: int) -> set[int]:
        length = calendar.monthrange(year, month)[1]
        result = {day for day in self.days if day <= length}
        result |= {length - offset for offset in self.last_offsets if length - offset >= 1}
        for day in self.nearest_weekday:
            if day <= length:
                result.add(_nearest_weekday(year, month, day, length))
        if self.last_weekday:
            result.add(_nearest_weekday(year, month, length, length))
        return result


def _nearest_weekday(year: int, month: int, day: int, length: int) -> int:
    """Quartz ``W``: the weekday (Mon-Fri) nearest to ``day`` without leaving the month."""
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday → Friday before, or Monday after when the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday → Monday after, or Friday before when the last day
        return day + 1 if day < length else day - 2
    return day


@dataclass(frozen=True)
class _DayOfWeekRule:
    days: frozenset[int]  # Quartz numbering, 1 = Sunday
    last_of: frozenset[int]  # 6L = last Friday
    nth: frozenset[tuple[int, int]]  # 2#1 = first Monday

    def matches(self, year: int, month: int) -> set[int]:
        length = calendar.monthrange(year, month)[1]
        result = set()
        for day in range(1, length + 1):
            weekday = _quartz_weekday(date(year, month, day))
            if weekday in self.days or (weekday in self.last_of and day + 7 > length) \
                    or (weekday, (day - 1) // 7 + 1) in self.nth:
                result.add(day)
        return result


class _CronError(Exception):
    pass


def _cron_value(token: str, field: int, names: dict[str, int] | None) -> int:
    low, high = _FIELD_RANGES[field]
    if token.isascii() and token.isdigit():
        number = int(token)
    elif names is not None and token.upper() in names:
        return names[token.upper()]
    else:
        raise _CronError(f"unknown value {token!r}")
    if not low <= number <= high:
        hint = " (Quartz numbers days 1 = SUN … 7 = SAT)" if field == 5 else ""
        raise _CronError(f"value {number} is out of range {low}-{high}{hint}")
    return number


def _cron_values(text: str, field: int, names: dict[str, int] | None) -> frozenset[int]:
    low, high = _FIELD_RANGES[field]
    result: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _CronError("empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) < 1:
                raise _CronError(f"invalid step {step_text!r} in {item!r}")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first, last = _cron_value(first_text, field, names), _cron_value(last_text, field, names)
        else:
            first = _cron_value(base, field, names)
            last = high if slash else first
        if first <= last:
            sequence = list(range(first, last + 1))
        else:  # wrapping range such as FRI-MON or 22-2
            sequence = list(range(first, high + 1)) + list(range(low, last + 1))
        result.update(sequence[::step])
    return frozenset(result)


def _parse_day_of_month(text: str) -> _DayOfMonthRule:
    days: set[int] = set()
    offsets: set[int] = set()
    nearest: set[int] = set()
    last_weekday = False
    for item in text.split(","):
        upper = item.upper()
        if upper == "L":
            offsets.add(0)
        elif upper == "LW":
            last_weekday = True
        elif match := re.fullmatch(r"L-([0-9]+)", upper):
            offset = int(match.group(1))
            if not 1 <= offset <= 30:
                raise _CronError(f"offset in {item!r} must be 1-30")
            offsets.add(offset)
        elif match := re.fullmatch(r"([0-9]+)W", upper):
            nearest.add(_cron_value(match.group(1), 3, None))
        elif "L" in upper or "W" in upper:
            raise _CronError(f"invalid item {item!r} (use L, L-3, 15W or LW)")
        else:
            days |= _cron_values(item, 3, None)
    return _DayOfMonthRule(frozenset(days), frozenset(offsets), frozenset(nearest), last_weekday)


def _parse_day_of_week(text: str) -> _DayOfWeekRule:
    days: set[int] = set()
    last_of: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for item in text.split(","):
        upper = item.upper()
        if upper == "L":
            days.add(7)  # Quartz: "L" alone in day-of-week is Saturday
        elif match := re.fullmatch(r"([0-9]+|[A-Z]{3})L", upper):
            last_of.add(_cron_value(match.group(1), 5, _DAY_NAMES))
        elif match := re.fullmatch(r"([0-9]+|[A-Z]{3})#([0-9]+)", upper):
            weekday = _cron_value(match.group(1), 5, _DAY_NAMES)
            ordinal = int(match.group(2))
            if not 1 <= ordinal <= 5:
                raise _CronError(f"the number after '#' in {item!r} must be 1-5")
            nth.add((weekday, ordinal))
        else:
            days |= _cron_values(item, 5, _DAY_NAMES)
    return _DayOfWeekRule(frozenset(days), frozenset(last_of), frozenset(nth))


def _is_restricted(text: str) -> bool:
    return text not in ("*", "?")


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
        field_index = 0
        try:
            for field_index in (0, 1, 2, 4, 6):
                if field_index < len(self.fields) and "?" in self.fields[field_index]:
                    raise _CronError("'?' is only allowed in day-of-month and day-of-week")
            field_index = 0
            self.seconds = sorted(_cron_values(self.fields[0], 0, None))
            field_index = 1
            self.minutes = sorted(_cron_values(self.fields[1], 1, None))
            field_index = 2
            self.hours = sorted(_cron_values(self.fields[2], 2, None))
            field_index = 4
            self.months = sorted(_cron_values(self.fields[4], 4, _MONTH_NAMES))
            field_index = 6
            self.years: frozenset[int] | None = None
            if len(self.fields) == 7 and self.fields[6] != "*":
                self.years = _cron_values(self.fields[6], 6, None)
            dom_text, dow_text = self.fields[3], self.fields[5]
            field_index = 3
            if dom_text == "?" and dow_text == "?":
                raise _CronError("day-of-month and day-of-week cannot both be '?'")
            if _is_restricted(dom_text) and _is_restricted(dow_text):
                raise _CronError("specify either day-of-month or day-of-week and put '?' in the other "
                                 f"(got {dom_text!r} and {dow_text!r})")
            self.day_of_month = _parse_day_of_month(dom_text) if _is_restricted(dom_text) else None
            field_index = 5
            self.day_of_week = _parse_day_of_week(dow_text) if _is_restricted(dow_text) else None
        except _CronError as exc:
            raise TimerExpressionError(
                f"{prefix}: {_FIELD_NAMES[field_index]} field {self.fields[field_index]!r}: {exc}") from None
        probe_start = datetime(2000, 1, 1) if self.years is None else datetime(min(self.years), 1, 1)
        probe_end = 2000 + _CRON_SEARCH_YEARS if self.years is None else max(self.years)
        if self._next_local(probe_start, probe_end) is None:
            raise TimerExpressionError(f"{prefix}: it can never fire (no date matches all fields)")

    def _days(self, year: int, month: int) -> list[int]:
        if self.day_of_month is not None:
            return sorted(self.day_of_month.matches(year, month))
        if self.day_of_week is not None:
            return sorted(self.day_of_week.matches(year, month))
        return list(range(1, calendar.monthrange(year, month)[1] + 1))

    def _next_local(self, start: datetime, last_year: int) -> datetime | None:
        """The first matching wall time at or after ``start`` (naive), up to ``last_year``."""
        for year in range(start.year, last_year + 1):
            if self.years is not None and year not in self.years:
                continue
            for month in self.months:
                if (year, month) < (start.year, start.month):
                    continue
                for day in self._days(year, month):
                    current = date(year, month, day)
                    if current < start.date():
                        continue
                    same_day = current == start.date()
                    for hour in self.hours:
                        if same_day and hour < start.hour:
                            continue
                        same_hour = same_day and hour == start.hour
                        for minute in self.minutes:
                            if same_hour and minute < start.minute:
                                continue
                            same_minute = same_hour and minute == start.minute
                            for second in self.seconds:
                                if same_minute and second < start.second:
                                    continue
                                return datetime(year, month, day, hour, minute, second)
        return None

    def _next_after(self, moment: datetime) -> datetime | None:
        candidate = moment.astimezone(self.tz).replace(tzinfo=None, microsecond=0) + timedelta(seconds=1)
        last_year = max(self.years) if self.years is not None else candidate.year + _CRON_SEARCH_YEARS
        while True:
            wall = self._next_local(candidate, last_year)
            if wall is None:
                return None
            aware = wall.replace(tzinfo=self.tz)
            due = aware.astimezone(UTC)
            exists = due.astimezone(self.tz).replace(tzinfo=None) == wall
            if exists and due > moment:
                return due
            candidate = wall + timedelta(seconds=1)

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
        days = self._smallest_day_step()
        if days is not None:
            gaps.append(days * 86400 - last_of_day + first_of_day)
        return timedelta(seconds=min(gaps)) if gaps else None

    def _smallest_day_step(self) -> int | None:
        """The fewest days between two consecutive matching dates (None: at most one date matches).
        Without a year field 28 years hold every weekday / leap-year combination."""
        years = sorted(self.years) if self.years is not None else range(2000, 2000 + _CRON_SEARCH_YEARS)
        smallest = previous = None
        for year in years:
            for month in self.months:
                for day in self._days(year, month):
                    ordinal = date(year, month, day).toordinal()
                    if previous is not None:
                        step = ordinal - previous
                        smallest = step if smallest is None else min(smallest, step)
                        if smallest == 1:
                            return 1
                    previous = ordinal
        return smallest


def _smallest_step(values: list[int]) -> int:
    return min(later - earlier for earlier, later in pairwise(values))


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
