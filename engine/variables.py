"""Process variables, the one place for them: the checks every command applies to values from
outside, the Camunda type of a value, the JSON-safe form (history, the variables table, the APIs),
Camunda 7's typed values both ways (/engine-rest, the external-task API) and its dates.

On the wire a variable is ``{"value": …, "type": "String", "valueInfo": {…}}``; dates are text in
Camunda's ``yyyy-MM-dd'T'HH:mm:ss.SSSZ`` form (``2026-03-02T09:00:00.000+0800``). Inside the
engine a variable is a plain Python value (str, int, float, bool, None, aware datetime, dict,
list). Whatever a client can get wrong is an ``InvalidInput`` naming the variable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime, time, tzinfo
from decimal import Decimal
from typing import Any

from engine.errors import InvalidInput

MAX_VARIABLE_NAME = 255
INTEGER_RANGE = (-(2**31), 2**31 - 1)
SHORT_RANGE = (-(2**15), 2**15 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)
MAX_NESTING = 32
# Types a client may send; the key is the lower-case name (Camunda accepts "string" and "String").
SUPPORTED_TYPES = ("String", "Integer", "Short", "Long", "Double", "Boolean", "Date", "Null", "Json", "Object")
UNSUPPORTED_TYPES = ("Bytes", "File", "Xml", "Number")
# camunda:formData field types → Camunda value types
FORM_FIELD_TYPES = {"string": "String", "long": "Long", "boolean": "Boolean", "date": "Date", "enum": "String"}


# ------------------------------------------------------------------------ types, JSON ------
def variable_type(value: Any) -> str:
    """The Camunda type name of a value (String, Integer, Long, Double, Boolean, Date, Json, Null)."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer" if INTEGER_RANGE[0] <= value <= INTEGER_RANGE[1] else "Long"
    if isinstance(value, float | Decimal):
        return "Double"
    if isinstance(value, datetime | date):
        return "Date"
    if isinstance(value, str):
        return "String"
    return "Json"


type_of = variable_type


def json_safe(value: Any, *, whole_decimals: bool = False) -> Any:
    """The value as JSON can hold it: dates as ISO text, decimals as numbers (a whole decimal as
    an integer with `whole_decimals`, as the APIs show decision results), anything else as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        if whole_decimals and value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v, whole_decimals=whole_decimals) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v, whole_decimals=whole_decimals) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


# ---------------------------------------------------------------------------- checks -------
def plain_problem(value: Any, depth: int = 0) -> tuple[str, Any] | None:
    """What keeps JSON data from being stored (None when nothing does): ("depth", None) when it
    is nested more than MAX_NESTING levels deep, ("number", the number) for NaN or infinity (no
    database column takes them), ("nul", the text) for text with a NUL character (keys included).
    The APIs word the problem each in their own way."""
    if depth > MAX_NESTING:
        return ("depth", None)
    if isinstance(value, float) and not math.isfinite(value):
        return ("number", value)
    if isinstance(value, str) and "\x00" in value:
        return ("nul", value)
    if isinstance(value, dict):
        for k, v in value.items():
            problem = plain_problem(k, depth + 1) or plain_problem(v, depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        for v in value:
            problem = plain_problem(v, depth + 1)
            if problem:
                return problem
    return None

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


# --------------------------------------------------------------------------------- dates ------
def format_date(value: datetime | date | str | None, tz: tzinfo) -> str | None:
    """A moment as Camunda writes it, in the hospital's zone: 2026-03-02T09:00:00.000+0800."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(), tz)
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    local = value.astimezone(tz)
    return f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond // 1000:03d}{local:%z}"


def parse_date(text: Any, tz: tzinfo, *, what: str = "date") -> datetime:
    """Camunda's date text (and the ISO 8601 forms around it) as an aware datetime; a time
    without an offset is the hospital's local time."""
    if not isinstance(text, str):
        raise InvalidInput(f"{what}: a date must be text like 2026-03-02T09:00:00.000+0800, not {text!r}")
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
        moment.astimezone(tz)  # out of range near year 1 or 9999
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"{what}: '{text}' is not a date of the form yyyy-MM-dd'T'HH:mm:ss.SSSZ "
                           "(e.g. 2026-03-02T09:00:00.000+0800)") from exc
    return moment


# ------------------------------------------------------------------------- wire → Python -----
def _check_plain(value: Any, name: str) -> Any:
    """JSON data as Python without NaN/Infinity (which no database column takes) or deep nesting."""
    problem = plain_problem(value)
    if problem is not None:
        kind, offending = problem
        if kind == "depth":
            message = f"variable '{name}': nested more than {MAX_NESTING} levels deep"
        elif kind == "number":
            message = f"variable '{name}': {offending} is not a number JSON can hold"
        else:
            message = f"variable '{name}': text must not contain NUL characters"
        raise InvalidInput(message, field=name)
    return _string_keys(value)


def _string_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _string_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_string_keys(v) for v in value]
    return value


def _integer(value: Any, name: str, type_name: str, bounds: tuple[int, int]) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit() and len(value.strip()) <= 25:
        number = int(value.strip())
    if number is None or not bounds[0] <= number <= bounds[1]:
        raise InvalidInput(f"Cannot convert value '{value}' of type '{type_name}' of variable '{name}' "
                           f"to a whole number between {bounds[0]} and {bounds[1]}", field=name)
    return number


