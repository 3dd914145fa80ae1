"""Benchmark event steps, deliveries and API steps (issue 5, "Performance").

Four workloads; the first three each on a fresh SQLite store (WAL, ``synchronous=FULL``: every
delivery's outcome and every emit is fsynced before the next hop starts, the durable default)::

    .venv/bin/python bench/steps_bench.py --workload chain       # emit -> handler latency
    .venv/bin/python bench/steps_bench.py --workload throughput  # deliveries per second
    .venv/bin/python bench/steps_bench.py --workload http        # API step vs bare ASGI, req/s
    .venv/bin/python bench/steps_bench.py --workload load        # discover + check N step files
    .venv/bin/python bench/steps_bench.py --workload all

* ``chain``: 10 event steps A1 -> A2 -> ... -> A10, each emitting to the next. ``--n`` messages
  are emitted one at a time; the next is emitted only once A10's delivery is durable, so this
  measures latency, not throughput. Per hop = (A10's handler ran - emit called) / 10; also the
  handler-to-handler gaps (A1 -> A2, ...) and emit -> A1. A hop costs one store commit, so the
  time of each commit and the disk's floor (a bare one-row SQLite commit with the same settings,
  in the same folder, just before) are printed beside it.
* ``throughput``: ``--n`` messages published in batches (``publish`` + ``flush``) to one step with
  a trivial async handler; deliveries/s from the first publish to the last delivery succeeded
  (counted by ``on_finished``), and to the last outcome durable.
* ``http``: the dev HTTP app (``StepsApp``) with one API step ``GET /ping`` that returns
  ``{"status": 200, "body": {"ok": true}}`` and emits nothing, and a bare ASGI app answering the
  same JSON, each under uvicorn with the settings of ``wayang dev``, each in its own process;
  loaded in turn, ``--rounds`` times, by ``wrk`` (one thread, ``--connections`` connections)
  when it is installed, else by a small asyncio load generator in a separate process (``--client
  python``; much lighter than httpx, heavier than wrk). Prints the
  median req/s of both and the median of the per-round ratios.

* ``load``: ``--files`` step files (default 2,000; half with a JSON Schema ``input`` of their own,
  in 40 sub-folders, 50 topics, each topic emitted by a noop step) written to a fresh folder,
  then discovered, imported, checked and indexed into a registry (``StepLoader.load`` +
  ``StepRegistry.build``), in a new process each round, ``--rounds`` times.

Each figure is printed as one ``BENCH_RESULT {json}`` line, then a table. No target is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from wayang.steps.context import Context, Request
from wayang.steps.model import Emit, StepDef, Where
from wayang.steps.runtime import Finished, RuntimeSettings, StepRuntime
from wayang.steps.state import FileState
from wayang.store.sqlite import SQLiteStore

HOPS = 10
PING_BODY = {"ok": True}


class Steps:
    """A registry of hand-made steps (what the runtime and the HTTP app need of one)."""

    def __init__(self, *steps: StepDef) -> None:
        self.steps = {s.name: s for s in steps}
        self.inactive: set[str] = set()
        subs: dict[str, list[tuple[str, int]]] = {}
        for step in steps:
            for topic in step.subscribes:
                subs.setdefault(topic, []).append((step.name, step.retry.attempts))
        self._subs = subs

    def subscriptions(self) -> Mapping[str, Sequence[tuple[str, int]]]:
        return self._subs

    def match(self, method: str, path: str) -> tuple[StepDef, dict[str, str]] | None:
        for step in self.steps.values():
            if step.type == "api" and step.method == method and step.path == path:
                return step, {}
        return None


def event_step(
    name: str, handler: Callable[..., Any], subscribes: str, emits: Sequence[str] = ()
) -> StepDef:
    return StepDef(
        name,
        "event",
        Where(Path(f"{name}.step.py")),
        handler=handler,
        handler_is_async=True,
        subscribes=(subscribes,),
        emits=tuple(Emit(t) for t in emits),
    )


@contextlib.contextmanager
def fresh_store(synchronous: str) -> Iterator[tuple[SQLiteStore, FileState, Path]]:
    folder = Path(tempfile.mkdtemp(prefix="wayang-steps-bench-"))
    store = SQLiteStore(folder / "wayang.db", synchronous=synchronous)
    try:
        yield store, FileState(folder / "state"), folder
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)


def time_commits(store: SQLiteStore) -> list[float]:
    """Record how long each of the runtime's commits takes in the store (fsync included)."""
    durations: list[float] = []
    commit = store.commit_deliveries

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return commit(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - started)

    store.commit_deliveries = timed  # type: ignore[method-assign]
    return durations


