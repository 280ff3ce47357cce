"""The hospital calendar: Chinese working days, working hours and the shifts on duty.

Pure Python (no database, no Flask). The engine builds one :class:`Calendar` from a
:class:`CalendarConfig` plus the administrator's override table, and hands
:func:`diagram_functions` to the expression engine so process owners can write
``${addWorkingDays(receivedAt, 5)}`` in a diagram.

Working days
------------
A day is a working day according to, in this order:

1. an **override** (``CalendarConfig.overrides``: ``date -> OverrideDay``), which the engine
   keeps in a table an administrator extends when the State Council publishes a new year, and
   for local closures (typhoon, a hospital holiday). An override always wins.
2. the maintained package ``chinese_calendar`` for the years it covers (statutory holidays and
   the make-up working days, 调休). :func:`package_coverage` measures the years it covers
   (2004-2026 for release 1.11.0).
3. for a year outside the package that an administrator has declared **confirmed**
   (``CalendarConfig.confirmed_years``): Monday to Friday. Such a year's holidays and 调休
   Saturdays must all be in the overrides (:func:`package_days` shows the form for a covered
   year).
4. otherwise the year is **unconfirmed** and the day is an **estimate**: Monday to Friday minus
   the ``holidays`` package's estimate of the Chinese holidays for that year. That estimate knows
   no 调休 for years the State Council has not published (a 调休 Saturday counts as a day off),
   so a deadline in such a year may be a day or two off. Every computation that used an
   estimate says so: :meth:`Calendar.deadline_working_days` returns a :class:`Deadline` with
   ``confirmed=False`` and the years; the plain functions (which must return a bare
   ``datetime`` for diagrams) log a warning once per year, call the ``on_unconfirmed`` hook of
   the calendar and are recorded by :meth:`Calendar.watch_estimates`. With
   ``strict=True`` the calendar raises :class:`CalendarNotConfirmedError` naming the year
   instead of estimating. A day with an override is never an estimate.

Times and zones
---------------
All rules are in the hospital's time zone (``Asia/Shanghai`` by default, no daylight saving).
Inputs may be aware datetimes in any zone (converted), naive datetimes (taken as hospital-local
time) or ``date`` objects (the day itself; where a moment is needed, midnight local time).
Every datetime returned is aware and in the hospital zone; it compares and subtracts correctly
with UTC datetimes.

Working hours are ``[start, end)`` on working days (08:00-17:30 by default, optionally minus a
lunch break): 08:00 is working time, 17:30 is not.

Deadlines in working days (the complaint rules: "feedback within 5 working days of receipt")
count the working days **after the calendar day of receipt**; the deadline is the end of working
hours of the n-th of them. The day of receipt never counts, whatever its kind or the hour: a
complaint received on a Saturday or a holiday counts from the next working day (day 1), one
received on a working day after hours is treated like one received during hours (the next
working day is day 1 either way). This is the regulation's reading and never gives the hospital
more time than the regulation does. ``n = 0`` means "by the end of the current working day": the
end of hours of the day of receipt if that is a working day and hours have not ended, else of the
next working day.

Shifts
------
A rota is a list of :class:`Shift` (code, Chinese and English name, start, end, group on duty)
repeated every day, holidays included (the service center is staffed 24 hours). A shift whose
end is not after its start crosses midnight; the part after midnight belongs to the shift that
started the day before (:meth:`Calendar.shift_date`). The ``default`` rota is the emergency
group's 早班 07:30-15:30, 中班 15:30-23:00, 夜班 23:00-07:30; the ``dispatcher`` rota is
07:30-14:30 and 14:30-21:30. Outside every shift of a rota (a dispatcher at 22:00) the shift
functions return ``None``: nobody of that rota is on duty.

Functions for diagrams
----------------------
Available in ``${...}`` expressions and FEEL. ``dt`` may be a datetime, a date or an ISO 8601
string such as ``"2026-09-30"``, ``"2026-09-30T10:00:00+08:00"`` or ``"2026-09-30T02:00:00Z"``
(a time without zone is hospital time). Times returned are in hospital time.

| function | returns | meaning |
| --- | --- | --- |
| `addWorkingDays(dt, n)` | date-time | End of working hours (17:30) on the n-th working day after the day of `dt`. Weekends, statutory holidays and local closures are skipped, 调休 Saturdays count. `addWorkingDays("2026-09-30", 5)` is 2026-10-13 17:30. |
| `addWorkingHours(dt, hours)` | date-time | `dt` plus `hours` of working time (08:00-17:30 on working days). 2 hours from Friday 16:30 is Monday 09:00. |
| `isWorkingDay(dt)` | boolean | Is the day of `dt` a working day? |
| `isWorkingTime(dt)` | boolean | Is `dt` within working hours of a working day? |
| `nextWorkingTime(dt)` | date-time | `dt` itself if it is working time, else the start of the next working time. |
| `workingDaysBetween(a, b)` | number | Working days after the day of `a` up to and including the day of `b` (negative if `b` is before `a`). |
| `currentShift()` | text | Code of the shift on duty now: `"early"` (早班), `"middle"` (中班) or `"night"` (夜班). `currentShift("dispatcher")` for the dispatchers' rota (`null` outside it). |
| `shiftAt(dt)` | text | Code of the shift on duty at `dt`; `shiftAt(dt, "dispatcher")` for the dispatchers. |
| `onDutyGroup()` | text | Group on duty now, e.g. `"emergency_night"`; `onDutyGroup("dispatcher")` for the dispatcher on duty (`null` outside the rota). |
| `addHours(dt, h)` | date-time | `dt` plus `h` hours of clock time (nights and holidays included). |
| `addMinutes(dt, m)` | date-time | `dt` plus `m` minutes of clock time. |
| `addDays(dt, d)` | date-time | Same clock time `d` calendar days later (a date alone means 00:00). |
| `now()` | date-time | The current time (the engine's clock), in hospital time. |

If a result relies on a year whose holidays have not been confirmed by an administrator, the
engine is told and shows a warning (or, in strict mode, the step fails naming the year).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache, wraps
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import chinese_calendar
import holidays as holidays_package

from engine.errors import EngineError

__all__ = [
    "DEFAULT_ROTAS",
    "Calendar",
    "CalendarConfig",
    "CalendarConfigError",
    "CalendarNotConfirmedError",
    "DayInfo",
    "Deadline",
    "EstimateWatch",
    "HospitalCalendar",
    "OverrideDay",
    "Shift",
    "ShiftPeriod",
    "WorkingHours",
    "diagram_functions",
    "package_coverage",
    "package_days",
]

log = logging.getLogger(__name__)

_WORKING = 1  # flag bit: the day is a working day
_ESTIMATED = 2  # flag bit: the day's status is an estimate (unconfirmed year, no override)
_ONE_DAY = timedelta(days=1)


# --------------------------------------------------------------------------- value types


class CalendarNotConfirmedError(EngineError):
    """A strict calendar was asked about a year whose working days nobody has confirmed."""

    code = "calendar_not_confirmed"

    def __init__(self, year: int, coverage: tuple[int, int] | None = None):
        first, last = coverage or package_coverage()
        super().__init__(
            f"the working-day calendar for {year} is not confirmed: the chinese_calendar package "
            f"covers {first}-{last}; enter the State Council's holiday schedule for {year} in the "
            f"calendar overrides and mark {year} as confirmed",
            year=year,
        )
        self.year = year


class CalendarConfigError(ValueError):
    """A calendar setting is wrong; the message names the key and the value."""


@dataclass(frozen=True)
class OverrideDay:
    """An administrator's ruling on one day: working or not, and why (e.g. "春节", "台风停工")."""

    is_working: bool
    name: str = ""


