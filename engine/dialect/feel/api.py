"""Compiled expressions and unary tests: the public entry points, cached per text."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import DecimalException, localcontext
from typing import Any

from engine.dialect.feel.compiler import _Compiler
from engine.dialect.feel.grammar import _parse, _relevant_names, _substitute_names
from engine.dialect.feel.limits import (
    FEEL_DECIMAL_CONTEXT,
    FeelEvaluationError,
    FeelLimits,
    FeelSyntaxError,
    budget,
)
from engine.dialect.feel.operators import Scope, _any_test, to_python
from engine.dialect.feel.semantics import Fn
from engine.dialect.feel.values import to_feel

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
