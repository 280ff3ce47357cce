"""DMN parsing and evaluation (engine.dialect.dmn) with tables as Camunda Modeler saves them."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest

from engine.dialect.dmn import (
    DmnDefinitionError,
    DmnEvaluationError,
    DmnResultMappingError,
    map_decision_result,
    parse_dmn,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dmn"

DMN13 = "https://www.omg.org/spec/DMN/20191111/MODEL/"
DMN12 = "http://www.omg.org/spec/DMN/20180521/MODEL/"
DMN11 = "http://www.omg.org/spec/DMN/20151101/dmn.xsd"


# --------------------------------------------------------------------------- builders


def camunda_file(*decisions: str, ns: str = DMN13, extra: str = "") -> str:
    """A DMN file as Camunda Modeler 5 writes it, diagram included."""
    ids = re.findall(r'<decision id="([^"]+)"', "".join(decisions))
    shapes = "".join(
        f'<dmndi:DMNShape id="DMNShape_{i}" dmnElementRef="{d}">'
        f'<dc:Bounds height="80" width="180" x="{160 + 220 * i}" y="100" /></dmndi:DMNShape>'
        for i, d in enumerate(ids)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<definitions xmlns="{ns}" xmlns:dmndi="https://www.omg.org/spec/DMN/20191111/DMNDI/" '
        'xmlns:dc="http://www.omg.org/spec/DMN/20180521/DC/" '
        'xmlns:di="http://www.omg.org/spec/DMN/20180521/DI/" '
        'xmlns:camunda="http://camunda.org/schema/1.0/dmn" '
        'xmlns:modeler="http://camunda.org/schema/modeler/1.0" id="Definitions_test" name="DRD" '
        'namespace="http://camunda.org/schema/1.0/dmn" exporter="Camunda Modeler" exporterVersion="5.22.0" '
        'modeler:executionPlatform="Camunda Platform" modeler:executionPlatformVersion="7.21.0">\n'
        + "\n".join(decisions)
        + extra
        + f'\n<dmndi:DMNDI><dmndi:DMNDiagram id="DMNDiagram_1">{shapes}</dmndi:DMNDiagram></dmndi:DMNDI>\n'
        "</definitions>\n"
    )


def table(
    decision_id: str,
    inputs: list[tuple],
    outputs: list[tuple],
    rules: list[tuple[list[str], list[str]]],
    *,
    hit_policy: str | None = None,
    aggregation: str | None = None,
    requires: tuple[str, ...] = (),
    name: str | None = None,
) -> str:
    """inputs: (label, expression, typeRef[, inputVariable]); outputs: (name, typeRef[, outputValues])."""
    attrs = ""
    if hit_policy:
        attrs += f' hitPolicy="{hit_policy}"'
    if aggregation:
        attrs += f' aggregation="{aggregation}"'
    parts = [f'<decision id="{decision_id}" name={quoteattr(name or decision_id)}>']
    for i, req in enumerate(requires):
        parts.append(
            f'<informationRequirement id="InformationRequirement_{decision_id}_{i}">'
            f'<requiredDecision href="#{req}" /></informationRequirement>'
        )
    parts.append(f'<decisionTable id="DecisionTable_{decision_id}"{attrs}>')
    for i, inp in enumerate(inputs):
        label, expression, type_ref = inp[:3]
        variable = f' camunda:inputVariable="{inp[3]}"' if len(inp) > 3 else ""
        parts.append(
            f'<input id="Input_{decision_id}_{i}" label={quoteattr(label)}{variable}>'
            f'<inputExpression id="InputExpression_{decision_id}_{i}" typeRef="{type_ref}">'
            f"<text>{escape(expression)}</text></inputExpression></input>"
        )
    for i, out in enumerate(outputs):
        oname, type_ref = out[:2]
        values = (
            f'<outputValues id="UnaryTests_ov_{decision_id}_{i}"><text>{escape(out[2])}</text></outputValues>'
            if len(out) > 2
            else ""
        )
        parts.append(
            f'<output id="Output_{decision_id}_{i}" label="{oname}" name="{oname}" typeRef="{type_ref}">{values}</output>'
        )
    for r, (ins, outs) in enumerate(rules, start=1):
        rid = f"{decision_id}_rule{r}"
        parts.append(f'<rule id="{rid}">')
        for i, text in enumerate(ins):
            parts.append(f'<inputEntry id="{rid}_in{i}"><text>{escape(text)}</text></inputEntry>')
        for i, text in enumerate(outs):
            parts.append(f'<outputEntry id="{rid}_out{i}"><text>{escape(text)}</text></outputEntry>')
        parts.append("</rule>")
    parts.append("</decisionTable></decision>")
    return "\n".join(parts)


def literal(
    decision_id: str, variable: str, text: str, type_ref: str = "string", requires: tuple[str, ...] = ()
) -> str:
    reqs = "".join(
        f'<informationRequirement id="IR_{decision_id}_{i}"><requiredDecision href="#{r}" /></informationRequirement>'
        for i, r in enumerate(requires)
    )
    return (
        f'<decision id="{decision_id}" name="{decision_id}">'
        f'<variable id="InformationItem_{decision_id}" name="{variable}" typeRef="{type_ref}" />{reqs}'
        f'<literalExpression id="LiteralExpression_{decision_id}"><text>{escape(text)}</text></literalExpression>'
        "</decision>"
    )


def model_of(*decisions: str, **kw):
    return parse_dmn(camunda_file(*decisions, **kw), "test.dmn")


# --------------------------------------------------------------------------- the fixture files


@pytest.fixture(scope="module")
def routing():
    return parse_dmn((FIXTURES / "callback_routing.dmn").read_bytes(), "callback_routing.dmn")


def test_fixture_decisions_are_parsed_with_their_metadata(routing):
    assert list(routing.decisions) == ["patientCategory", "callbackPriority", "routingQueue"]
    category = routing.decisions["patientCategory"]
    assert (category.name, category.kind, category.hit_policy) == ("Patient category", "table", "UNIQUE")
    assert category.version_tag == "2024-05"
    assert category.history_time_to_live == "180"
    assert category.rules[0].description == "Paediatrics handles everyone under 18"
    priority = routing.decisions["callbackPriority"]
    assert priority.hit_policy == "FIRST"
    assert priority.required == ("patientCategory",)
    assert [o.name for o in priority.outputs] == ["priority", "slaHours"]
    assert priority.outputs[0].output_values == ("urgent", "high", "normal")
    queue = routing.decisions["routingQueue"]
    assert (queue.kind, queue.hit_policy, queue.required) == ("literal", None, ("callbackPriority",))


@pytest.mark.parametrize(
    ("age", "category"),
    [(0, "child"), (17, "child"), (18, "adult"), (64, "adult"), (65, "senior"), (101, "senior")],
)
def test_interval_and_input_variable_entries(routing, age, category):
    # [18..65) includes 18 and excludes 65; "age >= 65" uses camunda:inputVariable="age"
    assert routing.evaluate("patientCategory", {"patient": {"age": age}}) == [{"category": category}]


def test_first_hit_policy_takes_the_first_matching_rule(routing):
    child = {"patient": {"age": 8}, "complaintType": "clinical", "hoursWaiting": 30}
    # rules 1 (child + clinical) and 2 (clinical, > 24 h) both match: FIRST keeps rule 1
    assert routing.evaluate("callbackPriority", child) == [{"priority": "urgent", "slaHours": 1}]
    adult = {"patient": {"age": 40}, "complaintType": "clinical", "hoursWaiting": 30}
    assert routing.evaluate("callbackPriority", adult) == [{"priority": "urgent", "slaHours": 2}]
    senior_billing = {"patient": {"age": 80}, "complaintType": "billing", "hoursWaiting": 1}
    assert routing.evaluate("callbackPriority", senior_billing) == [{"priority": "normal", "slaHours": 24}]
    senior = {"patient": {"age": 80}, "complaintType": "appointment", "hoursWaiting": 1}
    assert routing.evaluate("callbackPriority", senior) == [{"priority": "high", "slaHours": 4}]


def test_required_decision_chain_exposes_results_by_output_name_and_decision_id(routing):
    # routingQueue reads "priority" (Camunda-style output variable) and callbackPriority.slaHours (by id)
    urgent = {"patient": {"age": 8}, "complaintType": "clinical", "hoursWaiting": 0.5}
    assert routing.evaluate("routingQueue", urgent) == [{"queue": "nurse-line"}]
    waited = {"patient": {"age": 30}, "complaintType": "billing", "hoursWaiting": 50}
    assert routing.evaluate("routingQueue", waited) == [{"queue": "priority-desk"}]
    plain = {"patient": {"age": 30}, "complaintType": "billing", "hoursWaiting": 2}
    assert routing.evaluate("routingQueue", plain) == [{"queue": "front-desk"}]


def test_evaluate_detailed_reports_matched_rules_of_the_whole_chain(routing):
    ev = routing.evaluate_detailed(
        "routingQueue", {"patient": {"age": 30}, "complaintType": "x", "hoursWaiting": 60}
    )
    assert ev.value == "priority-desk"
    assert [(r.decision_id, r.matched_rule_ids) for r in ev.required] == [
        ("patientCategory", ("DecisionRule_adult",)),
        ("callbackPriority", ("DecisionRule_long_wait",)),
    ]
    assert ev.required[1].value == {"priority": "high", "slaHours": 8}


def test_output_types_are_plain_python(routing):
    result = routing.evaluate(
        "callbackPriority", {"patient": {"age": 8}, "complaintType": "clinical", "hoursWaiting": 1}
    )
    assert type(result[0]["slaHours"]) is int
    raw = routing.evaluate(
        "callbackPriority", {"patient": {"age": 8}, "complaintType": "clinical", "hoursWaiting": 1}, raw=True
    )
    assert raw[0]["slaHours"] == Decimal(1)


def test_integer_input_coercion_rejects_fractions_with_a_clear_error(routing):
    assert routing.evaluate("patientCategory", {"patient": {"age": "70"}}) == [{"category": "senior"}]
    with pytest.raises(DmnEvaluationError) as err:
        routing.evaluate("patientCategory", {"patient": {"age": 17.5}})
    message = str(err.value)
    assert "patientCategory" in message and "Age" in message and "integer" in message


def test_unknown_variable_is_an_evaluation_error_naming_decision_and_input(routing):
    with pytest.raises(DmnEvaluationError) as err:
        routing.evaluate("patientCategory", {})
    assert "patientCategory" in str(err.value)
    assert "patient" in str(err.value)
    assert err.value.decision_id == "patientCategory"


def test_unknown_decision_key(routing):
    with pytest.raises(DmnEvaluationError, match="no decision with id 'nope'"):
        routing.evaluate("nope", {})
    # the decision name works too, for convenience
    assert routing.evaluate("Patient category", {"patient": {"age": 3}}) == [{"category": "child"}]


def test_dmn11_file_collect_sum_with_date_input_and_input_variable():
    model = parse_dmn((FIXTURES / "visit_fee_dmn11.dmn").read_bytes(), "visit_fee_dmn11.dmn")
    fee = model.decisions["visitFee"]
    assert (fee.hit_policy, fee.aggregation) == ("COLLECT", "SUM")
    assert model.evaluate("visitFee", {"insurance": "private", "visitDate": "2024-12-25"}) == [{"fee": 80.5}]
    assert model.evaluate("visitFee", {"insurance": "public", "visitDate": date(2024, 12, 27)}) == [
        {"fee": 25.5}
    ]
    # typeRef="double": always a float, as Camunda returns a Double
    result = model.evaluate("visitFee", {"insurance": "private", "visitDate": "2024-01-02"})
    assert result == [{"fee": 65.5}] and type(result[0]["fee"]) is float
    # Camunda's date type takes a date-time too
    assert model.evaluate("visitFee", {"insurance": "x", "visitDate": datetime(2024, 12, 24, 9, 30)}) == [
        {"fee": 40.5}
    ]


def test_parsing_the_same_bytes_again_is_cached():
    data = (FIXTURES / "callback_routing.dmn").read_bytes()
    assert parse_dmn(data, "a.dmn") is parse_dmn(data, "a.dmn")
    assert parse_dmn(data.decode("utf-8"), "a.dmn") is parse_dmn(data, "a.dmn")


# --------------------------------------------------------------------------- hit policies

AGE_SEVERITY_VIP = [("Severity", "severity", "integer"), ("VIP", "vip", "boolean")]


def escalation(hit_policy: str, aggregation: str | None = None, output_type: str = "string") -> str:
    outputs = (
        [("level", output_type, '"board","manager","team"')]
        if output_type == "string"
        else [("points", output_type)]
    )
    if output_type == "string":
        outs = [['"manager"'], ['"board"'], ['"team"'], ['"team"']]
    else:
        outs = [["30"], ["50"], ["10"], ["10"]]
    return table(
        "escalation",
        AGE_SEVERITY_VIP,
        outputs,
        [
            ([">= 8", ""], outs[0]),
            (["", "true"], outs[1]),
            (["< 8", ""], outs[2]),
            (["[1..3]", "false"], outs[3]),
        ],
        hit_policy=hit_policy,
        aggregation=aggregation,
    )


def test_priority_hit_policy_uses_the_order_of_output_values():
    model = model_of(escalation("PRIORITY"))
    assert model.evaluate("escalation", {"severity": 9, "vip": True}) == [{"level": "board"}]
    assert model.evaluate("escalation", {"severity": 9, "vip": False}) == [{"level": "manager"}]
    assert model.evaluate("escalation", {"severity": 2, "vip": False}) == [{"level": "team"}]
    assert model.evaluate_detailed("escalation", {"severity": 9, "vip": True}).matched_rule_ids == (
        "escalation_rule2",
    )


def test_output_order_hit_policy_sorts_by_output_values():
    model = model_of(escalation("OUTPUT ORDER"))
    assert model.evaluate("escalation", {"severity": 9, "vip": True}) == [
        {"level": "board"},
        {"level": "manager"},
    ]
    assert model.evaluate_value("escalation", {"severity": 2, "vip": True}) == ["board", "team"]


def test_rule_order_and_collect_keep_rule_order():
    for policy in ("RULE ORDER", "COLLECT"):
        model = model_of(escalation(policy))
        assert model.evaluate("escalation", {"severity": 2, "vip": False}) == [
            {"level": "team"},
            {"level": "team"},
        ]
        assert model.evaluate("escalation", {"severity": 9, "vip": True}) == [
            {"level": "manager"},
            {"level": "board"},
        ]
        assert model.evaluate("escalation", {"severity": 5, "vip": None}) == [{"level": "team"}]


@pytest.mark.parametrize(
    ("aggregation", "severity", "vip", "expected"),
    [
        ("SUM", 9, True, 80),
        ("SUM", 2, False, 20),
        ("MIN", 9, True, 30),
        ("MAX", 9, True, 50),
        ("COUNT", 9, True, 2),
        ("COUNT", 2, False, 2),
        ("COUNT", 5, False, 1),
    ],
)
def test_collect_aggregations(aggregation, severity, vip, expected):
    model = model_of(escalation("COLLECT", aggregation, output_type="integer"))
    assert model.evaluate("escalation", {"severity": severity, "vip": vip}) == [{"points": expected}]
    assert model.evaluate_value("escalation", {"severity": severity, "vip": vip}) == expected


def test_collect_aggregation_without_matches():
    dec = table(
        "points",
        [("Severity", "severity", "integer")],
        [("points", "integer")],
        [([">= 8"], ["30"])],
        hit_policy="COLLECT",
        aggregation="COUNT",
    )
    model = model_of(dec)
    assert model.evaluate("points", {"severity": 1}) == [{"points": 0}]
    model = model_of(dec.replace('aggregation="COUNT"', 'aggregation="SUM"'))
    assert model.evaluate("points", {"severity": 1}) == [{"points": None}]
    assert map_decision_result(model.evaluate("points", {"severity": 1}), "singleEntry") is None


def test_unique_hit_policy_violation_names_the_rules():
    model = model_of(escalation("UNIQUE"))
    assert model.evaluate("escalation", {"severity": 5, "vip": False}) == [{"level": "team"}]
    with pytest.raises(DmnEvaluationError) as err:
        model.evaluate("escalation", {"severity": 9, "vip": True})
    assert "UNIQUE" in str(err.value)
    assert "escalation_rule1" in str(err.value) and "escalation_rule2" in str(err.value)
    assert err.value.rule_ids == ("escalation_rule1", "escalation_rule2")
    assert err.value.decision_id == "escalation"


def test_any_hit_policy_accepts_agreeing_rules_and_rejects_conflicts():
    model = model_of(escalation("ANY"))
    assert model.evaluate("escalation", {"severity": 2, "vip": False}) == [
        {"level": "team"}
    ]  # rules 3 and 4 agree
    with pytest.raises(DmnEvaluationError, match=r"ANY violated: rules escalation_rule1, escalation_rule2"):
        model.evaluate("escalation", {"severity": 9, "vip": True})


def test_no_match_gives_an_empty_result_list_and_null_value():
    model = model_of(escalation("FIRST"))
    assert model.evaluate("escalation", {"severity": None, "vip": None}) == []
    assert model.evaluate_value("escalation", {"severity": None, "vip": None}) is None
    collect = model_of(escalation("COLLECT"))
    assert collect.evaluate_value("escalation", {"severity": None, "vip": None}) == []


def test_empty_output_entry_is_left_out_of_the_result():
    dec = table(
        "callback",
        [("Channel", "channel", "string")],
        [("phone", "boolean"), ("note", "string")],
        [(['"phone"'], ["true", ""]), (['"letter"'], ["false", '"send by post"'])],
    )
    model = model_of(dec)
    assert model.evaluate("callback", {"channel": "phone"}) == [{"phone": True}]
    assert model.evaluate("callback", {"channel": "letter"}) == [{"phone": False, "note": "send by post"}]
    assert model.evaluate_value("callback", {"channel": "phone"}) == {"phone": True, "note": None}


def test_default_output_entry_when_no_rule_matches():
    dec = table(
        "ward", [("Department", "department", "string")], [("ward", "string")], [(['"cardiology"'], ['"C2"'])]
    )
    dec = dec.replace(
        '<output id="Output_ward_0" label="ward" name="ward" typeRef="string">',
        '<output id="Output_ward_0" label="ward" name="ward" typeRef="string">'
        '<defaultOutputEntry id="Default_1"><text>"general"</text></defaultOutputEntry>',
    )
    model = model_of(dec)
    assert model.evaluate("ward", {"department": "cardiology"}) == [{"ward": "C2"}]
    assert model.evaluate("ward", {"department": "dermatology"}) == [{"ward": "general"}]


# --------------------------------------------------------------------------- inputs, types, FEEL in cells


def test_unary_test_forms_in_cells():
    dec = table(
        "triage",
        [
            ("Symptom", "symptom", "string"),
            ("Temperature", "temperature", "double"),
            ("Admitted", "admitted", "date"),
        ],
        [("code", "string")],
        [
            (['"chest pain","stroke"', "", ""], ['"red"']),
            (["", "> 39.5", ""], ['"orange"']),
            (["", "", '[date("2024-01-01")..date("2024-01-31")]'], ['"january"']),
            (['not("cough")', "", ""], ['"yellow"']),
            (["", "", ""], ['"green"']),
        ],
        hit_policy="FIRST",
    )
    model = model_of(dec)
    base = {"symptom": "cough", "temperature": 37.0, "admitted": "2024-03-01"}
    assert model.evaluate_value("triage", base) == "green"
    assert model.evaluate_value("triage", {**base, "symptom": "stroke"}) == "red"
    assert model.evaluate_value("triage", {**base, "temperature": 39.6}) == "orange"
    assert model.evaluate_value("triage", {**base, "temperature": 39.5}) == "green"
    assert model.evaluate_value("triage", {**base, "admitted": "2024-01-31"}) == "january"
    assert model.evaluate_value("triage", {**base, "symptom": "rash"}) == "yellow"


def test_type_coercions_of_inputs_and_outputs():
    dec = table(
        "coerce",
        [("Flag", "flag", "boolean"), ("Count", "count", "long"), ("Label", "label", "string")],
        [("asText", "string"), ("ratio", "double"), ("when", "dateTime")],
        [(["true", "> 2", '"7"'], ["dose * 2", "dose / 4", '"2024-05-01T08:30:00"'])],
    )
    model = model_of(dec)
    # inputs: "true" -> true, "3" -> 3, 7 -> "7"; outputs: 6 -> "6", 0.75 as a float, text -> date-time
    assert model.evaluate("coerce", {"flag": "true", "count": "3", "label": 7, "dose": 3}) == [
        {"asText": "6", "ratio": 0.75, "when": datetime(2024, 5, 1, 8, 30)}
    ]
    with pytest.raises(DmnEvaluationError, match="cannot be converted to type 'boolean'"):
        model.evaluate("coerce", {"flag": "yes", "count": 3, "label": "7", "dose": 3})


def test_input_variable_default_cell_input_and_question_mark():
    dec = table(
        "size",
        [("Items", "items", "integer")],
        [("size", "string")],
        [(["cellInput > 10"], ['"big"']), (["? > 3"], ['"medium"']), (["-"], ['"small"'])],
        hit_policy="FIRST",
    )
    model = model_of(dec)
    assert [model.evaluate_value("size", {"items": n}) for n in (11, 4, 3)] == ["big", "medium", "small"]


def test_output_entries_can_compute_from_inputs_and_variables():
    dec = table(
        "deadline",
        [("Priority", "priority", "string")],
        [("due", "date"), ("message", "string")],
        [(['"urgent"'], ['received + duration("P1D")', '"Call " + upper case(name) + " today"'])],
    )
    model = model_of(dec)
    assert model.evaluate(
        "deadline", {"priority": "urgent", "received": date(2024, 2, 28), "name": "ana"}
    ) == [{"due": date(2024, 2, 29), "message": "Call ANA today"}]


def test_literal_expression_decision_result_shape_and_type():
    model = model_of(literal("greeting", "text", 'if lang = "de" then "Guten Tag" else "Hello"'))
    assert model.evaluate("greeting", {"lang": "de"}) == [{"text": "Guten Tag"}]
    assert model.decisions["greeting"].kind == "literal"
    total = model_of(literal("total", "sum", "sum(fees)", type_ref="double"))
    assert total.evaluate("total", {"fees": [10, 2.5]}) == [{"sum": 12.5}]


def test_required_collect_decision_is_seen_as_a_list_and_by_name():
    checks = table(
        "checks",
        [("Age", "age", "integer")],
        [("check", "string")],
        [([">= 50"], ['"colonoscopy"']), ([">= 40"], ['"mammogram"']), (["-"], ['"blood pressure"'])],
        hit_policy="COLLECT",
        name="Screening checks",
    )
    summary = literal(
        "summary",
        "summary",
        'string join(check, ", ") + " / " + string(count(Screening checks))',
        requires=("checks",),
    )
    model = model_of(checks, summary)
    assert model.evaluate("summary", {"age": 55}) == [
        {"summary": "colonoscopy, mammogram, blood pressure / 3"}
    ]


def test_names_with_spaces_and_keywords_from_input_data():
    extra = (
        '<inputData id="InputData_1" name="Date and Time of Call"><variable id="v1" name="Date and Time of Call" typeRef="dateTime" /></inputData>'
        '<inputData id="InputData_2" name="Unused Input"><variable id="v2" name="Unused Input" typeRef="string" /></inputData>'
    )
    dec = literal(
        "night",
        "night",
        "Date and Time of Call.hour >= 22 or Date and Time of Call.hour < 6",
        type_ref="boolean",
    )
    model = model_of(dec, extra=extra)
    assert model.input_data == ("Date and Time of Call", "Unused Input")
    assert model.evaluate_value("night", {"Date and Time of Call": datetime(2024, 1, 1, 23, 15)}) is True
    assert model.evaluate_value("night", {"Date and Time of Call": datetime(2024, 1, 1, 12)}) is False
    # declared input data that is not given is null, not an error
    assert model.evaluate_value("night", {}) is None


def test_business_knowledge_model_is_callable():
    extra = (
        '<businessKnowledgeModel id="bkm_bmi" name="BMI"><variable id="vb" name="BMI" />'
        '<encapsulatedLogic id="fd1"><formalParameter id="p1" name="weight" typeRef="number" />'
        '<formalParameter id="p2" name="height" typeRef="number" />'
        '<literalExpression id="le_bmi"><text>decimal(weight / (height * height), 1)</text></literalExpression>'
        "</encapsulatedLogic></businessKnowledgeModel>"
    )
    dec = literal("bmi", "bmi", "BMI(kg, m)", type_ref="double")
    dec = dec.replace(
        "<literalExpression",
        '<knowledgeRequirement id="kr1"><requiredKnowledge href="#bkm_bmi" /></knowledgeRequirement><literalExpression',
    )
    model = model_of(dec, extra=extra)
    assert model.evaluate("bmi", {"kg": 81, "m": 1.8}) == [{"bmi": 25.0}]


@pytest.mark.parametrize("ns", [DMN11, DMN12, DMN13, "https://www.omg.org/spec/DMN/20230324/MODEL/"])
def test_all_dmn_namespaces(ns):
    model = model_of(table("t", [("A", "a", "integer")], [("b", "string")], [(["1"], ['"one"'])]), ns=ns)
    assert model.evaluate("t", {"a": 1}) == [{"b": "one"}]


# --------------------------------------------------------------------------- mapDecisionResult


def test_map_decision_result_modes():
    one = [{"priority": "high"}]
    assert map_decision_result(one, "singleEntry") == "high"
    assert map_decision_result(one, "singleResult") == {"priority": "high"}
    assert map_decision_result(one, "collectEntries") == ["high"]
    assert map_decision_result(one, "resultList") == one
    assert map_decision_result([], "singleEntry") is None
    assert map_decision_result([], "singleResult") is None
    assert map_decision_result([], "collectEntries") == []
    many = [{"check": "a"}, {"check": "b"}]
    assert map_decision_result(many, "collectEntries") == ["a", "b"]


@pytest.mark.parametrize(
    ("result", "mode", "message"),
    [
        ([{"a": 1}, {"a": 2}], "singleResult", "at most one matched rule"),
        ([{"a": 1}, {"a": 2}], "singleEntry", "at most one matched rule"),
        ([{"a": 1, "b": 2}], "singleEntry", "expects one output"),
        ([{"a": 1, "b": 2}], "collectEntries", "one output per rule"),
        ([{"a": 1}], "firstResult", "unknown mapDecisionResult"),
    ],
)
def test_map_decision_result_shape_errors(result, mode, message):
    with pytest.raises(DmnResultMappingError, match=message):
        map_decision_result(result, mode)


def test_map_decision_result_on_a_real_collect_result():
    model = model_of(escalation("COLLECT"))
    result = model.evaluate("escalation", {"severity": 9, "vip": True})
    assert map_decision_result(result, "collectEntries") == ["manager", "board"]
    with pytest.raises(DmnResultMappingError, match="2 results"):
        map_decision_result(result, "singleResult")


# --------------------------------------------------------------------------- definition errors


def definition_error(xml: str | bytes) -> DmnDefinitionError:
    with pytest.raises(DmnDefinitionError) as err:
        parse_dmn(xml, "broken.dmn")
    return err.value


def test_bad_input_entry_names_file_entry_id_and_reason():
    dec = table("t", [("A", "a", "integer")], [("b", "string")], [(["1"], ['"one"']), (["> > 2"], ['"two"'])])
    err = definition_error(camunda_file(dec))
    assert err.filename == "broken.dmn"
    assert err.element_id == "t_rule2_in0"
    assert "> > 2" in err.reason and "t_rule2" in err.reason
    assert err.line is not None
    text = str(err)
    assert "broken.dmn" in text and "t_rule2_in0" in text and "> > 2" in text


def test_bad_output_entry_and_unknown_function():
    dec = table("t", [("A", "a", "integer")], [("b", "string")], [(["1"], ['"unclosed'])])
    err = definition_error(camunda_file(dec))
    assert err.element_id == "t_rule1_out0" and "unclosed" in err.reason
    dec = table("t", [("A", "a", "integer")], [("b", "string")], [(["1"], ["shout(a)"])])
    err = definition_error(camunda_file(dec))
    assert err.element_id == "t_rule1_out0" and "unknown function 'shout'" in err.reason


def test_bad_input_expression_and_literal_expression():
    dec = table("t", [("A", "a +", "integer")], [("b", "string")], [(["1"], ['"x"'])])
    assert definition_error(camunda_file(dec)).element_id == "InputExpression_t_0"
    err = definition_error(camunda_file(literal("lit", "v", "if a then 1")))
    assert err.element_id == "LiteralExpression_lit" and "else" in err.reason


def test_malformed_xml_reports_the_line():
    err = definition_error(
        '<?xml version="1.0"?>\n<definitions xmlns="' + DMN13 + '">\n<decision id="x">\n</definitions>'
    )
    assert "malformed XML" in err.reason
    assert err.line == 4


def test_not_a_dmn_file():
    err = definition_error('<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"/>')
    assert "not a DMN file" in err.reason


def test_unknown_hit_policy_and_misplaced_aggregation():
    dec = table("t", [("A", "a", "integer")], [("b", "string")], [(["1"], ['"x"'])], hit_policy="SOMETIMES")
    err = definition_error(camunda_file(dec))
    assert "unknown hit policy 'SOMETIMES'" in err.reason and err.element_id == "t"
    dec = table(
        "t",
        [("A", "a", "integer")],
        [("b", "integer")],
        [(["1"], ["2"])],
        hit_policy="FIRST",
        aggregation="SUM",
    )
    assert "only allowed with hit policy COLLECT" in definition_error(camunda_file(dec)).reason


def test_priority_without_output_values_is_rejected():
    dec = table("t", [("A", "a", "integer")], [("b", "string")], [(["1"], ['"x"'])], hit_policy="PRIORITY")
    assert "needs outputValues" in definition_error(camunda_file(dec)).reason


def test_missing_required_decision():
    err = definition_error(camunda_file(literal("a", "a", "1", "integer", requires=("ghost",))))
    assert "requires decision 'ghost', which does not exist" in err.reason
    assert err.element_id == "a"


def test_required_decision_cycle():
    xml = camunda_file(
        literal("a", "a", "b + 1", "integer", requires=("b",)),
        literal("b", "b", "c + 1", "integer", requires=("c",)),
        literal("c", "c", "a + 1", "integer", requires=("a",)),
    )
    err = definition_error(xml)
    assert "cycle" in err.reason and "a -> b -> c -> a" in err.reason


def test_non_feel_expression_language_is_rejected():
    dec = table("t", [("A", "a", "integer")], [("b", "string")], [(["1"], ['"x"'])]).replace(
        '<inputExpression id="InputExpression_t_0"',
        '<inputExpression id="InputExpression_t_0" expressionLanguage="juel"',
    )
    err = definition_error(camunda_file(dec))
    assert "juel" in err.reason and err.element_id == "InputExpression_t_0"


def test_unsupported_decision_logic_is_reported():
    xml = camunda_file(
        '<decision id="ctx" name="ctx"><context id="c1"><contextEntry><literalExpression><text>1</text></literalExpression></contextEntry></context></decision>'
    )
    err = definition_error(xml)
    assert "<context>" in err.reason and "not supported" in err.reason and err.element_id == "ctx"


def test_rule_with_missing_entries():
    dec = table("t", [("A", "a", "integer"), ("B", "b", "integer")], [("c", "string")], [(["1"], ['"x"'])])
    err = definition_error(camunda_file(dec))
    assert err.element_id == "t_rule1" and "1 input entries" in err.reason


def test_chinese_labels_values_and_input_variable():
    dec = table(
        "分诊",
        [("类别", "类别", "string", "类别值"), ("金额", "金额", "double")],
        [("通道", "string")],
        [
            (['"收费争议"', ">= 1000"], ['"财务"']),
            (['类别值 = "收费争议"', "< 1000"], ['"前台"']),
            (["-", "-"], ['"综合"']),
        ],
        hit_policy="FIRST",
    )
    model = model_of(dec)
    assert model.evaluate("分诊", {"类别": "收费争议", "金额": 1500}) == [{"通道": "财务"}]
    assert model.evaluate("分诊", {"类别": "收费争议", "金额": 20}) == [{"通道": "前台"}]
    assert model.evaluate("分诊", {"类别": "服务态度", "金额": 20}) == [{"通道": "综合"}]


# --------------------------------------------------------------------------- budget

def test_hostile_decision_is_stopped_by_its_budget():
    import time

    from engine.dialect.feel import FeelLimits

    started = time.monotonic()
    ranged = model_of(literal("n", "n", "count(for i in [1..10000000] return i)", type_ref="integer"))
    with pytest.raises(DmnEvaluationError, match="iteration range would have 10000000 items"):
        ranged.evaluate("n", {})
    regex = model_of(literal("m", "m", 'matches(text, "(a+)+$")', type_ref="boolean"))
    assert regex.evaluate("m", {"text": "a" * 40 + "!"}) == [{"m": False}]
    # One budget for the whole decision: its required decisions spend from it too.
    loops = model_of(
        literal("a", "a", "count(for i in 1..60 return i)", type_ref="integer"),
        literal("b", "b", "a + count(for i in 1..60 return i)", type_ref="integer", requires=("a",)),
    )
    assert loops.evaluate("b", {}) == [{"b": 120}]
    with pytest.raises(DmnEvaluationError, match="more than 100 iterations"):
        loops.evaluate("b", {}, limits=FeelLimits(max_iterations=100))
    assert time.monotonic() - started < 3.0
