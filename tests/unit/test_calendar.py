"""The hospital calendar: what a complaint handler, a dispatcher and an administrator would notice.

Expectations about statutory holidays are checked against the chinese_calendar package's own
data, never against a list typed from memory.
"""

from __future__ import annotations

import inspect
import logging
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

import engine.calendar as calendar_module
from engine.calendar import (
    DEFAULT_ROTAS,
    Calendar,
    CalendarConfig,
    CalendarNotConfirmedError,
    OverrideDay,
    Shift,
    WorkingHours,
    diagram_functions,
    package_coverage,
    package_days,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def cal() -> Calendar:
    return Calendar()


# A year an administrator has entered after the State Council published it. The dates are
# made up for the test (2027's real schedule is not published here); what matters is that the
# entered schedule, not the estimate, decides.
ADMIN_2027 = {
    date(2027, 1, 1): OverrideDay(False, "元旦"),
    **{date(2027, 2, 6) + timedelta(days=i): OverrideDay(False, "春节") for i in range(7)},
    date(2027, 2, 20): OverrideDay(True, "春节调休上班"),
}


# --------------------------------------------------------------------------- package coverage


def test_coverage_is_measured_from_the_package():
    first, last = package_coverage()
    assert (first, last) == Calendar().coverage()
    assert first <= 2004 and last >= 2026
    chinese_calendar.is_workday(date(last, 6, 1))
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(last + 1, 6, 1))
    assert Calendar().is_confirmed(last)
    assert not Calendar().is_confirmed(last + 1)


def test_every_covered_day_agrees_with_the_package(cal):
    first, last = package_coverage()
    day, end = date(first, 1, 1), date(last, 12, 31)
    disagreements = []
    while day <= end:
        if cal.is_working_day(day) != chinese_calendar.is_workday(day):
            disagreements.append(day)
        day += timedelta(days=1)
    assert disagreements == []


def test_the_2026_make_up_working_days_are_those_the_domain_lists(cal):
    weekend_working = [
        date(2026, 1, 1) + timedelta(days=i)
        for i in range(365)
        if (date(2026, 1, 1) + timedelta(days=i)).weekday() >= 5
        and cal.is_working_day(date(2026, 1, 1) + timedelta(days=i))
    ]
    assert weekend_working == [
        date(2026, 1, 4),
        date(2026, 2, 14),
        date(2026, 2, 28),
        date(2026, 5, 9),
        date(2026, 9, 20),
        date(2026, 10, 10),
    ]


# --------------------------------------------------------------------------- working-day deadlines


def test_domain_examples_5_and_10_working_days_from_2026_09_30(cal):
    received = local(2026, 9, 30, 10, 15)
    assert cal.add_working_days(received, 5) == local(2026, 10, 13, 17, 30)
    assert cal.add_working_days(received, 10) == local(2026, 10, 20, 17, 30)
    deadline = cal.deadline_working_days(received, 5)
    assert deadline.at == local(2026, 10, 13, 17, 30)
    assert deadline.confirmed and deadline.unconfirmed_years == ()


def test_national_day_2026_skips_the_holiday_and_counts_the_make_up_days(cal):
    for day in (date(2026, 9, 20), date(2026, 10, 10)):
        assert day.weekday() >= 5 and chinese_calendar.is_workday(day)
        assert cal.is_working_day(day)
    for offset in range(7):
        day = date(2026, 10, 1) + timedelta(days=offset)
        assert not chinese_calendar.is_workday(day)
        assert not cal.is_working_day(day)
    # Received on Saturday 19 September: the make-up Sunday the 20th is working day 1.
    assert cal.add_working_days(local(2026, 9, 19, 11, 0), 1) == local(2026, 9, 20, 17, 30)
    # Received during the holiday: the first working day after it is day 1.
    assert cal.add_working_days(local(2026, 10, 3, 9, 0), 1) == local(2026, 10, 8, 17, 30)
    assert cal.add_working_days(local(2026, 10, 3, 9, 0), 3) == local(2026, 10, 10, 17, 30)
    assert cal.working_days_between(date(2026, 9, 30), date(2026, 10, 13)) == 5


