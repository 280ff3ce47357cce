"""Built-in functions on booleans, lists and numbers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import ROUND_FLOOR, Decimal, DecimalException
from typing import Any

from engine.dialect.feel.functions_text import _int_arg, _is_num, _list_arg
from engine.dialect.feel.limits import FEEL_DECIMAL_CONTEXT, _budget
from engine.dialect.feel.operators import _compare, _kind, feel_equal
from engine.dialect.feel.values import YearsMonthsDuration


def _b_not(value: Any) -> Any:
    return (not value) if type(value) is bool else None


def _b_list_contains(items: Any, element: Any) -> Any:
    if type(items) is not list:
        return None
    _budget().tick(len(items))
    return any(feel_equal(v, element) is True for v in items)


def _b_count(items: Any) -> Any:
    return Decimal(len(items)) if type(items) is list else None


def _extreme(values: list | None, want: int) -> Any:
    if not values:
        return None
    _budget().tick(len(values))
    best = values[0]
    for v in values[1:]:
        c = _compare(v, best)
        if c is None:
            return None
        if c == want:
            best = v
    if len(values) == 1 and _compare(best, best) is None:
        return None
    return best


def _b_min(*args: Any) -> Any:
    return _extreme(_list_arg(args), -1)


def _b_max(*args: Any) -> Any:
    return _extreme(_list_arg(args), 1)


def _numbers(args: tuple) -> list[Decimal] | None:
    values = _list_arg(args)
    if values is None:
        return None
    _budget().tick(len(values))
    if any(type(v) is not Decimal for v in values):
        return None
    return values


def _b_sum(*args: Any) -> Any:
    values = _numbers(args)
    if not values:
        return None
    total = Decimal(0)
    for v in values:
        total += v
    return total


def _b_product(*args: Any) -> Any:
    values = _numbers(args)
    if not values:
        return None
    total = Decimal(1)
    for v in values:
        total *= v
    return total


def _b_mean(*args: Any) -> Any:
    values = _numbers(args)
    if not values:
        return None
    return _b_sum(values) / len(values)


def _b_median(*args: Any) -> Any:
    values = _numbers(args)
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    if len(s) % 2:
        return s[mid]
    return (s[mid - 1] + s[mid]) / 2


def _b_stddev(*args: Any) -> Any:
    values = _numbers(args)
    if not values or len(values) < 2:
        return None
    mean = _b_mean(values)
    var = sum(((v - mean) ** 2 for v in values), Decimal(0)) / (len(values) - 1)
    return var.sqrt()


def _b_mode(*args: Any) -> Any:
    values = _numbers(args)
    if values is None:
        return None
    counts: dict[Decimal, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    if not counts:
        return []
    top = max(counts.values())
    return sorted(v for v, c in counts.items() if c == top)


def _b_all(*args: Any) -> Any:
    values = _list_arg(args)
    if values is None:
        return None
    _budget().tick(len(values))
    result: bool | None = True
    for v in values:
        if v is False:
            return False
        if v is not True:
            result = None
    return result


def _b_any(*args: Any) -> Any:
    values = _list_arg(args)
    if values is None:
        return None
    _budget().tick(len(values))
    result: bool | None = False
    for v in values:
        if v is True:
            return True
        if v is not False:
            result = None
    return result


def _position(items: list, pos: Any) -> int | None:
    p = _int_arg(pos)
    if p is None or p == 0 or abs(p) > len(items):
        return None
    return p - 1 if p > 0 else len(items) + p


def _b_sublist(items: Any, start: Any, length: Any = None) -> Any:
    if type(items) is not list:
        return None
    idx = _position(items, start)
    if idx is None:
        return None
    if length is None:
        return items[idx:]
    n = _int_arg(length)
    if n is None or n < 0 or idx + n > len(items):
        return None
    return items[idx : idx + n]


def _b_append(items: Any, *new: Any) -> Any:
    if type(items) is not list:
        return None
    _budget().items(len(items) + len(new), "append()")
    return items + list(new)


def _b_concatenate(*lists: Any) -> Any:
    if any(type(part) is not list for part in lists):
        return None
    _budget().items(sum(len(part) for part in lists), "concatenate()")
    result: list = []
    for part in lists:
        result.extend(part)
    return result


def _b_insert_before(items: Any, position: Any, new_item: Any) -> Any:
    if type(items) is not list:
        return None
    idx = _position(items, position)
    if idx is None:
        return None
    _budget().items(len(items) + 1, "insert before()")
    return items[:idx] + [new_item] + items[idx:]


def _b_remove(items: Any, position: Any) -> Any:
    if type(items) is not list:
        return None
    idx = _position(items, position)
    if idx is None:
        return None
    _budget().tick(len(items))
    return items[:idx] + items[idx + 1 :]


def _b_reverse(items: Any) -> Any:
    if type(items) is not list:
        return None
    _budget().tick(len(items))
    return list(reversed(items))


def _b_index_of(items: Any, match: Any) -> Any:
    if type(items) is not list:
        return None
    _budget().tick(len(items))
    return [Decimal(i + 1) for i, v in enumerate(items) if feel_equal(v, match) is True]


def _distinct(values: Iterable[Any]) -> list:
    budget = _budget()
    result: list = []
    for v in values:
        budget.tick(len(result) + 1)
        if not any(feel_equal(v, r) is True for r in result):
            result.append(v)
    return result


def _b_union(*lists: Any) -> Any:
    joined = _b_concatenate(*lists)
    return None if joined is None else _distinct(joined)


def _b_distinct_values(items: Any) -> Any:
    return _distinct(items) if type(items) is list else None


def _b_flatten(items: Any) -> Any:
    if type(items) is not list:
        return None
    result: list = []
    budget = _budget()

    def walk(values: list) -> None:
        budget.tick(len(values) + 1)
        for v in values:
            if type(v) is list:
                walk(v)
            else:
                result.append(v)
        budget.items(len(result), "flatten()", counted=False)

    walk(items)
    return result


def _scale_arg(scale: Any) -> int | None:
    if not _is_num(scale):
        return None
    s = int(scale)
    if not -6111 <= s <= 6176:
        return None
    return s


_OMITTED = object()


def _rounder(mode: str, default_scale: bool) -> Callable[..., Any]:
    def fn(n: Any, scale: Any = _OMITTED) -> Any:
        if not _is_num(n):
            return None
        if scale is _OMITTED and default_scale:
            s = 0
        else:
            s = _scale_arg(scale)
            if s is None:
                return None
        if n.as_tuple().exponent >= -s:  # type: ignore[operator]
            return n  # already has no more than ``s`` decimals
        try:
            result = n.quantize(Decimal(1).scaleb(-s), rounding=mode, context=FEEL_DECIMAL_CONTEXT)
        except DecimalException:
            return None
        return result + 0 if result == 0 else result

    return fn


def _b_abs(n: Any) -> Any:
    k = _kind(n)
    if k in ("number", "dtd"):
        return abs(n)
    if k == "ymd":
        return YearsMonthsDuration(abs(n.total_months))
    return None


def _b_modulo(dividend: Any, divisor: Any) -> Any:
    if not _is_num(dividend) or not _is_num(divisor) or divisor == 0:
        return None
    return dividend - divisor * (dividend / divisor).to_integral_value(rounding=ROUND_FLOOR)


def _b_sqrt(n: Any) -> Any:
    return n.sqrt() if _is_num(n) and n >= 0 else None


def _b_log(n: Any) -> Any:
    return n.ln() if _is_num(n) and n > 0 else None


def _b_exp(n: Any) -> Any:
    return n.exp() if _is_num(n) else None


def _b_odd(n: Any) -> Any:
    i = _int_arg(n)
    return None if i is None else i % 2 == 1


def _b_even(n: Any) -> Any:
    i = _int_arg(n)
    return None if i is None else i % 2 == 0
