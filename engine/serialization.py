"""Serialization of specs (once per definition version) and of instance state (without the spec).

SpiffWorkflow embeds the whole spec in every serialized workflow; here the state refers to the
definition instead, and restored spec objects are shared from a cache (specs hold no instance
state), which makes a load a fraction of the cost.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections import OrderedDict
from datetime import date
from decimal import Decimal

from SpiffWorkflow.bpmn.serializer.config import DEFAULT_CONFIG, TimerConditionalEventDefinitionConverter
from SpiffWorkflow.bpmn.serializer.default.task_spec import (
    BpmnTaskSpecConverter,
)
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter
from SpiffWorkflow.bpmn.serializer.helpers.registry import DefaultRegistry
from SpiffWorkflow.bpmn.serializer.workflow import VERSION, BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow

from engine.dialect.feel import YearsMonthsDuration
from engine.dialect.specs import (
    ClockCycle,
    ClockDuration,
    ClockTimeDate,
    DecisionTask,
    ExternalServiceTask,
    HumanTask,
)


class StateOnlyWorkflowConverter(BpmnWorkflowConverter):
    """Writes a workflow without its specs; on restore the caller puts the spec objects in."""

    def to_dict(self, workflow):
        dct = super(BpmnWorkflowConverter, self).to_dict(workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct


def _config():
    config = dict(DEFAULT_CONFIG)
    config[BpmnWorkflow] = StateOnlyWorkflowConverter
    for cls in (HumanTask, ExternalServiceTask, DecisionTask):
        config[cls] = BpmnTaskSpecConverter
    for cls in (ClockTimeDate, ClockDuration, ClockCycle):
        config[cls] = TimerConditionalEventDefinitionConverter
    # The Camunda 7 dialect's own specs (engine.dialect.specs).
    from SpiffWorkflow.bpmn.serializer.default.task_spec import (
        EventConverter,
        MultiInstanceTaskConverter,
        ScriptTaskConverter,
        SubWorkflowConverter,
    )
    from SpiffWorkflow.bpmn.serializer.helpers import BpmnDataSpecificationConverter

    from engine.dialect import specs

    config[specs.DialectScriptTask] = ScriptTaskConverter
    for cls in (specs.DialectNoneTask, specs.DialectManualTask):
        config[cls] = BpmnTaskSpecConverter
    for cls in (specs.CamundaParallelMultiInstance, specs.CamundaSequentialMultiInstance):
        config[cls] = MultiInstanceTaskConverter
    config[specs.CollectionReference] = BpmnDataSpecificationConverter
    for cls in (specs.DialectCallActivity, specs.DialectEventSubprocess):
        config[cls] = SubWorkflowConverter
    for cls in (specs.DialectStartEvent, specs.DialectEndEvent, specs.DialectIntermediateThrowEvent):
        config[cls] = EventConverter
    return config


def _registry():
    registry = DefaultRegistry()
    registry.register(date, lambda v: {"value": v.isoformat()}, lambda v: date.fromisoformat(v["value"]))
    registry.register(Decimal, lambda v: {"value": str(v)}, lambda v: Decimal(v["value"]))
    registry.register(YearsMonthsDuration, lambda v: {"months": v.total_months},
                      lambda v: YearsMonthsDuration(v["months"]))
    return BpmnWorkflowSerializer.configure(_config(), registry)


class StateSerializer:
    def __init__(self, spec_cache_size: int = 64):
        self.serializer = BpmnWorkflowSerializer(_registry())
        self.registry = self.serializer.registry
        self._encoder = self.serializer._encoder_cls
        self._spec_cache: OrderedDict[str, tuple] = OrderedDict()
        self._spec_cache_size = spec_cache_size
        self._lock = threading.Lock()
        # The registry's encoder mode is a flag on a shared object: serialize one at a time.
        self._encode_lock = threading.Lock()

    # -- specs --------------------------------------------------------------------------------
    def dump_spec(self, spec, subprocess_specs: dict) -> bytes:
        dct = {
            "spec": self.registry.convert(spec),
            "subprocess_specs": {k: self.registry.convert(v) for k, v in subprocess_specs.items()},
        }
        return zlib.compress(json.dumps(dct, separators=(",", ":")).encode(), 6)

    def cached_spec(self, definition_id: str):
        with self._lock:
            cached = self._spec_cache.get(definition_id)
            if cached is not None:
                self._spec_cache.move_to_end(definition_id)
            return cached

    def load_spec(self, definition_id: str, blob: bytes):
        with self._lock:
            cached = self._spec_cache.get(definition_id)
            if cached is not None:
                self._spec_cache.move_to_end(definition_id)
                return cached
        dct = json.loads(zlib.decompress(blob))
        spec = self.registry.restore(dct["spec"])
        subprocess_specs = {k: self.registry.restore(v) for k, v in dct["subprocess_specs"].items()}
        with self._lock:
            self._spec_cache[definition_id] = (spec, subprocess_specs)
            while len(self._spec_cache) > self._spec_cache_size:
                self._spec_cache.popitem(last=False)
        return spec, subprocess_specs

    # -- state --------------------------------------------------------------------------------
    def dump_state(self, workflow: BpmnWorkflow) -> bytes:
        with self._encode_lock:
            self.registry._encoder_mode = True
            try:
                dct = self.registry.convert(workflow)
                text = json.dumps(dct, cls=self._encoder, separators=(",", ":"))
            finally:
                self.registry._encoder_mode = False
        return zlib.compress(text.encode(), 1)

    def load_state(self, blob: bytes, spec, subprocess_specs: dict) -> BpmnWorkflow:
        dct = json.loads(zlib.decompress(blob))
        dct["spec"] = spec
        dct["subprocess_specs"] = dict(subprocess_specs)
        return self.registry.restore(dct)

    def dump_data(self, data) -> bytes:
        """A finished instance keeps only its variables (history keeps the path)."""
        with self._encode_lock:
            self.registry._encoder_mode = True
            try:
                text = json.dumps({"completed_data": self.registry.clean(data)}, cls=self._encoder,
                                  separators=(",", ":"))
            finally:
                self.registry._encoder_mode = False
        return zlib.compress(text.encode(), 6)

    def load_any(self, blob: bytes):
        """The raw dictionary of a stored state (for finished instances: their variables)."""
        return json.loads(zlib.decompress(blob))

    def restore_value(self, value):
        return self.registry.restore(value)


SERIALIZER_VERSION = VERSION