def test_spring_festival_2026_against_the_package(cal):
    festival = [date(2026, 2, 15) + timedelta(days=i) for i in range(9)]  # Feb 15-23
    assert [chinese_calendar.is_workday(d) for d in festival] == [False] * 9
    assert [cal.is_working_day(d) for d in festival] == [False] * 9
    for saturday in (date(2026, 2, 14), date(2026, 2, 28)):
        assert saturday.weekday() == 5 and chinese_calendar.is_workday(saturday)
        assert cal.is_working_day(saturday)
    friday = local(2026, 2, 13, 9, 0)
    assert cal.add_working_days(friday, 1) == local(2026, 2, 14, 17, 30)
    assert cal.add_working_days(friday, 2) == local(2026, 2, 24, 17, 30)
    assert cal.add_working_days(friday, 6) == local(2026, 2, 28, 17, 30)
    # Received on the make-up Saturday itself: the festival follows, so day 1 is the 24th.
    assert cal.add_working_days(local(2026, 2, 14, 10, 0), 1) == local(2026, 2, 24, 17, 30)
    assert cal.working_days_between(date(2026, 2, 13), date(2026, 2, 28)) == 6
    assert cal.describe_day(date(2026, 2, 14)).name == "春节调休上班"
    assert cal.describe_day(date(2026, 2, 17)).name == "春节"


def test_receipt_after_hours_or_on_a_day_off_counts_from_the_next_working_day(cal):
    # Same deadline whether received in the morning, after hours or just before midnight.
    for hour, minute in ((8, 0), (18, 45), (23, 59)):
        assert cal.add_working_days(local(2026, 9, 29, hour, minute), 1) == local(2026, 9, 30, 17, 30)
    # Received on Sunday: Monday is day 1.
    assert cal.add_working_days(local(2026, 6, 7, 10, 0), 1) == local(2026, 6, 8, 17, 30)
    # The local date decides, not the UTC one (00:30 in Shanghai is still the 29th in UTC).
    assert cal.add_working_days(local(2026, 9, 30, 0, 30), 1) == local(2026, 10, 8, 17, 30)


def test_zero_working_days_means_by_the_end_of_the_current_working_day(cal):
    assert cal.add_working_days(local(2026, 9, 29, 10, 0), 0) == local(2026, 9, 29, 17, 30)
    assert cal.add_working_days(local(2026, 9, 29, 18, 0), 0) == local(2026, 9, 30, 17, 30)
    assert cal.add_working_days(local(2026, 10, 1, 10, 0), 0) == local(2026, 10, 8, 17, 30)


def test_working_days_between_counts_after_the_first_day(cal):
    received = local(2026, 12, 1, 9, 0)
    for n in (1, 5, 10, 22):
        assert cal.working_days_between(received, cal.add_working_days(received, n)) == n
    assert cal.working_days_between(date(2026, 10, 13), date(2026, 9, 30)) == -5
    assert cal.working_days_between(date(2026, 9, 30), local(2026, 9, 30, 23, 0)) == 0


def test_negative_or_fractional_days_are_refused(cal):
    with pytest.raises(ValueError, match="negative"):
        cal.add_working_days(local(2026, 9, 30, 10, 0), -1)
    with pytest.raises(ValueError, match="whole number"):
        cal.add_working_days(local(2026, 9, 30, 10, 0), 1.5)


# --------------------------------------------------------------------------- overrides


def test_a_local_closure_moves_the_deadline():
    plain = Calendar()
    closed = Calendar(CalendarConfig(overrides={date(2026, 7, 15): OverrideDay(False, "台风停工")}))
    received = local(2026, 7, 14, 10, 0)
    assert plain.add_working_days(received, 1) == local(2026, 7, 15, 17, 30)
    assert closed.add_working_days(received, 1) == local(2026, 7, 16, 17, 30)
    assert not closed.is_working_day(date(2026, 7, 15))
    info = closed.describe_day(date(2026, 7, 15))
    assert (info.is_working, info.name, info.source) == (False, "台风停工", "override")


def test_an_override_can_make_a_package_holiday_a_working_day():
    opened = Calendar(CalendarConfig(overrides={date(2026, 10, 2): OverrideDay(True, "院内工作日")}))
    assert opened.add_working_days(local(2026, 9, 30, 10, 0), 1) == local(2026, 10, 2, 17, 30)


