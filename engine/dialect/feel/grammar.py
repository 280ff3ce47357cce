"""The FEEL grammar (lark, LALR(1)), name placeholders and syntax-error messages."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable

from lark import Lark, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from engine.dialect.feel.limits import FeelSyntaxError

# --------------------------------------------------------------------------- grammar

_GRAMMAR = r"""
start_expression: expression
start_unary: positive_unary_test ("," positive_unary_test)*

?expression: if_expr | for_expr | quantified | disjunction
if_expr: "if" expression "then" expression "else" expression
for_expr: "for" iteration ("," iteration)* "return" expression
quantified: QUANTIFIER iteration ("," iteration)* "satisfies" expression
iteration: name "in" expression (".." expression)?
QUANTIFIER.2: /(some|every)(?![\w$])/

?disjunction: disjunction "or" conjunction -> or_
            | conjunction
?conjunction: conjunction "and" comparison -> and_
            | comparison
?comparison: sum CMP sum -> compare
           | sum "between" sum "and" sum -> between
           | sum "in" in_rhs -> in_
           | sum "instance" "of" name -> instance_of
           | sum
?in_rhs: sum | unary_cmp | rev_interval

?sum: sum "+" product -> add
    | sum "-" product -> sub
    | product
?product: product "*" power -> mul
        | product "/" power -> div
        | power
?power: power "**" unary -> pow
      | unary
?unary: "-" unary -> neg
      | postfix
?postfix: postfix "." name -> path
        | postfix "(" [args] ")" -> call
        | postfix "[" expression "]" -> filter
        | primary
args: expression ("," expression)* -> positional_args
    | named_arg ("," named_arg)* -> named_args
named_arg: name ":" expression

?primary: NUMBER -> number
        | STRING -> string
        | "true" -> true
        | "false" -> false
        | "null" -> null
        | "?" -> qmark
        | name -> var
        | AT_LITERAL -> at_literal
        | "[" [expression ("," expression)*] "]" -> list
        | "{" [context_entry ("," context_entry)*] "}" -> context
        | "[" expression ".." expression interval_end -> closed_start_interval
        | "(" expression ".." expression interval_end -> open_start_interval
        | "(" positive_unary_test ("," positive_unary_test)* ")" -> paren
!interval_end: "]" | ")" | OPEN_END
context_entry: (name | STRING) ":" expression
?positive_unary_test: expression | unary_cmp | rev_interval
unary_cmp: CMP sum
rev_interval: "]" expression ".." expression interval_end

name: NAME_PART (NAME_PART | NUMBER)*
    | SPECIAL_NAME
SPECIAL_NAME.3: /date\s+and\s+time(?![\w$])/
              | /years\s+and\s+months\s+duration(?![\w$])/
              | /days\s+and\s+time\s+duration(?![\w$])/