@dataclass(frozen=True)
class Deadline:
    """A deadline and whether every day it was computed from is confirmed.

    ``unconfirmed_years`` lists the years whose estimated days the computation used; it is
    empty exactly when ``confirmed`` is true.
    """

    at: datetime
    confirmed: bool
    unconfirmed_years: tuple[int, ...] = ()


@dataclass(frozen=True)
class DayInfo:
    """What the calendar says about one day and on what authority.

    ``source`` is ``"override"``, ``"package"`` (chinese_calendar), ``"plain_week"`` (a year
    confirmed by an administrator, day not in the overrides) or ``"estimate"``.
    """

    day: date
    is_working: bool
    name: str
    source: str


@dataclass(frozen=True)
class WorkingHours:
    """Office hours of a working day, ``[start, end)``, optionally minus a lunch break."""

    start: time = time(8, 0)
    end: time = time(17, 30)
    lunch_start: time | None = None
    lunch_end: time | None = None

    def __post_init__(self) -> None:
        path = "calendar.working_hours"
        for name in ("start", "end", "lunch_start", "lunch_end"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, time) or value.tzinfo is not None):
                raise CalendarConfigError(f"{path}.{name}: {value!r} is not a local time of day")
        if not self.start < self.end:
            raise CalendarConfigError(
                f"{path}: start {_hhmm(self.start)} must be before end {_hhmm(self.end)} "
                "(working hours cannot cross midnight)"
            )
        if (self.lunch_start is None) != (self.lunch_end is None):
            raise CalendarConfigError(f"{path}: give both lunch_start and lunch_end, or neither")
        if (
            self.lunch_start is not None
            and self.lunch_end is not None
            and not self.start < self.lunch_start < self.lunch_end < self.end
        ):
            raise CalendarConfigError(
                f"{path}: the lunch break {_hhmm(self.lunch_start)}-{_hhmm(self.lunch_end)} must lie "
                f"inside {_hhmm(self.start)}-{_hhmm(self.end)}"
            )

    @property
    def intervals(self) -> tuple[tuple[time, time], ...]:
        """The working intervals of one working day, in order."""
        if self.lunch_start is None or self.lunch_end is None:
            return ((self.start, self.end),)
        return ((self.start, self.lunch_start), (self.lunch_end, self.end))


