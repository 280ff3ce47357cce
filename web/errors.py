"""The one place where engine errors become HTTP status codes."""

from __future__ import annotations

from engine.errors import (
    Conflict,
    DeploymentError,
    EngineError,
    Forbidden,
    InvalidInput,
    NotFound,
    ProcessError,
)

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


# The exception names Camunda 7's REST API puts in "type" for the same situations (/engine-rest).
CAMUNDA_TYPES = [
    (DeploymentError, "ParseException"),
    (Forbidden, "AuthorizationException"),
    (NotFound, "InvalidRequestException"),
    (InvalidInput, "InvalidRequestException"),
    (Conflict, "ProcessEngineException"),
    (ProcessError, "ProcessEngineException"),
    (EngineError, "InvalidRequestException"),
]


def camunda_type(exc: Exception) -> str:
    for cls, name in CAMUNDA_TYPES:
        if isinstance(exc, cls):
            return name
    return "ProcessEngineException"
