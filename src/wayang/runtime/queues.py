"""Task queues' limits, kept in the store so every worker and server of a fleet sees the same.

Per queue: ``max_running`` caps the queue's tasks running on workers at once (dispatch is
throttled: workers claim no more), and ``max_depth`` caps the tasks waiting in it: a new run
that would add to a queue already that deep is refused (HTTP 429, or a CLI error) instead of
letting the backlog grow without bound. ``wayang queues limit NAME`` sets them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wayang.engine.runplan import RunPlan
from wayang.errors import UsageError
from wayang.store.port import DEFAULT_TENANT, Store

QUEUE_LIMITS = "queue-limits"
"""The key-value namespace: queue name → ``{"max_running": N, "max_depth": M}``."""


class TaskQueueFullError(UsageError):
    """A queue a run would add tasks to already holds its ``max_depth`` tasks."""

    def __init__(self, message: str, queue: str) -> None:
        super().__init__(message)
        self.queue = queue


def run_queues(plan: RunPlan) -> set[str]:
    """The queues a run's task steps put work in."""
    return {step.queue for step in plan.steps.values() if step.kind == "task"}


def check_queue_room(
    store: Store,
    plan: RunPlan,
    tenant: str = DEFAULT_TENANT,
    limits: Mapping[str, Any] | None = None,
) -> None:
    """Refuse a run whose queues are at their ``max_depth``; see the module docstring.
    ``limits``: the queues' limits when the caller has read them already."""
    if limits is None:
        limits = store.kv_scan(QUEUE_LIMITS)
    for queue in sorted(run_queues(plan)):
        max_depth = max_depth_of(limits, queue)
        if not max_depth:
            continue
        depth = store.queue_depth(queue, tenant)
        if depth >= int(max_depth):
            raise TaskQueueFullError(
                f"queue {queue!r} holds {depth} waiting tasks, its limit (max_depth) is "
                f"{max_depth}: the run was not started; try again when workers have caught up, "
                f"or raise the limit with 'wayang queues limit {queue} --max-depth N'",
                queue,
            )


def max_depth_of(limits: Mapping[str, Any], queue: str) -> int | None:
    """The ``max_depth`` of ``queue`` in ``limits`` (the ``queue-limits`` namespace), if any."""
    found = (limits.get(queue) or {}).get("max_depth")
    return int(found) if found else None


def max_running_of(limits: Mapping[str, Any], queue: str) -> int | None:
    """The ``max_running`` of ``queue`` in ``limits``, if any."""
    found = (limits.get(queue) or {}).get("max_running")
    return int(found) if found else None
