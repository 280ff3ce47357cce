"""Sandbox for the Python scripts and expressions found in BPMN/DMN diagrams.

Diagrams are uploaded by process owners (and over the REST API), so the code in a
script task or in a gateway condition is untrusted.  SpiffWorkflow's default
``TaskDataEnvironment`` runs it with ``eval``/``exec`` and full builtins; this module
replaces it with :class:`SandboxedEnvironment`, built on RestrictedPython:

* Compile time (:func:`validate_script` / :func:`validate_expression`, also used at
  deploy): RestrictedPython's policy (no names or attributes starting with ``_``, no
  frame/code/generator internals, ...) plus our own refusals: imports, class
  definitions, ``with``, ``yield``, calls to ``eval``/``exec``/``compile``/``open``/
  ``globals``/``locals``/``vars``/``type``/``setattr``/``delattr``/...  The source is
  rewritten so that loops, comprehensions, function calls and exception handlers
  count steps, and so that ``+``, ``*``, ``**``, ``<<``, ``%``, ``*spread`` and
  f-string formatting go through size-checking guards.
* Run time: only a small set of builtins exists; attribute access goes through a
  guard that refuses private names, modules, frames and code objects and checks the
  dangerous ``str`` methods (``format`` attribute walking, padding, ``replace``,
  ``join``...); only lists and dicts may be modified in place; every run has a step
  budget, a CPU/wall time budget, an allocation budget and (on Linux) a memory
  growth check.  Nothing here uses signals or ``sys.settrace``, so it works in any
  thread.

Known limits of the in-process checks: a single C-level operation is not
interrupted by the step/time counters, so its cost is only bounded by the size caps
(for example ``sorted()`` of a million items runs to its end; comparing or hashing
two deeply self-aliased tuples is exponential).  That is why, by default
(``isolation="process"``), scripts and every expression that is not "simple" (see
``_Compiled.simple``) run in a worker process (:mod:`engine.sandbox_worker`) that the
parent kills when it passes its CPU or wall time, with an address-space limit: the
checks above still run inside the worker and give the precise message and line; the
kill is the backstop.  Simple expressions (names, constants, operators, attribute and
item access) run in the calling thread: each of their operations is bounded by the
size of the task data.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import datetime as _datetime
import decimal
import functools
import itertools
import logging
import math as _math
import operator
import os
import re
import string
import sys
import textwrap
import threading
import time
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer
from SpiffWorkflow.bpmn.script_engine.python_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

__all__ = [
    "SandboxLimits",
    "SandboxTimeout",
    "SandboxViolation",
    "SandboxedEnvironment",
    "SandboxedScriptEngine",
    "compile_cache_info",
    "validate_expression",
    "validate_script",
]


# --------------------------------------------------------------------------- errors


class SandboxViolation(Exception):
    """A construct or an operation that the sandbox refuses.

    ``lineno`` is the line of the diagram's script/expression when known;
    ``errors`` lists every refusal found at compile time.
    """

    def __init__(self, message: str, *, lineno: int | None = None, errors: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.lineno = lineno
        self.errors: tuple[str, ...] = tuple(errors) or (message,)


class SandboxTimeout(SandboxViolation):
    """A script ran out of its step or time budget."""


# --------------------------------------------------------------------------- limits


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one evaluation/execution.

    cpu_time:            seconds of CPU time of the running thread.
    wall_time:           seconds of wall-clock time (covers GIL contention).
    max_steps:           loop iterations + comprehension items + function calls
                         + exception handlers entered.
    max_range:           largest ``range()`` length.
    max_sequence:        largest str/bytes/list/tuple a single guarded operation may
                         produce (``*``, ``+``, padding, ``join``, ``replace``...) and the
                         largest value that may be turned into text.
    max_allocation:      total size produced by guarded operations in one run.
    max_int_bits:        largest integer ``*``, ``**`` and ``<<`` may produce.
    max_format_width:    largest width/precision in format specs and ``%`` formats.
    max_decimal_digits:  largest digit count / exponent of a ``Decimal``.
    max_output_size:     size (nodes + characters) of the data a script leaves in
                         the task data, or an expression returns.
    max_memory_growth:   bytes the process' resident memory may grow during a run
                         (Linux only, sampled with the clocks; it is process-wide, so
                         keep it well above what other threads allocate in a few
                         seconds; ``None`` disables the check).
    """

    cpu_time: float = 2.0
    wall_time: float = 10.0
    max_steps: int = 1_000_000
    max_range: int = 1_000_000
    max_sequence: int = 1_000_000
    max_allocation: int = 20_000_000
    max_int_bits: int = 100_000
    max_format_width: int = 10_000
    max_decimal_digits: int = 4_300
    max_output_size: int = 20_000_000
    max_memory_growth: int | None = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None and value <= 0:
                raise ValueError(f"SandboxLimits.{field.name} must be positive, got {value!r}")


DEFAULT_LIMITS = SandboxLimits()

#: "process": scripts and non-simple expressions run in a worker process that is killed
#: when it passes its limits (the default); "inline": in the calling thread (what the
#: worker itself uses; a single C-level operation cannot be interrupted there).
ISOLATION_MODES = ("process", "inline")

#: Time and memory are checked every this many steps (and on big allocations).
_CHECK_INTERVAL = 64
#: Allocations at least this big trigger an immediate time/memory check.
_BIG_ALLOCATION = 100_000
#: Longest source text accepted.
MAX_SOURCE_LENGTH = 100_000
#: Compiled code objects kept (LRU, keyed by source text and mode).
COMPILE_CACHE_SIZE = 4096


# --------------------------------------------------------------------------- per-run state

_local = threading.local()
_log = logging.getLogger(__name__)


def _statm_reader() -> Callable[[], int] | None:
    """Return a function giving this process' resident set size, or None."""
    if not sys.platform.startswith("linux"):
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    cache: dict[int, int] = {}

    def rss() -> int:
        pid = os.getpid()
        fd = cache.get(pid)
        if fd is None:
            cache.clear()
            fd = cache[pid] = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
        return int(os.pread(fd, 128, 0).split()[1]) * page

    try:
        rss()
    except OSError:
        return None
    return rss


_rss = _statm_reader()


