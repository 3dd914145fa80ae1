"""Tool bundles: the repository's automation files, shared read-only by its workspaces.

The configured paths (``agents.just``, ``scripts/``, ``rules/`` by default) are taken from the
user's checkout — so an old base change still gets today's tools — and hashed. One copy per
hash is kept under the repository's namespace (``.tools/<hash>/``), made read-only, and each
workspace's ``.agent-tools/`` holds hard links to it: an unchanged bundle is never copied again
and twenty workspaces cost the disk of one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from wayang.workspace.metadata import METADATA_FILE, TOOLS_DIR

CACHE_DIR = ".tools"
_READ_ONLY = ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def bundle_files(repo: Path, paths: Sequence[str]) -> list[str]:
    """The files of the bundle, relative to ``repo``, sorted; missing paths are skipped."""
    found: set[str] = set()
    for entry in paths:
        top = repo / entry.strip("/")
        if top.is_file():
            found.add(top.relative_to(repo).as_posix())
        elif top.is_dir():
            found.update(path.relative_to(repo).as_posix() for path in _walk(top) if path.is_file())
    return sorted(found)


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = [name for name in dirs if name not in (".git", "__pycache__")]
        for name in files:
            yield Path(root, name)


def bundle_hash(repo: Path, files: Sequence[str]) -> str:
    """A sha256 over each file's path, executable bit and content; "" for an empty bundle."""
    if not files:
        return ""
    digest = hashlib.sha256()
    for relative in files:
        path = repo / relative
        executable = b"x" if os.access(path, os.X_OK) else b"-"
        digest.update(relative.encode() + b"\0" + executable + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def cached_bundle(namespace: Path, repo: Path, files: Sequence[str], digest: str) -> Path:
    """The read-only copy of the bundle with hash ``digest``, made once (atomically)."""
    cache = namespace / CACHE_DIR / digest
    if cache.is_dir():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=cache.parent))
    try:
        for relative in files:
            target = building / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / relative, target)
            target.chmod(target.stat().st_mode & _READ_ONLY)
        try:
            building.rename(cache)
        except OSError:  # another process made it first: theirs is the same content
            if not cache.is_dir():
                raise
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return cache


def link_bundle(cache: Path, workspace: Path) -> None:
    """Make ``workspace/.agent-tools`` hold exactly the bundle in ``cache`` (plus metadata)."""
    tools = workspace / TOOLS_DIR
    tools.mkdir(parents=True, exist_ok=True)
    for entry in tools.iterdir():
        if entry.name in (METADATA_FILE, ".gitignore") or entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for path in _walk(cache):
        target = tools / path.relative_to(cache)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:  # another file system: a copy is the best there is
            shutil.copy2(path, target)


def prune_bundles(namespace: Path, in_use: set[str]) -> list[str]:
    """Remove cached bundles no workspace uses; returns their hashes."""
    cache = namespace / CACHE_DIR
    removed: list[str] = []
    if not cache.is_dir():
        return removed
    for entry in cache.iterdir():
        if entry.name not in in_use:
            _remove_read_only(entry)
            removed.append(entry.name)
    return removed


def _remove_read_only(folder: Path) -> None:
    for root, _dirs, _files in os.walk(folder):
        os.chmod(root, 0o755)
    shutil.rmtree(folder, ignore_errors=True)
