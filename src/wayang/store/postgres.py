"""The PostgreSQL adapter of the store port: a bounded psycopg pool, one transaction per call.

For fleets: any number of engines and workers, on any number of hosts, share one database. Each
call takes a connection from the pool (so the store is safe to share between threads: the
engine's committer writes from its thread while the event loop reads) and either runs one read
statement (autocommit: a single statement is a consistent snapshot) or one transaction at READ
COMMITTED. The statements are written so that this is enough:

* Claims (tasks, deliveries) lock what they take with ``FOR UPDATE SKIP LOCKED``: claimers never
  wait on each other and never take a task twice. Fencing tokens work as on SQLite: only the
  current token completes a task, and rejected completions are counted.
* An append checks and moves its run's version in one ``UPDATE``; the row lock it takes orders
  the run's writers, so a run's events commit in seq order and ``load_history`` never skips.
* Rows that several transactions may change together are locked in id order (runs, then tasks,
  each sorted), so two transactions never wait on each other in a circle.
* Seqs that readers page by with a cursor come from sequences, which hand numbers out at insert,
  not at commit: a reader could see seq 11 committed while seq 10 is not yet, move its cursor to
  11 and never see 10. So every transaction that publishes on a topic first takes the store's
  *topic lock* (a transaction-scoped advisory lock, released at commit), and takes its seqs
  after it: publishes commit in seq order, and what a reader sees is always a prefix. Log lines
  are paged by seq per run, so writers of a run's lines take that run's lock the same way.
  Advisory locks are taken first in a transaction, in key order, before any row lock.

Nothing about runs is cached in the process: memory does not grow with the number of runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from operator import itemgetter
from typing import Any

import psycopg

from wayang.store import rows
from wayang.store.port import (
    DEFAULT_TENANT,
    Append,
    ClaimedTask,
    Completion,
    ConcurrencyError,
    DeadLetter,
    LogLine,
    NewSignal,
    NewTopicMessage,
    RunRecord,
    SignalRecord,
    StoredEvent,
    StoreError,
    TaskRecord,
    Timer,
    TopicMessage,
)
from wayang.store.postgres_connection import (
    Connection,
    Target,
    lock_key,
    log_params,
    open_pool,
    parse_url,
    prepare,
    queries,
    translate,
)
from wayang.store.postgres_deliveries import DeliveriesMixin

DUPLICATE_COMPLETIONS = "duplicate_completions"
_by_available_at = itemgetter(-1)
_by_key = itemgetter(0)


class PostgresStore(DeliveriesMixin):
    """A :class:`~wayang.store.port.Store` in a PostgreSQL database (see the module docstring
    and :mod:`wayang.store.postgres_connection` for the URL)."""

    def __init__(self, url: str) -> None:
        self._target: Target = parse_url(url)
        self.where = str(self._target)
        self._sql = queries()
        self.schema = prepare(self._target)
        self._topic_lock = lock_key("topics", self.schema)
        self._close_lock = threading.Lock()
        self._closed = False
        self._pool = open_pool(self._target)

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Let no driver or pool error escape untranslated."""
        if self._closed:
            raise StoreError(f"the store {self.where} is closed")
        try:
            yield
        except psycopg.Error as exc:
            raise translate(exc, self.where) from exc

    @contextmanager
    def _write(self, locks: Iterable[int] = ()) -> Iterator[Connection]:
        """One write transaction; any exception rolls all of it back.

        ``locks`` are advisory lock keys taken first, in key order (see the module docstring).
        """
        with self._translated(), self._pool.connection() as conn, conn.transaction():
            keys = sorted(set(locks))
            if keys:
                conn.execute(self._sql["take_locks"], {"keys": keys})
            yield conn

    def _rows(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run one read query; a single statement is a consistent snapshot, no transaction."""
        with self._translated(), self._pool.connection() as conn:
            return conn.execute(self._sql[name], params).fetchall()

    def _many(self, conn: Connection, name: str, params: Iterable[rows.Params]) -> None:
        batch = list(params)
        if batch:
            with conn.cursor() as cursor:
                cursor.executemany(self._sql[name], batch)

    def _log_locks(self, lines: Iterable[LogLine]) -> list[int]:
        """The locks of the runs whose lines a transaction writes."""
        return [lock_key("logs", self.schema, run_id) for run_id in {line.run_id for line in lines}]

    # ------------------------------------------------------------------ runs and histories

    def create_run(self, run: RunRecord, first: Append) -> None:
        """Insert ``run`` and apply its first append (``expected_version`` 0) atomically.

        The run's ``version`` is not taken from ``run``: it is the number of events in ``first``.
        Those events are stamped ``run.updated_at``. A run id already taken is a conflict.
        """
        if first.run_id != run.run_id or first.expected_version != 0:
            raise StoreError(
                f"the first append of run {run.run_id} must be for that run and expect "
                f"version 0, not {first.run_id} at {first.expected_version}"
            )
        self.commit([replace(first, create=run)], run.updated_at)

    def commit(self, appends: Sequence[Append], now: float, logs: Sequence[LogLine] = ()) -> None:
        """Apply every append, and store ``logs``, in one transaction (group commit)."""
        if not appends and not logs:
            return
        locks = self._log_locks(logs)
        if any(append.publish for append in appends):
            locks.append(self._topic_lock)
        with self._write(locks) as conn:
            self._apply(conn, appends, now)
            self._many(conn, "insert_log", map(log_params, logs))

    def _apply(self, conn: Connection, appends: Sequence[Append], now: float) -> None:
        # As on SQLite: a run's version is checked and moved once for all its appends in the
        # group, rows of one kind go in one batch, timers keep the order of the appends, tasks
        # go in before any append finishes them. Runs are created and advanced in id order and
        # the tasks the group finishes are locked in id order, so two groups touching the same
        # runs or tasks wait for each other instead of deadlocking.
        creates = sorted((a for a in appends if a.create is not None), key=lambda a: a.run_id)
        for append in creates:
            self._insert_run(conn, append)
        moves = sorted(rows.by_run(appends), key=_by_key)
        tenants = {run_id: self._advance(conn, move, now) for run_id, move in moves}
        self._many(conn, "insert_task", (rows.task_params(t) for a in appends for t in a.tasks))
        for append in appends:
            if append.timers or append.cancel_timers:
                self._apply_timers(conn, append)
        self._insert_rows(conn, appends, now)
        answers = [row for append in appends for row in rows.answer_params(append, now)]
        self._many(conn, "answer_signal", sorted(answers, key=itemgetter("seq")))
        self._many(
            conn,
            "insert_event",
            (row for a in appends for row in rows.event_params(a, tenants[a.run_id], now)),
        )

    def _insert_rows(self, conn: Connection, appends: Sequence[Append], now: float) -> None:
        """The group's completions consumed, tasks finished, dead letters and topic messages."""
        consumed = [(task_id, a.run_id) for a in appends for task_id in a.acknowledge]
        finished = [(task_id, a.run_id) for a in appends for task_id in a.finish_tasks]
        if consumed or finished:
            task_ids = sorted({task_id for task_id, _ in (*consumed, *finished)})
            conn.execute(self._sql["lock_tasks"], {"task_ids": task_ids})
        batches: dict[str, list[rows.Params]] = {
            "consume_completion": [{"task_id": t, "run_id": r} for t, r in consumed],
            "finish_task": [{"task_id": t, "run_id": r, "now": now} for t, r in finished],
            "insert_dead_letter": [
                rows.dead_letter_params(d) for append in appends for d in append.dead_letters
            ],
            "append_topic_message": [
                rows.topic_message_params(m) for append in appends for m in append.publish
            ],
        }
        for name, params in batches.items():
            self._many(conn, name, params)

    def _insert_run(self, conn: Connection, append: Append) -> None:
        run = append.create
        assert run is not None
        if append.run_id != run.run_id or append.expected_version != 0:
            raise StoreError(
                f"an append creating run {run.run_id} must be for that run and expect "
                f"version 0, not {append.run_id} at {append.expected_version}"
            )
        if conn.execute(self._sql["insert_run"], rows.run_params(run)).rowcount != 1:
            raise ConcurrencyError(f"run {run.run_id} already exists", run.run_id)

    def _apply_timers(self, conn: Connection, append: Append) -> None:
        # Cancel before insert, so one append may cancel and re-arm the same timer id.
        run_id = append.run_id
        self._many(
            conn, "delete_timer", ({"timer_id": t, "run_id": run_id} for t in append.cancel_timers)
        )
        self._many(conn, "insert_timer", map(rows.timer_params, append.timers))

    def _advance(self, conn: Connection, moves: rows.VersionMove, now: float) -> str:
        """Check and move the run's version in one statement; return the run's tenant."""
        params = {
            "run_id": moves.first.run_id,
            "expected_version": moves.first.expected_version,
            "new_version": moves.version,
            "status": moves.status,
            "now": now,
        }
        row = conn.execute(self._sql["advance_run"], params).fetchone()
        if row is None:
            raise self._conflict(conn, moves.first)
        return str(row[0])

    def _conflict(self, conn: Connection, append: Append) -> StoreError:
        found = conn.execute(self._sql["run_version"], {"run_id": append.run_id}).fetchone()
        if found is None:
            return StoreError(f"run {append.run_id} does not exist; create it with create_run")
        return ConcurrencyError(
            f"run {append.run_id} is at version {found[0]}, but the append expected "
            f"{append.expected_version}: another writer got there first; reload its history",
            append.run_id,
        )

    def load_history(self, run_id: str, after_seq: int = 0) -> list[StoredEvent]:
        found = self._rows("load_history", {"run_id": run_id, "after_seq": after_seq})
        return [rows.read_event(row) for row in found]

    def get_run(self, run_id: str, tenant: str = DEFAULT_TENANT) -> RunRecord | None:
        found = self._rows("get_run", {"run_id": run_id, "tenant": tenant})
        return rows.read_run(found[0]) if found else None

    def page_runs(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
        tenant: str = DEFAULT_TENANT,
    ) -> list[RunRecord]:
        """Runs newest first, optionally of one status and workflow, older than ``before``
        (the ``(created_at, run_id)`` of the last run of the page before)."""
        before_at, before_id = before if before is not None else (float("inf"), "")
        params = {
            "tenant": tenant,
            "status": status,
            "workflow_id": workflow_id,
            "before_at": before_at,
            "before_id": before_id,
            "limit": limit,
        }
        return [rows.read_run(row) for row in self._rows("page_runs", params)]

    def list_runs(
        self, status: str | None = None, limit: int = 50, tenant: str = DEFAULT_TENANT
    ) -> list[RunRecord]:
        """The newest runs of ``tenant`` first, optionally only those with ``status``."""
        params = {"tenant": tenant, "status": status, "limit": limit}
        name = "list_runs" if status is None else "list_runs_by_status"
        return [rows.read_run(row) for row in self._rows(name, params)]

    def lease_run(self, run_id: str, owner: str, now: float, lease_s: float) -> bool:
        """Take or renew the lease on driving ``run_id``; False if another owner holds it."""
        params = {"run_id": run_id, "owner": owner, "now": now, "lease_expires_at": now + lease_s}
        with self._write() as conn:
            return conn.execute(self._sql["lease_run"], params).rowcount == 1

    def steal_run(
        self, run_id: str, owner: str, previous_owner: str | None, now: float, lease_s: float
    ) -> bool:
        """Take the run from ``previous_owner`` (known gone) whatever its lease says."""
        params = {
            "run_id": run_id,
            "owner": owner,
            "previous_owner": previous_owner,
            "lease_expires_at": now + lease_s,
        }
        with self._write() as conn:
            return conn.execute(self._sql["steal_run"], params).rowcount == 1

    def release_run(self, run_id: str, owner: str) -> None:
        """Give up the lease on ``run_id`` so another engine may take it at once."""
        with self._write() as conn:
            conn.execute(self._sql["release_run"], {"run_id": run_id, "owner": owner})

    def renew_leases(self, owner: str, now: float, lease_s: float) -> None:
        """Extend every lease ``owner`` holds, on runs and on tasks, in one transaction."""
        params = {"owner": owner, "lease_expires_at": now + lease_s}
        with self._write() as conn:
            conn.execute(self._sql["renew_run_leases"], params)
            conn.execute(self._sql["renew_task_leases"], params)

    def orphaned_runs(self, now: float, limit: int = 100) -> list[RunRecord]:
        """Unfinished runs nobody drives: no lease, or one that ran out."""
        found = self._rows("orphaned_runs", {"now": now, "limit": limit})
        return [rows.read_run(row) for row in found]

    # ------------------------------------------------------------------ tasks

    def claim(
        self, owner: str, now: float, lease_s: float, limit: int = 1, queue: str = "default"
    ) -> list[ClaimedTask]:
        """Lease up to ``limit`` tasks of ``queue``, oldest first; each claim bumps the token."""
        if limit <= 0:
            return []
        params = {
            "owner": owner,
            "now": now,
            "lease_expires_at": now + lease_s,
            "limit": limit,
            "queue": queue,
        }
        with self._write() as conn:
            claimed = conn.execute(self._sql["claim_tasks"], params).fetchall()
        claimed.sort(key=_by_available_at)
        return [rows.read_claimed(row) for row in claimed]

    def heartbeat(self, task_id: str, fencing_token: int, now: float, lease_s: float) -> bool:
        """Extend the lease, if the caller still holds it (status claimed, same token)."""
        params = {
            "task_id": task_id,
            "fencing_token": fencing_token,
            "lease_expires_at": now + lease_s,
        }
        with self._write() as conn:
            return conn.execute(self._sql["heartbeat_task"], params).rowcount == 1

    def complete(
        self, task_id: str, fencing_token: int, result: dict[str, Any], now: float
    ) -> bool:
        """Record the result if the token is current; otherwise count a duplicate, return False."""
        params = {
            "task_id": task_id,
            "fencing_token": fencing_token,
            "result": rows.to_json(result),
            "now": now,
        }
        with self._write() as conn:
            done = conn.execute(self._sql["complete_task"], params).rowcount == 1
            if not done:
                conn.execute(self._sql["bump_counter"], {"name": DUPLICATE_COMPLETIONS})
        return done

    def duplicate_completions(self) -> int:
        """How many completions were rejected (stale token, or the task already completed)."""
        found = self._rows("read_counter", {"name": DUPLICATE_COMPLETIONS})
        return int(found[0][0]) if found else 0

    def completions(self, run_id: str | None = None, limit: int = 1000) -> list[Completion]:
        """Completed tasks not yet acknowledged by an append, in order of completion."""
        params = {"run_id": run_id, "limit": limit}
        name = "completions" if run_id is None else "completions_for_run"
        return [rows.read_completion(row) for row in self._rows(name, params)]

    def requeue_expired(self, now: float) -> int:
        """Send claimed tasks whose lease ran out back to the queue; return how many."""
        with self._write() as conn:
            return int(conn.execute(self._sql["requeue_expired"], {"now": now}).rowcount)

    def adopt_tasks(self, run_id: str, owner: str, now: float, lease_s: float) -> list[ClaimedTask]:
        """Lease every open task of ``run_id`` (queued, or leased by anyone) to ``owner``."""
        params = {"run_id": run_id, "owner": owner, "lease_expires_at": now + lease_s}
        with self._write() as conn:
            found = conn.execute(self._sql["adopt_tasks"], params).fetchall()
        found.sort(key=_by_available_at)
        return [rows.read_claimed(row) for row in found]

    def run_tasks(self, run_id: str) -> list[TaskRecord]:
        """Every task of ``run_id``, oldest first."""
        return [rows.read_task(row) for row in self._rows("run_tasks", {"run_id": run_id})]

    # ------------------------------------------------------------------ timers

    def due_timers(self, now: float, limit: int = 100) -> list[Timer]:
        """Timers due by ``now``, soonest first; they stay until an append cancels them."""
        found = self._rows("due_timers", {"now": now, "limit": limit})
        return [rows.read_timer(row) for row in found]

    def run_timers(self, run_id: str) -> list[Timer]:
        """The pending timers of one run, soonest first."""
        return [rows.read_timer(row) for row in self._rows("run_timers", {"run_id": run_id})]

    # ------------------------------------------------------------------ signals

    def send_signal(self, signal: NewSignal) -> int:
        """Put ``signal`` in its run's inbox, pending; return its seq, which names it for good."""
        with self._write() as conn:
            found = conn.execute(self._sql["insert_signal"], rows.signal_params(signal))
            return int(found.fetchone()[0])  # type: ignore[index]

    def pending_signals(self, run_id: str) -> list[SignalRecord]:
        """The run's signals no append has answered yet, oldest first."""
        found = self._rows("pending_signals", {"run_id": run_id})
        return [rows.read_signal(row) for row in found]

    def get_signal(self, seq: int) -> SignalRecord | None:
        """Signal ``seq`` whatever its status (a sender asking what became of it), or None."""
        found = self._rows("get_signal", {"seq": seq})
        return rows.read_signal(found[0]) if found else None

    # ------------------------------------------------------------------ topics

    def publish(self, message: NewTopicMessage) -> int:
        """Add ``message`` to its topic; return its seq, greater than every seq before it."""
        params = rows.topic_message_params(message)
        with self._write([self._topic_lock]) as conn:
            found = conn.execute(self._sql["insert_topic_message"], params)
            return int(found.fetchone()[0])  # type: ignore[index]

    def topic_messages(
        self,
        topic: str,
        after_seq: int = 0,
        since: float = 0.0,
        limit: int = 1000,
        tenant: str = DEFAULT_TENANT,
    ) -> list[TopicMessage]:
        """``topic``'s messages after ``after_seq`` published at ``since`` or later, in order.

        Nothing is consumed: each reader keeps its cursor (the last seq it saw) and pages on.
        """
        params = {
            "tenant": tenant,
            "topic": topic,
            "after_seq": after_seq,
            "since": since,
            "limit": limit,
        }
        return [rows.read_topic_message(row) for row in self._rows("topic_messages", params)]

    def latest_topic_seq(self) -> int:
        """The highest seq published on any topic, 0 if none: a cursor for "from now on"."""
        return int(self._rows("latest_topic_seq", {})[0][0])

    # ------------------------------------------------------------------ logs

    def append_logs(self, lines: Sequence[LogLine]) -> None:
        if not lines:
            return
        with self._write(self._log_locks(lines)) as conn:
            self._many(conn, "insert_log", map(log_params, lines))

    def read_logs(
        self, run_id: str, step_id: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[LogLine]:
        """A run's lines (or one step's) after ``after_seq``, in order: page with the last seq."""
        params = {"run_id": run_id, "step_id": step_id, "after_seq": after_seq, "limit": limit}
        name = "read_logs" if step_id is None else "read_logs_for_step"
        return [rows.read_log(row) for row in self._rows(name, params)]

    # ------------------------------------------------------------------ dead letters

    def add_dead_letter(self, letter: DeadLetter) -> None:
        with self._write() as conn:
            conn.execute(self._sql["insert_dead_letter"], rows.dead_letter_params(letter))

    def dead_letters(self, tenant: str = DEFAULT_TENANT, limit: int = 100) -> list[DeadLetter]:
        found = self._rows("dead_letters", {"tenant": tenant, "limit": limit})
        return [rows.read_dead_letter(row) for row in found]

    def remove_dead_letter(self, dlq_id: str) -> DeadLetter | None:
        """Take a dead letter out (to replay it); None if there is no such letter."""
        with self._write() as conn:
            found = conn.execute(self._sql["remove_dead_letter"], {"dlq_id": dlq_id}).fetchone()
        return rows.read_dead_letter(found) if found else None

    # ------------------------------------------------------------------ key-value

    def kv_get(self, namespace: str, key: str) -> Any:
        """The value stored under ``namespace``/``key``, or None."""
        found = self._rows("kv_get", {"namespace": namespace, "key": key})
        return rows.from_json(found[0][0]) if found else None

    def kv_set(self, namespace: str, key: str, value: Any) -> None:
        params = {"namespace": namespace, "key": key, "value": rows.to_json(value)}
        with self._write() as conn:
            conn.execute(self._sql["kv_set"], params)

    def kv_swap(self, namespace: str, key: str, expected: Any, value: Any) -> bool:
        """Set ``key`` to ``value`` only if it holds ``expected``, atomically against every other
        writer; whether it did. None stands for "absent" on both sides: expecting None means the
        key must not exist, and a ``value`` of None deletes it.

        A present key is locked while it is compared; an absent one cannot be, so a swap from
        "absent" inserts with ON CONFLICT DO NOTHING and whoever inserted first wins.
        """
        where = {"namespace": namespace, "key": key}
        with self._write() as conn:
            found = conn.execute(self._sql["kv_get_for_update"], where).fetchone()
            if (rows.from_json(found[0]) if found else None) != expected:
                return False
            if value is None:
                conn.execute(self._sql["kv_delete"], where)
                return True
            params = {**where, "value": rows.to_json(value)}
            if found is None:
                return conn.execute(self._sql["kv_insert_new"], params).rowcount == 1
            conn.execute(self._sql["kv_set"], params)
            return True

    def kv_delete(self, namespace: str, key: str) -> None:
        with self._write() as conn:
            conn.execute(self._sql["kv_delete"], {"namespace": namespace, "key": key})

    def kv_scan(self, namespace: str) -> dict[str, Any]:
        """Every key and value of ``namespace``."""
        found = self._rows("kv_scan", {"namespace": namespace})
        return {key: rows.from_json(value) for key, value in found}

    def kv_namespaces(self, prefix: str) -> list[str]:
        """The namespaces that start with ``prefix`` and hold at least one key, in order."""
        return [namespace for (namespace,) in self._rows("kv_namespaces", {"prefix": prefix})]

    # ------------------------------------------------------------------ lifetime

    def settings(self) -> dict[str, Any]:
        """Where the store is and how its pool stands (for diagnostics)."""
        with self._translated(), self._pool.connection() as conn:
            version = conn.execute(self._sql["schema_version"]).fetchone()
            server = conn.info.server_version
        return {
            "where": self._target.where,
            "schema": self.schema,
            "pool_max": self._target.pool_max,
            "schema_version": int(version[0]) if version else 0,
            "server_version": server,
            "pool": self._pool.get_stats(),
        }

    def close(self) -> None:
        """Close the pool and its connections; closing twice is harmless."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close()
