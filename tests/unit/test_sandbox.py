"""The sandbox that runs diagram scripts and expressions (engine/sandbox.py).

Fast, no database: escape attempts that must be refused (with the right error and no
side effect), ordinary scripts that must keep working, limits, and a real
SpiffWorkflow round trip with a script task parsed by CamundaParser.
"""

from __future__ import annotations

import copy
import sys
import threading
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser

from engine.sandbox import (
    DEFAULT_LIMITS,
    SandboxedEnvironment,
    SandboxedScriptEngine,
    SandboxLimits,
    SandboxTimeout,
    SandboxViolation,
    compile_cache_info,
    validate_expression,
    validate_script,
)

V = SandboxViolation
T = SandboxTimeout

# (id, source, expected error, mode).  "{path}" is replaced by a file that must
# never be created.
ESCAPES: list[tuple[str, str, type[BaseException], str]] = [
    ("import", "import os\nos.system('touch {path}')", V, "exec"),
    ("import-from", "from os import system\nsystem('touch {path}')", V, "exec"),
    ("import-alias", "import subprocess as sp", V, "exec"),
    ("dunder-import", "__import__('os').system('touch {path}')", V, "exec"),
    ("dunder-import-expr", "__import__('os').system('touch {path}')", V, "eval"),
    ("class-bases", "x = ().__class__.__bases__[0].__subclasses__()", V, "exec"),
    ("mro-subclasses", "x = ''.__class__.__mro__[1].__subclasses__()", V, "exec"),
    ("getattr-class", "x = getattr((), '__class__')", V, "exec"),
    ("getattr-class-expr", "getattr(amount, '__class__')", V, "eval"),
    ("function-globals", "def f():\n    pass\nx = f.__globals__", V, "exec"),
    ("getattr-globals", "def f():\n    pass\nx = getattr(f, '__globals__')['__builtins__']", V, "exec"),
    ("builtins-name", "__builtins__['open']('{path}', 'w')", V, "exec"),
    ("format-walk", "x = '{0.__class__.__mro__}'.format(1)", V, "exec"),
    ("format-walk-unbound", "def f():\n    pass\nx = str.format('{0.__globals__}', f)", V, "exec"),
    ("format-map-walk", "x = '{a.__class__}'.format_map({'a': 1})", V, "exec"),
    ("fstring-dunder", "x = f'{amount.__class__}'", V, "exec"),
    ("open", "open('{path}', 'w').write('pwned')", V, "exec"),
    ("open-alias", "o = open\no('{path}', 'w')", V, "exec"),
    ("open-caught", "o = open\ntry:\n    o('{path}', 'w')\nexcept Exception:\n    pass", V, "exec"),
    ("eval", "eval('1 + 1')", V, "exec"),
    ("exec", "exec('x = 1')", V, "exec"),
    ("compile", "c = compile('1', 'f', 'eval')", V, "exec"),
    ("type-call", "t = type(1)", V, "exec"),
    ("type-alias", "t = type\nk = t('K', (), {})", V, "exec"),
    ("class-def", "class A:\n    pass", V, "exec"),
    ("gen-frame", "g = (i for i in [1])\nx = g.gi_frame.f_globals", V, "exec"),
    ("gen-frame-getattr", "g = (i for i in [1])\nx = getattr(g, 'gi_frame')", V, "exec"),
    ("gen-code", "g = (i for i in [1])\nx = getattr(g, 'gi_code')", V, "exec"),
    ("lambda-code", "x = (lambda: 0).__code__", V, "exec"),
    ("lambda-globals", "x = getattr(lambda: 0, '__globals__')", V, "exec"),
    ("lambda-omega", "(lambda f: f(f))(lambda f: f(f))", V, "exec"),
    ("globals", "globals()['x'] = 1", V, "exec"),
    ("locals", "x = locals()", V, "exec"),
    ("vars", "x = vars()", V, "exec"),
    ("setattr", "d = {}\nsetattr(d, '__class__', list)", V, "exec"),
    ("delattr", "delattr(datetime, 'now')", V, "exec"),
    ("attribute-write", "d = datetime(2024, 1, 1)\nd.year = 1999", V, "exec"),
    ("private-attribute", "x = amount._private", V, "exec"),
    ("mro-method", "x = str.mro()", V, "exec"),
    ("datetime-dunder-module", "x = datetime.now().__class__.__module__", V, "exec"),
    ("with-statement", "with open('{path}', 'w') as fh:\n    pass", V, "exec"),
    ("yield", "def g():\n    yield 1", V, "exec"),
    ("global", "def g():\n    global amount\n    amount = 0", V, "exec"),
    ("exception-traceback", "try:\n    1 / 0\nexcept Exception as e:\n    x = e.__traceback__", V, "exec"),
    ("system-exit", "raise SystemExit(1)", NameError, "exec"),
    ("map-getattr", "x = list(map(getattr, [1], ['__class__']))", V, "exec"),
    ("format-nested-spec", "x = '{0:{1}}'.format('a', 10**9)", V, "exec"),
    ("math-module-write", "math.pi = 3", V, "exec"),
    ("hidden-import-via-c", "x = __import__", V, "exec"),
    # resource exhaustion
    ("infinite-while", "while True:\n    pass", T, "exec"),
    ("infinite-for", "for i in range(10**6):\n    for j in range(10**6):\n        pass", T, "exec"),
    ("timeout-swallowed", "try:\n    while True:\n        pass\nexcept Exception:\n    pass\nx = 1", T, "exec"),
    ("timeout-finally", ("def f():\n    try:\n        while True:\n            pass\n    finally:\n"
                         "        return 1\nwhile True:\n    f()"), T, "exec"),
    ("comprehension-bomb", "x = [1 for a in range(1000) for b in range(1000) for c in range(1000)]", T, "exec"),
    ("huge-range", "x = range(10**12)", V, "exec"),
    ("huge-range-list", "x = list(range(10**10))", V, "exec"),
    ("string-repeat", "x = 'a' * 10**10", V, "exec"),
    ("string-repeat-expr", "'a' * 10**10", V, "eval"),
    ("list-repeat", "x = [0] * 10**9", V, "exec"),
    ("power-tower", "x = 10**10**10", V, "exec"),
    ("builtin-pow", "x = pow(10, 10**9)", V, "exec"),
    ("shift", "x = 1 << 10**10", V, "exec"),
    ("doubling", "x = 'ab'\nfor i in range(64):\n    x = x + x", V, "exec"),
    ("doubling-inplace", "x = [1]\nfor i in range(64):\n    x += x", V, "exec"),
    ("doubling-star", "x = [1]\nfor i in range(64):\n    x = [*x, *x]", V, "exec"),
    ("doubling-fstring", "x = 'ab'\nfor i in range(64):\n    x = f'{x}{x}'", V, "exec"),
    ("doubling-extend", "x = [1]\nfor i in range(64):\n    x.extend(x)", V, "exec"),
    ("ljust", "x = 'a'.ljust(10**10)", V, "exec"),
    ("replace-bomb", "x = ('a' * 1000).replace('', 'b' * 1000)", V, "exec"),
    ("join-bomb", "x = ','.join(['a' * 900000] * 100)", V, "exec"),
    ("fstring-width", "x = f'{1:>{10**9}}'", V, "exec"),
    ("percent-width", "x = '%*d' % (10**9, 1)", V, "exec"),
    ("format-precision", "x = '{:.1000000000f}'.format(1.5)", V, "exec"),
    ("to-bytes", "x = (1).to_bytes(10**9, 'big')", V, "exec"),
    ("decimal-exponent", "x = int(Decimal('1e999999'))", V, "exec"),
    ("round-digits", "x = round(5, -10**8)", V, "exec"),
    ("sum-lists", "x = sum([[0] * 1000] * 1000, [])", V, "exec"),
    ("aliased-str", "row = list(range(1000))\nx = str([row] * 100000)", V, "exec"),
    ("aliased-output", "row = list(range(1000))\nx = [row] * 100000", V, "exec"),
    ("self-containing-output", "x = [1]\nx.append(x)", V, "exec"),
    ("deep-recursion", "def f(n):\n    return f(n + 1)\nf(0)", V, "exec"),
    ("exponential-recursion", "def f(n):\n    return 1 if n == 0 else f(n - 1) + f(n - 1)\nx = f(60)", T, "exec"),
]


