"""The execution object, the whitelisted methods of strings, lists, maps and date-times, and property access."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from engine.dialect.juel.joda import _JODA_METHODS, _instant_of, _millis
from engine.dialect.juel.limits import MAX_STRING_LENGTH, JuelEvaluationError, _tick
from engine.dialect.juel.operators import _compare, _same_value
from engine.dialect.juel.values import (
    _LONG_TEXT_RE,
    JodaDateTime,
    _describe,
    _to_long,
    _to_string,
    _type_name,
)

# --------------------------------------------------------------------------- execution context


@dataclass
class ExecutionContext:
    """The ``execution`` object of Camunda expressions (a read-only DelegateExecution).

    Supports ``execution.getVariable('x')`` (missing → null), ``hasVariable``,
    ``getVariables()``, ``getProcessBusinessKey()`` / ``processBusinessKey`` /
    ``businessKey``, ``getProcessInstanceId()`` / ``processInstanceId``,
    ``getCurrentActivityId()`` / ``currentActivityId`` / ``activityId``.
    """

    variables: Mapping[str, Any] = field(default_factory=dict)
    business_key: str | None = None
    process_instance_id: str | None = None
    activity_id: str | None = None

    juel_methods: ClassVar[Mapping[str, str]] = {
        "getVariable": "get_variable",
        "getVariableLocal": "get_variable",
        "hasVariable": "has_variable",
        "getVariables": "get_variables",
        "getProcessBusinessKey": "get_business_key",
        "getBusinessKey": "get_business_key",
        "getProcessInstanceId": "get_process_instance_id",
        "getCurrentActivityId": "get_activity_id",
        "getActivityId": "get_activity_id",
    }

    def get_variable(self, name: Any) -> Any:
        """The variable's value, or ``None`` when it is not set (as Camunda)."""
        return self.variables.get(_to_string(name))

    def has_variable(self, name: Any) -> bool:
        return _to_string(name) in self.variables

    def get_variables(self) -> dict[str, Any]:
        return dict(self.variables)

    def get_business_key(self) -> str | None:
        return self.business_key

    def get_process_instance_id(self) -> str | None:
        return self.process_instance_id

    def get_activity_id(self) -> str | None:
        return self.activity_id


# --------------------------------------------------------------------------- member whitelists


def _str_substring(text: str, begin: Any, end: Any = None) -> str:
    start = _to_long(begin)
    stop = len(text) if end is None else _to_long(end)
    if not 0 <= start <= stop <= len(text):
        raise JuelEvaluationError(
            f"substring({start}, {stop}) is out of range for a string of length {len(text)}")
    return text[start:stop]


def _str_concat(text: str, other: Any) -> str:
    addition = _to_string(other)
    _check_length(len(text) + len(addition))
    return text + addition


def _str_replace(text: str, old: Any, new: Any) -> str:
    old_s, new_s = _to_string(old), _to_string(new)
    count = text.count(old_s) if old_s else len(text) + 1
    _check_length(len(text) + count * (len(new_s) - len(old_s)))
    return text.replace(old_s, new_s)


def _check_length(length: int) -> None:
    if length > MAX_STRING_LENGTH:
        raise JuelEvaluationError(f"string result too long ({length} characters, limit {MAX_STRING_LENGTH})")


def _list_get(items: Any, index: Any) -> Any:
    position = _to_index(index)
    if not 0 <= position < len(items):
        raise JuelEvaluationError(f"index {position} is out of range for a list of size {len(items)}")
    return items[position]


def _index_of(items: Any, value: Any) -> int:
    for position, item in enumerate(items):
        _tick()
        if _same_value(item, value):
            return position
    return -1


def _date_time_millis(moment: datetime) -> int:
    return _millis(_instant_of(moment))


_STR_METHODS: dict[str, Callable[..., Any]] = {
    "length": len,
    "isEmpty": lambda s: len(s) == 0,
    "contains": lambda s, x: _to_string(x) in s,
    "startsWith": lambda s, x: s.startswith(_to_string(x)),
    "endsWith": lambda s, x: s.endswith(_to_string(x)),
    "toUpperCase": lambda s: s.upper(),
    "toLowerCase": lambda s: s.lower(),
    "trim": lambda s: s.strip(),
    "equals": lambda s, x: isinstance(x, str) and s == x,
    "equalsIgnoreCase": lambda s, x: isinstance(x, str) and s.casefold() == x.casefold(),
    "substring": _str_substring,
    "indexOf": lambda s, x: s.find(_to_string(x)),
    "lastIndexOf": lambda s, x: s.rfind(_to_string(x)),
    "concat": _str_concat,
    "replace": _str_replace,
    "toString": lambda s: s,
}
_LIST_METHODS: dict[str, Callable[..., Any]] = {
    "size": len,
    "isEmpty": lambda items: len(items) == 0,
    "contains": lambda items, x: _index_of(items, x) >= 0,
    "get": _list_get,
    "indexOf": _index_of,
}
_SET_METHODS: dict[str, Callable[..., Any]] = {
    "size": len,
    "isEmpty": lambda items: len(items) == 0,
    "contains": lambda items, x: any(_tick() or _same_value(item, x) for item in items),
}
_MAP_METHODS: dict[str, Callable[..., Any]] = {
    "size": len,
    "isEmpty": lambda m: len(m) == 0,
    "containsKey": lambda m, k: _hashable(k) and k in m,
    "containsValue": lambda m, v: any(_tick() or _same_value(item, v) for item in m.values()),
    "get": lambda m, k: m.get(k) if _hashable(k) else None,
    "getOrDefault": lambda m, k, d: m.get(k, d) if _hashable(k) else d,
    "keySet": lambda m: list(m.keys()),
    "values": lambda m: list(m.values()),
}
_DATETIME_METHODS: dict[str, Callable[..., Any]] = {
    "getTime": _date_time_millis,
    "before": lambda d, other: _compare("<", d, other),
    "after": lambda d, other: _compare(">", d, other),
    "toString": lambda d: d.isoformat(),
}

