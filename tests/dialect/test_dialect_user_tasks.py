"""`${…}` in conditions and in the assignment of user tasks, the task table, camunda:formData and
camunda:formKey — through the engine service, on a diagram saved by Camunda Modeler."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engine.errors import InvalidInput
from tests.dialect.conftest import deploy, elements, open_tasks, task_at, variables

SHANGHAI = timezone(timedelta(hours=8))


def start(engine, **values):
    base = {"amount": 500, "dept": "surgery", "backup": None, "urgent": False, "ticket": 4}
    base.update(values)
    return engine.start("dx_expressions", business_key=values.pop("key", None), variables=base, user="wang_wu")


@pytest.mark.parametrize("values, element", [
    ({"amount": 5000, "dept": "surgery"}, "Task_head"),           # gt, and, not empty
    ({"amount": 5000, "dept": ""}, "Task_small"),                  # empty '' → the second flow
    ({"amount": 80, "dept": "surgery"}, "Task_small"),             # le inside ?:
    ({"amount": 500, "dept": "surgery"}, "Task_desk"),             # no condition holds: the default flow
])
def test_conditions_with_word_operators_empty_and_ternary(engine, values, element):
    deploy(engine, "expressions.bpmn")
    inst = start(engine, **values)
    assert elements(engine, inst["id"]) == [element]


def test_assignment_expressions_fill_the_task_table(any_engine, clock):
    deploy(any_engine, "expressions.bpmn")
    inst = start(any_engine, amount=5000, dept="surgery", urgent=True)
    task = task_at(any_engine, inst["id"], "Task_head")
    # "${dept}_head, director": a composite template, then a comma list
    assert task["candidate_groups"] == ["surgery_head", "director"]
    assert task["candidate_users"] == ["duty_officer", "li_si"]  # ${empty backup ? … : backup}
    assert task["priority"] == 90
    # addWorkingDays(now(), 2): the end of working hours (17:30) two working days after Monday
    assert task["due_at"] == datetime(2026, 3, 4, 17, 30, tzinfo=SHANGHAI)
    assert task["follow_up_at"] == clock.now() + timedelta(hours=4)
    assert task["form_key"] == "embedded:app:forms/review.html"
    assert task["assignee"] is None

    other = start(any_engine, amount=5000, dept="icu", backup="zhao_liu", urgent=False)
    task = task_at(any_engine, other["id"], "Task_head")
    assert task["candidate_groups"] == ["icu_head", "director"]
    assert task["candidate_users"] == ["zhao_liu", "li_si"]
    assert task["priority"] == 40


def test_literal_assignment_and_the_initiator(engine):
    deploy(engine, "expressions.bpmn")
    desk = start(engine, amount=500)
    task = task_at(engine, desk["id"], "Task_desk")
    assert task["candidate_groups"] == ["front_desk", "complaint_office"]
    assert task["priority"] == 70
    assert task["due_at"] == datetime(2026, 3, 5, 17, 30, tzinfo=SHANGHAI)
    # an ISO date-time without offset is hospital time
    assert task["follow_up_at"] == datetime(2026, 3, 4, 9, 0, tzinfo=SHANGHAI)
    small = start(engine, amount=50)
    task = task_at(engine, small["id"], "Task_small")
    assert task["assignee"] == "wang_wu"  # camunda:initiator="initiator", assignee="${initiator}"
    assert task["form_key"] == "camunda-forms:deployment:small.form"
    assert [t["element_id"] for t in open_tasks(engine, candidate_groups=["complaint_office"])] == ["Task_desk"]


def test_form_fields_and_constraints_are_exposed(engine):
    deploy(engine, "expressions.bpmn")
    inst = start(engine, amount=5000)
    form = engine.task_form(task_at(engine, inst["id"], "Task_head")["id"])
    assert form.form_key == "embedded:app:forms/review.html"
    fields = {f.id: f for f in form.fields}
    assert list(fields) == ["decision", "comment", "approvedAmount", "reviewDate", "needCallback", "caseNo"]
    assert fields["decision"].type == "enum" and fields["decision"].required
    assert fields["decision"].options == [("approve", "同意"), ("reject", "驳回")]
    assert (fields["comment"].min_length, fields["comment"].max_length) == (2, 20)
    assert (fields["approvedAmount"].minimum, fields["approvedAmount"].maximum) == (0, 100000)
    assert fields["approvedAmount"].default == 0 and fields["needCallback"].default is False
    assert fields["reviewDate"].type == "date" and fields["reviewDate"].label == "复核日期"
    assert fields["caseNo"].readonly and fields["caseNo"].properties == {"placeholder": "ZX-"}


@pytest.mark.parametrize("submitted, bad", [
    ({"comment": "好的"}, {"decision"}),                                    # required
    ({"decision": "maybe"}, {"decision"}),                                 # not one of the values
    ({"decision": "approve", "comment": "x" * 21}, {"comment"}),           # maxlength
    ({"decision": "approve", "comment": "x"}, {"comment"}),                # minlength
    ({"decision": "approve", "approvedAmount": 100001}, {"approvedAmount"}),  # max
    ({"decision": "approve", "approvedAmount": "abc"}, {"approvedAmount"}),   # not a long
    ({"decision": "approve", "reviewDate": "下周"}, {"reviewDate"}),        # not a date
])
def test_complete_refuses_what_the_form_forbids(engine, submitted, bad):
    deploy(engine, "expressions.bpmn")
    inst = start(engine, amount=5000)
    task = task_at(engine, inst["id"], "Task_head")
    with pytest.raises(InvalidInput) as err:
        engine.complete(task["id"], submitted, user="li_si")
    assert set(err.value.details["fields"]) == bad
    assert engine.get_task(task["id"])["status"] == "open"


def test_complete_stores_typed_form_values_and_ignores_readonly_fields(engine):
    deploy(engine, "expressions.bpmn")
    inst = start(engine, amount=5000, ticket=4)
    task = task_at(engine, inst["id"], "Task_head")
    engine.complete(task["id"], {"decision": "approve", "comment": "同意报销", "approvedAmount": "4200",
                                 "reviewDate": "2026-03-03", "needCallback": "true", "caseNo": "forged"},
                    user="li_si")
    values = variables(engine, inst["id"])
    assert values["decision"] == "approve" and values["approvedAmount"] == 4200
    assert values["reviewDate"] == "2026-03-03" and values["needCallback"] is True
    assert "caseNo" not in values
    info = engine.get_instance(inst["id"])
    assert info["status"] == "completed"
    assert info["path"][-1] == "End_even"  # ${ticket mod 2 eq 0 && ticket div 2 ge 1}


def test_odd_ticket_takes_the_other_word_operator_flow(engine):
    deploy(engine, "expressions.bpmn")
    inst = start(engine, amount=500, ticket=7)
    engine.complete(task_at(engine, inst["id"], "Task_desk")["id"], {}, user="front")
    assert engine.get_instance(inst["id"])["path"][-1] == "End_odd"
