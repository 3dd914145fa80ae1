"""A project's policy file: where it is, how it is read, and what is wrong with it.

``wayang.policy.toml`` has the shape of a workflow's ``[policy]`` table at its top level. It is
found through ``$WAYANG_POLICY`` or by walking up from the working folder to the repository root,
and its text is pinned into the run's history (``RunStarted.policy_source``) like the workflow
definition, so a run keeps the rules it started under. Mistakes are reported as ``file:line:col``
diagnostics by the same machinery as workflow files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wayang.errors import DefinitionError, UsageError
from wayang.model.expr import Expression
from wayang.model.keys import did_you_mean, model_keys
from wayang.model.loader import _check_limits, _decode, _parse_toml, _sorted
from wayang.model.pydantic_errors import dotted, report_validation_error
from wayang.model.source import SourceFile
from wayang.model.spec import Policy, PolicyRule
from wayang.model.toml_positions import Path as KeyPath
from wayang.model.validate import RUN_FIELDS, STEP_FIELDS

POLICY_FILENAME = "wayang.policy.toml"
ENV_VARIABLE = "WAYANG_POLICY"

# What a project rule's expressions may name, and the fields of the roots the gate builds.
POLICY_SCOPE_ROOTS = ("params", "env", "run", "steps", "actor", "step", "offer", "vote")
_ROOT_FIELDS: dict[str, tuple[str, ...]] = {
    "run": RUN_FIELDS,
    "actor": ("name", "roles"),
    "step": ("id", "kind"),
}


def find_policy_file(start: Path, environ: Mapping[str, str]) -> Path | None:
    """The project policy file: ``$WAYANG_POLICY`` if set, else the nearest
    ``wayang.policy.toml`` in ``start`` or a parent, up to the repository root (a folder holding
    ``.git``) or ``/``. ``None`` when there is none."""
    named = environ.get(ENV_VARIABLE, "")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            problem = "is a folder" if path.is_dir() else "does not exist"
            raise UsageError(
                f"{ENV_VARIABLE} names {path}, which {problem}; point it at a policy file "
                f"({POLICY_FILENAME}) or unset it"
            )
        return path
    folder = start.resolve()
    if folder.is_file():
        folder = folder.parent
    for candidate in (folder, *folder.parents):
        path = candidate / POLICY_FILENAME
        if path.is_file():
            return path
        if (candidate / ".git").exists():
            return None
    return None


def project_policy(filename: str, environ: Mapping[str, str]) -> tuple[str, str]:
    """The project policy file (text, name) that governs the workflow file ``filename``, or
    empty strings when there is none."""
    found = find_policy_file(Path(filename).resolve().parent, environ)
    return load_policy_file(found) if found is not None else ("", "")


class PolicyFiles:
    """:func:`project_policy`, remembered for ``fresh_s`` seconds per folder.

    A server starts many runs of workflows in few folders; finding and reading the policy file
    for each was a sixth of a start. A policy file written or changed therefore reaches new
    runs within ``fresh_s`` seconds; a run keeps the text it started with either way.
    """

    def __init__(self, fresh_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.fresh_s = fresh_s
        self._clock = clock
        self._found: dict[tuple[str, str], tuple[float, tuple[str, str]]] = {}

    def __call__(self, filename: str, environ: Mapping[str, str]) -> tuple[str, str]:
        key = (os.path.dirname(filename), environ.get(ENV_VARIABLE, ""))
        now = self._clock()
        kept = self._found.get(key)
        if kept is not None and now - kept[0] < self.fresh_s:
            return kept[1]
        policy = project_policy(filename, environ)
        if len(self._found) >= FOLDERS_KEPT:
            self._found.clear()
        self._found[key] = (now, policy)
        return policy


FOLDERS_KEPT = 1024


def load_policy_file(path: Path) -> tuple[str, str]:
    """The text and file name of the policy file at ``path``, checked, for pinning into a run.

    A file that cannot be read is a ``UsageError``; an invalid one a ``DefinitionError``.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such policy file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a policy file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the policy file: {exc.strerror}") from None
    filename = str(path)
    source = _decode(data, filename)  # DefinitionError (with a position) if not UTF-8
    parse_policy_cached(source.text, filename)
    return source.text, filename


