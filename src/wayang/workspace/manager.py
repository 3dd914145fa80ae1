"""The workspace manager: isolated checkouts of one repository, outside it.

Layout, under the root (``$WAYANG_WORKSPACES`` or ``$XDG_DATA_HOME/wayang/workspaces``)::

    <root>/<repo-name>-<hash of its path>/      the repository's namespace
        repository                              the repository's path, for listings
        .tools/<bundle hash>/                   read-only tool bundles (tools.py)
        .locks/<id>.lock                        one flock per workspace id
        <id>/                                   a workspace: a git worktree or jj workspace
            .agent-tools/.agent-workflow.json   its metadata (metadata.py)

Making a workspace holds its id's lock, so two processes asking for one id get one workspace,
and a workspace killed half made (no metadata, or status ``creating``) is found by the next
holder of the lock and by ``clean``, and removed. The API is the proof of concept's:
:meth:`ensure_workspace`, :meth:`update_status`, :meth:`cleanup`, :meth:`sync_tools`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from wayang.files import write_atomic
from wayang.workspace.backend import Backend, detect_backend_name
from wayang.workspace.direnv import decide_direnv
from wayang.workspace.errors import (
    InvalidWorkspaceIdError,
    WorkspaceError,
    WorkspaceNotFoundError,
)
from wayang.workspace.git import GitBackend
from wayang.workspace.jujutsu import JujutsuBackend
from wayang.workspace.metadata import (
    METADATA_FILE,
    TOOLS_DIR,
    WorkspaceMeta,
    iso_now,
    read_meta,
    write_meta,
)
from wayang.workspace.settings import WorkspaceSettings, workspaces_root
from wayang.workspace.tools import (
    CACHE_DIR,
    bundle_files,
    bundle_hash,
    cached_bundle,
    link_bundle,
    prune_bundles,
)

WORKSPACE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
REPOSITORY_FILE = "repository"
LOCKS_DIR = ".locks"
# Held (after a workspace's own lock) around adding and removing: `git worktree add`s at once
# read each other's half-written records ("failed to read .git/worktrees/X/commondir").
REPOSITORY_LOCK = ".repository"  # never a workspace id: ids start with a letter or digit


def check_workspace_id(workspace_id: str) -> str:
    """``workspace_id`` if it can only name a folder inside the root; else a clear error."""
    if not WORKSPACE_ID.match(workspace_id) or ".." in workspace_id:
        raise InvalidWorkspaceIdError(
            f"workspace id {workspace_id!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '/', no '..')"
        )
    return workspace_id


def namespace_name(repo: Path) -> str:
    """``<folder name>-<12 hex of sha256(real path)>``: stable, readable, collision-free."""
    real = str(repo.resolve())
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", Path(real).name)[:40] or "repo"
    return f"{slug}-{hashlib.sha256(real.encode()).hexdigest()[:12]}"


@dataclass(frozen=True, slots=True)
class WorkspaceEvent:
    """A lifecycle event: created, reused, direnv allowed, tooling synced, cleaned, note."""

    kind: str
    workspace_id: str
    path: str
    detail: str
    at: float


@dataclass(frozen=True, slots=True)
class Workspace:
    """A workspace ready for use, what making it did, and how commands run in it."""

    id: str
    path: Path
    meta: WorkspaceMeta
    launcher: tuple[str, ...] = ()
    events: tuple[WorkspaceEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkspaceInfo:
    """A listing's row: the metadata, or None for one that was never finished."""

    id: str
    path: Path
    repository: str
    meta: WorkspaceMeta | None

    @property
    def status(self) -> str:
        return self.meta.status if self.meta is not None else "incomplete"

    @property
    def complete(self) -> bool:
        return self.meta is not None and self.meta.status != "creating"


def make_backend(repo: Path, choice: str) -> Backend:
    """The backend ``choice`` names, or the repository's own for ``auto``."""
    name = detect_backend_name(repo) if choice == "auto" else choice
    if name == "jj":
        return JujutsuBackend()
    return GitBackend()


