"""Payload schemas: a JSON Schema dict or a pydantic model class, as one :class:`PayloadSchema`.

A step's ``input`` (event steps) or ``bodySchema`` (API steps) may be either. Both become a
``validate`` callable that returns what the handler gets — the dict itself for a JSON Schema, an
instance of the model for pydantic — or raises :class:`PayloadError` naming the failing field as a
dotted path (``items.0.qty``).

JSON Schemas are compiled once with fastjsonschema, and identical schemas (compared as canonical
JSON) share one compiled validator, because compiling costs about half a millisecond and a
project of thousands of steps tends to repeat a few shapes. A pydantic model's JSON Schema is only
built when someone reads it (the Workbench, ``wayang flows --json``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeGuard

import fastjsonschema
import orjson
from pydantic import BaseModel, ValidationError

from wayang.steps.model import PayloadError, PayloadSchema

__all__ = ["SchemaError", "is_model_class", "payload_schema"]

_COMPILED_CACHE_SIZE = 4096


class SchemaError(ValueError):
    """A schema itself is unusable: not a dict or model class, or not valid JSON Schema.

    The message says what is wrong; the caller knows the file and line and adds them.
    """


def is_model_class(value: object) -> TypeGuard[type[BaseModel]]:
    """Whether ``value`` is a pydantic model class (not an instance)."""
    return isinstance(value, type) and issubclass(value, BaseModel)


def payload_schema(spec: object, where_label: str) -> PayloadSchema | None:
    """Turn a JSON Schema dict or a pydantic model class into a :class:`PayloadSchema`.

    ``None`` gives ``None`` (no checking). ``where_label`` names what the schema belongs to
    (``"input of step 'ProcessOrder'"``) in the :class:`SchemaError` raised for a bad schema.
    """
    if spec is None:
        return None
    if is_model_class(spec):
        return _model_schema(spec)
    if isinstance(spec, Mapping):
        return _json_schema(spec, where_label)
    raise SchemaError(
        f"{where_label} must be a JSON Schema dict or a pydantic model class, "
        f"not {type(spec).__name__}"
    )


# --- pydantic ----------------------------------------------------------------------------------


def _model_schema(model: type[BaseModel]) -> PayloadSchema:
    def validate(data: Any) -> BaseModel:
        if isinstance(data, model):
            return data
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise _model_error(exc) from None

    return PayloadSchema(validate, _LazyMapping(model.model_json_schema), model)


def _model_error(exc: ValidationError) -> PayloadError:
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"])
    message = first["msg"]
    if first["type"] != "missing" and "input" in first:
        message += f" (got {_show(first['input'])})"
    return PayloadError(field, message)


class _LazyMapping(Mapping[str, Any]):
    """A mapping computed on first access (a model's JSON Schema costs time to build)."""

    __slots__ = ("_build", "_value")

    def __init__(self, build: Callable[[], Mapping[str, Any]]) -> None:
        self._build = build
        self._value: Mapping[str, Any] | None = None

    def _get(self) -> Mapping[str, Any]:
        if self._value is None:
            self._value = self._build()
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(dict(self._get()))


# --- JSON Schema -------------------------------------------------------------------------------


def _json_schema(spec: Mapping[str, Any], where_label: str) -> PayloadSchema:
    try:
        check = _compile(spec)
    except (fastjsonschema.JsonSchemaDefinitionException, re.error, ValueError, TypeError) as exc:
        raise SchemaError(
            f"{where_label} is not a valid JSON Schema: {exc}; fix the schema "
            "(see https://json-schema.org/understanding-json-schema/)"
        ) from None

    def validate(data: Any) -> Any:
        try:
            return check(data)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _value_error(exc) from None

    return PayloadSchema(validate, spec)


def _compile(spec: Mapping[str, Any]) -> Callable[[Any], Any]:
    try:
        canonical = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        # Not plain JSON (say, a set inside): compile it as is, without sharing.
        return _LazyValidator(dict(spec))
    return _compile_canonical(canonical)


@functools.lru_cache(maxsize=_COMPILED_CACHE_SIZE)
def _compile_canonical(canonical: bytes) -> Callable[[Any], Any]:
    return _LazyValidator(orjson.loads(canonical))


class _LazyValidator:
    """A fastjsonschema validator whose generated code is compiled on first use.

    fastjsonschema writes Python source for a schema (about 0.2 ms, and where a bad schema is
    found), then compiles it (about 0.5 ms). Only the first part runs at load time, so a project
    of thousands of steps loads fast and a step that never runs never pays for the second.
    """

    __slots__ = ("_check", "_code", "_generator", "_scope")

    def __init__(self, definition: dict[str, Any]) -> None:
        resolver, generator = fastjsonschema._factory(definition, {})
        self._code: str = generator.func_code  # raises for an invalid schema
        self._generator = generator
        self._scope: str = resolver.get_scope_name()
        self._check: Callable[[Any], Any] | None = None

    def __call__(self, data: Any) -> Any:
        if self._check is None:
            state: dict[str, Any] = self._generator.global_state
            exec(self._code, state)  # what fastjsonschema.compile does with its own code
            self._check = state[self._scope]
        return self._check(data)


def _value_error(exc: fastjsonschema.JsonSchemaValueException) -> PayloadError:
    path = [str(part) for part in (exc.path or [])[1:]]  # the first part is always "data"
    rule = exc.rule
    if rule == "required" and isinstance(exc.value, Mapping):
        missing = [key for key in exc.rule_definition or () if key not in exc.value]
        if missing:
            return PayloadError(".".join([*path, str(missing[0])]), "is required but missing")
    if rule == "additionalProperties" and isinstance(exc.value, Mapping):
        return PayloadError(".".join(path), _extra_fields_message(exc))
    prefix = f"{exc.name} "
    reason = exc.message.removeprefix(prefix) if exc.message.startswith(prefix) else exc.message
    return PayloadError(".".join(path), f"{reason} (got {_show(exc.value)})")


def _extra_fields_message(exc: fastjsonschema.JsonSchemaValueException) -> str:
    prefix = f"{exc.name} must not contain "
    listed = exc.message.removeprefix(prefix).removesuffix(" properties")
    return f"has fields the schema does not allow: {listed}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
