"""Tests for the expression language in wayang.model.expr."""

from __future__ import annotations

import contextlib
import json
import math
import shlex
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wayang.errors import ExpressionError
from wayang.model.expr import (
    ALLOWED_FUNCTIONS,
    Expression,
    Reference,
    compile_expression,
    compile_template,
    evaluate_condition,
    truthy,
)

SCOPE: dict[str, Any] = {
    "params": {
        "env": "prod",
        "count": 3,
        "ratio": 0.5,
        "tags": ["x", "y"],
        "flag": True,
        "nothing": None,
        "name": "build-docker",
        "empty": "",
        "nested": {"a": {"b": [10, 20, {"c": "deep"}]}},
    },
    "steps": {
        "build": {"outputs": {"ok": "yes", "n": "1"}, "status": "succeeded"},
        "build-docker": {"outputs": {"tag": "v1.2"}},
    },
    "env": {"HOME": "/home/me"},
}


def ev(source: str, scope: dict[str, Any] | None = None) -> Any:
    return compile_expression(source).evaluate(SCOPE if scope is None else scope)


def compile_error(source: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    return info.value


def eval_error(source: str, scope: dict[str, Any] | None = None) -> ExpressionError:
    expression = compile_expression(source)
    with pytest.raises(ExpressionError) as info:
        expression.evaluate(SCOPE if scope is None else scope)
    return info.value


# --- literals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'single'", "single"),
        ('"double"', "double"),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'a\\nb\\tc\\rd\\\\e\\0'", "a\nb\tc\rd\\e\0"),
        ("'\\u00e9'", "é"),
        ("'\\ud83d\\ude00'", "\U0001f600"),
        ('"\\/\\b\\f"', "/\b\f"),
        ("'}}'", "}}"),
        ("''", ""),
        ("42", 42),
        ("0", 0),
        ("-7", -7),
        ("- 7", -7),
        ("1.5", 1.5),
        ("-2.5e3", -2500.0),
        ("1E-2", 0.01),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[]", []),
        ("[1, 'a', null, [true]]", [1, "a", None, [True]]),
    ],
)
def test_literals(source: str, expected: Any) -> None:
    assert ev(source) == expected
    assert type(ev(source)) is type(expected)


def test_list_literal_is_fresh_each_time() -> None:
    expression = compile_expression("[1, 2]")
    first = expression.evaluate(SCOPE)
    first.append(3)
    assert expression.evaluate(SCOPE) == [1, 2]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("True", "use 'true'"),
        ("False", "use 'false'"),
        ("None", "use 'null'"),
        ("'abc", "unterminated string"),
        ('"abc', "unterminated string"),
        ("'abc\\", "unterminated string"),
        ("'\\q'", "invalid escape '\\q'"),
        ("'\\ud800'", "invalid escape"),
        ("'\\ude00\\ud83d'", "invalid escape"),
        ("'\\u12'", "invalid escape"),
        ("0x10", "invalid number '0x10'"),
        ("1e", "invalid number"),
        ("1_000", "invalid number"),
        ("1e999", "out of range"),
        ("1" * 101, "number is too long"),
    ],
)
def test_bad_literals(source: str, message: str) -> None:
    assert message in compile_error(source).message


# --- names and access ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("params.env", "prod"),
        ("params['env']", "prod"),
        ('params["env"]', "prod"),
        ("steps.build.outputs.ok", "yes"),
        ("steps.build-docker.outputs.tag", "v1.2"),
        ("steps['build-docker'].outputs.tag", "v1.2"),
        ("steps[params.name].outputs.tag", "v1.2"),
        ("params.tags[0]", "x"),
        ("params.tags[1]", "y"),
        ("params.tags[-1]", "y"),
        ("params.nested.a.b[2].c", "deep"),
        ("params.nested['a']['b'][0]", 10),
        ("[1, 2, 3][1]", 2),
        ("fromjson('{\"k\": [5]}').k[0]", 5),
        ("(params).env", "prod"),
        ("params.nested.a.b[length(params.tags)]", {"c": "deep"}),
        ("env.HOME", "/home/me"),
        ("steps", SCOPE["steps"]),
    ],
)
def test_access(source: str, expected: Any) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "params.missing",
        "params.missing.deeper.still",
        "params.nothing.x",
        "params.nothing[0]",
        "params.tags[2]",
        "params.tags[-3]",
        "params.tags[10 ]",
        "params[params.nothing]",
        "params['no-such-key']",
        "steps.deploy.outputs.url",
        "fromjson('null').x",
    ],
)
def test_missing_data_is_null(source: str) -> None:
    assert ev(source) is None


def test_dunder_looking_keys_are_only_dict_keys() -> None:
    scope = {"data": {"__class__": "just a key"}}
    assert ev("data['__class__']", scope) == "just a key"
    assert ev("data['__dict__']", scope) is None


