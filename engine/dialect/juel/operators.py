"""Arithmetic, equality and ordering of EL values."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from engine.dialect.juel.limits import JuelEvaluationError
from engine.dialect.juel.values import (
    _ADD_HINT,
    JodaDateTime,
    _cannot,
    _check_long,
    _describe,
    _is_float_text,
    _is_int,
    _to_bool,
    _to_decimal,
    _to_double,
    _to_long,
    _to_string,
)


def _plain(value: Any) -> Any:
    """Joda-style date-times compare and equal as their instant."""
    return value.to_datetime() if isinstance(value, JodaDateTime) else value


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (str, Mapping, list, tuple, set, frozenset)):
        return len(value) == 0
    return False


# --------------------------------------------------------------------------- operators


def _numeric_kind(a: Any, b: Any) -> str | None:
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return "decimal"
    if isinstance(a, float) or isinstance(b, float):
        return "double"
    if _is_int(a) or _is_int(b):
        return "long"
    return None


def _arith(op: str, a: Any, b: Any) -> Any:
    a, b = _plain(a), _plain(b)
    if a is None and b is None:
        return 0
    decimal = isinstance(a, Decimal) or isinstance(b, Decimal)
    floating = (isinstance(a, float) or isinstance(b, float)
                or _is_float_text(a) or _is_float_text(b))
    if op == "/":
        if decimal:
            x, y = _to_decimal(a, _ADD_HINT), _to_decimal(b, _ADD_HINT)
            if y == 0:
                raise JuelEvaluationError("division by zero")
            return x / y
        fx, fy = _to_double(a, _ADD_HINT), _to_double(b, _ADD_HINT)
        if fy == 0:
            raise JuelEvaluationError("division by zero")
        return fx / fy
    if decimal:
        x, y = _to_decimal(a, _ADD_HINT), _to_decimal(b, _ADD_HINT)
        if op == "%":
            if y == 0:
                raise JuelEvaluationError("modulo by zero")
            return x % y  # Decimal's remainder takes the dividend's sign, like Java
        return x + y if op == "+" else x - y if op == "-" else x * y
    if floating:
        fx, fy = _to_double(a, _ADD_HINT), _to_double(b, _ADD_HINT)
        if op == "%":
            if fy == 0:
                raise JuelEvaluationError("modulo by zero")
            return math.fmod(fx, fy)
        return fx + fy if op == "+" else fx - fy if op == "-" else fx * fy
    ix, iy = _to_long(a, _ADD_HINT), _to_long(b, _ADD_HINT)
    if op == "%":
        if iy == 0:
            raise JuelEvaluationError("modulo by zero")
        remainder = abs(ix) % abs(iy)
        return -remainder if ix < 0 else remainder
    return _check_long(ix + iy if op == "+" else ix - iy if op == "-" else ix * iy)


def _negate(value: Any) -> Any:
    value = _plain(value)
    if value is None:
        return 0
    if isinstance(value, bool):
        raise _cannot(value, "a number")
    if isinstance(value, int):
        return _check_long(-value)
    if isinstance(value, (float, Decimal)):
        return -value
    if isinstance(value, str):
        if _is_float_text(value):
            return -_to_double(value)
        return _check_long(-_to_long(value))
    raise _cannot(value, "a number")


def _numeric_pair(kind: str, a: Any, b: Any) -> tuple[Any, Any]:
    if kind == "decimal":
        return _to_decimal(a), _to_decimal(b)
    if kind == "double" or _is_float_text(a) or _is_float_text(b):
        return _to_double(a), _to_double(b)
    return _to_long(a), _to_long(b)


def _equals(a: Any, b: Any) -> bool:
    a, b = _plain(a), _plain(b)
    if a is b:
        return True
    if a is None or b is None:
        return False
    kind = _numeric_kind(a, b)
    if kind is not None:
        x, y = _numeric_pair(kind, a, b)
        return x == y
    if isinstance(a, bool) or isinstance(b, bool):
        return _to_bool(a) == _to_bool(b)
    if isinstance(a, str) or isinstance(b, str):
        return _to_string(a) == _to_string(b)
    return bool(a == b)


def _same_value(a: Any, b: Any) -> bool:
    """Java ``equals`` for collection membership: no cross-type coercion, booleans apart."""
    a, b = _plain(a), _plain(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda x, y: x < y,
    ">": lambda x, y: x > y,
    "<=": lambda x, y: x <= y,
    ">=": lambda x, y: x >= y,
}


def _compare(op: str, a: Any, b: Any) -> bool:
    a, b = _plain(a), _plain(b)
    if a is None and b is None:
        return op in ("<=", ">=")
    if a is None or b is None:
        return False
    kind = _numeric_kind(a, b)
    if kind is not None:
        x, y = _numeric_pair(kind, a, b)
    elif isinstance(a, str) or isinstance(b, str):
        x, y = _to_string(a), _to_string(b)
    elif (isinstance(a, bool) and isinstance(b, bool)) or (
        isinstance(a, datetime) and isinstance(b, datetime)
    ) or (
        isinstance(a, date) and isinstance(b, date)
        and not isinstance(a, datetime) and not isinstance(b, datetime)
    ):
        x, y = a, b
    else:
        raise JuelEvaluationError(f"cannot compare {_describe(a)} with {_describe(b)} using {op!r}")
    try:
        return _ORDERINGS[op](x, y)
    except TypeError as exc:  # e.g. naive against aware date-time
        raise JuelEvaluationError(f"cannot compare {_describe(a)} with {_describe(b)}: {exc}") from exc


# --------------------------------------------------------------------------- Joda-style DateTime
