"""Read ``workflow.toml`` into a :class:`~wayang.model.spec.Workflow`, or report every problem.

The pipeline: size limit → UTF-8 → TOML syntax → structural limits (nesting, integer range, step
count) → shape (pydantic) → meaning (:mod:`wayang.model.validate`). Every failure becomes a
``file:line:col`` diagnostic; nothing a user writes can produce a traceback.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path as FsPath
from typing import Any

import rtoml
from pydantic import ValidationError

from wayang.errors import DefinitionError, Diagnostic, UsageError
from wayang.model.params import INT64_MAX, INT64_MIN
from wayang.model.pydantic_errors import dotted, report_validation_error
from wayang.model.salvage import salvage_workflow
from wayang.model.source import SourceFile
from wayang.model.spec import Workflow
from wayang.model.toml_positions import Path, Position, toml_error_position
from wayang.model.validate import check_workflow

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_STEPS = 50_000
MAX_DEPTH = 32


def load_workflow(path: str | FsPath) -> Workflow:
    """Load and validate the workflow file at ``path``; raise ``DefinitionError`` if invalid."""
    file = FsPath(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise UsageError(
            f"{file}: no such file; create one with 'wayang init' or pass the path to a "
            "workflow.toml"
        ) from None
    except IsADirectoryError:
        raise UsageError(f"{file}: is a directory; pass the path to a workflow.toml") from None
    except OSError as exc:
        raise UsageError(f"{file}: cannot read: {exc.strerror}") from None
    return parse_workflow(data, str(path))


def parse_workflow(data: bytes | str, filename: str = "workflow.toml") -> Workflow:
    """Parse and validate workflow text; raise ``DefinitionError`` listing every problem."""
    source = _decode(data, filename)
    raw = _parse_toml(source)
    _check_limits(raw, source)
    workflow = _validate_shape(raw, source)
    check_workflow(workflow or salvage_workflow(raw), source)
    if source.diagnostics or workflow is None:
        raise DefinitionError(_sorted(source.diagnostics))
    return workflow


def parse_pinned(data: bytes | str, filename: str = "workflow.toml") -> Workflow:
    """Parse a definition pinned in a run's history: it passed :func:`parse_workflow` when the
    run started, so only its shape is validated again, not the checks (faster, and a release
    with stricter checks still carries on the runs an older one accepted)."""
    source = _decode(data, filename)
    workflow = _validate_shape(_parse_pinned_toml(source), source)
    if source.diagnostics or workflow is None:
        raise DefinitionError(_sorted(source.diagnostics))
    return workflow


def _sorted(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    unique = dict.fromkeys(diagnostics)
    return sorted(unique, key=lambda d: (d.line, d.column, d.message))


def _fail(source: SourceFile, position: Position, message: str, code: str) -> DefinitionError:
    source.error_at(position, message, code)
    return DefinitionError(source.diagnostics)


def _decode(data: bytes | str, filename: str) -> SourceFile:
    size = len(data.encode() if isinstance(data, str) else data)
    if size > MAX_FILE_BYTES:
        raise _fail(
            SourceFile(filename, ""),
            Position(1, 1),
            f"file is {size} bytes; the limit is {MAX_FILE_BYTES} (split it into sub-workflows)",
            "too-large",
        )
    if isinstance(data, str):
        return SourceFile(filename, data)
    try:
        return SourceFile(filename, data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        head = data[: exc.start]
        line = head.count(b"\n") + 1
        column = len(head[head.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        raise _fail(
            SourceFile(filename, ""),
            Position(line, column),
            f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8",
            "encoding",
        ) from None


def _parse_toml(source: SourceFile) -> dict[str, Any]:
    text = source.text.removeprefix("\ufeff")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        position, message = toml_error_position(exc, text)
        raise _fail(source, position, f"invalid TOML: {_explain(message)}", "toml-syntax") from None
    except RecursionError:
        message = f"values are nested too deeply; the limit is {MAX_DEPTH} levels"
        raise _fail(source, Position(1, 1), message, "too-deep") from None
    except ValueError as exc:
        # Python refuses to convert integers of thousands of digits; tomllib lets that through.
        message = f"invalid TOML: {exc}; integers must fit in 64 bits"
        raise _fail(source, Position(1, 1), message, "toml-syntax") from None


def _parse_pinned_toml(source: SourceFile) -> dict[str, Any]:
    """Pinned text with rtoml, a compiled parser (a 500-step chain: 0.8 ms against tomllib's
    11 ms): the text passed tomllib's checks and limits when its run started, so only a
    difference between the two parsers could fail here, and tomllib then has the last word."""
    try:
        parsed: dict[str, Any] = rtoml.loads(source.text.removeprefix("\ufeff"))
    except rtoml.TomlParsingError:  # a difference between the parsers: tomllib judges
        return _parse_toml(source)
    return parsed


_TOML_HINTS = {
    "Illegal character '\\n'": "a string is not closed before the end of the line; close the "
    'quote, or use """triple quotes""" for text over several lines',
    "Invalid value": 'invalid value; text needs quotes ("..."), booleans are true or false',
    "Cannot overwrite a value": "this key is already set above; set each key once",
}


def _explain(message: str) -> str:
    """tomllib's message, made plainer for the mistakes people make most."""
    if message.startswith("Cannot declare"):
        return f"{message}: each [table] header may appear once; merge the two tables"
    return _TOML_HINTS.get(message, message)


def _check_limits(raw: dict[str, Any], source: SourceFile) -> None:
    steps = raw.get("steps")
    if isinstance(steps, dict) and len(steps) > MAX_STEPS:
        source.key_error(("steps",), f"{len(steps)} steps; the limit is {MAX_STEPS}", "too-many")
    _walk_limits(raw, (), source)
    if source.diagnostics:
        raise DefinitionError(_sorted(source.diagnostics))


def _walk_limits(value: Any, path: Path, source: SourceFile) -> None:
    # Iterative, so a pathological document cannot exhaust the Python stack here.
    stack: list[tuple[Any, Path]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if len(where) > MAX_DEPTH:
            message = f"{dotted(where)}: nested more than {MAX_DEPTH} levels deep"
            source.error(where, message, "too-deep")
            continue
        if isinstance(item, Mapping):
            stack.extend((child, (*where, key)) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, (*where, index)) for index, child in enumerate(item))
        elif isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
            source.error(where, f"{dotted(where)}: integer does not fit in 64 bits", "range")


def _validate_shape(raw: dict[str, Any], source: SourceFile) -> Workflow | None:
    try:
        return Workflow.model_validate(raw)
    except ValidationError as exc:
        report_validation_error(exc, source, raw)
        return None
