"""External (service) tasks the way Camunda 7 runs them, and the incidents they raise.

A service, send or business-rule task with ``camunda:type="external"`` waits READY in its instance
(``engine.dialect.specs.ExternalServiceTask``). While it does, a row in ``external_tasks`` stands
for it: ``sync`` keeps the rows in step with the instance state in the same transaction as every
engine command, so workers never load an instance to find work.

Workers then use the commands of this module (``web/external_rest.py`` serves them as Camunda's
``/engine-rest/external-task``; ``engine/notify.py`` calls them in-process):

* ``fetch_and_lock`` claims free rows of the requested topics: ``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL, so several workers and several service processes share the work and none gets a
  task twice; on SQLite the write transaction (BEGIN IMMEDIATE) serializes the claims. A lock
  whose time ran out is free again. With a timeout it long-polls: it waits on a condition that
  every commit creating or freeing a task signals, and re-checks the database now and then for
  tasks made by other processes (no busy loop).
* ``complete``, ``handle_failure``, ``handle_bpmn_error``, ``extend_lock`` check that the caller
  holds the lock and that it has not expired, then act. Completing (and a caught BPMN error)
  runs the engine on the instance in the same transaction as the lock check and the row update.
* A failure with no retries left, a BPMN error that no boundary event catches, and a completion
  after which the process cannot go on (an expression fails, say) each open an **incident**:
  administrators see it (``/admin/incidents``, ``/engine-rest/incident``) and, once the cause is
  fixed, set the retries again, which resolves it. Nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import ErrorEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.bpmn.util.event import BpmnEvent
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import and_, bindparam, event, exists, func, or_, select, update
from sqlalchemy.orm import Session

from engine.access import LIKE_ESCAPE, like_pattern
from engine.errors import Conflict, InvalidInput, NotFound, ProcessError
from engine.models import (
    Deployment,
    ExternalTask,
    HistoryEvent,
    Incident,
    InstanceVariable,
    ProcessDefinition,
    Resource,
)
from engine.variables import check_variables, json_safe, variable_type

log = logging.getLogger(__name__)

INCIDENT_FAILED_EXTERNAL_TASK = "failedExternalTask"
# Camunda keeps the first 666 characters of an error message.
MAX_ERROR_MESSAGE = 666
MAX_ERROR_DETAILS = 100_000
MAX_WORKER_ID = 255
MAX_TASKS = 1000
# Camunda refuses a long-polling timeout above 30 minutes.
MAX_ASYNC_RESPONSE_TIMEOUT = 1_800_000
MAX_DURATION_MS = 10 * 365 * 24 * 3600 * 1000
# How often a long poll looks at the database for tasks another process created.
RECHECK_SECONDS = 2.0
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"


class ExternalTaskLockError(InvalidInput):
    """The caller does not hold the task's lock (another worker does, nobody does, or it expired)."""

    code = "external_task_lock"


