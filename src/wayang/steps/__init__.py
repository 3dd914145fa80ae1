"""Event steps: code-first step files (Motia 0.x style or ``@step``), their registry and project.

A project's ``*.step.py`` / ``*_step.py`` files declare steps that subscribe to topics, serve HTTP
routes or run on a cron schedule; :func:`discover_steps` (or :class:`StepLoader`, which also
reloads) reads them into :class:`StepDef` values, and :class:`StepRegistry` indexes and checks
them as a whole. ``wayang.toml`` and ``wayang.lock`` are read by :func:`load_project` and
:func:`check_lock`.
"""

from __future__ import annotations

# ``cron`` and ``http`` name both helpers (``from wayang.steps import cron, http``) and submodules
# (the cron scheduler, the ASGI app). Importing a submodule binds its name on this package, so
# the submodules are imported first and the helpers, imported after them, keep the names.
from wayang.steps import cron as _cron_scheduler  # noqa: F401
from wayang.steps import http as _http_app  # noqa: F401
from wayang.steps.config import StepSource, step_from_config
from wayang.steps.discovery import DEFAULT_FOLDERS, StepLoader, discover_steps, find_step_files
from wayang.steps.helpers import cron, http, noop, step, topic
from wayang.steps.lock import check_lock, write_lock
from wayang.steps.model import Emit, PayloadError, PayloadSchema, RetryRule, StepDef, Where
from wayang.steps.project import Project, ProjectConfig, load_project
from wayang.steps.registry import FlowEdge, FlowGraph, FlowNode, StepRegistry
from wayang.steps.schema import SchemaError, payload_schema

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
