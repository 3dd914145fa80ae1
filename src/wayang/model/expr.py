"""Wayang's expression language: small, sandboxed, compiled once and evaluated fast.

Expressions appear bare in conditions (``when = "params.env == 'prod'"``) and inside text as
``${{ ... }}`` (``run = "deploy ${{ params.target }}"``, see :class:`Template`).

Grammar, lowest precedence first::

    expression := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := postfix [compare_op postfix]     -- one operator at most: chains are refused
    compare_op := "==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in"
    postfix    := primary ("." key | "[" expression "]")*
    primary    := literal | root | function "(" [expression ("," expression)*] ")"
                | "(" expression ")" | "[" [expression ("," expression)*] "]"
    literal    := string | ["-"] number | "true" | "false" | "null"
    root       := [A-Za-z_][A-Za-z0-9_]*            -- params, steps, env, run, ...
    key        := like root, plus inner hyphens       -- steps.build-docker.outputs.tag
    function   := contains | startswith | endswith | format | tojson | fromjson | length

Strings take single or double quotes and JSON's backslash escapes plus ``\\'`` and ``\\0``, so
any JSON string is also a valid string literal.
A key after a dot may contain ``-`` (step ids do), so ``a.b-c`` reads key ``"b-c"``: write
``a.b - c`` and it is refused as arithmetic. Names starting with ``__`` are refused everywhere.

Semantics. Values are JSON-like: null, booleans, numbers, strings, lists and objects (mappings).
A root name is looked up in the scope given to :meth:`Expression.evaluate`; a name the scope
lacks is an error (the validator checks names before any run, using :attr:`Expression.references`).

* ``.key`` and ``['key']`` read a key of an object, ``[n]`` an item of a list (negative ``n``
  counts from the end). Reading from null, a missing key or an index out of range gives null, as
  in GitHub Actions, so optional data can be tested with ``== null``. Reading a key of anything
  else (a string, a number, a list) is an error. Access never touches Python attributes.
* ``==`` and ``!=`` compare by value; booleans never equal numbers (``true != 1``), ``1 == 1.0``.
* ``< <= > >=`` need two numbers or two strings; anything else is an error.
* ``a in b`` and ``contains(b, a)``: substring of a string, item of a list, key of an object;
  nothing is in null.
* ``and`` / ``or`` short-circuit and return one of their operands, as in Python, so
  ``params.name or 'anonymous'`` is a default; ``not`` returns a boolean. null, false, 0, "", []
  and {} are false (see :func:`truthy`); everything else is true.
* ``format('{0}-{1}', a, b)`` fills numbered placeholders only (``{{``/``}}`` are literal
  braces); values are written as in templates (see :meth:`Template.render`).
  ``tojson``/``fromjson`` convert to and from compact JSON; ``length`` counts a string, list or
  object; ``startswith``/``endswith`` test strings (false on null).

Everything else -- arithmetic, method calls, lambdas, comprehensions, slices, conditional
expressions, keyword or starred arguments -- is refused when compiling, with a message saying so.
Limits keep every evaluation cheap: expressions of at most 4096 characters (templates 1 MiB),
nesting 64 deep, 1000 parts, number literals of 100 digits; fromjson input and format/tojson
output of at most 1 MiB, rendered templates of at most 16 MiB.
There are no loops, so evaluation time is bounded by the size of the expression and its data.

Offsets in errors are 0-based character offsets into the compiled text: the expression's source
for :func:`compile_expression` and :meth:`Expression.evaluate`, the whole template text for
:func:`compile_template` and :meth:`Template.render`.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, NoReturn

from wayang.errors import ExpressionError
from wayang.model._expr_parser import (
    ALLOWED_FUNCTIONS,
    MAX_DEPTH,
    MAX_NODES,
    MAX_SOURCE,
    Access,
    BoolOp,
    Call,
    Compare,
    Const,
    ListOf,
    Name,
    Node,
    Not,
    find_template_end,
    parse,
    static_key,
    static_paths,
    unwind,
)

MAX_JSON_INPUT: Final = 1 << 20
MAX_OUTPUT: Final = 1 << 20
MAX_TEMPLATE: Final = 1 << 20
MAX_RENDER: Final = 16 << 20

Scope = Mapping[str, Any]
Evaluator = Callable[[Scope], Any]


@dataclass(frozen=True, slots=True)
class Reference:
    """A static name path an expression reads, e.g. ``("steps", "build", "outputs", "tag")``.

    The path stops before the first subscript that is not a literal string.
    """

    path: tuple[str, ...]
    offset: int  # of the root name, in the expression's source


class Expression:
    """A compiled expression: immutable, safe to share, evaluated against a scope of roots."""

    __slots__ = ("_evaluator", "references", "source")

    source: str
    references: tuple[Reference, ...]
    _evaluator: Evaluator

    def __init__(self, source: str, references: tuple[Reference, ...], evaluator: Evaluator):
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "references", references)
        object.__setattr__(self, "_evaluator", evaluator)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Expression is immutable")

    def evaluate(self, scope: Scope) -> Any:
        """The value of the expression; ExpressionError if it cannot be computed."""
        try:
            return self._evaluator(scope)
        except RecursionError:
            # Only data can be this deep (the expression itself is bounded): e.g. comparing
            # two lists nested thousands of levels.
            raise ExpressionError("a value is nested too deeply to evaluate", 0) from None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


def compile_expression(source: str) -> Expression:
    """Compile ``source``; raise ExpressionError (with an offset into it) if it is not valid."""
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be a string, not {type(source).__name__}")
    return _compile_cached(source)


@lru_cache(maxsize=2048)
def _compile_cached(source: str) -> Expression:
    # Expressions are immutable, so the same text can share one compiled form.
    node = parse(source)
    paths = sorted(static_paths(node), key=lambda item: item[1])
    references = tuple(Reference(path, offset) for path, offset in paths)
    return Expression(source, references, _compile(node))


def truthy(value: Any) -> bool:
    """Whether a value counts as true: null, false, 0, "", [] and {} do not."""
    return bool(value)


def evaluate_condition(expr: Expression, scope: Scope) -> bool:
    return truthy(expr.evaluate(scope))


# --- values at run time --------------------------------------------------------------------------

_KINDS: Final[dict[type, str]] = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "list",
    tuple: "list",
    dict: "object",
}


def _kind(value: Any) -> str:
    """How a value is called in messages: JSON words, not Python type names."""
    kind = _KINDS.get(type(value))
    if kind is None:
        kind = "object" if isinstance(value, Mapping) else type(value).__name__
    return kind


def _a(value: Any) -> str:
    """``an integer``, ``a string``, ``null``: a value's kind with its article, for messages."""
    kind = _kind(value)
    if kind == "null":
        return kind
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:39] + "…")


