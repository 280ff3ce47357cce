"""Task specs and timer definitions that give SpiffWorkflow Camunda 7 behaviour.

Each spec reads what the parser put in `spec.extensions` (see `extensions.py`) and evaluates it
through the workflow's script engine (`engine.dialect.scripting.DialectScriptEngine`), which knows
the `${…}` language, the injected clock and the decision service.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.specs.defaults import UserTask
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
)
from SpiffWorkflow.bpmn.specs.mixins.bpmn_spec_mixin import BpmnSpecMixin
from SpiffWorkflow.bpmn.util import PendingBpmnEvent
from SpiffWorkflow.util.task import TaskState

from engine.dialect import timers as timer_lang


def _engine(my_task):
    return my_task.workflow.script_engine


def _fail(my_task, message: str, exc: Exception | None = None):
    raise WorkflowTaskException(message, task=my_task, exception=exc)


class IoMappingMixin:
    """camunda:inputOutput: input parameters become variables of the activity when it starts,
    output parameters are computed from them when it ends; inputs do not leak to the process."""

    def _on_ready_hook(self, my_task):
        inputs = (getattr(self, "extensions", None) or {}).get("inputs")
        if inputs:
            engine = _engine(my_task)
            for param in inputs:
                my_task.data[param["name"]] = engine.evaluate_parameter(my_task, param)
        super()._on_ready_hook(my_task)

    def _on_complete_hook(self, my_task):
        ext = getattr(self, "extensions", None) or {}
        outputs = ext.get("outputs")
        inputs = ext.get("inputs") or []
        if outputs:
            engine = _engine(my_task)
            values = {p["name"]: engine.evaluate_parameter(my_task, p) for p in outputs}
        else:
            values = {}
        for param in inputs:
            if param["name"] not in values:
                my_task.data.pop(param["name"], None)
        my_task.data.update(values)
        super()._on_complete_hook(my_task)


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
            return timer_lang.parse_timer(self.kind, value, engine.tz)
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
    """A repeating timer: each repetition produces a token (non-interrupting boundary events)."""

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

    def update_task(self, my_task):
        if self.cycle_complete(my_task):
            for output in my_task.task_spec.outputs:
                child = my_task._add_child(output, TaskState.FUTURE)
                child.task_spec._predict(child, mask=TaskState.NOT_FINISHED_MASK)
                child.task_spec._update(child)


TIMER_CLASSES = {"timeDate": ClockTimeDate, "timeDuration": ClockDuration, "timeCycle": ClockCycle}


def timer_due(task) -> datetime | None:
    """When a waiting timer task is next due (None when not a timer or exhausted)."""
    state = task.internal_data.get("event_value")
    if isinstance(state, dict) and state.get("due"):
        return datetime.fromisoformat(state["due"]).astimezone(UTC)
    return None