@pytest.fixture
def env() -> SandboxedEnvironment:
    return SandboxedEnvironment()


def task_data() -> dict:
    return {"amount": 12, "tier": "一级", "items": [3, 1, 2], "patient": {"name": "张三", "age": 70}}


@pytest.mark.parametrize(("source", "error", "mode"), [e[1:] for e in ESCAPES], ids=[e[0] for e in ESCAPES])
def test_escape_is_refused(env: SandboxedEnvironment, tmp_path: Path, source: str, error: type, mode: str) -> None:
    sentinel = tmp_path / "pwned"
    source = source.replace("{path}", str(sentinel))
    context = task_data()
    before = copy.deepcopy(context)
    trace_before = sys.gettrace()
    started = time.monotonic()
    with pytest.raises(error) as info:
        if mode == "exec":
            env.execute(source, context)
        else:
            env.evaluate(source, context)
    assert type(info.value) is error  # a violation is not reported as a timeout or vice versa
    assert str(info.value)
    assert not sentinel.exists()
    assert context == before  # nothing written back into the task data
    assert time.monotonic() - started < 5
    assert sys.gettrace() is trace_before  # the sandbox does not use (or clobber) trace functions


def test_enough_escape_cases() -> None:
    assert len(ESCAPES) >= 25


def test_datetime_names_do_not_lead_to_os(env: SandboxedEnvironment) -> None:
    for holder in ("datetime", "date", "timedelta", "Decimal", "math", "str"):
        for name in ("os", "sys", "builtins", "modules", "system", "subprocess", "import_module", "factorial"):
            assert env.evaluate(f"getattr({holder}, {name!r}, None) is None", {}) is True, (holder, name)
    with pytest.raises(AttributeError):
        env.evaluate("datetime.sys", {})
    with pytest.raises(SandboxViolation):
        env.evaluate("getattr(datetime, '__module__')", {})


