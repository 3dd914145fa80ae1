"""Benchmark Wayang on PostgreSQL: the engine alone, or an engine and ``wayang worker`` processes.

The workloads of ``bench/wayang_bench.py`` (the peers' chain, fanout and many, see
../shared/bench/peers/README.md), one per process, printing one ``BENCH_RESULT {json}`` line for
the peers' driver (``run_bench.py``)::

    .venv/bin/python bench/fleet_bench.py --workload chain --n 500                # engine alone
    .venv/bin/python bench/fleet_bench.py --workload fanout --n 1000 --workers 2  # + 2 workers

``--workers 0`` (the default): the engine runs every step itself, as ``wayang run`` does.
``--workers K``: the engine runs none (``EngineSettings(run_tasks=False)``, as
``wayang server --no-tasks``), and K ``wayang worker`` processes, started here, claim the steps
from the store, run them and record their results; the engine folds those in. Every run uses a
fresh schema in the database of ``--pg`` (default ``wayang_bench``, created on first use; the
schema is dropped after, unless ``--keep``). Phases as in ``wayang_bench.py``: ``t_setup`` covers
opening the store, starting the workers and waiting until each has registered; ``t_work`` the
first run started to the last run durable.

Besides the rate, the line carries what the run cost: CPU seconds during ``t_work`` of this
process (the engine), of the workers and of the PostgreSQL backends serving them (plus the
server's WAL writer, checkpointer and background writer; see ``pg_probe.py``), and the
database's transaction count and the cluster's WAL counters over the run. Figures are printed,
never checked: keep the machine otherwise idle, and compare runs taken side by side.
"""

from __future__ import annotations

import time

PROCESS_T0 = time.perf_counter()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench_steps, for the python: references

T_PRE = time.perf_counter() - PROCESS_T0
_mark = time.perf_counter()

from pg_probe import (  # noqa: E402
    DEFAULT_BASE,
    Probe,
    drop_schema,
    ensure_database,
    fresh_schema,
    store_url,
)
from wayang_bench import workflow_text  # noqa: E402

from wayang import __version__  # noqa: E402
from wayang.app import App, Settings  # noqa: E402
from wayang.cli.driver import defer_full_collections, freeze_startup_heap  # noqa: E402
from wayang.engine.state import RunState  # noqa: E402
from wayang.ids import new_run_id  # noqa: E402
from wayang.runtime.cpus import CpuPin  # noqa: E402
from wayang.runtime.engine import EngineSettings  # noqa: E402
from wayang.runtime.operations import prepare_run  # noqa: E402

T_IMPORT = time.perf_counter() - _mark
WAYANG = Path(sys.executable).with_name("wayang")
UNITS = {"chain": "steps", "fanout": "tasks", "many": "workflows", "trivial": "workflows"}
DEFAULT_N = {"chain": 500, "fanout": 1000, "many": 200, "trivial": 1}


@dataclass(frozen=True)
class Options:
    workload: str
    n: int
    workers: int
    slots: int
    pg: str
    engine_poll_s: float
    pool_max: int
    keep: bool
    drive: bool
    drive_runs: int
    spill_after: float | None
    pin: bool


