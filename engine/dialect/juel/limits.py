"""Limits of templates and evaluations, the two error types, and the evaluation clock."""

from __future__ import annotations

import threading
from datetime import UTC
from time import monotonic  # only for the evaluation deadline, never for a value

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


_clock = threading.local()


def _tick() -> None:
    """Count one step of walking a collection; every so often, check the time limit."""
    steps = getattr(_clock, "steps", 0) + 1
    _clock.steps = steps
    if steps % _CHECK_INTERVAL == 0:
        deadline = getattr(_clock, "deadline", None)
        if deadline is not None and monotonic() > deadline[0]:
            raise JuelEvaluationError(f"evaluation stopped: it ran longer than {deadline[1]:g} s")
