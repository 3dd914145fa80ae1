"""A run's declared artifacts: copied out of its workspace with sha256 checksums, kept for their
retention, verified, and pruned once expired.

The artifact root (:func:`artifact_root`) holds one folder per run::

    <root>/<run_id>/manifest.json            what was collected; written last, atomically
    <root>/<run_id>/<name>/<relative path>   one copy per file the declaration matched

Every file, the manifest included, is written under a ``.wayang-tmp-`` name beside its target,
fsynced and ``os.replace``d, so a crash leaves whole files and temp files, never half a copy.
Collecting a run again replaces its copies and then removes every file its new manifest does not
list (temp files of a crashed collect included); :func:`prune_artifacts` removes temp files an
hour old. One collect per run at a time: the run's lifecycle is its only writer.

Only files that resolve inside the workspace are copied: a symlink leading out of it is listed
in the manifest's ``refused`` and never read.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from wayang.model.spec import Artifact
from wayang.model.types import NAME_PATTERN
from wayang.store.urls import MEMORY, is_postgres_url, sqlite_path
from wayang.workspace.errors import InvalidArtifactPathError, WorkspaceError

ARTIFACTS_VARIABLE = "WAYANG_ARTIFACTS"
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
TEMP_PREFIX = ".wayang-tmp-"
TEMP_GRACE_S = 3600.0  # a prune leaves younger temp files alone: a collect may be writing them
CHUNK = 1 << 20

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_NAME = re.compile(NAME_PATTERN)
_DRIVE = re.compile(r"[A-Za-z]:")
_PATTERN_EXAMPLE = "such as 'dist/*.whl' or 'reports/**/*.xml'"


@dataclass(frozen=True, slots=True)
class ArtifactDeclaration:
    """One ``[artifacts.<name>]``: a glob relative to the workspace and how long to keep it."""

    name: str
    pattern: str
    retention_s: float | None = None  # None: kept until removed


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """One collected file: where it was in the workspace and where its copy is."""

    name: str  # the declaration it belongs to
    path: str  # relative to the workspace, '/'-separated
    size: int
    sha256: str
    stored: str  # absolute path of the copy


@dataclass(frozen=True, slots=True)
class ArtifactManifest:
    """What one collect of a run kept, and what it could not."""

    run_id: str
    collected_at: float
    files: tuple[ArtifactFile, ...]
    expires_at: dict[str, float | None]  # per declaration name; None: kept until removed
    missing: tuple[str, ...]  # declarations that kept no file
    refused: tuple[str, ...]  # matches refused, each "name: path: why"

    def to_json(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "run_id": self.run_id,
            "collected_at": self.collected_at,
            "files": [asdict(file) for file in self.files],
            "expires_at": dict(self.expires_at),
            "missing": list(self.missing),
            "refused": list(self.refused),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArtifactManifest:
        """The manifest :meth:`to_json` wrote; ``ValueError`` for any other shape."""
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"manifest version {data.get('version')!r}, not {MANIFEST_VERSION}")
        try:
            return cls(
                run_id=str(data["run_id"]),
                collected_at=float(data["collected_at"]),
                files=tuple(ArtifactFile(**file) for file in data["files"]),
                expires_at={str(k): _optional_float(v) for k, v in data["expires_at"].items()},
                missing=tuple(str(name) for name in data["missing"]),
                refused=tuple(str(why) for why in data["refused"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an artifact manifest: {exc}") from None


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


# --- checks ----------------------------------------------------------------------------------


def check_artifact_pattern(pattern: str, where: str) -> None:
    """Refuse a glob that could reach outside the workspace (``where`` names it in the message).

    Stricter than the workflow check, which refuses a leading '/' and '..' segments: this also
    refuses a backslash root, a drive ('C:'), a NUL character and an empty pattern.
    """
    why = _pattern_fault(pattern)
    if why is not None:
        raise InvalidArtifactPathError(
            f"{where}: artifact path {pattern!r} {why}; write a glob relative to the workspace, "
            f"{_PATTERN_EXAMPLE}"
        )


def _pattern_fault(pattern: str) -> str | None:
    if not pattern.strip():
        return "is empty"
    if "\x00" in pattern:
        return "contains a NUL character"
    if pattern.startswith(("/", "\\")):
        return "is absolute"
    if _DRIVE.match(pattern):
        return "names a drive"
    if ".." in pattern.replace("\\", "/").split("/"):
        return "climbs out of the workspace with '..'"
    return None


def check_run_id(run_id: str) -> None:
    """Refuse a run id that is not a plain folder name (it names ``<root>/<run_id>``)."""
    if not _RUN_ID.fullmatch(run_id):
        raise InvalidArtifactPathError(
            f"run id {run_id!r} is not a run id: letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 128 characters (see 'wayang runs')"
        )


def _check_declarations(declared: Sequence[ArtifactDeclaration]) -> None:
    seen: set[str] = set()
    for declaration in declared:
        if not _NAME.fullmatch(declaration.name) or declaration.name in seen:
            raise InvalidArtifactPathError(
                f"artifact name {declaration.name!r} is a duplicate or not a name: letters, "
                "digits and '_', not starting with a digit, each name once"
            )
        seen.add(declaration.name)
        check_artifact_pattern(declaration.pattern, f"artifacts.{declaration.name}.path")


def declarations(artifacts: Mapping[str, Artifact]) -> tuple[ArtifactDeclaration, ...]:
    """The declarations of a workflow's ``[artifacts]`` table."""
    return tuple(
        ArtifactDeclaration(name, spec.path, spec.retention) for name, spec in artifacts.items()
    )


