"""A steps project: its root folder and the optional ``wayang.toml`` there.

::

    environment = "dev"          # the name the step registry's activation state is kept under

    [steps]
    folders = ["steps", "src"]   # where step files are looked for, relative to the root

    [state]
    adapter = "file"             # "file" (in .wayang/), "store" (the engine's database) or "redis"
    url = "redis://127.0.0.1:6379/0"

    [dev]
    host = "127.0.0.1"
    port = 3000

    [workspaces]                 # each run in its own git worktree / jj workspace
    mode = "per-run"             # or "off"; see wayang.workspace.settings for every key

Every key is optional. The root is the nearest folder at or above the starting one that holds a
``wayang.toml``; the search stops at a folder holding ``.git`` (a repository's top), and without a
``wayang.toml`` the starting folder itself is the root, with every default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from wayang.errors import DefinitionError, Diagnostic, UsageError
from wayang.model.keys import did_you_mean, model_keys
from wayang.model.source import SourceFile
from wayang.model.toml_positions import toml_error_position
from wayang.workspace.settings import RetentionSettings, WorkspaceSettings

__all__ = [
    "PROJECT_FILE",
    "DevSettings",
    "Project",
    "ProjectConfig",
    "StateSettings",
    "StepsSettings",
    "find_project_root",
    "load_project",
    "parse_project_config",
]

PROJECT_FILE = "wayang.toml"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepsSettings(_Settings):
    """``[steps]``: where step files live."""

    folders: tuple[str, ...] = ("steps", "src")


class StateSettings(_Settings):
    """``[state]``: where ``ctx.state`` keeps its values."""

    adapter: Literal["file", "store", "redis"] = "file"
    url: str = ""


class DevSettings(_Settings):
    """``[dev]``: where ``wayang dev`` listens."""

    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=1, le=65535)


class ProjectConfig(_Settings):
    """The whole of ``wayang.toml``."""

    environment: str = Field(default="dev", min_length=1)
    steps: StepsSettings = StepsSettings()
    state: StateSettings = StateSettings()
    dev: DevSettings = DevSettings()
    workspaces: WorkspaceSettings = WorkspaceSettings()


_TABLES: dict[str, type[BaseModel]] = {
    "steps": StepsSettings,
    "state": StateSettings,
    "dev": DevSettings,
    "workspaces": WorkspaceSettings,
    "workspaces.retention": RetentionSettings,
}


@dataclass(frozen=True, slots=True)
class Project:
    """A project's root, its settings, and the ``wayang.toml`` they came from (if any)."""

    root: Path
    config: ProjectConfig
    file: Path | None = None


def find_project_root(start: Path) -> tuple[Path, Path | None]:
    """The project root for ``start`` and its ``wayang.toml`` (None when there is none)."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return folder, candidate
        if (folder / ".git").exists():
            break
    return start, None


def load_project(start: Path | None = None) -> Project:
    """Find and read the project around ``start`` (default: the current folder).

    Raises UsageError when ``start`` is not a folder or the file cannot be read, and
    DefinitionError with a ``file:line:col`` diagnostic for each problem in ``wayang.toml``.
    """
    folder = (start or Path.cwd()).resolve()
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder; run from the project folder or pass its path")
    root, file = find_project_root(folder)
    if file is None:
        return Project(root, ProjectConfig())
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{file}: cannot read it ({exc}); fix or remove the file") from None
    return Project(root, parse_project_config(text, str(file)), file)


def parse_project_config(text: str, filename: str = PROJECT_FILE) -> ProjectConfig:
    """Parse the text of a ``wayang.toml``; DefinitionError lists every problem with its place."""
    source = SourceFile(filename, text)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        position, message = toml_error_position(exc, text)
        source.error_at(position, f"invalid TOML: {message}", "toml")
        raise DefinitionError(source.diagnostics) from None
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        for detail in exc.errors(include_url=False):
            _report(source, detail)
        raise DefinitionError(_sorted(source.diagnostics)) from None


def _report(source: SourceFile, detail: ErrorDetails) -> None:
    loc = tuple(detail["loc"])
    where = ".".join(str(part) for part in loc)
    if detail["type"] == "extra_forbidden":
        key = str(loc[-1])
        table = ".".join(str(part) for part in loc[:-1])
        model = _TABLES.get(table) if len(loc) > 1 else ProjectConfig
        choices = model_keys(model) if model is not None else []
        hint = did_you_mean(key, choices) or f"; the keys here are {', '.join(choices)}"
        source.key_error(loc, f"unknown key '{where}'{hint}", "unknown-key")
        return
    message = detail["msg"]
    if detail["type"] in ("model_type", "model_attributes_type", "dict_type"):
        message = f"must be a table, written [{where}] on a line of its own"
    got = f" (got {_show(detail.get('input'))})" if detail["type"] != "missing" else ""
    source.error(loc, f"'{where}': {message}{got}; fix the value in {PROJECT_FILE}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _sorted(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diagnostics, key=lambda d: (d.line, d.column))
