"""Benchmark ``wayang server`` (issue 6, "Performance"): the HTTP API under load, SSE fan-out,
and the idle server's memory.

    .venv/bin/python bench/server_bench.py            # all figures, needs wrk (apt-get install wrk)

* ``get``: ``GET /api/v1/runs/{id}`` of a finished 3-step run, by ``wrk -t1 -c50`` for
  ``--seconds``: requests/s and p50/p99 latency.
* ``start``: ``POST /api/v1/runs`` starting a 1-step run of a registered workflow (a ``noop``
  step, so the figure is the API, queue, engine and store, not a shell), by ``wrk -t1 -c50``:
  run starts/s accepted, then the time until every started run has finished.
* ``sse``: 100 clients follow one run's live stream (``/api/v1/runs/{id}/stream``); the run's
  events reach all of them: time from the run's end event being recorded to the last watcher
  receiving it.
* ``rss``: the server process's resident memory after start-up, idle (from /proc).

Each figure is printed as one ``BENCH_RESULT {json}`` line, then a table. No target is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

NOOP = 'id = "bench-noop"\nversion = "1.0.0"\n[steps.only]\nkind = "noop"\n'
THREE = 'id = "bench-three"\nversion = "1.0.0"\n[steps.a]\nkind = "noop"\n[steps.b]\nneeds = ["a"]\nkind = "noop"\n[steps.c]\nneeds = ["b"]\nkind = "noop"\n'  # noqa: E501
START_LUA = """
wrk.method = "POST"
wrk.body = '{"workflow": "bench-noop"}'
wrk.headers["Content-Type"] = "application/json"
"""


def result(**fields: Any) -> dict[str, Any]:
    fields.setdefault("python", sys.version.split()[0])
    fields.setdefault("cpus", os.cpu_count())
    print("BENCH_RESULT " + json.dumps(fields, sort_keys=True), flush=True)
    return fields


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        store = str(folder / "w.db")
        argv = [sys.executable, "-m", "wayang.cli.main", "--store", store, "server",
                "--port", str(self.port), "--socket", "", "--max-runs", "10000"]  # fmt: skip
        # Started in the scratch folder: from a repository's checkout, every run of a registered
        # workflow would get a worktree of that repository (docs/workspaces.md), and this
        # measures the engine behind the API, not git.
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise SystemExit("the server did not start")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(found.group(1)) / 1024 if found else float("nan")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wrk(url: str, seconds: float, connections: int, script: Path | None = None) -> dict[str, float]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url]
    if script is not None:
        argv[1:1] = ["-s", str(script)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


def _ms(text: str) -> float:
    value, unit = float(re.match(r"[\d.]+", text).group()), re.sub(r"[\d.]", "", text)  # type: ignore[union-attr]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wait_finished(client: httpx.Client, run_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(f"/api/v1/runs/{run_id}").json()["status"] == "succeeded":
            return
        time.sleep(0.05)
    raise SystemExit(f"run {run_id} did not finish")


def bench_get(server: Server, client: httpx.Client, seconds: float) -> dict[str, Any]:
    client.post("/api/v1/workflows", json={"source": THREE}).raise_for_status()
    run_id = client.post("/api/v1/runs", json={"workflow": "bench-three"}).json()["run_id"]
    wait_finished(client, run_id)
    load = wrk(f"{server.url}/api/v1/runs/{run_id}", seconds, 50)
    return result(workload="get", **load)


def bench_start(server: Server, client: httpx.Client, seconds: float) -> dict[str, Any]:
    client.post("/api/v1/workflows", json={"source": NOOP}).raise_for_status()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(START_LUA)
    began = time.monotonic()
    load = wrk(f"{server.url}/api/v1/runs", seconds, 50, Path(script.name))
    os.unlink(script.name)
    started = int(load["rps"] * seconds)
    while True:  # until nothing is queued or running
        busy = client.get("/healthz").json()
        if busy["runs_queued"] == 0 and busy["runs_active"] == 0:
            break
        time.sleep(0.1)
    drained = time.monotonic() - began
    return result(workload="start", starts=started, drained_s=drained,
                  runs_per_s_end_to_end=started / drained, **load)  # fmt: skip


async def bench_sse(server: Server, watchers: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=watchers + 10)  # the watchers, and the emit
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
        source = 'id = "bench-wait"\n[steps.gate]\nkind = "event"\ntopic = "bench.go"\n'
        run_id = (await client.post("/api/v1/runs", json={"source": source})).json()["run_id"]
        await asyncio.sleep(0.5)
        ends: list[float] = []
        ready = asyncio.Event()
        connected = 0

        async def watch() -> None:
            nonlocal connected
            async with client.stream("GET", f"/api/v1/runs/{run_id}/stream") as stream:
                connected += 1
                if connected == watchers:
                    ready.set()
                async for line in stream.aiter_lines():
                    if line.startswith("event: end"):
                        ends.append(time.monotonic())
                        return

        tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
        await asyncio.wait_for(ready.wait(), 60)
        await asyncio.sleep(0.5)
        emitted = time.monotonic()
        await client.post("/api/v1/topics/emit", json={"topic": "bench.go", "data": {}})
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return result(workload="sse", watchers=watchers, received=len(ends),
                      first_ms=(min(ends) - emitted) * 1000,
                      last_ms=(max(ends) - emitted) * 1000)  # fmt: skip


def table(rows: list[dict[str, Any]]) -> None:
    print()
    for r in rows:
        if r["workload"] == "rss":
            print(f"idle server RSS: {r['rss_mb']:.1f} MB (target <= 150 MB)")
        elif r["workload"] == "get":
            print(f"GET /api/v1/runs/{{id}}: {r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
                  f"p99 {r['p99_ms']:.2f} ms (50 connections)")  # fmt: skip
        elif r["workload"] == "start":
            print(f"POST /api/v1/runs (1-step run): {r['rps']:,.0f} starts/s accepted "
                  f"(target >= 1,000), p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms; "
                  f"{r['starts']:,} runs all finished after {r['drained_s']:.1f} s "
                  f"({r['runs_per_s_end_to_end']:,.0f} runs/s end to end)")  # fmt: skip
        elif r["workload"] == "sse":
            print(f"SSE: {r['received']}/{r['watchers']} watchers got the run's end; first "
                  f"{r['first_ms']:.0f} ms, last {r['last_ms']:.0f} ms after the emit")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--watchers", type=int, default=100)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    rows = []
    with tempfile.TemporaryDirectory(prefix="wayang-server-bench-") as folder:
        server = Server(Path(folder))
        try:
            time.sleep(1.0)
            rows.append(result(workload="rss", rss_mb=server.rss_mb()))
            with httpx.Client(base_url=server.url, timeout=60) as client:
                rows.append(bench_get(server, client, args.seconds))
                rows.append(bench_start(server, client, args.seconds))
            rows.append(asyncio.run(bench_sse(server, args.watchers)))
        finally:
            server.stop()
    table(rows)


if __name__ == "__main__":
    main()
