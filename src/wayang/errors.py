"""The one exception root of Wayang.

Every error Wayang raises on purpose derives from :class:`WayangError`, so a caller can catch the
whole family in one place and anything else is a bug. The tree::

    WayangError
    ├── UsageError             bad arguments on the command line or API (exit status 2)
    ├── DefinitionError        a workflow definition is invalid; carries every diagnostic found
    │   └── PlanError          parameter values or overrides do not fit the definition
    └── ExpressionError        an expression does not parse or cannot be evaluated

Errors carry a message that says what went wrong and what to do next; none ever needs a traceback
to be understood.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """How bad a diagnostic is: errors make a definition invalid, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding about a file, pointing at a line and column (both 1-based)."""

    file: str
    line: int
    column: int
    message: str
    severity: Severity = Severity.ERROR
    code: str = "invalid"

    def format(self) -> str:
        """Render as ``path:line:col: error: message`` — the form editors and compilers use.

        A diagnostic about something not in a file (a ``--param`` value) has line 0 and renders
        as ``where: error: message``.
        """
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.severity.value}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
        }


class WayangError(Exception):
    """Root of every error Wayang raises on purpose."""

    exit_code: int = 1


class UsageError(WayangError):
    """Bad arguments: an unknown option value, a malformed ``--param``, a missing file."""

    exit_code = 2


class DefinitionError(WayangError):
    """A workflow definition is invalid; ``diagnostics`` lists every problem, in file order."""

    exit_code = 2

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        count = len(self.diagnostics)
        first = self.diagnostics[0].format() if count else "invalid definition"
        super().__init__(first if count == 1 else f"{first} (and {count - 1} more)")


class PlanError(DefinitionError):
    """Parameter values or overrides given for a run do not fit the definition."""


class ExpressionError(WayangError):
    """An expression is malformed or failed to evaluate.

    ``offset`` is the 0-based character offset of the problem inside the expression's source text,
    so a caller that knows where the text sits in a file can point at the exact column.
    """

    exit_code = 2

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
