"""FEEL (Friendly Enough Expression Language) for the engine's Camunda 7 dialect.

This module parses and evaluates the FEEL used in DMN decision tables and literal
expressions: S-FEEL unary tests (input entries) and "simple FEEL" expressions (input
expressions, output entries, literal expression decisions).  Nothing in here ever hands
user text to Python's ``eval``/``exec``: the text is parsed by a grammar of our own and
compiled into a tree of small Python closures.

Parser choice
-------------
The grammar is written for **lark** and parsed with **LALR(1)** and lark's contextual
lexer.  Reasons:

* FEEL expressions in decision tables are short but numerous (a table may have
  hundreds of cells), so parsing must be fast and deterministic; LALR is linear-time,
  Earley is much slower and may return ambiguous trees for FEEL's loose grammar.
* lark checks an LALR grammar for conflicts when it is built, so every ambiguity is
  resolved explicitly in the grammar instead of by parse-time heuristics.
* The contextual lexer only offers the terminals that are valid in the parser's current
  state.  That is what lets FEEL names contain spaces and words such as ``of``
  (``Years of Service``) while ``and``/``or``/``in``... remain keywords where an operator
  may follow.

FEEL's own ambiguities are handled as follows:

* Names with spaces are sequences of name parts (``string length``, ``Years of Service``,
  ``Extra days case 1``).  Names that contain a keyword or an operator character
  (``Date and Time of Birth``, ``Approved/Declined``) cannot be recognised by a grammar
  alone; callers that know their variable names (the DMN layer does) pass them in
  ``names`` and such names are replaced, before parsing, by a private-use placeholder of
  the same length (so error positions stay right).  The built-ins ``date and time``,
  ``years and months duration`` and ``days and time duration`` are dedicated terminals.
* ``]1..5[`` style intervals: the closing ``[`` is a terminal with a look-ahead so that
  it does not clash with filter expressions (``list[item > 3]``).
* ``-`` (any) and ``not(...)`` at the top of a unary test are recognised before
  parsing, so ``not`` stays an ordinary built-in function name inside expressions.

Values
------
FEEL values are represented internally as: ``None`` (null), ``bool``, ``decimal.Decimal``
(all numbers, 34 significant digits, half-even rounding, like IEEE 754 decimal128), ``str``,
``datetime.date``, ``datetime.datetime`` (naive = local time), ``datetime.time``,
``datetime.timedelta`` (days and time duration), :class:`YearsMonthsDuration`, ``list``,
``dict`` (contexts), :class:`Range` and functions.

Python values coming in (``int``, ``float``, ``Mapping``, ``tuple``...) are converted on
lookup.  Results handed back are plain Python by default (``raw=False``): numbers become
``int`` when integral and ``float`` otherwise, lists and dicts are converted recursively;
dates, times and ``timedelta`` stay as they are and years-and-months durations are
:class:`YearsMonthsDuration` objects (``str()`` gives the ISO form, e.g. ``P1Y2M``).
Pass ``raw=True`` to get the ``Decimal`` values.

Errors
------
Syntax errors, unknown functions and wrong argument counts of built-ins raise
:class:`FeelSyntaxError` (with position) at compile time.  At evaluation time FEEL's rule
applies: type errors (``"a" + 1``, ``date("x")``, division by zero, comparing a string
with a number...) give ``null``.  :class:`FeelEvaluationError` is raised for what cannot
be answered with null: an unknown variable name, calling something that is not a
function, too deep recursion.

Deliberate leniencies (Camunda users pass Python values from process data): a ``date``
compared with a ``date and time`` is taken as midnight of that day, and a naive
``date and time`` compared with one that has a time zone is taken as UTC.

Beyond what S-FEEL needs, the grammar also has filters (``items[price > 10]``,
``scores[-1]``), ``for``/``some``/``every``, ``instance of`` with the built-in type names,
``@"..."`` temporal literals and ``//``/``/* */`` comments.

Not supported: user-defined function definitions (``function(x) ...``), ``sort`` with a
precedes function, type expressions such as ``list<number>`` in ``instance of``,
open-start intervals written ``]a..b]`` outside unary tests and ``in`` (use ``(a..b]``),
dates outside years 1-9999 and sub-microsecond precision, the range built-ins of
DMN 1.4 (``before``, ``meets``...).
"""

from __future__ import annotations

import calendar
import contextlib
import difflib
import functools
import math
import re
import threading
import time as _time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Context,
    Decimal,
    DecimalException,
    localcontext,
)
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import re2
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

__all__ = [
    "BUILTIN_FUNCTIONS",
    "FEEL_DECIMAL_CONTEXT",
    "CompiledFeel",
    "CompiledUnaryTests",
    "FeelError",
    "FeelEvaluationError",
    "FeelFunction",
    "FeelLimitExceeded",
    "FeelLimits",
    "FeelSyntaxError",
    "Range",
    "Scope",
    "YearsMonthsDuration",
    "budget",
    "compile_expression",
    "compile_unary_tests",
    "evaluate",
    "feel_equal",
    "feel_string",
    "format_duration",
    "parse_date",
    "parse_date_time",
    "parse_duration",
    "parse_time",
    "to_feel",
    "to_python",
]

#: Decimal context of FEEL numbers (IEEE 754 decimal128: 34 digits, half-even).
FEEL_DECIMAL_CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN, Emax=6144, Emin=-6143)

_MAX_NESTING = 200


# --------------------------------------------------------------------------- errors


class FeelError(Exception):
    """Base class of FEEL errors."""


class FeelSyntaxError(FeelError):
    """The text is not valid FEEL (or calls an unknown function, or a built-in with a wrong
    number of arguments).  ``position`` is the 0-based offset in ``text``; ``line`` and
    ``column`` are 1-based."""

    def __init__(self, message: str, text: str, position: int | None = None) -> None:
        self.reason = message
        self.text = text
        self.position = position
        if position is not None:
            before = text[:position]
            self.line: int | None = before.count("\n") + 1
            self.column: int | None = position - (before.rfind("\n") + 1) + 1
            where = f" at line {self.line}, column {self.column}"
        else:
            self.line = self.column = None
            where = ""
        super().__init__(f"FEEL syntax error{where}: {message} (in {text!r})")


class FeelEvaluationError(FeelError):
    """The expression could not be evaluated (unknown variable, not a function...)."""


