"""Group commit: every decision made while the previous commit was being written goes into the
next one, in one transaction, on one writer thread.

The engine keeps deciding and running steps while a commit is on its way to disk; what it
reports waits for :meth:`Committer.run` to call ``on_durable`` after the transaction is in.
A run whose append conflicts (another engine took it over) is dropped from the batch and
reported to ``on_lost``; the rest of the batch is written without it.

A store that is away (:class:`~wayang.store.port.StoreUnavailableError`: a PostgreSQL restart)
does not fail the engine: the batch is kept and written again with capped exponential backoff
(:mod:`wayang.runtime.outage`), for as long as the engine runs, and for ``closing_grace_s``
once it is closing (what is still unwritten then is what a crash would lose: adoption runs it
again). Decisions made meanwhile wait in the next batch. A commit that failed in doubt may have
gone in: its retry then conflicts, and ``on_lost`` hears of those runs, for the engine to take
them up again from their history.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from wayang.engine.events import Event
from wayang.runtime.outage import Outage
from wayang.store.port import Append, ConcurrencyError, LogLine, Store, StoreUnavailableError

LOG_GATHER_S = 0.05
"""A batch of log lines alone (no decisions) waits this long for more lines to join it."""

log = logging.getLogger("wayang.engine")


@dataclass(slots=True)
class Pending:
    """One decision's append, the events it carries, and who to tell once it is durable."""

    owner: Any
    append: Append
    events: Sequence[Event]


@dataclass
class _Batch:
    pending: list[Pending] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class Committer:
    """Writes appends and log lines in groups; see the module docstring."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float],
        on_durable: Callable[[Pending], None],
        on_lost: Callable[[str, str], None],
        *,
        closing_grace_s: float = 15.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._on_durable = on_durable
        self._on_lost = on_lost
        self._batch = _Batch()
        self._wake = asyncio.Event()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="wayang-store")
        self._closed = False
        self._closed_at = 0.0
        self._closing_grace_s = closing_grace_s
        self._outage = Outage(log, "committing")
        self.failure: BaseException | None = None

    def add(self, owner: Any, append: Append, events: Sequence[Event]) -> None:
        self._batch.pending.append(Pending(owner, append, events))
        self._wake.set()

    def discard(self, owner: Any) -> None:
        """Forget the appends of ``owner`` not yet on their way (its run was dropped)."""
        self._batch.pending = [p for p in self._batch.pending if p.owner is not owner]

    def log(self, line: LogLine) -> None:
        self._batch.logs.append(line)
        self._wake.set()

    async def flush(self) -> None:
        """Return once everything added so far is durable (raises what the store raised)."""
        if self.failure is not None:
            raise self.failure
        if not self._batch.pending and not self._batch.logs:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._batch.waiters.append(waiter)
        self._wake.set()
        await waiter

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run a store call on the writer thread, in order with the commits."""
        return asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def run(self) -> None:
        """Commit batches until :meth:`close`; a store failure stops it and is kept."""
        while not self._closed or self._has_work():
            await self._wake.wait()
            self._wake.clear()
            if not self._batch.pending and self._batch.logs and not self._batch.waiters:
                await asyncio.sleep(LOG_GATHER_S)
            batch, self._batch = self._batch, _Batch()
            try:
                await self._commit(batch)
            except BaseException as exc:
                self.failure = exc
                for waiter in batch.waiters + self._batch.waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                raise

    def _has_work(self) -> bool:
        return bool(self._batch.pending or self._batch.logs or self._batch.waiters)

    async def _commit(self, batch: _Batch) -> None:
        if batch.pending or batch.logs:
            appends = [p.append for p in batch.pending]
            lost = await self._write_durably(appends, batch.logs)
            for pending in batch.pending:
                if pending.append.run_id not in lost:
                    self._on_durable(pending)
            for run_id, why in lost.items():
                self._on_lost(run_id, why)
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _write_durably(self, appends: list[Append], logs: list[LogLine]) -> dict[str, str]:
        """Write the batch, trying again while the store is away (see the module docstring).

        After a failure in doubt the batch is written again as it is: if its first try went in,
        its appends conflict (and their runs are reported lost), but its log lines, which
        nothing numbers, may be stored twice.
        """
        while True:
            try:
                lost: dict[str, str] = await self.call(self._write, appends, logs)
            except StoreUnavailableError as exc:
                delay = self._outage.failed(exc)
                if self._closed:
                    left = self._closed_at + self._closing_grace_s - time.monotonic()
                    if left <= 0:
                        raise
                    delay = min(delay, left)
                await asyncio.sleep(delay)
                continue
            self._outage.recovered()
            return lost

    def _write(self, appends: list[Append], logs: list[LogLine]) -> dict[str, str]:
        """Commit; drop the appends of a run that conflicts and try again. Writer thread."""
        lost: dict[str, str] = {}
        while True:
            try:
                self._store.commit(appends, self._clock(), logs)
                return lost
            except ConcurrencyError as conflict:
                if not conflict.run_id or conflict.run_id in lost:
                    raise
                lost[conflict.run_id] = str(conflict)
                appends = [a for a in appends if a.run_id != conflict.run_id]
                logs = [line for line in logs if line.run_id != conflict.run_id]

    def close(self) -> None:
        """Stop after the work already added is written."""
        if not self._closed:
            self._closed_at = time.monotonic()
        self._closed = True
        self._wake.set()

    def shutdown(self) -> None:
        self._writer.shutdown(wait=True)
