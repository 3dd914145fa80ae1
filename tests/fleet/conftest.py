"""Fixtures of the fleet fault tests: a PostgreSQL store and ledger of their own, and a fleet of
real processes on them that is killed whatever happens.

The server is ``postgres_server`` of tests/support/postgres_fixtures.py (``$WAYANG_TEST_POSTGRES``,
skipped without one, failed under ``CI=true``). Each test gets two new schemas, dropped after it:
``wayang_f_<random>`` for the store and ``…_ledger`` for the tables its steps write
(``fleet_steps.LEDGER_TABLES``; a store refuses a schema holding other tables).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_fixtures import admin_connection

from fleet_procs import Fleet, FleetDb, fleet_of, ledger_dsn
from fleet_steps import LEDGER_TABLES


@pytest.fixture
def fleet_db(postgres_server: str) -> Iterator[FleetDb]:
    """A new store schema and ledger schema, dropped with all they hold after the test."""
    schema = f"wayang_f_{secrets.token_hex(6)}"
    ledger = f"{schema}_ledger"
    with admin_connection() as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE SCHEMA {ledger}")
        conn.execute(f"SET search_path = {ledger}")
        conn.execute(LEDGER_TABLES)
    separator = "&" if "?" in postgres_server else "?"
    db, books = admin_connection(), admin_connection()
    db.execute(f"SET search_path = {schema}")
    books.execute(f"SET search_path = {ledger}")
    try:
        yield FleetDb(
            f"{postgres_server}{separator}schema={schema}",
            ledger_dsn(postgres_server, ledger),
            db,
            books,
        )
    finally:
        db.close()
        books.close()
        with admin_connection() as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            conn.execute(f"DROP SCHEMA {ledger} CASCADE")


@pytest.fixture
def fleet(fleet_db: FleetDb, tmp_path: Path) -> Iterator[Fleet]:
    """Processes on the test's store; every one still alive is killed after the test."""
    with fleet_of(fleet_db.store, tmp_path / "fleet") as found:
        yield found
