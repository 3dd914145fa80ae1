"""Wake-ups and outages on PostgreSQL (issue 7): how fast work crosses between an engine and a
worker, with LISTEN/NOTIFY and with polling alone, and how fast both recover from a restart.

An engine that runs no step itself (every step goes to the queue) and one ``Worker`` run a chain
of ``--steps`` trivial shell steps, in one process but on two stores (two pools, as two
processes would have), with the default timings: the engine polls every 0.2 s, an idle worker
every 0.2 s at most (every 2 s with wake-ups). The stores are wrapped to time, per task:

* claim latency: from the engine's commit queuing the task (its return) to a worker's claim
  of it returning;
* result latency: from the worker's ``complete_many()`` returning to the engine's poll reading
  the result.

``--outage terminate`` ends every session of the store once the chain is under way
(``pg_terminate_backend``); ``--outage restart`` restarts the server with ``--restart-command``
(default ``pg_ctlcluster --skip-systemctl-redirect <newest version> main restart``: needs root,
and restarts the server for everyone using it; point ``--server`` and the command at a server of
your own instead). Either prints how long the server was away and how long after it came back
the engine's next commit and the worker's next claim went through. Prints one
``BENCH_RESULT {json}`` line per mode::

    .venv/bin/python bench/wakeup_bench.py                      # poll, then listen
    .venv/bin/python bench/wakeup_bench.py --mode listen --outage terminate
    .venv/bin/python bench/wakeup_bench.py --mode listen --outage restart \
        --server postgresql://postgres@127.0.0.1:5499/test \
        --restart-command "su postgres -c 'pg_ctl -D /tmp/pg/data restart -m fast'"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from wayang.app import App, Settings
from wayang.engine.state import RunStatus
from wayang.ids import new_run_id
from wayang.runtime.engine import EngineSettings
from wayang.runtime.operations import prepare_run
from wayang.runtime.worker import Worker, WorkerSettings, store_link

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


class Clocked:
    """When things happened to each task, as seen through the wrapped stores."""

    def __init__(self) -> None:
        self.queued: dict[str, float] = {}
        self.claimed: dict[str, float] = {}
        self.completed: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.commits: list[float] = []  # engine commits that went through
        self.claims: list[float] = []  # worker claims that went through

    def latencies_ms(self, start: dict[str, float], end: dict[str, float]) -> list[float]:
        return [1000 * (end[k] - start[k]) for k in start if k in end]

    def on_commit(self, _: Any, args: tuple[Any, ...]) -> None:
        now = time.monotonic()
        self.commits.append(now)
        for task in (task for append in args[0] for task in append.tasks):
            if task.owner is None:
                self.queued[task.task_id] = now

    def on_claim(self, found: Any, _: tuple[Any, ...]) -> None:
        now = time.monotonic()
        self.claims.append(now)
        for task in found:
            self.claimed.setdefault(task.task_id, now)

    def on_complete(self, reported: Any, args: tuple[Any, ...]) -> None:
        """A worker's batch of results (``complete_many``): when each that counted went in."""
        now = time.monotonic()
        for result, counted in zip(args[0], reported.counted, strict=True):
            if counted:
                self.completed[result.task_id] = now

    def on_results(self, found: Any, _: tuple[Any, ...]) -> None:
        now = time.monotonic()
        for completion in found:
            self.seen.setdefault(completion.task_id, now)


