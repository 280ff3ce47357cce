"""What every timer schedule shares: the error type, zone helpers and the TimerSchedule base class."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

TIMER_KINDS = ("timeDate", "timeDuration", "timeCycle")
_MAX_DURATION_SECONDS = 200 * 366 * 86400  # refuse durations longer than ~200 years
_CATCH_UP_STEPS = 5000  # missed firings counted one by one before a catch-up jumps ahead


class TimerExpressionError(ValueError):
    """A timer definition could not be understood; the message names what was wrong."""


# --------------------------------------------------------------------------- helpers


def _require_aware(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC)


def _localize(local: datetime, tz: tzinfo) -> datetime:
    """Attach ``tz`` to a naive wall time and convert to UTC."""
    return local.replace(tzinfo=tz).astimezone(UTC)


def _format_number(value: int | Decimal) -> str:
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text
    return str(value)


def _tz_to_text(tz: tzinfo) -> str:
    key = getattr(tz, "key", None)
    if isinstance(key, str) and key:
        return key
    if isinstance(tz, timezone):
        offset = tz.utcoffset(None)
        if offset == timedelta(0):
            return "UTC"
        sign = "-" if offset < timedelta(0) else "+"
        minutes = abs(offset) // timedelta(minutes=1)
        return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    raise TimerExpressionError(
        f"cannot persist time zone {tz!r}: use zoneinfo.ZoneInfo or datetime.timezone")


def _tz_from_text(text: Any) -> tzinfo:
    if not isinstance(text, str) or not text:
        raise TimerExpressionError(f"invalid time zone {text!r} in stored timer")
    if text == "UTC":
        return UTC
    match = re.fullmatch(r"([+-])(\d{2}):(\d{2})", text)
    if match:
        offset = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
        return timezone(-offset if match.group(1) == "-" else offset)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimerExpressionError(f"unknown time zone {text!r} in stored timer") from exc


class TimerSchedule(ABC):
    """When a timer fires.  ``repetitions`` is the total number of firings (None = no end)."""

    kind: str
    value: str
    tz: tzinfo
    repetitions: int | None

    @abstractmethod
    def first_due(self, now: datetime) -> datetime:
        """The first due time (aware UTC) for a timer reached at ``now``."""

    @abstractmethod
    def next_due(self, previous_due: datetime, fired: int) -> datetime | None:
        """The due time after ``previous_due`` once ``fired`` firings happened; None when done."""

    def shortest_gap(self) -> timedelta | None:
        """The shortest time there can be between two consecutive firings (wall-clock arithmetic
        in ``tz``; a daylight-saving jump can bring two firings up to an hour closer once); None
        when the timer fires at most once."""
        return None

    def next_after(self, previous_due: datetime, fired: int, now: datetime) -> tuple[datetime | None, int]:
        """Catch-up: the first due time after ``now`` that follows ``previous_due`` (which just
        fired as the ``fired``-th firing), and how many due times in between were missed
        (they fall in ``(previous_due, now]``).  ``(None, missed)`` when the schedule ends.

        The missed firings count as used: ``R5/PT1H`` that missed three fires at most once more.
        """
        now = _require_aware(now, "now")
        missed = 0
        due = self.next_due(previous_due, fired)
        while due is not None and due <= now and missed < _CATCH_UP_STEPS:
            missed += 1
            due = self.next_due(due, fired + missed)
        if due is not None and due <= now:
            # far behind (a legacy every-second schedule after a long downtime): jump, and
            # estimate the missed count from the shortest gap instead of stepping through them all
            gap = self.shortest_gap()
            if gap:
                missed = max(missed, (now - previous_due) // gap)
            if self.repetitions is not None:
                missed = min(missed, max(self.repetitions - fired, 0))
            due = self._first_due_after(now)
        return due, missed

    def _first_due_after(self, now: datetime) -> datetime | None:
        """The first due time after ``now`` (only used for schedules that can fire often)."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: ``{"version": 1, "kind": …, "value": …, "tz": …}``."""
        return {"version": 1, "kind": self.kind, "value": self.value, "tz": _tz_to_text(self.tz)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimerSchedule:
        """Rebuild a schedule stored with :meth:`to_dict`."""
        if not isinstance(data, dict) or not {"kind", "value", "tz"} <= set(data):
            raise TimerExpressionError(f"stored timer must have kind, value and tz: {data!r}")
        from engine.dialect.timers.parsing import parse_timer  # parsing builds on this module

        return parse_timer(data["kind"], data["value"], _tz_from_text(data["tz"]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind}={self.value!r}, tz={_tz_label(self.tz)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimerSchedule):
            return NotImplemented
        return type(self) is type(other) and self.kind == other.kind and self.value == other.value \
            and _tz_label(self.tz) == _tz_label(other.tz)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.kind, self.value, _tz_label(self.tz)))

    @staticmethod
    def _check_fired(fired: int) -> None:
        if isinstance(fired, bool) or not isinstance(fired, int) or fired < 0:
            raise ValueError(f"fired must be a non-negative integer, got {fired!r}")


def _tz_label(tz: tzinfo) -> str:
    try:
        return _tz_to_text(tz)
    except TimerExpressionError:
        return repr(tz)
