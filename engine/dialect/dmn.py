"""DMN decisions for the engine's Camunda 7 dialect.

Parses DMN XML as Camunda Modeler saves it (DMN 1.1 to 1.5 namespaces, ``camunda:``
extension attributes, ``dmndi`` diagram elements are ignored) and evaluates decisions
with our own FEEL (:mod:`engine.dialect.feel`).

Supported
---------
* Several decisions per file; ``informationRequirement/requiredDecision`` chains (required
  decisions are evaluated first, in dependency order; a cycle is a definition error).
* Decision tables with any number of inputs and outputs, and literal expression
  decisions.  Business knowledge models whose logic is a literal expression or a
  decision table are callable as functions by name.
* All hit policies of the DMN standard: UNIQUE, FIRST, PRIORITY, ANY, COLLECT (with
  SUM, MIN, MAX, COUNT aggregation), RULE ORDER, OUTPUT ORDER; ``defaultOutputEntry``.
* ``typeRef`` coercion of input and output values: Camunda's ``string``, ``boolean``,
  ``integer``, ``long``, ``double``, ``date`` and the DMN types ``number``, ``date``,
  ``dateTime``/``date and time``, ``time``, ``dayTimeDuration``, ``yearMonthDuration``
  (item definitions that are plain aliases of those are followed).  Like Camunda, a value
  that cannot be converted is an evaluation error (``"abc"`` for ``integer``), and
  ``string`` accepts anything (numbers become their text).  ``date`` follows Camunda:
  a date-time stays a date-time.
* ``camunda:inputVariable`` (default ``cellInput``): the name under which an input entry
  sees the input value, besides FEEL's ``?``.

Results
-------
:meth:`DmnModel.evaluate` returns Camunda 7's *result list*: one dict per matched rule
(output name -> value; an empty output entry is left out, as Camunda does).  A literal
expression decision gives ``[{variable name: value}]``.  A COLLECT table with an
aggregation gives one row with the aggregate (COUNT counts the matched rules' values,
as Camunda does; SUM/MIN/MAX of nothing is null).  :func:`map_decision_result`
implements ``camunda:mapDecisionResult``.  :meth:`DmnModel.evaluate_value` gives the
decision's value as the DMN standard defines it (single value, context, list...).

A decision sees: the caller's variables; every ``inputData`` declared in the file (null
when the caller does not give it); the value of each decision evaluated before it in the
chain under the decision's name and id (DMN semantics); and, like Camunda, those
decisions' outputs as variables (a single-result decision's outputs by output name, a
multi-result decision's outputs as lists).  Unknown variable names are evaluation errors.

Errors
------
:class:`DmnDefinitionError` when parsing (malformed XML, a FEEL cell that does not
compile, unknown hit policy, missing or cyclic required decision, unsupported element).
:class:`DmnEvaluationError` when evaluating (UNIQUE or ANY violated, a value that does not
fit its typeRef, an unknown variable...): the message names the decision and the rules.
Not supported: boxed contexts, invocations, relations, lists, function definitions,
decision services and imports (they are reported as definition errors).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, localcontext
from typing import Any

from lxml import etree

from engine.dialect.feel import (
    FEEL_DECIMAL_CONTEXT,
    CompiledFeel,
    CompiledUnaryTests,
    FeelError,
    FeelEvaluationError,
    FeelFunction,
    FeelLimitExceeded,
    FeelLimits,
    FeelSyntaxError,
    Scope,
    YearsMonthsDuration,
    compile_expression,
    compile_unary_tests,
    feel_equal,
    feel_string,
    parse_date,
    parse_date_time,
    parse_duration,
    parse_time,
    to_python,
)
from engine.dialect.feel import budget as feel_budget

__all__ = [
    "CAMUNDA_NS",
    "DMN_NAMESPACES",
    "HIT_POLICIES",
    "BusinessKnowledgeModel",
    "Decision",
    "DecisionEvaluation",
    "DecisionInput",
    "DecisionOutput",
    "DmnDefinitionError",
    "DmnError",
    "DmnEvaluationError",
    "DmnModel",
    "DmnResultMappingError",
    "Rule",
    "map_decision_result",
    "parse_dmn",
]

#: Model namespaces of DMN 1.1 to 1.5.
DMN_NAMESPACES = frozenset(
    {
        "http://www.omg.org/spec/DMN/20151101/dmn.xsd",
        "http://www.omg.org/spec/DMN/20180521/MODEL/",
        "https://www.omg.org/spec/DMN/20191111/MODEL/",
        "https://www.omg.org/spec/DMN/20211108/MODEL/",
        "https://www.omg.org/spec/DMN/20230324/MODEL/",
    }
)
CAMUNDA_NS = "http://camunda.org/schema/1.0/dmn"

HIT_POLICIES = ("UNIQUE", "FIRST", "PRIORITY", "ANY", "COLLECT", "RULE ORDER", "OUTPUT ORDER")
_AGGREGATIONS = ("SUM", "MIN", "MAX", "COUNT")
_SINGLE_HIT = frozenset({"UNIQUE", "FIRST", "PRIORITY", "ANY"})
_UNSUPPORTED_LOGIC = (
    "context",
    "invocation",
    "relation",
    "list",
    "functionDefinition",
    "conditional",
    "filter",
    "for",
    "some",
    "every",
)
_MAPPING_MODES = ("singleEntry", "singleResult", "collectEntries", "resultList")


# --------------------------------------------------------------------------- errors


class DmnError(Exception):
    """Base class of DMN errors."""


class DmnDefinitionError(DmnError):
    """The DMN file cannot be used: ``filename``, the id of the offending element (a rule,
    input entry, output entry, decision...) and the reason."""

    def __init__(self, filename: str, element_id: str | None, reason: str, line: int | None = None) -> None:
        self.filename = filename
        self.element_id = element_id
        self.reason = reason
        self.line = line
        where = filename
        if line is not None:
            where += f", line {line}"
        if element_id:
            where += f", element '{element_id}'"
        super().__init__(f"{where}: {reason}")


class DmnEvaluationError(DmnError):
    """A decision could not be evaluated; ``decision_id`` and ``rule_ids`` say where."""

    def __init__(self, message: str, decision_id: str | None = None, rule_ids: Iterable[str] = ()) -> None:
        self.decision_id = decision_id
        self.rule_ids = tuple(rule_ids)
        super().__init__(message)


class DmnResultMappingError(DmnEvaluationError):
    """The result list does not have the shape a ``mapDecisionResult`` mode requires."""


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class DecisionInput:
    id: str
    label: str | None
    expression_text: str
    expression: CompiledFeel
    type_ref: str | None
    input_variable: str
    input_values: CompiledUnaryTests | None = None


@dataclass(frozen=True)
class DecisionOutput:
    id: str
    name: str
    label: str | None
    type_ref: str | None
    output_values: tuple[Any, ...] | None = None
    default: CompiledFeel | None = None


@dataclass(frozen=True)
class Rule:
    id: str
    index: int
    input_entries: tuple[tuple[str, CompiledUnaryTests], ...]
    output_entries: tuple[tuple[str, CompiledFeel | None], ...]
    description: str | None = None


@dataclass(frozen=True)
class Decision:
    id: str
    name: str
    kind: str  # "table" | "literal"
    hit_policy: str | None = None
    aggregation: str | None = None
    required: tuple[str, ...] = ()
    variable_name: str | None = None
    type_ref: str | None = None
    inputs: tuple[DecisionInput, ...] = ()
    outputs: tuple[DecisionOutput, ...] = ()
    rules: tuple[Rule, ...] = ()
    literal: CompiledFeel | None = None
    version_tag: str | None = None
    history_time_to_live: str | None = None
    line: int | None = None

    @property
    def result_name(self) -> str:
        """Key of a literal expression decision's result (its variable name)."""
        return self.variable_name or self.name or self.id


