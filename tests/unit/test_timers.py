"""Timer definitions as Camunda Modeler writes them (engine.dialect.timers): the due times a nurse expects."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.dialect import timers
from engine.dialect.timers import (
    CronSchedule,
    CycleSchedule,
    DateSchedule,
    DurationSchedule,
    TimerExpressionError,
    TimerSchedule,
    parse_iso_duration,
    parse_timer,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def sh(*args: int) -> datetime:
    """A wall time in Shanghai (UTC+8 all year, no DST)."""
    return datetime(*args, tzinfo=SHANGHAI)


# Saturday 2026-01-31 09:00 in Shanghai
NOW = sh(2026, 1, 31, 9, 0)


def timer(kind: str, value, tz=SHANGHAI) -> TimerSchedule:
    return parse_timer(kind, value, tz)


def firings(schedule: TimerSchedule, now: datetime, limit: int = 10) -> list[datetime]:
    """Every due time the engine would fire, in order (at most ``limit``)."""
    due = schedule.first_due(now)
    result = [due]
    while len(result) < limit:
        due = schedule.next_due(due, len(result))
        if due is None:
            break
        result.append(due)
    return result


def assert_utc(moment: datetime) -> None:
    assert moment.tzinfo is UTC or moment.utcoffset() == timedelta(0)


# --------------------------------------------------------------------------- timeDate


class TestTimeDate:
    def test_without_offset_is_hospital_time(self):
        schedule = timer("timeDate", "2026-12-01T09:00:00")
        due = schedule.first_due(NOW)
        assert due == sh(2026, 12, 1, 9, 0)
        assert due == datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
        assert_utc(due)
        assert isinstance(schedule, DateSchedule)

    def test_with_offset_and_zulu(self):
        assert timer("timeDate", "2026-12-01T09:00:00+08:00").first_due(NOW) == sh(2026, 12, 1, 9, 0)
        assert timer("timeDate", "2026-12-01T09:00:00Z").first_due(NOW) == sh(2026, 12, 1, 17, 0)
        assert timer("timeDate", "2026-12-01T09:00-05:00").first_due(NOW) == sh(2026, 12, 1, 22, 0)
        assert timer("timeDate", "2026-12-01T09:00:00+0800").first_due(NOW) == sh(2026, 12, 1, 9, 0)

    def test_minutes_only_and_fractional_seconds(self):
        assert timer("timeDate", "2026-12-01T09:30").first_due(NOW) == sh(2026, 12, 1, 9, 30)
        due = timer("timeDate", "2026-12-01T09:00:00.250Z").first_due(NOW)
        assert due == datetime(2026, 12, 1, 9, 0, 0, 250000, tzinfo=UTC)

    def test_date_only_is_midnight_in_the_hospital(self):
        assert timer("timeDate", "2026-12-01").first_due(NOW) == sh(2026, 12, 1, 0, 0)
        assert timer("timeDate", date(2026, 12, 1)).first_due(NOW) == sh(2026, 12, 1, 0, 0)

    def test_datetime_values_from_expressions(self):
        assert timer("timeDate", datetime(2026, 12, 1, 9, 0)).first_due(NOW) == sh(2026, 12, 1, 9, 0)
        aware = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        assert timer("timeDate", aware).first_due(NOW) == aware

    def test_fires_once(self):
        schedule = timer("timeDate", "2026-12-01T09:00:00")
        assert schedule.repetitions == 1
        assert firings(schedule, NOW) == [sh(2026, 12, 1, 9, 0)]

    def test_past_date_stays_in_the_past_so_it_fires_at_once(self):
        assert timer("timeDate", "2025-01-01T09:00").first_due(NOW) == sh(2025, 1, 1, 9, 0)

    @pytest.mark.parametrize(("value", "message"), [
        ("2026-13-01T09:00", "month 13 is out of range 01-12"),
        ("2026-02-29", "day 29 does not exist in 2026-02"),
        ("2026-12-01 09:00", "expected 'T' between the date and the time at position 10, found ' '"),
        ("2026-12-01T25:00", "hour 25 is out of range 00-23"),
        ("2026-12-01T09:61", "minute 61 is out of range"),
        ("2026-12-01T09:00:00+8", "expected the offset hours (2 digits) at position 20, found '8'"),
        ("2026-12-01T09:00:00 UTC", "unexpected ' ' at position 19"),
        ("26-12-01", "expected the year (4 digits) at position 0"),
        ("2026/12/01", "expected '-' after the year at position 4, found '/'"),
        ("tomorrow", "expected the year"),
        # forms Python's datetime.fromisoformat would take, refused as before
        ("2026-12-01T09:00:00+08:60", "offset '08:60' is out of range"),
        ("20261201", "expected '-' after the year at position 4, found '1'"),
        ("2026-12-01T09", "expected ':' after the hour at position 13, found the end"),
        ("2026-W01-1", "expected the month (2 digits) at position 5"),
    ])
    def test_errors_name_what_is_wrong(self, value, message):
        with pytest.raises(TimerExpressionError) as info:
            timer("timeDate", value)
        assert f"invalid ISO 8601 date-time {value!r}" in str(info.value)
        assert message in str(info.value)

    def test_wrong_value_type(self):
        with pytest.raises(TimerExpressionError, match="timeDate needs an ISO 8601 date-time"):
            timer("timeDate", timedelta(hours=1))


# --------------------------------------------------------------------------- timeDuration


class TestTimeDuration:
    @pytest.mark.parametrize(("value", "expected"), [
        ("PT30M", sh(2026, 1, 31, 9, 30)),
        ("P5D", sh(2026, 2, 5, 9, 0)),
        ("P1DT2H", sh(2026, 2, 1, 11, 0)),
        ("P1W", sh(2026, 2, 7, 9, 0)),
        ("P1Y2M", sh(2027, 3, 31, 9, 0)),
        ("PT36H", sh(2026, 2, 1, 21, 0)),
        ("PT90M", sh(2026, 1, 31, 10, 30)),
        ("PT1.5H", sh(2026, 1, 31, 10, 30)),
        ("PT0.5S", sh(2026, 1, 31, 9, 0) + timedelta(milliseconds=500)),
        ("PT1,25S", sh(2026, 1, 31, 9, 0) + timedelta(milliseconds=1250)),
        ("P1W2D", sh(2026, 2, 9, 9, 0)),
        ("PT0S", sh(2026, 1, 31, 9, 0)),
    ])
    def test_due_after_the_duration(self, value, expected):
        schedule = timer("timeDuration", value)
        due = schedule.first_due(NOW)
        assert due == expected
        assert_utc(due)
        assert schedule.next_due(due, 1) is None
        assert schedule.repetitions == 1

    def test_one_month_from_january_31_is_the_end_of_february(self):
        assert timer("timeDuration", "P1M").first_due(sh(2026, 1, 31, 9, 0)) == sh(2026, 2, 28, 9, 0)
        assert timer("timeDuration", "P1M").first_due(sh(2028, 1, 31, 9, 0)) == sh(2028, 2, 29, 9, 0)
        assert timer("timeDuration", "P3M").first_due(sh(2026, 1, 31, 9, 0)) == sh(2026, 4, 30, 9, 0)

    def test_calendar_months_count_on_the_hospital_calendar(self):
        # 20:00 UTC on Jan 31 is 04:00 on Feb 1 in Shanghai: one month later is Mar 1 04:00 there
        late = datetime(2026, 1, 31, 20, 0, tzinfo=UTC)
        assert timer("timeDuration", "P1M").first_due(late) == sh(2026, 3, 1, 4, 0)
        # seen from UTC it would have been Feb 28 — the zone matters
        assert timer("timeDuration", "P1M", tz=UTC).first_due(late) == datetime(2026, 2, 28, 20, 0, tzinfo=UTC)

    def test_timedelta_is_accepted_and_persisted_exactly(self):
        schedule = timer("timeDuration", timedelta(hours=1, minutes=30))
        assert schedule.first_due(NOW) == sh(2026, 1, 31, 10, 30)
        assert schedule.value == "PT5400S"

    @pytest.mark.parametrize(("value", "message"), [
        ("PT30X", "invalid ISO 8601 duration 'PT30X': unexpected 'X' at position 4"),
        ("P1H", "'H' at position 2 needs a 'T' before the time part"),
        ("PT1D", "'D' at position 3 belongs before the 'T'"),
        ("P", "no duration components after 'P'"),
        ("PT", "no duration components after 'P'"),
        ("P1DT", "'T' at position 3 must be followed by hours, minutes or seconds"),
        ("30M", "expected 'P' at position 0, found '3'"),
        ("-P1D", "negative durations are not supported"),
        ("P1.5D", "a fraction is only allowed in hours, minutes or seconds"),
        ("PT1.5H30M", "only the last component may have a fraction"),
        ("P1M1Y", "'Y' at position 4 is repeated or out of order"),
        ("PT5M5M", "'M' at position 5 is repeated or out of order"),
        ("PT5", "number '5' at position 2 has no unit"),
        ("P1DT2HT3M", "unexpected second 'T' at position 6"),
        ("P300Y", "longer than 200 years"),
    ])
    def test_errors_name_what_is_wrong(self, value, message):
        with pytest.raises(TimerExpressionError) as info:
            timer("timeDuration", value)
        assert message in str(info.value)

    def test_negative_timedelta_and_wrong_type(self):
        with pytest.raises(TimerExpressionError, match="negative duration"):
            timer("timeDuration", timedelta(minutes=-5))
        with pytest.raises(TimerExpressionError, match="timeDuration needs an ISO 8601 duration"):
            timer("timeDuration", datetime(2026, 1, 1))

    def test_iso_round_trip(self):
        for text in ("P1Y2M3W4DT5H6M7.5S", "PT30M", "P1D", "PT0S"):
            assert parse_iso_duration(text).to_iso() == text


# --------------------------------------------------------------------------- timeCycle, ISO 8601


class TestIsoCycles:
    def test_three_repetitions_every_ten_minutes(self):
        schedule = timer("timeCycle", "R3/PT10M")
        assert isinstance(schedule, CycleSchedule)
        assert schedule.repetitions == 3
        assert firings(schedule, NOW) == [sh(2026, 1, 31, 9, 10), sh(2026, 1, 31, 9, 20), sh(2026, 1, 31, 9, 30)]

    def test_exhausted_after_the_last_repetition(self):
        schedule = timer("timeCycle", "R3/PT10M")
        assert schedule.next_due(sh(2026, 1, 31, 9, 20), 2) == sh(2026, 1, 31, 9, 30)
        assert schedule.next_due(sh(2026, 1, 31, 9, 30), 3) is None

    def test_unbounded_cycle_never_ends(self):
        schedule = timer("timeCycle", "R/P1D")
        assert schedule.repetitions is None
        assert firings(schedule, NOW, 3) == [sh(2026, 2, 1, 9, 0), sh(2026, 2, 2, 9, 0), sh(2026, 2, 3, 9, 0)]
        assert schedule.next_due(sh(2030, 1, 1, 9, 0), 100_000) == sh(2030, 1, 2, 9, 0)

    def test_start_and_duration(self):
        schedule = timer("timeCycle", "R5/2026-12-01T09:00:00+08:00/PT1H")
        assert firings(schedule, NOW) == [sh(2026, 12, 1, h, 0) for h in range(9, 14)]

    def test_start_without_offset_is_hospital_time(self):
        schedule = timer("timeCycle", "R2/2026-12-01T09:00/PT30M")
        assert firings(schedule, NOW) == [sh(2026, 12, 1, 9, 0), sh(2026, 12, 1, 9, 30)]

    def test_started_cycle_skips_past_firings(self):
        # daily at 09:00 since Jan 1; reached on Jan 31 at 09:00 → next is Feb 1 09:00
        schedule = timer("timeCycle", "R/2026-01-01T09:00/P1D")
        assert firings(schedule, NOW, 2) == [sh(2026, 2, 1, 9, 0), sh(2026, 2, 2, 9, 0)]
        # reached at 08:59 the same morning's firing is still ahead
        assert schedule.first_due(sh(2026, 1, 31, 8, 59)) == sh(2026, 1, 31, 9, 0)

    def test_bounded_started_cycle_counts_skipped_firings(self):
        # 5 hourly firings from 09:00; reached at 11:30 → only 12:00 and 13:00 remain
        schedule = timer("timeCycle", "R5/2026-12-01T09:00/PT1H")
        assert firings(schedule, sh(2026, 12, 1, 11, 30)) == [sh(2026, 12, 1, 12, 0), sh(2026, 12, 1, 13, 0)]

    def test_monthly_from_the_31st_does_not_drift(self):
        schedule = timer("timeCycle", "R4/2026-01-31T09:00/P1M")
        assert firings(schedule, sh(2026, 1, 1)) == [
            sh(2026, 1, 31, 9, 0), sh(2026, 2, 28, 9, 0), sh(2026, 3, 31, 9, 0), sh(2026, 4, 30, 9, 0)]

    def test_finished_cycle_fires_once_late(self):
        schedule = timer("timeCycle", "R2/2025-06-01T09:00/PT1H")
        assert firings(schedule, NOW) == [sh(2025, 6, 1, 10, 0)]

    def test_duration_and_end(self):
        schedule = timer("timeCycle", "R2/PT1H/2026-12-01T10:00:00Z")
        assert firings(schedule, NOW) == [datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
                                          datetime(2026, 12, 1, 10, 0, tzinfo=UTC)]

    def test_unbounded_until_an_end(self):
        schedule = timer("timeCycle", "R/PT1H/2026-01-31T12:00")
        assert firings(schedule, NOW) == [sh(2026, 1, 31, 10, 0), sh(2026, 1, 31, 11, 0), sh(2026, 1, 31, 12, 0)]

    def test_start_and_end(self):
        schedule = timer("timeCycle", "R3/2026-12-01T09:00/2026-12-01T09:45")
        assert firings(schedule, NOW) == [sh(2026, 12, 1, 9, 0), sh(2026, 12, 1, 9, 45), sh(2026, 12, 1, 10, 30)]

    def test_far_past_start_with_short_interval_is_fast(self):
        schedule = timer("timeCycle", "R/2000-01-01T00:00Z/PT1S")
        assert schedule.first_due(NOW) == NOW + timedelta(seconds=1)

    @pytest.mark.parametrize(("value", "message"), [
        ("PT10M", "a cycle needs a repetition count: write 'R/PT10M'"),
        ("R0/PT10M", "the repetition count must be at least 1"),
        ("Rx/PT10M", "repetition count 'Rx'"),
        ("R3/PT0S", "the interval 'PT0S' must be longer than zero"),
        ("R3/2026-01-01", "'2026-01-01' is not a duration"),
        ("R3/PT1H/PT2H", "not two durations"),
        ("R3/2026-12-01T10:00/2026-12-01T09:00", "must be after the start"),
        ("R3/PT10X", "invalid ISO 8601 duration 'PT10X': unexpected 'X' at position 4"),
        ("R3/2026-13-01T09:00/PT1H", "month 13 is out of range"),
        ("R3/a/b/c", "expected 'R<n>/<duration>'"),
        ("every day", "expected an ISO 8601 repeating interval"),
    ])
    def test_errors_name_what_is_wrong(self, value, message):
        with pytest.raises(TimerExpressionError) as info:
            timer("timeCycle", value)
        assert message in str(info.value)


# --------------------------------------------------------------------------- timeCycle, Quartz cron


def cron_firings(expression: str, now: datetime, count: int = 4) -> list[datetime]:
    return firings(timer("timeCycle", expression), now, count)


class TestCron:
    def test_every_day_at_nine_shanghai_time(self):
        schedule = timer("timeCycle", "0 0 9 * * ?")
        assert isinstance(schedule, CronSchedule)
        assert schedule.repetitions is None
        # reached at 08:00 → today 09:00 (01:00 UTC)
        due = schedule.first_due(sh(2026, 1, 31, 8, 0))
        assert due == sh(2026, 1, 31, 9, 0) == datetime(2026, 1, 31, 1, 0, tzinfo=UTC)
        assert_utc(due)

    def test_next_is_strictly_after_now(self):
        schedule = timer("timeCycle", "0 0 9 * * ?")
        assert schedule.first_due(sh(2026, 1, 31, 9, 0)) == sh(2026, 2, 1, 9, 0)
        assert schedule.first_due(sh(2026, 1, 31, 8, 59, 59) + timedelta(microseconds=500_000)) \
            == sh(2026, 1, 31, 9, 0)
        assert schedule.next_due(sh(2026, 2, 1, 9, 0), 1) == sh(2026, 2, 2, 9, 0)

    def test_weekdays_skip_the_weekend(self):
        # Saturday Jan 31 → Monday Feb 2 onwards
        assert cron_firings("0 30 8 ? * MON-FRI", NOW, 6) == [
            sh(2026, 2, 2, 8, 30), sh(2026, 2, 3, 8, 30), sh(2026, 2, 4, 8, 30),
            sh(2026, 2, 5, 8, 30), sh(2026, 2, 6, 8, 30), sh(2026, 2, 9, 8, 30)]

    def test_quartz_day_of_week_numbers_start_with_sunday(self):
        assert cron_firings("0 0 9 ? * 1", NOW, 1) == [sh(2026, 2, 1, 9, 0)]  # 1 = Sunday
        assert cron_firings("0 0 9 ? * 2", NOW, 1) == [sh(2026, 2, 2, 9, 0)]  # 2 = Monday
        assert cron_firings("0 0 9 ? * 7", sh(2026, 2, 1), 1) == [sh(2026, 2, 7, 9, 0)]  # 7 = Saturday
        assert cron_firings("0 0 9 ? * 2-6", NOW, 1) == cron_firings("0 0 9 ? * MON-FRI", NOW, 1)
        assert cron_firings("0 0 9 ? * sun,sat", NOW, 2) == [sh(2026, 2, 1, 9, 0), sh(2026, 2, 7, 9, 0)]

    def test_unix_style_zero_for_sunday_is_refused(self):
        with pytest.raises(TimerExpressionError, match="1 = SUN"):
            timer("timeCycle", "0 0 9 ? * 0")

    def test_last_day_of_month(self):
        assert cron_firings("0 0 18 L * ?", NOW, 3) == [
            sh(2026, 1, 31, 18, 0), sh(2026, 2, 28, 18, 0), sh(2026, 3, 31, 18, 0)]
        assert cron_firings("0 0 18 L-2 * ?", sh(2026, 2, 1), 2) == [sh(2026, 2, 26, 18, 0), sh(2026, 3, 29, 18, 0)]

    def test_nearest_weekday(self):
        # Mar 15 2026 is a Sunday → Monday 16th; Aug 1 2026 is a Saturday → Monday 3rd (never leaves the month)
        assert cron_firings("0 0 9 15W * ?", sh(2026, 3, 1), 1) == [sh(2026, 3, 16, 9, 0)]
        assert cron_firings("0 0 9 1W * ?", sh(2026, 7, 15), 1) == [sh(2026, 8, 3, 9, 0)]
        # Oct 31 2026 is a Saturday → Friday 30th; May 31 2026 is a Sunday → Friday 29th
        assert cron_firings("0 0 9 LW * ?", sh(2026, 10, 1), 1) == [sh(2026, 10, 30, 9, 0)]
        assert cron_firings("0 0 9 LW * ?", sh(2026, 5, 1), 1) == [sh(2026, 5, 29, 9, 0)]

    def test_last_and_nth_weekday_of_month(self):
        assert cron_firings("0 0 9 ? * 6L", NOW, 3) == [
            sh(2026, 2, 27, 9, 0), sh(2026, 3, 27, 9, 0), sh(2026, 4, 24, 9, 0)]
        assert cron_firings("0 0 9 ? * MON#1", NOW, 3) == [
            sh(2026, 2, 2, 9, 0), sh(2026, 3, 2, 9, 0), sh(2026, 4, 6, 9, 0)]
        # a fifth Friday exists only in some months (May, Jul, Oct in 2026 after January)
        assert cron_firings("0 0 9 ? * 6#5", NOW, 3) == [
            sh(2026, 5, 29, 9, 0), sh(2026, 7, 31, 9, 0), sh(2026, 10, 30, 9, 0)]
        assert cron_firings("0 0 9 ? * L", NOW, 2) == [sh(2026, 2, 7, 9, 0), sh(2026, 2, 14, 9, 0)]

    def test_quartz_forms_that_croniter_spells_differently(self):
        # plain days beside a last-weekday item: every Monday and the last Friday
        assert cron_firings("0 0 9 ? * 2,6L", NOW, 6) == [
            sh(2026, 2, 2, 9, 0), sh(2026, 2, 9, 9, 0), sh(2026, 2, 16, 9, 0), sh(2026, 2, 23, 9, 0),
            sh(2026, 2, 27, 9, 0), sh(2026, 3, 2, 9, 0)]
        assert cron_firings("0 0 9 ? * 2#1,4#3", NOW, 4) == [
            sh(2026, 2, 2, 9, 0), sh(2026, 2, 18, 9, 0), sh(2026, 3, 2, 9, 0), sh(2026, 3, 18, 9, 0)]
        # W in a list; Feb 15 2026 is a Sunday → Monday 16th
        assert cron_firings("0 0 9 1,15W * ?", NOW, 4) == [
            sh(2026, 2, 1, 9, 0), sh(2026, 2, 16, 9, 0), sh(2026, 3, 1, 9, 0), sh(2026, 3, 16, 9, 0)]
        # a month without a 31st has no firing (Quartz), it does not move to the 30th
        assert cron_firings("0 0 9 31W * ?", NOW, 3) == [
            sh(2026, 3, 31, 9, 0), sh(2026, 5, 29, 9, 0), sh(2026, 7, 31, 9, 0)]

    def test_steps_ranges_and_lists(self):
        assert cron_firings("*/15 * * * * ?", NOW, 3) == [
            sh(2026, 1, 31, 9, 0, 15), sh(2026, 1, 31, 9, 0, 30), sh(2026, 1, 31, 9, 0, 45)]
        assert cron_firings("0 0/20 9 * * ?", NOW, 3) == [
            sh(2026, 1, 31, 9, 20), sh(2026, 1, 31, 9, 40), sh(2026, 2, 1, 9, 0)]
        assert cron_firings("0 10-40/15 9 * * ?", NOW, 3) == [
            sh(2026, 1, 31, 9, 10), sh(2026, 1, 31, 9, 25), sh(2026, 1, 31, 9, 40)]
        assert cron_firings("0 0 8,12,17 * * ?", NOW, 3) == [
            sh(2026, 1, 31, 12, 0), sh(2026, 1, 31, 17, 0), sh(2026, 2, 1, 8, 0)]

    def test_wrapping_range(self):
        assert cron_firings("0 0 22-1 * * ?", NOW, 4) == [
            sh(2026, 1, 31, 22, 0), sh(2026, 1, 31, 23, 0), sh(2026, 2, 1, 0, 0), sh(2026, 2, 1, 1, 0)]

    def test_month_names_and_year_field(self):
        assert cron_firings("0 0 9 1 JAN,JUL ? 2027", NOW, 3) == [sh(2027, 1, 1, 9, 0), sh(2027, 7, 1, 9, 0)]

    def test_year_field_ends_the_cycle(self):
        schedule = timer("timeCycle", "0 0 9 1 1 ? 2027")
        assert schedule.next_due(sh(2027, 1, 1, 9, 0), 1) is None
        with pytest.raises(TimerExpressionError, match="never fires after"):
            schedule.first_due(sh(2028, 1, 1))

    def test_star_in_day_of_week_is_accepted_as_every_day(self):
        assert cron_firings("0 0 9 * * *", NOW, 1) == [sh(2026, 2, 1, 9, 0)]
        assert cron_firings("0 0 9 * * MON", NOW, 1) == [sh(2026, 2, 2, 9, 0)]

    def test_cron_follows_the_given_zone(self):
        assert timer("timeCycle", "0 0 9 * * ?", tz=UTC).first_due(NOW) == datetime(2026, 1, 31, 9, 0, tzinfo=UTC)

    def test_dst_gap_is_skipped(self):
        # 2026-03-08 02:30 does not exist in New York; that day's firing is skipped
        ny = ZoneInfo("America/New_York")
        schedule = timer("timeCycle", "0 30 2 * * ?", tz=ny)
        due = schedule.first_due(datetime(2026, 3, 7, 12, 0, tzinfo=ny))
        assert due == datetime(2026, 3, 9, 2, 30, tzinfo=ny)

    @pytest.mark.parametrize(("value", "message"), [
        ("0 9 * * *", "got 5; Camunda uses Quartz syntax: add the seconds field first"),
        ("0 0 9 * * ? 2027 x", "expected 6 or 7 fields"),
        ("0 0 9 1 * MON", "specify either day-of-month or day-of-week"),
        ("0 0 9 ? * ?", "cannot both be '?'"),
        ("0 ? 9 * * ?", "'?' is only allowed in day-of-month and day-of-week"),
        ("0 0 25 * * ?", "hours field '25': value 25 is out of range 0-23"),
        ("60 0 9 * * ?", "seconds field '60': value 60 is out of range 0-59"),
        ("0 0 9 32 * ?", "value 32 is out of range 1-31"),
        ("0 0 9 ? FOO *", "month field 'FOO': unknown value 'FOO'"),
        ("0 0 9 ? * 8", "value 8 is out of range 1-7"),
        ("0 0 9 ? * 2#6", "the number after '#'"),
        ("0 */0 9 * * ?", "invalid step '0'"),
        ("0 0 9 30 2 ?", "it can never fire"),
        ("0 0 9 1,,2 * ?", "empty list item"),
        ("0 0 9 5L * ?", "invalid item '5L'"),
        ("0 0 9 1 1 ? 1960", "out of range 1970-2099"),
    ])
    def test_errors_name_what_is_wrong(self, value, message):
        with pytest.raises(TimerExpressionError) as info:
            timer("timeCycle", value)
        assert message in str(info.value)


# --------------------------------------------------------------------------- persistence and API


class TestPersistence:
    @pytest.mark.parametrize(("kind", "value"), [
        ("timeDate", "2026-12-01T09:00:00"),
        ("timeDate", datetime(2026, 12, 1, 9, 0)),
        ("timeDate", datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
        ("timeDate", date(2026, 12, 1)),
        ("timeDuration", "P1M"),
        ("timeDuration", timedelta(minutes=90, microseconds=5)),
        ("timeCycle", "R3/PT10M"),
        ("timeCycle", "R/2026-01-01T09:00/P1D"),
        ("timeCycle", "R2/PT1H/2026-12-01T10:00:00Z"),
        ("timeCycle", "0 0 9 ? * MON-FRI"),
    ])
    def test_round_trip_through_json_keeps_the_due_times(self, kind, value):
        schedule = timer(kind, value)
        stored = json.loads(json.dumps(schedule.to_dict()))
        restored = TimerSchedule.from_dict(stored)
        assert restored == schedule
        assert firings(restored, NOW, 3) == firings(schedule, NOW, 3)

    def test_stored_form(self):
        assert timer("timeCycle", "R3/PT10M").to_dict() == {
            "version": 1, "kind": "timeCycle", "value": "R3/PT10M", "tz": "Asia/Shanghai"}

    def test_fixed_offset_and_utc_zones_persist(self):
        plus8 = timezone(timedelta(hours=8))
        assert timer("timeDate", "2026-12-01T09:00", tz=plus8).to_dict()["tz"] == "+08:00"
        assert timer("timeDate", "2026-12-01T09:00", tz=UTC).to_dict()["tz"] == "UTC"
        restored = TimerSchedule.from_dict(timer("timeDate", "2026-12-01T09:00", tz=plus8).to_dict())
        assert restored.first_due(NOW) == sh(2026, 12, 1, 9, 0)

    def test_bad_stored_data(self):
        with pytest.raises(TimerExpressionError, match="must have kind, value and tz"):
            TimerSchedule.from_dict({"kind": "timeDate"})
        with pytest.raises(TimerExpressionError, match="unknown time zone"):
            TimerSchedule.from_dict({"kind": "timeDate", "value": "2026-12-01", "tz": "Mars/Olympus"})


class TestApi:
    def test_unknown_kind(self):
        with pytest.raises(TimerExpressionError, match="unknown timer kind 'timeCron'"):
            parse_timer("timeCron", "R/PT1M", SHANGHAI)

    def test_empty_definition(self):
        with pytest.raises(TimerExpressionError, match="empty timeDuration timer definition"):
            parse_timer("timeDuration", "   ", SHANGHAI)

    def test_surrounding_whitespace_from_xml_is_ignored(self):
        assert parse_timer("timeDuration", "\n  PT5M\n", SHANGHAI).first_due(NOW) == sh(2026, 1, 31, 9, 5)

    def test_naive_now_is_refused(self):
        with pytest.raises(ValueError, match="timezone-aware"):
            timer("timeDuration", "PT5M").first_due(datetime(2026, 1, 31, 9, 0))

    def test_tz_must_be_a_tzinfo(self):
        with pytest.raises(TypeError):
            parse_timer("timeDuration", "PT5M", "Asia/Shanghai")  # type: ignore[arg-type]

    def test_fired_must_be_a_count(self):
        with pytest.raises(ValueError, match="fired"):
            timer("timeCycle", "R3/PT10M").next_due(NOW, -1)

    def test_kinds_of_schedule(self):
        assert isinstance(timer("timeDuration", "PT1M"), DurationSchedule)
        assert timers.TIMER_KINDS == ("timeDate", "timeDuration", "timeCycle")


def test_no_wall_clock_reads():
    sources = sorted(Path(timers.__file__).parent.glob("*.py"))
    assert len(sources) > 1  # the package's modules, not only its __init__
    for path in sources:
        source = path.read_text(encoding="utf-8")
        for forbidden in ("datetime.now(", "datetime.utcnow(", "date.today(", "time.time(", "import time"):
            assert forbidden not in source, f"{path.name}: {forbidden}"


# --------------------------------------------------------------------------- minimum interval (TIMER_MIN_INTERVAL)

MINUTE = timedelta(minutes=1)


def brute_force_gap(schedule: TimerSchedule, now: datetime, count: int) -> timedelta | None:
    """The shortest gap between the first ``count`` firings, by stepping through them."""
    due_times = firings(schedule, now, count)
    return min((b - a for a, b in pairwise(due_times)), default=None)


class TestMinimumInterval:
    @pytest.mark.parametrize("value, gap", [
        ("* * * * * ?", timedelta(seconds=1)),  # every second
        ("0/10 * * * * ?", timedelta(seconds=10)),
        ("0,30 59 23 * * ?", timedelta(seconds=30)),  # only once a day, but two firings 30 s apart
        ("0 0,59 * * * ?", MINUTE),  # :59 and the next hour's :00
        ("0 0,59 0,23 * * ?", MINUTE),  # 23:59 and the next day's 00:00
        ("0 * * * * ?", MINUTE),
        ("0 */5 * * * ?", timedelta(minutes=5)),
        ("0 0 9 * * ?", timedelta(days=1)),
        ("0 0 9 ? * MON-FRI", timedelta(days=1)),
        ("0 0 0 1,L * ?", timedelta(days=1)),  # the last of a month and the first of the next
        ("0 0 18 L * ?", timedelta(days=28)),
        ("0 30 0,23 ? * 6L", timedelta(hours=23)),
        ("0 0 9 ? * 2,6L", timedelta(days=3)),  # the last Friday and the Monday after
    ])
    def test_cron_gap_is_computed_from_its_schedule(self, value, gap):
        schedule = timer("timeCycle", value)
        assert schedule.shortest_gap() == gap
        # the same as stepping through its firings (over a year for the monthly ones)
        count = 14 if "L" in value else 3000
        assert brute_force_gap(schedule, NOW, count) == gap

    def test_cron_that_fires_once_has_no_gap(self):
        assert timer("timeCycle", "0 0 9 1 1 ? 2027").shortest_gap() is None

    @pytest.mark.parametrize("value, gap", [
        ("R/PT0.001S", timedelta(milliseconds=1)),
        ("R5/2026-12-01T09:00:00+08:00/PT30S", timedelta(seconds=30)),
        ("R3/PT10M", timedelta(minutes=10)),
        ("R/2026-12-01T09:00/2026-12-01T09:00:20", timedelta(seconds=20)),
        ("R2/PT1M/2026-12-01T10:00:00Z", MINUTE),
    ])
    def test_cycle_gap_is_its_interval(self, value, gap):
        assert timer("timeCycle", value).shortest_gap() == gap

    def test_calendar_cycles_are_never_short(self):
        assert timer("timeCycle", "R/P1D").shortest_gap() >= timedelta(hours=23)  # a DST day
        assert timer("timeCycle", "R/P1M").shortest_gap() >= timedelta(days=27)

    @pytest.mark.parametrize("kind, value", [
        ("timeDuration", "PT1S"), ("timeDuration", "PT0.5S"), ("timeDate", "2026-12-01T09:00"),
        ("timeCycle", "R1/PT1S"),  # one firing: nothing repeats
    ])
    def test_one_shot_timers_pass(self, kind, value):
        schedule = timer(kind, value)
        assert schedule.shortest_gap() is None
        timers.check_min_interval(schedule, MINUTE)

    @pytest.mark.parametrize("value, shown", [
        ("R/PT0.001S", "timer cycle 'R/PT0.001S' would fire again only 0.001 seconds after a firing"),
        ("R5/2026-12-01T09:00:00+08:00/PT30S", "only 30 seconds after a firing"),
        ("* * * * * ?", "cron expression '* * * * * ?' would fire again only 1 second after a firing"),
        ("0/10 * * * * ?", "only 10 seconds after a firing"),
    ])
    def test_below_the_floor_is_refused_naming_the_setting(self, value, shown):
        with pytest.raises(TimerExpressionError) as err:
            timers.check_min_interval(timer("timeCycle", value), MINUTE)
        assert shown in str(err.value)
        assert "at most once every 1 minute (setting TIMER_MIN_INTERVAL)" in str(err.value)

    @pytest.mark.parametrize("value", ["R/PT1M", "0 * * * * ?", "R/P1D", "0 0 9 ? * MON-FRI"])
    def test_at_or_above_the_floor_passes(self, value):
        timers.check_min_interval(timer("timeCycle", value), MINUTE)

    def test_the_floor_is_a_setting(self, monkeypatch):
        from engine.config import Settings

        assert Settings().timer_min_interval == 60
        monkeypatch.setenv("TIMER_MIN_INTERVAL", "300")
        assert Settings.from_env().timer_min_interval == 300
        with pytest.raises(TimerExpressionError, match="every 5 minutes"):
            timers.check_min_interval(timer("timeCycle", "R/PT2M"), timedelta(seconds=300))
        for bad in ("0", "-5", "1m", "ten"):
            monkeypatch.setenv("TIMER_MIN_INTERVAL", bad)
            with pytest.raises(ValueError, match="TIMER_MIN_INTERVAL"):
                Settings.from_env()


class TestCatchUp:
    """After downtime a repeating start timer fires once for what it missed (next_after)."""

    def test_cycle_counts_the_missed_firings(self):
        schedule = timer("timeCycle", "R/PT1M")
        due, missed = schedule.next_after(NOW, 1, NOW + timedelta(hours=2, seconds=30))
        assert (due, missed) == (NOW + timedelta(minutes=121), 120)

    def test_nothing_missed(self):
        schedule = timer("timeCycle", "R/PT1M")
        assert schedule.next_after(NOW, 1, NOW + timedelta(seconds=5)) == (NOW + MINUTE, 0)

    def test_missed_firings_use_up_the_repetitions(self):
        schedule = timer("timeCycle", "R5/PT1H")
        assert schedule.next_after(NOW, 1, NOW + timedelta(hours=2, minutes=30)) == (NOW + timedelta(hours=3), 2)
        assert schedule.next_after(NOW, 1, NOW + timedelta(days=1)) == (None, 4)

    def test_anchored_cycle_and_cron(self):
        anchored = timer("timeCycle", "R/2026-01-31T09:00/PT1H")
        assert anchored.next_after(NOW, 1, NOW + timedelta(hours=5, minutes=1)) == (NOW + timedelta(hours=6), 5)
        cron = timer("timeCycle", "0 0 9 * * ?")
        assert cron.next_after(NOW, 1, NOW + timedelta(days=3, hours=1)) == (NOW + timedelta(days=4), 3)

    def test_a_legacy_every_millisecond_cycle_jumps_instead_of_stepping(self):
        """Deployed before the floor existed: a day of downtime is 86 million missed firings."""
        schedule = timer("timeCycle", "R/PT0.001S")
        due, missed = schedule.next_after(NOW, 1, NOW + timedelta(days=1))
        assert missed == 86_400_000 and NOW + timedelta(days=1) < due <= NOW + timedelta(days=1, milliseconds=1)
        every_second = timer("timeCycle", "* * * * * ?")
        due, missed = every_second.next_after(NOW, 1, NOW + timedelta(days=1))
        assert missed == 86_400 and due == NOW + timedelta(days=1, seconds=1)
        anchored = timer("timeCycle", "R/2026-01-31T09:00/PT1S")
        due, missed = anchored.next_after(NOW, 1, NOW + timedelta(days=1, milliseconds=500))
        assert missed == 86_400 and due == NOW + timedelta(days=1, seconds=1)
