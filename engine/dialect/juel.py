"""Camunda 7 ``${…}`` expressions: a safe, bounded JUEL subset.

Camunda Modeler users write JUEL (the Java Unified Expression Language, EL 2.2) in
sequence-flow conditions, ``camunda:assignee``, ``camunda:candidateGroups``,
``camunda:dueDate``, timers, multi-instance collections and input/output mappings.
This module compiles such text into an AST once (LRU-cached) and evaluates it
against a mapping of process variables.  User text is never handed to Python's
``eval``/``exec``; attribute access on Python objects is limited to explicit
whitelists and names starting with ``__`` are refused at compile time.

Why a hand-written recursive-descent parser instead of lark
-----------------------------------------------------------
* Where a ``${`` part ends depends on tokenisation (``${a == '}'}`` closes at the
  second brace), so the template scanner must cooperate with the expression lexer.
  A hand-written lexer simply reports where the expression ends.
* Error messages name the exact character position and the offending text in the
  *whole template* (``unexpected ')' at position 7 in '${a + )}'``), which is what
  a modeller needs to fix a Camunda model.
* Resource bounds are explicit: the parser counts nesting depth and refuses more
  than :data:`MAX_NESTING_DEPTH` levels long before Python's recursion limit, and
  left-associative operator chains (``a + b + c + …``) become one flat node, so
  evaluation depth follows the syntactic nesting and never the input length.  With
  lark the LALR parse itself is iterative, but its tree transformers recurse over
  the tree, so the same guards would be needed on top of the grammar.
* The grammar is small (seven precedence levels, EL 2.2 section 1.17) and fits in
  about 200 readable lines.

Supported
---------
* Templates: literal text with any number of ``${…}`` or ``#{…}`` parts (both
  delimiters are accepted and mean the same; JUEL's "deferred" distinction has no
  meaning here).  ``\\${`` and ``\\#{`` in literal text stand for a literal ``${``
  / ``#{``.  A template that is one expression, optionally surrounded by
  whitespace (Camunda trims XML text), evaluates to the raw value; otherwise every
  part is coerced to a string and concatenated.
* Literals: ``'…'`` and ``"…"`` strings (escapes ``\\\\``, ``\\'``, ``\\"`` as in
  JUEL; any other escape is a syntax error), integers, floats, ``true``,
  ``false``, ``null``.
* Operators, lowest to highest precedence: ``a ? b : c``; ``||``/``or``;
  ``&&``/``and``; ``==``/``eq``, ``!=``/``ne``; ``<``/``lt``, ``>``/``gt``,
  ``<=``/``le``, ``>=``/``ge``; ``+``, ``-``; ``*``, ``/``/``div``, ``%``/``mod``;
  unary ``-``, ``!``/``not``, ``empty``; then ``a.b``, ``a['b']``, ``a[0]``,
  ``a.m(args)`` and ``f(args)``.  ``&&``, ``||`` and ``?:`` short-circuit.
* Variables: missing ones raise :class:`JuelEvaluationError` ("Cannot resolve
  identifier 'x'", like Camunda's PropertyNotFoundException).  ``execution``
  resolves to the :class:`ExecutionContext` passed by the caller.
* Property/index access on dicts (missing key → null), lists/tuples (out of range
  or negative index → null, as JUEL's ListELResolver), ``null`` (→ null).  On other
  objects only whitelisted members: see :data:`JUEL_METHOD_TABLES` for strings,
  lists, sets, maps, date-times and :class:`JodaDateTime`; a class of the caller
  may whitelist members with ``juel_methods`` / ``juel_properties`` class
  attributes (JUEL name → Python attribute name).  A property ``foo`` also resolves
  through a whitelisted ``getFoo()``/``isFoo()`` (Java bean convention), so
  ``execution.processBusinessKey`` works.
* Functions: ``name(args)`` from the caller's ``functions`` mapping, plus the
  built-ins ``now()`` (Camunda's current Date: an aware UTC ``datetime``) and
  ``dateTime()`` (a Joda-style :class:`JodaDateTime` with ``plusDays(2)``,
  ``minusHours(1)``, ``withHourOfDay(9)``, ``toDate()`` …).  Both read the clock
  passed as ``now=`` to :meth:`CompiledTemplate.evaluate`; nothing here reads the
  wall clock.

Coercion (EL 2.2 section 1.18, as JUEL implements it)
------------------------------------------------------
Python ``int`` plays Java ``Long``, ``float`` plays ``Double``, ``Decimal`` plays
``BigDecimal``, ``bool`` plays ``Boolean``.

* Arithmetic ``+ - * / %`` is numeric only: ``null`` counts as 0, strings are
  coerced to numbers (``'2' + 3`` is 5; ``'a' + 1`` is an error — write the
  template ``${a}${b}`` or use ``a.concat(b)`` to join text).  If an operand is a
  ``Decimal`` the result is a ``Decimal``; else if one is a float or a string
  containing ``.``, ``e`` or ``E`` the operation is done in floats; else in 64-bit
  integers.  ``/`` always divides as float (``7 / 2`` is 3.5, ``4 / 2`` is 2.0).
  Deviations from Java: integer overflow past 64 bits and division or modulo by
  zero raise :class:`JuelEvaluationError` instead of wrapping or giving Infinity.
* ``==``/``!=``: equal objects are equal; ``null`` equals only ``null``; if either
  side is a number both are compared as numbers (``count == '3'`` is true,
  ``count == 'abc'`` is an error); else if either is a boolean both are coerced to
  boolean (``flag == 'true'``); else if either is a string both are compared as
  strings (a date equals its ISO text); else Python equality.
* ``< > <= >=``: ``null`` compares false (``null <= null`` is true); numbers as
  numbers (one leniency over JUEL: an integer compared with a string such as
  ``'1500.50'`` compares as floats instead of failing); else strings as strings;
  booleans, dates and date-times with their own kind.
* Boolean contexts (``&&``, ``||``, ``!``, ``?:``): ``null`` and ``''`` are false,
  a string is true only if it is ``'true'`` (any case), numbers are an error.
* ``empty x``: true for ``null``, ``''`` and empty lists, sets and maps.
* String conversion (composite templates): ``null`` → ``''``, booleans → ``true``
  / ``false``, floats as Java prints them (``2.0``, ``1.0E-5``), dates and
  date-times → ISO 8601, lists → ``[a, b]``, maps → ``{k=v}``.

Not supported
-------------
Namespaced functions (``fn:x()``), lambdas and other EL 3.0 syntax, ``instanceof``,
method calls through ``a['m'](…)``, assignment, ``execution.setVariable`` and other
side effects, Spring/CDI beans, ``task`` / ``authenticatedUserId`` implicit
objects (pass them as variables), 64-bit wrap-around.

Limits
------
Templates longer than :data:`MAX_TEMPLATE_LENGTH` characters or nested deeper
than :data:`MAX_NESTING_DEPTH` are refused with :class:`JuelSyntaxError`; string
results longer than :data:`MAX_STRING_LENGTH` raise :class:`JuelEvaluationError`.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from time import monotonic  # only for the evaluation deadline, never for a value
from typing import Any, ClassVar

from dateutil.relativedelta import relativedelta

__all__ = [
    "BUILTIN_FUNCTIONS",
    "MAX_NESTING_DEPTH",
    "MAX_STRING_LENGTH",
    "MAX_TEMPLATE_LENGTH",
    "CompiledTemplate",
    "ExecutionContext",
    "JodaDateTime",
    "JuelEvaluationError",
    "JuelSyntaxError",
    "compile_template",
    "is_expression",
]

MAX_TEMPLATE_LENGTH = 10_000
"""Longest template text accepted by :func:`compile_template`."""

MAX_NESTING_DEPTH = 32
"""Deepest nesting of parentheses, brackets, call arguments, ``?:`` and unary operators."""

MAX_STRING_LENGTH = 1_000_000
"""Longest string an evaluation may build (concatenation, ``concat``, ``replace``, a
collection turned into text)."""

TIME_LIMIT = 2.0
"""Default seconds one evaluation may take (``time_limit=`` of
:meth:`CompiledTemplate.evaluate`); checked while walking collections."""

_CHECK_INTERVAL = 1024

BUILTIN_FUNCTIONS: frozenset[str] = frozenset({"now", "dateTime"})
"""Functions every template may call without the caller registering them."""

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1
_UTC = UTC


# --------------------------------------------------------------------------- errors


def _window(text: str, position: int | None, width: int = 60) -> str:
    """The template, or a window of it around ``position`` when it is long, quoted."""
    if len(text) <= width:
        return repr(text)
    centre = 0 if position is None else position
    start = max(0, centre - width // 2)
    end = min(len(text), start + width)
    return ("…" if start else "") + repr(text[start:end]) + ("…" if end < len(text) else "")


class JuelSyntaxError(ValueError):
    """The template text is not a valid expression (or uses something refused).

    ``position`` is the 0-based character offset in ``text`` (``None`` when the
    problem concerns the whole text); ``detail`` is the message without location.
    """

    def __init__(self, detail: str, text: str = "", position: int | None = None) -> None:
        self.detail = detail
        self.text = text
        self.position = position
        if position is None:
            message = f"{detail} in {_window(text, None)}"
        else:
            message = f"{detail} at position {position} in {_window(text, position)}"
        super().__init__(message)


class JuelEvaluationError(ValueError):
    """Evaluating a compiled template failed (missing variable, bad coercion, …).

    ``detail`` is the bare reason; ``expression`` the template text, once known.
    """

    def __init__(self, detail: str) -> None:
        self.detail = detail
        self.expression: str | None = None
        super().__init__(detail)

    def _attach(self, text: str) -> None:
        if self.expression is None:
            self.expression = text
            self.args = (f"{self.detail} in {_window(text, None)}",)


def is_expression(text: str) -> bool:
    """True when ``text`` contains a ``${`` or ``#{`` part (so it needs evaluating)."""
    return isinstance(text, str) and ("${" in text or "#{" in text)


# --------------------------------------------------------------------------- lexer


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "int" "float" "str" "ident" "kw" "op" "end"
    value: Any
    pos: int
    text: str


_KEYWORDS = frozenset(
    {"true", "false", "null", "empty", "not", "div", "mod", "and", "or",
     "eq", "ne", "lt", "gt", "le", "ge", "instanceof"}
)
_TWO_CHAR_OPS = frozenset({"==", "!=", "<=", ">=", "&&", "||"})
_ONE_CHAR_OPS = frozenset("+-*/%<>!?:()[].,")
_NUMBER_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DIGITS = "0123456789"
_ESCAPABLE = {"\\": "\\", "'": "'", '"': '"'}


def _is_ident_start(c: str) -> bool:
    return c.isalpha() or c in "_$"


def _is_ident_part(c: str) -> bool:
    return c.isalnum() or c in "_$"


def _lex(text: str, start: int, opening: int) -> tuple[list[_Token], int]:
    """Tokens of the expression starting at ``start`` and the index after its ``}``."""
    tokens: list[_Token] = []
    n = len(text)
    i = start
    while True:
        if i >= n:
            raise JuelSyntaxError(f"unclosed {text[opening:opening + 2]!r}: missing '}}'", text, opening)
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c == "}":
            tokens.append(_Token("end", None, i, "}"))
            return tokens, i + 1
        if c in "'\"":
            i = _lex_string(text, i, tokens)
            continue
        if c in _DIGITS or (c == "." and i + 1 < n and text[i + 1] in _DIGITS):
            match = _NUMBER_RE.match(text, i)
            assert match is not None
            literal = match.group()
            end = match.end()
            if end < n and _is_ident_part(text[end]):
                bad_end = end
                while bad_end < n and _is_ident_part(text[bad_end]):
                    bad_end += 1
                raise JuelSyntaxError(f"invalid number {text[i:bad_end]!r}", text, i)
            if any(ch in literal for ch in ".eE"):
                tokens.append(_Token("float", float(literal), i, literal))
            else:
                value = int(literal)
                if value > _LONG_MAX:
                    raise JuelSyntaxError(f"integer {literal} is out of the 64-bit range", text, i)
                tokens.append(_Token("int", value, i, literal))
            i = end
            continue
        if _is_ident_start(c):
            end = i + 1
            while end < n and _is_ident_part(text[end]):
                end += 1
            word = text[i:end]
            kind = "kw" if word in _KEYWORDS else "ident"
            tokens.append(_Token(kind, word, i, word))
            i = end
            continue
        pair = text[i:i + 2]
        if pair in _TWO_CHAR_OPS:
            tokens.append(_Token("op", pair, i, pair))
            i += 2
            continue
        if c in _ONE_CHAR_OPS:
            tokens.append(_Token("op", c, i, c))
            i += 1
            continue
        hint = {"=": "; use '==' to compare", "&": "; use '&&' or 'and'", "|": "; use '||' or 'or'",
                "{": "; map and set literals are not supported"}.get(c, "")
        raise JuelSyntaxError(f"unexpected character {c!r}{hint}", text, i)


def _lex_string(text: str, start: int, tokens: list[_Token]) -> int:
    quote = text[start]
    chars: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n:
                break
            escaped = text[i + 1]
            if escaped not in _ESCAPABLE:
                raise JuelSyntaxError(
                    f"invalid escape sequence '\\{escaped}' in string (only \\\\, \\' and \\\" are allowed)",
                    text, i)
            chars.append(escaped)
            i += 2
            continue
        if c == quote:
            tokens.append(_Token("str", "".join(chars), start, text[start:i + 1]))
            return i + 1
        chars.append(c)
        i += 1
    raise JuelSyntaxError(f"unterminated string literal (missing closing {quote})", text, start)


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


_clock = threading.local()


def _tick() -> None:
    """Count one step of walking a collection; every so often, check the time limit."""
    steps = getattr(_clock, "steps", 0) + 1
    _clock.steps = steps
    if steps % _CHECK_INTERVAL == 0:
        deadline = getattr(_clock, "deadline", None)
        if deadline is not None and monotonic() > deadline[0]:
            raise JuelEvaluationError(f"evaluation stopped: it ran longer than {deadline[1]:g} s")


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


def _instant_of(value: Any) -> datetime:
    if isinstance(value, JodaDateTime):
        return value.to_datetime()
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise JuelEvaluationError(f"{_describe(value)} has no time zone; cannot compare it with an instant")
        return value
    raise JuelEvaluationError(f"expected a date-time, got {_describe(value)}")


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


def _field_value(value: Any, low: int, high: int, name: str) -> int:
    number = _to_long(value)
    if not low <= number <= high:
        raise JuelEvaluationError(f"{name} must be between {low} and {high}, got {number}")
    return number


def _calendar_shift(unit: str, sign: int) -> Callable[[JodaDateTime, Any], JodaDateTime]:
    def shift(moment: JodaDateTime, amount: Any) -> JodaDateTime:
        return moment.shifted_local(relativedelta(**{unit: sign * _to_long(amount)}))
    return shift


def _exact_shift(unit: str, sign: int) -> Callable[[JodaDateTime, Any], JodaDateTime]:
    def shift(moment: JodaDateTime, amount: Any) -> JodaDateTime:
        return moment.shifted(timedelta(**{unit: sign * _to_long(amount)}))
    return shift


def _millis(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=_UTC)) // timedelta(milliseconds=1)


