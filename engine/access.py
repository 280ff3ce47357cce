"""Who may reach what through a command that names its targets indirectly (a message correlated by
business key or variables): the caller, and the rule that decides which instances they may act on.

An instance is within a caller's reach when they started it, hold or held one of its tasks, or
one of its tasks is offered to them or to one of their groups (the task list's rule), and always
for those who see everything (administrators, the service-center director). A process may widen
this for one message: the receiving element (receive task, message catch, boundary or start
event) declares in Camunda Modeler the extension property ``message.senders`` — a comma-separated
list of groups and user names — and those may deliver that message to any instance of the
process (e.g. an integration account that reports results for every patient).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import and_, false, or_, select
from sqlalchemy.orm import Session

from engine.models import ProcessInstance, Task, TaskCandidate

MESSAGE_SENDERS_PROPERTY = "message.senders"


@dataclass(frozen=True)
class Caller:
    """The person (or integration account) on whose behalf a command runs."""

    username: str
    groups: tuple[str, ...] = field(default_factory=tuple)
    sees_all: bool = False

    def named_in(self, declared: Iterable[str]) -> bool:
        names = set(declared)
        return self.username in names or bool(names & set(self.groups))


def declared_senders(extensions: dict | None) -> list[str] | None:
    """The groups and users an element declares as senders of its message (None: nothing declared)."""
    value = ((extensions or {}).get("properties") or {}).get(MESSAGE_SENDERS_PROPERTY)
    if value is None:
        return None
    return [part.strip() for part in str(value).split(",") if part.strip()]


def offered_condition(user: str | None, groups: Iterable[str] | None):
    """Candidate rows that offer a task to the user or to one of the groups."""
    cond = []
    if user:
        cond.append(and_(TaskCandidate.kind == "user", TaskCandidate.ident == user))
    groups = list(groups or [])
    if groups:
        cond.append(and_(TaskCandidate.kind == "group", TaskCandidate.ident.in_(groups)))
    return or_(*cond) if cond else false()


def offered_task_ids(user: str | None, groups: Iterable[str] | None):
    """The tasks offered to the user or to one of the groups (a subquery)."""
    return select(TaskCandidate.task_id).where(offered_condition(user, groups))


def reachable_instance_ids(s: Session, instance_ids: Iterable[str], caller: Caller) -> set[str]:
    """Which of these instances the caller may act on by the task-list rule (one query)."""
    ids = list(dict.fromkeys(instance_ids))
    if not ids:
        return set()
    if caller.sees_all:
        return set(ids)
    user = caller.username
    involved = select(Task.instance_id).where(Task.instance_id.in_(ids), or_(
        Task.assignee == user, Task.completed_by == user,
        Task.id.in_(offered_task_ids(user, list(caller.groups)))))
    q = select(ProcessInstance.id).where(ProcessInstance.id.in_(ids), or_(
        ProcessInstance.started_by == user, ProcessInstance.id.in_(involved)))
    return set(s.execute(q).scalars())


LIKE_ESCAPE = "\\"
MAX_LIKE_PATTERN = 2000


def like_pattern(pattern: str) -> str:
    """A Camunda LIKE pattern (`%`, `_`, backslash escapes) ready for SQL `LIKE … ESCAPE '\\'`:
    runs of `%` collapse into one, so no pattern makes the database backtrack over them."""
    if len(pattern) > MAX_LIKE_PATTERN:
        from engine.errors import InvalidInput

        raise InvalidInput(f"a LIKE pattern is longer than {MAX_LIKE_PATTERN} characters")
    out: list[str] = []
    escaped = False
    for c in pattern:
        if escaped:
            out.append(c)
            escaped = False
            continue
        if c == LIKE_ESCAPE:
            escaped = True
        elif c == "%" and out and out[-1] == "%" and not (len(out) > 1 and out[-2] == LIKE_ESCAPE):
            continue
        out.append(c)
    return "".join(out)


def contains_pattern(text: str) -> str:
    """SQL LIKE pattern for "contains this text", the text's own % and _ matched literally."""
    escaped = text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_")
    return f"%{escaped}%"
