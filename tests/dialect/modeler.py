"""Diagram interchange (DI) for the dialect fixtures, laid out the way Camunda Modeler draws.

The fixtures in tests/fixtures/dialect are written as Camunda Modeler 5.x saves them for Camunda 7:
the Modeler's namespaces and exporter attributes, `modeler:executionPlatform="Camunda Platform"`,
and a shape or an edge for every element. Writing coordinates by hand for 30 diagrams is error-prone,
so this module computes a left-to-right layout (the Modeler's own direction) for a file's process
part and writes the `bpmndi:BPMNDiagram` section after it:

    .venv/bin/python -m tests.dialect.modeler tests/fixtures/dialect/*.bpmn

rewrites each file's DI in place (the process part is left byte for byte as it is). The tests
check every fixture with :func:`di_problems`: nothing is missing, nothing dangles.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
B = f"{{{BPMN}}}"
MODELER = "http://camunda.org/schema/modeler/1.0"

EVENTS = {"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"}
GATEWAYS = {"exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway"}
ACTIVITIES = {"task", "userTask", "serviceTask", "scriptTask", "businessRuleTask", "sendTask", "receiveTask",
              "manualTask", "callActivity", "subProcess", "transaction"}
FLOW_NODES = EVENTS | GATEWAYS | ACTIVITIES
GAP_X, GAP_Y, PAD = 50, 40, 30


def _local(node) -> str:
    return etree.QName(node).localname


@dataclass
class Box:
    x: float = 0
    y: float = 0
    w: float = 0
    h: float = 0

    @property
    def mid_y(self) -> float:
        return self.y + self.h / 2


@dataclass
class Layout:
    shapes: dict[str, Box] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    edges: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    labels: dict[str, Box] = field(default_factory=dict)
    expanded: set[str] = field(default_factory=set)


def _size(node) -> tuple[float, float]:
    kind = _local(node)
    if kind in EVENTS:
        return 36, 36
    if kind in GATEWAYS:
        return 50, 50
    return 100, 80


def _layout_container(container, layout: Layout) -> tuple[float, float, dict[str, Box]]:
    """Lay out one process or expanded sub-process at (0, 0); returns its size and the boxes of
    its direct children (relative)."""
    nodes = [n for n in container if isinstance(n.tag, str) and _local(n) in FLOW_NODES]
    main = [n for n in nodes if _local(n) != "boundaryEvent" and n.get("triggeredByEvent") != "true"]
    boundaries = [n for n in nodes if _local(n) == "boundaryEvent"]
    event_subs = [n for n in nodes if n.get("triggeredByEvent") == "true"]
    flows = [f for f in container if isinstance(f.tag, str) and _local(f) == "sequenceFlow"]
    host_of = {b.get("id"): b.get("attachedToRef") for b in boundaries}
    succ: dict[str, list[str]] = {}
    for f in flows:
        succ.setdefault(f.get("sourceRef"), []).append(f.get("targetRef"))

    sizes: dict[str, tuple[float, float]] = {}
    inner: dict[str, tuple[float, float, dict[str, Box]]] = {}
    for n in main + event_subs:
        if _local(n) in ("subProcess", "transaction"):
            w, h, boxes = _layout_container(n, layout)
            inner[n.get("id")] = (w, h, boxes)
            sizes[n.get("id")] = (max(w + 2 * PAD, 350), max(h + 2 * PAD, 200))
        else:
            sizes[n.get("id")] = _size(n)

    # columns: longest path from the start nodes (back edges ignored); rows: a new row per branch
    ids = [n.get("id") for n in main]
    column: dict[str, int] = {}
    row: dict[str, int] = {}
    next_row = [0]

    def successors(node_id):
        out = list(succ.get(node_id, []))
        for b_id, host in host_of.items():
            if host == node_id:
                out.extend((t, b_id) for t in succ.get(b_id, []))
        return out

    def visit(node_id, col, r, path):
        if node_id not in sizes or node_id in path:
            return
        if node_id in column and column[node_id] >= col:
            return
        column[node_id] = col
        row.setdefault(node_id, r)
        first = True
        for item in successors(node_id):
            target, via_boundary = (item if isinstance(item, tuple) else (item, None))
            if first and via_boundary is None:
                visit(target, col + 1, row[node_id], path | {node_id})
                first = False
            else:
                if target not in row:
                    next_row[0] += 1
                    row[target] = next_row[0]
                visit(target, col + 1, row[target], path | {node_id})

    targets = {f.get("targetRef") for f in flows}
    starts = [i for i in ids if i not in targets] or ids[:1]
    for k, s in enumerate(starts):
        if k:
            next_row[0] += 1
        visit(s, 0, next_row[0], frozenset())
    for i in ids:
        if i not in column:
            next_row[0] += 1
            visit(i, 0, next_row[0], frozenset())
    taken: dict[tuple[int, int], str] = {}
    for i in ids:
        key = (column[i], row[i])
        while key in taken:
            key = (key[0], key[1] + 1)
        taken[key] = i
        row[i] = key[1]

    col_w: dict[int, float] = {}
    row_h: dict[int, float] = {}
    for i in ids:
        w, h = sizes[i]
        col_w[column[i]] = max(col_w.get(column[i], 0), w)
        row_h[row[i]] = max(row_h.get(row[i], 0), h + (20 if any(host_of[b] == i for b in host_of) else 0))
    col_x, x = {}, PAD
    for c in sorted(col_w):
        col_x[c] = x
        x += col_w[c] + GAP_X
    row_y, y = {}, PAD
    for r in sorted(row_h):
        row_y[r] = y
        y += row_h[r] + GAP_Y
    width, height = x - GAP_X + PAD, y - GAP_Y + PAD

    boxes: dict[str, Box] = {}
    for i in ids:
        w, h = sizes[i]
        c, r = column[i], row[i]
        boxes[i] = Box(col_x[c] + (col_w[c] - w) / 2, row_y[r] + (row_h[r] - h) / 2, w, h)
    ex = PAD
    for n in event_subs:
        w, h = sizes[n.get("id")]
        boxes[n.get("id")] = Box(ex, height + GAP_Y, w, h)
        ex += w + GAP_X
    if event_subs:
        width = max(width, ex - GAP_X + PAD)
        height = height + GAP_Y + max(sizes[n.get("id")][1] for n in event_subs) + PAD
    per_host: dict[str, int] = {}
    for b in boundaries:
        host = boxes.get(b.get("attachedToRef"))
        if host is None:
            continue
        k = per_host.get(b.get("attachedToRef"), 0)
        per_host[b.get("attachedToRef")] = k + 1
        boxes[b.get("id")] = Box(host.x + host.w - 36 - 6 - k * 44, host.y + host.h - 18, 36, 36)
    # the inner boxes of sub-processes are placed when the container's position is known
    for sub_id, (_, _, sub_boxes) in inner.items():
        layout.expanded.add(sub_id)
        boxes[sub_id].inner = sub_boxes  # type: ignore[attr-defined]
    return width, height, boxes


def _place(container, boxes: dict[str, Box], dx: float, dy: float, layout: Layout) -> None:
    for n in container:
        if not isinstance(n.tag, str) or _local(n) not in FLOW_NODES:
            continue
        box = boxes.get(n.get("id"))
        if box is None:
            continue
        placed = Box(box.x + dx, box.y + dy, box.w, box.h)
        layout.shapes[n.get("id")] = placed
        layout.order.append(n.get("id"))
        if n.get("name") and (_local(n) in EVENTS or _local(n) in GATEWAYS):
            layout.labels[n.get("id")] = Box(placed.x - 7, placed.y + placed.h + 7, placed.w + 14, 14)
        sub = getattr(box, "inner", None)
        if sub is not None:
            _place(n, sub, placed.x + PAD, placed.y + PAD, layout)
    for f in container:
        if isinstance(f.tag, str) and _local(f) == "sequenceFlow":
            layout.edges[f.get("id")] = _route(layout.shapes.get(f.get("sourceRef")),
                                               layout.shapes.get(f.get("targetRef")),
                                               f.get("sourceRef"), container)
            layout.order.append(f.get("id"))
            if f.get("name"):
                (x1, y1), (x2, _) = layout.edges[f.get("id")][0], layout.edges[f.get("id")][1]
                layout.labels[f.get("id")] = Box(min(x1, x2) + 5, y1 - 20, 30, 14)


def _route(src: Box | None, dst: Box | None, src_id: str, container) -> list[tuple[float, float]]:
    if src is None or dst is None:
        return [(0, 0), (10, 0)]
    is_boundary = any(isinstance(n.tag, str) and _local(n) == "boundaryEvent" and n.get("id") == src_id
                      for n in container)
    if is_boundary:
        sx, sy = src.x + src.w / 2, src.y + src.h
        tx, ty = dst.x, dst.mid_y
        if ty <= sy:
            return [(sx, sy), (sx, sy + 20), (tx - 20, sy + 20), (tx - 20, ty), (tx, ty)]
        return [(sx, sy), (sx, ty), (tx, ty)]
    sx, sy = src.x + src.w, src.mid_y
    tx, ty = dst.x, dst.mid_y
    if tx <= sx:  # a loop back: below both shapes
        low = max(src.y + src.h, dst.y + dst.h) + 20
        return [(src.x + src.w / 2, src.y + src.h), (src.x + src.w / 2, low), (dst.x + dst.w / 2, low),
                (dst.x + dst.w / 2, dst.y + dst.h)]
    if abs(sy - ty) < 0.5:
        return [(sx, sy), (tx, ty)]
    if src.h == 50 and src.w == 50:  # from a gateway: leave by the bottom or top corner, as the Modeler does
        gx = src.x + 25
        gy = src.y + (src.h if ty > sy else 0)
        return [(gx, gy), (gx, ty), (tx, ty)]
    mid = sx + (tx - sx) / 2
    return [(sx, sy), (mid, sy), (mid, ty), (tx, ty)]


def _fmt(v: float) -> str:
    return str(round(v))


def build_di(root) -> str:
    """The text of the bpmndi:BPMNDiagram element for a definitions element."""
    layout = Layout()
    processes = {p.get("id"): p for p in root.findall(B + "process")}
    collaboration = root.find(B + "collaboration")
    lines = ['  <bpmndi:BPMNDiagram id="BPMNDiagram_1">']
    if collaboration is not None:
        lines.append(f'    <bpmndi:BPMNPlane id="BPMNPlane_1" bpmnElement="{collaboration.get("id")}">')
        y = 80
        for part in collaboration.findall(B + "participant"):
            process = processes.get(part.get("processRef"))
            w, h, boxes = _layout_container(process, layout) if process is not None else (600, 120, {})
            w, h = max(w + 30, 600), max(h, 120)
            lines.append(f'      <bpmndi:BPMNShape id="{part.get("id")}_di" bpmnElement="{part.get("id")}" '
                         f'isHorizontal="true">')
            lines.append(f'        <dc:Bounds x="120" y="{_fmt(y)}" width="{_fmt(w)}" height="{_fmt(h)}" />')
            lines.append("        <bpmndi:BPMNLabel />")
            lines.append("      </bpmndi:BPMNShape>")
            if process is not None:
                _place(process, boxes, 150, y, layout)
            y += h + 40
    else:
        process = next(iter(processes.values()))
        lines.append(f'    <bpmndi:BPMNPlane id="BPMNPlane_1" bpmnElement="{process.get("id")}">')
        _, _, boxes = _layout_container(process, layout)
        _place(process, boxes, 120, 50, layout)
    for element_id in layout.order:
        label = layout.labels.get(element_id)
        label_xml = (f'        <bpmndi:BPMNLabel>\n          <dc:Bounds x="{_fmt(label.x)}" y="{_fmt(label.y)}" '
                     f'width="{_fmt(label.w)}" height="{_fmt(label.h)}" />\n        </bpmndi:BPMNLabel>') \
            if label else None
        if element_id in layout.edges:
            lines.append(f'      <bpmndi:BPMNEdge id="{element_id}_di" bpmnElement="{element_id}">')
            lines += [f'        <di:waypoint x="{_fmt(x)}" y="{_fmt(y)}" />' for x, y in layout.edges[element_id]]
            if label_xml:
                lines.append(label_xml)
            lines.append("      </bpmndi:BPMNEdge>")
            continue
        box = layout.shapes[element_id]
        node = root.xpath(f"//*[@id='{element_id}']")[0]
        extra = ""
        if _local(node) == "exclusiveGateway":
            extra = ' isMarkerVisible="true"'
        elif element_id in layout.expanded:
            extra = ' isExpanded="true"'
        lines.append(f'      <bpmndi:BPMNShape id="{element_id}_di" bpmnElement="{element_id}"{extra}>')
        lines.append(f'        <dc:Bounds x="{_fmt(box.x)}" y="{_fmt(box.y)}" width="{_fmt(box.w)}" '
                     f'height="{_fmt(box.h)}" />')
        if label_xml:
            lines.append(label_xml)
        lines.append("      </bpmndi:BPMNShape>")
    lines += ["    </bpmndi:BPMNPlane>", "  </bpmndi:BPMNDiagram>"]
    return "\n".join(lines)


def with_di(content: bytes) -> bytes:
    """The file with its BPMNDiagram section written anew after the process part."""
    text = content.decode("utf-8")
    cut = text.find("  <bpmndi:BPMNDiagram")
    if cut < 0:
        cut = text.rfind("</bpmn:definitions>")
    root = etree.fromstring(content)
    return (text[:cut].rstrip("\n") + "\n" + build_di(root) + "\n</bpmn:definitions>\n").encode("utf-8")


def di_problems(content: bytes) -> list[str]:
    """What keeps a file from being a diagram the Modeler saved: missing Modeler attributes,
    elements without a shape or edge, DI that points nowhere."""
    root = etree.fromstring(content)
    problems = []
    if root.get("exporter") != "Camunda Modeler":
        problems.append("exporter is not Camunda Modeler")
    if root.get(f"{{{MODELER}}}executionPlatform") != "Camunda Platform":
        problems.append('modeler:executionPlatform is not "Camunda Platform"')
    drawn = [d.get("bpmnElement") for d in root.iter("{http://www.omg.org/spec/BPMN/20100524/DI}BPMNShape",
                                                   "{http://www.omg.org/spec/BPMN/20100524/DI}BPMNEdge")]
    ids = {n.get("id") for n in root.iter() if isinstance(n.tag, str) and n.get("id")}
    for node in root.iter():
        if not isinstance(node.tag, str) or not node.tag.startswith(B):
            continue
        if _local(node) in FLOW_NODES | {"sequenceFlow", "participant"} and drawn.count(node.get("id")) != 1:
            problems.append(f"{_local(node)} '{node.get('id')}' is drawn {drawn.count(node.get('id'))} times")
    for ref in drawn:
        if ref not in ids:
            problems.append(f"DI refers to '{ref}', which does not exist")
    for edge in root.iter("{http://www.omg.org/spec/BPMN/20100524/DI}BPMNEdge"):
        if len(edge.findall("{http://www.omg.org/spec/DD/20100524/DI}waypoint")) < 2:
            problems.append(f"edge {edge.get('id')} has fewer than two waypoints")
    return problems


if __name__ == "__main__":  # pragma: no cover - a tool for writing fixtures
    for name in sys.argv[1:]:
        path = Path(name)
        path.write_bytes(with_di(path.read_bytes()))
        print(path, di_problems(path.read_bytes()) or "ok")