# --- where ------------------------------------------------------------------------------------


def artifact_root(store: str, environ: Mapping[str, str]) -> Path:
    """``$WAYANG_ARTIFACTS``; else ``artifacts`` beside a SQLite store's file; else (PostgreSQL,
    in-memory) ``$XDG_DATA_HOME/wayang/artifacts`` (``~/.local/share/…`` by default)."""
    chosen = environ.get(ARTIFACTS_VARIABLE)
    if chosen:
        return Path(chosen).expanduser().absolute()
    database = _sqlite_file(store)
    if database is not None:
        return database.parent / "artifacts"
    return _data_home(environ) / "wayang" / "artifacts"


def _sqlite_file(store: str) -> Path | None:
    if is_postgres_url(store):
        return None
    path = sqlite_path(store)
    return None if path == MEMORY else Path(path).expanduser().absolute()


def _data_home(environ: Mapping[str, str]) -> Path:
    data = environ.get("XDG_DATA_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    if data and Path(data).is_absolute():
        return Path(data)
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".local" / "share"


# --- collecting -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Selection:
    """What one declaration matched: files to copy by relative path, and refusals."""

    files: dict[str, Path]
    refused: list[str]


def collect_artifacts(
    workspace: Path,
    declared: Sequence[ArtifactDeclaration],
    root: Path,
    run_id: str,
    now: float,
) -> ArtifactManifest:
    """Copy what ``declared`` matches in ``workspace`` to ``root/<run_id>`` and write its
    manifest; a collect again of the same run replaces the previous one."""
    check_run_id(run_id)
    _check_declarations(declared)
    base = _workspace_base(workspace)
    folder = root.absolute() / run_id
    store = folder.parent.resolve()
    chosen = {d.name: _select(base, d, store) for d in declared}
    files = [
        copied
        for name, selection in chosen.items()
        for relative, source in sorted(selection.files.items())
        if (copied := _store(folder, name, relative, source)) is not None
    ]
    kept = {file.name for file in files}
    manifest = ArtifactManifest(
        run_id=run_id,
        collected_at=now,
        files=tuple(files),
        expires_at={d.name: _expiry(d, now) for d in declared},
        missing=tuple(d.name for d in declared if d.name not in kept),
        refused=tuple(why for selection in chosen.values() for why in selection.refused),
    )
    _sync_folders({Path(file.stored).parent for file in files})
    _write_manifest(folder, manifest)
    _sweep(folder, {Path(file.stored) for file in files} | {folder / MANIFEST})
    return manifest


def _expiry(declaration: ArtifactDeclaration, now: float) -> float | None:
    return None if declaration.retention_s is None else now + declaration.retention_s


def _workspace_base(workspace: Path) -> Path:
    try:
        base = workspace.resolve(strict=True)
    except (OSError, RuntimeError):
        base = None
    if base is None or not base.is_dir():
        raise WorkspaceError(
            f"{workspace}: no such folder; collect a run's artifacts from the workspace it ran in"
        )
    return base


def _select(base: Path, declaration: ArtifactDeclaration, store: Path) -> _Selection:
    selection = _Selection({}, [])
    for path in _candidates(base, declaration.pattern):
        relative = path.relative_to(base).as_posix()
        try:
            real = path.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop
            selection.refused.append(f"{declaration.name}: {relative}: cannot resolve ({exc})")
            continue
        if not real.is_relative_to(base):
            selection.refused.append(
                f"{declaration.name}: {relative}: links to {real}, outside the workspace"
            )
        elif real.is_file() and not real.is_relative_to(store):
            selection.files.setdefault(relative, real)
    return selection


def _candidates(base: Path, pattern: str) -> Iterator[Path]:
    """Each glob match, and for a matched folder inside the workspace every file below it."""
    for match in _glob(base, pattern):
        if match.is_dir() and _inside(match, base):
            yield from _walk(match)
        else:
            yield match


def _glob(base: Path, pattern: str) -> list[Path]:
    # pathlib fails on a pattern of only '.' segments ('.', './'): it names the workspace itself.
    parts = [part for part in pattern.split("/") if part not in ("", ".")]
    return sorted(base.glob("/".join(parts))) if parts else [base]


def _inside(path: Path, base: Path) -> bool:
    try:
        return path.resolve().is_relative_to(base)
    except (OSError, RuntimeError):
        return False


def _walk(folder: Path) -> Iterator[Path]:
    """Files below ``folder``, and its symlinked folders (not followed: they may loop, and one
    leading out of the workspace is to be refused, not read)."""
    for top, folders, names in os.walk(folder):
        here = Path(top)
        folders.sort()
        yield from (here / name for name in sorted(names))
        yield from (here / name for name in folders if (here / name).is_symlink())


def _store(folder: Path, name: str, relative: str, source: Path) -> ArtifactFile | None:
    """Copy ``source`` to ``folder/name/relative``; None if it is no longer a regular file."""
    target = folder / name / relative
    _clear_way(folder, target)
    reader = _open_regular(source)
    if reader is None:
        return None
    with reader:
        mode = stat.S_IMODE(os.fstat(reader.fileno()).st_mode)
        size, digest = _write_atomic(target, reader, mode)
    return ArtifactFile(name, relative, size, digest, str(target))


def _clear_way(folder: Path, target: Path) -> None:
    """Make ``target``'s folders folders, and ``target`` not one: a file may have become a
    folder (or the reverse) since the previous collect of the run."""
    for parent in reversed(target.relative_to(folder).parents):
        here = folder / parent
        if here.is_symlink() or (here.exists() and not here.is_dir()):
            here.unlink()
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)


