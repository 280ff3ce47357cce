"""Camunda 7 ``${…}`` expressions: a safe, bounded JUEL subset.

Camunda Modeler users write JUEL (the Java Unified Expression Language, EL 2.2) in
sequence-flow conditions, ``camunda:assignee``, ``camunda:candidateGroups``,
``camunda:dueDate``, timers, multi-instance collections and input/output mappings.
This module compiles such text into an AST once (LRU-cached) and evaluates it
against a mapping of process variables.  User text is never handed to Python's
``eval``/``exec``; attribute access on Python objects is limited to explicit
whitelists and names starting with ``__`` are refused at compile time.

Why a hand-written recursive-descent parser instead of lark
-----------------------------------------------------------
* Where a ``${`` part ends depends on tokenisation (``${a == '}'}`` closes at the
  second brace), so the template scanner must cooperate with the expression lexer.
  A hand-written lexer simply reports where the expression ends.
* Error messages name the exact character position and the offending text in the
  *whole template* (``unexpected ')' at position 7 in '${a + )}'``), which is what
  a modeller needs to fix a Camunda model.
* Resource bounds are explicit: the parser counts nesting depth and refuses more
  than :data:`MAX_NESTING_DEPTH` levels long before Python's recursion limit, and
  left-associative operator chains (``a + b + c + …``) become one flat node, so
  evaluation depth follows the syntactic nesting and never the input length.  With
  lark the LALR parse itself is iterative, but its tree transformers recurse over
  the tree, so the same guards would be needed on top of the grammar.
* The grammar is small (seven precedence levels, EL 2.2 section 1.17) and fits in
  about 200 readable lines.

Supported
---------
* Templates: literal text with any number of ``${…}`` or ``#{…}`` parts (both
  delimiters are accepted and mean the same; JUEL's "deferred" distinction has no
  meaning here).  ``\\${`` and ``\\#{`` in literal text stand for a literal ``${``
  / ``#{``.  A template that is one expression, optionally surrounded by
  whitespace (Camunda trims XML text), evaluates to the raw value; otherwise every
  part is coerced to a string and concatenated.
* Literals: ``'…'`` and ``"…"`` strings (escapes ``\\\\``, ``\\'``, ``\\"`` as in
  JUEL; any other escape is a syntax error), integers, floats, ``true``,
  ``false``, ``null``.
* Operators, lowest to highest precedence: ``a ? b : c``; ``||``/``or``;
  ``&&``/``and``; ``==``/``eq``, ``!=``/``ne``; ``<``/``lt``, ``>``/``gt``,
  ``<=``/``le``, ``>=``/``ge``; ``+``, ``-``; ``*``, ``/``/``div``, ``%``/``mod``;
  unary ``-``, ``!``/``not``, ``empty``; then ``a.b``, ``a['b']``, ``a[0]``,
  ``a.m(args)`` and ``f(args)``.  ``&&``, ``||`` and ``?:`` short-circuit.
* Variables: missing ones raise :class:`JuelEvaluationError` ("Cannot resolve
  identifier 'x'", like Camunda's PropertyNotFoundException).  ``execution``
  resolves to the :class:`ExecutionContext` passed by the caller.
* Property/index access on dicts (missing key → null), lists/tuples (out of range
  or negative index → null, as JUEL's ListELResolver), ``null`` (→ null).  On other
  objects only whitelisted members: see :data:`JUEL_METHOD_TABLES` for strings,
  lists, sets, maps, date-times and :class:`JodaDateTime`; a class of the caller
  may whitelist members with ``juel_methods`` / ``juel_properties`` class
  attributes (JUEL name → Python attribute name).  A property ``foo`` also resolves
  through a whitelisted ``getFoo()``/``isFoo()`` (Java bean convention), so
  ``execution.processBusinessKey`` works.
* Functions: ``name(args)`` from the caller's ``functions`` mapping, plus the
  built-ins ``now()`` (Camunda's current Date: an aware UTC ``datetime``) and
  ``dateTime()`` (a Joda-style :class:`JodaDateTime` with ``plusDays(2)``,
  ``minusHours(1)``, ``withHourOfDay(9)``, ``toDate()`` …).  Both read the clock
  passed as ``now=`` to :meth:`CompiledTemplate.evaluate`; nothing here reads the
  wall clock.

Coercion (EL 2.2 section 1.18, as JUEL implements it)
------------------------------------------------------
Python ``int`` plays Java ``Long``, ``float`` plays ``Double``, ``Decimal`` plays
``BigDecimal``, ``bool`` plays ``Boolean``.

* Arithmetic ``+ - * / %`` is numeric only: ``null`` counts as 0, strings are
  coerced to numbers (``'2' + 3`` is 5; ``'a' + 1`` is an error — write the
  template ``${a}${b}`` or use ``a.concat(b)`` to join text).  If an operand is a
  ``Decimal`` the result is a ``Decimal``; else if one is a float or a string
  containing ``.``, ``e`` or ``E`` the operation is done in floats; else in 64-bit
  integers.  ``/`` always divides as float (``7 / 2`` is 3.5, ``4 / 2`` is 2.0).
  Deviations from Java: integer overflow past 64 bits and division or modulo by
  zero raise :class:`JuelEvaluationError` instead of wrapping or giving Infinity.
* ``==``/``!=``: equal objects are equal; ``null`` equals only ``null``; if either
  side is a number both are compared as numbers (``count == '3'`` is true,
  ``count == 'abc'`` is an error); else if either is a boolean both are coerced to
  boolean (``flag == 'true'``); else if either is a string both are compared as
  strings (a date equals its ISO text); else Python equality.
* ``< > <= >=``: ``null`` compares false (``null <= null`` is true); numbers as
  numbers (one leniency over JUEL: an integer compared with a string such as
  ``'1500.50'`` compares as floats instead of failing); else strings as strings;
  booleans, dates and date-times with their own kind.
* Boolean contexts (``&&``, ``||``, ``!``, ``?:``): ``null`` and ``''`` are false,
  a string is true only if it is ``'true'`` (any case), numbers are an error.
* ``empty x``: true for ``null``, ``''`` and empty lists, sets and maps.
* String conversion (composite templates): ``null`` → ``''``, booleans → ``true``
  / ``false``, floats as Java prints them (``2.0``, ``1.0E-5``), dates and
  date-times → ISO 8601, lists → ``[a, b]``, maps → ``{k=v}``.

Not supported
-------------
Namespaced functions (``fn:x()``), lambdas and other EL 3.0 syntax, ``instanceof``,
method calls through ``a['m'](…)``, assignment, ``execution.setVariable`` and other
side effects, Spring/CDI beans, ``task`` / ``authenticatedUserId`` implicit
objects (pass them as variables), 64-bit wrap-around.

Limits
------
Templates longer than :data:`MAX_TEMPLATE_LENGTH` characters or nested deeper
than :data:`MAX_NESTING_DEPTH` are refused with :class:`JuelSyntaxError`; string
results longer than :data:`MAX_STRING_LENGTH` raise :class:`JuelEvaluationError`.
"""

from engine.dialect.juel.limits import (
    BUILTIN_FUNCTIONS,
    MAX_NESTING_DEPTH,
    MAX_STRING_LENGTH,
    MAX_TEMPLATE_LENGTH,
    TIME_LIMIT,
    JuelEvaluationError,
    JuelSyntaxError,
    is_expression,
)
from engine.dialect.juel.members import JUEL_METHOD_TABLES, ExecutionContext
from engine.dialect.juel.template import CompiledTemplate, compile_template
from engine.dialect.juel.values import JodaDateTime

__all__ = [
    "BUILTIN_FUNCTIONS",
    "JUEL_METHOD_TABLES",
    "MAX_NESTING_DEPTH",
    "MAX_STRING_LENGTH",
    "MAX_TEMPLATE_LENGTH",
    "TIME_LIMIT",
    "CompiledTemplate",
    "ExecutionContext",
    "JodaDateTime",
    "JuelEvaluationError",
    "JuelSyntaxError",
    "compile_template",
    "is_expression",
]