class _Run:
    """Budget of one evaluate/execute call.  ``tick`` is injected into the code."""

    __slots__ = (
        "allocated", "cpu_start", "failure", "limits", "next_check", "printed", "rss_start", "steps",
        "wall_start",
    )

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self.steps = 0
        self.next_check = 1  # the first step starts the clocks
        self.allocated = 0
        self.failure: SandboxViolation | None = None
        # Clocks and memory are sampled at the first step: most expressions never
        # take one, and what runs before it is straight-line code.
        self.cpu_start: float | None = None
        self.wall_start = 0.0
        self.rss_start = 0
        self.printed: list[str] = []

    def fail(self, exc: SandboxViolation) -> SandboxViolation:
        """Record a (sticky) failure: later ticks and the end of the run re-raise it."""
        if exc.lineno is None:
            exc.lineno = _script_lineno()
        if self.failure is None:
            self.failure = exc
        return exc

    def tick(self) -> bool:
        if self.failure is not None:
            raise self.failure
        self.steps += 1
        if self.steps >= self.next_check:
            self.check()
        return True

    def check(self) -> None:
        limits = self.limits
        if self.steps > limits.max_steps:
            raise self.fail(SandboxTimeout(
                f"script stopped: more than {limits.max_steps} steps (loop iterations and function calls)"))
        self.next_check = min(self.steps + _CHECK_INTERVAL, limits.max_steps + 1)
        cpu = time.thread_time()
        wall = time.monotonic()
        if self.cpu_start is None:
            self.cpu_start = cpu
            self.wall_start = wall
            if _rss is not None and limits.max_memory_growth is not None:
                self.rss_start = _rss()
            return
        if cpu - self.cpu_start > limits.cpu_time:
            raise self.fail(SandboxTimeout(f"script stopped: it used more than {limits.cpu_time:g} s of CPU time"))
        if wall - self.wall_start > limits.wall_time:
            raise self.fail(SandboxTimeout(f"script stopped: it ran longer than {limits.wall_time:g} s"))
        growth_limit = limits.max_memory_growth
        if _rss is not None and growth_limit is not None and _rss() - self.rss_start > growth_limit:
            raise self.fail(SandboxViolation(
                f"script stopped: memory grew by more than {growth_limit // (1024 * 1024)} MiB"))

    def charge(self, size: int, what: str) -> None:
        """Account for an object of ``size`` items/characters about to be built."""
        limits = self.limits
        if size > limits.max_sequence:
            raise self.fail(SandboxViolation(
                f"{what} would produce {size} items/characters; the limit is {limits.max_sequence}"))
        self.allocated += size
        if self.allocated > limits.max_allocation:
            raise self.fail(SandboxViolation(
                f"script stopped: it built more than {limits.max_allocation} items/characters in total"))
        if size >= _BIG_ALLOCATION:
            self.check()


def _script_lineno() -> int | None:
    """Line of the innermost frame that runs diagram code, if any."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == _FILENAME:
            return frame.f_lineno
        frame = frame.f_back
    return None


def _current() -> _Run:
    run = getattr(_local, "run", None)
    if run is None:
        raise SandboxViolation("sandboxed code can only run inside the sandbox")
    return run


def _violation(message: str) -> SandboxViolation:
    """Build a runtime violation and make it sticky for the current run."""
    run = getattr(_local, "run", None)
    exc = SandboxViolation(message)
    return run.fail(exc) if run is not None else exc


# --------------------------------------------------------------------------- size helpers

_INT_TYPES = (int, bool)
_NUMBER_TYPES = frozenset({int, float, bool, complex, decimal.Decimal})
_SEQUENCE_TYPES = (str, bytes, list, tuple)
_TEXT_TYPES = (str, bytes)
_SCALAR_TYPES = frozenset({
    str, bytes, int, float, bool, complex, type(None), decimal.Decimal,
    _datetime.datetime, _datetime.date, _datetime.time, _datetime.timedelta,
})
_CONTAINER_TYPES = (list, tuple, set, frozenset)
_WALKED_TYPES = (dict, list, tuple, set, frozenset)
_PLAIN_LEAVES = frozenset(_SCALAR_TYPES - {str, bytes})
_NOT_DATA_TYPES = (
    types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType,
    types.GeneratorType, types.FrameType, types.CodeType, types.TracebackType, type,
    functools.partial,
)
_DANGEROUS_VALUES = (types.ModuleType, types.FrameType, types.CodeType, types.TracebackType)


class _TooLarge(Exception):
    """Internal: a structure exceeded the size limit of :func:`_data_size`."""


def _children(container: Any) -> Iterable[Any]:
    if isinstance(container, dict):
        return itertools.chain(container.keys(), container.values())
    return iter(container)


def _data_size(root: Any, limit: int, memo: dict[int, int] | None = None,
               leaf_check: Callable[[Any], None] | None = None) -> int:
    """Logical size of ``root``: 1 per object plus the characters of strings, where a
    sub-structure shared N times counts N times (that is what ``str()`` or JSON makes
    of it).  Each distinct container is walked once (memoized by id), so the cost is
    bounded by the real memory.  Raises ``_TooLarge`` past ``limit`` and ValueError on
    a structure that contains itself."""
    if isinstance(root, _TEXT_TYPES):
        return len(root) + 1
    if not isinstance(root, _WALKED_TYPES):
        if leaf_check is not None:
            leaf_check(root)
        return 1
    memo = {} if memo is None else memo
    if id(root) in memo:
        return memo[id(root)]
    active = {id(root)}
    frames: list[list[Any]] = [[root, _children(root), 1]]
    while frames:
        frame = frames[-1]
        for child in frame[1]:
            kind = type(child)
            if kind in _PLAIN_LEAVES:
                frame[2] += 1
            elif isinstance(child, _TEXT_TYPES):
                frame[2] += len(child) + 1
            elif isinstance(child, _WALKED_TYPES):
                known = memo.get(id(child))
                if known is not None:
                    frame[2] += known
                elif id(child) in active:
                    raise ValueError("structure contains itself")
                else:
                    active.add(id(child))
                    frames.append([child, _children(child), 1])
                    break
            else:
                if leaf_check is not None:
                    leaf_check(child)
                frame[2] += 1
            if frame[2] > limit:
                raise _TooLarge
        else:
            frames.pop()
            active.discard(id(frame[0]))
            memo[id(frame[0])] = frame[2]
            if not frames:
                return frame[2]
            frames[-1][2] += frame[2]
            if frames[-1][2] > limit:
                raise _TooLarge
    raise AssertionError("unreachable")


def _check_render(value: Any) -> None:
    """Account for turning ``value`` into text; refuses huge (or self-aliased) structures."""
    if type(value) in _SCALAR_TYPES and not isinstance(value, _TEXT_TYPES):
        return
    run = _current()
    try:
        size = _data_size(value, run.limits.max_sequence)
    except _TooLarge:
        size = run.limits.max_sequence + 1
    except ValueError:
        raise run.fail(SandboxViolation("cannot convert a structure that contains itself to text")) from None
    run.charge(size, "converting a value to text")


_DIGITS = re.compile(r"\d+")
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_spec(spec: str) -> None:
    limit = _current().limits.max_format_width
    for number in _DIGITS.findall(spec):
        if len(number) > 9 or int(number) > limit:
            raise _violation(f"format width/precision {number} is too large; the limit is {limit}")


def _check_percent_format(fmt: str | bytes) -> None:
    if isinstance(fmt, bytes):
        fmt = fmt.decode("latin-1")
    if "%" not in fmt:
        return
    limit = _current().limits.max_format_width
    for match in _PERCENT_SPEC.finditer(fmt):
        for group in match.groups():
            if group is None:
                continue
            if group == "*":
                raise _violation("'*' widths are not allowed in % formatting")
            if len(group) > 9 or int(group) > limit:
                raise _violation(f"format width/precision {group} is too large; the limit is {limit}")


def _check_format_string(fmt: str) -> None:
    """Refuse ``str.format`` templates that walk attributes or items (``{0.__class__}``)."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format itself will raise the same error
    for _literal, field, spec, _conversion in parsed:
        if field is not None and ("." in field or "[" in field):
            raise _violation(f"format field {{{field}}} is not allowed: attribute and item access in "
                             "format strings is refused")
        if spec:
            if "{" in spec:
                raise _violation("nested replacement fields in format specs are not allowed")
            _check_spec(spec)


