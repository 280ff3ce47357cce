"""The script engine every workflow runs with.

`${…}` / `#{…}` text is the Camunda expression language (`engine.dialect.juel`); anything else
that SpiffWorkflow evaluates (Python conditions, script tasks) runs in the sandbox
(`engine.sandbox`). SpiffWorkflow does not serialize the script engine, so the engine sets a new
one on every load: a loaded instance is always sandboxed.

Budgets: scripts and Python conditions run in a worker process that is killed past its
CPU/wall time (`engine.sandbox_worker`); FEEL and `${…}` evaluations count iterations, sizes and
time themselves. :func:`budgets_from` turns the settings (`script_time_limit`...) into those limits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException

from engine.config import Settings
from engine.dialect import juel
from engine.dialect.feel import FeelLimits
from engine.sandbox import SandboxedEnvironment, SandboxedScriptEngine, SandboxLimits


@dataclass(frozen=True)
class Budgets:
    """The limits of diagram code while one command runs."""

    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    feel: FeelLimits = field(default_factory=FeelLimits)
    juel_time: float = juel.TIME_LIMIT


def budgets_from(settings: Settings) -> Budgets:
    """The budgets that :class:`engine.config.Settings` asks for."""
    return _budgets(float(settings.script_time_limit), float(settings.script_wall_time_limit),
                    int(settings.script_memory_limit_mb), int(settings.expression_max_iterations),
                    int(settings.expression_max_text))


@functools.lru_cache(maxsize=16)
def _budgets(cpu: float, wall: float, memory_mb: int, iterations: int, text: int) -> Budgets:
    return Budgets(
        sandbox=SandboxLimits(cpu_time=cpu, wall_time=wall, max_memory_growth=memory_mb * 1024 * 1024),
        feel=FeelLimits(time_limit=cpu, wall_time=wall, max_iterations=iterations, max_items=iterations,
                        max_text=text),
        juel_time=cpu,
    )


@dataclass
class Runtime:
    """What expressions can reach while one command runs."""

    now: Callable[[], datetime]
    tz: ZoneInfo
    functions: Mapping[str, Callable] = field(default_factory=dict)
    # (key, binding, version, variables, task) -> result list
    evaluate_decision: Callable[..., list[dict]] | None = None
    business_key: str | None = None
    instance_id: str | None = None
    budgets: Budgets = field(default_factory=Budgets)
    # Repeating timers reached at run time (`${…}` cycles) may not fire more often than this.
    timer_min_interval: timedelta = timedelta(seconds=60)


class DialectScriptEngine(SandboxedScriptEngine):
    def __init__(self, runtime: Runtime, *, fire_until: datetime | None = None):
        """`fire_until`: this command fires the timers due at or before that moment, none later
        (a timer firing passes its timer's due time; any other command fires what is due now)."""
        super().__init__(environment=SandboxedEnvironment(environment_globals=dict(runtime.functions),
                                                          limits=runtime.budgets.sandbox))
        self.runtime = runtime
        self._fire_until = fire_until

    def firing(self, due_at: datetime) -> DialectScriptEngine:
        """The script engine of a timer firing at `due_at` (engine/timers.py): the scheduler fires
        one due time at a time, so a catch-up after downtime runs an instance's timers in their due
        order; timers due after `due_at` wait for their own firing."""
        return DialectScriptEngine(self.runtime, fire_until=due_at)

    def create_task_exec_exception(self, task, script, err):
        # SpiffWorkflow joins the exception's first argument to its message as text: a script's
        # `raise ValueError(5)` would fail there with a TypeError instead of the script's own error
        if err.args and not isinstance(err.args[0], str):
            err.args = (", ".join(repr(a) if isinstance(a, bytes) else str(a) for a in err.args),)
        return super().create_task_exec_exception(task, script, err)

    # -- clock ---------------------------------------------------------------------------------
    @property
    def tz(self) -> ZoneInfo:
        return self.runtime.tz

    def now(self) -> datetime:
        return self.runtime.now()

    @property
    def timer_min_interval(self) -> timedelta:
        return self.runtime.timer_min_interval

    def fire_until(self) -> datetime:
        """The cut-off of this command's timers: the firing's due time, never later than now."""
        now = self.runtime.now()
        return min(self._fire_until, now) if self._fire_until is not None else now

    # -- expressions ---------------------------------------------------------------------------
    def _execution(self, task, variables: Mapping[str, Any]) -> juel.ExecutionContext:
        from engine.dialect.specs import called_business_key

        called, business_key = called_business_key(task)
        return juel.ExecutionContext(
            variables=variables,
            business_key=business_key if called else self.runtime.business_key,
            process_instance_id=self.runtime.instance_id,
            activity_id=getattr(task.task_spec, "bpmn_id", None),
        )

    def _juel(self, task, text: str, attribute: str | None = None,
              extra: Mapping[str, Any] | None = None) -> Any:
        variables = {**task.data, **extra} if extra else task.data
        try:
            template = juel.compile_template(text)
            return template.evaluate(variables, functions=self.runtime.functions,
                                     execution=self._execution(task, variables), now=self.now(), tz=self.tz,
                                     time_limit=self.runtime.budgets.juel_time)
        except (juel.JuelSyntaxError, juel.JuelEvaluationError) as exc:
            where = f" in {attribute}" if attribute else ""
            raise WorkflowTaskException(f"expression '{text}'{where}: {exc}", task=task, exception=exc) from exc

    def evaluate(self, task, expression, external_context=None):
        if expression is not None and juel.is_expression(expression):
            return self._juel(task, expression, extra=external_context)
        return super().evaluate(task, expression, external_context)

    def evaluate_attribute(self, task, text: str, attribute: str | None = None) -> Any:
        """A camunda attribute: `${…}` is evaluated, plain text is taken literally."""
        if text is None:
            return None
        if juel.is_expression(text):
            return self._juel(task, text, attribute)
        return text

    def evaluate_parameter(self, task, param: Mapping[str, Any]) -> Any:
        kind = param.get("kind")
        if kind == "text":
            return self.evaluate_attribute(task, param.get("value", ""), f"parameter '{param.get('name')}'")
        if kind == "list":
            return [self.evaluate_parameter(task, item) for item in param.get("items", [])]
        if kind == "map":
            return {e["key"]: self.evaluate_parameter(task, e) for e in param.get("entries", [])}
        if kind == "script":
            return super().evaluate(task, param.get("value", ""))
        raise WorkflowTaskException(f"parameter '{param.get('name')}' of kind {kind} is not supported",
                                    task=task)

    def evaluate_timer_expression(self, task, text: str) -> Any:
        if juel.is_expression(text):
            return self._juel(task, text, "timer")
        return text.strip()

    def to_datetime(self, value: Any, task, attribute: str) -> datetime | None:
        if value is None or value == "":
            return None
        if isinstance(value, datetime):
            result = value
        elif isinstance(value, date):
            result = datetime.combine(value, time(0, 0))
        elif isinstance(value, str):
            try:
                result = datetime.fromisoformat(value.strip())
            except ValueError as exc:
                raise WorkflowTaskException(
                    f"{attribute}: '{value}' is not an ISO 8601 date-time", task=task, exception=exc) from exc
        else:
            raise WorkflowTaskException(f"{attribute}: {value!r} is not a date-time", task=task)
        if result.tzinfo is None:
            result = result.replace(tzinfo=self.tz)
        return result.astimezone(UTC)

    # -- decisions -----------------------------------------------------------------------------
    def evaluate_decision(self, task, key: str, *, binding: str = "latest", version: int | None = None):
        if self.runtime.evaluate_decision is None:
            raise WorkflowTaskException("decisions cannot be evaluated here", task=task)
        return self.runtime.evaluate_decision(key, binding, version, task.data, task)

    def map_decision_result(self, task, result: list[dict], mode: str):
        from engine.dialect import dmn

        try:
            return dmn.map_decision_result(result, mode)
        except Exception as exc:
            raise WorkflowTaskException(f"camunda:mapDecisionResult={mode}: {exc}", task=task,
                                        exception=exc) from exc
