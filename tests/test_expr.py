"""The expression language: syntax, every operator and function, errors, bounds."""

from __future__ import annotations

import json
import shlex
from collections import OrderedDict
from collections.abc import Mapping

import pytest

from claude_runner.errors import EXIT_USAGE, ExpressionError, RunnerError
from claude_runner.expr import (
    MAX_DEPTH,
    MAX_EXPRESSION_CHARS,
    MAX_LIST_ITEMS,
    MAX_VALUE_CHARS,
    Expression,
    JSONValue,
    parse_condition,
    parse_expression,
    parse_template,
    truthy,
)
from claude_runner.expr.nodes import Compare, Literal, Logical, Member, Name, Not, Prop

CONTEXT: dict[str, object] = {
    "tasks": {
        "planner": {
            "status": "succeeded",
            "output": {"modules": ["core", "cli"], "count": 2, "ratio": 0.5},
            "result": "done",
        },
        "reviewer": {"status": "failed", "output": None, "failure_kind": "agent_error"},
        "my-task": {"status": "succeeded"},
        "1st": {"status": "skipped"},
    },
    "item": "core",
    "index": 0,
    "run": {"id": "20261130-abc"},
    "nums": [1, 2.5, -3],
    "empty_list": [],
    "empty_map": {},
    "text": "Hello, World",
    "zero": 0,
    "nothing": None,
    "yes": True,
    "no": False,
}


def ev(source: str, context: Mapping[str, object] = CONTEXT, **functions: bool) -> JSONValue:
    bound = {name: (lambda value=value: value) for name, value in functions.items()}
    return parse_expression(source).evaluate(context, bound)


def error_of(source: str, context: Mapping[str, object] = CONTEXT) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        parse_expression(source).evaluate(context)
    return caught.value


def same(actual: object, expected: object) -> bool:
    """Equal and of the same JSON kinds (True is not 1, 1 is not 1.0)."""
    return json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)


# ---- literals and syntax -------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("null", None),
        ("true", True),
        ("false", False),
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("1.5", 1.5),
        ("-0.25", -0.25),
        ("2e3", 2000.0),
        ("1.5E-2", 0.015),
        ("0xff", 255),
        ("-0x10", -16),
        ("''", ""),
        ("'it''s'", "it's"),
        ("'a}}b'", "a}}b"),
        ("'héllo ✓'", "héllo ✓"),
        ("'two\nlines'", "two\nlines"),
        ("  \t 3 \n", 3),
    ],
)
def test_literals(source: str, value: object) -> None:
    assert same(ev(source), value)


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        ("!a == b", Compare("==", Not(Name("a")), Name("b"))),
        ("a == b < c", Compare("==", Name("a"), Compare("<", Name("b"), Name("c")))),
        ("a == b == c", Compare("==", Compare("==", Name("a"), Name("b")), Name("c"))),
        (
            "a || b && c",
            Logical("||", (Name("a"), Logical("&&", (Name("b"), Name("c"))))),
        ),
        ("a || b || c", Logical("||", (Name("a"), Name("b"), Name("c")))),
        (
            "(a || b) || c",
            Logical("||", (Logical("||", (Name("a"), Name("b"))), Name("c"))),
        ),
        (
            "a || (b || c)",
            Logical("||", (Name("a"), Logical("||", (Name("b"), Name("c"))))),
        ),
        ("a.b['c d'][0]", parse_expression("a . b ['c d'] [ 0 ]").node),
        ("a['b']", Member(Name("a"), (Prop("b"),))),
        ("(a.b).c", Member(Name("a"), (Prop("b"), Prop("c")))),
        ("a.true.null", Member(Name("a"), (Prop("true"), Prop("null")))),
        ("my-task.x_1", Member(Name("my-task"), (Prop("x_1"),))),
        ("((((true))))", Literal(True)),
    ],
)
def test_precedence_and_shape(source: str, tree: object) -> None:
    assert repr(parse_expression(source).node) == repr(tree)


def test_trees_compare_by_meaning() -> None:
    assert parse_expression("a['b'] == (1)").node == parse_expression("a.b==1").node
    assert parse_expression("1").node != parse_expression("true").node
    assert parse_expression("1").node != parse_expression("1.0").node
    assert parse_expression("a || b").node != parse_expression("a && b").node
    assert len({parse_expression(t).node for t in ("a.b", "a['b']", " a . b ", "a.c")}) == 2


