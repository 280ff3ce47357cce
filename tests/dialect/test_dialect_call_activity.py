"""Call activities with Camunda's variable passing: camunda:in / camunda:out (`variables="all"`,
source/target, sourceExpression, businessKey), nothing passed without mappings, camunda:inputOutput
on the call activity, and the binding of calledElement."""

from __future__ import annotations

import pytest

from engine.errors import DeploymentError
from tests.dialect.conftest import deploy, open_tasks, task_at, task_data, variables

FILES = ("call_child.bpmn", "call_plain.bpmn", "call_parent.bpmn")


def start(engine):
    return engine.start("dx_call_parent", business_key="CASE-7", user="ward", variables={
        "patientName": "李四", "age": 45, "dept": "surgery", "doctor": "dr_chen", "caseNo": "CASE-7"})


def test_variables_all_in_and_out(any_engine):
    deploy(any_engine, *FILES)
    inst = start(any_engine)
    task = task_at(any_engine, inst["id"], "Task_book")
    assert task["assignee"] == "dr_chen"  # the child saw every variable of the parent
    assert task_data(any_engine, task["id"])["patientName"] == "李四"
    any_engine.complete(task["id"], {"bookedBy": "dr_chen"}, user="dr_chen")
    values = variables(any_engine, inst["id"])
    # everything of the child came back: its script's variables and what the task was given
    assert values["slot"] == "周三上午" and values["childOnly"] is True and values["bookedBy"] == "dr_chen"
    # without camunda:in businessKey the called process has no business key, as in Camunda
    assert values["seenKey"] is None


def test_only_mapped_variables_pass_and_come_back(any_engine):
    deploy(any_engine, *FILES)
    inst = start(any_engine)
    any_engine.complete(task_at(any_engine, inst["id"], "Task_book")["id"], {}, user="dr_chen")
    before = variables(any_engine, inst["id"])
    task = task_at(any_engine, inst["id"], "Task_book")
    assert task["assignee"] == "dr_surgery"  # the call activity's input parameter, passed by source
    child = task_data(any_engine, task["id"])
    assert child["name"] == "李四" and child["ageNextYear"] == 46 and child["nothing"] is None
    assert child["childKey"] == "CASE-7-FU"  # camunda:in businessKey → execution.processBusinessKey
    assert "patientName" not in child and "age" not in child and "caseNo" not in child
    # the called process's variables are its own: not the instance's (nor is the call's local input)
    assert variables(any_engine, inst["id"]) == before

    any_engine.complete(task["id"], {"extra": "child only"}, user="dr_surgery")
    after = variables(any_engine, inst["id"])
    assert after["followUpSlot"] == "周三上午"
    assert after["summary"] == "李四 @ 周三上午"  # sourceExpression evaluated in the called process
    assert after["childBusinessKey"] == "CASE-7-FU"
    assert after["mappedDoctor"] == "dr_surgery"  # output parameter of the call activity
    assert after["doctor"] == "dr_chen"  # the local input is gone, the process variable is back
    # nothing else of the called process came back
    assert set(after) - set(before) == {"followUpSlot", "summary", "childBusinessKey", "mappedDoctor"}


def test_no_mapping_passes_nothing_either_way(engine):
    deploy(engine, *FILES)
    inst = start(engine)
    for _ in range(2):
        (task,) = open_tasks(engine, inst["id"])
        engine.complete(task["id"], {}, user=task["assignee"])
    task = task_at(engine, inst["id"], "Task_check")
    assert task_data(engine, task["id"]) == {"archived": True}  # only what the child itself set
    engine.complete(task["id"], {"checked": True}, user="archivist")
    values = variables(engine, inst["id"])
    assert "archived" not in values and "checked" not in values
    assert engine.get_instance(inst["id"])["status"] == "completed"


def test_called_element_binds_to_the_newest_version_when_the_caller_is_deployed(engine):
    deploy(engine, "call_child.bpmn", "call_plain.bpmn")
    deploy(engine, "call_parent.bpmn")
    deploy(engine, "call_child.bpmn", replace={"call_child.bpmn": [("复诊登记".encode(), "复诊登记V2".encode())]})
    inst = start(engine)
    assert open_tasks(engine, inst["id"])[0]["name"] == "复诊登记"  # bound when dx_call_parent was deployed
    deploy(engine, "call_parent.bpmn", replace={"call_parent.bpmn": [("出院随访".encode(), "出院随访2".encode())]})
    again = start(engine)
    assert open_tasks(engine, again["id"])[0]["name"] == "复诊登记V2"


@pytest.mark.parametrize("old, new, words", [
    (b'camunda:calledElementBinding="latest"', (b'camunda:calledElementBinding="version" '
                                               b'camunda:calledElementVersion="1"'), "calledElementBinding"),
    (b'calledElement="dx_call_plain"', b'calledElement="${archiveProcess}"', "expression"),
    (b'<camunda:in source="missing" target="nothing" />', b'<camunda:in variables="some" />', "variables"),
    (b'calledElement="dx_call_plain"', b'calledElement="dx_call_plain" camunda:variableMappingClass="org.Map"',
     "variableMappingClass"),
])
def test_what_cannot_be_bound_is_refused_at_deploy(engine, old, new, words):
    with pytest.raises(DeploymentError) as err:
        deploy(engine, *FILES, replace={"call_parent.bpmn": [(old, new)]})
    assert "call_parent.bpmn" in str(err.value) and words in str(err.value)
    assert err.value.element in ("Call_mapped", "Call_plain")


def test_a_called_process_that_is_not_deployed_is_refused(engine):
    with pytest.raises(DeploymentError) as err:
        deploy(engine, "call_parent.bpmn")
    assert "dx_call_child" in str(err.value)
