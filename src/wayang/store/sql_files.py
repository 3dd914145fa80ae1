"""SQL kept in files: named queries, the current schema and ordered migrations of one dialect.

Each dialect has a folder under ``wayang/store/sql/`` (``sqlite/``, ``postgresql/``)::

    sql/<dialect>/schema.sql           the whole current schema, for new stores
    sql/<dialect>/queries.sql          named queries, one ``-- name: claim_tasks`` block each
    sql/<dialect>/migrations/0001_initial.sql, 0002_…   applied in order to older stores

A migration's number is the schema version it produces, so the latest number is the version the
code knows. Files are read through :mod:`importlib.resources`, so they work from a wheel as well as
from a source tree. Nothing here knows SQL syntax beyond the ``-- name:`` marker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import TYPE_CHECKING

from wayang.store.port import StoreError

if TYPE_CHECKING:
    from collections.abc import Mapping

_NAME_LINE = re.compile(r"^--\s*name:\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*$")
_MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration script: applying it brings a store to schema ``version``."""

    version: int
    name: str
    sql: str


def parse_queries(text: str, source: str = "<sql>") -> dict[str, str]:
    """Split ``text`` into ``{name: sql}`` at each ``-- name: xxx`` line.

    Only comments and blank lines may come before the first name, and a name may appear once:
    both mistakes would otherwise silently lose a query.
    """
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _NAME_LINE.match(line.strip())
        if match:
            current = _start_query(queries, match["name"], source, number)
        elif current is not None:
            current.append(line)
        elif line.strip() and not line.lstrip().startswith("--"):
            raise StoreError(f"{source}:{number}: SQL before the first '-- name:' line")
    return {name: _without_trailing_comments(lines) for name, lines in queries.items()}


def _start_query(queries: dict[str, list[str]], name: str, source: str, line: int) -> list[str]:
    if name in queries:
        raise StoreError(f"{source}:{line}: query {name!r} is defined twice")
    queries[name] = []
    return queries[name]


def _without_trailing_comments(lines: list[str]) -> str:
    """The query's text, less the comments after it, which introduce the next query."""
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("--")):
        end -= 1
    return "\n".join(lines[:end]).strip()


def _dialect_dir(dialect: str) -> Traversable:
    return files("wayang.store").joinpath("sql", dialect)


@cache
def queries(dialect: str) -> Mapping[str, str]:
    """The named queries of ``dialect``, read once per process (they never change while it runs)."""
    resource = _dialect_dir(dialect).joinpath("queries.sql")
    return MappingProxyType(parse_queries(resource.read_text("utf-8"), f"{dialect}/queries.sql"))


def schema(dialect: str) -> str:
    """The full current schema of ``dialect``, used to create a new store in one step."""
    return _dialect_dir(dialect).joinpath("schema.sql").read_text("utf-8")


@cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    """The migrations of ``dialect`` in order; numbers must run 1, 2, 3… with no gap."""
    found = sorted(
        (int(match["version"]), match["name"], entry)
        for entry in _dialect_dir(dialect).joinpath("migrations").iterdir()
        if (match := _MIGRATION_FILE.match(entry.name))
    )
    for expected, (version, name, _) in enumerate(found, start=1):
        if version != expected:
            raise StoreError(f"{dialect} migration {version:04d}_{name} should be {expected:04d}")
    return tuple(Migration(v, n, entry.read_text("utf-8")) for v, n, entry in found)


def latest_version(dialect: str) -> int:
    """The schema version the code knows: the number of the last migration."""
    return len(migrations(dialect))
