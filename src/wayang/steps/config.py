"""Read one step declaration — a Motia-style ``config`` dict plus its ``handler`` — into a StepDef.

The keys are Motia 0.x's, so step files written for Motia load unmodified:

- ``type: "event"``: ``name``, ``subscribes``, ``emits``, ``input``, ``flows``, ``description``,
  ``virtualEmits``, ``virtualSubscribes``; ``handler(input, ctx)``.
- ``type: "api"``: ``path`` (``/orders/:id``), ``method``, ``emits``, ``bodySchema``,
  ``responseSchema``, ``queryParams``, ``middleware``, ``flows``, ``description``, ``virtualEmits``,
  ``virtualSubscribes``; ``handler(req, ctx)``.
- ``type: "cron"``: ``cron`` (five fields), ``emits``, ``flows``, ``description``; ``handler(ctx)``.
- ``type: "noop"``: ``virtualEmits``, ``virtualSubscribes``, ``flows``, ``description``; no handler.

Wayang adds two keys Motia files simply leave out: ``retry`` (``{"attempts": 5, "delay": "2s",
"backoff": 2, "maxDelay": "1m"}``; event and cron steps) and ``ordered`` (event steps: one delivery
at a time per topic and message key).

Nothing here raises for what a user wrote: every problem becomes a :class:`Diagnostic` at the line
of ``config`` (or of ``def handler`` for handler problems). Unknown keys are warnings; missing or
mistyped keys are errors, and a declaration with errors gives no StepDef.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FunctionType
from typing import Any, Final, cast

from croniter import croniter
from pydantic import BaseModel

from wayang.errors import Diagnostic, Severity
from wayang.model.durations import check_duration, parse_duration
from wayang.model.keys import did_you_mean
from wayang.steps.model import Emit, PayloadSchema, RetryRule, StepDef, StepType, Where
from wayang.steps.schema import SchemaError, is_model_class, payload_schema

__all__ = [
    "HANDLER_PARAMS",
    "KEYS",
    "METHODS",
    "MISSING",
    "STEP_TYPES",
    "StepSource",
    "cron_problem",
    "path_problem",
    "step_from_config",
]


class _Missing:
    """The type of :data:`MISSING`: a module that defines no ``handler`` at all."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

STEP_TYPES: Final[tuple[StepType, ...]] = ("event", "api", "cron", "noop")
METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
HANDLER_PARAMS: Final[Mapping[str, tuple[str, ...]]] = {
    "event": ("input", "ctx"),
    "api": ("req", "ctx"),
    "cron": ("ctx",),
}

_BASE = ("type", "name", "description", "flows", "virtualEmits", "virtualSubscribes")
KEYS: Final[Mapping[str, frozenset[str]]] = {
    "event": frozenset({*_BASE, "subscribes", "emits", "input", "retry", "ordered"}),
    "api": frozenset(
        {*_BASE, "path", "method", "emits", "bodySchema", "responseSchema", "queryParams"}
        | {"middleware"}
    ),
    "cron": frozenset({*_BASE, "cron", "emits", "retry"}),
    "noop": frozenset(_BASE),
}
# Keys of Motia and its cloud that Wayang accepts but does not use: say so rather than "unknown".
_IGNORED: Final = {
    "includeFiles": "Wayang runs step files in place, so 'includeFiles' is not needed",
    "infrastructure": "Wayang ignores Motia Cloud's 'infrastructure'; use 'retry' and 'ordered'",
}
_RETRY_KEYS: Final = ("attempts", "delay", "backoff", "maxDelay")
_PLACEHOLDER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class StepSource:
    """Where a declaration is written: the file (as shown to users), the line of ``config``
    (or of the decorator) and the line of ``def handler`` (0 when unknown: use ``line``)."""

    file: Path
    line: int = 1
    handler_line: int = 0


def step_from_config(
    config: object, handler: object, source: StepSource
) -> tuple[StepDef | None, list[Diagnostic]]:
    """Check ``config`` and ``handler`` (or :data:`MISSING`); give the StepDef and diagnostics.

    The StepDef is ``None`` when any diagnostic is an error.
    """
    reader = _Reader(config if isinstance(config, Mapping) else {}, source)
    if not isinstance(config, Mapping):
        reader.error(
            f"'config' must be a dict, not {type(config).__name__}; write "
            'config = {"type": "event", "name": ..., "subscribes": [...], "emits": [...]}',
            "step-config",
        )
        return None, reader.diagnostics
    kind = _step_type(reader)
    if kind is None:
        return None, reader.diagnostics
    reader.kind = kind
    reader.check_keys()
    handler_fields, model = _HANDLER_READERS[kind](reader, handler)
    fields = _common_fields(reader) | handler_fields | _TYPE_READERS[kind](reader, model)
    if reader.failed:
        return None, reader.diagnostics
    where = Where(source.file, source.line)
    return StepDef(type=kind, where=where, config=config, **fields), reader.diagnostics


