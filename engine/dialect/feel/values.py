"""FEEL value types, conversion from and to Python, and the temporal literals' parsers."""

from __future__ import annotations

import calendar
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.dialect.feel.limits import FeelEvaluationError

# --------------------------------------------------------------------------- value types


@functools.total_ordering
@dataclass(frozen=True)
class YearsMonthsDuration:
    """A FEEL years-and-months duration, stored as a signed number of months."""

    total_months: int

    @property
    def years(self) -> int:
        sign = -1 if self.total_months < 0 else 1
        return sign * (abs(self.total_months) // 12)

    @property
    def months(self) -> int:
        sign = -1 if self.total_months < 0 else 1
        return sign * (abs(self.total_months) % 12)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, YearsMonthsDuration):
            return NotImplemented
        return self.total_months < other.total_months

    def __str__(self) -> str:
        months = abs(self.total_months)
        sign = "-" if self.total_months < 0 else ""
        if months == 0:
            return "P0M"
        years, rest = divmod(months, 12)
        text = "P"
        if years:
            text += f"{years}Y"
        if rest:
            text += f"{rest}M"
        return sign + text


class FeelFunction:
    """A function callable from FEEL (built-ins, DMN business knowledge models).

    ``impl`` receives FEEL values positionally (``params`` order) and returns a FEEL value.
    """

    __slots__ = ("impl", "name", "params")

    def __init__(self, name: str, params: Iterable[str], impl: Callable[..., Any]) -> None:
        self.name = name
        self.params = tuple(params)
        self.impl = impl

    def call(self, args: list[Any] | None, kwargs: dict[str, Any] | None) -> Any:
        if kwargs is not None:
            unknown = [k for k in kwargs if k not in self.params]
            if unknown:
                raise FeelEvaluationError(f"function '{self.name}' has no parameter '{unknown[0]}'")
            args = [kwargs.get(p) for p in self.params]
        assert args is not None
        if len(args) > len(self.params):
            raise FeelEvaluationError(
                f"function '{self.name}' expects {len(self.params)} arguments, got {len(args)}"
            )
        args = list(args) + [None] * (len(self.params) - len(args))
        return self.impl(*args)

    def __repr__(self) -> str:
        return f"<function {self.name}({', '.join(self.params)})>"


# --------------------------------------------------------------------------- conversions


