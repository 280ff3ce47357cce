"""Human tasks: claim, unclaim, assign, complete, and the forms of a task and of a start event."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent as StartEventMixin
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select, true, update
from sqlalchemy.orm import Session

from engine.errors import STALE_RETRIES, Conflict, InvalidInput, StaleInstance
from engine.forms import TaskForm
from engine.models import Task, TaskCandidate, User
from engine.store import Command, UseCase
from engine.variables import check_variables, json_safe


class Tasks(UseCase):
    """Commands on human tasks, each one transaction."""

    def claim(self, task_id: str, user: str, *, force: bool = False) -> dict:
        with self.store.command() as s:
            task = self.store.load_task(s, task_id)
            self.require_open(task)
            if task.assignee and task.assignee != user and not force:
                raise Conflict(f"task '{task.name}' is already claimed by {task.assignee}",
                               task_id=task_id, assignee=task.assignee)
            # the claim itself is conditional, so two users claiming at once cannot both win
            claimable = (Task.assignee.is_(None) | (Task.assignee == user)) if not force else true()
            won = s.execute(update(Task).where(Task.id == task_id, Task.status == "open", claimable)
                            .values(assignee=user).execution_options(synchronize_session=False)).rowcount
            self.mark_claimed(s, task_id, True)
            if won != 1:
                s.refresh(task)
                raise Conflict(f"task '{task.name}' was just claimed by {task.assignee or 'someone else'}",
                               task_id=task_id, assignee=task.assignee)
            s.refresh(task)
            self.store.record(s, task.instance_id, user, "claim", element_id=task.element_id,
                              element_name=task.name, task_id=task_id)
            return self.engine.queries.task_dict(task)

    def unclaim(self, task_id: str, user: str | None) -> dict:
        with self.store.command() as s:
            task = self.store.load_task(s, task_id)
            self.require_open(task)
            previous = task.assignee
            task.assignee = None
            self.mark_claimed(s, task_id, False)
            self.store.record(s, task.instance_id, user, "unclaim", element_id=task.element_id,
                              element_name=task.name, task_id=task_id, details={"previous": previous})
            return self.engine.queries.task_dict(task)

    def assign(self, task_id: str, assignee: str | None, user: str | None) -> dict:
        with self.store.command() as s:
            task = self.store.load_task(s, task_id)
            self.require_open(task)
            if assignee is not None and s.execute(select(User).where(User.username == assignee)).first() is None:
                raise InvalidInput(f"there is no user '{assignee}'", field="assignee")
            previous = task.assignee
            task.assignee = assignee
            self.mark_claimed(s, task_id, assignee is not None)
            self.store.record(s, task.instance_id, user, "assign", element_id=task.element_id,
                              element_name=task.name, task_id=task_id,
                              details={"previous": previous, "assignee": assignee})
            return self.engine.queries.task_dict(task)

    @staticmethod
    def mark_claimed(s: Session, task_id: str, claimed: bool) -> None:
        s.execute(update(TaskCandidate).where(TaskCandidate.task_id == task_id).values(claimed=claimed)
                  .execution_options(synchronize_session=False))

    @staticmethod
    def require_open(task: Task) -> None:
        if task.status == "completed":
            who = f" by {task.completed_by}" if task.completed_by else ""
            raise Conflict(f"task '{task.name}' was already completed{who}", task_id=task.id,
                           completed_by=task.completed_by)
        if task.status != "open":
            raise Conflict(f"task '{task.name}' is no longer open ({task.status})", task_id=task.id)

    def form(self, task_id: str) -> TaskForm:
        with self.db.reader() as s:
            task = self.store.task_record(s, task_id)
            spec, _ = self.store.specs(s, self.store.definition_info(s, task.definition_id))
            ts = spec.task_specs.get(task.element_id)
            return TaskForm.for_spec(ts) if ts is not None else TaskForm([])

    def start_form(self, process_key: str | None = None, *, definition_id: str | None = None) -> TaskForm:
        """The form of the none start event (camunda:formData), for start pages and the REST API."""
        with self.db.reader() as s:
            definition = self.store.definition_info(s, definition_id or self.store.latest_definition_id(s, process_key))
            spec, _ = self.store.specs(s, definition)
            for ts in spec.task_specs.values():
                if isinstance(ts, StartEventMixin) and type(ts.event_definition).__name__ == "NoneEventDefinition":
                    return TaskForm.for_spec(ts)
            return TaskForm([])

    def complete(self, task_id: str, variables: Mapping[str, Any] | None = None, *, user: str | None = None,
                 require_assignee: bool = False,
                 submission: Callable[[dict, TaskForm], Mapping[str, Any] | None] | None = None) -> dict:
        """Complete a human task with data. Raises Conflict when the task is not open any more,
        is assigned to someone else, or the instance changed meanwhile.

        With `submission` the data is what a form posted: it is called with the task (as
        `get_task` shows it) and the task's form once the task is open and may be completed by
        `user`, so that a page needs no read of its own before the command.

        Returns the instance (`instance_summary`) and `next_tasks`: the instance's open tasks after
        the command (id, name, element_id, assignee, candidate_users, candidate_groups, due_at,
        priority), in the order of the task list; from the command's own work, with a read only
        for tasks that were open before and still are (parallel branches)."""
        if submission is None:
            variables = check_variables(variables)
        # On SQLite the engine works before the write lock (Store.command's optimistic mode): when
        # another command changed the instance meanwhile (a parallel branch, an SMS task), run again
        # on the fresh state, as the command would have had it waited for the lock.
        for attempt in range(STALE_RETRIES):
            try:
                return self._complete(task_id, variables, user, require_assignee, submission)
            except StaleInstance:
                if attempt == STALE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _complete(self, task_id, variables, user, require_assignee, submission) -> dict:
        with self.store.command(optimistic=True) as s:
            task = self.store.task_record(s, task_id, with_instance=True)  # the one locking read
            self.require_open(task)
            if task.assignee and user and task.assignee != user:
                raise Conflict(f"task '{task.name}' is assigned to {task.assignee}", task_id=task_id,
                               assignee=task.assignee)
            if require_assignee and not task.assignee:
                raise Conflict(f"claim task '{task.name}' before completing it", task_id=task_id)
            loaded = self.store.load(s, task.instance_id)
            definition, workflow = loaded.definition, loaded.workflow
            spiff_task = workflow.get_task_from_id(uuid.UUID(task_id))
            if spiff_task is None or spiff_task.state != TaskState.READY:
                raise Conflict(f"task '{task.name}' is not ready", task_id=task_id)
            form = TaskForm.for_spec(spiff_task.task_spec)
            if submission is not None:
                variables = check_variables(submission(self.engine.queries.task_dict(task), form))
            values = form.validate(variables)
            spiff_task.data.update(values)
            cmd = Command(user, "complete", completed_task_id=task_id)
            cmd.events.append({"action": "complete", "element_id": task.element_id, "element_name": task.name,
                               "task_id": task_id, "details": {"variables": json_safe(values)}})
            try:
                with self.engine.calendar.watch_estimates() as watch:
                    spiff_task.run()
            except SpiffWorkflowException as exc:
                raise self.store.process_error(exc, definition) from exc
            if watch.years:
                cmd.events.append({"action": "calendar_warning",
                                   "details": {"unconfirmed_years": sorted(watch.years)}})
            self.store.run_engine(workflow, definition, cmd)
            self.store.save(s, loaded, cmd)
            result = self.store.instance_summary(loaded.row)
            result["next_tasks"] = self.open_after(s, loaded, cmd)
            return result

    @staticmethod
    def open_after(s: Session, loaded, cmd: Command) -> list[dict]:
        """The open tasks of a command's instance once it is saved: those the command created (its
        task_created events, as the save step wrote them) and those open before that still are
        (read, for their assignee may have changed since they were created)."""
        workflow = loaded.workflow
        if workflow.completed:
            return []
        out = []
        for event in cmd.events:
            if event["action"] != "task_created":
                continue
            details = event.get("details") or {}
            spiff_task = workflow.get_task_from_id(uuid.UUID(event["task_id"]))
            assignment = (spiff_task.internal_data.get("assignment") or {}) if spiff_task is not None else {}
            due = details.get("due_at")
            out.append({"id": event["task_id"], "name": event.get("element_name"),
                        "element_id": event.get("element_id"), "assignee": details.get("assignee"),
                        "candidate_users": list(assignment.get("candidateUsers") or []),
                        "candidate_groups": list(details.get("candidate_groups") or []),
                        "due_at": datetime.fromisoformat(due) if due else None,
                        "priority": assignment.get("priority", 50), "created_at": None})
        still_open = []
        for task_id in loaded.before.human:
            if task_id == cmd.completed_task_id:
                continue
            spiff_task = workflow.get_task_from_id(uuid.UUID(task_id))
            if spiff_task is not None and spiff_task.state == TaskState.READY:
                still_open.append(task_id)
        if still_open:
            tasks = Task.__table__
            for t in s.execute(select(tasks).where(tasks.c.id.in_(still_open), tasks.c.status == "open")):
                out.append({"id": t.id, "name": t.name, "element_id": t.element_id, "assignee": t.assignee,
                            "candidate_users": list(t.candidate_users or []),
                            "candidate_groups": list(t.candidate_groups or []), "due_at": t.due_at,
                            "priority": t.priority, "created_at": t.created_at})
        # the task list's order: due first (none last), then priority, then the older task
        out.sort(key=lambda t: (t["due_at"] is None, t["due_at"].timestamp() if t["due_at"] else 0,
                                -(t["priority"] or 0), t["created_at"] is None,
                                t["created_at"].timestamp() if t["created_at"] else 0, t["id"]))
        for t in out:
            del t["created_at"]
        return out
