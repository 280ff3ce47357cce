"""Who may see and act on what: the one place the task list's visibility rules live.

A staff member sees a task when it is assigned to them, or offered to them or to one of their
groups (closed tasks stay visible to whoever could see them while open, and to whoever completed
them); an instance when they started it or can see one of its tasks. Administrators and the
center director see everything. Anything else answers 404, so that a guessed id reveals nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import abort, current_app
from flask_login import current_user

from engine.access import Caller
from engine.errors import Forbidden, InvalidInput, NotFound
from engine.identity import ROLE_ADMIN, ROLE_DIRECTOR, ROLE_OPERATOR, ROLE_PROCESS_OWNER
from engine.service import TaskQuery, WorkflowEngine


@dataclass(frozen=True)
class Staff:
    """What the web layer needs to know about the signed-in user."""

    username: str
    display_name: str
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_admin(self) -> bool:
        return ROLE_ADMIN in self.groups

    @property
    def is_director(self) -> bool:
        return ROLE_DIRECTOR in self.groups

    @property
    def is_process_owner(self) -> bool:
        return ROLE_PROCESS_OWNER in self.groups

    @property
    def sees_all(self) -> bool:
        return self.is_admin or self.is_director

    @property
    def caller(self) -> Caller:
        """The same person as the engine's commands know them."""
        return Caller(self.username, tuple(self.groups), self.sees_all)


def engine() -> WorkflowEngine:
    return current_app.extensions["engine"]


def staff() -> Staff:
    """The signed-in user (views behind login only)."""
    return current_user.staff


def scoped(query: TaskQuery, who: Staff | None = None) -> TaskQuery:
    """Restrict a task query to what `who` may see (no change for admins and the director)."""
    who = who or staff()
    if not who.sees_all:
        query.visible_to_user = who.username
        query.visible_to_groups = list(who.groups)
    return query


def can_see_task(task: dict, who: Staff | None = None) -> bool:
    who = who or staff()
    if who.sees_all:
        return True
    if who.username in (task.get("assignee"), task.get("completed_by")):
        return True
    if who.username in (task.get("candidate_users") or []):
        return True
    return bool(set(task.get("candidate_groups") or []) & set(who.groups))


def can_act_on_task(task: dict, who: Staff | None = None) -> bool:
    """Claim, delegate or complete: an open task the user may see."""
    return task.get("status") == "open" and can_see_task(task, who)


def can_unclaim(task: dict, who: Staff | None = None) -> bool:
    """Give a claimed task back to its groups: its assignee, or someone who sees everything."""
    who = who or staff()
    return not task.get("assignee") or task["assignee"] == who.username or who.sees_all


def authorize_assignment(task: dict, assignee: str | None, who: Staff | None = None) -> None:
    """The one rule for every way a task changes hands (unclaim, assign, claim for someone else,
    on the pages, /api/v1 and /engine-rest): a claimed task is given back or moved only by its
    assignee, the director or an administrator; and it goes only to an active colleague who may see
    it (offered to them or to one of their groups, or someone who sees everything). Raises
    Forbidden or InvalidInput; `task` is one the caller may see."""
    who = who or staff()
    holder = task.get("assignee")
    if holder and holder != who.username and holder != assignee and not who.sees_all:
        raise Forbidden(f"task '{task.get('name') or task.get('id')}' is held by {holder}: only they, the "
                        "center director or an administrator may give it back or hand it on",
                        task_id=task.get("id"), assignee=holder)
    if assignee is None or assignee == holder:
        return
    member = engine().staff_member(assignee)
    if member is None or not member[0]:
        raise InvalidInput(f"there is no active user '{assignee}'", field="assignee")
    target = Staff(assignee, assignee, tuple(member[1]))
    if not can_see_task({**task, "assignee": None, "completed_by": None}, target):
        raise InvalidInput(f"user '{assignee}' may not work on task '{task.get('name') or task.get('id')}': "
                           "it is not offered to them or to their groups", field="assignee")


def can_cancel(who: Staff | None = None) -> bool:
    """Cancel a running case: administrators and process operators (not process owners as such)."""
    who = who or staff()
    return who.is_admin or ROLE_OPERATOR in who.groups


def visible_task(task_id: str) -> dict:
    """The task, or 404 when it does not exist or the user may not see it."""
    try:
        task = engine().get_task(task_id)
    except NotFound:
        abort(404)
    if not can_see_task(task):
        abort(404)
    return task


def can_see_instance(instance: dict, who: Staff | None = None) -> bool:
    """`instance` as get_instance() returns it (with all its tasks, open and closed)."""
    who = who or staff()
    if who.sees_all or instance.get("started_by") == who.username:
        return True
    return any(can_see_task(t, who) for t in instance.get("tasks") or [])


def visible_instance(instance_id: str) -> dict:
    """The instance with history and tasks, or 404 when the user may not see it."""
    try:
        instance = engine().get_instance(instance_id)
    except NotFound:
        abort(404)
    if not can_see_instance(instance):
        abort(404)
    return instance


def require_admin() -> None:
    if not staff().is_admin:
        abort(403)


def can_see_instance_summary(summary: dict, who: Staff | None = None) -> bool:
    """The same rule for an instance summary (list_instances row), without loading its state."""
    who = who or staff()
    if who.sees_all or summary.get("started_by") == who.username:
        return True
    tasks = engine().list_tasks(TaskQuery(instance_id=summary["id"], status="", limit=1000))
    return any(can_see_task(t, who) for t in tasks)