_JODA_METHODS: dict[str, Callable[..., Any]] = {
    "toDate": lambda d: d.to_datetime(),
    "toString": lambda d: d.to_iso(),
    "getMillis": lambda d: _millis(d.instant),
    "getYear": lambda d: d.local().year,
    "getMonthOfYear": lambda d: d.local().month,
    "getDayOfMonth": lambda d: d.local().day,
    "getDayOfWeek": lambda d: d.local().isoweekday(),  # Joda: 1 = Monday … 7 = Sunday
    "getHourOfDay": lambda d: d.local().hour,
    "getMinuteOfHour": lambda d: d.local().minute,
    "getSecondOfMinute": lambda d: d.local().second,
    "withHourOfDay": lambda d, v: d.with_local_fields(hour=_field_value(v, 0, 23, "hourOfDay")),
    "withMinuteOfHour": lambda d, v: d.with_local_fields(minute=_field_value(v, 0, 59, "minuteOfHour")),
    "withSecondOfMinute": lambda d, v: d.with_local_fields(second=_field_value(v, 0, 59, "secondOfMinute")),
    "withMillisOfSecond": lambda d, v: d.with_local_fields(
        microsecond=_field_value(v, 0, 999, "millisOfSecond") * 1000),
    "withDayOfMonth": lambda d, v: d.with_local_fields(day=_field_value(v, 1, 31, "dayOfMonth")),
    "withTimeAtStartOfDay": lambda d: d.with_local_fields(hour=0, minute=0, second=0, microsecond=0),
    "isBefore": lambda d, other: d.instant < _instant_of(other),
    "isAfter": lambda d, other: d.instant > _instant_of(other),
    "isEqual": lambda d, other: d.instant == _instant_of(other),
    "isBeforeNow": lambda d: d.instant < d.clock,
    "isAfterNow": lambda d: d.instant > d.clock,
}
for _unit, _joda in (("years", "Years"), ("months", "Months"), ("weeks", "Weeks"), ("days", "Days")):
    _JODA_METHODS["plus" + _joda] = _calendar_shift(_unit, 1)
    _JODA_METHODS["minus" + _joda] = _calendar_shift(_unit, -1)
