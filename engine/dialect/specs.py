"""Task specs and timer definitions that give SpiffWorkflow Camunda 7 behaviour.

Each spec reads what the parser put in `spec.extensions` (see `extensions.py`) and evaluates it
through the workflow's script engine (`engine.dialect.scripting.DialectScriptEngine`), which knows
the `${…}` language, the injected clock and the decision service.
"""

from __future__ import annotations

from copy import deepcopy
from datetime import UTC, datetime
from typing import Any

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit, _EndJoin
from SpiffWorkflow.bpmn.specs.data_spec import TaskDataReference
from SpiffWorkflow.bpmn.specs.defaults import (
    BoundaryEvent,
    CallActivity,
    EndEvent,
    EventSubprocess,
    IntermediateThrowEvent,
    ManualTask,
    NoneTask,
    ParallelMultiInstanceTask,
    ScriptTask,
    SequentialMultiInstanceTask,
    StartEvent,
    UserTask,
)
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import (
    ErrorEventDefinition,
    EscalationEventDefinition,
)
from SpiffWorkflow.bpmn.specs.event_definitions.simple import TerminateEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.specs.mixins.bpmn_spec_mixin import BpmnSpecMixin
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent as BoundaryEventMixin
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent as StartEventMixin
from SpiffWorkflow.bpmn.util import PendingBpmnEvent
from SpiffWorkflow.bpmn.util.event import BpmnEvent
from SpiffWorkflow.util.task import TaskState

from engine.dialect import juel
from engine.dialect import timers as timer_lang


def _engine(my_task):
    return my_task.workflow.script_engine


def _fail(my_task, message: str, exc: Exception | None = None):
    raise WorkflowTaskException(message, task=my_task, exception=exc)


_MISSING = object()
ACTIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED


# -- local variables (camunda:inputOutput, multi-instance) ----------------------------------------

def set_local_variables(my_task, values: dict[str, Any]) -> None:
    """Give the activity variables of its own: visible to it (scripts, expressions, forms,
    workers) and dropped when it ends; a process variable of the same name is hidden meanwhile
    and comes back unchanged."""
    local = my_task.internal_data.setdefault("local_variables", [])
    shadowed = my_task.internal_data.setdefault("shadowed_variables", {})
    for name, value in values.items():
        if name not in local:
            if name in my_task.data:
                shadowed[name] = my_task.data[name]
            local.append(name)
        my_task.data[name] = value


def drop_local_variables(my_task, keep: dict[str, Any] | None = None) -> None:
    """End of the activity: its local variables go, hidden process variables come back, then
    `keep` (the output mappings) is written."""
    keep = keep or {}
    shadowed = my_task.internal_data.get("shadowed_variables") or {}
    for name in my_task.internal_data.get("local_variables") or []:
        if name in keep:
            continue
        if name in shadowed:
            my_task.data[name] = shadowed[name]
        else:
            my_task.data.pop(name, None)
    my_task.data.update(keep)


def apply_inputs(spec, my_task) -> None:
    """camunda:inputParameter: evaluated in order (a later one sees the earlier ones)."""
    if my_task.internal_data.get("inputs_applied"):
        return  # already applied (a task may be made ready more than once)
    inputs = (getattr(spec, "extensions", None) or {}).get("inputs") or []
    my_task.internal_data["inputs_applied"] = True
    engine = _engine(my_task)
    for param in inputs:
        set_local_variables(my_task, {param["name"]: engine.evaluate_parameter(my_task, param)})


def apply_outputs(spec, my_task) -> None:
    """camunda:outputParameter: computed from what the activity sees when it ends (its local
    variables included), written to the process; the local variables are dropped."""
    outputs = (getattr(spec, "extensions", None) or {}).get("outputs") or []
    engine = _engine(my_task)
    values = {p["name"]: engine.evaluate_parameter(my_task, p) for p in outputs}
    drop_local_variables(my_task, values)


class IoMappingMixin:
    """camunda:inputOutput: input parameters become local variables of the activity when it
    starts, output parameters are computed from them when it ends; inputs do not leak to the
    process (a process variable they hide is restored)."""

    def _on_ready_hook(self, my_task):
        apply_inputs(self, my_task)
        super()._on_ready_hook(my_task)

    def _on_complete_hook(self, my_task):
        apply_outputs(self, my_task)
        super()._on_complete_hook(my_task)


