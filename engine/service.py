"""The engine's public face: every use case is one method and one transaction.

    engine = WorkflowEngine.from_settings(Settings.from_env())
    engine.deploy_directory()
    instance = engine.start("complaint", business_key="TS-2026-0001", variables={...}, user="frontdesk")
    engine.complete(task_id, {"facts": "..."}, user="head_surgery")

`WorkflowEngine` only delegates; the work is done by one module per use case:

    store.py           the unit of work: load an instance under a lock, run SpiffWorkflow, save
                       the state with its projections (projections.py) and history, commit
    definitions.py     deployments and process definitions      decisions.py   DMN decisions
    instances.py       start, variables, cancel, read one       tasks.py       claim, assign, complete, forms
    messages.py        correlation and delivery                 timers.py      timer rows, the fire loop
    calendar_admin.py  the calendar in use and its overrides    queries.py     task and instance queries
    variables.py       checks, Camunda types, JSON form         external.py    external (service) tasks
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from engine import calendar as hospital_calendar
from engine.access import Caller
from engine.audit import AuditLog
from engine.calendar_admin import CalendarAdmin
from engine.clock import Clock
from engine.config import Settings
from engine.db import Database
from engine.decisions import Decisions
from engine.definitions import Definitions
from engine.deployment import Deployer, DeploymentResult
from engine.external import ExternalTaskService
from engine.forms import TaskForm
from engine.instances import Instances
from engine.messages import Messages
from engine.projections import sla_state
from engine.queries import Queries, TaskQuery, TaskScope, offered_task_ids
from engine.serialization import StateSerializer
from engine.store import Store, WorkflowCache
from engine.tasks import Tasks
from engine.timer_queue import DueTimerPlan
from engine.timers import TIMER_BUSY, Timers

# Names the web layer, the scheduler, engine/access.py and the tests import from here.
__all__ = ["TIMER_BUSY", "TaskQuery", "TaskScope", "WorkflowEngine", "offered_task_ids"]


class WorkflowEngine:
    def __init__(self, db: Database, settings: Settings | None = None, clock: Clock | None = None,
                 calendar: hospital_calendar.HospitalCalendar | None = None):
        self.db = db
        self.settings = settings or Settings()
        self.clock = clock or Clock()
        self.serializer = StateSerializer()
        self.deployer = Deployer(self)
        self.timer_plan = DueTimerPlan()  # the fair order due timers fire in (engine/timer_queue.py)
        self.store = Store(self)
        self.calendar_admin = CalendarAdmin(self, calendar)
        self.definitions = Definitions(self)
        self.decisions = Decisions(self)
        self.instances = Instances(self)
        self.tasks = Tasks(self)
        self.messages = Messages(self)
        self.timers = Timers(self)
        self.queries = Queries(self)
        self._external_tasks = None
        self._audit = None

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock | None = None) -> WorkflowEngine:
        return cls(Database(settings.database_url), settings, clock)

    @property
    def audit(self):
        """The audit log of reads and security events: engine.audit.AuditLog."""
        if self._audit is None:
            self._audit = AuditLog(self.db, self.clock)
        return self._audit

    @property
    def external_tasks(self):
        """External (service) tasks: engine.external.ExternalTaskService."""
        if self._external_tasks is None:
            self._external_tasks = ExternalTaskService(self)
        return self._external_tasks

    def init_db(self) -> None:
        self.db.upgrade()

    # Seams white-box tests patch or read (tests/integration/test_timers.py, tests/dialect): each
    # names the store's or the timers' own method, so patching it here patches the one every
    # command uses.
    @property
    def _save(self):
        return self.store.save

    @_save.setter
    def _save(self, save) -> None:
        self.store.save = save

    @property
    def _load(self):
        return self.store.load

    @property
    def _fire(self):
        return self.timers.fire

    @_fire.setter
    def _fire(self, fire) -> None:
        self.timers.fire = fire

    @property
    def _fire_planned(self):
        return self.timers.fire_planned

    @property
    def _workflows(self) -> WorkflowCache:
        return self.store.workflows

    # ------------------------------------------------------------------ calendar & functions --
    @property
    def calendar(self) -> hospital_calendar.HospitalCalendar:
        return self.calendar_admin.calendar

    def reload_calendar(self) -> None:
        self.calendar_admin.reload()

    def functions(self) -> dict:
        return self.calendar_admin.functions()

    def function_names(self) -> set[str]:
        return self.calendar_admin.function_names()

    def calendar_overrides(self) -> dict:
        return self.calendar_admin.overrides()

    def set_calendar_day(self, day: date, is_working: bool, name: str = "", *, user: str | None = None) -> None:
        self.calendar_admin.set_day(day, is_working, name, user=user)

    def remove_calendar_day(self, day: date, *, user: str | None = None) -> None:
        self.calendar_admin.remove_day(day, user=user)

    def confirm_calendar_year(self, year: int, note: str = "", *, user: str | None = None,
                              seed_from_package: bool = False) -> None:
        self.calendar_admin.confirm_year(year, note, user=user, seed_from_package=seed_from_package)

    # ---------------------------------------------------------------- deployments & definitions --
    def deploy(self, files: list[tuple[str, bytes]], *, name: str = "deployment", source: str | None = None,
               user: str | None = None, changed_only: bool = True,
               tenant_id: str | None = None) -> DeploymentResult:
        return self.definitions.deploy(files, name=name, source=source, user=user, changed_only=changed_only,
                                       tenant_id=tenant_id)

    def deploy_directory(self, directory: Path | None = None, *, user: str | None = None) -> DeploymentResult:
        return self.definitions.deploy_directory(directory, user=user)

    def list_definitions(self, key: str | None = None, latest_only: bool = False) -> list[dict]:
        return self.definitions.list_definitions(key, latest_only)

    def get_definition(self, definition_id: str) -> dict:
        return self.definitions.get_definition(definition_id)

    def definition_xml(self, definition_id: str) -> tuple[str, bytes]:
        return self.definitions.definition_xml(definition_id)

    def list_deployments(self, *, deployment_id: str | None = None, name: str | None = None,
                         name_like: str | None = None, source: str | None = None) -> list[dict]:
        return self.definitions.list_deployments(deployment_id=deployment_id, name=name, name_like=name_like,
                                                 source=source)

    def get_deployment(self, deployment_id: str) -> dict:
        return self.definitions.get_deployment(deployment_id)

    def deployment_resource(self, deployment_id: str, resource_id: str) -> tuple[str, bytes]:
        return self.definitions.deployment_resource(deployment_id, resource_id)

    def latest_resource_hashes(self, deployment_name: str, resource_names: Iterable[str], *,
                               source: str | None = None, tenant_id: str | None = None) -> dict[str, str]:
        return self.definitions.latest_resource_hashes(deployment_name, resource_names, source=source,
                                                       tenant_id=tenant_id)

    def delete_deployment(self, deployment_id: str, *, cascade: bool = False, user: str | None = None) -> dict:
        return self.definitions.delete_deployment(deployment_id, cascade=cascade, user=user)

    # ------------------------------------------------------------------------------ decisions --
    def evaluate_decision(self, key: str | None = None, variables: Mapping | None = None, *,
                          definition_id: str | None = None, version: int | None = None) -> list[dict]:
        return self.decisions.evaluate(key, variables, definition_id=definition_id, version=version)

    def list_decisions(self, key: str | None = None) -> list[dict]:
        return self.decisions.list_decisions(key)

    # ------------------------------------------------------------------------------ instances --
    def start(self, process_key: str | None = None, *, definition_id: str | None = None,
              business_key: str | None = None, variables: Mapping[str, Any] | None = None,
              user: str | None = None, parent_instance_id: str | None = None,
              start_event: str | None = None) -> dict:
        """Start an instance of the newest version of `process_key` (or of `definition_id`)."""
        return self.instances.start(process_key, definition_id=definition_id, business_key=business_key,
                                    variables=variables, user=user, parent_instance_id=parent_instance_id,
                                    start_event=start_event)

    def set_variables(self, instance_id: str, variables: Mapping[str, Any], *, user: str | None = None) -> None:
        self.instances.set_variables(instance_id, variables, user=user)

    def cancel(self, instance_id: str, *, user: str | None = None, reason: str | None = None) -> None:
        self.instances.cancel(instance_id, user=user, reason=reason)

    def get_variables(self, instance_id: str) -> dict:
        return self.instances.variables(instance_id)

    def get_instance(self, instance_id: str) -> dict:
        """An instance: status, variables, active elements, the path taken and its history."""
        return self.instances.get(instance_id)

    # ---------------------------------------------------------------------------------- tasks --
    def claim(self, task_id: str, user: str, *, force: bool = False) -> dict:
        return self.tasks.claim(task_id, user, force=force)

    def unclaim(self, task_id: str, user: str | None) -> dict:
        return self.tasks.unclaim(task_id, user)

    def assign(self, task_id: str, assignee: str | None, user: str | None) -> dict:
        return self.tasks.assign(task_id, assignee, user)

    def complete(self, task_id: str, variables: Mapping[str, Any] | None = None, *, user: str | None = None,
                 require_assignee: bool = False, submission=None) -> dict:
        """Complete a human task with data (or a form's `submission`); the instance with its
        `next_tasks` (engine/tasks.py). Raises Conflict when the task is not open any more, is
        assigned to someone else, or the instance changed meanwhile."""
        return self.tasks.complete(task_id, variables, user=user, require_assignee=require_assignee,
                                   submission=submission)

    def task_form(self, task_id: str) -> TaskForm:
        return self.tasks.form(task_id)

    def start_form(self, process_key: str | None = None, *, definition_id: str | None = None) -> TaskForm:
        """The form of the none start event (camunda:formData), for start pages and the REST API."""
        return self.tasks.start_form(process_key, definition_id=definition_id)

    def sla_state(self, due: datetime | None, now: datetime) -> str:
        return sla_state(due, now, self.settings.due_soon_minutes)

    # ------------------------------------------------------------------------------- messages --
    def correlate_message(self, message_name: str, *, business_key: str | None = None,
                          correlation_keys: Mapping[str, Any] | None = None,
                          variables: Mapping[str, Any] | None = None, user: str | None = None,
                          all_matches: bool = False, caller: Caller | None = None) -> list[dict]:
        """Deliver a message to the instances waiting for it, or start an instance at a message
        start event (engine/messages.py). With a `caller`, only instances within their reach match."""
        return self.messages.correlate(message_name, business_key=business_key, correlation_keys=correlation_keys,
                                       variables=variables, user=user, all_matches=all_matches, caller=caller)

    # --------------------------------------------------------------------------------- timers --
    def fire_next_due(self) -> str | None:
        """Fire one due timer in its own transaction: its id, TIMER_BUSY, or None (engine/timers.py)."""
        return self.timers.fire_next_due()

    def fire_due_timers(self, limit: int = 100_000) -> int:
        return self.timers.fire_due_timers(limit)

    def postpone_timer(self, timer_id: str, error: str) -> None:
        self.timers.postpone(timer_id, error)

    def refresh_sla(self) -> int:
        return self.timers.refresh_sla()

    # -------------------------------------------------------------------------------- queries --
    def task_dict(self, t) -> dict:
        return self.queries.task_dict(t)

    def list_tasks(self, f: TaskQuery | None = None, **kwargs) -> list[dict]:
        return self.queries.tasks(f or TaskQuery(**kwargs))

    def count_tasks(self, f: TaskQuery | None = None, **kwargs) -> int:
        return self.queries.count_tasks(f or TaskQuery(**kwargs))

    def query_tasks(self, f: TaskQuery, *, order: Iterable[tuple[str, bool]] = (("due", False),),
                    visible_to: tuple[str, list[str]] | None = None,
                    offered_to: tuple[str, list[str]] | None = None, definition_id: str | None = None,
                    name: str | None = None, name_like: str | None = None) -> tuple[list[dict], int]:
        """One page of tasks and the total, sorted by (field, descending) pairs (engine/queries.py)."""
        return self.queries.tasks(f, scope=TaskScope(visible_to, offered_to, definition_id, name, name_like),
                                  order=order, total=True)

    def get_task(self, task_id: str) -> dict:
        return self.queries.get_task(task_id)

    def list_instances(self, *, process_key: str | None = None, business_key: str | None = None,
                       status: str | None = None, instance_ids: Iterable[str] | None = None,
                       parent_instance_id: str | None = None, search: str | None = None,
                       offset: int = 0, limit: int = 50) -> list[dict]:
        return self.queries.instances(process_key=process_key or None, business_key=business_key or None,
                                      status=status or None, instance_ids=instance_ids,
                                      parent_instance_id=parent_instance_id or None, search=search,
                                      offset=offset, limit=limit)

    def query_instances(self, *, definition_id: str | None = None, process_key: str | None = None,
                        business_key: str | None = None, business_key_like: str | None = None,
                        instance_ids: Iterable[str] | None = None, deployment_id: str | None = None,
                        status: str | None = None, search: str | None = None,
                        visible_to: tuple[str, list[str]] | None = None,
                        order: Iterable[tuple[str, bool]] = (("started_at", True),), offset: int = 0,
                        limit: int = 50) -> tuple[list[dict], int]:
        """One page of instances and the total (engine/queries.py)."""
        return self.queries.instances(definition_id=definition_id, process_key=process_key,
                                      business_key=business_key, business_key_like=business_key_like,
                                      instance_ids=instance_ids, deployment_id=deployment_id, status=status,
                                      search=search, visible_to=visible_to, order=order, offset=offset,
                                      limit=limit, total=True)

    def count_instances(self, **filters) -> int:
        return self.queries.count_instances(**filters)

    def history(self, instance_id: str | None = None, limit: int = 200) -> list[dict]:
        """The newest history events (of one instance, or of the whole service: deployments too)."""
        return self.queries.history(instance_id, limit)

    def element_activity(self, definition_id: str) -> dict[str, dict[str, int]]:
        return self.queries.element_activity(definition_id)

    def staff_member(self, username: str) -> tuple[bool, list[str]] | None:
        """(active, groups) of an account, or None when there is no such user."""
        return self.queries.staff_member(username)

    def user_groups(self, username: str) -> list[str]:
        return self.queries.user_groups(username)
