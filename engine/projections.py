"""Projections of an instance's state into the tables the service reads: what a workflow looks
like at one moment (Snapshot), its one variable scope, and the task, candidate, timer, message
subscription and variable rows that follow from the difference between two snapshots."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import (
    EventBasedGateway as EventBasedGatewayMixin,
)
from SpiffWorkflow.bpmn.specs.mixins.exclusive_gateway import ExclusiveGateway as ExclusiveGatewayMixin
from SpiffWorkflow.bpmn.specs.mixins.inclusive_gateway import InclusiveGateway as InclusiveGatewayMixin
from SpiffWorkflow.bpmn.specs.mixins.parallel_gateway import ParallelGateway as ParallelGatewayMixin
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import CallActivity
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import bindparam
from sqlalchemy.engine import Connection

from engine.dialect.specs import ExternalServiceTask, timer_due
from engine.models import InstanceVariable, MessageSubscription, Task, TaskCandidate, Timer
from engine.variables import json_safe, variable_type

# Variables shown in lists and searched by (patient name or number, case number).
SEARCH_VARIABLES = ("patientName", "patientNo", "patientId", "medicalRecordNo", "complainantName",
                    "caseNo", "bedNo", "ward")


@dataclass
class Snapshot:
    """What a workflow looks like at one moment, as far as the projections care."""

    variables: dict
    summary: dict
    done: dict  # completed task id -> task
    human: dict  # READY human task id (str) -> task
    external: dict  # READY external (service) task id (str) -> task
    timers: dict  # waiting timer task id (str) -> (element id, due)
    messages: dict  # (task id, message name) -> element id

    def newly_done(self, before: Snapshot):
        return [t for tid, t in self.done.items() if tid not in before.done]


ACTIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED


SCOPE_KEY = "data_objects"  # SpiffWorkflow's own entry in workflow.data, not a process variable


def _in_process_scope(workflow: BpmnWorkflow, task) -> bool:
    """A task shares the instance's variables unless it runs inside a called process (call
    activities have their own scope, with camunda:in/out mappings)."""
    wf = task.workflow
    while wf is not workflow:
        owner = workflow.get_task_from_id(wf.parent_task_id)
        if owner is None or isinstance(owner.task_spec, CallActivity):
            return False
        wf = owner.workflow
    return True


_GATEWAYS = (ExclusiveGatewayMixin, ParallelGatewayMixin, InclusiveGatewayMixin, EventBasedGatewayMixin)


def unify_scope(workflow: BpmnWorkflow, before: Snapshot) -> None:
    """Give the instance one variable scope, as Camunda has, on top of SpiffWorkflow's per-branch
    task data: what the tasks completed in this command changed (in completion order) is merged
    into the process scope (kept in workflow.data), and the scope is written back into every task
    that will run or be inherited from, so no branch carries a stale copy."""
    scope = dict(before.variables)
    explicit = {k: v for k, v in workflow.data.items()
                if k != SCOPE_KEY and (k not in before.variables or before.variables[k] != v)}
    if not workflow.completed:
        scope.update(explicit)  # variables set on the instance itself (set_variables)
    newly = [t for tid, t in ((t.id, t) for t in workflow.get_tasks(state=TaskState.COMPLETED))
             if tid not in before.done and _in_process_scope(workflow, t)]
    newly.sort(key=lambda t: (t.last_state_change, t.depth))  # ties: ancestors first
    for t in newly:
        # what the activity or event itself changed: its data against what it inherited
        # (gateways only route and merge, and internal tasks are not on the diagram)
        if getattr(t.task_spec, "bpmn_id", None) is None or isinstance(t.task_spec, _GATEWAYS):
            continue
        base = t.parent.data if t.parent is not None else before.variables
        for key, value in t.data.items():
            if key not in base or base[key] != value:
                scope[key] = value
    if workflow.completed:
        for key, value in explicit.items():  # SpiffWorkflow copies the last branch's data here
            scope.setdefault(key, value)
    for t in workflow.get_tasks():
        if t.has_state(TaskState.FINISHED_MASK) and not any(
                not c.has_state(TaskState.FINISHED_MASK) for c in t.children):
            continue
        if _in_process_scope(workflow, t):
            local = t.internal_data.get("local_variables")  # an activity's own: the scope must not hide them
            # each task gets its own copies: a script changing a list in place must not change
            # the value another task (or the comparison with the scope before) holds
            shared = {k: v for k, v in scope.items() if k not in local} if local else scope
            t.data.update(copy.deepcopy(shared))
    objects = workflow.data.get(SCOPE_KEY)
    workflow.data.clear()
    workflow.data.update(copy.deepcopy(scope))
    if objects is not None:
        workflow.data[SCOPE_KEY] = objects


def snapshot(workflow: BpmnWorkflow) -> Snapshot:
    scope = {k: v for k, v in workflow.data.items() if k != SCOPE_KEY}
    has_scope = bool(scope) or workflow.completed  # kept by unify_scope since the first save
    variables: dict = {}
    done, human, external, timers, messages = {}, {}, {}, {}, {}
    for t in workflow.get_tasks():
        state = t.state
        if state == TaskState.COMPLETED:
            done[t.id] = t
            continue
        if not state & ACTIVE:
            continue
        if not has_scope:
            local = t.internal_data.get("local_variables")  # an activity's own (inputOutput, multi-instance)
            if local:  # not process variables; those they hide are
                variables.update({k: v for k, v in t.data.items() if k not in local})
                variables.update(t.internal_data.get("shadowed_variables") or {})
            else:
                variables.update(t.data)
        spec = t.task_spec
        if state == TaskState.READY and isinstance(spec, ExternalServiceTask):
            external[str(t.id)] = t
        elif state == TaskState.READY and spec.manual:
            human[str(t.id)] = t
        elif state == TaskState.WAITING and isinstance(spec, CatchingEvent):
            for ed in getattr(spec.event_definition, "event_definitions", [spec.event_definition]):
                if isinstance(ed, TimerEventDefinition):
                    due = timer_due(t)
                    if due is not None:
                        timers[str(t.id)] = (spec.bpmn_id, due)
                elif isinstance(ed, MessageEventDefinition):
                    messages[(str(t.id), ed.name)] = spec.bpmn_id
    if has_scope:
        variables = copy.deepcopy(scope)
    elif not variables and workflow.last_task is not None:
        variables = dict(workflow.last_task.data)
    summary = {k: json_safe(variables[k]) for k in SEARCH_VARIABLES if variables.get(k) not in (None, "")}
    return Snapshot(variables, summary, done, human, external, timers, messages)


class Statements:
    """The projection writes, built once (SQLAlchemy memoizes a statement object's cache key, so
    a statement reused with new parameters skips building and compiling; lists go through
    expanding IN parameters). They run on the command's connection, not through the ORM."""

    variables = InstanceVariable.__table__
    tasks = Task.__table__
    candidates = TaskCandidate.__table__
    timers = Timer.__table__
    subscriptions = MessageSubscription.__table__

    delete_variables = variables.delete().where(variables.c.instance_id == bindparam("b_instance"),
                                                variables.c.name.in_(bindparam("b_names", expanding=True)))
    insert_variables = variables.insert()
    complete_tasks = tasks.update().where(tasks.c.id.in_(bindparam("b_ids", expanding=True)),
                                          tasks.c.status == "open").values(
        status="completed", completed_at=bindparam("b_at"), completed_by=bindparam("b_by"))
    cancel_tasks = tasks.update().where(tasks.c.id.in_(bindparam("b_ids", expanding=True)),
                                        tasks.c.status == "open").values(
        status="cancelled", completed_at=bindparam("b_at"))
    search_open_tasks = tasks.update().where(tasks.c.instance_id == bindparam("b_instance"),
                                             tasks.c.status == "open").values(search_text=bindparam("b_search"))
    insert_tasks = tasks.insert()
    delete_candidates = candidates.delete().where(candidates.c.task_id.in_(bindparam("b_ids", expanding=True)))
    insert_candidates = candidates.insert()
    delete_timers = timers.delete().where(timers.c.instance_id == bindparam("b_instance"),
                                          timers.c.task_id.in_(bindparam("b_ids", expanding=True)))
    reschedule_timers = timers.update().where(timers.c.instance_id == bindparam("b_instance"),
                                              timers.c.task_id == bindparam("b_task")).values(
        due_at=bindparam("b_due"), status="pending", lease_owner=None, lease_until=None, attempts=0,
        last_error=None)
    insert_timers = timers.insert()
    delete_subscriptions = subscriptions.delete().where(
        subscriptions.c.instance_id == bindparam("b_instance"), subscriptions.c.task_id == bindparam("b_task"),
        subscriptions.c.message_name == bindparam("b_name"))
    insert_subscriptions = subscriptions.insert()