def parse_policy(text: str, filename: str) -> Policy:
    """Parse and check policy file text; raise ``DefinitionError`` listing every problem."""
    source = _decode(text, filename)
    raw = _parse_toml(source)
    _check_limits(raw, source)
    policy = _validate_shape(raw, source)
    if policy is not None:
        check_rule_names(policy.rules, ("rules",), source)
    if source.diagnostics or policy is None:
        raise DefinitionError(_sorted(source.diagnostics))
    return policy


@lru_cache(maxsize=64)
def parse_policy_cached(text: str, filename: str) -> Policy:
    """:func:`parse_policy`, remembered: a policy is immutable, and a run asks for its gate
    again and again with the same pinned text."""
    return parse_policy(text, filename)


def check_rule_names(rules: list[PolicyRule], where: KeyPath, source: SourceFile) -> None:
    """Report each name a rule's ``when`` or ``require`` reads that a policy scope lacks."""
    for index, rule in enumerate(rules):
        for key in ("when", "require"):
            value = getattr(rule, key)
            if not isinstance(value, Expression):
                continue
            for ref in value.references:
                problem = _name_problem(ref.path)
                if problem:
                    path = (*where, index, key)
                    source.error_in_string(path, ref.offset, problem, "unknown-name")


def _name_problem(path: tuple[str, ...]) -> str | None:
    root = path[0]
    if root not in POLICY_SCOPE_ROOTS:
        hint = did_you_mean(root, POLICY_SCOPE_ROOTS)
        return f"unknown name '{root}'" + (
            hint or "; names here are " + ", ".join(POLICY_SCOPE_ROOTS)
        )
    if len(path) < 2:
        return None
    fields = _ROOT_FIELDS.get(root)
    if fields is not None and path[1] not in fields:
        known = ", ".join(f"{root}.{name}" for name in fields)
        return f"{root} has no '{path[1]}'" + (did_you_mean(path[1], fields) or f"; use {known}")
    if root == "steps" and len(path) > 2 and path[2] not in STEP_FIELDS:
        step = path[1]
        return f"steps.{step} has no '{path[2]}'; use steps.{step}.outputs.<key> or .status"
    return None


def _validate_shape(raw: dict[str, Any], source: SourceFile) -> Policy | None:
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        _report(exc, source, raw)
        return None


def _report(error: ValidationError, source: SourceFile, raw: Mapping[str, Any]) -> None:
    """Report like a workflow file, but suggest a policy file's own keys for unknown ones.

    ``report_validation_error`` adds one diagnostic per pydantic error, in order; it knows the
    tables of a workflow file, so unknown-key messages are rewritten for this file's tables.
    """
    start = len(source.diagnostics)
    report_validation_error(error, source, raw)
    details = error.errors(include_url=False)
    added = source.diagnostics[start:]
    if len(added) != len(details):
        return
    for offset, (detail, diagnostic) in enumerate(zip(details, added, strict=True)):
        if detail["type"] == "extra_forbidden":
            message = _unknown_key(tuple(detail["loc"]))
            source.diagnostics[start + offset] = replace(diagnostic, message=message)


def _unknown_key(loc: KeyPath) -> str:
    key, parent = str(loc[-1]), loc[:-1]
    where = f"in {dotted(parent)}" if parent else "at the top level"
    message = f"unknown key '{key}' {where}"
    if not parent:
        return message + did_you_mean(key, model_keys(Policy))
    if len(parent) == 2 and parent[0] == "rules":
        return message + did_you_mean(key, model_keys(PolicyRule))
    return message


__all__ = [
    "ENV_VARIABLE",
    "POLICY_FILENAME",
    "POLICY_SCOPE_ROOTS",
    "check_rule_names",
    "find_policy_file",
    "load_policy_file",
    "parse_policy",
    "parse_policy_cached",
]
