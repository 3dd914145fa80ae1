"""Parameter values: type checks, pattern and enum rules, and text from the command line."""

from __future__ import annotations

import json
import re
from typing import Any

from wayang.model.spec import Parameter

_TYPE_CHECKS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "path": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}
_ARTICLE = {"integer": "an integer", "array": "an array", "object": "an object"}


def type_phrase(kind: str) -> str:
    """``"integer"`` → ``"an integer"``; ``"string"`` → ``"a string"``."""
    return _ARTICLE.get(kind, f"a {kind}")


def matches_type(kind: str, value: Any) -> bool:
    """Whether ``value`` is of parameter type ``kind`` (booleans are not numbers)."""
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, _TYPE_CHECKS[kind])


def value_problems(parameter: Parameter, value: Any) -> list[str]:
    """Every rule of ``parameter`` that ``value`` breaks, as phrases (empty when it fits)."""
    if not matches_type(parameter.type, value):
        return [f"must be {type_phrase(parameter.type)}, got {json.dumps(value)}"]
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return [f"must fit in 64 bits, got {value}"]
    problems = []
    pattern = parameter.pattern
    if pattern is not None and isinstance(value, str) and re.fullmatch(pattern, value) is None:
        problems.append(f"{value!r} does not match the pattern {parameter.pattern!r}")
    if parameter.enum is not None and value not in parameter.enum:
        allowed = ", ".join(json.dumps(v) for v in parameter.enum)
        problems.append(f"{json.dumps(value)} is not one of {allowed}")
    return problems


def parse_parameter_text(parameter: Parameter, text: str) -> Any:
    """Turn ``--param name=text`` into a value of the parameter's type; ``ValueError`` if not."""
    kind = parameter.type
    if kind in ("string", "path"):
        return text
    if kind == "boolean":
        return _parse_boolean(text)
    if kind == "integer":
        return _parse_integer(text)
    if kind == "number":
        return _parse_number(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"must be {type_phrase(kind)} written as JSON, got {text!r}") from None
    if not matches_type(kind, value):
        raise ValueError(f"must be {type_phrase(kind)} written as JSON, got {text!r}")
    return value


def _parse_boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"must be true or false, got {text!r}")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _parse_integer(text: str) -> int:
    stripped = text.strip()
    if not re.fullmatch(r"[+-]?\d{1,19}", stripped):
        raise ValueError(f"must be an integer, got {text!r}")
    value = int(stripped)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"must fit in 64 bits, got {text!r}")
    return value


def _parse_number(text: str) -> float | int:
    stripped = text.strip()
    if re.fullmatch(r"[+-]?\d{1,19}", stripped):
        return int(stripped)
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", stripped):
        raise ValueError(f"must be a number, got {text!r}")
    return float(stripped)