def test_compile_time_refusal_names_the_line() -> None:
    with pytest.raises(SandboxViolation) as info:
        validate_script("x = 1\nimport os\ny = 2")
    assert str(info.value) == "line 2: import statements are not allowed"
    assert info.value.lineno == 2
    with pytest.raises(SandboxViolation) as info:
        validate_script("a = 1\nb = a.__class__\nc = eval('1')")
    assert info.value.errors[0].startswith("line 2: ")
    assert info.value.errors[1] == "line 3: eval() is not allowed"
    with pytest.raises(SandboxViolation, match=r"line 1: open\(\) is not allowed"):
        validate_expression("open('x')")


def test_syntax_errors_keep_their_line() -> None:
    with pytest.raises(SyntaxError) as info:
        validate_script("x = 1\ny = (\n")
    assert info.value.lineno == 2
    with pytest.raises(SyntaxError):
        validate_expression("amount >")
    # A statement is not an expression.
    with pytest.raises(SyntaxError):
        validate_expression("x = 1")


def test_validation_accepts_good_code_and_does_not_run_it(tmp_path: Path) -> None:
    validate_script("total = sum(x * 2 for x in items)\nif total > 10:\n    level = '高'\n")
    validate_expression('amount > 5 and tier == "一级"')
    validate_script("while True:\n    pass")  # compiles; only running it would be stopped
    validate_script("x = 1 / 0")  # would raise if it ran


def test_indented_scripts_and_padded_conditions_are_accepted(env: SandboxedEnvironment) -> None:
    # BPMN modelers indent script bodies and pad condition text with newlines.
    context: dict = {"amount": 6}
    env.execute("\n      doubled = amount * 2\n      if doubled > 10:\n          level = '高'\n    ", context)
    assert context == {"amount": 6, "doubled": 12, "level": "高"}
    assert env.evaluate("\n    amount > 5\n  ", context) is True


def test_print_is_collected_not_written(env: SandboxedEnvironment) -> None:
    context: dict = {}
    env.execute("print('第', 1, sep='-')\nprint('行')\nout = printed", context)
    assert context == {"out": "第-1\n行\n"}


def test_runtime_error_reports_script_line(env: SandboxedEnvironment) -> None:
    with pytest.raises(SandboxViolation) as info:
        env.execute("a = 1\nb = 2\nc = 'x' * 10**10", {})
    assert info.value.lineno == 3
    with pytest.raises(SandboxTimeout) as info:
        env.execute("a = 1\nwhile True:\n    a += 1", {})
    assert info.value.lineno in (2, 3)


# --------------------------------------------------------------------------- allowed code


def test_script_computes_variables_with_chinese_text(env: SandboxedEnvironment) -> None:
    context = task_data()
    env.execute(
        "total = sum(items) * amount\n"
        "name = patient['name']\n"
        "greeting = f'{name}您好，本次费用为{total:.2f}元'\n"
        "level = '高龄' if patient['age'] >= 65 else '普通'\n"
        "tags = [t.upper() for t in ['a', 'b']] + ['一级']\n"
        "summary = '，'.join([name, level, tier])\n"
        "note = '患者{}，年龄{}'.format(name, patient['age'])\n"
        "padded = name.ljust(4, '＊')\n"
        "percent = '%s：%05.1f' % (name, 3.14159)\n",
        context,
    )
    assert context["total"] == 72
    assert context["greeting"] == "张三您好，本次费用为72.00元"
    assert context["level"] == "高龄"
    assert context["tags"] == ["A", "B", "一级"]
    assert context["summary"] == "张三，高龄，一级"
    assert context["note"] == "患者张三，年龄70"
    assert context["padded"] == "张三＊＊"
    assert context["percent"] == "张三：003.1"
    assert context["amount"] == 12  # untouched data stays


