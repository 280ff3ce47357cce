"""The files in workflows/ are what Camunda Modeler (Camunda 7) opens and bpmn-js renders: they deploy,
and every flow node and sequence flow has diagram interchange (DI) with sensible geometry."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from lxml import etree

from engine.identity import HOSPITAL_GROUPS
from tests.processes.support import WORKFLOWS

NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
    "di": "http://www.omg.org/spec/DD/20100524/DI",
    "camunda": "http://camunda.org/schema/1.0/bpmn",
    "modeler": "http://camunda.org/schema/modeler/1.0",
    "dmn": "https://www.omg.org/spec/DMN/20191111/MODEL/",
    "dmndi": "https://www.omg.org/spec/DMN/20191111/DMNDI/",
    "dmndc": "http://www.omg.org/spec/DMN/20180521/DC/",
}
BPMN_FILES = sorted((WORKFLOWS / "bpmn").glob("*.bpmn"))
DMN_FILES = sorted((WORKFLOWS / "dmn").glob("*.dmn"))
FLOW_NODES = ("startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
              "userTask", "scriptTask", "businessRuleTask", "serviceTask", "sendTask", "receiveTask", "task",
              "manualTask", "callActivity", "subProcess", "exclusiveGateway", "parallelGateway",
              "inclusiveGateway", "eventBasedGateway")
GROUP_IDS = {g[0] for g in HOSPITAL_GROUPS}
CAMUNDA = "{" + NS["camunda"] + "}"
MODELER = "{" + NS["modeler"] + "}"


def parse(path: Path):
    return etree.parse(str(path)).getroot()


def flow_nodes(process):
    return [el for tag in FLOW_NODES for el in process.findall(f"bpmn:{tag}", NS)]


def bounds(shape):
    b = shape.find("dc:Bounds", NS)
    return tuple(float(b.get(k)) for k in ("x", "y", "width", "height"))


def test_the_four_processes_and_their_tables_are_there():
    keys = {parse(p).find("bpmn:process", NS).get("id") for p in BPMN_FILES}
    assert keys == {"complaint", "first_contact", "escort_request", "discharge_callback"}
    decisions = {d.get("id") for p in DMN_FILES for d in parse(p).findall("dmn:decision", NS)}
    assert {"complaint_tier", "complaint_routing", "complaint_deadlines", "complaint_feedback_deadline",
            "escort_dispatch", "escort_billing", "callback_plan"} <= decisions


def test_every_file_deploys_on_its_own_and_all_together(engine):
    for path in BPMN_FILES + DMN_FILES:
        result = engine.deploy([(path.name, path.read_bytes())], name=path.stem)
        assert result.created, path.name
    again = engine.deploy_directory(WORKFLOWS)
    assert not again.created  # nothing changed since: no new versions


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: p.name)
def test_saved_as_camunda_modeler_saves_for_camunda_7(path):
    root = parse(path)
    assert root.get("exporter") == "Camunda Modeler"
    assert root.get(MODELER + "executionPlatform") == "Camunda Platform"
    assert root.get(MODELER + "executionPlatformVersion").startswith("7.")
    [process] = root.findall("bpmn:process", NS)
    assert process.get("isExecutable") == "true"
    assert process.get(CAMUNDA + "historyTimeToLive")
    assert process.get("name")


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: p.name)
def test_every_flow_node_and_sequence_flow_has_di(path):
    root = parse(path)
    process = root.find("bpmn:process", NS)
    [plane] = root.findall("bpmndi:BPMNDiagram/bpmndi:BPMNPlane", NS)
    assert plane.get("bpmnElement") == process.get("id")
    shapes = {s.get("bpmnElement"): s for s in plane.findall("bpmndi:BPMNShape", NS)}
    edges = {e.get("bpmnElement"): e for e in plane.findall("bpmndi:BPMNEdge", NS)}
    nodes = {n.get("id"): n for n in flow_nodes(process)}
    flows = {f.get("id"): f for f in process.findall("bpmn:sequenceFlow", NS)}
    assert set(shapes) == set(nodes), "every flow node has exactly one shape, and no shape is dangling"
    assert set(edges) == set(flows), "every sequence flow has exactly one edge"
    for flow_id, edge in edges.items():
        points = [(float(p.get("x")), float(p.get("y"))) for p in edge.findall("di:waypoint", NS)]
        assert len(points) >= 2, flow_id
        # orthogonal routing, as the Modeler draws it
        for (x0, y0), (x1, y1) in pairwise(points):
            assert x0 == x1 or y0 == y1, f"{flow_id}: diagonal segment"
        flow = flows[flow_id]
        for point, ref in ((points[0], flow.get("sourceRef")), (points[-1], flow.get("targetRef"))):
            x, y, w, h = bounds(shapes[ref])
            assert x - 1 <= point[0] <= x + w + 1 and y - 1 <= point[1] <= y + h + 1, \
                f"{flow_id}: waypoint {point} is not on {ref}"


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: p.name)
def test_shapes_do_not_overlap_and_boundary_events_sit_on_their_task(path):
    root = parse(path)
    process = root.find("bpmn:process", NS)
    plane = root.find("bpmndi:BPMNDiagram/bpmndi:BPMNPlane", NS)
    shapes = {s.get("bpmnElement"): bounds(s) for s in plane.findall("bpmndi:BPMNShape", NS)}
    boundary = {b.get("id"): b.get("attachedToRef") for b in process.findall("bpmn:boundaryEvent", NS)}
    placed = [(k, v) for k, v in shapes.items() if k not in boundary]
    for i, (a, (ax, ay, aw, ah)) in enumerate(placed):
        for b, (bx, by, bw, bh) in placed[i + 1:]:
            apart = ax + aw + 10 <= bx or bx + bw + 10 <= ax or ay + ah + 10 <= by or by + bh + 10 <= ay
            assert apart, f"{a} and {b} overlap"
    for event, host in boundary.items():
        ex, ey, ew, eh = shapes[event]
        hx, hy, hw, hh = shapes[host]
        cx, cy = ex + ew / 2, ey + eh / 2
        on_border = (hx <= cx <= hx + hw and cy in (hy, hy + hh)) or (hy <= cy <= hy + hh and cx in (hx, hx + hw))
        assert on_border, f"{event} is not on the border of {host}"


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: p.name)
def test_flow_reads_left_to_right_and_named_elements_have_labels(path):
    root = parse(path)
    process = root.find("bpmn:process", NS)
    plane = root.find("bpmndi:BPMNDiagram/bpmndi:BPMNPlane", NS)
    shapes = {s.get("bpmnElement"): s for s in plane.findall("bpmndi:BPMNShape", NS)}
    starts = [s for s in process.findall("bpmn:startEvent", NS) if s.find("bpmn:messageEventDefinition", NS) is None]
    [start] = starts
    start_x = bounds(shapes[start.get("id")])[0]
    assert all(bounds(s)[0] >= start_x for s in shapes.values()), "the none start event is leftmost"
    for end in process.findall("bpmn:endEvent", NS):
        assert bounds(shapes[end.get("id")])[0] > start_x
    for node in flow_nodes(process):
        tag = etree.QName(node).localname
        if node.get("name") and tag.endswith(("Event", "Gateway")):
            assert shapes[node.get("id")].find("bpmndi:BPMNLabel", NS) is not None, node.get("id")
    edges = {e.get("bpmnElement"): e for e in plane.findall("bpmndi:BPMNEdge", NS)}
    for flow in process.findall("bpmn:sequenceFlow", NS):
        if flow.get("name"):
            assert edges[flow.get("id")].find("bpmndi:BPMNLabel", NS) is not None, flow.get("id")


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: p.name)
def test_every_element_but_a_join_is_named_and_every_split_is_decided(path):
    """What the Modeler's linter asks for (label-required, conditional-flows)."""
    process = parse(path).find("bpmn:process", NS)
    for node in flow_nodes(process):
        tag = etree.QName(node).localname
        joining = tag.endswith("Gateway") and len(node.findall("bpmn:outgoing", NS)) < 2
        assert joining or node.get("name"), f"{node.get('id')} has no name"
    flows = {f.get("id"): f for f in process.findall("bpmn:sequenceFlow", NS)}
    for gateway in process.findall("bpmn:exclusiveGateway", NS):
        outgoing = [flows[o.text] for o in gateway.findall("bpmn:outgoing", NS)]
        if len(outgoing) < 2:
            continue
        for flow in outgoing:
            decided = flow.find("bpmn:conditionExpression", NS) is not None or gateway.get("default") == flow.get("id")
            assert decided, f"{flow.get('id')} leaves {gateway.get('id')} without a condition and is not the default"
            assert flow.get("name"), f"{flow.get('id')}: the branch has no label"


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: p.name)
def test_human_work_goes_to_hospital_roles_through_forms(path):
    process = parse(path).find("bpmn:process", NS)
    for task in process.findall("bpmn:userTask", NS):
        groups = task.get(CAMUNDA + "candidateGroups")
        assignee = task.get(CAMUNDA + "assignee")
        assert groups or assignee, f"{task.get('id')} is offered to nobody"
        if groups and "${" not in groups:
            assert set(groups.split(",")) <= GROUP_IDS, f"{task.get('id')}: unknown group in {groups}"
        fields = task.findall("bpmn:extensionElements/camunda:formData/camunda:formField", NS)
        assert fields, f"{task.get('id')} has no form"
        for field in fields:
            assert field.get("label") and field.get("type") in ("string", "long", "boolean", "date", "enum")
            if field.get("type") == "enum":
                assert field.findall("camunda:value", NS), f"{task.get('id')}.{field.get('id')}: enum without values"
    [start] = [s for s in process.findall("bpmn:startEvent", NS) if s.find("bpmn:messageEventDefinition", NS) is None]
    start_fields = start.findall("bpmn:extensionElements/camunda:formData/camunda:formField", NS)
    assert len(start_fields) >= 5, "the start page is built from the none start event's form"
    assert any(f.get("id") == "businessKey" for f in start_fields)


