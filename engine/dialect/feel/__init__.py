"""FEEL (Friendly Enough Expression Language) for the engine's Camunda 7 dialect.

This module parses and evaluates the FEEL used in DMN decision tables and literal
expressions: S-FEEL unary tests (input entries) and "simple FEEL" expressions (input
expressions, output entries, literal expression decisions).  Nothing in here ever hands
user text to Python's ``eval``/``exec``: the text is parsed by a grammar of our own and
compiled into a tree of small Python closures.

Parser choice
-------------
The grammar is written for **lark** and parsed with **LALR(1)** and lark's contextual
lexer.  Reasons:

* FEEL expressions in decision tables are short but numerous (a table may have
  hundreds of cells), so parsing must be fast and deterministic; LALR is linear-time,
  Earley is much slower and may return ambiguous trees for FEEL's loose grammar.
* lark checks an LALR grammar for conflicts when it is built, so every ambiguity is
  resolved explicitly in the grammar instead of by parse-time heuristics.
* The contextual lexer only offers the terminals that are valid in the parser's current
  state.  That is what lets FEEL names contain spaces and words such as ``of``
  (``Years of Service``) while ``and``/``or``/``in``... remain keywords where an operator
  may follow.

FEEL's own ambiguities are handled as follows:

* Names with spaces are sequences of name parts (``string length``, ``Years of Service``,
  ``Extra days case 1``).  Names that contain a keyword or an operator character
  (``Date and Time of Birth``, ``Approved/Declined``) cannot be recognised by a grammar
  alone; callers that know their variable names (the DMN layer does) pass them in
  ``names`` and such names are replaced, before parsing, by a private-use placeholder of
  the same length (so error positions stay right).  The built-ins ``date and time``,
  ``years and months duration`` and ``days and time duration`` are dedicated terminals.
* ``]1..5[`` style intervals: the closing ``[`` is a terminal with a look-ahead so that
  it does not clash with filter expressions (``list[item > 3]``).
* ``-`` (any) and ``not(...)`` at the top of a unary test are recognised before
  parsing, so ``not`` stays an ordinary built-in function name inside expressions.

Values
------
FEEL values are represented internally as: ``None`` (null), ``bool``, ``decimal.Decimal``
(all numbers, 34 significant digits, half-even rounding, like IEEE 754 decimal128), ``str``,
``datetime.date``, ``datetime.datetime`` (naive = local time), ``datetime.time``,
``datetime.timedelta`` (days and time duration), :class:`YearsMonthsDuration`, ``list``,
``dict`` (contexts), :class:`Range` and functions.

Python values coming in (``int``, ``float``, ``Mapping``, ``tuple``...) are converted on
lookup.  Results handed back are plain Python by default (``raw=False``): numbers become
``int`` when integral and ``float`` otherwise, lists and dicts are converted recursively;
dates, times and ``timedelta`` stay as they are and years-and-months durations are
:class:`YearsMonthsDuration` objects (``str()`` gives the ISO form, e.g. ``P1Y2M``).
Pass ``raw=True`` to get the ``Decimal`` values.

Errors
------
Syntax errors, unknown functions and wrong argument counts of built-ins raise
:class:`FeelSyntaxError` (with position) at compile time.  At evaluation time FEEL's rule
applies: type errors (``"a" + 1``, ``date("x")``, division by zero, comparing a string
with a number...) give ``null``.  :class:`FeelEvaluationError` is raised for what cannot
be answered with null: an unknown variable name, calling something that is not a
function, too deep recursion.

Deliberate leniencies (Camunda users pass Python values from process data): a ``date``
compared with a ``date and time`` is taken as midnight of that day, and a naive
``date and time`` compared with one that has a time zone is taken as UTC.

Beyond what S-FEEL needs, the grammar also has filters (``items[price > 10]``,
``scores[-1]``), ``for``/``some``/``every``, ``instance of`` with the built-in type names,
``@"..."`` temporal literals and ``//``/``/* */`` comments.

Not supported: user-defined function definitions (``function(x) ...``), ``sort`` with a
precedes function, type expressions such as ``list<number>`` in ``instance of``,
open-start intervals written ``]a..b]`` outside unary tests and ``in`` (use ``(a..b]``),
dates outside years 1-9999 and sub-microsecond precision, the range built-ins of
DMN 1.4 (``before``, ``meets``...).
"""

from engine.dialect.feel.api import (
    CompiledFeel,
    CompiledUnaryTests,
    compile_expression,
    compile_unary_tests,
    evaluate,
)
from engine.dialect.feel.functions import BUILTIN_FUNCTIONS
from engine.dialect.feel.limits import (
    DEFAULT_LIMITS,
    FEEL_DECIMAL_CONTEXT,
    FeelError,
    FeelEvaluationError,
    FeelLimitExceeded,
    FeelLimits,
    FeelSyntaxError,
    budget,
)
from engine.dialect.feel.operators import Range, Scope, feel_equal, feel_string, to_python
from engine.dialect.feel.values import (
    FeelFunction,
    YearsMonthsDuration,
    format_duration,
    parse_date,
    parse_date_time,
    parse_duration,
    parse_time,
    to_feel,
)

__all__ = [
    "BUILTIN_FUNCTIONS",
    "DEFAULT_LIMITS",
    "FEEL_DECIMAL_CONTEXT",
    "CompiledFeel",
    "CompiledUnaryTests",
    "FeelError",
    "FeelEvaluationError",
    "FeelFunction",
    "FeelLimitExceeded",
    "FeelLimits",
    "FeelSyntaxError",
    "Range",
    "Scope",
    "YearsMonthsDuration",
    "budget",
    "compile_expression",
    "compile_unary_tests",
    "evaluate",
    "feel_equal",
    "feel_string",
    "format_duration",
    "parse_date",
    "parse_date_time",
    "parse_duration",
    "parse_time",
    "to_feel",
    "to_python",
]