def test_canonical_text_and_source() -> None:
    expression = parse_expression("  tasks['planner'] .status=='x'||!(a)  ")
    assert str(expression) == "tasks.planner.status == 'x' || !a"
    assert expression.source == "  tasks['planner'] .status=='x'||!(a)  "
    inner = parse_template("go ${{  a['b c']  }}!").expressions[0]
    assert inner.source == "a['b c']"
    assert str(inner) == "a['b c']"


# ---- parse errors: message and column --------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("a.b == )", "unexpected ')' at column 8; expected an operand"),
        ("(a", "unexpected end of the expression at column 3; expected ')' to close '('"),
        ("a ==", "unexpected end of the expression at column 5; expected an operand"),
        ("a b", "unexpected name 'b' at column 3; expected an operator or the end"),
        ("a.b )", "unexpected ')' at column 5; expected an operator or the end"),
        ("", "expected an expression at column 1"),
        ("   ", "expected an expression at column 4"),
        ("a.", "unexpected end of the expression at column 3; expected a property name"),
        ("tasks.1st.status", "unexpected number 1 at column 7; expected a property name"),
        ("a[", "unexpected end of the expression at column 3; expected an operand"),
        ("a[]", "unexpected ']' at column 3; expected an operand"),
        ("a[0", "unexpected end of the expression at column 4; expected ']' to close '['"),
        ("a[true]", "true cannot be an index at column 3"),
        ("a[null]", "null cannot be an index at column 3"),
        ("a[1.5]", "1.5 cannot be an index at column 3"),
        ("foo(1)", "unknown function 'foo' at column 1; known functions: always, contains"),
        ("startswith(a, 'b')", "did you mean 'startsWith'? (names are case-sensitive)"),
        ("contans(a, 'b')", "unknown function 'contans' at column 1; did you mean 'contains'?"),
        ("contains(a)", "contains() takes 2 arguments, got 1 at column 1"),
        ("x || join()", "join() takes 1 or 2 arguments, got 0 at column 6"),
        ("format()", "format() takes at least 1 argument, got 0"),
        ("always(1)", "always() takes 0 arguments, got 1"),
        ("length(a, b)", "length() takes 1 argument, got 2 at column 1; use length(value)"),
        ("contains(a, 'b'", "expected ')' to close '(' at column 9"),
        ("'abc", "unterminated string at column 1; close it with '"),
        ("a == 'it's'", "unterminated string at column 11; close it with ' (write '' for a quote"),
        ('a == "x"', "unexpected character '\"' at column 6; strings use single quotes"),
        ("a = b", "unexpected character '=' at column 3; use '==' to compare"),
        ("a & b", "unexpected character '&' at column 3; use '&&'"),
        ("a | b", "unexpected character '|' at column 3; use '||'"),
        ("a + 1", "unexpected character '+' at column 3; there is no arithmetic"),
        ("a - 1", "unexpected character '-' at column 3; there is no arithmetic"),
        ("a.*.b", "unexpected character '*' at column 3"),
        ("a }} b", "unexpected character '}' at column 3"),
        ("1e999", "number 1e999 is out of range at column 1"),
        ("a ==\n  )", "unexpected ')' at line 2, column 3; expected an operand"),
    ],
)
def test_parse_errors_say_what_and_where(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_expression(source)
    assert message in str(caught.value)


def test_expression_error_is_a_runner_error_with_a_position() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_template("line one\nline two ${{ a == ) }}")
    err = caught.value
    assert isinstance(err, RunnerError)
    assert isinstance(err, ValueError)
    assert err.exit_code == EXIT_USAGE
    assert (err.offset, err.line, err.column) == (27, 2, 19)
    assert err.text[err.offset] == ")"
    assert err.detail == (
        "unexpected ')'; expected an operand (a name, a literal, '(', '!' or a function call)"
    )
    assert str(err).startswith("unexpected ')' at line 2, column 19;")


# ---- equality and comparison -----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("1 == 1.0", True),
        ("'1' == 1", False),
        ("true == 1", False),
        ("false == 0", False),
        ("null == ''", False),
        ("null == nothing", True),
        ("missing == null", True),
        ("'a' == 'a'", True),
        ("'a' == 'A'", False),
        ("nums == fromJSON('[1, 2.5, -3]')", True),
        ("nums == fromJSON('[1, 2.5]')", False),
        ("nums == fromJSON('[1.0, 2.5, -3.0]')", True),
        ('fromJSON(\'{"a": 1, "b": [true]}\') == fromJSON(\'{"b": [true], "a": 1.0}\')', True),
        ('fromJSON(\'{"a": 1}\') == fromJSON(\'{"a": 1, "b": 2}\')', False),
        ("fromJSON('[true]') == fromJSON('[1]')", False),
        ("empty_list == empty_map", False),
        ("1 != 2", True),
        ("'x' != 'x'", False),
        ("1 < 2", True),
        ("2.5 <= 2.5", True),
        ("-1 > 0", False),
        ("3 >= 2.5", True),
        ("'B' < 'a'", True),
        ("'abc' < 'abd'", True),
        ("'b' >= 'abc'", True),
    ],
)
def test_equality_is_json_equality_and_order_is_strict(source: str, value: bool) -> None:
    assert ev(source) is value


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("1 < 'a'", "cannot compare number with string using '<' at column 3"),
        ("nothing <= 1", "cannot compare null with number using '<='"),
        ("yes > no", "cannot compare boolean with boolean using '>'"),
        ("nums >= nums", "cannot compare list with list using '>='"),
        ("'2' > 1", "'>' compares two numbers or two strings"),
    ],
)
def test_ordering_other_kinds_is_an_error(source: str, message: str) -> None:
    assert message in str(error_of(source))


