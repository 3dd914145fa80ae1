"""Source positions of keys and values in a TOML document.

``tomllib`` turns ``workflow.toml`` into plain Python values and forgets where each one came
from, yet every Wayang diagnostic must point at ``file:line:col``. This module re-reads the
source text with a small, forgiving scanner that knows just enough TOML (keys bare, quoted and
dotted; table and array-of-tables headers; the four kinds of string; arrays and inline tables;
comments) to record where each key and each value starts. Positions are indexed by the same path
the parsed value has, e.g. ``("steps", "build", "needs", 1)``, which is also the shape of a
pydantic error ``loc``.

The scanner normally runs on text that ``tomllib`` has already accepted, but it must never raise:
on anything it does not understand it stops, and the index simply knows fewer positions. Nested
arrays and inline tables are walked with an explicit stack rather than recursion, so a
pathological ``[[[[...`` cannot exhaust the Python stack.

Lines are counted at ``\\n`` only (as ``tomllib`` does in its own messages) and columns in
characters, not bytes; both are 1-based.
"""

from __future__ import annotations

import re
import tomllib
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Path", "Position", "PositionIndex", "index_positions", "toml_error_position"]

Path = tuple[str | int, ...]

_BOM = "\ufeff"

# A scan position of -1 means "stop: the text is not understood past here".
_STOP = -1

# Nesting deeper than this is not indexed: every path that deep costs time in proportion to its
# length, so a pathological `[[[[...` would take quadratic time, and tomllib itself gives up
# (RecursionError) at a few hundred levels anyway.
_MAX_DEPTH = 1000

# Whitespace within a line, and whitespace that may also span newlines and comments (between
# statements, and inside arrays and inline tables).
_WS = re.compile(r"[ \t]*")
_WS_NL = re.compile(r"[ \t\r\n]*(?:#[^\n]*[ \t\r\n]*)*")
# What may follow a key/value pair or a header on its line.
_LINE_END = re.compile(r"[ \t]*(?:#[^\n]*)?(?:\r?\n|\Z)")

# One part of a possibly dotted key (bare, "basic" or 'literal'), with the whitespace after it
# and, unless it is the last part, the dot that joins it to the next.
_KEY_PART = re.compile(
    r"""([A-Za-z0-9_-]+|"[^"\\\n]*(?:\\.[^"\\\n]*)*"|'[^'\n]*')[ \t]*(\.[ \t]*)?"""
)
_EQUALS = re.compile(r"=[ \t]*")

# Any value but an array or inline table. Alternatives are tried in order: multi-line strings
# before the one-line forms whose quotes they begin with, so '"""' is not read as an empty '""'.
# The multi-line basic form is an "unrolled loop" so a failed match cannot backtrack
# exponentially; closing runs of up to five quotes are allowed because TOML lets one or two
# quotes sit right before the closing delimiter. Numbers, booleans, inf/nan and date-times are a
# run of characters up to a delimiter; a date-time may use a space instead of "T", so that form
# comes first.
_SCALAR = re.compile(
    r'"""[^"\\]*(?:(?:\\[\s\S]|"(?!""))[^"\\]*)*"{3,5}'
    r"|'''[\s\S]*?'{3,5}"
    r'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
    r"|'[^'\n]*'"
    r"|\d{4}-\d{2}-\d{2} \d{2}:[^ \t\r\n,\]\}#]*"
    r"|[^ \t\r\n,\[\]\{\}#\"'=]+"
)

_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|x([0-9A-Fa-f]{2})|(.))", re.S)
_SIMPLE_ESCAPES = {
    "b": "\b",
    "t": "\t",
    "n": "\n",
    "f": "\f",
    "r": "\r",
    "e": "\x1b",
    '"': '"',
    "\\": "\\",
}

_ERROR_SUFFIX = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\Z")


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a source text: 1-based line, 1-based column counted in characters."""

    line: int
    column: int


_START = Position(1, 1)


class PositionIndex:
    """Where each key and value of a TOML document is written, looked up by value path."""

    __slots__ = ("_keys", "_line_starts", "_values")

    def __init__(
        self,
        line_starts: list[int] | None = None,
        keys: dict[Path, int] | None = None,
        values: dict[Path, int] | None = None,
    ) -> None:
        """Wrap character offsets; with no arguments the index is empty."""
        self._line_starts = line_starts or [0]
        self._keys = keys or {}
        self._values = values or {}

    def key(self, path: Path) -> Position | None:
        """Where the key defining `path` is written (for a header, its last key)."""
        return self._lookup(self._keys, path)

    def value(self, path: Path) -> Position | None:
        """Where the value at `path` starts; for a header-defined table, the header's `[`."""
        return self._lookup(self._values, path)

    def nearest(self, path: Path) -> Position:
        """The value (else key) of `path` or of its longest known prefix; else line 1, column 1."""
        return self._nearest(path, self._values, self._keys)

    def nearest_key(self, path: Path) -> Position:
        """Like :meth:`nearest` but preferring key positions, for "unknown key" errors."""
        return self._nearest(path, self._keys, self._values)

    def _lookup(self, offsets: Mapping[Path, int], path: Path) -> Position | None:
        offset = offsets.get(path)
        return None if offset is None else self._position(offset)

    def _nearest(
        self, path: Path, first: Mapping[Path, int], second: Mapping[Path, int]
    ) -> Position:
        for end in range(len(path), 0, -1):
            prefix = path[:end]
            offset = first.get(prefix, second.get(prefix))
            if offset is not None:
                return self._position(offset)
        return _START

    def _position(self, offset: int) -> Position:
        line = bisect_right(self._line_starts, offset) - 1
        return Position(line + 1, offset - self._line_starts[line] + 1)


