"""Wayang's typed way to declare steps: ``@step`` on a handler, with ``topic``, ``http``, ``cron``.

::

    from wayang.steps import cron, http, step, topic

    @step(name="Greet", subscribes=["greet"], emits=[topic("greeted", label="done")])
    async def greet(input, ctx): ...

    @step(name="Create", trigger=http("POST", "/orders/:id", body=Order), emits=["order.created"])
    async def create(req, ctx): ...

    @step(name="Tick", trigger=cron("*/5 * * * *"), emits=["tick"])
    def tick(ctx): ...

    manual = noop(name="ManualReview", virtual_emits=["review.done"])

Each helper only writes down the same ``config`` dict a Motia-style file would hold (see
:meth:`StepDeclaration.config`), and discovery reads it with the same code, so both forms give the
same StepDef and the same diagnostics. A file may declare several steps this way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict, TypeVar

__all__ = [
    "CronTrigger",
    "HttpTrigger",
    "RetryOptions",
    "StepDeclaration",
    "Topic",
    "cron",
    "declaration_of",
    "http",
    "noop",
    "step",
    "topic",
]

ATTRIBUTE: Final = "__wayang_step__"
F = TypeVar("F", bound=Callable[..., Any])
SchemaSpec = Mapping[str, Any] | type  # a JSON Schema dict or a pydantic model class


class RetryOptions(TypedDict, total=False):
    """Delivery retries, as the ``retry`` config key takes them."""

    attempts: int
    delay: str | float
    backoff: float
    maxDelay: str | float


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic to subscribe to or emit; ``label`` and ``conditional`` only change the drawing."""

    name: str
    label: str = ""
    conditional: bool = False

    def emit_entry(self) -> str | dict[str, Any]:
        if not self.label and not self.conditional:
            return self.name
        entry: dict[str, Any] = {"topic": self.name, "label": self.label}
        return entry | ({"conditional": True} if self.conditional else {})


def topic(name: str, *, label: str = "", conditional: bool = False) -> Topic:
    """A topic, with an optional label and conditional flag for flow drawings."""
    return Topic(name, label, conditional)


@dataclass(frozen=True, slots=True)
class HttpTrigger:
    """Run the step for HTTP requests to ``method path``."""

    method: str
    path: str
    body: SchemaSpec | None = None
    response: Mapping[int, SchemaSpec] | None = None
    query_params: Sequence[Mapping[str, Any]] = ()
    middleware: Sequence[Callable[..., Any]] = ()

    def config(self) -> dict[str, Any]:
        keys: dict[str, Any] = {"type": "api", "method": self.method, "path": self.path}
        optional = {
            "bodySchema": self.body,
            "responseSchema": self.response,
            "queryParams": list(self.query_params) or None,
            "middleware": list(self.middleware) or None,
        }
        return keys | {key: value for key, value in optional.items() if value is not None}


def http(
    method: str,
    path: str,
    *,
    body: SchemaSpec | None = None,
    response: Mapping[int, SchemaSpec] | None = None,
    query_params: Sequence[Mapping[str, Any]] = (),
    middleware: Sequence[Callable[..., Any]] = (),
) -> HttpTrigger:
    """An API trigger: ``http("POST", "/orders/:id", body=Order)``."""
    return HttpTrigger(method, path, body, response, query_params, middleware)


@dataclass(frozen=True, slots=True)
class CronTrigger:
    """Run the step on a five-field cron schedule."""

    expression: str

    def config(self) -> dict[str, Any]:
        return {"type": "cron", "cron": self.expression}


def cron(expression: str) -> CronTrigger:
    """A cron trigger: ``cron("*/5 * * * *")``."""
    return CronTrigger(expression)


@dataclass(frozen=True, slots=True)
class StepDeclaration:
    """A step declared with the helpers: its config dict, where it was written, its module."""

    config: Mapping[str, Any]
    line: int
    module: str
    handler: Callable[..., Any] | None = field(default=None, compare=False)


def step(
    *,
    name: str,
    trigger: HttpTrigger | CronTrigger | None = None,
    subscribes: Sequence[str | Topic] = (),
    emits: Sequence[str | Topic] = (),
    input: SchemaSpec | None = None,
    flows: Sequence[str] = (),
    description: str = "",
    virtual_emits: Sequence[str | Topic] = (),
    virtual_subscribes: Sequence[str | Topic] = (),
    retry: RetryOptions | None = None,
    ordered: bool = False,
) -> Callable[[F], F]:
    """Declare the decorated function as the handler of a step.

    Without ``trigger`` the step is an event step run for each message on ``subscribes``.
    """
    config = _base(name, description, flows, virtual_emits, virtual_subscribes)
    config |= _trigger_keys(trigger, subscribes, input)
    config |= _wayang_keys(emits, retry, ordered)

    def attach(handler: F) -> F:
        code = getattr(handler, "__code__", None)
        line = code.co_firstlineno if code is not None else 1
        module = getattr(handler, "__module__", "") or ""
        setattr(handler, ATTRIBUTE, StepDeclaration(config, line, module, handler))
        return handler

    return attach


def noop(
    *,
    name: str,
    virtual_emits: Sequence[str | Topic] = (),
    virtual_subscribes: Sequence[str | Topic] = (),
    flows: Sequence[str] = (),
    description: str = "",
) -> StepDeclaration:
    """Declare a noop step (a box in a flow drawing, run by nothing); assign it to a name."""
    caller = sys._getframe(1)
    config = _base(name, description, flows, virtual_emits, virtual_subscribes)
    return StepDeclaration(config | {"type": "noop"}, caller.f_lineno, caller.f_globals["__name__"])


def declaration_of(value: object) -> StepDeclaration | None:
    """The declaration the helpers attached to ``value`` (or that ``value`` is), if any."""
    if isinstance(value, StepDeclaration):
        return value
    found = getattr(value, ATTRIBUTE, None) if callable(value) else None
    return found if isinstance(found, StepDeclaration) else None


def _base(
    name: str,
    description: str,
    flows: Sequence[str],
    virtual_emits: Sequence[str | Topic],
    virtual_subscribes: Sequence[str | Topic],
) -> dict[str, Any]:
    config: dict[str, Any] = {"name": name, "flows": list(flows)}
    if description:
        config["description"] = description
    if virtual_emits:
        config["virtualEmits"] = [_emit_entry(item) for item in virtual_emits]
    if virtual_subscribes:
        config["virtualSubscribes"] = [_topic_name(item) for item in virtual_subscribes]
    return config


def _trigger_keys(
    trigger: HttpTrigger | CronTrigger | None,
    subscribes: Sequence[str | Topic],
    input: SchemaSpec | None,
) -> dict[str, Any]:
    # Keys that do not fit the trigger are passed on anyway, so the step gets the same warning
    # a config dict with them would.
    config: dict[str, Any] = {"type": "event"} if trigger is None else trigger.config()
    if subscribes or trigger is None:
        config["subscribes"] = [_topic_name(item) for item in subscribes]
    return config | ({"input": input} if input is not None else {})


def _wayang_keys(
    emits: Sequence[str | Topic], retry: RetryOptions | None, ordered: bool
) -> dict[str, Any]:
    config: dict[str, Any] = {"emits": [_emit_entry(item) for item in emits]}
    if retry is not None:
        config["retry"] = dict(retry)
    if ordered:
        config["ordered"] = True
    return config


def _emit_entry(item: str | Topic) -> str | dict[str, Any]:
    return item.emit_entry() if isinstance(item, Topic) else item


def _topic_name(item: str | Topic) -> str:
    return item.name if isinstance(item, Topic) else item
