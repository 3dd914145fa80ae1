"""Translate pydantic validation errors into diagnostics a person can act on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from wayang.model import spec
from wayang.model.keys import did_you_mean, kinds_accepting, model_keys, table_model
from wayang.model.source import SourceFile
from wayang.model.toml_positions import Path

_TYPE_NAMES = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    list: "array",
    dict: "table",
}
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}
_PATTERN_HINTS = {
    "id": "lowercase letters, digits, '.', '_' and '-', starting with a letter or digit",
    "version": "a semantic version such as '1.2.0'",
    "step": "letters, digits, '_' and '-', starting with a letter or '_' and not ending with '-'",
    "name": "letters, digits and '_', starting with a letter or '_'",
    "env": "an environment variable name: letters, digits and '_'",
    "topic": "letters, digits and '.', '_', ':', '/', '-'",
    "tools": "a tool name with an optional version constraint, such as 'python3 >= 3.11'",
}


def type_name(value: Any) -> str:
    """The TOML word for a Python value's type."""
    return next((name for kind, name in _TYPE_NAMES.items() if isinstance(value, kind)), "value")


def dotted(path: Path) -> str:
    """``("steps", "build", "needs", 0)`` → ``steps.build.needs[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def report_validation_error(
    error: ValidationError, source: SourceFile, raw: Mapping[str, Any]
) -> None:
    """Add one diagnostic per pydantic error to ``source``."""
    for detail in error.errors(include_url=False):
        _report(detail, _clean_loc(detail["loc"]), source, raw)


def _clean_loc(loc: tuple[int | str, ...]) -> Path:
    """Drop the step-kind union tag pydantic inserts after ``steps.<id>``."""
    if len(loc) >= 3 and loc[0] == "steps" and loc[2] in spec.STEP_MODELS:
        return (*loc[:2], *loc[3:])
    return tuple(loc)


def _report(detail: ErrorDetails, loc: Path, source: SourceFile, raw: Mapping[str, Any]) -> None:
    kind = detail["type"]
    if kind == "extra_forbidden":
        source.key_error(loc, _unknown_key(loc, raw), "unknown-key")
    elif kind == "missing":
        source.key_error(loc[:-1], f"{dotted(loc[:-1])}: missing required key '{loc[-1]}'", kind)
    elif loc and loc[-1] == "[key]":
        _report_key(detail, loc[:-1], source)
    elif kind == "expression":
        ctx = detail.get("ctx") or {}
        message = f"{dotted(loc)}: invalid expression: {ctx.get('message', detail['msg'])}"
        source.error_in_string(loc, int(ctx.get("offset", 0)), message, kind)
    elif kind in ("requires", "conflict"):
        source.key_error(loc, f"{dotted(loc)}: {detail['msg']}", kind)
    elif kind == "step_kind":
        source.error((*loc, "kind"), f"{dotted(loc)}: {_describe(detail, loc)}", kind)
    else:
        source.error(loc, f"{dotted(loc)}: {_describe(detail, loc)}", kind)


def _report_key(detail: ErrorDetails, loc: Path, source: SourceFile) -> None:
    what = {"steps": "step id", "parameters": "parameter name", "env": "variable name"}
    section = next((str(p) for p in reversed(loc[:-1]) if str(p) in what), "")
    label = what.get(section, "name")
    hint = _hint_for((*loc[:-1], ""))
    source.key_error(loc, f"invalid {label} '{loc[-1]}': use {hint}", "invalid-name")


def _unknown_key(loc: Path, raw: Mapping[str, Any]) -> str:
    key, parent = str(loc[-1]), loc[:-1]
    where = f"in {dotted(parent)}" if parent else "at the top level"
    model = table_model(parent, raw)
    message = f"unknown key '{key}' {where}"
    if model is None:
        return message
    kinds = kinds_accepting(key) if parent[:1] == ("steps",) and len(parent) == 2 else []
    if kinds:
        return (
            f"{message}: '{key}' belongs to {_alternatives(kinds)} steps; set kind = \"{kinds[0]}\""
        )
    return message + did_you_mean(key, model_keys(model))


def _describe(detail: ErrorDetails, loc: Path) -> str:
    kind, value = detail["type"], detail.get("input")
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {type_name(value)} {_show(value)}"
    if kind == "literal_error":
        expected = (detail.get("ctx") or {}).get("expected", "")
        choices = [c.strip(" '") for c in str(expected).replace(" or ", ",").split(",")]
        return f"must be one of {expected} (got {_show(value)}){did_you_mean(str(value), choices)}"
    if kind == "step_kind":
        raw_kind = _raw_kind(value)
        guess = did_you_mean(raw_kind, spec.STEP_KINDS) if isinstance(raw_kind, str) else ""
        kinds = ", ".join(spec.STEP_KINDS)
        return f"unknown step kind {_show(raw_kind)}{guess or '; kinds are ' + kinds}"
    if kind == "string_pattern_mismatch":
        return f"{_show(value)} is not valid: use {_hint_for(loc)}"
    return _plain(detail)


def _raw_kind(value: Any) -> Any:
    return value.get("kind") if isinstance(value, dict) else value


def _hint_for(loc: Path) -> str:
    tail = [str(p) for p in loc if isinstance(p, str)]
    if tail == ["id"]:
        return _PATTERN_HINTS["id"]
    if tail[-1:] == ["version"] and len(tail) == 1:
        return _PATTERN_HINTS["version"]
    for section, hint in (("env", "env"), ("tools", "tools"), ("topic", "topic")):
        if section in tail:
            return _PATTERN_HINTS[hint]
    if tail[:1] == ["steps"] or "needs" in tail or tail[-1:] in (["next"], ["default"]):
        return _PATTERN_HINTS["step"]
    return _PATTERN_HINTS["name"]


def _plain(detail: ErrorDetails) -> str:
    message = detail["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    message = message.replace("Input should be", "must be").replace("Input ", "")
    return message[:1].lower() + message[1:] + _got(detail)


def _got(detail: ErrorDetails) -> str:
    value = detail.get("input")
    if detail["type"] in ("greater_than_equal", "less_than_equal", "too_short", "too_long"):
        return f" (got {_show(value)})"
    return ""


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "table"
    text = (
        repr(value)
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )
    return text if len(text) <= 60 else text[:57] + "..."


def _alternatives(names: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
