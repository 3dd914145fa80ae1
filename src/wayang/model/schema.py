"""The JSON Schema of ``workflow.toml``, generated from the spec models (one source of truth)."""

from __future__ import annotations

from typing import Any

from wayang.model.spec import Workflow

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def workflow_json_schema() -> dict[str, Any]:
    """The schema editors use to complete and check ``workflow.toml`` (via ``#:schema``)."""
    schema = Workflow.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "Wayang workflow.toml",
        **{k: v for k, v in schema.items() if k != "title"},
    }
