"""FEEL's errors, its Decimal context and the evaluation budget (steps, time, sizes)."""

from __future__ import annotations

import contextlib
import threading
import time as _time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context

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
