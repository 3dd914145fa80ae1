"""Which workspaces to remove: by the project's retention policy, or as ``clean`` is told.

The policy (``[workspaces.retention]``) keeps failed workspaces for ``keep_failed`` (so a person
can look inside), the newest ``keep_last`` finished or cancelled ones, and, past ``max_disk``,
removes the oldest finished ones first, then the oldest failed. Workspaces in use (``running``,
``ready`` for a run not ended, ``creating`` under a live lock) are never chosen; half-made ones
whose maker is gone always are.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wayang.workspace.manager import WorkspaceInfo
from wayang.workspace.settings import RetentionSettings

ENDED = ("finished", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Removal:
    """A workspace chosen for removal, and why (shown by ``clean``)."""

    info: WorkspaceInfo
    reason: str


def disk_usage(path: Path) -> int:
    """Bytes under ``path``, counting hard-linked tool files once per workspace (cheap)."""
    total = 0
    for root, dirs, files in os.walk(path):
        dirs[:] = [name for name in dirs if name != ".git"]
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def by_policy(
    rows: Sequence[WorkspaceInfo],
    policy: RetentionSettings,
    now: float,
    *,
    busy: Callable[[WorkspaceInfo], bool],
    size_of: Callable[[Path], int] = disk_usage,
) -> list[Removal]:
    """What the retention policy removes from one repository's workspaces."""
    chosen: dict[str, Removal] = {}
    for row in rows:
        if row.meta is None and not busy(row):
            chosen[row.id] = Removal(row, "half made (its maker is gone)")
    ended = [row for row in rows if row.meta is not None and row.meta.status in ENDED]
    for row in ended:
        assert row.meta is not None
        age = now - row.meta.updated
        if row.meta.status == "failed" and age > policy.keep_failed:
            chosen[row.id] = Removal(row, f"failed {_age(age)} ago (keep_failed)")
    done = [row for row in ended if row.meta and row.meta.status != "failed"]
    done.sort(key=lambda row: row.meta.updated if row.meta else 0.0, reverse=True)
    for row in done[policy.keep_last :]:
        chosen.setdefault(row.id, Removal(row, f"more than keep_last = {policy.keep_last}"))
    if policy.max_disk is not None:
        _over_disk(ended, chosen, policy.max_disk, size_of)
    return list(chosen.values())


def _over_disk(
    ended: Sequence[WorkspaceInfo],
    chosen: dict[str, Removal],
    limit: int,
    size_of: Callable[[Path], int],
) -> None:
    left = [row for row in ended if row.id not in chosen]
    sizes = {row.id: size_of(row.path) for row in left}
    total = sum(sizes.values())

    def order(row: WorkspaceInfo) -> tuple[int, float]:
        failed = 1 if row.meta is not None and row.meta.status == "failed" else 0
        return failed, row.meta.updated if row.meta else 0.0

    for row in sorted(left, key=order):
        if total <= limit:
            return
        chosen[row.id] = Removal(row, f"over max_disk ({_bytes(total)} > {_bytes(limit)})")
        total -= sizes[row.id]


def by_request(
    rows: Sequence[WorkspaceInfo],
    now: float,
    *,
    older_than: float | None,
    status: str | None,
    busy: Callable[[WorkspaceInfo], bool],
) -> list[Removal]:
    """What ``wayang workspace clean --older-than D --status S`` removes (both must match)."""
    chosen: list[Removal] = []
    for row in rows:
        if busy(row):
            continue
        if status is not None and row.status != status:
            continue
        updated = row.meta.updated if row.meta else 0.0
        if older_than is not None and now - updated < older_than:
            continue
        why = [f"status {row.status}"] if status else []
        if older_than is not None:
            why.append(f"untouched for {_age(now - updated)}")
        chosen.append(Removal(row, ", ".join(why) or "asked"))
    return chosen


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f}{unit}"
        size /= 1000
    return f"{size:.1f}TB"