def _read(value: Any, key: str, offset: int) -> Any:
    """``value.key`` / ``value['key']``: a mapping lookup, null when missing or on null."""
    if type(value) is dict:
        return value.get(key)
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value.get(key)
    raise ExpressionError(f"cannot read {_show(key)} of {_kind(value)} value", offset)


def _index(value: Any, key: Any, offset: int) -> Any:
    """``value[key]`` with a computed key: a string reads a key, an integer a list item."""
    if value is None or key is None:
        return None
    if isinstance(key, str):
        return _read(value, key, offset)
    if type(key) is not int:
        raise ExpressionError(f"an index must be a string or an integer, not {_a(key)}", offset)
    if not isinstance(value, list | tuple):
        raise ExpressionError(
            f"cannot index {_a(value)} with integer {key}; lists take integers, objects strings",
            offset,
        )
    try:
        return value[key]
    except IndexError:
        return None


_PLAIN: Final = frozenset({str, int, float, bool, type(None)})


def _equal(left: Any, right: Any) -> bool:
    """Value equality where booleans are not numbers, also inside lists and objects."""
    kind = type(left)
    if kind is type(right) and kind in _PLAIN:
        return bool(left == right)
    if kind is bool or type(right) is bool:
        return False
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(_equal, left, right))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(_equal(left[k], right[k]) for k in left)
    return bool(left == right)


def _contains(haystack: Any, needle: Any, offset: int) -> bool:
    """``needle in haystack``: a substring, a list item or an object key."""
    if isinstance(haystack, str):
        if isinstance(needle, str):
            return needle in haystack
        raise ExpressionError(
            f"cannot look for {_a(needle)} inside a string; both must be strings",
            offset,
        )
    if isinstance(haystack, list | tuple):
        if type(needle) is str:  # exact for strings, and much faster than _equal on each item
            return needle in haystack
        return any(_equal(item, needle) for item in haystack)
    if isinstance(haystack, Mapping):
        return isinstance(needle, str) and needle in haystack
    if haystack is None:
        return False
    raise ExpressionError(
        f"cannot look inside {_a(haystack)}; use a string, a list or an object", offset
    )


