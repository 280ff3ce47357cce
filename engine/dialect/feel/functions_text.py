"""Built-in functions on strings (including the regular-expression ones)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import re2

from engine.dialect.feel.limits import FeelEvaluationError, _budget

# --------------------------------------------------------------------------- built-ins


def _is_num(v: Any) -> bool:
    return type(v) is Decimal


def _int_arg(v: Any) -> int | None:
    if type(v) is not Decimal or v != v.to_integral_value():
        return None
    return int(v)


def _list_arg(args: tuple) -> list | None:
    if len(args) == 1 and type(args[0]) is list:
        return args[0]
    if len(args) == 1 and args[0] is None:
        return None
    return list(args)


def _b_substring(string: Any, start: Any, length: Any = None) -> Any:
    if type(string) is not str or not _is_num(start):
        return None
    s = int(start)
    n = len(string)
    if s == 0 or s > n + 1 or s < -n:
        return None
    idx = s - 1 if s > 0 else n + s
    if length is None:
        return string[idx:]
    if not _is_num(length):
        return None
    ln = int(length)
    if ln < 0:
        return None
    return string[idx : idx + ln]


def _str_fn(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        if any(type(a) is not str for a in args):
            return None
        return fn(*args)

    return wrapped


def _b_substring_before(string: str, match: str) -> str:
    i = string.find(match)
    return "" if i < 0 else string[:i]


def _b_substring_after(string: str, match: str) -> str:
    i = string.find(match)
    return "" if i < 0 else string[i + len(match) :]


_REGEX_FLAGS = frozenset("ismxq")


def _strip_whitespace(pattern: str) -> str:
    """XPath's ``x`` flag: whitespace is removed, except inside character classes."""
    out: list[str] = []
    in_class = escaped = False
    for c in pattern:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c in " \t\n\r":
            continue
        out.append(c)
    return "".join(out)


@functools.lru_cache(maxsize=512)
def _compile_regex(pattern: str, flags: str) -> Any:
    """The pattern compiled by RE2 (linear-time matching: no catastrophic backtracking)."""
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = "i" not in flags
    options.dot_nl = "s" in flags
    if "q" in flags:
        text = re2.escape(pattern)
    else:
        text = _strip_whitespace(pattern) if "x" in flags else pattern
        if "m" in flags:
            text = "(?m)" + text
    try:
        return re2.compile(text, options)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
        raise FeelEvaluationError(
            f"regular expression {pattern!r} is not supported: {reason} (back-references and look-around "
            "assertions are not available)") from None


def _regex(pattern: Any, flags: Any) -> Any:
    """The compiled pattern, or None (null) for a pattern or flags that are not strings or
    unknown flags; a pattern RE2 cannot compile is a :class:`FeelEvaluationError`."""
    if type(pattern) is not str or (flags is not None and type(flags) is not str):
        return None
    if any(f not in _REGEX_FLAGS for f in flags or ""):
        return None
    _budget().text(len(pattern), "regular expression")
    return _compile_regex(pattern, "".join(sorted(set(flags or ""))))


def _b_matches(string: Any, pattern: Any, flags: Any = None) -> Any:
    rx = _regex(pattern, flags)
    if rx is None or type(string) is not str:
        return None
    return rx.search(string) is not None


def _replacement_parts(replacement: str) -> list[str | int] | None:
    """XPath replacement string (``$1``, ``\\$``) to literal text and group numbers."""
    parts: list[str | int] = []
    i = 0
    while i < len(replacement):
        c = replacement[i]
        nxt = replacement[i + 1] if i + 1 < len(replacement) else ""
        if c == "\\":
            if nxt not in ("\\", "$"):
                return None
            parts.append(nxt)
            i += 2
        elif c == "$":
            j = i + 1
            while j < len(replacement) and replacement[j].isdigit():
                j += 1
            if j == i + 1:
                return None
            parts.append(int(replacement[i + 1 : j]))
            i = j
        else:
            parts.append(c)
            i += 1
    return parts


def _b_replace(string: Any, pattern: Any, replacement: Any, flags: Any = None) -> Any:
    rx = _regex(pattern, flags)
    if rx is None or type(string) is not str or type(replacement) is not str:
        return None
    if rx.fullmatch("") is not None:
        return None
    if flags and "q" in flags:
        parts: list[str | int] | None = [replacement]
    else:
        parts = _replacement_parts(replacement)
    if parts is None:
        return None
    groups = rx.groups
    budget = _budget()
    produced = [len(string)]

    def expand(m: Any) -> str:
        budget.tick()
        out = []
        for p in parts:  # type: ignore[union-attr]
            if isinstance(p, int):
                out.append((m.group(p) or "") if p <= groups else "")
            else:
                out.append(p)
        text = "".join(out)
        produced[0] += len(text)
        budget.text(produced[0], "replace()")
        return text

    return rx.sub(expand, string)


def _b_split(string: Any, delimiter: Any) -> Any:
    rx = _regex(delimiter, None)
    if rx is None or type(string) is not str or delimiter == "":
        return None
    parts = rx.split(string)
    _budget().items(len(parts), "split()")
    return parts


def _b_string_join(items: Any, delimiter: Any = None) -> Any:
    if type(items) is not list or (delimiter is not None and type(delimiter) is not str):
        return None
    if any(v is not None and type(v) is not str for v in items):
        return None
    parts = [v for v in items if v is not None]
    _budget().tick(len(parts))
    _budget().text(sum(len(v) for v in parts) + len(delimiter or "") * max(len(parts) - 1, 0), "string join")
    return (delimiter or "").join(parts)


_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _b_number(text: Any, grouping: Any = None, decimal_sep: Any = None) -> Any:
    if type(text) is not str:
        return None
    if grouping not in (None, " ", ",", ".") or decimal_sep not in (None, ",", "."):
        return None
    if grouping is not None and grouping == decimal_sep:
        return None
    if grouping:
        text = text.replace(grouping, "")
    if decimal_sep:
        text = text.replace(decimal_sep, ".")
    text = text.strip()
    if not _NUMBER_RE.fullmatch(text):
        return None
    return Decimal(text)
