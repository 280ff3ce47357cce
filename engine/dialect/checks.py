"""Deploy-time checks: every expression in a BPMN file is parsed before the file is accepted.

A process owner learns at deploy, with the element and attribute named, what the engine could not
evaluate — not at 3 a.m. in a running instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from zoneinfo import ZoneInfo

from engine.dialect import juel
from engine.dialect import timers as timer_lang
from engine.dialect.extensions import CAMUNDA_NS
from engine.errors import DeploymentError
from engine.sandbox import SandboxViolation, validate_expression, validate_script

BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
CAMUNDA = f"{{{CAMUNDA_NS}}}"

EXPRESSION_ATTRIBUTES = ("assignee", "candidateUsers", "candidateGroups", "dueDate", "followUpDate",
                         "priority", "decisionRef", "decisionRefVersion", "topic", "taskPriority",
                         "calledElementVersion", "collection")
JUEL_LANGUAGES = {None, "", "juel", "http://www.omg.org/spec/juel", "${}"}
PYTHON_LANGUAGES = {"python", "py"}
# The event definitions the engine acts on, per kind of event (anything else is refused).
EVENT_DEFINITIONS_RUN = {
    BPMN + "startEvent": {"messageEventDefinition", "timerEventDefinition", "signalEventDefinition"},
    BPMN + "endEvent": {"messageEventDefinition", "errorEventDefinition", "escalationEventDefinition",
                        "terminateEventDefinition", "signalEventDefinition", "cancelEventDefinition"},
    BPMN + "intermediateCatchEvent": {"messageEventDefinition", "timerEventDefinition", "signalEventDefinition"},
    BPMN + "intermediateThrowEvent": {"messageEventDefinition", "escalationEventDefinition",
                                      "signalEventDefinition"},
    BPMN + "boundaryEvent": {"messageEventDefinition", "timerEventDefinition", "signalEventDefinition",
                             "errorEventDefinition", "escalationEventDefinition", "cancelEventDefinition"},
}
EVENT_SUBPROCESS_STARTS = {"errorEventDefinition", "escalationEventDefinition"}
IO_OWNERS = {"userTask", "scriptTask", "serviceTask", "businessRuleTask", "callActivity", "task", "manualTask"}
# SpiffWorkflow names its own internal task specs so; an element with such an id would vanish.
RESERVED_IDS = {"Start", "End", "Root"}


def _owner_id(node) -> str | None:
    while node is not None:
        if node.get("id"):
            return node.get("id")
        node = node.getparent()
    return None


class BpmnChecker:
    def __init__(self, filename: str, tz: ZoneInfo, function_names: Iterable[str],
                 timer_min_interval: timedelta = timedelta(seconds=60)):
        self.filename = filename
        self.tz = tz
        self.function_names = set(function_names) | {"now", "dateTime"}
        self.timer_min_interval = timer_min_interval

    def fail(self, node, reason: str, attribute: str | None = None):
        raise DeploymentError(reason, file=self.filename, element=_owner_id(node), attribute=attribute,
                              line=getattr(node, "sourceline", None))

    def check_template(self, node, text: str, attribute: str):
        if text is None or not juel.is_expression(text):
            return
        try:
            juel.compile_template(text).check_functions(self.function_names)
        except juel.JuelSyntaxError as exc:
            self.fail(node, f"expression '{text}' cannot be evaluated: {exc}", attribute)

    def check_python_expression(self, node, text: str, attribute: str):
        try:
            validate_expression(text)
        except (SandboxViolation, SyntaxError) as exc:
            self.fail(node, f"expression '{text.strip()}' is refused: {exc}", attribute)

    def check(self, root) -> None:
        for node in root.iter():
            if not isinstance(node.tag, str):
                continue
            if node.get("id") in RESERVED_IDS and node.tag.startswith(BPMN):
                self.fail(node, f"the id '{node.get('id')}' is reserved by the engine; give the element "
                          "another id in the Modeler (e.g. StartEvent_1)", "id")
            for attr in EXPRESSION_ATTRIBUTES:
                value = node.get(CAMUNDA + attr)
                if value is not None:
                    self.check_template(node, value, f"camunda:{attr}")
            if node.get(CAMUNDA + "formRef"):
                self.fail(node, "linked Camunda Forms (camunda:formRef) cannot be deployed here; use a generated "
                          "task form (form fields) or a camunda:formKey", "camunda:formRef")
            tag = node.tag
            if tag in (BPMN + "scriptTask", BPMN + "serviceTask", BPMN + "sendTask", BPMN + "businessRuleTask"):
                self._check_implementation(node)
            elif tag == BPMN + "callActivity":
                self._check_call_activity(node)
            elif tag in EVENT_DEFINITIONS_RUN:
                self._check_event(node)
            if tag == CAMUNDA + "inputOutput":
                self._check_io_owner(node)
            if tag == BPMN + "conditionExpression" or tag == BPMN + "completionCondition" \
                    or tag == BPMN + "loopCardinality":
                self._check_formal_expression(node, tag.rsplit("}", 1)[1])
            elif tag in (BPMN + "timeDate", BPMN + "timeDuration", BPMN + "timeCycle"):
                self._check_timer(node, tag.rsplit("}", 1)[1])
            elif tag == BPMN + "script":
                owner = node.getparent()
                if owner.tag == BPMN + "scriptTask":
                    try:
                        validate_script(node.text or "")
                    except SyntaxError as exc:
                        self.fail(owner, f"script has a syntax error on line {exc.lineno}: {exc.msg}",
                                  "script")
                    except SandboxViolation as exc:
                        self.fail(owner, f"script is refused: {exc}", "script")
            elif tag in (CAMUNDA + "inputParameter", CAMUNDA + "outputParameter"):
                self._check_parameter(node)
            elif tag in (CAMUNDA + "executionListener", CAMUNDA + "taskListener"):
                self.fail(node.getparent().getparent(),
                          "listeners (camunda:executionListener / camunda:taskListener) cannot run here",
                          "extensionElements")
            elif tag in (CAMUNDA + "in", CAMUNDA + "out"):
                for attr in ("sourceExpression", "businessKey"):
                    if node.get(attr):
                        self.check_template(node.getparent().getparent(), node.get(attr), f"camunda:{attr}")

    def _check_implementation(self, node):
        """What an activity runs must be something this engine can run (checked for every element,
        reachable or not, as Camunda parses the whole file)."""
        tag = node.tag.rsplit("}", 1)[1]
        if tag == "scriptTask":
            fmt = (node.get("scriptFormat") or "").strip().lower()
            if fmt not in PYTHON_LANGUAGES and fmt != "":
                self.fail(node, f"scriptFormat '{node.get('scriptFormat')}' cannot run here; only python "
                          "scripts (run in a sandbox) are supported", "scriptFormat")
            return
        for attr in ("class", "expression", "delegateExpression"):
            if node.get(CAMUNDA + attr):
                self.fail(node, f"camunda:{attr} (Java delegates and expressions) cannot run here; use an "
                          "external task (camunda:type=\"external\" with a camunda:topic)", f"camunda:{attr}")
        if node.find(".//" + CAMUNDA + "connector") is not None:
            self.fail(node, "Camunda connectors cannot run here; use an external task "
                      "(camunda:type=\"external\" with a camunda:topic)", "camunda:connector")
        if node.get(CAMUNDA + "type") == "external":
            if not node.get(CAMUNDA + "topic"):
                self.fail(node, "an external task needs a camunda:topic", "camunda:topic")
            return
        if node.get(CAMUNDA + "type"):
            self.fail(node, f"camunda:type '{node.get(CAMUNDA + 'type')}' is not supported (only external)",
                      "camunda:type")
        if tag == "serviceTask":
            self.fail(node, "the service task has no implementation; set camunda:type=\"external\" and a "
                      "camunda:topic", "camunda:type")
        if tag == "businessRuleTask" and not node.get(CAMUNDA + "decisionRef"):
            self.fail(node, "the business rule task names no decision (camunda:decisionRef)",
                      "camunda:decisionRef")

    def _check_event(self, node):
        """Every event definition of the event must be one this engine acts on there; an unknown
        one would make the event do nothing (a link throw ends the path, a conditional catch waits
        for ever) instead of what the diagram shows."""
        tag = node.tag.rsplit("}", 1)[1]
        parent = node.getparent()
        in_event_subprocess = tag == "startEvent" and parent is not None and parent.tag == BPMN + "subProcess" \
            and parent.get("triggeredByEvent") == "true"
        allowed = EVENT_DEFINITIONS_RUN[node.tag] | (EVENT_SUBPROCESS_STARTS if in_event_subprocess else set())
        if tag == "startEvent" and not in_event_subprocess and parent is not None and parent.tag == BPMN + "process":
            allowed = allowed - {"signalEventDefinition"}
        for definition in node:
            if not isinstance(definition.tag, str) or not definition.tag.endswith("EventDefinition"):
                continue
            kind = definition.tag.rsplit("}", 1)[1]
            if kind == "messageEventDefinition" and tag in ("intermediateThrowEvent", "endEvent"):
                for attr in ("class", "expression", "delegateExpression", "type"):
                    if definition.get(CAMUNDA + attr):
                        self.fail(node, f"a message throw event with camunda:{attr} cannot run here; use a send "
                                  "task with camunda:type=\"external\" and a camunda:topic", f"camunda:{attr}")
            if kind in allowed:
                continue
            what = kind.removesuffix("EventDefinition")
            reason = {
                "conditional": "conditional events are not supported: nothing would evaluate the condition "
                               "again when variables change",
                "link": "link events are not supported; draw the sequence flow instead",
                "compensate": "compensation is not supported",
                "signal": "a signal start event cannot start a process here (signals stay within the "
                          "instance that throws them); use a message start event",
            }.get(what, f"a {tag} with a {what} event definition cannot run here")
            self.fail(node, reason, kind)

    def _check_io_owner(self, io):
        """camunda:inputOutput where it has an effect here: on tasks and call activities."""
        owner = io.getparent().getparent()
        tag = owner.tag.rsplit("}", 1)[1]
        if tag in IO_OWNERS or (tag == "sendTask" and owner.get(CAMUNDA + "type") == "external"):
            return
        self.fail(owner, f"camunda:inputOutput on a {tag} is not supported here; map the variables on the "
                  "tasks (or call activity) that use them", "camunda:inputOutput")

    def _check_call_activity(self, node):
        """The called process is bound when the caller is deployed (the newest version then, or
        the one deployed with it): what needs a binding at run time cannot run here."""
        called = (node.get("calledElement") or "").strip()
        if not called:
            self.fail(node, "the call activity names no process (calledElement)", "calledElement")
        if juel.is_expression(called):
            self.fail(node, f"calledElement '{called}' is an expression; the called process is bound at deploy "
                      "time here, so name its process id", "calledElement")
        binding = (node.get(CAMUNDA + "calledElementBinding") or "latest").strip()
        if binding not in ("latest", "deployment"):
            self.fail(node, f"camunda:calledElementBinding '{binding}' is not supported: the call binds to the "
                      "newest version deployed with or before the caller (latest / deployment)",
                      "camunda:calledElementBinding")
        if node.get(CAMUNDA + "caseRef"):
            self.fail(node, "CMMN cases (camunda:caseRef) cannot run here", "camunda:caseRef")
        for attr in ("variableMappingClass", "variableMappingDelegateExpression"):
            if node.get(CAMUNDA + attr):
                self.fail(node, f"camunda:{attr} (a Java delegate) cannot run here; use camunda:in / camunda:out",
                          f"camunda:{attr}")
        for mapping in node.iterfind(f"{BPMN}extensionElements/{CAMUNDA}in"):
            self._check_mapping(node, mapping, "camunda:in")
        for mapping in node.iterfind(f"{BPMN}extensionElements/{CAMUNDA}out"):
            self._check_mapping(node, mapping, "camunda:out")

    def _check_mapping(self, owner, mapping, what: str):
        if mapping.get("businessKey") is not None and what == "camunda:in":
            return
        if mapping.get("variables") is not None:
            if mapping.get("variables") != "all":
                self.fail(owner, f"{what} variables=\"{mapping.get('variables')}\": only \"all\" exists", what)
            return
        if mapping.get("source") is None and mapping.get("sourceExpression") is None:
            self.fail(owner, f"{what} needs source, sourceExpression, variables=\"all\" or businessKey", what)
        if mapping.get("sourceExpression") is not None and not mapping.get("target"):
            self.fail(owner, f"{what} with a sourceExpression needs a target", what)

    def _check_formal_expression(self, node, what: str):
        text = (node.text or "").strip()
        language = (node.get("language") or "").strip().lower() or None
        if not text:
            if what == "conditionExpression":
                self.fail(node.getparent(), "the condition is empty", what)
            return
        if language in PYTHON_LANGUAGES:
            self.check_python_expression(node.getparent(), text, what)
            return
        if language not in JUEL_LANGUAGES:
            self.fail(node.getparent(), f"{what} language '{node.get('language')}' is not supported "
                      "(use ${…} expressions or python)", what)
        if juel.is_expression(text):
            self.check_template(node.getparent(), text, what)
        else:
            self.check_python_expression(node.getparent(), text, what)

    def _check_timer(self, node, kind: str):
        text = (node.text or "").strip()
        owner = node.getparent().getparent()
        if not text:
            self.fail(owner, f"the {kind} of the timer is empty", kind)
        if juel.is_expression(text):
            self.check_template(owner, text, kind)
            return
        try:
            schedule = timer_lang.parse_timer(kind, text, self.tz)
            timer_lang.check_min_interval(schedule, self.timer_min_interval)
        except timer_lang.TimerExpressionError as exc:
            self.fail(owner, f"{kind} '{text}': {exc}", kind)

    def _check_parameter(self, node):
        owner = node.getparent().getparent().getparent()
        name = node.get("name")
        for child in node.iter():
            if not isinstance(child.tag, str):
                continue
            if child.tag == CAMUNDA + "script":
                fmt = (child.get("scriptFormat") or "").lower()
                if fmt not in PYTHON_LANGUAGES:
                    self.fail(owner, f"parameter '{name}': script format '{child.get('scriptFormat')}' "
                              "cannot run here (only python)", "camunda:inputOutput")
                self.check_python_expression(owner, child.text or "", f"parameter '{name}'")
            elif child is node or child.tag in (CAMUNDA + "value", CAMUNDA + "entry"):
                text = child.text if len(child) == 0 else None
                if text:
                    self.check_template(owner, text, f"parameter '{name}'")
