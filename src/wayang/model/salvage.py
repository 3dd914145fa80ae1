"""Build the most of a workflow that validates, so meaning checks run beside shape errors.

When the document as a whole fails validation, each parameter, action and step is validated on
its own. What validates is kept; what does not is replaced by a neutral stand-in that keeps its
name (and, for steps, its ``needs``), so references to it are not reported as unknown and the
graph checks still see every edge. The stand-ins produce no diagnostics of their own: the shape
errors already describe them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from wayang.model.spec import (
    Action,
    ActionInput,
    Defaults,
    NoopStep,
    Parameter,
    Requirements,
    Step,
    StepBase,
    Workflow,
)

M = TypeVar("M", bound=BaseModel)
_STEP = TypeAdapter[StepBase](Step)


def salvage_workflow(raw: Mapping[str, Any]) -> Workflow:
    """A workflow of every part of ``raw`` that is valid alone, with stand-ins for the rest."""
    return Workflow.model_construct(
        id=str(raw.get("id", "")),
        parameters=_section(raw, "parameters", _parameter),
        actions=_section(raw, "actions", _action),
        steps=_section(raw, "steps", _step),
        requirements=_one(Requirements, raw.get("requirements"), Requirements()),
        defaults=_one(Defaults, raw.get("defaults"), Defaults()),
    )


def _section(raw: Mapping[str, Any], key: str, build: Any) -> dict[str, Any]:
    table = raw.get(key)
    if not isinstance(table, dict):
        return {}
    return {str(name): build(value) for name, value in table.items()}


def _one(model: type[M], value: Any, fallback: M) -> M:
    try:
        return model.model_validate(value) if value is not None else fallback
    except ValidationError:
        return fallback


def _parameter(value: Any) -> Parameter:
    return _one(Parameter, value, Parameter.model_construct())


def _action(value: Any) -> Action:
    try:
        return Action.model_validate(value)
    except ValidationError:
        names = value.get("inputs") if isinstance(value, dict) else None
        inputs = (
            {str(k): ActionInput.model_construct() for k in names or {}}
            if isinstance(names, dict)
            else {}
        )
        return Action.model_construct(inputs=inputs)


def _step(value: Any) -> StepBase:
    try:
        return _STEP.validate_python(value)
    except ValidationError as exc:
        if isinstance(value, dict):
            trimmed = _without_failing_keys(value, exc)
            if trimmed is not None:
                return _step(trimmed)
        needs = value.get("needs") if isinstance(value, dict) else None
        valid = [n for n in needs if isinstance(n, str)] if isinstance(needs, list) else []
        return NoopStep.model_construct(kind="noop", needs=valid)


def _without_failing_keys(value: dict[str, Any], error: ValidationError) -> dict[str, Any] | None:
    """``value`` minus the keys its errors point at, or ``None`` when nothing can be dropped.

    Dropping a key can only remove errors, so retrying terminates; keys a step cannot do
    without (``kind``) are never dropped, which ends the retries with the stand-in.
    """
    failing = {str(detail["loc"][1]) for detail in error.errors() if len(detail["loc"]) > 1} & set(
        value
    )
    failing.discard("kind")
    if not failing:
        return None
    return {k: v for k, v in value.items() if k not in failing}