# --------------------------------------------------------------------------- operator guards


def _check_add(a: Any, b: Any) -> None:
    if isinstance(a, _SEQUENCE_TYPES) and isinstance(b, _SEQUENCE_TYPES):
        _current().charge(len(a) + len(b), "'+'")


def _check_mul(a: Any, b: Any) -> None:
    ta = type(a)
    tb = type(b)
    if ta in _NUMBER_TYPES and tb in _NUMBER_TYPES:
        if ta is int and tb is int and a.bit_length() + b.bit_length() > _current().limits.max_int_bits:
            raise _violation(f"integer multiplication result exceeds {_current().limits.max_int_bits} bits")
        return
    if isinstance(a, _SEQUENCE_TYPES) and isinstance(b, _INT_TYPES):
        _current().charge(len(a) * max(b, 0), "'*'")
    elif isinstance(b, _SEQUENCE_TYPES) and isinstance(a, _INT_TYPES):
        _current().charge(len(b) * max(a, 0), "'*'")


def _check_pow(a: Any, b: Any) -> None:
    if type(a) in _INT_TYPES and type(b) in _INT_TYPES and b > 1 and abs(a) > 1:
        limit = _current().limits.max_int_bits
        # a >= 2**(bits-1), so the result has at least b*(bits-1)+1 bits.
        if b * (abs(a).bit_length() - 1) + 1 > limit or b > limit:
            raise _violation(f"'**' result exceeds {limit} bits")


def _check_lshift(a: Any, b: Any) -> None:
    if type(a) in _INT_TYPES and type(b) in _INT_TYPES and a and b > 0:
        limit = _current().limits.max_int_bits
        if abs(a).bit_length() + b > limit:
            raise _violation(f"'<<' result exceeds {limit} bits")


def _check_mod(a: Any, b: Any) -> None:
    if isinstance(a, _TEXT_TYPES):
        _check_percent_format(a)
        if isinstance(b, tuple):
            for item in b:
                _check_render(item)
        else:
            _check_render(b)


_FAST_NUMBERS = frozenset({int, float, bool})
_SMALL_INT_BITS = 4096


def _sb_add(a: Any, b: Any) -> Any:
    if type(a) in _FAST_NUMBERS and type(b) in _FAST_NUMBERS:
        return a + b
    _check_add(a, b)
    return a + b


def _sb_mul(a: Any, b: Any) -> Any:
    if type(a) is float or type(b) is float:
        return a * b
    if type(a) is int and type(b) is int and a.bit_length() + b.bit_length() <= _SMALL_INT_BITS:
        return a * b
    _check_mul(a, b)
    return a * b


def _sb_pow(a: Any, b: Any, mod: Any = None) -> Any:
    if mod is not None:
        return pow(a, b, mod)
    _check_pow(a, b)
    return a**b


def _sb_lshift(a: Any, b: Any) -> Any:
    _check_lshift(a, b)
    return a << b


def _sb_mod(a: Any, b: Any) -> Any:
    _check_mod(a, b)
    return a % b


def _sb_star(value: Any) -> Any:
    """``*value`` in a literal or a call: counts towards the allocation budget."""
    try:
        size = len(value)
    except TypeError:
        return value
    _current().charge(size, "'*' unpacking")
    return value


def _sb_format(value: Any, conversion: int, spec: str | None) -> str:
    """One ``{...}`` of an f-string."""
    _check_render(value)
    if conversion != -1:
        value = {115: str, 114: repr, 97: ascii}[conversion](value)
    if spec:
        _check_spec(spec)
    return format(value, spec or "")


_INPLACE: dict[str, tuple[Callable[[Any, Any], None] | None, Callable[[Any, Any], Any]]] = {
    "+=": (_check_add, operator.iadd),
    "-=": (None, operator.isub),
    "*=": (_check_mul, operator.imul),
    "/=": (None, operator.itruediv),
    "//=": (None, operator.ifloordiv),
    "%=": (_check_mod, operator.imod),
    "**=": (_check_pow, operator.ipow),
    "<<=": (_check_lshift, operator.ilshift),
    ">>=": (None, operator.irshift),
    "&=": (None, operator.iand),
    "|=": (None, operator.ior),
    "^=": (None, operator.ixor),
    "@=": (None, operator.imatmul),
}


def _sb_inplacevar(op: str, target: Any, value: Any) -> Any:
    if op == "+=" and type(target) in _FAST_NUMBERS and type(value) in _FAST_NUMBERS:
        return target + value
    check, apply = _INPLACE[op]
    if check is not None:
        check(target, value)
    return apply(target, value)


def _sb_augitem(obj: Any, key: Any, op: str, value: Any) -> None:
    """``obj[key] op= value``."""
    target = _guarded_write(obj)
    target[key] = _sb_inplacevar(op, target[key], value)


# --------------------------------------------------------------------------- attribute guards