class _UnknownName(FeelEvaluationError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown variable '{name}'")


class FeelLimitExceeded(FeelEvaluationError):
    """An evaluation ran out of its budget (time, iterations, list or text size)."""


# --------------------------------------------------------------------------- budget


@dataclass(frozen=True)
class FeelLimits:
    """Budget of one evaluation (a whole decision when the DMN layer opens one).

    time_limit:      CPU seconds of the evaluating thread.
    wall_time:       wall-clock seconds.
    max_iterations:  ``for``/``some``/``every`` iterations, filtered items, items visited
                     by list functions, equality and conversions, in total.
    max_items:       largest list a range, ``for`` or list function may build.
    max_text:        longest string an operation may build.
    """

    time_limit: float = 2.0
    wall_time: float = 10.0
    max_iterations: int = 100_000
    max_items: int = 100_000
    max_text: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("time_limit", "wall_time", "max_iterations", "max_items", "max_text"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FeelLimits.{name} must be positive")


DEFAULT_LIMITS = FeelLimits()
_CLOCK_INTERVAL = 256


class _Budget:
    __slots__ = ("cpu_start", "limits", "next_check", "steps", "wall_start")

    def __init__(self, limits: FeelLimits) -> None:
        self.limits = limits
        self.steps = 0
        self.next_check = _CLOCK_INTERVAL
        self.cpu_start = _time.thread_time()
        self.wall_start = _time.monotonic()

    def tick(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > self.limits.max_iterations:
            raise FeelLimitExceeded(
                f"evaluation stopped: more than {self.limits.max_iterations} iterations")
        if self.steps >= self.next_check:
            self.next_check = self.steps + _CLOCK_INTERVAL
            self.check_time()

    def check_time(self) -> None:
        limits = self.limits
        if _time.thread_time() - self.cpu_start > limits.time_limit:
            raise FeelLimitExceeded(f"evaluation stopped: it used more than {limits.time_limit:g} s of CPU time")
        if _time.monotonic() - self.wall_start > limits.wall_time:
            raise FeelLimitExceeded(f"evaluation stopped: it ran longer than {limits.wall_time:g} s")

    def items(self, n: int, what: str, *, counted: bool = True) -> None:
        """Refuse building a list of ``n`` items past the limit; ``counted``: building it
        counts as ``n`` iterations (not for ranges, whose loop counts each value)."""
        if n > self.limits.max_items:
            raise FeelLimitExceeded(f"{what} would have {n} items; the limit is {self.limits.max_items}")
        if counted:
            self.tick(n)

    def text(self, n: int, what: str) -> None:
        if n > self.limits.max_text:
            raise FeelLimitExceeded(f"{what} would have {n} characters; the limit is {self.limits.max_text}")


_budget_state = threading.local()


def _budget() -> _Budget:
    current = getattr(_budget_state, "budget", None)
    if current is None:  # a built-in called outside an evaluation (tests, output values)
        current = _Budget(DEFAULT_LIMITS)
    return current


@contextlib.contextmanager
def budget(limits: FeelLimits | None = None) -> Iterator[_Budget]:
    """One budget for every evaluation inside the block (the DMN layer opens one per decision
    evaluation).  Nested blocks share the outermost budget."""
    current = getattr(_budget_state, "budget", None)
    if current is not None:
        yield current
        return
    current = _budget_state.budget = _Budget(limits or DEFAULT_LIMITS)
    try:
        yield current
    finally:
        _budget_state.budget = None


# --------------------------------------------------------------------------- value types


@functools.total_ordering
@dataclass(frozen=True)
class YearsMonthsDuration:
    """A FEEL years-and-months duration, stored as a signed number of months."""

    total_months: int

    @property
    def years(self) -> int:
        sign = -1 if self.total_months < 0 else 1
        return sign * (abs(self.total_months) // 12)

    @property
    def months(self) -> int:
        sign = -1 if self.total_months < 0 else 1
        return sign * (abs(self.total_months) % 12)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, YearsMonthsDuration):
            return NotImplemented
        return self.total_months < other.total_months

    def __str__(self) -> str:
        months = abs(self.total_months)
        sign = "-" if self.total_months < 0 else ""
        if months == 0:
            return "P0M"
        years, rest = divmod(months, 12)
        text = "P"
        if years:
            text += f"{years}Y"
        if rest:
            text += f"{rest}M"
        return sign + text


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


class FeelFunction:
    """A function callable from FEEL (built-ins, DMN business knowledge models).

    ``impl`` receives FEEL values positionally (``params`` order) and returns a FEEL value.
    """

    __slots__ = ("impl", "name", "params")

    def __init__(self, name: str, params: Iterable[str], impl: Callable[..., Any]) -> None:
        self.name = name
        self.params = tuple(params)
        self.impl = impl

    def call(self, args: list[Any] | None, kwargs: dict[str, Any] | None) -> Any:
        if kwargs is not None:
            unknown = [k for k in kwargs if k not in self.params]
            if unknown:
                raise FeelEvaluationError(f"function '{self.name}' has no parameter '{unknown[0]}'")
            args = [kwargs.get(p) for p in self.params]
        assert args is not None
        if len(args) > len(self.params):
            raise FeelEvaluationError(
                f"function '{self.name}' expects {len(self.params)} arguments, got {len(args)}"
            )
        args = list(args) + [None] * (len(self.params) - len(args))
        return self.impl(*args)

    def __repr__(self) -> str:
        return f"<function {self.name}({', '.join(self.params)})>"


# --------------------------------------------------------------------------- conversions


def to_feel(value: Any) -> Any:
    """Convert a Python value to its FEEL representation (ints/floats to Decimal...)."""
    t = type(value)
    if value is None or t is bool or t is str or t is Decimal and value.is_finite():
        return value
    if t is int:
        return Decimal(value)
    if t is float:
        if math.isnan(value) or math.isinf(value):
            return None
        return Decimal(repr(value))
    if t is Decimal:  # NaN / infinity
        return None
    if t is dict or isinstance(value, Mapping):
        return {str(k): to_feel(v) for k, v in value.items()}
    if t is list or t is tuple or isinstance(value, (list, tuple, set, frozenset)):
        return [to_feel(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return Decimal(int(value))
    if isinstance(value, float):
        return to_feel(float(value))
    if isinstance(value, str):
        return str(value)
    return value


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


# --------------------------------------------------------------------------- dates, times, durations

_DATE_RE = re.compile(r"(-?(?:[1-9]\d{4,8}|\d{4}))-(\d\d)-(\d\d)")
_TIME_RE = re.compile(
    r"(\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
    r"(?:(Z|z)|([+-])(\d\d):(\d\d)(?::(\d\d))?|@([A-Za-z][\w/+\-]*))?"
)
_DURATION_RE = re.compile(
    r"(-)?P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?"
)


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown zone or no tz database
        return None


def _parse_tz(match: re.Match[str], first: int) -> tuple[bool, tzinfo | None]:
    """Returns (ok, tzinfo) from the zone groups of _TIME_RE starting at group ``first``."""
    z, sign, hh, mm, ss, zone_id = (match.group(first + i) for i in range(6))
    if z:
        return True, UTC
    if sign:
        offset = timedelta(hours=int(hh), minutes=int(mm), seconds=int(ss or 0))
        if offset > timedelta(hours=18):
            return False, None
        return True, timezone(-offset if sign == "-" else offset)
    if zone_id:
        tz = _zone(zone_id)
        return tz is not None, tz
    return True, None


def parse_date(text: str) -> date | None:
    """Parse a FEEL date string (``YYYY-MM-DD``); None when invalid."""
    m = _DATE_RE.fullmatch(text.strip())
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def _micro(frac: str | None) -> int:
    if not frac:
        return 0
    return int((frac + "000000")[:6])


def parse_time(text: str) -> time | None:
    """Parse a FEEL time string (``hh:mm:ss[.fff][Z|+hh:mm|@zone]``); None when invalid."""
    m = _TIME_RE.fullmatch(text.strip())
    if not m:
        return None
    ok, tz = _parse_tz(m, 5)
    if not ok:
        return None
    try:
        return time(int(m.group(1)), int(m.group(2)), int(m.group(3)), _micro(m.group(4)), tzinfo=tz)
    except ValueError:
        return None


def parse_date_time(text: str) -> datetime | None:
    """Parse a FEEL date-and-time string (a date alone means midnight); None when invalid."""
    text = text.strip()
    if "T" not in text:
        d = parse_date(text)
        return None if d is None else datetime(d.year, d.month, d.day)
    date_part, _, time_part = text.partition("T")
    d = parse_date(date_part)
    if d is None:
        return None
    if time_part.startswith("24:00:00") and _TIME_RE.fullmatch(time_part):
        t = parse_time("00" + time_part[2:])
        if t is None:
            return None
        return datetime.combine(d, t) + timedelta(days=1)
    t = parse_time(time_part)
    if t is None:
        return None
    return datetime.combine(d, t)


def parse_duration(text: str) -> timedelta | YearsMonthsDuration | None:
    """Parse an ISO 8601 duration: ``P1Y2M`` gives a :class:`YearsMonthsDuration`,
    ``P1DT2H`` a ``timedelta``; mixing both kinds gives None."""
    m = _DURATION_RE.fullmatch(text.strip())
    if not m:
        return None
    neg, years, months, weeks, days, hours, minutes, seconds = m.groups()
    if (years or months) and (weeks or days or hours or minutes or seconds):
        return None
    if years or months:
        total = int(years or 0) * 12 + int(months or 0)
        return YearsMonthsDuration(-total if neg else total)
    sec = Decimal(seconds or 0)
    whole = int(sec)
    micro = int((sec - whole) * 1000000)
    try:
        td = timedelta(
            weeks=int(weeks or 0),
            days=int(days or 0),
            hours=int(hours or 0),
            minutes=int(minutes or 0),
            seconds=whole,
            microseconds=micro,
        )
    except OverflowError:
        return None
    return -td if neg else td


def format_duration(value: timedelta | YearsMonthsDuration) -> str:
    """ISO 8601 text of a duration (``P1DT2H``, ``-PT30M``, ``P1Y2M``)."""
    if isinstance(value, YearsMonthsDuration):
        return str(value)
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    days = value.days
    secs = value.seconds
    micro = value.microseconds
    hours, rem = divmod(secs, 3600)
    minutes, seconds = divmod(rem, 60)
    text = "P"
    if days:
        text += f"{days}D"
    if hours or minutes or seconds or micro or not days:
        text += "T"
        if hours:
            text += f"{hours}H"
        if minutes:
            text += f"{minutes}M"
        if seconds or micro or not (hours or minutes):
            if micro:
                text += f"{seconds}.{micro:06d}".rstrip("0") + "S"
            else:
                text += f"{seconds}S"
    return sign + text


def _add_months(value: date, months: int) -> date | None:
    total = value.year * 12 + (value.month - 1) + months
    year, month0 = divmod(total, 12)
    if not 1 <= year <= 9999:
        return None
    day = min(value.day, calendar.monthrange(year, month0 + 1)[1])
    return value.replace(year=year, month=month0 + 1, day=day)


def _months_between(start: date, end: date) -> int:
    months = (end.year - start.year) * 12 + (end.month - start.month)

    if months > 0 and end.day < start.day:
        months -= 1
    elif months < 0 and end.day > start.day:
        months += 1
    return months


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


# --------------------------------------------------------------------------- built-ins


def _is_num(v: Any) -> bool:
    return type(v) is Decimal


def _int_arg(v: Any) -> int | None:
    if type(v) is not Decimal or v != v.to_integral_value():
        return None
    return int(v)


def _list_arg(args: tuple) -> list | None:
    if len(args) == 1 and type(args[0]) is list:
        return args[0]
    if len(args) == 1 and args[0] is None:
        return None
    return list(args)


def _b_substring(string: Any, start: Any, length: Any = None) -> Any:
    if type(string) is not str or not _is_num(start):
        return None
    s = int(start)
    n = len(string)
    if s == 0 or s > n + 1 or s < -n:
        return None
    idx = s - 1 if s > 0 else n + s
    if length is None:
        return string[idx:]
    if not _is_num(length):
        return None
    ln = int(length)
    if ln < 0:
        return None
    return string[idx : idx + ln]


def _str_fn(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        if any(type(a) is not str for a in args):
            return None
        return fn(*args)

    return wrapped


def _b_substring_before(string: str, match: str) -> str:
    i = string.find(match)
    return "" if i < 0 else string[:i]


def _b_substring_after(string: str, match: str) -> str:
    i = string.find(match)
    return "" if i < 0 else string[i + len(match) :]


_REGEX_FLAGS = frozenset("ismxq")


def _strip_whitespace(pattern: str) -> str:
    """XPath's ``x`` flag: whitespace is removed, except inside character classes."""
    out: list[str] = []
    in_class = escaped = False
    for c in pattern:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c in " \t\n\r":
            continue
        out.append(c)
    return "".join(out)


@functools.lru_cache(maxsize=512)
def _compile_regex(pattern: str, flags: str) -> Any:
    """The pattern compiled by RE2 (linear-time matching: no catastrophic backtracking)."""
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = "i" not in flags
    options.dot_nl = "s" in flags
    if "q" in flags:
        text = re2.escape(pattern)
    else:
        text = _strip_whitespace(pattern) if "x" in flags else pattern
        if "m" in flags:
            text = "(?m)" + text
    try:
        return re2.compile(text, options)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
        raise FeelEvaluationError(
            f"regular expression {pattern!r} is not supported: {reason} (back-references and look-around "
            "assertions are not available)") from None


def _regex(pattern: Any, flags: Any) -> Any:
    """The compiled pattern, or None (null) for a pattern or flags that are not strings or
    unknown flags; a pattern RE2 cannot compile is a :class:`FeelEvaluationError`."""
    if type(pattern) is not str or (flags is not None and type(flags) is not str):
        return None
    if any(f not in _REGEX_FLAGS for f in flags or ""):
        return None
    _budget().text(len(pattern), "regular expression")
    return _compile_regex(pattern, "".join(sorted(set(flags or ""))))


def _b_matches(string: Any, pattern: Any, flags: Any = None) -> Any:
    rx = _regex(pattern, flags)
    if rx is None or type(string) is not str:
        return None
    return rx.search(string) is not None


def _replacement_parts(replacement: str) -> list[str | int] | None:
    """XPath replacement string (``$1``, ``\\$``) to literal text and group numbers."""
    parts: list[str | int] = []
    i = 0
    while i < len(replacement):
        c = replacement[i]
        nxt = replacement[i + 1] if i + 1 < len(replacement) else ""
        if c == "\\":
            if nxt not in ("\\", "$"):
                return None
            parts.append(nxt)
            i += 2
        elif c == "$":
            j = i + 1
            while j < len(replacement) and replacement[j].isdigit():
                j += 1
            if j == i + 1:
                return None
            parts.append(int(replacement[i + 1 : j]))
            i = j
        else:
            parts.append(c)
            i += 1
    return parts


def _b_replace(string: Any, pattern: Any, replacement: Any, flags: Any = None) -> Any:
    rx = _regex(pattern, flags)
    if rx is None or type(string) is not str or type(replacement) is not str:
        return None
    if rx.fullmatch("") is not None:
        return None
    if flags and "q" in flags:
        parts: list[str | int] | None = [replacement]
    else:
        parts = _replacement_parts(replacement)
    if parts is None:
        return None
    groups = rx.groups
    budget = _budget()
    produced = [len(string)]

    def expand(m: Any) -> str:
        budget.tick()
        out = []
        for p in parts:  # type: ignore[union-attr]
            if isinstance(p, int):
                out.append((m.group(p) or "") if p <= groups else "")
            else:
                out.append(p)
        text = "".join(out)
        produced[0] += len(text)
        budget.text(produced[0], "replace()")
        return text

    return rx.sub(expand, string)


def _b_split(string: Any, delimiter: Any) -> Any:
    rx = _regex(delimiter, None)
    if rx is None or type(string) is not str or delimiter == "":
        return None
    parts = rx.split(string)
    _budget().items(len(parts), "split()")
    return parts


def _b_string_join(items: Any, delimiter: Any = None) -> Any:
    if type(items) is not list or (delimiter is not None and type(delimiter) is not str):
        return None
    if any(v is not None and type(v) is not str for v in items):
        return None
    parts = [v for v in items if v is not None]
    _budget().tick(len(parts))
    _budget().text(sum(len(v) for v in parts) + len(delimiter or "") * max(len(parts) - 1, 0), "string join")
    return (delimiter or "").join(parts)


_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _b_number(text: Any, grouping: Any = None, decimal_sep: Any = None) -> Any:
    if type(text) is not str:
        return None
    if grouping not in (None, " ", ",", ".") or decimal_sep not in (None, ",", "."):
        return None
    if grouping is not None and grouping == decimal_sep:
        return None
    if grouping:
        text = text.replace(grouping, "")
    if decimal_sep:
        text = text.replace(decimal_sep, ".")
    text = text.strip()
    if not _NUMBER_RE.fullmatch(text):
        return None
    return Decimal(text)


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


# --------------------------------------------------------------------------- grammar

_GRAMMAR = r"""
start_expression: expression
start_unary: positive_unary_test ("," positive_unary_test)*

?expression: if_expr | for_expr | quantified | disjunction
if_expr: "if" expression "then" expression "else" expression
for_expr: "for" iteration ("," iteration)* "return" expression
quantified: QUANTIFIER iteration ("," iteration)* "satisfies" expression
iteration: name "in" expression (".." expression)?
QUANTIFIER.2: /(some|every)(?![\w$])/

?disjunction: disjunction "or" conjunction -> or_
            | conjunction
?conjunction: conjunction "and" comparison -> and_
            | comparison
?comparison: sum CMP sum -> compare
           | sum "between" sum "and" sum -> between
           | sum "in" in_rhs -> in_
           | sum "instance" "of" name -> instance_of
           | sum
?in_rhs: sum | unary_cmp | rev_interval

?sum: sum "+" product -> add
    | sum "-" product -> sub
    | product
?product: product "*" power -> mul
        | product "/" power -> div
        | power
?power: power "**" unary -> pow
      | unary
?unary: "-" unary -> neg
      | postfix
?postfix: postfix "." name -> path
        | postfix "(" [args] ")" -> call
        | postfix "[" expression "]" -> filter
        | primary
args: expression ("," expression)* -> positional_args
    | named_arg ("," named_arg)* -> named_args
named_arg: name ":" expression

?primary: NUMBER -> number
        | STRING -> string
        | "true" -> true
        | "false" -> false
        | "null" -> null
        | "?" -> qmark
        | name -> var
        | AT_LITERAL -> at_literal
        | "[" [expression ("," expression)*] "]" -> list
        | "{" [context_entry ("," context_entry)*] "}" -> context
        | "[" expression ".." expression interval_end -> closed_start_interval
        | "(" expression ".." expression interval_end -> open_start_interval
        | "(" positive_unary_test ("," positive_unary_test)* ")" -> paren
!interval_end: "]" | ")" | OPEN_END
context_entry: (name | STRING) ":" expression
?positive_unary_test: expression | unary_cmp | rev_interval
unary_cmp: CMP sum
rev_interval: "]" expression ".." expression interval_end

name: NAME_PART (NAME_PART | NUMBER)*
    | SPECIAL_NAME
SPECIAL_NAME.3: /date\s+and\s+time(?![\w$])/
              | /years\s+and\s+months\s+duration(?![\w$])/
              | /days\s+and\s+time\s+duration(?![\w$])/
CMP: "<=" | ">=" | "!=" | "<" | ">" | "="
NAME_PART: /(?!\d)[\w$\uE000-\uF8FF\U00010000-\U000EFFFF]+/
NUMBER: /(\d+(\.\d+)?|\.\d+)([eE][+-]?\d+)?/
STRING: /"(?:[^"\\]|\\.)*"/s
AT_LITERAL: /@"(?:[^"\\]|\\.)*"/
OPEN_END.2: /\[(?=\s*(?:$|[,)\]}:=!<>]|(?:and|or|then|else|return|satisfies)(?![\w$])))/
%ignore /\s+/
%ignore /\/\/[^\n]*/
%ignore /\/\*(.|\n)*?\*\//
"""

_parser_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(
        _GRAMMAR,
        start=["start_expression", "start_unary"],
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
    )


_KEYWORDS = frozenset(
    [
        "and",
        "or",
        "in",
        "between",
        "instance",
        "of",
        "if",
        "then",
        "else",
        "for",
        "some",
        "every",
        "satisfies",
        "return",
        "true",
        "false",
        "null",
        "function",
        "not",
    ]
)
_SIMPLE_NAME_RE = re.compile(r"(?!\d)[\w$]+(?: (?![\d])[\w$]+)*")
_PLACEHOLDER_FIRST = 0xE000
_PLACEHOLDER_PAD = "\uf8ff"
_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _needs_placeholder(name: str) -> bool:
    normalized = " ".join(name.split())
    if not normalized:
        return False
    if not _SIMPLE_NAME_RE.fullmatch(normalized):
        return True
    words = normalized.split(" ")
    return len(words) > 1 and any(w in _KEYWORDS for w in words)


def _relevant_names(text: str, names: Iterable[str]) -> frozenset[str]:
    result = []
    for n in names:
        if not isinstance(n, str) or not _needs_placeholder(n):
            continue
        first = n.split()[0]
        if first in text:
            result.append(n)
    return frozenset(result)


def _substitute_names(text: str, names: frozenset[str]) -> tuple[str, dict[str, str]]:
    if not names:
        return text, {}
    ordered = sorted(names, key=len, reverse=True)
    alternatives = [r"\s+".join(re.escape(part) for part in n.split()) for n in ordered]
    rx = re.compile(r"(?<![\w$?])(?:" + "|".join(f"({a})" for a in alternatives) + r")(?![\w$])")
    strings = [m.span() for m in _STRING_RE.finditer(text)]
    out: list[str] = []
    mapping: dict[str, str] = {}
    last = 0
    for m in rx.finditer(text):
        start, end = m.span()
        if any(s < end and start < e for s, e in strings):
            continue
        group = m.lastindex or 1
        real = ordered[group - 1]
        index = len(mapping)
        if index > 0x18FE:
            break
        ph = chr(_PLACEHOLDER_FIRST + index)
        mapping[ph] = " ".join(real.split())
        out.append(text[last:start])
        out.append(ph + _PLACEHOLDER_PAD * (end - start - 1))
        last = end
    out.append(text[last:])
    return "".join(out), mapping


def _describe_expected(expected: Iterable[str]) -> str:
    pretty = {
        "RPAR": "')'",
        "LPAR": "'('",
        "RSQB": "']'",
        "LSQB": "'['",
        "RBRACE": "'}'",
        "LBRACE": "'{'",
        "COMMA": "','",
        "COLON": "':'",
        "NAME_PART": "a name",
        "NUMBER": "a number",
        "STRING": "a string",
        "CMP": "a comparison operator",
        "OPEN_END": "'['",
        "$END": "end of expression",
        "SPECIAL_NAME": "a name",
        "AT_LITERAL": '@"..."',
        "QUANTIFIER": "'some'/'every'",
    }

    def describe(terminal: str) -> str:
        if terminal in pretty:
            return pretty[terminal]
        if terminal.isalpha() and terminal.isupper():  # a keyword such as ELSE
            return f"'{terminal.lower()}'"
        return terminal.lower()

    expected = set(expected)
    if {"NUMBER", "STRING", "NAME_PART"} <= expected:  # anything that starts an expression
        return "; expected an expression"
    pretty.update(
        {"MINUS": "'-'", "PLUS": "'+'", "QMARK": "'?'", "STAR": "'*'", "SLASH": "'/'", "DOT": "'.'"}
    )
    items = sorted({describe(e) for e in expected if not e.startswith("__")})
    if not items:
        return ""
    if len(items) > 6:
        items = items[:6] + ["..."]
    return "; expected " + ", ".join(items)


def _parse(text: str, start: str) -> Tree:
    if len(text) > 100_000:
        raise FeelSyntaxError("expression too long", text[:80] + "...", None)
    try:
        with _parser_lock:
            return _parser().parse(text, start=start)
    except UnexpectedEOF as e:
        raise FeelSyntaxError(
            "unexpected end of expression" + _describe_expected(e.expected), text, len(text)
        ) from None
    except UnexpectedToken as e:
        if e.token.type == "$END":
            raise FeelSyntaxError(
                "unexpected end of expression" + _describe_expected(e.expected), text, len(text)
            ) from None
        value = str(e.token)
        if value and ord(value[0]) >= _PLACEHOLDER_FIRST and value[0] <= "\uf8ff":
            value = "name"
        raise FeelSyntaxError(
            f"unexpected {value!r}" + _describe_expected(e.expected), text, e.token.start_pos
        ) from None
    except UnexpectedCharacters as e:
        raise FeelSyntaxError(
            f"unexpected character {text[e.pos_in_stream]!r}", text, e.pos_in_stream
        ) from None
    except UnexpectedInput as e:  # pragma: no cover - other lark errors
        raise FeelSyntaxError(str(e).splitlines()[0], text, getattr(e, "pos_in_stream", None)) from None


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


def _any_test(tests: list[Callable[[Scope], bool | None]], scope: Scope) -> bool | None:
    result: bool | None = False
    for t in tests:
        r = t(scope)
        if r is True:
            return True
        if r is None:
            result = None
    return result


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


class _Compiler:
    def __init__(
        self, text: str, placeholders: dict[str, str], functions: frozenset[str], input_names: frozenset[str]
    ):
        self.text = text
        self.placeholders = placeholders
        self.functions = functions
        self.input_names = input_names
        self.uses_input = False
        self.depth = 0

    def error(self, message: str, node: Tree | Token | None) -> FeelSyntaxError:
        pos = None
        if isinstance(node, Token):
            pos = node.start_pos
        elif isinstance(node, Tree) and not node.meta.empty:
            pos = node.meta.start_pos
        return FeelSyntaxError(message, self.text, pos)

    # names ---------------------------------------------------------------
    def name(self, tree: Tree) -> str:
        parts = []
        for tok in tree.children:
            value = str(tok)
            if tok.type == "SPECIAL_NAME":
                value = " ".join(value.split())
            elif value and value[0] in self.placeholders:
                value = self.placeholders[value[0]] + value.lstrip(value[0] + _PLACEHOLDER_PAD)
            parts.append(value)
        return " ".join(parts)

    # dispatch ------------------------------------------------------------
    def compile(self, node: Tree | Token) -> Fn:
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise self.error("expression is nested too deeply", node)
        try:
            if isinstance(node, Token):  # pragma: no cover - grammar always wraps tokens
                raise self.error(f"unexpected token {node!r}", node)
            method = getattr(self, "c_" + node.data.rstrip("_"), None)
            if method is None:  # pragma: no cover
                raise self.error(f"unsupported construct '{node.data}'", node)
            return method(node)
        finally:
            self.depth -= 1

    # literals ------------------------------------------------------------
    def c_number(self, t: Tree) -> Fn:
        value = Decimal(str(t.children[0]))
        return lambda s: value

    def c_string(self, t: Tree) -> Fn:
        value = _unescape(str(t.children[0])[1:-1])
        return lambda s: value

    def c_true(self, t: Tree) -> Fn:
        return lambda s: True

    def c_false(self, t: Tree) -> Fn:
        return lambda s: False

    def c_null(self, t: Tree) -> Fn:
        return lambda s: None

    def c_at_literal(self, t: Tree) -> Fn:
        body = _unescape(str(t.children[0])[2:-1])
        value: Any
        if body.startswith(("P", "-P")):
            value = parse_duration(body)
        elif "T" in body:
            value = parse_date_time(body)
        elif ":" in body:
            value = parse_time(body)
        else:
            value = parse_date(body)
        if value is None:
            raise self.error(f"invalid temporal literal @{body!r}", t)
        return lambda s: value

    def c_qmark(self, t: Tree) -> Fn:
        self.uses_input = True
        return lambda s: s.get_input()

    def c_var(self, t: Tree) -> Fn:
        name = self.name(t.children[0])
        if name in self.input_names:
            self.uses_input = True
        return lambda s: s.lookup(name)

    def c_list(self, t: Tree) -> Fn:
        items = [self.compile(c) for c in t.children if c is not None]
        return lambda s: [f(s) for f in items]

    def c_context(self, t: Tree) -> Fn:
        entries: list[tuple[str, Fn]] = []
        seen = set()
        for entry in t.children:
            if entry is None:
                continue
            key_node, value_node = entry.children
            if isinstance(key_node, Token):
                key = _unescape(str(key_node)[1:-1])
            else:
                key = self.name(key_node)
            if key in seen:
                raise self.error(f"duplicate context key '{key}'", entry)
            seen.add(key)
            entries.append((key, self.compile(value_node)))

        def context(s: Scope) -> dict:
            result: dict[str, Any] = {}
            inner = s.child(result)
            for key, fn in entries:
                result[key] = fn(inner)
            return result

        return context

    # intervals -----------------------------------------------------------
    def _interval(self, t: Tree, start_included: bool) -> Fn:
        start_fn = self.compile(t.children[0])
        end_fn = self.compile(t.children[1])
        end_included = str(t.children[2].children[0]) == "]"

        def interval(s: Scope) -> Range | None:
            a, b = start_fn(s), end_fn(s)
            if a is not None and b is not None:
                ka, kb = _kind(a), _kind(b)
                if ka != kb and not {ka, kb} <= {"date", "datetime"}:
                    return None
            return Range(a, b, start_included and a is not None, end_included and b is not None)

        return interval

    def c_closed_start_interval(self, t: Tree) -> Fn:
        return self._interval(t, True)

    def c_open_start_interval(self, t: Tree) -> Fn:
        return self._interval(t, False)

    def c_rev_interval(self, t: Tree) -> Fn:
        return self._interval(t, False)

    # unary tests ---------------------------------------------------------
    def test(self, node: Tree) -> Callable[[Scope], bool | None]:
        """Compile one positive unary test; the scope carries the input value."""
        if isinstance(node, Tree) and node.data == "unary_cmp":
            op = str(node.children[0])
            value_fn = self.compile(node.children[1])
            cmp = _COMPARATORS[op]
            return lambda s: cmp(s.get_input(), value_fn(s))
        saved = self.uses_input
        self.uses_input = False
        fn = self.compile(node)
        uses_input = self.uses_input
        self.uses_input = saved or uses_input
        if uses_input:

            def with_input(s: Scope) -> bool | None:
                value = fn(s)
                if type(value) is bool:
                    return value
                return _value_test(value, s.get_input(), s)

            return with_input
        return lambda s: _value_test(fn(s), s.get_input(), s)

    def c_unary_cmp(self, t: Tree) -> Fn:
        raise self.error("a unary test such as '< 5' is only allowed after 'in' or inside '( )'", t)

    def c_paren(self, t: Tree) -> Fn:
        children = t.children
        if len(children) == 1 and not (
            isinstance(children[0], Tree) and children[0].data in ("unary_cmp", "rev_interval")
        ):
            return self.compile(children[0])
        tests = [self.test(c) for c in children]
        start = t.meta.start_pos if not t.meta.empty else 0
        end = t.meta.end_pos if not t.meta.empty else len(self.text)
        value = _UnaryTestValue(tests, self.text[start:end])
        return lambda s: value

    def c_in(self, t: Tree) -> Fn:
        left = self.compile(t.children[0])
        rhs = t.children[1]
        test = self.test(rhs)
        return lambda s: test(s.child(input_value=left(s)))

    # operators -----------------------------------------------------------
    def _binary(self, t: Tree, op: Callable[[Any, Any], Any]) -> Fn:
        a = self.compile(t.children[0])
        b = self.compile(t.children[1])
        return lambda s: op(a(s), b(s))

    def c_add(self, t: Tree) -> Fn:
        return self._binary(t, _add)

    def c_sub(self, t: Tree) -> Fn:
        return self._binary(t, _sub)

    def c_mul(self, t: Tree) -> Fn:
        return self._binary(t, _mul)

    def c_div(self, t: Tree) -> Fn:
        return self._binary(t, _div)

    def c_pow(self, t: Tree) -> Fn:
        return self._binary(t, _pow)

    def c_neg(self, t: Tree) -> Fn:
        inner = t.children[0]
        if isinstance(inner, Tree) and inner.data == "number":
            value = -Decimal(str(inner.children[0]))
            return lambda s: value
        fn = self.compile(inner)
        return lambda s: _negate(fn(s))

    def c_compare(self, t: Tree) -> Fn:
        a = self.compile(t.children[0])
        op = _COMPARATORS[str(t.children[1])]
        b = self.compile(t.children[2])
        return lambda s: op(a(s), b(s))

    def c_between(self, t: Tree) -> Fn:
        v, lo, hi = (self.compile(c) for c in t.children)

        def between(s: Scope) -> bool | None:
            x = v(s)
            return _and(_ge(x, lo(s)), _le(x, hi(s)))

        return between

    def c_and(self, t: Tree) -> Fn:
        a = self.compile(t.children[0])
        b = self.compile(t.children[1])

        def conj(s: Scope) -> bool | None:
            x = a(s)
            if x is False:
                return False
            return _and(x, b(s))

        return conj

    def c_or(self, t: Tree) -> Fn:
        a = self.compile(t.children[0])
        b = self.compile(t.children[1])

        def disj(s: Scope) -> bool | None:
            x = a(s)
            if x is True:
                return True
            return _or(x, b(s))

        return disj

    def c_if_expr(self, t: Tree) -> Fn:
        cond, then, other = (self.compile(c) for c in t.children)
        return lambda s: then(s) if cond(s) is True else other(s)

    def c_instance_of(self, t: Tree) -> Fn:
        value = self.compile(t.children[0])
        type_name = self.name(t.children[1])
        check = _TYPE_CHECKS.get(type_name)
        if check is None:
            raise self.error(f"unsupported type '{type_name}' in 'instance of'", t.children[1])
        return lambda s: check(value(s))

    # iteration -----------------------------------------------------------
    def _iterations(self, nodes: list[Tree]) -> list[tuple[str, Fn, Fn | None]]:
        result = []
        for it in nodes:
            name = self.name(it.children[0])
            src = self.compile(it.children[1])
            end = (
                self.compile(it.children[2]) if len(it.children) > 2 and it.children[2] is not None else None
            )
            result.append((name, src, end))
        return result

    @staticmethod
    def _domain(s: Scope, src: Fn, end: Fn | None) -> Iterable[Any] | None:
        """The values an iteration variable takes.  Ranges are produced one value at a
        time, and refused before the first one when longer than the budget allows."""
        first = src(s)
        if end is not None:
            last = end(s)
            a, b = _int_arg(first), _int_arg(last)
            if a is None or b is None:
                return None
            step = 1 if b >= a else -1
            _budget().items(abs(b - a) + 1, "iteration range", counted=False)
            return map(Decimal, range(a, b + step, step))
        if type(first) is list:
            return first
        if type(first) is Range:
            a, b = _int_arg(first.start), _int_arg(first.end)
            if a is None or b is None:
                return None
            a = a if first.start_included else a + 1
            b = b if first.end_included else b - 1
            _budget().items(max(b - a + 1, 0), "iteration range", counted=False)
            return map(Decimal, range(a, b + 1))
        return None if first is None else [first]

    def _combinations(self, s: Scope, its: list[tuple[str, Fn, Fn | None]]) -> Iterable[Scope] | None:
        def rec(scope: Scope, idx: int) -> Iterable[Scope]:
            if idx == len(its):
                yield scope
                return
            name, src, end = its[idx]
            domain = self._domain(scope, src, end)
            if domain is None:
                raise _NullDomain
            budget = _budget()
            for v in domain:
                budget.tick()
                yield from rec(scope.child({name: v}), idx + 1)

        return rec(s, 0)

    def c_for_expr(self, t: Tree) -> Fn:
        its = self._iterations(t.children[:-1])
        body = self.compile(t.children[-1])

        def for_expr(s: Scope) -> list | None:
            results: list = []
            try:
                for inner in self._combinations(s, its) or ():
                    inner.values["partial"] = results  # type: ignore[index]
                    results.append(body(inner))
            except _NullDomain:
                return None
            return results

        return for_expr

    def c_quantified(self, t: Tree) -> Fn:
        every = str(t.children[0]) == "every"
        its = self._iterations(t.children[1:-1])
        body = self.compile(t.children[-1])

        def quantified(s: Scope) -> bool | None:
            try:
                for inner in self._combinations(s, its) or ():
                    r = body(inner)
                    if every and r is not True:
                        return False
                    if not every and r is True:
                        return True
            except _NullDomain:
                return None
            return every

        return quantified

    # postfix -------------------------------------------------------------
    def c_path(self, t: Tree) -> Fn:
        target = self.compile(t.children[0])
        name = self.name(t.children[1])
        return lambda s: _path(target(s), name)

    def c_filter(self, t: Tree) -> Fn:
        target = self.compile(t.children[0])
        cond = self.compile(t.children[1])

        def filt(s: Scope) -> Any:
            items = target(s)
            if items is None:
                return None
            if type(items) is not list:
                items = [items]
            result = []
            budget = _budget()
            for i, item in enumerate(items):
                budget.tick()
                values = {"item": item}
                if type(item) is dict:
                    values.update(item)
                    try:
                        r = cond(s.child(values))
                    except _UnknownName:  # an entry this item does not have
                        r = None
                else:
                    r = cond(s.child(values))
                if type(r) is Decimal:
                    if i == 0:
                        idx = _position(items, r)
                        return None if idx is None else items[idx]
                    return None
                if r is True:
                    result.append(item)
            if not items:
                probe = cond(s.child({"item": None}))
                if type(probe) is Decimal:
                    return None
            return result

        return filt

    def c_call(self, t: Tree) -> Fn:
        callee, args_node = t.children
        positional: list[Fn] | None = None
        named: list[tuple[str, Fn]] | None = None
        if args_node is None:
            positional = []
        elif args_node.data == "positional_args":
            positional = [self.compile(c) for c in args_node.children]
        else:
            named = []
            for na in args_node.children:
                named.append((self.name(na.children[0]), self.compile(na.children[1])))
            if len({n for n, _ in named}) != len(named):
                raise self.error("duplicate named argument", args_node)

        if isinstance(callee, Tree) and callee.data == "var":
            fname = self.name(callee.children[0])
            if fname == "is defined" and fname not in self.functions:
                return self._is_defined(t, positional, named)
            if fname not in self.functions:
                if fname in _BUILTINS:
                    return self._builtin_call(t, fname, positional, named)
                close = difflib.get_close_matches(fname, list(_BUILTINS) + sorted(self.functions), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise self.error(f"unknown function '{fname}'{hint}", callee)
            fn_name = fname

            def lookup_callee(s: Scope) -> Any:
                return s.lookup(fn_name)

            callee_fn: Fn = lookup_callee
        else:
            callee_fn = self.compile(callee)
            fn_name = "<expression>"

        def call(s: Scope) -> Any:
            fn = callee_fn(s)
            if positional is not None:
                args = [a(s) for a in positional]
                kwargs = None
            else:
                args = None
                kwargs = {n: a(s) for n, a in named}  # type: ignore[union-attr]
            if isinstance(fn, FeelFunction):
                return fn.call(args, kwargs)
            if fn is None:
                raise FeelEvaluationError(f"'{fn_name}' is null, not a function")
            raise FeelEvaluationError(f"'{fn_name}' is not a function")

        return call

    def _builtin_call(
        self, t: Tree, fname: str, positional: list[Fn] | None, named: list[tuple[str, Fn]] | None
    ) -> Fn:
        sigs = _BUILTINS[fname]
        if positional is not None:
            n = len(positional)
            sig = next((sg for sg in sigs if sg.accepts_count(n)), None)
            if sig is None:
                counts = " or ".join(
                    (
                        f"at least {sg.required}"
                        if sg.variadic
                        else (
                            f"{sg.required}"
                            if sg.required == len(sg.params)
                            else f"{sg.required} to {len(sg.params)}"
                        )
                    )
                    for sg in sigs
                )
                raise self.error(f"function '{fname}' expects {counts} arguments, got {n}", t)
            impl = sig.impl
            args_fns = positional
            return lambda s: impl(*[a(s) for a in args_fns])
        assert named is not None
        names = [n for n, _ in named]
        sig = next((sg for sg in sigs if not sg.variadic and sg.accepts_names(names)), None)
        if sig is None:
            sig = next((sg for sg in sigs if sg.accepts_names(names)), None)
        if sig is None:
            options = " or ".join("(" + ", ".join(sg.params) + ")" for sg in sigs)
            raise self.error(f"function '{fname}' has parameters {options}, got ({', '.join(names)})", t)
        impl = sig.impl
        order = {p: i for i, p in enumerate(sig.params)}
        by_pos = sorted(named, key=lambda na: order[na[0]])
        count = max(order[n] for n in names) + 1 if names else 0
        slots: list[Fn | None] = [None] * count
        for n, fn in by_pos:
            slots[order[n]] = fn
        return lambda s: impl(*[f(s) if f is not None else None for f in slots])

    def _is_defined(self, t: Tree, positional: list[Fn] | None, named: list[tuple[str, Fn]] | None) -> Fn:
        if named is not None:
            if len(named) != 1 or named[0][0] != "value":
                raise self.error("function 'is defined' has one parameter (value)", t)
            arg = named[0][1]
        else:
            if positional is None or len(positional) != 1:
                raise self.error("function 'is defined' expects 1 argument", t)
            arg = positional[0]

        def is_defined(s: Scope) -> bool:
            try:
                arg(s)
            except _UnknownName:
                return False
            return True

        return is_defined


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


# --------------------------------------------------------------------------- public API


class CompiledFeel:
    """A compiled FEEL expression.  Immutable and safe to share between threads."""

    __slots__ = ("_fn", "text")

    def __init__(self, text: str, fn: Fn) -> None:
        self.text = text
        self._fn = fn

    def evaluate(self, context: Mapping[str, Any] | None = None, *, raw: bool = False,
                 limits: FeelLimits | None = None) -> Any:
        """Evaluate against ``context`` (Python values).  Returns plain Python values unless
        ``raw`` (then FEEL values: Decimal numbers...).  ``limits``: the budget, unless a
        :func:`budget` block is already open."""
        scope = Scope(context or {}, native=False)
        with budget(limits), localcontext(FEEL_DECIMAL_CONTEXT):
            value = self.evaluate_in(scope)
            return value if raw else to_python(value)

    def evaluate_in(self, scope: Scope) -> Any:
        """Evaluate in an existing :class:`Scope`; returns a FEEL value.  The caller is
        expected to have :data:`FEEL_DECIMAL_CONTEXT` active (``decimal.localcontext``).
        Runs in the open :func:`budget` block, or in a default budget of its own."""
        try:
            with budget():
                return self._fn(scope)
        except FeelEvaluationError:
            raise
        except RecursionError:
            raise FeelEvaluationError(f"expression nested too deeply: {self.text!r}") from None
        except DecimalException as e:
            raise FeelEvaluationError(f"numeric error ({type(e).__name__}) in {self.text!r}") from None

    def __repr__(self) -> str:
        return f"CompiledFeel({self.text!r})"


class CompiledUnaryTests:
    """Compiled unary tests (a decision table input entry)."""

    __slots__ = ("_tests", "input_variable", "is_any", "negated", "text")

    def __init__(
        self,
        text: str,
        tests: list[Callable[[Scope], bool | None]],
        *,
        is_any: bool = False,
        negated: bool = False,
        input_variable: str | None = None,
    ) -> None:
        self.text = text
        self._tests = tests
        self.is_any = is_any
        self.negated = negated
        self.input_variable = input_variable

    def matches(self, input_value: Any, context: Mapping[str, Any] | None = None, *,
                limits: FeelLimits | None = None) -> bool:
        """True when ``input_value`` satisfies the tests; ``context`` provides the other
        variables the tests may mention.  A null (unknown) outcome is no match."""
        if self.is_any:
            return True
        scope = Scope(context or {}, native=False)
        value = to_feel(input_value)
        bound = {self.input_variable: value} if self.input_variable else None
        with budget(limits), localcontext(FEEL_DECIMAL_CONTEXT):
            return self.test_in(scope.child(bound, input_value=value)) is True

    def test_in(self, scope: Scope) -> bool | None:
        """Three-valued outcome with the input value carried by ``scope`` (a FEEL value set
        with ``scope.child({input_variable: value}, input_value=value)``).  The caller is
        expected to have :data:`FEEL_DECIMAL_CONTEXT` active."""
        if self.is_any:
            return True
        try:
            with budget():
                result = _any_test(self._tests, scope)
        except FeelEvaluationError:
            raise
        except RecursionError:
            raise FeelEvaluationError(f"unary tests nested too deeply: {self.text!r}") from None
        except DecimalException as e:
            raise FeelEvaluationError(f"numeric error ({type(e).__name__}) in {self.text!r}") from None
        if self.negated:
            return None if result is None else not result
        return result

    def __repr__(self) -> str:
        return f"CompiledUnaryTests({self.text!r})"


def _compile(
    text: str, start: str, names: frozenset[str], functions: frozenset[str], input_names: frozenset[str]
):
    source, placeholders = _substitute_names(text, names)
    tree = _parse(source, start)
    compiler = _Compiler(text, placeholders, functions, input_names)
    try:
        if start == "start_expression":
            return compiler.compile(tree.children[0])
        return [compiler.test(c) for c in tree.children]
    except RecursionError:
        raise FeelSyntaxError("expression is nested too deeply", text, None) from None


@functools.lru_cache(maxsize=4096)
def _compile_expression_cached(text: str, names: frozenset[str], functions: frozenset[str]) -> CompiledFeel:
    if not text.strip():
        raise FeelSyntaxError("empty expression", text, 0)
    return CompiledFeel(text, _compile(text, "start_expression", names, functions, frozenset()))


def compile_expression(text: str, names: Iterable[str] = (), functions: Iterable[str] = ()) -> CompiledFeel:
    """Compile a FEEL expression (cached).

    ``names`` are variable names the caller knows about; only needed for names that
    contain spaces together with keywords or operator characters (``Date and Time of
    Birth``, ``Approved/Declined``).  ``functions`` names user functions (e.g. DMN
    business knowledge models) that will be in the evaluation context; calling any other
    name that is not a built-in is a :class:`FeelSyntaxError`.
    """
    if not isinstance(text, str):
        raise TypeError("FEEL text must be a str")
    fset = frozenset(f for f in functions if f.split()[0] in text) if functions else frozenset()
    return _compile_expression_cached(text, _relevant_names(text, names), fset)


_NOT_RE = re.compile(r"\s*not\s*\(")


def _split_negation(text: str) -> str | None:
    """If ``text`` is ``not( ... )`` as a whole, return the inner text."""
    m = _NOT_RE.match(text)
    if not m:
        return None
    depth = 0
    i = m.end() - 1
    in_string = False
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                if text[i + 1 :].strip():
                    return None
                return text[m.end() : i]
        i += 1
    return None


@functools.lru_cache(maxsize=8192)
def _compile_unary_cached(
    text: str, names: frozenset[str], functions: frozenset[str], input_variable: str | None
) -> CompiledUnaryTests:
    input_names = frozenset([input_variable]) if input_variable else frozenset()
    stripped = text.strip()
    if stripped in ("", "-"):
        return CompiledUnaryTests(text, [], is_any=True, input_variable=input_variable)
    inner = _split_negation(text)
    if inner is not None:
        if not inner.strip():
            raise FeelSyntaxError("empty 'not( )' unary test", text, len(text) - 1)
        offset = text.index("(") + 1
        padded = " " * offset + inner
        try:
            tests = _compile(padded, "start_unary", names, functions, input_names)
        except FeelSyntaxError as e:
            raise FeelSyntaxError(e.reason, text, e.position) from None
        return CompiledUnaryTests(text, tests, negated=True, input_variable=input_variable)
    tests = _compile(text, "start_unary", names, functions, input_names)
    return CompiledUnaryTests(text, tests, input_variable=input_variable)


def compile_unary_tests(
    text: str,
    names: Iterable[str] = (),
    functions: Iterable[str] = (),
    input_variable: str | None = "cellInput",
) -> CompiledUnaryTests:
    """Compile unary tests (a decision table input entry), cached.

    Besides ``?``, the input value is visible under ``input_variable`` (Camunda's
    ``camunda:inputVariable``, default ``cellInput``); an entry that mentions either is a
    boolean condition (``? > 5``, ``cellInput.size() > 0``), any other expression is
    compared with the input (``"gold"``, ``limit``, ``[1..5]``, a list of allowed values).
    """
    if not isinstance(text, str):
        raise TypeError("FEEL text must be a str")
    fset = frozenset(f for f in functions if f.split()[0] in text) if functions else frozenset()
    return _compile_unary_cached(text, _relevant_names(text, names), fset, input_variable or None)


def evaluate(text: str, context: Mapping[str, Any] | None = None, *, raw: bool = False,
             limits: FeelLimits | None = None) -> Any:
    """Compile (cached) and evaluate a FEEL expression in one call."""
    return compile_expression(text, names=context.keys() if context else ()).evaluate(
        context, raw=raw, limits=limits)