@pytest.mark.parametrize(
    ("source", "offset", "message"),
    [
        ("params.env.x", 11, "cannot read 'x' of string value"),
        ("params.count.x", 13, "cannot read 'x' of integer value"),
        ("params.tags.x", 12, "cannot read 'x' of list value"),
        ("params.flag.x", 12, "cannot read 'x' of boolean value"),
        ("params.tags['x']", 11, "cannot read 'x' of list value"),
        ("params[0]", 6, "cannot index an object with integer 0"),
        ("params.env[0]", 10, "cannot index a string with integer 0"),
        ("params.tags[1.5]", 11, "an index must be a string or an integer, not a number"),
        ("params.tags[true]", 11, "not a boolean"),
        ("params.tags[[0]]", 11, "not a list"),
        ("fromjson('1').x", 14, "cannot read 'x' of integer value"),
        ("nope", 0, "unknown name 'nope'"),
        ("params.env == 'x' or nope.x", 21, "unknown name 'nope'; known names: env, params, steps"),
    ],
)
def test_access_errors(source: str, offset: int, message: str) -> None:
    error = eval_error(source)
    assert message in error.message
    assert error.offset == offset


def test_access_never_uses_attributes() -> None:
    class Sneaky:
        secret = "attribute"

    error = eval_error("obj.secret", {"obj": Sneaky()})
    assert "cannot read 'secret' of Sneaky value" in error.message


def test_mappings_other_than_dict_work() -> None:
    from types import MappingProxyType

    scope = {"m": MappingProxyType({"a": MappingProxyType({"b": 1})})}
    assert ev("m.a.b", scope) == 1
    assert ev("m.a.zz", scope) is None
    assert ev("'a' in m", scope) is True
    assert ev("length(m)", scope) == 1


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("a-b", "arithmetic is not supported"),
        ("a.b - c", "arithmetic is not supported"),
        ("a.b-", "arithmetic is not supported"),
        ("a.0", "expected a name after '.'"),
        ("a.'x'", "expected a name after '.'"),
        ("a.", "expected a name after '.'"),
        ("a[1", "expected ']'"),
        ("a[]", "unexpected token ']'"),
    ],
)
def test_bad_access(source: str, message: str) -> None:
    assert message in compile_error(source).message


def test_hyphen_keys_only_after_a_dot() -> None:
    assert ev("a.b-c.d-e-f", {"a": {"b-c": {"d-e-f": 1}}}) == 1
    assert ev("a.b-1", {"a": {"b-1": 2}}) == 2


# --- operators ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("params.env == 'prod'", True),
        ("'prod' == params.env", True),
        ("params.env != 'prod'", False),
        ('params.env == "dev"', False),
        ("params.count == 3", True),
        ("params.count == 3.0", True),
        ("params.count != 4", True),
        ("params.flag == true", True),
        ("params.flag == 1", False),
        ("1 == true", False),
        ("0 == false", False),
        ("params.flag != 1", True),
        ("params.nothing == null", True),
        ("params.missing == null", True),
        ("params.env == null", False),
        ("params.empty == null", False),
        ("params.tags == ['x', 'y']", True),
        ("params.tags == ['x']", False),
        ("[1, true] == [1, 1]", False),
        ("[1, 2.0] == [1.0, 2]", True),
        ("params.nested == params.nested", True),
        ("fromjson('{\"a\": 1}') == fromjson('{\"a\": 1.0}')", True),
        ("fromjson('{\"a\": 1}') == fromjson('{\"a\": true}')", False),
        ("fromjson('{\"a\": 1}') == fromjson('{\"b\": 1}')", False),
        ("'1' == 1", False),
        ("params.count < 4", True),
        ("params.count <= 3", True),
        ("params.count > 3", False),
        ("params.count >= 3", True),
        ("params.ratio < 1", True),
        ("-1 < 0", True),
        ("'abc' < 'abd'", True),
        ("'b' > 'a'", True),
        ("'a' >= 'a'", True),
        ("'x' in params.tags", True),
        ("'z' in params.tags", False),
        ("'z' not in params.tags", True),
        ("1 in [1, 2]", True),
        ("true in [1, 2]", False),
        ("1.0 in [1, 2]", True),
        ("[1] in [[1], 2]", True),
        ("'ro' in params.env", True),
        ("'' in params.env", True),
        ("'env' in params", True),
        ("'zzz' in params", False),
        ("1 in params", False),
        ("'x' in params.nothing", False),
        ("'x' not in params.nothing", True),
        ("not params.flag", False),
        ("not params.nothing", True),
        ("not not params.env", True),
        ("not params.env == 'dev'", True),
        ("not 'x' in params.tags", False),
        ("(params.env == 'prod') == true", True),
    ],
)
def test_operators(source: str, expected: Any) -> None:
    result = ev(source)
    assert result is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("params.env and params.count", 3),
        ("params.empty and params.count", ""),
        ("params.nothing and nope", None),  # short-circuits: 'nope' is never looked up
        ("params.env or nope", "prod"),
        ("params.missing or 'default'", "default"),
        ("params.empty or 0 or []", []),
        ("false or null", None),
        ("1 and 2 and 3", 3),
        ("1 and 0 and nope", 0),
        ("0 or false or 'last'", "last"),
        ("true or false and false", True),  # and binds tighter than or
        ("(true or false) and false", False),
        ("params.flag and 'a' or 'b'", "a"),
        ("params.nothing and 'a' or 'b'", "b"),
    ],
)
def test_and_or_return_operands(source: str, expected: Any) -> None:
    assert ev(source) == expected
    assert type(ev(source)) is type(expected)