@dataclass(frozen=True)
class BusinessKnowledgeModel:
    id: str
    name: str
    parameters: tuple[str, ...]
    body: Decision


@dataclass
class DecisionEvaluation:
    """Outcome of one decision: Camunda result list, DMN value, the matched rules, and the
    evaluations of the decisions it required (in evaluation order)."""

    decision_id: str
    decision_name: str
    result_list: list[dict[str, Any]]
    value: Any
    matched_rule_ids: tuple[str, ...] = ()
    required: tuple[DecisionEvaluation, ...] = field(default=())


# --------------------------------------------------------------------------- coercion

_TYPE_ALIASES = {
    "string": "string",
    "boolean": "boolean",
    "integer": "integer",
    "long": "long",
    "double": "double",
    "number": "number",
    "date": "date",
    "dateTime": "dateTime",
    "date and time": "dateTime",
    "time": "time",
    "dayTimeDuration": "dayTimeDuration",
    "days and time duration": "dayTimeDuration",
    "duration": "dayTimeDuration",
    "yearMonthDuration": "yearMonthDuration",
    "years and months duration": "yearMonthDuration",
    "Any": "Any",
    "any": "Any",
}
_INT_RE = re.compile(r"[+-]?\d+")
_NUM_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class _CoercionError(Exception):
    pass


def _coerce(value: Any, type_ref: str | None) -> Any:
    """Convert a FEEL value to ``type_ref`` (a normalized built-in type name)."""
    if value is None or type_ref is None or type_ref == "Any":
        return value
    t = type(value)
    if type_ref == "string":
        if t is str:
            return value
        text = feel_string(value)
        if text is None:
            raise _CoercionError
        return text
    if type_ref == "boolean":
        if t is bool:
            return value
        if t is str and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise _CoercionError
    if type_ref in ("integer", "long"):
        if t is str and _INT_RE.fullmatch(value.strip()):
            value = Decimal(value.strip())
            t = Decimal
        if t is Decimal and value == value.to_integral_value():
            limit = 2**31 if type_ref == "integer" else 2**63
            if -limit <= value < limit:
                return value.to_integral_value()
        raise _CoercionError
    if type_ref in ("double", "number"):
        if t is str and _NUM_RE.fullmatch(value.strip()):
            return Decimal(value.strip())
        if t is Decimal:
            return value
        raise _CoercionError
    if type_ref == "date":
        if isinstance(value, date):  # a date, or (as in Camunda) a date-time
            return value
        if t is str:
            parsed: Any = parse_date(value)
            if parsed is None:
                parsed = parse_date_time(value)
            if parsed is not None:
                return parsed
        raise _CoercionError
    if type_ref == "dateTime":
        if isinstance(value, datetime):
            return value
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day)
        if t is str:
            parsed = parse_date_time(value)
            if parsed is not None:
                return parsed
        raise _CoercionError
    if type_ref == "time":
        if isinstance(value, time):
            return value
        if t is str:
            parsed = parse_time(value)
            if parsed is not None:
                return parsed
        raise _CoercionError
    if type_ref == "dayTimeDuration":
        if isinstance(value, timedelta):
            return value
        if t is str and isinstance(parse_duration(value), timedelta):
            return parse_duration(value)
        raise _CoercionError
    if type_ref == "yearMonthDuration":
        if isinstance(value, YearsMonthsDuration):
            return value
        if t is str and isinstance(parse_duration(value), YearsMonthsDuration):
            return parse_duration(value)
        raise _CoercionError
    return value


def _python_value(value: Any, type_ref: str | None) -> Any:
    if type_ref == "double" and type(value) is Decimal:
        return float(value)
    return to_python(value)