def _orderable(left: Any, right: Any) -> bool:
    if isinstance(left, str):
        return isinstance(right, str)
    return _is_number(left) and _is_number(right)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_WORDS: Final[dict[Any, str]] = {None: "", True: "true", False: "false"}


def _stringify(value: Any, offset: int) -> str:
    """Text for a value in a template or format(): null is empty, lists and objects are JSON."""
    if isinstance(value, str):
        return value
    if value is None or type(value) is bool:
        return _WORDS[value]
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError:  # ints beyond Python's digit limit
            raise ExpressionError("number is too large to write out", offset) from None
    if isinstance(value, list | tuple | Mapping):
        return _to_json(value, offset)
    return str(value)


def _to_json(value: Any, offset: int) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ExpressionError(f"cannot convert {_a(value)} to JSON: {exc}", offset) from None
    except RecursionError:
        raise ExpressionError("value is nested too deeply to convert to JSON", offset) from None
    if len(text) > MAX_OUTPUT:
        raise ExpressionError(f"JSON text is too long (limit {MAX_OUTPUT} characters)", offset)
    return text


# --- functions -----------------------------------------------------------------------------------
# Each takes the call's offset (for errors) and its argument values.


def _fn_contains(offset: int, haystack: Any, needle: Any) -> bool:
    return _contains(haystack, needle, offset)


def _string_test(name: str, offset: int, text: Any, part: Any) -> bool:
    if text is None:
        return False
    if not isinstance(text, str) or not isinstance(part, str):
        bad = text if not isinstance(text, str) else part
        raise ExpressionError(f"{name}() needs two strings, got {_a(bad)}", offset)
    return text.startswith(part) if name == "startswith" else text.endswith(part)


def _fn_startswith(offset: int, text: Any, prefix: Any) -> bool:
    return _string_test("startswith", offset, text, prefix)


def _fn_endswith(offset: int, text: Any, suffix: Any) -> bool:
    return _string_test("endswith", offset, text, suffix)


def _fn_tojson(offset: int, value: Any) -> str:
    return _to_json(value, offset)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _fn_fromjson(offset: int, text: Any) -> Any:
    if not isinstance(text, str):
        raise ExpressionError(f"fromjson() needs a string, got {_a(text)}", offset)
    if len(text) > MAX_JSON_INPUT:
        raise ExpressionError(f"fromjson() input is too long (limit {MAX_JSON_INPUT})", offset)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        reason = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise ExpressionError(f"fromjson() got invalid JSON: {reason}", offset) from None


def _fn_length(offset: int, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    raise ExpressionError(f"length() needs a string, list or object, got {_a(value)}", offset)


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([0-9]{1,6})\}|[{}]")
FormatPieces = tuple[str | int, ...]  # literal text, or the index of an argument


def _parse_format(fmt: str, offset: int) -> FormatPieces:
    # Our own tiny formatter: str.format on user text would allow '{0.__class__}' style escapes.
    pieces: list[str | int] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(fmt):
        if match.start() > pos:
            pieces.append(fmt[pos : match.start()])
        token = match.group()
        if match.group(1) is not None:
            pieces.append(int(match.group(1)))
        elif token in ("{{", "}}"):
            pieces.append(token[0])
        else:
            raise ExpressionError(
                f"format string has a lone {token!r} at character {match.start()}: use {{0}}, "
                "{1}, ... for arguments and {{ or }} for literal braces",
                offset,
            )
        pos = match.end()
    if pos < len(fmt):
        pieces.append(fmt[pos:])
    return tuple(pieces)


