"""Wayang: durable workflows for people, AI and systems.

The public API is this short list; everything else is internal and may change.
"""

from wayang.errors import (
    DefinitionError,
    Diagnostic,
    ExpressionError,
    PlanError,
    UsageError,
    WayangError,
)
from wayang.model.loader import load_workflow, parse_workflow
from wayang.model.plan import plan_workflow
from wayang.model.spec import Workflow

__version__ = "0.1.0"

__all__ = [
    "DefinitionError",
    "Diagnostic",
    "ExpressionError",
    "PlanError",
    "UsageError",
    "WayangError",
    "Workflow",
    "__version__",
    "load_workflow",
    "parse_workflow",
    "plan_workflow",
]
