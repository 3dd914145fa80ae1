"""Cleaning runs' workspaces by the retention policy: what ``wayang workspace clean`` does with
no arguments, and what a server does every ``--retention-every``.

A workspace is *busy*, so never removed by a policy, by a ``clean`` request, or (without
``--force``) by its id, when:

- it is half made (no metadata, or status ``creating``) and younger than ten minutes: its
  maker may still be at work (older, the maker is gone and it is removed);
- or its run (``run_id`` in its metadata) has not ended as far as the store says (``pending``
  or ``running``), whatever the workspace's own status: a run whose driver crashed is still
  resumable, and ``wayang resume`` works in the same workspace.

A workspace whose run the store does not know (another store, or none) is judged by its status
alone. Tool bundles no workspace uses any more are removed with them, except bundles made in
the last ten minutes (a workspace being made links its bundle just after making it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import ValidationError

from wayang.engine import events as ev
from wayang.engine.state import TERMINAL_RUN
from wayang.runtime.records import read_events
from wayang.runtime.workspaces import record_cleaned
from wayang.store.port import Store
from wayang.workspace.artifacts import load_manifest, prune_artifacts
from wayang.workspace.errors import WorkspaceError
from wayang.workspace.manager import (
    WorkspaceInfo,
    WorkspaceManager,
    list_namespace,
    namespace_name,
)
from wayang.workspace.retention import Removal, by_policy
from wayang.workspace.settings import BackendChoice, RetentionSettings, WorkspaceSettings
from wayang.workspace.tools import CACHE_DIR, prune_bundles

MAKING_GRACE_S = 600.0
_ENDED = {status.value for status in TERMINAL_RUN}

RunActive = Callable[[str], bool | None]
"""``run_id`` → whether the run has not ended yet; None when the store does not know it."""

Busy = Callable[[WorkspaceInfo], bool]

PolicyOf = Callable[[Path, Sequence[WorkspaceInfo]], RetentionSettings | None]
"""``(namespace, its workspaces)`` → the policy for them; None leaves the namespace alone."""


def run_activity(store: Store | None) -> RunActive:
    """What ``store`` says of runs (nothing, without a store)."""

    def active(run_id: str) -> bool | None:
        record = store.get_run(run_id) if store is not None and run_id else None
        return None if record is None else record.status not in _ENDED

    return active


def busy_rule(active: RunActive, now: float) -> Busy:
    """The rule of the module docstring, as of ``now``."""

    def busy(row: WorkspaceInfo) -> bool:
        if not row.complete and now - _touched(row) < MAKING_GRACE_S:
            return True
        return row.meta is not None and active(row.meta.run_id) is True

    return busy


def _touched(row: WorkspaceInfo) -> float:
    if row.meta is not None:
        return max(row.meta.updated, row.meta.created)
    try:
        return row.path.stat().st_mtime
    except OSError:
        return 0.0


@dataclass
class Cleaning:
    """What one clean removed (or, dry, would remove), and what it could not."""

    removed: list[Removal] = field(default_factory=list)
    failed: list[tuple[Removal, str]] = field(default_factory=list)
    bundles: list[tuple[Path, str]] = field(default_factory=list)  # (namespace, bundle hash)
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (run id, declaration)

    @property
    def empty(self) -> bool:
        return not (self.removed or self.failed or self.bundles or self.artifacts)


def manager_of(info: WorkspaceInfo, settings: WorkspaceSettings | None = None) -> WorkspaceManager:
    """A manager of the namespace ``info`` lives in (its repository named by the namespace),
    with ``settings`` (the repository's project's: its tool paths) but for root and backend."""
    namespace = info.path.parent
    repository = info.repository or (info.meta.repository if info.meta else "")
    if not repository or namespace_name(Path(repository)) != namespace.name:
        raise WorkspaceError(
            f"{namespace}: cannot tell which repository it belongs to (it was moved, or its "
            f"'repository' file is gone); remove {info.path} by hand"
        )
    backend = info.meta.backend if info.meta is not None else "auto"
    chosen = {"root": str(namespace.parent), "backend": _choice(backend)}
    settings = (settings or WorkspaceSettings()).model_copy(update=chosen)
    return WorkspaceManager(Path(repository), settings, environ={})


def _choice(backend: str) -> BackendChoice:
    return "jj" if backend == "jj" else "git" if backend == "git" else "auto"


def remove_workspaces(
    chosen: Iterable[Removal],
    cleaning: Cleaning,
    *,
    dry_run: bool = False,
    store: Store | None = None,
    now: float = 0.0,
) -> None:
    """Remove each chosen workspace (or, dry, just list it) into ``cleaning``; with ``store``,
    "cleaned" joins the history of the ended run each belonged to."""
    for removal in chosen:
        try:
            if dry_run:
                cleaning.removed.append(removal)
                continue
            event = manager_of(removal.info).cleanup(removal.info.id)
        except WorkspaceError as exc:
            cleaning.failed.append((removal, str(exc)))
            continue
        cleaning.removed.append(removal)
        meta = removal.info.meta
        if store is not None and meta is not None and meta.run_id:
            record_cleaned(store, meta.run_id, replace(event, detail=removal.reason), now)


def unused_bundles(namespace: Path, now: float, *, dry_run: bool, gone: set[str]) -> list[str]:
    """Remove the tool bundles of ``namespace`` no workspace uses (but for workspaces ``gone``:
    removed by a dry run), except those made in the last ten minutes; their hashes."""
    cache = namespace / CACHE_DIR
    if not cache.is_dir():
        return []
    rows = [row for row in list_namespace(namespace) if row.id not in gone]
    in_use = {row.meta.tooling_hash for row in rows if row.meta is not None}
    in_use |= {entry.name for entry in cache.iterdir() if now - _mtime(entry) < MAKING_GRACE_S}
    if dry_run:
        return sorted(entry.name for entry in cache.iterdir() if entry.name not in in_use)
    return sorted(prune_bundles(namespace, in_use))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def expired_artifacts(root: Path, now: float, *, dry_run: bool) -> list[tuple[str, str]]:
    """Remove (or, dry, list) the artifacts whose retention ended by ``now``."""
    if not dry_run:
        return prune_artifacts(root, now)
    found: list[tuple[str, str]] = []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            manifest = load_manifest(root, entry.name) if entry.is_dir() else None
        except WorkspaceError:  # not a run's folder, or an unreadable manifest
            continue
        if manifest is not None:
            expired = manifest.expires_at.items()
            found.extend((entry.name, name) for name, at in expired if at is not None and at <= now)
    return found


def clean_by_policy(
    namespaces: Iterable[Path],
    policy_of: PolicyOf,
    now: float,
    *,
    busy: Busy,
    artifacts_root: Path | None,
    dry_run: bool = False,
    store: Store | None = None,
) -> Cleaning:
    """Apply each namespace's retention policy, then remove unused tool bundles, then (with
    ``artifacts_root``) expired artifacts."""
    cleaning = Cleaning()
    for namespace in namespaces:
        rows = list_namespace(namespace)
        policy = policy_of(namespace, rows)
        if policy is None:
            continue
        chosen = by_policy(rows, policy, now, busy=busy)
        remove_workspaces(chosen, cleaning, dry_run=dry_run, store=store, now=now)
        gone = {removal.info.id for removal in chosen} if dry_run else set()
        bundles = unused_bundles(namespace, now, dry_run=dry_run, gone=gone)
        cleaning.bundles.extend((namespace, digest) for digest in bundles)
    if artifacts_root is not None:
        cleaning.artifacts = expired_artifacts(artifacts_root, now, dry_run=dry_run)
    return cleaning


def namespaces_under(root: Path) -> list[Path]:
    """The repositories' namespace folders under a workspaces root."""
    if not root.is_dir():
        return []
    return sorted(entry for entry in root.iterdir() if entry.is_dir())


