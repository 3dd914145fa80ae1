"""Helpers for tests that feed workflow text to the loader."""

from __future__ import annotations

import textwrap

import pytest

from wayang.errors import DefinitionError
from wayang.model.loader import parse_workflow
from wayang.model.spec import Workflow


def load(text: str) -> Workflow:
    """Parse dedented ``text``; the test fails with the diagnostics if it is invalid."""
    try:
        return parse_workflow(textwrap.dedent(text), "workflow.toml")
    except DefinitionError as exc:
        lines = "\n".join(d.format() for d in exc.diagnostics)
        pytest.fail(f"expected a valid workflow, got:\n{lines}")


def diagnose(text: str | bytes) -> list[str]:
    """The formatted diagnostics for invalid ``text`` (dedented when it is a string)."""
    data = textwrap.dedent(text) if isinstance(text, str) else text
    with pytest.raises(DefinitionError) as caught:
        parse_workflow(data, "workflow.toml")
    return [d.format() for d in caught.value.diagnostics]
