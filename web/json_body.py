"""JSON request bodies, read the same way on every endpoint: text that cannot be stored (a lone
UTF-16 surrogate such as "\\ud800", a NUL character) is refused as a bad request that says where,
before any view sees it, instead of failing deep inside the database driver."""

from __future__ import annotations

import json
from typing import Any

from flask.json.provider import DefaultJSONProvider

MAX_DEPTH = 64


class UnstorableText(ValueError):
    pass


def check_text(value: Any, where: str = "body", depth: int = 0) -> None:
    """Raise UnstorableText naming the first place that holds text no database can store."""
    if depth > MAX_DEPTH:
        raise UnstorableText(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise UnstorableText(f"{where} contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise UnstorableText(f"{where} contains a lone surrogate (\\u{ord(value[exc.start]):04x}), "
                                 "which is not valid Unicode text") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, f"{where}: a key", depth + 1)
            check_text(item, f"{where}.{key}" if len(where) < 200 else where, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_text(item, f"{where}[{index}]" if len(where) < 200 else where, depth + 1)


class CheckedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with every decoded body checked by check_text (Flask answers a ValueError
    from here as 400 Bad Request)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        value = json.loads(s, **kwargs)
        check_text(value)
        return value


def read_object(request) -> dict[str, Any]:
    """The request's JSON object body ({} when empty); InvalidInput saying what is wrong otherwise."""
    from engine.errors import InvalidInput

    data = request.get_data(cache=True)
    if not data:
        return {}
    try:
        body = json.loads(data)
        check_text(body)
    except UnstorableText as exc:
        raise InvalidInput(str(exc)) from None
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    return body