# --------------------------------------------------------------------------- evaluation helpers


def _describe(value: Any) -> str:
    text = feel_string(value) if not isinstance(value, str) else repr(value)
    if text is None:
        return "null"
    return text if len(text) <= 60 else text[:57] + "..."


class DmnModel:
    """A parsed DMN file.  Immutable; evaluation is thread-safe."""

    def __init__(
        self,
        filename: str,
        name: str | None,
        namespace: str | None,
        decisions: dict[str, Decision],
        bkms: dict[str, BusinessKnowledgeModel],
        input_data: tuple[str, ...],
        order: dict[str, tuple[str, ...]],
    ) -> None:
        self.filename = filename
        self.name = name
        self.namespace = namespace
        self.decisions = decisions
        self.bkms = bkms
        self.input_data = input_data
        self._order = order
        self._by_name = {}
        for d in decisions.values():
            self._by_name.setdefault(d.name, []).append(d.id)
        functions: dict[str, Any] = {}
        for bkm in bkms.values():
            functions[bkm.name] = self._bkm_function(bkm, functions)
        self._functions = functions

    def __repr__(self) -> str:
        return f"<DmnModel {self.filename} decisions={list(self.decisions)}>"

    # public API -------------------------------------------------------------
    def decision(self, decision_ref: str) -> Decision:
        """The decision with this id (Camunda's decision key) or, failing that, this name."""
        d = self.decisions.get(decision_ref)
        if d is not None:
            return d
        ids = self._by_name.get(decision_ref, [])
        if len(ids) == 1:
            return self.decisions[ids[0]]
        known = ", ".join(sorted(self.decisions)) or "none"
        raise DmnEvaluationError(
            f"{self.filename}: no decision with id '{decision_ref}' (decisions: {known})", decision_ref
        )

    def evaluate(
        self, decision_id: str, variables: Mapping[str, Any] | None = None, *, raw: bool = False,
        limits: FeelLimits | None = None,
    ) -> list[dict[str, Any]]:
        """Evaluate a decision (and the decisions it requires); Camunda's result list."""
        return self.evaluate_detailed(decision_id, variables, raw=raw, limits=limits).result_list

    def evaluate_value(
        self, decision_id: str, variables: Mapping[str, Any] | None = None, *, raw: bool = False,
        limits: FeelLimits | None = None,
    ) -> Any:
        """Evaluate a decision; its value as the DMN standard defines it."""
        return self.evaluate_detailed(decision_id, variables, raw=raw, limits=limits).value

    def evaluate_detailed(
        self, decision_id: str, variables: Mapping[str, Any] | None = None, *, raw: bool = False,
        limits: FeelLimits | None = None,
    ) -> DecisionEvaluation:
        """Evaluate a decision; result list, DMN value, matched rule ids and the required
        decisions' evaluations.  The whole evaluation shares one FEEL budget (``limits``,
        default :data:`engine.dialect.feel.DEFAULT_LIMITS`): running out of it is a
        :class:`DmnEvaluationError`."""
        try:
            with feel_budget(limits):
                return self._evaluate_detailed(decision_id, variables, raw)
        except FeelLimitExceeded as e:
            raise DmnEvaluationError(f"{self.filename}: decision '{decision_id}': {e}", decision_id) from None

    def _evaluate_detailed(
        self, decision_id: str, variables: Mapping[str, Any] | None, raw: bool
    ) -> DecisionEvaluation:
        target = self.decision(decision_id)
        defaults: dict[str, Any] = dict.fromkeys(self.input_data)
        defaults.update(self._functions)
        base = Scope(defaults)
        caller = Scope(variables if variables is not None else {}, base, native=False)
        published: dict[str, Any] = {}
        scope = Scope(published, caller)
        done: list[DecisionEvaluation] = []
        with localcontext(FEEL_DECIMAL_CONTEXT):
            for did in self._order[target.id]:
                decision = self.decisions[did]
                evaluation = self._evaluate_decision(decision, scope)
                self._publish(decision, evaluation, published)
                done.append(evaluation)
        final = done[-1]
        final.required = tuple(done[:-1])
        if not raw:
            for ev in done:
                self._to_python(self.decisions[ev.decision_id], ev)
        return final

    # evaluation -------------------------------------------------------------
    def _error(self, decision: Decision, message: str, rule_ids: Iterable[str] = ()) -> DmnEvaluationError:
        return DmnEvaluationError(
            f"{self.filename}: decision '{decision.id}' ({decision.name}): {message}", decision.id, rule_ids
        )

    def _evaluate_decision(self, decision: Decision, scope: Scope) -> DecisionEvaluation:
        if decision.kind == "literal":
            assert decision.literal is not None
            try:
                value = decision.literal.evaluate_in(scope)
            except FeelError as e:
                raise self._error(decision, f"literal expression failed: {e}") from None
            value = self._coerce(decision, value, decision.type_ref, "result")
            return DecisionEvaluation(decision.id, decision.name, [{decision.result_name: value}], value)
        rows, value, matched = self._evaluate_table(decision, scope)
        return DecisionEvaluation(decision.id, decision.name, rows, value, matched)

    def _coerce(self, decision: Decision, value: Any, type_ref: str | None, what: str) -> Any:
        try:
            return _coerce(value, type_ref)
        except _CoercionError:
            raise self._error(
                decision, f"{what} value {_describe(value)} cannot be converted to type '{type_ref}'"
            ) from None

    def _evaluate_table(
        self, decision: Decision, scope: Scope
    ) -> tuple[list[dict[str, Any]], Any, tuple[str, ...]]:
        # inputs
        input_scopes: list[Scope] = []
        for inp in decision.inputs:
            try:
                value = inp.expression.evaluate_in(scope)
            except FeelError as e:
                raise self._error(
                    decision, f"input '{inp.label or inp.id}' ({inp.expression_text}): {e}"
                ) from None
            value = self._coerce(decision, value, inp.type_ref, f"input '{inp.label or inp.id}'")
            input_scopes.append(scope.child({inp.input_variable: value}, input_value=value))
        # matching
        matched: list[Rule] = []
        for rule in decision.rules:
            for (entry_id, test), in_scope in zip(rule.input_entries, input_scopes, strict=True):
                if test.is_any:
                    continue
                try:
                    ok = test.test_in(in_scope)
                except FeelError as e:
                    raise self._error(
                        decision, f"rule '{rule.id}', input entry '{entry_id}' ({test.text}): {e}", [rule.id]
                    ) from None
                if ok is not True:
                    break
            else:
                matched.append(rule)
                if decision.hit_policy == "FIRST":
                    break

        policy = decision.hit_policy
        outputs = decision.outputs
        if not matched:
            return self._no_match(decision, scope)

        if policy == "UNIQUE" and len(matched) > 1:
            ids = [r.id for r in matched]
            raise self._error(
                decision, f"hit policy UNIQUE violated: {len(ids)} rules match ({', '.join(ids)})", ids
            )
        if policy in ("UNIQUE", "FIRST"):
            matched = matched[:1]
        evaluated = [(rule, self._rule_outputs(decision, rule, scope)) for rule in matched]
        if policy == "ANY":
            first_values = evaluated[0][1]
            for rule, values in evaluated[1:]:
                if any(feel_equal(a, b) is not True for a, b in zip(first_values, values, strict=True)):
                    ids = [r.id for r, _ in evaluated]
                    raise self._error(
                        decision,
                        f"hit policy ANY violated: rules {', '.join(ids)} match with different outputs",
                        ids,
                    )
            evaluated = evaluated[:1]
        elif policy in ("PRIORITY", "OUTPUT ORDER"):
            evaluated = sorted(evaluated, key=lambda rv: self._priority(outputs, rv[1]))
            if policy == "PRIORITY":
                evaluated = evaluated[:1]

        rule_ids = tuple(r.id for r, _ in evaluated)
        if decision.aggregation:
            out = outputs[0]
            values = [vals[0] for _, vals in evaluated]
            agg = self._aggregate(decision, values, rule_ids)
            return [{out.name: agg}], agg, rule_ids

        rows = [self._row(outputs, rule, vals) for rule, vals in evaluated]
        values = [self._component(outputs, vals) for _, vals in evaluated]
        value = values[0] if policy in _SINGLE_HIT else values
        return rows, value, rule_ids

    def _no_match(
        self, decision: Decision, scope: Scope
    ) -> tuple[list[dict[str, Any]], Any, tuple[str, ...]]:
        outputs = decision.outputs
        if any(o.default is not None for o in outputs):
            defaults = []
            for o in outputs:
                v = None
                if o.default is not None:
                    try:
                        v = o.default.evaluate_in(scope)
                    except FeelError as e:
                        raise self._error(decision, f"default output '{o.name}': {e}") from None
                    v = self._coerce(decision, v, o.type_ref, f"output '{o.name}'")
                defaults.append(v)
            row = {o.name: v for o, v in zip(outputs, defaults, strict=True) if o.default is not None}
            value = self._component(outputs, defaults)
            if decision.hit_policy in _SINGLE_HIT or decision.aggregation:
                return [row], value, ()
            return [row], [value], ()
        if decision.aggregation == "COUNT":
            return [{outputs[0].name: Decimal(0)}], Decimal(0), ()
        if decision.aggregation:
            return [{outputs[0].name: None}], None, ()
        return [], (None if decision.hit_policy in _SINGLE_HIT else []), ()

    def _rule_outputs(self, decision: Decision, rule: Rule, scope: Scope) -> list[Any]:
        values = []
        for (entry_id, expr), out in zip(rule.output_entries, decision.outputs, strict=True):
            if expr is None:
                values.append(_EMPTY)
                continue
            try:
                v = expr.evaluate_in(scope)
            except FeelError as e:
                raise self._error(
                    decision, f"rule '{rule.id}', output entry '{entry_id}' ({expr.text}): {e}", [rule.id]
                ) from None
            values.append(self._coerce(decision, v, out.type_ref, f"output '{out.name}' of rule '{rule.id}'"))
        return values

    @staticmethod
    def _row(outputs: tuple[DecisionOutput, ...], rule: Rule, values: list[Any]) -> dict[str, Any]:
        return {o.name: v for o, v in zip(outputs, values, strict=True) if v is not _EMPTY}

    @staticmethod
    def _component(outputs: tuple[DecisionOutput, ...], values: list[Any]) -> Any:
        clean = [None if v is _EMPTY else v for v in values]
        if len(outputs) == 1:
            return clean[0]
        return {o.name: v for o, v in zip(outputs, clean, strict=True)}

    @staticmethod
    def _priority(outputs: tuple[DecisionOutput, ...], values: list[Any]) -> tuple[int, ...]:
        key = []
        for out, v in zip(outputs, values, strict=True):
            if not out.output_values:
                continue
            pos = len(out.output_values)
            for i, allowed in enumerate(out.output_values):
                if v is not _EMPTY and feel_equal(v, allowed) is True:
                    pos = i
                    break
            key.append(pos)
        return tuple(key)

    def _aggregate(self, decision: Decision, values: list[Any], rule_ids: tuple[str, ...]) -> Any:
        agg = decision.aggregation
        present = [v for v in values if v is not _EMPTY and v is not None]
        if agg == "COUNT":
            return Decimal(len(present))
        if not present:
            return None
        if agg == "SUM":
            if any(type(v) is not Decimal for v in present):
                raise self._error(decision, "COLLECT SUM needs numeric outputs", rule_ids)
            total = Decimal(0)
            for v in present:
                total += v
            return total
        best = present[0]
        for v in present[1:]:
            try:
                better = v < best if agg == "MIN" else v > best
            except TypeError:
                raise self._error(decision, f"COLLECT {agg} needs comparable outputs", rule_ids) from None
            if better:
                best = v
        return best

    def _publish(self, decision: Decision, ev: DecisionEvaluation, published: dict[str, Any]) -> None:
        rows = ev.result_list
        # One result is published by output name, as Camunda does, unless the policy may give
        # several (a COLLECT with an aggregation gives exactly one: the aggregate).
        multi = decision.hit_policy in ("RULE ORDER", "OUTPUT ORDER") or (
            decision.hit_policy == "COLLECT" and not decision.aggregation)
        if len(rows) == 1 and not multi:
            published.update(rows[0])
        elif rows:
            names: list[str] = []
            for row in rows:
                names.extend(n for n in row if n not in names)
            for n in names:
                published[n] = [row[n] for row in rows if n in row]
        published[decision.name] = ev.value
        published[decision.id] = ev.value

    def _to_python(self, decision: Decision, ev: DecisionEvaluation) -> None:
        if decision.kind == "literal":
            ev.result_list = [
                {k: _python_value(v, decision.type_ref) for k, v in row.items()} for row in ev.result_list
            ]
            ev.value = _python_value(ev.value, decision.type_ref)
            return
        types = {o.name: o.type_ref for o in decision.outputs}
        ev.result_list = [
            {k: _python_value(v, types.get(k)) for k, v in row.items()} for row in ev.result_list
        ]
        if len(decision.outputs) == 1:
            t = decision.outputs[0].type_ref
            if isinstance(ev.value, list):
                ev.value = [_python_value(v, t) for v in ev.value]
            else:
                ev.value = _python_value(ev.value, t)
        elif isinstance(ev.value, list):
            ev.value = [
                {k: _python_value(v, types.get(k)) for k, v in item.items()}
                if isinstance(item, dict)
                else item
                for item in ev.value
            ]
        elif isinstance(ev.value, dict):
            ev.value = {k: _python_value(v, types.get(k)) for k, v in ev.value.items()}

    # business knowledge models ---------------------------------------------
    def _bkm_function(self, bkm: BusinessKnowledgeModel, functions: dict[str, Any]) -> FeelFunction:
        model = self

        def impl(*args: Any) -> Any:
            params = dict(zip(bkm.parameters, args, strict=True))
            scope = Scope(params, Scope(functions))
            try:
                return model._evaluate_decision(bkm.body, scope).value
            except DmnEvaluationError as e:
                raise FeelEvaluationError(f"business knowledge model '{bkm.name}' failed: {e}") from None

        return FeelFunction(bkm.name, bkm.parameters, impl)


