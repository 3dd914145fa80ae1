"""A workflow file's text plus where things are in it, to turn value paths into diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from wayang.errors import Diagnostic
from wayang.model.toml_positions import Path, Position, PositionIndex, index_positions


@dataclass
class SourceFile:
    """The text of one file and a lazily built index of where each key and value sits."""

    name: str
    text: str
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines(keepends=True)

    @cached_property
    def positions(self) -> PositionIndex:
        # Built only when something needs a position: valid files never pay for the index.
        return index_positions(self.text)

    def error_at(self, position: Position, message: str, code: str = "invalid") -> None:
        self.diagnostics.append(
            Diagnostic(self.name, position.line, position.column, message, code=code)
        )

    def error(self, path: Path, message: str, code: str = "invalid") -> None:
        """Report at the value of ``path`` (or the nearest enclosing thing that is written)."""
        self.error_at(self.positions.nearest(path), message, code)

    def key_error(self, path: Path, message: str, code: str = "invalid") -> None:
        """Report at the key of ``path`` — for unknown or misplaced keys."""
        self.error_at(self.positions.nearest_key(path), message, code)

    def error_in_string(self, path: Path, offset: int, message: str, code: str) -> None:
        """Report at character ``offset`` inside the string value at ``path``."""
        self.error_at(self.offset_position(path, offset), message, code)

    def offset_position(self, path: Path, offset: int) -> Position:
        """Where character ``offset`` of a string value sits, for the common string forms.

        Escapes inside basic strings shift columns slightly; the line is always right for
        multi-line strings, which is what matters in a long ``run`` script.
        """
        start = self.positions.value(path)
        if start is None:
            return self.positions.nearest(path)
        line_text = self._line(start.line)
        opening = line_text[start.column - 1 : start.column + 2]
        if opening in ('"""', "'''"):
            return self._walk_multiline(start, offset)
        return Position(start.line, start.column + 1 + offset)

    def _walk_multiline(self, start: Position, offset: int) -> Position:
        line, column = start.line, start.column + 3
        rest = self._line(line)[column - 1 :]
        if not rest.strip():
            # TOML drops a newline right after the opening quotes.
            line, column = line + 1, 1
        for char in self._content_from(line, column)[:offset]:
            line, column = (line + 1, 1) if char == "\n" else (line, column + 1)
        return Position(line, column)

    def _content_from(self, line: int, column: int) -> str:
        head = self._line(line)[column - 1 :]
        return head + "".join(self.lines[line : line + 200])

    def _line(self, number: int) -> str:
        return self.lines[number - 1] if 0 < number <= len(self.lines) else ""
