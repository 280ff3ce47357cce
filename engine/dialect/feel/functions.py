"""Built-in functions on dates, times and contexts, and the registry of all built-ins."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
)
from typing import Any

from engine.dialect.feel.functions_lists import (
    _b_abs,
    _b_all,
    _b_any,
    _b_append,
    _b_concatenate,
    _b_count,
    _b_distinct_values,
    _b_even,
    _b_exp,
    _b_flatten,
    _b_index_of,
    _b_insert_before,
    _b_list_contains,
    _b_log,
    _b_max,
    _b_mean,
    _b_median,
    _b_min,
    _b_mode,
    _b_modulo,
    _b_not,
    _b_odd,
    _b_product,
    _b_remove,
    _b_reverse,
    _b_sqrt,
    _b_stddev,
    _b_sublist,
    _b_sum,
    _b_union,
    _rounder,
)
from engine.dialect.feel.functions_text import (
    _b_matches,
    _b_number,
    _b_replace,
    _b_split,
    _b_string_join,
    _b_substring,
    _b_substring_after,
    _b_substring_before,
    _int_arg,
    _is_num,
    _str_fn,
)
from engine.dialect.feel.operators import _kind, feel_string
from engine.dialect.feel.values import (
    YearsMonthsDuration,
    _months_between,
    parse_date,
    parse_date_time,
    parse_duration,
    parse_time,
)


def _b_date(*args: Any) -> Any:
    if len(args) == 1:
        value = args[0]
        k = _kind(value)
        if k == "string":
            return parse_date(value)
        if k == "datetime":
            return value.date()
        if k == "date":
            return value
        return None
    y, m, d = (_int_arg(a) for a in args)
    if y is None or m is None or d is None:
        return None
    try:
        return date(y, m, d)
    except ValueError:
        return None


def _b_date_and_time(*args: Any) -> Any:
    if len(args) == 1:
        value = args[0]
        k = _kind(value)
        if k == "string":
            return parse_date_time(value)
        if k == "datetime":
            return value
        if k == "date":
            return datetime(value.year, value.month, value.day)
        return None
    d, t = args
    kd, kt = _kind(d), _kind(t)
    if kd not in ("date", "datetime") or kt != "time":
        return None
    return datetime.combine(d.date() if kd == "datetime" else d, t)


def _b_time(*args: Any) -> Any:
    if len(args) == 1:
        value = args[0]
        k = _kind(value)
        if k == "string":
            return parse_time(value)
        if k == "datetime":
            return value.timetz()
        if k == "time":
            return value
        if k == "date":
            return time(0, tzinfo=UTC)
        return None
    hour, minute, second = args[:3]
    offset = args[3] if len(args) > 3 else None
    h, m = _int_arg(hour), _int_arg(minute)
    if h is None or m is None or not _is_num(second):
        return None
    tz = None
    if offset is not None:
        if _kind(offset) != "dtd" or abs(offset) > timedelta(hours=18):
            return None
        tz = timezone(offset)
    whole = int(second)
    micro = int((second - whole) * 1000000)
    try:
        return time(h, m, whole, micro, tzinfo=tz)
    except ValueError:
        return None


def _b_duration(text: Any) -> Any:
    return parse_duration(text) if type(text) is str else None


def _b_ym_duration(start: Any, end: Any) -> Any:
    if _kind(start) not in ("date", "datetime") or _kind(end) not in ("date", "datetime"):
        return None
    return YearsMonthsDuration(_months_between(start, end))


def _b_now() -> datetime:
    return datetime.now().astimezone()


def _b_today() -> date:
    return date.today()


_DAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTH_NAMES = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def _date_fn(fn: Callable[[date], Any]) -> Callable[[Any], Any]:
    def wrapped(value: Any) -> Any:
        if _kind(value) not in ("date", "datetime"):
            return None
        return fn(value)

    return wrapped


def _b_get_value(context: Any, key: Any) -> Any:
    if type(context) is not dict or type(key) is not str:
        return None
    return context.get(key)


def _b_get_entries(context: Any) -> Any:
    if type(context) is not dict:
        return None
    return [{"key": k, "value": v} for k, v in context.items()]


def _b_context(entries: Any) -> Any:
    if type(entries) is dict:
        entries = [entries]
    if type(entries) is not list:
        return None
    result: dict[str, Any] = {}
    for e in entries:
        if type(e) is not dict or type(e.get("key")) is not str or "value" not in e or e["key"] in result:
            return None
        result[e["key"]] = e["value"]
    return result


def _b_context_put(context: Any, key: Any, value: Any) -> Any:
    if type(context) is not dict:
        return None
    if type(key) is str:
        return {**context, key: value}
    if type(key) is list and key and all(type(k) is str for k in key):
        if len(key) == 1:
            return {**context, key[0]: value}
        inner = context.get(key[0])
        if type(inner) is not dict:
            return None
        nested = _b_context_put(inner, key[1:], value)
        return None if nested is None else {**context, key[0]: nested}
    return None


def _b_context_merge(contexts: Any) -> Any:
    if type(contexts) is dict:
        contexts = [contexts]
    if type(contexts) is not list or any(type(c) is not dict for c in contexts):
        return None
    result: dict[str, Any] = {}
    for c in contexts:
        result.update(c)
    return result


def _b_string(value: Any) -> Any:
    return feel_string(value)


@dataclass(frozen=True)
class _Signature:
    params: tuple[str, ...]
    required: int
    variadic: bool
    impl: Callable[..., Any]

    def accepts_count(self, n: int) -> bool:
        return n >= self.required and (self.variadic or n <= len(self.params))

    def accepts_names(self, names: Iterable[str]) -> bool:
        names = set(names)
        if not names <= set(self.params):
            return False
        return all(p in names for p in self.params[: self.required])


def _safe(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapped(*args: Any) -> Any:
        try:
            return fn(*args)
        except (TypeError, ValueError, ArithmeticError, IndexError, KeyError, OverflowError, AttributeError):
            return None

    return wrapped


_BUILTINS: dict[str, list[_Signature]] = {}


def _builtin(name: str, params: str, impl: Callable[..., Any], *, required: int | None = None) -> None:
    names = tuple(p.strip() for p in params.split(",") if p.strip())
    variadic = bool(names) and names[-1].endswith("...")
    if variadic:
        names = names[:-1] + (names[-1][:-3],)
    req = len(names) if required is None else required
    if variadic and required is None:
        req = len(names) - 1
    _BUILTINS.setdefault(name, []).append(_Signature(names, req, variadic, _safe(impl)))


def _register_builtins() -> None:
    b = _builtin
    # conversion
    b("date", "from", _b_date)
    b("date", "year, month, day", _b_date)
    b("date and time", "from", _b_date_and_time)
    b("date and time", "date, time", _b_date_and_time)
    b("time", "from", _b_time)
    b("time", "hour, minute, second, offset", _b_time, required=3)
    b("duration", "from", _b_duration)
    b("years and months duration", "from, to", _b_ym_duration)
    b("number", "from, grouping separator, decimal separator", _b_number, required=1)
    b("number", "from, grouping sep, decimal sep", _b_number, required=1)
    b("string", "from", _b_string)
    # boolean
    b("not", "negand", _b_not)
    # strings
    b("substring", "string, start position, length", _b_substring, required=2)
    b("string length", "string", _str_fn(lambda s: Decimal(len(s))))
    b("upper case", "string", _str_fn(str.upper))
    b("lower case", "string", _str_fn(str.lower))
    b("substring before", "string, match", _str_fn(_b_substring_before))
    b("substring after", "string, match", _str_fn(_b_substring_after))
    b("contains", "string, match", _str_fn(lambda s, m: m in s))
    b("starts with", "string, match", _str_fn(lambda s, m: s.startswith(m)))
    b("ends with", "string, match", _str_fn(lambda s, m: s.endswith(m)))
    b("matches", "input, pattern, flags", _b_matches, required=2)
    b("replace", "input, pattern, replacement, flags", _b_replace, required=3)
    b("split", "string, delimiter", _b_split)
    b("string join", "list, delimiter", _b_string_join, required=1)
    # lists
    b("list contains", "list, element", _b_list_contains)
    b("count", "list", _b_count)
    for name, fn in (
        ("min", _b_min),
        ("max", _b_max),
        ("sum", _b_sum),
        ("mean", _b_mean),
        ("all", _b_all),
        ("any", _b_any),
        ("product", _b_product),
        ("median", _b_median),
        ("stddev", _b_stddev),
        ("mode", _b_mode),
    ):
        b(name, "list", fn)
        b(name, "c...", fn, required=1)
    b("sublist", "list, start position, length", _b_sublist, required=2)
    b("append", "list, item...", _b_append)
    b("concatenate", "list...", _b_concatenate)
    b("insert before", "list, position, newItem", _b_insert_before)
    b("remove", "list, position", _b_remove)
    b("reverse", "list", _b_reverse)
    b("index of", "list, match", _b_index_of)
    b("union", "list...", _b_union)
    b("distinct values", "list", _b_distinct_values)
    b("flatten", "list", _b_flatten)
    # numbers
    b("decimal", "n, scale", _rounder(ROUND_HALF_EVEN, False))
    b("floor", "n, scale", _rounder(ROUND_FLOOR, True), required=1)
    b("ceiling", "n, scale", _rounder(ROUND_CEILING, True), required=1)
    b("round up", "n, scale", _rounder(ROUND_UP, False))
    b("round down", "n, scale", _rounder(ROUND_DOWN, False))
    b("round half up", "n, scale", _rounder(ROUND_HALF_UP, False))
    b("round half down", "n, scale", _rounder(ROUND_HALF_DOWN, False))
    b("abs", "n", _b_abs)
    b("modulo", "dividend, divisor", _b_modulo)
    b("sqrt", "number", _b_sqrt)
    b("log", "number", _b_log)
    b("exp", "number", _b_exp)
    b("odd", "number", _b_odd)
    b("even", "number", _b_even)
    # dates
    b("now", "", _b_now)
    b("today", "", _b_today)
    b("day of year", "date", _date_fn(lambda d: Decimal(d.timetuple().tm_yday)))
    b("day of week", "date", _date_fn(lambda d: _DAY_NAMES[d.weekday()]))
    b("month of year", "date", _date_fn(lambda d: _MONTH_NAMES[d.month - 1]))
    b("week of year", "date", _date_fn(lambda d: Decimal(d.isocalendar()[1])))
    # contexts
    b("get value", "m, key", _b_get_value)
    b("get entries", "m", _b_get_entries)
    b("context", "entries", _b_context)
    b("context put", "context, key, value", _b_context_put)
    b("context put", "context, keys, value", _b_context_put)
    b("context merge", "contexts", _b_context_merge)


_register_builtins()

#: Names of the built-in functions.
BUILTIN_FUNCTIONS = frozenset(_BUILTINS) | {"is defined"}