def test_condition_does_not_modify_task_data(env: SandboxedEnvironment) -> None:
    context = task_data()
    before = copy.deepcopy(context)
    assert env.evaluate('amount > 5 and tier == "一级"', context) is True
    assert env.evaluate("  patient['age'] < 18", context) is False
    assert env.evaluate("(doubled := amount * 2) > 20", context) is True
    assert env.evaluate("[i * 2 for i in items if i > 1]", context) == [6, 4]
    assert context == before


def test_date_arithmetic(env: SandboxedEnvironment) -> None:
    context = {"received": datetime(2024, 2, 27, 9, 30), "birthday": date(1954, 3, 1)}
    env.execute(
        "deadline = received + timedelta(days=3, hours=2)\n"
        "due_day = deadline.date()\n"
        "weekday = deadline.weekday()\n"
        "label = deadline.strftime('%Y年%m月%d日 %H:%M')\n"
        "age_days = (date(2024, 3, 1) - birthday).days\n"
        "same_year = datetime(2024, 1, 1).year == received.year\n"
        "iso = f'{received:%Y-%m-%d}'\n"
        "today_type = isinstance(date.today(), date)\n"
        "parsed = datetime.strptime('2024-03-01', '%Y-%m-%d')\n"
        "elapsed = sum([timedelta(hours=1), timedelta(minutes=30)], timedelta())\n",
        context,
    )
    assert context["deadline"] == datetime(2024, 3, 1, 11, 30)
    assert context["due_day"] == date(2024, 3, 1)
    assert context["weekday"] == 4
    assert context["label"] == "2024年03月01日 11:30"
    assert context["age_days"] == (date(2024, 3, 1) - date(1954, 3, 1)).days
    assert context["same_year"] is True
    assert context["iso"] == "2024-02-27"
    assert context["today_type"] is True
    assert context["parsed"] == datetime(2024, 3, 1)
    assert context["elapsed"] == timedelta(hours=1, minutes=30)


def test_decimal_math_and_isinstance(env: SandboxedEnvironment) -> None:
    context: dict = {"fee": Decimal("19.99")}
    env.execute(
        "total = (fee * 3).quantize(Decimal('0.01'))\n"
        "is_dec = isinstance(total, Decimal) and not isinstance(total, (int, str))\n"
        "root = math.sqrt(16)\n"
        "up = math.ceil(2.1)\n"
        "half = Decimal(1) / Decimal(3)\n"
        "rounded = round(2.675, 2)\n"
        "big = 2 ** 100\n"
        "as_text = str(total)\n"
        "text_check = isinstance(as_text, str) and str.upper('ab') == 'AB'\n",
        context,
    )
    assert context["total"] == Decimal("59.97")
    assert context["is_dec"] is True
    assert context["root"] == 4.0
    assert context["up"] == 3
    assert context["half"] == Decimal(1) / Decimal(3)
    assert context["big"] == 2**100
    assert context["as_text"] == "59.97"
    assert context["text_check"] is True


def test_comprehensions_augmented_and_item_assignment(env: SandboxedEnvironment) -> None:
    context = task_data()
    env.execute(
        "squares = [i * i for i in items]\n"
        "by_index = {i: v for i, v in enumerate(items)}\n"
        "unique = {v % 2 for v in items}\n"
        "pairs = sorted(zip(items, 'abc'), key=lambda p: p[0])\n"
        "nested = [[r * c for c in range(3)] for r in range(2)]\n"
        "counter = 0\n"
        "for i in range(10):\n"
        "    counter += i\n"
        "counts = {'open': 1}\n"
        "counts['open'] += 2\n"
        "counts['closed'] = 0\n"
        "scores = [1, 2, 3]\n"
        "scores[0] *= 10\n"
        "scores[-1] = 99\n"
        "del scores[1]\n"
        "patient['age'] += 1\n"
        "first, *rest = items\n"
        "total = sum(v for v in items if v > 1)\n"
        "top = max(items)\n"
        "flags = any(v > 2 for v in items), all(v > 0 for v in items)\n",
        context,
    )
    assert context["squares"] == [9, 1, 4]
    assert context["by_index"] == {0: 3, 1: 1, 2: 2}
    assert context["unique"] == {0, 1}
    assert context["pairs"] == [(1, "b"), (2, "c"), (3, "a")]
    assert context["nested"] == [[0, 0, 0], [0, 1, 2]]
    assert context["counter"] == 45
    assert context["counts"] == {"open": 3, "closed": 0}
    assert context["scores"] == [10, 99]
    assert context["patient"]["age"] == 71
    assert (context["first"], context["rest"]) == (3, [1, 2])
    assert context["total"] == 5
    assert context["top"] == 3
    assert context["flags"] == (True, True)


