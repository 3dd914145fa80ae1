"""Check a workflow's ``[requirements]`` on this machine: tools on PATH, versions, variables."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wayang.errors import UsageError
from wayang.model.spec import Requirements, Workflow

_TOOL = re.compile(r"^\s*([\w.+-]+)\s*(?:(>=|<=|==|>|<)\s*([\w.]+)\s*)?$")
_VERSION = re.compile(r"(\d+(?:\.\d+)+)")
_COMPARE: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}


@dataclass(frozen=True, slots=True)
class ToolVersion:
    """Finds a tool and asks it for its version; replaced in tests that need odd versions."""

    which: Callable[[str], str | None] = shutil.which
    timeout_s: float = 5.0

    def version(self, path: str) -> str | None:
        try:
            done = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=self.timeout_s
            )
        except (OSError, subprocess.SubprocessError):
            return None
        match = _VERSION.search(done.stdout + done.stderr)
        return match.group(1) if match else None


def _as_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def missing_requirements(
    requirements: Requirements,
    environ: Mapping[str, str],
    tools: ToolVersion | None = None,
) -> list[str]:
    """One sentence per unmet requirement, each naming what is missing and what to do."""
    finder = tools or ToolVersion()
    problems = [p for spec in requirements.tools if (p := _tool_problem(spec, finder))]
    problems.extend(
        f"environment variable {name} is not set: export it before the run"
        for name in requirements.env
        if name not in environ
    )
    return problems


def _tool_problem(spec: str, finder: ToolVersion) -> str | None:
    match = _TOOL.match(spec)
    if match is None:
        return f"cannot read tool requirement {spec!r}"
    name, operator, wanted = match.groups()
    path = finder.which(name)
    if path is None:
        return f"tool '{name}' is not on PATH: install it or add its folder to PATH"
    if operator is None:
        return None
    found = finder.version(path)
    if found is None:
        return (
            f"tool '{name}' ({path}) did not report a version with --version; "
            f"need {operator} {wanted}"
        )
    if not _COMPARE[operator](_as_tuple(found), _as_tuple(wanted)):
        return f"tool '{name}' is version {found}; this workflow needs {name} {operator} {wanted}"
    return None


def check_requirements(workflow: Workflow, overrides: Mapping[str, str]) -> None:
    """Refuse to start when this machine lacks what ``[requirements]`` lists (exit 2)."""
    problems = missing_requirements(workflow.requirements, {**os.environ, **overrides})
    if problems:
        lines = "".join(f"\n  - {problem}" for problem in problems)
        raise UsageError(
            f"workflow {workflow.id} needs what this machine lacks (nothing was started):{lines}"
        )