def bare_commits(folder: Path, synchronous: str, n: int = 200) -> list[float]:
    """The disk's floor: one-row SQLite commits (WAL, same ``synchronous``) in the same folder."""
    import sqlite3  # noqa: PLC0415

    conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("CREATE TABLE t (x INTEGER)")
        durations = []
        for i in range(n):
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?)", (i,))
            conn.execute("COMMIT")
            durations.append(time.perf_counter() - started)
        return durations
    finally:
        conn.close()


def pct(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def result(**fields: Any) -> dict[str, Any]:
    fields.setdefault("python", sys.version.split()[0])
    fields.setdefault("cpus", os.cpu_count())
    print("BENCH_RESULT " + json.dumps(fields, sort_keys=True), flush=True)
    return fields


# ---------------------------------------------------------------------------------- chain


async def chain(n: int, warmup: int, synchronous: str) -> dict[str, Any]:
    stamps: dict[str, list[float]] = {}
    done: asyncio.Event = asyncio.Event()
    last = f"A{HOPS}"

    def hop(i: int) -> Callable[[Any, Context], Any]:
        topic = f"a{i + 1}" if i < HOPS else ""

        async def handler(data: Any, ctx: Context) -> None:
            stamps[ctx.trace_id].append(time.perf_counter())
            if topic:
                ctx.emit({"topic": topic, "data": data})

        return handler

    steps = Steps(
        *(
            event_step(f"A{i}", hop(i), f"a{i}", [f"a{i + 1}"] if i < HOPS else [])
            for i in range(1, HOPS + 1)
        )
    )

    def finished(f: Finished) -> None:
        if f.delivery.step == last:
            done.set()

    per_hop: list[float] = []
    whole: list[float] = []
    gaps: list[float] = []
    first: list[float] = []
    with fresh_store(synchronous) as (store, state, folder):
        floor = bare_commits(folder, synchronous)
        commits = time_commits(store)
        async with StepRuntime(
            store, steps, state, owner="bench", on_finished=finished, settings=RuntimeSettings()
        ) as runtime:
            for k in range(warmup + n):
                if k == warmup:
                    commits.clear()
                trace = f"t{k:06d}"
                stamps[trace] = []
                done.clear()
                t0 = time.perf_counter()
                await runtime.emit("a1", {"k": k}, source="bench", trace_id=trace)
                await done.wait()
                await runtime.flush()  # A10's outcome durable: nothing left in flight
                ts = stamps.pop(trace)
                if len(ts) != HOPS:
                    raise SystemExit(f"trace {trace} ran {len(ts)} handlers, not {HOPS}")
                if k < warmup:
                    continue
                whole.append(ts[-1] - t0)
                per_hop.append((ts[-1] - t0) / HOPS)
                first.append(ts[0] - t0)
                gaps.extend(b - a for a, b in itertools.pairwise(ts))
    ms = 1000.0
    return result(
        workload="chain",
        hops=HOPS,
        n=n,
        synchronous=synchronous,
        hop_p50_ms=pct(per_hop, 50) * ms,
        hop_p99_ms=pct(per_hop, 99) * ms,
        handler_gap_p50_ms=pct(gaps, 50) * ms,
        handler_gap_p99_ms=pct(gaps, 99) * ms,
        emit_to_first_p50_ms=pct(first, 50) * ms,
        emit_to_first_p99_ms=pct(first, 99) * ms,
        chain_p50_ms=pct(whole, 50) * ms,
        chain_p99_ms=pct(whole, 99) * ms,
        chain_mean_ms=statistics.fmean(whole) * ms,
        commits=len(commits),
        commit_p50_ms=pct(commits, 50) * ms,
        commit_p99_ms=pct(commits, 99) * ms,
        bare_sqlite_commit_p50_ms=pct(floor, 50) * ms,
        bare_sqlite_commit_p99_ms=pct(floor, 99) * ms,
    )


# ---------------------------------------------------------------------------------- throughput


async def throughput(n: int, batch: int, synchronous: str) -> dict[str, Any]:
    count = 0
    last_at = 0.0
    all_done = asyncio.Event()

    async def sink(data: Any, ctx: Context) -> None:
        return None

    def finished(f: Finished) -> None:
        nonlocal count, last_at
        if f.status != "succeeded":
            raise SystemExit(f"delivery {f.delivery.delivery_id} {f.status}: {f.error}")
        count += 1
        if count == n:
            last_at = time.perf_counter()
            all_done.set()

    steps = Steps(event_step("Sink", sink, "t"))
    with fresh_store(synchronous) as (store, state, _):
        async with StepRuntime(
            store, steps, state, owner="bench", on_finished=finished, settings=RuntimeSettings()
        ) as runtime:
            await runtime.flush()
            started = time.perf_counter()
            for lo in range(0, n, batch):
                for i in range(lo, min(n, lo + batch)):
                    runtime.publish("t", {"i": i}, trace_id=f"t{i:06d}", source="bench")
                await runtime.flush()
            published = time.perf_counter()
            await all_done.wait()
            await runtime.flush()
            durable = time.perf_counter()
        succeeded = store.list_deliveries(status="succeeded", limit=n + 1)
        if len(succeeded) != n:
            raise SystemExit(f"{len(succeeded)} deliveries succeeded in the store, not {n}")
    return result(
        workload="throughput",
        n=n,
        batch=batch,
        synchronous=synchronous,
        deliveries_per_s=n / (last_at - started),
        durable_deliveries_per_s=n / (durable - started),
        publish_s=published - started,
        work_s=last_at - started,
    )


# ---------------------------------------------------------------------------------- load

STEP_FILE = """\
config = {{
    "type": "event",
    "name": "Step{index}",
    "subscribes": ["t{topic}"],
    "emits": [],{schema}
    "flows": ["f{flow}"],
}}


async def handler(input, ctx):
    return {index}
"""

SOURCE_FILE = """\
config = {{"type": "noop", "name": "Source{topic}", "virtualEmits": ["t{topic}"]}}
"""


def write_project(root: Path, files: int) -> None:
    for index in range(files):
        schema = (
            f'\n    "input": {{"type": "object", "required": ["n{index}"]}},' if index % 2 else ""
        )
        text = STEP_FILE.format(index=index, topic=index % 50, schema=schema, flow=index % 7)
        path = root / "steps" / f"group{index % 40}" / f"s{index}.step.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for topic in range(50):
        (root / "steps" / f"source{topic}.step.py").write_text(SOURCE_FILE.format(topic=topic))


def load_once(root: Path) -> dict[str, float]:
    """Discover, import, check and index the project's steps, in this (fresh) process."""
    from wayang.steps.discovery import StepLoader  # noqa: PLC0415 - timed on purpose
    from wayang.steps.registry import StepRegistry  # noqa: PLC0415

    started = time.perf_counter()
    loader = StepLoader(root)
    steps, diagnostics = loader.load()
    loaded = time.perf_counter()
    registry = StepRegistry.build(steps, diagnostics)
    built = time.perf_counter()
    loader.close()
    if registry.errors or registry.diagnostics:
        raise SystemExit(f"unexpected diagnostics: {registry.diagnostics[:3]}")
    return {
        "steps": len(registry.steps),
        "load_s": loaded - started,
        "build_s": built - loaded,
        "total_s": built - started,
    }


def load(files: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wayang-load-") as folder:
        root = Path(folder)
        write_project(root, files)
        runs = []
        for _ in range(rounds):
            found = subprocess.run(
                [sys.executable, __file__, "--load-once", str(root)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            )
            runs.append(json.loads(found.stdout))
    totals = [r["total_s"] for r in runs]
    return result(
        workload="load",
        files=files + 50,
        steps=runs[0]["steps"],
        rounds=rounds,
        total_median_s=statistics.median(totals),
        total_max_s=max(totals),
        load_median_s=statistics.median(r["load_s"] for r in runs),
        build_median_s=statistics.median(r["build_s"] for r in runs),
    )


# ---------------------------------------------------------------------------------- http


async def _ping(req: Request, ctx: Context) -> dict[str, Any]:
    return {"status": 200, "body": PING_BODY}


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The same JSON answer with nothing in between: the floor for any ASGI app."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
            await send({"type": "lifespan.startup.complete"})
    body = json.dumps(PING_BODY, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve(kind: str, port: int, synchronous: str) -> None:
    """Run one server until SIGTERM/SIGINT (the ``--serve`` mode, in its own process)."""
    import uvicorn  # noqa: PLC0415 - only the server processes need it

    from wayang.steps.asgi import StepsApp  # noqa: PLC0415

    def config(app: Any) -> uvicorn.Config:
        # What `wayang dev` passes to uvicorn (src/wayang/cli/steps.py), for both apps.
        return uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
        )

    if kind == "bare":
        await uvicorn.Server(config(bare_app)).serve()
        return
    api = StepDef("Ping", "api", Where(Path("ping.step.py")), _ping, True, path="/ping",
                  method="GET")  # fmt: skip
    steps = Steps(api)
    with fresh_store(synchronous) as (store, state, _):
        async with StepRuntime(store, steps, state, owner="bench") as runtime:
            await uvicorn.Server(config(StepsApp(runtime, lambda: steps))).serve()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    import httpx  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(url, timeout=1.0)
            if response.json() != PING_BODY:
                raise SystemExit(f"{url} answered {response.status_code} {response.text}")
            return
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout_s} s")


def load_wrk(url: str, connections: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    return {"rps": rps, "p50_ms": _ms(lat.get("50", "0ms")), "p99_ms": _ms(lat.get("99", "0ms"))}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


async def _python_load(url: str, connections: int, seconds: float) -> dict[str, float]:
    """Keep-alive HTTP/1.1 GETs on ``connections`` asyncio streams. (httpx.AsyncClient was tried
    first: here it tops out near 200 req/s and gets slower with more connections, so it measured
    itself, not the server.)"""
    host, port, path = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)", url).groups()  # type: ignore[union-attr]
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while (now := time.perf_counter()) < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                found = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(found.group(1)) if found else 0)
                latencies.append(time.perf_counter() - now)
                errors += not head.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{errors} requests failed")
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
    }


