"""Process instances: start (by key, definition or a named start event), set variables, cancel,
and read one instance with its variables, active elements, path and history."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.timer import CycleTimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent as StartEventMixin
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import delete, select, update

from engine.dialect.scripting import DialectScriptEngine
from engine.errors import STALE_RETRIES, Conflict, InvalidInput, NotFound, StaleInstance
from engine.models import (
    HistoryEvent,
    InstanceVariable,
    MessageSubscription,
    ProcessDefinition,
    ProcessInstance,
    Task,
    TaskCandidate,
    Timer,
)
from engine.projections import Snapshot
from engine.store import Command, InstanceRecord, Loaded, UseCase
from engine.variables import check_variables


class Instances(UseCase):
    """Start, change and cancel process instances; read one instance."""

    def start(self, process_key: str | None = None, *, definition_id: str | None = None,
              business_key: str | None = None, variables: Mapping[str, Any] | None = None,
              user: str | None = None, parent_instance_id: str | None = None,
              start_event: str | None = None) -> dict:
        """Start an instance of the newest version of `process_key` (or of `definition_id`)."""
        variables = check_variables(variables)
        if business_key is not None and (not isinstance(business_key, str) or len(business_key) > 255
                                         or "\x00" in business_key):
            raise InvalidInput("businessKey must be text of at most 255 characters")
        # a start that delivers a thrown message to another instance may meet that instance changed
        # since it read it (SQLite reads before the write lock): run again on the fresh state
        for attempt in range(STALE_RETRIES):
            try:
                with self.store.command(optimistic=True) as s:
                    return self.start_in(s, process_key, definition_id, business_key, variables, user,
                                         parent_instance_id, start_event)
            except StaleInstance:
                if attempt == STALE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def start_in(self, s, process_key, definition_id, business_key, variables, user, parent_instance_id,
                 start_event=None) -> dict:
        if definition_id:
            definition = self.store.definition_info(s, definition_id)
        elif process_key:
            definition = self.store.definition_info(s, self.store.latest_definition_id(s, process_key))
        else:
            raise InvalidInput("give a process key or a definition id")
        spec, subprocess_specs = self.store.specs(s, definition)
        now = self.clock.now()
        row = InstanceRecord(str(uuid.uuid4()), definition.id, definition.key, business_key, "active", 1, now,
                             None, user, parent_instance_id, {})
        workflow = BpmnWorkflow(spec, subprocess_specs)
        workflow.script_engine = DialectScriptEngine(self.store.runtime(s, row, definition))
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
        self.choose_start_event(workflow, start_event)
        cmd = Command(user, "start")
        cmd.events.append({"action": "start", "details": {"process": definition.key,
                                                          "version": definition.version,
                                                          "business_key": business_key,
                                                          "parent_instance_id": parent_instance_id}})
        before = Snapshot({}, {}, {}, {}, {}, {}, {})
        self.store.run_engine(workflow, definition, cmd)
        self.store.save(s, Loaded(row, definition, workflow, before), cmd, is_new=True)
        return self.store.instance_summary(row)

    @staticmethod
    def choose_start_event(workflow: BpmnWorkflow, start_event: str | None) -> None:
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

    def set_variables(self, instance_id: str, variables: Mapping[str, Any], *, user: str | None = None) -> None:
        variables = check_variables(variables)
        with self.store.command() as s:
            loaded = self.store.load(s, instance_id)
            loaded.workflow.data.update(variables)
            self.store.save(s, loaded, Command(user, "set_variables"))

    def cancel(self, instance_id: str, *, user: str | None = None, reason: str | None = None) -> None:
        with self.store.command() as s:
            loaded = self.store.load(s, instance_id)
            row, workflow = loaded.row, loaded.workflow
            self.store.workflows.drop(row.id)
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
                self.engine.external_tasks.on_cancel(s, row.id, now)
            self.store.record(s, row.id, user, "cancel", details={"reason": reason})

    def variables(self, instance_id: str) -> dict:
        with self.db.reader() as s:
            row = s.get(ProcessInstance, instance_id)
            if row is None:
                raise NotFound(f"process instance '{instance_id}' does not exist", instance_id=instance_id)
            return {v.name: {"value": v.value, "type": v.type_name} for v in s.execute(
                select(InstanceVariable).where(InstanceVariable.instance_id == instance_id)).scalars()}

    def get(self, instance_id: str) -> dict:
        """An instance: status, variables, active elements, the path taken and its history."""
        with self.db.reader() as s:
            row = s.get(ProcessInstance, instance_id)
            if row is None:
                raise NotFound(f"process instance '{instance_id}' does not exist", instance_id=instance_id)
            info = self.store.instance_summary(row)
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
            info["tasks"] = [self.engine.queries.task_dict(t) for t in s.execute(
                select(Task).where(Task.instance_id == instance_id).order_by(Task.created_at)).scalars()]
            info["children"] = [self.store.instance_summary(c) for c in s.execute(
                select(ProcessInstance).where(ProcessInstance.parent_instance_id == instance_id)).scalars()]
            info["definition_key"] = definition.key
            info["state_bytes"] = len(row.state)
            return info