class _Empty:
    def __repr__(self) -> str:
        return "<empty>"


_EMPTY = _Empty()


# --------------------------------------------------------------------------- result mapping


def map_decision_result(result_list: list[dict[str, Any]], mode: str = "resultList") -> Any:
    """Camunda's ``camunda:mapDecisionResult``.

    * ``singleEntry``: at most one matched rule with at most one output -> that value (or None)
    * ``singleResult``: at most one matched rule -> its dict (or None)
    * ``collectEntries``: rules with at most one output each -> list of the values
    * ``resultList``: the list itself
    """
    if mode == "resultList":
        return result_list
    if mode not in _MAPPING_MODES:
        raise DmnResultMappingError(
            f"unknown mapDecisionResult '{mode}' (expected one of: {', '.join(_MAPPING_MODES)})"
        )
    if mode in ("singleEntry", "singleResult"):
        if len(result_list) > 1:
            raise DmnResultMappingError(
                f"mapDecisionResult '{mode}' expects at most one matched rule, "
                f"but the decision returned {len(result_list)} results: {result_list!r}"
            )
        if not result_list:
            return None
        row = result_list[0]
        if mode == "singleResult":
            return row
        if len(row) > 1:
            raise DmnResultMappingError(
                f"mapDecisionResult 'singleEntry' expects one output, but the result has "
                f"{len(row)} ({', '.join(row)}); use 'singleResult'"
            )
        return next(iter(row.values()), None)
    values = []
    for row in result_list:
        if len(row) > 1:
            raise DmnResultMappingError(
                f"mapDecisionResult 'collectEntries' expects one output per rule, but a result has "
                f"{len(row)} ({', '.join(row)}); use 'resultList'"
            )
        values.extend(row.values())
    return values