for _unit, _joda in (("hours", "Hours"), ("minutes", "Minutes"), ("seconds", "Seconds"),
                     ("milliseconds", "Millis")):
    _JODA_METHODS["plus" + _joda] = _exact_shift(_unit, 1)
    _JODA_METHODS["minus" + _joda] = _exact_shift(_unit, -1)


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


# --------------------------------------------------------------------------- AST


class _Env:
    __slots__ = ("execution", "functions", "now", "tz", "variables")

    def __init__(self, variables: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]],
                 execution: ExecutionContext | None, now: datetime | None, tz: tzinfo) -> None:
        self.variables = variables
        self.functions = functions
        self.execution = execution
        self.now = now
        self.tz = tz

    def lookup(self, name: str) -> Any:
        if name == "execution" and self.execution is not None:
            return self.execution
        try:
            return self.variables[name]
        except KeyError:
            pass
        if self.execution is not None and name in self.execution.variables:
            return self.execution.variables[name]
        raise JuelEvaluationError(f"Cannot resolve identifier '{name}': no such process variable")

    def clock(self, function: str) -> datetime:
        if self.now is None:
            raise JuelEvaluationError(f"{function}() needs the current time: pass now=… to evaluate()")
        return self.now

    def call(self, name: str, args: list[Any]) -> Any:
        function = self.functions.get(name)
        if function is None:
            if name == "now" and not args:
                return self.clock("now")
            if name == "dateTime" and not args:
                moment = self.clock("dateTime")
                return JodaDateTime(moment, self.tz, moment)
            if name in BUILTIN_FUNCTIONS:
                raise JuelEvaluationError(f"{name}() takes no arguments, got {len(args)}")
            raise JuelEvaluationError(f"unknown function '{name}'" + _available(
                set(self.functions) | BUILTIN_FUNCTIONS))
        try:
            return function(*args)
        except JuelEvaluationError:
            raise
        except Exception as exc:  # the caller's function failed: report it as an evaluation error
            raise JuelEvaluationError(f"function '{name}' failed: {exc}") from exc