class DialectScriptTask(IoMappingMixin, ScriptTask):
    """A script task (Python, run in the sandbox) with camunda:inputOutput."""


class DialectNoneTask(IoMappingMixin, NoneTask):
    """A task without a type; with camunda:inputOutput its output parameters compute variables."""


class DialectManualTask(IoMappingMixin, ManualTask):
    """A manual task (done outside the system, confirmed in the task list) with camunda:inputOutput."""


class HumanTask(IoMappingMixin, UserTask):
    """A user task; its assignment (assignee, candidates, due date, priority) is evaluated when it
    becomes ready and kept in the task's internal data for the task table."""

    def _on_ready_hook(self, my_task):
        super()._on_ready_hook(my_task)
        ext = self.extensions or {}
        engine = _engine(my_task)
        assignment: dict[str, Any] = {}
        for attr in ("assignee", "candidateUsers", "candidateGroups", "dueDate", "followUpDate", "priority"):
            text = ext.get(attr)
            if text is None or text == "":
                continue
            value = engine.evaluate_attribute(my_task, text, attribute=f"camunda:{attr}")
            if attr in ("candidateUsers", "candidateGroups"):
                value = _as_list(value)
            elif attr in ("dueDate", "followUpDate"):
                value = engine.to_datetime(value, my_task, attribute=f"camunda:{attr}")
                value = value.isoformat() if value is not None else None
            elif attr == "priority":
                try:
                    value = int(value)
                except (TypeError, ValueError) as exc:
                    _fail(my_task, f"camunda:priority must be a whole number, got {value!r}", exc)
            elif value is not None:
                value = str(value)
            assignment[attr] = value
        my_task.internal_data["assignment"] = assignment


class ExternalServiceTask(IoMappingMixin, UserTask):
    """A service/send/business-rule task with camunda:type="external": it waits until a worker
    completes it over the external-task API."""

    def _on_ready_hook(self, my_task):
        super()._on_ready_hook(my_task)
        ext = self.extensions or {}
        engine = _engine(my_task)
        priority = ext.get("taskPriority")
        if priority:
            priority = int(engine.evaluate_attribute(my_task, priority, attribute="camunda:taskPriority"))
        topic = engine.evaluate_attribute(my_task, ext.get("topic", ""), attribute="camunda:topic")
        my_task.internal_data["external"] = {"topic": str(topic), "priority": priority or 0}


class DecisionTask(IoMappingMixin, BpmnSpecMixin):
    """A business rule task: evaluates a DMN decision of the engine (camunda:decisionRef)."""

    def _run_hook(self, my_task):
        ext = self.extensions or {}
        engine = _engine(my_task)
        key = engine.evaluate_attribute(my_task, ext["decisionRef"], attribute="camunda:decisionRef")
        binding = ext.get("decisionRefBinding") or "latest"
        version = ext.get("decisionRefVersion")
        if version is not None:
            version = int(engine.evaluate_attribute(my_task, version, attribute="camunda:decisionRefVersion"))
        result = engine.evaluate_decision(my_task, str(key), binding=binding, version=version)
        variable = ext.get("resultVariable")
        mode = ext.get("mapDecisionResult") or "resultList"
        if variable:
            my_task.data[variable] = engine.map_decision_result(my_task, result, mode)
        return super()._run_hook(my_task)


# -- multi-instance ------------------------------------------------------------------------------

class CollectionReference(TaskDataReference):
    """camunda:collection: a variable name or a `${…}` expression that gives the list the
    instances are made for. Evaluated once, when the multi-instance activity starts."""

    def get(self, my_task):
        cached = my_task.internal_data.get("mi_collection", _MISSING)
        if cached is not _MISSING:
            return cached
        text = self.bpmn_id.strip()
        engine = _engine(my_task)
        if juel.is_expression(text):
            value = engine.evaluate_attribute(my_task, text, attribute="camunda:collection")
        elif text in my_task.data:
            value = my_task.data[text]
        else:
            _fail(my_task, f"camunda:collection: there is no variable '{text}'")
        if isinstance(value, (set, frozenset, tuple)):
            value = list(value)
        if not isinstance(value, list):
            _fail(my_task, f"camunda:collection '{text}' must give a list, got {type(value).__name__}")
        my_task.internal_data["mi_collection"] = value
        return value

    def exists(self, my_task):
        return True

    def set(self, my_task, value):
        raise WorkflowTaskException("camunda:collection cannot be written", task=my_task)