@pytest.mark.parametrize(
    ("source", "offset", "message"),
    [
        ("params.env < 1", 11, "cannot compare string with integer using '<'"),
        ("params.count >= '1'", 13, "cannot compare integer with string using '>='"),
        ("params.flag > 0", 12, "cannot compare boolean with integer"),
        ("params.nothing <= 1", 15, "cannot compare null with integer"),
        ("params.tags < params.tags", 12, "ordering needs two numbers or two strings"),
        ("1 in 'abc'", 2, "cannot look for an integer inside a string"),
        ("'a' in 1", 4, "cannot look inside an integer"),
        ("'a' not in true", 4, "cannot look inside a boolean"),
    ],
)
def test_operator_errors(source: str, offset: int, message: str) -> None:
    error = eval_error(source)
    assert message in error.message
    assert error.offset == offset


def test_chained_comparisons_are_refused() -> None:
    error = compile_error("1 < 2 < 3")
    assert "comparisons cannot be chained" in error.message
    assert error.offset == 6
    assert "cannot be chained" in compile_error("a == b != c").message
    assert ev("(1 < 2) == true") is True


# --- functions ---------------------------------------------------------------------------------


def test_allowed_functions() -> None:
    assert (
        frozenset({"contains", "startswith", "endswith", "format", "tojson", "fromjson", "length"})
        == ALLOWED_FUNCTIONS
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("contains(params.tags, 'x')", True),
        ("contains(params.tags, 'q')", False),
        ("contains(params.env, 'rod')", True),
        ("contains(params, 'env')", True),
        ("contains(params.nothing, 'x')", False),
        ("contains([[1, 2]], [1, 2])", True),
        ("startswith(params.env, 'pr')", True),
        ("startswith(params.env, 'od')", False),
        ("startswith(params.nothing, 'x')", False),
        ("endswith(params.env, 'od')", True),
        ("endswith(params.env, 'pr')", False),
        ("endswith(params.missing, '')", False),
        ("format('{0}-{1}', params.env, params.count)", "prod-3"),
        ("format('{1}{0}{1}', 'a', 'b')", "bab"),
        ("format('plain')", "plain"),
        ("format('{{0}} is {0}', 'x')", "{0} is x"),
        ("format('}}{{')", "}{"),
        ("format('{0}|{1}|{2}|{3}', null, true, false, 1.5)", "|true|false|1.5"),
        ("format('{0}', params.tags)", '["x","y"]'),
        ("format('{0}', params.nested.a)", '{"b":[10,20,{"c":"deep"}]}'),
        ("format('{0}', '{0.__class__}')", "{0.__class__}"),
        ("format(params.env, 'unused')", "prod"),
        ("format(format('{0}{1}', '{', '0}'), 'x')", "x"),
        ("tojson(params.tags)", '["x","y"]'),
        ("tojson('é\"')", '"é\\""'),
        ("tojson(null)", "null"),
        ("tojson(true)", "true"),
        ("tojson(params.nested)", '{"a":{"b":[10,20,{"c":"deep"}]}}'),
        ('fromjson(\'[1, "a", null, true, {"k": 2.5}]\')', [1, "a", None, True, {"k": 2.5}]),
        ("fromjson(tojson(params.nested)) == params.nested", True),
        ("fromjson('\"text\"')", "text"),
        ("length(params.tags)", 2),
        ("length(params.env)", 4),
        ("length(params)", len(SCOPE["params"])),
        ("length(params.nothing)", 0),
        ("length('')", 0),
        ("length([])", 0),
    ],
)
def test_functions(source: str, expected: Any) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize(
    ("source", "offset", "message"),
    [
        (
            "upper(x)",
            0,
            "unknown function 'upper'; allowed: contains, endswith, format, "
            "fromjson, length, startswith, tojson",
        ),
        ("a == eval('1')", 5, "unknown function 'eval'"),
        ("contains(1)", 0, "contains() takes 2 arguments, got 1"),
        ("contains(1, 2, 3)", 0, "contains() takes 2 arguments, got 3"),
        ("length()", 0, "length() takes 1 argument, got 0"),
        ("format()", 0, "format() takes at least 1 argument, got 0"),
        ("format('{0}')", 7, "format placeholder {0} has no argument (0 given)"),
        ("format('{2}', 1, 2)", 7, "format placeholder {2} has no argument (2 given)"),
        ("format('{', 1)", 7, "format string has a lone '{'"),
        ("format('}', 1)", 7, "format string has a lone '}'"),
        ("format('{}', 1)", 7, "lone '{'"),
        ("format('{0:>9}', 1)", 7, "lone '{'"),
        ("format('{name}', 1)", 7, "lone '{'"),
        ("format(1, 2)", 7, "format() needs a string first"),
        ("contains(a, b,)", 14, "unexpected token ')'"),
        ("length(x=1)", 8, "keyword arguments are not supported"),
        ("length(*x)", 7, "starred arguments are not supported"),
        ("length(**x)", 7, "starred arguments are not supported"),
        ("params.env.upper()", 16, "method calls"),
        ("(length)(x)", 8, "can be called"),  # 'length' alone is a name; calling it is refused
    ],
)
def test_function_compile_errors(source: str, offset: int, message: str) -> None:
    error = compile_error(source)
    assert message in error.message
    assert error.offset == offset


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("contains(1, 'a')", "cannot look inside an integer"),
        ("startswith(1, 'a')", "startswith() needs two strings, got an integer"),
        ("endswith('a', null)", "endswith() needs two strings, got null"),
        ("format(params.missing, 1)", "format() needs a string first, got null"),
        ("format(tojson('{'), 1)", "lone '{'"),
        ("format(format('{0}{1}', '{', '9}'), 1)", "format placeholder {9} has no argument"),
        ("tojson(fromjson('1e400'))", "cannot convert a number to JSON"),
        ("fromjson(1)", "fromjson() needs a string, got an integer"),
        ("fromjson('{')", "fromjson() got invalid JSON"),
        ("fromjson('NaN')", "NaN is not valid JSON"),
        ("fromjson('[Infinity]')", "Infinity is not valid JSON"),
        ("fromjson('')", "invalid JSON"),
        ("length(1)", "length() needs a string, list or object, got an integer"),
        ("length(true)", "got a boolean"),
    ],
)
def test_function_eval_errors(source: str, message: str) -> None:
    assert message in eval_error(source).message