# ---- logic and truthiness -------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("!null", True),
        ("!false", True),
        ("!0", True),
        ("!0.0", True),
        ("!''", True),
        ("!'0'", False),
        ("!empty_list", False),
        ("!empty_map", False),
        ("!1", False),
        ("!!text", True),
        ("!missing.deeply.nested", True),
    ],
)
def test_truthiness_follows_github_actions(source: str, value: bool) -> None:
    assert ev(source) is value
    assert truthy(parse_expression(source.removeprefix("!")).evaluate(CONTEXT)) is not value


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("'a' && 'b'", "b"),
        ("0 && 'b'", 0),
        ("'' || nothing", None),
        ("nothing || 0 || 'x' || 'y'", "x"),
        ("empty_list || 'fallback'", []),
        ("tasks.reviewer.output || 'no output'", "no output"),
        ("text && index", 0),
    ],
)
def test_and_or_return_the_deciding_operand(source: str, value: object) -> None:
    assert same(ev(source), value)


@pytest.mark.parametrize(
    "source",
    ["false && fromJSON('not json')", "true || 1 < 'a'", "0 && 0 && length(1)", "1 || 2 || x.y.z"],
)
def test_and_or_short_circuit(source: str) -> None:
    ev(source)


def test_the_undecided_operand_is_evaluated() -> None:
    assert "fromJSON()" in str(error_of("true && fromJSON('not json')"))


def test_the_spec_example() -> None:
    when = parse_expression(
        "tasks.reviewer.status == 'failed' || tasks.reviewer.output.approved == false"
    )
    assert when.evaluate(CONTEXT) is True

    def reviewed(approved: bool) -> dict[str, object]:
        return {"tasks": {"reviewer": {"status": "succeeded", "output": {"approved": approved}}}}

    assert when.evaluate(reviewed(False)) is True
    assert when.evaluate(reviewed(True)) is False


