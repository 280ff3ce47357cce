"""The read side: one query per entity (tasks, process instances) that the task list, the REST
APIs, the CLI and the tests all use, plus history, the activity per diagram element and the
accounts' groups. Reads run in `db.reader()`, never in a command's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select

from engine.access import LIKE_ESCAPE, contains_pattern, like_pattern, offered_condition, offered_task_ids
from engine.errors import InvalidInput
from engine.models import (
    HistoryEvent,
    MessageSubscription,
    ProcessDefinition,
    ProcessInstance,
    Task,
    TaskCandidate,
    Timer,
    User,
)
from engine.projections import sla_state
from engine.store import UseCase


@dataclass
class TaskQuery:
    assignee: str | None = None
    candidate_user: str | None = None
    candidate_groups: list[str] | None = None
    # "visible to" = assigned to the user, or offered to the user or one of the user's groups
    visible_to_user: str | None = None
    visible_to_groups: list[str] | None = None
    unassigned: bool | None = None
    process_key: str | None = None
    business_key: str | None = None
    instance_id: str | None = None
    element_id: str | None = None
    overdue: bool | None = None
    sla_states: list[str] | None = None
    search: str | None = None
    status: str = "open"
    sort: str = "due"  # due | priority | created
    offset: int = 0
    limit: int = 50


@dataclass(frozen=True)
class TaskScope:
    """Filters of the REST APIs on top of a TaskQuery: `visible_to` (user, groups) keeps only tasks
    assigned to the user or offered to the user or one of the groups, `offered_to` only those
    offered; the others match a definition id, a name or a LIKE pattern of the name."""

    visible_to: tuple[str, list[str]] | None = None
    offered_to: tuple[str, list[str]] | None = None
    definition_id: str | None = None
    name: str | None = None
    name_like: str | None = None


class Queries(UseCase):
    """Tasks and process instances as lists, pages and counts."""

    # ------------------------------------------------------------------------------ tasks ---
    def task_dict(self, t: Task) -> dict:
        return {"id": t.id, "instance_id": t.instance_id, "definition_id": t.definition_id,
                "process_key": t.process_key, "business_key": t.business_key, "element_id": t.element_id,
                "name": t.name, "status": t.status, "assignee": t.assignee,
                "candidate_users": list(t.candidate_users or []),
                "candidate_groups": list(t.candidate_groups or []), "created_at": t.created_at,
                "due_at": t.due_at, "follow_up_at": t.follow_up_at, "priority": t.priority,
                # open: against now; finished: whether it was done in time
                "form_key": t.form_key, "sla_state": sla_state(
                    t.due_at, self.clock.now() if t.status == "open" else (t.completed_at or self.clock.now()),
                    self.settings.due_soon_minutes),
                "completed_at": t.completed_at, "completed_by": t.completed_by}

    def _task_filter(self, q, f: TaskQuery):
        if f.status:
            q = q.where(Task.status == f.status)
        if f.assignee:
            q = q.where(Task.assignee == f.assignee)
        if f.unassigned:
            q = q.where(Task.assignee.is_(None))
        if f.candidate_user:
            q = q.where(Task.id.in_(select(TaskCandidate.task_id).where(
                TaskCandidate.kind == "user", TaskCandidate.ident == f.candidate_user)))
        if f.candidate_groups is not None:
            q = q.where(Task.id.in_(select(TaskCandidate.task_id).where(
                TaskCandidate.kind == "group", TaskCandidate.ident.in_(f.candidate_groups))))
        if f.visible_to_user is not None:
            offered = offered_task_ids(f.visible_to_user, f.visible_to_groups)
            if f.unassigned:  # offered and not claimed: only the candidate rows can match
                q = q.where(Task.id.in_(offered))
            else:
                q = q.where(or_(Task.assignee == f.visible_to_user, Task.id.in_(offered)))
        if f.process_key:
            q = q.where(Task.process_key == f.process_key)
        if f.business_key:
            q = q.where(Task.business_key == f.business_key)
        if f.instance_id:
            q = q.where(Task.instance_id == f.instance_id)
        if f.element_id:
            q = q.where(Task.element_id == f.element_id)
        now = self.clock.now()
        if f.overdue is True:
            q = q.where(Task.due_at <= now)
        elif f.overdue is False:
            q = q.where(or_(Task.due_at.is_(None), Task.due_at > now))
        if f.sla_states:
            soon = now + timedelta(minutes=self.settings.due_soon_minutes)
            conds = []
            if "overdue" in f.sla_states:
                conds.append(Task.due_at <= now)
            if "due_soon" in f.sla_states:
                conds.append(and_(Task.due_at > now, Task.due_at <= soon))
            if "on_time" in f.sla_states:
                conds.append(or_(Task.due_at.is_(None), Task.due_at > soon))
            q = q.where(or_(*conds))
        if f.search:
            like = contains_pattern(f.search.strip())
            q = q.where(or_(Task.search_text.like(like, escape=LIKE_ESCAPE), Task.name.like(like, escape=LIKE_ESCAPE)))
        return q

    def _order(self, q, f: TaskQuery):
        if f.sort == "priority":
            return q.order_by(Task.priority.desc(), Task.due_at.asc().nulls_last(), Task.created_at, Task.id)
        if f.sort == "created":
            return q.order_by(Task.created_at.desc(), Task.id)
        return q.order_by(Task.due_at.asc().nulls_last(), Task.priority.desc(), Task.created_at, Task.id)

    @staticmethod
    def _queue_candidates(f: TaskQuery):
        """The candidate rows of a "my groups" query (offered to the user or their groups)."""
        if f.visible_to_user is not None:
            return offered_condition(f.visible_to_user, f.visible_to_groups)
        return offered_condition(f.candidate_user, f.candidate_groups)

    @staticmethod
    def _is_queue_query(f: TaskQuery) -> bool:
        """The hot query of the task list: open tasks offered to me or my groups, not claimed."""
        offered = (f.visible_to_user is not None and f.candidate_user is None and f.candidate_groups is None) or (
            f.visible_to_user is None and f.candidate_groups is not None and f.candidate_user is None)
        return bool(f.unassigned and f.status == "open" and offered and not f.assignee)

    def _scoped(self, q, f: TaskQuery, scope: TaskScope | None):
        q = self._task_filter(q, f)
        if scope is None:
            return q
        if scope.visible_to is not None:
            q = q.where(or_(Task.assignee == scope.visible_to[0], Task.id.in_(offered_task_ids(*scope.visible_to))))
        if scope.offered_to is not None:
            q = q.where(Task.id.in_(offered_task_ids(*scope.offered_to)))
        if scope.definition_id is not None:
            q = q.where(Task.definition_id == scope.definition_id)
        if scope.name is not None:
            q = q.where(Task.name == scope.name)
        if scope.name_like is not None:
            q = q.where(Task.name.like(like_pattern(scope.name_like), escape=LIKE_ESCAPE))
        return q

    def tasks(self, f: TaskQuery, *, scope: TaskScope | None = None, order: Iterable[tuple[str, bool]] | None = None,
              total: bool = False) -> list[dict] | tuple[list[dict], int]:
        """One page of tasks (and the total, with `total`). Without `order`, sorted as `f.sort`
        says (due, priority, created); with it, by (field, descending) pairs over the sortable
        columns."""
        columns = None if order is None else self._order_by({
            "id": Task.id, "name": Task.name, "assignee": Task.assignee, "created": Task.created_at,
            "due": Task.due_at, "follow_up": Task.follow_up_at, "priority": Task.priority,
            "instance_id": Task.instance_id, "definition_id": Task.definition_id,
            "element_id": Task.element_id}, order, "tasks")
        limit, offset = max(0, min(f.limit, 1000)), max(0, f.offset)
        with self.db.reader() as s:
            count = s.execute(self._scoped(select(func.count(Task.id)), f, scope)).scalar_one() if total else None
            if columns is not None:
                q = self._scoped(select(Task.__table__), f, scope).order_by(*columns, Task.id)
                q = q.offset(offset).limit(limit)
            elif scope is None and self._is_queue_query(f):
                # Walk the open, unclaimed tasks in order and join their candidate rows: the queue
                # index gives the order, so the first page costs a few index probes, not a sort.
                rest = TaskQuery(**{**f.__dict__, "visible_to_user": None, "visible_to_groups": None,
                                    "candidate_groups": None, "candidate_user": None})
                ids = self._order(self._task_filter(
                    select(Task.id, Task.due_at, Task.priority, Task.created_at)
                    .join(TaskCandidate, TaskCandidate.task_id == Task.id)
                    .where(self._queue_candidates(f)).distinct(), rest), f).offset(offset).limit(limit)
                page = ids.subquery()
                q = self._order(select(Task.__table__).where(Task.id.in_(select(page.c.id))), f)
            else:
                q = self._order(self._scoped(select(Task.__table__), f, scope), f).offset(offset).limit(limit)
            rows = [self.task_dict(t) for t in s.execute(q)]
        return (rows, count) if total else rows

    def count_tasks(self, f: TaskQuery, *, scope: TaskScope | None = None) -> int:
        with self.db.reader() as s:
            plain = TaskQuery(unassigned=True, status="open", visible_to_user=f.visible_to_user,
                              visible_to_groups=f.visible_to_groups, candidate_groups=f.candidate_groups,
                              candidate_user=f.candidate_user, limit=f.limit, offset=f.offset, sort=f.sort)
            if scope is None and self._is_queue_query(f) and f == plain:
                # candidate rows exist only for open tasks and know whether the task is claimed
                return s.execute(select(func.count(func.distinct(TaskCandidate.task_id)))
                                 .where(self._queue_candidates(f), TaskCandidate.claimed.is_(False))).scalar_one()
            return s.execute(self._scoped(select(func.count(Task.id)), f, scope)).scalar_one()

    def get_task(self, task_id: str) -> dict:
        with self.db.reader() as s:
            return self.task_dict(self.store.load_task(s, task_id))

    # -------------------------------------------------------------------------- instances ---
    def instances(self, *, definition_id: str | None = None, process_key: str | None = None,
                  business_key: str | None = None, business_key_like: str | None = None,
                  instance_ids: Iterable[str] | None = None, deployment_id: str | None = None,
                  parent_instance_id: str | None = None, status: str | None = None, search: str | None = None,
                  visible_to: tuple[str, list[str]] | None = None, order: Iterable[tuple[str, bool]] | None = None,
                  offset: int = 0, limit: int = 50, total: bool = False) -> list[dict] | tuple[list[dict], int]:
        """One page of instances (and the total, with `total`). Without `order`, newest first.
        `visible_to` (user, groups) keeps the instances the user started, has a task of (assigned,
        offered to the user or a group, or completed)."""
        def where(q):
            if definition_id is not None:
                q = q.where(ProcessInstance.definition_id == definition_id)
            if process_key is not None:
                q = q.where(ProcessInstance.process_key == process_key)
            if business_key is not None:
                q = q.where(ProcessInstance.business_key == business_key)
            if business_key_like is not None:
                q = q.where(ProcessInstance.business_key.like(like_pattern(business_key_like), escape=LIKE_ESCAPE))
            if instance_ids is not None:
                q = q.where(ProcessInstance.id.in_(list(instance_ids)))
            if deployment_id is not None:
                q = q.where(ProcessInstance.definition_id.in_(
                    select(ProcessDefinition.id).where(ProcessDefinition.deployment_id == deployment_id)))
            if status is not None:
                q = q.where(ProcessInstance.status == status)
            if parent_instance_id is not None:
                q = q.where(ProcessInstance.parent_instance_id == parent_instance_id)
            if search:
                q = q.where(ProcessInstance.search_text.like(contains_pattern(search.strip()), escape=LIKE_ESCAPE))
            if visible_to is not None:
                user = visible_to[0]
                involved = select(Task.instance_id).where(or_(
                    Task.assignee == user, Task.completed_by == user, Task.id.in_(offered_task_ids(*visible_to))))
                q = q.where(or_(ProcessInstance.started_by == user, ProcessInstance.id.in_(involved)))
            return q

        if order is None:
            columns = [ProcessInstance.started_at.desc()]
        else:
            columns = self._order_by({
                "id": ProcessInstance.id, "process_key": ProcessInstance.process_key,
                "definition_id": ProcessInstance.definition_id, "business_key": ProcessInstance.business_key,
                "started_at": ProcessInstance.started_at}, order, "process instances") + [ProcessInstance.id]
        with self.db.reader() as s:
            count = s.execute(where(select(func.count(ProcessInstance.id)))).scalar_one() if total else None
            q = where(select(ProcessInstance)).order_by(*columns)
            q = q.offset(max(0, offset)).limit(max(0, min(limit, 1000)))
            rows = [self.store.instance_summary(r) for r in s.execute(q).scalars()]
        return (rows, count) if total else rows

    def count_instances(self, **filters) -> int:
        with self.db.reader() as s:
            q = select(func.count(ProcessInstance.id))
            for name, value in filters.items():
                if value is not None:
                    q = q.where(getattr(ProcessInstance, name) == value)
            return s.execute(q).scalar_one()

    def history(self, instance_id: str | None = None, limit: int = 200) -> list[dict]:
        """The newest history events (of one instance, or of the whole service: deployments too)."""
        with self.db.reader() as s:
            q = select(HistoryEvent).order_by(HistoryEvent.id.desc()).limit(limit)
            if instance_id:
                q = q.where(HistoryEvent.instance_id == instance_id)
            return [{"at": h.at, "user": h.user, "action": h.action, "instance_id": h.instance_id,
                     "element_id": h.element_id, "element_name": h.element_name, "details": h.details}
                    for h in s.execute(q).scalars()]

    # ------------------------------------------------------------------- accounts & activity ---
    def staff_member(self, username: str) -> tuple[bool, list[str]] | None:
        """(active, groups) of an account, or None when there is no such user."""
        with self.db.reader() as s:
            user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
            return (bool(user.active), [g.id for g in user.groups]) if user else None

    def user_groups(self, username: str) -> list[str]:
        with self.db.reader() as s:
            user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
            return [g.id for g in user.groups] if user else []

    @staticmethod
    def _order_by(columns: Mapping[str, Any], order: Iterable[tuple[str, bool]], what: str) -> list:
        out = []
        for key, descending in order:
            column = columns.get(key)
            if column is None:
                raise InvalidInput(f"{what} cannot be sorted by '{key}'", field="sortBy")
            out.append(column.desc() if descending else column.asc())
        return out

    def element_activity(self, definition_id: str) -> dict[str, dict[str, int]]:
        """Per element of one definition version, what its active instances wait for there:
        open human tasks, pending timers and message subscriptions."""
        active = select(ProcessInstance.id).where(ProcessInstance.definition_id == definition_id,
                                                  ProcessInstance.status == "active")
        counts: dict[str, dict[str, int]] = {}
        with self.db.reader() as s:
            for kind, q in (
                ("tasks", select(Task.element_id, func.count()).where(
                    Task.instance_id.in_(active), Task.status == "open").group_by(Task.element_id)),
                ("timers", select(Timer.element_id, func.count()).where(
                    Timer.instance_id.in_(active)).group_by(Timer.element_id)),
                ("messages", select(MessageSubscription.element_id, func.count()).where(
                    MessageSubscription.instance_id.in_(active)).group_by(MessageSubscription.element_id)),
            ):
                for element_id, n in s.execute(q):
                    counts.setdefault(element_id, {"tasks": 0, "timers": 0, "messages": 0})[kind] += n
        return counts