def _double(value: Any, name: str) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise InvalidInput(f"Cannot convert value '{value}' of type 'Double' of variable '{name}' to a number",
                           field=name)
    return number


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidInput(f"Cannot convert value '{value}' of type 'Boolean' of variable '{name}' "
                       "to true or false", field=name)


def _json(value: Any, name: str, type_name: str) -> Any:
    if isinstance(value, dict | list):
        return _check_plain(value, name)
    if not isinstance(value, str):
        raise InvalidInput(f"variable '{name}': a value of type '{type_name}' must be JSON text or null",
                           field=name)
    try:
        return _check_plain(json.loads(value, parse_constant=_no_constant), name)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"variable '{name}': the value of type '{type_name}' is not valid JSON", field=name) \
            from exc


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def from_typed(name: str, typed: Any, tz: tzinfo) -> Any:
    """One variable from its Camunda form ``{"value", "type", "valueInfo"}`` to a Python value."""
    if not isinstance(typed, Mapping):
        raise InvalidInput(f"variable '{name}' must be an object like {{\"value\": …, \"type\": \"String\"}}",
                           field=name)
    value = typed.get("value")
    type_name = typed.get("type")
    value_info = typed.get("valueInfo")
    if value_info is not None and not isinstance(value_info, Mapping):
        raise InvalidInput(f"variable '{name}': valueInfo must be an object", field=name)
    if type_name is None:  # untyped: the JSON value as it is
        return _check_plain(value, name)
    if not isinstance(type_name, str):
        raise InvalidInput(f"variable '{name}': type must be text such as \"String\"", field=name)
    kind = type_name.strip().lower()
    if kind in {t.lower() for t in UNSUPPORTED_TYPES} or kind not in {t.lower() for t in SUPPORTED_TYPES}:
        raise InvalidInput(f"Unsupported value type '{type_name}' of variable '{name}' (this service takes "
                           f"{', '.join(SUPPORTED_TYPES)})", field=name)
    if value is None or kind == "null":
        return None
    if kind == "string":
        if isinstance(value, dict | list):
            raise InvalidInput(f"variable '{name}': a String value must be text", field=name)
        return _check_plain(_boolean_text(value) if isinstance(value, bool) else str(value), name)
    if kind == "integer":
        return _integer(value, name, type_name, INTEGER_RANGE)
    if kind == "short":
        return _integer(value, name, type_name, SHORT_RANGE)
    if kind == "long":
        return _integer(value, name, type_name, LONG_RANGE)
    if kind == "double":
        return _double(value, name)
    if kind == "boolean":
        return _boolean(value, name)
    if kind == "date":
        return parse_date(value, tz, what=f"variable '{name}'")
    if kind == "object":
        data_format = (value_info or {}).get("serializationDataFormat")
        if data_format not in ("application/json", None):
            raise InvalidInput(f"variable '{name}': objects serialized as '{data_format}' are not supported "
                               "(use application/json)", field=name)
    return _json(value, name, type_name)


def _boolean_text(value: bool) -> str:
    return "true" if value else "false"


def variables_from_camunda(raw: Any, tz: tzinfo, *, what: str = "variables") -> dict[str, Any]:
    """A Camunda variables object (name → typed value) as plain Python values; null is none."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{what} must be an object of name → {{\"value\": …, \"type\": …}}", field=what)
    return {_check_plain(str(name), str(name)): from_typed(str(name), typed, tz) for name, typed in raw.items()}


# ------------------------------------------------------------------------- Python → wire -----
def to_typed(value: Any, tz: tzinfo, type_name: str | None = None) -> dict[str, Any]:
    """A value in Camunda's form. `type_name` is the type the engine recorded, if any."""
    type_name = type_name or variable_type(value)
    if type_name == "Date":
        out = format_date(value, tz) if isinstance(value, datetime | date | str) else value
    elif type_name == "Json":
        out = None if value is None else json.dumps(json_safe(value, whole_decimals=True), ensure_ascii=False)
    elif type_name == "Double" and isinstance(value, Decimal):
        out = float(value)
    elif type_name in ("Integer", "Long", "Short") and isinstance(value, Decimal | float):
        out = int(value)
    else:
        out = json_safe(value, whole_decimals=True)
    return {"type": type_name, "value": out, "valueInfo": {}}


def variables_to_camunda(stored: Mapping[str, Mapping[str, Any]], tz: tzinfo) -> dict[str, dict[str, Any]]:
    """The engine's variables (name → {"value", "type"}) in Camunda's form."""
    return {name: to_typed(v.get("value"), tz, v.get("type")) for name, v in stored.items()}


def values_to_camunda(values: Mapping[str, Any], tz: tzinfo,
                      types: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Plain values (a decision's outputs, a form's defaults) in Camunda's form."""
    types = types or {}
    return {name: to_typed(value, tz, types.get(name)) for name, value in values.items()}


DMN_TYPE_REFS = {"string": "String", "boolean": "Boolean", "integer": "Integer", "long": "Long",
                 "double": "Double", "date": "Date"}


def dmn_type(type_ref: str | None, value: Any) -> str:
    """The Camunda type of a decision output: from its typeRef, else from the value."""
    if value is None:
        return "Null"
    return DMN_TYPE_REFS.get((type_ref or "").strip().lower()) or variable_type(value)