class _Node:
    __slots__ = ()

    def ev(self, env: _Env) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _Literal(_Node):
    value: Any

    def ev(self, env: _Env) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class _Identifier(_Node):
    name: str

    def ev(self, env: _Env) -> Any:
        return env.lookup(self.name)


@dataclass(frozen=True, slots=True)
class _Unary(_Node):
    op: str  # "-" "!" "empty"
    operand: _Node

    def ev(self, env: _Env) -> Any:
        value = self.operand.ev(env)
        if self.op == "-":
            return _negate(value)
        if self.op == "!":
            return not _to_bool(value)
        return _is_empty(value)


@dataclass(frozen=True, slots=True)
class _Chain(_Node):
    """A left-associative run of operators of one precedence level, kept flat."""

    first: _Node
    rest: tuple[tuple[str, _Node], ...]

    def ev(self, env: _Env) -> Any:
        value = self.first.ev(env)
        for op, node in self.rest:
            right = node.ev(env)
            if op in ("+", "-", "*", "/", "%"):
                value = _arith(op, value, right)
            elif op == "==":
                value = _equals(value, right)
            elif op == "!=":
                value = not _equals(value, right)
            else:
                value = _compare(op, value, right)
        return value


@dataclass(frozen=True, slots=True)
class _Logical(_Node):
    op: str  # "and" "or"
    operands: tuple[_Node, ...]

    def ev(self, env: _Env) -> Any:
        stop_on = self.op == "or"
        for node in self.operands:
            if _to_bool(node.ev(env)) is stop_on:
                return stop_on
        return not stop_on


