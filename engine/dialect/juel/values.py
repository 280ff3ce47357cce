"""The Joda-style date-time value and the EL 2.2 coercion rules (section 1.18) as JUEL implements them."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from dateutil.relativedelta import relativedelta

from engine.dialect.juel.limits import (
    _LONG_MAX,
    _LONG_MIN,
    _UTC,
    MAX_STRING_LENGTH,
    JuelEvaluationError,
    _tick,
)


@dataclass(frozen=True, slots=True)
class JodaDateTime:
    """What ``dateTime()`` returns: an instant seen in a zone, with Joda-Time methods.

    ``plusDays``/``plusWeeks``/``plusMonths``/``plusYears`` (and ``minus…``) move the
    local calendar date in ``zone`` (``plusMonths(1)`` from Jan 31 gives Feb 28/29);
    ``plusHours``/``plusMinutes``/``plusSeconds``/``plusMillis`` add exact time.
    ``with…`` setters work on the local time in ``zone``.  ``toDate()`` gives the
    aware UTC ``datetime``.  ``clock`` is the evaluation's "now" (for ``isBeforeNow``).
    """

    instant: datetime
    zone: tzinfo
    clock: datetime

    def to_datetime(self) -> datetime:
        """The instant as an aware UTC ``datetime`` (what Camunda's ``toDate()`` gives)."""
        return self.instant.astimezone(_UTC)

    def local(self) -> datetime:
        """The instant as an aware ``datetime`` in ``zone``."""
        return self.instant.astimezone(self.zone)

    def to_iso(self) -> str:
        """ISO 8601 text in ``zone``, with milliseconds, like Joda's ``toString()``."""
        return self.local().isoformat(timespec="milliseconds")

    def shifted(self, delta: timedelta) -> JodaDateTime:
        return JodaDateTime(self.instant + delta, self.zone, self.clock)

    def shifted_local(self, delta: relativedelta) -> JodaDateTime:
        local = self.local().replace(tzinfo=None) + delta
        return self._from_local(local)

    def with_local_fields(self, **fields: int) -> JodaDateTime:
        try:
            local = self.local().replace(tzinfo=None).replace(**fields)
        except ValueError as exc:
            raise JuelEvaluationError(f"invalid date-time field value {fields}: {exc}") from exc
        return self._from_local(local)

    def _from_local(self, local: datetime) -> JodaDateTime:
        return JodaDateTime(local.replace(tzinfo=self.zone).astimezone(_UTC), self.zone, self.clock)


# --------------------------------------------------------------------------- coercion


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "floating-point number"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, (set, frozenset)):
        return "set"
    if isinstance(value, datetime):
        return "date-time"
    if isinstance(value, date):
        return "date"
    if isinstance(value, JodaDateTime):
        return "DateTime"
    return type(value).__name__


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    shown = repr(value) if isinstance(value, str) else _to_string(value)
    if len(shown) > 40:
        shown = shown[:40] + "…"
    return f"{_type_name(value)} {shown}"


def _cannot(value: Any, target: str, hint: str = "") -> JuelEvaluationError:
    return JuelEvaluationError(f"cannot coerce {_describe(value)} to {target}{hint}")


_LONG_TEXT_RE = re.compile(r"[+-]?[0-9]+")
_DOUBLE_TEXT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_ADD_HINT = " (arithmetic works on numbers only; to join text write '${a}${b}' or a.concat(b))"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_float_text(value: Any) -> bool:
    return isinstance(value, str) and any(c in value for c in ".eE")


def _check_long(value: int) -> int:
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise JuelEvaluationError("integer overflow: the result does not fit in 64 bits")
    return value


def _to_long(value: Any, hint: str = "") -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise _cannot(value, "a number", hint)
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)):
        if not math.isfinite(value):
            raise _cannot(value, "an integer", hint)
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0
        if _LONG_TEXT_RE.fullmatch(text):
            return _check_long(int(text))
        raise _cannot(value, "a whole number", hint)
    raise _cannot(value, "a number", hint)


def _to_double(value: Any, hint: str = "") -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        raise _cannot(value, "a number", hint)
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        if _DOUBLE_TEXT_RE.fullmatch(text):
            return float(text)
        raise _cannot(value, "a number", hint)
    raise _cannot(value, "a number", hint)


def _to_decimal(value: Any, hint: str = "") -> Decimal:
    if value is None:
        return Decimal(0)
    if isinstance(value, bool):
        raise _cannot(value, "a number", hint)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return Decimal(0)
        if _DOUBLE_TEXT_RE.fullmatch(text):
            return Decimal(text)
        raise _cannot(value, "a number", hint)
    raise _cannot(value, "a number", hint)


def _to_bool(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() == "true"
    raise _cannot(value, "a boolean")


def _java_double(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return repr(float(value))
    mantissa, _, exponent = f"{value!r}".partition("e")
    if not exponent:  # repr gave a plain number, e.g. 12345678.0
        mantissa, _, exponent = f"{value:.16e}".partition("e")
        mantissa = mantissa.rstrip("0")
    if "." not in mantissa:
        mantissa += ".0"
    elif mantissa.endswith("."):
        mantissa += "0"
    return f"{mantissa}E{int(exponent)}"


def _to_string(value: Any, depth: int = 0) -> str:
    if depth == 0 and isinstance(value, (Mapping, list, tuple, set, frozenset)):
        _check_rendered_length(value)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _java_double(value)
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, JodaDateTime):
        return value.to_iso()
    if depth > 8:
        return "…"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_to_string(k, depth + 1)}={_to_string(v, depth + 1)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[" + ", ".join(_to_string(v, depth + 1) for v in value) + "]"
    return str(value)


def _check_rendered_length(value: Any) -> None:
    """Refuse a collection whose text (as ``_to_string`` renders it, 8 levels deep) would
    be longer than :data:`MAX_STRING_LENGTH`, before building it."""
    size = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        _tick()
        if isinstance(item, str):
            size += len(item)
        elif isinstance(item, (Mapping, list, tuple, set, frozenset)) and depth <= 8:
            size += 2 + 2 * len(item)
            if isinstance(item, Mapping):
                stack.extend((k, depth + 1) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        else:
            size += 24  # numbers, dates, "…": short
        if size > MAX_STRING_LENGTH:
            raise JuelEvaluationError(f"string result too long (more than {MAX_STRING_LENGTH} characters when "
                                      "a collection is turned into text)")
