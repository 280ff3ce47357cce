"""The engine's service layer: every use case is one method and one transaction.

    engine = WorkflowEngine.from_settings(Settings.from_env())
    engine.deploy_directory()
    instance = engine.start("complaint", business_key="TS-2026-0001", variables={...}, user="frontdesk")
    engine.complete(task_id, {"facts": "..."}, user="head_surgery")

A command loads the instance under a lock (row lock on PostgreSQL, BEGIN IMMEDIATE on SQLite, and
an optimistic version counter everywhere), runs SpiffWorkflow, then saves the state, the task table,
timers, message subscriptions, variables and history, and commits — or changes nothing.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import CycleTimerEventDefinition, TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import (
    EventBasedGateway as EventBasedGatewayMixin,
)
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent as StartEventMixin
from SpiffWorkflow.bpmn.specs.mixins.exclusive_gateway import ExclusiveGateway as ExclusiveGatewayMixin
from SpiffWorkflow.bpmn.specs.mixins.inclusive_gateway import InclusiveGateway as InclusiveGatewayMixin
from SpiffWorkflow.bpmn.specs.mixins.parallel_gateway import ParallelGateway as ParallelGatewayMixin
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import CallActivity
from SpiffWorkflow.bpmn.util.event import BpmnEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import and_, bindparam, delete, exists, false, func, or_, select, text, true, update
from sqlalchemy.orm import Session

from engine import calendar as hospital_calendar
from engine.access import (
    LIKE_ESCAPE,
    Caller,
    contains_pattern,
    declared_senders,
    like_pattern,
    reachable_instance_ids,
)
from engine.clock import Clock
from engine.config import Settings
from engine.db import Database
from engine.deployment import Deployer, DeploymentResult, workflow_files
from engine.dialect import dmn, juel
from engine.dialect.scripting import DialectScriptEngine, Runtime, budgets_from
from engine.dialect.specs import ExternalServiceTask, timer_due
from engine.errors import Conflict, EngineError, InvalidInput, NotFound, ProcessError, TimerFiringError
from engine.forms import TaskForm
from engine.models import (
    DecisionDefinition,
    HistoryEvent,
    InstanceVariable,
    MessageSubscription,
    ProcessDefinition,
    ProcessInstance,
    Resource,
    Task,
    TaskCandidate,
    Timer,
    User,
)
from engine.serialization import StateSerializer
from engine.timer_queue import DueTimerPlan

# Variables shown in lists and searched by (patient name or number, case number).
SEARCH_VARIABLES = ("patientName", "patientNo", "patientId", "medicalRecordNo", "complainantName",
                    "caseNo", "bedNo", "ward")
MAX_VARIABLE_NAME = 255
log = logging.getLogger(__name__)


@dataclass
class Command:
    """What one command did, for the save step and history."""

    user: str | None
    action: str
    events: list[dict] = field(default_factory=list)
    completed_task_id: str | None = None


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


def _variable_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Long" if abs(value) > 2**31 - 1 else "Integer"
    if isinstance(value, float | Decimal):
        return "Double"
    if isinstance(value, datetime):
        return "Date"
    if isinstance(value, date):
        return "Date"
    if isinstance(value, str):
        return "String"
    return "Json"


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _check_value(name: str, value: Any, depth: int = 0) -> None:
    """Values must be storable as JSON text on every database (no NUL characters, bounded nesting)."""
    if depth > 32:
        raise InvalidInput(f"variable '{name}' is nested too deeply")
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"variable '{name}' contains a NUL character")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput(f"variable '{name}' contains a lone surrogate: not valid Unicode text") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or "\x00" in k:
                raise InvalidInput(f"variable '{name}' has an invalid key {k!r}")
            _check_value(name, v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_value(name, v, depth + 1)
    elif isinstance(value, float) and value != value:
        raise InvalidInput(f"variable '{name}' is not a number (NaN)")


def check_variables(variables: Mapping[str, Any] | None) -> dict[str, Any]:
    if variables is None:
        return {}
    if not isinstance(variables, Mapping):
        raise InvalidInput("variables must be an object of name → value")
    out = {}
    for name, value in variables.items():
        if not isinstance(name, str) or not name or len(name) > MAX_VARIABLE_NAME or "\x00" in name:
            raise InvalidInput(f"variable name {name!r} is not valid")
        _check_value(name, value)
        if name.startswith("_"):
            raise InvalidInput(f"variable name '{name}' must not start with '_'")
        out[name] = value
    return out


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
    return select(TaskCandidate.task_id).where(offered_condition(user, groups))


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
    summary = {k: _json_safe(variables[k]) for k in SEARCH_VARIABLES if variables.get(k) not in (None, "")}
    return Snapshot(variables, summary, done, human, external, timers, messages)


@dataclass
class Loaded:
    row: InstanceRecord
    definition: DefinitionInfo
    workflow: BpmnWorkflow
    before: Snapshot


TIMER_BUSY = "busy"


class _InstanceBusy(Exception):
    """The instance of a due timer is held by another command at this moment."""


class WorkflowCache:
    """Live workflow objects of recently used instances, valid only for the version they were
    saved at: a command that finds the same version in the database skips deserializing. Another
    process's change bumps the version, so a stale entry is never used."""

    def __init__(self, size: int = 512):
        self.size = size
        self._items: OrderedDict[str, tuple[int, BpmnWorkflow, Snapshot]] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, instance_id: str) -> bool:
        return instance_id in self._items

    def take(self, instance_id: str, version: int) -> tuple[BpmnWorkflow, Snapshot] | None:
        """The workflow and its snapshot as saved, if the cached entry is of this version."""
        with self._lock:
            item = self._items.pop(instance_id, None)
        if item is not None and item[0] == version:
            return item[1], item[2]
        return None

    def put(self, instance_id: str, version: int, workflow: BpmnWorkflow, seen: Snapshot) -> None:
        with self._lock:
            self._items[instance_id] = (version, workflow, seen)
            self._items.move_to_end(instance_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def drop(self, instance_id: str) -> None:
        with self._lock:
            self._items.pop(instance_id, None)


class WorkflowEngine:
    def __init__(self, db: Database, settings: Settings | None = None, clock: Clock | None = None,
                 calendar: hospital_calendar.HospitalCalendar | None = None):
        self.db = db
        self.settings = settings or Settings()
        self.clock = clock or Clock()
        self.serializer = StateSerializer()
        self.deployer = Deployer(self)
        self._calendar = calendar
        self._calendar_lock = threading.Lock()
        self._functions: dict | None = None
        self._definitions: dict[str, DefinitionInfo] = {}
        self._workflows = WorkflowCache()
        self.timer_plan = DueTimerPlan()  # the fair order due timers fire in (engine/timer_queue.py)
        self._external_tasks = None
        self._audit = None
        self._decision_models: dict = {}
        self._stmt_task_by_id = select(Task.__table__).where(Task.__table__.c.id == bindparam("task_id"))

    @property
    def audit(self):
        """The audit log of reads and security events: engine.audit.AuditLog."""
        if self._audit is None:
            from engine.audit import AuditLog

            self._audit = AuditLog(self.db, self.clock)
        return self._audit

    @property
    def external_tasks(self):
        """External (service) tasks: engine.external.ExternalTaskService."""
        if self._external_tasks is None:
            from engine.external import ExternalTaskService

            self._external_tasks = ExternalTaskService(self)
        return self._external_tasks

    @contextlib.contextmanager
    def _command(self) -> Iterator[Session]:
        """One engine command: one transaction; live workflows are cached only after the commit."""
        with self.db.transaction() as s:
            yield s
        for instance_id, version, workflow, seen in s.info.get("workflows", []):
            self._workflows.put(instance_id, version, workflow, seen)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock | None = None) -> WorkflowEngine:
        return cls(Database(settings.database_url), settings, clock)

    # ------------------------------------------------------------------ calendar & functions --
    @property
    def calendar(self) -> hospital_calendar.HospitalCalendar:
        with self._calendar_lock:
            if self._calendar is None:
                self._calendar = self._build_calendar()
            return self._calendar

    def _build_calendar(self):
        from engine.models import CalendarDay, CalendarYear

        overrides, confirmed = {}, set()
        try:
            with self.db.reader() as s:
                for row in s.execute(select(CalendarDay)).scalars():
                    overrides[row.day] = hospital_calendar.OverrideDay(is_working=row.is_working, name=row.name)
                confirmed = {row.year for row in s.execute(select(CalendarYear)).scalars()}
        except Exception:  # the tables do not exist yet (before the first migration)
            pass
        config = hospital_calendar.CalendarConfig(timezone=self.settings.timezone, overrides=overrides,
                                                  confirmed_years=confirmed)
        return hospital_calendar.HospitalCalendar(config)

    def reload_calendar(self) -> None:
        with self._calendar_lock:
            self._calendar = None
            self._functions = None

    def functions(self) -> dict:
        if self._functions is None:
            self._functions = dict(hospital_calendar.diagram_functions(self.calendar, self.clock.now))
        return self._functions

    def function_names(self) -> set[str]:
        return set(self.functions())

    # ------------------------------------------------------------------------------- schema ---
    def init_db(self) -> None:
        self.db.upgrade()

    # --------------------------------------------------------------------------- deployment ---
    def deploy(self, files: list[tuple[str, bytes]], *, name: str = "deployment", source: str | None = None,
               user: str | None = None, changed_only: bool = True,
               tenant_id: str | None = None) -> DeploymentResult:
        with self._command() as s:
            result = self.deployer.deploy(s, files, name=name, source=source, user=user,
                                          changed_only=changed_only, tenant_id=tenant_id)
            if result.created:
                self._record(s, None, user, "deploy", details={
                    "deployment": result.deployment_id, "name": name,
                    "processes": [f"{d['key']}:{d['version']}" for d in result.process_definitions],
                    "decisions": [f"{d['key']}:{d['version']}" for d in result.decision_definitions]})
                self._schedule_start_timers(s, result)
        return result

    def deploy_directory(self, directory: Path | None = None, *, user: str | None = None) -> DeploymentResult:
        directory = Path(directory or self.settings.workflows_dir)
        files = workflow_files(directory)
        if not files:
            return DeploymentResult(None, directory.name, False)
        return self.deploy(files, name=directory.name, source="workflows", user=user, changed_only=True)

    def _schedule_start_timers(self, s: Session, result: DeploymentResult) -> None:
        from engine.dialect import timers as timer_lang

        for d in result.process_definitions:
            row = s.get(ProcessDefinition, d["id"])
            # A new version replaces the start timers of the older ones (as Camunda does).
            older = select(ProcessDefinition.id).where(ProcessDefinition.key == row.key,
                                                       ProcessDefinition.id != row.id)
            s.execute(delete(Timer).where(Timer.instance_id.is_(None), Timer.definition_id.in_(older)))
            for st in row.start_timers or []:
                expression = st["expression"]
                try:
                    value = expression
                    if juel.is_expression(expression):
                        value = juel.compile_template(expression).evaluate(
                            {}, functions=self.functions(), now=self.clock.now(), tz=self.settings.tz,
                            time_limit=budgets_from(self.settings).juel_time)
                    schedule = timer_lang.parse_timer(st["kind"], value, self.settings.tz)
                    timer_lang.check_min_interval(schedule, timedelta(seconds=self.settings.timer_min_interval))
                except Exception as exc:
                    raise EngineError(f"{row.resource_name}, element '{st['element']}': timer start event "
                                      f"'{expression}' cannot be scheduled: {exc}") from exc
                due = schedule.first_due(self.clock.now())
                s.add(Timer(id=str(uuid.uuid4()), instance_id=None, definition_id=row.id, task_id=None,
                            element_id=st["element"], due_at=due, status="pending", fired_count=0,
                            schedule=schedule.to_dict()))

    # ------------------------------------------------------------------------- definitions ----
    def _latest_definition_id(self, s: Session, key: str) -> str:
        found = s.execute(select(ProcessDefinition.id).where(ProcessDefinition.key == key)
                          .order_by(ProcessDefinition.version.desc()).limit(1)).scalar_one_or_none()
        if found is None:
            raise NotFound(f"no process with key '{key}' is deployed", process_key=key)
        return found

    def list_definitions(self, key: str | None = None, latest_only: bool = False) -> list[dict]:
        with self.db.reader() as s:
            q = select(ProcessDefinition).order_by(ProcessDefinition.key, ProcessDefinition.version.desc())
            if key:
                q = q.where(ProcessDefinition.key == key)
            rows = s.execute(q).scalars().all()
            out, seen = [], set()
            for r in rows:
                if latest_only and r.key in seen:
                    continue
                seen.add(r.key)
                out.append(self._definition_dict(r))
            return out

    def get_definition(self, definition_id: str) -> dict:
        with self.db.reader() as s:
            row = s.get(ProcessDefinition, definition_id)
            if row is None:
                raise NotFound(f"process definition '{definition_id}' does not exist")
            return self._definition_dict(row)

    def definition_xml(self, definition_id: str) -> tuple[str, bytes]:
        with self.db.reader() as s:
            row = s.get(ProcessDefinition, definition_id) or s.get(DecisionDefinition, definition_id)
            if row is None:
                raise NotFound(f"definition '{definition_id}' does not exist")
            res = s.get(Resource, row.resource_id)
            return res.name, res.content

    @staticmethod
    def _definition_dict(r: ProcessDefinition) -> dict:
        return {"id": r.id, "key": r.key, "version": r.version, "name": r.name,
                "deployment_id": r.deployment_id, "resource": r.resource_name,
                "created_at": r.created_at, "start_timers": r.start_timers,
                "start_messages": r.start_messages}

    # ----------------------------------------------------------------------- decisions --------
    def _decision_row(self, s: Session, key: str, binding: str = "latest", version: int | None = None,
                      deployment_id: str | None = None) -> DecisionDefinition:
        q = select(DecisionDefinition).where(DecisionDefinition.key == key)
        if binding == "version":
            if version is None:
                raise ProcessError(f"decision '{key}': binding 'version' needs camunda:decisionRefVersion")
            q = q.where(DecisionDefinition.version == version)
        elif binding == "deployment" and deployment_id:
            q = q.where(DecisionDefinition.deployment_id == deployment_id)
        elif version is not None:
            q = q.where(DecisionDefinition.version == version)
        row = s.execute(q.order_by(DecisionDefinition.version.desc()).limit(1)).scalar_one_or_none()
        if row is None:
            what = f"version {version} of " if version is not None else ""
            raise NotFound(f"{what}decision '{key}' is not deployed", decision_key=key)
        return row

    def _evaluate_decision_row(self, s: Session, row: DecisionDefinition, variables: Mapping) -> list[dict]:
        model = self._decision_models.get(row.id)
        if model is None:  # a decision version never changes: parse its file once per process
            res = s.get(Resource, row.resource_id)
            model = dmn.parse_dmn(res.content, res.name)
            if len(self._decision_models) > 256:
                self._decision_models.clear()
            self._decision_models[row.id] = model
        return model.evaluate(row.key, variables, limits=budgets_from(self.settings).feel)

    def evaluate_decision(self, key: str | None = None, variables: Mapping | None = None, *,
                          definition_id: str | None = None, version: int | None = None) -> list[dict]:
        """Evaluate a deployed decision on its own (process owners test tables this way)."""
        variables = check_variables(variables)
        with self.db.reader() as s:
            if definition_id:
                row = s.get(DecisionDefinition, definition_id)
                if row is None:
                    raise NotFound(f"decision definition '{definition_id}' does not exist")
            else:
                row = self._decision_row(s, key, version=version)
            try:
                return self._evaluate_decision_row(s, row, variables)
            except dmn.DmnEvaluationError as exc:
                raise ProcessError(f"decision '{row.key}' version {row.version}: {exc}",
                                   decision_key=row.key) from exc

    def list_decisions(self, key: str | None = None) -> list[dict]:
        with self.db.reader() as s:
            q = select(DecisionDefinition).order_by(DecisionDefinition.key, DecisionDefinition.version.desc())
            if key:
                q = q.where(DecisionDefinition.key == key)
            return [{"id": r.id, "key": r.key, "version": r.version, "name": r.name,
                     "deployment_id": r.deployment_id, "resource": r.resource_name}
                    for r in s.execute(q).scalars()]

    # ------------------------------------------------------------------- loading & saving -----
    def _runtime(self, s: Session, row: ProcessInstance | None, definition: ProcessDefinition) -> Runtime:
        def evaluate(key, binding, version, variables, task):
            try:
                drow = self._decision_row(s, key, binding, version, definition.deployment_id)
                return self._evaluate_decision_row(s, drow, variables)
            except NotFound as exc:
                raise WorkflowTaskException(exc.message, task=task) from exc
            except dmn.DmnEvaluationError as exc:
                raise WorkflowTaskException(f"decision '{key}': {exc}", task=task) from exc

        return Runtime(now=self.clock.now, tz=self.settings.tz, functions=self.functions(),
                       budgets=budgets_from(self.settings),
                       evaluate_decision=evaluate,
                       business_key=row.business_key if row is not None else None,
                       instance_id=row.id if row is not None else None,
                       timer_min_interval=timedelta(seconds=self.settings.timer_min_interval))

    # The loaded instance of a command: the row as it was, its definition, the workflow and what
    # the workflow looked like before the command (the save step writes only the differences).
    def _definition_info(self, s: Session, definition_id: str) -> DefinitionInfo:
        info = self._definitions.get(definition_id)
        if info is None:
            row = s.get(ProcessDefinition, definition_id)
            if row is None:
                raise NotFound(f"process definition '{definition_id}' does not exist",
                               definition_id=definition_id)
            info = DefinitionInfo(row.id, row.key, row.version, row.name, row.deployment_id, row.resource_name)
            self.serializer.load_spec(row.id, row.spec)
            self._definitions[definition_id] = info
        return info

    def _specs(self, s: Session, info: DefinitionInfo):
        cached = self.serializer.cached_spec(info.id)
        if cached is not None:
            return cached
        blob = s.execute(select(ProcessDefinition.spec).where(ProcessDefinition.id == info.id)).scalar_one()
        return self.serializer.load_spec(info.id, blob)

    def _load(self, s: Session, instance_id: str, *, for_update: bool = True) -> Loaded:
        table = ProcessInstance.__table__
        columns = [table.c.id, table.c.definition_id, table.c.process_key, table.c.business_key,
                   table.c.status, table.c.version, table.c.started_at, table.c.ended_at, table.c.started_by,
                   table.c.parent_instance_id, table.c.summary]
        with_state = instance_id not in self._workflows  # a cached workflow needs no state read
        q = select(*columns, table.c.state) if with_state else select(*columns)
        q = q.where(table.c.id == instance_id)
        if for_update and not self.db.is_sqlite:
            q = q.with_for_update()
        found = s.execute(q).first()
        if found is None:
            raise NotFound(f"process instance '{instance_id}' does not exist", instance_id=instance_id)
        row = InstanceRecord(*found[:len(columns)])
        state = found[len(columns)] if with_state else None
        if row.status != "active":
            raise Conflict(f"process instance '{instance_id}' is {row.status}", instance_id=instance_id,
                           status=row.status)
        definition = self._definition_info(s, row.definition_id)
        cached = self._workflows.take(row.id, row.version)
        if cached is not None:
            workflow, before = cached
        else:
            if state is None:  # the cached entry was of another version
                state = s.execute(select(table.c.state).where(table.c.id == instance_id)).scalar_one()
            spec, subprocess_specs = self._specs(s, definition)
            workflow = self.serializer.load_state(state, spec, subprocess_specs)
            before = snapshot(workflow)
        workflow.script_engine = DialectScriptEngine(self._runtime(s, row, definition))
        return Loaded(row, definition, workflow, before)

    def _run_engine(self, workflow: BpmnWorkflow, definition, cmd: Command | None = None) -> None:
        try:
            with self.calendar.watch_estimates() as watch:
                workflow.refresh_timers()
                workflow.do_engine_steps()
        except SpiffWorkflowException as exc:
            raise self._process_error(exc, definition) from exc
        if cmd is not None and watch.years:
            # a deadline was computed from an estimate: the holidays of that year are not confirmed
            cmd.events.append({"action": "calendar_warning", "details": {
                "unconfirmed_years": sorted(watch.years),
                "message": "节假日安排未确认，期限为估算 / holidays not confirmed: the deadline is an estimate"}})

    @staticmethod
    def _process_error(exc: Exception, definition) -> ProcessError:
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

    def _save(self, s: Session, loaded: Loaded, cmd: Command, *, is_new: bool = False) -> None:
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

        table = ProcessInstance.__table__
        if is_new:
            s.execute(table.insert().values(
                id=row.id, definition_id=row.definition_id, process_key=row.process_key,
                business_key=row.business_key, status=row.status, state=state, version=row.version,
                started_at=row.started_at, ended_at=row.ended_at, started_by=row.started_by,
                parent_instance_id=row.parent_instance_id, search_text=search, summary=summary))
        else:
            values = {"state": state, "status": row.status, "ended_at": row.ended_at, "version": row.version + 1}
            if summary != before.summary:
                values.update(summary=summary, search_text=search)
                # the open tasks are searched by the same text (a patient number entered later)
                s.execute(update(Task).where(Task.instance_id == row.id, Task.status == "open")
                          .values(search_text=search).execution_options(synchronize_session=False))
            result = s.execute(table.update().where(table.c.id == row.id, table.c.version == row.version)
                               .values(**values))
            if result.rowcount != 1:
                raise Conflict("the instance was changed by someone else at the same time; reload and retry",
                               instance_id=row.id)
            row.version += 1

        self._save_variables(s, row.id, changed, removed, is_new)
        self._sync_tasks(s, row, definition, before, after, cmd, search, now)
        self._sync_waits(s, row, before, after)
        if before.external or after.external:
            self.external_tasks.sync(s, row, definition, before, after, cmd, now)
        self._route_thrown_messages(s, row, workflow, cmd)

        history = [{"instance_id": row.id, "at": now, "user": cmd.user, "action": e["action"],
                    "element_id": e.get("element_id"), "element_name": e.get("element_name"),
                    "task_id": e.get("task_id"), "details": _json_safe(e.get("details") or {})}
                   for e in cmd.events]
        if changed or removed:
            history.append({"instance_id": row.id, "at": now, "user": cmd.user, "action": "variables",
                            "element_id": None, "element_name": None, "task_id": None,
                            "details": {"changed": {k: _json_safe(v) for k, v in changed.items()},
                                        "removed": removed}})
        if history:
            s.execute(HistoryEvent.__table__.insert(), history)
        if not workflow.completed:
            s.info.setdefault("workflows", []).append((row.id, row.version, workflow, after))

    def _route_thrown_messages(self, s: Session, row: ProcessInstance, workflow: BpmnWorkflow,
                               cmd: Command) -> None:
        """A message that an instance throws and does not catch itself goes to other instances:
        to those waiting for it with the same business key, else to a process whose message start
        event it names (the new instance is linked to this one as its parent)."""
        for event in workflow.get_events():
            ed = event.event_definition
            if not isinstance(ed, MessageEventDefinition):
                continue
            payload = event.payload if isinstance(event.payload, dict) else {}
            variables = {k: v for k, v in payload.items()
                         if isinstance(k, str) and not k.startswith("_") and not callable(v)}
            subs = []
            if row.business_key:
                subs = s.execute(select(MessageSubscription).join(
                    ProcessInstance, ProcessInstance.id == MessageSubscription.instance_id).where(
                    MessageSubscription.message_name == ed.name, ProcessInstance.status == "active",
                    ProcessInstance.business_key == row.business_key,
                    MessageSubscription.instance_id != row.id)).scalars().all()
            if subs:
                for sub in subs:
                    self._deliver(s, sub, ed.name, variables, cmd.user)
                cmd.events.append({"action": "message_sent", "details": {
                    "message": ed.name, "delivered_to": [sub.instance_id for sub in subs]}})
                continue
            starts = self._message_start_definitions(s, ed.name)
            business_key = variables.pop("businessKey", None)
            started = []
            for definition, element in starts:
                child = self._start(s, None, definition.id, business_key, variables, cmd.user, row.id,
                                    start_event=element)
                started.append(child["id"])
            cmd.events.append({"action": "message_sent", "details": {"message": ed.name,
                                                                     "started": started}})

    def _save_variables(self, s: Session, instance_id: str, changed: dict, removed: list, is_new: bool):
        if removed:
            s.execute(delete(InstanceVariable).where(InstanceVariable.instance_id == instance_id,
                                                     InstanceVariable.name.in_(removed)))
        if not changed:
            return
        if not is_new:
            s.execute(delete(InstanceVariable).where(InstanceVariable.instance_id == instance_id,
                                                     InstanceVariable.name.in_(list(changed))))
        rows = []
        for name, value in changed.items():
            safe = _json_safe(value)
            text = None
            if isinstance(safe, str | int | float | bool) and not isinstance(safe, dict | list):
                text = str(safe).lower() if isinstance(safe, bool) else str(safe)
                text = text[:512]
            rows.append({"instance_id": instance_id, "name": name, "value": safe, "text_value": text,
                         "type_name": _variable_type(value)})
        s.execute(InstanceVariable.__table__.insert(), rows)

    def _sync_tasks(self, s, row, definition, before: Snapshot, after: Snapshot, cmd, search, now):
        gone = [task_id for task_id in before.human if task_id not in after.human]
        new = [task_id for task_id in after.human if task_id not in before.human]
        tasks = Task.__table__
        if gone:
            completed = [t for t in gone if t == cmd.completed_task_id]
            cancelled = [t for t in gone if t != cmd.completed_task_id]
            if completed:
                s.execute(tasks.update().where(tasks.c.id.in_(completed), tasks.c.status == "open")
                          .values(status="completed", completed_at=now, completed_by=cmd.user))
            if cancelled:
                s.execute(tasks.update().where(tasks.c.id.in_(cancelled), tasks.c.status == "open")
                          .values(status="cancelled", completed_at=now))
            s.execute(TaskCandidate.__table__.delete().where(TaskCandidate.__table__.c.task_id.in_(gone)))
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
                         "sla_state": self.sla_state(due, now), "completed_at": None, "completed_by": None,
                         "search_text": search})
            claimed = a.get("assignee") is not None
            candidates += [{"task_id": task_id, "kind": "user", "ident": u, "claimed": claimed} for u in users]
            candidates += [{"task_id": task_id, "kind": "group", "ident": g, "claimed": claimed} for g in groups]
            cmd.events.append({"action": "task_created", "element_id": t.task_spec.bpmn_id,
                               "element_name": name, "task_id": task_id,
                               "details": {"assignee": a.get("assignee"), "candidate_groups": groups,
                                           "due_at": due.isoformat() if due else None}})
        s.execute(tasks.insert(), rows)
        if candidates:
            s.execute(TaskCandidate.__table__.insert(), candidates)

    def sla_state(self, due: datetime | None, now: datetime) -> str:
        if due is None:
            return "on_time"
        if due <= now:
            return "overdue"
        if due - now <= timedelta(minutes=self.settings.due_soon_minutes):
            return "due_soon"
        return "on_time"

    def _sync_waits(self, s: Session, row, before: Snapshot, after: Snapshot) -> None:
        """Timers and message subscriptions of the waiting catch events (only what changed)."""
        timers = Timer.__table__
        gone = [tid for tid in before.timers if tid not in after.timers]
        if gone:
            s.execute(timers.delete().where(timers.c.instance_id == row.id, timers.c.task_id.in_(gone)))
        for task_id, (element, due) in after.timers.items():
            if task_id in before.timers:
                if before.timers[task_id][1] != due:
                    s.execute(timers.update().where(timers.c.instance_id == row.id, timers.c.task_id == task_id)
                              .values(due_at=due, status="pending", lease_owner=None, lease_until=None,
                                      attempts=0, last_error=None))
                continue
            s.execute(timers.insert().values(id=str(uuid.uuid4()), instance_id=row.id, task_id=task_id,
                                             element_id=element, due_at=due, status="pending", fired_count=0,
                                             attempts=0))
        subs = MessageSubscription.__table__
        for (task_id, name) in before.messages:
            if (task_id, name) not in after.messages:
                s.execute(subs.delete().where(subs.c.instance_id == row.id, subs.c.task_id == task_id,
                                              subs.c.message_name == name))
        new = [{"id": str(uuid.uuid4()), "instance_id": row.id, "task_id": task_id, "element_id": element,
                "message_name": name, "business_key": row.business_key}
               for (task_id, name), element in after.messages.items() if (task_id, name) not in before.messages]
        if new:
            s.execute(subs.insert(), new)

    def _record(self, s: Session, instance_id: str | None, user: str | None, action: str, *,
                element_id=None, element_name=None, task_id=None, details=None, at=None) -> None:
        s.add(HistoryEvent(instance_id=instance_id, at=at or self.clock.now(), user=user, action=action,
                           element_id=element_id, element_name=element_name, task_id=task_id,
                           details=_json_safe(details or {})))

    # ------------------------------------------------------------------------ commands --------
    def start(self, process_key: str | None = None, *, definition_id: str | None = None,
              business_key: str | None = None, variables: Mapping[str, Any] | None = None,
              user: str | None = None, parent_instance_id: str | None = None,
              start_event: str | None = None) -> dict:
        """Start an instance of the newest version of `process_key` (or of `definition_id`)."""
        variables = check_variables(variables)
        if business_key is not None and (not isinstance(business_key, str) or len(business_key) > 255
                                         or "\x00" in business_key):
            raise InvalidInput("businessKey must be text of at most 255 characters")
        with self._command() as s:
            return self._start(s, process_key, definition_id, business_key, variables, user,
                               parent_instance_id, start_event)

    def _start(self, s, process_key, definition_id, business_key, variables, user, parent_instance_id,
               start_event=None) -> dict:
        if definition_id:
            definition = self._definition_info(s, definition_id)
        elif process_key:
            definition = self._definition_info(s, self._latest_definition_id(s, process_key))
        else:
            raise InvalidInput("give a process key or a definition id")
        spec, subprocess_specs = self._specs(s, definition)
        now = self.clock.now()
        row = InstanceRecord(str(uuid.uuid4()), definition.id, definition.key, business_key, "active", 1, now,
                             None, user, parent_instance_id, {})
        workflow = BpmnWorkflow(spec, subprocess_specs)
        workflow.script_engine = DialectScriptEngine(self._runtime(s, row, definition))
        initiator = None
        for ts in spec.task_specs.values():
            if isinstance(ts, StartEventMixin) and (ts.extensions or {}).get("initiator"):
                initiator = ts.extensions["initiator"]
        initial = dict(variables)
        if initiator and user:
            initial[initiator] = user
        for t in workflow.get_tasks(state=TaskState.READY):
            t.data.update(copy.deepcopy(initial))
        workflow.data.update(copy.deepcopy(initial))  # the process scope starts with them
        self._choose_start_event(workflow, start_event)
        cmd = Command(user, "start")
        cmd.events.append({"action": "start", "details": {"process": definition.key,
                                                          "version": definition.version,
                                                          "business_key": business_key,
                                                          "parent_instance_id": parent_instance_id}})
        before = Snapshot({}, {}, {}, {}, {}, {}, {})
        self._run_engine(workflow, definition, cmd)
        self._save(s, Loaded(row, definition, workflow, before), cmd, is_new=True)
        return self._instance_summary(row)

    @staticmethod
    def _choose_start_event(workflow: BpmnWorkflow, start_event: str | None) -> None:
        """Start from the none start event; timer and message start events fire only when their
        timer or message does (or when the scheduler / a message names them)."""
        start_tasks = [t for t in workflow.get_tasks(state=TaskState.FUTURE | TaskState.LIKELY
                                                     | TaskState.MAYBE | TaskState.READY)
                       if isinstance(t.task_spec, StartEventMixin)]
        if not start_tasks:
            return
        # Let the root's children become ready first.
        for t in workflow.get_tasks(state=TaskState.READY):
            if not isinstance(t.task_spec, StartEventMixin) and not t.task_spec.manual:
                t.run()
        candidates = [t for t in workflow.get_tasks(state=TaskState.READY | TaskState.WAITING | TaskState.FUTURE
                                                    | TaskState.LIKELY | TaskState.MAYBE)
                      if isinstance(t.task_spec, StartEventMixin) and t.workflow is workflow]
        chosen_any = False
        for t in candidates:
            ed = t.task_spec.event_definition
            chosen = (t.task_spec.bpmn_id == start_event) if start_event else (
                type(ed).__name__ == "NoneEventDefinition")
            if not chosen:
                # Only one start event starts an instance; the others must not run or wait in it.
                t.cancel()
                continue
            chosen_any = True
            if chosen:
                t.internal_data["event_fired"] = True
                if isinstance(ed, CycleTimerEventDefinition) and not t.children:
                    # a cycle start event predicts no successor; this firing gets its own token
                    for output in t.task_spec.outputs:
                        child = t._add_child(output, TaskState.FUTURE)
                        child.task_spec._predict(child, mask=TaskState.NOT_FINISHED_MASK)
                if t.state == TaskState.WAITING:  # a message start event: nothing else wakes it
                    t.task_spec._update(t)
        if not chosen_any:
            what = f"start event '{start_event}'" if start_event else "a plain (none) start event"
            raise InvalidInput(f"process '{workflow.spec.name}' has no {what}; it starts by its message or "
                               "timer start event", process_key=workflow.spec.name)

    def _task_record(self, s: Session, task_id: str):
        """The task row without the ORM (the hot path of completing)."""
        found = s.execute(self._stmt_task_by_id, {"task_id": task_id}).first()
        if found is None:
            raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
        return found

    def _load_task(self, s: Session, task_id: str) -> Task:
        row = s.get(Task, task_id)
        if row is None:
            raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
        return row

    def claim(self, task_id: str, user: str, *, force: bool = False) -> dict:
        with self._command() as s:
            task = self._load_task(s, task_id)
            self._require_open(task)
            if task.assignee and task.assignee != user and not force:
                raise Conflict(f"task '{task.name}' is already claimed by {task.assignee}",
                               task_id=task_id, assignee=task.assignee)
            # the claim itself is conditional, so two users claiming at once cannot both win
            claimable = (Task.assignee.is_(None) | (Task.assignee == user)) if not force else true()
            won = s.execute(update(Task).where(Task.id == task_id, Task.status == "open", claimable)
                            .values(assignee=user).execution_options(synchronize_session=False)).rowcount
            self._mark_claimed(s, task_id, True)
            if won != 1:
                s.refresh(task)
                raise Conflict(f"task '{task.name}' was just claimed by {task.assignee or 'someone else'}",
                               task_id=task_id, assignee=task.assignee)
            s.refresh(task)
            self._record(s, task.instance_id, user, "claim", element_id=task.element_id,
                         element_name=task.name, task_id=task_id)
            return self.task_dict(task)

    def unclaim(self, task_id: str, user: str | None) -> dict:
        with self._command() as s:
            task = self._load_task(s, task_id)
            self._require_open(task)
            previous = task.assignee
            task.assignee = None
            self._mark_claimed(s, task_id, False)
            self._record(s, task.instance_id, user, "unclaim", element_id=task.element_id,
                         element_name=task.name, task_id=task_id, details={"previous": previous})
            return self.task_dict(task)

    def assign(self, task_id: str, assignee: str | None, user: str | None) -> dict:
        with self._command() as s:
            task = self._load_task(s, task_id)
            self._require_open(task)
            if assignee is not None and s.execute(select(User).where(User.username == assignee)).first() is None:
                raise InvalidInput(f"there is no user '{assignee}'", field="assignee")
            previous = task.assignee
            task.assignee = assignee
            self._mark_claimed(s, task_id, assignee is not None)
            self._record(s, task.instance_id, user, "assign", element_id=task.element_id,
                         element_name=task.name, task_id=task_id,
                         details={"previous": previous, "assignee": assignee})
            return self.task_dict(task)

    @staticmethod
    def _mark_claimed(s: Session, task_id: str, claimed: bool) -> None:
        s.execute(update(TaskCandidate).where(TaskCandidate.task_id == task_id).values(claimed=claimed)
                  .execution_options(synchronize_session=False))

    @staticmethod
    def _require_open(task: Task) -> None:
        if task.status == "completed":
            who = f" by {task.completed_by}" if task.completed_by else ""
            raise Conflict(f"task '{task.name}' was already completed{who}", task_id=task.id,
                           completed_by=task.completed_by)
        if task.status != "open":
            raise Conflict(f"task '{task.name}' is no longer open ({task.status})", task_id=task.id)

    def task_form(self, task_id: str) -> TaskForm:
        with self.db.reader() as s:
            task = self._task_record(s, task_id)
            spec, _ = self._specs(s, self._definition_info(s, task.definition_id))
            ts = spec.task_specs.get(task.element_id)
            return TaskForm.for_spec(ts) if ts is not None else TaskForm([])

    def start_form(self, process_key: str | None = None, *, definition_id: str | None = None) -> TaskForm:
        """The form of the none start event (camunda:formData), for start pages and the REST API."""
        with self.db.reader() as s:
            definition = self._definition_info(s, definition_id or self._latest_definition_id(s, process_key))
            spec, _ = self._specs(s, definition)
            for ts in spec.task_specs.values():
                if isinstance(ts, StartEventMixin) and type(ts.event_definition).__name__ == "NoneEventDefinition":
                    return TaskForm.for_spec(ts)
            return TaskForm([])

    def complete(self, task_id: str, variables: Mapping[str, Any] | None = None, *, user: str | None = None,
                 require_assignee: bool = False) -> dict:
        """Complete a human task with data. Raises Conflict when the task is not open any more,
        is assigned to someone else, or the instance changed meanwhile."""
        variables = check_variables(variables)
        with self._command() as s:
            task = self._task_record(s, task_id)
            self._require_open(task)
            if task.assignee and user and task.assignee != user:
                raise Conflict(f"task '{task.name}' is assigned to {task.assignee}", task_id=task_id,
                               assignee=task.assignee)
            if require_assignee and not task.assignee:
                raise Conflict(f"claim task '{task.name}' before completing it", task_id=task_id)
            loaded = self._load(s, task.instance_id)
            definition, workflow = loaded.definition, loaded.workflow
            spiff_task = workflow.get_task_from_id(uuid.UUID(task_id))
            if spiff_task is None or spiff_task.state != TaskState.READY:
                raise Conflict(f"task '{task.name}' is not ready", task_id=task_id)
            values = TaskForm.for_spec(spiff_task.task_spec).validate(variables)
            spiff_task.data.update(values)
            cmd = Command(user, "complete", completed_task_id=task_id)
            cmd.events.append({"action": "complete", "element_id": task.element_id, "element_name": task.name,
                               "task_id": task_id, "details": {"variables": _json_safe(values)}})
            try:
                with self.calendar.watch_estimates() as watch:
                    spiff_task.run()
            except SpiffWorkflowException as exc:
                raise self._process_error(exc, definition) from exc
            if watch.years:
                cmd.events.append({"action": "calendar_warning",
                                   "details": {"unconfirmed_years": sorted(watch.years)}})
            self._run_engine(workflow, definition, cmd)
            self._save(s, loaded, cmd)
            return self._instance_summary(loaded.row)

    def set_variables(self, instance_id: str, variables: Mapping[str, Any], *, user: str | None = None) -> None:
        variables = check_variables(variables)
        with self._command() as s:
            loaded = self._load(s, instance_id)
            loaded.workflow.data.update(variables)
            self._save(s, loaded, Command(user, "set_variables"))

    def cancel(self, instance_id: str, *, user: str | None = None, reason: str | None = None) -> None:
        with self._command() as s:
            loaded = self._load(s, instance_id)
            row, workflow = loaded.row, loaded.workflow
            self._workflows.drop(row.id)
            now = self.clock.now()
            workflow.cancel()
            row.status = "cancelled"
            row.ended_at = now
            result = s.execute(update(ProcessInstance).where(ProcessInstance.id == row.id,
                                                             ProcessInstance.version == row.version)
                               .values(status="cancelled", ended_at=now, version=row.version + 1,
                                       state=self.serializer.dump_data(loaded.before.variables))
                               .execution_options(synchronize_session=False))
            if result.rowcount != 1:
                raise Conflict("the instance was changed by someone else at the same time", instance_id=row.id)
            s.execute(update(Task).where(Task.instance_id == row.id, Task.status == "open")
                      .values(status="cancelled", completed_at=now))
            s.execute(delete(TaskCandidate).where(TaskCandidate.task_id.in_(
                select(Task.id).where(Task.instance_id == row.id))))
            s.execute(delete(Timer).where(Timer.instance_id == row.id))
            s.execute(delete(MessageSubscription).where(MessageSubscription.instance_id == row.id))
            if loaded.before.external:
                self.external_tasks.on_cancel(s, row.id, now)
            self._record(s, row.id, user, "cancel", details={"reason": reason})

    # ------------------------------------------------------------------------ messages --------
    def correlate_message(self, message_name: str, *, business_key: str | None = None,
                          correlation_keys: Mapping[str, Any] | None = None,
                          variables: Mapping[str, Any] | None = None, user: str | None = None,
                          all_matches: bool = False, caller: Caller | None = None) -> list[dict]:
        """Deliver a message to the instances waiting for it (matched by business key and/or
        process variables), or start an instance at a message start event. Returns what was done.

        With a `caller`, only instances within their reach match (engine/access.py): one they may
        not act on is treated exactly as one that does not exist, so the answer reveals nothing.
        Without one the message comes from inside the service (the CLI, a thrown message)."""
        if not message_name:
            raise InvalidInput("messageName is required")
        variables = check_variables(variables)
        correlation_keys = dict(correlation_keys or {})
        with self._command() as s:
            q = select(MessageSubscription).join(
                ProcessInstance, ProcessInstance.id == MessageSubscription.instance_id).where(
                MessageSubscription.message_name == message_name, ProcessInstance.status == "active")
            if business_key is not None:
                q = q.where(ProcessInstance.business_key == business_key)
            for name, value in correlation_keys.items():
                text = str(value).lower() if isinstance(value, bool) else str(value)
                q = q.where(exists().where(InstanceVariable.instance_id == MessageSubscription.instance_id,
                                           InstanceVariable.name == name, InstanceVariable.text_value == text))
            subs = s.execute(q.order_by(MessageSubscription.id)).scalars().all()
            if caller is not None and subs:
                subs = self._reachable_subscriptions(s, subs, caller)
            if subs:
                if len({sub.instance_id for sub in subs}) > 1 and not all_matches:
                    raise Conflict(f"message '{message_name}' matches {len(subs)} waiting instances; "
                                   "give a business key or correlation keys that select one",
                                   message_name=message_name)
                results = []
                for sub in (subs if all_matches else subs[:1]):
                    results.append(self._deliver(s, sub, message_name, variables, user))
                return results
            starts = self._message_start_definitions(s, message_name)
            if caller is not None and not caller.sees_all:
                starts = [(d, element) for d, element in starts
                          if self._may_send(s, d.id, element, caller) is not False]
            if starts:
                out = []
                for definition, element in starts if all_matches else starts[:1]:
                    inst = self._start(s, None, definition.id, business_key, variables, user, None,
                                       start_event=element)
                    out.append({"result_type": "ProcessDefinition", "instance": inst})
                return out
            raise NotFound(f"no instance is waiting for message '{message_name}'"
                           + (f" with business key '{business_key}'" if business_key else ""),
                           message_name=message_name)

    def _reachable_subscriptions(self, s: Session, subs: list, caller: Caller) -> list:
        if caller.sees_all:
            return subs
        reachable = reachable_instance_ids(s, [sub.instance_id for sub in subs], caller)
        out = []
        for sub in subs:
            if sub.instance_id in reachable:
                out.append(sub)
                continue
            definition_id = s.execute(select(ProcessInstance.definition_id)
                                      .where(ProcessInstance.id == sub.instance_id)).scalar_one()
            if self._may_send(s, definition_id, sub.element_id, caller):
                out.append(sub)
        return out

    def _may_send(self, s: Session, definition_id: str, element_id: str, caller: Caller) -> bool | None:
        """Whether the receiving element names the caller among its message senders (None when it
        declares none)."""
        spec, subprocess_specs = self._specs(s, self._definition_info(s, definition_id))
        for process in (spec, *subprocess_specs.values()):
            task_spec = process.task_specs.get(element_id)
            if task_spec is not None:
                senders = declared_senders(getattr(task_spec, "extensions", None))
                return None if senders is None else caller.named_in(senders)
        return None

    def _message_start_definitions(self, s: Session, name: str):
        latest = {}
        for d in s.execute(select(ProcessDefinition).order_by(ProcessDefinition.key,
                                                              ProcessDefinition.version)).scalars():
            latest[d.key] = d
        out = []
        for d in latest.values():
            for sm in d.start_messages or []:
                if sm["message"] == name:
                    out.append((d, sm["element"]))
        return out

    def _deliver(self, s: Session, sub: MessageSubscription, name: str, variables: dict, user) -> dict:
        loaded = self._load(s, sub.instance_id)
        row, definition, workflow = loaded.row, loaded.definition, loaded.workflow
        task = workflow.get_task_from_id(uuid.UUID(sub.task_id))
        if task is None or task.state != TaskState.WAITING:
            raise Conflict(f"the instance is no longer waiting for message '{name}'", instance_id=row.id)
        task.data.update(variables)
        event = BpmnEvent(MessageEventDefinition(name), payload=dict(variables))
        try:
            task.task_spec.catch(task, event)
            task.task_spec._update(task)
        except SpiffWorkflowException as exc:
            raise self._process_error(exc, definition) from exc
        cmd = Command(user, "message")
        cmd.events.append({"action": "message", "element_id": sub.element_id, "task_id": sub.task_id,
                           "details": {"message": name, "variables": _json_safe(variables)}})
        self._run_engine(workflow, definition, cmd)
        self._save(s, loaded, cmd)
        return {"result_type": "Execution", "instance": self._instance_summary(row)}

    # ------------------------------------------------------------------------ timers ----------
    def fire_next_due(self) -> str | None:
        """Fire one due timer, in its own transaction. Returns the timer's id, TIMER_BUSY when every
        due timer's instance is held by another command right now (try again shortly), or None when
        nothing is due.

        Which one: round-robin across process definitions (engine/timer_queue.py), so one
        definition's backlog cannot hold back another definition's timers; within a definition in
        due order, and an instance's timers in the order they fell due (a catch-up after downtime
        replays them so). On PostgreSQL the claim is `FOR UPDATE SKIP LOCKED`, so several schedulers
        share the work and each timer fires once."""
        plan = self.timer_plan
        busy: list = []
        planned = False
        try:
            while True:
                entry = plan.take()
                if entry is None:
                    if planned:
                        break
                    with self.db.reader() as s:
                        plan.replace(DueTimerPlan.due_firings(s, self.clock.now(), plan.per_definition))
                    planned = True
                    continue
                result = self._fire_planned(entry)
                if result == TIMER_BUSY:
                    busy.append(entry)
                elif result is not None:
                    return result
        finally:
            if busy:
                plan.put_back(busy)
        return TIMER_BUSY if busy else None

    def _fire_planned(self, entry) -> str | None:
        """Claim and fire one planned entry: the start timer itself, or the instance's earliest due
        timer. None when there is nothing to fire for it any more (fired meanwhile, or another
        scheduler holds it)."""
        try:
            with self._command() as s:
                if not self.db.is_sqlite:
                    # A firing lost in a server crash is simply redone: its timer row is still pending
                    # and everything the firing changed was in the same transaction: never doubled.
                    s.execute(text("SET LOCAL synchronous_commit TO OFF"))
                now = self.clock.now()
                claimable = and_(Timer.status == "pending", Timer.due_at <= now)
                q = select(Timer).where(Timer.id == entry.timer_id, claimable)
                if entry.instance_id is not None:  # the planned timer if it is its instance's earliest due one
                    earlier = Timer.__table__.alias("earlier")
                    q = q.where(~exists().where(
                        earlier.c.instance_id == Timer.instance_id, earlier.c.status == "pending",
                        earlier.c.due_at <= now, or_(earlier.c.due_at < Timer.due_at,
                                                     and_(earlier.c.due_at == Timer.due_at, earlier.c.id < Timer.id))))
                timer = s.execute(q if self.db.is_sqlite else q.with_for_update(skip_locked=True)).scalar_one_or_none()
                if timer is None and entry.instance_id is not None:
                    # else the instance's earliest due timer (unless that is the planned one: fired meanwhile,
                    # or another scheduler is firing it)
                    head = s.execute(select(Timer.id).where(Timer.instance_id == entry.instance_id, claimable)
                                     .order_by(Timer.due_at, Timer.id).limit(1)).scalar()
                    if head is not None and head != entry.timer_id:
                        q = select(Timer).where(Timer.id == head, claimable)
                        timer = s.execute(q if self.db.is_sqlite else q.with_for_update(skip_locked=True)) \
                            .scalar_one_or_none()
                if timer is None:
                    return None
                if timer.instance_id is not None and not self.db.is_sqlite:
                    # Commands lock the instance, then change its timer rows; a firing holding the timer
                    # row must not wait for the instance (the two would deadlock): step aside instead.
                    held = s.execute(select(ProcessInstance.id).where(ProcessInstance.id == timer.instance_id)
                                     .with_for_update(skip_locked=True)).first()
                    if held is None:
                        raise _InstanceBusy()
                try:
                    self._fire(s, timer, now)
                except Exception as exc:
                    raise TimerFiringError(f"timer at element '{timer.element_id}' could not fire: {exc}",
                                           timer_id=timer.id, instance_id=timer.instance_id) from exc
                return timer.id
        except _InstanceBusy:
            return TIMER_BUSY

    def _fire(self, s: Session, timer: Timer, now: datetime) -> None:
        if timer.instance_id is None:
            self._fire_start_timer(s, timer, now)
            return
        loaded = self._load(s, timer.instance_id)
        loaded.workflow.script_engine.runtime.fire_until = timer.due_at
        cmd = Command("scheduler", "timer")
        cmd.events.append({"action": "timer", "element_id": timer.element_id, "task_id": timer.task_id,
                           "details": {"due_at": timer.due_at.isoformat()}})
        self._run_engine(loaded.workflow, loaded.definition, cmd)
        self._save(s, loaded, cmd)

    def _fire_start_timer(self, s: Session, timer: Timer, now: datetime) -> bool:
        """Start an instance; a cycle that missed firings (the service was down) fires once for all
        of them, as Quartz's and Camunda's misfire handling do, and goes on at its next due time
        after now: the missed ones are counted, noted in the new instance's history, not replayed."""
        from engine.dialect import timers as timer_lang

        schedule = timer_lang.TimerSchedule.from_dict(timer.schedule) if timer.schedule else None
        if schedule is not None:
            # a start timer deployed before the minimum interval existed (or before it was raised)
            # does not fire; it is postponed with back-off and shows as a failed timer until a new
            # version of the process replaces it
            timer_lang.check_min_interval(schedule, timedelta(seconds=self.settings.timer_min_interval))
        definition = s.get(ProcessDefinition, timer.definition_id)
        started = self._start(s, None, definition.id, None, {}, "scheduler", None, start_event=timer.element_id)
        timer.fired_count += 1
        following, missed = (schedule.next_after(timer.due_at, timer.fired_count, now)
                             if schedule else (None, 0))
        if missed:
            timer.fired_count += missed
            self._record(s, started["id"], "scheduler", "timer_catch_up", element_id=timer.element_id,
                         details={"due_at": timer.due_at.isoformat(), "missed": missed,
                                  "next_due": following.isoformat() if following else None})
        if following is None:
            s.delete(timer)
        else:
            timer.due_at = following
            timer.attempts = 0
            timer.last_error = None
            timer.lease_owner = timer.lease_until = None
        return True

    def fire_due_timers(self, limit: int = 100_000) -> int:
        """Fire every timer that is due now (the scheduler's loop, also a CLI command). A timer that
        fails is postponed with back-off (postpone_timer) as the scheduler does, so it cannot keep
        the timers after it from firing. Returns how many fired."""
        fired = busy = 0
        while fired < limit:
            try:
                result = self.fire_next_due()
            except TimerFiringError as exc:
                log.error("%s", exc.message)
                self.postpone_timer(exc.details["timer_id"], exc.message)
                continue
            if result is None:
                break
            if result == TIMER_BUSY:
                busy += 1
                if busy > 200:  # another command keeps the instance: its timer fires on a later run
                    break
                time.sleep(0.01)
                continue
            fired += 1
        return fired

    def postpone_timer(self, timer_id: str, error: str) -> None:
        """A timer that failed to fire is retried later (1, 2, 4 … minutes, at most an hour)."""
        with self._command() as s:
            timer = s.get(Timer, timer_id)
            if timer is None:
                return
            timer.attempts += 1
            timer.last_error = error[:2000]
            delay = min(60 * 2 ** min(timer.attempts - 1, 6), 3600)
            timer.due_at = self.clock.now() + timedelta(seconds=delay)
            self._record(s, timer.instance_id, "scheduler", "timer_failed", element_id=timer.element_id,
                         details={"error": error[:500], "retry_at": timer.due_at.isoformat()})

    def refresh_sla(self) -> int:
        """Recompute due-soon / overdue on open tasks; returns how many changed."""
        now = self.clock.now()
        soon = now + timedelta(minutes=self.settings.due_soon_minutes)
        with self._command() as s:
            n = s.execute(update(Task).where(Task.status == "open", Task.due_at <= now,
                                             Task.sla_state != "overdue").values(sla_state="overdue")).rowcount
            n += s.execute(update(Task).where(Task.status == "open", Task.due_at > now, Task.due_at <= soon,
                                              Task.sla_state != "due_soon").values(sla_state="due_soon")).rowcount
            n += s.execute(update(Task).where(Task.status == "open", Task.due_at > soon,
                                              Task.sla_state != "on_time").values(sla_state="on_time")).rowcount
        return n

    # ------------------------------------------------------------------------ queries ---------
    def task_dict(self, t: Task) -> dict:
        return {"id": t.id, "instance_id": t.instance_id, "definition_id": t.definition_id,
                "process_key": t.process_key, "business_key": t.business_key, "element_id": t.element_id,
                "name": t.name, "status": t.status, "assignee": t.assignee,
                "candidate_users": list(t.candidate_users or []),
                "candidate_groups": list(t.candidate_groups or []), "created_at": t.created_at,
                "due_at": t.due_at, "follow_up_at": t.follow_up_at, "priority": t.priority,
                # open: against now; finished: whether it was done in time
                "form_key": t.form_key, "sla_state": self.sla_state(
                    t.due_at, self.clock.now() if t.status == "open" else (t.completed_at or self.clock.now())),
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

    def list_tasks(self, f: TaskQuery | None = None, **kwargs) -> list[dict]:
        f = f or TaskQuery(**kwargs)
        limit, offset = max(0, min(f.limit, 1000)), max(0, f.offset)
        with self.db.reader() as s:
            if self._is_queue_query(f):
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
                q = self._order(self._task_filter(select(Task.__table__), f), f).offset(offset).limit(limit)
            return [self.task_dict(t) for t in s.execute(q)]

    def count_tasks(self, f: TaskQuery | None = None, **kwargs) -> int:
        f = f or TaskQuery(**kwargs)
        with self.db.reader() as s:
            plain = TaskQuery(unassigned=True, status="open", visible_to_user=f.visible_to_user,
                              visible_to_groups=f.visible_to_groups, candidate_groups=f.candidate_groups,
                              candidate_user=f.candidate_user, limit=f.limit, offset=f.offset, sort=f.sort)
            if self._is_queue_query(f) and f == plain:
                # candidate rows exist only for open tasks and know whether the task is claimed
                return s.execute(select(func.count(func.distinct(TaskCandidate.task_id)))
                                 .where(self._queue_candidates(f), TaskCandidate.claimed.is_(False))).scalar_one()
            return s.execute(self._task_filter(select(func.count(Task.id)), f)).scalar_one()

    def get_task(self, task_id: str) -> dict:
        with self.db.reader() as s:
            return self.task_dict(self._load_task(s, task_id))

    def _instance_summary(self, row) -> dict:
        return {"id": row.id, "definition_id": row.definition_id, "process_key": row.process_key,
                "business_key": row.business_key, "status": row.status, "started_at": row.started_at,
                "ended_at": row.ended_at, "started_by": row.started_by,
                "parent_instance_id": row.parent_instance_id, "summary": dict(row.summary or {})}

    def list_instances(self, *, process_key: str | None = None, business_key: str | None = None,
                       status: str | None = None, instance_ids: Iterable[str] | None = None,
                       parent_instance_id: str | None = None, search: str | None = None,
                       offset: int = 0, limit: int = 50) -> list[dict]:
        with self.db.reader() as s:
            q = select(ProcessInstance)
            if process_key:
                q = q.where(ProcessInstance.process_key == process_key)
            if business_key:
                q = q.where(ProcessInstance.business_key == business_key)
            if status:
                q = q.where(ProcessInstance.status == status)
            if instance_ids is not None:
                q = q.where(ProcessInstance.id.in_(list(instance_ids)))
            if parent_instance_id:
                q = q.where(ProcessInstance.parent_instance_id == parent_instance_id)
            if search:
                q = q.where(ProcessInstance.search_text.like(contains_pattern(search.strip()), escape=LIKE_ESCAPE))
            q = q.order_by(ProcessInstance.started_at.desc()).offset(offset).limit(min(limit, 1000))
            return [self._instance_summary(r) for r in s.execute(q).scalars()]

    def count_instances(self, **filters) -> int:
        with self.db.reader() as s:
            q = select(func.count(ProcessInstance.id))
            for name, value in filters.items():
                if value is not None:
                    q = q.where(getattr(ProcessInstance, name) == value)
            return s.execute(q).scalar_one()

    def get_variables(self, instance_id: str) -> dict:
        with self.db.reader() as s:
            row = s.get(ProcessInstance, instance_id)
            if row is None:
                raise NotFound(f"process instance '{instance_id}' does not exist", instance_id=instance_id)
            return {v.name: {"value": v.value, "type": v.type_name} for v in s.execute(
                select(InstanceVariable).where(InstanceVariable.instance_id == instance_id)).scalars()}

    def get_instance(self, instance_id: str) -> dict:
        """An instance: status, variables, active elements, the path taken and its history."""
        with self.db.reader() as s:
            row = s.get(ProcessInstance, instance_id)
            if row is None:
                raise NotFound(f"process instance '{instance_id}' does not exist", instance_id=instance_id)
            info = self._instance_summary(row)
            definition = s.get(ProcessDefinition, row.definition_id)
            info["process_name"] = definition.name
            info["process_version"] = definition.version
            history = s.execute(select(HistoryEvent).where(HistoryEvent.instance_id == instance_id)
                                .order_by(HistoryEvent.id)).scalars().all()
            info["history"] = [{"at": h.at, "user": h.user, "action": h.action, "element_id": h.element_id,
                                "element_name": h.element_name, "task_id": h.task_id, "details": h.details}
                               for h in history]
            info["path"] = [h.element_id for h in history
                            if h.action in ("element", "complete") and h.element_id]
            info["variables"] = {v.name: v.value for v in s.execute(
                select(InstanceVariable).where(InstanceVariable.instance_id == instance_id)).scalars()}
            active = []
            if row.status == "active":
                spec, subprocess_specs = self.serializer.load_spec(definition.id, definition.spec)
                workflow = self.serializer.load_state(row.state, spec, subprocess_specs)
                for t in workflow.get_tasks(state=TaskState.READY | TaskState.WAITING | TaskState.STARTED):
                    bpmn_id = getattr(t.task_spec, "bpmn_id", None)
                    if bpmn_id:
                        active.append({"element_id": bpmn_id, "name": t.task_spec.bpmn_name,
                                       "state": TaskState.get_name(t.state), "task_id": str(t.id)})
            info["active"] = active
            info["tasks"] = [self.task_dict(t) for t in s.execute(
                select(Task).where(Task.instance_id == instance_id).order_by(Task.created_at)).scalars()]
            info["children"] = [self._instance_summary(c) for c in s.execute(
                select(ProcessInstance).where(ProcessInstance.parent_instance_id == instance_id)).scalars()]
            info["definition_key"] = definition.key
            info["state_bytes"] = len(row.state)
            return info

    def history(self, instance_id: str | None = None, limit: int = 200) -> list[dict]:
        """The newest history events (of one instance, or of the whole service: deployments too)."""
        with self.db.reader() as s:
            q = select(HistoryEvent).order_by(HistoryEvent.id.desc()).limit(limit)
            if instance_id:
                q = q.where(HistoryEvent.instance_id == instance_id)
            return [{"at": h.at, "user": h.user, "action": h.action, "instance_id": h.instance_id,
                     "element_id": h.element_id, "element_name": h.element_name, "details": h.details}
                    for h in s.execute(q).scalars()]

    # ------------------------------------------------------------------------ calendar --------
    def calendar_overrides(self) -> dict:
        """The administrator's calendar: override days and confirmed years, and the package's range."""
        from engine.models import CalendarDay, CalendarYear

        with self.db.reader() as s:
            days = [{"day": d.day, "is_working": d.is_working, "name": d.name}
                    for d in s.execute(select(CalendarDay).order_by(CalendarDay.day)).scalars()]
            years = [{"year": y.year, "note": y.note}
                     for y in s.execute(select(CalendarYear).order_by(CalendarYear.year)).scalars()]
        first, last = hospital_calendar.package_coverage()
        return {"days": days, "confirmed_years": years, "package_years": [first, last]}

    def set_calendar_day(self, day: date, is_working: bool, name: str = "", *, user: str | None = None) -> None:
        """A local closure or an entry of a newly published year (wins over the package)."""
        from engine.models import CalendarDay

        if not isinstance(day, date):
            raise InvalidInput("day must be a date (YYYY-MM-DD)", field="day")
        with self._command() as s:
            row = s.get(CalendarDay, day)
            if row is None:
                s.add(CalendarDay(day=day, is_working=bool(is_working), name=name or ""))
            else:
                row.is_working, row.name = bool(is_working), name or ""
            self._record(s, None, user, "calendar_day", details={"day": day.isoformat(),
                                                                  "is_working": bool(is_working), "name": name})
        self.reload_calendar()

    def remove_calendar_day(self, day: date, *, user: str | None = None) -> None:
        from engine.models import CalendarDay

        with self._command() as s:
            s.execute(delete(CalendarDay).where(CalendarDay.day == day))
            self._record(s, None, user, "calendar_day_removed", details={"day": day.isoformat()})
        self.reload_calendar()

    def confirm_calendar_year(self, year: int, note: str = "", *, user: str | None = None,
                              seed_from_package: bool = False) -> None:
        """Declare a year's holidays complete (entered as override days); with seed_from_package,
        copy the package's holidays and 调休 days of a year it covers into the override table."""
        from engine.models import CalendarDay, CalendarYear

        with self._command() as s:
            if seed_from_package:
                for day, info in hospital_calendar.package_days(year).items():
                    if s.get(CalendarDay, day) is None:
                        s.add(CalendarDay(day=day, is_working=info.is_working, name=info.name))
            if s.get(CalendarYear, year) is None:
                s.add(CalendarYear(year=year, note=note))
            self._record(s, None, user, "calendar_year_confirmed", details={"year": year, "note": note})
        self.reload_calendar()

    # ------------------------------------------------------------------------ identity --------
    def staff_member(self, username: str) -> tuple[bool, list[str]] | None:
        """(active, groups) of an account, or None when there is no such user."""
        with self.db.reader() as s:
            user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
            return (bool(user.active), [g.id for g in user.groups]) if user else None

    def user_groups(self, username: str) -> list[str]:
        with self.db.reader() as s:
            user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
            return [g.id for g in user.groups] if user else []

    # --- read models for the REST API and process pages ---
    # Queries that /engine-rest, /api/v1 and the process pages need beyond the methods above, and
    # delete_deployment (Camunda's DELETE /deployment/{id}). Tested in tests/rest/test_read_models.py.

    @staticmethod
    def _order_by(columns: Mapping[str, Any], order: Iterable[tuple[str, bool]], what: str) -> list:
        out = []
        for key, descending in order:
            column = columns.get(key)
            if column is None:
                raise InvalidInput(f"{what} cannot be sorted by '{key}'", field="sortBy")
            out.append(column.desc() if descending else column.asc())
        return out

    @staticmethod
    def _deployment_dict(d) -> dict:
        return {"id": d.id, "name": d.name, "source": d.source, "tenant_id": d.tenant_id,
                "deployed_at": d.deployed_at, "deployed_by": d.deployed_by}

    def list_deployments(self, *, deployment_id: str | None = None, name: str | None = None,
                         name_like: str | None = None, source: str | None = None) -> list[dict]:
        """Deployments, oldest first. `name_like` is an SQL LIKE pattern (% and _)."""
        from engine.models import Deployment

        with self.db.reader() as s:
            q = select(Deployment).order_by(Deployment.deployed_at, Deployment.id)
            if deployment_id is not None:
                q = q.where(Deployment.id == deployment_id)
            if name is not None:
                q = q.where(Deployment.name == name)
            if name_like is not None:
                q = q.where(Deployment.name.like(like_pattern(name_like), escape=LIKE_ESCAPE))
            if source is not None:
                q = q.where(Deployment.source == source)
            return [self._deployment_dict(d) for d in s.execute(q).scalars()]

    def get_deployment(self, deployment_id: str) -> dict:
        """A deployment with its resources and the definitions it created."""
        from engine.models import Deployment

        with self.db.reader() as s:
            d = s.get(Deployment, deployment_id)
            if d is None:
                raise NotFound(f"deployment '{deployment_id}' does not exist", deployment_id=deployment_id)
            info = self._deployment_dict(d)
            info["resources"] = [{"id": r.id, "name": r.name} for r in s.execute(
                select(Resource).where(Resource.deployment_id == d.id).order_by(Resource.name)).scalars()]
            info["process_definitions"] = [self._definition_dict(r) for r in s.execute(
                select(ProcessDefinition).where(ProcessDefinition.deployment_id == d.id)
                .order_by(ProcessDefinition.key)).scalars()]
            info["decision_definitions"] = [
                {"id": r.id, "key": r.key, "version": r.version, "name": r.name, "deployment_id": r.deployment_id,
                 "resource": r.resource_name}
                for r in s.execute(select(DecisionDefinition).where(DecisionDefinition.deployment_id == d.id)
                                   .order_by(DecisionDefinition.key)).scalars()]
            return info

    def deployment_resource(self, deployment_id: str, resource_id: str) -> tuple[str, bytes]:
        with self.db.reader() as s:
            res = s.get(Resource, resource_id)
            if res is None or res.deployment_id != deployment_id:
                raise NotFound(f"deployment '{deployment_id}' has no resource '{resource_id}'")
            return res.name, res.content

    def latest_resource_hashes(self, deployment_name: str, resource_names: Iterable[str], *,
                               source: str | None = None, tenant_id: str | None = None) -> dict[str, str]:
        """For each resource name, the content hash it has in the newest deployment of this name
        (and source and tenant) that holds it: what Camunda's duplicate filtering compares with."""
        from engine.models import Deployment

        names = list(resource_names)
        if not names:
            return {}
        with self.db.reader() as s:
            q = (select(Resource.name, Resource.content_hash)
                 .join(Deployment, Deployment.id == Resource.deployment_id)
                 .where(Deployment.name == deployment_name, Resource.name.in_(names))
                 .order_by(Deployment.deployed_at.desc(), Deployment.id.desc()))
            q = q.where(Deployment.source.is_(None) if source is None else Deployment.source == source)
            q = q.where(Deployment.tenant_id.is_(None) if tenant_id is None else Deployment.tenant_id == tenant_id)
            out: dict[str, str] = {}
            for name, digest in s.execute(q):
                out.setdefault(name, digest)
            return out

    def query_tasks(self, f: TaskQuery, *, order: Iterable[tuple[str, bool]] = (("due", False),),
                    visible_to: tuple[str, list[str]] | None = None,
                    offered_to: tuple[str, list[str]] | None = None, definition_id: str | None = None,
                    name: str | None = None, name_like: str | None = None) -> tuple[list[dict], int]:
        """One page of tasks and the total. `order` is (field, descending) pairs over the sortable
        columns; `visible_to` (user, groups) keeps only tasks assigned to the user or offered to the
        user or one of the groups, `offered_to` only those offered, on top of the filters of `f`."""
        def where(q):
            q = self._task_filter(q, f)
            if visible_to is not None:
                q = q.where(or_(Task.assignee == visible_to[0], Task.id.in_(offered_task_ids(*visible_to))))
            if offered_to is not None:
                q = q.where(Task.id.in_(offered_task_ids(*offered_to)))
            if definition_id is not None:
                q = q.where(Task.definition_id == definition_id)
            if name is not None:
                q = q.where(Task.name == name)
            if name_like is not None:
                q = q.where(Task.name.like(like_pattern(name_like), escape=LIKE_ESCAPE))
            return q

        columns = self._order_by({
            "id": Task.id, "name": Task.name, "assignee": Task.assignee, "created": Task.created_at,
            "due": Task.due_at, "follow_up": Task.follow_up_at, "priority": Task.priority,
            "instance_id": Task.instance_id, "definition_id": Task.definition_id,
            "element_id": Task.element_id}, order, "tasks")
        with self.db.reader() as s:
            total = s.execute(where(select(func.count(Task.id)))).scalar_one()
            q = where(select(Task)).order_by(*columns, Task.id)
            q = q.offset(max(0, f.offset)).limit(max(0, min(f.limit, 1000)))
            return [self.task_dict(t) for t in s.execute(q).scalars()], total

    def query_instances(self, *, definition_id: str | None = None, process_key: str | None = None,
                        business_key: str | None = None, business_key_like: str | None = None,
                        instance_ids: Iterable[str] | None = None, deployment_id: str | None = None,
                        status: str | None = None, search: str | None = None,
                        visible_to: tuple[str, list[str]] | None = None,
                        order: Iterable[tuple[str, bool]] = (("started_at", True),), offset: int = 0,
                        limit: int = 50) -> tuple[list[dict], int]:
        """One page of instances and the total. `visible_to` (user, groups) keeps the instances
        the user started, has a task of (assigned, offered to the user or a group, or completed)."""
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
            if search:
                q = q.where(ProcessInstance.search_text.like(contains_pattern(search.strip()), escape=LIKE_ESCAPE))
            if visible_to is not None:
                user = visible_to[0]
                involved = select(Task.instance_id).where(or_(
                    Task.assignee == user, Task.completed_by == user, Task.id.in_(offered_task_ids(*visible_to))))
                q = q.where(or_(ProcessInstance.started_by == user, ProcessInstance.id.in_(involved)))
            return q

        columns = self._order_by({
            "id": ProcessInstance.id, "process_key": ProcessInstance.process_key,
            "definition_id": ProcessInstance.definition_id, "business_key": ProcessInstance.business_key,
            "started_at": ProcessInstance.started_at}, order, "process instances")
        with self.db.reader() as s:
            total = s.execute(where(select(func.count(ProcessInstance.id)))).scalar_one()
            q = where(select(ProcessInstance)).order_by(*columns, ProcessInstance.id)
            q = q.offset(max(0, offset)).limit(max(0, min(limit, 1000)))
            return [self._instance_summary(r) for r in s.execute(q).scalars()], total

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

    def delete_deployment(self, deployment_id: str, *, cascade: bool = False, user: str | None = None) -> dict:
        """Delete a deployment: its resources and definitions. Refused while instances of its
        definitions exist, unless `cascade`: then running ones are cancelled and all of them deleted
        with every row they left (engine.retention.purge_instances: history, variables, tasks,
        external tasks, incidents, text messages). What stays is the history's own record of the
        deletion (no instance ids, no patient data) and an "erase" line in the audit log."""
        from engine.models import Deployment

        with self.db.reader() as s:
            if s.get(Deployment, deployment_id) is None:
                raise NotFound(f"deployment '{deployment_id}' does not exist", deployment_id=deployment_id)
            definitions = select(ProcessDefinition.id).where(ProcessDefinition.deployment_id == deployment_id)
            instances = s.execute(select(ProcessInstance.id, ProcessInstance.status)
                                  .where(ProcessInstance.definition_id.in_(definitions))).all()
        running = [iid for iid, status in instances if status == "active"]
        if instances and not cascade:
            raise Conflict(f"deployment '{deployment_id}' has {len(instances)} process instance(s), "
                           f"{len(running)} of them running; delete it with cascade to cancel and delete them",
                           deployment_id=deployment_id)
        for iid in running:
            with contextlib.suppress(Conflict, NotFound):  # ended meanwhile
                self.cancel(iid, user=user, reason=f"deployment {deployment_id} deleted")
        with self.db.transaction() as s:
            deployment = s.get(Deployment, deployment_id)
            if deployment is None:
                raise NotFound(f"deployment '{deployment_id}' does not exist", deployment_id=deployment_id)
            rows = s.execute(select(ProcessDefinition).where(
                ProcessDefinition.deployment_id == deployment_id)).scalars().all()
            ids = [r.id for r in rows]
            doomed = select(ProcessInstance.id).where(ProcessInstance.definition_id.in_(ids))
            if not cascade and s.execute(doomed.limit(1)).first() is not None:
                raise Conflict(f"deployment '{deployment_id}' got a process instance meanwhile; try again",
                               deployment_id=deployment_id)
            if cascade and s.execute(doomed.where(ProcessInstance.status == "active").limit(1)).first():
                raise Conflict(f"a process instance of deployment '{deployment_id}' was started meanwhile; "
                               "try again", deployment_id=deployment_id)
            doomed_ids = list(s.execute(doomed).scalars())
            from engine.retention import purge_instances

            purge_instances(s, doomed_ids)
            s.execute(delete(Timer).where(Timer.definition_id.in_(ids)))
            s.execute(delete(ProcessDefinition).where(ProcessDefinition.id.in_(ids)))
            s.execute(delete(DecisionDefinition).where(DecisionDefinition.deployment_id == deployment_id))
            s.execute(delete(Resource).where(Resource.deployment_id == deployment_id))
            s.execute(delete(Deployment).where(Deployment.id == deployment_id))
            # The version now newest of each key gets back the start timers a newer one replaced.
            for key in sorted({r.key for r in rows}):
                newest = s.execute(select(ProcessDefinition).where(ProcessDefinition.key == key)
                                   .order_by(ProcessDefinition.version.desc()).limit(1)).scalar_one_or_none()
                if newest is not None and newest.start_timers and s.execute(select(Timer.id).where(
                        Timer.instance_id.is_(None), Timer.definition_id == newest.id).limit(1)).first() is None:
                    self._schedule_start_timers(s, DeploymentResult(
                        newest.deployment_id, "", False, process_definitions=[{"id": newest.id}]))
            self._record(s, None, user, "delete_deployment", details={
                "deployment": deployment_id, "name": deployment.name, "cascade": cascade,
                "definitions": ids, "instances_deleted": len(doomed_ids)})
        if doomed_ids:
            self.audit.record("erase", user=user, resource_type="deployment", resource_id=deployment_id,
                              details={"cascade": True, "instances_deleted": len(doomed_ids)})
        return {"deployment_id": deployment_id, "definitions": ids, "instances_deleted": len(doomed_ids)}

    # --- external tasks (engine/external.py) ---
    # One step of an external task inside the caller's transaction; ExternalTaskService calls it
    # for complete and BPMN errors after it has checked the worker's lock.

    def _run_external_task(self, s: Session, instance_id: str, task_id: str, user: str | None, action: str,
                           act) -> dict | None:
        """Load the instance under the command's lock, let `act(spiff_task)` work on its READY
        external task (complete it, or throw its BPMN error) and return the history event, then
        run the engine and save as command `action`. `act` returning None leaves the instance
        unchanged."""
        loaded = self._load(s, instance_id)
        spiff_task = loaded.workflow.get_task_from_id(uuid.UUID(task_id))
        if spiff_task is None or spiff_task.state != TaskState.READY:
            raise Conflict(f"external task '{task_id}' is not active in instance '{instance_id}'",
                           task_id=task_id, instance_id=instance_id)
        try:
            happened = act(spiff_task)
        except SpiffWorkflowException as exc:
            raise self._process_error(exc, loaded.definition) from exc
        if happened is None:
            return None
        cmd = Command(user, action, events=[happened], completed_task_id=task_id)
        self._run_engine(loaded.workflow, loaded.definition)
        self._save(s, loaded, cmd)
        return self._instance_summary(loaded.row)
