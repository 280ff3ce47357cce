"""The one place where engine errors become HTTP status codes."""

from __future__ import annotations

from engine.errors import Conflict, DeploymentError, EngineError, Forbidden, InvalidInput, NotFound, ProcessError

STATUS = [
    (NotFound, 404),
    (Forbidden, 403),
    (Conflict, 409),
    (InvalidInput, 400),
    (DeploymentError, 400),
    (ProcessError, 422),
    (EngineError, 400),
]


def http_status(exc: Exception) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500