def _render_format(pieces: FormatPieces, args: list[Any], offset: int) -> str:
    texts: dict[int, str] = {}  # each argument is written out once, and only if it is used
    out: list[str] = []
    size = 0
    for piece in pieces:
        if isinstance(piece, int):
            if piece >= len(args):
                raise ExpressionError(
                    f"format placeholder {{{piece}}} has no argument ({len(args)} given)", offset
                )
            if piece not in texts:
                texts[piece] = _stringify(args[piece], offset)
            text = texts[piece]
        else:
            text = piece
        size += len(text)
        if size > MAX_OUTPUT:  # checked before joining, so '{0}{0}{0}...' cannot blow up memory
            raise ExpressionError(f"format() result is too long (limit {MAX_OUTPUT})", offset)
        out.append(text)
    return "".join(out)


_FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "contains": _fn_contains,
    "endswith": _fn_endswith,
    "fromjson": _fn_fromjson,
    "length": _fn_length,
    "startswith": _fn_startswith,
    "tojson": _fn_tojson,
}


# --- compiling the tree into closures ------------------------------------------------------------
# Each node becomes a closure taking the scope; no Python source is ever generated or evaluated.


def _compile(node: Node) -> Evaluator:
    return _COMPILERS[type(node)](node)


def _compile_const(node: Const) -> Evaluator:
    value = node.value

    def const(scope: Scope) -> Any:
        return value

    return const


def _compile_chain(node: Name | Access) -> Evaluator:
    root, chain = unwind(node)
    lead = 0
    while lead < len(chain) and static_key(chain[lead]) is not None:
        lead += 1
    if isinstance(root, Name):
        # The common case, steps.build.outputs.ok: one closure walks the whole static path.
        evaluator = _compile_path(root, chain[:lead])
        chain = chain[lead:]
    else:
        evaluator = _compile(root)
    for access in chain:
        key = static_key(access)
        if key is None:
            evaluator = _compile_index(evaluator, access)
        else:
            evaluator = _compile_read(evaluator, key, access.offset)
    return evaluator


def _unknown_name(name: str, offset: int, scope: Scope) -> ExpressionError:
    known = ", ".join(sorted(map(str, scope))) or "none"
    return ExpressionError(f"unknown name {name!r}; known names: {known}", offset)


def _compile_path(root: Name, chain: list[Access]) -> Evaluator:
    name, root_offset = root.name, root.offset
    steps = tuple((static_key(access) or "", access.offset) for access in chain)

    def lookup(scope: Scope) -> Any:
        try:
            value = scope[name]
        except KeyError:
            raise _unknown_name(name, root_offset, scope) from None
        for key, offset in steps:
            value = value.get(key) if type(value) is dict else _read(value, key, offset)
        return value

    return lookup


def _compile_read(evaluator: Evaluator, key: str, offset: int) -> Evaluator:
    def read(scope: Scope) -> Any:
        return _read(evaluator(scope), key, offset)

    return read


def _compile_index(evaluator: Evaluator, access: Access) -> Evaluator:
    key, offset = _compile(access.key), access.offset

    def index(scope: Scope) -> Any:
        return _index(evaluator(scope), key(scope), offset)

    return index


def _compile_list(node: ListOf) -> Evaluator:
    items = tuple(_compile(item) for item in node.items)

    def make_list(scope: Scope) -> list[Any]:
        return [item(scope) for item in items]

    return make_list


def _compile_not(node: Not) -> Evaluator:
    operand = _compile(node.operand)

    def negate(scope: Scope) -> bool:
        return not operand(scope)

    return negate


def _compile_bool(node: BoolOp) -> Evaluator:
    first, *rest = (_compile(operand) for operand in node.operands)
    stop_when = node.op == "or"  # 'or' stops at the first true operand, 'and' at the first false

    def boolean(scope: Scope) -> Any:
        value = first(scope)
        for operand in rest:
            if bool(value) is stop_when:
                return value
            value = operand(scope)
        return value

    return boolean


_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compile_compare(node: Compare) -> Evaluator:
    if node.op in ("==", "!="):
        return _compile_equality(node)
    left, right, op, offset = _compile(node.left), _compile(node.right), node.op, node.offset
    if op in ("in", "not in"):
        negated = op == "not in"

        def member(scope: Scope) -> bool:
            return _contains(right(scope), left(scope), offset) is not negated

        return member
    compare = _ORDER[op]

    def order(scope: Scope) -> bool:
        a, b = left(scope), right(scope)
        if _orderable(a, b):
            return compare(a, b)
        raise ExpressionError(
            f"cannot compare {_kind(a)} with {_kind(b)} using {op!r}; "
            "ordering needs two numbers or two strings",
            offset,
        )

    return order