CMP: "<=" | ">=" | "!=" | "<" | ">" | "="
NAME_PART: /(?!\d)[\w$\uE000-\uF8FF\U00010000-\U000EFFFF]+/
NUMBER: /(\d+(\.\d+)?|\.\d+)([eE][+-]?\d+)?/
STRING: /"(?:[^"\\]|\\.)*"/s
AT_LITERAL: /@"(?:[^"\\]|\\.)*"/
OPEN_END.2: /\[(?=\s*(?:$|[,)\]}:=!<>]|(?:and|or|then|else|return|satisfies)(?![\w$])))/
%ignore /\s+/
%ignore /\/\/[^\n]*/
%ignore /\/\*(.|\n)*?\*\//
"""

_parser_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(
        _GRAMMAR,
        start=["start_expression", "start_unary"],
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
    )


_KEYWORDS = frozenset(
    [
        "and",
        "or",
        "in",
        "between",
        "instance",
        "of",
        "if",
        "then",
        "else",
        "for",
        "some",
        "every",
        "satisfies",
        "return",
        "true",
        "false",
        "null",
        "function",
        "not",
    ]
)
_SIMPLE_NAME_RE = re.compile(r"(?!\d)[\w$]+(?: (?![\d])[\w$]+)*")
_PLACEHOLDER_FIRST = 0xE000
_PLACEHOLDER_PAD = "\uf8ff"
_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _needs_placeholder(name: str) -> bool:
    normalized = " ".join(name.split())
    if not normalized:
        return False
    if not _SIMPLE_NAME_RE.fullmatch(normalized):
        return True
    words = normalized.split(" ")
    return len(words) > 1 and any(w in _KEYWORDS for w in words)


def _relevant_names(text: str, names: Iterable[str]) -> frozenset[str]:
    result = []
    for n in names:
        if not isinstance(n, str) or not _needs_placeholder(n):
            continue
        first = n.split()[0]
        if first in text:
            result.append(n)
    return frozenset(result)


def _substitute_names(text: str, names: frozenset[str]) -> tuple[str, dict[str, str]]:
    if not names:
        return text, {}
    ordered = sorted(names, key=len, reverse=True)
    alternatives = [r"\s+".join(re.escape(part) for part in n.split()) for n in ordered]
    rx = re.compile(r"(?<![\w$?])(?:" + "|".join(f"({a})" for a in alternatives) + r")(?![\w$])")
    strings = [m.span() for m in _STRING_RE.finditer(text)]
    out: list[str] = []
    mapping: dict[str, str] = {}
    last = 0
    for m in rx.finditer(text):
        start, end = m.span()
        if any(s < end and start < e for s, e in strings):
            continue
        group = m.lastindex or 1
        real = ordered[group - 1]
        index = len(mapping)
        if index > 0x18FE:
            break
        ph = chr(_PLACEHOLDER_FIRST + index)
        mapping[ph] = " ".join(real.split())
        out.append(text[last:start])
        out.append(ph + _PLACEHOLDER_PAD * (end - start - 1))
        last = end
    out.append(text[last:])
    return "".join(out), mapping


def _describe_expected(expected: Iterable[str]) -> str:
    pretty = {
        "RPAR": "')'",
        "LPAR": "'('",
        "RSQB": "']'",
        "LSQB": "'['",
        "RBRACE": "'}'",
        "LBRACE": "'{'",
        "COMMA": "','",
        "COLON": "':'",
        "NAME_PART": "a name",
        "NUMBER": "a number",
        "STRING": "a string",
        "CMP": "a comparison operator",
        "OPEN_END": "'['",
        "$END": "end of expression",
        "SPECIAL_NAME": "a name",
        "AT_LITERAL": '@"..."',
        "QUANTIFIER": "'some'/'every'",
    }

    def describe(terminal: str) -> str:
        if terminal in pretty:
            return pretty[terminal]
        if terminal.isalpha() and terminal.isupper():  # a keyword such as ELSE
            return f"'{terminal.lower()}'"
        return terminal.lower()

    expected = set(expected)
    if {"NUMBER", "STRING", "NAME_PART"} <= expected:  # anything that starts an expression
        return "; expected an expression"
    pretty.update(
        {"MINUS": "'-'", "PLUS": "'+'", "QMARK": "'?'", "STAR": "'*'", "SLASH": "'/'", "DOT": "'.'"}
    )
    items = sorted({describe(e) for e in expected if not e.startswith("__")})
    if not items:
        return ""
    if len(items) > 6:
        items = items[:6] + ["..."]
    return "; expected " + ", ".join(items)


def _parse(text: str, start: str) -> Tree:
    if len(text) > 100_000:
        raise FeelSyntaxError("expression too long", text[:80] + "...", None)
    try:
        with _parser_lock:
            return _parser().parse(text, start=start)
    except UnexpectedEOF as e:
        raise FeelSyntaxError(
            "unexpected end of expression" + _describe_expected(e.expected), text, len(text)
        ) from None
    except UnexpectedToken as e:
        if e.token.type == "$END":
            raise FeelSyntaxError(
                "unexpected end of expression" + _describe_expected(e.expected), text, len(text)
            ) from None
        value = str(e.token)
        if value and ord(value[0]) >= _PLACEHOLDER_FIRST and value[0] <= "\uf8ff":
            value = "name"
        raise FeelSyntaxError(
            f"unexpected {value!r}" + _describe_expected(e.expected), text, e.token.start_pos
        ) from None
    except UnexpectedCharacters as e:
        raise FeelSyntaxError(
            f"unexpected character {text[e.pos_in_stream]!r}", text, e.pos_in_stream
        ) from None
    except UnexpectedInput as e:  # pragma: no cover - other lark errors
        raise FeelSyntaxError(str(e).splitlines()[0], text, getattr(e, "pos_in_stream", None)) from None
