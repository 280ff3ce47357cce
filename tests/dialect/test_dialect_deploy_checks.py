"""What cannot run is refused at deploy, with the file, the element id, the attribute and the reason —
and nothing of the deployment is kept. Python scripts run (sandboxed); other formats are refused."""

from __future__ import annotations

import pytest

from engine.errors import DeploymentError
from tests.dialect.conftest import deploy, variables

CHECKS = [
    # file, old, new, element, attribute, words in the reason
    ("expressions.bpmn", b"${amount gt 1000 and not empty dept}", b"${amount gt 1000 and not empty dept",
     "Flow_big", "conditionExpression", "cannot be evaluated"),
    ("expressions.bpmn", b'camunda:dueDate="${addWorkingDays(now(), 2)}"',
     b'camunda:dueDate="${addWorkDays(now(), 2)}"', "Task_head", "camunda:dueDate", "addWorkDays"),
    ("expressions.bpmn", b'camunda:candidateGroups="${dept}_head, director"',
     b'camunda:candidateGroups="${dept.}_head, director"', "Task_head", "camunda:candidateGroups", "dept"),
    ("expressions.bpmn", b'camunda:priority="${urgent ? 90 : 40}"', b'camunda:priority="${urgent ? 90}"',
     "Task_head", "camunda:priority", "cannot be evaluated"),
    ("expressions.bpmn", (b'<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression" '
     b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">${ticket mod'),
     (b'<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression" language="javascript" '
     b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">${ticket mod'), "Flow_even", "conditionExpression",
     "javascript"),
    ("expressions.bpmn", b'<bpmn:userTask id="Task_head"',
     b'<bpmn:userTask id="Task_head" camunda:assignee="${__import__(\'os\').getcwd()}"', "Task_head",
     "camunda:assignee", "__import__"),
    ("expressions.bpmn", b"<camunda:formData>", (b'<camunda:taskListener class="org.hospital.Notify" event="create" />'
     b"<camunda:formData>"), "Task_head", "extensionElements", "listeners"),
    ("expressions.bpmn", b"<camunda:formData>", (b'<camunda:executionListener expression="${audit.log(execution)}" '
     b'event="start" /><camunda:formData>'), "Task_head", "extensionElements", "listeners"),
    ("expressions.bpmn", b'camunda:formKey="embedded:app:forms/review.html"',
     b'camunda:formRef="review" camunda:formRefBinding="latest"', "Task_head", "camunda:formRef", "formKey"),
    ("io_mapping.bpmn", b'scriptFormat="python"', b'scriptFormat="javascript"', "Activity_prepare",
     "scriptFormat", "only python"),
    ("io_mapping.bpmn", b'scriptFormat="python"', b'scriptFormat="groovy"', "Activity_prepare",
     "scriptFormat", "groovy"),
    ("io_mapping.bpmn", b"total = int(fee) * len(tests)", b"total = int(fee) * len(tests))", "Activity_prepare",
     "script", "syntax error on line 2"),
    ("io_mapping.bpmn", b'<camunda:inputParameter name="fee">120</camunda:inputParameter>',
     (b'<camunda:inputParameter name="fee"><camunda:script scriptFormat="javascript">120</camunda:script>'
     b"</camunda:inputParameter>"), "Activity_prepare", "camunda:inputOutput", "javascript"),
    ("io_mapping.bpmn", b"${patientName}\xe6\x82\xa8\xe5\xa5\xbd", b"${patientName\xe6\x82\xa8\xe5\xa5\xbd",
     "Activity_sms", "parameter 'text'", "cannot be evaluated"),
    ("io_mapping.bpmn", b'camunda:type="external" camunda:topic="sms"', b'camunda:class="org.hospital.SmsDelegate"',
     "Activity_sms", "camunda:class", "external task"),
    ("io_mapping.bpmn", b'camunda:type="external" camunda:topic="sms"', b'camunda:type="external"',
     "Activity_sms", "camunda:topic", "topic"),
    ("io_mapping.bpmn", b'camunda:type="external" camunda:topic="sms">',
     (b'><bpmn:extensionElements><camunda:connector><camunda:connectorId>http-connector</camunda:connectorId>'
     b"</camunda:connector></bpmn:extensionElements>"), "Activity_sms", "camunda:connector", "connector"),
    ("multi_instance.bpmn", b'camunda:collection="${reviewers}"', b'camunda:collection="${reviewers"',
     "Task_opinion", "camunda:collection", "cannot be evaluated"),
    ("multi_instance.bpmn", b"<bpmn:loopCardinality xsi:type=\"bpmn:tFormalExpression\">3<",
     b"<bpmn:loopCardinality xsi:type=\"bpmn:tFormalExpression\">open('x')<", "Task_step", "loopCardinality", ""),
    ("decision_tasks.bpmn", b' camunda:decisionRef="dx_plan"', b"", "Rule_plan", "camunda:decisionRef",
     "names no decision"),
    ("flow_control.bpmn", (b'<bpmn:messageEventDefinition id="MessageEventDefinition_0c1" '
     b'messageRef="Message_patient_reply" />'), (b'<bpmn:conditionalEventDefinition id="Cond_1"><bpmn:condition '
     b'xsi:type="bpmn:tFormalExpression">${replied}</bpmn:condition></bpmn:conditionalEventDefinition>'),
     "Catch_reply", "conditionalEventDefinition", "conditional events"),
    ("exceptions.bpmn", b'<bpmn:signalEventDefinition id="SignalEventDefinition_0t1" signalRef="Signal_ward_closed" />',
     b'<bpmn:linkEventDefinition id="Link_1" name="toDisinfect" />', "Throw_ward_closed", "linkEventDefinition",
     "link events"),
    ("exceptions.bpmn", b'<bpmn:signalEventDefinition id="SignalEventDefinition_0t1" signalRef="Signal_ward_closed" />',
     b'<bpmn:messageEventDefinition id="Msg_1" messageRef="Message_x" camunda:class="org.hospital.Send" />',
     "Throw_ward_closed", "camunda:class", "send task"),
    ("exceptions.bpmn", b'<bpmn:subProcess id="Sub_check" name="\xe8\xbf\x87\xe6\x95\x8f\xe6\xa0\xb8\xe6\x9f\xa5">',
     (b'<bpmn:subProcess id="Sub_check"><bpmn:extensionElements><camunda:inputOutput><camunda:inputParameter '
     b'name="drug">${drug}</camunda:inputParameter></camunda:inputOutput></bpmn:extensionElements>'), "Sub_check",
     "camunda:inputOutput", "subProcess"),
    ("message_start.bpmn", b'<bpmn:messageEventDefinition id="MessageEventDefinition_1" messageRef="Message_transfer" />',
     b'<bpmn:signalEventDefinition id="SignalEventDefinition_1" signalRef="Signal_transfer" />', "Start_transfer",
     "signalEventDefinition", "message start event"),
    ("decision_tasks.bpmn", b'<bpmn:startEvent id="StartEvent_1"', b'<bpmn:startEvent id="Start"', "Start", "id",
     "reserved"),
]


@pytest.mark.parametrize("name, old, new, element, attribute, words", CHECKS,
                         ids=[f"{c[0]}-{c[3]}-{c[4]}" for c in CHECKS])
def test_refused_at_deploy_with_file_element_attribute_and_reason(engine, name, old, new, element, attribute, words):
    others = {"decision_tasks.bpmn": ["followup_decisions.dmn"]}.get(name, [])
    with pytest.raises(DeploymentError) as err:
        deploy(engine, *others, name, replace={name: [(old, new)]})
    error = err.value
    assert (error.file, error.element, error.attribute) == (name, element, attribute), str(error)
    assert words in error.reason
    assert str(error).startswith(f"{name}, line ")  # where, then why
    assert engine.list_definitions() == [] and engine.list_decisions() == []


def test_the_unchanged_fixtures_deploy(engine):
    result = deploy(engine, "expressions.bpmn", "io_mapping.bpmn", "multi_instance.bpmn", "followup_decisions.dmn",
                    "decision_tasks.bpmn")
    assert len(result.process_definitions) == 4


def test_python_scripts_run_in_the_sandbox(engine):
    deploy(engine, "io_mapping.bpmn", replace={"io_mapping.bpmn": [(b'scriptFormat="python"',
                                                                  b'scriptFormat="Python"')]})
    inst = engine.start("dx_io_mapping", variables={"patientName": "赵六", "age": 30, "extraTest": "尿常规",
                                                    "nurse": "n1", "phone": "1"})
    assert variables(engine, inst["id"])["checkSummary"] == "赵六：血常规、尿常规"


def test_a_script_that_escapes_the_sandbox_is_refused_at_deploy(engine):
    with pytest.raises(DeploymentError) as err:
        deploy(engine, "io_mapping.bpmn", replace={"io_mapping.bpmn": [(
            b"total = int(fee) * len(tests)", b"total = ().__class__.__bases__[0].__subclasses__()")]})
    assert err.value.element == "Activity_prepare" and err.value.attribute == "script"
