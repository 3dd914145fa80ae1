"""PostgreSQL for the tests: a fresh schema per test, in a server that must be there on CI.

The server is ``$WAYANG_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``,
trust authentication). Each test that asks for ``postgres_url`` gets its own new schema,
``wayang_t_<random>``, named by the URL's ``schema`` parameter, and the schema is dropped after the
test. Without a server the tests skip, except under ``CI=true``, where they fail: tests that need
PostgreSQL must run in CI.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest

POSTGRES_URL = os.environ.get("WAYANG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The test server's URL, once it is known to answer; skip (fail on CI) otherwise."""
    try:
        with admin_connection() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = f"no PostgreSQL at {POSTGRES_URL} ({str(exc).strip().splitlines()[0]})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: tests that need PostgreSQL must run under CI=true")
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture
def postgres_schema(postgres_server: str) -> Iterator[str]:
    """A new, empty schema of the test server, dropped with all it holds after the test."""
    name = f"wayang_t_{secrets.token_hex(6)}"
    with admin_connection() as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        with admin_connection() as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def postgres_url(postgres_server: str, postgres_schema: str) -> str:
    """A store URL for this test's own schema."""
    separator = "&" if "?" in postgres_server else "?"
    return f"{postgres_server}{separator}schema={postgres_schema}"