def _open_regular(path: Path) -> BinaryIO | None:
    """``path`` open for reading if it is a regular file reached without a final symlink; None
    if it vanished or is anything else. Non-blocking, so a FIFO cannot hang the open."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        handle = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the final component became a symlink
            return None
        raise
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        return None
    return os.fdopen(handle, "rb", buffering=0)


def _write_atomic(target: Path, reader: BinaryIO, mode: int) -> tuple[int, str]:
    """Copy ``reader`` to ``target`` through a temp file, fsynced then renamed over it; the
    size and sha256 of what was written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as writer:
            size, digest = _pump(reader, writer)
            os.fchmod(writer.fileno(), mode)
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return size, digest


def _pump(reader: BinaryIO, writer: BinaryIO | None) -> tuple[int, str]:
    """Read ``reader`` to its end in 1 MiB chunks, hashing (and writing) each."""
    digest = hashlib.sha256()
    size = 0
    while chunk := reader.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if writer is not None:
            writer.write(chunk)
    return size, digest.hexdigest()


def _write_manifest(folder: Path, manifest: ArtifactManifest) -> None:
    data = json.dumps(manifest.to_json(), indent=2).encode()
    _write_atomic(folder / MANIFEST, io.BytesIO(data), 0o644)
    _sync_folders({folder})


def _sync_folders(folders: set[Path]) -> None:
    """fsync each folder, so the renames into it survive a power cut."""
    for folder in folders:
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _sweep(folder: Path, keep: set[Path]) -> None:
    """Remove every file below ``folder`` not in ``keep``, then the folders left empty."""
    for top, folders, names in os.walk(folder, topdown=False):
        here = Path(top)
        for name in names:
            if here / name not in keep:
                (here / name).unlink()
        for name in folders:
            _remove_if_empty(here / name)