class _CamundaMultiInstance:
    """Camunda's multi-instance: each instance has its own element variable (camunda:elementVariable)
    and `loopCounter`, which never reach the process; the completion condition also sees
    `nrOfInstances`, `nrOfActiveInstances` and `nrOfCompletedInstances`."""

    LOOP_COUNTER = "loopCounter"

    def _instance_locals(self, my_task, item, index) -> dict[str, Any]:
        values = {self.LOOP_COUNTER: index}
        if self.input_item is not None:
            values[self.input_item.bpmn_id] = deepcopy(item)
        return values

    def create_child(self, my_task, item, key_or_index=None):
        task_spec = my_task.workflow.spec.task_specs[self.task_spec]
        if not task_spec.completed_event.is_connected(self.merge_child):
            task_spec.completed_event.connect(self.merge_child)
        index = my_task.internal_data.get("mi_created", 0)
        my_task.internal_data["mi_created"] = index + 1
        local = self._instance_locals(my_task, item, index)
        # The instance inherits its data from the multi-instance task when it is updated: put the
        # instance's own variables there for that moment only (a process variable of the same
        # name is hidden for the instance and kept for the process).
        saved = {name: my_task.data.get(name, _MISSING) for name in local}
        my_task.data.update(local)
        try:
            child = my_task._add_child(task_spec, TaskState.WAITING)
            child.triggered = True
            # local to the instance: not a process variable, dropped when the instance ends
            child.internal_data["local_variables"] = list(local)
            child.internal_data["mi_values"] = deepcopy(local)
            if key_or_index is not None:
                child.internal_data["key_or_index"] = key_or_index
            else:
                child.internal_data["item"] = item
            child.task_spec._update(child)
        finally:
            for name, value in saved.items():
                if value is _MISSING:
                    my_task.data.pop(name, None)
                else:
                    my_task.data[name] = value

    def merge_child(self, workflow, child):
        # The instance's own variables stay with the instance (the completion condition sees them
        # in internal_data["mi_values"]).
        for name in child.internal_data.get("mi_values") or {}:
            child.data.pop(name, None)
        super().merge_child(workflow, child)

    def _counts(self, my_task) -> dict[str, int]:
        merged = len(my_task.internal_data.get("merged", []))
        if isinstance(self, SequentialMultiInstanceTask):
            if self.data_input is not None:
                total = len(self.data_input.get(my_task))
            else:
                total = my_task.internal_data.get("cardinality", 0)
            active = 0 if merged >= total else 1
        else:
            total = len(list(self._instances(my_task)))
            active = len([c for c in self._instances(my_task) if not c.has_state(TaskState.FINISHED_MASK)])
        return {"nrOfInstances": total, "nrOfCompletedInstances": merged, "nrOfActiveInstances": active}

    def check_completion_condition(self, my_task):
        merged = my_task.internal_data.get("merged", [])
        if not merged or self.condition is None or not self.condition.strip():
            return False
        last = next(c for c in my_task.children if str(c.id) == merged[-1])
        context = dict(last.internal_data.get("mi_values") or {})
        context.update(self._counts(my_task))
        result = _engine(my_task).evaluate(last, self.condition, external_context=context)
        return bool(result)


class CamundaParallelMultiInstance(_CamundaMultiInstance, ParallelMultiInstanceTask):
    pass


class CamundaSequentialMultiInstance(_CamundaMultiInstance, SequentialMultiInstanceTask):
    pass


# -- call activity ---------------------------------------------------------------------------------

