"""The BPMN parser for files saved by Camunda Modeler (Camunda 7 target).

Built on SpiffWorkflow's parser: every element parser also reads the `camunda:` extensions, user
tasks, business rule tasks, external service tasks and timers get the specs of
`engine.dialect.specs`, and what cannot run here (Java delegates, non-Python scripts, connectors)
is refused with the element named.
"""

from __future__ import annotations

import re

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnParser, full_tag
from SpiffWorkflow.bpmn.parser.event_parsers import (
    BoundaryEventParser,
    EndEventParser,
    EventBasedGatewayParser,
    IntermediateCatchEventParser,
    IntermediateThrowEventParser,
    ReceiveTaskParser,
    SendTaskParser,
    StartEventParser,
)
from SpiffWorkflow.bpmn.parser.task_parsers import (
    ConditionalGatewayParser,
    GatewayParser,
)
from SpiffWorkflow.bpmn.parser.TaskParser import TaskParser
from SpiffWorkflow.bpmn.parser.util import first
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.data_spec import TaskDataReference
from SpiffWorkflow.bpmn.specs.defaults import (
    BoundaryEvent,
    CallActivity,
    EndEvent,
    EventBasedGateway,
    ExclusiveGateway,
    InclusiveGateway,
    IntermediateCatchEvent,
    IntermediateThrowEvent,
    ManualTask,
    NoneTask,
    ParallelGateway,
    ReceiveTask,
    ScriptTask,
    SendTask,
    StartEvent,
    SubWorkflowTask,
    TransactionSubprocess,
)
from SpiffWorkflow.camunda.parser.task_spec import (
    CallActivityParser,
    ScriptTaskParser,
    SubWorkflowParser,
)

from engine.dialect.extensions import CAMUNDA_NS, read_extensions
from engine.dialect.specs import TIMER_CLASSES, DecisionTask, ExternalServiceTask, HumanTask

NSMAP = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
    "di": "http://www.omg.org/spec/DD/20100524/DI",
    "camunda": CAMUNDA_NS,
}

_SIMPLE_VAR = re.compile(r"^\s*[$#]\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\s*$")


class ExtensionsMixin:
    """Reads every camunda extension of the element into `spec.extensions`."""

    def parse_extensions(self, node=None):
        return read_extensions(node if node is not None else self.node)

    def _add_multiinstance_task(self, loop_characteristics):
        """Camunda's form: camunda:collection="${items}" with camunda:elementVariable, or a
        loopCardinality; the standard BPMN data references are handled by SpiffWorkflow."""
        collection = loop_characteristics.get("{%s}collection" % CAMUNDA_NS)
        element_variable = loop_characteristics.get("{%s}elementVariable" % CAMUNDA_NS)
        if collection is None:
            return TaskParser._add_multiinstance_task(self, loop_characteristics)
        match = _SIMPLE_VAR.match(collection)
        name = match.group(1) if match else collection.strip()
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            self.raise_validation_exception(
                f"camunda:collection '{collection}' must name a list variable, e.g. ${{items}}")
        condition = first(self.xpath("./bpmn:multiInstanceLoopCharacteristics/bpmn:completionCondition"))
        condition = condition.text if condition is not None else None
        original = self.spec.task_specs.pop(self.task.name)
        params = {
            "task_spec": "",
            "cardinality": None,
            "data_input": TaskDataReference(name),
            "data_output": None,
            "input_item": TaskDataReference(element_variable) if element_variable else None,
            "output_item": None,
            "condition": condition,
        }
        if loop_characteristics.get("isSequential") == "true":
            self.task = self.SEQUENTIAL_MI_CLASS(self.spec, original.name, **params)
        else:
            self.task = self.PARALLEL_MI_CLASS(self.spec, original.name, **params)
        self._copy_task_attrs(original, loop_characteristics)


class TimerMixin:
    def parse_timer_event(self, event):
        name = self.node.get("name", self.node.get("id"))
        description = self.get_event_description(event)
        for kind, cls in TIMER_CLASSES.items():
            element = first(event.xpath(f"./bpmn:{kind}", namespaces=NSMAP))
            if element is not None:
                text = (element.text or "").strip()
                if not text:
                    raise ValidationException(f"the {kind} of the timer is empty", node=self.node,
                                              file_name=self.filename)
                return cls(name, text, description=description)
        raise ValidationException("the timer has no timeDate, timeDuration or timeCycle", node=self.node,
                                  file_name=self.filename)


def _mix(name, *bases):
    return type(name, bases, {})


def _event_parser(name, base):
    def create_task(self):
        return base.create_task(self)
    return type(name, (ExtensionsMixin, TimerMixin, base),
                {"create_task": create_task})


TaskParserX = _mix("TaskParserX", ExtensionsMixin, TaskParser)
GatewayParserX = _mix("GatewayParserX", ExtensionsMixin, GatewayParser)
ConditionalGatewayParserX = _mix("ConditionalGatewayParserX", ExtensionsMixin, ConditionalGatewayParser)
SubWorkflowParserX = _mix("SubWorkflowParserX", ExtensionsMixin, SubWorkflowParser)
CallActivityParserX = _mix("CallActivityParserX", ExtensionsMixin, CallActivityParser)
StartEventParserX = _event_parser("StartEventParserX", StartEventParser)
EndEventParserX = _event_parser("EndEventParserX", EndEventParser)
CatchEventParserX = _event_parser("CatchEventParserX", IntermediateCatchEventParser)
ThrowEventParserX = _event_parser("ThrowEventParserX", IntermediateThrowEventParser)
BoundaryEventParserX = _event_parser("BoundaryEventParserX", BoundaryEventParser)
EventGatewayParserX = _event_parser("EventGatewayParserX", EventBasedGatewayParser)
ReceiveTaskParserX = _event_parser("ReceiveTaskParserX", ReceiveTaskParser)