def index_positions(source: str) -> PositionIndex:
    """Scan TOML `source` and index where its keys and values are written. Never raises."""
    # tomllib rejects a byte-order mark, but editors do not show one either, so columns on the
    # first line are counted without it.
    text = source.removeprefix(_BOM)
    scanner = _Scanner(text)
    scanner.run()
    return PositionIndex(_line_starts(text), scanner.keys, scanner.values)


def toml_error_position(error: tomllib.TOMLDecodeError, source: str) -> tuple[Position, str]:
    """Split a tomllib error into its position and its message without the position suffix.

    Python 3.11 only puts the position in the message text ("... (at line 3, column 7)" or
    "... (at end of document)"), so the message is parsed; an error at the end of the document
    is placed at the last character of `source`.
    """
    text = str(error)
    match = _ERROR_SUFFIX.search(text)
    if match is None:
        return _position_from_attributes(error), text
    message = text[: match.start()]
    if match.group(1) is None:
        return _end_of_document(source), message
    return Position(int(match.group(1)), int(match.group(2))), message


def _position_from_attributes(error: tomllib.TOMLDecodeError) -> Position:
    # Python 3.14 added lineno/colno; older versions leave us nothing but the start.
    line = getattr(error, "lineno", None)
    column = getattr(error, "colno", None)
    if isinstance(line, int) and isinstance(column, int) and line > 0 and column > 0:
        return Position(line, column)
    return _START


def _end_of_document(source: str) -> Position:
    # tomllib reads CRLF as LF, so do the same before finding the last character.
    text = source.removeprefix(_BOM).replace("\r\n", "\n")
    if not text:
        return _START
    last = len(text) - 1
    line_start = text.rfind("\n", 0, last) + 1
    return Position(text.count("\n", 0, last) + 1, last - line_start + 1)


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(match.end() for match in re.finditer("\n", text))
    return starts


def _decode_key(raw: str) -> str:
    if raw.startswith('"'):
        return _ESCAPE.sub(_unescape, raw[1:-1])
    if raw.startswith("'"):
        return raw[1:-1]
    return raw


def _unescape(match: re.Match[str]) -> str:
    digits = match.group(1) or match.group(2) or match.group(3)
    if digits is not None:
        code = int(digits, 16)
        # An out-of-range code point is invalid TOML; keep the text rather than raise.
        return chr(code) if code <= 0x10FFFF else match.group(0)
    return _SIMPLE_ESCAPES.get(match.group(4), match.group(0))


@dataclass(slots=True)
class _Container:
    """An array or inline table being scanned: where it lives and what comes next in it."""

    path: Path
    closer: str
    index: int = 0
    expect_item: bool = True


_CLOSERS = {"[": "]", "{": "}"}

_KeyParts = list[tuple[str, int]]


