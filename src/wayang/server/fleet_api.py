"""The worker protocol's routes (``wayang worker --server URL``): a worker registers,
heartbeats, claims tasks, records their results and output, and reads the queues' limits, all
through the server instead of the store. docs/workers.md describes the protocol;
:mod:`wayang.server.fleet` does the work."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from wayang import wire
from wayang.server.access import guard
from wayang.server.fleet import Fleet


def fleet_of(request: Request) -> Fleet:
    fleet: Fleet = request.app.state.core.fleet
    return fleet


FleetDep = Annotated[Fleet, Depends(fleet_of)]


def fleet_routes() -> APIRouter:
    r = APIRouter(tags=["workers"])

    @r.post(
        "/workers/register",
        response_model=wire.WorkerRegistered,
        **guard("workers", "register"),
    )
    async def register(body: wire.WorkerHello, fleet: FleetDep) -> wire.WorkerRegistered:
        """A worker starts: record it. Tasks an earlier worker of the same id held lapse now."""
        return await fleet.register(body)

    @r.post("/workers/heartbeat", response_model=wire.HeldTasks, **guard("workers", "heartbeat"))
    async def heartbeat(body: wire.WorkerHeartbeat, fleet: FleetDep) -> wire.HeldTasks:
        """The worker is alive: renew the leases of its tasks; the ids of those it still
        holds (one it runs that is not among them was taken from it: it stops it)."""
        return await fleet.heartbeat(body)

    @r.post("/tasks/claim", response_model=wire.ClaimedTasks, **guard("tasks", "claim"))
    async def claim(body: wire.ClaimTasks, fleet: FleetDep) -> wire.ClaimedTasks:
        """Lease up to ``limit`` tasks of ``queue`` that need nothing beyond ``offers``,
        within the queue's ``max_running``; oldest first, possibly none."""
        return await fleet.claim(body)

    @r.post("/tasks/complete", response_model=wire.TaskCompleted, **guard("tasks", "complete"))
    async def complete(body: wire.CompleteTask, fleet: FleetDep) -> wire.TaskCompleted:
        """Record a task's result if ``fencing_token`` is still the task's: ``counted`` says
        whether it was (a stale token is not an error: the result is dropped)."""
        return await fleet.complete(body)

    @r.post(
        "/tasks/complete-batch",
        response_model=wire.TasksCompleted,
        **guard("tasks", "complete"),
    )
    async def complete_batch(body: wire.CompleteTasks, fleet: FleetDep) -> wire.TasksCompleted:
        """Record several results, each as ``/tasks/complete`` would, and the output of their
        tasks, in one transaction; ``completed`` answers for each result in order."""
        return await fleet.complete_batch(body)

    @r.post("/tasks/logs", response_model=wire.LogsAppended, **guard("tasks", "log"))
    async def logs(body: wire.TaskLogs, fleet: FleetDep) -> wire.LogsAppended:
        """Append lines of the output of tasks the worker runs."""
        return await fleet.append_logs(body)

    @r.get("/queues/limits", response_model=wire.QueueLimits, **guard("queues", "read"))
    async def limits(fleet: FleetDep) -> wire.QueueLimits:
        """The task queues' limits (``wayang queues limit``), by queue."""
        return await fleet.queue_limits()

    return r


__all__ = ["fleet_routes"]
