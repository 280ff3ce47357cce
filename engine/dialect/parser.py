"""The BPMN parser for files saved by Camunda Modeler (Camunda 7 target).

Built on SpiffWorkflow's parser: every element parser also reads the `camunda:` extensions, user
tasks, business rule tasks, external service tasks and timers get the specs of
`engine.dialect.specs`, and what cannot run here (Java delegates, non-Python scripts, connectors)
is refused with the element named.
"""

from __future__ import annotations

import re
from typing import ClassVar

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnParser, full_tag
from SpiffWorkflow.bpmn.parser.event_parsers import (
    CANCEL_EVENT_XPATH,
    CONDITIONAL_EVENT_XPATH,
    ERROR_EVENT_XPATH,
    ESCALATION_EVENT_XPATH,
    MESSAGE_EVENT_XPATH,
    SIGNAL_EVENT_XPATH,
    TERMINATION_EVENT_XPATH,
    TIMER_EVENT_XPATH,
    BoundaryEventParser,
    EndEventParser,
    EventBasedGatewayParser,
    IntermediateCatchEventParser,
    IntermediateThrowEventParser,
    ReceiveTaskParser,
    SendTaskParser,
    StartEventParser,
)
from SpiffWorkflow.bpmn.parser.ProcessParser import ProcessParser
from SpiffWorkflow.bpmn.parser.task_parsers import (
    ConditionalGatewayParser,
    GatewayParser,
    SubprocessParser,
)
from SpiffWorkflow.bpmn.parser.TaskParser import TaskParser
from SpiffWorkflow.bpmn.parser.util import first
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.control import StartEventJoin, StartEventSplit
from SpiffWorkflow.bpmn.specs.data_spec import TaskDataReference
from SpiffWorkflow.bpmn.specs.defaults import (
    BoundaryEvent,
    EventBasedGateway,
    ExclusiveGateway,
    InclusiveGateway,
    IntermediateCatchEvent,
    ParallelGateway,
    ReceiveTask,
    SendTask,
    SubWorkflowTask,
    TransactionSubprocess,
)
from SpiffWorkflow.bpmn.specs.event_definitions.simple import NoneEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.end_event import EndEvent as EndEventMixin
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent as BoundaryEventMixin
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import LoopTask
from SpiffWorkflow.camunda.parser.task_spec import (
    CallActivityParser,
    ScriptTaskParser,
    SubWorkflowParser,
)

from engine.dialect.extensions import CAMUNDA_NS, read_extensions
from engine.dialect.specs import (
    TIMER_CLASSES,
    CamundaParallelMultiInstance,
    CamundaSequentialMultiInstance,
    CollectionReference,
    DecisionTask,
    DialectCallActivity,
    DialectEndEvent,
    DialectEventSubprocess,
    DialectIntermediateThrowEvent,
    DialectManualTask,
    DialectNoneTask,
    DialectScriptTask,
    DialectStartEvent,
    ExternalServiceTask,
    HumanTask,
)

NSMAP = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
    "di": "http://www.omg.org/spec/DD/20100524/DI",
    "camunda": CAMUNDA_NS,
}

_C = f"{{{CAMUNDA_NS}}}"
_SIMPLE_VAR = re.compile(r"^\s*[$#]\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\s*$")


