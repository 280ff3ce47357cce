"""Recursive-descent parser from tokens to the syntax tree."""

from __future__ import annotations

from engine.dialect.juel.lexer import _Token
from engine.dialect.juel.limits import MAX_NESTING_DEPTH, JuelSyntaxError
from engine.dialect.juel.nodes import (
    _LEVELS,
    _VARIABLE_READERS,
    _Access,
    _Call,
    _Chain,
    _Conditional,
    _Identifier,
    _Index,
    _Literal,
    _Logical,
    _Method,
    _Node,
    _Property,
    _Unary,
)


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