# --- reading keys ------------------------------------------------------------------------------


class _Reader:
    """Typed access to a config's keys, collecting a diagnostic for each problem."""

    def __init__(self, config: Mapping[str, Any], source: StepSource) -> None:
        self.config = config
        self.source = source
        self.kind: StepType = "event"
        self.diagnostics: list[Diagnostic] = []
        self.failed = False
        name = config.get("name")
        self.label = f"step '{name}'" if isinstance(name, str) and name else "this step"

    def error(self, message: str, code: str, line: int = 0) -> None:
        self.failed = True
        self._add(message, code, line, Severity.ERROR)

    def warn(self, message: str, code: str, line: int = 0) -> None:
        self._add(message, code, line, Severity.WARNING)

    def _add(self, message: str, code: str, line: int, severity: Severity) -> None:
        where = line or self.source.line
        text = f"{self.label}: {message}"
        self.diagnostics.append(Diagnostic(str(self.source.file), where, 1, text, severity, code))

    def check_keys(self) -> None:
        allowed = KEYS[self.kind]
        for key in self.config:
            if key in allowed:
                continue
            if key in _IGNORED:
                self.warn(f"{_IGNORED[key]}; remove it to silence this warning", "step-key")
                continue
            self.warn(self._unknown_key(str(key), allowed), "step-key")

    def _unknown_key(self, key: str, allowed: frozenset[str]) -> str:
        owners = [kind for kind, keys in KEYS.items() if key in keys]
        if owners:
            return (
                f"'{key}' is a key of {' and '.join(owners)} steps, not of {self.kind} steps; "
                f"it is ignored — remove it or change 'type'"
            )
        hint = did_you_mean(key, sorted(allowed))
        return f"unknown key '{key}' is ignored{hint or '; remove it'}"

    def mistyped(self, key: str, expected: str, example: str) -> None:
        got = type(self.config[key]).__name__
        self.error(f"'{key}' must be {expected}, not {got}; write {example}", "step-key-type")

    def text(self, key: str, *, required: bool = False, example: str = "") -> str:
        value = self.config.get(key)
        if value is None:
            if required:
                self.error(f"missing required key '{key}'; add {example}", "step-key-missing")
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            self.mistyped(key, "a non-empty string", example or f'"{key}": "..."')
            return ""
        return value

    def strings(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        value = self.config.get(key)
        example = f'"{key}": ["order.created"]' if key != "flows" else '"flows": ["orders"]'
        if value is None:
            if required:
                self.error(f"missing required key '{key}'; add {example}", "step-key-missing")
            return ()
        if not isinstance(value, list | tuple) or not all(
            isinstance(item, str) and item for item in value
        ):
            self.mistyped(key, "a list of non-empty strings", example)
            return ()
        return tuple(value)

    def flag(self, key: str) -> bool:
        value = self.config.get(key, False)
        if not isinstance(value, bool):
            self.mistyped(key, "true or false", f'"{key}": True')
            return False
        return value

    def emits(self, key: str) -> tuple[Emit, ...]:
        value = self.config.get(key)
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            self.mistyped(key, "a list of topics", f'"{key}": ["order.processed"]')
            return ()
        found = (_emit(self, key, index, item) for index, item in enumerate(value))
        return tuple(emit for emit in found if emit is not None)

    def schema(self, key: str, spec: object) -> PayloadSchema | None:
        try:
            return payload_schema(spec, f"'{key}'")
        except SchemaError as exc:
            self.error(str(exc), "step-schema")
            return None


def _emit(reader: _Reader, key: str, index: int, item: object) -> Emit | None:
    if isinstance(item, str) and item:
        return Emit(item)
    if not isinstance(item, Mapping) or not isinstance(item.get("topic"), str) or not item["topic"]:
        reader.error(
            f"'{key}[{index}]' must be a topic string or "
            '{"topic": "order.shipped", "label": "...", "conditional": True}, '
            f"not {item!r}",
            "step-key-type",
        )
        return None
    for extra in set(item) - {"topic", "label", "conditional"}:
        reader.warn(f"unknown key '{extra}' in '{key}[{index}]' is ignored", "step-key")
    label, conditional = item.get("label", ""), item.get("conditional", False)
    if not isinstance(label, str) or not isinstance(conditional, bool):
        reader.error(
            f"in '{key}[{index}]', 'label' must be a string and 'conditional' true or false",
            "step-key-type",
        )
        return None
    return Emit(item["topic"], label, conditional)


def _step_type(reader: _Reader) -> StepType | None:
    value = reader.config.get("type")
    if value in STEP_TYPES:
        return cast(StepType, value)
    choices = ", ".join(f"'{kind}'" for kind in STEP_TYPES)
    if value is None:
        reader.error(f"missing required key 'type'; set it to one of {choices}", "step-type")
    else:
        hint = did_you_mean(value, STEP_TYPES) if isinstance(value, str) else ""
        reader.error(f"'type' must be one of {choices}, not {value!r}{hint}", "step-type")
    return None


def _common_fields(reader: _Reader) -> dict[str, Any]:
    return {
        "name": reader.text("name", required=True, example='"name": "ProcessOrder"'),
        "description": reader.text("description"),
        "flows": reader.strings("flows"),
        "virtual_emits": reader.emits("virtualEmits"),
        "virtual_subscribes": reader.strings("virtualSubscribes"),
    }


# --- the handler -------------------------------------------------------------------------------

_HandlerFields = tuple[dict[str, Any], "type[BaseModel] | None"]


def _noop_handler(reader: _Reader, handler: object) -> _HandlerFields:
    if handler is not MISSING and handler is not None:
        reader.warn(
            "noop steps have no handler, so this 'handler' is never called; remove it, or make "
            "the step an event step",
            "step-handler",
            reader.source.handler_line,
        )
    return {}, None


def _runnable_handler(reader: _Reader, handler: object) -> _HandlerFields:
    """The handler's StepDef fields, and the model its first parameter is annotated with."""
    params = ", ".join(HANDLER_PARAMS[reader.kind])
    if handler is MISSING or handler is None:
        reader.error(
            f"{reader.kind} steps need a handler; define `async def handler({params})` "
            "in this file",
            "step-handler",
        )
        return {}, None
    if not callable(handler):
        reader.error(
            f"'handler' must be a function, not {type(handler).__name__}; "
            f"define `async def handler({params})`",
            "step-handler",
            reader.source.handler_line,
        )
        return {}, None
    shape = _shape(handler)
    if shape is not None:
        _check_signature(reader, handler, shape)
    event = reader.kind == "event"
    model = _annotated_model(reader, handler, shape) if event and shape is not None else None
    style = "model" if model is not None else "dict"
    fields = {"handler": handler, "handler_is_async": _is_async(handler), "handler_style": style}
    return fields, model


def _is_async(handler: Callable[..., Any]) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a handler accepts: its positional parameter names and how many are required."""

    positional: tuple[str, ...]
    required: int
    varargs: bool
    keyword_required: bool


def _shape(handler: Callable[..., Any]) -> _Shape | None:
    """The handler's parameters; read off the code object for a plain function (inspect.signature
    costs ~50µs, which adds up over thousands of steps). None when they cannot be known."""
    if isinstance(handler, FunctionType) and not hasattr(handler, "__wrapped__"):
        code = handler.__code__
        count, kw_count = code.co_argcount, code.co_kwonlyargcount
        keywords = code.co_varnames[count : count + kw_count]
        return _Shape(
            positional=code.co_varnames[:count],
            required=count - len(handler.__defaults__ or ()),
            varargs=bool(code.co_flags & inspect.CO_VARARGS),
            keyword_required=any(k not in (handler.__kwdefaults__ or {}) for k in keywords),
        )
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return None  # a builtin or C callable: nothing to check
    kinds = inspect.Parameter
    positional = [
        p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    ]
    return _Shape(
        positional=tuple(p.name for p in positional),
        required=sum(p.default is p.empty for p in positional),
        varargs=any(p.kind is kinds.VAR_POSITIONAL for p in params),
        keyword_required=any(p.kind is kinds.KEYWORD_ONLY and p.default is p.empty for p in params),
    )


def _check_signature(reader: _Reader, handler: Callable[..., Any], shape: _Shape) -> None:
    expected = HANDLER_PARAMS[reader.kind]
    problem = _signature_problem(shape, len(expected))
    if problem:
        params = ", ".join(expected)
        reader.error(
            f"handler{_signature_text(handler)} {problem}, but {reader.kind} steps call "
            f"handler({params}); define `async def handler({params})`",
            "step-signature",
            reader.source.handler_line,
        )


def _signature_text(handler: Callable[..., Any]) -> str:
    try:
        return str(inspect.signature(handler))
    except (TypeError, ValueError):  # pragma: no cover - _shape already read it
        return "(...)"


def _signature_problem(shape: _Shape, count: int) -> str:
    if shape.keyword_required:
        return "has a required keyword-only parameter"
    if shape.required > count:
        return f"requires {shape.required} arguments"
    if len(shape.positional) < count and not shape.varargs:
        return f"takes {len(shape.positional)} argument{'s' if len(shape.positional) != 1 else ''}"
    return ""


def _annotated_model(
    reader: _Reader, handler: Callable[..., Any], shape: _Shape
) -> type[BaseModel] | None:
    """The pydantic model the handler's first parameter is annotated with, if any."""
    if not shape.positional:
        return None
    name = shape.positional[0]
    try:
        annotation = getattr(handler, "__annotations__", {}).get(name)
        if isinstance(annotation, str):
            annotation = typing.get_type_hints(handler).get(name)
    except Exception as exc:  # a NameError, or anything an annotation may raise
        reader.warn(
            f"cannot resolve the annotation of the handler's '{name}' "
            f"({type(exc).__name__}: {exc}); the handler gets the payload as a dict — import "
            "the model at module level to use it",
            "step-annotation",
            reader.source.handler_line,
        )
        return None
    return annotation if is_model_class(annotation) else None