# --------------------------------------------------------------------------- parsing


def _is_feel_language(language: str | None) -> bool:
    if not language:
        return True
    return "feel" in language.lower()


class _Parser:
    def __init__(self, data: bytes, filename: str) -> None:
        self.filename = filename
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True, huge_tree=False
        )
        try:
            self.root = etree.fromstring(data, parser=parser)
        except etree.XMLSyntaxError as e:
            raise DmnDefinitionError(filename, None, f"malformed XML: {e.msg}", e.lineno) from None
        root = self.root
        qname = etree.QName(root)
        ns = qname.namespace or ""
        if qname.localname != "definitions" or not (
            ns in DMN_NAMESPACES
            or re.fullmatch(r"https?://www\.omg\.org/spec/DMN/\d{8}/(MODEL/|dmn\.xsd)", ns)
        ):
            raise DmnDefinitionError(
                filename,
                root.get("id"),
                f"not a DMN file: root element is <{qname.localname}> in namespace '{ns}'",
                root.sourceline,
            )
        self.ns = ns
        self.language = root.get("expressionLanguage")
        self.item_types: dict[str, str | None] = {}
        self.names: set[str] = set()
        self.functions: set[str] = set()

    # helpers ---------------------------------------------------------------
    def q(self, name: str) -> str:
        return f"{{{self.ns}}}{name}"

    def children(self, el: etree._Element, name: str) -> list[etree._Element]:
        return el.findall(self.q(name))

    def child(self, el: etree._Element, name: str) -> etree._Element | None:
        return el.find(self.q(name))

    def text_of(self, el: etree._Element | None) -> str | None:
        if el is None:
            return None
        t = el.find(self.q("text"))
        if t is None:
            return None
        return t.text or ""

    def fail(
        self, el: etree._Element | None, reason: str, element_id: str | None = None
    ) -> DmnDefinitionError:
        if element_id is None and el is not None:
            element_id = el.get("id")
        return DmnDefinitionError(
            self.filename, element_id, reason, el.sourceline if el is not None else None
        )

    def check_language(self, el: etree._Element, owner: etree._Element) -> None:
        language = el.get("expressionLanguage") or owner.get("expressionLanguage") or self.language
        if not _is_feel_language(language):
            raise self.fail(
                el,
                f"expression language '{language}' is not supported (only FEEL)",
                el.get("id") or owner.get("id"),
            )

    def type_ref(self, raw: str | None) -> str | None:
        if raw is None:
            return None
        raw = raw.strip()
        if ":" in raw and raw.split(":", 1)[0] in ("feel", "xsd", "FEEL"):
            raw = raw.split(":", 1)[1]
        if raw in _TYPE_ALIASES:
            return _TYPE_ALIASES[raw]
        seen = set()
        while raw in self.item_types and raw not in seen:
            seen.add(raw)
            base = self.item_types[raw]
            if base is None:
                return None
            if base in _TYPE_ALIASES:
                return _TYPE_ALIASES[base]
            raw = base
        return None

    def compile_expr(
        self, text: str | None, el: etree._Element, what: str, owner: etree._Element
    ) -> CompiledFeel:
        element_id = el.get("id") or owner.get("id")
        if text is None or not text.strip():
            raise self.fail(el, f"{what} is empty", element_id)
        self.check_language(el, owner)
        try:
            return compile_expression(text, self.names, self.functions)
        except FeelSyntaxError as e:
            raise self.fail(el, f"invalid {what} {text.strip()!r}: {e.reason}{_pos(e)}", element_id) from None

    def compile_tests(
        self, text: str, el: etree._Element, what: str, owner: etree._Element, input_variable: str
    ) -> CompiledUnaryTests:
        self.check_language(el, owner)
        try:
            return compile_unary_tests(text, self.names, self.functions, input_variable)
        except FeelSyntaxError as e:
            raise self.fail(el, f"invalid {what} {text.strip()!r}: {e.reason}{_pos(e)}") from None

    # model -----------------------------------------------------------------
    def parse(self) -> DmnModel:
        root = self.root
        for item in self.children(root, "itemDefinition"):
            name = item.get("name")
            if not name:
                continue
            tr = item.find(self.q("typeRef"))
            simple = tr is not None and item.get("isCollection") not in ("true", "1")
            self.item_types[name] = (tr.text or "").strip() if simple else None
            for comp in item.iter(self.q("itemComponent")):
                if comp.get("name"):
                    self.names.add(comp.get("name"))

        decision_els = self.children(root, "decision")
        bkm_els = self.children(root, "businessKnowledgeModel")
        input_data = []
        for el in self.children(root, "inputData"):
            name = el.get("name") or (
                self.child(el, "variable").get("name") if self.child(el, "variable") is not None else None
            )
            if name:
                input_data.append(name)
                self.names.add(name)
        for el in self.children(root, "import"):
            raise self.fail(el, "imports are not supported")
        for el in self.children(root, "decisionService"):
            raise self.fail(el, "decision services are not supported")

        ids: dict[str, etree._Element] = {}
        for el in decision_els + bkm_els:
            did = el.get("id")
            if not did:
                if not el.get("name"):
                    raise self.fail(el, f"<{etree.QName(el).localname}> has neither id nor name")
                did = el.get("name")
                el.set("id", did)
            if did in ids:
                raise self.fail(el, f"duplicate id '{did}'")
            ids[did] = el
            for name in (el.get("name"), self._variable_name(el)):
                if name:
                    self.names.add(name)
        for el in bkm_els:
            name = el.get("name") or el.get("id")
            self.functions.add(name)
            logic = self.child(el, "encapsulatedLogic")
            if logic is not None:
                for p in self.children(logic, "formalParameter"):
                    if p.get("name"):
                        self.names.add(p.get("name"))
        for el in decision_els:
            dt = self.child(el, "decisionTable")
            if dt is not None:
                for inp in self.children(dt, "input"):
                    iv = inp.get(f"{{{CAMUNDA_NS}}}inputVariable")
                    if iv:
                        self.names.add(iv)
                for out in self.children(dt, "output"):
                    if out.get("name"):
                        self.names.add(out.get("name"))

        bkms: dict[str, BusinessKnowledgeModel] = {}
        for el in bkm_els:
            bkm = self.parse_bkm(el)
            bkms[bkm.id] = bkm
        decisions: dict[str, Decision] = {}
        for el in decision_els:
            d = self.parse_decision(el, ids, bkms)
            decisions[d.id] = d
        order = self.dependency_order(decisions, ids)
        return DmnModel(
            self.filename, root.get("name"), root.get("namespace"), decisions, bkms, tuple(input_data), order
        )

    def _variable_name(self, el: etree._Element) -> str | None:
        var = self.child(el, "variable")
        return var.get("name") if var is not None else None

    def parse_bkm(self, el: etree._Element) -> BusinessKnowledgeModel:
        bid = el.get("id")
        name = el.get("name") or bid
        logic = self.child(el, "encapsulatedLogic")
        if logic is None:
            raise self.fail(el, f"business knowledge model '{name}' has no encapsulatedLogic")
        params = tuple(p.get("name") for p in self.children(logic, "formalParameter") if p.get("name"))
        body = self.parse_logic(logic, bid, name, self._variable_name(el), None, (), el)
        return BusinessKnowledgeModel(bid, name, params, body)

    def parse_decision(
        self, el: etree._Element, ids: dict[str, etree._Element], bkms: dict[str, BusinessKnowledgeModel]
    ) -> Decision:
        did = el.get("id")
        name = el.get("name") or did
        var = self.child(el, "variable")
        type_ref = var.get("typeRef") if var is not None else None
        required: list[str] = []
        for req in self.children(el, "informationRequirement"):
            rd = self.child(req, "requiredDecision")
            if rd is None:
                continue
            ref = self._href(rd, req)
            target = ids.get(ref)
            if target is None or etree.QName(target).localname != "decision":
                raise self.fail(req, f"decision '{did}' requires decision '{ref}', which does not exist", did)
            if ref not in required:
                required.append(ref)
        for req in self.children(el, "knowledgeRequirement"):
            rk = self.child(req, "requiredKnowledge")
            if rk is None:
                continue
            ref = self._href(rk, req)
            if ref not in bkms:
                raise self.fail(
                    req,
                    f"decision '{did}' requires business knowledge model '{ref}', which does not exist",
                    did,
                )
        decision = self.parse_logic(
            el, did, name, var.get("name") if var is not None else None, type_ref, required, el
        )
        return decision

    def _href(self, ref_el: etree._Element, req: etree._Element) -> str:
        href = (ref_el.get("href") or "").strip()
        if not href.startswith("#"):
            raise self.fail(req, f"reference '{href}' to another file is not supported (imports)")
        return href[1:]

    def parse_logic(
        self,
        el: etree._Element,
        did: str,
        name: str,
        variable_name: str | None,
        type_ref: str | None,
        required: Iterable[str],
        owner: etree._Element,
    ) -> Decision:
        common = {
            "id": did,
            "name": name,
            "required": tuple(required),
            "variable_name": variable_name,
            "type_ref": self.type_ref(type_ref),
            "version_tag": owner.get(f"{{{CAMUNDA_NS}}}versionTag"),
            "history_time_to_live": owner.get(f"{{{CAMUNDA_NS}}}historyTimeToLive"),
            "line": owner.sourceline,
        }
        dt = self.child(el, "decisionTable")
        if dt is not None:
            return self.parse_table(dt, common, owner)
        lit = self.child(el, "literalExpression")
        if lit is not None:
            text = self.text_of(lit)
            if lit.get("importedValues") is not None or (
                text is None and lit.find(self.q("importedValues")) is not None
            ):
                raise self.fail(lit, "imported values are not supported", did)
            expr = self.compile_expr(text, lit, "literal expression", owner)
            if common["type_ref"] is None and lit.get("typeRef"):
                common["type_ref"] = self.type_ref(lit.get("typeRef"))
            return Decision(kind="literal", literal=expr, **common)
        for tag in _UNSUPPORTED_LOGIC:
            other = self.child(el, tag)
            if other is not None:
                raise self.fail(
                    other,
                    f"decision logic <{tag}> of '{name}' is not supported (only decision tables and "
                    "literal expressions)",
                    did,
                )
        raise self.fail(
            owner, f"'{name}' has no decision logic (a decision table or a literal expression)", did
        )

    def parse_table(self, dt: etree._Element, common: dict[str, Any], owner: etree._Element) -> Decision:
        did = common["id"]
        policy = " ".join((dt.get("hitPolicy") or "UNIQUE").split()).upper()
        if policy not in HIT_POLICIES:
            raise self.fail(
                dt,
                f"unknown hit policy '{dt.get('hitPolicy')}' (expected one of: {', '.join(HIT_POLICIES)})",
                did,
            )
        aggregation = dt.get("aggregation")
        if aggregation is not None:
            aggregation = aggregation.strip().upper()
            if aggregation not in _AGGREGATIONS:
                raise self.fail(
                    dt,
                    f"unknown aggregation '{dt.get('aggregation')}' (expected SUM, MIN, MAX or COUNT)",
                    did,
                )
            if policy != "COLLECT":
                raise self.fail(dt, f"aggregation {aggregation} is only allowed with hit policy COLLECT", did)

        inputs = []
        for inp in self.children(dt, "input"):
            iid = inp.get("id") or ""
            ie = self.child(inp, "inputExpression")
            if ie is None:
                raise self.fail(inp, "input has no inputExpression", iid or did)
            text = self.text_of(ie)
            expr = self.compile_expr(text, ie, f"input expression of input '{inp.get('label') or iid}'", inp)
            input_variable = inp.get(f"{{{CAMUNDA_NS}}}inputVariable") or "cellInput"
            iv_el = self.child(inp, "inputValues")
            iv = None
            if iv_el is not None and (self.text_of(iv_el) or "").strip():
                iv = self.compile_tests(self.text_of(iv_el) or "", iv_el, "input values", inp, input_variable)
            inputs.append(
                DecisionInput(
                    iid,
                    inp.get("label"),
                    (text or "").strip(),
                    expr,
                    self.type_ref(ie.get("typeRef")),
                    input_variable,
                    iv,
                )
            )

        output_els = self.children(dt, "output")
        if not output_els:
            raise self.fail(dt, "decision table has no output", did)
        outputs = []
        seen_names: set[str] = set()
        for out in output_els:
            oid = out.get("id") or ""
            oname = out.get("name")
            if not oname:
                if len(output_els) > 1:
                    raise self.fail(
                        out, "a decision table with several outputs needs a name on every output", oid or did
                    )
                oname = common["variable_name"] or common["name"] or out.get("label") or oid
            if oname in seen_names:
                raise self.fail(out, f"duplicate output name '{oname}'", oid or did)
            seen_names.add(oname)
            type_ref = self.type_ref(out.get("typeRef"))
            if type_ref is None and len(output_els) == 1:
                type_ref = self.type_ref(dt.get("typeRef")) or common["type_ref"]
            ov_el = self.child(out, "outputValues")
            output_values = None
            if ov_el is not None and (self.text_of(ov_el) or "").strip():
                output_values = self.output_values(self.text_of(ov_el) or "", ov_el, out)
            default_el = self.child(out, "defaultOutputEntry")
            default = None
            if default_el is not None and (self.text_of(default_el) or "").strip():
                default = self.compile_expr(self.text_of(default_el), default_el, "default output entry", out)
            outputs.append(DecisionOutput(oid, oname, out.get("label"), type_ref, output_values, default))
        if policy in ("PRIORITY", "OUTPUT ORDER") and not any(o.output_values for o in outputs):
            raise self.fail(dt, f"hit policy {policy} needs outputValues on at least one output", did)
        if aggregation and len(outputs) > 1:
            raise self.fail(
                dt, f"aggregation {aggregation} needs exactly one output, the table has {len(outputs)}", did
            )

        rules = []
        for index, rule in enumerate(self.children(dt, "rule")):
            rid = rule.get("id") or f"{did}#rule{index + 1}"
            in_els = self.children(rule, "inputEntry")
            out_els = self.children(rule, "outputEntry")
            if len(in_els) != len(inputs):
                raise self.fail(
                    rule, f"rule has {len(in_els)} input entries, the table has {len(inputs)} inputs", rid
                )
            if len(out_els) != len(outputs):
                raise self.fail(
                    rule, f"rule has {len(out_els)} output entries, the table has {len(outputs)} outputs", rid
                )
            entries = []
            for entry, inp in zip(in_els, inputs, strict=True):
                text = self.text_of(entry) or ""
                eid = entry.get("id") or rid
                try:
                    tests = self.compile_tests(
                        text, entry, f"input entry (rule '{rid}')", rule, inp.input_variable
                    )
                except DmnDefinitionError as e:
                    raise DmnDefinitionError(self.filename, eid, e.reason, e.line) from None
                entries.append((eid, tests))
            out_entries: list[tuple[str, CompiledFeel | None]] = []
            for entry in out_els:
                text = self.text_of(entry) or ""
                eid = entry.get("id") or rid
                if not text.strip():
                    out_entries.append((eid, None))
                    continue
                out_entries.append(
                    (eid, self.compile_expr(text, entry, f"output entry (rule '{rid}')", rule))
                )
            description = rule.findtext(self.q("description"))
            rules.append(Rule(rid, index, tuple(entries), tuple(out_entries), description))
        return Decision(
            kind="table",
            hit_policy=policy,
            aggregation=aggregation,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            rules=tuple(rules),
            **common,
        )

    def output_values(self, text: str, el: etree._Element, owner: etree._Element) -> tuple[Any, ...]:
        self.check_language(el, owner)
        try:
            expr = compile_expression("[" + text + "]", self.names, self.functions)
            with localcontext(FEEL_DECIMAL_CONTEXT):
                values = expr.evaluate_in(Scope({}))
        except FeelError as e:
            reason = e.reason if isinstance(e, FeelSyntaxError) else str(e)
            raise self.fail(
                el, f"invalid output values {text.strip()!r}: {reason}", el.get("id") or owner.get("id")
            ) from None
        return tuple(values)

    def dependency_order(
        self, decisions: dict[str, Decision], ids: dict[str, Any]
    ) -> dict[str, tuple[str, ...]]:
        """For each decision: the decisions to evaluate, required ones first, itself last."""
        memo: dict[str, tuple[str, ...]] = {}

        def order_of(did: str, path: list[str]) -> tuple[str, ...]:
            if did in memo:
                return memo[did]
            if did in path:
                cycle = [*path[path.index(did) :], did]
                raise self.fail(ids[did], f"required decisions form a cycle: {' -> '.join(cycle)}", did)
            path.append(did)
            out: list[str] = []
            for dep in decisions[did].required:
                out.extend(x for x in order_of(dep, path) if x not in out)
            path.pop()
            out.append(did)
            memo[did] = tuple(out)
            return memo[did]

        for did in decisions:
            order_of(did, [])
        return memo


def _pos(e: FeelSyntaxError) -> str:
    return (
        f" (column {e.column})"
        if e.column is not None and e.line == 1
        else (f" (line {e.line}, column {e.column})" if e.line is not None else "")
    )


# --------------------------------------------------------------------------- cache

_CACHE_SIZE = 32
_cache: OrderedDict[tuple[str, str], DmnModel] = OrderedDict()
_cache_lock = threading.Lock()


def parse_dmn(xml: bytes | str, filename: str = "<dmn>") -> DmnModel:
    """Parse (and validate) DMN XML.  Models are cached by content hash and file name,
    so parsing the same bytes again is cheap."""
    data = xml.encode("utf-8") if isinstance(xml, str) else bytes(xml)
    key = (hashlib.sha256(data).hexdigest(), filename)
    with _cache_lock:
        model = _cache.get(key)
        if model is not None:
            _cache.move_to_end(key)
            return model
    model = _Parser(data, filename).parse()
    with _cache_lock:
        _cache[key] = model
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return model


def _clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