def parse_options() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(UNITS), required=True)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--workers", type=int, default=0, help="0: the engine runs the steps")
    parser.add_argument("--slots", type=int, default=8, help="each worker's --slots")
    parser.add_argument("--pg", default=DEFAULT_BASE, help="PostgreSQL database URL")
    parser.add_argument(
        "--engine-poll",
        type=float,
        default=EngineSettings().poll_every_s,
        help="seconds between the engine's looks for workers' results (EngineSettings)",
    )
    parser.add_argument("--pool-max", type=int, default=0, help="store ?pool_max= (0: default)")
    parser.add_argument("--keep", action="store_true", help="keep the schema")
    parser.add_argument(
        "--drive",
        action="store_true",
        help="hand the runs off to the workers, started with --drive (runtime/hand_off.py)",
    )
    parser.add_argument(
        "--drive-runs", type=int, default=0, help="with --drive: each driver's --drive-runs"
    )
    parser.add_argument(
        "--spill-after",
        type=float,
        default=None,
        help="with --drive: each driver's --spill-after (default: the worker's)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin this process (the engine) to the first CPU it may use, and worker k to the "
        "next ones in turn (wayang worker --cpus; runtime/cpus.py)",
    )
    args = parser.parse_args()
    n = args.n if args.n is not None else DEFAULT_N[args.workload]
    return Options(
        args.workload,
        n,
        args.workers,
        args.slots,
        args.pg,
        args.engine_poll,
        args.pool_max,
        args.keep,
        args.drive,
        args.drive_runs,
        args.spill_after,
        args.pin,
    )


# ---------------------------------------------------------------------------------- workers