class _Scanner:
    """One pass over a TOML text, filling `keys` and `values` with character offsets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.keys: dict[Path, int] = {}
        self.values: dict[Path, int] = {}
        # Keys recorded only because a longer key passed through them (`a` in `a.b = 1` or in
        # `[a.b]`); a later explicit definition such as `[a]` takes their place.
        self.implicit: set[Path] = set()
        # How many `[[path]]` blocks have been seen, to number array-of-tables elements.
        self.array_tables: dict[Path, int] = {}
        self.table: Path = ()

    def run(self) -> None:
        """Scan statements until the end of the text or until something is not understood."""
        pos = 0
        end = len(self.text)
        while pos != _STOP:
            pos = _skip(_WS_NL, self.text, pos)
            if pos >= end:
                return
            if self.text.startswith("[", pos):
                pos = self._header(pos)
            else:
                pos = self._line_end(self._key_value(pos, self.table))

    # --- statements -------------------------------------------------------------------------

    def _header(self, start: int) -> int:
        is_array = self.text.startswith("[[", start)
        opener = "[[" if is_array else "["
        parsed = self._dotted_key(_skip(_WS, self.text, start + len(opener)))
        if parsed is None:
            return _STOP
        parts, pos = parsed
        closer = "]]" if is_array else "]"
        if not self.text.startswith(closer, pos):
            return _STOP
        self.table = self._open_table(parts, start, is_array)
        return self._line_end(pos + len(closer))

    def _open_table(self, parts: _KeyParts, header: int, is_array: bool) -> Path:
        path: Path = ()
        # A header key passing through an array of tables means its latest element (TOML spec).
        for name, offset in parts[:-1]:
            path = (*path, name)
            self._note_key(path, offset, explicit=False)
            count = self.array_tables.get(path)
            if count is not None:
                path = (*path, count - 1)
        name, offset = parts[-1]
        path = (*path, name)
        if is_array:
            # The array as a whole is placed at its first `[[...]]` block.
            self._note_key(path, offset, explicit=False)
            self.values.setdefault(path, header)
            count = self.array_tables.get(path, 0)
            self.array_tables[path] = count + 1
            path = (*path, count)
        self._note_key(path, offset, explicit=True)
        self.values[path] = header
        return path

    def _line_end(self, pos: int) -> int:
        if pos == _STOP:
            return _STOP
        match = _LINE_END.match(self.text, pos)
        return _STOP if match is None else match.end()

    def _key_value(self, pos: int, table: Path) -> int:
        found = self._key_and_equals(pos, table)
        if found is None:
            return _STOP
        path, pos = found
        return self._value(pos, path)

    # --- keys -------------------------------------------------------------------------------

    def _key_and_equals(self, pos: int, table: Path) -> tuple[Path, int] | None:
        """Read `a.b.c =`, record its keys under `table`; return the path and the value's start."""
        parsed = self._dotted_key(pos)
        if parsed is None:
            return None
        parts, pos = parsed
        equals = _EQUALS.match(self.text, pos)
        if equals is None:
            return None
        path = table
        for name, offset in parts[:-1]:
            path = (*path, name)
            self._note_key(path, offset, explicit=False)
        name, offset = parts[-1]
        path = (*path, name)
        self._note_key(path, offset, explicit=True)
        return path, equals.end()

    def _dotted_key(self, pos: int) -> tuple[_KeyParts, int] | None:
        """Read a possibly dotted key; return its parts with offsets and the position after it."""
        parts: _KeyParts = []
        while True:
            match = _KEY_PART.match(self.text, pos)
            if match is None:
                return None
            parts.append((_decode_key(match.group(1)), pos))
            pos = match.end()
            if match.group(2) is None:
                return parts, pos

    def _note_key(self, path: Path, offset: int, *, explicit: bool) -> None:
        if path in self.keys and not (explicit and path in self.implicit):
            return  # the first definition wins; an implicit one yields to an explicit one
        self.keys[path] = offset
        if explicit:
            self.implicit.discard(path)
        else:
            self.implicit.add(path)

    # --- values -----------------------------------------------------------------------------

    def _value(self, pos: int, path: Path) -> int:
        """Scan one value, however deeply nested, and return the position after it."""
        stack: list[_Container] = []
        while True:
            closer = _CLOSERS.get(self.text[pos : pos + 1])
            if closer is None:
                match = _SCALAR.match(self.text, pos)
                if match is None:
                    return _STOP
                end = match.end()
            elif len(stack) >= _MAX_DEPTH:
                return _STOP
            else:
                stack.append(_Container(path, closer))
                end = pos + 1
            self.values[path] = pos
            if not stack:
                return end  # a value outside any array or inline table: the common case
            found = self._next_item(end, stack)
            if found is None:
                return _STOP
            pos, next_path = found
            if next_path is None:
                return pos
            path = next_path

    def _next_item(self, pos: int, stack: list[_Container]) -> tuple[int, Path | None] | None:
        """Move past separators and closing brackets to the next item of the innermost open
        container; return its start and path, a None path once all are closed, or None if lost.
        """
        while stack:
            top = stack[-1]
            pos = _skip(_WS_NL, self.text, pos)
            if self.text.startswith(top.closer, pos):
                stack.pop()
                pos += 1
            elif not top.expect_item:
                if not self.text.startswith(",", pos):
                    return None
                top.expect_item = True
                top.index += 1
                pos += 1
            else:
                top.expect_item = False
                return self._item_start(pos, top)
        return pos, None

    def _item_start(self, pos: int, container: _Container) -> tuple[int, Path] | None:
        if container.closer == "]":
            return pos, (*container.path, container.index)
        found = self._key_and_equals(pos, container.path)
        if found is None:
            return None
        path, pos = found
        return pos, path


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    match = pattern.match(text, pos)
    return pos if match is None else match.end()
