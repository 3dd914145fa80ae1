"""Tests for the TOML position index (wayang.model.toml_positions)."""

from __future__ import annotations

import datetime as dt
import re
import time
import tomllib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wayang.model.toml_positions import (
    Path,
    Position,
    PositionIndex,
    index_positions,
    toml_error_position,
)

# --- helpers ------------------------------------------------------------------------------------


def find(source: str, needle: str, nth: int = 0) -> Position:
    """The position of the `nth` occurrence of `needle`, computed independently of the module."""
    offset = -1
    for _ in range(nth + 1):
        offset = source.index(needle, offset + 1)
    before = source[:offset]
    line = before.count("\n") + 1
    return Position(line, offset - (before.rfind("\n") + 1) + 1)


def text_at(source: str, position: Position) -> str:
    """The rest of the line from `position` (lines split at \\n only, as tomllib counts them)."""
    return source.split("\n")[position.line - 1][position.column - 1 :]


def indexed(source: str) -> PositionIndex:
    tomllib.loads(source)  # every fixture must be valid TOML
    return index_positions(source)


# --- examples -----------------------------------------------------------------------------------

WORKFLOW = """\
# A workflow
name = "deploy"   # trailing comment

[steps.build]
run = "make"
needs = ["fetch", "lint"]
retry = { attempts = 3, backoff = "exp" }
timeout.seconds = 30

[steps."build.docker"]
run = 'docker build .'

[[transitions]]
from = "build"

[[transitions]]
from = "build.docker"
"""


def test_keys_and_values_of_plain_pairs_and_headers() -> None:
    index = indexed(WORKFLOW)
    assert index.key(("name",)) == Position(2, 1)
    assert index.value(("name",)) == Position(2, 8)
    # A header-defined table: key is the last header key, value is the header itself.
    assert index.key(("steps", "build")) == Position(4, 8)
    assert index.value(("steps", "build")) == Position(4, 1)
    assert index.key(("steps",)) == Position(4, 2)
    assert index.value(("steps",)) is None  # only implied by the header
    assert index.key(("steps", "build", "run")) == Position(5, 1)
    assert index.value(("steps", "build", "run")) == Position(5, 7)


def test_inline_array_elements() -> None:
    index = indexed(WORKFLOW)
    assert index.value(("steps", "build", "needs")) == Position(6, 9)
    assert index.value(("steps", "build", "needs", 0)) == Position(6, 10)
    assert index.value(("steps", "build", "needs", 1)) == Position(6, 19)
    assert index.key(("steps", "build", "needs", 1)) is None
    assert index.value(("steps", "build", "needs", 2)) is None


def test_inline_table_keys_and_values() -> None:
    index = indexed(WORKFLOW)
    assert index.value(("steps", "build", "retry")) == Position(7, 9)
    assert index.key(("steps", "build", "retry", "attempts")) == Position(7, 11)
    assert index.value(("steps", "build", "retry", "attempts")) == Position(7, 22)
    assert index.key(("steps", "build", "retry", "backoff")) == Position(7, 25)
    assert index.value(("steps", "build", "retry", "backoff")) == Position(7, 35)


def test_dotted_keys() -> None:
    index = indexed(WORKFLOW)
    assert index.key(("steps", "build", "timeout")) == Position(8, 1)
    assert index.value(("steps", "build", "timeout")) is None
    assert index.key(("steps", "build", "timeout", "seconds")) == Position(8, 9)
    assert index.value(("steps", "build", "timeout", "seconds")) == Position(8, 19)


def test_quoted_header_key_with_a_dot() -> None:
    index = indexed(WORKFLOW)
    assert index.key(("steps", "build.docker")) == Position(10, 8)
    assert index.value(("steps", "build.docker")) == Position(10, 1)
    assert index.value(("steps", "build.docker", "run")) == Position(11, 7)
    assert text_at(WORKFLOW, Position(11, 7)).startswith("'docker build .'")


