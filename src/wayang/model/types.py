"""Annotated field types shared by the spec models: ids, durations, compiled expressions."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

from wayang.errors import ExpressionError
from wayang.model.durations import DURATION_PATTERN, check_duration, parse_duration
from wayang.model.expr import Expression, Template, compile_expression, compile_template

WORKFLOW_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
STEP_ID_PATTERN = r"^[A-Za-z_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?$"
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Semantic Versioning 2.0.0, the official grammar.
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)

WorkflowId = Annotated[str, StringConstraints(pattern=WORKFLOW_ID_PATTERN, max_length=128)]
StepId = Annotated[str, StringConstraints(pattern=STEP_ID_PATTERN, max_length=128)]
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=128)]
SemVer = Annotated[str, StringConstraints(pattern=SEMVER_PATTERN, max_length=128)]


def _to_seconds(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("duration", "a duration is a string such as '30s', not a boolean")
    try:
        if isinstance(value, str):
            return parse_duration(value)
        if isinstance(value, int | float):
            return check_duration(float(value))
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None
    raise PydanticCustomError("duration", "a duration is a string such as '30s', '5m' or '1h'")


Duration = Annotated[
    float,
    BeforeValidator(_to_seconds),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": DURATION_PATTERN}, {"type": "number"}],
            "description": "A duration: '500ms', '30s', '5m', '1h30m', '7d', '2w', or seconds.",
        }
    ),
]


def _expression_error(exc: ExpressionError) -> PydanticCustomError:
    return PydanticCustomError(
        "expression", "{message}", {"message": exc.message, "offset": exc.offset}
    )


def _compile_expression(value: Any) -> Any:
    if isinstance(value, Expression):
        return value
    if isinstance(value, bool):
        # `when = true` is natural to write; treat it as the expression it spells.
        value = "true" if value else "false"
    if not isinstance(value, str):
        raise PydanticCustomError("expression", "an expression must be a string")
    try:
        return compile_expression(value)
    except ExpressionError as exc:
        raise _expression_error(exc) from None


def _compile_template(value: Any) -> Any:
    if isinstance(value, Template):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", "expected a string")
    try:
        return compile_template(value)
    except ExpressionError as exc:
        raise _expression_error(exc) from None


def _source(value: Expression | Template) -> str:
    return value.source


ExpressionField = Annotated[
    Expression,
    BeforeValidator(_compile_expression),
    PlainSerializer(_source, return_type=str),
    WithJsonSchema(
        {"type": ["string", "boolean"], "description": "An expression, e.g. params.env == 'prod'"}
    ),
]
TemplateField = Annotated[
    Template,
    BeforeValidator(_compile_template),
    PlainSerializer(_source, return_type=str),
    WithJsonSchema({"type": "string", "description": "Text with ${{ expression }} parts."}),
]
