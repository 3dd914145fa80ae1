"""Each workspace's record of itself: ``.agent-tools/.agent-workflow.json`` inside it.

The schema is the proof of concept's (``agent-workspace.sh``), so its tools keep reading it:
id, repository, base change, created/updated, status, workflow, command, tooling hash and direnv
policy. Wayang adds the backend, the run and the path. Writes are atomic: a temporary file in
the same folder, flushed, then renamed over the old one, so a reader never sees half a record.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from wayang.files import write_atomic
from wayang.workspace.errors import WorkspaceError

TOOLS_DIR = ".agent-tools"
METADATA_FILE = ".agent-workflow.json"

Status = Literal["creating", "ready", "running", "finished", "failed", "cancelled"]
STATUSES: tuple[str, ...] = ("creating", "ready", "running", "finished", "failed", "cancelled")


class WorkspaceMeta(BaseModel):
    """One workspace's metadata, as stored."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    repository: str
    base_change: str
    created_at: str
    updated_at: str
    status: Status = "ready"
    workflow: str = ""
    command: str = ""
    tooling_hash: str = ""
    direnv_policy: str = "auto"
    backend: str = "git"
    path: str = ""
    run_id: str = ""

    @property
    def updated(self) -> float:
        return parse_time(self.updated_at)

    @property
    def created(self) -> float:
        return parse_time(self.created_at)


def iso_now(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def metadata_path(workspace: Path) -> Path:
    return workspace / TOOLS_DIR / METADATA_FILE


def read_meta(workspace: Path) -> WorkspaceMeta | None:
    """The workspace's metadata, or None when it has none (never finished being made)."""
    path = metadata_path(workspace)
    try:
        return WorkspaceMeta.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError, ValueError) as exc:
        raise WorkspaceError(
            f"{path}: unreadable workspace metadata ({str(exc).splitlines()[0]}); "
            "remove the workspace with 'wayang workspace clean ID'"
        ) from None


def write_meta(workspace: Path, meta: WorkspaceMeta) -> None:
    """Replace the metadata atomically."""
    write_atomic(metadata_path(workspace), json.dumps(meta.model_dump(), indent=2) + "\n")