JUEL_METHOD_TABLES: Mapping[str, Mapping[str, Callable[..., Any]]] = {
    "string": _STR_METHODS,
    "list": _LIST_METHODS,
    "set": _SET_METHODS,
    "map": _MAP_METHODS,
    "date-time": _DATETIME_METHODS,
    "DateTime": _JODA_METHODS,
}
"""The methods expressions may call on built-in values, by value kind (documentation aid)."""


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


@functools.lru_cache(maxsize=256)
def _class_members(cls: type) -> tuple[dict[str, Callable[..., Any]], dict[str, str]]:
    """Whitelisted methods and properties a caller's class declares (private names refused)."""
    methods: dict[str, Callable[..., Any]] = {}
    for juel_name, attr in dict(getattr(cls, "juel_methods", None) or {}).items():
        if juel_name.startswith("_") or attr.startswith("_"):
            continue
        function = inspect.getattr_static(cls, attr, None)
        if callable(function):
            methods[juel_name] = getattr(cls, attr)
    properties = {
        juel_name: attr
        for juel_name, attr in dict(getattr(cls, "juel_properties", None) or {}).items()
        if not juel_name.startswith("_") and not attr.startswith("_")
    }
    return methods, properties


def _members(value: Any) -> tuple[Mapping[str, Callable[..., Any]], Mapping[str, str]]:
    if isinstance(value, str):
        return _STR_METHODS, {}
    if isinstance(value, Mapping):
        return _MAP_METHODS, {}
    if isinstance(value, (list, tuple)):
        return _LIST_METHODS, {}
    if isinstance(value, (set, frozenset)):
        return _SET_METHODS, {}
    if isinstance(value, datetime):
        return _DATETIME_METHODS, {}
    if isinstance(value, JodaDateTime):
        return _JODA_METHODS, {}
    return _class_members(type(value))


def _invoke(function: Callable[..., Any], target: Any, args: list[Any], label: str) -> Any:
    try:
        inspect.signature(function).bind(target, *args)
    except TypeError:
        raise JuelEvaluationError(
            f"wrong number of arguments for {label}: got {len(args)}") from None
    except ValueError:  # no signature available: let the call decide
        pass
    try:
        return function(target, *args)
    except JuelEvaluationError:
        raise
    except (ValueError, TypeError, ArithmeticError, LookupError, InvalidOperation) as exc:
        raise JuelEvaluationError(f"{label} failed: {exc}") from exc


def _available(names: Iterable[str]) -> str:
    listed = sorted(names)
    return f" (available: {', '.join(listed)})" if listed else ""


def _to_index(key: Any) -> int:
    if isinstance(key, bool) or key is None:
        raise JuelEvaluationError(f"cannot use {_describe(key)} as a list index")
    if isinstance(key, (int, float, Decimal)):
        return int(key)
    if isinstance(key, str) and _LONG_TEXT_RE.fullmatch(key.strip()):
        return int(key.strip())
    raise JuelEvaluationError(f"cannot use {_describe(key)} as a list index")


def _get_property(base: Any, name: str) -> Any:
    if base is None:
        return None
    if isinstance(base, Mapping):
        return base.get(name)
    if isinstance(base, (list, tuple)):
        if _LONG_TEXT_RE.fullmatch(name):
            return _get_index(base, name)
        raise JuelEvaluationError(f"a list has no property '{name}' (did you mean {name}()?)"
                                  if name in _LIST_METHODS else f"a list has no property '{name}'")
    if name.startswith("_"):
        raise JuelEvaluationError(f"access to '{name}' is not allowed")
    methods, properties = _members(base)
    if name in properties:
        return getattr(base, properties[name])
    capitalised = name[:1].upper() + name[1:]
    for getter in ("get" + capitalised, "is" + capitalised):
        if getter in methods:
            return _invoke(methods[getter], base, [], f"{getter}()")
    raise JuelEvaluationError(
        f"property '{name}' is not accessible on {_type_name(base)}"
        + _available(list(properties) + [m for m in methods if m.startswith(("get", "is"))]))


def _get_index(base: Any, key: Any) -> Any:
    if base is None:
        return None
    if isinstance(base, Mapping):
        if not _hashable(key):
            raise JuelEvaluationError(f"cannot use {_describe(key)} as a map key")
        return base.get(key)
    if isinstance(base, (list, tuple)):
        position = _to_index(key)
        return base[position] if 0 <= position < len(base) else None
    if isinstance(key, str):
        return _get_property(base, key)
    raise JuelEvaluationError(f"cannot index {_type_name(base)} with {_describe(key)}")


def _call_method(base: Any, name: str, args: list[Any]) -> Any:
    if base is None:
        raise JuelEvaluationError(f"cannot call method '{name}()' on null")
    if name.startswith("_"):
        raise JuelEvaluationError(f"access to '{name}' is not allowed")
    methods, _ = _members(base)
    function = methods.get(name)
    if function is None:
        raise JuelEvaluationError(
            f"method '{name}()' is not available on {_type_name(base)}" + _available(methods))
    return _invoke(function, base, args, f"{_type_name(base)}.{name}()")