class DialectCallActivity(CallActivity):
    """A call activity with Camunda's variable passing: only what camunda:in / camunda:out say
    goes into the called process and comes back (SpiffWorkflow would copy everything both ways).

    camunda:in: `variables="all"` (every variable the call activity sees; with `local="true"` only
    its own, i.e. its input parameters), `source`/`sourceExpression` → `target`, `businessKey`
    (the called process's business key, as `execution.processBusinessKey` inside it).
    camunda:out: `variables="all"`, `source`/`sourceExpression` (evaluated in the called process)
    → `target`; `local="true"` makes them local variables of the call activity (visible to its
    output parameters only). camunda:inputOutput works as on any activity."""

    def copy_data(self, my_task, subworkflow):
        ext = self.extensions or {}
        apply_inputs(self, my_task)
        engine = _engine(my_task)
        local_names = set(my_task.internal_data.get("local_variables") or [])
        child: dict[str, Any] = {}
        for mapping in ext.get("callIn") or []:
            local_only = (mapping.get("local") or "").lower() == "true"
            if mapping.get("businessKey") is not None:
                key = engine.evaluate_attribute(my_task, mapping["businessKey"], attribute="camunda:in businessKey")
                my_task.internal_data["business_key"] = None if key is None else str(key)
                continue
            if mapping.get("variables") == "all":
                child.update({k: deepcopy(v) for k, v in my_task.data.items()
                              if not local_only or k in local_names})
                continue
            target = mapping.get("target") or mapping.get("source")
            if not target:
                continue
            if mapping.get("sourceExpression") is not None:
                child[target] = engine.evaluate_attribute(my_task, mapping["sourceExpression"],
                                                          attribute="camunda:in sourceExpression")
            elif mapping.get("source") is not None:
                # Camunda passes null for a variable that does not exist
                child[target] = deepcopy(my_task.data.get(mapping["source"]))
        start = subworkflow.get_next_task(subworkflow.task_tree, skip_subprocesses=True, spec_name="Start")
        start.data = child

    def update_data(self, my_task, subworkflow):
        ext = self.extensions or {}
        engine = _engine(my_task)
        end = subworkflow.last_task
        result = end.data if end is not None else {}
        out: dict[str, Any] = {}
        local_out: dict[str, Any] = {}
        for mapping in ext.get("callOut") or []:
            target_map = local_out if (mapping.get("local") or "").lower() == "true" else out
            if mapping.get("variables") == "all":
                target_map.update({k: deepcopy(v) for k, v in result.items()})
                continue
            target = mapping.get("target") or mapping.get("source")
            if not target:
                continue
            if mapping.get("sourceExpression") is not None:
                target_map[target] = engine.evaluate_attribute(end, mapping["sourceExpression"],
                                                               attribute="camunda:out sourceExpression")
            elif mapping.get("source") is not None:
                target_map[target] = deepcopy(result.get(mapping["source"]))
        my_task.data.update(out)
        if local_out:
            set_local_variables(my_task, local_out)

    def _on_complete_hook(self, my_task):
        apply_outputs(self, my_task)
        super()._on_complete_hook(my_task)


def called_business_key(task) -> tuple[bool, str | None]:
    """(True, key) when `task` runs inside a call activity: the called process's business key
    (camunda:in businessKey, else none, as in Camunda); (False, None) in the process itself."""
    workflow = task.workflow
    top = workflow.top_workflow
    while getattr(workflow, "parent_task_id", None) is not None:
        parent = top.get_task_from_id(workflow.parent_task_id)
        if parent is None:
            break
        if isinstance(parent.task_spec, DialectCallActivity):
            return True, parent.internal_data.get("business_key")
        workflow = parent.workflow
    return False, None


# -- event sub-processes -----------------------------------------------------------------------

def _cancel_branch(task) -> None:
    """Cancel every unfinished task under `task` (and `task`), innermost first, so the cancel
    hook of each runs (sub-processes, timers and message subscriptions are withdrawn)."""
    for child in list(task.children):
        _cancel_branch(child)
    if not task.has_state(TaskState.FINISHED_MASK):
        task.cancel()