@dataclass(frozen=True)
class Shift:
    """One shift of a rota. ``end <= start`` means the shift crosses midnight
    (``start == end`` is a 24-hour shift)."""

    code: str
    name_zh: str
    name_en: str
    start: time
    end: time
    group: str | None = None

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def covers(self, moment: time) -> bool:
        """Is the local time of day ``moment`` within ``[start, end)``?"""
        if self.crosses_midnight:
            return moment >= self.start or moment < self.end
        return self.start <= moment < self.end


@dataclass(frozen=True)
class ShiftPeriod:
    """One occurrence of a shift: the shift, the date it started on, and its start and end."""

    shift: Shift
    shift_date: date
    starts_at: datetime
    ends_at: datetime


DEFAULT_ROTAS: Mapping[str, tuple[Shift, ...]] = MappingProxyType(
    {
        "default": (
            Shift("early", "早班", "Early shift", time(7, 30), time(15, 30), "emergency_early"),
            Shift("middle", "中班", "Middle shift", time(15, 30), time(23, 0), "emergency_middle"),
            Shift("night", "夜班", "Night shift", time(23, 0), time(7, 30), "emergency_night"),
        ),
        "dispatcher": (
            Shift("early", "早班", "Early shift", time(7, 30), time(14, 30), "dispatch_early"),
            Shift("late", "晚班", "Late shift", time(14, 30), time(21, 30), "dispatch_late"),
        ),
    }
)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class CalendarConfig:
    """Everything the calendar needs; validated on construction (``ValueError`` naming the key).

    ``rotas`` must contain ``"default"``. ``duty_groups`` maps a role (``"default"`` for no role,
    or e.g. ``"dispatcher"``, ``"escort"``) to ``{shift code: group}`` and overrides the
    ``group`` of the shifts; a role that names a rota uses that rota, any other role the
    default rota.
    """

    timezone: str = "Asia/Shanghai"
    working_hours: WorkingHours = field(default_factory=WorkingHours)
    rotas: Mapping[str, Sequence[Shift]] = field(default_factory=lambda: dict(DEFAULT_ROTAS))
    duty_groups: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    overrides: Mapping[date, OverrideDay] = field(default_factory=dict)
    confirmed_years: frozenset[int] = frozenset()
    strict: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.timezone, str):
            raise CalendarConfigError(f"calendar.timezone: {self.timezone!r} is not a time zone name")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CalendarConfigError(
                f"calendar.timezone: {self.timezone!r} is not a known IANA time zone (e.g. 'Asia/Shanghai')"
            ) from None
        if not isinstance(self.working_hours, WorkingHours):
            raise CalendarConfigError(
                f"calendar.working_hours: expected WorkingHours, got {self.working_hours!r}"
            )
        if not isinstance(self.strict, bool):
            raise CalendarConfigError(f"calendar.strict: {self.strict!r} is not true or false")

        rotas: dict[str, tuple[Shift, ...]] = {}
        for name, shifts in self.rotas.items():
            rotas[name] = tuple(shifts)
            _validate_rota(name, rotas[name])
        if "default" not in rotas:
            raise CalendarConfigError("calendar.rotas: a 'default' rota is required")
        object.__setattr__(self, "rotas", rotas)

        duty_groups: dict[str, dict[str, str]] = {}
        for role, mapping in self.duty_groups.items():
            rota_name = role if role in rotas else "default"
            codes = {shift.code for shift in rotas[rota_name]}
            for code, group in mapping.items():
                if code not in codes:
                    raise CalendarConfigError(
                        f"calendar.duty_groups.{role}.{code}: no shift {code!r} in rota {rota_name!r} "
                        f"(shifts: {', '.join(sorted(codes))})"
                    )
                if not isinstance(group, str) or not group:
                    raise CalendarConfigError(
                        f"calendar.duty_groups.{role}.{code}: {group!r} is not a group name"
                    )
            duty_groups[role] = dict(mapping)
        object.__setattr__(self, "duty_groups", duty_groups)

        overrides: dict[date, OverrideDay] = {}
        for day, ruling in self.overrides.items():
            if isinstance(day, datetime) or not isinstance(day, date):
                raise CalendarConfigError(f"calendar.overrides: key {day!r} is not a date")
            if not isinstance(ruling, OverrideDay) or not isinstance(ruling.is_working, bool):
                raise CalendarConfigError(
                    f"calendar.overrides.{day.isoformat()}: {ruling!r} is not an OverrideDay"
                )
            overrides[day] = ruling
        object.__setattr__(self, "overrides", overrides)

        years = frozenset(self.confirmed_years)
        for year in years:
            if isinstance(year, bool) or not isinstance(year, int) or not 1 <= year <= 9999:
                raise CalendarConfigError(f"calendar.confirmed_years: {year!r} is not a year")
        object.__setattr__(self, "confirmed_years", years)