# ---- property access ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("tasks.planner.output.modules", ["core", "cli"]),
        ("tasks.planner.output.modules[1]", "cli"),
        ("tasks.planner.output.modules[1.0]", "cli"),
        ("tasks.planner.output.modules[2]", None),
        ("tasks.planner.output.modules[-1]", None),
        ("tasks['planner']['output'].count", 2),
        ("tasks['my-task'].status", "succeeded"),
        ("tasks.my-task.status", "succeeded"),
        ("tasks['1st'].status", "skipped"),
        ("tasks.nobody.status", None),
        ("tasks.reviewer.output.approved", None),
        ("nothing[0].x['y']", None),
        ("undefined_root", None),
        ("tasks[item]", None),
        ("tasks.planner.output.modules[index]", "core"),
        ("fromJSON('{\"a\": [10, 20]}').a[1]", 20),
        ("nums[fromJSON('2')]", -3),
    ],
)
def test_property_access(source: str, value: object) -> None:
    assert same(ev(source), value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("text.length", "cannot read property 'length' of a string at column 6"),
        ("tasks.planner.result.field", "cannot read property 'field' of a string at column 22"),
        ("index.x", "cannot read property 'x' of a number"),
        ("yes.x", "cannot read property 'x' of a boolean"),
        ("text[0]", "cannot read an index of a string"),
        ("nums.first", "property 'first' of a list at column 6; index a list with a number"),
        ("nums['0']", "cannot read property '0' of a list"),
        ("nums[yes]", "a list is indexed by a whole number, got boolean at column 5"),
        ("nums[fromJSON('0.5')]", "a list is indexed by a whole number, got a fraction"),
        ("tasks[index]", "a mapping is indexed by a string, got number at column 6"),
        ("tasks[nothing]", "a mapping is indexed by a string, got null"),
    ],
)
def test_access_that_makes_no_sense_is_an_error(source: str, message: str) -> None:
    assert message in str(error_of(source))


def test_no_python_attribute_is_reachable() -> None:
    class Secret:
        token = "hunter2"

    context: dict[str, object] = {"obj": Secret(), "data": {}, "s": "x"}
    for source in ("obj.token", "obj['token']", "obj.__class__", "s.upper", "s.__class__"):
        with pytest.raises(ExpressionError) as caught:
            parse_expression(source).evaluate(context)
        assert "hunter2" not in str(caught.value)
    # On a mapping a dunder is just a key that is not there.
    assert ev("data.__class__.__init__", context) is None
    assert ev("data['__class__']", context) is None
    assert "not JSON data" in str(error_of("obj == 1", context))
    assert "not JSON data" in str(error_of("!obj", context))


def test_a_tuple_is_a_list_and_dict_subclasses_are_mappings() -> None:
    context = {"t": ("a", "b"), "o": OrderedDict(k=1)}
    assert ev("t[1]", context) == "b"
    assert ev('t == fromJSON(\'["a", "b"]\')', context) is True
    assert ev("o.k", context) == 1
    assert ev("toJSON(t)", context) == '["a","b"]'


def test_nan_and_infinity_are_not_json() -> None:
    for value in (float("nan"), float("inf")):
        assert "not JSON data" in str(error_of("x == 1", {"x": value}))
        assert "not JSON data" in str(error_of("x < 1", {"x": value}))
        assert "not JSON data" in str(error_of("toJSON(x)", {"x": [value]}))