def save_variables(conn: Connection, instance_id: str, changed: dict, removed: list, is_new: bool) -> None:
    """The variables table: the changed values rewritten, the removed ones deleted (one DELETE and
    one batched INSERT)."""
    stale = list(removed) if is_new else list(removed) + list(changed)
    if stale:
        conn.execute(Statements.delete_variables, {"b_instance": instance_id, "b_names": stale})
    if not changed:
        return
    rows = []
    for name, value in changed.items():
        safe = json_safe(value)
        text = None
        if isinstance(safe, str | int | float | bool) and not isinstance(safe, dict | list):
            text = str(safe).lower() if isinstance(safe, bool) else str(safe)
            text = text[:512]
        rows.append({"instance_id": instance_id, "name": name, "value": safe, "text_value": text,
                     "type_name": variable_type(value)})
    conn.execute(Statements.insert_variables, rows)


def sync_tasks(conn: Connection, row, definition, before: Snapshot, after: Snapshot, cmd, search: str | None,
               now: datetime, due_soon_minutes: int) -> None:
    """The task table and candidate rows: tasks that ended, and the READY human tasks that are new."""
    gone = [task_id for task_id in before.human if task_id not in after.human]
    new = [task_id for task_id in after.human if task_id not in before.human]
    if gone:
        completed = [t for t in gone if t == cmd.completed_task_id]
        cancelled = [t for t in gone if t != cmd.completed_task_id]
        if completed:
            conn.execute(Statements.complete_tasks, {"b_ids": completed, "b_at": now, "b_by": cmd.user})
        if cancelled:
            conn.execute(Statements.cancel_tasks, {"b_ids": cancelled, "b_at": now})
        conn.execute(Statements.delete_candidates, {"b_ids": gone})
    if not new:
        return
    rows, candidates = [], []
    for task_id in new:
        t = after.human[task_id]
        a = t.internal_data.get("assignment") or {}
        ext = t.task_spec.extensions or {}
        due = datetime.fromisoformat(a["dueDate"]) if a.get("dueDate") else None
        follow = datetime.fromisoformat(a["followUpDate"]) if a.get("followUpDate") else None
        name = t.task_spec.bpmn_name or t.task_spec.bpmn_id
        users, groups = a.get("candidateUsers") or [], a.get("candidateGroups") or []
        rows.append({"id": task_id, "instance_id": row.id, "definition_id": definition.id,
                     "process_key": definition.key, "business_key": row.business_key,
                     "element_id": t.task_spec.bpmn_id, "name": name, "status": "open",
                     "assignee": a.get("assignee"), "owner": None, "candidate_users": users,
                     "candidate_groups": groups, "created_at": now, "due_at": due, "follow_up_at": follow,
                     "priority": a.get("priority", 50), "form_key": ext.get("formKey"),
                     "sla_state": sla_state(due, now, due_soon_minutes), "completed_at": None, "completed_by": None,
                     "search_text": search})
        claimed = a.get("assignee") is not None
        candidates += [{"task_id": task_id, "kind": "user", "ident": u, "claimed": claimed} for u in users]
        candidates += [{"task_id": task_id, "kind": "group", "ident": g, "claimed": claimed} for g in groups]
        cmd.events.append({"action": "task_created", "element_id": t.task_spec.bpmn_id,
                           "element_name": name, "task_id": task_id,
                           "details": {"assignee": a.get("assignee"), "candidate_groups": groups,
                                       "due_at": due.isoformat() if due else None}})
    conn.execute(Statements.insert_tasks, rows)
    if candidates:
        conn.execute(Statements.insert_candidates, candidates)