def test_unconfirmed_2027_is_estimated_and_reported():
    reports: list[tuple[str, tuple[int, ...]]] = []
    cal = Calendar(on_unconfirmed=lambda operation, years: reports.append((operation, years)))
    received = local(2026, 12, 28, 10, 0)  # Monday
    # Within 2026 nothing is estimated.
    inside = cal.deadline_working_days(received, 3)
    assert inside.at == local(2026, 12, 31, 17, 30) and inside.confirmed
    assert reports == []
    # Reaching into 2027: New Year's Day (a Friday) is estimated as a holiday, and flagged.
    deadline = cal.deadline_working_days(received, 5)
    assert deadline.at == local(2027, 1, 5, 17, 30)
    assert deadline.confirmed is False
    assert deadline.unconfirmed_years == (2027,)
    assert reports == [("deadline_working_days", (2027,))]
    # The plain function returns the bare datetime but still reports.
    assert cal.add_working_days(received, 5) == deadline.at
    assert reports[-1] == ("add_working_days", (2027,))
    assert not cal.is_confirmed(2027)
    assert cal.describe_day(date(2027, 1, 1)).source == "estimate"


def test_estimates_are_logged_once_per_year_and_seen_by_a_watch(caplog):
    cal = Calendar()
    with caplog.at_level(logging.WARNING, logger="engine.calendar"), cal.watch_estimates() as watch:
        cal.add_working_days(local(2026, 12, 30, 10, 0), 5)
        cal.add_working_hours(local(2026, 12, 31, 17, 0), 3)
    assert watch.years == {2027} and not watch.confirmed
    assert len([r for r in caplog.records if "2027" in r.getMessage()]) == 1
    with cal.watch_estimates() as quiet:
        cal.add_working_days(local(2026, 9, 30, 10, 0), 5)
    assert quiet.confirmed


def test_strict_mode_refuses_to_estimate_naming_the_year():
    strict = Calendar(CalendarConfig(strict=True))
    assert strict.add_working_days(local(2026, 12, 28, 10, 0), 3) == local(2026, 12, 31, 17, 30)
    with pytest.raises(CalendarNotConfirmedError, match="2027") as raised:
        strict.deadline_working_days(local(2026, 12, 28, 10, 0), 5)
    assert raised.value.year == 2027
    with pytest.raises(CalendarNotConfirmedError):
        strict.is_working_day(date(2027, 3, 1))
    with pytest.raises(CalendarNotConfirmedError):
        strict.add_working_hours(local(2026, 12, 31, 17, 0), 1)


def test_a_year_confirmed_by_an_administrator_uses_the_entered_schedule_only():
    cal = Calendar(CalendarConfig(overrides=ADMIN_2027, confirmed_years=frozenset({2027}), strict=True))
    assert cal.is_confirmed(2027)
    deadline = cal.deadline_working_days(local(2026, 12, 28, 10, 0), 5)
    assert deadline == calendar_module.Deadline(local(2027, 1, 5, 17, 30), True, ())
    # The holidays package estimates 2027-02-05 (除夕) as a day off; the entered schedule does not.
    assert Calendar().is_working_day(date(2027, 2, 5)) is False
    assert cal.is_working_day(date(2027, 2, 5)) is True
    assert not cal.is_working_day(date(2027, 2, 8))
    # The entered make-up Saturday counts.
    assert cal.add_working_days(local(2027, 2, 19, 10, 0), 1) == local(2027, 2, 20, 17, 30)
    assert cal.describe_day(date(2027, 3, 3)).source == "plain_week"


def test_package_days_give_the_form_of_an_administrators_year():
    days = package_days(2026)
    assert days[date(2026, 2, 14)] == OverrideDay(True, "春节调休上班")
    assert days[date(2026, 10, 1)] == OverrideDay(False, "国庆节")
    assert date(2026, 3, 3) not in days
    with pytest.raises(CalendarNotConfirmedError):
        package_days(package_coverage()[1] + 1)


# --------------------------------------------------------------------------- working hours


