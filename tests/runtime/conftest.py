"""Fixtures of the runtime tests: an app over each store, a real SQLite file and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_helpers import FAST
from wayang.app import App, Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store in a SQLite file, then one in a fresh PostgreSQL schema (``postgres_url``)."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "wayang.db")


@pytest.fixture
def app(store_location: str) -> Iterator[App]:
    """An app whose engines keep quick time (``FAST``), over ``store_location``."""
    made = App(Settings(store=store_location, engine=FAST))
    yield made
    made.close()
