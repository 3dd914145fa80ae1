"""What ``wayang workspace`` prints: the listing, one workspace, and what a clean removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from wayang.cli.artifacts import human_size
from wayang.cli.context import CliContext
from wayang.cli.run_render import local_time
from wayang.runtime.workspace_retention import Cleaning, busy_rule
from wayang.store.port import RunRecord
from wayang.workspace.manager import WorkspaceInfo
from wayang.workspace.metadata import METADATA_FILE, TOOLS_DIR
from wayang.workspace.retention import Removal, disk_usage

HEADER = ("ID", "STATUS", "BASE", "WORKFLOW", "RUN", "UPDATED", "PATH")
SHORT_CHANGE = 12


def shown_status(row: WorkspaceInfo, now: float) -> str:
    """``incomplete`` for a half-made workspace whose maker is gone."""
    if row.complete:
        return row.status
    return "creating" if busy_rule(lambda _: None, now)(row) else "incomplete"


def row_json(row: WorkspaceInfo, now: float) -> dict[str, Any]:
    data: dict[str, Any] = row.meta.model_dump() if row.meta is not None else {}
    data.update(
        id=row.id, path=str(row.path), repository=row.repository, status=shown_status(row, now)
    )
    return data


def row_cells(row: WorkspaceInfo, now: float) -> list[str]:
    meta = row.meta
    if meta is None:
        return [row.id, shown_status(row, now), "-", "-", "-", "-", str(row.path)]
    return [
        row.id,
        shown_status(row, now),
        meta.base_change[:SHORT_CHANGE] or "-",
        meta.workflow or "-",
        meta.run_id or "-",
        local_time(meta.updated) if meta.updated else "-",
        str(row.path),
    ]


def tool_files(path: Path) -> list[str]:
    """The files of the workspace's tool bundle, relative to its ``.agent-tools``."""
    tools = path / TOOLS_DIR
    if not tools.is_dir():
        return []
    skip = {METADATA_FILE, ".gitignore"}
    files = (file for file in tools.rglob("*") if file.is_file() and file.name not in skip)
    return sorted(file.relative_to(tools).as_posix() for file in files)


def show_json(info: WorkspaceInfo, record: RunRecord | None, now: float) -> dict[str, Any]:
    """Everything ``show --json`` prints: the metadata, disk use, tool files, the run's status
    (None: the store does not know the run)."""
    data = row_json(info, now)
    data["disk_bytes"] = disk_usage(info.path)
    data["tool_files"] = tool_files(info.path)
    data["run_status"] = record.status if record is not None else None
    return data


def show_lines(data: dict[str, Any], run_id: str) -> list[str]:
    """``show`` as ``key: value`` lines, from :func:`show_json`."""
    hidden = ("tool_files", "run_id", "run_status", "disk_bytes")
    shown = {key: value for key, value in data.items() if key not in hidden}
    shown["disk"] = human_size(int(data["disk_bytes"]))
    shown["run"] = _run_text(run_id, data["run_status"])
    files = data["tool_files"]
    shown["tool_files"] = f"{len(files)}" + (": " + ", ".join(files) if files else "")
    width = max(len(key) for key in shown) + 1
    return [
        f"{key + ':':<{width}} {'-' if value in ('', None) else value}"
        for key, value in shown.items()
    ]


def _run_text(run_id: str, status: str | None) -> str:
    if not run_id:
        return "-"
    if status is None:
        return f"{run_id} (unknown: not in this store)"
    return f"{run_id} ({status})"


def cleaning_json(cleaning: Cleaning, dry_run: bool) -> dict[str, Any]:
    def removal(item: Removal) -> dict[str, Any]:
        info = item.info
        return {"id": info.id, "path": str(info.path), "status": info.status, "reason": item.reason}

    return {
        "dry_run": dry_run,
        "removed": [removal(item) for item in cleaning.removed],
        "failed": [{**removal(item), "error": error} for item, error in cleaning.failed],
        "tool_bundles": [{"namespace": str(ns), "hash": h} for ns, h in cleaning.bundles],
        "artifacts": [{"run_id": run, "name": name} for run, name in cleaning.artifacts],
    }


def print_cleaning(cli: CliContext, cleaning: Cleaning, dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for item in cleaning.removed:
        line = f"{verb} workspace {item.info.id} ({item.reason}): {item.info.path}"
        cli.out.print(line, markup=False, soft_wrap=True)
    for namespace, digest in cleaning.bundles:
        line = f"{verb} tool bundle {digest} (no workspace uses it): {namespace.name}"
        cli.out.print(line, markup=False, soft_wrap=True)
    for run_id, name in cleaning.artifacts:
        cli.out.print(f"{verb} artifact {name} of run {run_id} (expired)", markup=False)
    for item, error in cleaning.failed:
        line = f"[bold red]error[/]: workspace {escape(item.info.id)}: {escape(error)}"
        cli.err.print(line, soft_wrap=True)
    if cleaning.empty:
        cli.err.print("nothing to clean", markup=False)