# ---- functions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("contains(text, 'World')", True),
        ("contains(text, 'world')", False),
        ("contains(text, '')", True),
        ("contains(nums, 2.5)", True),
        ("contains(nums, 1.0)", True),
        ("contains(nums, '1')", False),
        ("contains(tasks.planner.output.modules, item)", True),
        ("contains(fromJSON('[[1, 2], {\"a\": null}]'), fromJSON('{\"a\": null}'))", True),
        ("contains(empty_list, null)", False),
        ("startsWith(text, 'Hello')", True),
        ("startsWith(text, 'hello')", False),
        ("endsWith(text, 'World')", True),
        ("endsWith(text, '')", True),
        ("join(tasks.planner.output.modules)", "core,cli"),
        ("join(tasks.planner.output.modules, ' and ')", "core and cli"),
        (
            'join(fromJSON(\'["a", null, 1, 2.5, true, [1], {"k": "v"}]\'), \'|\')',
            'a||1|2.5|true|[1]|{"k":"v"}',
        ),
        ("join(empty_list, ',')", ""),
        ("join('already text', ',')", "already text"),
        ("toJSON(tasks.planner.output)", '{"modules":["core","cli"],"count":2,"ratio":0.5}'),
        ("toJSON('x')", '"x"'),
        ("toJSON(nothing)", "null"),
        ("toJSON('é')", '"é"'),
        ("fromJSON('{\"a\": [1, 2.0, null]}')", {"a": [1, 2.0, None]}),
        ("fromJSON(' 3 ')", 3),
        ("fromJSON(toJSON(tasks.planner)) == tasks.planner", True),
        ("length(text)", 12),
        ("length('é✓')", 2),
        ("length(nums)", 3),
        ("length(tasks)", 4),
        ("length(empty_map)", 0),
        ("format('{0} of {1}', index, length(nums))", "0 of 3"),
        ("format('{1}{0}{1}', 'a', 'b')", "bab"),
        ("format('{{0}} is {0}', nothing)", "{0} is "),
        ("format('}}{{')", "}{"),
        ("format('{0}', nums)", "[1,2.5,-3]"),
        ("format('no placeholders')", "no placeholders"),
    ],
)
def test_functions(source: str, value: object) -> None:
    assert same(ev(source), value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("contains(1, 1)", "contains(search, item): search must be a string or a list, got number"),
        ("contains(text, 1)", "item must be a string when search is a string, got number"),
        ("contains(tasks, 'planner')", "search must be a string or a list, got mapping"),
        ("startsWith(nums, 'a')", "startsWith(text, prefix): text must be a string, got list"),
        ("endsWith(text, null)", "endsWith(text, suffix): suffix must be a string, got null"),
        ("join(tasks)", "join(list, separator): list must be a list, got mapping"),
        ("join(nums, 0)", "separator must be a string, got number"),
        ("fromJSON(1)", "fromJSON(text): text must be a string, got number"),
        ("fromJSON('{')", "fromJSON() got a string that is not JSON"),
        ("fromJSON('NaN')", "fromJSON() got a string that is not JSON"),
        ("fromJSON('[Infinity]')", "fromJSON() got a string that is not JSON"),
        ("fromJSON('')", "fromJSON() got a string that is not JSON"),
        ("length(1)", "length(value): value must be a string, a list or a mapping, got number"),
        ("length(nothing)", "got null"),
        ("format(1)", "format(text, values...): text must be a string, got number"),
        ("format('{0} {1}', 'a')", "{1} has no value (1 value)"),
        ("format('{0}')", "{0} has no value (0 values)"),
        ("format('a { b', 1)", "unmatched '{' at position 3 of the text at column 1; write '{{'"),
        ("format('a } b')", "unmatched '}' at position 3"),
        ("format('{x}')", "unmatched '{' at position 1"),
    ],
)
def test_function_errors(source: str, message: str) -> None:
    assert message in str(error_of(source))


def test_status_functions_are_bound_by_the_caller() -> None:
    assert ev("always()", always=True) is True
    assert ev("success() && !failure()", success=True, failure=False) is True
    assert ev("failure() || tasks.reviewer.status == 'failed'", failure=False) is True
    err = error_of("success()")
    assert str(err) == (
        "success() is not available here at column 1; "
        "always(), success(), failure() may be used only in 'when'"
    )
    calls: list[str] = []

    def always() -> object:
        calls.append("always")
        return True

    assert parse_expression("false && always()").evaluate({}, {"always": always}) is False
    assert calls == []
    assert parse_expression("true && always()").evaluate({}, {"always": always}) is True
    assert calls == ["always"]


def test_references_name_every_static_path() -> None:
    expression = parse_expression(
        "tasks.planner.output.modules[0] == item || tasks['a-b'].status && "
        "contains(stages.s.tasks.t.results, run.id) || tasks[item].x[index] || "
        "fromJSON(env.X).y || tasks.p.outputs[1.0].z || !always()"
    )
    assert expression.references() == {
        ("tasks", "planner", "output", "modules", 0),
        ("item",),
        ("tasks", "a-b", "status"),
        ("stages", "s", "tasks", "t", "results"),
        ("run", "id"),
        ("tasks",),
        ("index",),
        ("env", "X"),
        ("tasks", "p", "outputs", 1, "z"),
    }
    assert expression.function_names() == {"contains", "fromJSON", "always"}
    assert parse_expression("1 == 1").references() == frozenset()


# ---- templates -----------------------------------------------------------------------


def test_a_static_template_renders_its_text() -> None:
    for text in ("", "plain text", "a }} b", "$ {{ not one }}", "${ {x}}", "$${{"[:3]):
        template = parse_template(text)
        assert template.is_static
        assert template.single_expression is None
        assert template.render({}) == text
        assert template.references() == frozenset()