def _cancel_scope_except(scope, keep) -> None:
    """Cancel everything still running in the workflow `scope` except `keep` (and its branch)."""
    ancestors = set()
    node = keep
    while node is not None:
        ancestors.add(node.id)
        node = node.parent

    def walk(task):
        if task is keep:
            return
        if task.id in ancestors:
            for child in list(task.children):
                walk(child)
            return
        _cancel_branch(task)

    walk(scope.task_tree)


def _subworkflow(task):
    return task.workflow.top_workflow.subprocesses.get(task.id)


def _is_armed(task) -> bool:
    """An event sub-process that waits for its start event and runs nothing yet."""
    if not isinstance(task.task_spec, DialectEventSubprocess) or task.state != TaskState.STARTED:
        return False
    sub = _subworkflow(task)
    if sub is None:
        return False
    active = sub.get_tasks(state=ACTIVE)
    return bool(active) and all(t.state == TaskState.WAITING and isinstance(t.task_spec, StartEventMixin)
                                for t in active)


def _waiting_start(task):
    sub = _subworkflow(task)
    if sub is None:
        return None
    return next((t for t in sub.get_tasks(state=TaskState.WAITING) if isinstance(t.task_spec, StartEventMixin)),
                None)


def release_scope(scope, finishing) -> None:
    """The scope's own flow has ended (`finishing` is its last end event or event sub-process):
    event sub-processes still waiting for their event are withdrawn, so the scope can complete."""
    active = [t for t in scope.get_tasks(state=ACTIVE, skip_subprocesses=True)
              if t is not finishing and not isinstance(t.task_spec, _EndJoin)]  # End waits for the rest
    armed = [t for t in active if _is_armed(t)]
    if armed and len(armed) == len(active):
        for task in armed:
            _cancel_branch(task)


def scope_variables(scope, exclude=None) -> dict[str, Any]:
    """The variables of a scope now: the data of its running tasks (as the service reads them)."""
    variables: dict[str, Any] = {}
    for t in scope.get_tasks(state=ACTIVE, skip_subprocesses=True):
        if t is exclude or isinstance(t.task_spec, DialectEventSubprocess):
            continue
        variables.update(t.data)
    return variables


class DialectEventSubprocess(EventSubprocess):
    """An event sub-process. It is armed when its scope starts (its start event waits for its
    timer, message, signal, error or escalation) and withdrawn when the scope's flow ends. When
    its event comes, an interrupting one (isInterrupting, the default) cancels everything else in
    the scope, a non-interrupting one runs alongside and is armed again for the next message or
    signal. SpiffWorkflow would ignore isInterrupting."""

    def update_data(self, my_task, subworkflow):
        before = dict(my_task.internal_data.get("start_variables") or {})
        super().update_data(my_task, subworkflow)
        if my_task.internal_data.get("interrupting", True):
            return
        # Camunda: variables a non-interrupting event sub-process sets are process variables.
        changed = {k: v for k, v in my_task.data.items() if before.get(k, _MISSING) != v}
        if changed:
            for t in my_task.workflow.get_tasks(state=ACTIVE, skip_subprocesses=True):
                if t is not my_task and not isinstance(t.task_spec, DialectEventSubprocess):
                    t.data.update(deepcopy(changed))

    def _run_hook(self, my_task):
        result = super()._run_hook(my_task)
        release_scope(my_task.workflow, my_task)
        return result


def event_subprocess_task(task):
    """The event sub-process task `task` runs in, when `task` is directly inside one."""
    workflow = task.workflow
    parent_id = getattr(workflow, "parent_task_id", None)
    if parent_id is None:
        return None
    parent = workflow.top_workflow.get_task_from_id(parent_id)
    if parent is not None and isinstance(parent.task_spec, DialectEventSubprocess):
        return parent
    return None


