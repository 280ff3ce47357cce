"""Ranges, kinds, comparison, arithmetic and string() of FEEL values, and the evaluation scope."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from engine.dialect.feel.limits import FEEL_DECIMAL_CONTEXT, FeelEvaluationError, _budget, _UnknownName
from engine.dialect.feel.values import (
    FeelFunction,
    YearsMonthsDuration,
    _add_months,
    format_duration,
    to_feel,
)


@dataclass(frozen=True)
class Range:
    """A FEEL range (interval).  ``None`` as an endpoint means unbounded."""

    start: Any
    end: Any
    start_included: bool
    end_included: bool

    def contains(self, value: Any) -> bool | None:
        if value is None:
            return None
        result: bool | None = True
        if self.start is not None:
            c = _compare(value, self.start)
            if c is None:
                return None
            result = c > 0 or (c == 0 and self.start_included)
        if result and self.end is not None:
            c = _compare(value, self.end)
            if c is None:
                return None
            result = c < 0 or (c == 0 and self.end_included)
        return result

    def __str__(self) -> str:
        left = "[" if self.start_included else "("
        right = "]" if self.end_included else ")"
        start = "null" if self.start is None else feel_string(self.start)
        end = "null" if self.end is None else feel_string(self.end)
        return f"{left}{start}..{end}{right}"


class _UnaryTestValue:
    """Value of a parenthesised list of unary tests such as ``(< 5, > 10)``: only useful on
    the right of ``in``."""

    __slots__ = ("_tests", "text")

    def __init__(self, tests: list[Callable[[Scope], bool | None]], text: str) -> None:
        self._tests = tests
        self.text = text

    def test(self, scope: Scope) -> bool | None:
        return _any_test(self._tests, scope)

    def __repr__(self) -> str:
        return f"<unary tests {self.text}>"


def to_python(value: Any) -> Any:
    """Convert a FEEL value to plain Python: Decimal -> int when integral else float."""
    t = type(value)
    if t is Decimal:
        if value == value.to_integral_value():
            return int(value)
        return float(value)
    if t is list:
        _budget().tick(len(value) + 1)
        return [to_python(v) for v in value]
    if t is dict:
        _budget().tick(len(value) + 1)
        return {k: to_python(v) for k, v in value.items()}
    if t is Range:
        return Range(to_python(value.start), to_python(value.end), value.start_included, value.end_included)
    return value


# --------------------------------------------------------------------------- kinds & comparisons

_KIND = {
    type(None): "null",
    bool: "boolean",
    Decimal: "number",
    str: "string",
    date: "date",
    datetime: "datetime",
    time: "time",
    timedelta: "dtd",
    YearsMonthsDuration: "ymd",
    list: "list",
    dict: "context",
    Range: "range",
    FeelFunction: "function",
    _UnaryTestValue: "test",
}


def _kind(value: Any) -> str:
    k = _KIND.get(type(value))
    if k is not None:
        return k
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    if isinstance(value, FeelFunction) or callable(value):
        return "function"
    return "other"


def _as_aware_pair(a: datetime, b: datetime) -> tuple[datetime, datetime]:
    if (a.tzinfo is None) != (b.tzinfo is None):
        if a.tzinfo is None:
            a = a.replace(tzinfo=UTC)
        else:
            b = b.replace(tzinfo=UTC)
    return a, b


def _promote(a: Any, b: Any, ka: str, kb: str) -> tuple[Any, Any, str]:
    """Make two values of close kinds comparable (date vs date and time)."""
    if ka == kb:
        if ka == "datetime":
            a, b = _as_aware_pair(a, b)
        return a, b, ka
    if ka == "date" and kb == "datetime":
        return _as_aware_pair(datetime(a.year, a.month, a.day, tzinfo=b.tzinfo), b) + ("datetime",)
    if ka == "datetime" and kb == "date":
        return _as_aware_pair(a, datetime(b.year, b.month, b.day, tzinfo=a.tzinfo)) + ("datetime",)
    return a, b, ""


def _time_key(t: time) -> tuple[int, int]:
    secs = t.hour * 3600 + t.minute * 60 + t.second
    off = t.utcoffset() if t.tzinfo is not None else None
    if off is not None:
        secs -= int(off.total_seconds())
    return secs % 86400, t.microsecond


_ORDERED = {"number", "string", "date", "datetime", "time", "dtd", "ymd"}


def _compare(a: Any, b: Any) -> int | None:
    """-1/0/1, or None when the values are not comparable (FEEL gives null)."""
    if a is None or b is None:
        return None
    ka, kb = _kind(a), _kind(b)
    a, b, k = _promote(a, b, ka, kb)
    if k not in _ORDERED:
        return None
    if k == "time":
        a, b = _time_key(a), _time_key(b)
    try:
        return -1 if a < b else (1 if a > b else 0)
    except TypeError:
        return None


def feel_equal(a: Any, b: Any) -> bool | None:
    """FEEL ``=``: null = null is true, null = x is false, different kinds give null."""
    if a is None or b is None:
        return a is None and b is None
    ka, kb = _kind(a), _kind(b)
    a, b, k = _promote(a, b, ka, kb)
    if not k:
        return None
    if k == "list":
        if len(a) != len(b):
            return False
        _budget().tick(len(a) + 1)
        result: bool | None = True
        for x, y in zip(a, b, strict=True):
            e = feel_equal(x, y)
            if e is False:
                return False
            if e is None:
                result = None
        return result
    if k == "context":
        if set(a) != set(b):
            return False
        _budget().tick(len(a) + 1)
        result = True
        for key, x in a.items():
            e = feel_equal(x, b[key])
            if e is False:
                return False
            if e is None:
                result = None
        return result
    if k == "range":
        return (
            a.start_included == b.start_included
            and a.end_included == b.end_included
            and feel_equal(a.start, b.start) is True
            and feel_equal(a.end, b.end) is True
        )
    if k == "time":
        return _time_key(a) == _time_key(b)
    if k in ("function", "test", "other"):
        return a is b or a == b
    return a == b


# --------------------------------------------------------------------------- arithmetic


def _add(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ka, kb = _kind(a), _kind(b)
    if ka == kb and ka in ("number", "string", "dtd"):
        if ka == "string":
            _budget().text(len(a) + len(b), "string concatenation")
        return a + b
    if ka == kb == "ymd":
        return YearsMonthsDuration(a.total_months + b.total_months)
    if kb in ("date", "datetime", "time") and ka in ("dtd", "ymd"):
        a, b, ka, kb = b, a, kb, ka
    if ka in ("date", "datetime"):
        if kb == "dtd":
            try:
                return a + b
            except OverflowError:
                return None
        if kb == "ymd":
            return _add_months(a, b.total_months)
    if ka == "time" and kb == "dtd":
        full = datetime.combine(date(2000, 1, 1), a) + b
        return full.timetz()
    return None


def _negate(value: Any) -> Any:
    k = _kind(value)
    if k in ("number", "dtd"):
        return -value
    if k == "ymd":
        return YearsMonthsDuration(-value.total_months)
    return None


def _sub(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ka, kb = _kind(a), _kind(b)
    if ka == kb and ka in ("number", "dtd"):
        return a - b
    if ka == kb == "ymd":
        return YearsMonthsDuration(a.total_months - b.total_months)
    if ka in ("date", "datetime") and kb in ("date", "datetime"):
        if ka == kb == "date":
            return a - b
        a2, b2, _ = _promote(a, b, ka, kb)
        return a2 - b2
    if ka == kb == "time":
        sa, ma = _time_key(a)
        sb, mb = _time_key(b)
        return timedelta(seconds=sa - sb, microseconds=ma - mb)
    if ka in ("date", "datetime", "time") and kb in ("dtd", "ymd"):
        return _add(a, _negate(b))
    return None


def _mul(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ka, kb = _kind(a), _kind(b)
    if ka == kb == "number":
        return a * b
    if ka == "number" and kb in ("dtd", "ymd"):
        a, b, ka, kb = b, a, kb, ka
    if kb == "number":
        if ka == "dtd":
            return _seconds_to_td(_td_seconds(a) * b)
        if ka == "ymd":
            return YearsMonthsDuration(int(a.total_months * b))
    return None


def _div(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ka, kb = _kind(a), _kind(b)
    if kb == "number" and b == 0:
        return None
    if ka == kb == "number":
        return a / b
    if ka == "dtd" and kb == "number":
        return _seconds_to_td(_td_seconds(a) / b)
    if ka == "ymd" and kb == "number":
        return YearsMonthsDuration(int(Decimal(a.total_months) / b))
    if ka == kb == "dtd":
        d = _td_seconds(b)
        return None if d == 0 else _td_seconds(a) / d
    if ka == kb == "ymd":
        return None if b.total_months == 0 else Decimal(a.total_months) / Decimal(b.total_months)
    return None


def _pow(a: Any, b: Any) -> Any:
    if _kind(a) != "number" or _kind(b) != "number":
        return None
    if b == b.to_integral_value() and abs(b) < 1000000:
        exponent = int(b)
        if a == 0 and exponent < 0:
            return None
        return a**exponent
    if a <= 0:
        return None
    return a**b


def _td_seconds(td: timedelta) -> Decimal:
    return Decimal(td.days * 86400 + td.seconds) + Decimal(td.microseconds) / 1000000


def _seconds_to_td(seconds: Decimal) -> timedelta | None:
    whole = int(seconds.to_integral_value(rounding=ROUND_FLOOR))
    micro = int(((seconds - whole) * 1000000).to_integral_value())
    try:
        return timedelta(seconds=whole, microseconds=micro)
    except OverflowError:
        return None


# --------------------------------------------------------------------------- string()


def feel_string(value: Any) -> str | None:
    """FEEL ``string()`` conversion."""
    k = _kind(value)
    if k == "null":
        return None
    if k == "string":
        return value
    if k == "boolean":
        return "true" if value else "false"
    if k == "number":
        if value == 0:
            return "0"
        n = value.normalize(FEEL_DECIMAL_CONTEXT)
        return format(n, "f")
    if k == "date":
        return value.isoformat() if value.year >= 1 else None
    if k == "datetime":
        return _format_date_time(value)
    if k == "time":
        return _format_time(value)
    if k in ("dtd", "ymd"):
        return format_duration(value)
    if k == "list":
        _check_rendered_size(value)
        return "[" + ", ".join(_inner_string(v) for v in value) + "]"
    if k == "context":
        _check_rendered_size(value)
        return "{" + ", ".join(f"{key}: {_inner_string(v)}" for key, v in value.items()) + "}"
    if k == "range":
        return str(value)
    return str(value)


def _check_rendered_size(value: list | dict) -> None:
    """Refuse turning a list/context into text longer than the budget allows (before it
    is built); each element visited counts as an iteration."""
    budget = _budget()
    limit = budget.limits.max_text
    size = 0
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        budget.tick()
        if type(item) is list:
            size += 2 + 2 * len(item)
            stack.extend(item)
        elif type(item) is dict:
            size += 2 + 4 * len(item) + sum(len(k) for k in item)
            stack.extend(item.values())
        elif type(item) is str:
            size += len(item) + 2
        else:
            size += 40  # numbers, dates, durations render short
        if size > limit:
            budget.text(size, "converting a list or context to a string")


def _inner_string(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return feel_string(value) or "null"


def _format_zone(value: datetime | time) -> str:
    tz = value.tzinfo
    if tz is None:
        return ""
    key = getattr(tz, "key", None)
    if key:
        return "@" + key
    off = value.utcoffset()
    if off is None:
        return ""
    if off == timedelta(0):
        return "Z"
    sign = "-" if off < timedelta(0) else "+"
    off = abs(off)
    hh, rem = divmod(int(off.total_seconds()), 3600)
    mm, ss = divmod(rem, 60)
    return f"{sign}{hh:02d}:{mm:02d}" + (f":{ss:02d}" if ss else "")


def _format_time(value: time) -> str:
    text = value.replace(tzinfo=None).isoformat()
    return text + _format_zone(value)


def _format_date_time(value: datetime) -> str:
    return value.date().isoformat() + "T" + _format_time(value.timetz())


# --------------------------------------------------------------------------- scope


_NO_INPUT = object()


class Scope:
    """Name resolution for evaluation: a chain of mappings, innermost first.

    ``native`` scopes hold FEEL values already; the others hold caller (Python) values
    that are converted on first lookup.  A scope may also carry the input value of a
    unary test (``?``).
    """

    __slots__ = ("_converted", "input_value", "native", "parent", "values")

    def __init__(
        self,
        values: Mapping[str, Any] | None = None,
        parent: Scope | None = None,
        *,
        native: bool = True,
        input_value: Any = _NO_INPUT,
    ) -> None:
        self.values = values
        self.parent = parent
        self.native = native
        self.input_value = input_value
        self._converted: dict[str, Any] | None = None if native else {}

    def child(self, values: Mapping[str, Any] | None = None, *, input_value: Any = _NO_INPUT) -> Scope:
        return Scope(values, self, input_value=input_value)

    def lookup(self, name: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            vals = scope.values
            if vals is not None and name in vals:
                if scope.native:
                    return vals[name]
                conv = scope._converted
                assert conv is not None
                if name in conv:
                    return conv[name]
                value = conv[name] = to_feel(vals[name])
                return value
            scope = scope.parent
        if " " in name or "\n" in name:
            found, value = self._lookup_normalized(name)
            if found:
                return value
        raise _UnknownName(name)

    def _lookup_normalized(self, name: str) -> tuple[bool, Any]:
        wanted = " ".join(name.split())
        scope: Scope | None = self
        while scope is not None:
            if scope.values is not None:
                for key in scope.values:
                    if isinstance(key, str) and " ".join(key.split()) == wanted:
                        return True, scope.lookup(key)
            scope = scope.parent
        return False, None

    def has(self, name: str) -> bool:
        try:
            self.lookup(name)
        except _UnknownName:
            return False
        return True

    def get_input(self) -> Any:
        scope: Scope | None = self
        while scope is not None:
            if scope.input_value is not _NO_INPUT:
                return scope.input_value
            scope = scope.parent
        raise FeelEvaluationError("'?' used outside of a unary test")


def _any_test(tests: list[Callable[[Scope], bool | None]], scope: Scope) -> bool | None:
    result: bool | None = False
    for t in tests:
        r = t(scope)
        if r is True:
            return True
        if r is None:
            result = None
    return result