_DENIED_ATTRIBUTES = frozenset(INSPECT_ATTRIBUTES) | frozenset({
    "mro", "f_lasti", "f_lineno", "f_trace_lines", "f_trace_opcodes", "gi_running", "gi_suspended",
    "cr_running", "ag_running", "tb_lasti", "tb_lineno", "func_globals", "func_code",
})


def _str_pad(name: str) -> Callable[..., Any]:
    def guarded(self: Any, width: Any, *args: Any) -> Any:
        if isinstance(width, _INT_TYPES):
            _current().charge(max(width, len(self)), f"str.{name}()")
        return getattr(type(self) if isinstance(self, _TEXT_TYPES) else str, name)(self, width, *args)
    guarded.__name__ = name
    return guarded


def _str_expandtabs(self: Any, tabsize: int = 8) -> Any:
    if isinstance(self, _TEXT_TYPES) and isinstance(tabsize, _INT_TYPES):
        tab = "\t" if isinstance(self, str) else b"\t"
        _current().charge(len(self) + self.count(tab) * max(tabsize, 0), "expandtabs()")
    return type(self).expandtabs(self, tabsize)


def _str_replace(self: Any, old: Any, new: Any, count: int = -1) -> Any:
    if isinstance(self, _TEXT_TYPES) and isinstance(old, _TEXT_TYPES) and isinstance(new, _TEXT_TYPES):
        hits = self.count(old) if old else len(self) + 1
        if isinstance(count, _INT_TYPES) and count >= 0:
            hits = min(hits, count)
        _current().charge(len(self) + hits * max(len(new) - len(old), 0), "replace()")
    return type(self).replace(self, old, new, count)


def _str_join(self: Any, iterable: Iterable[Any]) -> Any:
    items = list(iterable)
    if isinstance(self, _TEXT_TYPES):
        size = sum(len(item) for item in items if isinstance(item, _TEXT_TYPES))
        _current().charge(size + len(self) * max(len(items) - 1, 0), "join()")
    return type(self).join(self, items)


def _str_translate(self: Any, table: Any, *args: Any) -> Any:
    if isinstance(self, str) and isinstance(table, Mapping):
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        _current().charge(len(self) * max(longest, 1), "translate()")
    return type(self).translate(self, table, *args)


def _str_format(self: Any, *args: Any, **kwargs: Any) -> str:
    if not isinstance(self, str):
        raise TypeError("format() needs a str")
    _check_format_string(self)
    for item in (*args, *kwargs.values()):
        _check_render(item)
    return str.format(self, *args, **kwargs)


def _str_format_map(self: Any, mapping: Any) -> str:
    if not isinstance(self, str):
        raise TypeError("format_map() needs a str")
    _check_format_string(self)
    if isinstance(mapping, Mapping):
        for item in mapping.values():
            _check_render(item)
    return str.format_map(self, mapping)


def _list_extend(self: Any, iterable: Any) -> None:
    if isinstance(iterable, Iterable) and hasattr(iterable, "__len__"):
        _current().charge(len(self) + len(iterable), "list.extend()")
    list.extend(self, iterable)


def _int_to_bytes(self: Any, length: Any = 1, *args: Any, **kwargs: Any) -> bytes:
    if isinstance(length, _INT_TYPES):
        _current().charge(length, "int.to_bytes()")
    return int.to_bytes(self, length, *args, **kwargs)


_TEXT_METHOD_GUARDS: dict[str, Callable[..., Any]] = {
    "ljust": _str_pad("ljust"),
    "rjust": _str_pad("rjust"),
    "center": _str_pad("center"),
    "zfill": _str_pad("zfill"),
    "expandtabs": _str_expandtabs,
    "replace": _str_replace,
    "join": _str_join,
    "translate": _str_translate,
    "format": _str_format,
    "format_map": _str_format_map,
}
_LIST_METHOD_GUARDS: dict[str, Callable[..., Any]] = {"extend": _list_extend}
_INT_METHOD_GUARDS: dict[str, Callable[..., Any]] = {"to_bytes": _int_to_bytes}


def _method_guard(obj: Any, name: str) -> Callable[..., Any] | None:
    """A size-checking replacement for ``obj.name`` (bound) or ``Type.name`` (unbound)."""
    if isinstance(obj, _ProxyMeta):
        obj = obj._real
    if isinstance(obj, type):
        if issubclass(obj, _TEXT_TYPES):
            return _TEXT_METHOD_GUARDS.get(name)
        if issubclass(obj, list):
            return _LIST_METHOD_GUARDS.get(name)
        if issubclass(obj, int):
            return _INT_METHOD_GUARDS.get(name)
        return None
    if isinstance(obj, _TEXT_TYPES):
        guard = _TEXT_METHOD_GUARDS.get(name)
    elif isinstance(obj, list):
        guard = _LIST_METHOD_GUARDS.get(name)
    elif isinstance(obj, int):
        guard = _INT_METHOD_GUARDS.get(name)
    else:
        return None
    return functools.partial(guard, obj) if guard is not None else None


_MISSING = object()


def _guarded_getattr(obj: Any, name: str, default: Any = _MISSING) -> Any:
    """``obj.name`` and the ``getattr`` builtin inside the sandbox."""
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    if name.startswith("_") or name in _DENIED_ATTRIBUTES:
        raise _violation(f"access to attribute {name!r} is not allowed")
    if isinstance(obj, types.ModuleType):
        raise _violation("access to modules is not allowed")
    if name in _TEXT_METHOD_GUARDS or name in _LIST_METHOD_GUARDS or name in _INT_METHOD_GUARDS:
        guard = _method_guard(obj, name)
        if guard is not None:
            return guard
    if default is _MISSING:
        value = getattr(obj, name)
    else:
        value = getattr(obj, name, default)
    if isinstance(value, _DANGEROUS_VALUES):
        raise _violation(f"attribute {name!r} gives access to a {type(value).__name__} object, which is not allowed")
    return value


def _guarded_hasattr(obj: Any, name: str) -> bool:
    try:
        _guarded_getattr(obj, name)
    except AttributeError:
        return False
    return True


def _guarded_write(obj: Any) -> Any:
    """Target of ``obj[k] = v``, ``del obj[k]``, ``obj.a = v``: only plain data."""
    if isinstance(obj, (dict, list)):
        return obj
    raise _violation(f"modifying {type(obj).__name__} objects is not allowed (only lists and dicts can be changed)")


def _guarded_apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


