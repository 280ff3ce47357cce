"""Errors a caller of the engine can see. Each says what was wrong and where."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine reports to its callers."""

    code = "engine_error"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = {k: v for k, v in details.items() if v is not None}

    def to_dict(self) -> dict:
        return {"error": self.code, "message": self.message, **self.details}


class NotFound(EngineError):
    code = "not_found"


class Conflict(EngineError):
    """The command lost a race or the object is not in a state that allows it."""

    code = "conflict"


STALE_RETRIES = 3  # runs of a command whose instance changed between its read and its write


class StaleInstance(Conflict):
    """The instance changed between the command's read and its write (the version guard): the
    command may simply run again on the fresh state."""


class Forbidden(EngineError):
    code = "forbidden"


class InvalidInput(EngineError):
    """Bad input from a caller: a variable of the wrong type, a missing field, ..."""

    code = "invalid_input"


class DeploymentError(EngineError):
    """A file was refused at deploy. Names the file, the element and the reason."""

    code = "deployment_error"

    def __init__(self, reason: str, *, file: str | None = None, element: str | None = None,
                 attribute: str | None = None, line: int | None = None):
        where = []
        if file:
            where.append(file)
        if line:
            where.append(f"line {line}")
        if element:
            where.append(f"element '{element}'")
        if attribute:
            where.append(f"attribute '{attribute}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {reason}" if prefix else reason,
                         file=file, element=element, attribute=attribute, line=line, reason=reason)
        self.file, self.element, self.attribute, self.line, self.reason = file, element, attribute, line, reason


class ProcessError(EngineError):
    """The engine could not run a step of an instance (an expression failed, a decision had no result)."""

    code = "process_error"


class TimerFiringError(EngineError):
    """A due timer could not fire (the instance's step failed); nothing of the attempt was kept."""

    code = "timer_failed"
