"""Every row of every decision table in workflows/dmn, as the hospital states its rules.

Each case names the rule (row number) it is meant to exercise; a second test checks with the
engine's DMN evaluator that the case hits exactly that row and that every row has a case.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.clock import FrozenClock
from engine.dialect import dmn
from tests.conftest import make_engine
from tests.processes.support import WORKFLOWS

NO_FLAGS = {"safetyRisk": False, "medicalDispute": False, "patientCondition": "平稳"}


def tier_case(row, tier, **inputs):
    return ("complaint_tier", row, {**NO_FLAGS, "category": "服务态度", **inputs}, {"tier": tier})


def routing_case(row, category, department, group, co_group, role):
    out = {"responsibleGroup": group, "responsibleRole": role}
    if co_group:
        out["coGroup"] = co_group
    return ("complaint_routing", row, {"category": category, "department": department}, out)


def deadline_case(row, tier, response, resolve, escalate, lead):
    return ("complaint_deadlines", row, {"tier": tier}, {
        "responseAmount": response[0], "responseUnit": response[1],
        "resolveAmount": resolve[0], "resolveUnit": resolve[1],
        "escalateAmount": escalate[0], "escalateUnit": escalate[1], "leadRole": lead})


def dispatch_case(row, urgency, mobility, destination, shift, team, priority, minutes):
    return ("escort_dispatch", row,
            {"urgency": urgency, "mobility": mobility, "destination": destination, "shift": shift},
            {"escortGroup": team, "priority": priority, "pickupMinutes": minutes})


def billing_case(row, delivered, mobility, billable, item):
    return ("escort_billing", row, {"delivered": delivered, "mobility": mobility},
            {"billable": billable, "billingItem": item})


def plan_case(row, department, group, plan_days, caller, second, second_days=None, high_risk=False,
              elderly=False):
    out = {"planDays": plan_days, "callerGroup": caller, "secondCall": second}
    if second_days is not None:
        out["secondCallDays"] = second_days
    return ("callback_plan", row, {"department": department, "diagnosisGroup": group, "highRisk": high_risk,
                                   "elderly": elderly}, out)


CASES = [
    # 投诉分级: 一级 = patient safety, medical dispute, critical condition, or treatment outcome with a
    # changing condition; 三级 = environment / facility suggestions; everything else 二级.
    tier_case(1, "一级", safetyRisk=True),
    tier_case(1, "一级", safetyRisk=True, category="环境设施"),  # safety beats the suggestion row
    tier_case(2, "一级", medicalDispute=True, category="收费争议"),
    tier_case(3, "一级", patientCondition="危重", category="候诊时间"),
    tier_case(4, "一级", patientCondition="病情变化", category="诊疗效果"),
    tier_case(5, "三级", category="环境设施"),
    tier_case(6, "二级", category="收费争议"),
    tier_case(6, "二级", patientCondition="病情变化", category="服务态度"),
    tier_case(6, "二级", category="报告时效"),
    # 投诉分派: attitude → the department and nursing (the cashier's → finance, logistics staff's →
    # logistics); treatment outcome → medical affairs; billing → finance; waiting time / reports → the
    # department concerned; environment → logistics.
    routing_case(1, "服务态度", "收费处", "finance", None, "财务科负责人（收费处）"),
    routing_case(2, "服务态度", "后勤保障部", "logistics", None, "后勤保障部负责人"),
    routing_case(3, "服务态度", "内科", "dept_head", "nursing", "涉事科室负责人，护理部协办"),
    routing_case(4, "诊疗效果", "外科", "medical_affairs", "dept_head", "医务科牵头，涉事科室配合"),
    routing_case(5, "医患沟通", "儿科", "dept_head", "medical_affairs", "涉事科室负责人，医务科指导"),
    routing_case(6, "收费争议", "门诊部", "finance", None, "财务科"),
    routing_case(7, "候诊时间", "门诊部", "dept_head", None, "涉事科室负责人"),
    routing_case(7, "报告时效", "检验科", "dept_head", None, "涉事科室负责人"),
    routing_case(8, "环境设施", "外科", "logistics", None, "后勤保障部"),
    routing_case(9, "其他", "其他", "complaint_office", None, "客服中心投诉专员"),
    # 处理时限: first response 30 min / 2 h / 1 working day; resolution 24 h / 1 working day /
    # 5 working days; then the director after 2 h / 1 working day / 2 working days.
    deadline_case(1, "一级", (30, "分钟"), (24, "小时"), (2, "小时"), "科室负责人"),
    deadline_case(2, "二级", (2, "小时"), (1, "工作日"), (1, "工作日"), "投诉专员"),
    deadline_case(3, "三级", (1, "工作日"), (5, "工作日"), (2, "工作日"), "转相关科室"),
    # 法定反馈时限: 5 working days, 10 when several departments are involved.
    ("complaint_feedback_deadline", 1, {"multiDepartment": False}, {"feedbackWorkingDays": 5}),
    ("complaint_feedback_deadline", 2, {"multiDepartment": True}, {"feedbackWorkingDays": 10}),
    # 陪检派单: urgent requests jump the queue; at night only the emergency group is on duty.
    dispatch_case(1, "紧急", "担架", "影像科", "early", "担架队", 100, 10),
    dispatch_case(2, "紧急", "轮椅", "影像科", "night", "急诊组", 95, 15),
    dispatch_case(3, "加急", "平车", "手术室", "night", "急诊组", 80, 20),
    dispatch_case(4, "加急", "平车", "影像科", "early", "外科组", 80, 20),
    dispatch_case(5, "加急", "步行", "超声科", "middle", "内科组", 75, 20),
    dispatch_case(6, "普通", "担架", "手术室", "night", "急诊组", 40, 45),
    dispatch_case(7, "普通", "平车", "手术室", "early", "外科组", 60, 30),
    dispatch_case(8, "普通", "担架", "影像科", "middle", "外科组", 50, 40),
    dispatch_case(9, "普通", "轮椅", "内镜中心", "early", "内科组", 40, 60),
    # 陪检计费: billed by mobility once delivered; walking escorts are free; nothing when not delivered.
    billing_case(1, False, "担架", False, "未完成转运，不计费"),
    billing_case(2, True, "担架", True, "担架转运"),
    billing_case(3, True, "平车", True, "平车转运"),
    billing_case(4, True, "轮椅", True, "轮椅陪检"),
    billing_case(5, True, "步行", False, "步行陪检（免费）"),
    # 出院回访计划: general ~7 days, chronic 14, oncology 21; critical, high-risk, surgical and
    # obstetric patients are called by the ward nurse.
    plan_case(1, "急诊科", "危重", 3, "ward_nurse", True, 30),
    plan_case(2, "内科", "一般", 3, "ward_nurse", True, 14, high_risk=True),
    plan_case(3, "外科", "术后", 7, "ward_nurse", True, 30),
    plan_case(4, "肿瘤科", "肿瘤", 21, "callback_team", True, 90),
    plan_case(5, "内科", "慢病", 14, "callback_team", True, 90),
    plan_case(6, "妇产科", "一般", 7, "ward_nurse", False),
    plan_case(7, "内科", "一般", 7, "callback_team", True, 30, elderly=True),
    plan_case(8, "内科", "一般", 7, "callback_team", False),
    plan_case(8, "儿科", "一般", 7, "callback_team", False),
]


def case_id(case):
    decision, row, inputs, _ = case
    return f"{decision}-row{row}-" + "-".join(str(v) for v in inputs.values())


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    clock = FrozenClock(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('dmn') / 'test.db'}", clock,
                         tmp_path_factory.mktemp("wf"))
    engine.deploy_directory(WORKFLOWS)
    yield engine
    engine.db.dispose()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_rule(deployed, case):
    decision, _row, inputs, expected = case
    assert deployed.evaluate_decision(decision, inputs) == [expected]


def _models():
    models = {}
    for path in sorted((WORKFLOWS / "dmn").glob("*.dmn")):
        model = dmn.parse_dmn(path.read_bytes(), path.name)
        for decision_id in model.decisions:
            models[decision_id] = model
    return models


MODELS = _models()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_case_hits_the_row_it_names(case):
    decision, row, inputs, _ = case
    evaluation = MODELS[decision].evaluate_detailed(decision, inputs)
    assert evaluation.matched_rule_ids == (f"DecisionRule_{decision}_{row}",)


@pytest.mark.parametrize("decision", sorted(MODELS))
def test_every_row_has_a_case(decision):
    rows = {rule.index + 1 for rule in MODELS[decision].decision(decision).rules}
    covered = {row for d, row, _, _ in CASES if d == decision}
    assert covered == rows