def test_two_working_hours_from_friday_afternoon_end_on_monday_morning(cal):
    assert cal.add_working_hours(local(2026, 6, 5, 16, 30), 2) == local(2026, 6, 8, 9, 0)
    # One hour fits exactly: the end of hours is the deadline, not Monday 08:00.
    assert cal.add_working_hours(local(2026, 6, 5, 16, 30), 1) == local(2026, 6, 5, 17, 30)
    # Before National Day the make-up Sunday is working time.
    assert cal.add_working_hours(local(2026, 9, 18, 16, 30), 2) == local(2026, 9, 20, 9, 0)


def test_the_end_of_working_hours_is_not_working_time(cal):
    friday_close = local(2026, 6, 5, 17, 30)
    assert cal.is_working_time(friday_close - timedelta(seconds=1))
    assert not cal.is_working_time(friday_close)
    assert cal.next_working_time(friday_close) == local(2026, 6, 8, 8, 0)
    assert cal.add_working_hours(friday_close, 2) == local(2026, 6, 8, 10, 0)


def test_before_working_hours(cal):
    monday_early = local(2026, 6, 8, 7, 0)
    assert not cal.is_working_time(monday_early)
    assert cal.is_working_time(local(2026, 6, 8, 8, 0))
    assert cal.next_working_time(monday_early) == local(2026, 6, 8, 8, 0)
    assert cal.add_working_hours(monday_early, 2) == local(2026, 6, 8, 10, 0)
    assert cal.next_working_time(local(2026, 6, 8, 9, 15)) == local(2026, 6, 8, 9, 15)


def test_working_hours_from_a_holiday_start_on_the_first_working_day(cal):
    assert not cal.is_working_time(local(2026, 10, 1, 10, 0))
    assert cal.next_working_time(local(2026, 10, 1, 10, 0)) == local(2026, 10, 8, 8, 0)
    assert cal.add_working_hours(local(2026, 10, 1, 10, 0), 2) == local(2026, 10, 8, 10, 0)
    assert cal.add_working_hours(local(2026, 10, 1, 10, 0), 1.5) == local(2026, 10, 8, 9, 30)


def test_several_days_of_working_hours(cal):
    # 9.5 working hours a day: 19 hours from Monday 08:00 end on Tuesday 17:30.
    assert cal.add_working_hours(local(2026, 6, 8, 8, 0), 19) == local(2026, 6, 9, 17, 30)
    assert cal.add_working_hours(local(2026, 6, 8, 8, 0), 19.5) == local(2026, 6, 10, 8, 30)
    assert cal.add_working_hours(local(2026, 6, 8, 8, 0), 0) == local(2026, 6, 8, 8, 0)
    with pytest.raises(ValueError, match="negative"):
        cal.add_working_hours(local(2026, 6, 8, 8, 0), -1)


def test_a_lunch_break_is_not_working_time():
    cal = Calendar(CalendarConfig(working_hours=WorkingHours(time(8), time(17, 30), time(12), time(13, 30))))
    assert not cal.is_working_time(local(2026, 6, 8, 12, 30))
    assert cal.next_working_time(local(2026, 6, 8, 12, 30)) == local(2026, 6, 8, 13, 30)
    assert cal.add_working_hours(local(2026, 6, 8, 11, 30), 1) == local(2026, 6, 8, 14, 0)
    assert cal.add_working_hours(local(2026, 6, 8, 11, 30), 0.5) == local(2026, 6, 8, 12, 0)


def test_configured_working_hours_move_the_deadline_time():
    cal = Calendar(CalendarConfig(working_hours=WorkingHours(time(8, 30), time(17))))
    assert cal.add_working_days(local(2026, 9, 30, 10, 0), 5) == local(2026, 10, 13, 17, 0)
    assert cal.next_working_time(local(2026, 6, 8, 8, 0)) == local(2026, 6, 8, 8, 30)


# --------------------------------------------------------------------------- time zones


