"""``wayang.lock``: the resolved step registry, so production loads exactly what was tested.

The file is JSON (keys sorted, two-space indent, so it diffs well in review)::

    {
      "steps": {
        "ProcessOrder": {
          "cron": "",
          "emits": ["order.processed"],
          "file": "steps/process_order.step.py",
          "method": "",
          "path": "",
          "sha256": "9f2c…",
          "subscribes": ["order.created"],
          "type": "event"
        }
      },
      "version": 1
    }

``file`` is relative to the project root (``/``-separated); ``sha256`` is the hash of the file's
bytes. :func:`check_lock` compares a loaded registry with the file and says, one sentence each,
what differs: a step added or removed, a file changed or moved, a step's topics, route or
schedule changed. It does not say what to do about it, since that depends on the caller (``wayang
lock`` rewrites the file; ``wayang server`` refuses to start).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from wayang.errors import DefinitionError, UsageError
from wayang.steps.model import StepDef
from wayang.steps.registry import StepRegistry

__all__ = ["LOCK_FILE", "LOCK_VERSION", "check_lock", "lock_data", "read_lock", "write_lock"]

LOCK_FILE = "wayang.lock"
LOCK_VERSION = 1
_COMPARED = ("type", "subscribes", "emits", "method", "path", "cron")
_SENTENCES: Mapping[str, str] = {
    "type": "is a {new} step now; wayang.lock has it as a {old} step",
    "subscribes": "subscribes to {new} now; wayang.lock has {old}",
    "emits": "emits {new} now; wayang.lock has {old}",
    "method": "answers HTTP method {new} now; wayang.lock has {old}",
    "path": "serves path {new} now; wayang.lock has {old}",
    "cron": "runs on schedule {new} now; wayang.lock has {old}",
}


def lock_data(registry: StepRegistry, root: Path) -> dict[str, Any]:
    """What ``wayang.lock`` holds for ``registry``, reading each step file once to hash it."""
    digest = _hasher(root)
    steps = {name: _entry(step, digest) for name, step in sorted(registry.steps.items())}
    return {"version": LOCK_VERSION, "steps": steps}


def write_lock(registry: StepRegistry, root: Path) -> Path:
    """Write ``root/wayang.lock`` (atomically) and give its path.

    Refuses, with the registry's errors as a DefinitionError, to lock a registry that has any.
    """
    if registry.errors:
        raise DefinitionError(registry.errors)
    path = root / LOCK_FILE
    text = orjson.dumps(
        lock_data(registry, root), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    )
    temporary = path.with_name(f".{LOCK_FILE}.{os.getpid()}.tmp")
    temporary.write_bytes(text + b"\n")
    temporary.replace(path)
    return path


def read_lock(root: Path) -> dict[str, dict[str, Any]]:
    """The steps recorded in ``root/wayang.lock``; UsageError if it is missing or malformed."""
    path = root / LOCK_FILE
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{path}: not found; run 'wayang lock' to write it") from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UsageError(
            f"{path}: cannot read it ({exc}); run 'wayang lock' to rewrite it"
        ) from None
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
        data = {}
    steps = data.get("steps")
    if not isinstance(steps, dict) or not all(isinstance(e, dict) for e in steps.values()):
        raise UsageError(
            f"{path}: not a version {LOCK_VERSION} lock file; run 'wayang lock' to rewrite it"
        )
    return steps


def check_lock(registry: StepRegistry, root: Path) -> list[str]:
    """How the loaded ``registry`` differs from ``root/wayang.lock``, one sentence per difference.

    An empty list means production would load exactly what was locked.
    """
    locked = read_lock(root)
    current = lock_data(registry, root)["steps"]
    found = [_added(name, current[name]) for name in current if name not in locked]
    found += [_removed(name, locked[name]) for name in locked if name not in current]
    changed_files: set[str] = set()
    for name in sorted(set(current) & set(locked)):
        found += _step_changes(name, current[name], locked[name], changed_files)
    return found


# --- building entries --------------------------------------------------------------------------


def _hasher(root: Path) -> Callable[[Path], str]:
    cache: dict[Path, str] = {}

    def digest(file: Path) -> str:
        if file not in cache:
            try:
                cache[file] = hashlib.sha256((root / file).read_bytes()).hexdigest()
            except OSError as exc:
                raise UsageError(f"{root / file}: cannot read it to hash it ({exc})") from None
        return cache[file]

    return digest


def _entry(step: StepDef, digest: Callable[[Path], str]) -> dict[str, Any]:
    return {
        "file": PurePosixPath(step.where.file).as_posix(),
        "sha256": digest(step.where.file),
        "type": step.type,
        "subscribes": sorted(step.subscribes),
        "emits": sorted({emit.topic for emit in step.emits}),
        "method": step.method,
        "path": step.path,
        "cron": step.cron,
    }


# --- comparing ---------------------------------------------------------------------------------


def _added(name: str, entry: Mapping[str, Any]) -> str:
    return f"step '{name}' ({entry['file']}) is new: wayang.lock does not have it"


def _removed(name: str, entry: Mapping[str, Any]) -> str:
    return (
        f"step '{name}' is in wayang.lock (from {entry.get('file', '?')}) but was not loaded: "
        "it was removed or renamed"
    )


def _step_changes(
    name: str, now: Mapping[str, Any], then: Mapping[str, Any], changed_files: set[str]
) -> list[str]:
    found = []
    if now["file"] != then.get("file"):
        found.append(f"step '{name}' moved from {then.get('file')} to {now['file']}")
    elif now["sha256"] != then.get("sha256") and now["file"] not in changed_files:
        changed_files.add(now["file"])
        found.append(f"{now['file']} changed since wayang.lock was written (its sha256 differs)")
    for key in _COMPARED:
        if now[key] != then.get(key):
            old, new = _show(then.get(key)), _show(now[key])
            found.append(f"step '{name}' " + _SENTENCES[key].format(old=old, new=new))
    return found


def _show(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(f"'{item}'" for item in value) if value else "no topics"
    return f"'{value}'" if value else "none"