def _compile_equality(node: Compare) -> Evaluator:
    left, right = node.left, node.right
    if isinstance(left, Const) and not isinstance(right, Const):
        left, right = right, left  # 'prod' == params.env: put the constant on the right
    value, negated = _compile(left), node.op == "!="
    if isinstance(right, Const) and _is_exact_constant(right.value):
        return _compile_identity_equal(value, right.value, negated)
    other = _compile(right)

    def equal(scope: Scope) -> bool:
        return _equal(value(scope), other(scope)) is not negated

    return equal


def _is_exact_constant(value: Any) -> bool:
    return isinstance(value, str) or value is None or type(value) is bool


def _compile_identity_equal(value: Evaluator, constant: Any, negated: bool) -> Evaluator:
    # Fast path for the common `x == 'literal'`: a string equals only a string, and null, true
    # and false are singletons, so plain == (strings) or `is` (the rest) is already exact.
    if isinstance(constant, str):

        def equal_str(scope: Scope) -> bool:
            return (value(scope) == constant) is not negated

        return equal_str

    def same(scope: Scope) -> bool:
        return (value(scope) is constant) is not negated

    return same


def _compile_call(node: Call) -> Evaluator:
    if node.name == "format":
        return _compile_format(node)
    function, offset = _FUNCTIONS[node.name], node.offset
    args = tuple(_compile(arg) for arg in node.args)
    if len(args) == 1:
        (only,) = args

        def call1(scope: Scope) -> Any:
            return function(offset, only(scope))

        return call1
    first, second = args  # every other function takes two arguments

    def call2(scope: Scope) -> Any:
        return function(offset, first(scope), second(scope))

    return call2


def _compile_format(node: Call) -> Evaluator:
    fmt_node, *arg_nodes = node.args
    args, offset = tuple(_compile(arg) for arg in arg_nodes), node.offset
    if isinstance(fmt_node, Const):
        pieces = _constant_format(fmt_node, len(args))

        def format_constant(scope: Scope) -> str:
            return _render_format(pieces, [arg(scope) for arg in args], offset)

        return format_constant
    fmt_evaluator = _compile(fmt_node)

    def format_dynamic(scope: Scope) -> str:
        fmt = fmt_evaluator(scope)
        if not isinstance(fmt, str):
            raise ExpressionError(f"format() needs a string first, got {_a(fmt)}", offset)
        return _render_format(_parse_format(fmt, offset), [arg(scope) for arg in args], offset)

    return format_dynamic


def _constant_format(fmt_node: Const, count: int) -> FormatPieces:
    """Check a literal format string when compiling, so its mistakes show up early."""
    fmt = fmt_node.value
    if not isinstance(fmt, str):
        raise ExpressionError("format() needs a string first", fmt_node.offset)
    pieces = _parse_format(fmt, fmt_node.offset)
    used = [piece for piece in pieces if isinstance(piece, int)]
    if used and max(used) >= count:
        raise ExpressionError(
            f"format placeholder {{{max(used)}}} has no argument ({count} given)", fmt_node.offset
        )
    return pieces


_COMPILERS: Final[dict[type, Callable[[Any], Evaluator]]] = {
    Const: _compile_const,
    Name: _compile_chain,
    Access: _compile_chain,
    ListOf: _compile_list,
    Not: _compile_not,
    BoolOp: _compile_bool,
    Compare: _compile_compare,
    Call: _compile_call,
}


# --- templates -----------------------------------------------------------------------------------


