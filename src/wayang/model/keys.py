"""Which keys a table accepts, for "unknown key … did you mean …" diagnostics."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from wayang.model import spec
from wayang.model.toml_positions import Path


def model_keys(model: type[BaseModel]) -> list[str]:
    """The keys a model accepts as written in TOML (aliases, not Python names)."""
    return [info.alias or name for name, info in model.model_fields.items()]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` — did you mean 'x'?`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


_TABLE_MODELS: dict[Path, type[BaseModel]] = {
    (): spec.Workflow,
    ("requirements",): spec.Requirements,
    ("defaults",): spec.Defaults,
    ("defaults", "retry"): spec.Retry,
}
# Tables nested under a named entry, keyed by the path without the entry names:
# ("actions", <name>, "inputs", <input>) → ("actions", "inputs").
_NESTED_MODELS: dict[Path, type[BaseModel]] = {
    ("actions", "inputs"): spec.ActionInput,
    ("steps", "cases"): spec.DecisionCase,
}
_NAMED_MODELS: dict[str, type[BaseModel]] = {
    "parameters": spec.Parameter,
    "artifacts": spec.Artifact,
    "actions": spec.Action,
}


def table_model(path: Path, raw: Mapping[str, Any]) -> type[BaseModel] | None:
    """The spec model of the table at ``path`` of the raw document, when one is known."""
    match path:
        case ("steps", str(step_id)):
            return _step_model(raw, step_id)
        case (section, _) if section in _NAMED_MODELS:
            return _NAMED_MODELS[section]
        case ("steps", _, "retry"):
            return spec.Retry
    return _TABLE_MODELS.get(path) or _NESTED_MODELS.get(path[:1] + path[2:3] + path[4:])


def _step_model(raw: Mapping[str, Any], step_id: str) -> type[BaseModel] | None:
    steps = raw.get("steps")
    step = steps.get(step_id) if isinstance(steps, dict) else None
    return spec.STEP_MODELS.get(spec.step_kind(step) or "") if isinstance(step, dict) else None


def kinds_accepting(key: str) -> list[str]:
    """The step kinds whose own keys include ``key`` (to suggest setting ``kind``)."""
    common = set(model_keys(spec.StepBase))
    return [
        kind
        for kind, model in spec.STEP_MODELS.items()
        if key in model_keys(model) and key not in common
    ]