def test_utc_input_is_read_in_hospital_time(cal):
    # 17:00 UTC on the 29th is 01:00 on the 30th in Shanghai: received on the 30th.
    assert cal.add_working_days(datetime(2026, 9, 29, 17, 0, tzinfo=UTC), 5) == local(2026, 10, 13, 17, 30)
    # 15:00 UTC on the 29th is 23:00 on the 29th in Shanghai: one day earlier.
    assert cal.add_working_days(datetime(2026, 9, 29, 15, 0, tzinfo=UTC), 5) == local(2026, 10, 12, 17, 30)
    assert cal.is_working_time(datetime(2026, 9, 30, 0, 30, tzinfo=UTC))  # 08:30 local
    assert not cal.is_working_time(datetime(2026, 9, 30, 9, 30, tzinfo=UTC))  # 17:30 local


def test_results_are_in_hospital_time_and_compare_with_utc(cal):
    deadline = cal.add_working_days(datetime(2026, 9, 30, 2, 0, tzinfo=UTC), 5)
    assert deadline.tzinfo == SHANGHAI
    assert deadline.utcoffset() == timedelta(hours=8)  # no daylight saving in China
    assert deadline == datetime(2026, 10, 13, 9, 30, tzinfo=UTC)
    assert deadline.isoformat() == "2026-10-13T17:30:00+08:00"


def test_naive_input_is_hospital_local(cal):
    assert cal.add_working_hours(datetime(2026, 6, 5, 16, 30), 2) == local(2026, 6, 8, 9, 0)
    assert cal.shift_at(datetime(2026, 6, 5, 23, 30)).code == "night"


def test_the_time_zone_is_configurable():
    urumqi = Calendar(CalendarConfig(timezone="Asia/Urumqi"))  # UTC+6
    received = datetime(2026, 9, 29, 17, 0, tzinfo=UTC)  # 23:00 on the 29th in Urumqi
    assert urumqi.add_working_days(received, 5) == datetime(
        2026, 10, 12, 17, 30, tzinfo=ZoneInfo("Asia/Urumqi")
    )


# --------------------------------------------------------------------------- shifts


@pytest.mark.parametrize(
    ("clock", "code", "shift_day"),
    [
        (time(7, 29), "night", date(2026, 10, 1)),
        (time(7, 30), "early", date(2026, 10, 2)),
        (time(15, 29), "early", date(2026, 10, 2)),
        (time(15, 30), "middle", date(2026, 10, 2)),
        (time(22, 59), "middle", date(2026, 10, 2)),
        (time(23, 0), "night", date(2026, 10, 2)),
        (time(3, 0), "night", date(2026, 10, 1)),
        (time(0, 0), "night", date(2026, 10, 1)),
    ],
)
def test_shift_boundaries(cal, clock, code, shift_day):
    moment = datetime.combine(date(2026, 10, 2), clock, tzinfo=SHANGHAI)
    assert cal.shift_at(moment).code == code
    assert cal.shift_date(moment) == shift_day


def test_the_night_shift_period_spans_midnight(cal):
    period = cal.shift_period_at(local(2026, 10, 2, 3, 0))
    assert period.shift.name_zh == "夜班"
    assert period.shift_date == date(2026, 10, 1)
    assert (period.starts_at, period.ends_at) == (local(2026, 10, 1, 23, 0), local(2026, 10, 2, 7, 30))
    assert cal.shift_at(datetime(2026, 10, 1, 15, 0, tzinfo=UTC)).code == "night"  # 23:00 local


def test_dispatcher_rota_has_nobody_outside_its_shifts(cal):
    def at(hour: int, minute: int) -> datetime:
        return local(2026, 6, 8, hour, minute)

    assert cal.shift_at(at(7, 29), "dispatcher") is None
    assert cal.shift_at(at(7, 30), "dispatcher").code == "early"
    assert cal.shift_at(at(14, 30), "dispatcher").code == "late"
    assert cal.shift_at(at(21, 29), "dispatcher").code == "late"
    assert cal.shift_at(at(21, 30), "dispatcher") is None
    assert cal.on_duty_group(at(22, 0), "dispatcher") is None
    assert cal.on_duty_group(at(9, 0), "dispatcher") == "dispatch_early"


