"""Helpers of the compiler: string escapes, tests, property paths, three-valued logic."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from engine.dialect.feel.operators import Scope, _compare, _kind, feel_equal

# --------------------------------------------------------------------------- compiler

Fn = Callable[[Scope], Any]
_STRING_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    '"': '"',
    "\\": "\\",
    "'": "'",
    "/": "/",
    "b": "\b",
    "f": "\f",
}
_UNICODE_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{6}|.)", re.DOTALL)


def _unescape(body: str) -> str:
    def repl(m: re.Match[str]) -> str:
        code = m.group(1)
        if code[0] in "uU" and len(code) > 1:
            return chr(int(code[1:], 16))
        return _STRING_ESCAPES.get(code, "\\" + code)

    text = _UNICODE_ESCAPE.sub(repl, body)
    # join UTF-16 surrogate pairs written as two \u escapes
    return (
        text.encode("utf-16", "surrogatepass").decode("utf-16")
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        else text
    )


def _to_bool(v: Any) -> bool | None:
    return v if type(v) is bool else None


def _value_test(value: Any, input_value: Any, scope: Scope) -> bool | None:
    """Semantics of an expression used as a unary test whose text does not mention ``?``."""
    k = _kind(value)
    if k == "range":
        return value.contains(input_value)
    if k == "test":
        return value.test(scope.child(input_value=input_value))
    if k == "list":
        for v in value:
            e = v.contains(input_value) if _kind(v) == "range" else feel_equal(input_value, v)
            if e is True:
                return True
        return _kind(input_value) == "list" and feel_equal(input_value, value) is True
    if k == "boolean" and input_value is not None and _kind(input_value) != "boolean":
        return value
    return feel_equal(input_value, value)


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "number": lambda v: _kind(v) == "number",
    "string": lambda v: _kind(v) == "string",
    "boolean": lambda v: _kind(v) == "boolean",
    "date": lambda v: _kind(v) == "date",
    "time": lambda v: _kind(v) == "time",
    "date and time": lambda v: _kind(v) == "datetime",
    "dateTime": lambda v: _kind(v) == "datetime",
    "days and time duration": lambda v: _kind(v) == "dtd",
    "dayTimeDuration": lambda v: _kind(v) == "dtd",
    "years and months duration": lambda v: _kind(v) == "ymd",
    "yearMonthDuration": lambda v: _kind(v) == "ymd",
    "list": lambda v: _kind(v) == "list",
    "context": lambda v: _kind(v) == "context",
    "range": lambda v: _kind(v) == "range",
    "function": lambda v: _kind(v) == "function",
    "Any": lambda v: v is not None,
    "Null": lambda v: v is None,
}


def _property(value: Any, name: str) -> Any:
    k = _kind(value)
    if k in ("date", "datetime"):
        if name in ("year", "month", "day"):
            return Decimal(getattr(value, name))
        if name == "weekday":
            return Decimal(value.isoweekday())
    if k in ("datetime", "time"):
        if name in ("hour", "minute", "second"):
            return Decimal(getattr(value, name))
        if name == "time offset":
            return value.utcoffset()
        if name == "timezone":
            return getattr(value.tzinfo, "key", None)
    if k == "dtd":
        total = abs(value)
        sign = -1 if value < timedelta(0) else 1
        parts = {
            "days": total.days,
            "hours": total.seconds // 3600,
            "minutes": total.seconds % 3600 // 60,
            "seconds": total.seconds % 60,
        }
        if name in parts:
            return Decimal(sign * parts[name])
    if k == "ymd":
        if name == "years":
            return Decimal(value.years)
        if name == "months":
            return Decimal(value.months)
    if k == "range":
        mapping = {
            "start": value.start,
            "end": value.end,
            "start included": value.start_included,
            "end included": value.end_included,
        }
        return mapping.get(name)
    return None


def _path(value: Any, name: str) -> Any:
    k = _kind(value)
    if k == "context":
        return value.get(name)
    if k == "list":
        return [_path(v, name) for v in value]
    if k == "null":
        return None
    return _property(value, name)


class _NullDomain(Exception):
    pass


def _and(a: Any, b: Any) -> bool | None:
    a, b = _to_bool(a), _to_bool(b)
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a: Any, b: Any) -> bool | None:
    a, b = _to_bool(a), _to_bool(b)
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _lt(a: Any, b: Any) -> bool | None:
    c = _compare(a, b)
    return None if c is None else c < 0


def _le(a: Any, b: Any) -> bool | None:
    c = _compare(a, b)
    return None if c is None else c <= 0


def _gt(a: Any, b: Any) -> bool | None:
    c = _compare(a, b)
    return None if c is None else c > 0


def _ge(a: Any, b: Any) -> bool | None:
    c = _compare(a, b)
    return None if c is None else c >= 0


def _ne(a: Any, b: Any) -> bool | None:
    e = feel_equal(a, b)
    return None if e is None else not e


_COMPARATORS: dict[str, Callable[[Any, Any], bool | None]] = {
    "<": _lt,
    "<=": _le,
    ">": _gt,
    ">=": _ge,
    "=": feel_equal,
    "!=": _ne,
}