@dataclass
class WorkspaceManager:
    """Workspaces of ``repository``, per ``settings``; see the module docstring."""

    repository: Path
    settings: WorkspaceSettings = field(default_factory=WorkspaceSettings)
    backend: Backend | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.repository = self.repository.resolve()
        if self.backend is None:
            self.backend = make_backend(self.repository, self.settings.backend)
        self.root = workspaces_root(self.settings, self.environ)
        self.namespace = self.root / namespace_name(self.repository)

    @property
    def _backend(self) -> Backend:
        assert self.backend is not None
        return self.backend

    def path_of(self, workspace_id: str) -> Path:
        return self.namespace / check_workspace_id(workspace_id)

    # ------------------------------------------------------------------ the seed's API

    def ensure_workspace(
        self,
        workspace_id: str,
        base_change: str | None = None,
        direnv_policy: str | None = None,
        *,
        include_uncommitted: bool | None = None,
        workflow: str = "",
        command: str = "",
        run_id: str = "",
    ) -> Workspace:
        """The workspace ``workspace_id``: reused if it exists, else made at ``base_change``
        (default: the current change). A half-made one (a crash) is removed and made again."""
        path = self.path_of(workspace_id)
        policy = direnv_policy or self.settings.direnv
        uncommitted = (
            self.settings.uncommitted if include_uncommitted is None else include_uncommitted
        )
        with self._locked(workspace_id):
            meta = self._complete_meta(path)
            events: list[WorkspaceEvent] = []
            if meta is not None:
                events.append(self._event("reused", workspace_id, f"at {meta.base_change[:12]}"))
            else:
                meta, made = self._create(path, workspace_id, base_change, uncommitted, policy)
                events.extend(made)
            meta = meta.model_copy(
                update={
                    "workflow": workflow or meta.workflow,
                    "command": command or meta.command,
                    "run_id": run_id or meta.run_id,
                    "direnv_policy": policy,
                    "updated_at": iso_now(self.clock()),
                }
            )
            write_meta(path, meta)
            synced = self._sync_tools_locked(path, meta)
            if synced is not None:
                meta, event = synced
                events.append(event)
            direnv = decide_direnv(path, self.repository, policy)
            if direnv.allowed:
                events.append(self._event("direnv allowed", workspace_id, str(path / ".envrc")))
            elif direnv.note:
                events.append(self._event("note", workspace_id, direnv.note))
        return Workspace(workspace_id, path, meta, direnv.launcher, tuple(events))

    def update_status(
        self,
        workspace_id: str,
        status: str,
        workflow: str | None = None,
        command: str | None = None,
    ) -> WorkspaceMeta:
        """Record ``status`` (and optionally the workflow and command) in the metadata."""
        path = self.path_of(workspace_id)
        with self._locked(workspace_id):
            meta = self._complete_meta(path)
            if meta is None:
                raise self._not_found(workspace_id)
            update: dict[str, object] = {"status": status, "updated_at": iso_now(self.clock())}
            if workflow is not None:
                update["workflow"] = workflow
            if command is not None:
                update["command"] = command
            meta = WorkspaceMeta.model_validate({**meta.model_dump(), **update})
            write_meta(path, meta)
        return meta

    def cleanup(self, workspace_id: str) -> WorkspaceEvent:
        """Remove the workspace (complete or half made) and the repository's record of it."""
        path = self.path_of(workspace_id)
        with self._locked(workspace_id, then_remove=True):
            if not path.exists():
                raise self._not_found(workspace_id)
            self._remove(path, workspace_id)
        return self._event("cleaned", workspace_id, str(path))

    def sync_tools(self, workspace_id: str) -> WorkspaceEvent | None:
        """Bring the workspace's tool bundle up to date; None when it already was."""
        path = self.path_of(workspace_id)
        with self._locked(workspace_id):
            meta = self._complete_meta(path)
            if meta is None:
                raise self._not_found(workspace_id)
            synced = self._sync_tools_locked(path, meta)
        return None if synced is None else synced[1]

    # ------------------------------------------------------------------ listing

    def workspaces(self) -> list[WorkspaceInfo]:
        """This repository's workspaces, oldest first; half-made ones have no metadata."""
        return list_namespace(self.namespace)

    def show(self, workspace_id: str) -> WorkspaceInfo:
        path = self.path_of(workspace_id)
        if not path.exists():
            raise self._not_found(workspace_id)
        return info_of(path, str(self.repository))

    def prune_tool_cache(self) -> list[str]:
        in_use = {info.meta.tooling_hash for info in self.workspaces() if info.meta is not None}
        return prune_bundles(self.namespace, in_use)

    # ------------------------------------------------------------------ inside

    def _create(
        self,
        path: Path,
        workspace_id: str,
        base_change: str | None,
        uncommitted: bool,
        policy: str,
    ) -> tuple[WorkspaceMeta, list[WorkspaceEvent]]:
        events: list[WorkspaceEvent] = []
        if path.exists():  # a previous attempt died half way: nobody else holds the lock
            self._remove(path, workspace_id)
            events.append(self._event("cleaned", workspace_id, "removed a half-made workspace"))
        backend = self._backend
        base = backend.resolve(self.repository, base_change)
        self.namespace.mkdir(parents=True, exist_ok=True)
        write_atomic(self.namespace / REPOSITORY_FILE, str(self.repository) + "\n")
        with self._locked(REPOSITORY_LOCK):
            holds = backend.add(
                self.repository, path, base, name=workspace_id, include_uncommitted=uncommitted
            )
        now = iso_now(self.clock())
        meta = WorkspaceMeta(
            id=workspace_id,
            repository=str(self.repository),
            base_change=holds,
            created_at=now,
            updated_at=now,
            status="creating",
            direnv_policy=policy,
            backend=backend.name,
            path=str(path),
        )
        (path / TOOLS_DIR).mkdir(exist_ok=True)
        # Everything in .agent-tools stays out of the workspace's own `git status`.
        write_atomic(path / TOOLS_DIR / ".gitignore", "*\n")
        write_meta(path, meta)
        meta = meta.model_copy(update={"status": "ready"})
        write_meta(path, meta)
        detail = f"{backend.name} workspace at {holds[:12]}"
        if holds != base:
            detail += f" (base {base[:12]} with uncommitted changes)"
        events.append(self._event("created", workspace_id, detail))
        # At the checkout's own change (a run pins HEAD as its base), edits left out matter.
        if not uncommitted and base == backend.resolve(self.repository, None):
            changed = backend.uncommitted(self.repository)
            if changed:
                events.append(
                    self._event(
                        "note",
                        workspace_id,
                        f"{len(changed)} uncommitted change(s) in {self.repository} are not in "
                        "the workspace (e.g. "
                        + ", ".join(changed[:3])
                        + "); commit them or run with --uncommitted",
                    )
                )
        return meta, events

    def _sync_tools_locked(
        self, path: Path, meta: WorkspaceMeta
    ) -> tuple[WorkspaceMeta, WorkspaceEvent] | None:
        files = bundle_files(self.repository, self.settings.tools)
        digest = bundle_hash(self.repository, files)
        if digest == meta.tooling_hash:
            return None
        if files:
            link_bundle(cached_bundle(self.namespace, self.repository, files, digest), path)
        meta = meta.model_copy(update={"tooling_hash": digest, "updated_at": iso_now(self.clock())})
        write_meta(path, meta)
        detail = f"{len(files)} file(s), hash {digest}" if files else "no tool files"
        return meta, self._event("tooling synced", meta.id, detail)

    def _complete_meta(self, path: Path) -> WorkspaceMeta | None:
        if not path.is_dir():
            return None
        meta = read_meta(path)
        return meta if meta is not None and meta.status != "creating" else None

    def _remove(self, path: Path, workspace_id: str) -> None:
        # The folder is deleted below whatever the backend thought of it.
        with contextlib.suppress(WorkspaceError), self._locked(REPOSITORY_LOCK):
            self._backend.remove(self.repository, path, name=workspace_id)
        _remove_tree(path)

    @contextmanager
    def _locked(self, workspace_id: str, *, then_remove: bool = False) -> Iterator[None]:
        """Hold the workspace's lock. ``then_remove``: the body removes the workspace, so its
        lock file goes too, while held (or one would pile up for every id ever used); the next
        to lock the id makes it again."""
        locks = self.namespace / LOCKS_DIR
        locks.mkdir(parents=True, exist_ok=True)
        path = locks / f"{workspace_id}.lock"
        with _held(path):
            try:
                yield
            finally:
                if then_remove:
                    path.unlink(missing_ok=True)

    def _event(self, kind: str, workspace_id: str, detail: str) -> WorkspaceEvent:
        return WorkspaceEvent(
            kind, workspace_id, str(self.namespace / workspace_id), detail, self.clock()
        )

    def _not_found(self, workspace_id: str) -> WorkspaceNotFoundError:
        return WorkspaceNotFoundError(
            f"no workspace {workspace_id!r} for {self.repository}; "
            "'wayang workspace list' shows them"
        )


