"""ISO 8601 durations and date-times as timer definitions write them."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, NoReturn

from dateutil.relativedelta import relativedelta

from engine.dialect.timers.base import _MAX_DURATION_SECONDS, TimerExpressionError, _format_number, _localize

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


# What timers accept: ISO 8601 extended format, a date or a date and a time with minutes, optional
# seconds and fraction (up to 9 digits, '.' or ','), optional 'Z' or offset ±hh, ±hhmm or ±hh:mm.
# The standard library builds the value; alone it would also take "2026-12-01 09:00", "20261201",
# week dates, hours without minutes and offsets such as +08:75.
_ISO_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[Tt][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)?)?")


def parse_iso_datetime(text: str, tz: tzinfo) -> datetime:
    """Parse an ISO 8601 date or date-time; without an offset it is a wall time in ``tz``.

    Returns an aware UTC ``datetime``.
    """
    source = text.strip()
    if _ISO_DATE_TIME.fullmatch(source):
        try:
            moment = datetime.fromisoformat(source.replace(",", ".").upper())
        except ValueError:  # a field out of range: the explanation below names it
            pass
        else:
            return _localize(moment, tz) if moment.tzinfo is None else moment.astimezone(UTC)
    _refuse(source, f"invalid ISO 8601 date-time {text!r}")


def _refuse(source: str, prefix: str) -> NoReturn:
    """Raise what is wrong in a refused date-time, and where: the first problem left to right."""
    scan = _Scanner(source, prefix)
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
    if scan.peek():
        scan.literal("Tt", "'T' between the date and the time")
        hour = scan.digits(2, "the hour")
        scan.literal(":", "':' after the hour")
        minute = scan.digits(2, "the minutes")
        second = 0
        if scan.peek() == ":":
            scan.pos += 1
            second = scan.digits(2, "the seconds")
            if scan.peek() in (".", ","):
                scan.pos += 1
                start = scan.pos
                while scan.peek().isascii() and scan.peek().isdigit():
                    scan.pos += 1
                if not 1 <= scan.pos - start <= 9:
                    raise scan.fail(f"expected 1 to 9 digits of fractional seconds at position {start}")
        for name, value, highest in (("hour", hour, 23), ("minute", minute, 59), ("second", second, 59)):
            if value > highest:
                raise scan.fail(f"{name} {value} is out of range 00-{highest}")
        marker = scan.peek()
        if marker in ("Z", "z"):
            scan.pos += 1
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
        if scan.peek():
            raise scan.fail(f"unexpected {scan.peek()!r} at position {scan.pos}")
    raise scan.fail("not an ISO 8601 date-time such as '2026-12-01T09:00:00+08:00'")


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