def load_python(url: str, connections: int, seconds: float) -> dict[str, float]:
    """The Python load generator, in its own process (the server keeps its core)."""
    code = (
        "import asyncio, json, sys; sys.path.insert(0, sys.argv[1]); import steps_bench as b; "
        "print(json.dumps(asyncio.run(b._python_load(sys.argv[2], int(sys.argv[3]), "
        "float(sys.argv[4])))))"
    )
    args = [str(Path(__file__).parent), url, str(connections), str(seconds)]
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def start_server(kind: str, synchronous: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--synchronous", synchronous])
    url = f"http://127.0.0.1:{port}/ping"
    try:
        wait_ready(url, proc)
    except BaseException:
        stop_server(proc)
        raise
    return proc, url


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http(
    connections: int, seconds: float, rounds: int, client: str, synchronous: str
) -> dict[str, Any]:
    """Both servers up at once (an idle one costs nothing), loaded in turn ``rounds`` times, so
    a drift in the machine's load touches both alike; medians over the rounds."""
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    load = load_wrk if client == "wrk" else load_python
    kinds = ("bare", "wayang")
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for kind in kinds:
            servers[kind] = start_server(kind, synchronous)
            load(servers[kind][1], connections, min(1.0, seconds))  # warm-up
        for _ in range(rounds):
            for kind in kinds:
                runs[kind].append(load(servers[kind][1], connections, seconds))
    finally:
        for proc, _ in servers.values():
            stop_server(proc)

    def median(kind: str, figure: str) -> float:
        return statistics.median(r[figure] for r in runs[kind])

    ratios = [b["rps"] / w["rps"] for b, w in zip(runs["bare"], runs["wayang"], strict=True)]
    return result(
        workload="http",
        client=client,
        connections=connections,
        seconds=seconds,
        rounds=rounds,
        synchronous=synchronous,
        bare_rps=median("bare", "rps"),
        bare_p50_ms=median("bare", "p50_ms"),
        bare_p99_ms=median("bare", "p99_ms"),
        api_rps=median("wayang", "rps"),
        api_p50_ms=median("wayang", "p50_ms"),
        api_p99_ms=median("wayang", "p99_ms"),
        bare_over_api=statistics.median(ratios),
        bare_over_api_rounds=[round(r, 3) for r in ratios],
    )


# ---------------------------------------------------------------------------------- main


def table(results: list[dict[str, Any]]) -> None:
    rows: list[tuple[str, str, str]] = []
    for r in results:
        if r["workload"] == "chain":
            rows += [
                ("chain: per hop, p50 / p99 (ms)", f"{r['hop_p50_ms']:.2f} / {r['hop_p99_ms']:.2f}",
                 "p50 <= 2 ms"),
                ("chain: handler -> next handler, p50 / p99 (ms)",
                 f"{r['handler_gap_p50_ms']:.2f} / {r['handler_gap_p99_ms']:.2f}", ""),
                ("chain: emit -> A1 handler, p50 / p99 (ms)",
                 f"{r['emit_to_first_p50_ms']:.2f} / {r['emit_to_first_p99_ms']:.2f}", ""),
                (f"chain: emit -> A{HOPS} handler, p50 / p99 (ms)",
                 f"{r['chain_p50_ms']:.2f} / {r['chain_p99_ms']:.2f}", ""),
                (f"chain: one store commit, p50 / p99 (ms; {r['commits'] / r['n']:.1f} per chain)",
                 f"{r['commit_p50_ms']:.2f} / {r['commit_p99_ms']:.2f}", ""),
                ("disk floor: bare one-row SQLite commit, p50 / p99 (ms)",
                 f"{r['bare_sqlite_commit_p50_ms']:.2f} / {r['bare_sqlite_commit_p99_ms']:.2f}",
                 ""),
            ]  # fmt: skip
        elif r["workload"] == "throughput":
            rows += [
                (f"throughput: {r['n']:,} deliveries, one subscriber (/s)",
                 f"{r['deliveries_per_s']:,.0f}", ">= 5,000"),
                ("throughput: to the last outcome durable (/s)",
                 f"{r['durable_deliveries_per_s']:,.0f}", ""),
            ]  # fmt: skip
        elif r["workload"] == "load":
            rows += [
                (f"load: {r['steps']:,} steps from {r['files']:,} files, median / max (s)",
                 f"{r['total_median_s']:.3f} / {r['total_max_s']:.3f}", "well under 1 s"),
                ("load: discover + import / check + index, median (s)",
                 f"{r['load_median_s']:.3f} / {r['build_median_s']:.3f}", ""),
            ]  # fmt: skip
        elif r["workload"] == "http":
            rows += [
                ("http: bare ASGI (req/s)", f"{r['bare_rps']:,.0f}", ""),
                ("http: API step via StepsApp (req/s)", f"{r['api_rps']:,.0f}", ""),
                (f"http: bare / API step (median of {r['rounds']} rounds)",
                 f"{r['bare_over_api']:.2f}x", "<= 2x"),
                ("http: p50 / p99 latency, bare vs API (ms)",
                 f"{r['bare_p50_ms']:.2f}/{r['bare_p99_ms']:.2f} vs "
                 f"{r['api_p50_ms']:.2f}/{r['api_p99_ms']:.2f}", ""),
            ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"\n{'figure':<{width}}  {'value':>22}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>22}  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workload", choices=["chain", "throughput", "http", "load", "all"], default="all"
    )
    parser.add_argument("--files", type=int, default=2000, help="load: step files to write")
    parser.add_argument("--n", type=int, default=None, help="chain: 200, throughput: 10000")
    parser.add_argument("--warmup", type=int, default=20, help="chain messages not counted")
    parser.add_argument("--batch", type=int, default=500, help="throughput: messages per flush")
    parser.add_argument("--connections", type=int, default=50, help="http: concurrent conns")
    parser.add_argument("--seconds", type=float, default=5.0, help="http: seconds per load")
    parser.add_argument("--rounds", type=int, default=3, help="http: loads of each app")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL", "OFF"],
        default="FULL",
        help="SQLite synchronous setting (FULL, the durable default, for the headline figures)",
    )
    parser.add_argument("--serve", choices=["bare", "wayang"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--load-once", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_once:
        print(json.dumps(load_once(args.load_once)))
        return
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.serve, args.port, args.synchronous))
        return
    everything = ["chain", "throughput", "http", "load"]
    todo = everything if args.workload == "all" else [args.workload]
    results = []
    for workload in todo:
        if workload == "chain":
            results.append(asyncio.run(chain(args.n or 200, args.warmup, args.synchronous)))
        elif workload == "throughput":
            n = args.n or 10_000
            results.append(asyncio.run(throughput(n, args.batch, args.synchronous)))
        elif workload == "load":
            results.append(load(args.files, args.rounds))
        else:
            results.append(
                http(args.connections, args.seconds, args.rounds, args.client, args.synchronous)
            )
    table(results)


if __name__ == "__main__":
    main()
