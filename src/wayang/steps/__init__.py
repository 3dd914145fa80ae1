"""Event steps: code-first step files (Motia 0.x style or ``@step``), their registry and project.

A project's ``*.step.py`` / ``*_step.py`` files declare steps that subscribe to topics, serve HTTP
routes or run on a cron schedule; :func:`discover_steps` (or :class:`StepLoader`, which also
reloads) reads them into :class:`StepDef` values, and :class:`StepRegistry` indexes and checks
them as a whole. ``wayang.toml`` and ``wayang.lock`` are read by :func:`load_project` and
:func:`check_lock`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names are imported on first use (PEP 562), so importing one part of the package, as the CLI
# does for every command, does not pay for the rest (pydantic schemas, the ASGI app, Redis).
_HOMES = {
    "StepSource": "config",
    "step_from_config": "config",
    "DEFAULT_FOLDERS": "discovery",
    "StepLoader": "discovery",
    "discover_steps": "discovery",
    "find_step_files": "discovery",
    "cron": "helpers",
    "http": "helpers",
    "noop": "helpers",
    "step": "helpers",
    "topic": "helpers",
    "check_lock": "lock",
    "write_lock": "lock",
    "Emit": "model",
    "PayloadError": "model",
    "PayloadSchema": "model",
    "RetryRule": "model",
    "StepDef": "model",
    "Where": "model",
    "Project": "project",
    "ProjectConfig": "project",
    "load_project": "project",
    "FlowEdge": "registry",
    "FlowGraph": "registry",
    "FlowNode": "registry",
    "StepRegistry": "registry",
    "SchemaError": "schema",
    "payload_schema": "schema",
}

if TYPE_CHECKING:
    from wayang.steps.config import StepSource, step_from_config
    from wayang.steps.discovery import (
        DEFAULT_FOLDERS,
        StepLoader,
        discover_steps,
        find_step_files,
    )
    from wayang.steps.helpers import cron, http, noop, step, topic
    from wayang.steps.lock import check_lock, write_lock
    from wayang.steps.model import Emit, PayloadError, PayloadSchema, RetryRule, StepDef, Where
    from wayang.steps.project import Project, ProjectConfig, load_project
    from wayang.steps.registry import FlowEdge, FlowGraph, FlowNode, StepRegistry
    from wayang.steps.schema import SchemaError, payload_schema


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'wayang.steps' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"wayang.steps.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_FOLDERS",
    "Emit",
    "FlowEdge",
    "FlowGraph",
    "FlowNode",
    "PayloadError",
    "PayloadSchema",
    "Project",
    "ProjectConfig",
    "RetryRule",
    "SchemaError",
    "StepDef",
    "StepLoader",
    "StepRegistry",
    "StepSource",
    "Where",
    "check_lock",
    "cron",
    "discover_steps",
    "find_step_files",
    "http",
    "load_project",
    "noop",
    "payload_schema",
    "step",
    "step_from_config",
    "topic",
    "write_lock",
]
