"""Human tasks: claim, unclaim, assign, complete, and the forms of a task and of a start event."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent as StartEventMixin
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select, true, update
from sqlalchemy.orm import Session

from engine.errors import Conflict, InvalidInput
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
                 require_assignee: bool = False) -> dict:
        """Complete a human task with data. Raises Conflict when the task is not open any more,
        is assigned to someone else, or the instance changed meanwhile."""
        variables = check_variables(variables)
        with self.store.command() as s:
            task = self.store.task_record(s, task_id)
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
            values = TaskForm.for_spec(spiff_task.task_spec).validate(variables)
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
            return self.store.instance_summary(loaded.row)