def _text(value: Any, what: str, *, max_length: int, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise InvalidInput(f"{what} is required", field=what)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text", field=what)
    if required and not value.strip():
        raise InvalidInput(f"{what} must not be empty", field=what)
    if len(value) > max_length:
        raise InvalidInput(f"{what} is longer than {max_length} characters", field=what)
    return value


def _whole(value: Any, what: str, *, minimum: int = 0, maximum: int = MAX_DURATION_MS,
           default: int | None = None) -> int:
    if value is None:
        if default is None:
            raise InvalidInput(f"{what} is required", field=what)
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidInput(f"{what} must be a whole number, not {value!r}", field=what)
    number = int(value)
    if not minimum <= number <= maximum:
        raise InvalidInput(f"{what} must be between {minimum} and {maximum}, not {number}", field=what)
    return number


def _texts(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidInput(f"{what} must be a list of text", field=what)


@dataclass
class TopicRequest:
    """One entry of fetchAndLock's `topics` (Camunda's FetchExternalTaskTopicDto)."""

    topic_name: str
    lock_duration: int
    variables: list[str] | None = None
    local_variables: bool = False
    business_key: str | None = None
    definition_ids: list[str] | None = None
    definition_keys: list[str] | None = None
    tenant_ids: list[str] | None = None
    without_tenant_id: bool = False
    process_variables: dict[str, Any] = field(default_factory=dict)
    include_extension_properties: bool = False
    version_tag: str | None = None

    KNOWN = ("topicName", "lockDuration", "variables", "localVariables", "businessKey",
             "processDefinitionId", "processDefinitionIdIn", "processDefinitionKey",
             "processDefinitionKeyIn", "processDefinitionVersionTag", "withoutTenantId", "tenantIdIn",
             "processVariables", "deserializeValues", "includeExtensionProperties")

    @classmethod
    def from_dict(cls, raw: Any) -> TopicRequest:
        if not isinstance(raw, Mapping):
            raise InvalidInput("each entry of topics must be an object with topicName and lockDuration",
                               field="topics")
        unknown = sorted(str(k) for k in raw if k not in cls.KNOWN)
        if unknown:
            raise InvalidInput(f"topics: property '{unknown[0]}' is not supported", field="topics")
        name = _text(raw.get("topicName"), "topicName", max_length=255, required=True)
        duration = _whole(raw.get("lockDuration"), "lockDuration", minimum=1)
        ids = _texts(raw.get("processDefinitionIdIn"), "processDefinitionIdIn")
        if raw.get("processDefinitionId") is not None:
            ids = (ids or []) + [_text(raw.get("processDefinitionId"), "processDefinitionId", max_length=128)]
        keys = _texts(raw.get("processDefinitionKeyIn"), "processDefinitionKeyIn")
        if raw.get("processDefinitionKey") is not None:
            keys = (keys or []) + [_text(raw.get("processDefinitionKey"), "processDefinitionKey", max_length=255)]
        process_variables = raw.get("processVariables") or {}
        if not isinstance(process_variables, Mapping):
            raise InvalidInput("processVariables must be an object of name → value", field="processVariables")
        return cls(
            topic_name=name, lock_duration=duration, variables=_texts(raw.get("variables"), "variables"),
            local_variables=bool(raw.get("localVariables")),
            business_key=_text(raw.get("businessKey"), "businessKey", max_length=255),
            definition_ids=ids, definition_keys=keys, tenant_ids=_texts(raw.get("tenantIdIn"), "tenantIdIn"),
            without_tenant_id=bool(raw.get("withoutTenantId")), process_variables=dict(process_variables),
            include_extension_properties=bool(raw.get("includeExtensionProperties")),
            version_tag=_text(raw.get("processDefinitionVersionTag"), "processDefinitionVersionTag",
                              max_length=255))

    def condition(self):
        T = ExternalTask
        conds = [T.topic == self.topic_name]
        if self.business_key is not None:
            conds.append(T.business_key == self.business_key)
        if self.definition_ids is not None:
            conds.append(T.definition_id.in_(self.definition_ids))
        if self.definition_keys is not None:
            conds.append(T.process_key.in_(self.definition_keys))
        if self.tenant_ids is not None:
            conds.append(T.tenant_id.in_(self.tenant_ids))
        if self.without_tenant_id:
            conds.append(T.tenant_id.is_(None))
        if self.version_tag is not None:
            conds.append(T.id.is_(None))  # version tags are not kept: nothing matches
        for name, value in self.process_variables.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            conds.append(exists().where(InstanceVariable.instance_id == T.instance_id,
                                        InstanceVariable.name == str(name),
                                        InstanceVariable.text_value == text[:512]))
        return and_(*conds)


@dataclass
class ExternalTaskQuery:
    """The filters of Camunda's GET /external-task (open tasks only)."""

    task_id: str | None = None
    task_ids: list[str] | None = None
    topic: str | None = None
    worker_id: str | None = None
    locked: bool | None = None
    not_locked: bool | None = None
    with_retries_left: bool | None = None
    no_retries_left: bool | None = None
    lock_expiration_after: datetime | None = None
    lock_expiration_before: datetime | None = None
    activity_id: str | None = None
    activity_ids: list[str] | None = None
    instance_id: str | None = None
    instance_ids: list[str] | None = None
    definition_id: str | None = None
    process_key: str | None = None
    business_key: str | None = None
    tenant_ids: list[str] | None = None
    priority_at_least: int | None = None
    priority_at_most: int | None = None
    suspended: bool | None = None
    active: bool | None = None
    order: list[tuple[str, bool]] = field(default_factory=list)
    offset: int = 0
    limit: int = 100


SORT_COLUMNS = {
    "id": ExternalTask.id, "lockExpirationTime": ExternalTask.lock_expires_at,
    "processInstanceId": ExternalTask.instance_id, "processDefinitionId": ExternalTask.definition_id,
    "processDefinitionKey": ExternalTask.process_key, "tenantId": ExternalTask.tenant_id,
    "taskPriority": ExternalTask.priority, "createTime": ExternalTask.created_at,
}


@dataclass
class IncidentQuery:
    incident_id: str | None = None
    incident_type: str | None = None
    message: str | None = None
    message_like: str | None = None
    instance_id: str | None = None
    definition_id: str | None = None
    process_keys: list[str] | None = None
    activity_id: str | None = None
    configuration: str | None = None
    tenant_ids: list[str] | None = None
    state: str | None = "open"
    order: list[tuple[str, bool]] = field(default_factory=list)
    offset: int = 0
    limit: int = 100


INCIDENT_SORT_COLUMNS = {
    "incidentId": Incident.id, "incidentMessage": Incident.message, "incidentTimestamp": Incident.created_at,
    "incidentType": Incident.incident_type, "activityId": Incident.activity_id,
    "processInstanceId": Incident.instance_id, "processDefinitionId": Incident.definition_id,
    "configuration": Incident.configuration, "tenantId": Incident.tenant_id,
}


def _lock_holder(worker_id: str | None) -> str:
    return "null" if worker_id is None else worker_id


class ExternalTaskService:
    """The external tasks of one engine (``engine.external_tasks``)."""

    def __init__(self, engine, *, recheck_seconds: float = RECHECK_SECONDS):
        self.engine = engine
        self.recheck_seconds = recheck_seconds
        self._changed = threading.Condition()
        self._generation = 0
        self._tenants: dict[str, str | None] = {}
        self._error_variables: dict[str, dict[str, tuple[str | None, str | None]]] = {}
        table = ExternalTask.__table__
        self._stmt_row = select(table).where(table.c.id == bindparam("task_id"))
        self._stmt_row_locked = self._stmt_row.with_for_update()

    # ------------------------------------------------------------------- waking long polls ---
    def _wake(self, *_args) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def _wake_after_commit(self, s: Session) -> None:
        if not s.info.get("external_wake"):
            s.info["external_wake"] = True
            event.listen(s, "after_commit", self._wake)

    def wait_for_change(self, generation: int, timeout: float) -> int:
        """Block until a task may have become available (or `timeout` seconds passed)."""
        with self._changed:
            if self._generation == generation and timeout > 0:
                self._changed.wait(timeout)
            return self._generation

    # --------------------------------------------------------------------- projection --------
    def _tenant(self, s: Session, definition_id: str) -> str | None:
        if definition_id not in self._tenants:
            self._tenants[definition_id] = s.execute(
                select(Deployment.tenant_id).join(ProcessDefinition, ProcessDefinition.deployment_id == Deployment.id)
                .where(ProcessDefinition.id == definition_id)).scalar_one_or_none()
        return self._tenants[definition_id]

    @staticmethod
    def _task_variables(t) -> dict:
        ext = t.task_spec.extensions or {}
        local = {p["name"] for p in ext.get("inputs") or []}
        out = {}
        for name, value in t.data.items():
            if not isinstance(name, str) or name.startswith("_") or callable(value):
                continue
            out[name] = {"value": json_safe(value), "type": variable_type(value), "local": name in local}
        return out

    def sync(self, s: Session, row, definition, before, after, cmd, now: datetime) -> None:
        """Keep `external_tasks` in step with the instance after a command (called by `_save`)."""
        table = ExternalTask.__table__
        gone = [tid for tid in before.external if tid not in after.external]
        new = [tid for tid in after.external if tid not in before.external]
        staying = [tid for tid in after.external if tid in before.external]
        if gone:
            ended = {}
            for tid in gone:
                if tid == cmd.completed_task_id and cmd.action == "external_complete":
                    ended[tid] = "completed"
                elif tid == cmd.completed_task_id and cmd.action == "external_bpmn_error":
                    ended[tid] = "error"
                else:
                    ended[tid] = "cancelled"
            for state in set(ended.values()):
                ids = [tid for tid, st in ended.items() if st == state]
                s.execute(table.update().where(table.c.id.in_(ids), table.c.state == "open")
                          .values(state=state, ended_at=now, worker_id=None, lock_expires_at=None))
                self._close_incidents(s, ids, "deleted" if state == "cancelled" else "resolved", now, cmd.user)
        for tid in staying:  # variables may have changed meanwhile (set_variables, a message)
            s.execute(table.update().where(table.c.id == tid, table.c.state == "open").values(
                variables=self._task_variables(after.external[tid]), business_key=row.business_key))
        if new:
            existing = set(s.execute(select(table.c.id).where(table.c.id.in_(new))).scalars())
            tenant = self._tenant(s, definition.id)
            for tid in new:
                t = after.external[tid]
                info = t.internal_data.get("external") or {}
                spec = t.task_spec
                values = {
                    "instance_id": row.id, "definition_id": definition.id, "process_key": definition.key,
                    "business_key": row.business_key, "tenant_id": tenant, "activity_id": spec.bpmn_id,
                    "activity_name": spec.bpmn_name, "topic": str(info.get("topic") or ""),
                    "priority": int(info.get("priority") or 0), "worker_id": None, "lock_expires_at": None,
                    "retries": None, "error_message": None, "error_details": None,
                    "variables": self._task_variables(t),
                    "properties": dict((spec.extensions or {}).get("properties") or {}),
                    "created_at": now, "state": "open", "ended_at": None}
                if tid in existing:
                    s.execute(table.update().where(table.c.id == tid).values(**values))
                else:
                    s.execute(table.insert().values(id=tid, **values))
                cmd.events.append({"action": "external_task_created", "element_id": spec.bpmn_id,
                                   "element_name": spec.bpmn_name, "task_id": tid,
                                   "details": {"topic": values["topic"], "priority": values["priority"]}})
            self._wake_after_commit(s)

    def on_cancel(self, s: Session, instance_id: str, now: datetime) -> None:
        """The instance was cancelled: its open external tasks end with it."""
        table = ExternalTask.__table__
        ids = list(s.execute(select(table.c.id).where(table.c.instance_id == instance_id,
                                                      table.c.state == "open")).scalars())
        if not ids:
            return
        s.execute(table.update().where(table.c.id.in_(ids)).values(
            state="cancelled", ended_at=now, worker_id=None, lock_expires_at=None))
        self._close_incidents(s, ids, "deleted", now, None)

    # ----------------------------------------------------------------------- incidents -------
    def _close_incidents(self, s: Session, task_ids: list[str], state: str, now: datetime,
                         user: str | None) -> None:
        table = Incident.__table__
        s.execute(table.update().where(table.c.configuration.in_(task_ids), table.c.state == "open")
                  .values(state=state, resolved_at=now, resolved_by=user))

    def _open_incident(self, s: Session, task, message: str, now: datetime,
                       user: str | None) -> str:
        found = s.execute(select(Incident).where(Incident.configuration == task.id,
                                                 Incident.state == "open")).scalar_one_or_none()
        if found is not None:
            found.message = message
            return found.id
        incident = Incident(id=str(uuid.uuid4()), incident_type=INCIDENT_FAILED_EXTERNAL_TASK, created_at=now,
                            message=message, instance_id=task.instance_id, definition_id=task.definition_id,
                            process_key=task.process_key, business_key=task.business_key,
                            tenant_id=task.tenant_id, activity_id=task.activity_id, configuration=task.id,
                            topic=task.topic, state="open")
        s.add(incident)
        self._history(s, task, user, "incident", {"incident": incident.id, "message": message}, now)
        log.warning("incident %s: external task %s (%s, topic %s) of instance %s: %s", incident.id, task.id,
                    task.activity_id, task.topic, task.instance_id, message)
        return incident.id

    @staticmethod
    def _history(s: Session, task, user: str | None, action: str, details: dict,
                 now: datetime) -> None:
        s.add(HistoryEvent(instance_id=task.instance_id, at=now, user=(user or None) and user[:64],
                           action=action, element_id=task.activity_id, element_name=task.activity_name,
                           task_id=task.id, details=json_safe(details)))

    # --------------------------------------------------------------------------- reads -------
    def _row(self, s: Session, task_id: str, *, for_update: bool = False):
        """The open task's row (a core Row: the hot paths skip the ORM); NotFound otherwise."""
        q = self._stmt_row_locked if for_update and not self.engine.db.is_sqlite else self._stmt_row
        row = s.execute(q, {"task_id": task_id}).first()
        if row is None or row.state != "open":
            raise NotFound(f"External task with id {task_id} does not exist", task_id=task_id)
        return row

    @staticmethod
    def _set(s: Session, task_id: str, **values) -> None:
        table = ExternalTask.__table__
        s.execute(table.update().where(table.c.id == task_id).values(**values))

    def task_dict(self, t, *, variables: dict | None = None) -> dict:
        out = {"id": t.id, "instance_id": t.instance_id, "definition_id": t.definition_id,
               "process_key": t.process_key, "business_key": t.business_key, "tenant_id": t.tenant_id,
               "activity_id": t.activity_id, "activity_name": t.activity_name, "topic": t.topic,
               "priority": t.priority, "worker_id": t.worker_id, "lock_expires_at": t.lock_expires_at,
               "retries": t.retries, "error_message": t.error_message, "created_at": t.created_at,
               "state": t.state, "suspended": False}
        if variables is not None:
            out["variables"] = variables
        return out

    def get(self, task_id: str) -> dict:
        with self.engine.db.reader() as s:
            return self.task_dict(self._row(s, task_id))

    def error_details(self, task_id: str) -> str | None:
        with self.engine.db.reader() as s:
            return self._row(s, task_id).error_details

    def _filter(self, q, f: ExternalTaskQuery, now: datetime):
        T = ExternalTask
        q = q.where(T.state == "open")
        if f.task_id is not None:
            q = q.where(T.id == f.task_id)
        if f.task_ids is not None:
            q = q.where(T.id.in_(f.task_ids))
        if f.topic is not None:
            q = q.where(T.topic == f.topic)
        if f.worker_id is not None:
            q = q.where(T.worker_id == f.worker_id)
        if f.locked:
            q = q.where(T.lock_expires_at > now)
        if f.not_locked:
            q = q.where(or_(T.lock_expires_at.is_(None), T.lock_expires_at <= now))
        if f.with_retries_left:
            q = q.where(or_(T.retries.is_(None), T.retries > 0))
        if f.no_retries_left:
            q = q.where(T.retries == 0)
        if f.lock_expiration_after is not None:
            q = q.where(T.lock_expires_at > f.lock_expiration_after)
        if f.lock_expiration_before is not None:
            q = q.where(T.lock_expires_at < f.lock_expiration_before)
        if f.activity_id is not None:
            q = q.where(T.activity_id == f.activity_id)
        if f.activity_ids is not None:
            q = q.where(T.activity_id.in_(f.activity_ids))
        if f.instance_id is not None:
            q = q.where(T.instance_id == f.instance_id)
        if f.instance_ids is not None:
            q = q.where(T.instance_id.in_(f.instance_ids))
        if f.definition_id is not None:
            q = q.where(T.definition_id == f.definition_id)
        if f.process_key is not None:
            q = q.where(T.process_key == f.process_key)
        if f.business_key is not None:
            q = q.where(T.business_key == f.business_key)
        if f.tenant_ids is not None:
            q = q.where(T.tenant_id.in_(f.tenant_ids))
        if f.priority_at_least is not None:
            q = q.where(T.priority >= f.priority_at_least)
        if f.priority_at_most is not None:
            q = q.where(T.priority <= f.priority_at_most)
        if f.suspended is True or f.active is False:
            q = q.where(T.id.is_(None))  # instances are never suspended here
        return q

    def query(self, f: ExternalTaskQuery | None = None) -> tuple[list[dict], int]:
        """One page of open external tasks and the total."""
        f = f or ExternalTaskQuery()
        now = self.engine.clock.now()
        order = []
        for key, descending in f.order:
            column = SORT_COLUMNS.get(key)
            if column is None:
                raise InvalidInput(f"Cannot set query parameter 'sortBy' to value '{key}'", field="sortBy")
            order.append(column.desc() if descending else column.asc())
        with self.engine.db.reader() as s:
            total = s.execute(self._filter(select(func.count(ExternalTask.id)), f, now)).scalar_one()
            q = self._filter(select(ExternalTask), f, now).order_by(*order, ExternalTask.created_at, ExternalTask.id)
            q = q.offset(max(0, f.offset)).limit(max(0, min(f.limit, MAX_TASKS)))
            return [self.task_dict(t) for t in s.execute(q).scalars()], total

    def list(self, f: ExternalTaskQuery | None = None) -> list[dict]:
        return self.query(f)[0]

    def count(self, f: ExternalTaskQuery | None = None) -> int:
        return self.query(ExternalTaskQuery(**{**(f or ExternalTaskQuery()).__dict__, "limit": 0}))[1]

    # ------------------------------------------------------------------ fetch and lock -------
    def fetch_and_lock(self, worker_id: str, max_tasks: int, topics: Iterable[Mapping[str, Any] | TopicRequest],
                       *, use_priority: bool = False, sorting: list[Mapping[str, Any]] | None = None,
                       async_response_timeout: int | None = None,
                       stop: threading.Event | None = None) -> list[dict]:
        """Claim up to `max_tasks` free tasks of the topics for `worker_id`; each comes with the
        variables its topic asked for. With `async_response_timeout` (ms) wait that long for a
        task when none is free (long polling); `stop` ends the wait early."""
        worker_id = _text(worker_id, "workerId", max_length=MAX_WORKER_ID, required=True)
        max_tasks = _whole(max_tasks, "maxTasks", minimum=0, maximum=MAX_TASKS)
        requests = [t if isinstance(t, TopicRequest) else TopicRequest.from_dict(t) for t in topics or []]
        timeout = _whole(async_response_timeout, "asyncResponseTimeout", minimum=0,
                         maximum=MAX_ASYNC_RESPONSE_TIMEOUT, default=0)
        order = self._fetch_order(use_priority, sorting)
        if not requests or max_tasks == 0:
            return []
        deadline = time.monotonic() + timeout / 1000
        while True:
            generation = self._generation
            found = self._fetch_once(worker_id, max_tasks, requests, order)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0 or (stop is not None and stop.is_set()):
                return found
            self.wait_for_change(generation, min(remaining, self.recheck_seconds))

    @staticmethod
    def _fetch_order(use_priority: bool, sorting) -> list:
        order = [ExternalTask.priority.desc()] if use_priority else []
        for entry in sorting or []:
            if not isinstance(entry, Mapping) or entry.get("sortBy") != "createTime" \
                    or entry.get("sortOrder") not in ("asc", "desc"):
                raise InvalidInput("sorting: each entry must be {\"sortBy\": \"createTime\", "
                                   "\"sortOrder\": \"asc\" | \"desc\"}", field="sorting")
            order.append(ExternalTask.created_at.desc() if entry["sortOrder"] == "desc"
                         else ExternalTask.created_at.asc())
        return order

    @staticmethod
    def _free(requests: list[TopicRequest], now: datetime):
        T = ExternalTask
        return select(T.id, T.topic).where(
            T.state == "open", or_(T.retries.is_(None), T.retries > 0),
            or_(T.lock_expires_at.is_(None), T.lock_expires_at <= now), or_(*[r.condition() for r in requests]))

    def _fetch_once(self, worker_id: str, max_tasks: int, requests: list[TopicRequest], order: list) -> list[dict]:
        T = ExternalTask
        # A look without the write lock first: idle workers polling must not queue up writers.
        with self.engine.db.reader() as s:
            if s.execute(self._free(requests, self.engine.clock.now()).limit(1)).first() is None:
                return []
        with self.engine.db.transaction() as s:
            now = self.engine.clock.now()
            q = self._free(requests, now).order_by(*order, T.created_at, T.id).limit(max_tasks)
            if not self.engine.db.is_sqlite:
                q = q.with_for_update(skip_locked=True, of=T)
            claimed = s.execute(q).all()
            if not claimed:
                return []
            by_topic: dict[str, TopicRequest] = {}
            for r in requests:
                by_topic.setdefault(r.topic_name, r)
            ids = [tid for tid, _topic in claimed]
            for topic in {topic for _tid, topic in claimed}:
                request = by_topic[topic]
                s.execute(update(T).where(T.id.in_([tid for tid, tp in claimed if tp == topic]))
                          .values(worker_id=worker_id,
                                  lock_expires_at=now + timedelta(milliseconds=request.lock_duration))
                          .execution_options(synchronize_session=False))
            rows = {t.id: t for t in s.execute(select(T).where(T.id.in_(ids))).scalars()}
            out = []
            for tid in ids:
                t = rows[tid]
                request = by_topic[t.topic]
                item = self.task_dict(t, variables=self._selected(t.variables or {}, request))
                item["error_details"] = t.error_details
                if request.include_extension_properties:
                    item["extension_properties"] = dict(t.properties or {})
                out.append(item)
            return out

    @staticmethod
    def _selected(stored: dict, request: TopicRequest) -> dict:
        chosen = {}
        for name, entry in stored.items():
            if request.variables is not None and name not in request.variables:
                continue
            if request.local_variables and not entry.get("local"):
                continue
            chosen[name] = {"value": entry.get("value"), "type": entry.get("type")}
        return chosen

    # ------------------------------------------------------------------- lock handling -------
    def _held(self, s: Session, task_id: str, worker_id: Any, what: str):
        """The task row, locked for this transaction, when `worker_id` holds an unexpired lock."""
        worker_id = _text(worker_id, "workerId", max_length=MAX_WORKER_ID, required=True)
        row = self._row(s, task_id, for_update=True)
        if row.worker_id != worker_id:
            raise ExternalTaskLockError(f"{what} by worker '{worker_id}'. It is locked by worker "
                                        f"'{_lock_holder(row.worker_id)}'.", task_id=task_id)
        now = self.engine.clock.now()
        if row.lock_expires_at is None or row.lock_expires_at <= now:
            expired = row.lock_expires_at.isoformat() if row.lock_expires_at else "?"
            raise ExternalTaskLockError(f"{what} by worker '{worker_id}'. The lock of worker '{worker_id}' "
                                        f"expired at {expired}; fetch and lock the task again.", task_id=task_id)
        return row

    def extend_lock(self, task_id: str, worker_id: str, new_duration: int) -> None:
        new_duration = _whole(new_duration, "newDuration", minimum=1)
        with self.engine.db.transaction() as s:
            self._held(s, task_id, worker_id, f"The lock of the External Task {task_id} cannot be extended")
            self._set(s, task_id, lock_expires_at=self.engine.clock.now() + timedelta(milliseconds=new_duration))

    def lock(self, task_id: str, worker_id: str, lock_duration: int) -> None:
        """Lock one task for a worker (Camunda's POST /external-task/{id}/lock)."""
        worker_id = _text(worker_id, "workerId", max_length=MAX_WORKER_ID, required=True)
        lock_duration = _whole(lock_duration, "lockDuration", minimum=1)
        with self.engine.db.transaction() as s:
            row = self._row(s, task_id, for_update=True)
            now = self.engine.clock.now()
            held = row.lock_expires_at is not None and row.lock_expires_at > now
            if held and row.worker_id != worker_id:
                raise ExternalTaskLockError(f"External Task {task_id} cannot be locked by worker '{worker_id}'. "
                                            f"It is locked by worker '{_lock_holder(row.worker_id)}'.",
                                            task_id=task_id)
            self._set(s, task_id, worker_id=worker_id, lock_expires_at=now + timedelta(milliseconds=lock_duration))

    def unlock(self, task_id: str, *, user: str | None = None) -> None:
        with self.engine.db.transaction() as s:
            self._row(s, task_id, for_update=True)
            self._set(s, task_id, worker_id=None, lock_expires_at=None)
            self._wake_after_commit(s)

    # ------------------------------------------------------------------------ commands -------
    def complete(self, task_id: str, worker_id: str, variables: Mapping[str, Any] | None = None,
                 local_variables: Mapping[str, Any] | None = None, *, user: str | None = None) -> dict:
        """The worker finished: its variables go to the process, the task runs, the engine moves
        on — one transaction. Refused when the worker does not hold an unexpired lock."""
        variables = check_variables(variables)
        local_variables = check_variables(local_variables)
        user = user or str(worker_id)[:64]

        def act(t):
            row = self._held(s, task_id, worker_id, f"External Task {task_id} cannot be completed")
            before = dict(t.data)
            inputs = {p["name"] for p in (t.task_spec.extensions or {}).get("inputs") or []}
            t.data.update(variables)
            t.data.update(local_variables)
            t.run()
            _scrub_locals(t, local_variables, variables, {k: v for k, v in before.items() if k not in inputs})
            return {"action": "complete", "element_id": row.activity_id,
                    "element_name": row.activity_name, "task_id": task_id,
                    "details": {"worker": worker_id, "topic": row.topic, "variables": variables,
                                "local_variables": sorted(local_variables)}}

        try:
            with self.engine.store.command() as s:
                instance_id = self._row(s, task_id).instance_id
                return self.engine.store.run_external_task(s, instance_id, task_id, user, "external_complete", act)
        except ProcessError as exc:
            self._incident_after_failed_step(task_id, worker_id, "complete", exc, user)
            raise

    def _incident_after_failed_step(self, task_id: str, worker_id: str, what: str, exc: ProcessError,
                                    user: str | None) -> None:
        """A completion (or caught BPMN error) the process could not go on from was rolled back;
        the task would be fetched and done again forever, so it stops with an incident."""
        message = f"the process could not continue after {what}: {exc.message}"[:MAX_ERROR_MESSAGE]
        with contextlib.suppress(NotFound), self.engine.db.transaction() as s:
            row = self._row(s, task_id, for_update=True)
            if row.worker_id != worker_id:
                return
            now = self.engine.clock.now()
            self._set(s, task_id, retries=0, error_message=message, error_details=exc.message[:MAX_ERROR_DETAILS])
            self._open_incident(s, row, message, now, user)

    def handle_failure(self, task_id: str, worker_id: str, error_message: str | None,
                       error_details: str | None = None, retries: int | None = 0, retry_timeout: int | None = 0,
                       *, user: str | None = None) -> None:
        """The worker could not do the work: with retries left the task is fetched again after
        `retry_timeout` ms; with none left it becomes an incident."""
        retries = _whole(retries, "retries", minimum=0, maximum=2**31 - 1, default=0)
        retry_timeout = _whole(retry_timeout, "retryTimeout", minimum=0, default=0)
        error_message = _text(error_message, "errorMessage", max_length=100_000)
        error_details = _text(error_details, "errorDetails", max_length=10 * MAX_ERROR_DETAILS)
        user = user or str(worker_id)[:64]
        with self.engine.db.transaction() as s:
            row = self._held(s, task_id, worker_id, f"Failure of External Task {task_id} cannot be reported")
            now = self.engine.clock.now()
            message = error_message[:MAX_ERROR_MESSAGE] if error_message else None
            self._set(s, task_id, retries=retries, error_message=message,
                      error_details=error_details[:MAX_ERROR_DETAILS] if error_details else None,
                      lock_expires_at=now + timedelta(milliseconds=retry_timeout))
            self._history(s, row, user, "external_failure", {
                "worker": worker_id, "message": message, "retries": retries, "retry_timeout_ms": retry_timeout}, now)
            if retries == 0:
                self._open_incident(s, row, message or "the worker reported a failure", now, user)
            self._wake_after_commit(s)

    def handle_bpmn_error(self, task_id: str, worker_id: str, error_code: str, error_message: str | None = None,
                          variables: Mapping[str, Any] | None = None, *, user: str | None = None) -> dict:
        """The worker reports a business error: the boundary error event of the task (or of an
        enclosing sub-process) that catches `error_code` takes over. None catches it: incident.
        Returns {"caught": bool, "incident_id": …}."""
        error_code = _text(error_code, "errorCode", max_length=255, required=True)
        error_message = _text(error_message, "errorMessage", max_length=100_000)
        variables = check_variables(variables)
        user = user or str(worker_id)[:64]

        def act(t):
            row = self._held(s, task_id, worker_id, f"Bpmn error of External Task {task_id} cannot be reported")
            catcher = _error_catcher(t, error_code)
            if catcher is None:
                return None
            payload = dict(variables)
            code_var, message_var = self._error_variable_names(s, row.definition_id, catcher.task_spec.bpmn_id)
            if code_var:
                payload[code_var] = error_code
            if message_var:
                payload[message_var] = error_message
            definition = catcher.task_spec.event_definition
            thrown = BpmnEvent(ErrorEventDefinition(definition.name, error_code), payload=payload,
                               target=t.workflow)
            catcher.task_spec.catch(catcher, thrown)
            catcher.task_spec._update(catcher)
            return {"action": "external_bpmn_error", "element_id": row.activity_id,
                    "element_name": row.activity_name, "task_id": task_id,
                    "details": {"worker": worker_id, "error_code": error_code, "error_message": error_message,
                                "caught_by": catcher.task_spec.bpmn_id, "variables": variables}}

        try:
            with self.engine.store.command() as s:
                instance_id = self._row(s, task_id).instance_id
                done = self.engine.store.run_external_task(s, instance_id, task_id, user, "external_bpmn_error",
                                                           act)
                if done is not None:
                    return {"caught": True, "incident_id": None}
                row = self._row(s, task_id)
                now = self.engine.clock.now()
                message = (f"BPMN error '{error_code}'" + (f" ({error_message})" if error_message else "")
                           + f" is not caught: no boundary error event of '{row.activity_id}' or of an "
                           "enclosing sub-process catches this code")[:MAX_ERROR_MESSAGE]
                self._set(s, task_id, retries=0, error_message=message,
                          error_details=error_message[:MAX_ERROR_DETAILS] if error_message else None)
                self._history(s, row, user, "external_bpmn_error", {
                    "worker": worker_id, "error_code": error_code, "error_message": error_message,
                    "caught_by": None}, now)
                return {"caught": False, "incident_id": self._open_incident(s, row, message, now, user)}
        except ProcessError as exc:
            self._incident_after_failed_step(task_id, worker_id, f"BPMN error '{error_code}'", exc, user)
            raise

    def _error_variable_names(self, s: Session, definition_id: str, boundary_id: str) -> tuple[str | None, str | None]:
        """camunda:errorCodeVariable / errorMessageVariable of a boundary error event (read once
        per definition from its BPMN file: the parser does not keep them)."""
        names = self._error_variables.get(definition_id)
        if names is None:
            names = {}
            content = s.execute(select(Resource.content).join(
                ProcessDefinition, ProcessDefinition.resource_id == Resource.id)
                .where(ProcessDefinition.id == definition_id)).scalar_one_or_none()
            if content:
                parser = etree.XMLParser(resolve_entities=False, no_network=True)
                root = etree.fromstring(content, parser=parser)
                for node in root.iter(f"{{{BPMN_NS}}}boundaryEvent"):
                    ed = node.find(f"{{{BPMN_NS}}}errorEventDefinition")
                    if ed is not None:
                        names[node.get("id")] = (ed.get(f"{{{CAMUNDA_NS}}}errorCodeVariable"),
                                                 ed.get(f"{{{CAMUNDA_NS}}}errorMessageVariable"))
            self._error_variables[definition_id] = names
        return names.get(boundary_id, (None, None))

    def set_retries(self, task_ids: str | Iterable[str], retries: int, *, user: str | None = None) -> None:
        """Camunda's PUT /external-task/{id}/retries. Retries > 0 resolve the task's incident (an
        administrator fixed the cause) and free the task at once; 0 opens one."""
        retries = _whole(retries, "retries", minimum=0, maximum=2**31 - 1)
        ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        with self.engine.db.transaction() as s:
            now = self.engine.clock.now()
            for task_id in ids:
                row = self._row(s, task_id, for_update=True)
                previous = row.retries
                self._set(s, task_id, retries=retries)
                if retries == 0:
                    self._open_incident(s, row, row.error_message or "retries were set to 0", now, user)
                else:
                    self._close_incidents(s, [row.id], "resolved", now, user)
                    if previous == 0:
                        self._set(s, task_id, worker_id=None, lock_expires_at=None)
                self._history(s, row, user, "external_retries", {"retries": retries, "previous": previous}, now)
            self._wake_after_commit(s)

    def set_priority(self, task_id: str, priority: int, *, user: str | None = None) -> None:
        priority = _whole(priority, "priority", minimum=-(2**63), maximum=2**63 - 1)
        with self.engine.db.transaction() as s:
            self._row(s, task_id, for_update=True)
            self._set(s, task_id, priority=priority)

    # ------------------------------------------------------------------ incidents (read) -----
    @staticmethod
    def incident_dict(i: Incident) -> dict:
        return {"id": i.id, "incident_type": i.incident_type, "created_at": i.created_at, "message": i.message,
                "instance_id": i.instance_id, "definition_id": i.definition_id, "process_key": i.process_key,
                "business_key": i.business_key, "tenant_id": i.tenant_id, "activity_id": i.activity_id,
                "configuration": i.configuration, "topic": i.topic, "state": i.state,
                "resolved_at": i.resolved_at, "resolved_by": i.resolved_by, "annotation": i.annotation}

    def _incident_filter(self, q, f: IncidentQuery):
        if f.state is not None:
            q = q.where(Incident.state == f.state)
        for value, column in ((f.incident_id, Incident.id), (f.incident_type, Incident.incident_type),
                              (f.message, Incident.message), (f.instance_id, Incident.instance_id),
                              (f.definition_id, Incident.definition_id), (f.activity_id, Incident.activity_id),
                              (f.configuration, Incident.configuration)):
            if value is not None:
                q = q.where(column == value)
        if f.message_like is not None:
            q = q.where(Incident.message.like(like_pattern(f.message_like), escape=LIKE_ESCAPE))
        if f.process_keys is not None:
            q = q.where(Incident.process_key.in_(f.process_keys))
        if f.tenant_ids is not None:
            q = q.where(Incident.tenant_id.in_(f.tenant_ids))
        return q

    def query_incidents(self, f: IncidentQuery | None = None) -> tuple[list[dict], int]:
        f = f or IncidentQuery()
        order = []
        for key, descending in f.order:
            column = INCIDENT_SORT_COLUMNS.get(key)
            if column is None:
                raise InvalidInput(f"Cannot set query parameter 'sortBy' to value '{key}'", field="sortBy")
            order.append(column.desc() if descending else column.asc())
        with self.engine.db.reader() as s:
            total = s.execute(self._incident_filter(select(func.count(Incident.id)), f)).scalar_one()
            q = self._incident_filter(select(Incident), f).order_by(*order, Incident.created_at.desc(), Incident.id)
            q = q.offset(max(0, f.offset)).limit(max(0, min(f.limit, MAX_TASKS)))
            return [self.incident_dict(i) for i in s.execute(q).scalars()], total

    def get_incident(self, incident_id: str) -> dict:
        """An incident with what its external task says now (retries, worker, error details)."""
        with self.engine.db.reader() as s:
            found = s.get(Incident, incident_id)
            if found is None:
                raise NotFound(f"Incident with id {incident_id} does not exist", incident_id=incident_id)
            out = self.incident_dict(found)
            task = s.get(ExternalTask, found.configuration) if found.configuration else None
            out["task"] = None if task is None else {
                **self.task_dict(task), "error_details": task.error_details}
            return out

    def count_open_incidents(self) -> int:
        return self.query_incidents(IncidentQuery(limit=0))[1]

    def annotate_incident(self, incident_id: str, annotation: str | None, *, user: str | None = None) -> None:
        annotation = _text(annotation, "annotation", max_length=4000)
        with self.engine.db.transaction() as s:
            found = s.get(Incident, incident_id)
            if found is None:
                raise NotFound(f"Incident with id {incident_id} does not exist", incident_id=incident_id)
            found.annotation = annotation

    def retry_incident(self, incident_id: str, *, retries: int = 1, user: str | None = None) -> None:
        """Retry after fixing the cause: give the incident's task `retries` again."""
        incident = self.get_incident(incident_id)
        if incident["state"] != "open":
            raise Conflict(f"incident {incident_id} is {incident['state']} already", incident_id=incident_id)
        if incident["task"] is None or incident["task"]["state"] != "open":
            raise Conflict(f"the task of incident {incident_id} is no longer active", incident_id=incident_id)
        self.set_retries(incident["configuration"], retries, user=user)


# ------------------------------------------------------------------------------ helpers ------
def _error_catcher(task, error_code: str):
    """The waiting boundary error event that catches `error_code` thrown by `task`: one attached
    to the task, else to the sub-process around it, outwards. An event for exactly this code
    wins over a catch-all one (no errorRef or an error without a code)."""
    node = task
    while node is not None:
        parent = node.parent
        if parent is not None and isinstance(parent.task_spec, BoundaryEventSplit):
            exact, catch_all = None, None
            for child in parent.children:
                spec = child.task_spec
                if not isinstance(spec, BoundaryEvent) or child.state != TaskState.WAITING:
                    continue
                definition = spec.event_definition
                if not isinstance(definition, ErrorEventDefinition):
                    continue
                if definition.code == error_code and exact is None:
                    exact = child
                elif definition.code in (None, "") and catch_all is None:
                    catch_all = child
            if exact is not None or catch_all is not None:
                return exact or catch_all
        workflow = node.workflow
        parent_task_id = getattr(workflow, "parent_task_id", None)
        if parent_task_id is None:
            return None
        node = workflow.top_workflow.get_task_from_id(parent_task_id)
    return None


def _scrub_locals(task, local_variables: Mapping[str, Any], variables: Mapping[str, Any], before: Mapping) -> None:
    """Local variables of a completion live only while the task completes (its output mappings
    may read them); afterwards the process sees what it saw before (or the global value)."""
    if not local_variables:
        return
    outputs = {p["name"] for p in (task.task_spec.extensions or {}).get("outputs") or []}
    targets = [task] + [c for c in task.children if not c.has_state(TaskState.FINISHED_MASK)]
    for name in local_variables:
        if name in outputs:
            continue
        for target in targets:
            if name in variables:
                target.data[name] = variables[name]
            elif name in before:
                target.data[name] = before[name]
            else:
                target.data.pop(name, None)
