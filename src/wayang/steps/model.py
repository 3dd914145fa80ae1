"""What a step file declares, once read and checked: the step registry's entries.

Both ways of writing a step — a Motia-style ``config`` dict with a ``handler``, or Wayang's typed
helpers — end up as one :class:`StepDef`. Nothing here imports the step's module or does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

StepType = Literal["event", "api", "cron", "noop"]
HandlerStyle = Literal["dict", "model"]


@dataclass(frozen=True, slots=True)
class Emit:
    """A topic a step emits to; ``label`` and ``conditional`` only change how it is drawn."""

    topic: str
    label: str = ""
    conditional: bool = False


@dataclass(frozen=True, slots=True)
class Where:
    """Where a step is declared: its file and the line of its ``config`` (1-based)."""

    file: Path
    line: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class PayloadSchema:
    """How a payload is checked before the handler runs.

    ``validate(data)`` returns the value the handler gets (the dict itself, or an instance of
    the pydantic model) or raises :class:`PayloadError` naming the failing field.
    ``json_schema`` is the schema as JSON (for the Workbench and ``wayang flows --json``).
    """

    validate: Callable[[Any], Any]
    json_schema: Mapping[str, Any]
    model: type | None = None  # the pydantic model class, when the schema is one


class PayloadError(ValueError):
    """A payload does not match a step's schema; ``field`` is a dotted path (``items.0.qty``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field or '(payload)'}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class RetryRule:
    """Delivery retries: ``attempts`` in all, waiting ``delay_s`` × ``backoff``ⁿ between them."""

    attempts: int = 3
    delay_s: float = 0.5
    backoff: float = 2.0
    max_delay_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """The wait after failed ``attempt`` (1-based)."""
        return min(self.max_delay_s, self.delay_s * self.backoff ** max(0, attempt - 1))


@dataclass(frozen=True, slots=True)
class StepDef:
    """One step of a project, as the registry holds it.

    ``handler`` is the callable to run (None for noop steps); ``handler_is_async`` says whether
    to await it; ``handler_style`` says whether an event handler takes the payload as a dict or
    as the pydantic model it annotates. ``config`` is the declaration as written (for display).
    """

    name: str
    type: StepType
    where: Where
    handler: Callable[..., Any] | None = None
    handler_is_async: bool = False
    handler_style: HandlerStyle = "dict"
    description: str = ""
    flows: tuple[str, ...] = ()
    subscribes: tuple[str, ...] = ()
    emits: tuple[Emit, ...] = ()
    virtual_emits: tuple[Emit, ...] = ()
    virtual_subscribes: tuple[str, ...] = ()
    input: PayloadSchema | None = None
    # api steps
    path: str = ""
    method: str = ""
    body_schema: PayloadSchema | None = None
    response_schema: Mapping[str, Any] = field(default_factory=dict)
    query_params: tuple[Mapping[str, Any], ...] = ()
    middleware: tuple[Callable[..., Any], ...] = ()
    # cron steps
    cron: str = ""
    # Wayang's own keys (Motia files simply leave them out)
    retry: RetryRule = RetryRule()
    ordered: bool = False  # deliver one message at a time per (topic, message key)
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def emit_topics(self) -> tuple[str, ...]:
        return tuple(e.topic for e in self.emits)