def test_function_eval_error_offset_points_at_the_call() -> None:
    assert eval_error("params.env == 'x' or length(1)").offset == 21


def test_format_never_uses_str_format() -> None:
    # Argument text is inserted verbatim: it is never read as a format string itself.
    assert ev("format('{0}{1}', '{1}', 'x')") == "{1}x"
    assert (
        ev(
            "format(params.fmt, params.payload)",
            {"params": {"fmt": "<{0}>", "payload": "{0.__class__.__mro__}"}},
        )
        == "<{0.__class__.__mro__}>"
    )
    error = eval_error("format(params.fmt, 1)", {"params": {"fmt": "{0.__class__}"}})
    assert "lone '{'" in error.message


def test_output_limits() -> None:
    big = "x" * (1 << 19)  # half a MiB
    scope = {"big": big, "list": [big, big, big]}
    assert len(ev("format('{0}', big)", scope)) == len(big)
    assert "format() result is too long" in eval_error("format('{0}{0}{0}', big)", scope).message
    many = "format('" + "{0}" * 1000 + "', big)"
    assert "too long" in eval_error(many, scope).message
    assert "JSON text is too long" in eval_error("tojson(list)", scope).message
    assert "too long" in eval_error("format('{0}', list)", scope).message
    huge = "[" * 10 + "1" * (1 << 20) + "]" * 10
    assert "fromjson() input is too long" in eval_error("fromjson(t)", {"t": huge}).message


def test_deep_data_is_an_expression_error() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    scope = {"a": deep, "b": deep, "text": "[" * 100_000 + "]" * 100_000}
    assert "nested too deeply" in eval_error("tojson(a)", scope).message
    assert "nested too deeply" in eval_error("a == b", scope).message
    assert "nested too deeply" in eval_error("fromjson(text)", scope).message
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_template("${{ a }}").render(scope)


def test_huge_numbers_in_data() -> None:
    assert "too large" in eval_error("format('{0}', n)", {"n": 10**5000}).message
    assert "invalid JSON" in eval_error("fromjson(t)", {"t": "1" * 5000}).message


# --- truthiness --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (0, False),
        (0.0, False),
        ("", False),
        ([], False),
        ({}, False),
        (True, True),
        (1, True),
        (-1, True),
        (0.1, True),
        ("false", True),
        ("0", True),
        ([0], True),
        ({"a": None}, True),
    ],
)
def test_truthy(value: Any, expected: bool) -> None:
    assert truthy(value) is expected
    assert evaluate_condition(compile_expression("v"), {"v": value}) is expected


def test_evaluate_condition_returns_bool() -> None:
    assert evaluate_condition(compile_expression("params.env and params.count"), SCOPE) is True
    assert evaluate_condition(compile_expression("params.missing or ''"), SCOPE) is False


# --- references --------------------------------------------------------------------------------


