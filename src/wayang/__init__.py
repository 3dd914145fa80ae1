"""Wayang: durable workflows for people, AI and systems."""

from wayang.errors import (
    DefinitionError,
    Diagnostic,
    ExpressionError,
    PlanError,
    UsageError,
    WayangError,
)

__version__ = "0.1.0"

__all__ = [
    "DefinitionError",
    "Diagnostic",
    "ExpressionError",
    "PlanError",
    "UsageError",
    "WayangError",
    "__version__",
]