class ScriptTaskParserX(ExtensionsMixin, ScriptTaskParser):
    def create_task(self):
        fmt = (self.node.get("scriptFormat") or "").strip().lower()
        if fmt not in ("python", "py", ""):
            self.raise_validation_exception(
                f"scriptFormat '{self.node.get('scriptFormat')}' cannot run here; only python scripts "
                "(run in a sandbox) are supported")
        if self.node.get("{%s}resource" % CAMUNDA_NS):
            self.raise_validation_exception("external script resources (camunda:resource) are not supported")
        return super().create_task()


class UserTaskParserX(ExtensionsMixin, TaskParser):
    def create_task(self):
        return HumanTask(self.spec, self.bpmn_id, **self.bpmn_attributes)


def _implementation_error(parser, what: str):
    node = parser.node
    for attr in ("class", "expression", "delegateExpression"):
        if node.get("{%s}%s" % (CAMUNDA_NS, attr)):
            parser.raise_validation_exception(
                f"{what} uses camunda:{attr}; Java delegates and expressions cannot run here. "
                "Use an external task (camunda:type=\"external\" with a camunda:topic) instead")
    if node.find(".//{%s}connector" % CAMUNDA_NS) is not None:
        parser.raise_validation_exception(
            f"{what} uses a Camunda connector, which cannot run here; use an external task instead")
    parser.raise_validation_exception(
        f"{what} has no implementation; set camunda:type=\"external\" and a camunda:topic")


def _external(parser):
    node = parser.node
    if node.get("{%s}type" % CAMUNDA_NS) == "external":
        if not node.get("{%s}topic" % CAMUNDA_NS):
            parser.raise_validation_exception("an external task needs a camunda:topic")
        return ExternalServiceTask(parser.spec, parser.bpmn_id, **parser.bpmn_attributes)
    return None


class ServiceTaskParserX(ExtensionsMixin, TaskParser):
    def create_task(self):
        task = _external(self)
        if task is None:
            _implementation_error(self, "the service task")
        return task


class SendTaskParserX(ExtensionsMixin, TimerMixin, SendTaskParser):
    def create_task(self):
        task = _external(self)
        if task is not None:
            return task
        if self.node.get("{%s}class" % CAMUNDA_NS) or self.node.get("{%s}expression" % CAMUNDA_NS) \
                or self.node.get("{%s}delegateExpression" % CAMUNDA_NS):
            _implementation_error(self, "the send task")
        return SendTaskParser.create_task(self)


class BusinessRuleTaskParserX(ExtensionsMixin, TaskParser):
    def create_task(self):
        task = _external(self)
        if task is not None:
            return task
        if not self.node.get("{%s}decisionRef" % CAMUNDA_NS):
            _implementation_error(self, "the business rule task (no camunda:decisionRef)")
        return DecisionTask(self.spec, self.bpmn_id, **self.bpmn_attributes)


class DialectParser(BpmnParser):
    """Parses BPMN as Camunda Modeler saves it, into specs this engine runs."""

    PARSER_CLASSES = {
        full_tag("startEvent"): (StartEventParserX, StartEvent),
        full_tag("endEvent"): (EndEventParserX, EndEvent),
        full_tag("userTask"): (UserTaskParserX, HumanTask),
        full_tag("task"): (TaskParserX, NoneTask),
        full_tag("subProcess"): (SubWorkflowParserX, SubWorkflowTask),
        full_tag("manualTask"): (TaskParserX, ManualTask),
        full_tag("exclusiveGateway"): (ConditionalGatewayParserX, ExclusiveGateway),
        full_tag("parallelGateway"): (GatewayParserX, ParallelGateway),
        full_tag("inclusiveGateway"): (ConditionalGatewayParserX, InclusiveGateway),
        full_tag("callActivity"): (CallActivityParserX, CallActivity),
        full_tag("transaction"): (SubWorkflowParserX, TransactionSubprocess),
        full_tag("scriptTask"): (ScriptTaskParserX, ScriptTask),
        full_tag("serviceTask"): (ServiceTaskParserX, ExternalServiceTask),
        full_tag("businessRuleTask"): (BusinessRuleTaskParserX, DecisionTask),
        full_tag("intermediateCatchEvent"): (CatchEventParserX, IntermediateCatchEvent),
        full_tag("intermediateThrowEvent"): (ThrowEventParserX, IntermediateThrowEvent),
        full_tag("boundaryEvent"): (BoundaryEventParserX, BoundaryEvent),
        full_tag("receiveTask"): (ReceiveTaskParserX, ReceiveTask),
        full_tag("sendTask"): (SendTaskParserX, SendTask),
        full_tag("eventBasedGateway"): (EventGatewayParserX, EventBasedGateway),
    }

    def __init__(self):
        super().__init__(namespaces=NSMAP, validator=None)


def parse_xml(content: bytes, filename: str):
    """Parse XML bytes with line numbers kept; raise ValidationException naming the line."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                             remove_blank_text=False)
    try:
        return etree.fromstring(content, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise ValidationException(f"not well-formed XML: {exc.msg}", file_name=filename,
                                  line_number=exc.lineno) from exc


__all__ = ["NSMAP", "DialectParser", "parse_xml"]
