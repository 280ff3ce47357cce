"""Methods of Joda-style date-times (plusDays, isBefore, toDate ...)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta

from engine.dialect.juel.limits import _UTC, JuelEvaluationError
from engine.dialect.juel.values import JodaDateTime, _describe, _to_long


def _instant_of(value: Any) -> datetime:
    if isinstance(value, JodaDateTime):
        return value.to_datetime()
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise JuelEvaluationError(f"{_describe(value)} has no time zone; cannot compare it with an instant")
        return value
    raise JuelEvaluationError(f"expected a date-time, got {_describe(value)}")


def _field_value(value: Any, low: int, high: int, name: str) -> int:
    number = _to_long(value)
    if not low <= number <= high:
        raise JuelEvaluationError(f"{name} must be between {low} and {high}, got {number}")
    return number


def _calendar_shift(unit: str, sign: int) -> Callable[[JodaDateTime, Any], JodaDateTime]:
    def shift(moment: JodaDateTime, amount: Any) -> JodaDateTime:
        return moment.shifted_local(relativedelta(**{unit: sign * _to_long(amount)}))
    return shift


def _exact_shift(unit: str, sign: int) -> Callable[[JodaDateTime, Any], JodaDateTime]:
    def shift(moment: JodaDateTime, amount: Any) -> JodaDateTime:
        return moment.shifted(timedelta(**{unit: sign * _to_long(amount)}))
    return shift


def _millis(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=_UTC)) // timedelta(milliseconds=1)


_JODA_METHODS: dict[str, Callable[..., Any]] = {
    "toDate": lambda d: d.to_datetime(),
    "toString": lambda d: d.to_iso(),
    "getMillis": lambda d: _millis(d.instant),
    "getYear": lambda d: d.local().year,
    "getMonthOfYear": lambda d: d.local().month,
    "getDayOfMonth": lambda d: d.local().day,
    "getDayOfWeek": lambda d: d.local().isoweekday(),  # Joda: 1 = Monday … 7 = Sunday
    "getHourOfDay": lambda d: d.local().hour,
    "getMinuteOfHour": lambda d: d.local().minute,
    "getSecondOfMinute": lambda d: d.local().second,
    "withHourOfDay": lambda d, v: d.with_local_fields(hour=_field_value(v, 0, 23, "hourOfDay")),
    "withMinuteOfHour": lambda d, v: d.with_local_fields(minute=_field_value(v, 0, 59, "minuteOfHour")),
    "withSecondOfMinute": lambda d, v: d.with_local_fields(second=_field_value(v, 0, 59, "secondOfMinute")),
    "withMillisOfSecond": lambda d, v: d.with_local_fields(
        microsecond=_field_value(v, 0, 999, "millisOfSecond") * 1000),
    "withDayOfMonth": lambda d, v: d.with_local_fields(day=_field_value(v, 1, 31, "dayOfMonth")),
    "withTimeAtStartOfDay": lambda d: d.with_local_fields(hour=0, minute=0, second=0, microsecond=0),
    "isBefore": lambda d, other: d.instant < _instant_of(other),
    "isAfter": lambda d, other: d.instant > _instant_of(other),
    "isEqual": lambda d, other: d.instant == _instant_of(other),
    "isBeforeNow": lambda d: d.instant < d.clock,
    "isAfterNow": lambda d: d.instant > d.clock,
}
for _unit, _joda in (("years", "Years"), ("months", "Months"), ("weeks", "Weeks"), ("days", "Days")):
    _JODA_METHODS["plus" + _joda] = _calendar_shift(_unit, 1)
    _JODA_METHODS["minus" + _joda] = _calendar_shift(_unit, -1)
for _unit, _joda in (("hours", "Hours"), ("minutes", "Minutes"), ("seconds", "Seconds"),
                     ("milliseconds", "Millis")):
    _JODA_METHODS["plus" + _joda] = _exact_shift(_unit, 1)
    _JODA_METHODS["minus" + _joda] = _exact_shift(_unit, -1)