@dataclass(frozen=True, slots=True)
class _Conditional(_Node):
    condition: _Node
    then: _Node
    otherwise: _Node

    def ev(self, env: _Env) -> Any:
        return self.then.ev(env) if _to_bool(self.condition.ev(env)) else self.otherwise.ev(env)


@dataclass(frozen=True, slots=True)
class _Call(_Node):
    name: str
    args: tuple[_Node, ...]

    def ev(self, env: _Env) -> Any:
        return env.call(self.name, [arg.ev(env) for arg in self.args])


@dataclass(frozen=True, slots=True)
class _Property:
    name: str


@dataclass(frozen=True, slots=True)
class _Index:
    key: _Node


@dataclass(frozen=True, slots=True)
class _Method:
    name: str
    args: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Access(_Node):
    """``base`` followed by ``.name``, ``[key]`` and ``.method(args)`` steps, kept flat."""

    base: _Node
    steps: tuple[_Property | _Index | _Method, ...]

    def ev(self, env: _Env) -> Any:
        value = self.base.ev(env)
        for step in self.steps:
            if isinstance(step, _Property):
                value = _get_property(value, step.name)
            elif isinstance(step, _Index):
                value = _get_index(value, step.key.ev(env))
            else:
                value = _call_method(value, step.name, [arg.ev(env) for arg in step.args])
        return value


