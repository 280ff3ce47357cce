"""DMN through the engine: a file of several decisions with requiredDecision chains, a literal
expression decision, every hit policy; business rule tasks with every camunda:mapDecisionResult
and every camunda:decisionRefBinding."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.errors import ProcessError
from tests.dialect.conftest import deploy, open_tasks, variables

ELDERLY = {"age": 70, "chronic": True, "hasWechat": True, "symptom": "胸痛", "dept": "内科", "level": "high"}
CHILD = {"age": 10, "chronic": False, "hasWechat": False, "symptom": "发热", "dept": "儿科", "level": "low"}


@pytest.fixture
def decisions(engine):
    result = deploy(engine, "followup_decisions.dmn")
    assert sorted(d["key"] for d in result.decision_definitions) == sorted([
        "dx_risk_score", "dx_risk_level", "dx_followup_days", "dx_channels", "dx_channel_count", "dx_plan",
        "dx_priority", "dx_ward", "dx_reminders", "dx_sorted", "dx_max_score"])
    return engine


@pytest.mark.parametrize("key, variables_, expected", [
    # COLLECT + SUM: 3 (age >= 65) + 2 (chronic)
    ("dx_risk_score", ELDERLY, [{"score": 5}]),
    # UNIQUE, requiring dx_risk_score: the aggregate is published by output name, as in Camunda
    ("dx_risk_level", ELDERLY, [{"level": "high"}]),
    # a literal expression decision at the end of a chain of two
    ("dx_followup_days", {**ELDERLY, "level": None}, [{"followUpDays": 3}]),
    ("dx_followup_days", {"age": 50, "chronic": False}, [{"followUpDays": 14}]),
    ("dx_channels", ELDERLY, [{"channel": "phone"}, {"channel": "home_visit"}, {"channel": "wechat"}]),
    ("dx_channel_count", ELDERLY, [{"channel": 3}]),                          # COLLECT + COUNT
    ("dx_max_score", ELDERLY, [{"score": 3}]),                                # COLLECT + MAX
    ("dx_plan", CHILD, [{"team": "general", "slaHours": 48}]),                # FIRST, two outputs
    ("dx_priority", ELDERLY, [{"urgency": "critical"}]),                      # PRIORITY by output values
    ("dx_priority", {**CHILD, "age": 80}, [{"urgency": "urgent"}]),
    ("dx_ward", CHILD, [{"ward": "pediatric"}]),                              # ANY: two rules, one value
    ("dx_reminders", ELDERLY, [{"reminder": "复诊提醒"}, {"reminder": "用药提醒"}]),  # RULE ORDER
    ("dx_sorted", ELDERLY, [{"category": "A"}, {"category": "B"}, {"category": "C"}]),  # OUTPUT ORDER
])
def test_hit_policies_and_chains_through_evaluate_decision(decisions, key, variables_, expected):
    assert decisions.evaluate_decision(key, variables_) == expected


def test_an_unknown_variable_is_an_error_naming_the_decision(decisions):
    with pytest.raises(ProcessError) as err:
        decisions.evaluate_decision("dx_channels", {"hasWechat": True})
    assert "dx_channels" in str(err.value) and "level" in str(err.value)


def start(engine, **values):
    base = {"age": 70, "chronic": True, "hasWechat": True, "reminderDecision": "dx_reminders"}
    base.update(values)
    return engine.start("dx_decision_tasks", business_key="SF-1", variables=base, user="ward")


def test_business_rule_tasks_map_results_every_way(any_engine, clock):
    deploy(any_engine, "followup_decisions.dmn", "decision_tasks.bpmn")
    inst = start(any_engine)
    values = variables(any_engine, inst["id"])
    assert values["level"] == "high"                                  # singleEntry
    assert values["followUpDays"] == 3                                # singleEntry of a literal decision
    assert values["plan"] == {"team": "icu_followup", "slaHours": 4}  # singleResult
    assert values["channels"] == ["phone", "home_visit", "wechat"]    # collectEntries
    assert values["reminders"] == [{"reminder": "复诊提醒"}, {"reminder": "用药提醒"}]  # resultList, ${…} ref
    (task,) = open_tasks(any_engine, inst["id"])
    assert task["candidate_groups"] == ["icu_followup"]
    assert task["due_at"] == clock.now() + timedelta(days=3)


def test_decision_ref_binding_latest_version_and_deployment(engine):
    deploy(engine, "followup_decisions.dmn", "decision_tasks.bpmn")
    deploy(engine, "followup_decisions.dmn", replace={"followup_decisions.dmn": [(b'"high"', b'"critical"')]})
    inst = start(engine)
    values = variables(engine, inst["id"])
    assert values["level"] == "critical"        # latest: the version deployed afterwards
    assert values["levelV1"] == "high"          # version 1
    assert values["levelDeployed"] == "high"    # the one deployed with the process


def test_a_mapping_that_does_not_fit_the_result_names_the_element(engine):
    deploy(engine, "followup_decisions.dmn", "decision_tasks.bpmn", replace={"decision_tasks.bpmn": [(
        b'camunda:decisionRef="dx_channels" camunda:mapDecisionResult="collectEntries"',
        b'camunda:decisionRef="dx_channels" camunda:mapDecisionResult="singleEntry"')]})
    with pytest.raises(ProcessError) as err:
        start(engine)
    assert "Rule_channels" in str(err.value) and "singleEntry" in str(err.value)


def test_a_missing_decision_version_names_the_element(engine):
    deploy(engine, "followup_decisions.dmn", "decision_tasks.bpmn", replace={"decision_tasks.bpmn": [(
        b'camunda:decisionRefVersion="1"', b'camunda:decisionRefVersion="7"')]})
    with pytest.raises(ProcessError) as err:
        start(engine)
    assert "Rule_v1" in str(err.value) and "version 7" in str(err.value)
