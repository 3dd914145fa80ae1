"""The step runtime: runs event steps' deliveries, API and cron handlers, durably.

Every topic message becomes one delivery per subscribing step (see
:mod:`wayang.store.sqlite_deliveries`). A handler's emits are published only when it returns
successfully, in the same transaction that records its delivery as succeeded; a failed attempt's
emits are dropped and the delivery is retried with backoff, then dead-lettered. Commits are
grouped: whatever finished while the previous commit was on its way to disk goes into the next,
on one writer thread. Each commit also turns every new message into deliveries leased to this
runtime, which start at once: a hop from one step to the next costs one commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from wayang.ids import new_trace_id
from wayang.steps.context import Context, Emitted, Logger, Request, log_text
from wayang.steps.model import PayloadError, StepDef
from wayang.steps.state import StateAdapter
from wayang.store.port import (
    DEFAULT_TENANT,
    Delivery,
    DeliveryCommit,
    DeliveryOutcome,
    FanOut,
    LogLine,
    NewTopicMessage,
    Store,
)

DeliveryWrapper = Callable[
    [Delivery, Callable[[], Awaitable[DeliveryOutcome]]], Awaitable[DeliveryOutcome]
]
"""Runs one delivery attempt (given as a function to await) and returns its outcome."""


class StepSet(Protocol):
    """What the runtime needs of a step registry (:class:`~wayang.steps.registry.StepRegistry`)."""

    @property
    def steps(self) -> Mapping[str, StepDef]: ...
    @property
    def inactive(self) -> AbstractSet[str]: ...
    def subscriptions(self) -> Mapping[str, Sequence[tuple[str, int]]]: ...


@dataclass(frozen=True)
class RuntimeSettings:
    """Timings of one step runtime. ``env`` names the registry's environment."""

    env: str = "dev"
    tenant: str = DEFAULT_TENANT
    lease_s: float = 15.0
    renew_every_s: float = 3.0
    poll_every_s: float = 0.1
    claim_limit: int = 200


@dataclass(frozen=True, slots=True)
class Finished:
    """What the runtime reports when a delivery attempt ends (for live logs and tests)."""

    delivery: Delivery
    status: str  # succeeded | retry | dead
    error: str
    duration_s: float


@dataclass(slots=True)
class _Batch:
    outcomes: list[DeliveryOutcome] = field(default_factory=list)
    publish: list[NewTopicMessage] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.outcomes or self.publish or self.logs or self.waiters)