class Workers:
    """``wayang worker`` processes of this benchmark, stopped by their PIDs."""

    def __init__(
        self,
        url: str,
        count: int,
        slots: int,
        logs: Path,
        *,
        drive: bool,
        drive_runs: int = 0,
        spill_after: float | None = None,
        pin: CpuPin | None = None,
    ) -> None:
        path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}  # bench_steps, for the python: references
        command = [str(WAYANG), "--store", url, "worker", "--slots", str(slots), "--grace", "5"]
        command += ["--drive"] if drive else []
        command += ["--drive-runs", str(drive_runs)] if drive and drive_runs else []
        command += ["--spill-after", str(spill_after)] if drive and spill_after is not None else []
        self.logs = [(logs / f"worker{i}.log").open("wb") for i in range(count)]
        # pinned: worker i on the CPU after the engine's, in turn, started with all the CPUs
        # (the engine's process is pinned) so that it may choose its own
        cpus = sorted(pin.free) if pin else []
        pins = [["--cpus", str(cpus[(i + 1) % len(cpus)])] if cpus else [] for i in range(count)]
        setup = pin.child_setup() if pin else None
        self.procs = [
            subprocess.Popen(
                command + args,
                cwd=HERE,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=setup,  # noqa: PLW1509 -- it only sets the CPUs: no lock, no import
            )
            for log, args in zip(self.logs, pins, strict=True)
        ]

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def wait_registered(self, app: App, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            running = [w for w in app.store.list_workers() if w.state == "running"]
            if len(running) >= len(self.procs):
                return
            if any(proc.poll() is not None for proc in self.procs):
                sys.exit("a worker exited before it registered; see its log")
            time.sleep(0.05)
        sys.exit(f"the workers did not register within {timeout_s:g}s")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


# ---------------------------------------------------------------------------------- the run


async def run_workload(
    app: App, path: Path, runs: int, probe: Probe
) -> tuple[list[RunState], float]:
    async with app.engine() as engine:
        requests = [prepare_run(path, {}, {}, parallel=0, timeout_s=None) for _ in range(runs)]
        probe.start()
        started = time.perf_counter()
        futures = [engine.start(r.plan, r.started, new_run_id(), reuse=r.reuse) for r in requests]
        states = await asyncio.gather(*futures)
        work = time.perf_counter() - started
    return list(states), work


def engine_settings(options: Options) -> EngineSettings:
    return EngineSettings(
        run_tasks=options.workers == 0,
        poll_every_s=options.engine_poll_s,
        hand_off=options.drive,
    )


def measure(
    options: Options, schema: str, folder: Path, pin: CpuPin | None = None
) -> dict[str, Any]:
    """Set up, run the workload, tear down; the phases, CPU seconds and server counters.
    ``pin``: this process's pin (--pin); the workers take the CPUs after its one in turn."""
    setup_started = time.perf_counter()
    url = store_url(options.pg, schema, options.pool_max or None)
    path = folder / "workflow.toml"
    path.write_text(workflow_text(options.workload, options.n), "utf-8")
    app = App(Settings(store=url, engine=engine_settings(options)))
    app.store  # noqa: B018 -- create the schema before the workers open it
    workers = (
        Workers(
            url,
            options.workers,
            options.slots,
            folder,
            drive=options.drive,
            drive_runs=options.drive_runs,
            spill_after=options.spill_after,
            pin=pin,
        )
        if options.workers
        else None
    )
    try:
        if workers is not None:
            workers.wait_registered(app)
        pids = [os.getpid(), *(workers.pids if workers else [])]
        probe = Probe(options.pg, schema, pids)
        runs = options.n if options.workload == "many" else 1
        freeze_startup_heap()  # as 'wayang server' and 'wayang worker' do before their work
        defer_full_collections()
        states, work = asyncio.run(run_workload(app, path, runs, probe))
        pg_cpu, cpu = probe.stop()
        setup = time.perf_counter() - setup_started - work
    finally:
        teardown_started = time.perf_counter()
        if workers is not None:
            workers.stop()
        app.close()
    failed = [s.run_id for s in states if s.status.value != "succeeded"]
    if failed:
        sys.exit(f"runs did not succeed: {failed[:5]}")
    engine_cpu = cpu.pop(os.getpid())
    return {
        "t_setup": setup,
        "t_work": work,
        "teardown_started": teardown_started,
        "engine_cpu_s": engine_cpu,
        "workers_cpu_s": sum(cpu.values()),
        "pg_cpu_s": pg_cpu,
        **probe.counted(),
    }


def result(options: Options, figures: dict[str, Any]) -> dict[str, Any]:
    work = figures["t_work"]
    count = options.n if options.workload != "trivial" else 1
    busy = figures["engine_cpu_s"] + figures["workers_cpu_s"] + figures["pg_cpu_s"]
    return {
        "peer": "wayang",
        "version": __version__,
        "backend": "postgres",
        "mode": (
            (f"drivers-{options.workers}" if options.drive else f"workers-{options.workers}")
            if options.workers
            else "engine"
        )
        + ("-pinned" if options.pin else ""),
        "pinned": options.pin,
        "workers": options.workers,
        "slots": options.slots if options.workers else None,
        "engine_poll_s": options.engine_poll_s,
        "workload": options.workload,
        "n": count,
        "unit": UNITS[options.workload],
        "rate_per_s": count / work,
        "ms_per_unit": 1000 * work / count,
        "commits_per_s": figures["xact_commit"] / work,
        # CPU of the engine, the workers and PostgreSQL during t_work, over what the machine has
        "cpu_used": busy / (work * (os.cpu_count() or 1)),
        "pg_cpu_share": figures["pg_cpu_s"] / busy if busy else None,
        "loadavg_1m": os.getloadavg()[0],
        "t_pre": T_PRE,
        "t_import": T_IMPORT,
        **figures,
        "pid": os.getpid(),
        "python": sys.version.split()[0],
    }


def main() -> None:
    # A SIGTERM (a driver's timeout, a Ctrl-C'd script's kill) unwinds like an exception, so the
    # workers are stopped and the schema dropped instead of left in the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    options = parse_options()
    pin = None
    if options.pin:  # before anything here starts a thread: they keep the CPUs they had
        pin = CpuPin.apply(frozenset([min(os.sched_getaffinity(0))]))
    ensure_database(options.pg)
    schema = fresh_schema()
    with tempfile.TemporaryDirectory(prefix="wayang-fleet-") as folder:
        try:
            figures = measure(options, schema, Path(folder), pin)
        finally:
            if not options.keep:
                drop_schema(options.pg, schema)
            if os.environ.get("FLEET_BENCH_LOGS"):
                for log in sorted(Path(folder).glob("worker*.log")):
                    sys.stderr.write(log.read_text(errors="replace"))
    figures["t_teardown"] = time.perf_counter() - figures.pop("teardown_started")
    print("BENCH_RESULT " + json.dumps(result(options, figures), sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
