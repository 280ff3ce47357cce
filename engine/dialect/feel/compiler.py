"""Compiles a parsed FEEL tree into nested Python closures."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from lark import Token, Tree

from engine.dialect.feel.functions import _BUILTINS
from engine.dialect.feel.functions_lists import _position
from engine.dialect.feel.functions_text import _int_arg
from engine.dialect.feel.grammar import _PLACEHOLDER_PAD
from engine.dialect.feel.limits import (
    _MAX_NESTING,
    FeelEvaluationError,
    FeelSyntaxError,
    _budget,
    _UnknownName,
)
from engine.dialect.feel.operators import (
    Range,
    Scope,
    _add,
    _div,
    _kind,
    _mul,
    _negate,
    _pow,
    _sub,
    _UnaryTestValue,
)
from engine.dialect.feel.semantics import (
    _COMPARATORS,
    _TYPE_CHECKS,
    Fn,
    _and,
    _ge,
    _le,
    _NullDomain,
    _or,
    _path,
    _unescape,
    _value_test,
)
from engine.dialect.feel.values import FeelFunction, parse_date, parse_date_time, parse_duration, parse_time


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
