"""Fixtures for the event-step tests: a clean import state, the fixture project, the CLI."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wayang.steps.discovery import MODULE_PREFIX

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Step files and the project modules they import leave sys.path and sys.modules as found."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith((MODULE_PREFIX, "src", "helper")):
            del sys.modules[name]


@pytest.fixture
def shop_root(tmp_path: Path) -> Path:
    """A copy of the fixture project ``shop``."""
    root = tmp_path / "shop"
    shutil.copytree(FIXTURES / "shop", root)
    return root