def test_rendering_turns_values_into_text() -> None:
    template = parse_template(
        "s=${{ item }} n=${{ nothing }} t=${{ yes }} f=${{ no }} i=${{ index }} "
        "x=${{ tasks.planner.output.ratio }} l=${{ tasks.planner.output.modules }} "
        "m=${{ run }} e=${{ '${{' }} q=${{ 'a}}b' }}"
    )
    assert not template.is_static
    assert template.render(CONTEXT) == (
        's=core n= t=true f=false i=0 x=0.5 l=["core","cli"] m={"id":"20261130-abc"} e=${{ q=a}}b'
    )
    assert template.references() == {
        ("item",),
        ("nothing",),
        ("yes",),
        ("no",),
        ("index",),
        ("tasks", "planner", "output", "ratio"),
        ("tasks", "planner", "output", "modules"),
        ("run",),
    }


def test_single_expression() -> None:
    single = parse_template("  ${{ tasks.planner.output.modules }}\n")
    expression = single.single_expression
    assert isinstance(expression, Expression)
    assert expression.evaluate(CONTEXT) == ["core", "cli"]
    for text in ("x ${{ a }}", "${{ a }}${{ b }}", "${{ a }} .", "plain"):
        assert parse_template(text).single_expression is None


def test_quote_applies_to_every_substituted_value_and_only_to_them() -> None:
    template = parse_template("pytest -q 'tests/${{ item }}' ${{ nothing }} ${{ nums }}")
    rendered = template.render(CONTEXT, quote=shlex.quote)
    assert rendered == "pytest -q 'tests/core' '' '[1,2.5,-3]'"
    with pytest.raises(ExpressionError, match="contains a NUL character at column 8"):
        parse_template("ls ${{ x }}").render({"x": "a\0b"}, quote=shlex.quote)
    assert parse_template("${{ x }}").render({"x": "a\0b"}) == "a\0b"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Port ${{ item ", "'${{' is never closed at column 6; end it with '}}'"),
        ("Port ${{ item } }", "unexpected character '}' at column 15"),
        ("x ${{ }} y", "expected an expression at column 7"),
        ("x ${{ 'abc }}", "unterminated string at column 7"),
        ("ok ${{ a }} then ${{ b == ) }}", "unexpected ')' at column 27"),
        ("a\nb\n  ${{ a.b. }}", "unexpected '}}' at line 3, column 12; expected a property name"),
    ],
)
def test_template_errors_point_into_the_template(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_template(text)
    assert message in str(caught.value)


def test_evaluation_errors_point_into_the_template() -> None:
    template = parse_template("line\n  ${{ item }} ${{ 1 < item }}")
    with pytest.raises(ExpressionError) as caught:
        template.render(CONTEXT)
    assert str(caught.value).startswith(
        "cannot compare number with string using '<' at line 2, column 21"
    )


def test_template_functions_and_status_functions() -> None:
    template = parse_template("${{ always() }} ${{ contains(text, 'W') }}")
    assert template.function_names() == {"always", "contains"}
    assert template.render(CONTEXT, {"always": lambda: True}) == "true true"
    with pytest.raises(ExpressionError, match="always\\(\\) is not available here"):
        template.render(CONTEXT)


# ---- conditions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "tasks.reviewer.status == 'failed'",
        "${{ tasks.reviewer.status == 'failed' }}",
        "  ${{tasks.reviewer.status == 'failed'}}  \n",
    ],
)
def test_a_condition_is_bare_or_one_template(text: str) -> None:
    condition = parse_condition(text)
    assert str(condition) == "tasks.reviewer.status == 'failed'"
    assert condition.evaluate(CONTEXT) is True


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("${{ a }} && ${{ b }}", 10),
        ("x ${{ a }}", 1),
        ("  always ${{ a }}", 3),
        ("${{ a }}${{ b }}", 9),
    ],
)
def test_a_condition_with_text_around_its_template_is_an_error(text: str, column: int) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_condition(text)
    assert str(caught.value).startswith(f"a condition must be one expression at column {column}")


# ---- bounds ------------------------------------------------------------------------------