@pytest.mark.parametrize("path", DMN_FILES, ids=lambda p: p.name)
def test_decision_tables_as_the_modeler_saves_them(path):
    root = parse(path)
    assert root.get("exporter") == "Camunda Modeler"
    assert root.get(MODELER + "executionPlatform") == "Camunda Platform"
    decisions = root.findall("dmn:decision", NS)
    shapes = {s.get("dmnElementRef") for s in root.findall("dmndi:DMNDI/dmndi:DMNDiagram/dmndi:DMNShape", NS)}
    assert {d.get("id") for d in decisions} == shapes
    for decision in decisions:
        table = decision.find("dmn:decisionTable", NS)
        assert table.get("hitPolicy", "UNIQUE") in ("UNIQUE", "FIRST")
        for expr in table.findall("dmn:input/dmn:inputExpression", NS):
            assert expr.get("typeRef") in ("string", "boolean", "integer")
        for out in table.findall("dmn:output", NS):
            assert out.get("typeRef") and out.get("name") and out.get("label")
        for rule in table.findall("dmn:rule", NS):
            assert len(rule.findall("dmn:inputEntry", NS)) == len(table.findall("dmn:input", NS))
            assert len(rule.findall("dmn:outputEntry", NS)) == len(table.findall("dmn:output", NS))