def _remove_tree(path: Path) -> None:
    """Delete ``path`` even where read-only tool links or files stop ``rmtree``."""
    if not path.exists():
        return
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    shutil.rmtree(path, ignore_errors=True)


def info_of(path: Path, repository: str) -> WorkspaceInfo:
    try:
        meta = read_meta(path)
    except WorkspaceError:
        meta = None
    return WorkspaceInfo(path.name, path, repository, meta)


def list_namespace(namespace: Path) -> list[WorkspaceInfo]:
    """The workspaces in one namespace folder, oldest first."""
    if not namespace.is_dir():
        return []
    repository_file = namespace / REPOSITORY_FILE
    repository = repository_file.read_text().strip() if repository_file.is_file() else ""
    rows = [
        info_of(entry, repository)
        for entry in namespace.iterdir()
        if entry.is_dir()
        and entry.name not in (CACHE_DIR, LOCKS_DIR)
        and WORKSPACE_ID.match(entry.name)
    ]
    return sorted(rows, key=lambda row: (row.meta.created if row.meta else 0.0, row.id))


def list_root(root: Path) -> list[WorkspaceInfo]:
    """Every repository's workspaces under ``root``."""
    if not root.is_dir():
        return []
    rows: list[WorkspaceInfo] = []
    for namespace in sorted(root.iterdir()):
        if namespace.is_dir():
            rows.extend(list_namespace(namespace))
    return rows


__all__ = [
    "METADATA_FILE",
    "Workspace",
    "WorkspaceEvent",
    "WorkspaceInfo",
    "WorkspaceManager",
    "check_workspace_id",
    "list_namespace",
    "list_root",
    "make_backend",
    "namespace_name",
]


@contextmanager
def _held(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the file at ``path``, made if missing. A holder may remove the
    file before letting go; whoever was waiting on it then holds a lock nobody else can see,
    so it takes the lock again on the file now at ``path``."""
    while True:
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if _still_at(handle.fileno(), path):
                    yield
                    return
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _still_at(descriptor: int, path: Path) -> bool:
    """Whether the open file is the one at ``path`` (not removed or replaced meanwhile)."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (found.st_dev, found.st_ino) == (opened.st_dev, opened.st_ino)