class DialectStartEvent(StartEvent):
    def _run_hook(self, my_task):
        result = super()._run_hook(my_task)
        es_task = event_subprocess_task(my_task)
        if es_task is not None:
            self._event_subprocess_triggered(es_task, my_task)
        return result

    def _event_subprocess_triggered(self, es_task, my_task):
        scope = es_task.workflow
        interrupting = (self.extensions or {}).get("interrupting", True)
        # The event sub-process sees the scope's variables as they are now, and the message's.
        armed_with = my_task.parent.data if my_task.parent is not None else {}
        payload = {k: v for k, v in my_task.data.items() if armed_with.get(k, _MISSING) != v}
        data = deepcopy(scope_variables(scope, exclude=es_task))
        data.update(payload)
        my_task.data = data
        es_task.internal_data["interrupting"] = interrupting
        es_task.internal_data["start_variables"] = deepcopy(data)
        if interrupting:
            _cancel_scope_except(scope, es_task)
        elif not isinstance(self.event_definition, TimerEventDefinition):
            # ready for the next message or signal while the scope runs
            again = es_task.parent._add_child(es_task.task_spec, TaskState.FUTURE)
            again.task_spec._update(again)


# -- throwing errors and escalations -------------------------------------------------------------

def _catches(task, event) -> bool:
    try:
        return bool(task.task_spec.event_definition.catches(task, event))
    except Exception:  # noqa: BLE001 - a definition that cannot compare does not catch
        return False


def _find_catcher(thrower, event):
    """Camunda's search for an error or escalation: in the thrower's scope its event
    sub-processes, then the boundary events of the activity that is the scope, then outwards."""
    workflow = thrower.workflow
    top = workflow.top_workflow
    while workflow is not None:
        for t in workflow.get_tasks(state=TaskState.STARTED, skip_subprocesses=True):
            if _is_armed(t):
                start = _waiting_start(t)
                if start is not None and _catches(start, event):
                    return start
        parent_id = getattr(workflow, "parent_task_id", None)
        if parent_id is None:
            return None
        activity = top.get_task_from_id(parent_id)
        split = activity.parent
        if split is not None and isinstance(split.task_spec, BoundaryEventSplit):
            for t in split.children:
                if isinstance(t.task_spec, BoundaryEvent) and t.state == TaskState.WAITING and _catches(t, event):
                    return t
        workflow = activity.workflow
    return None


def throw_code_event(my_task, definition) -> bool:
    """Deliver an error or escalation to its catcher; False when nothing catches it."""
    event = BpmnEvent(definition, payload=deepcopy(my_task.data), target=my_task.workflow)
    catcher = _find_catcher(my_task, event)
    if catcher is None:
        return False
    # camunda:errorCodeVariable / errorMessageVariable / escalationCodeVariable of the catcher
    caught = catcher.task_spec.extensions or {}
    if isinstance(definition, ErrorEventDefinition):
        if caught.get("errorCodeVariable"):
            event.payload[caught["errorCodeVariable"]] = definition.code
        if caught.get("errorMessageVariable"):
            event.payload[caught["errorMessageVariable"]] = (my_task.task_spec.extensions or {}).get("errorMessage")
    elif caught.get("escalationCodeVariable"):
        event.payload[caught["escalationCodeVariable"]] = definition.code
    catcher.task_spec.catch(catcher, event)
    catcher.task_spec._update(catcher)
    return True


class _CodeThrowMixin:
    def _run_hook(self, my_task):
        definition = self.event_definition
        if isinstance(definition, (ErrorEventDefinition, EscalationEventDefinition)):
            BpmnSpecMixin._run_hook(self, my_task)
            if not throw_code_event(my_task, definition):
                definition.throw(my_task)
            return True
        return super()._run_hook(my_task)


class DialectEndEvent(_CodeThrowMixin, EndEvent):
    def _run_hook(self, my_task):
        result = super()._run_hook(my_task)
        if not isinstance(self.event_definition, TerminateEventDefinition):
            release_scope(my_task.workflow, my_task)
        return result


class DialectIntermediateThrowEvent(_CodeThrowMixin, IntermediateThrowEvent):
    pass


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


# -- timers -----------------------------------------------------------------------------------