def test_injected_functions(env: SandboxedEnvironment) -> None:
    def add_working_days(start: date, days: int) -> date:
        current = start
        while days:
            current += timedelta(days=1)
            if current.weekday() < 5:
                days -= 1
        return current

    hospital = SandboxedEnvironment({"add_working_days": add_working_days, "hospital_name": "第一人民医院"})
    context: dict = {"received": date(2024, 3, 1)}
    hospital.execute("due = add_working_days(received, 3)\ntitle = hospital_name + '客服中心'", context)
    assert context == {"received": date(2024, 3, 1), "due": date(2024, 3, 6), "title": "第一人民医院客服中心"}
    assert hospital.evaluate("add_working_days(received, 1) == date(2024, 3, 4)", context) is True
    # Injected names are not copied into the task data, and data may not hide them.
    with pytest.raises(ValueError, match="add_working_days"):
        hospital.execute("x = 1", {"add_working_days": 1})
    with pytest.raises(ValueError):
        SandboxedEnvironment({"_hidden": len})


def test_functions_and_iterators_do_not_leak_into_task_data(env: SandboxedEnvironment) -> None:
    context: dict = {"old": 1, "drop_me": 2}
    env.execute(
        "def helper(v):\n"
        "    return v + 1\n"
        "value = helper(old)\n"
        "fn = len\n"
        "lam = lambda: 0\n"
        "gen = (i for i in [1, 2])\n"
        "pairs = zip([1], [2])\n"
        "del drop_me\n"
        "print('debug', value)\n",
        context,
    )
    assert context == {"old": 1, "value": 2}
    with pytest.raises(SandboxViolation, match="function"):
        env.execute("def f():\n    return 1\nholder = [f]", {})


def test_failed_script_leaves_task_data_unchanged(env: SandboxedEnvironment) -> None:
    context = {"a": 1}
    with pytest.raises(ZeroDivisionError):
        env.execute("a = 2\nb = 3\nc = 1 / 0", context)
    assert context == {"a": 1}


def test_external_context_is_visible_but_not_written_back(env: SandboxedEnvironment) -> None:
    context: dict = {"a": 1}
    env.execute("b = a + shared['n']", context, {"shared": {"n": 41}})
    assert context == {"a": 1, "b": 42}
    assert env.evaluate("dmninputexpr == '一级'", {}, {"dmninputexpr": "一级"}) is True


def test_task_data_cannot_replace_the_guards(env: SandboxedEnvironment, tmp_path: Path) -> None:
    # Task data comes from user forms: keys that look like RestrictedPython's helper
    # names or __builtins__ must not disable the guards.
    sentinel = tmp_path / "pwned"
    evil = {"_getattr_": getattr, "__builtins__": __builtins__, "_write_": lambda o: o, "_tick_": lambda: True,
            "x": 1}
    with pytest.raises(SandboxViolation):
        env.execute("y = getattr(x, '__class__')", dict(evil))
    with pytest.raises(SandboxTimeout):
        env.execute("while True:\n    pass", dict(evil))
    with pytest.raises(SandboxViolation):
        env.execute(f"o = open\no({str(sentinel)!r}, 'w')", dict(evil))
    assert not sentinel.exists()
    context = dict(evil)
    env.execute("y = x + 1", context)
    assert context["y"] == 2 and context["_getattr_"] is getattr  # underscore keys are left alone


def test_cpu_time_limit_stops_a_busy_script() -> None:
    fast = SandboxedEnvironment(limits=SandboxLimits(cpu_time=0.2, max_steps=10**12))
    started = time.monotonic()
    with pytest.raises(SandboxTimeout, match="CPU time"):
        fast.execute("x = 0\nwhile True:\n    x = (x + 1) % 7", {})
    assert time.monotonic() - started < 5  # 0.2 s of CPU, on a machine that may be busy


