"""Camunda 7 `${…}` expressions (engine.dialect.juel): what a modeller writes, what comes out."""

from __future__ import annotations

import re
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import ClassVar
from zoneinfo import ZoneInfo

import pytest

from engine.dialect import juel
from engine.dialect.juel import (
    MAX_NESTING_DEPTH,
    MAX_TEMPLATE_LENGTH,
    CompiledTemplate,
    ExecutionContext,
    JuelEvaluationError,
    JuelSyntaxError,
    compile_template,
    is_expression,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Saturday 2026-01-31 09:00 in Shanghai
NOW = datetime(2026, 1, 31, 1, 0, tzinfo=UTC)


def ev(text: str, variables: dict | None = None, **kwargs):
    return compile_template(text).evaluate(variables or {}, **kwargs)


def shanghai(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


# --------------------------------------------------------------------------- templates


class TestTemplates:
    def test_plain_text_is_a_literal_string(self):
        template = compile_template("director")
        assert template.is_literal
        assert not template.is_single_expression
        assert template.evaluate({}) == "director"
        assert not is_expression("director")

    def test_empty_text_is_an_empty_literal(self):
        assert compile_template("").evaluate({}) == ""

    def test_single_expression_returns_the_raw_value(self):
        assert ev("${approved}", {"approved": True}) is True
        assert ev("${amount}", {"amount": 12.5}) == 12.5
        assert ev("${day}", {"day": date(2026, 12, 1)}) == date(2026, 12, 1)
        assert ev("${nothing}", {"nothing": None}) is None
        assert ev("${items}", {"items": [1, 2]}) == [1, 2]

    def test_composite_template_concatenates_text(self):
        assert ev("Case ${caseNo} due", {"caseNo": 1024}) == "Case 1024 due"
        assert ev("${dept}_head, director", {"dept": "cardiology"}) == "cardiology_head, director"
        assert ev("${a}${b}", {"a": "x", "b": 1}) == "x1"

    def test_composite_string_conversion_follows_java(self):
        assert ev("v=${x}", {"x": None}) == "v="
        assert ev("v=${x}", {"x": True}) == "v=true"
        assert ev("v=${x}", {"x": 2.0}) == "v=2.0"
        assert ev("v=${x}", {"x": 1e-5}) == "v=1.0E-5"
        assert ev("v=${x}", {"x": 1e20}) == "v=1.0E20"
        assert ev("v=${x}", {"x": ["a", "b"]}) == "v=[a, b]"
        assert ev("v=${x}", {"x": {"k": 1}}) == "v={k=1}"
        assert ev("v=${x}", {"x": date(2026, 12, 1)}) == "v=2026-12-01"

    def test_whitespace_around_a_lone_condition_is_ignored(self):
        # sequence-flow conditions come from XML text with newlines and indentation
        assert ev("\n      ${urgent}\n    ", {"urgent": True}) is True

    def test_hash_delimiter_is_accepted(self):
        assert ev("#{a + 1}", {"a": 1}) == 2
        assert is_expression("#{a}")
        assert is_expression("x ${a}")

    def test_closing_brace_inside_a_string_does_not_end_the_expression(self):
        assert ev("${a == '}'}", {"a": "}"}) is True

    def test_escaped_dollar_brace_is_literal_text(self):
        template = compile_template(r"price \${x} and ${y}")
        assert template.evaluate({"y": 5}) == "price ${x} and 5"
        assert compile_template(r"\${x}").is_literal

    def test_compile_is_cached(self):
        assert compile_template("${cached + 1}") is compile_template("${cached + 1}")
        assert isinstance(compile_template("${x}"), CompiledTemplate)

    def test_non_string_template_is_a_type_error(self):
        with pytest.raises(TypeError):
            compile_template(42)  # type: ignore[arg-type]

    def test_variables_used_and_function_names(self):
        template = compile_template(
            "${order.total > limit(dept) && execution.getVariable('priority') == 'high'} ${now()}")
        assert template.variables_used == {"order", "dept", "priority"}
        assert template.function_names_used == {"limit", "now"}


# --------------------------------------------------------------------------- variables and access


class TestVariablesAndAccess:
    def test_missing_variable_names_it(self):
        with pytest.raises(JuelEvaluationError, match="Cannot resolve identifier 'approver'") as info:
            ev("${approver}")
        assert info.value.expression == "${approver}"

    def test_property_and_index_access_on_maps(self):
        patient = {"name": "Li Lei", "address": {"city": "Shanghai"}, "tags": ["vip", "elderly"]}
        assert ev("${patient.address.city}", {"patient": patient}) == "Shanghai"
        assert ev("${patient['name']}", {"patient": patient}) == "Li Lei"
        assert ev('${patient["tags"][1]}', {"patient": patient}) == "elderly"
        assert ev("${patient.tags[0]}", {"patient": patient}) == "vip"

    def test_missing_key_and_null_base_are_null(self):
        assert ev("${m.missing}", {"m": {}}) is None
        assert ev("${m.a.b.c}", {"m": {"a": None}}) is None
        assert ev("${m[k]}", {"m": {"x": 1}, "k": "y"}) is None

    def test_list_index_out_of_range_or_negative_is_null(self):
        assert ev("${l[5]}", {"l": [1, 2]}) is None
        assert ev("${l[-1]}", {"l": [1, 2]}) is None  # not Python's "last element"
        assert ev("${l['1']}", {"l": [1, 2]}) == 2
        assert ev("${l[1.9]}", {"l": [1, 2]}) == 2

    def test_list_property_suggests_the_method(self):
        with pytest.raises(JuelEvaluationError, match=r"did you mean size\(\)"):
            ev("${l.size}", {"l": [1]})

    def test_dunder_access_is_refused_at_compile_time(self):
        for text in ("${x.__class__}", "${x.__class__.__mro__}", "${__import__('os')}",
                     "${x.__init__()}", "${__builtins__}"):
            with pytest.raises(JuelSyntaxError, match="is not allowed"):
                compile_template(text)

    def test_private_and_unlisted_attributes_are_refused_at_run_time(self):
        class Patient:
            def __init__(self):
                self.name = "Li"
                self._secret = "x"

        with pytest.raises(JuelEvaluationError, match="access to '_secret' is not allowed"):
            ev("${p._secret}", {"p": Patient()})
        with pytest.raises(JuelEvaluationError, match="property 'name' is not accessible"):
            ev("${p.name}", {"p": Patient()})
        with pytest.raises(JuelEvaluationError, match="access to '__class__' is not allowed"):
            ev("${p['__class__']}", {"p": Patient()})
        with pytest.raises(JuelEvaluationError, match="not available"):
            ev("${s.format('x')}", {"s": "{}"})

    def test_dict_key_named_like_a_dunder_is_only_a_lookup(self):
        assert ev("${m['__class__']}", {"m": {}}) is None

    def test_whitelisted_members_of_a_caller_class(self):
        class Ward:
            juel_properties: ClassVar[dict[str, str]] = {"name": "name", "secretKey": "_key"}
            juel_methods: ClassVar[dict[str, str]] = {"bedsFree": "beds_free", "getHead": "head", "leak": "_leak"}

            def __init__(self):
                self.name = "ICU"
                self._key = "k"

            def beds_free(self, needed):
                return 3 >= needed

            def head(self):
                return "Dr. Wang"

            def _leak(self):
                return "leaked"

        ward = Ward()
        assert ev("${ward.name}", {"ward": ward}) == "ICU"
        assert ev("${ward.bedsFree(2)}", {"ward": ward}) is True
        assert ev("${ward.head}", {"ward": ward}) == "Dr. Wang"  # bean getter
        with pytest.raises(JuelEvaluationError):
            ev("${ward.secretKey}", {"ward": ward})
        with pytest.raises(JuelEvaluationError):
            ev("${ward.leak()}", {"ward": ward})
        with pytest.raises(JuelEvaluationError, match="wrong number of arguments"):
            ev("${ward.bedsFree()}", {"ward": ward})

    def test_variables_mapping_may_be_none(self):
        assert compile_template("${1 + 1}").evaluate(None) == 2


# --------------------------------------------------------------------------- literals and arithmetic


class TestLiteralsAndArithmetic:
    def test_literals(self):
        assert ev("${'it\\'s'}") == "it's"
        assert ev('${"say \\"hi\\""}') == 'say "hi"'
        assert ev("${'a\\\\b'}") == "a\\b"
        assert ev('${"single \' inside"}') == "single ' inside"
        assert ev("${42}") == 42
        assert ev("${1.5e3}") == 1500.0
        assert ev("${.5}") == 0.5
        assert ev("${true}") is True and ev("${false}") is False
        assert ev("${null}") is None

    def test_invalid_escape_is_a_syntax_error(self):
        with pytest.raises(JuelSyntaxError, match=r"invalid escape sequence '\\n'"):
            compile_template("${'line\\nbreak'}")

    def test_precedence_and_parentheses(self):
        assert ev("${1 + 2 * 3}") == 7
        assert ev("${(1 + 2) * 3}") == 9
        assert ev("${10 - 4 - 3}") == 3  # left-associative
        assert ev("${2 * 3 % 4}") == 2

    def test_division_is_floating_point(self):
        assert ev("${7 / 2}") == 3.5
        assert ev("${7 div 2}") == 3.5
        assert ev("${4 / 2}") == 2.0 and isinstance(ev("${4 / 2}"), float)

    def test_modulo_follows_java_sign_rules(self):
        assert ev("${7 % 3}") == 1
        assert ev("${7 mod 3}") == 1
        assert ev("${-7 % 3}") == -1
        assert ev("${7 % -3}") == 1
        assert ev("${7.5 % 2}") == 1.5

    def test_unary_minus(self):
        assert ev("${-x}", {"x": 5}) == -5
        assert ev("${-'3'}") == -3
        assert ev("${-'2.5'}") == -2.5
        assert ev("${- -4}") == 4
        assert ev("${-null}") == 0

    def test_plus_is_numeric_and_coerces_strings(self):
        assert ev("${'2' + 3}") == 5
        assert ev("${a + b}", {"a": "1.5", "b": 1}) == 2.5
        assert ev("${null + 1}") == 1
        assert ev("${null + null}") == 0
        assert ev("${'' + 1}") == 1

    def test_plus_on_text_explains_how_to_join(self):
        with pytest.raises(JuelEvaluationError, match=r"cannot coerce string 'Dr\. ' .*to join text"):
            ev("${'Dr. ' + name}", {"name": "Wang"})

    def test_booleans_are_not_numbers(self):
        with pytest.raises(JuelEvaluationError, match="cannot coerce boolean true to a number"):
            ev("${true + 1}")

    def test_decimal_arithmetic_stays_exact(self):
        assert ev("${fee * 3}", {"fee": Decimal("0.10")}) == Decimal("0.30")
        assert ev("${fee + 0.2}", {"fee": Decimal("0.1")}) == Decimal("0.3")
        assert ev("${fee / 4}", {"fee": Decimal(1)}) == Decimal("0.25")

    def test_division_and_modulo_by_zero_fail_clearly(self):
        with pytest.raises(JuelEvaluationError, match="division by zero"):
            ev("${a / b}", {"a": 1, "b": 0})
        with pytest.raises(JuelEvaluationError, match="modulo by zero"):
            ev("${a % 0}", {"a": 1})

    def test_integer_overflow_is_an_error_not_a_wrap(self):
        with pytest.raises(JuelEvaluationError, match="overflow"):
            ev("${9223372036854775807 + 1}")


# --------------------------------------------------------------------------- comparison and logic


class TestComparisonAndLogic:
    def test_comparison_operators_and_word_forms(self):
        v = {"n": 5}
        assert ev("${n == 5}", v) and ev("${n eq 5}", v)
        assert ev("${n != 4}", v) and ev("${n ne 4}", v)
        assert ev("${n < 6}", v) and ev("${n lt 6}", v)
        assert ev("${n > 4}", v) and ev("${n gt 4}", v)
        assert ev("${n <= 5}", v) and ev("${n le 5}", v)
        assert ev("${n >= 5}", v) and ev("${n ge 5}", v)
        assert not ev("${n > 5}", v)

    def test_numbers_against_strings_compare_as_numbers(self):
        assert ev("${count == '3'}", {"count": 3}) is True
        assert ev("${'10' > 9}") is True  # numerically, not '1' < '9'
        assert ev("${amount > 1000}", {"amount": "1500.50"}) is True
        assert ev("${1 == 1.0}") is True

    def test_two_strings_compare_as_text(self):
        assert ev("${'10' > '9'}") is False
        assert ev("${status == 'APPROVED'}", {"status": "APPROVED"}) is True
        assert ev("${status eq 'APPROVED'}", {"status": "REJECTED"}) is False

    def test_number_against_non_numeric_text_is_an_error(self):
        with pytest.raises(JuelEvaluationError, match="cannot coerce string 'high'"):
            ev("${priority == 'high'}", {"priority": 1})

    def test_boolean_against_string(self):
        assert ev("${flag == 'true'}", {"flag": True}) is True
        assert ev("${flag == 'TRUE'}", {"flag": True}) is True
        assert ev("${flag == 'yes'}", {"flag": True}) is False

    def test_null_rules(self):
        assert ev("${x == null}", {"x": None}) is True
        assert ev("${x == 0}", {"x": None}) is False
        assert ev("${x != null}", {"x": 0}) is True
        assert ev("${x < 1}", {"x": None}) is False
        assert ev("${x > 1}", {"x": None}) is False
        assert ev("${x <= null}", {"x": None}) is True

    def test_dates_compare_chronologically(self):
        v = {"a": shanghai(2026, 12, 1, 9, 0), "b": datetime(2026, 12, 1, 2, 0, tzinfo=UTC)}
        assert ev("${a < b}", v) is True  # 09:00 Shanghai is 01:00 UTC, before 02:00 UTC
        assert ev("${d1 lt d2}", {"d1": date(2026, 1, 1), "d2": date(2026, 1, 2)}) is True

    def test_naive_against_aware_date_time_is_a_clear_error(self):
        with pytest.raises(JuelEvaluationError, match="cannot compare"):
            ev("${a < b}", {"a": datetime(2026, 1, 1), "b": NOW})

    def test_incomparable_values(self):
        with pytest.raises(JuelEvaluationError, match="cannot compare map"):
            ev("${a < b}", {"a": {}, "b": {}})

    def test_logical_operators(self):
        v = {"t": True, "f": False}
        assert ev("${t && !f}", v) is True
        assert ev("${t and not f}", v) is True
        assert ev("${f || t}", v) is True
        assert ev("${f or f}", v) is False
        assert ev("${!t}", v) is False
        assert ev("${t and 'true'}", v) is True
        assert ev("${t and null}", v) is False

    def test_short_circuit_skips_the_missing_variable(self):
        assert ev("${false && missing}") is False
        assert ev("${true || missing}") is True
        assert ev("${x != null && x.size() > 0}", {"x": None}) is False
        assert ev("${true ? 'yes' : missing}") == "yes"

    def test_numbers_are_not_booleans(self):
        with pytest.raises(JuelEvaluationError, match="cannot coerce integer 1 to a boolean"):
            ev("${1 && true}")

    def test_and_binds_tighter_than_or(self):
        assert ev("${true || false && false}") is True
        assert ev("${(true || false) && false}") is False

    def test_empty_operator(self):
        assert ev("${empty x}", {"x": None}) is True
        assert ev("${empty x}", {"x": ""}) is True
        assert ev("${empty x}", {"x": []}) is True
        assert ev("${empty x}", {"x": {}}) is True
        assert ev("${empty x}", {"x": "a"}) is False
        assert ev("${empty x}", {"x": [0]}) is False
        assert ev("${empty x}", {"x": 0}) is False
        assert ev("${not empty x}", {"x": ["a"]}) is True

    def test_conditional_operator(self):
        assert ev("${score > 80 ? 'A' : 'B'}", {"score": 90}) == "A"
        assert ev("${s == 1 ? 'one' : s == 2 ? 'two' : 'many'}", {"s": 2}) == "two"
        assert ev("${s == 1 ? 'one' : s == 2 ? 'two' : 'many'}", {"s": 7}) == "many"


# --------------------------------------------------------------------------- functions and methods


class TestFunctionsAndMethods:
    def test_caller_functions(self):
        functions = {"headOf": lambda dept: f"{dept}_head", "add": lambda a, b: a + b}
        assert ev("${headOf(dept)}", {"dept": "er"}, functions=functions) == "er_head"
        assert ev("${add(1, add(2, 3))}", functions=functions) == 6

    def test_unknown_function_at_run_time(self):
        with pytest.raises(JuelEvaluationError, match="unknown function 'headOf'"):
            ev("${headOf('er')}")

    def test_check_functions_refuses_unknown_names(self):
        template = compile_template("${a(1)} and ${b(2)} and ${now()}")
        template.check_functions(["a", "b"])  # now() is built in
        with pytest.raises(JuelSyntaxError, match="unknown function 'b' at position 14") as info:
            template.check_functions({"a"})
        assert info.value.position == 14

    def test_failing_caller_function_is_reported(self):
        def broken(_):
            raise KeyError("no such ward")

        with pytest.raises(JuelEvaluationError, match="function 'ward' failed") as info:
            ev("${ward('x')}", functions={"ward": broken})
        assert isinstance(info.value.__cause__, KeyError)

    def test_string_methods(self):
        v = {"s": "Cardiology Dept"}
        assert ev("${s.length()}", v) == 15
        assert ev("${s.contains('Dept')}", v) is True
        assert ev("${s.startsWith('Card') && s.endsWith('Dept')}", v) is True
        assert ev("${s.toUpperCase()}", v) == "CARDIOLOGY DEPT"
        assert ev("${s.substring(0, 4)}", v) == "Card"
        assert ev("${s.indexOf('x')}", v) == -1
        assert ev("${' a '.trim()}") == "a"
        assert ev("${s.concat('!')}", v) == "Cardiology Dept!"
        assert ev("${s.equalsIgnoreCase('cardiology dept')}", v) is True
        assert ev("${e.empty}", {"e": ""}) is True  # bean property isEmpty()

    def test_substring_out_of_range(self):
        with pytest.raises(JuelEvaluationError, match=r"substring\(2, 9\) is out of range"):
            ev("${'abc'.substring(2, 9)}")

    def test_collection_and_map_methods(self):
        v = {"roles": ["nurse", "doctor"], "m": {"ward": "ICU"}, "ids": {1, 2}}
        assert ev("${roles.contains('doctor')}", v) is True
        assert ev("${roles.size() == 2}", v) is True
        assert ev("${roles.get(0)}", v) == "nurse"
        assert ev("${m.containsKey('ward') && m.get('ward') == 'ICU'}", v) is True
        assert ev("${m.size()}", v) == 1
        assert ev("${ids.contains(2)}", v) is True
        assert ev("${l.contains(true)}", {"l": [1]}) is False  # 1 is not true

    def test_method_on_null_is_an_error(self):
        with pytest.raises(JuelEvaluationError, match=r"cannot call method 'contains\(\)' on null"):
            ev("${x.contains('a')}", {"x": None})

    def test_string_blow_up_is_bounded(self):
        with pytest.raises(JuelEvaluationError, match="string result too long"):
            ev("${s.replace('a', t).replace('a', t).replace('a', t)}", {"s": "a" * 200, "t": "a" * 200})


class TestExecution:
    @pytest.fixture
    def execution(self) -> ExecutionContext:
        return ExecutionContext(variables={"patientId": "P-1", "priority": "high"}, business_key="CASE-2026-7",
                                process_instance_id="pi-1", activity_id="triage")

    def test_camunda_execution_forms(self, execution):
        assert ev("${execution.getVariable('patientId')}", execution=execution) == "P-1"
        assert ev("${execution.processBusinessKey}", execution=execution) == "CASE-2026-7"
        assert ev("${execution.getProcessBusinessKey()}", execution=execution) == "CASE-2026-7"
        assert ev("${execution.businessKey}", execution=execution) == "CASE-2026-7"
        assert ev("${execution.processInstanceId}", execution=execution) == "pi-1"
        assert ev("${execution.currentActivityId}", execution=execution) == "triage"
        assert ev("${execution.hasVariable('priority')}", execution=execution) is True
        assert ev("${execution.variables.priority}", execution=execution) == "high"

    def test_missing_variable_through_execution_is_null(self, execution):
        assert ev("${execution.getVariable('nope')}", execution=execution) is None

    def test_variables_fall_back_to_the_execution(self, execution):
        assert ev("Patient ${patientId}", execution=execution) == "Patient P-1"

    def test_side_effects_are_not_available(self, execution):
        with pytest.raises(JuelEvaluationError, match=r"method 'setVariable\(\)' is not available .*getVariable"):
            ev("${execution.setVariable('x', 1)}", execution=execution)

    def test_execution_without_context_is_unresolved(self):
        with pytest.raises(JuelEvaluationError, match="Cannot resolve identifier 'execution'"):
            ev("${execution.processBusinessKey}")


class TestDates:
    def test_now_is_the_injected_clock(self):
        assert ev("${now()}", now=NOW) == NOW
        assert ev("${now()}", now=shanghai(2026, 1, 31, 9, 0)) == NOW

    def test_due_date_in_two_days(self):
        due = ev("${dateTime().plusDays(2).toDate()}", now=NOW, tz=SHANGHAI)
        assert due == shanghai(2026, 2, 2, 9, 0)
        assert due.tzinfo == UTC

    def test_plus_and_minus_units(self):
        def at(text: str) -> datetime:
            return ev(text, now=NOW, tz=SHANGHAI)

        assert at("${dateTime().plusMinutes(30).toDate()}") == NOW + timedelta(minutes=30)
        assert at("${dateTime().plusHours(4).toDate()}") == NOW + timedelta(hours=4)
        assert at("${dateTime().plusWeeks(1).toDate()}") == shanghai(2026, 2, 7, 9, 0)
        assert at("${dateTime().minusDays(1).toDate()}") == shanghai(2026, 1, 30, 9, 0)
        assert at("${dateTime().minusHours(1).minusMinutes(15).toDate()}") == shanghai(2026, 1, 31, 7, 45)
        assert at("${dateTime().plusYears(1).toDate()}") == shanghai(2027, 1, 31, 9, 0)
        assert at("${dateTime().plusSeconds(5).toDate()}") == NOW + timedelta(seconds=5)

    def test_plus_months_from_january_31_clamps_to_month_end(self):
        assert ev("${dateTime().plusMonths(1).toDate()}", now=NOW, tz=SHANGHAI) == shanghai(2026, 2, 28, 9, 0)

    def test_calendar_arithmetic_uses_the_hospital_date(self):
        # 20:00 UTC on Jan 31 is already 04:00 on Feb 1 in Shanghai: plusMonths(1) gives Mar 1 there
        late = datetime(2026, 1, 31, 20, 0, tzinfo=UTC)
        assert ev("${dateTime().plusMonths(1).toDate()}", now=late, tz=SHANGHAI) == shanghai(2026, 3, 1, 4, 0)

    def test_next_morning_at_nine_in_shanghai(self):
        text = "${dateTime().plusDays(1).withHourOfDay(9).withMinuteOfHour(0).withSecondOfMinute(0).toDate()}"
        evening = shanghai(2026, 3, 2, 18, 30)
        assert ev(text, now=evening, tz=SHANGHAI) == shanghai(2026, 3, 3, 9, 0)

    def test_start_of_day_and_getters(self):
        assert ev("${dateTime().withTimeAtStartOfDay().toDate()}", now=NOW, tz=SHANGHAI) == shanghai(2026, 1, 31)
        assert ev("${dateTime().getDayOfWeek()}", now=NOW, tz=SHANGHAI) == 6  # Joda: Saturday
        assert ev("${dateTime().hourOfDay}", now=NOW, tz=SHANGHAI) == 9

    def test_comparisons_with_date_times(self):
        v = {"deadline": shanghai(2026, 2, 1, 0, 0)}
        assert ev("${dateTime().isBefore(deadline)}", v, now=NOW, tz=SHANGHAI) is True
        assert ev("${now() < deadline}", v, now=NOW) is True
        assert ev("${dateTime().plusDays(1) > deadline}", v, now=NOW, tz=SHANGHAI) is True
        assert ev("${deadline.after(now())}", v, now=NOW) is True

    def test_forgotten_to_date_still_gives_a_datetime(self):
        assert ev("${dateTime().plusDays(1)}", now=NOW, tz=SHANGHAI) == shanghai(2026, 2, 1, 9, 0)

    def test_date_time_in_composite_text_is_iso_in_the_hospital_zone(self):
        assert ev("due ${dateTime()}", now=NOW, tz=SHANGHAI) == "due 2026-01-31T09:00:00.000+08:00"

    def test_clock_is_required_and_must_be_aware(self):
        with pytest.raises(JuelEvaluationError, match=r"now\(\) needs the current time"):
            ev("${now()}")
        with pytest.raises(JuelEvaluationError, match="timezone-aware"):
            ev("${now()}", now=datetime(2026, 1, 1))

    def test_invalid_field_value(self):
        with pytest.raises(JuelEvaluationError, match="hourOfDay must be between 0 and 23, got 24"):
            ev("${dateTime().withHourOfDay(24)}", now=NOW)

    def test_builtins_take_no_arguments(self):
        with pytest.raises(JuelEvaluationError, match="takes no arguments"):
            ev("${now(1)}", now=NOW)


# --------------------------------------------------------------------------- syntax errors and limits


class TestSyntaxErrors:
    @pytest.mark.parametrize(("text", "message", "position"), [
        ("${a +}", "unexpected end of expression", 5),
        ("${a + )}", "unexpected ')'", 6),
        ("${a = 1}", "unexpected character '='; use '==' to compare", 4),
        ("${a & b}", "use '&&' or 'and'", 4),
        ("Hello ${name", "unclosed '${': missing '}'", 6),
        ("${'abc}", "unterminated string literal", 2),
        ("${}", "empty expression", 2),
        ("${a b}", "unexpected 'b'", 4),
        ("${x instanceof y}", "unexpected 'instanceof'", 4),
        ("${fn:upper(x)}", "namespaced functions", 2),
        ("${12abc}", "invalid number '12abc'", 2),
        ("${a.}", "expected a property or method name", 4),
        ("${f(1,)}", "unexpected ')'", 6),
        ("${a ? b}", "expected ':'", 7),
        ("${x[1}", "expected ']'", 5),
        ("${{1}}", "map and set literals are not supported", 2),
    ])
    def test_messages_name_position_and_offending_text(self, text, message, position):
        with pytest.raises(JuelSyntaxError) as info:
            compile_template(text)
        assert message in str(info.value)
        assert info.value.position == position
        assert f"at position {position}" in str(info.value)
        assert isinstance(info.value, ValueError)

    def test_the_template_text_is_in_the_message(self):
        with pytest.raises(JuelSyntaxError, match=re.escape("in '${a + )}'")):
            compile_template("${a + )}")


class TestLimits:
    def test_too_long_text(self):
        with pytest.raises(JuelSyntaxError, match=f"the limit is {MAX_TEMPLATE_LENGTH}"):
            compile_template("${" + "1+" * MAX_TEMPLATE_LENGTH + "1}")

    @pytest.mark.parametrize("text", [
        "${" + "(" * 500 + "1" + ")" * 500 + "}",
        "${" + "-" * 2000 + "1}",
        "${" + "!" * 2000 + "true}",
        "${" + "a[" * 500 + "0" + "]" * 500 + "}",
        "${" + "f(" * 500 + ")" * 500 + "}",
        "${" + "x ? " * 500 + "1" + " : 2" * 500 + "}",
    ])
    def test_deep_nesting_fails_cleanly(self, text):
        with pytest.raises(JuelSyntaxError, match="nested too deeply"):
            compile_template(text)

    def test_nesting_up_to_the_limit_works(self):
        depth = MAX_NESTING_DEPTH - 1
        assert ev("${" + "(" * depth + "1" + ")" * depth + "}") == 1

    def test_long_flat_chains_do_not_recurse(self):
        assert ev("${" + "+".join(["1"] * 3000) + "}") == 3000
        assert ev("${" + "&&".join(["true"] * 1500) + "}") is True
        assert ev("${m" + ".a" * 2000 + "}", {"m": {}}) is None

    def test_deep_python_stack_gives_a_clean_error(self):
        text = "${" + "(" * 30 + "deepStack" + ")" * 30 + "}"
        limit = sys.getrecursionlimit()

        def nest(n: int):
            if n:
                return nest(n - 1)
            return compile_template(text).evaluate({"deepStack": 1})

        sys.setrecursionlimit(200)
        try:
            with pytest.raises((JuelSyntaxError, JuelEvaluationError), match="too deeply nested"):
                nest(120)
        finally:
            sys.setrecursionlimit(limit)


def test_no_wall_clock_reads():
    # Values never depend on the machine's clock (the monotonic clock only bounds how long
    # an evaluation may run).
    sources = sorted(Path(juel.__file__).parent.glob("*.py"))
    assert len(sources) > 1  # the package's modules, not only its __init__
    for path in sources:
        source = path.read_text(encoding="utf-8")
        for forbidden in ("datetime.now(", "datetime.utcnow(", "date.today(", "time.time(", "import time"):
            assert forbidden not in source, f"{path.name}: {forbidden}"


def test_aware_now_in_other_zone_is_normalised():
    result = ev("${now()}", now=datetime(2026, 1, 31, 9, 0, tzinfo=timezone(timedelta(hours=8))))
    assert result == NOW and result.tzinfo == UTC


# --------------------------------------------------------------------------- budget

def test_collections_turned_into_text_are_measured_first():
    row = ["x" * 1000] * 1000  # 1,000,000 characters once rendered
    with pytest.raises(juel.JuelEvaluationError, match="string result too long"):
        ev("${row}${'!'}", {"row": row})
    with pytest.raises(juel.JuelEvaluationError, match="string result too long"):
        ev("${'a'.concat(rows)}", {"rows": [row, row]})
    assert ev("${row.size()}", {"row": row}) == 1000


def test_walking_a_collection_stops_at_the_time_limit():
    import time

    items = list(range(3_000_000))
    started = time.monotonic()
    with pytest.raises(juel.JuelEvaluationError, match="longer than 0.05 s"):
        juel.compile_template("${items.contains(-1) or items.indexOf(-1) >= 0}").evaluate(
            {"items": items}, time_limit=0.05)
    assert time.monotonic() - started < 2.0
