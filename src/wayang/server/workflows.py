"""Workflows registered with the server: each id with its versions, kept in the store.

Registering a ``workflow.toml`` validates it first (an invalid one is refused with its
diagnostics) and stores its text under its id and ``version``. Registering the same text again
changes nothing; new text under a version already taken is refused, so a version names one
definition for good. Runs started by id use the newest version unless asked for another.

Starting a run reads the registry, so a server remembers what it read for a second
(:data:`FRESH_S`): a version registered through another server sharing the store is the newest
here within that second (naming the version finds it at once).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wayang.errors import UsageError
from wayang.model.keys import did_you_mean
from wayang.model.loader import parse_workflow
from wayang.model.spec import Workflow
from wayang.store.port import Store

WORKFLOWS = "workflows"
"""The key-value namespace: workflow id → ``{"versions": [...]}``, oldest version first."""
FRESH_S = 1.0


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
    def __init__(
        self, store: Store, fresh_s: float = FRESH_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.fresh_s = fresh_s
        self._clock = clock
        self._read: dict[str, tuple[float, list[Registered]]] = {}

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
        self._read.pop(workflow.id, None)
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
        """The entry of ``version`` (default: the newest), from what was read within the last
        ``fresh_s`` seconds when it is there."""
        kept = self._read.get(workflow_id)
        if kept is None or self._clock() - kept[0] >= self.fresh_s:
            kept = (self._clock(), self.history(workflow_id))
            self._read[workflow_id] = kept
        found = self._version(kept[1], version)
        if found is None:  # registered through another server since: read again
            history = self.history(workflow_id)
            self._read[workflow_id] = (self._clock(), history)
            found = self._version(history, version)
        if found is not None:
            return found
        history = self._read[workflow_id][1]
        known = ", ".join(e.version for e in history)
        raise WorkflowNotFoundError(
            f"workflow '{workflow_id}' has no version {version}; registered: {known}"
        )

    @staticmethod
    def _version(history: list[Registered], version: str | None) -> Registered | None:
        if version is None:
            return history[-1]
        return next((entry for entry in history if entry.version == version), None)

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