class ExtensionsMixin:
    """Reads every camunda extension of the element into `spec.extensions`; multi-instance and
    event sub-processes get the specs with Camunda's behaviour."""

    PARALLEL_MI_CLASS = CamundaParallelMultiInstance
    SEQUENTIAL_MI_CLASS = CamundaSequentialMultiInstance
    EVENT_SUBPROCESS_CLASS = DialectEventSubprocess

    def parse_extensions(self, node=None):
        node = node if node is not None else self.node
        ext = read_extensions(node)
        for kind, attr in (("errorEventDefinition", "errorCodeVariable"),
                           ("errorEventDefinition", "errorMessageVariable"),
                           ("escalationEventDefinition", "escalationCodeVariable")):
            definition = node.find(f"{{{NSMAP['bpmn']}}}{kind}")
            if definition is not None and definition.get(f"{{{CAMUNDA_NS}}}{attr}"):
                ext[attr] = definition.get(f"{{{CAMUNDA_NS}}}{attr}")
        thrown = node.find(f"{{{NSMAP['bpmn']}}}errorEventDefinition")
        if thrown is not None and thrown.get("errorRef"):
            error = next(iter(node.getroottree().getroot().xpath(
                "//bpmn:error[@id=$ref]", namespaces=NSMAP, ref=thrown.get("errorRef"))), None)
            if error is not None and error.get(_C + "errorMessage"):
                ext["errorMessage"] = error.get(_C + "errorMessage")
        parent = node.getparent()
        if node.tag == full_tag("startEvent") and parent is not None and parent.tag == full_tag("subProcess") \
                and parent.get("triggeredByEvent") == "true":
            ext["interrupting"] = node.get("isInterrupting", "true").strip().lower() != "false"
        return ext

    def _add_multiinstance_task(self, loop_characteristics):
        """Camunda's form: camunda:collection (a variable name or `${…}`) with
        camunda:elementVariable, or a loopCardinality; the standard BPMN data references are
        handled by SpiffWorkflow."""
        collection = loop_characteristics.get(_C + "collection")
        element_variable = loop_characteristics.get(_C + "elementVariable")
        if collection is None:
            if element_variable:
                self.raise_validation_exception(
                    "camunda:elementVariable needs a camunda:collection to take the elements from")
            return TaskParser._add_multiinstance_task(self, loop_characteristics)
        if not collection.strip():
            self.raise_validation_exception("camunda:collection is empty")
        match = _SIMPLE_VAR.match(collection)
        text = match.group(1) if match else collection.strip()
        if not match and "${" not in text and "#{" not in text \
                and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", text):
            self.raise_validation_exception(
                f"camunda:collection '{collection}' must name a list variable or be an expression, e.g. ${{items}}")
        if element_variable is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", element_variable):
            self.raise_validation_exception(f"camunda:elementVariable '{element_variable}' is not a variable name")
        condition = first(self.xpath("./bpmn:multiInstanceLoopCharacteristics/bpmn:completionCondition"))
        condition = condition.text if condition is not None else None
        original = self.spec.task_specs.pop(self.task.name)
        params = {
            "task_spec": "",
            "cardinality": None,
            "data_input": CollectionReference(text),
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


class SubWorkflowParserX(ExtensionsMixin, SubWorkflowParser):
    def create_task(self):
        spec_name = SubprocessParser.get_subprocess_spec(self)
        spec_class = self.EVENT_SUBPROCESS_CLASS if self.node.get("triggeredByEvent") == "true" \
            else self.spec_class
        return spec_class(self.spec, self.bpmn_id, subworkflow_spec=spec_name, **self.bpmn_attributes)


CallActivityParserX = _mix("CallActivityParserX", ExtensionsMixin, CallActivityParser)


class StartEventParserX(ExtensionsMixin, TimerMixin, StartEventParser):
    def create_task(self):
        kinds = [MESSAGE_EVENT_XPATH, SIGNAL_EVENT_XPATH, TIMER_EVENT_XPATH, CONDITIONAL_EVENT_XPATH]
        parent = self.node.getparent()
        if parent is not None and parent.tag == full_tag("subProcess") and parent.get("triggeredByEvent") == "true":
            kinds += [ERROR_EVENT_XPATH, ESCALATION_EVENT_XPATH]  # event sub-processes catch these too
        definitions = [d for d in self.node if isinstance(d.tag, str) and d.tag.endswith("EventDefinition")]
        known = {k.rsplit(":", 1)[1] for k in kinds}
        for definition in definitions:
            kind = etree.QName(definition).localname
            if kind not in known:
                self.raise_validation_exception(f"a start event with a {kind} cannot start anything here")
        task = self._create_task(self.get_event_definition(kinds))
        self.spec.start.connect(task)
        return task


class EndEventParserX(ExtensionsMixin, TimerMixin, EndEventParser):
    def create_task(self):
        # SpiffWorkflow reads no signal end events (they would end without signalling)
        task = self._create_task(self.get_event_definition(
            [MESSAGE_EVENT_XPATH, CANCEL_EVENT_XPATH, ERROR_EVENT_XPATH, ESCALATION_EVENT_XPATH,
             TERMINATION_EVENT_XPATH, SIGNAL_EVENT_XPATH]))
        task.connect(self.spec.end)
        return task


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
        if self.node.get(_C + "resource"):
            self.raise_validation_exception("external script resources (camunda:resource) are not supported")
        return super().create_task()


class UserTaskParserX(ExtensionsMixin, TaskParser):
    def create_task(self):
        return HumanTask(self.spec, self.bpmn_id, **self.bpmn_attributes)


def _implementation_error(parser, what: str):
    node = parser.node
    for attr in ("class", "expression", "delegateExpression"):
        if node.get(_C + attr):
            parser.raise_validation_exception(
                f"{what} uses camunda:{attr}; Java delegates and expressions cannot run here. "
                "Use an external task (camunda:type=\"external\" with a camunda:topic) instead")
    if node.find(".//" + _C + "connector") is not None:
        parser.raise_validation_exception(
            f"{what} uses a Camunda connector, which cannot run here; use an external task instead")
    parser.raise_validation_exception(
        f"{what} has no implementation; set camunda:type=\"external\" and a camunda:topic")


def _external(parser):
    node = parser.node
    if node.get(_C + "type") == "external":
        if not node.get(_C + "topic"):
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
        if self.node.get(_C + "class") or self.node.get(_C + "expression") \
                or self.node.get(_C + "delegateExpression"):
            _implementation_error(self, "the send task")
        return SendTaskParser.create_task(self)


class BusinessRuleTaskParserX(ExtensionsMixin, TaskParser):
    def create_task(self):
        task = _external(self)
        if task is not None:
            return task
        if not self.node.get(_C + "decisionRef"):
            _implementation_error(self, "the business rule task (no camunda:decisionRef)")
        return DecisionTask(self.spec, self.bpmn_id, **self.bpmn_attributes)


class DialectProcessParser(ProcessParser):
    """Event sub-processes of every kind are armed when their scope starts (SpiffWorkflow arms
    only timer ones and starts message ones outside the scope's life), so that their start
    event waits like any catch event: message subscriptions, timers, and the scope's end all
    see them."""

    def add_tasks(self):
        start_nodes = self.xpath("./bpmn:startEvent")
        if not start_nodes and self.process_executable:
            raise ValidationException("No start event found", node=self.node, file_name=self.filename)
        for node in start_nodes:
            self.parse_node(node)
        if len(start_nodes) > 1:
            split_task = StartEventSplit(self.spec, "StartEventSplit")
            join_task = StartEventJoin(self.spec, "StartEventJoin", split_task="StartEventSplit", threshold=1,
                                       cancel=True)
            for spec in self.spec.start.outputs:
                spec.inputs = [split_task]
                spec.connect(join_task)
            split_task.outputs = self.spec.start.outputs
            self.spec.start.outputs = [split_task]
            split_task.inputs = [self.spec.start]
        for node in self.xpath("./bpmn:subProcess[@triggeredByEvent='true']"):
            task_spec = self.parse_node(node)
            self.spec.start.connect(task_spec)
            task_spec.connect(self.spec.end)
        # An activity or event without outgoing sequence flows ends its path (an implicit end, as
        # in Camunda); SpiffWorkflow would leave the process waiting for ever. It gets an end event
        # of its own that is not on the diagram.
        loop_children = {ts.task_spec for ts in self.spec.task_specs.values() if isinstance(ts, LoopTask)}
        for ts in list(self.spec.task_specs.values()):
            if getattr(ts, "bpmn_id", None) is None or ts.outputs or ts.name in loop_children \
                    or isinstance(ts, (EndEventMixin, BoundaryEventMixin)):
                continue
            end = DialectEndEvent(self.spec, f"{ts.name}.ImplicitEnd", NoneEventDefinition())
            end.bpmn_id = None
            end.extensions = {}
            ts.connect(end)
            end.connect(self.spec.end)


class DialectParser(BpmnParser):
    """Parses BPMN as Camunda Modeler saves it, into specs this engine runs."""

    PROCESS_PARSER_CLASS = DialectProcessParser
    PARSER_CLASSES: ClassVar[dict] = {
        full_tag("startEvent"): (StartEventParserX, DialectStartEvent),
        full_tag("endEvent"): (EndEventParserX, DialectEndEvent),
        full_tag("userTask"): (UserTaskParserX, HumanTask),
        full_tag("task"): (TaskParserX, DialectNoneTask),
        full_tag("subProcess"): (SubWorkflowParserX, SubWorkflowTask),
        full_tag("manualTask"): (TaskParserX, DialectManualTask),
        full_tag("exclusiveGateway"): (ConditionalGatewayParserX, ExclusiveGateway),
        full_tag("parallelGateway"): (GatewayParserX, ParallelGateway),
        full_tag("inclusiveGateway"): (ConditionalGatewayParserX, InclusiveGateway),
        full_tag("callActivity"): (CallActivityParserX, DialectCallActivity),
        full_tag("transaction"): (SubWorkflowParserX, TransactionSubprocess),
        full_tag("scriptTask"): (ScriptTaskParserX, DialectScriptTask),
        full_tag("serviceTask"): (ServiceTaskParserX, ExternalServiceTask),
        full_tag("businessRuleTask"): (BusinessRuleTaskParserX, DecisionTask),
        full_tag("intermediateCatchEvent"): (CatchEventParserX, IntermediateCatchEvent),
        full_tag("intermediateThrowEvent"): (ThrowEventParserX, DialectIntermediateThrowEvent),
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