def test_arrays_of_tables_are_numbered_per_block() -> None:
    index = indexed(WORKFLOW)
    assert index.value(("transitions",)) == Position(13, 1)
    assert index.key(("transitions",)) == Position(13, 3)
    assert index.value(("transitions", 0)) == Position(13, 1)
    assert index.key(("transitions", 0)) == Position(13, 3)
    assert index.value(("transitions", 0, "from")) == Position(14, 8)
    assert index.value(("transitions", 1)) == Position(16, 1)
    assert index.value(("transitions", 1, "from")) == Position(17, 8)
    assert index.value(("transitions", 2)) is None


def test_nested_arrays_of_tables_index_within_the_current_element() -> None:
    source = """\
[[a]]
x = 1
[[a.b]]
y = 1
[[a]]
[[a.b]]
y = 2
[[a.b]]
y = 3
[a.c]
z = 4
[[a.b.d]]
w = 5
"""
    index = indexed(source)
    assert index.value(("a", 0, "b", 0, "y")) == find(source, "1", 1)
    assert index.value(("a", 1)) == find(source, "[[a]]", 1)
    assert index.value(("a", 1, "b", 0, "y")) == find(source, "2")
    assert index.value(("a", 1, "b", 1, "y")) == find(source, "3")
    assert index.key(("a", 1, "b", 1)) == Position(8, 5)
    assert index.value(("a", 1, "c", "z")) == find(source, "4")
    # [[a.b.d]] goes through the latest a and the latest a.b.
    assert index.value(("a", 1, "b", 1, "d", 0)) == find(source, "[[a.b.d]]")
    assert index.value(("a", 1, "b", 1, "d", 0, "w")) == find(source, "5")
    assert index.value(("a", 0, "b", 1)) is None


def test_super_table_defined_after_its_child_points_at_its_own_header() -> None:
    source = "[a.b]\nx = 1\n[a]\ny = 2\n"
    index = indexed(source)
    assert index.key(("a",)) == Position(3, 2)
    assert index.value(("a",)) == Position(3, 1)
    assert index.key(("a", "b")) == Position(1, 4)


def test_first_mention_of_an_implicit_table_wins() -> None:
    source = "[t]\nr.a = 1\nr.b = 2\n"
    index = indexed(source)
    assert index.key(("t", "r")) == Position(2, 1)
    assert index.key(("t", "r", "b")) == Position(3, 3)


def test_multiline_strings_do_not_confuse_the_scanner() -> None:
    lines = [
        'a = """',
        "# not a comment",
        "[not.a.header]",
        "b = 'not a key' '''",
        '"""',
        "c = '''",
        '[[x]] = # "',
        "'''",
        r'd = """quote "" inside and \""" escaped"""',
        'e = """two quotes at the end"""""',
        "f = '''one at the end''''",
        'g = """line \\',
        '    continued"""',
        "h = 1",
        "",
    ]
    source = "\n".join(lines)
    index = indexed(source)
    assert set(tomllib.loads(source)) == set("acdefgh")
    for key in "acdefg":
        position = index.value((key,))
        assert position is not None
        assert text_at(source, position)[:1] in {'"', "'"}
    assert index.value(("c",)) == Position(6, 5)
    assert index.value(("e",)) == Position(10, 5)
    assert index.value(("h",)) == Position(14, 5)
    assert index.key(("not",)) is None
    assert index.key(("b",)) is None


def test_strings_with_escapes_and_comment_characters() -> None:
    source = 'a = "say \\"hi\\" # not a comment" # a comment\nb = \'C:\\path\' # x\nc = 2\n'
    index = indexed(source)
    assert index.value(("a",)) == Position(1, 5)
    assert index.value(("b",)) == Position(2, 5)
    assert index.value(("c",)) == Position(3, 5)


def test_multiline_arrays_with_comments_and_trailing_commas() -> None:
    source = """\
needs = [  # the list
  "a",     # first
  # a comment line with ] and , inside
  [ 1, [2, 3], ],
  { x = 1, y = [ "z" ] },

  'last',
]
after = true
"""
    index = indexed(source)
    assert index.value(("needs", 0)) == Position(2, 3)
    assert index.value(("needs", 1)) == Position(4, 3)
    assert index.value(("needs", 1, 0)) == Position(4, 5)
    assert index.value(("needs", 1, 1)) == Position(4, 8)
    assert index.value(("needs", 1, 1, 1)) == Position(4, 12)
    assert index.value(("needs", 2)) == Position(5, 3)
    assert index.key(("needs", 2, "y")) == Position(5, 12)
    assert index.value(("needs", 2, "y", 0)) == Position(5, 18)
    assert index.value(("needs", 3)) == Position(7, 3)
    assert index.value(("needs", 4)) is None
    assert index.value(("after",)) == Position(9, 9)