def wrap(store: Any, name: str, after: Callable[[Any, tuple[Any, ...]], None]) -> None:
    """Call ``after(result, args)`` whenever ``store.name`` returns."""
    inner = getattr(store, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        result = inner(*args, **kwargs)
        after(result, args)
        return result

    setattr(store, name, timed)


def instrument(engine_store: Any, worker_store: Any, clock: Clocked, listen: bool) -> None:
    """Time the stores' calls; without ``listen``, the stores offer no wake-ups."""
    wrap(engine_store, "commit", clock.on_commit)
    wrap(engine_store, "worker_completions", clock.on_results)
    wrap(worker_store, "claim", clock.on_claim)
    wrap(worker_store, "complete_many", clock.on_complete)
    if not listen:
        for store in (engine_store, worker_store):
            store.wakeups = lambda kinds: None


def chain(steps: int) -> str:
    lines = ['id = "chain"']
    for i in range(steps):
        lines.append(f"[steps.s{i}]")
        if i:
            lines.append(f'needs = ["s{i - 1}"]')
        lines.append('run = "true"')
    return "\n".join(lines) + "\n"


def default_restart() -> str:
    """Debian's way to restart the newest installed PostgreSQL (as root)."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return shlex.join(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"])


class Outage:
    """Ends the store's sessions, or restarts the server, and times its coming back."""

    def __init__(self, how: str, server: str, name: str, restart: str | None) -> None:
        self.how, self.server, self.name = how, server, name
        self.restart = restart
        self.began = self.back = 0.0

    def run(self) -> None:
        self.began = time.monotonic()
        if self.how == "terminate":
            with psycopg.connect(self.server, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND pid <> pg_backend_pid()",
                    [self.name],
                )
        else:
            command = self.restart or default_restart()
            subprocess.run(command, shell=True, check=True, stdout=subprocess.DEVNULL)
        while True:
            try:
                with psycopg.connect(self.server, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.Error:
                time.sleep(0.01)
        self.back = time.monotonic()


async def measure(
    server: str, mode: str, steps: int, outage: str | None, restart: str | None
) -> dict[str, Any]:
    schema = f"wayang_wake_{uuid.uuid4().hex[:10]}"
    url = f"{server}{'&' if '?' in server else '?'}schema={schema}&application_name={schema}"
    work = Path(tempfile.mkdtemp(prefix="wayang-wake-"))
    (work / "chain.toml").write_text(chain(steps))
    engine_app = App(Settings(store=url, engine=EngineSettings(run_tasks=False)))
    worker_app = App(Settings(store=url))
    clock = Clocked()
    instrument(engine_app.store, worker_app.store, clock, listen=mode == "listen")
    cut = Outage(outage, server, schema, restart) if outage else None
    try:
        worker = Worker(store_link(worker_app.store), worker_app.executor, WorkerSettings(slots=1))
        stop = asyncio.Event()
        request = prepare_run(work / "chain.toml", {}, {}, parallel=0, timeout_s=None)
        started = time.monotonic()
        async with engine_app.engine() as engine:
            job = asyncio.create_task(worker.run(stop))
            done = engine.start(request.plan, request.started, new_run_id(), reuse=request.reuse)
            if cut is not None:
                while len(clock.seen) < steps // 3:
                    await asyncio.sleep(0.01)
                await asyncio.to_thread(cut.run)
            state = await asyncio.wait_for(done, 600)
            took = time.monotonic() - started
            stop.set()
            await job
        assert state.status is RunStatus.SUCCEEDED, state.status
    finally:
        engine_app.close()
        worker_app.close()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    return report(mode, steps, took, clock, cut)


def report(
    mode: str, steps: int, took: float, clock: Clocked, cut: Outage | None
) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        values = sorted(values)
        if not values:
            return {}
        return {
            "p50": round(statistics.median(values), 1),
            "p90": round(values[int(0.9 * (len(values) - 1))], 1),
            "max": round(values[-1], 1),
        }

    result: dict[str, Any] = {
        "mode": mode,
        "steps": steps,
        "seconds": round(took, 2),
        "ms_per_step": round(1000 * took / steps, 1),
        "claim_latency_ms": stats(clock.latencies_ms(clock.queued, clock.claimed)),
        "result_latency_ms": stats(clock.latencies_ms(clock.completed, clock.seen)),
    }
    if cut is not None:
        after = [t for t in clock.commits if t >= cut.back]
        claims = [t for t in clock.claims if t >= cut.back]
        result["outage"] = {
            "how": cut.how,
            "server_away_s": round(cut.back - cut.began, 2),
            "engine_commit_after_s": round(after[0] - cut.back, 2) if after else None,
            "worker_claim_after_s": round(claims[0] - cut.back, 2) if claims else None,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=textwrap.dedent(__doc__ or "").split("\n")[0])
    parser.add_argument("--server", default=os.environ.get("WAYANG_TEST_POSTGRES", DEFAULT_SERVER))
    parser.add_argument("--mode", choices=["poll", "listen", "both"], default="both")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--outage", choices=["terminate", "restart"])
    parser.add_argument("--restart-command", help="a shell command restarting the server")
    args = parser.parse_args()
    modes = ["poll", "listen"] if args.mode == "both" else [args.mode]
    for mode in modes:
        result = asyncio.run(
            measure(args.server, mode, args.steps, args.outage, args.restart_command)
        )
        print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
