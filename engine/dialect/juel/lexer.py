"""Splits the text inside ${...} into tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.dialect.juel.limits import _LONG_MAX, JuelSyntaxError

# --------------------------------------------------------------------------- lexer


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "int" "float" "str" "ident" "kw" "op" "end"
    value: Any
    pos: int
    text: str


_KEYWORDS = frozenset(
    {"true", "false", "null", "empty", "not", "div", "mod", "and", "or",
     "eq", "ne", "lt", "gt", "le", "ge", "instanceof"}
)
_TWO_CHAR_OPS = frozenset({"==", "!=", "<=", ">=", "&&", "||"})
_ONE_CHAR_OPS = frozenset("+-*/%<>!?:()[].,")
_NUMBER_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DIGITS = "0123456789"
_ESCAPABLE = {"\\": "\\", "'": "'", '"': '"'}


def _is_ident_start(c: str) -> bool:
    return c.isalpha() or c in "_$"


def _is_ident_part(c: str) -> bool:
    return c.isalnum() or c in "_$"


def _lex(text: str, start: int, opening: int) -> tuple[list[_Token], int]:
    """Tokens of the expression starting at ``start`` and the index after its ``}``."""
    tokens: list[_Token] = []
    n = len(text)
    i = start
    while True:
        if i >= n:
            raise JuelSyntaxError(f"unclosed {text[opening:opening + 2]!r}: missing '}}'", text, opening)
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c == "}":
            tokens.append(_Token("end", None, i, "}"))
            return tokens, i + 1
        if c in "'\"":
            i = _lex_string(text, i, tokens)
            continue
        if c in _DIGITS or (c == "." and i + 1 < n and text[i + 1] in _DIGITS):
            match = _NUMBER_RE.match(text, i)
            assert match is not None
            literal = match.group()
            end = match.end()
            if end < n and _is_ident_part(text[end]):
                bad_end = end
                while bad_end < n and _is_ident_part(text[bad_end]):
                    bad_end += 1
                raise JuelSyntaxError(f"invalid number {text[i:bad_end]!r}", text, i)
            if any(ch in literal for ch in ".eE"):
                tokens.append(_Token("float", float(literal), i, literal))
            else:
                value = int(literal)
                if value > _LONG_MAX:
                    raise JuelSyntaxError(f"integer {literal} is out of the 64-bit range", text, i)
                tokens.append(_Token("int", value, i, literal))
            i = end
            continue
        if _is_ident_start(c):
            end = i + 1
            while end < n and _is_ident_part(text[end]):
                end += 1
            word = text[i:end]
            kind = "kw" if word in _KEYWORDS else "ident"
            tokens.append(_Token(kind, word, i, word))
            i = end
            continue
        pair = text[i:i + 2]
        if pair in _TWO_CHAR_OPS:
            tokens.append(_Token("op", pair, i, pair))
            i += 2
            continue
        if c in _ONE_CHAR_OPS:
            tokens.append(_Token("op", c, i, c))
            i += 1
            continue
        hint = {"=": "; use '==' to compare", "&": "; use '&&' or 'and'", "|": "; use '||' or 'or'",
                "{": "; map and set literals are not supported"}.get(c, "")
        raise JuelSyntaxError(f"unexpected character {c!r}{hint}", text, i)


def _lex_string(text: str, start: int, tokens: list[_Token]) -> int:
    quote = text[start]
    chars: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n:
                break
            escaped = text[i + 1]
            if escaped not in _ESCAPABLE:
                raise JuelSyntaxError(
                    f"invalid escape sequence '\\{escaped}' in string (only \\\\, \\' and \\\" are allowed)",
                    text, i)
            chars.append(escaped)
            i += 2
            continue
        if c == quote:
            tokens.append(_Token("str", "".join(chars), start, text[start:i + 1]))
            return i + 1
        chars.append(c)
        i += 1
    raise JuelSyntaxError(f"unterminated string literal (missing closing {quote})", text, start)
