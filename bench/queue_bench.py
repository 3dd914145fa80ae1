"""What a submit costs as the server's queue of runs grows: ``wayang server --max-runs 1`` on a
fresh SQLite file, and ``--runs`` runs of one long step submitted one after another
(``POST /api/v1/runs``). The first run takes the only slot; the others wait in the queue.

    .venv/bin/python bench/queue_bench.py --runs 2000

Prints the mean time of a submit over each quarter of the runs, and five times of ``GET
/api/v1/runs/{id}`` of a queued and of the running run, as one ``BENCH_RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import closing, suppress
from pathlib import Path

import httpx

MARK = "wayang-queue-bench"
HOLD = f'id = "hold"\n[steps.wait]\nrun = "sleep 600  # {MARK}"\n'
WAYANG = Path(sys.executable).with_name("wayang")


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(base: str) -> None:
    for _ in range(200):
        try:
            httpx.get(f"{base}/health", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit("the server did not answer within 10 s")


def stop_held_step() -> None:
    """The step holding the slot runs in a process group of its own, which outlives the
    killed server: end it."""
    found = subprocess.run(["pgrep", "-f", MARK], capture_output=True, text=True, check=False)
    for pid in map(int, found.stdout.split()):
        with suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)


def measure(base: str, runs: int) -> dict[str, object]:
    quarter = max(1, runs // 4)
    submits: list[float] = []
    run_ids: list[str] = []
    with httpx.Client(timeout=60) as client:
        started = time.perf_counter()
        for done in range(1, runs + 1):
            answer = client.post(f"{base}/runs", json={"source": HOLD})
            answer.raise_for_status()
            run_ids.append(answer.json()["run_id"])
            if done % quarter == 0:
                now = time.perf_counter()
                submits.append(round((now - started) / quarter * 1000, 2))
                started = now
        reads = {}
        for label, run_id in (("get_queued_ms", run_ids[-1]), ("get_running_ms", run_ids[0])):
            times = []
            for _ in range(5):
                before = time.perf_counter()
                client.get(f"{base}/runs/{run_id}").raise_for_status()
                times.append(round((time.perf_counter() - before) * 1000, 2))
            reads[label] = times
    return {"runs": runs, "submit_ms_by_quarter": submits, **reads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        env = {**os.environ, "WAYANG_STORE": str(Path(folder) / "wayang.db")}
        command = [str(WAYANG), "server", "--port", str(port), "--max-runs", "1"]
        with open(Path(folder) / "server.log", "w") as log:
            server = subprocess.Popen(command, env=env, cwd=folder, stdout=log, stderr=log)
        try:
            base = f"http://127.0.0.1:{port}/api/v1"
            wait_until_up(base)
            result = measure(base, args.runs)
        finally:
            server.kill()
            server.wait()
            stop_held_step()
    print("BENCH_RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
