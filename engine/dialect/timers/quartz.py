"""Quartz cron expressions (what Camunda 7 writes), checked field by field and run on croniter.

Quartz's dialect is not the one croniter reads: the seconds come first and a year may follow,
day-of-week counts 1 = Sunday … 7 = Saturday (croniter: 0 = Sunday), the last Friday of a month
is ``6L`` (croniter: ``L5``), ``L`` alone in day-of-week means Saturday, and exactly one of the
two day fields is restricted (``?`` in the other).  :func:`quartz` checks an expression with
Quartz's rules, so an error names the field and what is wrong in it, and translates it for
croniter, which finds the firing times.

Two day-of-month forms croniter lacks, ``L-3`` (the third-last day) and ``LW`` (the last
weekday), and ``W`` where croniter reads it differently from Quartz (in a list, or on a day
some months lack, where Quartz skips the month), are matched here: croniter then runs with
every day allowed and the adapter moves it on to the next day that matches.
"""

from __future__ import annotations

import calendar
import functools
import re
import threading
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise

from croniter import CroniterBadDateError, croniter

_MONTH_NAMES = {name: number for number, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_DAY_NAMES = {name: number for number, name in enumerate(
    ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}
FIELD_NAMES = ("seconds", "minutes", "hours", "day-of-month", "month", "day-of-week", "year")
_FIELD_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (1, 7), (1970, 2099))
SEARCH_YEARS = 30  # every day-of-week / leap-year combination recurs within 28 years
_ONE_DAY = timedelta(days=1)


class QuartzError(Exception):
    """What is wrong in one field; the caller adds the expression and the field's name."""

    def __init__(self, field: int, message: str) -> None:
        super().__init__(message)
        self.field = field


class _FieldError(Exception):
    pass


def _cron_value(token: str, field: int, names: dict[str, int] | None) -> int:
    low, high = _FIELD_RANGES[field]
    if token.isascii() and token.isdigit():
        number = int(token)
    elif names is not None and token.upper() in names:
        return names[token.upper()]
    else:
        raise _FieldError(f"unknown value {token!r}")
    if not low <= number <= high:
        hint = " (Quartz numbers days 1 = SUN … 7 = SAT)" if field == 5 else ""
        raise _FieldError(f"value {number} is out of range {low}-{high}{hint}")
    return number


def _cron_values(text: str, field: int, names: dict[str, int] | None) -> frozenset[int]:
    """The values a list of Quartz items (``*``, ``5``, ``1-5``, ``FRI-MON``, ``0/15``) stands for."""
    low, high = _FIELD_RANGES[field]
    result: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _FieldError("empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) < 1:
                raise _FieldError(f"invalid step {step_text!r} in {item!r}")
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


def _listed(values: frozenset[int]) -> str:
    return ",".join(str(value) for value in sorted(values))


@dataclass(frozen=True)
class _MonthDays:
    """Day-of-month items matched here rather than by croniter (``L-3``, ``LW``, some ``W``)."""

    days: frozenset[int]
    last_offsets: frozenset[int]  # L = 0, L-3 = 3
    nearest_weekday: frozenset[int]  # 15W
    last_weekday: bool  # LW

    def of(self, year: int, month: int) -> set[int]:
        length = calendar.monthrange(year, month)[1]
        result = {day for day in self.days if day <= length}
        result |= {length - offset for offset in self.last_offsets if length - offset >= 1}
        result |= {_nearest_weekday(year, month, day, length) for day in self.nearest_weekday if day <= length}
        if self.last_weekday:
            result.add(_nearest_weekday(year, month, length, length))
        return result

    def next_date(self, day: date, last_year: int) -> date | None:
        """The first matching date on or after ``day`` (any month: croniter applies the month field)."""
        year, month = day.year, day.month
        while year <= last_year:
            later = [d for d in self.of(year, month) if date(year, month, d) >= day]
            if later:
                return date(year, month, min(later))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return None


def _nearest_weekday(year: int, month: int, day: int, length: int) -> int:
    """Quartz ``W``: the weekday (Mon-Fri) nearest to ``day`` without leaving the month."""
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday → Friday before, or Monday after when the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday → Monday after, or Friday before when the last day
        return day + 1 if day < length else day - 2
    return day


def _is_restricted(text: str) -> bool:
    return text not in ("*", "?")


def _day_of_month(text: str) -> tuple[str, _MonthDays | None, int]:
    """croniter's day-of-month field, the days matched here instead (if any), and the fewest days
    two matching dates can be apart (a floor that lets the gap search stop early)."""
    days: set[int] = set()
    offsets: set[int] = set()
    nearest: set[int] = set()
    last_weekday = False
    items = text.split(",")
    for item in items:
        upper = item.upper()
        if upper == "L":
            offsets.add(0)
        elif upper == "LW":
            last_weekday = True
        elif match := re.fullmatch(r"L-([0-9]+)", upper):
            offset = int(match.group(1))
            if not 1 <= offset <= 30:
                raise _FieldError(f"offset in {item!r} must be 1-30")
            offsets.add(offset)
        elif match := re.fullmatch(r"([0-9]+)W", upper):
            nearest.add(_cron_value(match.group(1), 3, None))
        elif "L" in upper or "W" in upper:
            raise _FieldError(f"invalid item {item!r} (use L, L-3, 15W or LW)")
        else:
            days |= _cron_values(item, 3, None)
    # croniter's W agrees with Quartz's for a single day every month has
    croniter_w = len(items) == 1 and len(nearest) == 1 and max(nearest) <= 28
    if last_weekday or offsets - {0} or (nearest and not croniter_w):
        rule = _MonthDays(frozenset(days), frozenset(offsets), frozenset(nearest), last_weekday)
        return "*", rule, 1
    if nearest:
        return f"{min(nearest)}W", None, 1
    floor = 28 if not days else 1  # "L" alone: the last of February and of March
    if not offsets:  # plain days: the closest two, or the last of a month and the first of the next
        ordered = sorted(days)
        floor = min([b - a for a, b in pairwise(ordered)] + [ordered[0] + 28 - ordered[-1]])
    return ",".join([_listed(frozenset(days))] * bool(days) + ["L"] * bool(offsets)), None, floor


def _day_of_week(text: str) -> tuple[str, int]:
    """croniter's day-of-week field (0 = Sunday) and the fewest days two matching dates can be apart."""
    days: set[int] = set()
    special: list[str] = []
    for item in text.split(","):
        upper = item.upper()
        if upper == "L":
            days.add(7)  # Quartz: "L" alone in day-of-week is Saturday
        elif match := re.fullmatch(r"([0-9]+|[A-Z]{3})L", upper):
            special.append(f"L{_cron_value(match.group(1), 5, _DAY_NAMES) - 1}")
        elif match := re.fullmatch(r"([0-9]+|[A-Z]{3})#([0-9]+)", upper):
            weekday = _cron_value(match.group(1), 5, _DAY_NAMES)
            ordinal = int(match.group(2))
            if not 1 <= ordinal <= 5:
                raise _FieldError(f"the number after '#' in {item!r} must be 1-5")
            special.append(f"{weekday - 1}#{ordinal}")
        else:
            days |= _cron_values(item, 5, _DAY_NAMES)
    if not special:
        ordered = sorted(days)
        floor = min([b - a for a, b in pairwise(ordered)] + [ordered[0] + 7 - ordered[-1]])
        return _listed(frozenset(day - 1 for day in days)), floor
    # croniter takes no plain days beside '#' or 'L' items: a plain Monday is every Nth Monday
    plain = [f"{day - 1}#{nth}" for day in sorted(days) for nth in range(1, 6)]
    return ",".join(plain + special), 1


@dataclass(frozen=True, eq=False)
class QuartzCron:
    """A checked Quartz expression.  A firing is a matching date (croniter finds those: the day
    fields, month and year) at one of the times of day, which are the product of the seconds,
    minutes and hours."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    years: frozenset[int] | None
    dates: str  # croniter's day-of-month, month, day-of-week and year fields
    month_days: _MonthDays | None
    day_floor: int

    @property
    def last_year(self) -> int | None:
        return max(self.years) if self.years is not None else None

    def next_wall(self, after: datetime, last_year: int) -> datetime | None:
        """The first matching wall time after ``after`` (naive) up to the end of ``last_year``."""
        day = after.date()
        later = self._time_after(after.time())
        if later is not None and self.next_date(day - _ONE_DAY, last_year) == day:
            return datetime.combine(day, later)
        following = self.next_date(day, last_year)
        if following is None:
            return None
        return datetime.combine(following, time(self.hours[0], self.minutes[0], self.seconds[0]))

    def _time_after(self, moment: time) -> time | None:
        hour, minute, second = moment.hour, moment.minute, moment.second
        if hour in self.hours:
            if minute in self.minutes:
                index = bisect_right(self.seconds, second)
                if index < len(self.seconds):
                    return time(hour, minute, self.seconds[index])
            index = bisect_right(self.minutes, minute)
            if index < len(self.minutes):
                return time(hour, self.minutes[index], self.seconds[0])
        index = bisect_right(self.hours, hour)
        if index < len(self.hours):
            return time(self.hours[index], self.minutes[0], self.seconds[0])
        return None

    def next_date(self, day: date, last_year: int) -> date | None:
        """The first matching date after ``day`` up to the end of ``last_year``."""
        return _next_date(self, day, last_year)

    @functools.cached_property
    def smallest_day_step(self) -> int | None:
        """The fewest days between two consecutive matching dates (None: at most one matches),
        stepping through the dates croniter finds over 30 years (or the year field's years)."""
        first_year = min(self.years) if self.years is not None else 2000
        last_year = self.last_year or 2000 + SEARCH_YEARS - 1
        smallest: int | None = None
        previous = self.next_date(date(first_year, 1, 1) - _ONE_DAY, last_year)
        while previous is not None:
            current = self.next_date(previous, last_year)
            if current is None:
                break
            step = (current - previous).days
            smallest = step if smallest is None else min(smallest, step)
            if smallest <= self.day_floor:
                break
            previous = current
        return smallest


_iterators = threading.local()


def _iterator(dates: str) -> croniter:
    """This thread's croniter over the dates (croniter keeps its position, so none is shared)."""
    cache: dict[str, croniter] | None = getattr(_iterators, "by_dates", None)
    if cache is None:
        cache = _iterators.by_dates = {}
    iterator = cache.get(dates)
    if iterator is None:
        if len(cache) >= 256:
            cache.clear()
        iterator = cache[dates] = croniter(f"0 0 0 {dates}", datetime(2000, 1, 1), second_at_beginning=True,
                                           max_years_between_matches=SEARCH_YEARS)
    return iterator


@functools.lru_cache(maxsize=4096)
def _next_date(cron: QuartzCron, day: date, last_year: int) -> date | None:
    """croniter's next date after ``day``; day-of-month items matched here move it on."""
    iterator = _iterator(cron.dates)
    start = datetime.combine(day, time())
    while True:
        try:
            found = iterator.get_next(datetime, start_time=start).date()
        except CroniterBadDateError:
            return None
        if found.year > last_year:
            return None
        if cron.month_days is None or found.day in cron.month_days.of(found.year, found.month):
            return found
        following = cron.month_days.next_date(found + _ONE_DAY, last_year)
        if following is None:
            return None
        start = datetime.combine(following - _ONE_DAY, time())


@functools.lru_cache(maxsize=512)
def quartz(text: str) -> QuartzCron:
    """Check a Quartz expression of six or seven fields; :class:`QuartzError` names the field."""
    fields = text.split()
    field = 0
    try:
        for field in (0, 1, 2, 4, 6):
            if field < len(fields) and "?" in fields[field]:
                raise _FieldError("'?' is only allowed in day-of-month and day-of-week")
        field = 0
        seconds = tuple(sorted(_cron_values(fields[0], 0, None)))
        field = 1
        minutes = tuple(sorted(_cron_values(fields[1], 1, None)))
        field = 2
        hours = tuple(sorted(_cron_values(fields[2], 2, None)))
        field = 4
        months = _cron_values(fields[4], 4, _MONTH_NAMES)
        field = 6
        years = None
        if len(fields) == 7 and fields[6] != "*":
            years = _cron_values(fields[6], 6, None)
        dom_text, dow_text = fields[3], fields[5]
        field = 3
        if dom_text == "?" and dow_text == "?":
            raise _FieldError("day-of-month and day-of-week cannot both be '?'")
        if _is_restricted(dom_text) and _is_restricted(dow_text):
            raise _FieldError("specify either day-of-month or day-of-week and put '?' in the other "
                              f"(got {dom_text!r} and {dow_text!r})")
        dom, month_days, day_floor = "*", None, 1
        if _is_restricted(dom_text):
            dom, month_days, day_floor = _day_of_month(dom_text)
        field = 5
        dow = "*"
        if _is_restricted(dow_text):
            dow, day_floor = _day_of_week(dow_text)
    except _FieldError as exc:
        raise QuartzError(field, str(exc)) from None
    dates = f"{dom} {_listed(months)} {dow} {'*' if years is None else _listed(years)}"
    return QuartzCron(seconds, minutes, hours, years, dates, month_days, day_floor)