def refs(source: str) -> list[tuple[tuple[str, ...], int]]:
    return [(r.path, r.offset) for r in compile_expression(source).references]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("params.env == 'prod'", [(("params", "env"), 0)]),
        (
            "params.env == 'prod' and steps.build.outputs.ok",
            [(("params", "env"), 0), (("steps", "build", "outputs", "ok"), 25)],
        ),
        ("steps.build-docker.outputs.tag", [(("steps", "build-docker", "outputs", "tag"), 0)]),
        ("steps['build-docker'].outputs", [(("steps", "build-docker", "outputs"), 0)]),
        ("steps[params.name].outputs", [(("steps",), 0), (("params", "name"), 6)]),
        ("params.tags[0].x", [(("params", "tags"), 0)]),
        ("a[b[c.d]].e", [(("a",), 0), (("b",), 2), (("c", "d"), 4)]),
        (
            "contains(params.tags, env.X) or [run.id, steps.a.status]",
            [
                (("params", "tags"), 9),
                (("env", "X"), 22),
                (("run", "id"), 33),
                (("steps", "a", "status"), 41),
            ],
        ),
        ("format('{0}', params.x)", [(("params", "x"), 14)]),
        ("fromjson(params.j).x.y", [(("params", "j"), 9)]),
        ("not (x)", [(("x",), 5)]),
        ("'params.x' == 1 and true", []),
        ("x and x", [(("x",), 0), (("x",), 6)]),
    ],
)
def test_references(source: str, expected: list[tuple[tuple[str, ...], int]]) -> None:
    assert refs(source) == expected


def test_reference_type() -> None:
    (reference,) = compile_expression("  params.x").references
    assert reference == Reference(("params", "x"), 2)
    with pytest.raises(AttributeError):
        reference.offset = 3  # type: ignore[misc]


def test_expression_is_immutable_and_compares_by_source() -> None:
    expression = compile_expression("params.env")
    assert expression.source == "params.env"
    with pytest.raises(AttributeError):
        expression.source = "other"
    assert expression == compile_expression("params.env")
    assert hash(expression) == hash(compile_expression("params.env"))
    assert expression != compile_expression("params.count")
    assert repr(expression) == "Expression('params.env')"


# --- compile errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "offset", "message"),
    [
        ("a + b", 2, "unexpected token '+' — arithmetic is not supported in expressions"),
        ("a +", 2, "arithmetic is not supported"),
        ("-a", 0, "'-' may only start a negative number"),
        ("1 * 2", 2, "arithmetic"),
        ("x % 2", 2, "arithmetic"),
        ("a & b", 2, "bitwise"),
        ("~a", 0, "bitwise"),
        ("a && b", 2, "use 'and'"),
        ("a || b", 2, "use 'or'"),
        ("!a", 0, "use 'not'"),
        ("a = 1", 2, "use '=='"),
        ("(a := 1)", 3, "assignment is not supported"),
        ("a; b", 1, "statements are not supported"),
        ("{'a': 1}", 0, "dict and set literals"),
        ("a ? b : c", 2, "conditional expressions"),
        ("a if b else c", 2, "conditional expressions are not supported"),
        ("lambda: 1", 0, "lambdas are not supported"),
        ("[x for x in y]", 3, "comprehensions are not supported"),
        ("a is null", 2, "instead of 'is'"),
        ("f'{x}'", 1, "f-strings"),
        ("rb'x'", 2, "f-strings and string prefixes"),
        ("'a' 'b'", 4, "unexpected string 'b'"),
        ("a b", 2, "unexpected name 'b'"),
        ("1 2", 2, "unexpected number 2"),
        ("(a", 2, "expected ')'"),
        ("(a b)", 3, "unexpected name 'b'"),
        ("[1, 2", 5, "expected ']'"),
        ("[1, 2,]", 6, "unexpected token ']'"),
        ("()", 0, "empty parentheses"),
        ("a ==", 4, "unexpected end of expression"),
        ("not", 3, "unexpected end of expression"),
        ("", 0, "empty expression"),
        ("   ", 3, "empty expression"),
        ("and", 0, "unexpected 'and'"),
        ("a not b", 2, "unexpected 'not'"),
        ("a # comment", 2, "unexpected character '#'"),
        ("a @ b", 2, "unexpected token '@'"),
        ("`id`", 0, "unexpected character '`'"),
        ("$x", 0, "unexpected character '$'"),
        ("é", 0, "unexpected character 'é'"),
        ("a.__class__", 2, "names starting with '__' are not allowed"),
        ("__builtins__", 0, "names starting with '__' are not allowed"),
        ("a[1:2]", 3, "slices are not supported"),
        ("a[:2]", 2, "slices"),
        ("x.y(1)", 3, "method calls"),
        ("'a'.x()", 5, "method calls"),
    ],
)
def test_compile_errors(source: str, offset: int, message: str) -> None:
    error = compile_error(source)
    assert message in error.message, error.message
    assert error.offset == offset


def test_limits() -> None:
    assert "too long" in compile_error("a" * 4097).message
    compile_expression("a" * 4096)
    assert "nested too deeply" in compile_error("(" * 65 + "a" + ")" * 65).message
    compile_expression("(" * 63 + "a" + ")" * 63)
    assert "nested too deeply" in compile_error("not " * 100 + "a").message
    assert "nested too deeply" in compile_error("[" * 100 + "]" * 100).message
    assert "nested too deeply" in compile_error("a" + ".b" * 100).message
    assert "nested too deeply" in compile_error("a" + "[0]" * 100).message
    assert "too large" in compile_error("[" + ",".join(["1"] * 1200) + "]").message
    # long flat chains stay shallow: 'and'/'or' operands are one node, not a nested chain
    assert ev(" and ".join(["true"] * 400)) is True
    assert ev(" or ".join(["false"] * 400)) is False