# --- keys of each step type --------------------------------------------------------------------


def _event_fields(reader: _Reader, model: type[BaseModel] | None) -> dict[str, Any]:
    subscribes = reader.strings("subscribes", required=True)
    if "subscribes" in reader.config and not subscribes and not reader.failed:
        reader.warn("'subscribes' is empty, so this step never runs", "step-subscribes")
    return {
        "subscribes": subscribes,
        "emits": reader.emits("emits"),
        "input": _event_input(reader, model),
        "retry": _retry(reader),
        "ordered": reader.flag("ordered"),
    }


def _event_input(reader: _Reader, model: type[BaseModel] | None) -> PayloadSchema | None:
    spec = reader.config.get("input")
    if model is None or spec is model:
        return reader.schema("input", spec)
    if spec is None:
        return reader.schema("input", model)
    if is_model_class(spec):
        reader.error(
            f"'input' is {spec.__name__} but the handler's first parameter is annotated "
            f"{model.__name__}; use one model for both, or drop 'input'",
            "step-schema",
        )
        return None
    schema = reader.schema("input", spec)
    return _then_model(schema, model) if schema is not None else None


def _then_model(schema: PayloadSchema, model: type[BaseModel]) -> PayloadSchema:
    """Check with the JSON Schema of ``input``, then build the model the handler annotates."""
    to_model = payload_schema(model, "handler annotation")
    assert to_model is not None  # a model class always gives a schema

    def validate(data: Any) -> Any:
        return to_model.validate(schema.validate(data))

    return PayloadSchema(validate, schema.json_schema, model)


