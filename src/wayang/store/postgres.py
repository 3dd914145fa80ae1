"""The PostgreSQL adapter of the store port: a bounded psycopg pool, one transaction per call.

For fleets: any number of engines and workers, on any number of hosts, share one database. Each
call takes a connection from the pool (so the store is safe to share between threads: the
engine's committer writes from its thread while the event loop reads) and either runs one read
statement (autocommit: a single statement is a consistent snapshot) or one transaction at READ
COMMITTED. The statements are written so that this is enough:

* Claims (tasks, deliveries) lock what they take with ``FOR UPDATE SKIP LOCKED``: claimers never
  wait on each other and never take a task twice. Fencing tokens work as on SQLite: only the
  current token completes a task, and rejected completions are counted.
* An append checks and moves its run's version in one statement (``advance_runs``, a function
  of the schema that fails the transaction on a stale version); the row lock it takes orders
  the run's writers, so a run's events commit in seq order and ``load_history`` never skips.
* The writes on a step's path (a group commit, a worker's results and next claim) are sent
  pipelined, ``BEGIN`` to ``COMMIT``, in one round trip (:meth:`PostgresStore._pipelined_write`).
* Rows that several transactions may change together are locked in id order (runs, then tasks,
  each sorted), so two transactions never wait on each other in a circle.
* Seqs that readers page by with a cursor come from sequences, which hand numbers out at insert,
  not at commit: a reader could see seq 11 committed while seq 10 is not yet, move its cursor to
  11 and never see 10. So every transaction that publishes on a topic first takes the store's
  *topic lock* (a transaction-scoped advisory lock, released at commit), and takes its seqs
  after it: publishes commit in seq order, and what a reader sees is always a prefix. Log lines
  are paged by seq per run, so writers of a run's lines take that run's lock the same way.
  Advisory locks are taken first in a transaction, in key order, before any row lock.

Transactions that queue a worker's task or record a worker's result also send a NOTIFY (see
:mod:`wayang.store.postgres_wakeups`), delivered at commit: idle workers and engines wake at once
instead of at their next poll.

A server that goes away (restarts, or ends the sessions) shows as a
:class:`~wayang.store.port.StoreUnavailableError`, in doubt if the connection was lost while a
transaction was committing; the pool's idle connections are checked at once then, so the broken
ones are replaced instead of failing one call each. Callers that can wait retry with backoff.

Nothing about runs is cached in the process: memory does not grow with the number of runs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import psycopg

from wayang.store import rows
from wayang.store.port import (
    HANDED_OFF,
    Append,
    ClaimRequest,
    ConcurrencyError,
    FencedResult,
    LogLine,
    NewSignal,
    NewTopicMessage,
    Reported,
    RunRecord,
    StoreError,
    runs_wakeup,
    task_wakeup,
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
    unavailable,
)
from wayang.store.postgres_deliveries import DeliveriesMixin
from wayang.store.postgres_wakeups import PostgresWakeups, channel_name
from wayang.store.sql_shared import SharedStatements

_by_key = itemgetter(0)
_UNFINISHED = (psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR)


@dataclass(slots=True)
class _Progress:
    """How far a write transaction got: until COMMIT is sent, a failure left nothing behind."""

    committing: bool = False


class PostgresStore(DeliveriesMixin, SharedStatements):
    """A :class:`~wayang.store.port.Store` in a PostgreSQL database (see the module docstring
    and :mod:`wayang.store.postgres_connection` for the URL)."""

    def __init__(self, url: str) -> None:
        self._target: Target = parse_url(url)
        self.where = str(self._target)
        self._sql = queries()
        self.schema = prepare(self._target)
        self._topic_lock = lock_key("topics", self.schema)
        self.channel = channel_name(self.schema)
        self._completion_params = {"channel": self.channel}  # complete_task wakes engines
        self._close_lock = threading.Lock()
        self._closed = False
        self._listeners: list[PostgresWakeups] = []
        self._pool = open_pool(self._target)

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def _translated(self, progress: _Progress | None = None) -> Iterator[None]:
        """Let no driver or pool error escape untranslated; one raised while ``progress`` says
        the transaction is committing leaves the commit in doubt."""
        if self._closed:
            raise StoreError(f"the store {self.where} is closed")
        try:
            yield
        except psycopg.Error as exc:
            if unavailable(exc):
                self._check_pool()
            committing = progress is not None and progress.committing
            raise translate(exc, self.where, committing=committing) from exc

    def _check_pool(self) -> None:
        """After a lost connection, test the idle ones at once (a restarted server broke them
        all): broken ones are replaced in the background instead of failing a call each."""
        with contextlib.suppress(Exception):
            self._pool.check()

    @contextmanager
    def _write(self, locks: Iterable[int] = (), *, pipelined: bool = False) -> Iterator[Connection]:
        """One write transaction; any exception rolls all of it back.

        ``locks`` are advisory lock keys taken first, in key order (see the module docstring).
        ``pipelined``: sent as :meth:`_pipelined_write` sends it.
        """
        if pipelined:
            with self._pipelined_write(locks) as (conn, _):
                yield conn
            return
        progress = _Progress()
        with self._translated(progress), self._pool.connection() as conn, conn.transaction():
            self._take_locks(conn, locks)
            yield conn
            progress.committing = True  # the body is done: leaving the block sends COMMIT

    @contextmanager
    def _pipelined_write(
        self, locks: Iterable[int]
    ) -> Iterator[tuple[Connection, Callable[[], None]]]:
        """A write transaction sent without waiting for each answer: ``BEGIN`` goes with the
        statements up to the first answer the body reads, and ``COMMIT`` with the statements
        after that. A group commit, which reads nothing, takes one round trip, where
        ``conn.transaction()`` takes four (psycopg waits on its ``BEGIN`` and on its
        ``COMMIT``, and the version check answered before the rows went), and less of the
        driver's work in this process.

        The body gets the connection and ``commit``, which sends ``COMMIT`` now: what the body
        reads after it comes with it, in the same round trip (otherwise leaving the block sends
        it). The body must fetch what it needs to know (a ``rowcount`` is not in before the
        server's answer) and copy nothing (COPY cannot be pipelined)."""
        progress = _Progress()
        with self._translated(progress), self._pool.connection() as conn:

            def commit() -> None:
                if not progress.committing:
                    progress.committing = True
                    conn.execute("COMMIT")

            try:
                with conn.pipeline() as pipeline:
                    conn.execute("BEGIN")
                    self._take_locks(conn, locks)
                    try:
                        yield conn, commit
                        commit()
                    except BaseException:
                        # Take in what the server answered before the pipeline ends: left
                        # to the end of the block, an aborted pipeline is logged as a
                        # warning (psycopg's) on top of the error raised here (a stale
                        # version's ConcurrencyError, an expected outcome).
                        with contextlib.suppress(psycopg.Error):
                            pipeline.sync()
                        raise
            finally:
                # The body raised before COMMIT, or the server refused a statement: the
                # transaction is still open or has failed. Nothing of it is committed.
                if conn.info.transaction_status in _UNFINISHED:
                    conn.rollback()

    def _take_locks(self, conn: Connection, locks: Iterable[int]) -> None:
        keys = sorted(set(locks))
        if keys:
            conn.execute(self._sql["take_locks"], {"keys": keys})

    def _text_array(self, values: list[str]) -> Any:
        return values

    def _queue_write(self, queue: str, exclusive: bool) -> AbstractContextManager[Connection]:
        if not exclusive:  # a claim is one statement: on its own it is a transaction already
            return self._statement()
        return self._write([lock_key("queue", self.schema, queue)])

    @contextmanager
    def _statement(self) -> Iterator[Connection]:
        """A connection for one write statement, which commits on its own (autocommit): one
        round trip, where ``BEGIN``, the statement and ``COMMIT`` take three. A connection lost
        during it leaves it in doubt."""
        with self._translated(_Progress(committing=True)), self._pool.connection() as conn:
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

    def commit(self, appends: Sequence[Append], now: float, logs: Sequence[LogLine] = ()) -> None:
        """Apply every append, and store ``logs``, in one transaction (group commit)."""
        if not appends and not logs:
            return
        locks = self._log_locks(logs)
        if any(append.publish for append in appends):
            locks.append(self._topic_lock)
        # COPY cannot be pipelined: a group that copies sends statement by statement.
        copying = any(
            sum(len(getattr(append, kind)) for append in appends) > COPY_FROM_ROWS
            for kind in ("events", "tasks")
        )
        with self._write(locks, pipelined=not copying) as conn:
            self._apply(conn, appends, now)
            self._many(conn, "insert_log", map(log_params, logs))

    def _apply(self, conn: Connection, appends: Sequence[Append], now: float) -> None:
        # As on SQLite: a run's version is checked and moved once for all its appends in the
        # group, rows of one kind go in one batch, timers keep the order of the appends, tasks
        # go in before any append finishes them. Runs are created and advanced in id order and
        # the tasks the group finishes are locked in id order, so two groups touching the same
        # runs or tasks wait for each other instead of deadlocking.
        creates = sorted((a for a in appends if a.create is not None), key=lambda a: a.run_id)
        self._insert_runs(conn, creates)
        handed_off = any(a.create is not None and a.create.owner == HANDED_OFF for a in creates)
        moves = sorted(rows.by_run(appends), key=_by_key)
        self._advance_all(conn, moves, now)
        # What follows reads no result: it goes with the COMMIT (see _pipelined_write).
        self._apply_rows(conn, appends, now, handed_off)

    def _apply_rows(
        self, conn: Connection, appends: Sequence[Append], now: float, handed_off: bool
    ) -> None:
        """The rows of a group whose runs were advanced: tasks, wake-ups, timers, finished
        tasks, answers, events."""
        done_here = self._insert_tasks(conn, appends, now)
        queues = sorted({t.queue for a in appends for t in a.tasks if t.owner is None})
        self._notify(
            conn,
            [
                *([runs_wakeup()] if handed_off else []),
                *map(task_wakeup, queues),
                *sorted({kind for append in appends for kind in append.wake}),
            ],
        )
        for append in appends:
            if append.timers or append.cancel_timers:
                self._apply_timers(conn, append)
        self._insert_rows(conn, appends, now, done_here)
        answers = [row for append in appends for row in rows.answer_params(append, now)]
        self._many(conn, "answer_signal", sorted(answers, key=itemgetter("seq")))
        # An INSERT takes each event's tenant from its run; COPY must be told it.
        events = [row for append in appends for row in rows.event_params(append, "", now)]
        if len(events) > COPY_FROM_ROWS:
            tenants = self._tenants(conn, sorted({append.run_id for append in appends}))
            for event in events:
                event["tenant"] = tenants[event["run_id"]]
        self._insert(conn, "event", events, _EVENT_COLUMNS)

    def _tenants(self, conn: Connection, run_ids: list[str]) -> dict[str, str]:
        found = conn.execute(self._sql["run_tenants"], {"run_ids": run_ids})
        return {str(run_id): str(tenant) for run_id, tenant in found}

    def _insert_tasks(self, conn: Connection, appends: Sequence[Append], now: float) -> set[str]:
        """Insert the group's new tasks. Those the group also finishes (a chain's steps, each
        finished by the next decision in the group) go in consumed, not inserted and then
        updated. Returns their ids."""
        tasks = [rows.task_params(task) for append in appends for task in append.tasks]
        if not tasks:
            return set()
        finishing = {task_id for append in appends for task_id in append.finish_tasks}
        done_here = set()
        for task in tasks:
            task["completed_at"] = None
            if task["task_id"] in finishing:
                done_here.add(task["task_id"])
                task.update(status="consumed", lease_expires_at=None, completed_at=now)
        self._insert(conn, "task", tasks, _TASK_COLUMNS)
        return done_here

    def _insert(self, conn: Connection, kind: str, batch: Sequence[rows.Params], row: _Row) -> None:
        """Insert a group commit's rows of ``kind``: an ``INSERT`` each (``insert_event``),
        or, past :data:`COPY_FROM_ROWS`, copied in (``copy_events``, with ``row`` the columns)."""
        if len(batch) <= COPY_FROM_ROWS:
            self._many(conn, f"insert_{kind}", batch)
            return
        with conn.cursor().copy(self._sql[f"copy_{kind}s"]) as copy:
            for values in batch:
                copy.write_row(row(values))

    def _insert_rows(
        self, conn: Connection, appends: Sequence[Append], now: float, done_here: Collection[str]
    ) -> None:
        """The group's completions consumed, tasks finished (but those ``done_here``: inserted
        consumed), dead letters and topic messages."""
        consumed = [(task_id, a.run_id) for a in appends for task_id in a.acknowledge]
        finished = [
            (task_id, a.run_id)
            for a in appends
            for task_id in a.finish_tasks
            if task_id not in done_here
        ]
        task_ids = sorted({task_id for task_id, _ in (*consumed, *finished)})
        if len(task_ids) > 1:  # locked in id order first; one task has no order to keep
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

    def _insert_runs(self, conn: Connection, creates: Sequence[Append]) -> None:
        """The rows of the runs ``creates`` create: one statement for one run, one for many."""
        runs = [self._run_created(append) for append in creates]
        if len(runs) == 1:
            if conn.execute(self._sql["insert_run"], rows.run_params(runs[0])).fetchone() is None:
                raise ConcurrencyError(f"run {runs[0].run_id} already exists", runs[0].run_id)
            return
        if not runs:
            return
        params = {
            "run_ids": [run.run_id for run in runs],
            "tenants": [run.tenant for run in runs],
            "workflow_ids": [run.workflow_id for run in runs],
            "statuses": [run.status for run in runs],
            "specs": [rows.to_json(run.spec) for run in runs],
            "created_ats": [run.created_at for run in runs],
            "updated_ats": [run.updated_at for run in runs],
            "owners": [run.owner for run in runs],
            "lease_expires_ats": [run.lease_expires_at for run in runs],
        }
        made = {str(row[0]) for row in conn.execute(self._sql["insert_runs"], params)}
        for run in runs:
            if run.run_id not in made:
                raise ConcurrencyError(f"run {run.run_id} already exists", run.run_id)

    @staticmethod
    def _run_created(append: Append) -> RunRecord:
        run = append.create
        assert run is not None
        if append.run_id != run.run_id or append.expected_version != 0:
            raise StoreError(
                f"an append creating run {run.run_id} must be for that run and expect "
                f"version 0, not {append.run_id} at {append.expected_version}"
            )
        return run

    def _apply_timers(self, conn: Connection, append: Append) -> None:
        # Cancel before insert, so one append may cancel and re-arm the same timer id.
        run_id = append.run_id
        self._many(
            conn, "delete_timer", ({"timer_id": t, "run_id": run_id} for t in append.cancel_timers)
        )
        self._many(conn, "insert_timer", map(rows.timer_params, append.timers))

    def _advance_all(
        self, conn: Connection, moves: list[tuple[str, rows.VersionMove]], now: float
    ) -> None:
        """Check and move every run's version (``moves`` in id order), in one statement that
        fails the transaction if one is not at its expected version (``advance_runs``: a
        :class:`ConcurrencyError` once translated). Nothing waits for its answer."""
        params = {
            "run_ids": [run_id for run_id, _ in moves],
            "expected_versions": [move.first.expected_version for _, move in moves],
            "new_versions": [move.version for _, move in moves],
            "statuses": [move.status for _, move in moves],
            "now": now,
        }
        conn.execute(self._sql["advance_runs"], params)

    # ------------------------------------------------------------------ tasks and wake-ups

    def _handed_back(self, conn: Connection) -> None:
        self._notify(conn, [runs_wakeup()])

    def _tasks_queued(self, conn: Connection, queues: Sequence[str]) -> None:
        self._notify(conn, [task_wakeup(queue) for queue in queues])

    def _notify(self, conn: Connection, payloads: Sequence[str]) -> None:
        """Tell listeners, once the transaction commits (see postgres_wakeups): one statement
        for all of ``payloads``, none for no payload."""
        if payloads:
            conn.execute(self._sql["notify"], {"channel": self.channel, "payloads": payloads})

    def complete_many(
        self,
        results: Sequence[FencedResult],
        now: float,
        logs: Sequence[LogLine] = (),
        *,
        then_claim: ClaimRequest | None = None,
    ) -> Reported:
        """As the shared one (see :meth:`SharedStatements.complete_many`), in one round trip:
        each refused completion is counted by the statement that refuses it, and what was
        counted and claimed is read once ``COMMIT`` is on its way with the rest."""
        claiming = then_claim is not None and then_claim.limit > 0
        if not results and not logs and not claiming:
            return Reported([], [])
        locks = self._log_locks(logs)
        if then_claim is not None and claiming and then_claim.max_running is not None:
            locks.append(lock_key("queue", self.schema, then_claim.queue))
        with self._pipelined_write(locks) as (conn, commit):
            self._insert_logs(conn, logs)
            sent = [self._send_completion(conn, done, now) for done in results]
            claim = self._send_claim(conn, then_claim, now) if then_claim and claiming else None
            commit()
            # complete_task answers one row for a completion that counted, none otherwise
            counted = [cursor.fetchone() is not None for cursor in sent]
            return Reported(counted, self._claimed(claim))

    def _insert_logs(self, conn: Connection, logs: Sequence[LogLine]) -> None:
        self._many(conn, "insert_log", map(log_params, logs))

    def _pipelined(self, conn: Connection) -> AbstractContextManager[Any]:
        return conn.pipeline()

    def wakeups(self, kinds: Collection[str]) -> PostgresWakeups:
        """Wake-ups on a LISTEN connection of their own, closed with the store at the latest."""
        listener = PostgresWakeups(self._target.conninfo, self.channel, kinds, self.where)
        with self._close_lock:
            if self._closed:
                listener.close()
                raise StoreError(f"the store {self.where} is closed")
            self._listeners = [*(w for w in self._listeners if not w.closed), listener]
        return listener

    # ------------------------------------------------------------------ timers

    # ------------------------------------------------------------------ signals

    def send_signal(self, signal: NewSignal) -> int:
        """Put ``signal`` in its run's inbox, pending; return its seq, which names it for good."""
        with self._write() as conn:
            found = conn.execute(self._sql["insert_signal"], rows.signal_params(signal))
            return int(found.fetchone()[0])  # type: ignore[index]

    # ------------------------------------------------------------------ topics

    def publish(self, message: NewTopicMessage) -> int:
        """Add ``message`` to its topic; return its seq, greater than every seq before it."""
        params = rows.topic_message_params(message)
        with self._write([self._topic_lock]) as conn:
            found = conn.execute(self._sql["insert_topic_message"], params)
            return int(found.fetchone()[0])  # type: ignore[index]

    # ------------------------------------------------------------------ logs

    def append_logs(self, lines: Sequence[LogLine]) -> None:
        if not lines:
            return
        with self._write(self._log_locks(lines)) as conn:
            self._many(conn, "insert_log", map(log_params, lines))

    # ------------------------------------------------------------------ dead letters

    # ------------------------------------------------------------------ key-value

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
        for listener in self._listeners:
            listener.close()
        self._pool.close()


COPY_FROM_ROWS = 16
"""A group commit copies its events (or tasks) in when it has more than this many: ``COPY``
costs two round trips where an ``INSERT`` a row costs one for all of them, but it is far less
work for the server a row (a chain's group commits of hundreds of steps)."""

# The columns of queries.sql's copy_events and copy_tasks, in order, as row keys.
_Row = Callable[[rows.Params], tuple[Any, ...]]
_EVENT_COLUMNS = itemgetter("run_id", "seq", "tenant", "type", "data", "version", "at")
_TASK_COLUMNS = itemgetter(
    "task_id",
    "tenant",
    "run_id",
    "step_id",
    "attempt",
    "idempotency_key",
    "queue",
    "payload",
    "available_at",
    "status",
    "owner",
    "lease_expires_at",
    "fencing_token",
    "needs",
    "remote",
    "completed_at",
)
