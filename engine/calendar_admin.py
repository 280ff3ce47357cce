"""The hospital calendar as the service uses it: built from the package plus the administrator's
override days and confirmed years, reloaded when they change; and the diagram functions on it."""

from __future__ import annotations

import logging
import threading
from datetime import date

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from engine import calendar as hospital_calendar
from engine.errors import InvalidInput
from engine.models import CalendarDay, CalendarYear
from engine.store import UseCase

log = logging.getLogger(__name__)


class CalendarAdmin(UseCase):
    """The calendar in use and its administration (override days, confirmed years)."""

    def __init__(self, engine, calendar: hospital_calendar.HospitalCalendar | None = None):
        super().__init__(engine)
        self._calendar = calendar
        self._calendar_lock = threading.Lock()
        self._functions: dict | None = None

    @property
    def calendar(self) -> hospital_calendar.HospitalCalendar:
        with self._calendar_lock:
            if self._calendar is None:
                self._calendar = self.build()
            return self._calendar

    def build(self):
        overrides, confirmed = {}, set()
        try:
            with self.db.reader() as s:
                for row in s.execute(select(CalendarDay)).scalars():
                    overrides[row.day] = hospital_calendar.OverrideDay(is_working=row.is_working, name=row.name)
                confirmed = {row.year for row in s.execute(select(CalendarYear)).scalars()}
        except SQLAlchemyError:  # the tables do not exist yet (before the first migration)
            log.debug("calendar tables not readable yet; the package's calendar alone is used")
        config = hospital_calendar.CalendarConfig(timezone=self.settings.timezone, overrides=overrides,
                                                  confirmed_years=confirmed)
        return hospital_calendar.HospitalCalendar(config)

    def reload(self) -> None:
        with self._calendar_lock:
            self._calendar = None
            self._functions = None

    def functions(self) -> dict:
        if self._functions is None:
            self._functions = dict(hospital_calendar.diagram_functions(self.calendar, self.clock.now))
        return self._functions

    def function_names(self) -> set[str]:
        return set(self.functions())

    def overrides(self) -> dict:
        """The administrator's calendar: override days and confirmed years, and the package's range."""
        with self.db.reader() as s:
            days = [{"day": d.day, "is_working": d.is_working, "name": d.name}
                    for d in s.execute(select(CalendarDay).order_by(CalendarDay.day)).scalars()]
            years = [{"year": y.year, "note": y.note}
                     for y in s.execute(select(CalendarYear).order_by(CalendarYear.year)).scalars()]
        first, last = hospital_calendar.package_coverage()
        return {"days": days, "confirmed_years": years, "package_years": [first, last]}

    def set_day(self, day: date, is_working: bool, name: str = "", *, user: str | None = None) -> None:
        """A local closure or an entry of a newly published year (wins over the package)."""
        if not isinstance(day, date):
            raise InvalidInput("day must be a date (YYYY-MM-DD)", field="day")
        with self.store.command() as s:
            row = s.get(CalendarDay, day)
            if row is None:
                s.add(CalendarDay(day=day, is_working=bool(is_working), name=name or ""))
            else:
                row.is_working, row.name = bool(is_working), name or ""
            self.store.record(s, None, user, "calendar_day", details={"day": day.isoformat(),
                                                                      "is_working": bool(is_working), "name": name})
        self.reload()

    def remove_day(self, day: date, *, user: str | None = None) -> None:
        with self.store.command() as s:
            s.execute(delete(CalendarDay).where(CalendarDay.day == day))
            self.store.record(s, None, user, "calendar_day_removed", details={"day": day.isoformat()})
        self.reload()

    def confirm_year(self, year: int, note: str = "", *, user: str | None = None,
                     seed_from_package: bool = False) -> None:
        """Declare a year's holidays complete (entered as override days); with seed_from_package,
        copy the package's holidays and 调休 days of a year it covers into the override table."""
        with self.store.command() as s:
            if seed_from_package:
                for day, info in hospital_calendar.package_days(year).items():
                    if s.get(CalendarDay, day) is None:
                        s.add(CalendarDay(day=day, is_working=info.is_working, name=info.name))
            if s.get(CalendarYear, year) is None:
                s.add(CalendarYear(year=year, note=note))
            self.store.record(s, None, user, "calendar_year_confirmed", details={"year": year, "note": note})
        self.reload()