def _api_fields(reader: _Reader, model: type[BaseModel] | None) -> dict[str, Any]:
    del model  # API handlers take a request, never a model
    return {
        "path": _api_path(reader),
        "method": _api_method(reader),
        "emits": reader.emits("emits"),
        "body_schema": reader.schema("bodySchema", reader.config.get("bodySchema")),
        "response_schema": _mapping(reader, "responseSchema", '{200: {"type": "object"}}'),
        "query_params": _query_params(reader),
        "middleware": _middleware(reader),
    }


def _api_method(reader: _Reader) -> str:
    method = reader.text("method", required=True, example='"method": "POST"').upper()
    if method and method not in METHODS:
        hint = did_you_mean(method, sorted(METHODS))
        reader.error(f"'method' {method!r} is not an HTTP method{hint}", "step-method")
    return method


def _api_path(reader: _Reader) -> str:
    path = reader.text("path", required=True, example='"path": "/orders/:id"')
    problem = path_problem(path) if path else ""
    if problem:
        reader.error(f"'path' {path!r} {problem}", "step-path")
    return path


def path_problem(path: str) -> str:
    """What is wrong with an API path (``/orders/:id``), or an empty string."""
    if not path.startswith("/"):
        return "must start with '/'; write it like '/orders/:id'"
    if any(char.isspace() or char in "?#" for char in path):
        return "must not contain spaces, '?' or '#'; declare query parameters in 'queryParams'"
    names = [part[1:] for part in path.split("/") if part.startswith(":")]
    bad = [name for name in names if not _PLACEHOLDER.match(name)]
    if bad:
        return f"has a placeholder ':{bad[0]}' that is not a name; write ':id' or ':order_id'"
    if len(set(names)) != len(names):
        return "uses the same placeholder name twice; give each ':name' its own name"
    return ""


