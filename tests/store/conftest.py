"""The store tests' ``store`` fixture: every adapter in turn (PostgreSQL fixtures: tests/support)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from wayang.store.port import Store
from wayang.store.postgres import PostgresStore
from wayang.store.sqlite import SQLiteStore


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every store adapter in turn, for the contract suites."""
    opened: Store
    if request.param == "sqlite-file":
        opened = SQLiteStore(tmp_path / "store.db")
    elif request.param == "postgresql":
        opened = PostgresStore(request.getfixturevalue("postgres_url"))
    else:
        opened = SQLiteStore(":memory:")
    yield opened
    opened.close()
