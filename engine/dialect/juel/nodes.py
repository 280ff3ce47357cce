"""The syntax tree of an expression and its evaluation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from engine.dialect.juel.limits import BUILTIN_FUNCTIONS, JuelEvaluationError
from engine.dialect.juel.members import ExecutionContext, _available, _call_method, _get_index, _get_property
from engine.dialect.juel.operators import _arith, _compare, _equals, _is_empty, _negate
from engine.dialect.juel.values import JodaDateTime, _to_bool

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
