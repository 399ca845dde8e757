"""Property tests for the expression language.

- Fuzz: no text makes parsing (or evaluating what parsed) raise anything but
  ExpressionError, and every error points inside the text.
- Round trip: generated syntax trees, printed, parse back to the same tree.
- Reference model: generated expressions evaluate as a small, independent model of the
  spec's semantics says (value, or error).
- Bounds: generated deep and long inputs fail with the bound's message.
- Shell quoting: rendered with shlex.quote and run by bash, each substituted value is
  exactly one argument, whatever it holds.
"""

from __future__ import annotations

import json
import math
import shlex
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeAlias, TypeVar

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from claude_runner import proc
from claude_runner.errors import ExpressionError
from claude_runner.expr import (
    MAX_DEPTH,
    MAX_EXPRESSION_CHARS,
    MAX_VALUE_DEPTH,
    Expression,
    Template,
    parse_condition,
    parse_expression,
    parse_template,
)
from claude_runner.expr.functions import BUILTINS, CALLER_FUNCTIONS
from claude_runner.expr.nodes import (
    KEYWORDS,
    Call,
    Compare,
    Index,
    Literal,
    Logical,
    Member,
    Name,
    Node,
    Not,
    Prop,
    children,
    unparse,
)

SETTINGS = settings(max_examples=300, deadline=None)
T = TypeVar("T")

CONTEXT: dict[str, object] = {
    "n": 3,
    "f": 1.5,
    "z": 0,
    "s": "ab",
    "e": "",
    "t": True,
    "no": False,
    "nil": None,
    "l": [1, "a", None, [2]],
    "m": {"k": "v", "n": 1, "inner": {"x": [True]}},
    "el": [],
    "em": {},
}
FUNCTIONS: dict[str, Callable[[], object]] = {
    "always": lambda: True,
    "success": lambda: False,
    "failure": lambda: True,
}


def same(actual: object, expected: object) -> bool:
    """Equal and of the same JSON kinds (True is not 1, 1 is not 1.0)."""
    return json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)


# ---- fuzz --------------------------------------------------------------------------------

_PIECES = [
    *("a", "b.c", "m.inner", "l[0]", "n", "s", "nil", "tasks", "my-id", "x_1", "é"),
    *("(", ")", "[", "]", ".", ",", "!", "==", "!=", "<", "<=", ">", ">=", "&&", "||"),
    *("'x'", "'", "''", "'it''s'", '"', "1", "-", "-2", "1.5", "2e3", "0x1f", "1e999", "-0"),
    *("true", "false", "null", "${{", "}}", "}", "{", "$", " ", "\n", "\t", "\0", "=", "&"),
    *(f"{name}(" for name in (*BUILTINS, *CALLER_FUNCTIONS)),
    *("startswith(", "nope(", "contains(l, ", "format('{0}{{', "),
]
token_soup = st.lists(st.sampled_from(_PIECES), max_size=40).map("".join)
any_text = st.one_of(st.text(max_size=120), token_soup)


def _attempt(action: Callable[[], T]) -> T | ExpressionError:
    """The action's result, or the ExpressionError it raised (anything else propagates)."""
    try:
        return action()
    except ExpressionError as err:
        return err


@SETTINGS
@given(text=any_text)
def test_parsing_raises_only_expression_errors_that_point_into_the_text(text: str) -> None:
    parsers: tuple[Callable[[str], Expression | Template], ...] = (
        parse_expression,
        parse_template,
        parse_condition,
    )
    for parse in parsers:
        parsed = _attempt(partial(parse, text))
        if isinstance(parsed, ExpressionError):
            assert parsed.text is text
            assert 0 <= parsed.offset <= len(text)
            assert str(parsed)
            continue
        expressions = parsed.expressions if isinstance(parsed, Template) else (parsed,)
        for expression in expressions:
            # What parses prints back to text that parses to the same tree ...
            reparsed = parse_expression(str(expression))
            assert repr(reparsed.node) == repr(expression.node)
            # ... and evaluates to a value or an ExpressionError, nothing else.
            value = _attempt(partial(expression.evaluate, CONTEXT, FUNCTIONS))
            if isinstance(value, ExpressionError):
                assert 0 <= value.offset <= len(text)


