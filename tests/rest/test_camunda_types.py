"""Camunda's typed values and dates, both ways (no database)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from engine.errors import InvalidInput
from web.camunda_types import (
    format_date,
    from_typed,
    parse_date,
    to_typed,
    values_to_camunda,
    variables_from_camunda,
    variables_to_camunda,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize("typed, expected", [
    ({"value": "张三", "type": "String"}, "张三"),
    ({"value": 42, "type": "String"}, "42"),
    ({"value": True, "type": "string"}, "true"),
    ({"value": 42, "type": "Integer"}, 42),
    ({"value": "42", "type": "Integer"}, 42),
    ({"value": 42.0, "type": "Integer"}, 42),
    ({"value": -32768, "type": "Short"}, -32768),
    ({"value": 2**40, "type": "Long"}, 2**40),
    ({"value": "9000000000", "type": "Long"}, 9_000_000_000),
    ({"value": 1.5, "type": "Double"}, 1.5),
    ({"value": 2, "type": "Double"}, 2.0),
    ({"value": "2.25", "type": "Double"}, 2.25),
    ({"value": True, "type": "Boolean"}, True),
    ({"value": "false", "type": "Boolean"}, False),
    ({"value": None, "type": "Null"}, None),
    ({"value": None, "type": "Integer"}, None),
    ({"value": '{"a": [1, 2]}', "type": "Json"}, {"a": [1, 2]}),
    ({"value": [1, "x"], "type": "Json"}, [1, "x"]),
    ({"value": '{"n": 1}', "type": "Object", "valueInfo": {"serializationDataFormat": "application/json",
                                                         "objectTypeName": "java.util.HashMap"}}, {"n": 1}),
    ({"value": {"free": ["form"]}}, {"free": ["form"]}),
    ({"value": 7}, 7),
])
def test_typed_values_become_python_values(typed, expected):
    assert from_typed("v", typed, SHANGHAI) == expected


def test_dates_in_camunda_form_and_iso_forms():
    expected = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
    for text in ("2026-03-02T09:00:00.000+0800", "2026-03-02T01:00:00Z", "2026-03-02T09:00:00",
                 "2026-03-02T09:00:00+08:00"):
        value = from_typed("d", {"value": text, "type": "Date"}, SHANGHAI)
        assert value == expected and value.tzinfo is not None


@pytest.mark.parametrize("typed, words", [
    ({"value": 2**31, "type": "Integer"}, "whole number"),
    ({"value": 40000, "type": "Short"}, "whole number"),
    ({"value": 1.5, "type": "Integer"}, "whole number"),
    ({"value": True, "type": "Integer"}, "whole number"),
    ({"value": "abc", "type": "Long"}, "whole number"),
    ({"value": "NaN", "type": "Double"}, "number"),
    ({"value": "maybe", "type": "Boolean"}, "true or false"),
    ({"value": 1, "type": "Boolean"}, "true or false"),
    ({"value": "yesterday", "type": "Date"}, "yyyy-MM-dd"),
    ({"value": 5, "type": "Date"}, "date"),
    ({"value": "{broken", "type": "Json"}, "not valid JSON"),
    ({"value": "NaN", "type": "Json"}, "not valid JSON"),
    ({"value": 3, "type": "Json"}, "JSON text"),
    ({"value": "x", "type": "Bytes"}, "Unsupported value type 'Bytes'"),
    ({"value": "x", "type": "File"}, "Unsupported value type"),
    ({"value": "x", "type": "Money"}, "Unsupported value type 'Money'"),
    ({"value": "rO0AB", "type": "Object", "valueInfo": {"serializationDataFormat":
                                                        "application/x-java-serialized-object"}}, "not supported"),
    ({"value": {"a": 1}, "type": "String"}, "must be text"),
    ({"value": 1, "type": 5}, "type must be text"),
    ({"value": 1, "valueInfo": "x"}, "valueInfo"),
    ("just a value", "must be an object"),
    ({"value": float("inf")}, "not a number JSON can hold"),
])
def test_wrong_values_are_refused_naming_the_variable(typed, words):
    with pytest.raises(InvalidInput) as err:
        from_typed("visits", typed, SHANGHAI)
    assert words in err.value.message and "visits" in err.value.message


def test_variables_object():
    assert variables_from_camunda(None, SHANGHAI) == {}
    assert variables_from_camunda({"a": {"value": 1, "type": "Integer"}}, SHANGHAI) == {"a": 1}
    with pytest.raises(InvalidInput):
        variables_from_camunda([1, 2], SHANGHAI)


def test_deep_nesting_is_refused():
    deep: list = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(InvalidInput):
        from_typed("x", {"value": json.dumps(deep), "type": "Json"}, SHANGHAI)


def test_format_date_is_camunda_form_in_hospital_time():
    moment = datetime(2026, 3, 2, 1, 0, 0, 123456, tzinfo=UTC)
    assert format_date(moment, SHANGHAI) == "2026-03-02T09:00:00.123+0800"
    assert format_date("2026-03-02T01:00:00+00:00", SHANGHAI) == "2026-03-02T09:00:00.000+0800"
    assert format_date(date(2026, 3, 2), SHANGHAI) == "2026-03-02T00:00:00.000+0800"
    assert format_date(None, SHANGHAI) is None
    assert parse_date(format_date(moment, SHANGHAI), SHANGHAI) == moment - timedelta(microseconds=456)


def test_python_values_in_camunda_form():
    assert to_typed("x", SHANGHAI) == {"type": "String", "value": "x", "valueInfo": {}}
    assert to_typed(5, SHANGHAI)["type"] == "Integer"
    assert to_typed(2**40, SHANGHAI)["type"] == "Long"
    assert to_typed(Decimal("2.5"), SHANGHAI) == {"type": "Double", "value": 2.5, "valueInfo": {}}
    assert to_typed(None, SHANGHAI)["type"] == "Null"
    assert to_typed({"a": [1]}, SHANGHAI) == {"type": "Json", "value": '{"a": [1]}', "valueInfo": {}}
    assert to_typed(datetime(2026, 3, 2, 1, tzinfo=UTC), SHANGHAI)["value"] == "2026-03-02T09:00:00.000+0800"
    stored = {"when": {"value": "2026-03-02T01:00:00+00:00", "type": "Date"}, "n": {"value": 3, "type": "Long"}}
    assert variables_to_camunda(stored, SHANGHAI) == {
        "when": {"type": "Date", "value": "2026-03-02T09:00:00.000+0800", "valueInfo": {}},
        "n": {"type": "Long", "value": 3, "valueInfo": {}}}
    assert values_to_camunda({"lane": Decimal(3)}, SHANGHAI, {"lane": "Double"})["lane"]["value"] == 3.0


def test_one_variables_module_for_the_engine_and_both_apis():
    """The engine, /api/v1 and /engine-rest read types and JSON-safe values from engine/variables.py:
    the smallest Integer is an Integer everywhere (the engine used to call it a Long), decimals
    become numbers, and the value checks name the same problems for both APIs."""
    from decimal import Decimal

    from engine import variables
    from web import camunda_types

    assert camunda_types.to_typed is variables.to_typed
    assert camunda_types.variables_from_camunda is variables.variables_from_camunda
    assert variables.variable_type(-(2**31)) == "Integer" == to_typed(-(2**31), SHANGHAI)["type"]
    assert variables.variable_type(2**31) == "Long"
    assert variables.json_safe({"score": [Decimal(5), Decimal("2.5")]}, whole_decimals=True) == {"score": [5, 2.5]}
    assert variables.plain_problem({"a": [float("inf")]}) == ("number", float("inf"))
    assert variables.plain_problem({"k\x00": 1}) == ("nul", "k\x00")
    assert variables.plain_problem({"a": 1, "b": ["x"]}) is None
