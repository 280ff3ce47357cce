"""The one unit of work every engine command runs in, and the store of instances.

A command is one transaction (`Store.command`): load the instance under a lock (row lock on
PostgreSQL, BEGIN IMMEDIATE on SQLite, and an optimistic version counter everywhere), run
SpiffWorkflow, then save the state with its projections (engine/projections.py: the task table,
timers, message subscriptions, variables) and history, and commit — or change nothing. The use-case
modules (engine/instances.py, tasks.py, messages.py, timers.py, external.py, …) call only the public
methods here.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from engine.dialect import dmn
from engine.dialect.scripting import DialectScriptEngine, Runtime, budgets_from
from engine.errors import Conflict, NotFound, ProcessError, StaleInstance
from engine.models import HistoryEvent, ProcessDefinition, ProcessInstance, Task
from engine.projections import (
    Snapshot,
    Statements,
    save_variables,
    snapshot,
    sync_tasks,
    sync_waits,
    unify_scope,
)
from engine.variables import json_safe

_INSTANCES = ProcessInstance.__table__
INSERT_INSTANCE = _INSTANCES.insert()
# the state write with the optimistic version guard; the values to set are the parameters' keys
SAVE_INSTANCE = _INSTANCES.update().where(_INSTANCES.c.id == bindparam("b_id"),
                                          _INSTANCES.c.version == bindparam("b_version"))
INSERT_HISTORY = HistoryEvent.__table__.insert()
_LOAD_COLUMNS = [_INSTANCES.c.id, _INSTANCES.c.definition_id, _INSTANCES.c.process_key, _INSTANCES.c.business_key,
                 _INSTANCES.c.status, _INSTANCES.c.version, _INSTANCES.c.started_at, _INSTANCES.c.ended_at,
                 _INSTANCES.c.started_by, _INSTANCES.c.parent_instance_id, _INSTANCES.c.summary]


def _load_statement(with_state: bool, lock: bool):
    q = select(*_LOAD_COLUMNS, _INSTANCES.c.state) if with_state else select(*_LOAD_COLUMNS)
    q = q.where(_INSTANCES.c.id == bindparam("b_id"))
    return q.with_for_update() if lock else q


# the read of an instance, by (with its state, under a row lock), each built once
_LOAD = {(with_state, lock): _load_statement(with_state, lock) for with_state in (True, False) for lock in (True, False)}
_TASKS = Task.__table__


def _task_with_instance_statement(with_state: bool, lock: bool):
    instance = _LOAD_COLUMNS + [_INSTANCES.c.state] if with_state else _LOAD_COLUMNS
    q = (select(*_TASKS.c, *[c.label(f"of_instance_{c.name}") for c in instance])
         .select_from(_TASKS.join(_INSTANCES, _INSTANCES.c.id == _TASKS.c.instance_id))
         .where(_TASKS.c.id == bindparam("task_id")))
    return q.with_for_update(of=_INSTANCES) if lock else q


# a command's one locking read on a task: the task joined with its instance, built once
_TASK_WITH_INSTANCE = {(with_state, lock): _task_with_instance_statement(with_state, lock)
                       for with_state in (True, False) for lock in (True, False)}
_LOAD_STATE = select(_INSTANCES.c.state).where(_INSTANCES.c.id == bindparam("b_id"))


@dataclass
class Command:
    """What one command did, for the save step and history."""

    user: str | None
    action: str
    events: list[dict] = field(default_factory=list)
    completed_task_id: str | None = None


@dataclass
class InstanceRecord:
    id: str
    definition_id: str
    process_key: str
    business_key: str | None
    status: str
    version: int
    started_at: datetime
    ended_at: datetime | None
    started_by: str | None
    parent_instance_id: str | None
    summary: dict | None


@dataclass(frozen=True)
class DefinitionInfo:
    """The immutable facts of a definition version (cached: a version never changes)."""

    id: str
    key: str
    version: int
    name: str | None
    deployment_id: str
    resource_name: str


@dataclass
class Loaded:
    """The loaded instance of a command: the row as it was, its definition, the workflow and what
    the workflow looked like before the command (the save step writes only the differences)."""

    row: InstanceRecord
    definition: DefinitionInfo
    workflow: BpmnWorkflow
    before: Snapshot


class WorkflowCache:
    """Live workflow objects of recently used instances, valid only for the version they were
    saved at: a command that finds the same version in the database skips deserializing. Another
    process's change bumps the version, so a stale entry is never used."""

    def __init__(self, size: int = 512):
        self.size = size
        self._items: OrderedDict[str, tuple[int, BpmnWorkflow, Snapshot]] = OrderedDict()
        self._owners: dict[str, str] = {}  # open human task id -> its cached instance's id
        self._lock = threading.Lock()

    def __contains__(self, instance_id: str) -> bool:
        return instance_id in self._items

    def owner_of(self, task_id: str) -> str | None:
        """The instance of an open human task, if that instance is cached."""
        return self._owners.get(task_id)

    def _forget(self, item) -> None:
        for task_id in item[2].human:
            self._owners.pop(task_id, None)

    def take(self, instance_id: str, version: int) -> tuple[BpmnWorkflow, Snapshot] | None:
        """The workflow and its snapshot as saved, if the cached entry is of this version."""
        with self._lock:
            item = self._items.pop(instance_id, None)
            if item is not None:
                self._forget(item)
        if item is not None and item[0] == version:
            return item[1], item[2]
        return None

    def put(self, instance_id: str, version: int, workflow: BpmnWorkflow, seen: Snapshot) -> None:
        with self._lock:
            old = self._items.get(instance_id)
            if old is not None:
                self._forget(old)
            self._items[instance_id] = (version, workflow, seen)
            self._items.move_to_end(instance_id)
            self._owners.update(dict.fromkeys(seen.human, instance_id))
            while len(self._items) > self.size:
                self._forget(self._items.popitem(last=False)[1])

    def drop(self, instance_id: str) -> None:
        with self._lock:
            item = self._items.pop(instance_id, None)
            if item is not None:
                self._forget(item)