def test_on_duty_group_follows_the_configured_mapping():
    cal = Calendar(
        CalendarConfig(
            duty_groups={"escort": {"early": "escort_day", "middle": "escort_day", "night": "escort_night"}}
        )
    )
    assert cal.on_duty_group(local(2026, 10, 2, 3, 0)) == "emergency_night"
    assert cal.on_duty_group(local(2026, 10, 2, 3, 0), "escort") == "escort_night"
    assert cal.on_duty_group(local(2026, 10, 1, 16, 0), "escort") == "escort_day"  # holidays are staffed
    with pytest.raises(ValueError, match="unknown duty role 'porter'"):
        cal.on_duty_group(local(2026, 10, 2, 3, 0), "porter")


# --------------------------------------------------------------------------- configuration


def test_configured_rotas_duty_groups_and_overrides():
    config = CalendarConfig(
        strict=True,
        confirmed_years=frozenset({2027}),
        working_hours=WorkingHours(time(8), time(17), time(12), time(13)),
        rotas={
            **DEFAULT_ROTAS,
            "dispatcher": (
                Shift("day", "白班", "Day", time(8), time(20), "dispatch_day"),
                Shift("night", "夜班", "Night", time(20), time(8)),
            ),
        },
        duty_groups={"dispatcher": {"night": "dispatch_night"}},
        overrides={
            date(2027, 1, 1): OverrideDay(False, "元旦"),
            date(2026, 7, 15): OverrideDay(False, "台风停工"),
        },
    )
    assert config.working_hours.intervals == ((time(8), time(12)), (time(13), time(17)))
    assert [s.code for s in config.rotas["default"]] == ["early", "middle", "night"]
    cal = Calendar(config)
    assert cal.on_duty_group(local(2026, 6, 8, 21, 0), "dispatcher") == "dispatch_night"
    assert cal.on_duty_group(local(2026, 6, 8, 9, 0), "dispatcher") == "dispatch_day"
    assert cal.add_working_days(local(2026, 7, 14, 10, 0), 1) == local(2026, 7, 16, 17, 0)
    assert cal.deadline_working_days(local(2026, 12, 31, 10, 0), 1).at == local(2027, 1, 4, 17, 0)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: WorkingHours(time(18), time(17, 30)),
            "calendar.working_hours: start 18:00 must be before end 17:30",
        ),
        (
            lambda: WorkingHours(lunch_start=time(12)),
            "calendar.working_hours: give both lunch_start and lunch_end",
        ),
        (lambda: WorkingHours(lunch_start=time(7), lunch_end=time(9)), "must lie inside 08:00-17:30"),
        (
            lambda: CalendarConfig(timezone="Asia/Beijing"),
            "calendar.timezone: 'Asia/Beijing' is not a known IANA time zone",
        ),
        (lambda: CalendarConfig(strict="maybe"), "calendar.strict: 'maybe' is not true or false"),
        (
            lambda: CalendarConfig(confirmed_years=frozenset({"twenty"})),
            "calendar.confirmed_years: 'twenty' is not a year",
        ),
        (
            lambda: CalendarConfig(overrides={"2027-02-01": OverrideDay(False, "")}),
            "calendar.overrides: key '2027-02-01' is not a date",
        ),
        (
            lambda: CalendarConfig(
                rotas={
                    "default": (
                        Shift("a", "甲", "A", time(7), time(16)),
                        Shift("b", "乙", "B", time(15), time(7)),
                    )
                }
            ),
            "calendar.rotas.default: shifts 'a' and 'b' overlap",
        ),
        (
            lambda: CalendarConfig(duty_groups={"dispatcher": {"middle": "d"}}),
            "calendar.duty_groups.dispatcher.middle: no shift 'middle'",
        ),
    ],
)
def test_bad_settings_are_named(build, message):
    with pytest.raises(ValueError) as raised:
        build()
    assert message in str(raised.value)


def test_a_rota_without_default_is_refused():
    with pytest.raises(ValueError, match="'default' rota is required"):
        CalendarConfig(rotas={"dispatcher": (Shift("x", "甲", "X", time(8), time(9)),)})


# --------------------------------------------------------------------------- diagram functions


@pytest.fixture
def functions(cal):
    clock = {"now": datetime(2026, 10, 1, 19, 0, tzinfo=UTC)}  # 03:00 on 10-02 in Shanghai
    table = diagram_functions(cal, lambda: clock["now"])
    table["_clock"] = clock  # type: ignore[assignment]
    return table