def recorded_policy(store: Store, default: RetentionSettings) -> PolicyOf:
    """Each namespace's policy as its newest run known to ``store`` recorded it (the
    ``[workspaces.retention]`` of that run's project; ``default`` when the run recorded none).
    A namespace none of whose workspaces' runs ``store`` knows is left alone: it is not ours."""

    def policy_of(_namespace: Path, rows: Sequence[WorkspaceInfo]) -> RetentionSettings | None:
        newest_first = sorted(
            (row.meta for row in rows if row.meta is not None and row.meta.run_id),
            key=lambda meta: meta.updated,
            reverse=True,
        )
        for meta in newest_first:
            started = run_started(store, meta.run_id)
            if started is not None:
                return _retention(started.workspace.get("retention"), default)
        return None

    return policy_of


def _retention(recorded: object, default: RetentionSettings) -> RetentionSettings:
    if not recorded:
        return default
    try:
        return RetentionSettings.model_validate(recorded)
    except ValidationError:  # written by another version of Wayang: its shape is not ours
        return default


def run_started(store: Store, run_id: str) -> ev.RunStarted | None:
    """The first event of ``run_id``, if ``store`` has that run."""
    if store.get_run(run_id) is None:
        return None
    history = read_events(store.load_history(run_id))
    first = history[0] if history else None
    return first if isinstance(first, ev.RunStarted) else None
