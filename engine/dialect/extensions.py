"""Read the `camunda:` extensions of a BPMN element into plain JSON-safe data.

SpiffWorkflow keeps `spec.extensions` through serialization, so everything the engine needs of
the Camunda 7 dialect (assignment, forms, mappings, decision references, external topics) is
carried there and interpreted by the specs in `engine.dialect.specs`.
"""

from __future__ import annotations

from typing import Any

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"

_C = f"{{{CAMUNDA_NS}}}"
_B = f"{{{BPMN_NS}}}"

# Plain attributes copied as they are written (expressions are evaluated at run time).
ATTRIBUTES = (
    "assignee", "candidateUsers", "candidateGroups", "dueDate", "followUpDate", "priority",
    "formKey", "decisionRef", "decisionRefBinding", "decisionRefVersion", "decisionRefVersionTag",
    "resultVariable", "mapDecisionResult", "type", "topic", "taskPriority", "class", "expression",
    "delegateExpression", "initiator", "calledElementBinding", "calledElementVersion",
    "asyncBefore", "asyncAfter", "collection", "elementVariable", "formRef",
)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parameter_value(param) -> dict[str, Any]:
    """A camunda:inputParameter / outputParameter body: text, list, map or script."""
    children = [c for c in param if isinstance(c.tag, str)]
    if not children:
        return {"kind": "text", "value": param.text or ""}
    child = children[0]
    name = _local(child.tag)
    if name == "list":
        return {"kind": "list", "items": [_parameter_value(v) for v in child if isinstance(v.tag, str)]}
    if name == "map":
        return {"kind": "map", "entries": [
            {"key": e.get("key"), **_parameter_value(e)} for e in child if isinstance(e.tag, str)]}
    if name == "script":
        return {"kind": "script", "format": child.get("scriptFormat"), "value": child.text or "",
                "resource": child.get("resource")}
    if name == "value":
        return {"kind": "text", "value": child.text or ""}
    return {"kind": "unsupported", "element": name}


def read_extensions(node) -> dict[str, Any]:
    """All camunda extension data of one BPMN element (lxml node)."""
    ext: dict[str, Any] = {}
    for attr in ATTRIBUTES:
        value = node.get(_C + attr)
        if value is not None:
            ext[attr] = value

    ext_elements = node.find(_B + "extensionElements")
    if ext_elements is None:
        return ext

    props = {}
    for prop in ext_elements.iterfind(f"{_C}properties/{_C}property"):
        props[prop.get("name")] = prop.get("value")
    if props:
        ext["properties"] = props

    io = ext_elements.find(_C + "inputOutput")
    if io is not None:
        ext["inputs"] = [{"name": p.get("name"), **_parameter_value(p)}
                         for p in io.iterfind(_C + "inputParameter")]
        ext["outputs"] = [{"name": p.get("name"), **_parameter_value(p)}
                          for p in io.iterfind(_C + "outputParameter")]

    form_data = ext_elements.find(_C + "formData")
    if form_data is not None:
        fields = []
        for f in form_data.iterfind(_C + "formField"):
            field: dict[str, Any] = {
                "id": f.get("id"), "label": f.get("label"), "type": f.get("type") or "string",
                "defaultValue": f.get("defaultValue"), "datePattern": f.get("datePattern"),
                "validation": [], "properties": {}, "values": [],
            }
            for v in f.iterfind(f"{_C}validation/{_C}constraint"):
                field["validation"].append({"name": v.get("name"), "config": v.get("config")})
            for p in f.iterfind(f"{_C}properties/{_C}property"):
                field["properties"][p.get("id")] = p.get("value")
            for v in f.iterfind(_C + "value"):
                field["values"].append({"id": v.get("id"), "name": v.get("name")})
            fields.append(field)
        ext["formFields"] = fields
        business_key = form_data.get("businessKey")
        if business_key:
            ext["formBusinessKey"] = business_key

    ins, outs = [], []
    for tag, target in ((_C + "in", ins), (_C + "out", outs)):
        for m in ext_elements.iterfind(tag):
            mapping = {k: m.get(k) for k in ("source", "sourceExpression", "target", "variables",
                                              "businessKey", "local") if m.get(k) is not None}
            target.append(mapping)
    if ins:
        ext["callIn"] = ins
    if outs:
        ext["callOut"] = outs

    listeners = [{"event": lst.get("event"), "kind": _listener_kind(lst)}
                 for lst in ext_elements if isinstance(lst.tag, str)
                 and _local(lst.tag) in ("executionListener", "taskListener")]
    if listeners:
        ext["listeners"] = listeners

    errors = []
    for e in ext_elements.iterfind(_C + "errorEventDefinition"):
        errors.append({"id": e.get("id"), "errorRef": e.get("errorRef"), "expression": e.get("expression")})
    if errors:
        ext["errorEventDefinitions"] = errors

    connector = ext_elements.find(_C + "connector")
    if connector is not None:
        ext["connector"] = True
    return ext


def _listener_kind(listener) -> str:
    for attr in ("class", "expression", "delegateExpression"):
        if listener.get(attr):
            return attr
    if listener.find(_C + "script") is not None:
        return "script"
    return "unknown"
