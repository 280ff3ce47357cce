"""Run the public DMN TCK (github.com/dmn-tck/tck) through engine.dialect.dmn.

Usage:
    python bench/dmn_tck.py PATH_TO_TCK_CHECKOUT [--verbose] [--all-level3]

PATH is the root of a checkout of the TCK repository (the folder holding ``TestCases``)
or the ``TestCases`` folder itself.  Nothing of the TCK is copied into this project.

What is run:
  * level 2: every case of ``TestCases/compliance-level-2``;
  * level 3 (decision tables): the cases of ``TestCases/compliance-level-3`` whose models
    contain a decision table and otherwise only literal expressions (no boxed contexts,
    invocations, relations, lists, functions, business knowledge models, decision
    services or imports), i.e. the level-3 cases within this evaluator's scope;
  * with ``--all-level3`` also every other level-3 case, reported separately and for
    information only (most need FEEL and DMN features outside the Camunda dialect).

A TCK test case passes when every one of its result nodes matches: numbers are compared
with a relative tolerance of 1e-9 (the TCK's expected values are rounded to ~15 digits,
ours have 34), strings, booleans, dates, times and durations exactly, lists and
structures element by element.  A result node with ``errorResult="true"`` passes when
the evaluation fails or gives null.

The last line printed is one JSON object with the counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time as _time
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.dialect.dmn import DmnError, DmnModel, parse_dmn
from engine.dialect.feel import (
    FeelError,
    YearsMonthsDuration,
    feel_equal,
    parse_date,
    parse_date_time,
    parse_duration,
    parse_time,
)

XSI = "http://www.w3.org/2001/XMLSchema-instance"
_OTHER_LOGIC = {
    "context",
    "invocation",
    "relation",
    "list",
    "functionDefinition",
    "businessKnowledgeModel",
    "decisionService",
    "import",
    "conditional",
    "filter",
    "for",
    "some",
    "every",
}


@dataclass
class Tally:
    cases: int = 0
    passed: int = 0
    nodes: int = 0
    nodes_passed: int = 0
    failures: list[str] = field(default_factory=list)

    def merge(self, other: Tally) -> None:
        self.cases += other.cases
        self.passed += other.passed
        self.nodes += other.nodes
        self.nodes_passed += other.nodes_passed
        self.failures.extend(other.failures)

    def as_dict(self) -> dict[str, Any]:
        rate = round(100.0 * self.passed / self.cases, 1) if self.cases else 0.0
        return {
            "cases": self.cases,
            "passed": self.passed,
            "failed": self.cases - self.passed,
            "pass_rate": rate,
            "result_nodes": self.nodes,
            "result_nodes_passed": self.nodes_passed,
        }


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _kids(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str) and _local(c) == name]


def _kid(el: etree._Element, name: str) -> etree._Element | None:
    found = _kids(el, name)
    return found[0] if found else None


def _scalar(el: etree._Element) -> Any:
    if el.get(f"{{{XSI}}}nil") == "true":
        return None
    xtype = (el.get(f"{{{XSI}}}type") or "").split(":")[-1]
    text = el.text or ""
    if xtype in ("decimal", "double", "float", "integer", "int", "long", "short"):
        try:
            return Decimal(text.strip())
        except InvalidOperation:
            return text
    if xtype == "boolean":
        return text.strip() == "true"
    if xtype == "date":
        return parse_date(text)
    if xtype == "dateTime":
        return parse_date_time(text)
    if xtype == "time":
        return parse_time(text)
    if xtype in ("duration", "dayTimeDuration", "yearMonthDuration"):
        return parse_duration(text)
    return text


def _value(node: etree._Element) -> Any:
    """Value of an inputNode / expected / component / item element."""
    v = _kid(node, "value")
    if v is not None:
        return _scalar(v)
    comps = _kids(node, "component")
    if comps:
        return {c.get("name"): _value(c) for c in comps}
    lst = _kid(node, "list")
    if lst is not None:
        return [_value(i) for i in _kids(lst, "item")]
    items = _kids(node, "item")
    if items:
        return [_value(i) for i in items]
    if node.get(f"{{{XSI}}}nil") == "true":
        return None
    return None


def _same(expected: Any, actual: Any) -> bool:
    if expected is None:
        return actual is None
    if actual is None:
        return False
    if isinstance(expected, Decimal):
        if type(actual) is not Decimal:
            return False
        if expected == actual:
            return True
        scale = max(abs(expected), abs(actual))
        return abs(expected - actual) <= scale * Decimal("1e-9")
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, list):
        if not isinstance(actual, list):
            # DMN singleton-list coercion
            return len(expected) == 1 and _same(expected[0], actual)
        return len(expected) == len(actual) and all(
            _same(e, a) for e, a in zip(expected, actual, strict=True)
        )
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return False
        if set(expected) != set(actual):
            return False
        return all(_same(expected[k], actual[k]) for k in expected)
    if isinstance(expected, (date, datetime, time, timedelta, YearsMonthsDuration)):
        return feel_equal(expected, actual) is True and type(expected) is type(actual)
    return expected == actual


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 160 else text[:157] + "..."


def _model_kind(path: Path) -> tuple[bool, bool]:
    """(has a decision table, uses only decision tables and literal expressions)."""
    tree = etree.parse(str(path))
    tags = {_local(el) for el in tree.iter() if isinstance(el.tag, str)}
    return "decisionTable" in tags, not (tags & _OTHER_LOGIC)


def _decision_for(model: DmnModel, name: str) -> str | None:
    for d in model.decisions.values():
        if d.name == name:
            return d.id
    return name if name in model.decisions else None


def run_case_dir(case_dir: Path, tally: Tally, verbose: bool) -> None:
    dmn_files = sorted(case_dir.glob("*.dmn"))
    test_files = sorted(case_dir.glob("*test*.xml"))
    models: dict[str, DmnModel | Exception] = {}
    for f in dmn_files:
        try:
            models[f.name] = parse_dmn(f.read_bytes(), f.name)
        except DmnError as e:
            models[f.name] = e
    for tf in test_files:
        root = etree.parse(str(tf)).getroot()
        model_name_el = _kid(root, "modelName")
        model_name = (model_name_el.text or "").strip() if model_name_el is not None else dmn_files[0].name
        model = models.get(model_name)
        for tc in _kids(root, "testCase"):
            if tc.get("type", "decision") != "decision":
                continue
            tally.cases += 1
            label = f"{case_dir.name}/{tc.get('id')}"
            inputs = {n.get("name"): _value(n) for n in _kids(tc, "inputNode")}
            ok_case = True
            reasons = []
            for rn in _kids(tc, "resultNode"):
                tally.nodes += 1
                error_expected = rn.get("errorResult") == "true"
                exp_el = _kid(rn, "expected")
                expected = _value(exp_el if exp_el is not None else rn)
                name = rn.get("name")
                if isinstance(model, Exception) or model is None:
                    ok = False
                    reasons.append(f"{name}: model not loaded: {model}")
                else:
                    did = _decision_for(model, name)
                    try:
                        if did is None:
                            raise DmnError(f"no decision named {name!r}")
                        actual = model.evaluate_value(did, inputs, raw=True)
                        ok = _same(expected, actual) or (error_expected and actual is None)
                        if not ok:
                            reasons.append(f"{name}: expected {_short(expected)}, got {_short(actual)}")
                    except (DmnError, FeelError) as e:
                        ok = error_expected
                        if not ok:
                            reasons.append(f"{name}: error {e}")
                if ok:
                    tally.nodes_passed += 1
                ok_case = ok_case and ok
            if ok_case:
                tally.passed += 1
                if verbose:
                    print(f"PASS {label}")
            else:
                tally.failures.append(label)
                print(f"FAIL {label}: {'; '.join(reasons)[:600]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tck", type=Path, help="path to a checkout of github.com/dmn-tck/tck")
    parser.add_argument("--verbose", action="store_true", help="print passing cases too")
    parser.add_argument("--all-level3", action="store_true", help="also run every other level-3 case")
    args = parser.parse_args(argv)

    base = args.tck
    if (base / "TestCases").is_dir():
        base = base / "TestCases"
    level2 = base / "compliance-level-2"
    level3 = base / "compliance-level-3"
    if not level2.is_dir():
        print(f"error: {level2} not found (give the path of a TCK checkout)", file=sys.stderr)
        return 2

    started = _time.perf_counter()
    tallies: dict[str, Tally] = {
        "level2": Tally(),
        "level2_decision_tables": Tally(),
        "level3_decision_tables": Tally(),
    }
    if args.all_level3:
        tallies["level3_other_informational"] = Tally()

    for case_dir in sorted(p for p in level2.iterdir() if p.is_dir()):
        local = Tally()
        run_case_dir(case_dir, local, args.verbose)
        tallies["level2"].merge(local)
        if any(_model_kind(f)[0] for f in case_dir.glob("*.dmn")):
            tallies["level2_decision_tables"].merge(local)

    if level3.is_dir():
        for case_dir in sorted(p for p in level3.iterdir() if p.is_dir()):
            kinds = [_model_kind(f) for f in case_dir.glob("*.dmn")]
            in_scope = bool(kinds) and any(k[0] for k in kinds) and all(k[1] for k in kinds)
            if in_scope:
                run_case_dir(case_dir, tallies["level3_decision_tables"], args.verbose)
            elif args.all_level3:
                run_case_dir(case_dir, tallies["level3_other_informational"], args.verbose)

    print()
    for name, t in tallies.items():
        d = t.as_dict()
        print(f"{name}: {d['passed']}/{d['cases']} test cases passed ({d['pass_rate']}%)", end="")
        if t.nodes:
            print(f", {t.nodes_passed}/{t.nodes} result nodes", end="")
        print()
    summary = {name: t.as_dict() for name, t in tallies.items()}
    summary["seconds"] = round(_time.perf_counter() - started, 2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