def _validate_rota(name: str, shifts: tuple[Shift, ...]) -> None:
    path = f"calendar.rotas.{name}"
    if not shifts:
        raise CalendarConfigError(f"{path}: a rota needs at least one shift")
    seen: set[str] = set()
    for shift in shifts:
        if not isinstance(shift, Shift):
            raise CalendarConfigError(f"{path}: {shift!r} is not a Shift")
        if not shift.code or not isinstance(shift.code, str):
            raise CalendarConfigError(f"{path}: a shift needs a code")
        if shift.code in seen:
            raise CalendarConfigError(f"{path}: shift code {shift.code!r} appears twice")
        seen.add(shift.code)
        for bound in (shift.start, shift.end):
            if not isinstance(bound, time) or bound.tzinfo is not None:
                raise CalendarConfigError(f"{path}.{shift.code}: {bound!r} is not a local time of day")
    segments = [(shift, _shift_segments(shift)) for shift in shifts]
    for index, (first, first_segments) in enumerate(segments):
        for second, second_segments in segments[index + 1 :]:
            if any(a < d and c < b for a, b in first_segments for c, d in second_segments):
                raise CalendarConfigError(f"{path}: shifts {first.code!r} and {second.code!r} overlap")


def _shift_segments(shift: Shift) -> list[tuple[int, int]]:
    """The shift as half-open second ranges within one day."""
    start = _seconds(shift.start)
    end = _seconds(shift.end)
    if not shift.crosses_midnight:
        return [(start, end)]
    return [(start, 86_400), (0, end)] if end else [(start, 86_400)]


def _seconds(moment: time) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


def _hhmm(moment: time) -> str:
    return moment.strftime("%H:%M") if not moment.second else moment.strftime("%H:%M:%S")


# --------------------------------------------------------------------------- the package's data


@lru_cache(maxsize=1)
def package_coverage() -> tuple[int, int]:
    """The first and last year the installed ``chinese_calendar`` knows, measured by asking it."""
    known = [year for year in range(1949, 2201) if _package_knows(year)]
    if not known:
        raise RuntimeError("the chinese_calendar package answers for no year")
    return known[0], known[-1]


