"""The queue of submitted runs, kept in the store so a restart loses none of them.

A run submitted to the server is prepared (validated, planned) at once, then waits here until
the concurrency limits let it start: at most ``max_runs`` busy runs in all, and at most
``per_workflow`` busy runs of any one workflow (``0``: no limit). A run is *busy* while one of its
steps is scheduled, running or backing off; a run parked on a person, an event or a timer holds
no slot. Runs start in the order they were submitted, except that one held back by its
workflow's limit lets later runs of other workflows go first.

Several servers may share one store, and so one queue. A server starting a queued run first
claims its entry (a compare-and-swap in the store, so no two servers start the same run), and
deletes it only once the run's row is in the store: a server killed between the two leaves the
entry claimed, and once the claim lapses another server starts the run, or, finding the run
there already, just deletes the entry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from wayang.errors import UsageError
from wayang.runtime.operations import RunRequest, read_request_payload, request_payload
from wayang.store.port import Store

RUN_QUEUE = "run-queue"
"""The key-value namespace of queued runs: ``<submitted at, zero-padded>/<run id>`` → payload."""


@dataclass(frozen=True)
class Limits:
    max_runs: int = 64
    per_workflow: int = 0
    max_queued: int = 10_000


@dataclass(frozen=True)
class Queued:
    key: str
    run_id: str
    workflow_id: str
    submitted_at: float
    payload: str
    claimed_by: str | None = None
    """The engine starting the run, if one claimed it (until ``claimed_until``)."""
    claimed_until: float = 0.0

    def claimed(self, now: float) -> bool:
        """Whether a server is starting the run (its claim has not lapsed)."""
        return self.claimed_by is not None and self.claimed_until > now

    def request(self) -> tuple[str, RunRequest]:
        from wayang.engine.runplan import RunPlan  # noqa: PLC0415 - only when a run starts
        from wayang.policy import gate_for  # noqa: PLC0415

        run_id, started, reuse = read_request_payload(self.payload)
        return run_id, RunRequest(RunPlan.from_started(started, gate_for), started, reuse)


def _entry(key: str, value: dict[str, Any]) -> Queued:
    return Queued(
        key,
        str(value["run_id"]),
        str(value["workflow_id"]),
        float(value["submitted_at"]),
        str(value["payload"]),
        str(value["claimed_by"]) if value.get("claimed_by") else None,
        float(value.get("claimed_until") or 0.0),
    )


class QueueFullError(UsageError):
    """The queue holds ``max_queued`` runs already."""


class RunQueue:
    """Queued runs in ``store``, oldest first."""

    def __init__(self, store: Store, limits: Limits) -> None:
        self.store = store
        self.limits = limits
        self._seen_empty = False

    def looks_empty(self) -> bool:
        """Whether the queue was empty when last read and this server has queued nothing
        since: a start need not read the queue to know it may go first. (A run another
        server queued meanwhile is that server's to start.)"""
        if not self._seen_empty:
            self._seen_empty = not self.store.kv_page(RUN_QUEUE, limit=1)
        return self._seen_empty

    def count(self) -> int:
        """How many runs the queue holds (counted in the store)."""
        return self.store.kv_count(RUN_QUEUE)

    def oldest(self) -> Queued | None:
        """The entry queued first, if any."""
        return next(self.oldest_first(page=1), None)

    def put(self, request: RunRequest, run_id: str, now: float | None = None) -> tuple[str, int]:
        """Queue a prepared run; its entry's key and its position (1 = next)."""
        queued = self.count()  # counted in the store: a submit must not read the queue
        if queued >= self.limits.max_queued:
            raise QueueFullError(
                f"the run queue is full ({self.limits.max_queued} runs waiting); try again "
                "later or raise --max-queued"
            )
        at = time.time() if now is None else now
        key = f"{at:017.6f}/{run_id}"
        value = {
            "run_id": run_id,
            "workflow_id": request.started.workflow_id,
            "submitted_at": at,
            "payload": request_payload(request, run_id),
        }
        self._seen_empty = False
        self.store.kv_set(RUN_QUEUE, key, value)
        return key, queued + 1

    def holds(self, key: str) -> bool:
        """Whether the entry of ``key`` is still queued (or being started)."""
        return self.store.kv_get(RUN_QUEUE, key) is not None

    def entries(self) -> list[Queued]:
        found = self.store.kv_scan(RUN_QUEUE)
        self._seen_empty = not found
        return [_entry(key, v) for key, v in sorted(found.items()) if isinstance(v, dict)]

    def find(self, run_id: str) -> Queued | None:
        """The entry of ``run_id``, found in the store by its key's end (``…/<run id>``)."""
        key = self.store.kv_key_ending(RUN_QUEUE, f"/{run_id}")
        if key is None:
            return None
        value = self.store.kv_get(RUN_QUEUE, key)
        return _entry(key, value) if isinstance(value, dict) else None

    def oldest_first(self, page: int = 64) -> Iterator[Queued]:
        """The entries in queue order, read a page at a time as the caller goes on."""
        after = ""
        while found := self.store.kv_page(RUN_QUEUE, after, page):
            for key, value in found.items():
                if isinstance(value, dict):
                    yield _entry(key, value)
                after = key

    def remove(self, entry: Queued, now: float | None = None) -> bool:
        """Take ``entry`` off the queue (a cancel); False if it was gone already, or changed,
        or a server is starting it."""
        if entry.claimed(time.time() if now is None else now):
            return False
        return self.store.kv_swap(RUN_QUEUE, entry.key, self._value(entry), None)

    def claim(self, entry: Queued, owner: str, until: float) -> Queued | None:
        """Claim ``entry`` for ``owner`` to start its run; None if another server did first."""
        claimed = replace(entry, claimed_by=owner, claimed_until=until)
        swapped = self.store.kv_swap(RUN_QUEUE, entry.key, self._value(entry), self._value(claimed))
        return claimed if swapped else None

    def started(self, entry: Queued) -> None:
        """Delete the claimed ``entry``: its run is in the store."""
        self.store.kv_swap(RUN_QUEUE, entry.key, self._value(entry), None)

    def restore(self, entry: Queued) -> None:
        """Put back, unclaimed, an entry whose run could not start."""
        self._seen_empty = False
        unclaimed = replace(entry, claimed_by=None, claimed_until=0.0)
        self.store.kv_set(RUN_QUEUE, entry.key, self._value(unclaimed))

    def startable(self, busy: dict[str, int], now: float | None = None) -> list[Queued]:
        """The queued runs that may start now, given the busy runs per workflow (runs other
        servers are starting are left to them)."""
        limits = self.limits
        total = sum(busy.values())
        counts = dict(busy)
        chosen: list[Queued] = []
        at = time.time() if now is None else now
        if total >= limits.max_runs:
            return chosen  # no slot: nothing of the queue to read
        for entry in self.oldest_first():
            if entry.claimed(at):
                continue
            if total >= limits.max_runs:
                break
            mine = counts.get(entry.workflow_id, 0)
            if limits.per_workflow and mine >= limits.per_workflow:
                continue
            chosen.append(entry)
            counts[entry.workflow_id] = mine + 1
            total += 1
        return chosen

    @staticmethod
    def _value(entry: Queued) -> dict[str, object]:
        value: dict[str, object] = {
            "run_id": entry.run_id,
            "workflow_id": entry.workflow_id,
            "submitted_at": entry.submitted_at,
            "payload": entry.payload,
        }
        if entry.claimed_by is not None:
            value["claimed_by"] = entry.claimed_by
            value["claimed_until"] = entry.claimed_until
        return value