class _ClockTimer:
    """Timer event definitions that use the dialect's timer language and the engine's clock.

    `internal_data['event_value']` holds {"due": iso, "schedule": {...}, "fired": n}.
    """

    kind = ""

    def _schedule_for(self, my_task):
        engine = _engine(my_task)
        value = engine.evaluate_timer_expression(my_task, self.expression)
        try:
            schedule = timer_lang.parse_timer(self.kind, value, engine.tz)
            # A `${…}` cycle could not be checked at deploy: the floor is enforced here, and the
            # command that reached the timer fails naming the element (see README, TIMER_MIN_INTERVAL).
            timer_lang.check_min_interval(schedule, engine.timer_min_interval)
            return schedule
        except timer_lang.TimerExpressionError as exc:
            _fail(my_task, f"{self.kind} '{self.expression}': {exc}", exc)

    def _state(self, my_task):
        state = my_task._get_internal_data("event_value")
        if state is None:
            schedule = self._schedule_for(my_task)
            now = _engine(my_task).now()
            due = schedule.first_due(now)
            state = {"due": due.isoformat(), "schedule": schedule.to_dict(), "fired": 0}
            my_task._set_internal_data(event_value=state)
        return state

    def details(self, my_task):
        state = my_task._get_internal_data("event_value") or {}
        return PendingBpmnEvent(self.name, self.__class__.__name__, state.get("due"))


class ClockTimeDate(_ClockTimer, TimeDateEventDefinition):
    kind = "timeDate"

    def has_fired(self, my_task):
        state = self._state(my_task)
        if datetime.fromisoformat(state["due"]) <= _engine(my_task).fire_until():
            my_task._set_internal_data(event_fired=True)
        return my_task._get_internal_data("event_fired", False)


class ClockDuration(_ClockTimer, DurationTimerEventDefinition):
    kind = "timeDuration"

    def has_fired(self, my_task):
        return ClockTimeDate.has_fired(self, my_task)


class ClockCycle(_ClockTimer, CycleTimerEventDefinition):
    """A repeating timer. On a non-interrupting boundary event (or the start event of a
    non-interrupting event sub-process) each repetition is a token of its own: the event task
    that waited fires and a copy of it waits for the next repetition, so when the activity ends and
    the waiting copy is cancelled, the tokens of earlier repetitions run on. Elsewhere (intermediate
    events, interrupting events) the timer fires once, at its first due time, as in Camunda."""

    kind = "timeCycle"

    def cycle_complete(self, my_task):
        state = self._state(my_task)
        if state.get("due") is None:
            my_task.internal_data["event_fired"] = True
            return False
        due = datetime.fromisoformat(state["due"])
        if due > _engine(my_task).fire_until():
            return False
        schedule = timer_lang.TimerSchedule.from_dict(state["schedule"])
        state["fired"] += 1
        following = schedule.next_due(due, state["fired"])
        state["due"] = following.isoformat() if following is not None else None
        my_task._set_internal_data(event_value=state)
        return True

    def has_fired(self, my_task):
        return my_task._get_internal_data("event_fired", False)

    @staticmethod
    def _repeats(my_task) -> bool:
        spec = my_task.task_spec
        if isinstance(spec, BoundaryEventMixin):
            return not spec.cancel_activity
        if isinstance(spec, StartEventMixin) and event_subprocess_task(my_task) is not None:
            return not (spec.extensions or {}).get("interrupting", True)
        return False

    def update_task(self, my_task):
        if not self.cycle_complete(my_task):
            return
        state = my_task._get_internal_data("event_value")
        if self._repeats(my_task) and state.get("due") is not None:
            following = my_task.parent._add_child(my_task.task_spec, TaskState.WAITING)
            following._set_internal_data(event_value=deepcopy(state))
            following.task_spec._update(following)
        # a cycle predicts no successors (SpiffWorkflow): this firing's token gets them now
        if not my_task.children:
            for output in my_task.task_spec.outputs:
                child = my_task._add_child(output, TaskState.FUTURE)
                child.task_spec._predict(child, mask=TaskState.NOT_FINISHED_MASK)
        my_task._set_internal_data(event_fired=True)
        my_task._ready()


TIMER_CLASSES = {"timeDate": ClockTimeDate, "timeDuration": ClockDuration, "timeCycle": ClockCycle}


def timer_due(task) -> datetime | None:
    """When a waiting timer task is next due (None when not a timer or exhausted)."""
    state = task.internal_data.get("event_value")
    if isinstance(state, dict) and state.get("due"):
        return datetime.fromisoformat(state["due"]).astimezone(UTC)
    return None