def to_feel(value: Any) -> Any:
    """Convert a Python value to its FEEL representation (ints/floats to Decimal...)."""
    t = type(value)
    if value is None or t is bool or t is str or t is Decimal and value.is_finite():
        return value
    if t is int:
        return Decimal(value)
    if t is float:
        if math.isnan(value) or math.isinf(value):
            return None
        return Decimal(repr(value))
    if t is Decimal:  # NaN / infinity
        return None
    if t is dict or isinstance(value, Mapping):
        return {str(k): to_feel(v) for k, v in value.items()}
    if t is list or t is tuple or isinstance(value, (list, tuple, set, frozenset)):
        return [to_feel(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return Decimal(int(value))
    if isinstance(value, float):
        return to_feel(float(value))
    if isinstance(value, str):
        return str(value)
    return value


# --------------------------------------------------------------------------- dates, times, durations

_DATE_RE = re.compile(r"(-?(?:[1-9]\d{4,8}|\d{4}))-(\d\d)-(\d\d)")
_TIME_RE = re.compile(
    r"(\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
    r"(?:(Z|z)|([+-])(\d\d):(\d\d)(?::(\d\d))?|@([A-Za-z][\w/+\-]*))?"
)
_DURATION_RE = re.compile(
    r"(-)?P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?"
)


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown zone or no tz database
        return None


def _parse_tz(match: re.Match[str], first: int) -> tuple[bool, tzinfo | None]:
    """Returns (ok, tzinfo) from the zone groups of _TIME_RE starting at group ``first``."""
    z, sign, hh, mm, ss, zone_id = (match.group(first + i) for i in range(6))
    if z:
        return True, UTC
    if sign:
        offset = timedelta(hours=int(hh), minutes=int(mm), seconds=int(ss or 0))
        if offset > timedelta(hours=18):
            return False, None
        return True, timezone(-offset if sign == "-" else offset)
    if zone_id:
        tz = _zone(zone_id)
        return tz is not None, tz
    return True, None


def parse_date(text: str) -> date | None:
    """Parse a FEEL date string (``YYYY-MM-DD``); None when invalid."""
    m = _DATE_RE.fullmatch(text.strip())
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def _micro(frac: str | None) -> int:
    if not frac:
        return 0
    return int((frac + "000000")[:6])


def parse_time(text: str) -> time | None:
    """Parse a FEEL time string (``hh:mm:ss[.fff][Z|+hh:mm|@zone]``); None when invalid."""
    m = _TIME_RE.fullmatch(text.strip())
    if not m:
        return None
    ok, tz = _parse_tz(m, 5)
    if not ok:
        return None
    try:
        return time(int(m.group(1)), int(m.group(2)), int(m.group(3)), _micro(m.group(4)), tzinfo=tz)
    except ValueError:
        return None


def parse_date_time(text: str) -> datetime | None:
    """Parse a FEEL date-and-time string (a date alone means midnight); None when invalid."""
    text = text.strip()
    if "T" not in text:
        d = parse_date(text)
        return None if d is None else datetime(d.year, d.month, d.day)
    date_part, _, time_part = text.partition("T")
    d = parse_date(date_part)
    if d is None:
        return None
    if time_part.startswith("24:00:00") and _TIME_RE.fullmatch(time_part):
        t = parse_time("00" + time_part[2:])
        if t is None:
            return None
        return datetime.combine(d, t) + timedelta(days=1)
    t = parse_time(time_part)
    if t is None:
        return None
    return datetime.combine(d, t)


def parse_duration(text: str) -> timedelta | YearsMonthsDuration | None:
    """Parse an ISO 8601 duration: ``P1Y2M`` gives a :class:`YearsMonthsDuration`,
    ``P1DT2H`` a ``timedelta``; mixing both kinds gives None."""
    m = _DURATION_RE.fullmatch(text.strip())
    if not m:
        return None
    neg, years, months, weeks, days, hours, minutes, seconds = m.groups()
    if (years or months) and (weeks or days or hours or minutes or seconds):
        return None
    if years or months:
        total = int(years or 0) * 12 + int(months or 0)
        return YearsMonthsDuration(-total if neg else total)
    sec = Decimal(seconds or 0)
    whole = int(sec)
    micro = int((sec - whole) * 1000000)
    try:
        td = timedelta(
            weeks=int(weeks or 0),
            days=int(days or 0),
            hours=int(hours or 0),
            minutes=int(minutes or 0),
            seconds=whole,
            microseconds=micro,
        )
    except OverflowError:
        return None
    return -td if neg else td


def format_duration(value: timedelta | YearsMonthsDuration) -> str:
    """ISO 8601 text of a duration (``P1DT2H``, ``-PT30M``, ``P1Y2M``)."""
    if isinstance(value, YearsMonthsDuration):
        return str(value)
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    days = value.days
    secs = value.seconds
    micro = value.microseconds
    hours, rem = divmod(secs, 3600)
    minutes, seconds = divmod(rem, 60)
    text = "P"
    if days:
        text += f"{days}D"
    if hours or minutes or seconds or micro or not days:
        text += "T"
        if hours:
            text += f"{hours}H"
        if minutes:
            text += f"{minutes}M"
        if seconds or micro or not (hours or minutes):
            if micro:
                text += f"{seconds}.{micro:06d}".rstrip("0") + "S"
            else:
                text += f"{seconds}S"
    return sign + text


def _add_months(value: date, months: int) -> date | None:
    total = value.year * 12 + (value.month - 1) + months
    year, month0 = divmod(total, 12)
    if not 1 <= year <= 9999:
        return None
    day = min(value.day, calendar.monthrange(year, month0 + 1)[1])
    return value.replace(year=year, month=month0 + 1, day=day)


def _months_between(start: date, end: date) -> int:
    months = (end.year - start.year) * 12 + (end.month - start.month)

    if months > 0 and end.day < start.day:
        months -= 1
    elif months < 0 and end.day > start.day:
        months += 1
    return months