# --------------------------------------------------------------------------- parser

_LEVELS: tuple[dict[str, str], ...] = (
    {"||": "or", "or": "or"},
    {"&&": "and", "and": "and"},
    {"==": "==", "eq": "==", "!=": "!=", "ne": "!="},
    {"<": "<", "lt": "<", ">": ">", "gt": ">", "<=": "<=", "le": "<=", ">=": ">=", "ge": ">="},
    {"+": "+", "-": "-"},
    {"*": "*", "/": "/", "div": "/", "%": "%", "mod": "%"},
)
_VARIABLE_READERS = frozenset({"getVariable", "getVariableLocal", "hasVariable"})


class _Parser:
    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.index = 0
        self.depth = 0
        self.identifiers: set[str] = set()
        self.functions: dict[str, int] = {}

    # -- helpers
    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.peek()
        if token.kind != "end":
            self.index += 1
        return token

    def is_op(self, *ops: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.value in ops

    def error(self, detail: str, token: _Token) -> JuelSyntaxError:
        return JuelSyntaxError(detail, self.text, token.pos)

    def unexpected(self, token: _Token, expected: str = "") -> JuelSyntaxError:
        what = "end of expression '}'" if token.kind == "end" else repr(token.text)
        suffix = f", expected {expected}" if expected else ""
        return self.error(f"unexpected {what}{suffix}", token)

    def expect(self, op: str) -> _Token:
        if not self.is_op(op):
            raise self.unexpected(self.peek(), repr(op))
        return self.advance()

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING_DEPTH:
            raise self.error(f"expression nested too deeply (more than {MAX_NESTING_DEPTH} levels)", token)

    def check_name(self, token: _Token) -> str:
        name = token.value
        if name.startswith("__"):
            raise self.error(f"access to '{name}' is not allowed", token)
        return name

    # -- grammar
    def parse(self) -> _Node:
        if self.peek().kind == "end":
            raise self.error("empty expression", self.peek())
        node = self.expression()
        if self.peek().kind != "end":
            raise self.unexpected(self.peek(), "an operator or '}'")
        return node

    def expression(self) -> _Node:
        self.enter(self.peek())
        try:
            condition = self.binary(0)
            if not self.is_op("?"):
                return condition
            self.advance()
            then = self.expression()
            self.expect(":")
            otherwise = self.expression()
            return _Conditional(condition, then, otherwise)
        finally:
            self.depth -= 1

    def match_level(self, level: int) -> str | None:
        token = self.peek()
        if token.kind in ("op", "kw"):
            return _LEVELS[level].get(token.value)
        return None

    def binary(self, level: int) -> _Node:
        if level == len(_LEVELS):
            return self.unary()
        first = self.binary(level + 1)
        rest: list[tuple[str, _Node]] = []
        while (op := self.match_level(level)) is not None:
            self.advance()
            rest.append((op, self.binary(level + 1)))
        if not rest:
            return first
        if level < 2:
            return _Logical(rest[0][0], (first, *(node for _, node in rest)))
        return _Chain(first, tuple(rest))

    def unary(self) -> _Node:
        token = self.peek()
        op = None
        if token.kind == "op" and token.value in ("-", "!"):
            op = token.value
        elif token.kind == "kw" and token.value in ("not", "empty"):
            op = "!" if token.value == "not" else "empty"
        if op is None:
            return self.postfix()
        self.advance()
        self.enter(token)
        try:
            operand = self.unary()
        finally:
            self.depth -= 1
        if op == "-" and isinstance(operand, _Literal) and type(operand.value) in (int, float):
            return _Literal(-operand.value)
        return _Unary(op, operand)

    def arguments(self) -> tuple[_Node, ...]:
        self.expect("(")
        args: list[_Node] = []
        if not self.is_op(")"):
            while True:
                args.append(self.expression())
                if self.is_op(","):
                    self.advance()
                    continue
                break
        self.expect(")")
        return tuple(args)

    def postfix(self) -> _Node:
        base = self.primary()
        steps: list[_Property | _Index | _Method] = []
        while True:
            if self.is_op("."):
                self.advance()
                token = self.advance()
                if token.kind not in ("ident", "kw"):
                    raise self.unexpected(token, "a property or method name after '.'")
                name = self.check_name(token)
                if self.is_op("("):
                    steps.append(_Method(name, self.arguments()))
                else:
                    steps.append(_Property(name))
            elif self.is_op("["):
                opening = self.advance()
                self.enter(opening)
                try:
                    key = self.expression()
                finally:
                    self.depth -= 1
                self.expect("]")
                steps.append(_Index(key))
            else:
                break
        if not steps:
            return base
        if (isinstance(base, _Identifier) and base.name == "execution"
                and isinstance(steps[0], _Method) and steps[0].name in _VARIABLE_READERS
                and steps[0].args and isinstance(steps[0].args[0], _Literal)
                and isinstance(steps[0].args[0].value, str)):
            self.identifiers.add(steps[0].args[0].value)
        return _Access(base, tuple(steps))

    def primary(self) -> _Node:
        token = self.advance()
        if token.kind in ("int", "float", "str"):
            return _Literal(token.value)
        if token.kind == "kw":
            if token.value in ("true", "false"):
                return _Literal(token.value == "true")
            if token.value == "null":
                return _Literal(None)
            if token.value == "instanceof":
                raise self.error("'instanceof' is not supported", token)
            raise self.unexpected(token, "a value")
        if token.kind == "op" and token.value == "(":
            node = self.expression()
            self.expect(")")
            return node
        if token.kind == "ident":
            name = self.check_name(token)
            if self.is_op("("):
                self.functions.setdefault(name, token.pos)
                return _Call(name, self.arguments())
            if self.is_op(":") and self.peek(1).kind == "ident" and self.peek(2).value == "(":
                raise self.error(f"namespaced functions such as '{name}:{self.peek(1).value}()' "
                                 "are not supported", token)
            if name != "execution":
                self.identifiers.add(name)
            return _Identifier(name)
        raise self.unexpected(token, "a value")


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True, slots=True)
class _Part:
    node: _Node
    source: str
    position: int