def test_non_string_source() -> None:
    with pytest.raises(ExpressionError):
        compile_expression(123)  # type: ignore[arg-type]
    with pytest.raises(ExpressionError):
        compile_template(None)  # type: ignore[arg-type]


# --- templates ---------------------------------------------------------------------------------


def test_literal_template() -> None:
    template = compile_template("just text, $$ and } and {{ and $ {{")
    assert template.is_literal
    assert template.parts == ("just text, $$ and } and {{ and $ {{",)
    assert template.expressions == ()
    assert template.render({}) == template.source
    assert compile_template("").parts == ()
    assert compile_template("").render({}) == ""


def test_template_parts() -> None:
    template = compile_template("deploy ${{ params.env }} to ${{params.count}}!")
    assert not template.is_literal
    assert [p if isinstance(p, str) else p.source for p in template.parts] == [
        "deploy ",
        "params.env",
        " to ",
        "params.count",
        "!",
    ]
    assert [e.source for e in template.expressions] == ["params.env", "params.count"]
    assert template.expression_offsets == (11, 31)
    assert template.source[11:21] == "params.env"
    assert template.source[31:43] == "params.count"
    assert template.render(SCOPE) == "deploy prod to 3!"
    assert isinstance(template.expressions[0], Expression)
    assert repr(compile_template("x")) == "Template('x')"
    assert compile_template("${{ a }}") == compile_template("${{ a }}")


def test_template_references_offsets_are_relative_to_each_expression() -> None:
    text = "a ${{ steps.x.outputs.y }} b ${{ format('{0}', params.z) }}"
    template = compile_template(text)
    found = []
    for expression, start in zip(template.expressions, template.expression_offsets, strict=True):
        for reference in expression.references:
            found.append((reference.path, start + reference.offset))
    assert found == [(("steps", "x", "outputs", "y"), 6), (("params", "z"), 47)]
    assert text[47:55] == "params.z"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        ("s", "s"),
        (7, "7"),
        (-1.5, "-1.5"),
        ([1, "a", None], '[1,"a",null]'),
        ({"k": [True]}, '{"k":[true]}'),
        ({"b": 1, "a": 2}, '{"b":1,"a":2}'),
        ("é", "é"),
    ],
)
def test_template_stringify(value: Any, text: str) -> None:
    assert compile_template("<${{ v }}>").render({"v": value}) == f"<{text}>"


def test_template_escape() -> None:
    template = compile_template("literal $${{ not an expression }} and ${{ 'x' }}")
    assert template.render({}) == "literal ${{ not an expression }} and x"
    assert len(template.expressions) == 1
    assert compile_template("$${{").render({}) == "${{"
    assert compile_template("$$${{ 1 }}").render({}) == "$${{ 1 }}"
    assert compile_template("${{ 1 }}$${{ 2 }}").render({}) == "1${{ 2 }}"
    assert compile_template("echo $$ ${{ 1 }}").render({}) == "echo $$ 1"


def test_template_closing_braces_inside_strings() -> None:
    template = compile_template("${{ '}}' }} and ${{ format('{{{0}}}', 'x') }}")
    assert template.render({}) == "}} and {x}"
    assert compile_template("${{1}}}").render({}) == "1}"