class UseCase:
    """What every use-case module works with: the engine's database, settings, clock, serializer
    and the store (read through the engine, so a test that swaps one sees it everywhere)."""

    def __init__(self, engine):
        self.engine = engine

    @property
    def db(self):
        return self.engine.db

    @property
    def settings(self):
        return self.engine.settings

    @property
    def clock(self):
        return self.engine.clock

    @property
    def serializer(self):
        return self.engine.serializer

    @property
    def store(self) -> Store:
        return self.engine.store


class Store(UseCase):
    """Load and save instances with their projections; one transaction per command."""

    def __init__(self, engine):
        super().__init__(engine)
        self.definitions: dict[str, DefinitionInfo] = {}
        self.workflows = WorkflowCache()
        self._stmt_task_by_id = select(Task.__table__).where(Task.__table__.c.id == bindparam("task_id"))

    @contextlib.contextmanager
    def command(self, *, optimistic: bool = False) -> Iterator[Session]:
        """One engine command: one transaction; live workflows are cached only after the commit.

        `optimistic`: the command's first write is `save`'s version-guarded state write (start,
        complete), so on SQLite it loads and runs the engine before taking the write lock
        (Database.transaction's late_write_lock); a concurrent change makes the guard fail with
        Conflict."""
        with self.db.transaction(late_write_lock=optimistic) as s:
            yield s
        for instance_id, version, workflow, seen in s.info.get("workflows", []):
            self.workflows.put(instance_id, version, workflow, seen)

    def latest_definition_id(self, s: Session, key: str) -> str:
        found = s.execute(select(ProcessDefinition.id).where(ProcessDefinition.key == key)
                          .order_by(ProcessDefinition.version.desc()).limit(1)).scalar_one_or_none()
        if found is None:
            raise NotFound(f"no process with key '{key}' is deployed", process_key=key)
        return found

    def runtime(self, s: Session, row: ProcessInstance | None, definition: ProcessDefinition) -> Runtime:
        def evaluate(key, binding, version, variables, task):
            try:
                drow = self.engine.decisions.row(s, key, binding, version, definition.deployment_id)
                return self.engine.decisions.evaluate_row(s, drow, variables)
            except NotFound as exc:
                raise WorkflowTaskException(exc.message, task=task) from exc
            except dmn.DmnEvaluationError as exc:
                raise WorkflowTaskException(f"decision '{key}': {exc}", task=task) from exc

        return Runtime(now=self.clock.now, tz=self.settings.tz, functions=self.engine.functions(),
                       budgets=budgets_from(self.settings),
                       evaluate_decision=evaluate,
                       business_key=row.business_key if row is not None else None,
                       instance_id=row.id if row is not None else None,
                       timer_min_interval=timedelta(seconds=self.settings.timer_min_interval))

    def definition_info(self, s: Session, definition_id: str) -> DefinitionInfo:
        info = self.definitions.get(definition_id)
        if info is None:
            row = s.get(ProcessDefinition, definition_id)
            if row is None:
                raise NotFound(f"process definition '{definition_id}' does not exist",
                               definition_id=definition_id)
            info = DefinitionInfo(row.id, row.key, row.version, row.name, row.deployment_id, row.resource_name)
            self.serializer.load_spec(row.id, row.spec)
            self.definitions[definition_id] = info
        return info

    def specs(self, s: Session, info: DefinitionInfo):
        cached = self.serializer.cached_spec(info.id)
        if cached is not None:
            return cached
        blob = s.execute(select(ProcessDefinition.spec).where(ProcessDefinition.id == info.id)).scalar_one()
        return self.serializer.load_spec(info.id, blob)

    def load(self, s: Session, instance_id: str, *, for_update: bool = True) -> Loaded:
        lock = for_update and not self.db.is_sqlite
        prefetched = s.info.get("prefetched", {}).pop(instance_id, None)
        if prefetched is not None and prefetched[2] == lock:  # read with the task (task_record)
            found, with_state = prefetched[0], prefetched[1]
        else:
            with_state = instance_id not in self.workflows  # a cached workflow needs no state read
            found = s.connection().execute(_LOAD[with_state, lock], {"b_id": instance_id}).first()
        if found is None:
            raise NotFound(f"process instance '{instance_id}' does not exist", instance_id=instance_id)
        columns = _LOAD_COLUMNS
        row = InstanceRecord(*found[:len(columns)])
        state = found[len(columns)] if with_state else None
        if row.status != "active":
            raise Conflict(f"process instance '{instance_id}' is {row.status}", instance_id=instance_id,
                           status=row.status)
        definition = self.definition_info(s, row.definition_id)
        cached = self.workflows.take(row.id, row.version)
        if cached is not None:
            workflow, before = cached
        else:
            if state is None:  # the cached entry was of another version
                state = s.connection().execute(_LOAD_STATE, {"b_id": instance_id}).scalar_one()
            spec, subprocess_specs = self.specs(s, definition)
            workflow = self.serializer.load_state(state, spec, subprocess_specs)
            before = snapshot(workflow)
        workflow.script_engine = DialectScriptEngine(self.runtime(s, row, definition))
        return Loaded(row, definition, workflow, before)

    def run_engine(self, workflow: BpmnWorkflow, definition, cmd: Command | None = None) -> None:
        try:
            with self.engine.calendar.watch_estimates() as watch:
                workflow.refresh_timers()
                workflow.do_engine_steps()
        except SpiffWorkflowException as exc:
            raise self.process_error(exc, definition) from exc
        if cmd is not None and watch.years:
            # a deadline was computed from an estimate: the holidays of that year are not confirmed
            cmd.events.append({"action": "calendar_warning", "details": {
                "unconfirmed_years": sorted(watch.years),
                "message": "节假日安排未确认，期限为估算 / holidays not confirmed: the deadline is an estimate"}})

    @staticmethod
    def process_error(exc: Exception, definition) -> ProcessError:
        task = getattr(exc, "task", None)
        element = getattr(getattr(task, "task_spec", None), "bpmn_id", None) if task else None
        message = exc.args[0] if exc.args else str(exc)
        notes = getattr(exc, "__notes__", None)
        inner = getattr(exc, "error_type", None)
        detail = f"{message}" + (f" ({inner})" if inner and inner not in str(message) else "")
        if notes:
            detail += " " + " ".join(str(n) for n in notes)
        return ProcessError(f"{definition.resource_name}, element '{element or '?'}': {detail}",
                            element=element, process_key=definition.key)

    def save(self, s: Session, loaded: Loaded, cmd: Command, *, is_new: bool = False) -> None:
        """Write the command's outcome: state, task table, timers, subscriptions, variables, history."""
        row, definition, workflow, before = loaded.row, loaded.definition, loaded.workflow, loaded.before
        now = self.clock.now()
        unify_scope(workflow, before)
        after = snapshot(workflow)

        # the path taken: every diagram element completed in this command
        for t in after.newly_done(before):
            bpmn_id = getattr(t.task_spec, "bpmn_id", None)
            if bpmn_id is None or str(t.id) == cmd.completed_task_id:
                continue
            cmd.events.append({"action": "element", "element_id": bpmn_id,
                               "element_name": getattr(t.task_spec, "bpmn_name", None), "task_id": str(t.id),
                               "details": {"type": type(t.task_spec).__name__}})

        after_vars = after.variables
        changed = {k: v for k, v in after_vars.items() if k not in before.variables or before.variables[k] != v}
        removed = [k for k in before.variables if k not in after_vars]

        if workflow.completed:
            row.status, row.ended_at = "completed", now
            state = self.serializer.dump_data(workflow.data)
            cmd.events.append({"action": "end", "details": {}})
        else:
            state = self.serializer.dump_state(workflow)

        summary = after.summary
        row.summary = summary
        search = " ".join([row.business_key or ""] + [str(v) for v in summary.values()]).strip() or None

        conn = s.connection()  # the writes go to the command's connection, not through the ORM
        if is_new:
            conn.execute(INSERT_INSTANCE, {
                "id": row.id, "definition_id": row.definition_id, "process_key": row.process_key,
                "business_key": row.business_key, "status": row.status, "state": state, "version": row.version,
                "started_at": row.started_at, "ended_at": row.ended_at, "started_by": row.started_by,
                "parent_instance_id": row.parent_instance_id, "search_text": search, "summary": summary})
        else:
            values = {"state": state, "status": row.status, "ended_at": row.ended_at, "version": row.version + 1,
                      "b_id": row.id, "b_version": row.version}
            if summary != before.summary:
                values.update(summary=summary, search_text=search)
            # the first write of the command: the version guard (optimistic commands read before it)
            result = conn.execute(SAVE_INSTANCE, values)
            if result.rowcount != 1:
                raise StaleInstance("the instance was changed by someone else at the same time; reload and retry",
                                    instance_id=row.id)
            row.version += 1
            if summary != before.summary:
                # the open tasks are searched by the same text (a patient number entered later)
                conn.execute(Statements.search_open_tasks, {"b_instance": row.id, "b_search": search})

        save_variables(conn, row.id, changed, removed, is_new)
        sync_tasks(conn, row, definition, before, after, cmd, search, now, self.settings.due_soon_minutes)
        sync_waits(conn, row, before, after)
        if before.external or after.external:
            self.engine.external_tasks.sync(s, row, definition, before, after, cmd, now)
        self.engine.messages.route_thrown(s, row, workflow, cmd)

        history = [{"instance_id": row.id, "at": now, "user": cmd.user, "action": e["action"],
                    "element_id": e.get("element_id"), "element_name": e.get("element_name"),
                    "task_id": e.get("task_id"), "details": json_safe(e.get("details") or {})}
                   for e in cmd.events]
        if changed or removed:
            history.append({"instance_id": row.id, "at": now, "user": cmd.user, "action": "variables",
                            "element_id": None, "element_name": None, "task_id": None,
                            "details": {"changed": {k: json_safe(v) for k, v in changed.items()},
                                        "removed": removed}})
        if history:
            conn.execute(INSERT_HISTORY, history)
        if not workflow.completed:
            s.info.setdefault("workflows", []).append((row.id, row.version, workflow, after))

    def record(self, s: Session, instance_id: str | None, user: str | None, action: str, *,
               element_id=None, element_name=None, task_id=None, details=None, at=None) -> None:
        s.add(HistoryEvent(instance_id=instance_id, at=at or self.clock.now(), user=user, action=action,
                           element_id=element_id, element_name=element_name, task_id=task_id,
                           details=json_safe(details or {})))

    def task_record(self, s: Session, task_id: str, *, with_instance: bool = False):
        """The task row without the ORM (the hot path of completing). With `with_instance` it is
        the command's one locking read: the task joined with its instance (the instance row locked
        on PostgreSQL), and `load` of that instance in the same session uses what was read."""
        if not with_instance:
            found = s.execute(self._stmt_task_by_id, {"task_id": task_id}).first()
            if found is None:
                raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
            return found
        with_state = self.workflows.owner_of(task_id) is None  # a cached workflow needs no state read
        lock = not self.db.is_sqlite
        found = s.connection().execute(_TASK_WITH_INSTANCE[with_state, lock], {"task_id": task_id}).first()
        if found is None:
            raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
        s.info.setdefault("prefetched", {})[found.instance_id] = (found[len(_TASKS.c):], with_state, lock)
        return found

    def load_task(self, s: Session, task_id: str) -> Task:
        row = s.get(Task, task_id)
        if row is None:
            raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
        return row

    @staticmethod
    def instance_summary(row) -> dict:
        return {"id": row.id, "definition_id": row.definition_id, "process_key": row.process_key,
                "business_key": row.business_key, "status": row.status, "started_at": row.started_at,
                "ended_at": row.ended_at, "started_by": row.started_by,
                "parent_instance_id": row.parent_instance_id, "summary": dict(row.summary or {})}

    def run_external_task(self, s: Session, instance_id: str, task_id: str, user: str | None, action: str,
                          act) -> dict | None:
        """Load the instance under the command's lock, let `act(spiff_task)` work on its READY
        external task (complete it, or throw its BPMN error) and return the history event, then
        run the engine and save as command `action`. `act` returning None leaves the instance
        unchanged."""
        loaded = self.load(s, instance_id)
        spiff_task = loaded.workflow.get_task_from_id(uuid.UUID(task_id))
        if spiff_task is None or spiff_task.state != TaskState.READY:
            raise Conflict(f"external task '{task_id}' is not active in instance '{instance_id}'",
                           task_id=task_id, instance_id=instance_id)
        try:
            happened = act(spiff_task)
        except SpiffWorkflowException as exc:
            raise self.process_error(exc, loaded.definition) from exc
        if happened is None:
            return None
        cmd = Command(user, action, events=[happened], completed_task_id=task_id)
        self.run_engine(loaded.workflow, loaded.definition)
        self.save(s, loaded, cmd)
        return self.instance_summary(loaded.row)