class CompiledTemplate:
    """A parsed template; immutable and shared through the :func:`compile_template` cache."""

    __slots__ = ("_function_positions", "_parts", "_single", "function_names_used", "text", "variables_used")

    def __init__(self, text: str, parts: tuple[str | _Part, ...],
                 identifiers: frozenset[str], functions: Mapping[str, int]) -> None:
        self.text = text
        self._parts = parts
        expressions = [p for p in parts if isinstance(p, _Part)]
        only_whitespace = all(isinstance(p, _Part) or not p.strip() for p in parts)
        self._single = expressions[0] if len(expressions) == 1 and only_whitespace else None
        self.variables_used: frozenset[str] = identifiers
        """Identifiers the template reads (plus ``execution.getVariable('x')`` names); best effort."""
        self.function_names_used: frozenset[str] = frozenset(functions)
        """Names of the functions the template calls."""
        self._function_positions = dict(functions)

    def __repr__(self) -> str:
        return f"CompiledTemplate({self.text!r})"

    @property
    def is_literal(self) -> bool:
        """True when the template has no ``${…}`` part: it evaluates to its own text."""
        return not any(isinstance(p, _Part) for p in self._parts)

    @property
    def is_single_expression(self) -> bool:
        """True when the template is one ``${…}`` (evaluates to a raw value, not a string)."""
        return self._single is not None

    def check_functions(self, known_names: Iterable[str]) -> None:
        """Raise :class:`JuelSyntaxError` naming the first function not in ``known_names``.

        The built-ins ``now`` and ``dateTime`` are always known.
        """
        known = set(known_names) | BUILTIN_FUNCTIONS
        unknown = [(pos, name) for name, pos in self._function_positions.items() if name not in known]
        if unknown:
            position, name = min(unknown)
            raise JuelSyntaxError(f"unknown function '{name}'", self.text, position)

    def evaluate(
        self,
        variables: Mapping[str, Any] | None,
        *,
        functions: Mapping[str, Callable[..., Any]] | None = None,
        execution: ExecutionContext | None = None,
        now: datetime | None = None,
        tz: tzinfo | None = None,
        time_limit: float | None = None,
    ) -> Any:
        """Evaluate against ``variables``.

        ``functions`` are callable as ``name(args)``; ``execution`` is what the
        identifier ``execution`` resolves to; ``now`` (aware) is the clock read by
        ``now()`` and ``dateTime()``; ``tz`` (default UTC, pass the hospital's zone)
        is the zone in which ``dateTime()`` does calendar arithmetic.  Returns the
        raw value for a single-expression template (a ``dateTime()`` result is
        returned as its aware UTC ``datetime``), else the concatenated string.
        ``time_limit`` (default :data:`TIME_LIMIT`) bounds the seconds spent walking
        collections (``contains``, ``indexOf``, turning a collection into text).
        """
        if self.is_literal:
            return "".join(p for p in self._parts if isinstance(p, str))
        outer = getattr(_clock, "deadline", None)
        if outer is None:
            limit = TIME_LIMIT if time_limit is None else time_limit
            _clock.deadline = (monotonic() + limit, limit)
        try:
            return self._evaluate(variables, functions, execution, now, tz)
        finally:
            if outer is None:
                _clock.deadline = None

    def _evaluate(self, variables: Mapping[str, Any] | None, functions: Mapping[str, Callable[..., Any]] | None,
                  execution: ExecutionContext | None, now: datetime | None, tz: tzinfo | None) -> Any:
        if now is not None:
            if now.tzinfo is None or now.utcoffset() is None:
                raise JuelEvaluationError("now must be a timezone-aware datetime")
            now = now.astimezone(_UTC)
        env = _Env(variables if variables is not None else {}, functions or {}, execution, now, tz or _UTC)
        try:
            if self._single is not None:
                return _plain(self._single.node.ev(env))
            pieces: list[str] = []
            length = 0
            for part in self._parts:
                piece = part if isinstance(part, str) else _to_string(part.node.ev(env))
                length += len(piece)
                _check_length(length)
                pieces.append(piece)
            return "".join(pieces)
        except JuelEvaluationError as exc:
            exc._attach(self.text)
            raise
        except RecursionError:
            error = JuelEvaluationError("expression too deeply nested to evaluate")
            error._attach(self.text)
            raise error from None