@pytest.mark.parametrize(
    ("text", "offset", "message"),
    [
        ("echo ${{ a + }}", 11, "arithmetic is not supported"),
        ("line1\nline2 ${{ a.b c }}", 20, "unexpected name 'c'"),
        ("x ${{ upper(a) }}", 6, "unknown function 'upper'"),
        ("x ${{ params.x", 2, "unclosed '${{'"),
        ("ok ${{ a }} then ${{ b", 17, "unclosed '${{'"),
        ("x ${{ }}", 2, "empty expression"),
        ("x ${{}}", 2, "empty expression"),
        ("x ${{ a } }}", 8, "unexpected token '}'"),
        ("x ${{ 'a }}", 6, "unterminated string"),
        ("x ${{ a # }}", 8, "unexpected character '#'"),
        ("x ${{ " + "a" * 5000 + " }}", 6 + 4096, "too long"),
    ],
)
def test_template_errors(text: str, offset: int, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_template(text)
    assert message in info.value.message
    assert info.value.offset == offset


def test_template_render_error_offsets_are_relative_to_the_text() -> None:
    template = compile_template("echo ${{ params.env.x }}")
    with pytest.raises(ExpressionError) as info:
        template.render(SCOPE)
    assert info.value.offset == 20
    assert "cannot read 'x' of string value" in info.value.message


def test_template_quote_applies_to_values_only() -> None:
    template = compile_template("echo 'lit' ${{ params.env }} ${{ params.nothing }}")
    assert template.render(SCOPE, quote=lambda s: f"<{s}>") == "echo 'lit' <prod> <>"
    assert template.render(SCOPE, quote=shlex.quote) == "echo 'lit' prod ''"


HOSTILE_VALUES = [
    "'; rm -rf /'",
    "; echo pwned",
    "$(echo pwned)",
    "`echo pwned`",
    "a b  c",
    '"double" and \\backslash',
    "new\nline",
    "$HOME ${PATH}",
    "*",
    "-n",
    "",
    "it's",
    "${{ params.x }}",
]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_shell_quoting_keeps_values_one_argument(value: str) -> None:
    template = compile_template("printf '[%s]\\n' ${{ params.target }}; printf 'argc=%s\\n' $#")
    command = template.render({"params": {"target": value}}, quote=shlex.quote)
    result = subprocess.run(
        ["/bin/sh", "-c", command], capture_output=True, text=True, check=True, timeout=10
    )
    assert result.stdout == f"[{value}]\nargc=0\n"
    assert "pwned" not in result.stdout.replace(value, "")


def test_shell_quoting_of_non_string_values() -> None:
    template = compile_template("printf '[%s]' ${{ v }}")
    for value, text in [([1, "a b"], '[1,"a b"]'), (None, ""), (True, "true")]:
        command = template.render({"v": value}, quote=shlex.quote)
        out = subprocess.run(
            ["/bin/sh", "-c", command], capture_output=True, text=True, check=True, timeout=10
        ).stdout
        assert out == f"[{text}]"


def test_template_is_immutable() -> None:
    template = compile_template("x")
    with pytest.raises(AttributeError):
        template.parts = ()


# --- security ----------------------------------------------------------------------------------

HOSTILE_EXPRESSIONS = [
    "__import__('os')",
    "__import__('os').system('id')",
    "().__class__.__bases__",
    "''.__class__.__mro__[1].__subclasses__()",
    "x.__class__",
    "x.__dict__",
    "x.__globals__",
    "format('{0.__class__}', 1)",
    "format('{0.__class__.__init__.__globals__}', params)",
    "format('{0[0]}', [1])",
    "format('{0!r}', 1)",
    "format('{:>1000000000}', 1)",
    "[1][0:1]",
    "[1][::-1]",
    "lambda: 1",
    "(lambda x: x)(1)",
    "[x for x in [1]]",
    "{x for x in [1]}",
    "(x for x in [1])",
    "{'a': 1}",
    "a if b else c",
    "'a' * 10**9",
    "'a' * 1000000000",
    "[1] * 1000000000",
    "2 ** 2 ** 2 ** 32",
    "1" + "0" * 100_000,
    "1" + "0" * 4000,
    "9" * 200,
    "(" * 10_000 + "1" + ")" * 10_000,
    "[" * 10_000 + "]" * 10_000,
    "not " * 10_000 + "true",
    "a" + ".b" * 2000,
    "a" + "[0]" * 1000,
    "-" * 5000 + "1",
    "x" * 100_000,
    "'" + "a" * 100_000 + "'",
    "(x := 1)",
    "f'{x}'",
    "f'{__import__(\"os\")}'",
    "eval('1')",
    "exec('1')",
    "open('/etc/passwd')",
    "getattr(x, 'y')",
    "length(*[1])",
    "length(**{})",
    "format(fmt='{0}')",
    "yield 1",
    "await x",
    "import os",
    "x.upper()",
    "x.y.z()",
    "params.env.format(1)",
    "globals()",
    "__builtins__",
    "print(1)",
    "x\\\ny",
    "a; import os",
    "a\x00b",
    "'\\N{BULLET}'",
    "b'\\x00'",
    "True or False",
    "None",
    "1 if 1 else 2",
    "a or b if c",
    "...",
    "@x",
    "x @ y",
    "a[b:c]",
    "*a",
    "-a",
    "+1",
    "~1",
    "1.__class__",
    "1 .__class__",
]


@pytest.mark.parametrize("source", HOSTILE_EXPRESSIONS, ids=lambda s: repr(s[:40]))
def test_hostile_expressions_are_refused(source: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    assert 0 <= info.value.offset <= len(source)


@pytest.mark.parametrize("source", HOSTILE_EXPRESSIONS, ids=lambda s: repr(s[:40]))
def test_hostile_expressions_in_templates_are_refused(source: str) -> None:
    text = "run " + source.join(["${{ ", " }}"])
    with pytest.raises(ExpressionError) as info:
        compile_template(text)
    assert 0 <= info.value.offset <= len(text)


def test_hostile_runtime_values_are_data() -> None:
    scope = {"p": {"x": "__import__('os').system('echo pwned')", "y": "${{ p.x }}"}}
    assert ev("p.x", scope) == scope["p"]["x"]
    assert compile_template("${{ p.y }}").render(scope) == "${{ p.x }}"  # not re-evaluated
    assert ev("fromjson('{\"__class__\": 1}')['__class__']", scope) == 1


def test_numbers_and_attributes_are_not_python_objects() -> None:
    # Even after a value flows from data, attribute-looking access only reads mapping keys.
    assert "cannot read 'real' of integer value" in eval_error("n.real", {"n": 1}).message
    assert "cannot read 'upper' of string value" in eval_error("s.upper", {"s": "x"}).message


def test_many_huge_templates_are_bounded() -> None:
    big = compile_template("${{ v }}" * 20)
    with pytest.raises(ExpressionError, match="too long"):
        big.render({"v": "x" * (1 << 20)})
    with pytest.raises(ExpressionError, match="too long"):
        compile_template("x" * ((1 << 20) + 1))


# --- properties --------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(
    [
        *"abcxyz_-.,'\"()[]{}$\\ \n\t0123456789=!<>+*/%&|:;@#`~?é",
        *["${{", "}}", "$${{", "and", "or", "not", "in", "true", "null", "params", "__"],
        *sorted(ALLOWED_FUNCTIONS),
    ]
)
_TEXT = st.one_of(st.text(max_size=80), st.lists(_ALPHABET, max_size=40).map("".join))


@settings(max_examples=400, deadline=None)
@given(_TEXT)
def test_random_text_only_raises_expression_error(text: str) -> None:
    for compile_text in (compile_expression, compile_template):
        try:
            compiled = compile_text(text)
        except ExpressionError as exc:
            assert 0 <= exc.offset <= len(text)
            continue
        # Whatever happens to compile must also evaluate safely.
        try:
            if isinstance(compiled, Expression):
                compiled.evaluate(SCOPE)
            else:
                compiled.render(SCOPE, quote=shlex.quote)
        except ExpressionError as exc:
            assert 0 <= exc.offset <= len(text)


_KEYS = ["a", "b", "c-d", "x"]


def _string_literal(text: str) -> str:
    out = []
    for char in text:
        if char in "\\'":
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif ord(char) < 32:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


_LEAVES = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=8).map(_string_literal),
    st.sampled_from(["true", "false", "null", "[]", "params", "steps", "env", "missing"]),
    st.sampled_from(["params.a", "steps.c-d.x", "env['b']", "params.a.b.x", "params.x[0]"]),
)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    two = st.tuples(inner, inner)
    return st.one_of(
        two.map(lambda t: f"({t[0]}) and ({t[1]})"),
        two.map(lambda t: f"({t[0]}) or ({t[1]})"),
        inner.map(lambda a: f"not ({a})"),
        st.tuples(
            inner, st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"]), inner
        ).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        st.tuples(inner, st.sampled_from(_KEYS)).map(lambda t: f"({t[0]}).{t[1]}"),
        two.map(lambda t: f"({t[0]})[{t[1]}]"),
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.tuples(st.sampled_from(["contains", "startswith", "endswith"]), two).map(
            lambda t: f"{t[0]}({t[1][0]}, {t[1][1]})"
        ),
        st.tuples(st.sampled_from(["tojson", "fromjson", "length"]), inner).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.lists(inner, max_size=3).map(
            lambda args: (
                "format('"
                + "-".join(f"{{{i}}}" for i in range(len(args)))
                + "{{}}'"
                + "".join(", " + a for a in args)
                + ")"
            )
        ),
        st.lists(inner, min_size=1, max_size=3).map(lambda args: f"format({', '.join(args)})"),
    )