def _remove_if_empty(folder: Path) -> None:
    if folder.is_symlink():
        folder.unlink()
    elif not any(folder.iterdir()):
        folder.rmdir()


# --- reading, verifying, pruning --------------------------------------------------------------


def load_manifest(root: Path, run_id: str) -> ArtifactManifest | None:
    """The manifest of ``run_id`` under ``root``; None if it has none."""
    check_run_id(run_id)
    return _read_manifest(root.absolute() / run_id)


def _read_manifest(folder: Path) -> ArtifactManifest | None:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_bytes())
        return ArtifactManifest.from_json(data)
    except FileNotFoundError:
        return None
    except (ValueError, AttributeError) as exc:
        raise WorkspaceError(
            f"{path}: unreadable artifact manifest ({exc}); collect the run's artifacts again, "
            f"or remove {folder}"
        ) from None


def verify_artifacts(manifest: ArtifactManifest) -> list[str]:
    """Each copy whose sha256 or size no longer matches, or that is gone, as ``name: path: why``."""
    return [problem for file in manifest.files if (problem := _check_copy(file)) is not None]


def _check_copy(file: ArtifactFile) -> str | None:
    where = f"{file.name}: {file.path}"
    try:
        reader = _open_regular(Path(file.stored))
    except OSError as exc:
        return f"{where}: unreadable ({exc.strerror}) at {file.stored}"
    if reader is None:
        return f"{where}: gone from {file.stored}"
    with reader:
        size, digest = _pump(reader, None)
    if (size, digest) != (file.size, file.sha256):
        return f"{where}: changed, sha256 {digest[:12]} where {file.sha256[:12]} was collected"
    return None


def prune_artifacts(root: Path, now: float) -> list[tuple[str, str]]:
    """Remove every declaration whose retention ended by ``now``, a run's whole folder once it
    keeps no file; ``(run_id, name)`` of each removed. Also removes temp files an hour old."""
    if not root.is_dir():
        return []
    removed: list[tuple[str, str]] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(TEMP_PREFIX):  # a run folder a prune was removing
            shutil.rmtree(entry, ignore_errors=True)
        elif _RUN_ID.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            removed.extend((entry.name, name) for name in _prune_run(entry, now))
    return removed


def _prune_run(folder: Path, now: float) -> list[str]:
    manifest = _read_manifest(folder)
    _remove_temps(folder, manifest, before=now - TEMP_GRACE_S)
    if manifest is None:
        _sweep_empty(folder)
        return []
    expired = [n for n, at in manifest.expires_at.items() if at is not None and at <= now]
    if not expired:
        return []
    kept = _without(manifest, set(expired))
    if kept.files:
        _write_manifest(folder, kept)  # first, so it never lists a removed copy
        for name in expired:
            shutil.rmtree(folder / name, ignore_errors=True)
    else:
        _remove_run(folder)
    return expired


def _without(manifest: ArtifactManifest, names: set[str]) -> ArtifactManifest:
    return replace(
        manifest,
        files=tuple(file for file in manifest.files if file.name not in names),
        expires_at={n: at for n, at in manifest.expires_at.items() if n not in names},
        missing=tuple(name for name in manifest.missing if name not in names),
        refused=tuple(why for why in manifest.refused if why.partition(":")[0] not in names),
    )


def _remove_run(folder: Path) -> None:
    """Rename the run's folder out of the way first, so it is gone at once, never half."""
    doomed = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{folder.name}-", dir=folder.parent))
    os.replace(folder, doomed / folder.name)
    shutil.rmtree(doomed, ignore_errors=True)


def _remove_temps(folder: Path, manifest: ArtifactManifest | None, before: float) -> None:
    listed = {Path(file.stored) for file in manifest.files} if manifest else set()
    for top, _, names in os.walk(folder):
        for name in names:
            path = Path(top) / name
            if name.startswith(TEMP_PREFIX) and path not in listed:
                with contextlib.suppress(FileNotFoundError):
                    if path.lstat().st_mtime < before:
                        path.unlink()


def _sweep_empty(folder: Path) -> None:
    """Remove the folders below ``folder`` left empty, and ``folder`` too if it is."""
    for top, folders, _ in os.walk(folder, topdown=False):
        for name in folders:
            _remove_if_empty(Path(top) / name)
    _remove_if_empty(folder)