class Template:
    """Text with ``${{ expression }}`` parts; ``$${{`` writes a literal ``${{``."""

    __slots__ = ("expression_offsets", "parts", "source")

    source: str
    parts: tuple[str | Expression, ...]
    expression_offsets: tuple[int, ...]  # where each expression's source starts in ``source``

    def __init__(
        self, source: str, parts: tuple[str | Expression, ...], offsets: tuple[int, ...]
    ) -> None:
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "parts", parts)
        object.__setattr__(self, "expression_offsets", offsets)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Template is immutable")

    @property
    def expressions(self) -> tuple[Expression, ...]:
        return tuple(part for part in self.parts if isinstance(part, Expression))

    @property
    def is_literal(self) -> bool:
        return not self.expressions

    def render(self, scope: Scope, quote: Callable[[str], str] | None = None) -> str:
        """The text with each expression's value written in (see the module docstring).

        Values become text as: null -> "", booleans -> true/false, strings as they are, numbers
        via str(), lists and objects as compact JSON. ``quote`` (e.g. :func:`shlex.quote`) is then
        applied to each value -- never to the literal text -- so data cannot become syntax.
        """
        out: list[str] = []
        size = 0
        offsets = iter(self.expression_offsets)
        for part in self.parts:
            text = part if isinstance(part, str) else _render_part(part, next(offsets), scope)
            if quote is not None and not isinstance(part, str):
                text = quote(text)
            size += len(text)
            if size > MAX_RENDER:
                raise ExpressionError(f"rendered text is too long (limit {MAX_RENDER})", 0)
            out.append(text)
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


def _render_part(expression: Expression, start: int, scope: Scope) -> str:
    try:
        return _stringify(expression.evaluate(scope), 0)
    except ExpressionError as exc:
        raise ExpressionError(exc.message, start + exc.offset) from None


def compile_template(text: str) -> Template:
    """Compile text with ``${{ ... }}`` parts; error offsets are offsets into ``text``."""
    if not isinstance(text, str):
        raise ExpressionError(f"a template must be a string, not {type(text).__name__}")
    if len(text) > MAX_TEMPLATE:
        raise ExpressionError(f"text is too long (limit {MAX_TEMPLATE} characters)", MAX_TEMPLATE)
    parts: list[str | Expression] = []
    offsets: list[int] = []
    literal: list[str] = []  # adjacent literal pieces merge into one part
    for piece in _template_pieces(text):
        if isinstance(piece, str):
            literal.append(piece)
            continue
        if any(literal):
            parts.append("".join(literal))
        literal.clear()
        parts.append(piece[0])
        offsets.append(piece[1])
    if any(literal):
        parts.append("".join(literal))
    return Template(text, tuple(parts), tuple(offsets))


def evaluate_template(template: Template, scope: Scope) -> Any:
    """A template's value: one whole ``${{ }}`` keeps its type (``"${{ params.n }}"`` is an
    int), anything else renders to text."""
    if len(template.parts) == 1 and isinstance(template.parts[0], Expression):
        return template.parts[0].evaluate(scope)
    return template.render(scope)


def evaluate_value(value: Any, scope: Scope) -> Any:
    """``value`` with every template inside it (in lists and tables, at any depth) evaluated."""
    if isinstance(value, Template):
        return evaluate_template(value, scope)
    if isinstance(value, list):
        return [evaluate_value(item, scope) for item in value]
    if isinstance(value, dict):
        return {key: evaluate_value(item, scope) for key, item in value.items()}
    return value


def _template_pieces(text: str) -> Iterator[str | tuple[Expression, int]]:
    """Literal text and (expression, offset of its source) pairs, in order."""
    pos = 0
    while (start := text.find("${{", pos)) >= 0:
        if start > pos and text[start - 1] == "$":
            yield text[pos : start - 1] + "${{"
            pos = start + 3
            continue
        yield text[pos:start]
        expression, source_start, end = _template_expression(text, start)
        yield expression, source_start
        pos = end + 2
    yield text[pos:]


def _template_expression(text: str, start: int) -> tuple[Expression, int, int]:
    """The expression opened by ``${{`` at ``start``, where its source starts and its ``}}``."""
    body = start + 3
    if text.find("}}", body) < 0:
        raise ExpressionError("unclosed '${{' — end the expression with '}}'", start)
    end = find_template_end(text, body)
    raw = text[body:end]
    source = raw.strip(" \t\r\n")
    if not source:
        raise ExpressionError("empty expression in '${{ }}'", start)
    source_start = body + len(raw) - len(raw.lstrip(" \t\r\n"))
    try:
        return compile_expression(source), source_start, end
    except ExpressionError as exc:
        raise ExpressionError(exc.message, source_start + exc.offset) from None


__all__ = [
    "ALLOWED_FUNCTIONS",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_SOURCE",
    "Expression",
    "ExpressionError",
    "Reference",
    "Template",
    "compile_expression",
    "compile_template",
    "evaluate_condition",
    "evaluate_template",
    "evaluate_value",
    "truthy",
]
