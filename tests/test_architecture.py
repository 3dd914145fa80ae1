"""The shape of the package: layers point down, and the public API is what we say it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import wayang

ROOT = Path(__file__).parents[1]


def test_layers_point_down_only() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint_imports), "--config", str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_public_api_is_pinned() -> None:
    assert wayang.__all__ == [
        "DefinitionError",
        "Diagnostic",
        "ExpressionError",
        "PlanError",
        "UsageError",
        "WayangError",
        "Workflow",
        "__version__",
        "load_workflow",
        "parse_workflow",
        "plan_workflow",
    ]
    for name in wayang.__all__:
        assert getattr(wayang, name) is not None


def test_every_error_derives_from_the_root() -> None:
    for name in ("DefinitionError", "ExpressionError", "PlanError", "UsageError"):
        assert issubclass(getattr(wayang, name), wayang.WayangError)