def _mapping(reader: _Reader, key: str, example: str) -> Mapping[str, Any]:
    value = reader.config.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        reader.mistyped(key, "a dict", f'"{key}": {example}')
        return {}
    return value


def _query_params(reader: _Reader) -> tuple[Mapping[str, Any], ...]:
    value = reader.config.get("queryParams")
    if value is None:
        return ()
    ok = isinstance(value, list | tuple) and all(
        isinstance(item, Mapping) and isinstance(item.get("name"), str) for item in value
    )
    if not ok:
        reader.mistyped(
            "queryParams", "a list of dicts with a 'name'", '[{"name": "page", "description": ...}]'
        )
        return ()
    return tuple(value)


def _middleware(reader: _Reader) -> tuple[Callable[..., Any], ...]:
    value = reader.config.get("middleware")
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(callable(item) for item in value):
        reader.mistyped("middleware", "a list of functions", '"middleware": [auth]')
        return ()
    return tuple(value)


def _cron_fields(reader: _Reader, model: type[BaseModel] | None) -> dict[str, Any]:
    del model
    return {"cron": _cron(reader), "emits": reader.emits("emits"), "retry": _retry(reader)}


def _cron(reader: _Reader) -> str:
    expression = reader.text("cron", required=True, example='"cron": "*/5 * * * *"')
    if expression:
        problem = cron_problem(expression)
        if problem:
            reader.error(f"'cron' {expression!r} {problem}", "step-cron")
    return expression.strip()


def cron_problem(expression: str) -> str:
    """What is wrong with a five-field cron expression, or an empty string."""
    fields = expression.split()
    if len(fields) != 5:
        return (
            f"has {len(fields)} fields but needs 5 (minute hour day-of-month month "
            "day-of-week); '*/5 * * * *' runs every five minutes"
        )
    if not croniter.is_valid(expression):
        return "is not a valid cron expression; check each field's range (minute 0-59, hour 0-23)"
    return ""


def _noop_fields(reader: _Reader, model: type[BaseModel] | None) -> dict[str, Any]:
    del reader, model
    return {}


# --- retry -------------------------------------------------------------------------------------


def _retry(reader: _Reader) -> RetryRule:
    value = reader.config.get("retry")
    if value is None:
        return RetryRule()
    example = '{"attempts": 5, "delay": "2s", "backoff": 2}'
    if not isinstance(value, Mapping):
        reader.mistyped("retry", "a dict", f'"retry": {example}')
        return RetryRule()
    for key in value:
        if key not in _RETRY_KEYS:
            hint = did_you_mean(str(key), _RETRY_KEYS) or f"; use {', '.join(_RETRY_KEYS)}"
            reader.warn(f"unknown key '{key}' in 'retry' is ignored{hint}", "step-key")
    try:
        return _retry_rule(value)
    except ValueError as exc:
        reader.error(f"'retry': {exc}; write \"retry\": {example}", "step-retry")
        return RetryRule()


def _retry_rule(value: Mapping[str, Any]) -> RetryRule:
    default = RetryRule()
    attempts = value.get("attempts", default.attempts)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"'attempts' must be a whole number of at least 1, not {attempts!r}")
    backoff = value.get("backoff", default.backoff)
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff < 1:
        raise ValueError(f"'backoff' must be a number of at least 1, not {backoff!r}")
    return RetryRule(
        attempts=attempts,
        delay_s=_seconds(value.get("delay", default.delay_s), "delay"),
        backoff=float(backoff),
        max_delay_s=_seconds(value.get("maxDelay", default.max_delay_s), "maxDelay"),
    )


def _seconds(value: object, key: str) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return check_duration(float(value))
    raise ValueError(f"'{key}' must be a duration such as '500ms' or '2s', or seconds as a number")


_HandlerReader = Callable[[_Reader, object], _HandlerFields]
_HANDLER_READERS: Final[Mapping[str, _HandlerReader]] = {
    "event": _runnable_handler,
    "api": _runnable_handler,
    "cron": _runnable_handler,
    "noop": _noop_handler,
}
_TypeReader = Callable[[_Reader, "type[BaseModel] | None"], dict[str, Any]]
_TYPE_READERS: Final[Mapping[str, _TypeReader]] = {
    "event": _event_fields,
    "api": _api_fields,
    "cron": _cron_fields,
    "noop": _noop_fields,
}