def test_step_limit_is_configurable() -> None:
    small = SandboxedEnvironment(limits=SandboxLimits(max_steps=100))
    small.execute("for i in range(50):\n    pass", {})
    with pytest.raises(SandboxTimeout, match="100 steps"):
        small.execute("for i in range(200):\n    pass", {})


def test_limits_work_in_a_worker_thread(env: SandboxedEnvironment) -> None:
    outcome: dict = {}

    def worker() -> None:
        try:
            outcome["value"] = env.evaluate("amount * 2", {"amount": 21})
            env.execute("while True:\n    pass", {})
        except Exception as exc:  # noqa: BLE001 - handed back to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert outcome["value"] == 42
    assert isinstance(outcome["error"], SandboxTimeout)


def test_concurrent_runs_keep_separate_budgets() -> None:
    env = SandboxedEnvironment(limits=SandboxLimits(max_steps=20_000))
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                context: dict = {}
                env.execute("t = 0\nfor i in range(10_000):\n    t += i", context)
                assert context["t"] == sum(range(10_000))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []


def test_compile_cache_makes_conditions_cheap(env: SandboxedEnvironment) -> None:
    context = task_data()
    condition = 'amount > 5 and tier == "一级"'
    env.evaluate(condition, context)
    hits = compile_cache_info().hits
    rounds = 2000
    for _ in range(rounds):
        assert env.evaluate(condition, context) is True
    assert compile_cache_info().hits >= hits + rounds


def test_call_service_is_refused(env: SandboxedEnvironment) -> None:
    with pytest.raises(NotImplementedError, match="service tasks"):
        env.call_service({}, operation_name="x")


# --------------------------------------------------------------------------- SpiffWorkflow


BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
                  id="defs" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="triage" isExecutable="true">
    <bpmn:startEvent id="start">
      <bpmn:outgoing>f1</bpmn:outgoing>
    </bpmn:startEvent>
    <bpmn:scriptTask id="score" name="打分" scriptFormat="python">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{script}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:exclusiveGateway id="gw" default="f_low">
      <bpmn:incoming>f2</bpmn:incoming>
      <bpmn:outgoing>f_high</bpmn:outgoing>
      <bpmn:outgoing>f_low</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="score" />
    <bpmn:sequenceFlow id="f2" sourceRef="score" targetRef="gw" />
    <bpmn:sequenceFlow id="f_high" sourceRef="gw" targetRef="urgent">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">priority == "紧急"</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_low" sourceRef="gw" targetRef="normal" />
    <bpmn:scriptTask id="urgent" scriptFormat="python">
      <bpmn:incoming>f_high</bpmn:incoming>
      <bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:script>route = "急诊"</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:scriptTask id="normal" scriptFormat="python">
      <bpmn:incoming>f_low</bpmn:incoming>
      <bpmn:outgoing>f4</bpmn:outgoing>
      <bpmn:script>route = "门诊"</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="urgent" targetRef="end" />
    <bpmn:sequenceFlow id="f4" sourceRef="normal" targetRef="end" />
    <bpmn:endEvent id="end">
      <bpmn:incoming>f3</bpmn:incoming>
      <bpmn:incoming>f4</bpmn:incoming>
    </bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
