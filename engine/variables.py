"""Process variables: the checks every command applies to values from outside, their Camunda type
names, and their JSON-safe form (history, the variables table, the APIs)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from engine.errors import InvalidInput

MAX_VARIABLE_NAME = 255


def variable_type(value: Any) -> str:
    """The Camunda type name of a value (String, Integer, Long, Double, Boolean, Date, Json, Null)."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Long" if abs(value) > 2**31 - 1 else "Integer"
    if isinstance(value, float | Decimal):
        return "Double"
    if isinstance(value, datetime):
        return "Date"
    if isinstance(value, date):
        return "Date"
    if isinstance(value, str):
        return "String"
    return "Json"


def json_safe(value: Any) -> Any:
    """The value as JSON can hold it: dates as ISO text, decimals as numbers, anything else as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def check_value(name: str, value: Any, depth: int = 0) -> None:
    """Values must be storable as JSON text on every database (no NUL characters, bounded nesting)."""
    if depth > 32:
        raise InvalidInput(f"variable '{name}' is nested too deeply")
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"variable '{name}' contains a NUL character")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput(f"variable '{name}' contains a lone surrogate: not valid Unicode text") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or "\x00" in k:
                raise InvalidInput(f"variable '{name}' has an invalid key {k!r}")
            check_value(name, v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            check_value(name, v, depth + 1)
    elif isinstance(value, float) and math.isnan(value):
        raise InvalidInput(f"variable '{name}' is not a number (NaN)")


def check_variables(variables: Mapping[str, Any] | None) -> dict[str, Any]:
    """Variables from outside (a form, an API call, a message) as a plain dict, or InvalidInput."""
    if variables is None:
        return {}
    if not isinstance(variables, Mapping):
        raise InvalidInput("variables must be an object of name → value")
    out = {}
    for name, value in variables.items():
        if not isinstance(name, str) or not name or len(name) > MAX_VARIABLE_NAME or "\x00" in name:
            raise InvalidInput(f"variable name {name!r} is not valid")
        check_value(name, value)
        if name.startswith("_"):
            raise InvalidInput(f"variable name '{name}' must not start with '_'")
        out[name] = value
    return out