def test_expression_length_is_bounded() -> None:
    at_limit = "'" + "x" * (MAX_EXPRESSION_CHARS - 2) + "'"
    assert parse_expression(at_limit).evaluate({}) == "x" * (MAX_EXPRESSION_CHARS - 2)
    with pytest.raises(ExpressionError, match="expression longer than 4,096 characters"):
        parse_expression(at_limit + " ")
    huge = "prefix ${{ " + "a || " * 2000 + "a }} suffix"
    with pytest.raises(ExpressionError, match="longer than 4,096 characters at column 11"):
        parse_template(huge)
    # An unclosed ${{ in a long prompt stops at the bound, not at the end of the text.
    with pytest.raises(ExpressionError, match="longer than 4,096"):
        parse_template("${{ a" + " " * 5_000_000)


@pytest.mark.parametrize(
    ("open_", "close"),
    [("(", ")"), ("!", ""), ("length(", ")"), ("a[", "]"), ("contains(a, ", ")")],
)
def test_nesting_is_bounded(open_: str, close: str) -> None:
    def nested(levels: int) -> str:
        return open_ * levels + "0" + close * levels

    parse_expression(nested(MAX_DEPTH - 1))
    with pytest.raises(ExpressionError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_expression(nested(MAX_DEPTH + 1))
    with pytest.raises(ExpressionError, match="nested deeper"):
        parse_expression(nested(100))


def test_long_chains_stay_shallow_but_comparison_chains_are_bounded() -> None:
    chain = " || ".join(["0"] * 800) + " || 'last'"
    assert len(chain) < MAX_EXPRESSION_CHARS
    assert ev(chain) == "last"
    assert ev(".".join(["m"] * 1000) + ".x", {"m": {}}) is None
    with pytest.raises(ExpressionError, match="nested deeper than 32 levels"):
        parse_expression(" == ".join(["1"] * 40))


def test_step_budget_stops_expensive_work() -> None:
    context = {"big": [str(i) for i in range(MAX_LIST_ITEMS)]}
    one = "contains(big, 'x')"
    assert ev(one, context) is False
    many = " || ".join([one] * 150)
    assert len(many) < MAX_EXPRESSION_CHARS
    assert "evaluation took more than 1,000,000 steps" in str(error_of(many, context))
    rendered = parse_template(" ".join(["${{ contains(big, 'x') }}"] * 150))
    with pytest.raises(ExpressionError, match="more than 1,000,000 steps"):
        rendered.render(context)


def test_results_are_bounded() -> None:
    too_many = {"l": list(range(MAX_LIST_ITEMS + 1)), "s": "x" * (MAX_VALUE_CHARS + 1)}
    assert "a list has 10,001 items, more than the limit of 10,000" in str(error_of("l", too_many))
    assert "larger than the limit of 1 MiB" in str(error_of("s", too_many))
    assert "larger than the limit of 1 MiB" in str(error_of("toJSON(s)", too_many))
    wide = {"l": ["y" * 1000] * 2000}
    assert "larger than the limit of 1 MiB" in str(error_of("l", wide))
    assert "larger than the limit of 1 MiB" in str(error_of("join(l)", wide))
    assert "larger than the limit of 1 MiB" in str(error_of("toJSON(l)", wide))
    assert "larger than the limit of 1 MiB" in str(error_of("format('{0}', l)", wide))
    with pytest.raises(ExpressionError, match="add up to more than 1,048,576 characters"):
        parse_template("${{ l[0] }}" * 1100).render(wide)
    # the limit is on the evaluation, not on the context: smaller reads are fine
    assert ev("l[1999]", wide) == "y" * 1000


def test_deep_values_fail_cleanly() -> None:
    deep: object = "leaf"
    for _ in range(100_000):
        deep = [deep]
    context = {"deep": deep, "text": "[" * 200_000 + "]" * 200_000}
    for source in ("deep", "toJSON(deep)", "join(deep)", "format('{0}', deep)", "fromJSON(text)"):
        assert "nested deeper than 100 levels" in str(error_of(source, context))
    # equality and access walk without recursion, so they still work on such a value
    assert ev("deep == deep", context) is True
    assert ev("deep[0][0][0][1]", context) is None