class _PrintCollector:
    """Target of ``print(...)``: output goes to the log, never to a file."""

    def __init__(self, _getattr_: Any = None) -> None:
        self.run = _current()

    def _call_print(self, *objects: Any, sep: str | None = " ", end: str | None = "\n",
                    file: Any = None, flush: bool = False) -> None:
        if file is not None:
            raise _violation("print(file=...) is not allowed")
        parts = []
        for item in objects:
            _check_render(item)
            parts.append(str(item))
        text = (" " if sep is None else str(sep)).join(parts) + ("\n" if end is None else str(end))
        self.run.charge(len(text), "print()")
        self.run.printed.append(text)
        _log.debug("diagram script printed: %s", text.rstrip("\n"))

    def __call__(self) -> str:
        return "".join(self.run.printed)


# --------------------------------------------------------------------------- builtins


class _Refused:
    """Stands in for a builtin that scripts may not use (``eval``, ``open``, ``type``...)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _violation(f"{self.name}() is not allowed in diagram scripts")

    def __repr__(self) -> str:
        return f"<refused builtin {self.name}>"


# C functions of the standard library import helpers through the ``__import__`` of
# the calling frame's builtins (``datetime.strftime`` imports ``time``,
# ``datetime.strptime`` imports ``_strptime``).  Diagram code itself can never reach
# ``__import__`` (names starting with "_" and import statements are refused at
# compile time), so the only callers are such C functions, and the module they get
# back never reaches the script.
_INTERNAL_IMPORTS = frozenset({"time", "_strptime"})


def _internal_import(name: str, globals: Any = None, locals: Any = None,
                     fromlist: Any = (), level: int = 0) -> Any:
    if level == 0 and name in _INTERNAL_IMPORTS:
        return builtins.__import__(name, globals, locals, fromlist, level)
    raise _violation(f"importing {name!r} is not allowed")


def _safe_range(*args: Any) -> range:
    result = range(*args)
    limit = _current().limits.max_range
    try:
        size = len(result)
    except OverflowError:
        size = limit + 1
    if size > limit:
        raise _violation(f"range() is too long: the limit is {limit} items")
    _current().charge(size, "range()")
    return result


_SUMMABLE_STARTS = (int, float, decimal.Decimal, _datetime.timedelta)


def _safe_sum(iterable: Iterable[Any], /, start: Any = 0) -> Any:
    if not isinstance(start, _SUMMABLE_STARTS):
        raise _violation("sum() only adds numbers and timedeltas; use ''.join() or a comprehension instead")
    return builtins.sum(iterable, start)


def _safe_round(number: Any, ndigits: Any = None) -> Any:
    if isinstance(ndigits, _INT_TYPES) and abs(ndigits) > _current().limits.max_decimal_digits:
        raise _violation("round(): ndigits is too large")
    if ndigits is None:
        return builtins.round(number)
    return builtins.round(number, ndigits)


def _check_decimal(value: decimal.Decimal) -> decimal.Decimal:
    if value.is_finite():
        limit = _current().limits.max_decimal_digits
        if len(value.as_tuple().digits) > limit or abs(value.adjusted()) > limit:
            raise _violation(f"Decimal value has more than {limit} digits or a larger exponent")
    return value


class _ProxyMeta(type):
    """Metaclass of the stand-ins for ``str`` and ``Decimal``: calling one goes
    through a checking factory, while ``isinstance``, ``issubclass`` and class
    attributes (``str.upper``, ``Decimal.from_float``...) behave like the real type."""

    _real: type
    _factory: Callable[..., Any]

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._factory(*args, **kwargs)

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, cls._real)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, cls._real)

    def __getattr__(cls, name: str) -> Any:
        return getattr(cls._real, name)

    def __repr__(cls) -> str:
        return repr(cls._real)


def _proxy(real: type, factory: Callable[..., Any]) -> type:
    return _ProxyMeta(real.__name__, (), {"_real": real, "_factory": staticmethod(factory)})


def _make_decimal(value: Any = "0", context: Any = None) -> decimal.Decimal:
    if isinstance(value, str):
        _current().charge(len(value), "Decimal()")
    return _check_decimal(decimal.Decimal(value, context))


def _make_str(*args: Any, **kwargs: Any) -> str:
    if args:
        _check_render(args[0])
    return str(*args, **kwargs)


def _safe_repr(value: Any) -> str:
    _check_render(value)
    return repr(value)


def _safe_ascii(value: Any) -> str:
    _check_render(value)
    return ascii(value)


_DECIMAL = _proxy(decimal.Decimal, _make_decimal)
_STR = _proxy(str, _make_str)


def _make_math() -> types.SimpleNamespace:
    names = [
        "pi", "e", "tau", "inf", "nan", "ceil", "floor", "trunc", "fabs", "sqrt", "isqrt", "fsum",
        "isclose", "isfinite", "isinf", "isnan", "log", "log10", "log2", "log1p", "exp", "expm1",
        "pow", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "hypot", "degrees", "radians",
        "gcd", "copysign", "fmod", "modf", "remainder", "dist",
    ]
    return types.SimpleNamespace(**{name: getattr(_math, name) for name in names})


_REFUSED_BUILTINS = frozenset({
    "eval", "exec", "compile", "open", "globals", "locals", "vars", "dir", "breakpoint", "input",
    "help", "exit", "quit", "type", "super", "object", "setattr", "delattr", "memoryview",
    "bytearray", "classmethod", "staticmethod", "property", "iter", "aiter", "anext", "id",
    "issubclass", "__import__", "__build_class__", "reload", "execfile", "license", "credits", "copyright",
})

_EXCEPTIONS = [
    "Exception", "ArithmeticError", "AssertionError", "AttributeError", "IndexError", "KeyError",
    "LookupError", "NameError", "NotImplementedError", "OverflowError", "RuntimeError",
    "StopIteration", "TypeError", "UnicodeError", "ValueError", "ZeroDivisionError",
]

_PLAIN_BUILTINS = [
    "abs", "all", "any", "bin", "bool", "callable", "chr", "dict", "divmod",
    "enumerate", "filter", "float", "frozenset", "hex", "int", "isinstance", "len", "list",
    "map", "max", "min", "next", "oct", "ord", "reversed", "set", "slice", "sorted", "tuple", "zip",
]


def _make_builtins() -> dict[str, Any]:
    result: dict[str, Any] = {name: _Refused(name) for name in _REFUSED_BUILTINS}
    result.update({name: getattr(builtins, name) for name in _PLAIN_BUILTINS + _EXCEPTIONS})
    result.update({
        "None": None, "True": True, "False": False,
        "range": _safe_range,
        "sum": _safe_sum,
        "round": _safe_round,
        "pow": _sb_pow,
        "__import__": _internal_import,
        "getattr": _guarded_getattr,
        "hasattr": _guarded_hasattr,
        "datetime": _datetime.datetime,
        "date": _datetime.date,
        "timedelta": _datetime.timedelta,
        "Decimal": _DECIMAL,
        "str": _STR,
        "repr": _safe_repr,
        "ascii": _safe_ascii,
        "math": _make_math(),
    })
    return result


SAFE_BUILTINS: Mapping[str, Any] = types.MappingProxyType(_make_builtins())

# Names the rewritten code relies on.  They all start with "_", which diagram code
# cannot even spell, and they are put into the namespace last so that task data can
# never replace them.
_RESERVED: dict[str, Any] = {
    "__builtins__": dict(SAFE_BUILTINS),
    "__name__": "<diagram>",
    "_getattr_": _guarded_getattr,
    "_getitem_": operator.getitem,
    "_getiter_": iter,
    "_write_": _guarded_write,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_inplacevar_": _sb_inplacevar,
    "_apply_": _guarded_apply,
    "_print_": _PrintCollector,
    "_sb_add_": _sb_add,
    "_sb_mul_": _sb_mul,
    "_sb_pow_": _sb_pow,
    "_sb_lshift_": _sb_lshift,
    "_sb_mod_": _sb_mod,
    "_sb_star_": _sb_star,
    "_sb_format_": _sb_format,
    "_sb_augitem_": _sb_augitem,
}


# --------------------------------------------------------------------------- compile-time policy

_FILENAME = "<string>"  # SpiffWorkflow looks for this name in tracebacks to find the line
_BINOP_GUARDS = {ast.Add: "_sb_add_", ast.Mult: "_sb_mul_", ast.Pow: "_sb_pow_",
                 ast.LShift: "_sb_lshift_", ast.Mod: "_sb_mod_"}
_AUG_OPERATORS = {ast.Add: "+=", ast.Sub: "-=", ast.Mult: "*=", ast.Div: "/=", ast.FloorDiv: "//=",
                  ast.Mod: "%=", ast.Pow: "**=", ast.LShift: "<<=", ast.RShift: ">>=", ast.BitAnd: "&=",
                  ast.BitOr: "|=", ast.BitXor: "^=", ast.MatMult: "@="}
_RP_DUPLICATES = frozenset({"Eval calls are not allowed.", "Exec calls are not allowed."})


def _call(name: str, args: list[ast.expr], location: ast.AST) -> ast.Call:
    node = ast.Call(func=ast.Name(name, ast.Load()), args=args, keywords=[])
    ast.copy_location(node, location)
    return ast.fix_missing_locations(node)


def _tick_stmt(location: ast.AST) -> ast.Expr:
    stmt = ast.Expr(_call("_tick_", [], location))
    ast.copy_location(stmt, location)
    return stmt


class _SandboxPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy, stricter, plus step counting and size guards."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[tuple[int | None, str]] = []

    # RestrictedPython reports through these
    def error(self, node: ast.AST, info: str) -> None:
        if info in _RP_DUPLICATES:
            return
        self.problems.append((getattr(node, "lineno", None), info.rstrip(".")))

    def warn(self, node: ast.AST, info: str) -> None:
        pass

    def refuse(self, node: ast.AST, info: str) -> None:
        self.problems.append((getattr(node, "lineno", None), info))

    # refused statements
    def visit_Import(self, node: ast.Import) -> ast.AST:
        self.refuse(node, "import statements are not allowed")
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        self.refuse(node, "import statements are not allowed")
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.refuse(node, "class definitions are not allowed")
        return node

    def visit_With(self, node: ast.With) -> ast.AST:
        self.refuse(node, "with statements are not allowed")
        return node

    def visit_Yield(self, node: ast.Yield) -> ast.AST:
        self.refuse(node, "yield is not allowed")
        return node

    def visit_YieldFrom(self, node: ast.YieldFrom) -> ast.AST:
        self.refuse(node, "yield is not allowed")
        return node

    def visit_Global(self, node: ast.Global) -> ast.AST:
        self.refuse(node, "global statements are not allowed")
        return node

    def visit_Call(self, node: ast.Call) -> Any:
        if isinstance(node.func, ast.Name) and node.func.id in _REFUSED_BUILTINS:
            self.refuse(node, f"{node.func.id}() is not allowed")
        return super().visit_Call(node)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        if node.attr in _DENIED_ATTRIBUTES and node.attr not in INSPECT_ATTRIBUTES:
            self.refuse(node, f"access to attribute {node.attr!r} is not allowed")
        return super().visit_Attribute(node)

    # step counting
    def visit_For(self, node: ast.For) -> Any:
        node = super().visit_For(node)
        node.body.insert(0, _tick_stmt(node))
        return node

    def visit_While(self, node: ast.While) -> Any:
        node = super().visit_While(node)
        node.body.insert(0, _tick_stmt(node))
        return node

    def visit_comprehension(self, node: ast.comprehension) -> Any:
        node = super().visit_comprehension(node)
        node.ifs.insert(0, _call("_tick_", [], node.iter))
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        node = super().visit_FunctionDef(node)
        node.body.insert(0, _tick_stmt(node))
        return node

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        node = super().visit_Lambda(node)
        body = ast.BoolOp(op=ast.And(), values=[_call("_tick_", [], node), node.body])
        node.body = ast.fix_missing_locations(ast.copy_location(body, node))
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> Any:
        node = super().visit_ExceptHandler(node)
        node.body.insert(0, _tick_stmt(node))
        return node

    # size guards
    def visit_BinOp(self, node: ast.BinOp) -> Any:
        node = self.node_contents_visit(node)
        guard = _BINOP_GUARDS.get(type(node.op))
        if guard is None:
            return node
        return _call(guard, [node.left, node.right], node)

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        target = node.target
        if isinstance(target, ast.Subscript):
            if isinstance(target.slice, ast.Slice):
                self.refuse(node, "augmented assignment to a slice is not allowed")
                return node
            obj = self.visit(target.value)
            key = self.visit(target.slice)
            value = self.visit(node.value)
            op = ast.Constant(_AUG_OPERATORS[type(node.op)])
            stmt = ast.Expr(_call("_sb_augitem_", [obj, key, op, value], node))
            return ast.copy_location(stmt, node)
        if isinstance(target, ast.Attribute):
            self.refuse(node, "assignment to attributes is not allowed")
            return node
        return super().visit_AugAssign(node)

    def visit_Starred(self, node: ast.Starred) -> Any:
        node = self.node_contents_visit(node)
        if isinstance(node.ctx, ast.Load):
            node.value = _call("_sb_star_", [node.value], node)
        return node

    def visit_FormattedValue(self, node: ast.FormattedValue) -> Any:
        node = self.node_contents_visit(node)
        spec: ast.expr = node.format_spec if node.format_spec is not None else ast.Constant(None)
        value = _call("_sb_format_", [node.value, ast.Constant(node.conversion), spec], node)
        return ast.copy_location(ast.FormattedValue(value=value, conversion=-1, format_spec=None), node)


@dataclasses.dataclass(frozen=True)
class _Compiled:
    code: types.CodeType | None
    error: Callable[[], Exception] | None
    # An expression made only of names, constants, operators, attribute and item access
    # (no calls, comprehensions, lambdas or ``:=``): each operation is bounded by the
    # size of the data, so it may run in the calling process.
    simple: bool = False


# Node types of a "simple" expression (see _Compiled.simple).
_SIMPLE_NODES = (
    ast.Expression, ast.Name, ast.Constant, ast.Compare, ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.IfExp,
    ast.Attribute, ast.Subscript, ast.Slice, ast.Tuple, ast.List, ast.Dict, ast.Set, ast.JoinedStr,
    ast.FormattedValue, ast.Load, ast.boolop, ast.cmpop, ast.unaryop, ast.operator,
)


def _is_simple(tree: ast.AST) -> bool:
    return all(isinstance(node, _SIMPLE_NODES) for node in ast.walk(tree))


def _dedent(source: str) -> str:
    """Remove the indentation a BPMN modeler may put before every line of a script.

    Only applied when the first non-blank line is indented, so that scripts written
    flush-left are compiled byte for byte (dedent also rewrites blank lines, which
    would change multi-line string literals)."""
    first = next((line for line in source.splitlines() if line.strip()), "")
    return textwrap.dedent(source) if first[:1] in (" ", "\t") else source


def _compile_uncached(source: str, mode: str) -> _Compiled:
    if not isinstance(source, str):
        raise TypeError(f"script must be a str, not {type(source).__name__}")
    if len(source) > MAX_SOURCE_LENGTH:
        message = f"script is too long ({len(source)} characters; the limit is {MAX_SOURCE_LENGTH})"
        return _Compiled(None, lambda: SandboxViolation(message))
    text = source.strip() if mode == "eval" else _dedent(source)
    try:
        tree = ast.parse(text, _FILENAME, mode)
    except SyntaxError as exc:
        args = (exc.msg, (exc.filename, exc.lineno, exc.offset, exc.text, exc.end_lineno, exc.end_offset))
        kind = type(exc)
        return _Compiled(None, lambda: kind(*args))
    except (RecursionError, MemoryError, ValueError) as exc:
        message = f"script cannot be parsed: {exc}"
        return _Compiled(None, lambda: SandboxViolation(message))
    simple = mode == "eval" and _is_simple(tree)
    policy = _SandboxPolicy()
    try:
        tree = policy.visit(tree)
    except RecursionError:
        return _Compiled(None, lambda: SandboxViolation("script is nested too deeply"))
    if policy.problems:
        lines = [f"line {lineno}: {info}" if lineno else info for lineno, info in policy.problems]
        first = policy.problems[0][0]
        message = "; ".join(lines)
        return _Compiled(None, lambda: SandboxViolation(message, lineno=first, errors=lines))
    try:
        code = compile(tree, _FILENAME, mode)
    except SyntaxError as exc:
        args = (exc.msg, (exc.filename, exc.lineno, exc.offset, exc.text, exc.end_lineno, exc.end_offset))
        return _Compiled(None, lambda: SyntaxError(*args))
    except (RecursionError, MemoryError):
        return _Compiled(None, lambda: SandboxViolation("script is nested too deeply"))
    return _Compiled(code, None, simple)


_compile_cached = functools.lru_cache(maxsize=COMPILE_CACHE_SIZE)(_compile_uncached)


def _get_compiled(source: str, mode: str) -> _Compiled:
    compiled = _compile_cached(source, mode)
    if compiled.code is None:
        assert compiled.error is not None
        raise compiled.error()
    return compiled


def _get_code(source: str, mode: str) -> types.CodeType:
    code = _get_compiled(source, mode).code
    assert code is not None
    return code


def validate_script(text: str) -> None:
    """Compile a script task's text without running it.

    Raises ``SyntaxError`` (with ``lineno``) or :class:`SandboxViolation` whose
    message names each refused construct with its line.
    """
    _get_code(text, "exec")


def validate_expression(text: str) -> None:
    """Compile a condition/expression without evaluating it (see :func:`validate_script`)."""
    _get_code(text, "eval")


def compile_cache_info() -> Any:
    """Hit/miss statistics of the compilation cache."""
    return _compile_cached.cache_info()


# --------------------------------------------------------------------------- environment


def _is_function_like(value: Any) -> bool:
    return callable(value) or isinstance(value, (types.ModuleType, types.GeneratorType, map, filter, zip,
                                                 enumerate, reversed, range))


def _check_output(name: str, value: Any, remaining: int, memo: dict[int, int], limit: int) -> int:
    """Check one value that leaves the sandbox; returns the size budget left."""

    def leaf_check(leaf: Any) -> None:
        if isinstance(leaf, (*_NOT_DATA_TYPES, _Refused)):
            raise SandboxViolation(f"{name!r} contains a {type(leaf).__name__} object; only plain data "
                                   "can be stored")

    try:
        return remaining - _data_size(value, remaining, memo, leaf_check)
    except _TooLarge:
        raise SandboxViolation(f"{name!r} is too large: data leaving the sandbox is limited to {limit} "
                               "items and characters in total") from None
    except ValueError:
        raise SandboxViolation(f"{name!r} contains itself; only plain (acyclic) data can be stored") from None


class SandboxedEnvironment(BasePythonScriptEngineEnvironment):
    """Drop-in replacement for SpiffWorkflow's ``TaskDataEnvironment``.

    ``environment_globals`` are extra names offered to every script (for example the
    hospital calendar functions).  They are trusted host code: they run unsandboxed,
    so only inject functions that are safe to call with any arguments.
    """

    def __init__(self, environment_globals: Mapping[str, Any] | None = None,
                 limits: SandboxLimits | None = None, *, isolation: str = "process") -> None:
        super().__init__(dict(environment_globals or {}))
        bad = [name for name in self.globals if not isinstance(name, str) or name.startswith("_")]
        if bad:
            raise ValueError(f"environment globals may not start with '_': {bad}")
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"isolation must be one of {ISOLATION_MODES}, got {isolation!r}")
        self.limits = limits or DEFAULT_LIMITS
        self.isolation = isolation

    # -- SpiffWorkflow API

    def evaluate(self, expression: str, context: dict[str, Any],
                 external_context: Mapping[str, Any] | None = None) -> Any:
        """Evaluate an expression against the task data; ``context`` is not modified.

        Simple expressions (no calls, comprehensions, lambdas or ``:=``) run in this
        process; the others run in a worker process (see :mod:`engine.sandbox_worker`)."""
        compiled = _get_compiled(expression, "eval")
        code = compiled.code
        assert code is not None
        if self.isolation == "process" and not compiled.simple:
            from engine.sandbox_worker import run_isolated

            return run_isolated("eval", expression, code, context, external_context or {}, self.globals,
                                self.limits)
        run = _Run(self.limits)
        namespace = self._namespace(context, external_context, run)
        result = self._run(code, namespace, run)
        if type(result) not in _SCALAR_TYPES:
            limit = self.limits.max_output_size
            _check_output("expression result", result, limit, {}, limit)
        return result

    def execute(self, script: str, context: dict[str, Any],
                external_context: Mapping[str, Any] | None = None) -> bool:
        """Run a script; the variables it assigns are written back into ``context``.

        Functions, modules and iterators are not written back (as in SpiffWorkflow);
        variables the script deletes are removed.  If the script fails, ``context``
        keeps its previous top-level variables.
        """
        external = external_context or {}
        self.check_for_overwrite(context, external)
        code = _get_code(script, "exec")
        if self.isolation == "process":
            from engine.sandbox_worker import run_isolated

            return run_isolated("exec", script, code, context, external, self.globals, self.limits)
        run = _Run(self.limits)
        namespace = self._namespace(context, external, run)
        self._run(code, namespace, run)

        updates: dict[str, Any] = {}
        removals: list[str] = []
        remaining = self.limits.max_output_size
        memo: dict[int, int] = {}
        for name, value in namespace.items():
            if name.startswith("_") or name in self.globals or name in external:
                continue
            if _is_function_like(value):
                if name in context:
                    removals.append(name)
                continue
            remaining = _check_output(name, value, remaining, memo, self.limits.max_output_size)
            updates[name] = value
        for name in context:
            if isinstance(name, str) and not name.startswith("_") and name not in namespace:
                removals.append(name)
        context.update(updates)
        for name in removals:
            context.pop(name, None)
        return True

    def call_service(self, context: dict[str, Any], **kwargs: Any) -> Any:
        raise NotImplementedError(
            "service tasks are not run as Python by this engine; configure a service task handler instead")

    def check_for_overwrite(self, context: Mapping[str, Any], external_context: Mapping[str, Any]) -> None:
        """Refuse task data that hides an injected function (same rule as SpiffWorkflow)."""
        clashes = set(self.globals).intersection(context)
        clashes.update(set(external_context).intersection(context))
        if clashes:
            raise ValueError(
                "You have task data that overwrites a predefined function(s). Please change the "
                f"following variable or field name(s) to something else: {sorted(clashes)}")

    # -- internals

    def _namespace(self, context: Mapping[str, Any], external_context: Mapping[str, Any] | None,
                   run: _Run) -> dict[str, Any]:
        namespace = dict(self.globals)
        if external_context:
            namespace.update(external_context)
        namespace.update(context)
        namespace.update(_RESERVED)
        namespace["_tick_"] = run.tick
        return namespace

    def _run(self, code: types.CodeType, namespace: dict[str, Any], run: _Run) -> Any:
        previous_run = getattr(_local, "run", None)
        previous_decimal = decimal.getcontext()
        bounded = previous_decimal.copy()
        digits = self.limits.max_decimal_digits
        bounded.Emax = min(bounded.Emax, digits)
        bounded.Emin = max(bounded.Emin, -digits)
        bounded.prec = min(bounded.prec, digits)
        _local.run = run
        decimal.setcontext(bounded)
        try:
            result = eval(code, namespace)  # restricted, rewritten code only
        except SandboxViolation:
            raise
        except RecursionError as exc:
            if run.failure is None:
                raise SandboxViolation("maximum recursion depth exceeded",
                                       lineno=_traceback_lineno(exc)) from exc
            raise run.failure from exc
        except MemoryError as exc:
            raise SandboxViolation("out of memory", lineno=_traceback_lineno(exc)) from exc
        except Exception:
            if run.failure is not None:
                raise run.failure from None
            raise
        finally:
            decimal.setcontext(previous_decimal)
            _local.run = previous_run
        if run.failure is not None:
            # The script caught a refusal and carried on: it is refused all the same.
            raise run.failure
        return result


def _traceback_lineno(exc: BaseException) -> int | None:
    lineno = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _FILENAME:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    return lineno


# --------------------------------------------------------------------------- script engine


class SandboxedScriptEngine(PythonScriptEngine):
    """SpiffWorkflow script engine whose scripts and expressions run in the sandbox.

    SpiffWorkflow does not serialize script engines: set one on every workflow
    after it is created or deserialized (``workflow.script_engine = ...``).
    """

    def __init__(self, environment: SandboxedEnvironment | None = None, *,
                 environment_globals: Mapping[str, Any] | None = None,
                 limits: SandboxLimits | None = None) -> None:
        if environment is None:
            environment = SandboxedEnvironment(environment_globals, limits)
        elif not isinstance(environment, SandboxedEnvironment):
            raise TypeError("SandboxedScriptEngine needs a SandboxedEnvironment")
        elif environment_globals is not None or limits is not None:
            raise TypeError("pass either an environment or environment_globals/limits, not both")
        super().__init__(environment)

    def call_service(self, task: Any, **kwargs: Any) -> Any:
        # SpiffWorkflow's version refers to an undefined name when the call fails.
        from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException

        try:
            return self.environment.call_service(task.data, **kwargs)
        except Exception as err:
            raise WorkflowTaskException(str(err), task=task, exception=err) from err

    def get_error_line_number_and_content(self, script: str, err: Exception) -> tuple[int, str]:
        if isinstance(err, SandboxViolation):
            lineno = err.lineno
        else:  # an error raised in a worker process carries the line it was raised on
            lineno = getattr(err, "sandbox_lineno", None)
        if lineno:
            lines = script.splitlines()
            return lineno, lines[lineno - 1] if 0 < lineno <= len(lines) else ""
        return super().get_error_line_number_and_content(script, err)