def test_diagram_working_day_functions_accept_iso_text(functions):
    add = functions["addWorkingDays"]
    expected = local(2026, 10, 13, 17, 30)
    assert add("2026-09-30", 5) == expected
    assert add("2026-09-30T02:00:00Z", 5) == expected
    assert add("2026-09-30T10:00:00.000+0800", 5) == expected
    assert add("2026-09-30T10:00:00@Asia/Shanghai", Decimal(5)) == expected
    assert add(date(2026, 9, 30), 5.0) == expected
    assert functions["isWorkingDay"]("2026-10-10") is True
    assert functions["isWorkingDay"]("2026-10-09T20:00:00Z") is True  # 04:00 on the 10th locally
    assert functions["isWorkingTime"]("2026-10-08T08:00:00+08:00") is True
    assert functions["nextWorkingTime"]("2026-10-01T10:00:00+08:00") == local(2026, 10, 8, 8, 0)
    assert functions["addWorkingHours"]("2026-06-05T16:30:00", 2) == local(2026, 6, 8, 9, 0)
    assert functions["workingDaysBetween"]("2026-09-30", "2026-10-20") == 10


def test_diagram_shift_functions_use_the_injected_clock(functions):
    assert functions["currentShift"]() == "night"
    assert functions["onDutyGroup"]() == "emergency_night"
    assert functions["onDutyGroup"]("dispatcher") is None
    assert functions["now"]() == local(2026, 10, 2, 3, 0)
    functions["_clock"]["now"] = datetime(2026, 10, 2, 1, 0, tzinfo=UTC)  # 09:00 local
    assert functions["currentShift"]() == "early"
    assert functions["currentShift"]("dispatcher") == "early"
    assert functions["onDutyGroup"]("dispatcher") == "dispatch_early"
    assert functions["shiftAt"]("2026-10-02T15:30:00+08:00") == "middle"
    assert functions["shiftAt"]("2026-10-02T22:00:00+08:00", "dispatcher") is None


def test_diagram_clock_arithmetic_ignores_working_hours(functions):
    assert functions["addHours"]("2026-09-30T16:30:00+08:00", 2) == local(2026, 9, 30, 18, 30)
    assert functions["addHours"]("2026-09-30T16:30:00+08:00", 0.5) == local(2026, 9, 30, 17, 0)
    assert functions["addMinutes"]("2026-09-30T23:50:00+08:00", 30) == local(2026, 10, 1, 0, 20)
    assert functions["addDays"]("2026-09-30", 1) == local(2026, 10, 1, 0, 0)
    assert functions["addDays"]("2026-09-30T02:00:00Z", -2) == local(2026, 9, 28, 10, 0)
    assert functions["addHours"](datetime(2026, 9, 30, 2, 0, tzinfo=UTC), 1).tzinfo == SHANGHAI


def test_diagram_function_errors_name_the_function(functions):
    with pytest.raises(ValueError, match=r"addWorkingDays\(\): .*'next tuesday'"):
        functions["addWorkingDays"]("next tuesday", 5)
    with pytest.raises(ValueError, match=r"addWorkingDays\(\): n: 2.5 is not a whole number"):
        functions["addWorkingDays"]("2026-09-30", 2.5)
    with pytest.raises(ValueError, match=r"addHours\(\): h: 'two' is not a number"):
        functions["addHours"]("2026-09-30", "two")
    with pytest.raises(ValueError, match=r"shiftAt\(\): unknown rota 'porters'"):
        functions["shiftAt"]("2026-09-30T10:00:00", "porters")


def test_diagram_functions_in_strict_mode_name_the_unconfirmed_year():
    strict = diagram_functions(
        Calendar(CalendarConfig(strict=True)), lambda: datetime(2026, 12, 1, tzinfo=UTC)
    )
    with pytest.raises(CalendarNotConfirmedError, match="2027"):
        strict["addWorkingDays"]("2026-12-28", 5)


def test_the_module_never_reads_the_wall_clock():
    source = inspect.getsource(calendar_module)
    assert "datetime.now" not in source and "date.today" not in source and "time.time" not in source