_EXPRESSIONS = st.recursive(_LEAVES, _extend, max_leaves=12)

_JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=6),
        st.sampled_from(["{0}", "{", "[1, 2]", '{"a": 1}', "null", "x"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4),
    ),
    max_leaves=15,
)
_SCOPES = st.fixed_dictionaries({"params": _JSON, "steps": _JSON, "env": _JSON})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_EXPRESSIONS, _SCOPES)
def test_random_expressions_only_raise_expression_error(source: str, scope: dict[str, Any]) -> None:
    try:
        expression = compile_expression(source)
    except ExpressionError as exc:
        # Generated expressions are valid, except that format() may get a literal first
        # argument that is not a valid format string, which is reported when compiling.
        assert exc.message.startswith("format"), exc.message
        return
    try:
        expression.evaluate(scope)
    except ExpressionError as exc:
        assert 0 <= exc.offset <= len(source)
    with contextlib.suppress(ExpressionError):
        compile_template(f"x ${{{{ {source} }}}} y").render(scope, quote=shlex.quote)


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(map(_has_non_finite, value))
    if isinstance(value, dict):
        return any(map(_has_non_finite, value.values()))
    return False


@settings(max_examples=200, deadline=None)
@given(_JSON)
def test_tojson_fromjson_round_trip(value: Any) -> None:
    try:
        text = ev("tojson(v)", {"v": value})
    except ExpressionError as exc:
        assert _has_non_finite(value), exc.message
        return
    assert ev("fromjson(t) == v", {"t": text, "v": value}) is True


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_string_literals_round_trip(text: str) -> None:
    assert ev(_string_literal(text), {}) == text
    assert ev(json.dumps(text), {}) == text
    assert ev(json.dumps(text, ensure_ascii=False), {}) == text
