"""Tokenizer and parser for Wayang expressions; the language is described in ``wayang.model.expr``.

The parser is hand-written rather than built on :func:`ast.parse` so that it accepts exactly the
small grammar and nothing else: what is not in the grammar cannot reach evaluation. It produces a
tree of the node classes below and enforces every compile-time limit (source length, nesting,
node count, literal size) so that a hostile expression costs bounded time and memory.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from wayang.errors import ExpressionError

MAX_SOURCE: Final = 4096
MAX_DEPTH: Final = 64
MAX_NODES: Final = 1000
MAX_NUMBER_CHARS: Final = 100

# Each function's (minimum, maximum) argument count; None means "any number".
FUNCTION_ARITY: Final[dict[str, tuple[int, int | None]]] = {
    "contains": (2, 2),
    "endswith": (2, 2),
    "format": (1, None),
    "fromjson": (1, 1),
    "length": (1, 1),
    "startswith": (2, 2),
    "tojson": (1, 1),
}
ALLOWED_FUNCTIONS: Final = frozenset(FUNCTION_ARITY)
_ALLOWED_LIST: Final = ", ".join(sorted(ALLOWED_FUNCTIONS))

# --- tokens --------------------------------------------------------------------------------------

NAME: Final = "name"
STRING: Final = "string"
NUMBER: Final = "number"
OP: Final = "op"
END: Final = "end"


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    value: Any  # names and operators: their text; strings: the decoded text; numbers: the value
    start: int
    end: int


_SPACE = re.compile(r"[ \t\r\n]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# After a dot a key may contain inner hyphens, because step ids do (steps.build-docker.outputs).
# The same rule as step ids: "-" inside, never at the end (so `a-b` is one key).
_SEGMENT = re.compile(r"[A-Za-z_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WORD_TAIL = re.compile(r"[A-Za-z0-9_.]*")
# Python operators are lexed too, only so that the parser can explain why they are refused.
_OPERATOR = re.compile(r"\*\*|//|<<|>>|:=|->|==|!=|<=|>=|&&|\|\||[-+*/%&|^~<>=:;@!?{}()\[\],.]")
_STRING_STOP = {"'": re.compile(r"['\\]"), '"': re.compile(r'["\\]')}
# JSON's escapes plus \' and \0, so that any JSON string literal is also a valid expression.
_ESCAPES: Final = {
    **{"\\": "\\", "'": "'", '"': '"', "/": "/", "0": "\0"},
    **{"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"},
}
# \uXXXX, or a UTF-16 surrogate pair (\ud83d\ude00) as JSON writes characters beyond U+FFFF.
_UNICODE = re.compile(
    r"u(?:([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|([0-9a-fA-F]{4}))"
)


def tokenize(text: str, start: int = 0, *, template: bool = False) -> list[Token]:
    """Split ``text[start:]`` into tokens ending with an END token.

    In ``template`` mode the expression ends at the first ``}}`` outside a string literal and the
    END token sits on it; reaching the end of the text first is an unclosed ``${{``.
    """
    tokens: list[Token] = []
    pos, size, after_dot = start, len(text), False
    while True:
        space = _SPACE.match(text, pos)
        if space:
            pos = space.end()
        if pos >= size:
            if template:
                raise ExpressionError("unclosed '${{' — end the expression with '}}'", start - 3)
            tokens.append(Token(END, "", pos, pos))
            return tokens
        if template and text.startswith("}}", pos):
            tokens.append(Token(END, "}}", pos, pos))
            return tokens
        token = _next_token(text, pos, after_dot)
        tokens.append(token)
        after_dot = token.kind == OP and token.value == "."
        pos = token.end


def _next_token(text: str, pos: int, after_dot: bool) -> Token:
    char = text[pos]
    if char in _STRING_STOP:
        return _string(text, pos)
    if "0" <= char <= "9":
        return _number(text, pos)
    word = (_SEGMENT if after_dot else _NAME).match(text, pos)
    if word:
        return Token(NAME, word.group(), pos, word.end())
    operator = _OPERATOR.match(text, pos)
    if operator:
        return Token(OP, operator.group(), pos, operator.end())
    raise ExpressionError(f"unexpected character {char!r}", pos)


def _string(text: str, start: int) -> Token:
    quote = text[start]
    stop = _STRING_STOP[quote]
    pieces: list[str] = []
    pos = start + 1
    while True:
        found = stop.search(text, pos)
        if found is None:
            raise ExpressionError(f"unterminated string — close it with {quote}", start)
        pieces.append(text[pos : found.start()])
        if found.group() == quote:
            return Token(STRING, "".join(pieces), start, found.end())
        pos = _escape(text, found.start(), start, pieces)


def _escape(text: str, pos: int, start: int, pieces: list[str]) -> int:
    """Decode the backslash escape at ``pos`` into ``pieces``; return where the string goes on."""
    code = text[pos + 1 : pos + 2]
    if code in _ESCAPES:
        pieces.append(_ESCAPES[code])
        return pos + 2
    unicode = _UNICODE.match(text, pos + 1)
    char = _unicode_char(unicode) if unicode else None
    if unicode and char is not None:
        pieces.append(char)
        return unicode.end()
    if not code:
        raise ExpressionError("unterminated string", start)
    raise ExpressionError(
        f"invalid escape '\\{code}' in string; use \\\\, \\', \\\", \\n, \\t, \\r, \\uXXXX "
        "or another JSON escape",
        pos,
    )


def _unicode_char(match: re.Match[str]) -> str | None:
    high, low, single = match.groups()
    if high:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
    value = int(single, 16)
    # Lone surrogates would break encoding later (files, subprocess arguments), so refuse them.
    return None if 0xD800 <= value <= 0xDFFF else chr(value)


def _number(text: str, start: int) -> Token:
    match = _NUMBER.match(text, start)
    assert match is not None  # the caller saw a digit
    raw, end = match.group(), match.end()
    if end < len(text) and (text[end].isalnum() or text[end] == "_"):
        tail = _WORD_TAIL.match(text, end)
        bad = raw + (tail.group() if tail else "")
        raise ExpressionError(f"invalid number {bad[:40]!r}", start)
    if len(raw) > MAX_NUMBER_CHARS:
        raise ExpressionError(f"number is too long (limit {MAX_NUMBER_CHARS} digits)", start)
    if raw.isdigit():
        return Token(NUMBER, int(raw), start, end)
    value = float(raw)
    if not math.isfinite(value):
        raise ExpressionError(f"number {raw!r} is out of range", start)
    return Token(NUMBER, value, start, end)


# --- syntax tree ---------------------------------------------------------------------------------
# Every node records its offset (for error messages) and its depth, so that limits are checked as
# the tree is built, before anything recursive walks it.


@dataclass(frozen=True, slots=True)
class Const:
    value: Any
    offset: int
    depth: int = 1

    def children(self) -> tuple[Node, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    offset: int
    depth: int = 1

    def children(self) -> tuple[Node, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Access:
    """``obj.key`` (``key`` is a string Const) or ``obj[key]``; offset points at the key or '['."""

    obj: Node
    key: Node
    offset: int
    depth: int

    def children(self) -> tuple[Node, ...]:
        return (self.obj, self.key)


@dataclass(frozen=True, slots=True)
class ListOf:
    items: tuple[Node, ...]
    offset: int
    depth: int

    def children(self) -> tuple[Node, ...]:
        return self.items


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]
    offset: int
    depth: int

    def children(self) -> tuple[Node, ...]:
        return self.args


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    offset: int
    depth: int

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class BoolOp:
    """``a and b and c`` as one node (not a nested chain), so long chains stay shallow."""

    op: str
    operands: tuple[Node, ...]
    offset: int
    depth: int

    def children(self) -> tuple[Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Node
    right: Node
    offset: int
    depth: int

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


Node = Const | Name | Access | ListOf | Call | Not | BoolOp | Compare


def unwind(node: Node) -> tuple[Node, list[Access]]:
    """Split an access chain ``root.a[b].c`` into its root and its accesses, innermost first."""
    chain: list[Access] = []
    while isinstance(node, Access):
        chain.append(node)
        node = node.obj
    chain.reverse()
    return node, chain


def static_key(access: Access) -> str | None:
    """The key of ``.name`` or ``['literal']``, which a reference path can follow; else None."""
    key = access.key
    if isinstance(key, Const) and type(key.value) is str:
        return key.value
    return None


def static_paths(node: Node) -> Iterator[tuple[tuple[str, ...], int]]:
    """Every name path ``node`` reads, with the offset of its root name."""
    if not isinstance(node, Name | Access):
        for child in node.children():
            yield from static_paths(child)
        return
    root, chain = unwind(node)
    if isinstance(root, Name):
        path = [root.name]
        for access in chain:
            key = static_key(access)
            if key is None:
                break
            path.append(key)
        yield tuple(path), root.offset
    else:
        yield from static_paths(root)
    for access in chain:
        yield from static_paths(access.key)


# --- parser --------------------------------------------------------------------------------------

_COMPARISONS: Final = frozenset({"==", "!=", "<", "<=", ">", ">="})
_LITERAL_WORDS: Final = {"true": True, "false": False, "null": None}
_RESERVED: Final = frozenset(keyword.kwlist)
_ARITHMETIC = "arithmetic is not supported in expressions"
_CONDITIONAL = "conditional expressions are not supported; write 'cond and a or b'"
_HINTS: Final = {
    **dict.fromkeys(("+", "*", "/", "%", "**", "//"), _ARITHMETIC),
    "-": _ARITHMETIC + " ('-' may only start a negative number)",
    **dict.fromkeys(("&", "|", "^", "~", "<<", ">>"), "bitwise operators are not supported"),
    "&&": "use 'and'",
    "||": "use 'or'",
    "!": "use 'not' to negate, '!=' to compare",
    "=": "use '==' to compare; assignment is not supported",
    ":=": "assignment is not supported",
    ":": "slices and dict literals are not supported",
    "{": "dict and set literals are not supported",
    "}": "dict and set literals are not supported",
    ";": "an expression is a single value; statements are not supported",
    "?": _CONDITIONAL,
    "if": _CONDITIONAL,
    "else": _CONDITIONAL,
    "lambda": "lambdas are not supported",
    "for": "comprehensions are not supported",
    "is": "use '==' or '!=' instead of 'is'",
    "True": "use 'true'",
    "False": "use 'false'",
    "None": "use 'null'",
}
_STRING_PREFIXES: Final = frozenset({"f", "r", "b", "u", "rb", "br", "fr", "rf"})


class Parser:
    """Recursive descent over the grammar in ``wayang.model.expr``; one instance per parse."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.nesting = 0
        self.nodes = 0

    def parse(self) -> Node:
        if self.peek().kind == END:
            raise ExpressionError("empty expression", self.peek().start)
        node = self.parse_or()
        if self.peek().kind != END:
            raise self.unexpected(self.peek())
        return node

    # -- helpers

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at(self, kind: str, value: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == kind and token.value == value

    def expect(self, value: str) -> Token:
        token = self.peek()
        if token.kind == OP and token.value == value:
            return self.advance()
        if token.kind != END and self._hint(token):
            raise self.unexpected(token)
        raise ExpressionError(f"expected {value!r} but found {_describe(token)}", token.start)

    def enter(self, token: Token) -> None:
        # Bounds the Python recursion of the parser itself; node depth is checked in add().
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise _too_deep(token.start)

    def add(self, node: Node) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ExpressionError(
                f"expression is too large (limit {MAX_NODES} parts); split it up", node.offset
            )
        if node.depth > MAX_DEPTH:
            raise _too_deep(node.offset)
        return node

    def unexpected(self, token: Token) -> ExpressionError:
        hint = self._hint(token)
        message = f"unexpected {_describe(token)}"
        return ExpressionError(f"{message} — {hint}" if hint else message, token.start)

    def _hint(self, token: Token) -> str | None:
        """Why ``token`` cannot appear here, when there is more to say than "unexpected"."""
        if token.kind == END:
            return "the expression is incomplete"
        if token.kind == STRING:
            previous = self.tokens[self.index - 1] if self.index else None
            prefix = previous.value if previous and previous.kind == NAME else ""
            if previous and previous.end == token.start and prefix.lower() in _STRING_PREFIXES:
                return "f-strings and string prefixes are not supported; use format()"
            return "an operator such as '==', 'and', 'or' or 'in' is missing"
        if token.kind == NUMBER or (token.kind == NAME and token.value not in _RESERVED):
            return "an operator such as '==', 'and', 'or' or 'in' is missing"
        return _HINTS.get(token.value) if token.kind in (OP, NAME) else None

    # -- grammar

    def parse_or(self) -> Node:
        return self._bool("or", self.parse_and)

    def parse_and(self) -> Node:
        return self._bool("and", self.parse_not)

    def _bool(self, word: str, operand: Callable[[], Node]) -> Node:
        first = operand()
        operands = [first]
        while self.at(NAME, word):
            self.advance()
            operands.append(operand())
        if len(operands) == 1:
            return first
        depth = 1 + max(item.depth for item in operands)
        return self.add(BoolOp(word, tuple(operands), first.offset, depth))

    def parse_not(self) -> Node:
        if not self.at(NAME, "not"):
            return self.parse_comparison()
        token = self.advance()
        self.enter(token)
        operand = self.parse_not()
        self.nesting -= 1
        return self.add(Not(operand, token.start, operand.depth + 1))

    def _comparison_op(self) -> tuple[str, int]:
        """The comparison operator at the cursor and how many tokens it spans, or ('', 0)."""
        token = self.peek()
        if token.kind == OP and token.value in _COMPARISONS:
            return token.value, 1
        if self.at(NAME, "in"):
            return "in", 1
        if self.at(NAME, "not") and self.at(NAME, "in", 1):
            return "not in", 2
        return "", 0

    def parse_comparison(self) -> Node:
        left = self.parse_postfix()
        op, width = self._comparison_op()
        if not width:
            return left
        offset = self.peek().start
        self.index += width
        right = self.parse_postfix()
        if self._comparison_op()[1]:
            raise ExpressionError(
                "comparisons cannot be chained; join them with 'and' (a < b and b < c)",
                self.peek().start,
            )
        depth = 1 + max(left.depth, right.depth)
        return self.add(Compare(op, left, right, offset, depth))

    def parse_postfix(self) -> Node:
        node = self.parse_primary()
        while True:
            token = self.peek()
            if token.kind != OP or token.value not in ".[(":
                return node
            self.advance()
            if token.value == ".":
                node = self._dot(node)
            elif token.value == "[":
                node = self._subscript(node, token)
            else:
                raise ExpressionError(
                    f"only the functions {_ALLOWED_LIST} can be called; method calls and "
                    "calling other values are not supported",
                    token.start,
                )

    def _dot(self, node: Node) -> Node:
        token = self.advance()
        if token.kind != NAME:
            hint = "; use ['...'] for other keys" if token.kind != END else ""
            raise ExpressionError(f"expected a name after '.'{hint}", token.start)
        _check_name(token)
        key = self.add(Const(token.value, token.start))
        return self.add(Access(node, key, token.start, 1 + node.depth))

    def _subscript(self, node: Node, bracket: Token) -> Node:
        self.enter(bracket)
        key = self.parse_or()
        if self.at(OP, ":"):
            raise ExpressionError("slices are not supported", self.peek().start)
        self.expect("]")
        self.nesting -= 1
        depth = 1 + max(node.depth, key.depth)
        return self.add(Access(node, key, bracket.start, depth))

    def parse_primary(self) -> Node:
        token = self.advance()
        if token.kind in (NUMBER, STRING):
            return self.add(Const(token.value, token.start))
        if token.kind == NAME:
            return self._word(token)
        if token.kind == OP and token.value in "([":
            return self._group(token) if token.value == "(" else self._list(token)
        if token.kind == OP and token.value == "-" and self.peek().kind == NUMBER:
            return self.add(Const(-self.advance().value, token.start))
        self.index -= 1
        raise self.unexpected(token)

    def _word(self, token: Token) -> Node:
        word = token.value
        if word in _LITERAL_WORDS:
            return self.add(Const(_LITERAL_WORDS[word], token.start))
        if word in _RESERVED:
            self.index -= 1
            raise self.unexpected(token)
        if self.at(OP, "("):
            return self._call(token)
        _check_name(token)
        return self.add(Name(word, token.start))

    def _group(self, token: Token) -> Node:
        self.enter(token)
        if self.at(OP, ")"):
            raise ExpressionError("empty parentheses; tuples are not supported", token.start)
        node = self.parse_or()
        self.expect(")")
        self.nesting -= 1
        return node

    def _list(self, token: Token) -> Node:
        self.enter(token)
        items = self._items("]")
        self.nesting -= 1
        depth = 1 + max((item.depth for item in items), default=0)
        return self.add(ListOf(items, token.start, depth))

    def _items(self, close: str) -> tuple[Node, ...]:
        """Comma-separated expressions up to and including ``close``; no trailing comma."""
        items: list[Node] = []
        if not self.at(OP, close):
            items.append(self._item())
            while self.at(OP, ","):
                self.advance()
                items.append(self._item())
        self.expect(close)
        return tuple(items)

    def _item(self) -> Node:
        token = self.peek()
        if token.kind == OP and token.value in ("*", "**"):
            raise ExpressionError("starred arguments are not supported", token.start)
        node = self.parse_or()
        if self.at(OP, "=") and isinstance(node, Name):
            raise ExpressionError("keyword arguments are not supported", self.peek().start)
        return node

    def _call(self, token: Token) -> Node:
        name = token.value
        if name not in FUNCTION_ARITY:
            raise ExpressionError(
                f"unknown function {name!r}; allowed: {_ALLOWED_LIST}", token.start
            )
        self.enter(self.advance())
        args = self._items(")")
        self.nesting -= 1
        low, high = FUNCTION_ARITY[name]
        if len(args) < low or (high is not None and len(args) > high):
            wanted = f"at least {low}" if high is None else str(low)
            raise ExpressionError(
                f"{name}() takes {wanted} argument{'s' * (low != 1)}, got {len(args)}",
                token.start,
            )
        depth = 1 + max((arg.depth for arg in args), default=0)
        return self.add(Call(name, args, token.start, depth))


def _check_name(token: Token) -> None:
    # Dunder names are refused outright: nothing legitimate needs them, and refusing them keeps
    # anything that looks like Python introspection out of workflow files.
    if token.value.startswith("__"):
        raise ExpressionError(
            f"names starting with '__' are not allowed: {token.value!r}", token.start
        )


def _too_deep(offset: int) -> ExpressionError:
    return ExpressionError(f"expression is nested too deeply (limit {MAX_DEPTH} levels)", offset)


def _describe(token: Token) -> str:
    if token.kind == END:
        return "end of expression"
    if token.kind == STRING:
        return f"string {_clip(token.value)!r}"
    if token.kind == NUMBER:
        return f"number {token.value!r}"
    if token.kind == NAME:
        return f"{token.value!r}" if token.value in _RESERVED else f"name {token.value!r}"
    return f"token {token.value!r}"


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse(source: str) -> Node:
    """Parse a standalone expression; raise ExpressionError with an offset into ``source``."""
    if len(source) > MAX_SOURCE:
        raise ExpressionError(
            f"expression is too long ({len(source)} characters; limit {MAX_SOURCE})", MAX_SOURCE
        )
    return Parser(tokenize(source)).parse()


def find_template_end(text: str, body: int) -> int:
    """Where the ``}}`` closing the expression that starts at ``body`` sits in ``text``."""
    return tokenize(text, body, template=True)[-1].start