def test_inline_tables_nest_and_take_dotted_keys() -> None:
    source = "retry = { attempts = 3, when.status = [500, 503], on = { x = {} } }\n"
    index = indexed(source)
    assert index.value(("retry", "attempts")) == find(source, "3")
    assert index.key(("retry", "when")) == find(source, "when")
    assert index.key(("retry", "when", "status")) == find(source, "status")
    assert index.value(("retry", "when", "status", 1)) == find(source, "503")
    assert index.value(("retry", "on", "x")) == find(source, "{}")


def test_scalars_of_every_kind() -> None:
    source = """\
i = -17
h = 0xdead_beef
f = +1.5e-3
n = -nan
inf = inf
t = true
d = 1979-05-27
dt = 1979-05-27 07:32:00.5-07:00
lt = 07:32:00
after = "x"
"""
    index = indexed(source)
    for line, key in enumerate(["i", "h", "f", "n", "inf", "t", "d", "dt", "lt", "after"], 1):
        assert index.value((key,)) == Position(line, len(key) + 4)


def test_unicode_keys_and_values_count_characters_not_bytes() -> None:
    source = '"ключ" = "значение"\n["шаги"."сборка"]\n"é" = { "ü" = 1, x = "日本語", y = 2 }\n'
    index = indexed(source)
    assert index.key(("ключ",)) == Position(1, 1)
    assert index.value(("ключ",)) == Position(1, 10)
    assert index.key(("шаги", "сборка")) == Position(2, 9)
    assert index.value(("шаги", "сборка", "é", "ü")) == Position(3, 15)
    assert index.value(("шаги", "сборка", "é", "y")) == Position(3, 33)


def test_quoted_keys_are_unescaped() -> None:
    source = '"a\\u00e9\\"b" = 1\n\'lit\\n\' = 2\n"" = 3\n'
    index = indexed(source)
    assert set(tomllib.loads(source)) == {'aé"b', "lit\\n", ""}
    assert index.value(('aé"b',)) == Position(1, 16)
    assert index.value(("lit\\n",)) == Position(2, 11)
    assert index.value(("",)) == Position(3, 6)


def test_whitespace_around_dots_and_in_headers() -> None:
    source = '[ a . "b" ]\nc . d = 1\n[[ e ]]\nf=2\n'
    index = indexed(source)
    assert index.key(("a", "b")) == Position(1, 7)
    assert index.value(("a", "b", "c", "d")) == Position(2, 9)
    assert index.key(("e", 0)) == Position(3, 4)
    assert index.value(("e", 0, "f")) == Position(4, 3)


def test_crlf_line_endings() -> None:
    source = WORKFLOW.replace("\n", "\r\n")
    assert index_positions(source).value(("steps", "build", "needs", 1)) == Position(6, 19)
    crlf = 'a = """\r\nx\r\ny"""\r\nb = [\r\n  1,\r\n]\r\n'
    index = indexed(crlf)
    assert index.value(("b",)) == Position(4, 5)
    assert index.value(("b", 0)) == Position(5, 3)


def test_byte_order_mark_is_not_counted() -> None:
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads("\ufeffa = 1\n")  # tomllib rejects it; the loader reports that
    index = index_positions("\ufeffa = 1\n")
    assert index.key(("a",)) == Position(1, 1)
    assert index.value(("a",)) == Position(1, 5)


def test_nearest_walks_up_to_a_known_prefix() -> None:
    index = indexed(WORKFLOW)
    assert index.nearest(("steps", "build", "run")) == Position(5, 7)
    assert index.nearest_key(("steps", "build", "run")) == Position(5, 1)
    assert index.nearest(("steps", "build", "missing", 3)) == Position(4, 1)
    assert index.nearest_key(("steps", "build", "missing")) == Position(4, 8)
    assert index.nearest(("steps", "nope")) == Position(4, 2)  # `steps` has only a key
    assert index.nearest(("timeout",)) == Position(1, 1)
    assert index.nearest(()) == Position(1, 1)
    assert PositionIndex().nearest(("a",)) == Position(1, 1)
    assert PositionIndex().value(("a",)) is None