def _package_knows(year: int) -> bool:
    try:
        chinese_calendar.is_workday(date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


def _chinese_holiday_name(english: str) -> str:
    try:
        return chinese_calendar.Holiday(english).chinese
    except ValueError:
        return english


def package_days(year: int) -> dict[date, OverrideDay]:
    """The package's named days of ``year``: holidays (not working) and 调休 days (working).

    The form of the override table an administrator fills for a year the package does not cover;
    the engine can seed its table with it. Raises :class:`CalendarNotConfirmedError` for a year
    the package does not cover.
    """
    first, last = package_coverage()
    if not first <= year <= last:
        raise CalendarNotConfirmedError(year, (first, last))
    days: dict[date, OverrideDay] = {}
    day = date(year, 1, 1)
    while day.year == year:
        is_holiday, name = chinese_calendar.get_holiday_detail(day)
        if name:
            label = _chinese_holiday_name(name)
            days[day] = OverrideDay(False, label) if is_holiday else OverrideDay(True, f"{label}调休上班")
        day += _ONE_DAY
    return days


# --------------------------------------------------------------------------- estimate watching


@dataclass
class EstimateWatch:
    """Collects the unconfirmed years used by calendar computations inside
    :meth:`Calendar.watch_estimates`."""

    years: set[int] = field(default_factory=set)

    @property
    def confirmed(self) -> bool:
        return not self.years


_watches: ContextVar[tuple[tuple[Calendar, EstimateWatch], ...]] = ContextVar("calendar_watches", default=())


# --------------------------------------------------------------------------- the calendar


Moment = datetime | date


@dataclass
class _Year:
    first: int  # ordinal of 1 January
    flags: bytes
    names: dict[date, str]
    source: str  # "package", "plain_week" or "estimate"


class Calendar:
    """Working days, working hours and shifts of the hospital. Immutable: when the override
    table changes, build a new calendar (cheap; year tables are built lazily and cached).

    ``on_unconfirmed(operation, years)`` is called whenever a computation in a non-strict
    calendar relied on estimated days (e.g. to record a warning on the process instance).
    """

    def __init__(
        self,
        config: CalendarConfig | None = None,
        *,
        on_unconfirmed: Callable[[str, tuple[int, ...]], None] | None = None,
    ):
        self.config = config if config is not None else CalendarConfig()
        self.zone = ZoneInfo(self.config.timezone)
        self.strict = self.config.strict
        self.rotas: dict[str, tuple[Shift, ...]] = dict(self.config.rotas)  # type: ignore[arg-type]
        self._on_unconfirmed = on_unconfirmed
        self._intervals = self.config.working_hours.intervals
        self._coverage = package_coverage()
        self._years: dict[int, _Year] = {}
        self._overrides_by_year: dict[int, dict[date, OverrideDay]] = {}
        for day, ruling in self.config.overrides.items():
            self._overrides_by_year.setdefault(day.year, {})[day] = ruling
        self._warned: set[int] = set()

    # ----------------------------------------------------------------- confirmation

    def coverage(self) -> tuple[int, int]:
        """First and last year covered by the chinese_calendar package."""
        return self._coverage

    def is_confirmed(self, year: int) -> bool:
        """True when the package covers ``year`` or an administrator declared it confirmed."""
        first, last = self._coverage
        return first <= year <= last or year in self.config.confirmed_years

    @contextmanager
    def watch_estimates(self) -> Iterator[EstimateWatch]:
        """Record the unconfirmed years used by every computation of this calendar in the block
        (in this thread / async context), e.g. around one engine step::

            with calendar.watch_estimates() as watch:
                workflow.do_engine_steps()
            if not watch.confirmed: warn(watch.years)
        """
        watch = EstimateWatch()
        token = _watches.set(_watches.get() + ((self, watch),))
        try:
            yield watch
        finally:
            _watches.reset(token)

    def _report(self, operation: str, touched: set[int]) -> None:
        if not touched:
            return
        years = tuple(sorted(touched))
        for calendar, watch in _watches.get():
            if calendar is self:
                watch.years.update(years)
        fresh = [year for year in years if year not in self._warned]
        if fresh:
            self._warned.update(fresh)
            log.warning(
                "working days of %s are estimated (not confirmed: the chinese_calendar package covers "
                "%d-%d and no administrator confirmed the year); first used by %s",
                ", ".join(map(str, fresh)),
                *self._coverage,
                operation,
            )
        if self._on_unconfirmed is not None:
            self._on_unconfirmed(operation, years)

    # ----------------------------------------------------------------- year tables

    def _year(self, year: int) -> _Year:
        table = self._years.get(year)
        if table is None:
            table = self._years[year] = self._build_year(year)
        return table

    def _build_year(self, year: int) -> _Year:
        first_day = date(year, 1, 1)
        length = (date(year, 12, 31) - first_day).days + 1
        flags = bytearray(length)
        names: dict[date, str] = {}
        first, last = self._coverage
        if first <= year <= last:
            source = "package"
            for offset in range(length):
                day = first_day + timedelta(days=offset)
                is_holiday, name = chinese_calendar.get_holiday_detail(day)
                flags[offset] = 0 if is_holiday else _WORKING
                if name:
                    names[day] = _chinese_holiday_name(name) + ("" if is_holiday else "调休上班")
        elif year in self.config.confirmed_years:
            source = "plain_week"
            for offset in range(length):
                flags[offset] = _WORKING if (first_day + timedelta(days=offset)).weekday() < 5 else 0
        else:
            source = "estimate"
            estimate = holidays_package.country_holidays("CN", years=year, language="zh_CN")
            # Make-up days the holidays package happens to know for this year (none for years
            # the State Council has not published).
            extra_working = {day for day in getattr(estimate, "weekend_workdays", ()) if day.year == year}
            for offset in range(length):
                day = first_day + timedelta(days=offset)
                working = (day.weekday() < 5 and day not in estimate) or day in extra_working
                flags[offset] = _ESTIMATED | (_WORKING if working else 0)
                if day in estimate:
                    names[day] = str(estimate[day])
        for day, ruling in self._overrides_by_year.get(year, {}).items():
            flags[day.toordinal() - first_day.toordinal()] = _WORKING if ruling.is_working else 0
            names[day] = ruling.name
        return _Year(first_day.toordinal(), bytes(flags), names, source)

    def _working(self, ordinal: int, touched: set[int]) -> bool:
        year = date.fromordinal(ordinal).year
        table = self._years.get(year) or self._year(year)
        flag = table.flags[ordinal - table.first]
        if flag & _ESTIMATED:
            if self.strict:
                raise CalendarNotConfirmedError(year, self._coverage)
            touched.add(year)
        return bool(flag & _WORKING)

    def _next_working_ordinal(self, ordinal: int, touched: set[int]) -> int:
        ordinal += 1
        while not self._working(ordinal, touched):
            ordinal += 1
        return ordinal

    # ----------------------------------------------------------------- conversions

    def localize(self, moment: Moment) -> datetime:
        """``moment`` as an aware datetime in the hospital zone (naive = hospital-local,
        a date = its midnight)."""
        if isinstance(moment, datetime):
            if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
                return moment.replace(tzinfo=self.zone)
            return moment.astimezone(self.zone)
        if isinstance(moment, date):
            return datetime.combine(moment, time(0), tzinfo=self.zone)
        raise TypeError(f"expected a datetime or date, got {moment!r} ({type(moment).__name__})")

    def _day(self, moment: Moment) -> date:
        if isinstance(moment, datetime):
            return self.localize(moment).date()
        if isinstance(moment, date):
            return moment
        raise TypeError(f"expected a datetime or date, got {moment!r} ({type(moment).__name__})")

    def _at(self, day: date, moment: time) -> datetime:
        return datetime.combine(day, moment, tzinfo=self.zone)

    # ----------------------------------------------------------------- working days

    def is_working_day(self, day: Moment) -> bool:
        """Is the (hospital-local) day of ``day`` a working day?"""
        touched: set[int] = set()
        result = self._working(self._day(day).toordinal(), touched)
        self._report("is_working_day", touched)
        return result

    def describe_day(self, day: Moment) -> DayInfo:
        """Whether ``day`` is a working day, its name (holiday, 调休, override) and the source."""
        local_day = self._day(day)
        touched: set[int] = set()
        working = self._working(local_day.toordinal(), touched)
        self._report("describe_day", touched)
        table = self._year(local_day.year)
        source = "override" if local_day in self.config.overrides else table.source
        return DayInfo(local_day, working, table.names.get(local_day, ""), source)

    def add_working_days(self, start: Moment, days: int) -> datetime:
        """End of working hours on the ``days``-th working day after the day of ``start``.

        The day of receipt never counts (see the module docstring); ``days == 0`` is the end of
        the current working day. Example: received Wednesday 2026-09-30, 5 working days ->
        2026-10-13 17:30 (National Day 10-01..07 skipped, the 调休 Saturday 10-10 counted).
        Use :meth:`deadline_working_days` to learn whether the result is confirmed.
        """
        return self._working_days_deadline(start, days, "add_working_days").at

    def deadline_working_days(self, start: Moment, days: int) -> Deadline:
        """:meth:`add_working_days` plus whether every day it used is confirmed."""
        return self._working_days_deadline(start, days, "deadline_working_days")

    def _working_days_deadline(self, start: Moment, days: int, operation: str) -> Deadline:
        count = _whole_number(days, "days")
        if count < 0:
            raise ValueError(f"days must not be negative, got {days!r}")
        touched: set[int] = set()
        receipt_day = self._day(start)
        ordinal = receipt_day.toordinal()
        if count == 0:
            hours_left = not isinstance(start, datetime) or self.localize(start) <= self._at(
                receipt_day, self.config.working_hours.end
            )
            if not (self._working(ordinal, touched) and hours_left):
                ordinal = self._next_working_ordinal(ordinal, touched)
        else:
            for _ in range(count):
                ordinal = self._next_working_ordinal(ordinal, touched)
        at = self._at(date.fromordinal(ordinal), self.config.working_hours.end)
        self._report(operation, touched)
        return Deadline(at, not touched, tuple(sorted(touched)))

    def working_days_between(self, start: Moment, end: Moment) -> int:
        """Working days after the day of ``start`` up to and including the day of ``end``.

        ``working_days_between(t, add_working_days(t, n)) == n`` for ``n >= 1``; negative when
        ``end`` is before ``start``; 0 on the same day.
        """
        first, last = self._day(start).toordinal(), self._day(end).toordinal()
        sign = 1
        if last < first:
            first, last, sign = last, first, -1
        touched: set[int] = set()
        count = sum(1 for ordinal in range(first + 1, last + 1) if self._working(ordinal, touched))
        self._report("working_days_between", touched)
        return sign * count

    # ----------------------------------------------------------------- working hours

    def is_working_time(self, moment: Moment) -> bool:
        """Is ``moment`` within working hours ``[start, end)`` of a working day?"""
        local = self.localize(moment)
        day = local.date()
        touched: set[int] = set()
        result = self._working(day.toordinal(), touched) and any(
            self._at(day, start) <= local < self._at(day, end) for start, end in self._intervals
        )
        self._report("is_working_time", touched)
        return result

    def next_working_time(self, moment: Moment) -> datetime:
        """``moment`` itself when it is working time, else the start of the next working time
        (e.g. Friday 17:30 -> Monday 08:00; 07:00 on a working day -> 08:00 that day)."""
        local = self.localize(moment)
        touched: set[int] = set()
        day = local.date()
        while True:
            if self._working(day.toordinal(), touched):
                for start, end in self._intervals:
                    if local < self._at(day, end):
                        result = max(local, self._at(day, start))
                        self._report("next_working_time", touched)
                        return result
            day += _ONE_DAY
            local = self._at(day, time(0))

    def add_working_hours(self, start: Moment, hours: float) -> datetime:
        """``start`` plus ``hours`` of working time; time outside working hours does not count.

        2 hours from Friday 16:30 -> Monday 09:00 (if Monday is a working day); from a holiday
        -> the first working day 08:00 + hours; a result exactly at the end of hours stays on
        that day (16:30 + 1 h -> 17:30). ``hours == 0`` returns ``start`` unchanged (in hospital
        time). Use :meth:`deadline_working_hours` to learn whether the result is confirmed.
        """
        return self._working_hours_deadline(start, hours, "add_working_hours").at

    def deadline_working_hours(self, start: Moment, hours: float) -> Deadline:
        """:meth:`add_working_hours` plus whether every day it used is confirmed."""
        return self._working_hours_deadline(start, hours, "deadline_working_hours")

    def _working_hours_deadline(self, start: Moment, hours: float, operation: str) -> Deadline:
        remaining = _duration_hours(hours, "hours")
        if remaining < timedelta(0):
            raise ValueError(f"hours must not be negative, got {hours!r}")
        local = self.localize(start)
        touched: set[int] = set()
        if not remaining:
            return Deadline(local, True, ())
        day = local.date()
        while True:
            if self._working(day.toordinal(), touched):
                for start_time, end_time in self._intervals:
                    interval_end = self._at(day, end_time)
                    if local >= interval_end:
                        continue
                    begin = max(local, self._at(day, start_time)).astimezone(UTC)
                    available = interval_end.astimezone(UTC) - begin
                    if remaining <= available:
                        at = (begin + remaining).astimezone(self.zone)
                        self._report(operation, touched)
                        return Deadline(at, not touched, tuple(sorted(touched)))
                    remaining -= available
            day += _ONE_DAY
            local = self._at(day, time(0))

    # ----------------------------------------------------------------- shifts

    def rota(self, name: str = "default") -> tuple[Shift, ...]:
        """The shifts of rota ``name``."""
        try:
            return self.rotas[name]
        except KeyError:
            raise ValueError(f"unknown rota {name!r} (rotas: {', '.join(sorted(self.rotas))})") from None

    def shift_period_at(self, moment: Moment, rota: str = "default") -> ShiftPeriod | None:
        """The occurrence of the rota's shift covering ``moment`` (start, end, shift date), or
        ``None`` when no shift of the rota covers it."""
        shifts = self.rota(rota)
        local = self.localize(moment)
        clock = local.time()
        for shift in shifts:
            if shift.covers(clock):
                shift_day = local.date()
                if shift.crosses_midnight and clock < shift.end:
                    shift_day -= _ONE_DAY
                end_day = shift_day + _ONE_DAY if shift.crosses_midnight else shift_day
                return ShiftPeriod(
                    shift, shift_day, self._at(shift_day, shift.start), self._at(end_day, shift.end)
                )
        return None

    def shift_at(self, moment: Moment, rota: str = "default") -> Shift | None:
        """The shift on duty at ``moment`` (``None`` outside every shift of the rota; the default
        rota covers the whole day)."""
        period = self.shift_period_at(moment, rota)
        return period.shift if period else None

    def shift_date(self, moment: Moment, rota: str = "default") -> date | None:
        """The date the shift on duty at ``moment`` started: 03:00 on 10-02 is the night shift of
        10-01."""
        period = self.shift_period_at(moment, rota)
        return period.shift_date if period else None

    def on_duty_group(self, moment: Moment, role: str | None = None) -> str | None:
        """The group on duty at ``moment`` for ``role`` (``None``: the default rota).

        A role that names a rota (``"dispatcher"``) uses that rota, another role configured in
        ``duty_groups`` the default rota. The group comes from ``duty_groups[role][shift code]``,
        else from the shift's ``group``. ``None`` when no shift of the rota covers ``moment``.
        """
        key = role if role is not None else "default"
        if key not in self.rotas and key not in self.config.duty_groups:
            known = sorted(set(self.rotas) | set(self.config.duty_groups))
            raise ValueError(f"unknown duty role {role!r} (roles: {', '.join(known)})")
        shift = self.shift_at(moment, key if key in self.rotas else "default")
        if shift is None:
            return None
        return self.config.duty_groups.get(key, {}).get(shift.code, shift.group)


# The name engine.service uses; the same class.
HospitalCalendar = Calendar


# --------------------------------------------------------------------------- numbers


def _whole_number(value: object, name: str) -> int:
    """A whole number from an int, an integral float or Decimal (FEEL numbers) or numeric text."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise TypeError(f"{name}: {value!r} is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except ArithmeticError:
            raise ValueError(f"{name}: {value!r} is not a whole number") from None
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"{name}: {value!r} is not a whole number")
    return int(value)


def _duration_hours(value: object, name: str) -> timedelta:
    """A number of hours as a timedelta (int, float, Decimal or numeric text)."""
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except ArithmeticError:
            raise ValueError(f"{name}: {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise TypeError(f"{name}: {value!r} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{name}: {value!r} is not a finite number")
    return timedelta(hours=float(value))


# --------------------------------------------------------------------------- diagram functions


def _parse_moment(value: object, zone: ZoneInfo) -> datetime | date:
    """A datetime, a date or an ISO 8601 text (``...@Asia/Shanghai`` as in FEEL allowed)."""
    if isinstance(value, (datetime, date)):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return date.fromisoformat(text)
            if "@" in text:
                local_text, zone_name = text.split("@", 1)
                return datetime.fromisoformat(local_text).replace(tzinfo=ZoneInfo(zone_name))
            return datetime.fromisoformat(text)
        except (ValueError, ZoneInfoNotFoundError):
            pass
        raise ValueError(f"{value!r} is not an ISO 8601 date or date-time (e.g. 2026-09-30T10:00:00+08:00)")
    raise ValueError(f"{value!r} ({type(value).__name__}) is not a date, date-time or ISO 8601 text")


def diagram_functions(
    calendar: Calendar, now_provider: Callable[[], datetime]
) -> dict[str, Callable[..., object]]:
    """The calendar functions process owners call in ``${...}`` and FEEL (see the module
    docstring for the table). ``now_provider`` returns the current aware time (the engine's
    clock); a naive result is taken as hospital time. Errors are ``ValueError`` whose message
    starts with the function name; :class:`CalendarNotConfirmedError` from a strict calendar
    passes through."""
    zone = calendar.zone

    def moment(value: object) -> datetime | date:
        return _parse_moment(value, zone)

    def instant(value: object) -> datetime:
        return calendar.localize(moment(value))

    def named(name: str) -> Callable[[Callable[..., object]], Callable[..., object]]:
        def decorate(function: Callable[..., object]) -> Callable[..., object]:
            @wraps(function)
            def call(*args: object) -> object:
                try:
                    return function(*args)
                except CalendarNotConfirmedError:
                    raise
                except (ValueError, TypeError) as error:
                    raise ValueError(f"{name}(): {error}") from error

            call.__name__ = name
            return call

        return decorate

    @named("addWorkingDays")
    def add_working_days(dt: object, n: object) -> datetime:
        return calendar.add_working_days(moment(dt), _whole_number(n, "n"))

    @named("addWorkingHours")
    def add_working_hours(dt: object, hours: object) -> datetime:
        return calendar.add_working_hours(moment(dt), _duration_hours(hours, "hours") / timedelta(hours=1))

    @named("isWorkingDay")
    def is_working_day(dt: object) -> bool:
        return calendar.is_working_day(moment(dt))

    @named("isWorkingTime")
    def is_working_time(dt: object) -> bool:
        return calendar.is_working_time(moment(dt))

    @named("nextWorkingTime")
    def next_working_time(dt: object) -> datetime:
        return calendar.next_working_time(moment(dt))

    @named("workingDaysBetween")
    def working_days_between(a: object, b: object) -> int:
        return calendar.working_days_between(moment(a), moment(b))

    @named("now")
    def now() -> datetime:
        return calendar.localize(now_provider())

    @named("currentShift")
    def current_shift(rota: object = "default") -> str | None:
        shift = calendar.shift_at(now_provider(), str(rota))
        return shift.code if shift else None

    @named("shiftAt")
    def shift_at(dt: object, rota: object = "default") -> str | None:
        shift = calendar.shift_at(moment(dt), str(rota))
        return shift.code if shift else None

    @named("onDutyGroup")
    def on_duty_group(role: object = None) -> str | None:
        return calendar.on_duty_group(now_provider(), None if role is None else str(role))

    @named("addHours")
    def add_hours(dt: object, h: object) -> datetime:
        return (instant(dt).astimezone(UTC) + _duration_hours(h, "h")).astimezone(zone)

    @named("addMinutes")
    def add_minutes(dt: object, m: object) -> datetime:
        return (instant(dt).astimezone(UTC) + _duration_hours(m, "m") / 60).astimezone(zone)

    @named("addDays")
    def add_days(dt: object, d: object) -> datetime:
        # Calendar days keep the clock time (would matter only in a zone with daylight saving).
        local = instant(dt)
        shifted = local.replace(tzinfo=None) + timedelta(days=_whole_number(d, "d"))
        return shifted.replace(tzinfo=zone)

    return {
        "addWorkingDays": add_working_days,
        "addWorkingHours": add_working_hours,
        "isWorkingDay": is_working_day,
        "isWorkingTime": is_working_time,
        "nextWorkingTime": next_working_time,
        "workingDaysBetween": working_days_between,
        "currentShift": current_shift,
        "shiftAt": shift_at,
        "onDutyGroup": on_duty_group,
        "addHours": add_hours,
        "addMinutes": add_minutes,
        "addDays": add_days,
        "now": now,
    }
