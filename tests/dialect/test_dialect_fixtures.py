"""The dialect fixtures are diagrams as Camunda Modeler saves them: valid BPMN 2.0 (the OMG schema),
the Modeler's exporter attributes, and a shape or edge for every element (a DRD shape for every
decision in the DMN files)."""

from __future__ import annotations

import pytest
from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator

from tests.dialect.conftest import DIALECT
from tests.dialect.modeler import di_problems

BPMN_FILES = sorted(p.name for p in DIALECT.glob("*.bpmn"))
DMN_FILES = sorted(p.name for p in DIALECT.glob("*.dmn"))


@pytest.fixture(scope="module")
def validator():
    return BpmnValidator()


@pytest.mark.parametrize("name", BPMN_FILES)
def test_bpmn_fixture_is_what_the_modeler_saves(name, validator):
    content = (DIALECT / name).read_bytes()
    assert di_problems(content) == []
    root = etree.fromstring(content)
    validator.validate(root, name)
    assert all(p.get("isExecutable") == "true" for p in root.iter("{http://www.omg.org/spec/BPMN/20100524/MODEL}process"))


@pytest.mark.parametrize("name", DMN_FILES)
def test_dmn_fixture_draws_every_decision(name):
    root = etree.fromstring((DIALECT / name).read_bytes())
    ns = {"dmn": "https://www.omg.org/spec/DMN/20191111/MODEL/", "dmndi": "https://www.omg.org/spec/DMN/20191111/DMNDI/"}
    assert root.get("exporter") == "Camunda Modeler"
    decisions = {d.get("id") for d in root.findall("dmn:decision", ns)}
    shapes = {s.get("dmnElementRef") for s in root.iterfind(".//dmndi:DMNShape", ns)}
    requirements = {r.get("id") for r in root.iterfind(".//dmn:informationRequirement", ns)}
    edges = {e.get("dmnElementRef") for e in root.iterfind(".//dmndi:DMNEdge", ns)}
    assert decisions and decisions == shapes and requirements == edges


def test_every_fixture_is_used_by_a_test():
    tests = "".join(p.read_text(encoding="utf-8") for p in DIALECT.parent.parent.joinpath("dialect").glob("test_*.py"))
    unused = [name for name in BPMN_FILES + DMN_FILES if f'"{name}"' not in tests]
    assert unused == []