def sla_state(due: datetime | None, now: datetime, due_soon_minutes: int) -> str:
    """on_time, due_soon (within `due_soon_minutes` of the due time) or overdue."""
    if due is None:
        return "on_time"
    if due <= now:
        return "overdue"
    if due - now <= timedelta(minutes=due_soon_minutes):
        return "due_soon"
    return "on_time"


def sync_waits(conn: Connection, row, before: Snapshot, after: Snapshot) -> None:
    """Timers and message subscriptions of the waiting catch events (only what changed, each kind
    of change one statement, executemany where there are several rows)."""
    gone = [tid for tid in before.timers if tid not in after.timers]
    if gone:
        conn.execute(Statements.delete_timers, {"b_instance": row.id, "b_ids": gone})
    moved, added = [], []
    for task_id, (element, due) in after.timers.items():
        if task_id in before.timers:
            if before.timers[task_id][1] != due:
                moved.append({"b_instance": row.id, "b_task": task_id, "b_due": due})
            continue
        added.append({"id": str(uuid.uuid4()), "instance_id": row.id, "task_id": task_id, "element_id": element,
                      "due_at": due, "status": "pending", "fired_count": 0, "attempts": 0})
    if moved:
        conn.execute(Statements.reschedule_timers, moved)
    if added:
        conn.execute(Statements.insert_timers, added)
    ended = [{"b_instance": row.id, "b_task": task_id, "b_name": name}
             for (task_id, name) in before.messages if (task_id, name) not in after.messages]
    if ended:
        conn.execute(Statements.delete_subscriptions, ended)
    new = [{"id": str(uuid.uuid4()), "instance_id": row.id, "task_id": task_id, "element_id": element,
            "message_name": name, "business_key": row.business_key}
           for (task_id, name), element in after.messages.items() if (task_id, name) not in before.messages]
    if new:
        conn.execute(Statements.insert_subscriptions, new)
