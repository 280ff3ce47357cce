"""Compiled templates (text with ${...} and #{...} parts): the public entry points."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from time import monotonic  # only for the evaluation deadline, never for a value
from typing import Any

from engine.dialect.juel.lexer import _lex
from engine.dialect.juel.limits import (
    _UTC,
    BUILTIN_FUNCTIONS,
    MAX_TEMPLATE_LENGTH,
    TIME_LIMIT,
    JuelEvaluationError,
    JuelSyntaxError,
    _clock,
)
from engine.dialect.juel.members import ExecutionContext, _check_length
from engine.dialect.juel.nodes import _Env, _Node
from engine.dialect.juel.operators import _plain
from engine.dialect.juel.parser import _Parser
from engine.dialect.juel.values import _to_string

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