def compile_template(text: str) -> CompiledTemplate:
    """Parse ``text`` (literal text with ``${…}``/``#{…}`` parts); cached.

    Raises :class:`JuelSyntaxError` with the position and offending text.
    """
    if not isinstance(text, str):
        raise TypeError(f"template must be a string, not {type(text).__name__}")
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise JuelSyntaxError(
            f"expression too long ({len(text)} characters, the limit is {MAX_TEMPLATE_LENGTH})",
            text[:MAX_TEMPLATE_LENGTH])
    return _compile_cached(text)


@functools.lru_cache(maxsize=2048)
def _compile_cached(text: str) -> CompiledTemplate:
    parts: list[str | _Part] = []
    literal: list[str] = []
    identifiers: set[str] = set()
    functions: dict[str, int] = {}
    n = len(text)
    i = 0
    try:
        while i < n:
            c = text[i]
            if c == "\\" and text[i + 1:i + 3] in ("${", "#{"):
                literal.append(text[i + 1:i + 3])
                i += 3
                continue
            if c in "$#" and i + 1 < n and text[i + 1] == "{":
                if literal:
                    parts.append("".join(literal))
                    literal = []
                tokens, end = _lex(text, i + 2, i)
                parser = _Parser(text, tokens)
                node = parser.parse()
                identifiers |= parser.identifiers
                for name, pos in parser.functions.items():
                    functions.setdefault(name, pos)
                parts.append(_Part(node, text[i:end], i))
                i = end
                continue
            literal.append(c)
            i += 1
    except RecursionError:
        raise JuelSyntaxError("expression too deeply nested", text) from None
    if literal:
        parts.append("".join(literal))
    return CompiledTemplate(text, tuple(parts), frozenset(identifiers), functions)