def test_empty_and_comment_only_documents() -> None:
    for source in ["", "\n\n", "# only a comment", "  \t# c\n# d\n"]:
        index = indexed(source)
        assert index.nearest(("a",)) == Position(1, 1)


def test_stops_quietly_on_text_it_does_not_understand() -> None:
    source = 'a = 1\nb = "unterminated\nc = 3\n'
    index = index_positions(source)
    assert index.value(("a",)) == Position(1, 5)
    assert index.value(("c",)) is None


def test_nesting_that_tomllib_accepts_is_indexed() -> None:
    depth = 400
    source = "a = " + "[" * depth + "1" + "]" * depth + "\nb = 2\n"
    index = indexed(source)
    assert index.value(("a", *([0] * depth))) == Position(1, 5 + depth)
    assert index.value(("b",)) == Position(2, 5)


def test_pathological_nesting_neither_recurses_nor_raises() -> None:
    depth = 10_000
    source = "a = " + "[" * depth + "1" + "]" * depth + "\nb = 2\n"
    index = index_positions(source)
    # The outer levels are known; past the depth limit the scanner stops quietly.
    assert index.value(("a",)) == Position(1, 5)
    assert index.value(("a", *([0] * 500))) == Position(1, 505)
    assert index.value(("b",)) is None
    unbalanced = "a = " + "[{x=" * depth
    assert index_positions(unbalanced).value(("a", 0, "x")) == Position(1, 9)


# --- tomllib errors -----------------------------------------------------------------------------


def decode_error(source: str) -> tomllib.TOMLDecodeError:
    with pytest.raises(tomllib.TOMLDecodeError) as caught:
        tomllib.loads(source)
    return caught.value


@pytest.mark.parametrize(
    ("source", "position", "message"),
    [
        ("a = 1\nb = nope\n", Position(2, 5), "Invalid value"),
        ("a = 1\na = 2\n", Position(2, 6), "Cannot overwrite a value"),
        ("[t]\nx = 1\n[t]\n", Position(3, 3), "Cannot declare ('t',) twice"),
        ('a = "abc\n', Position(1, 9), "Illegal character '\\n'"),
        ('a = "abc', Position(1, 8), "Unterminated string"),
        ("a = [1,\n", Position(1, 8), "Invalid value"),
        ("a = [1,\r\n", Position(1, 8), "Invalid value"),
        ("a = ", Position(1, 4), "Invalid value"),
        (
            '"ключ" = 1 2\n',
            Position(1, 12),
            "Expected newline or end of document after a statement",
        ),
    ],
)
def test_toml_error_position(source: str, position: Position, message: str) -> None:
    assert toml_error_position(decode_error(source), source) == (position, message)


def test_toml_error_position_without_a_recognisable_suffix() -> None:
    error = tomllib.TOMLDecodeError("something odd")
    assert toml_error_position(error, "a = 1") == (Position(1, 1), "something odd")


def test_toml_error_position_at_end_of_empty_document() -> None:
    error = tomllib.TOMLDecodeError("Invalid value (at end of document)")
    assert toml_error_position(error, "") == (Position(1, 1), "Invalid value")


# --- properties ---------------------------------------------------------------------------------

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
CONTROL_EXCEPT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

keys = st.one_of(
    st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True),
    st.sampled_from(["run", "needs", "steps", "a.b", "x y", "#", "[", "=", "'", '"', ""]),
    st.text(max_size=6),
)
scalars = st.one_of(
    st.text(max_size=12),
    st.sampled_from(['"""', "'''", "a\nb", "# [x] = 1", "\\", "''", '""', "\r\n"]),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=4),
        st.lists(st.dictionaries(keys, children, max_size=3), min_size=1, max_size=3),
    ),
    max_leaves=16,
)
documents = st.dictionaries(keys, values, max_size=6)

COMMENTS = ["", "", "  # note", ' # "quoted" [x] = {y}', "#", " # '''"]