"""

GOOD_SCRIPT = """score = sum(v for v in [age // 10, len(symptoms) * 2])
priority = "紧急" if score &gt;= 10 else "普通"
due = (received + timedelta(hours=4 if priority == "紧急" else 48)).isoformat()
summary = f"{name}：{priority}"
"""


def run_workflow(script: str, data: dict) -> BpmnWorkflow:
    parser = CamundaParser()
    parser.add_bpmn_str(BPMN.replace("{script}", script).encode("utf-8"))
    workflow = BpmnWorkflow(parser.get_spec("triage"), script_engine=SandboxedScriptEngine())
    start = workflow.get_tasks(spec_name="start")[0]
    start.data.update(data)
    workflow.do_engine_steps()
    return workflow


def test_spiff_round_trip_runs_scripts_and_conditions_in_the_sandbox() -> None:
    data = {"age": 80, "symptoms": ["胸痛", "气短"], "received": datetime(2024, 3, 1, 8, 0), "name": "李四"}
    workflow = run_workflow(GOOD_SCRIPT, data)
    assert workflow.is_completed()
    assert isinstance(workflow.script_engine, SandboxedScriptEngine)
    result = workflow.get_tasks(spec_name="end")[0].data
    assert result["score"] == 12
    assert result["priority"] == "紧急"
    assert result["route"] == "急诊"
    assert result["due"] == "2024-03-01T12:00:00"
    assert result["summary"] == "李四：紧急"

    calm = run_workflow(GOOD_SCRIPT, {**data, "age": 20, "symptoms": []})
    assert calm.get_tasks(spec_name="end")[0].data["route"] == "门诊"


def test_spiff_malicious_script_task_is_refused(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    data = {"age": 1, "symptoms": [], "received": datetime(2024, 3, 1), "name": "x"}
    with pytest.raises(WorkflowTaskException) as info:
        run_workflow(f"x = 1\n__import__('os').system('touch {sentinel}')", data)
    assert "invalid variable name" in str(info.value)
    assert info.value.error_type == "SandboxViolation"
    assert info.value.line_number == 2

    with pytest.raises(WorkflowTaskException) as info:
        run_workflow(f"x = 1\no = open\no('{sentinel}', 'w')", data)
    assert info.value.error_type == "SandboxViolation"
    assert info.value.line_number == 3
    assert not sentinel.exists()

    with pytest.raises(WorkflowTaskException) as info:
        run_workflow("while True:\n    pass", data)
    assert info.value.error_type == "SandboxTimeout"


def test_engine_constructor_options() -> None:
    engine = SandboxedScriptEngine(environment_globals={"f": len}, limits=SandboxLimits(max_steps=10))
    assert isinstance(engine.environment, SandboxedEnvironment)
    assert engine.environment.limits.max_steps == 10
    with pytest.raises(TypeError):
        SandboxedScriptEngine(SandboxedEnvironment(), limits=SandboxLimits())
    with pytest.raises(ValueError):
        SandboxLimits(cpu_time=0)


# --------------------------------------------------------------------------- worker processes
# Scripts and non-simple expressions run in a worker process (engine/sandbox_worker.py) that
# the parent kills past its limits: a single C-level operation cannot block the server.

ALIASED_TUPLES = "a = ()\nb = ()\nfor i in range(32):\n    a = (a, a)\n    b = (b, b)\nsame = a == b"
ALIASED_WALRUS = "[(a := (a, a)) and (b := (b, b)) for i in range(32)] and a == b"
TIGHT = SandboxLimits(cpu_time=1.0, wall_time=3.0)
# What a loaded 2-core machine may add: the worker's CPU is sampled every 50 ms and a kill,
# a reap and a pool refill take a few hundred ms more.
MARGIN = 4.0


def test_self_aliased_tuple_comparison_is_stopped_within_its_limit() -> None:
    env = SandboxedEnvironment(limits=TIGHT)
    context = {"keep": 1}
    started = time.monotonic()
    with pytest.raises(SandboxTimeout, match="CPU time|longer than"):
        env.execute(ALIASED_TUPLES, context)
    assert time.monotonic() - started < TIGHT.wall_time + MARGIN
    assert context == {"keep": 1}
    started = time.monotonic()
    with pytest.raises(SandboxTimeout):
        env.evaluate(ALIASED_WALRUS, {"a": (), "b": ()})
    assert time.monotonic() - started < TIGHT.wall_time + MARGIN
    # The killed worker is replaced: the next script runs normally.
    env.execute("x = keep + 1", context)
    assert context == {"keep": 1, "x": 2}


def test_default_limits_stop_the_aliased_comparison() -> None:
    started = time.monotonic()
    with pytest.raises(SandboxTimeout):
        SandboxedEnvironment().execute(ALIASED_TUPLES, {})
    assert time.monotonic() - started < DEFAULT_LIMITS.wall_time + MARGIN


def test_other_threads_keep_running_while_a_hostile_script_runs() -> None:
    env = SandboxedEnvironment(limits=TIGHT)
    env.execute("warm = 1", {})  # a started worker in the pool
    outcome: dict = {}

    def hostile() -> None:
        try:
            env.execute(ALIASED_TUPLES, {})
        except Exception as exc:  # noqa: BLE001 - handed back to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=hostile)
    thread.start()
    time.sleep(0.3)  # the comparison has started in the worker
    worst = 0.0
    answers = []
    while thread.is_alive():
        started = time.monotonic()
        answers.append(env.evaluate("amount * 2", {"amount": 21}))  # runs in this process
        time.sleep(0.05)
        worst = max(worst, time.monotonic() - started)
    thread.join(TIGHT.wall_time + MARGIN)
    assert isinstance(outcome.get("error"), SandboxTimeout)
    assert answers and set(answers) == {42}
    assert worst < 1.0  # the GIL was never held by the hostile comparison


def test_two_hostile_scripts_in_parallel_do_not_block_a_third_run() -> None:
    from engine import sandbox_worker

    env = SandboxedEnvironment(limits=TIGHT)
    sandbox_worker.prestart(3)  # the third run finds a started worker
    errors: list[BaseException] = []

    def hostile() -> None:
        try:
            env.execute(ALIASED_TUPLES, {})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=hostile) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    context: dict = {"n": 20}
    env.execute("total = sum(range(n))", context)
    assert context["total"] == 190
    assert time.monotonic() - started < 2.0  # a worker of its own, started or taken from the pool
    for thread in threads:
        thread.join(TIGHT.wall_time + MARGIN)
    assert len(errors) == 2 and all(isinstance(e, SandboxTimeout) for e in errors)


def test_memory_limit_of_the_worker() -> None:
    env = SandboxedEnvironment(limits=SandboxLimits(max_memory_growth=64 * 1024 * 1024, max_sequence=10**8,
                                                    max_allocation=10**9))
    with pytest.raises(SandboxViolation, match="memory|out of memory|worker process ended"):
        env.execute("rows = [0] * 50_000_000\nmore = [1] * 50_000_000", {})
    context: dict = {}
    env.execute("x = len([0] * 1000)", context)  # a fresh or recovered worker answers
    assert context == {"x": 1000}


def test_host_function_errors_pass_through_the_worker() -> None:
    class NotConfirmed(ValueError):
        pass

    original = NotConfirmed("2027 holidays are not confirmed")

    def add_working_days(start: date, days: int) -> date:
        if start.year > 2026:
            raise original
        return start + timedelta(days=days)

    env = SandboxedEnvironment({"addWorkingDays": add_working_days})
    context: dict = {"start": date(2026, 3, 2)}
    env.execute("due = addWorkingDays(start, 2)", context)
    assert context["due"] == date(2026, 3, 4)
    with pytest.raises(NotConfirmed) as info:
        env.execute("due = addWorkingDays(date(2027, 1, 4), 1)", context)
    assert info.value is original  # the engine sees the host's own exception
    env.execute("try:\n    due = addWorkingDays(date(2027, 1, 4), 1)\nexcept ValueError as e:\n    due = str(e)",
                context)
    assert context["due"] == "2027 holidays are not confirmed"
    with pytest.raises(SandboxViolation, match="plain data"):
        env.execute("due = addWorkingDays(len, 1)", context)


def test_only_plain_data_comes_back_from_a_worker() -> None:
    env = SandboxedEnvironment()
    with pytest.raises(SandboxViolation, match="'m'"):
        env.execute("m = math", {})
    with pytest.raises(SandboxViolation, match="plain data"):
        env.evaluate("[m for m in [math]][0]", {})
    context: dict = {}
    env.execute("when = datetime(2026, 3, 2, 9, 0)\nd = {'k': {1, 2}, 't': (Decimal('1.5'), None)}", context)
    assert context == {"when": datetime(2026, 3, 2, 9, 0), "d": {"k": {1, 2}, "t": (Decimal("1.5"), None)}}


def test_runtime_errors_from_a_worker_keep_type_message_and_line() -> None:
    env = SandboxedEnvironment()
    with pytest.raises(KeyError) as info:
        env.execute("a = {}\nb = 1\nc = a['missing']", {})
    assert info.value.args == ("missing",)
    assert info.value.sandbox_lineno == 3
    data = {"age": 1, "symptoms": [], "received": datetime(2024, 3, 1), "name": "x"}
    with pytest.raises(WorkflowTaskException) as wte:
        run_workflow("x = 1\ny = 2\nz = x / 0", data)
    assert wte.value.error_type == "ZeroDivisionError"
    assert wte.value.line_number == 3


def test_simple_conditions_stay_in_process_and_others_use_a_worker() -> None:
    from engine import sandbox_worker

    env = SandboxedEnvironment()
    env.execute("x = 1", {})
    assert env.evaluate('amount > 5 and tier == "一级"', task_data()) is True
    assert env.evaluate("len(items) == 3", task_data()) is True
    assert sandbox_worker.pool_size() >= 1
    inline = SandboxedEnvironment(isolation="inline")
    context: dict = {}
    inline.execute("y = 2", context)
    assert context == {"y": 2}
    with pytest.raises(ValueError, match="isolation"):
        SandboxedEnvironment(isolation="thread")
