"""``${{ }}`` expressions and templates for v2 plans: a safe, bounded language.

Use::

    when = parse_condition("tasks.review.status == 'failed' || !tasks.review.output.ok")
    when.references()    # {('tasks', 'review', 'status'), ('tasks', 'review', 'output', 'ok')}
    when.evaluate({"tasks": {...}}, {"success": ..., "failure": ..., "always": ...})
    run = parse_template("pytest -q tests/${{ item }}")
    run.render({"item": "a b"}, quote=shlex.quote)   # "pytest -q tests/'a b'"

Everything raises one ``ExpressionError`` (``claude_runner.errors``) carrying the
offset in the parsed text. ``truthy(value)`` is the language's truthiness, for a caller
that decides on an ``evaluate()`` result (a ``when``).

The language (GitHub Actions' syntax, strict JSON semantics)
------------------------------------------------------------
Literals ``null true false``, numbers (``3``, ``-1.5``, ``2e3``, ``0xff``; no NaN or
Infinity), strings in single quotes (``''`` is a quote). Property access ``a.b``,
``a['b']``, ``a[0]``; names match ``[A-Za-z_][A-Za-z0-9_-]*`` (so ``my-task`` is one
name; a task id that starts with a digit or holds a ``.`` is written ``tasks['1st']``).
Operators, loosest first: ``||``, ``&&``, ``== !=``, ``< <= > >=``, ``!``; parentheses.
Functions: ``contains startsWith endsWith join toJSON fromJSON length format``, and
``always success failure``, which the caller binds per evaluation (the scheduler, for a
task's ``when``; anywhere else they are an error). Where this follows GitHub Actions and
where it is stricter, on purpose:

- ``&&`` and ``||`` short-circuit and return the operand that decided (GHA).
- Truthiness (GHA): null, false, 0 and '' are false; every list and mapping, even empty,
  is true. ``!`` negates truthiness.
- ``==`` is JSON equality: 1 == 1.0, but '1' != 1, true != 1, null != ''; lists and
  mappings compare by content (GHA coerces, and compares objects by identity).
- ``< <= > >=`` take two numbers or two strings, else it is an error (GHA coerces);
  strings compare by code point, case-sensitively (GHA ignores case).
- A missing key, an index past the end, and any access into null give null (GHA), so
  ``tasks.x.output.approved`` is null while ``x`` has no output. Reading a property of
  a string, number, boolean or list is an error (GHA gives null): it is always a
  mistake such as ``tasks.x.result.field`` on text, and the plan author learns it at
  once. Names, keys and function names are case-sensitive (GHA: insensitive); a wrongly
  cased function gets a did-you-mean.
- Functions take no coercion either: ``contains`` looks for a string in a string or a
  JSON-equal item in a list; ``startsWith``/``endsWith`` take strings and are
  case-sensitive; ``join(list, sep=',')`` and ``format('{0}', ...)`` render their items
  like a template does; ``toJSON`` is compact, like rendering (GHA pretty-prints);
  ``fromJSON`` is strict JSON; ``length`` counts a string, list or mapping.
- Rendering into text: a string as is, null as nothing, anything else as compact JSON.
- Not provided: arithmetic, list or mapping literals, GHA's ``*`` filter, ``cancelled()``,
  ``hashFiles()``. There is no escape for a literal ``${{`` in a template: write
  ``${{ '${{' }}``. A ``when`` is one expression, bare or in one ``${{ }}``: text around
  it is an error, not a non-empty string that is always true (GHA's trap).

Bounds (``bounds``): 4,096 characters per expression, nesting depth 32, 1,000,000
evaluation steps, results and rendered values 1 MiB, lists 10,000 items, values nested
100 deep. Each raises an ``ExpressionError`` that names it; nothing recurses without a
bound, so no input gives a hang, ``RecursionError`` or ``MemoryError``. Evaluation reads
only dict keys and list items of the context (never Python attributes) and calls only
the functions above: there is no way to loop, import or reach Python objects.

Why hand-written, not a library
-------------------------------
Measured side by side on this project's 2-core machine (under load from other work, so
read the ratios; CPU time of imports with bytecode cached; per-expression times are the
best of five runs of the spec's ``when`` example):

=====================================  ===============  ==========  =========
                                       import           compile     evaluate
=====================================  ===============  ==========  =========
``import yaml`` (yardstick)            40-65 ms
this package                           8-13 ms          70-120 us   12-20 us
``cel-python`` 0.5.0 (pure Python)     220-260 ms       0.65-1.2 ms 0.9-1.2 ms
``common-expression-language`` 0.10.0  470-530 ms       105-120 us  38-65 us
=====================================  ===============  ==========  =========

- ``cel-python`` pulls in lark, pendulum, google-re2 and jmespath; at about 1 ms per
  template a 1,000-task plan would spend seconds in CEL, against a budget of 3x
  ``yaml.safe_load`` for the whole load.
- ``common-expression-language`` (Rust bindings) is fast once loaded, but its package
  imports a command-line front end (prompt_toolkit, rich), and it is a native wheel;
  every evaluation converts the context into Rust.
- Both speak CEL, not the syntax the spec fixes: strings with backslash escapes, ``&&``
  and ``||`` that take and return only booleans, a missing key that is an error rather
  than null, ``a.startsWith(b)`` methods, ``1 == 1.0`` an error in cel-python, and
  errors without an offset to turn into FILE:LINE:COL. Using either would take a
  GitHub-Actions-to-CEL translator, that is, this parser anyway, plus semantic shims.

This package: a regex lexer, a precedence-climbing parser and a tree-walking evaluator
in about 1,500 lines with their docstrings, and no dependency. Parsing every template
of a 1,000-task plan costs 0.07-0.15x ``yaml.safe_load`` of the same text
(``bench/expr_speed.py``). Property tests (tests/test_expr_properties.py) fuzz the
parser, round-trip generated trees through the printer, check evaluation against a
reference model, and run rendered shell commands with bash.

Modules: ``lexer`` (tokens), ``parser`` (tree), ``nodes`` (tree, references, printer),
``evaluator``, ``values`` (JSON kinds, equality, bounded walks), ``functions``
(built-ins), ``bounds`` (limits and the step budget), ``template`` (the public objects).
"""

from __future__ import annotations

from claude_runner.errors import ExpressionError
from claude_runner.expr.bounds import (
    MAX_DEPTH,
    MAX_EXPRESSION_CHARS,
    MAX_LIST_ITEMS,
    MAX_STEPS,
    MAX_VALUE_CHARS,
    MAX_VALUE_DEPTH,
)
from claude_runner.expr.evaluator import Functions
from claude_runner.expr.functions import BUILTINS, CALLER_FUNCTIONS
from claude_runner.expr.nodes import Path, PathPart
from claude_runner.expr.template import (
    Expression,
    JSONValue,
    Quote,
    Template,
    parse_condition,
    parse_expression,
    parse_template,
)
from claude_runner.expr.values import truthy

FUNCTION_NAMES = (*BUILTINS, *CALLER_FUNCTIONS)

__all__ = [
    "CALLER_FUNCTIONS",
    "FUNCTION_NAMES",
    "MAX_DEPTH",
    "MAX_EXPRESSION_CHARS",
    "MAX_LIST_ITEMS",
    "MAX_STEPS",
    "MAX_VALUE_CHARS",
    "MAX_VALUE_DEPTH",
    "Expression",
    "ExpressionError",
    "Functions",
    "JSONValue",
    "Path",
    "PathPart",
    "Quote",
    "Template",
    "parse_condition",
    "parse_expression",
    "parse_template",
    "truthy",
]