class Writer:
    """Serialises a document to TOML, drawing a style for each choice it makes."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self.draw = draw
        self.lines: list[str] = []

    def pick(self, options: list[str]) -> str:
        return str(self.draw(st.sampled_from(options)))

    def flag(self) -> bool:
        return bool(self.draw(st.booleans()))

    # keys

    def key(self, key: str) -> str:
        styles = ["basic"]
        if BARE_KEY.fullmatch(key):
            styles += ["bare", "bare"]
        if "'" not in key and not CONTROL.search(key):
            styles.append("literal")
        style = self.pick(styles)
        if style == "bare":
            return key
        if style == "literal":
            return f"'{key}'"
        return basic_string(key)

    def dotted(self, parts: list[str]) -> str:
        return self.pick([".", " . ", ". "]).join(parts)

    # values

    def scalar(self, value: object) -> str:
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return self.integer(value)
        if isinstance(value, float):
            return repr(value)
        if isinstance(value, dt.datetime):
            return value.isoformat(sep=self.pick(["T", " "]))
        assert isinstance(value, dt.date | dt.time)
        return value.isoformat()

    def integer(self, value: int) -> str:
        if value < 0:
            return str(value)
        return self.pick([str(value), f"+{value}", hex(value), oct(value), bin(value)])

    def string(self, value: str) -> str:
        styles = ["basic", "multi-basic"]
        if "'" not in value and not CONTROL.search(value):
            styles.append("literal")
        if "'''" not in value and not CONTROL_EXCEPT_NEWLINE.search(value):
            styles.append("multi-literal")
        style = self.pick(styles)
        if style == "basic":
            return basic_string(value)
        if style == "literal":
            return f"'{value}'"
        if style == "multi-literal":
            return f"'''\n{value}'''"
        return self.multiline_basic(value)

    def multiline_basic(self, value: str) -> str:
        body = "".join(escape_char(c, keep_newline=True) for c in value)
        if '"""' not in value and "\\" not in value and self.flag():
            body = value.replace("\r", "\\r")  # raw quotes are fine below three in a row
            body = CONTROL_EXCEPT_NEWLINE.sub(lambda m: escape_char(m.group()), body)
        continuation = self.pick(["", "\\\n   ", "\\   \n\n  "])  # line-ending backslash
        return f'"""\n{body}{continuation}"""'

    def value(self, value: object) -> str:
        if isinstance(value, dict):
            pairs = self.pairs(value)
            return "{" + self.pick([", ", ","]).join(pairs) + "}" if pairs else "{}"
        if isinstance(value, list):
            return self.array(value)
        return self.scalar(value)

    def array(self, items: list[Any]) -> str:
        texts = [self.value(item) for item in items]
        if self.flag():
            trailing = self.pick(["", ",", " "]) if texts else ""
            return "[" + ", ".join(texts) + trailing + "]"
        lines = [f"  {text},{self.pick(COMMENTS)}" for text in texts]
        return "[" + self.pick(COMMENTS) + "\n" + "\n".join(lines) + "\n# before ]\n]"

    def pairs(self, table: dict[str, Any]) -> list[str]:
        """`key = value` texts for a table's entries, some nested tables as dotted keys."""
        out: list[str] = []
        for key, value in table.items():
            if isinstance(value, dict) and value and self.flag():
                out += [self.dotted([self.key(key), pair]) for pair in self.pairs(value)]
            else:
                out.append(self.key(key) + self.pick([" = ", "=", "  =\t"]) + self.value(value))
        return out

    # tables

    def table(self, table: dict[str, Any], header: list[str]) -> None:
        later: list[tuple[str, str, Any]] = []
        for key, value in table.items():
            if isinstance(value, dict) and self.flag():
                later.append(("table", key, value))
            elif is_table_array(value) and self.flag():
                later.append(("array", key, value))
            else:
                for pair in self.pairs({key: value}):
                    self.emit(pair)
        for kind, key, value in later:
            path = [*header, self.key(key)]
            if kind == "table":
                self.emit("[" + self.dotted(path) + "]")
                self.table(value, path)
                continue
            for element in value:
                self.emit(self.pick(["[[", "[[ "]) + self.dotted(path) + "]]")
                self.table(element, path)

    def emit(self, line: str) -> None:
        if self.flag():
            self.lines.append(self.pick(["", "# a comment = [x]", "  ", "\t# '''"]))
        self.lines.append(self.pick(["", "  "]) + line + self.pick(COMMENTS))


