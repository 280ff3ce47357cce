"""timeCycle as a Quartz cron expression."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import pairwise

from engine.dialect.timers.base import _CRON_SEARCH_YEARS, TimerExpressionError, TimerSchedule, _require_aware

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
