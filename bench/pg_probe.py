"""PostgreSQL helpers for the fleet benchmarks: a fresh schema per run, and what the server did.

``fresh_schema`` names a schema nobody uses and ``drop_schema`` removes it (with everything in it)
after the run. The benchmarks use a database of their own (``wayang_bench``, created on first
use and kept), so the server's per-database counters count their transactions alone.

``Probe`` takes a snapshot before and after the measured phase: the CPU seconds (from ``/proc``)
of the server processes that work for the benchmark — the backends of its connections, found by
the ``application_name`` in its store URL, plus the server's shared background processes (WAL
writer, checkpointer, background writer) — and of the given PIDs; and the database's commit count
and the cluster's WAL counters. The WAL counters and the background processes are shared with
whatever else uses the server: keep the machine otherwise idle.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

SERVER = "postgresql://postgres@127.0.0.1:5432"
DATABASE = "wayang_bench"
DEFAULT_BASE = f"{SERVER}/{DATABASE}"
TICKS = os.sysconf("SC_CLK_TCK")
SHARED_BACKENDS = ("walwriter", "checkpointer", "background writer")


def fresh_schema(prefix: str = "wayang_bench") -> str:
    """A schema name of this process alone (lower case, as the store requires)."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def store_url(
    base: str, schema: str, pool_max: int | None = None, synchronous_commit: str = "on"
) -> str:
    """The store URL for ``schema`` in the database ``base`` names; its connections carry the
    schema as their ``application_name``, so :class:`Probe` finds their backends.
    ``synchronous_commit="off"`` (a diagnostic: commits no longer wait for the disk) shows what
    the same work costs without the flush."""
    joiner = "&" if "?" in base else "?"
    extra = f"&pool_max={pool_max}" if pool_max else ""
    if synchronous_commit != "on":
        extra += f"&options=-c%20synchronous_commit%3D{synchronous_commit}"
    return f"{base}{joiner}schema={schema}&application_name={schema}{extra}"


def ensure_database(base: str) -> None:
    """Create the database ``base`` names if it is missing (through the ``postgres`` one)."""
    name = psycopg.conninfo.conninfo_to_dict(base)["dbname"]
    admin = psycopg.conninfo.make_conninfo(base, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if found is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name))))


def drop_schema(base: str, schema: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def server_pids(base: str, application_name: str) -> list[int]:
    """The backends serving ``application_name``, and the server's shared writers."""
    query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s OR backend_type = ANY(%s)"
    with psycopg.connect(base, autocommit=True) as conn:
        rows = conn.execute(query, [application_name, list(SHARED_BACKENDS)]).fetchall()
    return [int(row[0]) for row in rows]


@dataclass
class Snapshot:
    postgres_cpu: dict[int, float]
    others_cpu: dict[int, float]
    counters: dict[str, int]


@dataclass
class Probe:
    """CPU and server counters between :meth:`start` and :meth:`stop`; see the module docstring.
    ``application_name``: that of the store URL (:func:`store_url` sets it to the schema)."""

    base: str
    application_name: str
    pids: list[int] = field(default_factory=list)
    _before: Snapshot | None = None

    def _server_cpu(self) -> dict[int, float]:
        return {pid: cpu_seconds(pid) for pid in server_pids(self.base, self.application_name)}

    def snapshot(self) -> Snapshot:
        return Snapshot(
            self._server_cpu(),
            {pid: cpu_seconds(pid) for pid in self.pids},
            self.counters(),
        )

    def counters(self) -> dict[str, int]:
        query = (
            "SELECT d.xact_commit, d.xact_rollback, w.wal_records, w.wal_sync, w.wal_bytes "
            "FROM pg_stat_database AS d, pg_stat_wal AS w WHERE d.datname = current_database()"
        )
        with psycopg.connect(self.base, autocommit=True) as conn:
            row = conn.execute(query).fetchone()
        names = ("xact_commit", "xact_rollback", "wal_records", "wal_sync", "wal_bytes")
        return dict(zip(names, (int(value) for value in row or (0,) * 5), strict=True))

    def start(self) -> None:
        self._before = self.snapshot()

    def stop(self) -> tuple[float, dict[int, float]]:
        """CPU seconds since :meth:`start`: of the server, and of each of ``pids``."""
        before = self._require_start()
        server = self._server_cpu()
        pg = sum(cpu - before.postgres_cpu.get(pid, 0.0) for pid, cpu in server.items())
        return pg, {pid: cpu_seconds(pid) - before.others_cpu.get(pid, 0.0) for pid in self.pids}

    def counted(self) -> dict[str, int]:
        """The server's counters since :meth:`start`. A backend reports its counts when it goes
        idle (at most once a second) or exits: call this once the measured clients closed."""
        before = self._require_start().counters
        return {name: value - before.get(name, 0) for name, value in self.counters().items()}

    def _require_start(self) -> Snapshot:
        if self._before is None:
            raise RuntimeError("call start() first")
        return self._before
