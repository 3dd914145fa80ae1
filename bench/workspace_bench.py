"""What a run's workspace costs: making one, reusing one, and twenty runs of one repository at once.

Usage::

    .venv/bin/python bench/workspace_bench.py [--files 2000] [--runs 20]

Makes a scratch git repository of ``--files`` small files (plus a tool bundle), then measures
with the real manager (docs/workspaces.md): ``ensure_workspace`` of a new id (a ``git worktree
add``), of an existing id (reuse), ``cleanup``; and ``--runs`` one-step runs started at once as
``wayang run`` processes, each in its own workspace, against the same runs in place. Prints one
``BENCH_RESULT`` JSON line per figure and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wayang.workspace.manager import WorkspaceManager
from wayang.workspace.settings import WorkspaceSettings

WAYANG = str(Path(sys.executable).parent / "wayang")
FLOW = 'id = "bench"\n[steps.one]\nrun = "test -f src/f0.txt"\n'


def make_repository(folder: Path, files: int) -> Path:
    repo = folder / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "scripts").mkdir()
    for index in range(files):
        (repo / "src" / f"f{index}.txt").write_text(f"file {index}\n")
    for index in range(20):
        (repo / "scripts" / f"tool{index}.sh").write_text("echo tool\n")
    (repo / "agents.just").write_text("hello:\n    echo hello\n")
    (repo / "workflow.toml").write_text(FLOW)
    for argv in (
        ["init", "-q"],
        ["config", "user.email", "bench@example.com"],
        ["config", "user.name", "bench"],
        ["add", "-A"],
        ["commit", "-qm", "bench"],
    ):
        subprocess.run(["git", *argv], cwd=repo, check=True)
    return repo


def timed(action: object, repeat: int) -> list[float]:
    samples = []
    for index in range(repeat):
        started = time.perf_counter()
        action(index)  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return samples


def manager_figures(repo: Path, root: Path, repeat: int) -> list[dict[str, object]]:
    manager = WorkspaceManager(repo, WorkspaceSettings(root=str(root)), environ={})
    made = timed(lambda i: manager.ensure_workspace(f"new-{i}"), repeat)
    reused = timed(lambda i: manager.ensure_workspace(f"new-{i}"), repeat)
    cleaned = timed(lambda i: manager.cleanup(f"new-{i}"), repeat)
    return [
        {"figure": "ensure_workspace, new (ms)", "ms": _ms(made)},
        {"figure": "ensure_workspace, reused (ms)", "ms": _ms(reused)},
        {"figure": "cleanup (ms)", "ms": _ms(cleaned)},
    ]


def parallel_runs(repo: Path, folder: Path, runs: int, mode: str) -> dict[str, object]:
    env = {
        **os.environ,
        "WAYANG_STORE": str(folder / f"{mode}.db"),
        "WAYANG_WORKSPACES": str(folder / "ws"),
        "WAYANG_WORKSPACE_MODE": mode,
    }
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [WAYANG, "--no-server", "run", str(repo / "workflow.toml"), "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(runs)
    ]
    codes = [child.wait() for child in children]
    for child in children:
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()
        child.stderr.close()
    took = time.perf_counter() - started
    if any(codes):
        raise SystemExit(f"{mode}: exit statuses {codes}")
    return {"figure": f"{runs} runs at once, {mode} (s)", "s": round(took, 2)}


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median": round(statistics.median(ordered) * 1000, 1),
        "p90": round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wayang-ws-bench-") as scratch:
        folder = Path(scratch)
        repo = make_repository(folder, args.files)
        rows = manager_figures(repo, folder / "root", args.repeat)
        rows.append(parallel_runs(repo, folder, args.runs, "off"))
        rows.append(parallel_runs(repo, folder, args.runs, "per-run"))
        tools = sorted((folder / "ws").glob("*/.tools/*"))
        links = {(path.stat().st_ino, path.stat().st_nlink) for path in tools[0].rglob("*.sh")}
        rows.append({"figure": "tool bundle copies on disk", "copies": len(tools)})
        rows.append({"figure": "hard links per tool file", "links": sorted(n for _, n in links)[0]})
    for row in rows:
        print("BENCH_RESULT " + json.dumps({"files": args.files, **row}))
    print(f"\nrepository of {args.files} files:")
    for row in rows:
        value = {key: val for key, val in row.items() if key != "figure"}
        print(f"  {row['figure']:<36} {value}")


if __name__ == "__main__":
    main()
