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
      that can never fire is refused.  croniter finds the matching dates; :mod:`.quartz`
      checks Quartz's syntax and translates it.

The schedule persists as a small JSON-safe dict (:meth:`TimerSchedule.to_dict`)
holding the kind, the canonical text and the zone name; :meth:`TimerSchedule.from_dict`
parses it again.
"""

from engine.dialect.timers.base import TIMER_KINDS, TimerExpressionError, TimerSchedule
from engine.dialect.timers.cron import CronSchedule
from engine.dialect.timers.iso import IsoDuration, parse_iso_datetime, parse_iso_duration
from engine.dialect.timers.parsing import check_min_interval, describe_gap, parse_timer
from engine.dialect.timers.schedules import CycleSchedule, DateSchedule, DurationSchedule

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