def escape_char(char: str, keep_newline: bool = False) -> str:
    if char in '"\\':
        return "\\" + char
    if char == "\n" and keep_newline:
        return char
    if CONTROL.match(char):
        return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char, f"\\u{ord(char):04X}")
    return char


def basic_string(value: str) -> str:
    return '"' + "".join(escape_char(c) for c in value) + '"'


def is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


@st.composite
def toml_documents(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    document = draw(documents)
    writer = Writer(draw)
    writer.table(document, [])
    text = "\n".join(writer.lines) + draw(st.sampled_from(["", "\n", "\n\n# end"]))
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    return document, text


def walk(value: object, path: Path = ()) -> Iterator[tuple[Path, object]]:
    if path:
        yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, (*path, index))


def first_chars(value: object) -> str:
    if isinstance(value, str):
        return "\"'"
    if isinstance(value, bool):
        return "tf"
    if isinstance(value, int | float):
        return "+-0123456789in"
    if isinstance(value, dt.date | dt.time):
        return "0123456789"
    return "[" if isinstance(value, list) else "[{"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(toml_documents())
def test_every_value_of_a_generated_document_is_located(case: tuple[dict[str, Any], str]) -> None:
    document, text = case
    parsed = tomllib.loads(text)
    assert parsed == document, text  # the generator itself writes what it means
    index = index_positions(text)
    for path, value in walk(parsed):
        where = index.value(path)
        if isinstance(value, dict) and where is None:
            assert index.key(path) is not None, (path, text)  # implied by a header/dotted key
            continue
        assert where is not None, (path, text)
        assert text_at(text, where)[:1] in first_chars(value), (path, where, text)
        if isinstance(path[-1], str):
            key = index.key(path)
            assert key is not None, (path, text)
            assert text_at(text, key)[:1] in "\"'" or text_at(text, key).startswith(path[-1])


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    index = index_positions(text)
    index.nearest(("a", 0, "b"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(toml_documents(), st.data())
def test_damaged_documents_never_raise(
    case: tuple[dict[str, Any], str], data: st.DataObject
) -> None:
    _, text = case
    cut = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.sampled_from(["", "[", "{", '"', "'''", "=", "]]", "\\", "\n", ",", "#"]))
    damaged = text[:cut] + junk + text[cut + data.draw(st.integers(0, 3)) :]
    index = index_positions(damaged)
    index.nearest_key(("a",))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]{}\"'=.,#\\ \t\r\nab1-+:_")), max_size=60))
def test_toml_like_noise_never_raises(text: str) -> None:
    index_positions(text)


# --- size ---------------------------------------------------------------------------------------


def big_workflow(steps: int) -> str:
    chunks = ['name = "big"\n']
    for number in range(steps):
        chunks.append(
            f"""
[steps.step_{number:05d}]
kind = "shell"
run = "echo building part {number} of the project && make -j8 target_{number} # not a comment"
needs = [
  "step_{max(number - 1, 0):05d}",  # previous
  "step_{max(number - 2, 0):05d}",
]
retry = {{ attempts = 3, backoff = "exponential", delays = [1, 2, 4] }}
env.LEVEL = 'info'
description = \"\"\"
Step {number}: a longer description with [brackets], "quotes", = signs
and # hashes that must not confuse the scanner.\"\"\"

[[transitions]]
from = "step_{number:05d}"
to = "step_{number + 1:05d}"
"""
        )
    return "".join(chunks)


def test_large_document_is_indexed() -> None:
    text = big_workflow(10_000)
    assert len(text.encode()) >= 4 * 1024 * 1024
    started = time.perf_counter()
    index = index_positions(text)
    elapsed = time.perf_counter() - started
    print(f"indexed {len(text.encode()) / 2**20:.1f} MiB in {elapsed:.3f} s")
    last = ("steps", "step_09999", "needs", 1)
    position = index.value(last)
    assert position is not None
    assert text_at(text, position).startswith('"step_09997"')
    transition = index.value(("transitions", 9_999, "to"))
    assert transition is not None
    assert text_at(text, transition) == '"step_10000"'