# ---- round trip of generated trees ------------------------------------------------------

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,6}", fullmatch=True).filter(
    lambda name: name not in KEYWORDS
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
leaves: st.SearchStrategy[Node] = st.one_of(scalars.map(Literal), names.map(Name))
_ARITY = {name: (b.min_args, b.max_args or 4) for name, b in BUILTINS.items()}
_ARITY.update(dict.fromkeys(CALLER_FUNCTIONS, (0, 0)))


def _indexable(node: Node) -> bool:
    """What the parser keeps as an Index: not a string literal (that is a Prop), nor a
    literal that cannot be an index."""
    if not isinstance(node, Literal):
        return True
    value = node.value
    return isinstance(value, int | float) and not isinstance(value, bool) and value == int(value)


def _calls(nodes: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    def build(name: str) -> st.SearchStrategy[Node]:
        low, high = _ARITY[name]
        return st.lists(nodes, min_size=low, max_size=high).map(
            lambda args: Call(name, tuple(args))
        )

    return st.sampled_from(sorted(_ARITY)).flatmap(build)


def _compound(nodes: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    parts = st.lists(
        st.one_of(st.text(max_size=6).map(Prop), nodes.filter(_indexable).map(Index)),
        min_size=1,
        max_size=3,
    )
    member = st.builds(
        lambda base, ps: Member(base, tuple(ps)),
        nodes.filter(lambda node: not isinstance(node, Member)),
        parts,
    )
    compare = st.builds(Compare, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), nodes, nodes)
    logical = st.builds(
        lambda op, operands: Logical(op, tuple(operands)),
        st.sampled_from(["&&", "||"]),
        st.lists(nodes, min_size=2, max_size=4),
    )
    return st.one_of(member, _calls(nodes), nodes.map(Not), compare, logical)


def tree_depth(node: Node) -> int:
    return 1 + max((tree_depth(child) for child in children(node)), default=0)


trees = st.recursive(leaves, _compound, max_leaves=25).filter(lambda tree: tree_depth(tree) < 24)


@SETTINGS
@given(tree=trees)
def test_printed_trees_parse_back_to_the_same_tree(tree: Node) -> None:
    text = unparse(tree)
    assume(len(text) <= MAX_EXPRESSION_CHARS)
    parsed = parse_expression(text)
    assert repr(parsed.node) == repr(tree)
    assert str(parsed) == text  # the printer's output is canonical


# ---- evaluation against a reference model ------------------------------------------------


class _Error:
    """The model's outcome "this is an ExpressionError"."""


ERROR = _Error()
Outcome: TypeAlias = object  # a JSON value, or ERROR
Case: TypeAlias = tuple[str, Outcome]


def m_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "mapping"


def m_truthy(value: object) -> bool:
    if m_kind(value) in ("list", "mapping"):
        return True
    return bool(value)


def m_equal(a: object, b: object) -> bool:
    if m_kind(a) != m_kind(b):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(m_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(m_equal(a[k], b[k]) for k in a)
    return a == b


_ORDER: dict[str, Callable[[float | str, float | str], bool]] = {
    "<": lambda a, b: a < b,  # type: ignore[operator]
    "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">": lambda a, b: a > b,  # type: ignore[operator]
    ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def m_compare(op: str, a: Outcome, b: Outcome) -> Outcome:
    if a is ERROR or b is ERROR:
        return ERROR
    if op == "==":
        return m_equal(a, b)
    if op == "!=":
        return not m_equal(a, b)
    if m_kind(a) != m_kind(b) or m_kind(a) not in ("number", "string"):
        return ERROR
    assert isinstance(a, int | float | str)
    assert isinstance(b, int | float | str)
    return _ORDER[op](a, b)


def m_length(value: Outcome) -> Outcome:
    return len(value) if isinstance(value, str | list | dict) else ERROR


def m_contains(search: Outcome, item: Outcome) -> Outcome:
    if isinstance(search, str):
        return item in search if isinstance(item, str) else ERROR
    if isinstance(search, list):
        return any(m_equal(element, item) for element in search)
    return ERROR


def m_starts_with(text: Outcome, prefix: Outcome) -> Outcome:
    if isinstance(text, str) and isinstance(prefix, str):
        return text.startswith(prefix)
    return ERROR


_MODEL_FUNCTIONS: dict[str, Callable[..., Outcome]] = {
    "length": m_length,
    "contains": m_contains,
    "startsWith": m_starts_with,
}


def m_call(name: str, args: list[Outcome]) -> Outcome:
    if any(arg is ERROR for arg in args):
        return ERROR
    return _MODEL_FUNCTIONS[name](*args)


_LEAF_CASES: list[Case] = [
    *((name, value) for name, value in CONTEXT.items()),
    ("missing", None),
    ("m.k", "v"),
    ("m['n']", 1),
    ("m.inner.x", [True]),
    ("m.inner.x[0]", True),
    ("l[1]", "a"),
    ("l[3][0]", 2),
    ("l[9]", None),
    ("nil.x", None),
    ("m.missing.deeper", None),
    ("s.x", ERROR),
    ("l.x", ERROR),
    ("n[0]", ERROR),
    ("m[0]", ERROR),
]


def _literal_case(value: object) -> Case:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'", value
    return (json.dumps(value) if not isinstance(value, float) else repr(value)), value


leaf_cases: st.SearchStrategy[Case] = st.one_of(
    st.sampled_from(_LEAF_CASES),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 3),
        st.sampled_from([0.0, -0.0, 1.0, 1.5, -2.5, 3.0]),
        st.text(alphabet="ab'", max_size=3),
    ).map(_literal_case),
)


def _case(text: str) -> Case:
    return next(case for case in _LEAF_CASES if case[0] == text)


# Arguments of the right kind for the functions, so that not every call fails.
strings = st.sampled_from(["s", "e", "m.k", "l[1]"]).map(_case) | st.text(
    alphabet="ab'", max_size=3
).map(_literal_case)
sized = strings | st.sampled_from(["l", "el", "m", "em", "m.inner.x"]).map(_case)


def _compound_cases(cases: st.SearchStrategy[Case]) -> st.SearchStrategy[Case]:
    def negate(case: Case) -> Case:
        text, value = case
        return f"!{text}", ERROR if value is ERROR else not m_truthy(value)

    def compare(op: str, left: Case, right: Case) -> Case:
        return f"({left[0]} {op} {right[0]})", m_compare(op, left[1], right[1])

    def logical(op: str, left: Case, right: Case) -> Case:
        a, b = left[1], right[1]
        value: Outcome
        if a is ERROR:
            value = ERROR
        elif m_truthy(a) is (op == "||"):
            value = a  # decided: the right side is never evaluated
        else:
            value = b
        return f"({left[0]} {op} {right[0]})", value

    def call(name: str, args: list[Case]) -> Case:
        texts = ", ".join(text for text, _ in args)
        return f"{name}({texts})", m_call(name, [value for _, value in args])

    # Ordering and the functions fail on most kinds, and an error spreads upwards:
    # weight the operators that never fail so that values stay common.
    equality = st.sampled_from(["==", "!="])
    order = st.sampled_from(["<", "<=", ">", ">="])
    logic = st.sampled_from(["&&", "||"])
    return st.one_of(
        cases.map(negate),
        st.builds(compare, equality, cases, cases),
        st.builds(logical, logic, cases, cases),
        st.builds(logical, logic, cases, cases),
        st.builds(compare, order, cases, cases),
        st.builds(lambda a: call("length", [a]), st.one_of(sized, cases)),
        st.builds(lambda a, b: call("contains", [a, b]), st.one_of(sized, cases), cases),
        st.builds(
            lambda a, b: call("startsWith", [a, b]),
            st.one_of(strings, cases),
            st.one_of(strings, cases),
        ),
    )


model_cases = st.recursive(leaf_cases, _compound_cases, max_leaves=12)


@SETTINGS
@given(case=model_cases)
def test_evaluation_matches_the_reference_model(case: Case) -> None:
    text, expected = case
    try:
        expression = parse_expression(text)
    except ExpressionError as err:
        assume("nested deeper" not in str(err))  # a generated '!!!...' chain past the bound
        raise
    try:
        actual = expression.evaluate(CONTEXT)
    except ExpressionError:
        assert expected is ERROR, text
    else:
        assert expected is not ERROR, (text, actual)
        assert same(actual, expected), (text, actual, expected)


# ---- bounds on generated inputs ----------------------------------------------------------

_CLOSERS = {"(": ")", "!": "", "l[": "]", "length(": ")", "contains(l, ": ")"}
openers = st.sampled_from(sorted(_CLOSERS))


def _nested(chosen: list[str]) -> str:
    """``chosen`` openers inside each other around ``1``: one nesting level each."""
    return "".join(chosen) + "1" + "".join(_CLOSERS[o] for o in reversed(chosen))


@SETTINGS
@given(chosen=st.lists(openers, max_size=MAX_DEPTH - 1))
def test_nesting_below_the_bound_parses(chosen: list[str]) -> None:
    expression = parse_expression(_nested(chosen))
    value = _attempt(partial(expression.evaluate, CONTEXT))
    assert "nested" not in str(value)  # an error here is a type error: length(1)


@SETTINGS
@given(chosen=st.lists(openers, min_size=MAX_DEPTH, max_size=400))
def test_nesting_past_the_bound_is_an_error(chosen: list[str]) -> None:
    text = _nested(chosen)
    with pytest.raises(ExpressionError) as caught:
        parse_expression(text)
    assert f"nested deeper than {MAX_DEPTH} levels" in str(caught.value) or (
        len(text) > MAX_EXPRESSION_CHARS and "longer than" in str(caught.value)
    )


@SETTINGS
@given(
    length=st.integers(MAX_EXPRESSION_CHARS + 1, 3 * MAX_EXPRESSION_CHARS),
    piece=st.sampled_from(["a || ", "x", " ", "'long string ", "(", "l[0]."]),
    in_template=st.booleans(),
)
def test_long_expressions_are_an_error(length: int, piece: str, in_template: bool) -> None:
    body = (piece * (length // len(piece) + 1))[:length]
    text = "text ${{ " + body + " }} more text" if in_template else body
    parse = parse_template if in_template else parse_expression
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert f"expression longer than {MAX_EXPRESSION_CHARS:,} characters" in str(caught.value)


@SETTINGS
@given(
    depth=st.integers(1, 3 * MAX_VALUE_DEPTH),
    wrap=st.sampled_from(["list", "mapping"]),
    source=st.sampled_from(["v", "toJSON(v)", "format('{0}', v)", "join(w)", "v == v"]),
)
def test_deep_values_are_bounded(depth: int, wrap: str, source: str) -> None:
    """``depth`` lists or mappings inside each other: at most 100 is a value."""
    value: object = 1
    for _ in range(depth):
        value = [value] if wrap == "list" else {"k": value}
    expression = parse_expression(source)  # join(w) renders each item of w = [v]
    if source == "v == v" or depth <= MAX_VALUE_DEPTH:
        expression.evaluate({"v": value, "w": [value]})  # equality has no depth bound
        return
    with pytest.raises(ExpressionError, match="nested deeper than 100 levels"):
        expression.evaluate({"v": value, "w": [value]})


# ---- shell quoting, checked by bash ------------------------------------------------------

NASTY = [
    "'; touch pwned; '",
    "$(touch pwned)",
    "`touch pwned`",
    "; touch pwned",
    "&& touch pwned",
    "| touch pwned",
    "> pwned",
    "a b",
    "*",
    "~",
    "-n",
    "--",
    '"',
    "'",
    "\\",
    "\n",
    "$HOME",
    "${IFS}",
    "!!",
    "a'b\"c",
    "",
    " ",
]
shell_values = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]), max_size=20),
    st.lists(st.text(alphabet="a' $;\"", max_size=4), max_size=3),
    st.dictionaries(st.text(alphabet="k'$", max_size=3), st.integers(), max_size=2),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)


def _as_text(value: object) -> str:
    """The spec's rendering rule, restated for the check."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(shell_values, min_size=1, max_size=4))
def test_a_quoted_value_stays_one_argument(values: list[object]) -> None:
    assume(all(not isinstance(v, float) or math.isfinite(v) for v in values))
    substitutions = " ".join(f"${{{{ v[{i}] }}}}" for i in range(len(values)))
    template = parse_template(f"printf '%s\\0' {substitutions} pre${{{{ v[0] }}}}post")
    command = template.render({"v": values}, quote=shlex.quote)
    with tempfile.TemporaryDirectory(prefix="expr-shell-") as tmp:
        done = proc.run(["bash", "-c", command], cwd=tmp, timeout=30)
        assert done.returncode == 0, done.stderr
        assert list(Path(tmp).iterdir()) == []  # nothing ran: no 'pwned' file
    texts = [_as_text(v) for v in values]
    assert done.stdout.split("\0")[:-1] == [*texts, f"pre{texts[0]}post"]
