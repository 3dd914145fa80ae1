"""Workflows registered with the server: each id with its versions, kept in the store.

Registering a ``workflow.toml`` validates it first (an invalid one is refused with its
diagnostics) and stores its text under its id and ``version``. Registering the same text again
changes nothing; new text under a version already taken is refused, so a version names one
definition for good. Runs started by id use the newest version unless asked for another.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from wayang.errors import UsageError
from wayang.model.keys import did_you_mean
from wayang.model.loader import parse_workflow
from wayang.model.spec import Workflow
from wayang.store.port import Store

WORKFLOWS = "workflows"
"""The key-value namespace: workflow id → ``{"versions": [...]}``, oldest version first."""


class WorkflowNotFoundError(UsageError):
    """No workflow (or no such version of it) is registered."""


class VersionTakenError(UsageError):
    """Another definition is registered under this id and version already."""


@dataclass(frozen=True)
class Registered:
    workflow_id: str
    version: str
    sha256: str
    filename: str
    registered_at: float
    source: str

    def parse(self) -> Workflow:
        return parse_workflow(self.source, self.filename)


class WorkflowRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store

    def register(self, source: str, filename: str) -> tuple[Registered, bool]:
        """Validate and store ``source``; the entry and whether it is new."""
        workflow = parse_workflow(source, filename)  # raises DefinitionError with diagnostics
        digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
        versions = self._versions(workflow.id)
        for entry in versions:
            if entry["version"] != workflow.version:
                continue
            if entry["sha256"] == digest:
                return _registered(workflow.id, entry), False
            raise VersionTakenError(
                f"workflow '{workflow.id}' version {workflow.version} is registered with other "
                "text; raise 'version' in the file to register a new definition"
            )
        entry = {
            "version": workflow.version,
            "sha256": digest,
            "filename": filename,
            "registered_at": time.time(),
            "source": source,
        }
        self.store.kv_set(WORKFLOWS, workflow.id, {"versions": [*versions, entry]})
        return _registered(workflow.id, entry), True

    def ids(self) -> list[str]:
        return sorted(self.store.kv_scan(WORKFLOWS))

    def history(self, workflow_id: str) -> list[Registered]:
        versions = self._versions(workflow_id)
        if not versions:
            hint = did_you_mean(workflow_id, self.ids())
            raise WorkflowNotFoundError(
                f"no workflow '{workflow_id}' is registered{hint}; register it with "
                "POST /api/v1/workflows"
            )
        return [_registered(workflow_id, entry) for entry in versions]

    def get(self, workflow_id: str, version: str | None = None) -> Registered:
        history = self.history(workflow_id)
        if version is None:
            return history[-1]
        for entry in history:
            if entry.version == version:
                return entry
        known = ", ".join(e.version for e in history)
        raise WorkflowNotFoundError(
            f"workflow '{workflow_id}' has no version {version}; registered: {known}"
        )

    def _versions(self, workflow_id: str) -> list[dict[str, Any]]:
        found = self.store.kv_get(WORKFLOWS, workflow_id)
        return list(found.get("versions", [])) if isinstance(found, dict) else []


def _registered(workflow_id: str, entry: dict[str, Any]) -> Registered:
    return Registered(
        workflow_id,
        str(entry["version"]),
        str(entry["sha256"]),
        str(entry["filename"]),
        float(entry["registered_at"]),
        str(entry["source"]),
    )