class StepRuntime:
    """Drives a project's steps against ``store``; use as ``async with StepRuntime(...)``."""

    def __init__(
        self,
        store: Store,
        steps: StepSet,
        state: StateAdapter,
        *,
        owner: str,
        settings: RuntimeSettings | None = None,
        clock: Callable[[], float] = time.time,
        on_finished: Callable[[Finished], None] | None = None,
        on_log: Callable[[LogLine], None] | None = None,
        around: DeliveryWrapper | None = None,
    ) -> None:
        """``around(delivery, attempt)`` runs each delivery attempt (``await attempt()``) and
        returns its outcome: the server puts each in a trace span."""
        self.store = store
        self.steps = steps
        self._around = around
        self.state = state
        self.owner = owner
        self.settings = settings or RuntimeSettings()
        self._clock = clock
        self._on_finished = on_finished
        self._on_log = on_log
        self._batch = _Batch()
        self._wake = asyncio.Event()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="wayang-steps-store")
        self._running: dict[str, asyncio.Task[None]] = {}
        self._ordered: dict[tuple[str, str, str], deque[Delivery]] = {}
        self._background: list[asyncio.Task[None]] = []
        self._closing = False
        self._idle = asyncio.Event()
        # A commit or a claim on its way: what they finish or lease is in neither _running nor
        # _batch until they return, so settle() must not take their absence for quiet.
        self._committing = False
        self._claim_idle = asyncio.Event()
        self._claim_idle.set()
        self.cursor = 0
        self.failure: BaseException | None = None

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> StepRuntime:
        self._background = [
            asyncio.create_task(self._commit_loop(), name="wayang-steps-commit"),
            asyncio.create_task(self._poll_loop(), name="wayang-steps-poll"),
            asyncio.create_task(self._renew_loop(), name="wayang-steps-leases"),
        ]
        self._wake.set()  # the first commit fans out what was published while nobody ran
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop: running attempts are cancelled (their deliveries are retried after the lease)."""
        if self._closing:
            return
        self._closing = True
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.flush()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._writer.shutdown(wait=True)

    # ------------------------------------------------------------------ publishing

    def publish(self, topic: str, data: Any, *, trace_id: str, source: str, key: str = "") -> None:
        """Queue a message for the next commit (see :meth:`flush`)."""
        message = NewTopicMessage(
            topic, data, self._clock(), key, trace_id, source, self.settings.tenant
        )
        self._batch.publish.append(message)
        self._wake.set()

    async def flush(self) -> None:
        """Return once everything queued so far is durable (raises what the store raised)."""
        if self.failure is not None:
            raise self.failure
        waiter = asyncio.get_running_loop().create_future()
        self._batch.waiters.append(waiter)
        self._wake.set()
        await waiter

    async def emit(self, topic: str, data: Any, *, source: str, trace_id: str = "") -> str:
        """Publish one message durably, starting a trace unless one is given; the trace id."""
        trace = trace_id or new_trace_id()
        self.publish(topic, data, trace_id=trace, source=source)
        await self.flush()
        return trace

    async def settle(self, timeout_s: float = 30.0) -> bool:
        """Wait until nothing runs or is due soon; False if that took longer than the timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await self.flush()
            # Wait out a claim in flight instead of sampling it: deliveries it takes are started
            # when it ends. (Counting "a claim is in flight" as busy phase-locked this loop with
            # the 20 ms poll under load, so settle could time out with nothing to do.)
            await self._claim_idle.wait()
            busy = self._running or self._batch or self._committing
            if not busy and not self._due_soon():
                return True
            await asyncio.sleep(self.settings.poll_every_s)
        return False

    def _due_soon(self) -> bool:
        horizon = self._clock() + self.settings.poll_every_s * 5
        pending = self.store.list_deliveries(
            status="pending", env=self.settings.env, tenant=self.settings.tenant, limit=1000
        )
        return any(d.due_at <= horizon for d in pending)

    # ------------------------------------------------------------------ committing

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._batch = self._batch, _Batch()
            self._committing = True
            try:
                result: DeliveryCommit = await loop.run_in_executor(
                    self._writer, self._commit, batch
                )
            except BaseException as exc:
                self._committing = False
                self.failure = exc
                for waiter in batch.waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                raise
            self.cursor = result.cursor
            for delivery in result.started:
                self._start(delivery)
            self._committing = False
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _commit(self, batch: _Batch) -> DeliveryCommit:
        fan_out = FanOut(
            self.settings.env,
            self.steps.subscriptions(),
            self.owner,
            self.settings.lease_s,
            self.settings.tenant,
        )
        return self.store.commit_deliveries(
            batch.outcomes, batch.publish, fan_out, self._clock(), batch.logs
        )

    async def _poll_loop(self) -> None:
        """Pick up messages others published, due retries, and deliveries orphaned by others."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.poll_every_s)
            latest = await loop.run_in_executor(self._writer, self.store.latest_topic_seq)
            if latest > self.cursor:
                self._wake.set()
            self._claim_idle.clear()
            try:
                claimed = await loop.run_in_executor(self._writer, self._claim)
                for delivery in claimed:
                    self._start(delivery)
            finally:
                self._claim_idle.set()

    def _claim(self) -> list[Delivery]:
        return self.store.claim_deliveries(
            self.settings.env,
            self.owner,
            self._clock(),
            self.settings.lease_s,
            limit=self.settings.claim_limit,
            inactive=sorted(self.steps.inactive),
            tenant=self.settings.tenant,
        )

    async def _renew_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.renew_every_s)
            if self._running:
                now, lease_s = self._clock(), self.settings.lease_s
                await loop.run_in_executor(
                    self._writer, self.store.renew_delivery_leases, self.owner, now, lease_s
                )

    # ------------------------------------------------------------------ deliveries

    def _start(self, delivery: Delivery) -> None:
        if self._closing or delivery.delivery_id in self._running:
            return
        step = self.steps.steps.get(delivery.step)
        if step is not None and step.ordered:
            lane = (delivery.step, delivery.topic, delivery.key)
            queue = self._ordered.setdefault(lane, deque())
            queue.append(delivery)
            if len(queue) > 1:
                return  # runs when the one before it in its lane is done
        self._spawn(delivery)

    def _spawn(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._deliver(delivery), name=delivery.delivery_id)
        self._running[delivery.delivery_id] = task

    async def _deliver(self, delivery: Delivery) -> None:
        started = time.monotonic()
        step = self.steps.steps.get(delivery.step)
        logs: list[LogLine] = []
        try:
            if self._around is None:
                outcome = await self._attempt(delivery, step, logs)
            else:
                outcome = await self._around(delivery, lambda: self._attempt(delivery, step, logs))
        finally:
            self._running.pop(delivery.delivery_id, None)
            self._next_in_lane(delivery, step)
        self._batch.outcomes.append(outcome)
        self._batch.logs.extend(logs)
        self._wake.set()
        if self._on_finished is not None:
            elapsed = time.monotonic() - started
            self._on_finished(Finished(delivery, outcome.status, outcome.error, elapsed))

    def _next_in_lane(self, delivery: Delivery, step: StepDef | None) -> None:
        if step is None or not step.ordered:
            return
        lane = (delivery.step, delivery.topic, delivery.key)
        queue = self._ordered.get(lane)
        if not queue:
            return
        queue.popleft()
        if queue:
            self._spawn(queue[0])
        else:
            del self._ordered[lane]

    async def _attempt(
        self, delivery: Delivery, step: StepDef | None, logs: list[LogLine]
    ) -> DeliveryOutcome:
        if step is None or step.handler is None:
            error = (
                f"no event step named '{delivery.step}' in this project now; it was "
                f"subscribed to '{delivery.topic}' when the message came"
            )
            return self._dead(delivery, error)
        try:
            value = step.input.validate(delivery.data) if step.input else delivery.data
        except PayloadError as exc:
            error = (
                f"payload on topic '{delivery.topic}' rejected by step '{step.name}' "
                f"({step.where}): {exc}"
            )
            return self._dead(delivery, error)
        if step.handler_style == "dict" and step.input is not None and step.input.model:
            value = delivery.data
        ctx = self._context(step, delivery.trace_id, delivery.attempt, logs)
        try:
            await _invoke(step, (value, ctx))
        except Exception as exc:
            return self._failed(delivery, step, ctx, exc)
        emits = self._messages(ctx.emitted, delivery.trace_id, f"delivery:{delivery.delivery_id}")
        return DeliveryOutcome(
            delivery.delivery_id, delivery.fencing_token, "succeeded", emits=emits
        )

    def _failed(
        self, delivery: Delivery, step: StepDef, ctx: Context, exc: Exception
    ) -> DeliveryOutcome:
        error = _describe(exc)
        ctx.logger.error(f"attempt {delivery.attempt} failed: {error}")
        if delivery.attempt >= delivery.max_attempts:
            return self._dead(delivery, error)
        due = self._clock() + step.retry.delay(delivery.attempt)
        return DeliveryOutcome(
            delivery.delivery_id, delivery.fencing_token, "retry", error=error, due_at=due
        )

    @staticmethod
    def _dead(delivery: Delivery, error: str) -> DeliveryOutcome:
        return DeliveryOutcome(delivery.delivery_id, delivery.fencing_token, "dead", error=error)

    def _messages(
        self, emitted: Sequence[Emitted], trace_id: str, source: str
    ) -> list[NewTopicMessage]:
        now, tenant = self._clock(), self.settings.tenant
        return [
            NewTopicMessage(e.topic, e.data, now, e.key, trace_id, source, tenant) for e in emitted
        ]

    def _context(self, step: StepDef, trace_id: str, attempt: int, logs: list[LogLine]) -> Context:
        def sink(level: str, message: str, extra: Mapping[str, Any] | None) -> None:
            text = log_text(message, extra)
            line = LogLine(trace_id, step.name, attempt, level, text, self._clock())
            logs.append(line)
            if self._on_log is not None:
                self._on_log(line)

        return Context(step, trace_id, self.state, Logger(sink), step.flows, attempt)

    # ------------------------------------------------------------------ triggers

    async def call_api(self, step: StepDef, request: Request) -> tuple[Any, str]:
        """Run an API step's middleware and handler; its emits are durable before this returns.

        Returns the handler's response and the request's trace id. A handler that raises
        publishes nothing; the exception propagates (the HTTP layer answers 500).
        """
        trace_id = new_trace_id()
        source = f"api:{request.method} {request.path}"

        async def chain(ctx: Context) -> Any:
            async def handler() -> Any:
                return await _invoke(step, (request, ctx))

            call = handler
            for middleware in reversed(step.middleware):
                call = functools.partial(_through, middleware, request, ctx, call)
            return await call()

        response = await self._trigger(step, trace_id, source, chain)
        return response, trace_id

    async def fire_cron(self, step: StepDef) -> str:
        """Run a cron step's handler once; its emits are durable before this returns."""
        trace_id = new_trace_id()

        async def handler(ctx: Context) -> Any:
            return await _invoke(step, (ctx,))

        await self._trigger(step, trace_id, f"cron:{step.name}", handler)
        return trace_id

    async def _trigger(
        self,
        step: StepDef,
        trace_id: str,
        source: str,
        run: Callable[[Context], Awaitable[Any]],
    ) -> Any:
        logs: list[LogLine] = []
        ctx = self._context(step, trace_id, 1, logs)
        try:
            result = await run(ctx)
        except Exception as exc:
            ctx.logger.error(f"{step.type} handler failed: {_describe(exc)}")
            raise
        finally:
            self._batch.logs.extend(logs)
            self._wake.set()
        if ctx.emitted:  # only emits must be durable before the trigger answers
            for message in self._messages(ctx.emitted, trace_id, source):
                self._batch.publish.append(message)
            await self.flush()
        return result


async def _through(
    middleware: Callable[..., Any],
    request: Request,
    ctx: Context,
    call_next: Callable[[], Awaitable[Any]],
) -> Any:
    """One Motia-style middleware: ``middleware(req, ctx, next)``, sync or async."""
    result = middleware(request, ctx, call_next)
    return await result if isinstance(result, Awaitable) else result


async def _invoke(step: StepDef, args: tuple[Any, ...]) -> Any:
    handler = step.handler
    assert handler is not None
    if step.handler_is_async:
        return await handler(*args)
    # A sync handler runs on a thread, so it cannot hold up every other delivery.
    result = await asyncio.to_thread(handler, *args)
    if isinstance(result, Awaitable):
        return await result
    return result


def _describe(exc: BaseException) -> str:
    """``Type: message (file:line)`` of where in the step's code it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}{where}" if str(exc) else f"{text}{where}"
